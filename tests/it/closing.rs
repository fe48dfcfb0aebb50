//! Closing a month (issue 24, item 1): the figures signed never change; every later change to
//! one of the month's payments is one adjustment booked in the open period, naming its cause,
//! with its event; reopening and closing again keep both signatures; the database refuses to
//! change any of it.

use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::json;

use crate::helpers::{TestApp, ok, refused};

/// October 2026 in Almaty: a payment still in progress (paid late, after the close), one
/// paid (reversed after it), one paid as expected (whose expected amount is changed by SQL
/// after it), and one paid short (whose flag is resolved after it).
async fn october() -> TestApp {
    let invoice = |status: &str, amount: &str| {
        Reply::invoice(status, amount, "KZT").with("lifetime", json!(null))
    };
    let app = TestApp::new(
        Scenario::new()
            .payment(
                "c-late",
                [invoice("process", "1000.00"), invoice("success", "1000.00")],
            )
            .payment(
                "c-reversed",
                [invoice("success", "2000.00"), invoice("error", "2000.00")],
            )
            .payment("c-expected", [invoice("success", "3000.00")])
            .payment("c-flagged", [invoice("success", "900.00")]),
    )
    .await;
    app.insert(
        "('c-late', 1000, 'KZT', null, '2026-10-10T10:00:00+05:00', null),
         ('c-reversed', 2000, 'KZT', null, '2026-10-11T10:00:00+05:00', null),
         ('c-expected', 3000, 'KZT', null, '2026-10-12T10:00:00+05:00', null),
         ('c-flagged', 1000, 'KZT', null, '2026-10-31T23:30:00+05:00', null)",
    )
    .await;
    app.sweep().await;
    app
}

async fn csv_of_october(app: &TestApp) -> String {
    ok(&app
        .run(&["report", "--month", "2026-10", "--format", "csv"])
        .await)
}

/// Live summary rows of October (computed from the payments) against the signed figures
/// plus every adjustment's legs: the rows that differ.
async fn unexplained(app: &TestApp) -> i64 {
    app.count(
        "with live as (
             select currency, outcome, status, sum(payments) as payments,
                    coalesce(sum(expected_amount), 0) as expected,
                    coalesce(sum(received_amount), 0) as received,
                    coalesce(sum(fee), 0) as fee, sum(needs_action) as action
             from recon.daily_summary_rows(recon.day_start('2026-10-01'),
                                           recon.day_start('2026-11-01'), null)
             where basis = 'created'
             group by 1, 2, 3),
         explained as (
             select currency, outcome, status, sum(payments) as payments,
                    sum(expected) as expected, sum(received) as received, sum(fee) as fee,
                    sum(action) as action
             from (select r.currency, r.outcome, r.status, r.payments,
                          coalesce(r.expected_amount::numeric, 0) as expected,
                          coalesce(r.received_amount::numeric, 0) as received,
                          coalesce(r.fee::numeric, 0) as fee, r.needs_action as action
                   from recon.current_closes() c
                   cross join jsonb_to_recordset(c.figures) as r(
                       currency text, outcome text, status text, payments int8,
                       expected_amount text, received_amount text, fee text,
                       needs_action int8)
                   union all
                   select l.currency, l.outcome, l.status, l.payments, l.expected_amount,
                          l.received_amount, l.fee, l.needs_action
                   from recon.adjustments a cross join lateral recon.adjustment_legs(a) l) u
             group by 1, 2, 3
             having sum(payments) <> 0)
         select count(*) from (
             (select * from live except select * from explained)
             union all
             (select * from explained except select * from live)) d",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_month_keeps_its_signed_figures_and_every_later_change_is_one_adjustment() {
    let app = october().await;
    assert_eq!(
        app.count("select count(*) from recon.payments where status is not null")
            .await,
        4
    );
    let closed = ok(&app
        .run(&[
            "close",
            "--month",
            "2026-10",
            "--note",
            "checked against the bank statement",
            "--by",
            "b.sadykova",
        ])
        .await);
    assert!(closed.contains("closed 2026-10: "), "{closed}");
    let signed = csv_of_october(&app).await;
    assert_eq!(
        signed.lines().count(),
        5,
        "a header and four days: {signed}"
    );

    // After the close: a late payment and a reversal a recheck finds, an expected amount
    // changed by SQL, a flag resolved.
    ok(&app.run(&["recheck", "c-late", "c-reversed"]).await);
    app.sweep().await;
    sqlx::query("update recon.payments set expected_amount = 3500 where payment_id = 'c-expected'")
        .execute(app.pool())
        .await
        .unwrap();
    ok(&app
        .run(&[
            "resolve",
            "c-flagged",
            "--kind",
            "amount_mismatch",
            "--note",
            "the rest paid in cash",
            "--by",
            "b.sadykova",
        ])
        .await);
    assert_eq!(
        app.count(
            "select count(*) from recon.payments
             where (payment_id, status) in (('c-late', 'success'), ('c-reversed', 'error'))"
        )
        .await,
        2,
        "the rechecks found the late payment and the reversal"
    );

    assert_eq!(
        csv_of_october(&app).await,
        signed,
        "a closed month's report is its signature, byte for byte"
    );
    let adjustments: Vec<(String, String, String, String)> = sqlx::query_as(
        "select payment_id, cause_kind, cause, booked_day::text from recon.adjustments
         order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    let today: String = sqlx::query_scalar("select recon.report_day(now())::text")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let kinds: Vec<(&str, &str)> = adjustments
        .iter()
        .map(|(id, kind, _, _)| (id.as_str(), kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("c-expected", "intake_change"),
            ("c-flagged", "flag"),
            ("c-late", "transition"),
            ("c-reversed", "transition")
        ],
        "{adjustments:#?}"
    );
    assert!(adjustments.iter().all(|a| a.3 == today), "booked today");
    assert!(
        adjustments[0].2.contains("expected_amount"),
        "{adjustments:#?}"
    );
    assert!(adjustments[1].2.contains("resolved by"), "{adjustments:#?}");
    assert!(adjustments[2].2.contains("→ success"), "{adjustments:#?}");
    assert!(
        adjustments[3].2.contains("success → error"),
        "{adjustments:#?}"
    );
    assert_eq!(
        app.count("select count(*) from recon.events where type = 'adjustment_booked'")
            .await,
        4
    );
    assert_eq!(
        unexplained(&app).await,
        0,
        "the signed figures plus the adjustments are the rows"
    );

    // The reports say so: the closed month's table, and today's adjustments apart.
    let table = ok(&app.run(&["report", "--month", "2026-10"]).await);
    assert!(
        table.contains("2026-10 is closed: its rows are the figures signed")
            && table.contains("(on behalf of b.sadykova)")
            && table.contains("4 adjustments booked against it since"),
        "{table}"
    );
    let booked = ok(&app.run(&["report", "--from", &today, "--to", &today]).await);
    assert!(
        booked.contains("to closed months, not in the rows above:")
            && booked.contains("  2026-10 KZT: 4 adjustments"),
        "{booked}"
    );
    let listed = ok(&app
        .run(&["report", "--adjustments", "--format", "csv"])
        .await);
    assert_eq!(listed.lines().count(), 5, "{listed}");
    let flag_filter = app
        .run(&["report", "--month", "2026-10", "--flag", "amount_mismatch"])
        .await;
    assert!(refused(&flag_filter).contains("2026-10 is closed"));

    // History is evidence.
    for statement in [
        "update recon.period_closes set note = 'x'",
        "delete from recon.period_closes",
        "update recon.adjustments set cause = 'x'",
        "delete from recon.adjustments",
        "update recon.payment_changes set changes = '{}'",
    ] {
        let error = sqlx::query(statement)
            .execute(app.pool())
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }

    // Reopened, the month reads the rows again; closed anew, it signs anew; both stay.
    ok(&app
        .run(&[
            "close",
            "--reopen",
            "2026-10",
            "--reason",
            "the bank corrected its statement",
        ])
        .await);
    let reopened = csv_of_october(&app).await;
    assert_ne!(reopened, signed, "the rows changed since the first close");
    ok(&app
        .run(&["close", "--month", "2026-10", "--note", "signed again"])
        .await);
    assert_eq!(csv_of_october(&app).await, reopened);
    let closes: Vec<(String, Option<String>)> =
        sqlx::query_as("select action, figures_sha256 from recon.period_closes order by id")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(
        closes.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["close", "reopen", "close"]
    );
    assert_ne!(closes[0].1, closes[2].1, "two signatures, both kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn months_close_in_order_forward_only_and_only_the_latest_reopens() {
    let app = october().await;
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency, created_at)
         values ('sept-1', 10, 'KZT', '2026-09-30T23:00:00+05:00')",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let skipped = app
        .run(&["close", "--month", "2026-10", "--note", "n", "--by", "anna"])
        .await;
    assert!(
        refused(&skipped).contains("month 2026-09 holds payments and is not closed"),
        "{}",
        String::from_utf8_lossy(&skipped.stderr)
    );
    let dry = ok(&app
        .run(&[
            "close",
            "--month",
            "2026-09",
            "--note",
            "n",
            "--dry-run",
            "--by",
            "anna",
        ])
        .await);
    assert!(dry.contains("would close 2026-09"), "{dry}");
    assert_eq!(
        app.count("select count(*) from recon.period_closes").await,
        0
    );
    ok(&app
        .run(&["close", "--month", "2026-09", "--note", "n", "--by", "anna"])
        .await);
    let again = app
        .run(&["close", "--month", "2026-09", "--note", "n", "--by", "anna"])
        .await;
    assert!(refused(&again).contains("closed already"));
    let now: String = sqlx::query_scalar("select to_char(recon.report_day(now()), 'YYYY-MM')")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let current = app
        .run(&["close", "--month", &now, "--note", "n", "--by", "anna"])
        .await;
    assert!(refused(&current).contains("has not ended"));
    ok(&app
        .run(&["close", "--month", "2026-10", "--note", "n", "--by", "anna"])
        .await);
    let not_latest = app
        .run(&[
            "close", "--reopen", "2026-09", "--reason", "r", "--by", "anna",
        ])
        .await;
    assert!(
        refused(&not_latest).contains("only the latest closed month can be reopened (2026-10)")
    );
    ok(&app
        .run(&[
            "close", "--reopen", "2026-10", "--reason", "r", "--by", "anna",
        ])
        .await);
    ok(&app
        .run(&[
            "close", "--reopen", "2026-09", "--reason", "r", "--by", "anna",
        ])
        .await);
    assert_eq!(
        app.count("select count(*) from recon.period_state where closed_through is null")
            .await,
        1
    );
    // A payment added back-dated into a closed month is an adjustment too.
    ok(&app
        .run(&["close", "--month", "2026-09", "--note", "n", "--by", "anna"])
        .await);
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency, created_at)
         values ('sept-2', 20, 'KZT', '2026-09-15T12:00:00+05:00')",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let added: String =
        sqlx::query_scalar("select cause_kind from recon.adjustments where payment_id = 'sept-2'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(added, "new_payment");
}

/// docs/finance.md "Closing a month", pasted as written (the program on PATH as
/// `freedompay-recon`), against a November with payments: every line works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closing_a_month_block_of_finance_md_runs_as_written() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert(
        "('n-1', 1000, 'KZT', null, '2026-11-05T10:00:00+05:00', null),
         ('n-2', 2000, 'KZT', null, '2026-11-06T10:00:00+05:00', null)",
    )
    .await;
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/finance.md")).unwrap();
    let after = doc
        .split_once("\n## Closing a month\n")
        .expect("the section")
        .1;
    let start = after.find("```sh\n").expect("a shell block") + "```sh\n".len();
    let script = &after[start..start + after[start..].find("\n```").unwrap()];

    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_freedompay-recon"),
        bin.path().join("freedompay-recon"),
    )
    .unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::task::spawn_blocking({
        let (script, cwd, url) = (
            format!("set -e\n{script}\n"),
            cwd.path().to_owned(),
            app.db.url.clone(),
        );
        move || {
            std::process::Command::new("bash")
                .args(["-c", &script])
                .current_dir(cwd)
                .env_clear()
                .env("PATH", path)
                .env("USER", "finance-reader")
                .env("RUST_LOG", "warn")
                .env("DATABASE_URL", url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("would close 2026-11"), "{stdout}");
    assert!(
        stdout.contains("2026-11 is closed: its rows are the figures signed"),
        "{stdout}"
    );
    assert!(cwd.path().join("adjustments.csv").exists());
    let closes: Vec<(String, String)> =
        sqlx::query_as("select action, on_behalf_of from recon.period_closes order by id")
            .fetch_all(app.pool())
            .await
            .unwrap();
    // On behalf of the login name (from the user database), as `resolve` records it.
    let login = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let login = login.trim();
    assert_eq!(
        closes,
        [
            ("close".to_owned(), login.to_owned()),
            ("reopen".to_owned(), login.to_owned()),
            ("close".to_owned(), login.to_owned())
        ]
    );
}
