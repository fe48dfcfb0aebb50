//! Status paths and their history.

use freedompay_recon::simulator::{Reply, Scenario};
use freedompay_recon::store;
use serde_json::json;

use crate::helpers::{TestApp, recorded};

fn t(from: Option<&str>, to: &str) -> (Option<String>, String) {
    (from.map(str::to_owned), to.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_inserted_by_plain_sql_goes_process_to_success_and_stops_after_confirmation() {
    let app = TestApp::new(Scenario::new().payment(
        "1001",
        [
            Reply::invoice("process", "5000", "KZT"),
            Reply::invoice("success", "5000", "KZT"),
        ],
    ))
    .await;
    app.insert_ids(&["1001"]).await;

    let first = app.sweep().await;
    assert_eq!(
        (first.claimed, first.recorded, first.transitions),
        (1, 1, 1)
    );
    assert_eq!(app.status("1001").await.as_deref(), Some("process"));

    app.fast_forward().await;
    let second = app.sweep().await;
    assert_eq!(second.transitions, 1);
    assert_eq!(app.status("1001").await.as_deref(), Some("success"));

    // The confirmation re-check sees the same answer: no transition, polling stops.
    app.fast_forward().await;
    let third = app.sweep().await;
    assert_eq!((third.claimed, third.transitions), (1, 0));
    app.fast_forward().await;
    assert_eq!(
        app.sweep().await.claimed,
        0,
        "a confirmed payment is not polled again"
    );

    assert_eq!(
        app.transitions("1001").await,
        [t(None, "process"), t(Some("process"), "success")]
    );
    let row: (
        String,
        rust_decimal::Decimal,
        String,
        i32,
        bool,
        bool,
        Vec<String>,
    ) = sqlx::query_as(
        "select status, received_amount, received_currency, checks, settled_at is not null,
                polling_finished, open_flags
         from recon.reconciliation where payment_id = '1001'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "success".into(),
            "5000".parse().unwrap(),
            "KZT".into(),
            3,
            true,
            true,
            vec![]
        )
    );
    assert_eq!(app.sim.calls()["1001"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_and_incomplete_are_terminal_paths() {
    let past = (chrono::Utc::now() - chrono::TimeDelta::hours(2)).to_rfc3339();
    let app = TestApp::new(
        Scenario::new()
            .payment(
                "e-1",
                [
                    Reply::invoice("process", "990.00", "KZT"),
                    Reply::invoice("error", "990.00", "KZT"),
                ],
            )
            .payment(
                "i-1",
                [
                    Reply::invoice("waiting", "15000", "KZT"),
                    Reply::invoice("incomplete", "15000", "KZT").with("lifetime", json!(past)),
                ],
            ),
    )
    .await;
    app.insert_ids(&["e-1", "i-1"]).await;
    app.sweep().await;
    app.fast_forward().await;
    app.sweep().await;
    app.fast_forward().await;
    app.sweep().await;

    assert_eq!(
        app.transitions("e-1").await,
        [t(None, "process"), t(Some("process"), "error")]
    );
    assert_eq!(
        app.transitions("i-1").await,
        [t(None, "waiting"), t(Some("waiting"), "incomplete")]
    );
    assert_eq!(app.open_flags("e-1").await, Vec::<String>::new());
    // Expired unpaid: an outcome; its lifetime flag was closed by the rule as it opened.
    assert_eq!(app.open_flags("i-1").await, Vec::<String>::new());
    assert_eq!(
        app.flag_history("i-1").await,
        [("lifetime_exceeded".to_owned(), true)]
    );
    let outcomes: Vec<(String, Option<String>)> = sqlx::query_as(
        "select outcome, received_amount::text from recon.reconciliation
         where payment_id in ('e-1', 'i-1') order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [
            ("failed".to_owned(), None),
            ("expired_unpaid".to_owned(), None)
        ],
        "no money received"
    );
    let finished = app
        .count("select count(*) from recon.reconciliation where polling_finished")
        .await;
    assert_eq!(finished, 2);
    let (expires_at_source,): (Option<String>,) =
        sqlx::query_as("select expiry_source from recon.reconciliation where payment_id = 'i-1'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(expires_at_source.as_deref(), Some("provider_datetime"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_answer_seen_again_writes_no_second_transition() {
    let app =
        TestApp::new(Scenario::new().payment("p", [Reply::invoice("process", "100", "KZT")])).await;
    app.insert_ids(&["p"]).await;
    for _ in 0..4 {
        app.sweep().await;
        app.fast_forward().await;
    }
    assert_eq!(app.transitions("p").await, [t(None, "process")]);
    let checks = app
        .count("select checks::int8 from recon.payments where payment_id = 'p'")
        .await;
    assert_eq!(checks, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_poll_after_a_server_error_records_one_transition() {
    let app = TestApp::new(Scenario::new().payment(
        "r",
        [
            Reply::status(500, None),
            Reply::invoice("process", "1", "KZT"),
        ],
    ))
    .await;
    app.insert_ids(&["r"]).await;

    let failed = app.sweep().await;
    assert_eq!(
        (failed.recorded, failed.failed, failed.transitions),
        (1, 1, 0)
    );
    let (attempts, last_error, status): (i32, Option<String>, Option<String>) = sqlx::query_as(
        "select attempts, last_error, status from recon.payments where payment_id = 'r'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(last_error.unwrap().contains("HTTP 500"));
    assert_eq!(status, None);

    app.fast_forward().await;
    app.sweep().await;
    assert_eq!(app.transitions("r").await, [t(None, "process")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_the_same_verdict_twice_changes_nothing_the_second_time() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert("('w', 100, 'KZT', null, now(), null)").await;
    let claim = app.claim_one().await;
    let item = recorded(&claim, Reply::invoice("success", "90", "KZT"));

    let first = store::record_verdicts(app.pool(), std::slice::from_ref(&item), None)
        .await
        .unwrap();
    assert_eq!(
        (first.applied, first.transitions, first.flags_opened),
        (1, 1, 1)
    );
    let again = store::record_verdicts(app.pool(), &[item.clone(), item], None)
        .await
        .unwrap();
    assert_eq!(again, store::RecordOutcome::default());

    assert_eq!(app.transitions("w").await, [t(None, "success")]);
    assert_eq!(
        app.flag_history("w").await,
        [("amount_mismatch".to_owned(), false)]
    );
    let body_kept: String = sqlx::query_scalar(
        "select body->>'paymentStatus' from recon.status_transitions where payment_id = 'w'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(body_kept, "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_are_stored_exactly() {
    let app = TestApp::new(Scenario::new().payment(
        "x",
        [Reply::invoice("success", "9999999999.99", "KZT").with("fee", json!("12.35"))],
    ))
    .await;
    app.insert("('x', 9999999999.99, 'KZT', null, now(), null)")
        .await;
    app.sweep().await;
    let (amount, fee, difference): (String, String, String) = sqlx::query_as(
        "select received_amount::text, fee::text, difference::text
         from recon.reconciliation where payment_id = 'x'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        (amount.as_str(), fee.as_str(), difference.as_str()),
        ("9999999999.99", "12.35", "0.00")
    );
    assert_eq!(app.open_flags("x").await, Vec::<String>::new());
}
