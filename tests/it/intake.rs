//! Rows from outside are hostile until checked: one id rule and exact amounts on every intake
//! path, the database included; bounded imports; bad rows from before the rules parked, not
//! lost.

use std::io::Write as _;
use std::process::Output;

use freedompay_recon::domain::rules;
use freedompay_recon::simulator::{Reply, Scenario};
use freedompay_recon::store;

use crate::helpers::{TestApp, TestDb, run_binary};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn csv_file(text: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::with_suffix(".csv").unwrap();
    file.write_all(text).unwrap();
    file
}

/// The Rust rules and the schema's functions agree on every tricky value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_rules_and_the_schema_rules_agree() {
    let app = TestApp::new(Scenario::new()).await;
    let texts = [
        "1001",
        "Счет-1",
        "a b",
        " x",
        "x ",
        "\u{a0}x",
        "x\u{3000}",
        "x\u{2007}",
        "",
        "1\u{200b}2",
        "\u{feff}1",
        "1\u{202e}2",
        "1\u{2028}2",
        "a\tb",
        "a\u{7f}b",
        "a\u{85}b",
        "x\u{e0041}",
        "x\u{1d173}",
        "x\u{ad}y",
        "😀",
        // One id, one payment: decomposed text, fillers and blanks, variation selectors.
        "caf\u{e9}-1",
        "cafe\u{301}-1",
        "\u{3164}",
        "\u{115f}1",
        "1\u{1160}",
        "1\u{ffa0}",
        "\u{2800}",
        "1\u{fe0f}",
        "1\u{e0100}",
        "1\u{34f}2",
        "1\u{17b4}",
        "\u{1100}\u{1161}",
    ];
    for text in texts {
        for max in [3_usize, 128] {
            let sql: Option<String> = sqlx::query_scalar("select recon.text_problem($1, $2)")
                .bind(text)
                .bind(max as i32)
                .fetch_one(app.pool())
                .await
                .unwrap();
            let rust = rules::text_problem(text, max);
            assert_eq!(
                sql.is_some(),
                rust.is_some(),
                "{text:?} (max {max}): schema {sql:?}, rust {rust:?}"
            );
            if let (Some(sql), Some(rust)) = (sql, rust) {
                assert!(
                    rust.starts_with(&sql),
                    "{text:?}: the same words: {sql:?} / {rust:?}"
                );
            }
        }
    }
    for amount in [
        "0",
        "5000.00",
        "999999999999999999.99999999",
        "1000000000000000000",
        "0.123456789",
        "-12.5",
        "1.000000000",
    ] {
        let sql: Option<String> = sqlx::query_scalar("select recon.amount_problem($1::numeric)")
            .bind(amount)
            .fetch_one(app.pool())
            .await
            .unwrap();
        let rust = rules::exact_amount(amount).err();
        assert_eq!(sql, rust, "{amount}");
    }
    let schema_timestamp_problem = |at: &'static str| {
        let pool = app.pool().clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "select recon.timestamp_problem($1::timestamptz)",
            )
            .bind(at)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    for at in [
        "2025-07-11T11:19:49Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ] {
        let sql = schema_timestamp_problem(at).await;
        assert_eq!(sql, rules::timestamp_problem(at.parse().unwrap()), "{at}");
    }
    for at in [
        "infinity",
        "-infinity",
        "0001-01-01 00:00:00+00 BC",
        "10000-01-01 00:00:00+00",
    ] {
        assert!(schema_timestamp_problem(at).await.is_some(), "{at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_rule_on_every_intake_path_and_empty_text_is_null() {
    let app = TestApp::new(Scenario::new()).await;
    // `enqueue` and `import` read " x " as "x": one payment, whichever path it came by.
    let enqueued = app.run(&["enqueue", " x ", "--order-id", ""]).await;
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    let file = csv_file(b"payment_id,order_id\n\" x \",\n");
    let imported = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("0 imported, 1 already known"),
        "{}",
        String::from_utf8_lossy(&imported.stdout)
    );
    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as("select payment_id, order_id from recon.payments")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(
        stored,
        [("x".to_owned(), None)],
        "an empty order id is NULL"
    );

    // An invisible character is refused by every path, each naming it.
    let zero_width = "12\u{200b}3";
    let enqueued = app.run(&["enqueue", zero_width]).await;
    assert_eq!(enqueued.status.code(), Some(2));
    assert!(
        stderr(&enqueued).contains("U+200B"),
        "{}",
        stderr(&enqueued)
    );
    let file = csv_file(format!("payment_id\n{zero_width}\n").as_bytes());
    let imported = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert_eq!(imported.status.code(), Some(1));
    assert!(
        stderr(&imported).starts_with(
            "line 2: payment_id: payment id contains a control or invisible character (U+200B)"
        ),
        "{}",
        stderr(&imported)
    );
    for (id, order) in [
        (zero_width, None),
        (" x", None),
        ("", None),
        ("ok", Some("")),
    ] {
        let refused =
            sqlx::query("insert into recon.payments (payment_id, order_id) values ($1, $2)")
                .bind(id)
                .bind(order)
                .execute(app.pool())
                .await
                .unwrap_err()
                .to_string();
        assert!(
            refused.contains("violates check constraint")
                && (refused.contains("payment_id_is_1_to_128_visible_chars_without_outer_spaces")
                    || refused.contains("order_id_is_null_or_1_to_256_visible_chars")),
            "{id:?}: {refused}"
        );
    }
    assert_eq!(app.count("select count(*) from recon.payments").await, 1);
}

/// The red team's look-alikes: `café-1` composed and decomposed is one payment by every
/// intake path, and ids made of or carrying blank-looking characters are refused by each path
/// and by the schema, in the same words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_ids_are_one_payment_or_refused() {
    let app = TestApp::new(Scenario::new()).await;
    let (composed, decomposed) = ("caf\u{e9}-1", "cafe\u{301}-1");
    let enqueued = app
        .run(&["enqueue", decomposed, "--order-id", "cafe\u{301}"])
        .await;
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    let file = csv_file(format!("payment_id\n{composed}\n").as_bytes());
    let imported = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("0 imported, 1 already known"),
        "{}",
        String::from_utf8_lossy(&imported.stdout)
    );
    let file = csv_file(format!("payment_id\n{composed}\n{decomposed}\n").as_bytes());
    let imported = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert!(
        stderr(&imported).starts_with(&format!(
            "line 3: payment_id: \"{composed}\" is already on line 2 of this file"
        )),
        "{}",
        stderr(&imported)
    );
    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as("select payment_id, order_id from recon.payments")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(
        stored,
        [(composed.to_owned(), Some("caf\u{e9}".to_owned()))],
        "stored composed, once"
    );

    for (id, code) in [
        ("\u{3164}", "3164"),
        ("\u{2800}", "2800"),
        ("1001\u{fe0f}", "FE0F"),
        ("\u{ffa0}1", "FFA0"),
    ] {
        let enqueued = app.run(&["enqueue", id]).await;
        assert_eq!(enqueued.status.code(), Some(2), "{id:?}");
        assert!(
            stderr(&enqueued).contains(&format!("invisible character (U+{code})")),
            "{}",
            stderr(&enqueued)
        );
        let file = csv_file(format!("payment_id\n{id}\n").as_bytes());
        let imported = app.run(&["import", file.path().to_str().unwrap()]).await;
        assert_eq!(imported.status.code(), Some(1), "{id:?}");
        assert!(
            stderr(&imported).contains(&format!("invisible character (U+{code})")),
            "{}",
            stderr(&imported)
        );
    }
    for id in [decomposed, "\u{3164}", "\u{2800}", "1001\u{fe0f}"] {
        let refused = sqlx::query("insert into recon.payments (payment_id) values ($1)")
            .bind(id)
            .execute(app.pool())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("payment_id_is_1_to_128_visible_chars_without_outer_spaces"),
            "{id:?}: {refused}"
        );
    }
    assert_eq!(app.count("select count(*) from recon.payments").await, 1);
}

/// A database that already holds look-alike ids, upgraded: the rows that break the new rule
/// are parked with the reason, never rewritten, and the rest are polled as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_id_migration_parks_look_alikes_without_rewriting_them() {
    let db = TestDb::migrated_through(9).await;
    sqlx::query(
        "insert into recon.payments (payment_id, order_id)
         values ('caf\u{e9}-1', null), ($1, null), ($2, null), ('fine', $3)",
    )
    .bind("cafe\u{301}-1")
    .bind("\u{3164}")
    .bind("\u{2800}")
    .execute(&db.pool)
    .await
    .unwrap();

    store::migrate(&db.pool).await.unwrap();
    let parked: Vec<(String, String, Option<serde_json::Value>)> = sqlx::query_as(
        "select payment_id, last_error, parked_values from recon.parked_payments
         order by payment_id collate \"C\"",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let ids: Vec<&str> = parked.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        ids,
        ["cafe\u{301}-1", "fine", "\u{3164}"],
        "kept as they were, parked"
    );
    assert!(
        parked[0]
            .1
            .contains("payment_id is not in Unicode's composed form (NFC)")
    );
    assert!(parked[0].1.contains("an id is never rewritten"));
    assert_eq!(parked[1].2.as_ref().unwrap()["order_id"], "\u{2800}");
    assert!(
        parked[1]
            .1
            .contains("order_id contains a control or invisible character")
    );
    assert!(
        parked[2]
            .1
            .contains("payment_id contains a control or invisible character")
    );

    let sim = crate::helpers::simulator(
        Scenario::new().fallback([Reply::invoice("process", "10", "KZT")]),
    )
    .await;
    let settings = crate::helpers::settings(&db, &sim, &[]);
    let outcome = crate::helpers::engine(&db, &settings)
        .reconcile_due(&tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.claimed, 1, "only the composed café-1 is polled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_are_exact_or_refused_and_sums_never_overflow() {
    let app = TestApp::new(Scenario::new()).await;
    for (amount, problem) in [
        ("1.000000001", "more than 8 digits after the decimal point"),
        ("1e18", "more than 18 digits before the decimal point"),
        (
            "0.12345678901234567890123456789",
            "too many digits to be held exactly",
        ),
        ("NaN", "not a decimal number"),
    ] {
        let output = app.run(&["enqueue", "a-1", "--amount", amount]).await;
        assert_eq!(output.status.code(), Some(2), "{amount}");
        assert!(
            stderr(&output).contains(problem),
            "{amount}: {}",
            stderr(&output)
        );
    }
    let file = csv_file(b"payment_id,expected_amount\na-2,1.000000000000000000000000000001\n");
    let imported = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert_eq!(imported.status.code(), Some(1));
    assert!(
        stderr(&imported).starts_with("line 2: expected_amount: \"1.000000000000000000000000000001\" has too many digits to be held exactly"),
        "{}",
        stderr(&imported)
    );
    for bad in ["'NaN'", "'Infinity'", "1e40", "0.123456789"] {
        let refused = sqlx::query(sqlx::AssertSqlSafe(format!(
            "insert into recon.payments (payment_id, expected_amount) values ('a-3', {bad})"
        )))
        .execute(app.pool())
        .await
        .unwrap_err()
        .to_string();
        assert!(
            refused.contains("expected_amount_is_finite_below_1e18_with_at_most_8_decimals"),
            "{bad}: {refused}"
        );
    }

    // The largest amounts the rules allow, summed: exact, in every report.
    app.insert(
        "('big-1', 999999999999999999.99999999, 'KZT', null, '2025-07-11T06:00:00Z', null),
         ('big-2', 999999999999999999.99999999, 'KZT', null, '2025-07-11T07:00:00Z', null)",
    )
    .await;
    let json = app.run(&["report", "--format", "json"]).await;
    assert!(json.status.success(), "{}", stderr(&json));
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows[0]["expected_amount"], "1999999999999999999.99999998");
    let table = app.run(&["report"]).await;
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(String::from_utf8_lossy(&table.stdout).contains("1999999999999999999.99999998"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_bounded_and_every_cell_postgresql_would_refuse_is_named() {
    let app = TestApp::new(Scenario::new()).await;

    // A huge cell stops the import at its line, without reading it whole.
    let mut huge = b"payment_id,order_id\nok-1,A\nok-2,\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
    huge.extend(b"\"\nok-3,B\n");
    let file = csv_file(&huge);
    let output = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.starts_with("line 3: row: longer than 16384 bytes; the file was not read past it"),
        "{message}"
    );
    assert!(
        message.len() < 1024,
        "no huge echo: {} bytes",
        message.len()
    );

    // A screenful of errors, then a count of the rest.
    let mut many = b"payment_id,expected_amount\n".to_vec();
    for n in 0..1000 {
        many.extend(format!("m-{n},ten\n").as_bytes());
    }
    let file = csv_file(&many);
    let output = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 22, "{message}");
    assert!(lines[0].starts_with("line 2: expected_amount: \"ten\""));
    assert_eq!(lines[20], "… and 980 more");
    assert!(lines[21].contains("1000 problems in 1000 rows; nothing was imported"));

    // Cells PostgreSQL would refuse are line errors, never a raw database error.
    let file = csv_file(
        "payment_id,order_id,created_at,expires_at\n\
         n-1,A\u{0}1,,\n\
         n-2,,-5000-01-01 00:00:00,\n\
         n-3,,,+10000-01-01T00:00:00Z\n\
         n-4,,,infinity\n"
            .as_bytes(),
    );
    let output = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<String> = stderr(&output).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_eq!(
        lines[0],
        "line 2: order_id: order id contains a control or invisible character (U+0000)"
    );
    assert_eq!(
        lines[1],
        "line 3: created_at: \"-5000-01-01 00:00:00\" is outside the years 1 to 9999"
    );
    assert!(lines[2].starts_with("line 4: expires_at: \"+10000-01-01T00:00:00Z\" is"));
    assert!(lines[3].starts_with("line 5: expires_at: \"infinity\" is not a timestamp"));
    assert_eq!(app.count("select count(*) from recon.payments").await, 0);
}

/// A database migrated by the previous version, with rows the new rules refuse: the migration
/// parks them (values moved aside, never deleted) and every report and sweep works after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_migration_parks_rows_that_break_them_and_adopts_the_old_migrations_record() {
    // The previous version: the first three migrations, recorded in public._sqlx_migrations.
    let db = TestDb::migrated_through(3).await;
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, order_id, created_at, expires_at)
         values ('good', 10, 'A-1', now(), null),
                ('empty-order', 10, '', now(), null),
                ('nan', 'NaN', null, now(), null),
                ('huge', 1e40, null, now(), null),
                ('long-order', null, repeat('o', 300), now(), null),
                ('old', null, null, '-infinity', 'infinity'),
                (' spaced', null, null, now(), null)",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    store::migrate(&db.pool).await.unwrap();
    assert_eq!(store::pending_migrations(&db.pool).await.unwrap(), 0);
    let applied: i64 = sqlx::query_scalar("select count(*) from recon._sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, store::MIGRATOR.iter().count());

    let parked: Vec<(String, String, Option<serde_json::Value>)> = sqlx::query_as(
        "select payment_id, last_error, parked_values from recon.parked_payments
         order by payment_id collate \"C\"",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let ids: Vec<&str> = parked.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(ids, [" spaced", "huge", "long-order", "nan", "old"]);
    let by_id = |id: &str| parked.iter().find(|p| p.0 == id).unwrap();
    assert!(
        by_id("nan").1.contains("expected_amount is not a number"),
        "{:?}",
        by_id("nan")
    );
    assert_eq!(
        by_id("huge").2.as_ref().unwrap()["expected_amount"],
        "10000000000000000000000000000000000000000"
    );
    assert_eq!(by_id("old").2.as_ref().unwrap()["created_at"], "-infinity");
    assert_eq!(by_id("old").2.as_ref().unwrap()["expires_at"], "infinity");
    assert!(
        by_id(" spaced")
            .1
            .contains("payment_id has spaces around it")
    );
    let order: Option<String> =
        sqlx::query_scalar("select order_id from recon.payments where payment_id = 'empty-order'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        order, None,
        "an empty order id became NULL, and the row is not parked"
    );

    // Reports read every row, and a sweep polls only the readable ones.
    let detail = run_binary(
        &["report", "--detail", "--format", "csv"],
        &[("DATABASE_URL", &db.url)],
    )
    .await;
    assert!(
        detail.status.success(),
        "{}",
        String::from_utf8_lossy(&detail.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&detail.stdout).lines().count(), 8);
    let sim = crate::helpers::simulator(
        Scenario::new().fallback([Reply::invoice("process", "10", "KZT")]),
    )
    .await;
    let settings = crate::helpers::settings(&db, &sim, &[]);
    let outcome = crate::helpers::engine(&db, &settings)
        .reconcile_due(&tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.claimed, 2, "good and empty-order");
}
