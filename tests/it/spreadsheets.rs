//! Spreadsheets that are real and tables that cannot be misread: xlsx reports read by an
//! independent reader (openpyxl), a workbook a person annotated given back to `resolve`,
//! Windows-1251 CSV files, the summary table's counts and `--excel`'s local times and decimal
//! commas.
//!
//! The xlsx tests read workbooks with Python's openpyxl, not with the crates that wrote them.
//! Where python3 cannot import it they say so and skip, unless
//! `FREEDOMPAY_RECON_REQUIRE_OPENPYXL` is set, as `.ci/run` sets it after installing openpyxl:
//! in CI they always run.

use std::path::Path;
use std::process::Output;

use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::{Value, json};

use crate::finance::login_name;
use crate::helpers::{TestApp, ok, stderr};

/// Whether python3 with openpyxl is here; when it is not, the reason, or a panic when the
/// environment requires it.
fn openpyxl() -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import openpyxl"])
        .output();
    let reason = match probe {
        Ok(probe) if probe.status.success() => return true,
        Ok(probe) => String::from_utf8_lossy(&probe.stderr).trim().to_owned(),
        Err(e) => format!("python3: {e}"),
    };
    assert!(
        std::env::var_os("FREEDOMPAY_RECON_REQUIRE_OPENPYXL").is_none(),
        "openpyxl is required here and cannot be imported: {reason}"
    );
    eprintln!("skipped: no openpyxl to read the workbook with ({reason}); pip install openpyxl");
    false
}

/// Runs a Python script with `args`; its standard output.
fn python(script: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The first sheet of a workbook as openpyxl reads it: its name, the cell its panes are
/// frozen at, and every cell's type, value, number format and whether it is a date.
const DUMP: &str = r#"
import datetime, json, sys, openpyxl
book = openpyxl.load_workbook(sys.argv[1])
sheet = book.worksheets[0]
def cell(c):
    value = c.value
    if isinstance(value, datetime.datetime):
        value = value.isoformat(sep=" ")
    return {"type": c.data_type, "value": value, "format": c.number_format,
            "date": c.is_date, "quoted": bool(c.quotePrefix)}
rows = [[cell(c) for c in row] for row in sheet.iter_rows()]
print(json.dumps({"sheets": book.sheetnames, "title": sheet.title,
                  "frozen": sheet.freeze_panes, "rows": rows,
                  "widths": [sheet.column_dimensions[c].width for c in "ABC"]}))
"#;

/// A sheet read by openpyxl, by header name.
struct Sheet(Value);

impl Sheet {
    fn read(path: &Path) -> Self {
        Self(serde_json::from_str(&python(DUMP, &[path.to_str().unwrap()])).unwrap())
    }

    fn rows(&self) -> &Vec<Value> {
        self.0["rows"].as_array().unwrap()
    }

    /// The cell of `column` in the data row whose `key` column is `value`.
    fn cell(&self, key: &str, value: &str, column: &str) -> &Value {
        let header: Vec<&str> = self.rows()[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_str().unwrap())
            .collect();
        let at = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("{name} in {header:?}"))
        };
        let row = self.rows()[1..]
            .iter()
            .find(|row| row[at(key)]["value"] == value)
            .unwrap_or_else(|| panic!("{key} = {value} in {:#}", self.0));
        &row[at(column)]
    }
}

/// `report ARGS --format xlsx --output PATH`.
async fn report_xlsx(app: &TestApp, args: &[&str], path: &Path) -> Output {
    let mut args = args.to_vec();
    args.extend(["--format", "xlsx", "--output", path.to_str().unwrap()]);
    app.run(&args).await
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
async fn every_report_as_xlsx_has_number_and_date_cells_and_a_frozen_header() {
    if !openpyxl() {
        return;
    }
    let app = paid_day().await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let created = local(&app, "'2026-11-30 19:30:00.123456Z'::timestamptz").await;
    assert_ne!(
        &created[..10],
        "2026-11-30",
        "the reporting zone is not UTC here"
    );

    // The payments: amounts as numbers, times as dates on the zone's clock, text as text.
    let payments = path("payments.xlsx");
    let written = report_xlsx(&app, &["report", "--detail"], &payments).await;
    assert_eq!(ok(&written), "", "nothing on standard output");
    assert!(
        stderr(&written).contains("3 rows written to"),
        "{}",
        stderr(&written)
    );
    let sheet = Sheet::read(&payments);
    assert_eq!(sheet.0["sheets"], json!(["Payments"]));
    assert_eq!(sheet.0["frozen"], "A2", "the header row stays in view");
    assert!(
        sheet.0["widths"][0].as_f64().unwrap() > 10.0,
        "{:#}",
        sheet.0
    );
    let amount = sheet.cell("payment_id", "short", "expected_amount");
    assert_eq!(
        (&amount["type"], &amount["value"], &amount["format"]),
        (&json!("n"), &json!(100), &json!("#,##0.00")),
        "{amount}"
    );
    let received = sheet.cell("payment_id", "no-fee", "received_amount");
    assert_eq!(received["value"], 1_234_567.5);
    assert_eq!(received["format"], "#,##0.00");
    let at = sheet.cell("payment_id", "short", "created_at");
    assert_eq!(at["date"], true, "{at}");
    assert_eq!(at["value"], created.as_str(), "to the second, in the zone");
    let day = sheet.cell("payment_id", "short", "created_day");
    assert_eq!(day["date"], true, "{day}");
    assert_eq!(day["value"], format!("{} 00:00:00", &created[..10]));
    assert_eq!(sheet.cell("payment_id", "short", "checks")["type"], "n");
    let order = sheet.cell("payment_id", "short", "order_id");
    assert_eq!(
        (&order["type"], &order["value"], &order["quoted"]),
        (&json!("s"), &json!("=1+2"), &json!(true)),
        "text, never a formula, and kept text when edited: {order}"
    );
    assert_eq!(
        sheet.cell("payment_id", "no-fee", "fee")["value"],
        Value::Null,
        "an unknown fee is empty, not 0"
    );

    // The summary: one sheet, sums and counts as numbers, days as dates.
    let summary = path("summary.xlsx");
    ok(&report_xlsx(&app, &["report"], &summary).await);
    let sheet = Sheet::read(&summary);
    assert_eq!(sheet.0["sheets"], json!(["Summary"]));
    assert_eq!(sheet.0["frozen"], "A2");
    let received = sheet.cell("currency", "KZT", "received_amount");
    assert_eq!(
        (&received["type"], &received["value"], &received["format"]),
        (&json!("n"), &json!(1_234_657.5), &json!("#,##0.00")),
        "{received}"
    );
    assert_eq!(
        sheet.cell("currency", "KZT", "payments_without_fee")["value"],
        1
    );
    assert_eq!(
        sheet.cell("currency", "USD", "expected_payments")["value"],
        0
    );
    assert_eq!(sheet.cell("currency", "KZT", "day")["date"], true);

    // The flags: ids as numbers, when each opened as a date, and the column for notes.
    let flags = path("flags.xlsx");
    ok(&report_xlsx(&app, &["report", "--flags"], &flags).await);
    let sheet = Sheet::read(&flags);
    assert_eq!(sheet.0["sheets"], json!(["Flags"]));
    assert_eq!(sheet.0["frozen"], "A2");
    assert_eq!(sheet.cell("payment_id", "short", "flag_id")["type"], "n");
    assert_eq!(sheet.cell("payment_id", "short", "opened_at")["date"], true);
    let actual = sheet.cell("payment_id", "short", "actual");
    assert_eq!(
        (&actual["value"], &actual["format"]),
        (&json!(90), &json!("#,##0.00"))
    );
    assert_eq!(
        sheet.cell("payment_id", "dollars", "actual")["value"],
        "USD"
    );
    assert_eq!(
        sheet.cell("payment_id", "dollars", "note")["value"],
        Value::Null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xlsx_report_needs_a_file_and_a_failed_one_leaves_none() {
    let app = paid_day().await;
    let to_terminal = app.run(&["report", "--format", "xlsx"]).await;
    assert_eq!(to_terminal.status.code(), Some(1));
    assert_eq!(
        stderr(&to_terminal),
        "error: --format xlsx writes a workbook, which is not text for a terminal or a pipe: \
         give the file to write with --output FILE (e.g. --output report.xlsx)\n"
    );
    assert!(to_terminal.stdout.is_empty());

    // A workbook that cannot be put in place is not left behind half-written either.
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join("july.xlsx");
    std::fs::create_dir(&taken).unwrap();
    let failed = app
        .run(&[
            "report",
            "--format",
            "xlsx",
            "--output",
            taken.to_str().unwrap(),
        ])
        .await;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).starts_with(&format!("error: cannot write {}", taken.display())),
        "{}",
        stderr(&failed)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["july.xlsx"], "no partial file is left");
}

/// Writes notes into a flags workbook as a person in a spreadsheet would (openpyxl): `notes`
/// by payment id, a note `{"date": …}` as a date cell; the rows of `delete` are deleted.
const ANNOTATE: &str = r#"
import datetime, json, sys, openpyxl
path, spec = sys.argv[1], json.loads(sys.argv[2])
book = openpyxl.load_workbook(path)
sheet = book["Flags"]
header = [c.value for c in sheet[1]]
payment, note = header.index("payment_id") + 1, header.index("note") + 1
for row in range(sheet.max_row, 1, -1):
    id = sheet.cell(row, payment).value
    if id in spec["delete"]:
        sheet.delete_rows(row)
    elif id in spec["notes"]:
        value = spec["notes"][id]
        if isinstance(value, dict):
            value = datetime.date.fromisoformat(value["date"])
        sheet.cell(row, note).value = value
book.save(path)
"#;

/// The row number a payment's flag is on, as the spreadsheet shows it.
const FIND_ROW: &str = r#"
import sys, openpyxl
sheet = openpyxl.load_workbook(sys.argv[1])["Flags"]
header = [c.value for c in sheet[1]]
payment = header.index("payment_id") + 1
print(next(r for r in range(2, sheet.max_row + 1) if sheet.cell(r, payment).value == sys.argv[2]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_exported_as_xlsx_come_back_closed_with_the_notes_written_in_a_spreadsheet() {
    if !openpyxl() {
        return;
    }
    let app = TestApp::new(
        Scenario::new()
            .payment("short-1", [Reply::invoice("success", "90.00", "KZT")])
            .payment("short-2", [Reply::invoice("success", "1234.50", "KZT")])
            .payment("dollars", [Reply::invoice("success", "10.00", "USD")]),
    )
    .await;
    app.insert(
        "('short-1', 100, 'KZT', null, now(), null),
         ('short-2', 1300, 'KZT', null, now(), null),
         ('dollars', 10, 'KZT', null, now(), null)",
    )
    .await;
    app.sweep().await;
    let open = || async {
        sqlx::query_scalar::<_, String>(
            "select payment_id from recon.open_discrepancies order by payment_id",
        )
        .fetch_all(app.pool())
        .await
        .unwrap()
    };
    assert_eq!(open().await, ["dollars", "short-1", "short-2"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.xlsx");
    let file = path.to_str().unwrap();
    ok(&app
        .run(&["report", "--flags", "--format", "xlsx", "--output", file])
        .await);

    // Rows left without a note: the file is refused by row, as the spreadsheet numbers them
    // (the row of the one with a note is not among them), and nothing is closed.
    python(
        ANNOTATE,
        &[
            file,
            r#"{"notes": {"short-1": "paid the rest in cash"}, "delete": []}"#,
        ],
    );
    let noted_row = python(FIND_ROW, &[file, "short-1"]);
    let refused = app.run(&["resolve", "--from-xlsx", file]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let empty: Vec<String> = (2..=4)
        .filter(|row| row.to_string() != noted_row.trim())
        .map(|row| format!("row {row}: note: is empty; say why the flag is closed\n"))
        .collect();
    assert_eq!(
        stderr(&refused),
        format!(
            "{}error: {file}: 2 problems in 2 rows; no flag was closed. Fix them and give the \
             file again.\n",
            empty.concat()
        )
    );
    assert_eq!(open().await.len(), 3);

    // Notes on two (one typed as a date), the third row deleted: exactly those two close.
    python(
        ANNOTATE,
        &[
            file,
            r#"{"notes": {"short-2": {"date": "2026-07-01"}}, "delete": ["dollars"]}"#,
        ],
    );
    let closed = ok(&app.run(&["resolve", "--from-xlsx", file]).await);
    assert!(
        closed.ends_with(&format!(
            "flags.xlsx: closed 2 flags (by {}); 0 already closed\n",
            login_name()
        )),
        "{closed}"
    );
    assert_eq!(open().await, ["dollars"]);
    let notes: Vec<(String, String)> = sqlx::query_as(
        "select payment_id, resolution from recon.discrepancy_history
         where resolved_at is not null order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        notes,
        [
            ("short-1".to_owned(), "paid the rest in cash".to_owned()),
            ("short-2".to_owned(), "2026-07-01".to_owned()),
        ],
        "a date reads back as the date shown"
    );
    // Given again: each already closed, left as it was.
    let again = ok(&app.run(&["resolve", "--from-xlsx", file]).await);
    assert!(again.contains("row 2: already closed"), "{again}");
}

/// `text` as Windows-1251, what Excel in a Russian locale saves as "CSV".
fn cp1251(dir: &Path, name: &str, text: &str) -> String {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(text);
    assert!(!unmappable);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_1251_csv_is_refused_naming_the_encoding_and_read_with_it() {
    let app =
        TestApp::new(Scenario::new().payment("ru-1", [Reply::invoice("success", "90.00", "KZT")]))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let file = cp1251(
        dir.path(),
        "payments.csv",
        "payment_id;expected_amount;expected_currency;order_id\r\n\
         ru-1;100,00;KZT;Заказ №1\r\n",
    );
    let refused = app.run(&["import", &file]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused),
        format!(
            "error: {file}: nothing was imported: line 2 is not UTF-8 text; if Excel saved it \
             as \"CSV\" (Windows-1251, as in Russian and Kazakh locales), give --encoding \
             cp1251, or save it again as \"CSV UTF-8 (Comma delimited)\"\n"
        )
    );
    assert_eq!(app.count("select count(*) from recon.payments").await, 0);

    ok(&app.run(&["import", "--encoding", "cp1251", &file]).await);
    let order: String =
        sqlx::query_scalar("select order_id from recon.payments where payment_id = 'ru-1'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(order, "Заказ №1");

    // A byte Windows-1251 has no character for is refused too: not a replacement character.
    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, b"payment_id\r\nru-\x98\r\n").unwrap();
    let refused = app
        .run(&["import", "--encoding", "cp1251", broken.to_str().unwrap()])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("line 2: the byte 0x98 is not a character in windows-1251"),
        "{}",
        stderr(&refused)
    );

    // The same for a resolutions file.
    app.sweep().await;
    let notes = cp1251(
        dir.path(),
        "notes.csv",
        "payment_id;kind;note\r\nru-1;amount_mismatch;возврат наличными\r\n",
    );
    let refused = app.run(&["resolve", "--from-csv", &notes]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("give --encoding cp1251"),
        "{}",
        stderr(&refused)
    );
    ok(&app
        .run(&["resolve", "--from-csv", &notes, "--encoding", "cp1251"])
        .await);
    let note: String = sqlx::query_scalar(
        "select resolution from recon.discrepancy_history where payment_id = 'ru-1'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(note, "возврат наличными");
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
