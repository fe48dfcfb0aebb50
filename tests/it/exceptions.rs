//! The exception queue: outcomes apart from exceptions, flags closed in bulk or from a
//! spreadsheet, aging, report columns that cannot be misread, month-end truths, and the
//! upgrade of a database whose queue was full of normal expiries.

use freedompay_recon::simulator::{Reply, Scenario};
use freedompay_recon::store;
use serde_json::json;

use crate::finance::login_name;
use crate::helpers::{TestApp, TestDb, engine, ok, run_binary, stderr};

/// `(kind, resolved_by, resolution)` of every flag of a payment, in order.
async fn flags_of(app: &TestApp, id: &str) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "select kind, resolved_by, resolution from recon.discrepancies
         where payment_id = $1 order by id",
    )
    .bind(id)
    .fetch_all(app.pool())
    .await
    .unwrap()
}

async fn queue(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "select payment_id, kind from recon.open_discrepancies order by payment_id, kind",
    )
    .fetch_all(app.pool())
    .await
    .unwrap()
}

/// Three payments with something for a person to look at, and one that expired unpaid.
async fn flagged_day() -> TestApp {
    let app = TestApp::new(
        Scenario::new()
            .payment("short-1", [Reply::invoice("success", "90.00", "KZT")])
            .payment("short-2", [Reply::invoice("success", "1234.50", "KZT")])
            .payment("dollars", [Reply::invoice("success", "10.00", "USD")])
            .payment(
                "expired",
                [Reply::invoice("incomplete", "50", "KZT").with("lifetime", json!(1))],
            ),
    )
    .await;
    app.insert(
        "('short-1', 100, 'KZT', '-7781', now(), null),
         ('short-2', 1300, 'KZT', null, now(), null),
         ('dollars', 10, 'KZT', null, now(), null),
         ('expired', 50, 'KZT', null, now(), null)",
    )
    .await;
    app.sweep().await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_unpaid_payment_is_an_outcome_and_never_waits_in_the_queue() {
    let app = flagged_day().await;
    assert_eq!(
        flags_of(&app, "expired").await,
        [(
            "lifetime_exceeded".to_owned(),
            Some("rule:expired_unpaid".to_owned()),
            Some(
                "expired unpaid: the deadline passed and no money moved; closed by the rule \
                 expired_unpaid (flags.auto_close)"
                    .to_owned()
            )
        )]
    );
    assert_eq!(
        queue(&app).await,
        [
            ("dollars".to_owned(), "currency_mismatch".to_owned()),
            ("short-1".to_owned(), "amount_mismatch".to_owned()),
            ("short-2".to_owned(), "amount_mismatch".to_owned()),
        ]
    );
    // Raised and closed in one transaction, so both are told, in order.
    let events: Vec<String> = sqlx::query_scalar(
        "select type from recon.event_log where payment_id = 'expired' order by id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(events, ["status_changed", "flag_opened", "flag_resolved"]);

    // `flags.auto_close = []`: the flag stays open for a person, outside the action queue.
    let mut settings = app.settings.clone();
    settings.flags.auto_close = vec![];
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency)
         values ('kept-open', 50, 'KZT')",
    )
    .execute(app.pool())
    .await
    .unwrap();
    app.sim.set_scenario(Scenario::new().payment(
        "kept-open",
        [Reply::invoice("incomplete", "50", "KZT").with("lifetime", json!(1))],
    ));
    engine(&app.db, &settings)
        .reconcile_due(&tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        flags_of(&app, "kept-open").await,
        [("lifetime_exceeded".to_owned(), None, None)]
    );
    assert_eq!(
        queue(&app).await.len(),
        3,
        "info flags are not in the queue"
    );
    let info = ok(&app
        .run(&["report", "--flags", "--class", "info", "--format", "csv"])
        .await);
    assert_eq!(info.lines().count(), 2, "{info}");
    assert!(
        info.contains(",kept-open,lifetime_exceeded,info,"),
        "{info}"
    );
    let by_kind = ok(&app
        .run(&[
            "report",
            "--flags",
            "--flag",
            "lifetime_exceeded",
            "--format",
            "json",
        ])
        .await);
    let rows: serde_json::Value = serde_json::from_str(&by_kind).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "its class is implied: {rows:#}"
    );
    // The same columns as CSV, so a flag's age in whole days.
    assert_eq!(rows[0]["age_days"], 0, "{rows:#}");
    assert!(
        rows[0]["opened_at"].as_str().unwrap().ends_with('Z'),
        "in UTC: {rows:#}"
    );
}

/// A `note` filled in for every data row of a flags CSV (the report leaves it empty, last).
fn with_notes(csv: &str, delimiter: char) -> String {
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header = lines.next().unwrap();
    assert!(header.ends_with(&format!("{delimiter}note")), "{header}");
    let mut text = format!("{header}\r\n");
    for (n, line) in lines.enumerate() {
        text.push_str(&format!("{line}\"checked with the bank; ref {n}\"\r\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_flags_go_to_a_spreadsheet_and_come_back_resolved_with_their_notes() {
    let app = flagged_day().await;
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("flags.csv");
    let written = app
        .run(&[
            "report",
            "--flags",
            "--format",
            "csv",
            "--output",
            export.to_str().unwrap(),
        ])
        .await;
    assert!(written.status.success(), "{}", stderr(&written));
    assert!(
        stderr(&written).contains("3 rows written to"),
        "{}",
        stderr(&written)
    );
    let csv = std::fs::read_to_string(&export).unwrap();
    let header = csv.lines().next().unwrap();
    assert_eq!(
        header,
        "flag_id,payment_id,kind,class,opened_at,opened_day,age_days,expected,actual,follows_id,\
         order_id,status,outcome,expected_amount,expected_currency,received_amount,\
         received_currency,invoice_amount,invoice_currency,payment_day,note"
    );
    assert!(csv.contains(",short-1,amount_mismatch,action,"), "{csv}");
    let today: String = sqlx::query_scalar("select recon.report_day(now())::text")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert!(
        csv.contains(&format!(
            ",0,100,90.00,,-7781,success,paid,100,KZT,90.00,KZT,90.00,KZT,{today},\r\n"
        )),
        "an order id that is a plain number is not guarded: {csv}"
    );
    assert!(!csv.contains("expired"), "not an exception: {csv}");

    let noted = dir.path().join("noted.csv");
    std::fs::write(&noted, with_notes(&csv, ',')).unwrap();
    let resolved = ok(&app
        .run(&["resolve", "--from-csv", noted.to_str().unwrap()])
        .await);
    let login = login_name();
    assert!(
        resolved.ends_with(&format!(
            "noted.csv: closed 3 flags (by {login}); 0 already closed\n"
        )),
        "{resolved}"
    );
    assert!(queue(&app).await.is_empty());
    let closed: Vec<(String, String, String)> = sqlx::query_as(
        "select payment_id, resolved_by, resolution from recon.discrepancy_history
         where class = 'action' order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(closed.len(), 3);
    for (id, by, note) in &closed {
        assert_eq!(by, &login, "{id}");
        assert!(
            note.starts_with("checked with the bank; ref "),
            "{id}: {note}"
        );
    }

    // short-1 is paid a different amount since: a new flag, which the old notes do not close.
    app.sim.set_scenario(
        Scenario::new().payment("short-1", [Reply::invoice("success", "80.00", "KZT")]),
    );
    ok(&app.run(&["recheck", "short-1"]).await);
    app.sweep().await;
    assert_eq!(
        queue(&app).await,
        [("short-1".to_owned(), "amount_mismatch".to_owned())]
    );
    // Without flag ids, the file still names the flags it closed: the same file again changes
    // nothing and fails nothing.
    let without_ids: String = std::fs::read_to_string(&noted)
        .unwrap()
        .lines()
        .map(|line| format!("{}\r\n", line.split_once(',').unwrap().1))
        .collect();
    let noted = dir.path().join("noted-without-ids.csv");
    std::fs::write(&noted, without_ids).unwrap();
    let events = app.count("select count(*) from recon.events").await;
    let again = ok(&app
        .run(&["resolve", "--from-csv", noted.to_str().unwrap()])
        .await);
    assert!(
        again.contains(&format!(
            "line 2: already closed (by {login}); left as it was"
        )),
        "{again}"
    );
    assert!(
        again.ends_with(&format!("closed 0 flags (by {login}); 3 already closed\n")),
        "{again}"
    );
    assert_eq!(app.count("select count(*) from recon.events").await, events);
    assert_eq!(queue(&app).await.len(), 1, "the new flag is still open");

    // The same flag twice (with and without its id): which note would count? Nothing is
    // closed.
    let open_id: i64 = sqlx::query_scalar("select id from recon.open_discrepancies")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let twice = dir.path().join("twice.csv");
    std::fs::write(
        &twice,
        format!(
            "flag_id,payment_id,kind,note\r\n{open_id},short-1,amount_mismatch,one\r\n\
             ,short-1,amount_mismatch,another\r\n"
        ),
    )
    .unwrap();
    let refused = app
        .run(&["resolve", "--from-csv", twice.to_str().unwrap()])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).starts_with("line 3: the same flag as line 2; keep one of the two notes"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(queue(&app).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excel_export_from_a_ru_locale_comes_back_too_and_a_bad_file_closes_nothing() {
    let app = flagged_day().await;
    let excel = app.run(&["report", "--flags", "--excel"]).await;
    let bytes = excel.stdout.clone();
    ok(&excel);
    assert!(
        bytes.starts_with("\u{feff}".as_bytes()),
        "a byte-order mark"
    );
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(";short-2;amount_mismatch;action;"), "{text}");
    assert!(
        text.contains(";1300;KZT;1234,50;KZT;1234,50;KZT;"),
        "amounts with a decimal comma: {text}"
    );

    let dir = tempfile::tempdir().unwrap();
    // One bad row: line-numbered, and no flag is closed.
    let bad = dir.path().join("bad.csv");
    let mut broken = with_notes(&text, ';');
    broken.push_str("99;short-1;amount_mismatch;;;;;;;;;;;;;;;;;;\r\n");
    std::fs::write(&bad, &broken).unwrap();
    let refused = app
        .run(&["resolve", "--from-csv", bad.to_str().unwrap()])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused),
        format!(
            "line 5: note: is empty; say why the flag is closed\n\
             error: {}: 1 problem in 1 row; no flag was closed. Fix them and give the file again.\n",
            bad.display()
        )
    );
    // A row that names no flag: nothing is closed either.
    let unknown = dir.path().join("unknown.csv");
    std::fs::write(
        &unknown,
        format!(
            "{}no-such;not_found;a note\r\n",
            "payment_id;kind;note\r\nshort-1;amount_mismatch;ok\r\n"
        ),
    )
    .unwrap();
    let refused = app
        .run(&["resolve", "--from-csv", unknown.to_str().unwrap()])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).starts_with("line 3: no such flag"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(queue(&app).await.len(), 3);

    let good = dir.path().join("good.csv");
    std::fs::write(&good, with_notes(&text, ';')).unwrap();
    let dry = ok(&app
        .run(&[
            "resolve",
            "--from-csv",
            good.to_str().unwrap(),
            "--dry-run",
            "--by",
            "aigerim",
        ])
        .await);
    assert!(dry.contains("would close 3 flags (by aigerim)"), "{dry}");
    assert_eq!(queue(&app).await.len(), 3, "a dry run closes nothing");
    let done = ok(&app
        .run(&[
            "resolve",
            "--from-csv",
            good.to_str().unwrap(),
            "--by",
            "aigerim",
        ])
        .await);
    assert!(done.contains("closed 3 flags (by aigerim)"), "{done}");
    assert!(queue(&app).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_of_flags_is_closed_in_one_step_with_a_reason() {
    let app = flagged_day().await;
    let dry = ok(&app
        .run(&[
            "resolve",
            "--all",
            "--kind",
            "amount_mismatch",
            "--note",
            "tolerance agreed",
            "--dry-run",
        ])
        .await);
    assert_eq!(
        dry.trim(),
        format!(
            "would close 2 flags of kind amount_mismatch (by {}); closed none",
            login_name()
        )
    );
    assert_eq!(queue(&app).await.len(), 3);

    let narrowed = ok(&app
        .run(&[
            "resolve",
            "--all",
            "--kind",
            "amount_mismatch",
            "--status",
            "error",
            "--note",
            "x",
            "--by",
            "aigerim",
        ])
        .await);
    assert_eq!(
        narrowed.trim(),
        "closed 0 flags of kind amount_mismatch (by aigerim)"
    );
    let other_days = ok(&app
        .run(&[
            "resolve",
            "--all",
            "--kind",
            "amount_mismatch",
            "--to",
            "2020-01-01",
            "--note",
            "x",
            "--by",
            "aigerim",
        ])
        .await);
    assert!(other_days.starts_with("closed 0 flags"), "{other_days}");

    let closed = ok(&app
        .run(&[
            "resolve",
            "--all",
            "--kind",
            "amount_mismatch",
            "--status",
            "success",
            "--note",
            "tolerance agreed",
            "--by",
            "aigerim",
        ])
        .await);
    assert_eq!(
        closed.trim(),
        "closed 2 flags of kind amount_mismatch (by aigerim)"
    );
    assert_eq!(
        queue(&app).await,
        [("dollars".to_owned(), "currency_mismatch".to_owned())]
    );
    assert_eq!(
        flags_of(&app, "short-2").await,
        [(
            "amount_mismatch".to_owned(),
            Some("aigerim".to_owned()),
            Some("tolerance agreed".to_owned())
        )]
    );

    // Names the daemon writes are not a person's.
    for by in ["daemon", "rule:expired_unpaid", "unknown"] {
        let refused = app
            .run(&[
                "resolve",
                "--all",
                "--kind",
                "currency_mismatch",
                "--note",
                "x",
                "--by",
                by,
            ])
            .await;
        assert_eq!(refused.status.code(), Some(1), "{by}");
        assert!(
            stderr(&refused).contains("give a person's name"),
            "{}",
            stderr(&refused)
        );
    }
    assert_eq!(queue(&app).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_columns_say_whose_money_in_every_format() {
    let app = TestApp::new(
        Scenario::new()
            .payment("paid", [Reply::invoice("success", "90.00", "KZT")])
            .payment("failed", [Reply::invoice("error", "2039.44", "KZT")])
            .payment(
                "expired",
                [Reply::invoice("incomplete", "2039.44", "KZT").with("lifetime", json!(1))],
            )
            .payment("dollars", [Reply::invoice("success", "14474.54", "USD")]),
    )
    .await;
    app.insert(
        "('paid', 100, 'KZT', null, '2026-11-30 10:00Z', null),
         ('failed', 2039.44, 'KZT', null, '2026-11-30 10:01Z', null),
         ('expired', 2039.44, 'KZT', null, '2026-11-30 10:02Z', null),
         ('dollars', 14474.54, 'KZT', null, '2026-11-30 10:03Z', null)",
    )
    .await;
    app.sweep().await;

    // (outcome, received_amount, received_currency, difference) by payment
    let expected = [
        ("paid", "paid", "90.00", "KZT", "-10.00"),
        ("failed", "failed", "", "", ""),
        ("expired", "expired_unpaid", "", "", ""),
        ("dollars", "paid", "14474.54", "USD", ""),
    ];

    let json = ok(&app.run(&["report", "--detail", "--format", "json"]).await);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    for (id, outcome, received, currency, difference) in expected {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["payment_id"] == id)
            .unwrap();
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
        assert_eq!(
            (
                text(&row["outcome"]),
                text(&row["received_amount"]),
                text(&row["received_currency"]),
                text(&row["difference"])
            ),
            (
                outcome.to_owned(),
                received.to_owned(),
                currency.to_owned(),
                difference.to_owned()
            ),
            "{id}: {row}"
        );
        assert!(
            !row["invoice_amount"].is_null(),
            "the invoice is still shown"
        );
    }

    let csv = ok(&app.run(&["report", "--detail", "--format", "csv"]).await);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let (_, outcome, received, currency, difference) = expected
            .iter()
            .find(|e| e.0 == cells[at("payment_id")])
            .unwrap();
        assert_eq!(
            (
                cells[at("outcome")],
                cells[at("received_amount")],
                cells[at("received_currency")],
                cells[at("difference")]
            ),
            (*outcome, *received, *currency, *difference),
            "{line}"
        );
        assert_eq!(cells[at("created_day")], "2026-11-30", "{line}");
    }

    let table = ok(&app.run(&["report", "--detail"]).await);
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(table.starts_with("payment_id"), "{table}");
    assert!(
        table.lines().next().unwrap().contains(" received "),
        "{table}"
    );
    assert_eq!(
        line("paid"),
        "paid success 100 KZT 90.00 KZT -10.00 amount_mismatch"
    );
    assert_eq!(line("failed"), "failed error 2039.44 KZT");
    assert_eq!(line("expired"), "expired incomplete 2039.44 KZT");
    assert_eq!(
        line("dollars"),
        "dollars success 14474.54 KZT 14474.54 USD currency_mismatch"
    );

    // The summary counts by the same definitions: what came in is received, per currency.
    let summary = ok(&app
        .run(&[
            "report",
            "--by",
            "settled",
            "--currency",
            "USD",
            "--format",
            "json",
        ])
        .await);
    let rows: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows:#}");
    let usd = &rows[0];
    assert_eq!(usd["received_amount"], "14474.54");
    assert_eq!(usd["expected_amount"], serde_json::Value::Null, "{usd}");
    assert_eq!(usd["difference"], serde_json::Value::Null, "{usd}");
    let table = ok(&app
        .run(&["report", "--by", "settled", "--currency", "USD"])
        .await);
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains("paid           success"), "{table}");
    // No expected amount and no difference: empty, not 0 (the fee of 0 is the provider's);
    // none of the payment was expected in USD, and its fee was stated.
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[1..],
        [
            "USD", "paid", "success", "1", "0", "14474.54", "0", "0", "1"
        ],
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semicolon_spreadsheet_reads_decimal_commas_and_spaced_thousands() {
    let app = TestApp::new(Scenario::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ru.csv");
    std::fs::write(
        &file,
        "payment_id;expected_amount;expected_currency\r\n\
         ru-1;1 234,50;KZT\r\n\
         ru-2;\"1\u{a0}234 567,05\";KZT\r\n\
         ru-3;12,5;KZT\r\n\
         ru-4;7.25;KZT\r\n",
    )
    .unwrap();
    let imported = ok(&app.run(&["import", file.to_str().unwrap()]).await);
    assert!(imported.contains("4 rows: 4 imported"), "{imported}");
    let amounts: Vec<(String, String)> = sqlx::query_as(
        "select payment_id, expected_amount::text from recon.payments order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    let as_pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        amounts,
        as_pairs(&[
            ("ru-1", "1234.50"),
            ("ru-2", "1234567.05"),
            ("ru-3", "12.5"),
            ("ru-4", "7.25")
        ])
    );

    // Thousands with a dot are not guessed at, and a comma file keeps refusing a comma.
    std::fs::write(
        &file,
        "payment_id;expected_amount\r\nde-1;1.234\r\nde-2;1 23,5\r\n",
    )
    .unwrap();
    let refused = app.run(&["import", file.to_str().unwrap()]).await;
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.starts_with("line 2: expected_amount: \"1.234\" may use a dot between thousands"),
        "{message}"
    );
    assert!(
        message.contains("line 3: expected_amount: \"1 23,5\" has a space that is not between groups of three digits"),
        "{message}"
    );
    std::fs::write(&file, "payment_id,expected_amount\r\nen-1,\"12,50\"\r\n").unwrap();
    let refused = app.run(&["import", file.to_str().unwrap()]).await;
    assert!(
        stderr(&refused).starts_with(
            "line 2: expected_amount: \"12,50\" uses a comma; write a dot as the decimal separator"
        ),
        "{}",
        stderr(&refused)
    );
    assert_eq!(app.count("select count(*) from recon.payments").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_the_schema_gets_one_line_that_says_to_migrate() {
    let db = TestDb::unmigrated().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    for args in [
        vec!["report"],
        vec!["report", "--detail"],
        vec![
            "resolve",
            "1",
            "--kind",
            "not_found",
            "--note",
            "x",
            "--by",
            "a",
        ],
        vec!["enqueue", "1"],
        vec!["digest"],
    ] {
        let output = run_binary(&args, &env).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            output.stdout.is_empty(),
            "{args:?}: nothing else is printed"
        );
        assert_eq!(
            stderr(&output),
            format!(
                "error: database {} has no freedompay-recon schema; run `freedompay-recon \
                 migrate` with the same settings first (it creates schema recon)\n",
                describe(&db)
            ),
            "{args:?}"
        );
    }

    // An older schema: the same, saying it is older.
    db.migrate_through(8).await;
    let output = run_binary(&["report"], &env).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("has an older freedompay-recon schema than this version needs")
            && message.contains("run `freedompay-recon migrate`"),
        "{message}"
    );

    // Any database error is one line: PostgreSQL's message once, without its source line.
    store::migrate(&db.pool).await.unwrap();
    sqlx::raw_sql(
        "drop view recon.daily_summary;
         drop function recon.daily_summary_between(timestamptz, timestamptz, text)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let output = run_binary(&["report"], &env).await;
    let message = stderr(&output);
    assert_eq!(
        message,
        "error: database error: function recon.daily_summary_between(timestamp with time \
         zone, timestamp with time zone, text) does not exist\n"
    );
}

/// `host:port/name`, as commands name a database.
fn describe(db: &TestDb) -> String {
    let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        db.name()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn month_end_filters_narrow_the_totals_and_an_unknown_fee_stays_unknown() {
    let app = TestApp::new(
        Scenario::new()
            .payment(
                "m-ok",
                [Reply::invoice("success", "100.00", "KZT").with("fee", json!(null))],
            )
            .payment(
                "m-ok2",
                [Reply::invoice("success", "200.00", "KZT").with("fee", json!("3.00"))],
            )
            .payment(
                "m-short",
                [Reply::invoice("success", "40.00", "KZT").with("fee", json!(null))],
            ),
    )
    .await;
    app.insert(
        "('m-ok', 100, 'KZT', null, '2026-06-10 10:00Z', null),
         ('m-ok2', 200, 'KZT', null, '2026-06-10 11:00Z', null),
         ('m-short', 50, 'KZT', null, '2026-06-10 12:00Z', null)",
    )
    .await;
    app.sweep().await;
    let summary = |args: &'static [&'static str]| {
        let app = &app;
        async move {
            let mut all = vec![
                "report",
                "--format",
                "json",
                "--from",
                "2026-06-01",
                "--to",
                "2026-06-30",
            ];
            all.extend_from_slice(args);
            let rows: serde_json::Value = serde_json::from_str(&ok(&app.run(&all).await)).unwrap();
            rows
        }
    };
    let all = summary(&[]).await;
    assert_eq!(all[0]["payments"], 3);
    assert_eq!(all[0]["received_amount"], "340.00");
    assert_eq!(all[0]["fee"], "3.00", "the fees that are known");
    assert_eq!(all[0]["payments_without_fee"], 2, "and how many are not");

    let flagged = summary(&["--flag", "amount_mismatch"]).await;
    assert_eq!(flagged.as_array().unwrap().len(), 1, "{flagged:#}");
    assert_eq!(
        flagged[0]["payments"], 1,
        "only the flagged payment is summed"
    );
    assert_eq!(flagged[0]["expected_amount"], "50");
    assert_eq!(flagged[0]["received_amount"], "40.00");
    assert_eq!(flagged[0]["fee"], serde_json::Value::Null, "unknown, not 0");
    assert_eq!(flagged[0]["difference"], "-10.00");

    let fee: Option<String> = sqlx::query_scalar(
        "select fee::text from recon.reconciliation where payment_id = 'm-short'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(fee, None);
    let (fees, without): (Option<String>, i64) = sqlx::query_as(
        "select sum(fee)::text, sum(payments_without_fee)::int8 from recon.daily_summary
         where basis = 'created'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!((fees.as_deref(), without), (Some("3.00"), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flags_open_at_the_end_of_a_day_are_listed_from_history() {
    let app = TestApp::new(Scenario::new()).await;
    app.report_in_utc().await;
    app.insert(
        "('a', 10, 'KZT', null, '2026-06-01 10:00Z', null),
         ('b', 10, 'KZT', null, '2026-06-01 10:00Z', null),
         ('c', 10, 'KZT', null, '2026-06-01 10:00Z', null),
         ('d', 10, 'KZT', null, '2026-06-01 10:00Z', null)",
    )
    .await;
    sqlx::raw_sql(
        "insert into recon.status_transitions
             (payment_id, observation_no, from_status, to_status, observed_at, body) values
             ('a', 1, null, 'success', '2026-06-28 09:00Z', '{}'),
             ('a', 2, 'success', 'error', '2026-07-02 09:00Z', '{}');
         insert into recon.discrepancies
             (payment_id, kind, expected, actual, detected_at, resolved_at, resolved_by, resolution)
         values
             -- open through the end of June, closed in July: listed
             ('a', 'amount_mismatch', '10', '9', '2026-06-28 09:00Z', '2026-07-03 08:00Z', 'aigerim', 'cash'),
             -- closed in June: not listed
             ('b', 'amount_mismatch', '10', '8', '2026-06-20 09:00Z', '2026-06-25 08:00Z', 'aigerim', 'cash'),
             -- opened in July: not listed
             ('c', 'order_mismatch', 'A', 'B', '2026-07-01 00:00Z', null, null, null),
             -- still open: listed
             ('d', 'not_found', null, 'not found', '2026-06-30 23:59:59Z', null, null, null),
             -- an outcome, not an exception: listed only with --class info
             ('d', 'lifetime_exceeded', null, 'process', '2026-06-15 00:00Z', null, null, null);",
    )
    .execute(app.pool())
    .await
    .unwrap();

    let csv = ok(&app
        .run(&[
            "report",
            "--flags",
            "--as-of",
            "2026-06-30",
            "--format",
            "csv",
        ])
        .await);
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let listed: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str(), r[6].as_str(), r[11].as_str()))
        .collect();
    // (payment, kind, age in whole days at the end of June 30, status then)
    assert_eq!(
        listed,
        [
            ("a", "amount_mismatch", "2", "success"),
            ("d", "not_found", "0", "")
        ],
        "{csv}"
    );
    let table = ok(&app
        .run(&["report", "--flags", "--as-of", "2026-06-30"])
        .await);
    assert!(
        table.trim_end().ends_with(
            "2 flags needing a person open at the end of 2026-06-30: under 1 day 1, 1-3 days 1, \
             3-7 days 0, over 7 days 0"
        ),
        "{table}"
    );
    let now = ok(&app.run(&["report", "--flags", "--format", "csv"]).await);
    assert_eq!(now.lines().count(), 3, "c and d are open now: {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_export_carries_the_reporting_day_beside_the_utc_times() {
    let app = TestApp::new(Scenario::new()).await;
    // 19:30 UTC on May 31 is June 1 in Almaty (UTC+5), the default reporting zone.
    app.insert("('j-1', 10, 'KZT', null, '2026-05-31 19:30Z', null)")
        .await;
    let csv = ok(&app
        .run(&[
            "report",
            "--detail",
            "--format",
            "csv",
            "--from",
            "2026-06-01",
            "--to",
            "2026-06-30",
        ])
        .await);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().expect("June's payment").split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(row[at("created_at")], "2026-05-31T19:30:00Z");
    assert_eq!(row[at("created_day")], "2026-06-01");
}

/// A database whose queue was full of normal expiries, upgraded: those flags are closed by
/// the rule through their resolution columns (history is not rewritten), a late payment
/// becomes its own flag, and a reader's grants on the rebuilt views are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_closes_the_open_expiries_by_the_rule_and_keeps_readers_grants() {
    let db = TestDb::migrated_through(8).await;
    let roles = crate::privilege::Roles::create(&db.pool, &["reader"]).await;
    let reader = roles.names[0].clone();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "grant usage on schema recon to \"{reader}\";
         grant select on recon.reconciliation, recon.open_discrepancies, recon.daily_summary,
                         recon.discrepancy_history to \"{reader}\";
         insert into recon.payments (payment_id, expected_amount, expected_currency, status,
                                     amount, currency, settled_at, next_check_at)
         values ('u-inc', 10, 'KZT', 'incomplete', 10, 'KZT', now(), null),
                ('u-proc', 10, 'KZT', 'process', 10, 'KZT', null, now()),
                ('u-late', 10, 'KZT', 'success', 10, 'KZT', now(), null),
                ('u-short', 10, 'KZT', 'success', 9, 'KZT', now(), null),
                ('u-settled', 10, 'KZT', 'success', 10, 'KZT', now(), null);
         insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         values ('u-inc', 'lifetime_exceeded', 'settled by x', 'incomplete', now() - interval '2 days'),
                ('u-proc', 'lifetime_exceeded', 'settled by x', 'process', now() - interval '2 days'),
                ('u-late', 'lifetime_exceeded', 'settled by x', 'process', now() - interval '2 days'),
                ('u-short', 'amount_mismatch', '10', '9', now() - interval '2 days');
         -- a late payment a person settled, the way it was done before
         insert into recon.discrepancies
             (payment_id, kind, expected, actual, detected_at, resolved_at, resolved_by, resolution)
         values ('u-settled', 'lifetime_exceeded', 'settled by x', 'process',
                 now() - interval '3 days', now() - interval '1 day', 'aigerim', 'refunded');
         create view public.bi_report as select payment_id, amount from recon.reconciliation;"
    )))
    .execute(&db.pool)
    .await
    .unwrap();

    // A view someone built on a view the upgrade rebuilds: refused, in one line naming it,
    // and nothing is changed.
    let refused = store::migrate(&db.pool).await.unwrap_err().to_string();
    assert!(
        refused.contains(
            "these views are built on finance views this upgrade rebuilds with new column \
             names: public.bi_report (on recon.reconciliation)"
        ),
        "{refused}"
    );
    assert_eq!(
        store::pending_migrations(&db.pool).await.unwrap(),
        store::MIGRATOR.iter().count() - 8,
        "nothing was applied"
    );
    sqlx::query("drop view public.bi_report")
        .execute(&db.pool)
        .await
        .unwrap();
    store::migrate(&db.pool).await.unwrap();

    let flags: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "select payment_id, kind, resolved_by from recon.discrepancies order by payment_id, id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let flag = |id: &str, kind: &str, by: Option<&str>| {
        (id.to_owned(), kind.to_owned(), by.map(str::to_owned))
    };
    assert_eq!(
        flags,
        [
            flag("u-inc", "lifetime_exceeded", Some("rule:expired_unpaid")),
            flag("u-late", "lifetime_exceeded", Some("daemon")),
            flag("u-late", "paid_after_deadline", None),
            flag("u-proc", "lifetime_exceeded", Some("rule:expired_unpaid")),
            flag("u-settled", "lifetime_exceeded", Some("aigerim")),
            flag("u-short", "amount_mismatch", None),
        ]
    );
    let settled_missed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "select deadline_missed_at from recon.payments where payment_id = 'u-settled'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        settled_missed, None,
        "settled by a person before: no late-payment flag to raise again"
    );
    let outcomes: Vec<(String, String)> =
        sqlx::query_as("select payment_id, outcome from recon.reconciliation order by payment_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        outcomes,
        [
            ("u-inc".to_owned(), "expired_unpaid".to_owned()),
            ("u-late".to_owned(), "paid".to_owned()),
            ("u-proc".to_owned(), "expired_unpaid".to_owned()),
            ("u-settled".to_owned(), "paid".to_owned()),
            ("u-short".to_owned(), "paid".to_owned()),
        ]
    );
    // Every change told.
    let events: Vec<(String, i64)> =
        sqlx::query_as("select type, count(*) from recon.events group by type order by type")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        events,
        [
            ("flag_opened".to_owned(), 6),
            ("flag_resolved".to_owned(), 3)
        ],
        "five flags raised before the upgrade, one by it; three closed by it"
    );

    // The reader still reads the rebuilt views, and what the flag kinds mean.
    let as_reader = sqlx::PgPool::connect(&db.url_as(&reader)).await.unwrap();
    let queue: Vec<(String, String)> =
        sqlx::query_as("select payment_id, kind from recon.open_discrepancies order by payment_id")
            .fetch_all(&as_reader)
            .await
            .unwrap();
    assert_eq!(
        queue,
        [
            ("u-late".to_owned(), "paid_after_deadline".to_owned()),
            ("u-short".to_owned(), "amount_mismatch".to_owned())
        ]
    );
    let classes: i64 = sqlx::query_scalar("select count(*) from recon.flag_kinds")
        .fetch_one(&as_reader)
        .await
        .unwrap();
    assert_eq!(
        classes,
        freedompay_recon::domain::FlagKind::ALL.len() as i64
    );
    as_reader.close().await;
    roles.drop_all(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_kinds_and_classes_in_the_schema_are_the_ones_the_code_knows() {
    use freedompay_recon::domain::FlagKind;
    let db = TestDb::new().await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("select kind, class from recon.flag_kinds order by kind")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut code: Vec<(String, String)> = FlagKind::ALL
        .iter()
        .map(|k| (k.as_str().to_owned(), k.class().as_str().to_owned()))
        .collect();
    code.sort();
    assert_eq!(rows, code);
}
