//! The outbox: an event for every transition, flag opened and flag resolved, written in the
//! changing transaction whoever makes the change, announced on `recon_events`, never changed.

use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::Value;
use sqlx::postgres::PgListener;

use crate::helpers::TestApp;

async fn events(app: &TestApp) -> Vec<(i64, String, String, Value)> {
    sqlx::query_as("select id, type, payment_id, payload from recon.events order by id")
        .fetch_all(app.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_and_flag_change_is_an_event_in_order() {
    let app = TestApp::new(Scenario::new().payment(
        "amt",
        [
            Reply::invoice("process", "4999.99", "KZT"),
            Reply::invoice("success", "5000.00", "KZT"),
        ],
    ))
    .await;
    app.insert("('amt', 5000, 'KZT', 'A-1', now(), null)").await;

    app.sweep().await;
    app.fast_forward().await;
    app.sweep().await;

    let events = events(&app).await;
    let kinds: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|(_, kind, _, payload)| {
            (
                kind.as_str(),
                payload
                    .get("to_status")
                    .or(payload.get("kind"))
                    .and_then(Value::as_str),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("status_changed", Some("process")),
            ("flag_opened", Some("amount_mismatch")),
            ("status_changed", Some("success")),
            ("flag_resolved", Some("amount_mismatch")),
        ],
        "{events:?}"
    );
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0));
    let changed = &events[2].3;
    assert_eq!(changed["from_status"], "process");
    assert_eq!(changed["amount"], "5000.00");
    assert_eq!(changed["expected_amount"], "5000");
    assert_eq!(changed["currency"], "KZT");
    assert_eq!(changed["order_id"], "A-1");
    let opened = &events[1].3;
    assert_eq!(
        (&opened["expected"], &opened["actual"]),
        (&Value::from("5000"), &Value::from("4999.99"))
    );
    assert_eq!(events[3].3["resolved_by"], "daemon");

    // As many events as history rows: nothing missing, nothing doubled.
    let history = app
        .count(
            "select (select count(*) from recon.status_transitions)
                  + (select count(*) from recon.discrepancies)
                  + (select count(*) from recon.discrepancies where resolved_at is not null)",
        )
        .await;
    assert_eq!(history, events.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_closed_by_hand_is_an_event_naming_who_and_why() {
    let app =
        TestApp::new(Scenario::new().payment("p", [Reply::invoice("success", "90", "KZT")])).await;
    app.insert("('p', 100, 'KZT', null, now(), null)").await;
    app.sweep().await;
    let closed = freedompay_recon::store::finance::resolve_flag(
        app.pool(),
        &freedompay_recon::domain::PaymentId::parse("p").unwrap(),
        freedompay_recon::domain::FlagKind::AmountMismatch,
        "aigerim",
        "refunded the difference",
    )
    .await
    .unwrap();
    assert!(closed);
    let last = events(&app).await.pop().unwrap();
    assert_eq!(last.1, "flag_resolved");
    assert_eq!(last.3["resolved_by"], "aigerim");
    assert_eq!(last.3["resolution"], "refunded the difference");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_announced_after_commit_and_only_then() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert("('n-1', 10, 'KZT', null, now(), null)").await;
    let mut listener = PgListener::connect_with(app.pool()).await.unwrap();
    listener.listen("recon_events").await.unwrap();

    // A change rolled back announces nothing...
    let mut tx = app.pool().begin().await.unwrap();
    sqlx::query(
        "insert into recon.status_transitions
             (payment_id, observation_no, from_status, to_status, observed_at, body)
         values ('n-1', 1, null, 'process', now(), '{}')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    // ...a committed one announces its event's id.
    app.insert_first_transition("n-1").await;
    let notification = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .unwrap();
    let id: i64 = sqlx::query_scalar("select id from recon.events")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(notification.payload(), id.to_string());
    assert_eq!(app.count("select count(*) from recon.events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_history_only_their_delivery_state_changes() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert("('h-1', 10, 'KZT', null, now(), null)").await;
    app.insert_first_transition("h-1").await;
    for refused in [
        "update recon.events set payload = '{}'",
        "update recon.events set type = 'flag_opened'",
        "delete from recon.events",
        "truncate recon.events",
    ] {
        let error = sqlx::query(refused)
            .execute(app.pool())
            .await
            .expect_err(refused)
            .to_string();
        assert!(error.contains("append-only"), "{refused}: {error}");
    }
    sqlx::query("update recon.events set delivered_at = now(), attempts = 1")
        .execute(app.pool())
        .await
        .expect("delivery state may change");
}
