//! The command line, run as a real process.

use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::{TestApp, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_is_idempotent_and_reports_conflicts_without_overwriting() {
    let app = TestApp::new(Scenario::new()).await;
    let args = [
        "enqueue",
        "555",
        "--amount",
        "5000.00",
        "--currency",
        "KZT",
        "--order-id",
        "A-1",
        "--expires-at",
        "2030-01-01T00:00:00Z",
    ];
    let first = app.run(&args).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(stdout(&first).trim(), "enqueued payment 555");

    let again = app.run(&args).await;
    assert!(again.status.success());
    assert!(stdout(&again).contains("already tracked with the same values; nothing changed"));

    let conflict = app.run(&["enqueue", "555", "--amount", "4000"]).await;
    assert_eq!(conflict.status.code(), Some(1));
    let message = stderr(&conflict);
    assert!(
        message.contains("expected_amount: stored 5000.00, offered 4000"),
        "{message}"
    );
    let stored: String = sqlx::query_scalar(
        "select expected_amount::text from recon.payments where payment_id = '555'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(stored, "5000.00");
    assert_eq!(app.count("select count(*) from recon.payments").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_clear_line_a_non_zero_exit_and_no_write() {
    let app = TestApp::new(Scenario::new()).await;
    let cases: [(&[&str], &str); 6] = [
        (
            &["enqueue", "1", "--amount", "12,50"],
            "uses a comma; write a dot as the decimal separator",
        ),
        // Not clap's "unexpected argument '-5'; use '-- -5'", which does not work.
        (
            &["enqueue", "1", "--amount", "-5"],
            "invalid value '-5' for '--amount <D>': \"-5\" is negative; an expected amount is \
             what the customer is asked to pay",
        ),
        (&["enqueue", "1", "--amount", "ten"], "not a decimal number"),
        (
            &["enqueue", "1", "--currency", "kzt"],
            "not an ISO 4217 code",
        ),
        (
            &["enqueue", "1", "--expires-at", "tomorrow"],
            "--expires-at: \"tomorrow\" is not a timestamp",
        ),
        (&["enqueue", "  "], "payment id is empty"),
    ];
    for (args, expected) in cases {
        let output = app.run(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
        assert!(
            message.lines().next().unwrap().starts_with("error: "),
            "{message}"
        );
    }
    assert_eq!(app.count("select count(*) from recon.payments").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_and_a_bad_config_are_named() {
    let app = TestApp::new(Scenario::new()).await;
    let down = app
        .run_with(
            &["enqueue", "1"],
            &[(
                "DATABASE_URL",
                "postgres://nobody:hunter2@127.0.0.1:1/nowhere",
            )],
        )
        .await;
    assert_eq!(down.status.code(), Some(1));
    let message = stderr(&down);
    assert!(
        message.contains("cannot connect to PostgreSQL at 127.0.0.1:1/nowhere"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the password leaked: {message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(
        message.contains("(connection refused); start PostgreSQL"),
        "{message}"
    );

    // Each kind of failure gets its own advice.
    let server = crate::helpers::server_url();
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    let (scheme, rest) = base.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    for (url, advice) in [
        (
            format!("{base}/fpr_no_such_database"),
            "the database \"fpr_no_such_database\" does not exist; create it with `freedompay-recon migrate --create-database`",
        ),
        (
            format!("{scheme}://fpr_no_such_role@{host}/postgres"),
            "the role \"fpr_no_such_role\" does not exist",
        ),
    ] {
        let output = app
            .run_with(&["enqueue", "1"], &[("DATABASE_URL", &url)])
            .await;
        assert_eq!(output.status.code(), Some(1), "{url}");
        assert!(
            stderr(&output).contains(advice),
            "{url}: {}",
            stderr(&output)
        );
    }

    let missing = app.run(&["--config", "/nonexistent.toml", "migrate"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("config file /nonexistent.toml"));

    let bad = app
        .run_with(
            &["migrate"],
            &[("FREEDOMPAY_RECON__POLL__CONCURRENCY", "0")],
        )
        .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("poll.concurrency: must be between 1 and 4096"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_parsed_answer_and_writes_nothing() {
    let app = TestApp::new(Scenario::new().payment(
        "777",
        [Reply::invoice("success", "5000.50", "KZT").with("orderId", serde_json::json!("A-7"))],
    ))
    .await;
    let output = app.run(&["check", "777"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for line in [
        "status:       success",
        "amount:       5000.50",
        "order_id:     A-7",
        "raw body:",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(app.count("select count(*) from recon.payments").await, 0);

    let rejected = app
        .run_with(
            &["check", "777"],
            &[("FREEDOMPAY_RECON__PROVIDER__SECRET", "wrong")],
        )
        .await;
    assert_eq!(rejected.status.code(), Some(1));
    assert!(
        stdout(&rejected).contains("REJECTED"),
        "{}",
        stdout(&rejected)
    );
    assert!(!stdout(&rejected).contains("wrong\""));

    let unset = app
        .run_with(
            &["check", "777"],
            &[("FREEDOMPAY_RECON__PROVIDER__SECRET", "")],
        )
        .await;
    assert_eq!(unset.status.code(), Some(1));
    assert!(
        stderr(&unset).contains("provider.secret is not set"),
        "{}",
        stderr(&unset)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_migrates_reconciles_everything_due_and_exits() {
    let app =
        TestApp::new(Scenario::new().prefix("o-", [Reply::invoice("success", "10", "KZT")])).await;
    for id in ["o-1", "o-2", "o-3"] {
        let output = app
            .run(&["enqueue", id, "--amount", "10", "--currency", "KZT"])
            .await;
        assert!(output.status.success());
    }
    let output = app.run(&["run", "--once"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("claimed 3, recorded 3"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        app.count("select count(*) from recon.reconciliation where status = 'success'")
            .await,
        3
    );

    let fatal = app
        .run_with(
            &["run", "--once"],
            &[("FREEDOMPAY_RECON__PROVIDER__SECRET", "wrong")],
        )
        .await;
    // Nothing is due now, so nothing is asked and nothing fails.
    assert!(fatal.status.success());
    sqlx::query("update recon.payments set next_check_at = now()")
        .execute(app.pool())
        .await
        .unwrap();
    let fatal = app
        .run_with(
            &["run", "--once"],
            &[("FREEDOMPAY_RECON__PROVIDER__SECRET", "wrong")],
        )
        .await;
    assert_eq!(fatal.status.code(), Some(1));
    assert!(
        stderr(&fatal).contains("polling stopped"),
        "{}",
        stderr(&fatal)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_explains_every_command() {
    let app = TestApp::new(Scenario::new()).await;
    let output = app.run(&["--help"]).await;
    let text = stdout(&output);
    for command in ["migrate", "run", "enqueue", "check"] {
        assert!(text.contains(command), "{command} missing from --help");
    }
    let run_help = stdout(&app.run(&["run", "--help"]).await);
    assert!(run_help.contains("--once"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_says_first_seen_settled_for_the_daemons_time_and_still_takes_settled() {
    let app = TestApp::new(Scenario::new()).await;
    // clap wraps help text at the terminal's width: one line per sentence part is enough.
    let help = stdout(&app.run(&["report", "--help"]).await).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for words in [
        "first-seen-settled",
        "the day the daemon first saw it paid, failed or incomplete",
        "not when the payer paid",
        "the day, and so the month, it belongs to",
    ] {
        assert!(help.contains(words), "{words:?} is not in: {help}");
    }
    let by = |basis: &'static str| {
        let app = &app;
        async move {
            app.run(&[
                "report",
                "--detail",
                "--by",
                basis,
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
            ])
            .await
        }
    };
    let new = by("first-seen-settled").await;
    assert!(new.status.success(), "{}", stderr(&new));
    assert_eq!(
        stdout(&new).lines().last(),
        Some("no payments first seen settled from 2026-11-01 to 2026-11-30")
    );
    // The old name, which spreadsheets' scripts and cron lines may hold, is the same report.
    let old = by("settled").await;
    assert!(old.status.success(), "{}", stderr(&old));
    assert_eq!(stdout(&old), stdout(&new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_cannot_be_reached_is_named_by_its_url_and_setting() {
    // A port nobody listens on: bound for a moment, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/partner/");
    let credentials = [
        (
            "FREEDOMPAY_RECON__PROVIDER__AUTH_ID",
            crate::helpers::AUTH_ID,
        ),
        ("FREEDOMPAY_RECON__PROVIDER__SECRET", crate::helpers::SECRET),
    ];
    let mut env = credentials.to_vec();
    env.push(("FREEDOMPAY_RECON__PROVIDER__BASE_URL", &url));
    let refused = crate::helpers::run_binary(&["check", "777"], &env).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let answer = stdout(&refused);
    let line = answer
        .lines()
        .find(|line| line.starts_with("answer:"))
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        line.contains("connection failed")
            && line.ends_with(&format!("; the request went to {url} (provider.base_url)")),
        "{answer}"
    );

    // No credentials at all: both named in one message, not one per attempt.
    let unset = crate::helpers::run_binary(&["check", "777"], &[]).await;
    assert_eq!(unset.status.code(), Some(1));
    let message = stderr(&unset);
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    assert!(
        message.starts_with(
            "error: provider.auth_id and provider.secret are not set: set \
             FREEDOMPAY_RECON__PROVIDER__AUTH_ID"
        ),
        "{message}"
    );
}
