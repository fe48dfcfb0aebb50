//! Verdicts finance can sign off on: the deadline that counts, sums that keep every amount
//! in its own currency, and a history nobody can rewrite.

use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::json;

use crate::helpers::{Spawned, TestApp, TestDb, run_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_earlier_of_the_two_deadlines_counts_and_incomplete_always_does() {
    let later = (chrono::Utc::now() + chrono::TimeDelta::days(1)).to_rfc3339();
    let app = TestApp::new(
        Scenario::new()
            .payment(
                "cancelled",
                [Reply::invoice("process", "10", "KZT").with("lifetime", json!(later))],
            )
            .payment(
                "expired",
                [Reply::invoice("incomplete", "10", "KZT").with("lifetime", json!(later))],
            ),
    )
    .await;
    // The merchant cancelled the order an hour ago; the provider's lifetime runs a day.
    app.insert(
        "('cancelled', 10, 'KZT', null, now() - interval '2 hours', now() - interval '1 hour'),
         ('expired', 10, 'KZT', null, now(), null)",
    )
    .await;
    app.sweep().await;

    let (expires_at_is_merchants, source): (bool, String) = sqlx::query_as(
        "select r.expires_at = p.expires_at, r.expiry_source
         from recon.reconciliation r join recon.payments p using (payment_id)
         where payment_id = 'cancelled'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(expires_at_is_merchants);
    assert_eq!(source, "merchant");
    // Both expired unpaid: each flag raised, and closed by the rule as it opened.
    let flags: Vec<(String, String, String, String)> = sqlx::query_as(
        "select payment_id, expected, actual, resolved_by from recon.discrepancy_history
         where kind = 'lifetime_exceeded' order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(flags.len(), 2, "{flags:?}");
    assert!(
        flags.iter().all(|f| f.3 == "rule:expired_unpaid"),
        "{flags:?}"
    );
    assert!(
        flags[0].1.ends_with("(the merchant's expires_at)") && flags[0].2 == "process",
        "{flags:?}"
    );
    assert_eq!(
        flags[1].0, "expired",
        "incomplete, with its lifetime a day away"
    );
    assert!(
        flags[1].1.ends_with("(the provider's lifetime)"),
        "{flags:?}"
    );
    let outcomes: Vec<String> =
        sqlx::query_scalar("select outcome from recon.reconciliation order by payment_id")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(outcomes, ["expired_unpaid", "expired_unpaid"]);
    assert_eq!(flags[1].2, "incomplete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_money_stays_in_its_currency_and_received_money_in_its_own() {
    let app = TestApp::new(
        Scenario::new()
            .payment("kzt", [Reply::invoice("success", "100.00", "KZT")])
            .payment("usd", [Reply::invoice("success", "10.00", "USD")])
            // An answer that names no currency, and an expectation that named none.
            .payment(
                "unnamed",
                [Reply::invoice("success", "70.00", "KZT").with("currency", json!(null))],
            )
            .payment("loose", [Reply::invoice("success", "60.00", "USD")]),
    )
    .await;
    app.insert(
        "('kzt', 100.00, 'KZT', null, '2025-07-11T06:00:00Z', null),
         ('usd', 5000.00, 'KZT', null, '2025-07-11T07:00:00Z', null),
         ('unnamed', 70.00, 'KZT', null, '2025-07-11T08:00:00Z', null),
         ('loose', 50.00, null, null, '2025-07-11T09:00:00Z', null)",
    )
    .await;
    app.sweep().await;
    let output = app
        .run(&[
            "report",
            "--format",
            "json",
            "--from",
            "2025-07-11",
            "--to",
            "2025-07-11",
        ])
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let row = |currency: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["currency"] == currency && r["status"] == "success")
            .unwrap_or_else(|| panic!("no {currency} row in {rows:#}"))
            .clone()
    };
    let kzt = row("KZT");
    assert_eq!(
        kzt["expected_amount"], "5170.00",
        "every KZT expected, whatever it was paid in"
    );
    assert_eq!(kzt["expected_payments"], 3);
    assert_eq!(
        (kzt["payments"].clone(), kzt["received_amount"].clone()),
        (json!(1), json!("100.00"))
    );
    let usd = row("USD");
    assert_eq!(usd["received_amount"], "70.00");
    assert_eq!(
        usd["expected_amount"],
        serde_json::Value::Null,
        "no expected amount was in USD: empty, not 0"
    );
    assert_eq!(usd["difference"], serde_json::Value::Null);
    assert_eq!(
        (usd["payments"].clone(), usd["expected_payments"].clone()),
        (json!(2), json!(0))
    );
    assert_eq!(
        usd["currency_mismatch"], 1,
        "the payment and its flag are counted once"
    );
    assert_eq!(kzt["currency_mismatch"], 0);
    // Amounts whose currency is unknown stay apart: never added to another currency's.
    let unknown: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["currency"].is_null() && r["status"] == "success")
        .collect();
    assert_eq!(unknown.len(), 1, "{rows:#}");
    assert_eq!(
        unknown[0]["received_amount"], "70.00",
        "paid, in a currency not named"
    );
    assert_eq!(
        unknown[0]["expected_amount"], "50.00",
        "expected, in none named"
    );
    assert_eq!(unknown[0]["payments"], 1);
    // Every amount once: the sums over the rows are the sums over the payments.
    let total = |column: &str| -> rust_decimal::Decimal {
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "success")
            .filter_map(|r| r[column].as_str())
            .map(|amount| amount.parse::<rust_decimal::Decimal>().unwrap())
            .sum()
    };
    assert_eq!(total("expected_amount").to_string(), "5220.00");
    assert_eq!(total("received_amount").to_string(), "240.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_append_only_in_the_database_itself() {
    let app = TestApp::new(
        Scenario::new()
            .payment("h-1", [Reply::invoice("success", "9.00", "KZT")])
            .payment("h-2", [Reply::invoice("process", "10.00", "KZT")]),
    )
    .await;
    app.insert("('h-1', 10, 'KZT', null, now(), null), ('quiet', null, null, null, now(), null)")
        .await;
    app.sweep().await;
    let refused = |sql: &'static str| {
        let pool = app.pool().clone();
        async move {
            sqlx::query(sql)
                .execute(&pool)
                .await
                .expect_err(sql)
                .to_string()
        }
    };
    let deleted = refused("delete from recon.payments where payment_id = 'h-1'").await;
    assert!(
        deleted.contains("payment 'h-1' has history (status transitions or flags), which is evidence: it cannot be deleted"),
        "{deleted}"
    );
    for sql in [
        "update recon.status_transitions set to_status = 'error'",
        "delete from recon.status_transitions",
        "update recon.discrepancies set actual = '10'",
        "delete from recon.discrepancies",
    ] {
        let message = refused(sql).await;
        assert!(message.contains("append-only history"), "{sql}: {message}");
    }
    // A flag's resolution may be written, whole and once.
    let partial = refused("update recon.discrepancies set resolution = 'maybe'").await;
    assert!(partial.contains("written whole"), "{partial}");
    sqlx::query(
        "update recon.discrepancies set resolved_at = now(), resolved_by = 'aigerim', resolution = 'refunded'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let again = refused("update recon.discrepancies set resolution = 'changed my mind'").await;
    assert!(again.contains("already resolved"), "{again}");
    for sql in [
        "truncate recon.status_transitions",
        "truncate recon.discrepancies",
        "truncate recon.payments cascade",
    ] {
        let message = refused(sql).await;
        assert!(message.contains("never truncated"), "{sql}: {message}");
    }
    // A payment without history may still be withdrawn.
    sqlx::query("delete from recon.payments where payment_id = 'quiet'")
        .execute(app.pool())
        .await
        .unwrap();
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_run_starts_from_a_fresh_database_and_refuses_one_that_is_not_its_own() {
    let db = crate::helpers::MissingDb::new("demo_again");
    let mut latest_run = chrono::Utc::now();
    for _ in 0..2 {
        latest_run = chrono::Utc::now();
        let output = run_binary(
            &["demo", "--payments", "30", "--database-url", &db.url],
            &[],
        )
        .await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("DATABASE_URL=postgres://postgres@"), "{text}");
    }
    let pool = db.pool().await;
    // The latest run's own payments, and nothing else: its detection measurement (cb-…,
    // poll-…) ran in a database of its own.
    let (payments, all, runs): (i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where payment_id like 'demo-%'), count(*),
                count(*) filter (where created_at < $1)
         from recon.payments",
    )
    .bind(latest_run)
    .fetch_one(&pool)
    .await
    .unwrap();
    let runs = 1 + runs;
    assert_eq!(
        (payments, all, runs),
        (30, 30, 1),
        "only the latest run's payments"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>(
            "select count(*) from recon.status_transitions
             where from_status in ('success', 'error', 'incomplete')"
        )
        .fetch_one(&pool)
        .await
        .unwrap(),
        0,
        "no story restarted"
    );
    pool.close().await;

    // A URL that names no database would land in the role's own: refused.
    let unnamed = db.url.rsplit_once('/').unwrap().0.to_owned();
    for args in [
        vec!["demo", "--database-url", unnamed.as_str()],
        vec!["migrate", "--create-database"],
    ] {
        let refused = run_binary(&args, &[("DATABASE_URL", &unnamed)]).await;
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("names no database"),
            "{args:?}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }

    let other = TestDb::new().await;
    sqlx::query("insert into recon.payments (payment_id) values ('real-1')")
        .execute(&other.pool)
        .await
        .unwrap();
    let refused = run_binary(&["demo", "--database-url", &other.url], &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a demo database"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let kept: i64 = sqlx::query_scalar("select count(*) from recon.payments")
        .fetch_one(&other.pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_small_frictions_of_a_fresh_clone_are_gone() {
    let app = TestApp::new(Scenario::new()).await;
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // One time grammar: enqueue reads what import reads (a naive time is Almaty time).
    let naive = app
        .run(&[
            "enqueue",
            "f-1",
            "--amount",
            "5000",
            "--currency",
            "KZT",
            "--order-id",
            "A",
            "--expires-at",
            "2025-07-11 16:00:00",
        ])
        .await;
    assert!(naive.status.success(), "{}", stderr(&naive));
    let stored: String = sqlx::query_scalar(
        "select to_char(expires_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI') from recon.payments",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(stored, "2025-07-11 11:00");

    // An option left out claims nothing: not a conflict. A different value still is.
    let again = app.run(&["enqueue", "f-1", "--amount", "5000"]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already tracked with the same values")
    );
    let conflict = app.run(&["enqueue", "f-1", "--currency", "USD"]).await;
    assert_eq!(conflict.status.code(), Some(1));

    // A status typo is an error, not an empty selection.
    let typo = app.run(&["recheck", "--status", "sucess"]).await;
    assert_eq!(typo.status.code(), Some(1));
    assert!(
        stderr(&typo).contains("--status \"sucess\": no payment has that status"),
        "{}",
        stderr(&typo)
    );
    let known = app.run(&["recheck", "--status", "no_answer"]).await;
    assert!(known.status.success(), "{}", stderr(&known));

    // The usual Excel export in ru/kk locales separates with semicolons.
    let file = tempfile::NamedTempFile::with_suffix(".csv").unwrap();
    std::fs::write(
        file.path(),
        "payment_id;expected_amount;expected_currency\nf-2;10.50;KZT\nf-3;7;KZT\n",
    )
    .unwrap();
    let imported = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert_eq!(app.count("select count(*) from recon.payments").await, 3);

    // Problems and rows are counted apart.
    std::fs::write(
        file.path(),
        "payment_id,expected_amount,expected_currency\nf-4,x,kzt\nf-5,y,KZT\n",
    )
    .unwrap();
    let bad = app.run(&["import", file.path().to_str().unwrap()]).await;
    assert!(
        stderr(&bad).contains("3 problems in 2 rows; nothing was imported"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_says_what_it_did_once_and_the_scheduler_keeps_quiet() {
    let app = TestApp::new(Scenario::new().fallback([Reply::invoice("process", "1", "KZT")])).await;
    app.insert_ids(&["o-1", "o-2"]).await;
    // At the default log level, as an operator runs it.
    let mut command = app.command(&["run", "--once"]);
    command.env_remove("RUST_LOG");
    let output = crate::helpers::output(command).await;
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.starts_with("claimed 2, recorded 2"), "{stdout}");
    assert!(
        !stderr.contains("claimed") && !stderr.contains("sweep finished"),
        "{stderr}"
    );

    // The daemon: the scheduler's start-up chatter stays below the default level. Both
    // payments are due again, so the schedule's first firing sweeps them and says so.
    app.fast_forward().await;
    let daemon = Spawned::spawn(app.daemon_command(&[]).env_remove("RUST_LOG"));
    assert!(
        daemon
            .wait_for_stderr("sweep finished", std::time::Duration::from_secs(15))
            .await,
        "a scheduled sweep ran: {}",
        daemon.stderr()
    );
    let (code, text) = daemon.stop().await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("daemon started"), "{text}");
    // Without merchant credentials, it says refunds go unseen, once, at start.
    assert_eq!(
        text.matches("refunds are not watched: merchant.id and merchant.secret are not set")
            .count(),
        1,
        "{text}"
    );
    for chatter in ["Uninited", "Job creator created", "JobScheduler"] {
        assert!(!text.contains(chatter), "{chatter} in:\n{text}");
    }
}
