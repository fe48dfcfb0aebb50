//! Several daemons on one database: safe (no payment polled twice within a lease), within
//! the deployment's rate budget, and sharing the work.

use std::time::Duration;

use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_rate_budget_and_the_work() {
    const RATE: usize = 40;
    let app = TestApp::new(Scenario::new().prefix(
        "mi-",
        [Reply::invoice("success", "10", "KZT").delayed(Duration::from_millis(5))],
    ))
    .await;
    sqlx::query(
        "insert into recon.payments (payment_id) select 'mi-' || g from generate_series(1, 240) g",
    )
    .execute(app.pool())
    .await
    .unwrap();

    let rate = RATE.to_string();
    let env = [
        ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", rate.as_str()),
        ("FREEDOMPAY_RECON__POLL__BURST", "1"),
        ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "4"),
        ("FREEDOMPAY_RECON__POLL__CONFIRM_AFTER", "1h"),
    ];
    let daemons: Vec<_> = (0..3).map(|_| app.spawn_daemon(&env)).collect();

    let done = app
        .wait_for(
            "select count(*) from recon.payments where status = 'success'",
            240,
            Duration::from_secs(30),
        )
        .await;
    for daemon in &daemons {
        daemon.signal("TERM");
    }
    for daemon in daemons {
        let (code, log) = daemon.wait(Duration::from_secs(60)).await;
        assert_eq!(code, Some(0), "{log}");
    }
    assert_eq!(done, 240, "every payment was reconciled");

    let calls = app.sim.calls();
    assert!(
        calls.values().all(|&n| n == 1),
        "a payment was polled twice"
    );
    let mut times: Vec<_> = app.sim.requests().iter().map(|r| r.at).collect();
    times.sort();
    let most_in_a_second = crate::helpers::most_in_one_second(&times);
    assert!(
        most_in_a_second <= RATE + 1,
        "{most_in_a_second} requests in one second from the deployment (budget {})",
        RATE + 1
    );
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    assert!(
        span >= 239.0 / (RATE as f64 + 1.0),
        "{span} s for 240 requests"
    );

    let per_instance: Vec<(String, i64)> = sqlx::query_as(
        "select last_checked_by, count(*) from recon.payments group by 1 order by 2 desc",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        per_instance.len(),
        3,
        "all three instances worked: {per_instance:?}"
    );
    assert!(
        per_instance.iter().all(|(_, n)| *n >= 20),
        "the work spreads: {per_instance:?}"
    );
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        240,
        "one transition per payment, none doubled"
    );
}
