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
    // The default count, as the README's quick start runs it; a schedule of our own, which
    // the demo must describe (its own run uses a faster one).
    let mut command = binary(&["demo", "--database-url", &db.url]);
    command
        .env("FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER", "90s")
        .env("FREEDOMPAY_RECON__POLL__RECHECK", "7m,3h");
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
    assert!(text.contains("300/300 done: "), "{text}");

    // The README quotes the last progress line as the demo prints it.
    let last = text
        .lines()
        .rfind(|line| line.contains(" done: "))
        .and_then(|line| line.split_once("] "))
        .map(|(_, progress)| progress)
        .unwrap_or_else(|| panic!("no progress line in:\n{text}"));
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("the README");
    assert!(
        readme.contains(&format!("`{last}`")),
        "the README's quick start should quote the demo's last progress line, `{last}`"
    );
    // The schedule described is the configured one, with callbacks and without.
    assert!(
        text.contains(
            "with these settings a deployment looks 1m 30s after creation, then 7m after each \
             look, then every 3h (poll.first_poll_after, poll.recheck), or, hearing callbacks, \
             10m after creation, then 1h after each look, then every 1day (the same with \
             _with_callbacks)"
        ),
        "{text}"
    );

    let pool = db.pool().await;
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "select status, count(*) from recon.reconciliation where payment_id like 'demo-%'
         group by status order by status",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 300);
    // Nothing but the payments the summary counts: the detection measurement ran in a
    // database of its own, which is gone.
    let others: i64 = sqlx::query_scalar(
        "select count(*) from recon.payments where payment_id not like 'demo-%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(others, 0, "{text}");
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let scratch: Vec<String> = sqlx::query_scalar(
        "select datname from pg_database where datname in ($1, $1 || '_lag') order by datname",
    )
    .bind(name)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(scratch, [name], "the demo's database alone");
    assert!(text.contains("_lag, dropped afterwards)"), "{text}");
    for (status, n) in &counts {
        assert!(
            ["success", "error", "incomplete"].contains(&status.as_str()),
            "unsettled status {status}"
        );
        assert_eq!(summary_number(&text, status), *n, "{status} in:\n{text}");
    }
    assert!(summary_number(&text, "success") > 180, "{text}");

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

    // Callbacks: on for the whole demo; detection measured on payments cb-… called back and
    // poll-… never called back, every one found.
    assert!(
        text.contains("Result-URL callbacks on http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("settling the same way: all found in "),
        "{text}"
    );
    let callbacks = detection(&text, "with callbacks");
    let polling = detection(&text, "polling only");
    assert_eq!((callbacks.payments, polling.payments), (100, 100), "{text}");
    // About 5 % lost (by id: the same every run), found by polling.
    assert!(callbacks.lost > 0 && callbacks.lost < 20, "{text}");
    assert_eq!(polling.lost, 0, "nothing to lose: {text}");
    let called_back = |prefix: &str| {
        let pool = pool.clone();
        let like = format!("{prefix}%");
        async move {
            sqlx::query_scalar::<_, i64>(
                "select count(distinct payment_id) from recon.callbacks where payment_id like $1",
            )
            .bind(like)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(
        called_back("demo-").await > 150,
        "the demo's own payments are called back too"
    );
    // Callbacks find a payment within a poll's round trip; polling, at its next look (the
    // demo's every second). Lost callbacks are in the p95.
    assert!(callbacks.p50 < 0.3, "{text}");
    assert!(callbacks.p50 < polling.p50, "{text}");
    assert!(
        callbacks.p50 <= callbacks.p95 && polling.p50 <= polling.p95,
        "{text}"
    );
    assert!(polling.p95 < 3.0, "{text}");
    for d in [&callbacks, &polling] {
        assert!((1.5..8.0).contains(&d.requests), "{text}");
    }
    // The money to the bank: every paid payment in a registry line matched to it, every
    // payout of the bank's currency at the bank (the day's payout paid as two credits),
    // and the money table's figures as hand SQL over the raw rows gives them.
    assert!(text.contains("the bank statement ("), "{text}");
    let unmatched_lines = count(
        &pool,
        "select count(*) from recon.registry_lines l where not exists
             (select 1 from recon.settlement_matches m where m.registry_line_id = l.id)",
    )
    .await;
    assert_eq!(unmatched_lines, 0, "{text}");
    let rules: Vec<(String, i64)> = sqlx::query_as(
        "select rule, count(*) from recon.settlement_matches where side = 'bank'
         group by rule order by rule",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        rules
            .iter()
            .any(|(r, n)| r == "payout_many_credits" && *n == 1)
            && rules.iter().all(|(r, _)| r != "late"),
        "{rules:?}"
    );
    let unpaid_payouts = count(
        &pool,
        "select count(*) from recon.payouts where currency = 'KZT' and net > 0
         and bank_lines is null",
    )
    .await;
    assert_eq!(unpaid_payouts, 0);
    let settlement_flags = count(&pool, "select count(*) from recon.settlement_flags").await;
    assert_eq!(settlement_flags, 0, "{text}");
    let (paid_out, at_bank): (String, String) = sqlx::query_as(
        "select (select sum(s.net)::text from (
                     select sum(case when kind = 'payment' then amount - coalesce(commission, 0)
                                     else -abs(amount) end) as net
                     from recon.registry_lines where currency = 'KZT'
                       and payout_date between date_trunc('month', now())::date
                                           and (date_trunc('month', now()) + interval '1 month - 1 day')::date
                     group by payout_reference, payout_date) s where s.net > 0),
                (select sum(amount)::text from recon.bank_lines where from_provider
                   and value_date between date_trunc('month', now())::date
                                      and (date_trunc('month', now()) + interval '1 month - 1 day')::date)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("KZT: net due"))
        .unwrap_or_else(|| panic!("no money-to-the-bank line in:\n{text}"));
    assert!(
        line.contains(&format!("paid out {paid_out} "))
            && line.contains(&format!("at the bank {at_bank};")),
        "{line} / paid out {paid_out}, at the bank {at_bank}"
    );

    // The merchant secret made for the run is never shown (32 hex digits).
    assert!(
        !text
            .split(|c: char| !c.is_ascii_hexdigit())
            .any(|word| word.len() >= 32),
        "{text}"
    );
    pool.close().await;
}

/// One line of the demo's detection table.
#[derive(Debug)]
struct Detection {
    payments: usize,
    lost: usize,
    /// Seconds.
    p50: f64,
    p95: f64,
    requests: f64,
}

/// Reads the line that starts with `label`, e.g.
/// `  with callbacks   100 payments   lag p50   43 ms, p95  303 ms   4.45 requests per payment (9 callbacks lost: found by polling)`.
fn detection(text: &str, label: &str) -> Detection {
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |word: &str| {
        words
            .iter()
            .position(|w| *w == word)
            .unwrap_or_else(|| panic!("{word:?} in {line:?}"))
    };
    let seconds = |at: usize| {
        let n: f64 = words[at + 1].parse().unwrap();
        match words[at + 2].trim_end_matches(',') {
            "ms" => n / 1000.0,
            "s" => n,
            unit => panic!("{unit} in {line:?}"),
        }
    };
    let payments: usize = words[after("payments") - 1].parse().unwrap();
    Detection {
        payments,
        lost: words
            .iter()
            .position(|w| *w == "callbacks")
            .map_or(0, |at| {
                words[at - 1].trim_start_matches('(').parse().unwrap()
            }),
        p50: seconds(after("p50")),
        p95: seconds(after("p95")),
        requests: words[after("requests") - 1].parse().unwrap(),
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_writes_a_registry_and_a_statement_for_what_it_answered_paid_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Spawned::spawn(
        binary(&[
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--builtin",
            "paid",
            "--registry",
            dir.path().to_str().unwrap(),
            "--missing-lines",
            "1",
        ])
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
        .unwrap()
        .to_owned();
    for id in ["5001", "5002", "5003"] {
        let mut command = binary(&["check", id]);
        command
            .env("FREEDOMPAY_RECON__PROVIDER__BASE_URL", &base_url)
            .env("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "demo")
            .env("FREEDOMPAY_RECON__PROVIDER__SECRET", "demo-secret");
        assert!(output(command).await.status.success());
    }
    let (code, _) = server.stop().await;
    assert_eq!(code, Some(0));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(
        rest.contains("wrote 1 registries, their map and "),
        "{rest}"
    );
    assert!(rest.contains("(3 payments, 0 returns)"), "{rest}");

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "map.toml");
    let registry = std::fs::read_to_string(dir.path().join(&names[1])).unwrap();
    let lines: Vec<&str> = registry.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "one of the three left out: {registry}");
    let net: rust_decimal::Decimal = lines
        .iter()
        .map(|l| {
            let cells: Vec<&str> = l.split(';').collect();
            let n = |i: usize| {
                cells[i]
                    .replace(',', ".")
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            };
            n(4) - n(5)
        })
        .sum();
    let statement = freedompay_recon::intake::statement::read_1c(
        &std::fs::read(dir.path().join(&names[2])).unwrap(),
    )
    .unwrap();
    assert_eq!(statement.encoding, "windows-1251");
    assert_eq!(statement.lines.len(), 1);
    assert_eq!(statement.lines[0].amount, net);
    assert_eq!(statement.lines[0].knp.as_deref(), Some("119"));
}

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}
