//! `digest`, pinned on a known data set, and posted to a chat webhook.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use freedompay_recon::simulator::Scenario;
use tokio::net::TcpListener;

use crate::helpers::TestApp;

/// 10 March 2026 (UTC): two KZT payments paid, one USD paid, one failed, one expired; one
/// paid on 11 March (outside). Flags: one opened on the 10th, one resolved on the 10th, one
/// opened on 1 March and still open.
async fn known_day() -> TestApp {
    let app = TestApp::new(Scenario::new()).await;
    app.report_in_utc().await;
    sqlx::raw_sql(
        "insert into recon.payments (payment_id, expected_amount, expected_currency, status,
                                     amount, currency, settled_at, next_check_at)
         values ('paid-1', 5000, 'KZT', 'success', 5000.00, 'KZT', '2026-03-10 10:00Z', null),
                ('paid-2', 2500, 'KZT', 'success', 2499.50, 'KZT', '2026-03-10 23:59:59Z', null),
                ('paid-usd', 10, 'USD', 'success', 10, 'USD', '2026-03-10 12:00Z', null),
                ('failed-1', 700, 'KZT', 'error', 700, 'KZT', '2026-03-10 08:00Z', null),
                ('expired-1', 900, 'KZT', 'incomplete', null, null, '2026-03-10 07:00Z', null),
                ('unpaid-1', 300, 'KZT', 'process', 300, 'KZT', null, null),
                -- expired the day before, `incomplete` this day: counted the day before
                ('expired-0', 400, 'KZT', 'incomplete', 400, 'KZT', '2026-03-10 01:00Z', null),
                ('next-day', 1, 'KZT', 'success', 1, 'KZT', '2026-03-11 00:00Z', null);
         -- still `process`, but its deadline passed unpaid that day: expired unpaid too
         update recon.payments set deadline_missed_at = '2026-03-10 05:00Z'
         where payment_id in ('unpaid-1', 'expired-1');
         update recon.payments set deadline_missed_at = '2026-03-09 23:00Z'
         where payment_id = 'expired-0';
         insert into recon.discrepancies
             (payment_id, kind, expected, actual, detected_at, resolved_at, resolved_by, resolution)
         values ('paid-2', 'amount_mismatch', '2500', '2499.50 `@here`', '2026-03-10 23:59:59Z',
                 null, null, null),
                ('expired-1', 'lifetime_exceeded', '2026-03-01T00:00:00Z', 'process',
                 '2026-03-01 12:00Z', null, null, null),
                ('failed-1', 'not_found', null, null, '2026-03-09 08:00Z',
                 '2026-03-10 09:00Z', 'aigerim', 'the provider had it after all');",
    )
    .execute(app.pool())
    .await
    .unwrap();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_of_a_known_day_reads_as_pinned() {
    let app = known_day().await;
    let output = app.run(&["digest", "--from", "2026-03-10"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Freedom Pay reconciliation digest: 2026-03-10 (UTC)

Outcomes first seen in the period
  paid: 2 payments, received 7499.50 KZT
  paid: 1 payment, received 10 USD
  failed: 1 payment, invoiced 700 KZT
  expired unpaid: 1 payment, invoiced 300 KZT
  expired unpaid: 1 payment

Flags
  opened: amount_mismatch 1
  resolved: not_found 1
  open, needing a person: 1 (under 1 day 0, 1-3 days 0, 3-7 days 0, over 7 days 1)

Oldest open flags needing a person
  2026-03-10 23:59 +00:00 paid-2 amount_mismatch (status success): expected 2500, actual 2499.50 `＠here`
"
    );

    let json = app
        .run(&[
            "digest",
            "--from",
            "2026-03-10",
            "--to",
            "2026-03-11",
            "--format",
            "json",
        ])
        .await;
    assert!(json.status.success());
    let digest: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(digest["from"], "2026-03-10");
    assert_eq!(digest["to"], "2026-03-11");
    assert_eq!(
        digest["outcomes"][0]["amount"], "7500.50",
        "the next day's payment counts"
    );
    // Only flags a person must act on: the open lifetime_exceeded (info) is not counted.
    assert_eq!(digest["open"]["over_7_days"], 1);
    assert_eq!(digest["oldest_open"].as_array().unwrap().len(), 1);
    assert_eq!(digest["oldest_open"][0]["status"], "success");

    // `--to` alone is that one day.
    let only_to = app.run(&["digest", "--to", "2026-03-10"]).await;
    assert_eq!(only_to.stdout, output.stdout);

    let backwards = app
        .run(&["digest", "--from", "2026-03-11", "--to", "2026-03-10"])
        .await;
    assert_eq!(backwards.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&backwards.stderr)
            .contains("--from 2026-03-11 is after --to 2026-03-10")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digests_times_are_in_its_zone_with_the_offset_in_text_and_json() {
    // The default reporting zone, Asia/Almaty (+05:00).
    let app = TestApp::new(Scenario::new()).await;
    sqlx::raw_sql(
        "insert into recon.payments (payment_id, status, amount, currency, settled_at,
                                     next_check_at)
         values ('paid-1', 'success', 5000, 'KZT', '2026-11-20 09:03Z', null);
         insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         values ('paid-1', 'amount_mismatch', '4000', '5000', '2026-11-20 09:03Z');",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let text = app.run(&["digest", "--from", "2026-11-20"]).await;
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("Freedom Pay reconciliation digest: 2026-11-20 (Asia/Almaty)\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  2026-11-20 14:03 +05:00 paid-1 amount_mismatch (status success)"),
        "the heading's zone, not UTC: {text}"
    );
    assert!(!text.contains("UTC"), "{text}");

    let json = app
        .run(&["digest", "--from", "2026-11-20", "--format", "json"])
        .await;
    let digest: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(digest["timezone"], "Asia/Almaty");
    assert_eq!(
        digest["oldest_open"][0]["detected_at"],
        "2026-11-20T14:03:00+05:00"
    );
    let generated = digest["generated_at"].as_str().unwrap();
    assert!(generated.ends_with("+05:00"), "{generated}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(generated).is_ok(),
        "{generated}"
    );
}

#[derive(Clone, Default)]
struct Chat {
    posted: Arc<Mutex<Vec<serde_json::Value>>>,
    status: Arc<Mutex<Option<StatusCode>>>,
}

async fn incoming(State(chat): State<Chat>, body: Bytes) -> StatusCode {
    chat.posted
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or_default());
    chat.status.lock().unwrap().unwrap_or(StatusCode::OK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_is_posted_to_a_chat_webhook_as_text_and_a_refusal_is_an_error() {
    let app = known_day().await;
    let chat = Chat::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/hooks/chat", post(incoming))
        .with_state(chat.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let hook = format!("http://{addr}/hooks/chat");

    let output = app
        .run(&[
            "digest",
            "--from",
            "2026-03-10",
            "--format",
            "markdown",
            "--post",
            &hook,
        ])
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty(), "posted, not printed");
    let posted = chat.posted.lock().unwrap().pop().expect("one post");
    let text = posted["text"].as_str().expect("a text field");
    assert!(
        text.starts_with("### Freedom Pay reconciliation digest: 2026-03-10 (UTC)"),
        "{text}"
    );
    // Outside text is a code span: no mention, no formatting.
    assert!(text.contains("actual `2499.50 '＠here'`"), "{text}");

    // A malformed URL is refused without being repeated: it is a secret.
    let malformed = app
        .run_with(
            &["digest", "--from", "2026-03-10", "--post"],
            &[(
                "FREEDOMPAY_RECON_DIGEST_POST",
                "\"hooks.example/T0/secret-token\"",
            )],
        )
        .await;
    assert_eq!(malformed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(
        stderr.contains("is not an http(s) URL") && !stderr.contains("secret-token"),
        "{stderr}"
    );

    // The variable alone posts nothing: JSON is printed, whatever the environment holds.
    let printed = app
        .run_with(
            &["digest", "--from", "2026-03-10", "--format", "json"],
            &[("FREEDOMPAY_RECON_DIGEST_POST", &hook)],
        )
        .await;
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let _: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert!(chat.posted.lock().unwrap().is_empty(), "nothing posted");
    // `--post` alone takes the URL from the variable; in plain text, nobody is mentioned.
    sqlx::query(
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         values ('paid-1', 'order_mismatch', '<!channel>', '@everyone <@U024BE7LH>',
                 '2026-03-10 09:00Z')",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let plain = app
        .run_with(
            &["digest", "--from", "2026-03-10", "--post"],
            &[("FREEDOMPAY_RECON_DIGEST_POST", &hook)],
        )
        .await;
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let posted = chat
        .posted
        .lock()
        .unwrap()
        .pop()
        .expect("posted by --post alone");
    let text = posted["text"].as_str().unwrap();
    assert!(
        text.contains("expected ‹!channel›, actual ＠everyone ‹＠U024BE7LH›"),
        "{text}"
    );
    assert!(
        !text.contains("<!") && !text.contains("@everyone"),
        "{text}"
    );
    let json = app
        .run(&["digest", "--from", "2026-03-10", "--format", "json"])
        .await;
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(
        !json.contains("<!channel>") && !json.contains("@everyone"),
        "{json}"
    );

    *chat.status.lock().unwrap() = Some(StatusCode::FORBIDDEN);
    let refused = app
        .run(&["digest", "--from", "2026-03-10", "--post", &hook])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("answered HTTP 403; the digest was not posted"),
        "{stderr}"
    );
}
