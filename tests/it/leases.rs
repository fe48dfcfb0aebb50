//! Claims, leases, racing sweeps and shutdown.

use std::time::Duration;

use freedompay_recon::engine::SweepStop;
use freedompay_recon::simulator::{Reply, Scenario};
use freedompay_recon::store;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, engine};

async fn insert_many(app: &TestApp, prefix: &str, n: usize) {
    sqlx::query(
        "insert into recon.payments (payment_id)
         select $1 || g from generate_series(1, $2) g",
    )
    .bind(prefix)
    .bind(n as i32)
    .execute(app.pool())
    .await
    .unwrap();
}

async fn leases_held(app: &TestApp) -> i64 {
    app.count("select count(*) from recon.payments where lease_token is not null")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweeps_racing_on_the_same_rows_never_poll_a_payment_twice() {
    let app = TestApp::with(
        Scenario::new().prefix(
            "race-",
            [Reply::invoice("process", "10", "KZT").delayed(Duration::from_millis(2))],
        ),
        &[("FREEDOMPAY_RECON__POLL__BATCH_SIZE", "25")],
    )
    .await;
    insert_many(&app, "race-", 400).await;
    // A second instance: its own engine, pacer and lease owner, on the same database.
    let other = engine(&app.db, &app.settings);
    let token = CancellationToken::new();
    let (a, b) = tokio::join!(
        app.engine.reconcile_due(&token),
        other.reconcile_due(&token)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.claimed + b.claimed, 400);
    assert!(
        a.claimed > 0 && b.claimed > 0,
        "both sweeps took work: {a:?} {b:?}"
    );
    assert_eq!(a.recorded + b.recorded, 400);

    let calls = app.sim.calls();
    assert_eq!(calls.len(), 400);
    assert!(
        calls.values().all(|&n| n == 1),
        "a payment was polled twice"
    );
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        400
    );
    assert_eq!(leases_held(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_daemons_claims_are_taken_over_once_their_lease_expires() {
    let app =
        TestApp::new(Scenario::new().prefix("c-", [Reply::invoice("process", "10", "KZT")])).await;
    insert_many(&app, "c-", 5).await;
    // A daemon claims everything, then dies without writing or releasing.
    let crashed = store::claim_due(app.pool(), "crashed:1", 100, Duration::from_secs(1), None)
        .await
        .unwrap()
        .claims;
    assert_eq!(crashed.len(), 5);

    let during = app.sweep().await;
    assert_eq!(during.claimed, 0, "a live lease is respected");
    assert_eq!(app.sim.total_calls(), 0);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = app.sweep().await;
    assert_eq!((after.claimed, after.recovered, after.recorded), (5, 5, 5));
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        5
    );

    // The crashed daemon comes back and writes its stale verdicts: they are refused.
    let stale: Vec<_> = crashed
        .iter()
        .map(|claim| store::Recorded {
            payment_id: claim.tracked.payment_id.clone(),
            lease_token: claim.lease_token,
            verdict: freedompay_recon::domain::decide(
                &claim.tracked,
                &freedompay_recon::domain::PollResult::NotFound,
                claim.claimed_at,
                &Default::default(),
                freedompay_recon::domain::Jitter::NONE,
            ),
            invoice: None,
            raw_body: None,
        })
        .collect();
    let written = store::record_verdicts(app.pool(), &stale).await.unwrap();
    assert_eq!(written.applied, 0);
    assert_eq!(
        app.count("select count(*) from recon.payments where not_found_since is not null")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_polls_finish_and_releases_the_rest() {
    let app = TestApp::with(
        Scenario::new().prefix(
            "s-",
            [Reply::invoice("process", "10", "KZT").delayed(Duration::from_millis(400))],
        ),
        &[("FREEDOMPAY_RECON__POLL__CONCURRENCY", "2")],
    )
    .await;
    insert_many(&app, "s-", 20).await;
    let shutdown = CancellationToken::new();
    let stopper = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            shutdown.cancel();
        })
    };
    let outcome = app.engine.reconcile_due(&shutdown).await.unwrap();
    stopper.await.unwrap();

    assert_eq!(outcome.stop, SweepStop::Cancelled);
    assert_eq!(
        outcome.recorded, 2,
        "the two in-flight polls finished: {outcome:?}"
    );
    assert_eq!(outcome.recorded + outcome.released, outcome.claimed);
    assert_eq!(leases_held(&app).await, 0);
    assert_eq!(
        app.count(
            "select count(*) from recon.payments where checks = 0 and next_check_at <= now()"
        )
        .await,
        18,
        "released payments are due again at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_that_outlast_the_drain_timeout_are_released_not_lost() {
    let app = TestApp::with(
        Scenario::new().prefix(
            "slow-",
            [Reply::invoice("process", "10", "KZT").delayed(Duration::from_secs(4))],
        ),
        &[("FREEDOMPAY_RECON__POLL__DRAIN_TIMEOUT", "300ms")],
    )
    .await;
    insert_many(&app, "slow-", 3).await;
    let shutdown = CancellationToken::new();
    let canceller = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });
    let started = std::time::Instant::now();
    let outcome = app.engine.reconcile_due(&shutdown).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drained in time"
    );
    assert_eq!((outcome.recorded, outcome.released), (0, 3));
    assert_eq!(leases_held(&app).await, 0);
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_daemon_cannot_read_is_parked_with_the_reason_not_spun_on() {
    let app =
        TestApp::new(Scenario::new().prefix("ok-", [Reply::invoice("process", "1", "KZT")])).await;
    // A no-break space passes the schema's check but is no payment id.
    app.insert_ids(&["ok-1", "\u{a0}"]).await;
    let outcome = app.sweep().await;
    assert_eq!((outcome.claimed, outcome.recorded), (1, 1));
    let (parked_for, error, leased): (f64, String, bool) = sqlx::query_as(
        "select extract(epoch from next_check_at - now())::float8, last_error, lease_token is not null
         from recon.payments where payment_id = E'\\u00a0'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(
        parked_for > 3000.0,
        "due again in an hour, not at once ({parked_for})"
    );
    assert_eq!(
        error,
        "cannot read this row: payment_id: payment id is empty"
    );
    assert!(!leased);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recheck_asked_for_during_a_poll_is_kept_by_its_verdict() {
    use freedompay_recon::domain::{Jitter, PaymentId, Policy, PollResult, decide};
    use freedompay_recon::store::finance::{Selection, schedule_recheck};

    let app = TestApp::new(Scenario::new()).await;
    app.insert_ids(&["r-1"]).await;
    let claim = store::claim_due(app.pool(), "test", 10, Duration::from_secs(60), None)
        .await
        .unwrap()
        .claims
        .remove(0);
    // An operator asks for a fresh look while the poll is under way...
    let (scheduled, _) = schedule_recheck(
        app.pool(),
        &Selection::Ids(vec![PaymentId::parse("r-1").unwrap()]),
    )
    .await
    .unwrap();
    assert_eq!(scheduled, 1);
    // ...and the poll's verdict would schedule the next check in 30 s.
    let verdict = decide(
        &claim.tracked,
        &PollResult::NotFound,
        claim.claimed_at,
        &Policy::default(),
        Jitter::NONE,
    );
    assert!(verdict.next_check_at.is_some());
    let written = store::record_verdicts(
        app.pool(),
        &[store::Recorded {
            payment_id: claim.tracked.payment_id.clone(),
            lease_token: claim.lease_token,
            verdict,
            invoice: None,
            raw_body: None,
        }],
    )
    .await
    .unwrap();
    assert_eq!(written.applied, 1);
    assert_eq!(
        app.count("select count(*) from recon.payments where next_check_at <= now() and recheck_requested_at is null")
            .await,
        1,
        "the recheck survived the verdict"
    );
}
