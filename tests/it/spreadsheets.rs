//! Tables that cannot be misread: the summary table's counts, and `--excel`'s local times and
//! decimal commas.

use std::process::Output;

use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "{}", err(output));
    out(output)
}

/// What PostgreSQL makes of an instant on the reporting zone's clock, to the second.
async fn local(app: &TestApp, sql_instant: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select to_char(({sql_instant}) at time zone recon.report_zone(), \
         'YYYY-MM-DD HH24:MI:SS')"
    )))
    .fetch_one(app.pool())
    .await
    .unwrap()
}

/// A paid payment short of what was expected, one paid in another currency, and one paid
/// without a stated fee; created late in the evening UTC, which is the next day in Almaty.
async fn paid_day() -> TestApp {
    let app = TestApp::new(
        Scenario::new()
            .payment("short", [Reply::invoice("success", "90.00", "KZT")])
            .payment("dollars", [Reply::invoice("success", "10.00", "USD")])
            .payment(
                "no-fee",
                [Reply::invoice("success", "1234567.5", "KZT").with("fee", Value::Null)],
            ),
    )
    .await;
    app.insert(
        "('short', 100, 'KZT', '=1+2', '2026-11-30 19:30:00.123456Z', null),
         ('dollars', 10, 'KZT', null, '2026-11-30 19:31:00Z', null),
         ('no-fee', 1234567.5, 'KZT', null, '2026-11-30 19:32:00Z', null)",
    )
    .await;
    app.sweep().await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_table_shows_how_many_payments_each_sum_counts() {
    let fee = |amount: &str, currency: &str, fee: Value| {
        [Reply::invoice("success", amount, currency).with("fee", fee)]
    };
    let app = TestApp::new(
        Scenario::new()
            .payment("usd-1", fee("10.00", "USD", json!("0.60")))
            .payment("usd-2", fee("1000.00", "USD", Value::Null))
            .payment("usd-3", fee("2000.00", "USD", Value::Null)),
    )
    .await;
    app.insert(
        "('usd-1', 10, 'USD', null, now(), null),
         ('usd-2', 100, 'KZT', null, now(), null),
         ('usd-3', 100, 'KZT', null, now(), null)",
    )
    .await;
    app.sweep().await;
    let table = ok(&app.run(&["report", "--currency", "USD"]).await);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let cell = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .map(|at| row[at])
            .unwrap_or_else(|| panic!("{name} in {table}"))
    };
    // One payment of three was expected in USD; two were received without a stated fee.
    assert_eq!(
        [
            cell("payments"),
            cell("n_exp"),
            cell("expected"),
            cell("received"),
            cell("fee"),
            cell("n_no_fee"),
        ],
        ["3", "1", "10", "3010.00", "0.60", "2"],
        "{table}"
    );
    assert!(
        table.contains(
            "\nn_exp: payments expected in this currency, summed in expected; \
                        n_no_fee: payments received without a stated fee\n"
        ),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_csv_has_decimal_commas_in_every_amount_and_local_times_to_the_second() {
    let app = paid_day().await;
    let flags = ok(&app.run(&["report", "--flags", "--excel"]).await);
    let opened: String = sqlx::query_scalar(
        "select to_char(detected_at at time zone recon.report_zone(), 'YYYY-MM-DD HH24:MI:SS')
         from recon.discrepancies where payment_id = 'short'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let row = flags
        .lines()
        .find(|l| l.contains(";short;"))
        .unwrap_or_else(|| panic!("{flags}"));
    assert!(
        row.contains(&format!(";{opened};")),
        "opened on the zone's clock, to the second: {row}"
    );
    assert!(
        row.contains(";amount_mismatch;action;") && row.contains(";100;90,00;"),
        "what the flag compared, with a decimal comma: {row}"
    );

    let payments = ok(&app.run(&["report", "--detail", "--excel"]).await);
    let created = local(&app, "'2026-11-30 19:32:00Z'::timestamptz").await;
    let row = payments
        .lines()
        .find(|l| l.starts_with("no-fee;"))
        .unwrap_or_else(|| panic!("{payments}"));
    assert!(row.contains(&format!(";{created};")), "{row}");
    assert!(row.contains(";1234567,5;KZT;"), "{row}");
    assert!(
        !row.split(';')
            .any(|cell| cell.contains('T') && cell.ends_with('Z')),
        "no UTC times: {row}"
    );
}
