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
    assert!(
        events(pool, "m1").await.is_empty(),
        "in progress: no money yet"
    );
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
    assert!(
        events(pool, "m2").await.is_empty(),
        "a failed payment received nothing"
    );
    // The confirmation and later rechecks say success again: nothing more is booked.
    for _ in 0..2 {
        app.fast_forward().await;
        app.sweep().await;
    }
    assert_eq!(events(pool, "m1").await, booked);
    assert_eq!(
        money(pool, "m1").await,
        (d("5000.50"), d("0"), d("5000.50"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_the_status_api_lists_are_booked_once_and_never_erase_what_was_received() {
    let app = TestApp::new(
        Scenario::new().payment("123456789", [Reply::invoice("success", "5000", "KZT")]),
    )
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
    assert_eq!(
        refunded_at,
        ["2025-07-12 05:00", "2025-07-13 04:30"],
        "the provider's dates"
    );
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
    assert_eq!(
        insert("payment", "100", "payment").await.unwrap_err(),
        "23505"
    );
    // Signs: money back is negative, received is positive.
    assert_eq!(
        insert("refund", "10", "child:1").await.unwrap_err(),
        "23514"
    );
    assert_eq!(
        insert("payment", "-10", "payment:2").await.unwrap_err(),
        "23514"
    );
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

const MERCHANT_SECRET: &str = "the-merchant-secret-key";

/// A daemon with merchant credentials, watching on a ladder of seconds.
async fn watching(scenario: Scenario, secret: &str) -> TestApp {
    let app = TestApp::with(
        scenario,
        &[
            ("FREEDOMPAY_RECON__MERCHANT__ID", "555555"),
            ("FREEDOMPAY_RECON__MERCHANT__SECRET", secret),
            ("FREEDOMPAY_RECON__REFUNDS__WATCH", "1h,2h"),
            ("FREEDOMPAY_RECON__REFUNDS__WATCH_FOR", "3h"),
        ],
    )
    .await;
    app.sim.merchant_account(MerchantAccount {
        id: "555555".into(),
        secret: SecretString::from(MERCHANT_SECRET.to_owned()),
        script: "get_status3.php".into(),
    });
    app
}

/// Time passes for the watch: every look is due now, as if `since` were `hours_ago`.
async fn watch_time_passes(pool: &PgPool, hours_ago: i64) {
    sqlx::query(
        "update recon.refund_watch
         set since = now() - make_interval(hours => $1::int), next_at = now()",
    )
    .bind(hours_ago as i32)
    .execute(pool)
    .await
    .unwrap();
}

/// (looks, attempts, seconds until the next look, last_error) of a payment's watch.
async fn watch_row(pool: &PgPool, id: &str) -> Option<(i32, i32, i64, Option<String>)> {
    sqlx::query_as(
        "select looks, attempts, extract(epoch from next_at - now())::int8, last_error
         from recon.refund_watch where payment_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_payment_is_watched_on_its_ladder_and_a_refund_found_is_booked_once() {
    let app = watching(
        Scenario::new().payment("555", [Reply::invoice("success", "900", "KZT")]),
        MERCHANT_SECRET,
    )
    .await;
    let pool = app.pool();
    assert!(app.engine.watches_refunds());
    app.insert_ids(&["555"]).await;
    let swept = app.sweep().await;
    assert_eq!((swept.money_events, swept.watch.looks), (1, 0), "{swept:?}");
    // Booked paid: watched, its first look an hour after it was seen paid.
    let (looks, attempts, in_secs, _) = watch_row(pool, "555").await.expect("watched");
    assert_eq!((looks, attempts), (0, 0));
    assert!((3590..=3600).contains(&in_secs), "{in_secs}");

    app.sim.refund(
        "555",
        Refund {
            payment_id: "556".into(),
            amount: "300".into(),
            date: "2026-12-06 10:00:00".into(),
        },
    );
    watch_time_passes(pool, 1).await;
    let swept = app.sweep().await;
    assert_eq!(
        (
            swept.watch.looks,
            swept.watch.money_events,
            swept.money_events
        ),
        (1, 1, 1),
        "{swept:?}"
    );
    let (looks, _, in_secs, _) = watch_row(pool, "555").await.expect("still watched");
    assert_eq!(looks, 1);
    assert!((3590..=3600).contains(&in_secs), "the 2 h look: {in_secs}");
    assert_eq!(money(pool, "555").await, (d("900"), d("300"), d("600")));

    // The last look finds the same refund: nothing doubled, and the watch ends.
    watch_time_passes(pool, 2).await;
    let swept = app.sweep().await;
    assert_eq!((swept.watch.looks, swept.watch.money_events), (1, 0));
    assert_eq!(watch_row(pool, "555").await, None, "the watch is over");
    assert_eq!(money(pool, "555").await, (d("900"), d("300"), d("600")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_does_not_verify_is_no_evidence_and_is_asked_again_later() {
    let app = watching(
        Scenario::new().payment("777", [Reply::invoice("success", "100", "KZT")]),
        "not-the-merchant-secret-key",
    )
    .await;
    let pool = app.pool();
    app.insert_ids(&["777"]).await;
    app.sweep().await;
    app.sim.refund(
        "777",
        Refund {
            payment_id: "778".into(),
            amount: "100".into(),
            date: "2026-12-06 10:00:00".into(),
        },
    );
    for attempt in 1..=2 {
        watch_time_passes(pool, 1).await;
        let swept = app.sweep().await;
        assert_eq!((swept.watch.looks, swept.watch.failed), (0, 1), "{swept:?}");
        let (looks, attempts, in_secs, error) = watch_row(pool, "777").await.unwrap();
        assert_eq!((looks, attempts), (0, attempt));
        // 5 minutes, then 10: backing off, never a loop.
        let wait = 300 * (1 << (attempt - 1));
        assert!(
            (wait - 10..=wait).contains(&in_secs),
            "{attempt}: {in_secs}"
        );
        assert!(error.unwrap().contains("pg_sig"), "the reason is kept");
    }
    assert_eq!(
        money(pool, "777").await,
        (d("100"), d("0"), d("100")),
        "no refund booked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_merchant_credentials_paid_payments_wait_to_be_watched() {
    let app =
        TestApp::new(Scenario::new().payment("888", [Reply::invoice("success", "50", "KZT")]))
            .await;
    let pool = app.pool();
    app.insert_ids(&["888"]).await;
    app.sweep().await;
    watch_time_passes(pool, 1).await;
    let swept = app.sweep().await;
    assert!(!app.engine.watches_refunds());
    assert_eq!(swept.watch, Default::default(), "nobody asks");
    assert_eq!(
        watch_row(pool, "888").await.map(|(looks, ..)| looks),
        Some(0),
        "enrolled, so credentials set later watch it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_word_invoice_info_does_not_document_asks_the_status_api_at_once_and_backs_off() {
    let app = watching(
        Scenario::new().payment(
            "888",
            [
                Reply::invoice("success", "900", "KZT"),
                Reply::invoice("refunded", "900", "KZT"),
            ],
        ),
        MERCHANT_SECRET,
    )
    .await;
    let pool = app.pool();
    app.insert_ids(&["888"]).await;
    app.sweep().await;
    app.sim.refund(
        "888",
        Refund {
            payment_id: "889".into(),
            amount: "900".into(),
            date: "2026-12-06 10:00:00".into(),
        },
    );
    // The confirmation poll reads `refunded`: the watch looks in the same sweep, an hour
    // before its ladder would have, and the status API's refund is booked.
    app.fast_forward().await;
    let swept = app.sweep().await;
    assert_eq!(
        (swept.watch.looks, swept.watch.money_events),
        (1, 1),
        "{swept:?}"
    );
    assert_eq!(app.status("888").await.as_deref(), Some("refunded"));
    // The word is unknown_status's (not terminal_status_changed as well); the refund, which
    // no refund imported here explains, is unexpected_refund's.
    assert_eq!(
        app.open_flags("888").await,
        ["unexpected_refund", "unknown_status"]
    );
    let outcome: String = sqlx::query_scalar(
        "select money_outcome from recon.payment_money where payment_id = '888'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(outcome, "refunded");
    assert_eq!(money(pool, "888").await, (d("900"), d("900"), d("0")));

    // Not a tight loop: the next poll waits at least the ladder's step, longer each time.
    let wait = || async {
        sqlx::query_scalar::<_, i64>(
            "select extract(epoch from next_check_at - last_checked_at)::int8
             from recon.payments where payment_id = '888'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let first = wait().await;
    assert!(first >= 60, "{first}");
    let checks = || app.count("select checks::int8 from recon.payments where payment_id = '888'");
    let before = checks().await;
    for _ in 0..5 {
        app.sweep().await;
    }
    assert_eq!(checks().await, before, "nothing due meanwhile");
    app.fast_forward().await;
    let swept = app.sweep().await;
    assert_eq!(
        swept.watch.looks, 0,
        "asked once, when the word appeared: {swept:?}"
    );
    assert!(wait().await >= first, "backs off");
    assert_eq!(
        money(pool, "888").await,
        (d("900"), d("900"), d("0")),
        "nothing doubled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_is_money_back_and_a_status_answer_that_disagrees_is_flagged_once() {
    let app = watching(
        Scenario::new()
            .payment("700", [Reply::invoice("success", "1200", "KZT")])
            .payment("701", [Reply::invoice("success", "300", "KZT")]),
        MERCHANT_SECRET,
    )
    .await;
    let pool = app.pool();
    app.insert_ids(&["700", "701"]).await;
    app.sweep().await;
    app.sim.reverse(
        "700",
        Refund {
            payment_id: "7001".into(),
            amount: "1200".into(),
            date: "2026-12-06 11:00:00".into(),
        },
    );
    app.sim.status_amount("701", "3000");
    watch_time_passes(pool, 1).await;
    let swept = app.sweep().await;
    assert_eq!(swept.watch.looks, 2, "{swept:?}");
    let kinds: Vec<(String, Decimal)> = sqlx::query_as(
        "select kind, amount from recon.money_events where payment_id = '700' order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            ("payment".to_owned(), d("1200")),
            ("reversal".to_owned(), d("-1200"))
        ]
    );
    let outcome: String = sqlx::query_scalar(
        "select money_outcome from recon.payment_money where payment_id = '700'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(outcome, "reversed");
    let flags: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select kind, expected, actual from recon.discrepancies where payment_id = '701'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        flags,
        [(
            "status_api_disagrees".to_owned(),
            Some("invoice/info: 300 KZT, order (none)".to_owned()),
            Some("status API: 3000 KZT, order (none)".to_owned())
        )]
    );
    // Asked again, the same disagreement: still one flag. Agreeing again clears it.
    watch_time_passes(pool, 2).await;
    app.sweep().await;
    assert_eq!(
        app.count("select count(*) from recon.discrepancies where payment_id = '701'")
            .await,
        1
    );
    app.sim.status_amount("701", "300");
    sqlx::query("insert into recon.refund_watch (payment_id, since, next_at) values ('701', now(), now()) on conflict (payment_id) do update set next_at = now()")
        .execute(pool)
        .await
        .unwrap();
    app.sweep().await;
    assert_eq!(
        app.count("select count(*) from recon.open_flags where payment_id = '701'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_requests_keep_to_their_own_limit_when_one_is_set() {
    let ids: Vec<String> = (0..11).map(|n| format!("60{n:02}")).collect();
    let mut scenario = Scenario::new();
    for id in &ids {
        scenario = scenario.payment(id, [Reply::invoice("success", "100", "KZT")]);
    }
    let app = TestApp::with(
        scenario,
        &[
            ("FREEDOMPAY_RECON__MERCHANT__ID", "555555"),
            ("FREEDOMPAY_RECON__MERCHANT__SECRET", MERCHANT_SECRET),
            ("FREEDOMPAY_RECON__MERCHANT__RATE_PER_SECOND", "5"),
            ("FREEDOMPAY_RECON__REFUNDS__WATCH", "1h,2h"),
            ("FREEDOMPAY_RECON__REFUNDS__WATCH_FOR", "3h"),
        ],
    )
    .await;
    app.sim.merchant_account(MerchantAccount {
        id: "555555".into(),
        secret: SecretString::from(MERCHANT_SECRET.to_owned()),
        script: "get_status3.php".into(),
    });
    app.insert_ids(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    app.sweep().await;
    watch_time_passes(app.pool(), 1).await;
    let started = std::time::Instant::now();
    let swept = app.sweep().await;
    let took = started.elapsed();
    assert_eq!(swept.watch.looks, 11, "{swept:?}");
    // Eleven requests at 5 a second: the first at once, ten more 200 ms apart.
    assert!(took >= Duration::from_millis(1900), "{took:?}");
}
