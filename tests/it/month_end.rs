//! Closing a month (issue 24): the month's exceptions by payment date, and footers that count
//! what the filters select.

use freedompay_recon::simulator::Scenario;

use crate::helpers::{TestApp, ok};

/// Payments either side of the end of November in Almaty (UTC+5), each with an open
/// `amount_mismatch` flag opened in December: November's figures are closed by their
/// payments' day, whenever their flags opened.
async fn november_and_december(app: &TestApp) {
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency, created_at)
         values ('nov-early', 100, 'KZT', '2026-11-02T10:00:00+05:00'),
                ('nov-last', 100, 'KZT', '2026-11-30T23:30:00+05:00'),
                ('dec-first', 100, 'USD', '2026-12-01T00:30:00+05:00')",
    )
    .execute(app.pool())
    .await
    .unwrap();
    sqlx::query(
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         select payment_id, 'amount_mismatch', '100', '90', '2026-12-03T12:00:00+05:00'
         from recon.payments",
    )
    .execute(app.pool())
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flags_of_a_months_payments_are_listed_whenever_they_opened_with_the_payments_day() {
    let app = TestApp::new(Scenario::new()).await;
    november_and_december(&app).await;

    // By the day a flag opened, November has none: what the issue saw.
    let by_opening = ok(&app
        .run(&[
            "report",
            "--flags",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
        ])
        .await);
    assert!(by_opening.contains("no open flags"), "{by_opening}");

    let csv = ok(&app
        .run(&["report", "--flags", "--month", "2026-11", "--format", "csv"])
        .await);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[column("payment_id")].to_owned(),
                r[column("payment_day")].to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("nov-early".to_owned(), "2026-11-02".to_owned()),
            ("nov-last".to_owned(), "2026-11-30".to_owned())
        ],
        "November's payments, by their Almaty day, and no other"
    );
    assert_eq!(headers.iter().next_back(), Some("note"), "notes stay last");

    let table = ok(&app.run(&["report", "--flags", "--month", "2026-11"]).await);
    assert!(
        table.contains(
            "2 open flags needing a person on payments created from 2026-11-01 to 2026-11-30"
        ),
        "{table}"
    );
    let refused = app
        .run(&[
            "report",
            "--flags",
            "--month",
            "2026-11",
            "--from",
            "2026-11-01",
        ])
        .await;
    assert_eq!(refused.status.code(), Some(2));
    let bad = app.run(&["report", "--month", "2026-13"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("use YYYY-MM"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summarys_open_flags_line_counts_the_payments_it_shows() {
    let app = TestApp::new(Scenario::new()).await;
    november_and_december(&app).await;
    let november = ok(&app.run(&["report", "--month", "2026-11"]).await);
    assert!(
        november.contains("open flags needing a person now, on these payments: 2 "),
        "{november}"
    );
    let usd = ok(&app.run(&["report", "--currency", "USD"]).await);
    assert!(
        usd.contains("open flags needing a person now, on these payments: 1 "),
        "{usd}"
    );
    let all = ok(&app.run(&["report"]).await);
    assert!(
        all.contains("open flags needing a person now, on these payments: 3 "),
        "{all}"
    );
}

/// `report --detail --as-of D` exited 0 and printed today: a day whose end the history of
/// amounts does not cover is an error, never today's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_a_day_the_history_does_not_cover_is_an_error_not_today() {
    let app = TestApp::new(Scenario::new()).await;
    november_and_december(&app).await;
    for args in [
        &["report", "--detail", "--as-of", "2026-12-05"][..],
        &["report", "--as-of", "2026-12-05"],
    ] {
        let output = app.run(args).await;
        assert_ne!(output.status.code(), Some(0), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing printed");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        // The history of amounts begins with this database, after 2026-12-05 ended (it
        // printed today's figures before amounts as of a date were kept).
        assert!(
            stderr.contains("--as-of 2026-12-05: the history of amounts begins at"),
            "{stderr}"
        );
    }
    let flags = app
        .run(&["report", "--flags", "--as-of", "2026-12-05"])
        .await;
    assert!(flags.status.success());
}
