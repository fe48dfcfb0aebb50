//! The simulator as a command, and the one-command demo.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use crate::helpers::{MissingDb, Spawned, binary, output};

/// The number printed after `label` on a summary line, e.g. `  success   170`.
fn summary_number(text: &str, label: &str) -> i64 {
    text.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(label))
                .then(|| words.next())
                .flatten()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_creates_its_database_and_settles_every_payment_with_a_true_summary() {
    let db = MissingDb::new("demo");
    let command = binary(&["demo", "--payments", "200", "--database-url", &db.url]);
    let started = std::time::Instant::now();
    let output = output(command).await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(elapsed.as_secs() < 60, "the demo took {elapsed:?}");
    assert!(text.contains("created database"), "{text}");
    assert!(text.contains("200/200 done: "), "{text}");

    let pool = db.pool().await;
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "select status, count(*) from recon.reconciliation group by status order by status",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 200);
    for (status, n) in &counts {
        assert!(
            ["success", "error", "incomplete"].contains(&status.as_str()),
            "unsettled status {status}"
        );
        assert_eq!(summary_number(&text, status), *n, "{status} in:\n{text}");
    }
    assert!(summary_number(&text, "success") > 120, "{text}");

    let flags: Vec<(String, i64)> =
        sqlx::query_as("select kind, count(*) from recon.open_discrepancies group by kind")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!flags.is_empty());
    for (kind, n) in &flags {
        assert_eq!(summary_number(&text, kind), *n, "{kind} in:\n{text}");
    }
    // Expired unpaid payments are an outcome: their flags were closed by the rule, none waits
    // for a person; paid ones carry the provider's fee.
    let incomplete = summary_number(&text, "incomplete");
    assert!(incomplete > 0, "{text}");
    assert_eq!(summary_number(&text, "expired_unpaid"), incomplete);
    assert_eq!(summary_number(&text, "lifetime_exceeded"), 0);
    assert!(
        text.contains(&format!(
            "{incomplete} flags were closed as they opened by rule:expired_unpaid"
        )),
        "{text}"
    );
    let open_expired: i64 = sqlx::query_scalar(
        "select count(*) from recon.open_discrepancies where kind = 'lifetime_exceeded'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open_expired, 0);
    let fees: Option<rust_decimal::Decimal> =
        sqlx::query_scalar("select sum(fee) from recon.reconciliation where status = 'success'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(fees.unwrap() > rust_decimal::Decimal::ZERO);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_serves_signed_requests_and_refuses_bad_signatures() {
    let mut server = Spawned::spawn(
        binary(&["simulate", "--listen", "127.0.0.1:0", "--builtin", "paid"])
            .env("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "demo")
            .env("FREEDOMPAY_RECON__PROVIDER__SECRET", "demo-secret")
            .stdout(Stdio::piped()),
    );
    let mut stdout = BufReader::new(server.take_stdout());
    let mut first_line = String::new();
    stdout.read_line(&mut first_line).unwrap();
    let base_url = first_line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .to_owned();
    assert!(
        !base_url.ends_with(":0"),
        "the bound port is printed: {base_url}"
    );

    let check = |secret: &str| {
        let mut command = binary(&["check", "4242"]);
        command
            .env("FREEDOMPAY_RECON__PROVIDER__BASE_URL", &base_url)
            .env("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "demo")
            .env("FREEDOMPAY_RECON__PROVIDER__SECRET", secret);
        output(command)
    };
    let good = check("demo-secret").await;
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{text}");
    assert!(text.contains("status:       success"), "{text}");

    let bad = check("guessed-secret").await;
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text.contains("response:     HTTP 401"), "{text}");
    assert!(
        text.contains(r#""error_description":"Invalid signature""#),
        "{text}"
    );

    let (code, _) = server.stop().await;
    assert_eq!(code, Some(0));
    let mut farewell = String::new();
    stdout.read_line(&mut farewell).unwrap();
    assert_eq!(
        farewell.trim(),
        "requests answered: 1",
        "the refused request is not counted"
    );
}
