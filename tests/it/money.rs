//! Money events (`recon.money_events`): the payment received, written by the poll that sees it
//! paid, and the refunds the Merchant status API lists, each once, append-only; summed per
//! payment in `recon.payment_money`, where a refund never erases what was received.

use std::time::Duration;

use chrono::FixedOffset;
use freedompay_recon::outbound;
use freedompay_recon::provider::merchant_status::{Lookup, MerchantAccount, fetch_status};
use freedompay_recon::simulator::{Refund, Reply, Scenario};
use freedompay_recon::store;
use rust_decimal::Decimal;
use secrecy::SecretString;
use sqlx::PgPool;

use crate::helpers::TestApp;

/// (kind, amount, source, fact_key) of a payment's money events, in key order.
async fn events(pool: &PgPool, id: &str) -> Vec<(String, Decimal, String, String)> {
    sqlx::query_as(
        "select kind, amount, source, fact_key from recon.money_events
         where payment_id = $1 order by fact_key",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// (received, refunded, net_received) of `recon.payment_money`.
async fn money(pool: &PgPool, id: &str) -> (Decimal, Decimal, Decimal) {
    sqlx::query_as(
        "select received, refunded, net_received from recon.payment_money where payment_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_that_sees_a_payment_paid_books_what_it_received_once() {
    let app = TestApp::new(
        Scenario::new()
            .payment(
                "m1",
                [
                    Reply::invoice("process", "5000.50", "KZT"),
                    Reply::invoice("success", "5000.50", "KZT"),
                ],
            )
            .payment("m2", [Reply::invoice("error", "700", "KZT")]),
    )
    .await;
    let pool = app.pool();
    app.insert_ids(&["m1", "m2"]).await;
    app.sweep().await;
    assert!(events(pool, "m1").await.is_empty(), "in progress: no money yet");
    app.fast_forward().await;
    let swept = app.sweep().await;
    assert_eq!(swept.money_events, 1, "{swept:?}");
    let booked = vec![(
        "payment".to_owned(),
        d("5000.50"),
        "poll".to_owned(),
        "payment".to_owned(),
    )];
    assert_eq!(events(pool, "m1").await, booked);
    assert!(events(pool, "m2").await.is_empty(), "a failed payment received nothing");
    // The confirmation and later rechecks say success again: nothing more is booked.
    for _ in 0..2 {
        app.fast_forward().await;
        app.sweep().await;
    }
    assert_eq!(events(pool, "m1").await, booked);
    assert_eq!(money(pool, "m1").await, (d("5000.50"), d("0"), d("5000.50")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_the_status_api_lists_are_booked_once_and_never_erase_what_was_received() {
    let app = TestApp::new(Scenario::new().payment(
        "123456789",
        [Reply::invoice("success", "5000", "KZT")],
    ))
    .await;
    let pool = app.pool();
    app.insert_ids(&["123456789"]).await;
    app.sweep().await;
    let account = MerchantAccount {
        id: "555555".into(),
        secret: SecretString::from("the-merchant-secret-key".to_owned()),
        script: "get_status3.php".into(),
    };
    app.sim.merchant_account(account.clone());
    let client = outbound::client(Duration::from_secs(5), None).unwrap();
    let almaty = FixedOffset::east_opt(5 * 3600).unwrap();
    let ask_and_book = || async {
        let answer = fetch_status(
            &client,
            &app.sim.base_url(),
            &account,
            &Lookup::PaymentId("123456789".into()),
            almaty,
        )
        .await
        .expect("a verified answer");
        store::money::record_facts(pool, "123456789", &answer.money_facts(None))
            .await
            .unwrap()
    };
    // No refund yet: the payment the poll booked is the status API's too, not a second one.
    assert_eq!(ask_and_book().await, 0);
    for (id, amount, date) in [
        ("123456790", "1500", "2025-07-12 10:00:00"),
        ("123456791", "250.50", "2025-07-13 09:30:00"),
    ] {
        app.sim.refund(
            "123456789",
            Refund {
                payment_id: id.into(),
                amount: amount.into(),
                date: date.into(),
            },
        );
    }
    assert_eq!(ask_and_book().await, 2);
    assert_eq!(ask_and_book().await, 0, "asked again: nothing doubled");
    assert_eq!(
        events(pool, "123456789").await,
        [
            ("refund", d("-1500"), "status_api", "child:123456790"),
            ("refund", d("-250.50"), "status_api", "child:123456791"),
            ("payment", d("5000"), "poll", "payment"),
        ]
        .map(|(k, a, s, f)| (k.to_owned(), a, s.to_owned(), f.to_owned()))
    );
    assert_eq!(
        money(pool, "123456789").await,
        (d("5000"), d("1750.50"), d("3249.50"))
    );
    let refunded_at: Vec<String> = sqlx::query_scalar(
        "select to_char(provider_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI') from recon.money_events
         where kind = 'refund' order by provider_at",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(refunded_at, ["2025-07-12 05:00", "2025-07-13 04:30"], "the provider's dates");
    // A payment nobody tracks books nothing.
    assert_eq!(
        store::money::record_facts(pool, "unknown", &answer_facts_for_test())
            .await
            .unwrap(),
        0
    );
}

fn answer_facts_for_test() -> Vec<freedompay_recon::domain::money::MoneyFact> {
    vec![freedompay_recon::domain::money::MoneyFact::payment(
        d("1"),
        "KZT".parse().unwrap(),
        None,
        freedompay_recon::domain::money::MoneySource::Manual,
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_events_are_append_only_once_per_fact_and_signed_for_the_merchant() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool();
    app.insert_ids(&["h1"]).await;
    let insert = |kind: &'static str, amount: &'static str, key: &'static str| async move {
        sqlx::query(
            "insert into recon.money_events (payment_id, kind, amount, currency, source, fact_key)
             values ('h1', $1, $2::numeric, 'KZT', 'manual', $3)",
        )
        .bind(kind)
        .bind(amount)
        .bind(key)
        .execute(pool)
        .await
        .map_err(|e| e.as_database_error().unwrap().code().unwrap().into_owned())
    };
    insert("payment", "100", "payment").await.unwrap();
    // By hand, a second row for the same fact is refused as a unique violation.
    assert_eq!(insert("payment", "100", "payment").await.unwrap_err(), "23505");
    // Signs: money back is negative, received is positive.
    assert_eq!(insert("refund", "10", "child:1").await.unwrap_err(), "23514");
    assert_eq!(insert("payment", "-10", "payment:2").await.unwrap_err(), "23514");
    insert("refund", "-10", "child:1").await.unwrap();
    for change in [
        "update recon.money_events set amount = -1 where fact_key = 'child:1'",
        "delete from recon.money_events",
        "truncate recon.money_events",
    ] {
        let e = sqlx::query(change).execute(pool).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{change}: {e}");
    }
    assert_eq!(money(pool, "h1").await, (d("100"), d("10"), d("90")));
}
