//! Rate limit, the Retry-After pause, and the fatal stop.

use std::time::Duration;

use freedompay_recon::engine::SweepStop;
use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::{TestApp, engine, settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_pauses_every_worker() {
    let app = TestApp::with(
        Scenario::new()
            .payment(
                "p-0",
                [
                    Reply::status(429, Some("1")),
                    Reply::invoice("process", "1", "KZT"),
                ],
            )
            .prefix(
                "p-",
                [Reply::invoice("process", "1", "KZT").delayed(Duration::from_millis(30))],
            ),
        &[("FREEDOMPAY_RECON__POLL__CONCURRENCY", "3")],
    )
    .await;
    let ids: Vec<String> = (0..12).map(|i| format!("p-{i}")).collect();
    app.insert_ids(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;

    let outcome = app.sweep().await;
    assert_eq!(outcome.rate_limited, 1);
    assert_eq!(
        outcome.recorded, 12,
        "every payment answered after the pause"
    );

    let log = app.sim.requests();
    let limited = log
        .iter()
        .find(|r| r.http_status == 429)
        .expect("the 429 was served");
    // Requests already in flight may land just after the 429 was sent; the next one must
    // wait out the pause.
    let after: Vec<Duration> = log
        .iter()
        .filter(|r| r.at > limited.at)
        .map(|r| r.at - limited.at)
        .collect();
    let too_early = after
        .iter()
        .filter(|d| **d > Duration::from_millis(100) && **d < Duration::from_millis(950))
        .count();
    assert_eq!(too_early, 0, "requests during the pause: {after:?}");
    assert!(after.iter().any(|d| *d >= Duration::from_millis(950)));
    assert_eq!(
        app.sim.calls()["p-0"],
        2,
        "the limited payment is asked again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_rate_limit() {
    let app = TestApp::with(
        Scenario::new().prefix("r-", [Reply::invoice("process", "1", "KZT")]),
        &[
            ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", "20"),
            ("FREEDOMPAY_RECON__POLL__BURST", "1"),
        ],
    )
    .await;
    let ids: Vec<String> = (0..30).map(|i| format!("r-{i}")).collect();
    app.insert_ids(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let started = std::time::Instant::now();
    app.sweep().await;
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );

    let times: Vec<_> = app.sim.requests().iter().map(|r| r.at).collect();
    let max_in_a_second = crate::helpers::most_in_one_second(&times);
    assert!(
        max_in_a_second <= 21,
        "{max_in_a_second} requests in one second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_signature_stops_the_sweep_and_holds_polling_off() {
    let app =
        TestApp::new(Scenario::new().prefix("f-", [Reply::invoice("process", "1", "KZT")])).await;
    let ids: Vec<String> = (0..50).map(|i| format!("f-{i}")).collect();
    app.insert_ids(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let wrong = settings(
        &app.db,
        &app.sim,
        &[(
            "FREEDOMPAY_RECON__PROVIDER__SECRET",
            "not-the-partner-secret",
        )],
    );
    let engine = engine(&app.db, &wrong);
    let token = tokio_util::sync::CancellationToken::new();

    let outcome = engine.reconcile_due(&token).await.unwrap();
    let SweepStop::Fatal(reason) = &outcome.stop else {
        panic!("expected a fatal stop, got {outcome:?}");
    };
    assert!(reason.contains("provider.secret"), "{reason}");
    assert!(
        app.sim.requests().len() <= wrong.poll.concurrency,
        "{} requests after the first rejection",
        app.sim.requests().len()
    );
    assert!(app.sim.requests().iter().all(|r| r.http_status == 401));
    assert_eq!(outcome.recorded, 0);
    assert_eq!(outcome.released, outcome.claimed);
    assert_eq!(
        app.count("select count(*) from recon.payments where lease_token is not null or checks > 0 or attempts > 0")
            .await,
        0,
        "nothing written, nothing held"
    );
    assert!(engine.health().halted().is_some());

    let before = app.sim.requests().len();
    let next = engine.reconcile_due(&token).await.unwrap();
    assert!(matches!(next.stop, SweepStop::Halted { .. }), "{next:?}");
    assert_eq!(app.sim.requests().len(), before, "no request while halted");
}
