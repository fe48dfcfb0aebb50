//! Every flag kind, raised and (where the rules allow) resolved by a later observation.

use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::json;

use crate::helpers::TestApp;

fn flag(kind: &str, resolved: bool) -> (String, bool) {
    (kind.to_owned(), resolved)
}

/// Runs `sweeps` sweeps, letting time pass between them.
async fn sweeps(app: &TestApp, sweeps: usize) {
    for _ in 0..sweeps {
        app.sweep().await;
        app.fast_forward().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amount_currency_and_order_mismatches_are_raised_then_cleared() {
    let app = TestApp::new(
        Scenario::new()
            .payment(
                "amt",
                [
                    Reply::invoice("process", "4999.99", "KZT"),
                    Reply::invoice("process", "5000.00", "KZT"),
                ],
            )
            .payment(
                "cur",
                [
                    Reply::invoice("process", "10", "KZT"),
                    Reply::invoice("process", "10", "USD"),
                ],
            )
            .payment(
                "ord",
                [
                    Reply::invoice("process", "10", "KZT").with("orderId", json!("B-2")),
                    Reply::invoice("process", "10", "KZT").with("orderId", json!("A-1")),
                ],
            ),
    )
    .await;
    app.insert(
        "('amt', 5000, 'KZT', null, now(), null),
         ('cur', 10, 'USD', null, now(), null),
         ('ord', 10, 'KZT', 'A-1', now(), null)",
    )
    .await;

    app.sweep().await;
    assert_eq!(app.open_flags("amt").await, ["amount_mismatch"]);
    assert_eq!(app.open_flags("cur").await, ["currency_mismatch"]);
    assert_eq!(app.open_flags("ord").await, ["order_mismatch"]);
    let (expected, actual): (String, String) = sqlx::query_as(
        "select expected, actual from recon.open_discrepancies where payment_id = 'amt'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!((expected.as_str(), actual.as_str()), ("5000", "4999.99"));

    app.fast_forward().await;
    let outcome = app.sweep().await;
    assert_eq!(outcome.flags_resolved, 3);
    for (id, kind) in [
        ("amt", "amount_mismatch"),
        ("cur", "currency_mismatch"),
        ("ord", "order_mismatch"),
    ] {
        assert_eq!(app.open_flags(id).await, Vec::<String>::new(), "{id}");
        assert_eq!(app.flag_history(id).await, [flag(kind, true)], "{id}");
    }
    let resolved_by: String =
        sqlx::query_scalar("select resolved_by from recon.discrepancies where payment_id = 'amt'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(resolved_by, "daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_compared_when_nothing_was_expected_and_tolerance_applies() {
    let app = TestApp::with(
        Scenario::new()
            .payment(
                "blank",
                [Reply::invoice("success", "1", "USD").with("orderId", json!("z"))],
            )
            .payment("close", [Reply::invoice("success", "4999.99", "KZT")])
            .payment("far", [Reply::invoice("success", "4999.98", "KZT")]),
        &[("FREEDOMPAY_RECON__RECONCILE__AMOUNT_TOLERANCE", "0.01")],
    )
    .await;
    app.insert_ids(&["blank"]).await;
    app.insert(
        "('close', 5000, 'KZT', null, now(), null), ('far', 5000, 'KZT', null, now(), null)",
    )
    .await;
    app.sweep().await;
    assert_eq!(app.open_flags("blank").await, Vec::<String>::new());
    assert_eq!(app.open_flags("close").await, Vec::<String>::new());
    assert_eq!(app.open_flags("far").await, ["amount_mismatch"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_stays_a_single_open_row_while_the_condition_holds() {
    let app =
        TestApp::new(Scenario::new().payment("m", [Reply::invoice("process", "1", "KZT")])).await;
    app.insert("('m', 2, 'KZT', null, now(), null)").await;
    sweeps(&app, 4).await;
    assert_eq!(
        app.flag_history("m").await,
        [flag("amount_mismatch", false)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_exceeded_is_raised_past_lifetime_and_grace_and_kept_when_paid_late() {
    let long_ago = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let app = TestApp::new(
        Scenario::new()
            .payment(
                "late",
                [
                    Reply::invoice("process", "10", "KZT").with("lifetime", json!(long_ago)),
                    Reply::invoice("success", "10", "KZT").with("lifetime", json!(long_ago)),
                ],
            )
            // Seconds count from created_at: 600 s after a creation 2 hours ago has passed.
            .payment(
                "secs",
                [Reply::invoice("waiting", "10", "KZT").with("lifetime", json!(600))],
            )
            // The merchant's own expiry applies while the provider states none.
            .payment("merchant", [Reply::not_found()]),
    )
    .await;
    app.insert_ids(&["late"]).await;
    app.insert(
        "('secs', null, null, null, now() - interval '2 hours', null),
         ('merchant', null, null, null, now(), now() - interval '1 hour')",
    )
    .await;

    app.sweep().await;
    // Raised, and closed in the same transaction by the rule expired_unpaid: no money moved,
    // so nobody has anything to do; the payment's outcome says it.
    for id in ["late", "secs", "merchant"] {
        assert_eq!(app.open_flags(id).await, Vec::<String>::new(), "{id}");
        assert_eq!(
            app.flag_history(id).await,
            [flag("lifetime_exceeded", true)]
        );
        let (by, outcome): (String, String) = sqlx::query_as(
            "select d.resolved_by, r.outcome from recon.discrepancies d
             join recon.reconciliation r using (payment_id) where d.payment_id = $1",
        )
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap();
        assert_eq!(
            (by.as_str(), outcome.as_str()),
            ("rule:expired_unpaid", "expired_unpaid")
        );
    }
    let source: String = sqlx::query_scalar(
        "select expiry_source from recon.reconciliation where payment_id = 'merchant'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(source, "merchant");

    // Paid after it was seen unpaid past its lifetime: late, a flag for a person.
    app.fast_forward().await;
    app.sweep().await;
    assert_eq!(app.status("late").await.as_deref(), Some("success"));
    assert_eq!(
        app.flag_history("late").await,
        [
            flag("lifetime_exceeded", true),
            flag("paid_after_deadline", false)
        ]
    );
    let queue: Vec<String> =
        sqlx::query_scalar("select kind from recon.open_discrepancies where payment_id = 'late'")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(queue, ["paid_after_deadline"]);

    // A person settles it (a refund); the confirmation poll sees the same late payment and
    // leaves the resolution as it is.
    sqlx::query(
        "update recon.discrepancies set resolved_at = now(), resolved_by = 'aigerim',
             resolution = 'refunded'
         where payment_id = 'late' and resolved_at is null",
    )
    .execute(app.pool())
    .await
    .unwrap();
    app.fast_forward().await;
    app.sweep().await;
    assert_eq!(app.sim.calls()["late"], 3, "the confirmation poll was made");
    assert_eq!(
        app.flag_history("late").await,
        [
            flag("lifetime_exceeded", true),
            flag("paid_after_deadline", true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_flagged_only_after_the_grace_period_and_cleared_by_an_answer() {
    let app = TestApp::new(
        Scenario::new()
            .payment("new", [Reply::not_found()])
            .payment(
                "old",
                [Reply::not_found(), Reply::invoice("process", "1", "KZT")],
            ),
    )
    .await;
    app.insert_ids(&["new"]).await;
    app.insert("('old', null, null, null, now() - interval '1 hour', null)")
        .await;

    app.sweep().await;
    assert_eq!(
        app.open_flags("new").await,
        Vec::<String>::new(),
        "normal at first"
    );
    assert_eq!(app.open_flags("old").await, ["not_found"]);
    assert_eq!(app.status("old").await, None);
    assert!(app.transitions("old").await.is_empty());

    app.fast_forward().await;
    app.sweep().await;
    assert_eq!(app.flag_history("old").await, [flag("not_found", true)]);
    let not_found_since: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select not_found_since from recon.payments where payment_id = 'old'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(not_found_since, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_status_is_kept_verbatim_flagged_and_cleared_when_known() {
    let body: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/provider/responses/unknown-status-extra-fields.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let app = TestApp::new(Scenario::new().payment(
        "u",
        [
            Reply::Json {
                body,
                http_status: 200,
            },
            Reply::invoice("success", "700", "KZT"),
        ],
    ))
    .await;
    app.insert_ids(&["u"]).await;
    app.sweep().await;
    assert_eq!(app.status("u").await.as_deref(), Some("refunded"));
    assert_eq!(app.open_flags("u").await, ["unknown_status"]);
    let extra: String = sqlx::query_scalar(
        "select t.body->>'channel' from recon.payments p
         join recon.status_transitions t on t.payment_id = p.payment_id
          and t.observation_no = p.last_transition_no and t.observed_at = p.last_transition_at
         where p.payment_id = 'u'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(extra, "card", "unknown fields are kept in the raw body");

    app.fast_forward().await;
    app.sweep().await;
    assert_eq!(app.flag_history("u").await, [flag("unknown_status", true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_status_that_changes_is_flagged_and_left_for_a_person() {
    let app = TestApp::new(Scenario::new().payment(
        "t",
        [
            Reply::invoice("incomplete", "10", "KZT"),
            Reply::invoice("success", "10", "KZT"),
        ],
    ))
    .await;
    app.insert_ids(&["t"]).await;
    sweeps(&app, 4).await;
    let history: Vec<(Option<String>, String)> = app.transitions("t").await;
    assert_eq!(
        history,
        [
            (None, "incomplete".to_owned()),
            (Some("incomplete".to_owned()), "success".to_owned())
        ]
    );
    let (expected, actual): (String, String) = sqlx::query_as(
        "select expected, actual from recon.discrepancies
         where payment_id = 't' and kind = 'terminal_status_changed'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        (expected.as_str(), actual.as_str()),
        ("incomplete", "success")
    );
    // Later identical answers do not clear it; the payment is confirmed and done. Paid after
    // the provider said the time ran out, it was paid late too.
    assert_eq!(
        app.open_flags("t").await,
        ["paid_after_deadline", "terminal_status_changed"]
    );
    assert_eq!(app.sim.calls()["t"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_is_abandoned_after_the_maximum_age_and_the_flag_clears_on_a_terminal_answer() {
    let app = TestApp::new(Scenario::new().payment(
        "old",
        [
            Reply::invoice("process", "10", "KZT"),
            Reply::invoice("success", "10", "KZT"),
        ],
    ))
    .await;
    app.insert("('old', null, null, null, now() - interval '8 days', null)")
        .await;
    app.sweep().await;
    assert_eq!(app.open_flags("old").await, ["polling_abandoned"]);
    app.fast_forward().await;
    assert_eq!(
        app.sweep().await.claimed,
        0,
        "abandoned payments are not polled"
    );

    // An operator asks for one more look.
    sqlx::query("update recon.payments set next_check_at = now() where payment_id = 'old'")
        .execute(app.pool())
        .await
        .unwrap();
    app.sweep().await;
    // Abandonment ends with the terminal answer; paid after the lifetime it outlived, the
    // payment was paid late.
    assert_eq!(app.open_flags("old").await, ["paid_after_deadline"]);
    assert_eq!(
        app.flag_history("old").await,
        [
            flag("lifetime_exceeded", true),
            flag("polling_abandoned", true),
            flag("paid_after_deadline", false)
        ]
    );
}
