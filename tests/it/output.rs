//! What the commands print is safe where it lands: no provider text drives a terminal, no
//! cell runs as a spreadsheet formula, and a reader that goes away ends a command quietly.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::json;

use crate::helpers::{Spawned, TestApp};

/// The binary with its standard output piped to us.
fn spawn(app: &TestApp, args: &[&str]) -> Spawned {
    Spawned::spawn(
        app.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_the_report_table_escape_control_characters_from_the_provider() {
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\r";
    let app = TestApp::new(Scenario::new().payment(
        "e-1",
        [Reply::invoice("process", "1", "KZT").with("orderId", json!(hostile))],
    ))
    .await;
    let check = app.run(&["check", "e-1"]).await;
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let text = String::from_utf8(check.stdout).unwrap();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the terminal: {text:?}"
    );
    assert!(
        text.contains("order_id:     \\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{d}"),
        "{text}"
    );

    app.insert_ids(&["e-1"]).await;
    app.sweep().await;
    // A row written before the rules (or by hand) with raw control characters is escaped too.
    sqlx::query("update recon.payments set status = E'\\x1b[31mred' where payment_id = 'e-1'")
        .execute(app.pool())
        .await
        .unwrap();
    let table = app.run(&["report", "--detail"]).await;
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("\\u{1b}[31m"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_exports_neutralise_formulas_unless_raw_is_asked_for() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert(
        "('=HYPERLINK(\"http://evil.example\",\"pay\")', 10, 'KZT', '@SUM(A1:A9)', now(), null),
         ('-1', 10, 'KZT', '+1', now(), null),
         ('plain', 10, 'KZT', 'A-1', now(), null)",
    )
    .await;
    let safe = app.run(&["report", "--detail", "--format", "csv"]).await;
    assert!(safe.status.success());
    let text = String::from_utf8(safe.stdout).unwrap();
    let rows: Vec<&str> = text.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows.len(), 4, "{text}");
    let cells = |prefix: &str| -> String {
        rows.iter()
            .find(|r| r.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
            .to_string()
    };
    assert!(
        cells("\"'=HYPERLINK(")
            .starts_with("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"pay\"\")\",'@SUM(A1:A9),"),
        "{text}"
    );
    // A plain number is left alone (an order id -7781 must still match the books).
    assert!(cells("-1,").starts_with("-1,'+1,"), "{text}");
    assert!(cells("plain,").starts_with("plain,A-1,"), "{text}");

    let raw = app
        .run(&["report", "--detail", "--format", "csv", "--raw"])
        .await;
    let text = String::from_utf8(raw.stdout).unwrap();
    assert!(
        text.contains("\r\n\"=HYPERLINK(") || text.contains("\r\n-1,+1,"),
        "{text}"
    );
    assert!(text.contains("\r\n-1,+1,"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_commands_exit_quietly_when_their_reader_goes_away() {
    let app = TestApp::new(Scenario::new().fallback([Reply::invoice("process", "1", "KZT")])).await;
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency)
         select 'pipe-' || g, 10, 'KZT' from generate_series(1, 5000) g",
    )
    .execute(app.pool())
    .await
    .unwrap();
    for args in [
        vec!["report", "--detail"],
        vec!["report", "--detail", "--format", "csv"],
        vec!["report", "--detail", "--format", "json"],
    ] {
        // Like `| head -1`: read one line, then close the pipe.
        let mut child = spawn(&app, &args);
        let mut first = String::new();
        BufReader::new(child.take_stdout())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{args:?}");
        let (code, stderr) = child.wait(Duration::from_secs(60)).await;
        assert_eq!(code, Some(0), "{args:?}");
        assert_eq!(stderr, "", "{args:?}");
    }
    // `check | head -1` with the pipe already closed when it prints.
    let mut child = spawn(&app, &["check", "pipe-1"]);
    drop(child.take_stdout());
    let (code, stderr) = child.wait(Duration::from_secs(60)).await;
    assert_eq!(code, Some(0));
    assert_eq!(stderr, "");
}
