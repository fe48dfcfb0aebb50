//! Money by day (issue 26, item 3): an event counts on the day the provider moved it, a late
//! fact for a closed month is booked on an open day naming the month it adjusts, and what
//! money makes of a paid payment (paid, partially refunded, refunded, reversed) is counted
//! by `report --money`, the summary's footer and the digest.

use rust_decimal::Decimal;
use serde_json::Value;

use crate::helpers::{TestApp, ok};
use freedompay_recon::simulator::Scenario;
use freedompay_recon::store;

/// Books a money event by hand (source `manual`), as a person or another system would.
pub async fn book(app: &TestApp, id: &str, kind: &str, amount: &str, at: &str, key: &str) {
    sqlx::query(
        "insert into recon.money_events
             (payment_id, kind, amount, provider_amount, currency, provider_at, source, fact_key)
         values ($1, $2, $3::numeric, $3::numeric, 'KZT', $4::timestamptz, 'manual', $5)",
    )
    .bind(id)
    .bind(kind)
    .bind(amount)
    .bind(at)
    .bind(key)
    .execute(app.pool())
    .await
    .unwrap();
}

/// (counts_on, adjusts_month) of one event, as text.
async fn dated(app: &TestApp, id: &str, key: &str) -> (String, Option<String>) {
    sqlx::query_as(
        "select counts_on::text, adjusts_month::text from recon.money_events
         where payment_id = $1 and fact_key = $2",
    )
    .bind(id)
    .bind(key)
    .fetch_one(app.pool())
    .await
    .unwrap()
}

async fn outcome(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar("select money_outcome from recon.payment_money where payment_id = $1")
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap()
}

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Four payments of October 2026 (Almaty), paid on the 10th: one kept, one partly refunded,
/// one refunded in two parts, one whose hold was released.
pub async fn october() -> TestApp {
    let app = TestApp::new(Scenario::new()).await;
    app.insert(
        "('kept', 1000, 'KZT', null, '2026-10-10T10:00:00+05:00', null),
         ('partly', 2000, 'KZT', null, '2026-10-10T11:00:00+05:00', null),
         ('twice', 3000, 'KZT', null, '2026-10-10T12:00:00+05:00', null),
         ('released', 4000, 'KZT', null, '2026-10-10T13:00:00+05:00', null)",
    )
    .await;
    for (id, amount) in [
        ("kept", "1000"),
        ("partly", "2000"),
        ("twice", "3000"),
        ("released", "4000"),
    ] {
        book(
            &app,
            id,
            "payment",
            amount,
            "2026-10-10T15:00:00+05:00",
            "payment",
        )
        .await;
    }
    book(
        &app,
        "partly",
        "refund",
        "-500.50",
        "2026-10-12T09:00:00+05:00",
        "child:p1",
    )
    .await;
    book(
        &app,
        "twice",
        "refund",
        "-1000",
        "2026-10-13T09:00:00+05:00",
        "child:t1",
    )
    .await;
    // Late in the evening of the 14th in Almaty: still the 14th there, the 14th in UTC too.
    book(
        &app,
        "twice",
        "refund",
        "-2000",
        "2026-10-14T23:30:00+05:00",
        "child:t2",
    )
    .await;
    book(
        &app,
        "released",
        "reversal",
        "-4000",
        "2026-10-11T09:00:00+05:00",
        "child:r1",
    )
    .await;
    app
}

/// October's money as `report --money` prints it (CSV).
async fn october_money(app: &TestApp) -> String {
    ok(&app
        .run(&["report", "--money", "--month", "2026-10", "--format", "csv"])
        .await)
}

/// Closes October as finance does; returns its money as signed.
async fn close_october(app: &TestApp) -> String {
    ok(&app
        .run(&[
            "close",
            "--month",
            "2026-10",
            "--note",
            "money checked",
            "--by",
            "b.sadykova",
        ])
        .await);
    october_money(app).await
}

/// Today, in the reporting zone.
async fn today(app: &TestApp) -> String {
    sqlx::query_scalar("select recon.report_day(now())::text")
        .fetch_one(app.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_counts_on_the_day_it_moved_and_each_paid_payment_gets_what_money_made_of_it() {
    let app = october().await;
    assert_eq!(
        dated(&app, "twice", "child:t2").await,
        ("2026-10-14".to_owned(), None),
        "the provider's date, in the reporting zone"
    );
    for (id, expected) in [
        ("kept", "paid"),
        ("partly", "partially_refunded"),
        ("twice", "refunded"),
        ("released", "reversed"),
    ] {
        assert_eq!(outcome(&app, id).await.as_deref(), Some(expected), "{id}");
    }
    // A refund never erases what was received.
    let (received, refunded, net): (Decimal, Decimal, Decimal) = sqlx::query_as(
        "select received, refunded, net_received from recon.payment_money
         where payment_id = 'partly'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        (received, refunded, net),
        (d("2000"), d("500.50"), d("1499.50"))
    );

    // Per payment, in the detail report: refunded, net_received, commission,
    // net_to_merchant, money_outcome close each row.
    let detail = ok(&app
        .run(&[
            "report", "--detail", "--month", "2026-10", "--format", "csv",
        ])
        .await);
    let partly = detail
        .lines()
        .find(|line| line.starts_with("partly,"))
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(
        partly.ends_with(",500.50,1499.50,,,partially_refunded"),
        "{partly}"
    );
    let kept = detail
        .lines()
        .find(|line| line.starts_with("kept,"))
        .unwrap();
    assert!(kept.ends_with(",0,1000,,,paid"), "{kept}");

    // By day: CSV rows are (day, currency, kind, events, payments, amount, adjusts_month).
    let csv = ok(&app
        .run(&["report", "--money", "--month", "2026-10", "--format", "csv"])
        .await);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows,
        [
            "day,currency,kind,events,payments,amount,adjusts_month",
            "2026-10-10,KZT,payment,4,4,10000,",
            "2026-10-11,KZT,reversal,1,1,-4000,",
            "2026-10-12,KZT,refund,1,1,-500.50,",
            "2026-10-13,KZT,refund,1,1,-1000,",
            "2026-10-14,KZT,refund,1,1,-2000,",
        ],
        "{csv}"
    );
    // The net equals the events summed by hand.
    let by_hand: Decimal = sqlx::query_scalar("select sum(amount) from recon.money_events")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(by_hand, d("2499.50"));
    let table = ok(&app.run(&["report", "--money", "--month", "2026-10"]).await);
    assert!(
        table.contains(
            "money moved, KZT: received 10000 (4), refunded 3500.50 (3), reversed 4000 (1), \
             net received 2499.50"
        ),
        "{table}"
    );
    assert!(
        table.contains(
            "payments with money back on these days, as they stand now: \
             partially_refunded 1, refunded 1, reversed 1"
        ),
        "{table}"
    );
    // The summary by payment day says the same under its rows; a day with only the payments
    // received counts no money back.
    let summary = ok(&app.run(&["report", "--month", "2026-10"]).await);
    assert!(summary.contains("net received 2499.50"), "{summary}");
    let first_day = ok(&app
        .run(&["report", "--from", "2026-10-10", "--to", "2026-10-10"])
        .await);
    assert!(
        first_day.contains("money moved, KZT: received 10000 (4), net received 10000"),
        "{first_day}"
    );
    assert!(!first_day.contains("money back"), "{first_day}");

    // The digest of the 12th to the 14th: the refunds of those days, and their payments.
    let digest = ok(&app
        .run(&["digest", "--from", "2026-10-12", "--to", "2026-10-14"])
        .await);
    assert!(
        digest.contains("money moved, KZT: refunded 3500.50 (3), net received -3500.50"),
        "{digest}"
    );
    assert!(
        digest.contains(
            "payments with money back, as they stand now: partially refunded 1, refunded 1"
        ),
        "{digest}"
    );
    let json: Value = serde_json::from_str(&ok(&app
        .run(&[
            "digest",
            "--from",
            "2026-10-11",
            "--to",
            "2026-10-11",
            "--format",
            "json",
        ])
        .await))
    .unwrap();
    assert_eq!(json["money"][0]["reversed"], "4000", "{json}");
    assert_eq!(json["money"][0]["net_received"], "-4000", "{json}");
    assert_eq!(
        json["money_back"],
        serde_json::json!([["reversed", 1]]),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_money_fact_for_a_closed_month_is_booked_on_an_open_day_and_the_month_never_changes()
{
    let app = october().await;
    let signed = close_october(&app).await;

    // The provider's refund of 20 October is seen only now: it counts today, adjusting October.
    book(
        &app,
        "kept",
        "refund",
        "-250",
        "2026-10-20T10:00:00+05:00",
        "child:k1",
    )
    .await;
    let today = today(&app).await;
    assert_eq!(
        dated(&app, "kept", "child:k1").await,
        (today.clone(), Some("2026-10-01".to_owned()))
    );
    assert_eq!(
        october_money(&app).await,
        signed,
        "a closed month's money never changes"
    );
    assert_eq!(
        outcome(&app, "kept").await.as_deref(),
        Some("partially_refunded")
    );
    let booked_today = ok(&app
        .run(&[
            "report", "--money", "--from", &today, "--to", &today, "--format", "csv",
        ])
        .await);
    assert!(
        booked_today.contains(&format!("{today},KZT,refund,1,1,-250,2026-10-01")),
        "{booked_today}"
    );
    let table = ok(&app.run(&["report", "--money", "--from", &today]).await);
    assert!(
        table.contains("1 of these events belong to closed months, booked here as adjustments"),
        "{table}"
    );

    // A fact of an open month still counts on its own day.
    app.insert("('november', 500, 'KZT', null, '2026-11-03T10:00:00+05:00', null)")
        .await;
    book(
        &app,
        "november",
        "payment",
        "500",
        "2026-11-03T10:05:00+05:00",
        "payment",
    )
    .await;
    assert_eq!(
        dated(&app, "november", "payment").await,
        ("2026-11-03".to_owned(), None)
    );

    // Reopened, the month takes its own facts again; the one booked as an adjustment stays
    // where it was booked (the record is append-only).
    ok(&app
        .run(&[
            "close",
            "--reopen",
            "2026-10",
            "--reason",
            "late refund",
            "--by",
            "b.sadykova",
        ])
        .await);
    book(
        &app,
        "partly",
        "refund",
        "-100",
        "2026-10-21T10:00:00+05:00",
        "child:p2",
    )
    .await;
    assert_eq!(
        dated(&app, "partly", "child:p2").await,
        ("2026-10-21".to_owned(), None)
    );
    assert_eq!(
        dated(&app, "kept", "child:k1").await,
        (today, Some("2026-10-01".to_owned()))
    );
}

/// What the daemon books (each statement dates its events itself, migration
/// `money_dated_per_statement`) counts by the rule a hand insert is dated by; a writer that
/// names a day the rule does not give is refused, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_the_daemon_books_is_dated_by_the_rule_and_no_writer_names_its_own_day() {
    use freedompay_recon::domain::money::{MoneyFact, MoneyKind, MoneySource};

    let app = october().await;
    let signed = close_october(&app).await;
    let today = today(&app).await;
    let kzt = "KZT".parse().unwrap();
    let at = |text: &str| Some(text.parse().unwrap());

    // The status API tells of two refunds: one of 20 October (closed), one of today.
    let late = MoneyFact::returned(
        MoneyKind::Refund,
        d("300"),
        kzt,
        Some("k9"),
        Some("kept"),
        Some("success"),
        at("2026-10-20T10:00:00+05:00"),
        MoneySource::StatusApi,
    );
    let written = store::money::record_facts(app.pool(), "kept", &[late])
        .await
        .unwrap();
    assert_eq!(written, 1);
    assert_eq!(
        dated(&app, "kept", "child:k9").await,
        (today.clone(), Some("2026-10-01".to_owned())),
        "a late fact for a closed month counts today, adjusting the month"
    );
    let now_fact = MoneyFact::returned(
        MoneyKind::Refund,
        d("100"),
        kzt,
        Some("p9"),
        Some("partly"),
        Some("success"),
        None,
        MoneySource::StatusApi,
    );
    store::money::record_facts(app.pool(), "partly", &[now_fact])
        .await
        .unwrap();
    assert_eq!(
        dated(&app, "partly", "child:p9").await,
        (today.clone(), None),
        "a fact of an open day counts on it"
    );

    // A writer naming its own day: the closed month's, or today without the month it adjusts.
    for (counts_on, adjusts) in [("2026-10-20", None::<&str>), (today.as_str(), None)] {
        let refused = sqlx::query(
            "insert into recon.money_events
                 (payment_id, kind, amount, provider_amount, currency, provider_at, source,
                  fact_key, counts_on, adjusts_month)
             values ('twice', 'refund', -10, -10, 'KZT', '2026-10-21T10:00:00+05:00', 'manual',
                     'child:t9', $1::date, $2::date)",
        )
        .bind(counts_on)
        .bind(adjusts)
        .execute(app.pool())
        .await
        .unwrap_err();
        let db = refused.as_database_error().unwrap();
        assert_eq!(db.code().as_deref(), Some("23514"), "{db}");
        assert!(
            db.message()
                .contains("leave counts_on and adjusts_month empty"),
            "{db}"
        );
    }
    let kept: i64 =
        sqlx::query_scalar("select count(*) from recon.money_events where fact_key = 'child:t9'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(kept, 0, "a refused statement writes nothing");
    // Naming the day the rule gives is accepted.
    sqlx::query(
        "insert into recon.money_events
             (payment_id, kind, amount, provider_amount, currency, provider_at, source,
              fact_key, counts_on, adjusts_month)
         values ('twice', 'refund', -10, -10, 'KZT', '2026-10-21T10:00:00+05:00', 'manual',
                 'child:t9', $1::date, '2026-10-01')",
    )
    .bind(&today)
    .execute(app.pool())
    .await
    .unwrap();
    assert_eq!(
        october_money(&app).await,
        signed,
        "a closed month's money never changes"
    );
}
