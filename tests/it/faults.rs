//! Faults survived, nothing lost or doubled: the daemon killed at random moments, its
//! database connections cut mid-sweep, and a provider that misbehaves in every known way.
//!
//! Each test scripts the provider in two phases — every payment answers `process`, then,
//! once all are recorded as `process`, `success` — so the only correct history is exactly
//! one `→ process` and one `process → success` transition per payment.

use std::time::Duration;

use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::json;

use crate::helpers::TestApp;

const PAYMENTS: i64 = 150;

/// Every third payment is paid 1.00 less than expected: one open amount_mismatch each.
fn answer(status: &str, delay_ms: u64) -> Scenario {
    let reply = |amount: &str| {
        Reply::invoice(status, amount, "KZT").delayed(Duration::from_millis(delay_ms))
    };
    Scenario::new()
        .prefix("f-", [reply("100.00")])
        .prefix("f-short-", [reply("99.00")])
}

async fn enqueue(app: &TestApp) {
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency)
         select case when g % 3 = 0 then 'f-short-' else 'f-' end || g, 100, 'KZT'
         from generate_series(1, $1) g",
    )
    .bind(PAYMENTS as i32)
    .execute(app.pool())
    .await
    .unwrap();
}

/// Settings that let a killed daemon's claims come back quickly.
const FAST: [(&str, &str); 7] = [
    ("FREEDOMPAY_RECON__POLL__RECHECK", "1s"),
    ("FREEDOMPAY_RECON__POLL__CONFIRM_AFTER", "1h"),
    ("FREEDOMPAY_RECON__POLL__LEASE", "3s"),
    ("FREEDOMPAY_RECON__PROVIDER__TIMEOUT", "1s"),
    ("FREEDOMPAY_RECON__POLL__DRAIN_TIMEOUT", "1s"),
    ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "4"),
    ("FREEDOMPAY_RECON__POLL__BATCH_SIZE", "20"),
];

async fn count(app: &TestApp, status: &str) -> i64 {
    sqlx::query_scalar("select count(*) from recon.payments where status = $1")
        .bind(status)
        .fetch_one(app.pool())
        .await
        .unwrap()
}

/// The end state every fault test must reach.
async fn assert_exact_history(app: &TestApp) {
    assert_eq!(count(app, "success").await, PAYMENTS);
    let histories: Vec<(i64, i64)> = sqlx::query_as(
        "select count(*) filter (where from_status is null and to_status = 'process'),
                count(*) filter (where from_status = 'process' and to_status = 'success')
         from recon.status_transitions group by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(histories.len() as i64, PAYMENTS);
    assert!(
        histories.iter().all(|h| *h == (1, 1)),
        "a transition was lost or doubled"
    );
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        2 * PAYMENTS
    );
    assert_eq!(
        app.count(
            "select count(*) from recon.discrepancies where kind = 'amount_mismatch' and resolved_at is null and payment_id like 'f-short-%'"
        )
        .await,
        PAYMENTS / 3
    );
    assert_eq!(
        app.count("select count(*) from recon.discrepancies").await,
        PAYMENTS / 3,
        "no other flag, none doubled"
    );
    assert_eq!(
        app.count("select count(*) from recon.payments where lease_token is not null")
            .await,
        0
    );
}

/// A small deterministic generator, so a failing run can be told apart by its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_twenty_times_mid_sweep_the_daemon_loses_and_doubles_nothing() {
    let app = TestApp::new(answer("process", 15)).await;
    enqueue(&app).await;
    let seed = std::process::id() as u64;
    let mut random = Lcg(seed);
    let mut kills = 0;
    let mut switched = false;
    while kills < 20 {
        let daemon = app.spawn_daemon(&FAST);
        // A random moment (the seed names it): the point is to kill the daemon anywhere,
        // starting up, claiming, polling or writing, not to wait for a condition.
        tokio::time::sleep(Duration::from_millis(300 + random.next(1500))).await;
        let (code, _) = daemon.kill().await;
        assert_eq!(code, None, "killed by a signal");
        kills += 1;
        if !switched && count(&app, "process").await == PAYMENTS {
            app.sim.set_scenario(answer("success", 15));
            switched = true;
        }
    }
    // Phase one must finish before phase two begins, whatever the kills did.
    if !switched {
        let daemon = app.spawn_daemon(&FAST);
        let n = app
            .wait_for(
                "select count(*) from recon.payments where status = 'process'",
                PAYMENTS,
                Duration::from_secs(30),
            )
            .await;
        app.wait_for_daemon_connection().await;
        daemon.stop().await;
        assert_eq!(n, PAYMENTS, "seed {seed}");
        app.sim.set_scenario(answer("success", 15));
    }
    let daemon = app.spawn_daemon(&FAST);
    let done = app
        .wait_for(
            "select count(*) from recon.payments where status = 'success'",
            PAYMENTS,
            Duration::from_secs(40),
        )
        .await;
    // SIGTERM only once the daemon is up (it connects after installing its handlers);
    // before that, as for any process, the signal's default action would end it.
    app.wait_for_daemon_connection().await;
    let (code, log) = daemon.stop().await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(done, PAYMENTS, "seed {seed}");
    assert_exact_history(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_database_connections_are_survived_without_a_restart() {
    let app = TestApp::new(answer("process", 20)).await;
    enqueue(&app).await;
    let mut daemon = app.spawn_daemon(&FAST);
    let terminate = "select count(pg_terminate_backend(pid)) from pg_stat_activity
                     where application_name = 'freedompay-recon' and datname = current_database()";
    let mut cut = 0;
    for phase in ["process", "success"] {
        if phase == "success" {
            app.sim.set_scenario(answer("success", 20));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        while count(&app, phase).await < PAYMENTS && tokio::time::Instant::now() < deadline {
            // The pace of the cuts (not a wait for time to pass): every 0.4 s, whatever the
            // daemon holds at that moment.
            tokio::time::sleep(Duration::from_millis(400)).await;
            cut += app.count(terminate).await;
        }
        assert_eq!(count(&app, phase).await, PAYMENTS, "phase {phase}");
    }
    assert!(cut >= 2, "connections were cut mid-sweep ({cut})");
    assert!(
        daemon.is_running(),
        "the daemon carried on without a restart"
    );
    let (code, log) = daemon.stop().await;
    assert_eq!(code, Some(0), "{log}");
    assert_exact_history(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_storm_of_every_known_fault_ends_in_the_scripted_state() {
    let html = include_str!("../fixtures/provider/responses/gateway-502.html");
    let storm = [
        Reply::status(500, None),
        Reply::text(502, html, "text/html"),
        Reply::status(503, None),
        Reply::Drop,
        Reply::text(200, r#"{"paymentStatus":"proc"#, "application/json"),
        Reply::text(200, &"9".repeat(2 * 1024 * 1024), "application/json"),
        Reply::invoice("process", "100.00", "KZT").delayed(Duration::from_millis(1500)),
        Reply::status(429, Some("1")),
    ];
    // Each payment meets the storm from its own point: faults, then the answer, then more
    // faults, then the final answer.
    let mut scenario = Scenario::new();
    for g in 1..=PAYMENTS {
        let id = if g % 3 == 0 {
            format!("f-short-{g}")
        } else {
            format!("f-{g}")
        };
        let amount = if g % 3 == 0 { "99.00" } else { "100.00" };
        let start = g as usize % storm.len();
        let mut replies: Vec<Reply> = (0..2)
            .map(|i| storm[(start + i) % storm.len()].clone())
            .collect();
        replies.push(Reply::invoice("process", amount, "KZT"));
        replies.extend((2..4).map(|i| storm[(start + i) % storm.len()].clone()));
        replies.push(Reply::invoice("success", amount, "KZT").with("fee", json!("1.00")));
        scenario = scenario.payment(&id, replies);
    }
    let app = TestApp::with(
        scenario,
        &[
            ("FREEDOMPAY_RECON__PROVIDER__TIMEOUT", "1s"),
            ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "16"),
            ("FREEDOMPAY_RECON__POLL__CONFIRM_AFTER", "1h"),
        ],
    )
    .await;
    enqueue(&app).await;
    let mut pauses = 0;
    for _ in 0..12 {
        let outcome = app.sweep().await;
        pauses += outcome.rate_limited;
        if count(&app, "success").await == PAYMENTS {
            break;
        }
        app.fast_forward().await;
    }
    assert!(pauses > 0, "the 429 storm paused the workers");
    assert_exact_history(&app).await;
    let failures: i64 = app
        .count("select count(*) from recon.payments where attempts > 0 or last_error is not null")
        .await;
    assert_eq!(failures, 0, "a final answer clears the failure state");
}
