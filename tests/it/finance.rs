//! The finance surfaces: CSV import, reports, closing flags by hand, re-polls and the
//! read-only role, each run as the real command against a real database.

use std::io::Write as _;
use std::process::{Command, Output};

use freedompay_recon::simulator::{Reply, Scenario};
use sqlx::{ConnectOptions as _, Connection as _};

use crate::helpers::{TestApp, output, output_with_input};

/// Runs the binary against the test's app, feeding `stdin`, with `$USER` set to a name
/// that is not the login's (commands must not take a person's name from it).
async fn run(app: &TestApp, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = app.command(args);
    command.env("USER", "aigerim");
    match stdin {
        Some(input) => output_with_input(command, input).await,
        None => output(command).await,
    }
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn csv_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_is_all_or_nothing_idempotent_and_never_overwrites() {
    let app = TestApp::new(Scenario::new()).await;
    let good = csv_file(
        "order_id,payment_id,expected_amount,expected_currency,created_at,expires_at\r\n\
         A-1,1001,5000.00,KZT,2025-07-11T10:00:00Z,2025-07-12T10:00:00Z\r\n\
         A-2,1002,990,KZT,2025-07-11 16:00:00,\r\n\
         ,1003,,,,\r\n",
    );
    let path = good.path().to_str().unwrap();
    let first = run(&app, &["import", path], None).await;
    assert!(first.status.success(), "{}", err(&first));
    assert_eq!(
        out(&first).trim(),
        format!("{path}: 3 rows: 3 imported, 0 already known (unchanged)")
    );
    let (created, amount): (chrono::DateTime<chrono::Utc>, String) = sqlx::query_as(
        "select created_at, expected_amount::text from recon.payments where payment_id = '1002'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        created.to_rfc3339(),
        "2025-07-11T11:00:00+00:00",
        "naive time is Almaty"
    );
    assert_eq!(amount, "990");

    let again = run(&app, &["import", path], None).await;
    assert!(again.status.success());
    assert_eq!(
        out(&again).trim(),
        format!("{path}: 3 rows: 0 imported, 3 already known (unchanged)")
    );

    // One new row and one conflicting row: the conflict is reported and nothing is imported.
    let conflicting = csv_file("payment_id,expected_amount\n1004,10\n1001,4000\n");
    let rejected = run(
        &app,
        &["import", conflicting.path().to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(rejected.status.code(), Some(1));
    let message = err(&rejected);
    assert!(
        message.starts_with(
            "line 3: expected_amount: payment \"1001\" is already tracked with 5000.00, the file says 4000; the stored value is kept\n"
        ),
        "{message}"
    );
    assert!(
        message.contains("1 problem in 1 row; nothing was imported"),
        "{message}"
    );
    assert_eq!(app.count("select count(*) from recon.payments").await, 3);
    let kept: String = sqlx::query_scalar(
        "select expected_amount::text from recon.payments where payment_id = '1001'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(kept, "5000.00");

    // Standard input works too.
    let piped = run(&app, &["import", "-"], Some("payment_id\n1005\n")).await;
    assert!(piped.status.success(), "{}", err(&piped));
    assert_eq!(
        out(&piped).trim(),
        "-: 1 row: 1 imported, 0 already known (unchanged)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_bad_rows_imports_nothing_and_names_every_one() {
    let app = TestApp::new(Scenario::new()).await;
    let bad = csv_file(
        "payment_id,expected_amount,expected_currency,created_at\n\
         2001,\"1 234,50\",KZT,\n\
         2002,10,tenge,\n\
         2003,10,KZT,11/07/2025\n\
         ,10,KZT,\n\
         2005,10,KZT,\n\
         2005,11,KZT,\n\
         2007,7.5,USD,2025-07-11T10:00:00Z\n",
    );
    let output = run(&app, &["import", bad.path().to_str().unwrap()], None).await;
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<String> = err(&output).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "line 2: expected_amount: \"1 234,50\" uses a comma; write a dot as the decimal separator and no thousands separators (e.g. 1234.50)",
            "line 3: expected_currency: currency \"tenge\" is not an ISO 4217 code (three uppercase letters, e.g. KZT)",
            "line 4: created_at: \"11/07/2025\" is not a timestamp; use RFC 3339 (2025-07-11T12:00:00Z) or YYYY-MM-DD HH:MM:SS in +05:00",
            "line 5: payment_id: payment id is empty",
            "line 7: payment_id: \"2005\" is already on line 6 of this file",
            &format!(
                "error: {}: 5 problems in 5 rows; nothing was imported. Fix them and import the file again.",
                bad.path().display()
            ),
        ]
    );
    assert_eq!(app.count("select count(*) from recon.payments").await, 0);

    let header = csv_file("id,amount\n1,2\n");
    let output = run(&app, &["import", header.path().to_str().unwrap()], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        err(&output).contains("the header: unknown column \"id\""),
        "{}",
        err(&output)
    );

    let missing = run(&app, &["import", "/nonexistent/payments.csv"], None).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(err(&missing).contains("cannot open /nonexistent/payments.csv"));
}

/// Three payments created on 2025-07-11 (Almaty), reconciled by the daemon: one paid in
/// full, one paid less, one failed.
async fn reconciled_day() -> TestApp {
    let app = TestApp::new(
        Scenario::new()
            .payment(
                "p-ok",
                [Reply::invoice("success", "5000.00", "KZT")
                    .with("fee", serde_json::json!("75.00"))],
            )
            .payment(
                "p-less",
                [Reply::invoice("success", "4900.00", "KZT")
                    .with("fee", serde_json::json!("73.50"))],
            )
            .payment("p-fail", [Reply::invoice("error", "100", "KZT")]),
    )
    .await;
    app.insert(
        "('p-ok', 5000, 'KZT', 'A-1', '2025-07-11 04:00+00', null),
         ('p-less', 5000, 'KZT', 'A-2', '2025-07-11 05:00+00', null),
         ('p-fail', 100, 'KZT', 'A-3', '2025-07-11 06:00+00', null)",
    )
    .await;
    app.sweep().await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_summary_in_csv_has_stable_columns_and_exact_sums() {
    let app = reconciled_day().await;
    let output = run(
        &app,
        &[
            "report",
            "--format",
            "csv",
            "--from",
            "2025-07-11",
            "--to",
            "2025-07-11",
        ],
        None,
    )
    .await;
    assert!(output.status.success(), "{}", err(&output));
    // A failed payment brought nothing: its received amount, fee and difference are empty,
    // not 0.
    assert_eq!(
        out(&output),
        "day,currency,outcome,status,payments,expected_payments,expected_amount,received_payments,received_amount,fee,payments_without_fee,difference,needs_action,amount_mismatch,currency_mismatch,order_mismatch,not_found,unknown_status,terminal_status_changed,polling_abandoned,paid_after_deadline\r\n\
         2025-07-11,KZT,paid,success,2,2,10000,2,9900.00,148.50,0,-100.00,1,1,0,0,0,0,0,0,0\r\n\
         2025-07-11,KZT,failed,error,1,1,100,0,,,0,,0,0,0,0,0,0,0,0,0\r\n"
    );

    let other_day = run(
        &app,
        &["report", "--format", "csv", "--from", "2025-07-12"],
        None,
    )
    .await;
    assert_eq!(out(&other_day).lines().count(), 1, "only the header");
    assert_eq!(
        err(&other_day).trim(),
        "no payments created since 2025-07-12",
        "said apart from the data"
    );

    let table = run(&app, &["report", "--status", "success"], None).await;
    let text = out(&table);
    assert!(text.starts_with("day"), "{text}");
    assert!(
        text.contains("2025-07-11 KZT paid           success"),
        "{text}"
    );
    assert!(!text.contains("error"), "{text}");
    assert!(
        text.contains("open flags needing a person now, on these payments: 1 (under 1 day 1,"),
        "{text}"
    );
    // No merchant credentials here: the summary says refunds go unseen.
    assert!(
        text.contains("refunds: NOT watched (merchant.id and merchant.secret not set)"),
        "{text}"
    );
    let watched = app
        .run_with(
            &["report", "--status", "success"],
            &[
                ("FREEDOMPAY_RECON__MERCHANT__ID", "545443"),
                (
                    "FREEDOMPAY_RECON__MERCHANT__SECRET",
                    "merchant-secret-key-16+",
                ),
            ],
        )
        .await;
    let text = out(&watched);
    assert!(
        text.contains("refunds: paid payments are watched through the Merchant status API"),
        "{text}"
    );
    assert!(!text.contains("NOT watched"), "{text}");
    let empty_table = run(&app, &["report", "--from", "2025-07-12"], None).await;
    assert!(
        out(&empty_table).contains("\nno payments created since 2025-07-12\n"),
        "{}",
        out(&empty_table)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_report_filters_and_writes_json_to_a_file() {
    let app = reconciled_day().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flagged.json");
    let output = run(
        &app,
        &[
            "report",
            "--detail",
            "--format",
            "json",
            "--flag",
            "amount_mismatch",
            "--output",
            path.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert!(output.status.success(), "{}", err(&output));
    assert!(
        err(&output).contains("1 row written to"),
        "{}",
        err(&output)
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["payment_id"], "p-less");
    assert_eq!(rows[0]["expected_amount"], "5000");
    assert_eq!(rows[0]["received_amount"], "4900.00");
    assert_eq!(rows[0]["difference"], "-100.00");
    assert_eq!(rows[0]["created_at"], "2025-07-11T05:00:00Z");
    assert_eq!(
        rows[0]["open_flags"],
        serde_json::json!(["amount_mismatch"])
    );

    let csv = run(
        &app,
        &["report", "--detail", "--format", "csv", "--currency", "KZT"],
        None,
    )
    .await;
    let text = out(&csv);
    let mut lines = text.split("\r\n");
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("payment_id,order_id,provider_order_id,outcome,status,expected_amount")
    );
    let ids: Vec<&str> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ids, ["p-ok", "p-less", "p-fail"], "ordered by creation");

    let none = run(
        &app,
        &[
            "report",
            "--detail",
            "--format",
            "json",
            "--currency",
            "USD",
        ],
        None,
    )
    .await;
    assert_eq!(out(&none), "[]\n");

    let bad = run(&app, &["report", "--from", "11.07.2025"], None).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        err(&bad).contains("not a date; use YYYY-MM-DD"),
        "{}",
        err(&bad)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_closed_by_hand_keeps_who_and_why_and_can_open_again() {
    let app = reconciled_day().await;
    let output = run(
        &app,
        &[
            "resolve",
            "p-less",
            "--kind",
            "amount_mismatch",
            "--note",
            "customer paid the rest in cash",
        ],
        None,
    )
    .await;
    assert!(output.status.success(), "{}", err(&output));
    // The login name from the user database, not $USER (which anyone can set).
    let login = login_name();
    assert_eq!(
        out(&output).trim(),
        format!("closed the amount_mismatch flag of payment p-less (by {login})")
    );
    let (by, why): (String, String) = sqlx::query_as(
        "select resolved_by, resolution from recon.discrepancy_history where payment_id = 'p-less'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        (by.as_str(), why.as_str()),
        (login.as_str(), "customer paid the rest in cash")
    );
    assert_eq!(app.open_flags("p-less").await, Vec::<String>::new());

    let twice = run(
        &app,
        &[
            "resolve",
            "p-less",
            "--kind",
            "amount_mismatch",
            "--note",
            "again",
            "--by",
            "bob",
        ],
        None,
    )
    .await;
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        err(&twice).contains("payment p-less has no open amount_mismatch flag"),
        "{}",
        err(&twice)
    );

    // A re-check that sees the same short payment leaves the resolution as it is.
    let recheck = run(&app, &["recheck", "p-less"], None).await;
    assert!(recheck.status.success(), "{}", err(&recheck));
    app.sweep().await;
    assert_eq!(app.open_flags("p-less").await, Vec::<String>::new());
    assert_eq!(
        app.flag_history("p-less").await,
        [("amount_mismatch".to_owned(), true)]
    );

    // A different amount is a new finding: a new flag, linked to the one it follows.
    app.sim.set_scenario(
        Scenario::new().payment("p-less", [Reply::invoice("success", "4800.00", "KZT")]),
    );
    let recheck = run(&app, &["recheck", "p-less"], None).await;
    assert!(recheck.status.success(), "{}", err(&recheck));
    app.sweep().await;
    assert_eq!(app.open_flags("p-less").await, ["amount_mismatch"]);
    let (actual, follows, first): (String, Option<i64>, i64) = sqlx::query_as(
        "select d.actual, d.follows_id, (select min(id) from recon.discrepancies
                                          where payment_id = 'p-less')
         from recon.discrepancies d where payment_id = 'p-less' and resolved_at is null",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(actual, "4800.00");
    assert_eq!(follows, Some(first));
}

/// The name of this process's user in the system's user database.
pub fn login_name() -> String {
    let output = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recheck_makes_payments_due_now_by_id_flag_or_status() {
    let app = reconciled_day().await;
    app.fast_forward().await;
    app.sweep().await; // confirmation re-checks: polling stops
    assert_eq!(
        app.count("select count(*) from recon.payments where next_check_at is null")
            .await,
        3
    );

    let by_flag = run(&app, &["recheck", "--flag", "amount_mismatch"], None).await;
    assert!(by_flag.status.success());
    assert_eq!(out(&by_flag).trim(), "1 payment is due for a re-poll now");
    let by_status = run(&app, &["recheck", "--status", "error"], None).await;
    assert_eq!(out(&by_status).trim(), "1 payment is due for a re-poll now");
    let due: Vec<String> = sqlx::query_scalar(
        "select payment_id from recon.payments where next_check_at <= now() order by 1",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(due, ["p-fail", "p-less"]);

    let unknown = run(&app, &["recheck", "p-ok", "nope"], None).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(err(&unknown).contains("not tracked: nope"));

    let nothing = run(&app, &["recheck"], None).await;
    assert_eq!(nothing.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_role_reads_the_views_and_nothing_else() {
    let app = reconciled_day().await;
    let role = format!("fpr_reader_{}", std::process::id());
    for statement in [
        format!("drop role if exists {role}"),
        format!("create role {role} login"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(app.pool())
            .await
            .unwrap();
    }

    let missing = run(&app, &["grant-reader", "no_such_role_anywhere"], None).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(err(&missing).contains("role \"no_such_role_anywhere\" does not exist"));

    let granted = run(&app, &["grant-reader", &role], None).await;
    assert!(granted.status.success(), "{}", err(&granted));

    let options: sqlx::postgres::PgConnectOptions = app.db.url.parse().unwrap();
    let mut reader = options.username(&role).connect().await.unwrap();
    for view in [
        "recon.reconciliation",
        "recon.open_discrepancies",
        "recon.daily_summary",
        "recon.status_history",
        "recon.discrepancy_history",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {view}")))
                .fetch_one(&mut reader)
                .await
                .unwrap_or_else(|e| panic!("{view}: {e}"));
        assert!(n > 0, "{view} is empty");
    }
    for forbidden in [
        "select body from recon.status_transitions",
        "select last_error_body from recon.payments",
        "select * from recon.discrepancies",
        "insert into recon.payments (payment_id) values ('x')",
        "update recon.payments set expected_amount = 1",
        "delete from recon.discrepancies",
    ] {
        let err = sqlx::query(forbidden)
            .execute(&mut reader)
            .await
            .expect_err(forbidden);
        assert!(
            err.to_string().contains("permission denied"),
            "{forbidden}: {err}"
        );
    }
    reader.close().await.ok();
    // Dropping the test database removes the grants; then the role can go.
    drop(app);
    let server: sqlx::postgres::PgConnectOptions = crate::helpers::server_url().parse().unwrap();
    let mut admin = server.connect().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("drop role if exists {role}")))
        .execute(&mut admin)
        .await
        .unwrap();
}
