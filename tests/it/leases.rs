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
async fn several_write_transactions_at_once_record_every_verdict_once() {
    let app = TestApp::with(
        Scenario::new().prefix("w-", [Reply::invoice("success", "10", "KZT")]),
        &[
            ("FREEDOMPAY_RECON__POLL__WRITERS", "4"),
            ("FREEDOMPAY_RECON__POLL__BATCH_SIZE", "7"),
        ],
    )
    .await;
    insert_many(&app, "w-", 300).await;
    let outcome = app.sweep().await;
    assert_eq!(
        (outcome.claimed, outcome.recorded, outcome.transitions),
        (300, 300, 300),
        "{outcome:?}"
    );
    assert_eq!(
        app.count("select count(*) from recon.payments where status = 'success'")
            .await,
        300
    );
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        300
    );
    assert_eq!(leases_held(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_daemons_claims_are_taken_over_once_their_lease_expires() {
    let app =
        TestApp::new(Scenario::new().prefix("c-", [Reply::invoice("process", "10", "KZT")])).await;
    insert_many(&app, "c-", 5).await;
    // A daemon claims everything, then dies without writing or releasing.
    let crashed = store::claim_due(
        app.pool(),
        "crashed:1",
        100,
        Duration::from_secs(1),
        None,
        Duration::ZERO,
        Duration::ZERO,
    )
    .await
    .unwrap()
    .claims;
    assert_eq!(crashed.len(), 5);

    let during = app.sweep().await;
    assert_eq!(during.claimed, 0, "a live lease is respected");
    assert_eq!(app.sim.total_calls(), 0);

    // The crashed daemon's lease runs out (as a second's wait would make it).
    sqlx::query(
        "update recon.payments set lease_expires_at = now() - interval '1 ms'
         where lease_owner = 'crashed:1'",
    )
    .execute(app.pool())
    .await
    .unwrap();
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
            error_body: None,
            request_id: None,
            before: claim.tracked.clone(),
        })
        .collect();
    let written = store::record_verdicts(app.pool(), &stale, None)
        .await
        .unwrap();
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
    // Shut down once both workers have a request at the provider (each takes 400 ms).
    let stop_when_in_flight = async {
        app.sim.wait_for_calls(2).await;
        shutdown.cancel();
    };
    let (outcome, ()) = tokio::join!(app.engine.reconcile_due(&shutdown), stop_when_in_flight);
    let outcome = outcome.unwrap();

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
    let started = std::time::Instant::now();
    // Shut down once all three polls are at the provider, which answers after 4 s.
    let stop_when_in_flight = async {
        app.sim.wait_for_calls(3).await;
        shutdown.cancel();
    };
    let (outcome, ()) = tokio::join!(app.engine.reconcile_due(&shutdown), stop_when_in_flight);
    let outcome = outcome.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drained in time, long before the provider answered"
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
async fn rows_the_daemon_cannot_read_are_parked_and_never_fail_the_claim_of_others() {
    let app =
        TestApp::new(Scenario::new().prefix("ok-", [Reply::invoice("process", "1", "KZT")])).await;
    // The schema refuses such rows; here its rules are dropped, as on a database someone
    // changed by hand, to show the claim still reads row by row.
    sqlx::query(
        "alter table recon.payments
             drop constraint payment_id_is_1_to_128_visible_chars_without_outer_spaces,
             drop constraint expected_amount_is_finite_below_1e18_with_at_most_8_decimals,
             drop constraint created_at_is_within_years_1_to_9999,
             drop constraint expires_at_is_within_years_1_to_9999",
    )
    .execute(app.pool())
    .await
    .unwrap();
    app.insert_ids(&["ok-1", "ok-2", "ok-3", "\u{a0}"]).await;
    app.insert(
        "('bad-nan', 'NaN', null, null, now(), null),
         ('bad-inf', 'Infinity', null, null, now(), null),
         ('bad-big', 1e40, null, null, now(), null),
         ('bad-scale', 0.12345678901234567890123456789012, null, null, now(), null),
         ('bad-created', null, null, null, '-infinity', null),
         ('bad-expires', null, null, null, now(), 'infinity')",
    )
    .await;

    let outcome = app.sweep().await;
    assert_eq!(
        (outcome.claimed, outcome.recorded),
        (3, 3),
        "the readable rows are polled in the same sweep"
    );
    let parked: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "select payment_id, last_error, next_check_at is null, lease_token is null
         from recon.payments where parked_at is not null
         order by payment_id collate \"C\"",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    let expected = [
        (
            "bad-big",
            "expected_amount has more than 18 digits before the decimal point",
        ),
        ("bad-created", "created_at is infinite"),
        ("bad-expires", "expires_at is infinite"),
        ("bad-inf", "expected_amount is infinite"),
        ("bad-nan", "expected_amount is not a number"),
        (
            "bad-scale",
            "expected_amount has more than 8 digits after the decimal point",
        ),
        ("\u{a0}", "payment_id has spaces around it"),
    ];
    assert_eq!(parked.len(), expected.len(), "{parked:#?}");
    for ((id, error, not_due, released), (want_id, want)) in parked.iter().zip(expected) {
        assert_eq!(id, want_id);
        assert!(
            error.starts_with(&format!("parked: cannot read this row: {want};")),
            "{id}: {error}"
        );
        assert!(
            *not_due && *released,
            "{id} is parked, not due and not leased"
        );
    }
    // Parked rows are not claimed again.
    app.fast_forward().await;
    assert_eq!(app.sweep().await.claimed, 3);

    // Fixed by hand and taken back with `recheck`, a row is polled again.
    sqlx::query("update recon.payments set expected_amount = 1 where payment_id = 'bad-nan'")
        .execute(app.pool())
        .await
        .unwrap();
    let (scheduled, missing) = freedompay_recon::store::finance::schedule_recheck(
        app.pool(),
        &freedompay_recon::store::finance::Selection::Ids(vec![
            freedompay_recon::domain::PaymentId::parse("bad-nan").unwrap(),
        ]),
    )
    .await
    .unwrap();
    assert_eq!((scheduled, missing.len()), (1, 0));
    let simulator_answer = app.sweep().await;
    assert_eq!(simulator_answer.claimed, 1);
    assert_eq!(
        app.count("select count(*) from recon.payments where payment_id = 'bad-nan' and parked_at is null and checks = 1")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recheck_asked_for_during_a_poll_is_kept_by_its_verdict() {
    use freedompay_recon::domain::{Jitter, PaymentId, Policy, PollResult, decide};
    use freedompay_recon::store::finance::{Selection, schedule_recheck};

    let app = TestApp::new(Scenario::new()).await;
    app.insert_ids(&["r-1"]).await;
    let claim = store::claim_due(
        app.pool(),
        "test",
        10,
        Duration::from_secs(60),
        None,
        Duration::ZERO,
        Duration::ZERO,
    )
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
            error_body: None,
            request_id: None,
            before: claim.tracked.clone(),
        }],
        None,
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
