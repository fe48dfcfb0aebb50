//! Webhook delivery against a local receiver that checks every signature, fails some
//! requests and goes away for a while, across a SIGKILL of the daemon. The receiver verifies
//! with code that is not the daemon's: Standard Webhooks' own crate (`standardwebhooks`) for
//! the `standard` format, an HMAC computed here for `github`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use freedompay_recon::settings::{WebhookFormat, WebhookSettings};
use freedompay_recon::simulator::{Reply, Scenario};
use freedompay_recon::webhook::{Deliverer, signed_headers};
use hmac::{Hmac, KeyInit as _, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;
use standardwebhooks::{Webhook, WebhookError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::TestApp;

/// The default format's secret: `whsec_` and the base64 of `receiver-shared-key-0123`.
const WEBHOOK_SECRET: &str = "whsec_cmVjZWl2ZXItc2hhcmVkLWtleS0wMTIz";
/// The `github` format's secret: a plain string, as before `webhook.format` existed.
const GITHUB_SECRET: &str = "receiver-shared-secret-0123";

/// What the receiver saw: every request in arrival order.
#[derive(Default)]
struct Seen {
    /// `(event id, payment id, type)` of each request whose signature checked, answered 2xx.
    accepted: Vec<(i64, String, String)>,
    /// Requests answered 5xx on purpose.
    failed_on_purpose: usize,
    /// Requests whose signature or shape did not check.
    bad: Vec<String>,
    /// The headers and body of each request whose signature checked.
    deliveries: Vec<(HeaderMap, Bytes)>,
    requests: usize,
}

#[derive(Clone)]
struct Receiver {
    /// The format it expects deliveries in.
    format: WebhookFormat,
    seen: Arc<Mutex<Seen>>,
    /// Every `fail_every`-th request is answered 503 (0: none).
    fail_every: usize,
    /// Answered instead of 2xx when set (e.g. a redirect).
    answer: Option<(StatusCode, &'static str)>,
}

impl Receiver {
    /// One that expects `format` and answers every request it can verify with 204.
    fn new(format: WebhookFormat) -> Self {
        Self {
            format,
            seen: Arc::default(),
            fail_every: 0,
            answer: None,
        }
    }
}

/// Checks a delivery as a receiver would, with code that is not the daemon's; the event id
/// its headers name.
fn verify(format: WebhookFormat, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("content-type") != Some("application/json") {
        return Err(format!("content-type {:?}", header("content-type")));
    }
    let (id, other_format) = match format {
        WebhookFormat::Standard => {
            Webhook::new(WEBHOOK_SECRET)
                .unwrap()
                .verify(body, headers)
                .map_err(|e| format!("standardwebhooks refused it: {e}"))?;
            (header("webhook-id"), "x-recon-signature")
        }
        WebhookFormat::Github => {
            let signed = header("x-recon-signature")
                .and_then(|s| s.strip_prefix("sha256="))
                .and_then(|hex| hex::decode(hex).ok())
                .ok_or_else(|| {
                    format!("no sha256= signature: {:?}", header("x-recon-signature"))
                })?;
            let mut mac = Hmac::<Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
            mac.update(body);
            mac.verify_slice(&signed)
                .map_err(|_| "the HMAC of the body does not match X-Recon-Signature")?;
            (header("x-recon-event-id"), "webhook-signature")
        }
    };
    if headers.contains_key(other_format) {
        return Err(format!(
            "{other_format} sent in the {format:?} format as well"
        ));
    }
    id.map(str::to_owned)
        .ok_or_else(|| "no event id header".to_owned())
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let mut seen = receiver.seen.lock().unwrap();
    seen.requests += 1;
    let named_id = match verify(receiver.format, &headers, &body) {
        Ok(id) => id,
        Err(e) => {
            seen.bad.push(e);
            return (StatusCode::UNAUTHORIZED, HeaderMap::new());
        }
    };
    let event: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            seen.bad.push(format!("body is not JSON: {e}"));
            return (StatusCode::BAD_REQUEST, HeaderMap::new());
        }
    };
    let id = event["id"].as_i64().unwrap_or(-1);
    if named_id != id.to_string()
        || event["data"].is_null()
        || event["occurred_at"].as_str().is_none()
    {
        seen.bad.push(format!(
            "fields or headers missing (id {named_id}): {event}"
        ));
    }
    seen.deliveries.push((headers, body));
    if let Some((status, location)) = receiver.answer {
        let mut headers = HeaderMap::new();
        headers.insert("location", location.parse().unwrap());
        return (status, headers);
    }
    if receiver.fail_every > 0 && seen.requests % receiver.fail_every == 0 {
        seen.failed_on_purpose += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, HeaderMap::new());
    }
    seen.accepted.push((
        id,
        event["payment_id"].as_str().unwrap_or_default().to_owned(),
        event["type"].as_str().unwrap_or_default().to_owned(),
    ));
    (StatusCode::NO_CONTENT, HeaderMap::new())
}

/// Serves `receiver` on a free loopback port until `stop` fires; its address.
async fn listening(
    receiver: &Receiver,
    stop: &CancellationToken,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve(listener, receiver.clone(), stop.clone()))
}

/// Serves `receiver` on `listener` until `stop` fires.
fn serve(
    listener: TcpListener,
    receiver: Receiver,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/hooks/recon", post(receive))
        .with_state(receiver);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap();
    })
}

fn webhook_settings(addr: SocketAddr) -> WebhookSettings {
    WebhookSettings {
        url: SecretString::from(format!("http://{addr}/hooks/recon")),
        secret: SecretString::from(WEBHOOK_SECRET),
        format: WebhookFormat::Standard,
        timeout: Duration::from_secs(2),
        max_age: Duration::from_secs(3 * 24 * 3600),
        types: ["status_changed", "flag_opened", "flag_resolved"]
            .map(String::from)
            .into(),
    }
}

async fn pending(app: &TestApp) -> i64 {
    app.count("select count(*) from recon.event_log where delivery = 'pending'")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_per_id_in_payment_order_across_failures_downtime_and_a_sigkill() {
    let app = TestApp::new(
        Scenario::new()
            .prefix(
                "ok-",
                [
                    Reply::invoice("process", "100", "KZT"),
                    Reply::invoice("success", "100", "KZT"),
                ],
            )
            .prefix(
                "short-",
                [
                    Reply::invoice("process", "90", "KZT"),
                    Reply::invoice("success", "100", "KZT"),
                ],
            ),
    )
    .await;
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency)
         select p || g, 100, 'KZT' from generate_series(1, 30) g, unnest(array['ok-', 'short-']) p",
    )
    .execute(app.pool())
    .await
    .unwrap();

    let receiver = Receiver {
        fail_every: 4,
        ..Receiver::new(WebhookFormat::Standard)
    };
    let receiver_stop = CancellationToken::new();
    let (addr, server) = listening(&receiver, &receiver_stop).await;

    let url = format!("http://{addr}/hooks/recon");
    // No webhook.format: the default, standard.
    let env = [
        ("FREEDOMPAY_RECON__WEBHOOK__URL", url.as_str()),
        ("FREEDOMPAY_RECON__WEBHOOK__SECRET", WEBHOOK_SECRET),
        ("FREEDOMPAY_RECON__WEBHOOK__TIMEOUT", "1s"),
        ("RUST_LOG", "info"),
    ];
    let first = app.spawn_daemon(&env);
    // Some events delivered, then the daemon dies without warning...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while receiver.seen.lock().unwrap().accepted.len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deliveries within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = first.pid();
    let (_, first_log) = first.kill().await;
    // Time passes for what it held: once its connections are gone (a statement already
    // running finishes first), its claims on events and payments are let go, as their leases
    // running out would, so the next daemon may take them at once.
    let connected = app
        .wait_for(
            "select count(*) from pg_stat_activity
             where application_name = 'freedompay-recon' and datname = current_database()",
            0,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(connected, 0, "the killed daemon's connections are gone");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "update recon.events set lease_expires_at = now() - interval '1 ms'
         where lease_owner like '%:{killed}#%' and lease_expires_at > now();
         update recon.payments set lease_expires_at = now() - interval '1 ms'
         where lease_owner like '%:{killed}' and lease_expires_at > now();"
    )))
    .execute(app.pool())
    .await
    .unwrap();

    // ...and the receiver goes away while a new daemon starts and payments move on.
    receiver_stop.cancel();
    server.await.unwrap();
    let second = app.spawn_daemon(&env);
    // Time passes for the payments: each check is due at once, until all are settled.
    let settled_sql = "select count(*) from recon.payments where status = 'success'";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let settled = loop {
        app.fast_forward().await;
        let settled = app.count(settled_sql).await;
        if settled == 60 || tokio::time::Instant::now() >= deadline {
            break settled;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        settled, 60,
        "every payment reconciled while the receiver was down"
    );
    assert!(
        pending(&app).await > 0,
        "events wait while the receiver is down"
    );

    // The receiver comes back on the same address.
    let listener = TcpListener::bind(addr).await.unwrap();
    let receiver_stop = CancellationToken::new();
    let server = serve(listener, receiver.clone(), receiver_stop.clone());
    // Retries back off (1 s, 2 s, 4 s ... with jitter, longer for the events tried while the
    // receiver was down): time passes, and each retry is due at once, until all are delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while pending(&app).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} events still pending",
            pending(&app).await
        );
        sqlx::query(
            "update recon.events set next_attempt_at = now()
             where delivered_at is null and next_attempt_at > now()",
        )
        .execute(app.pool())
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, second_log) = second.stop().await;
    assert_eq!(code, Some(0), "{second_log}");
    receiver_stop.cancel();
    server.await.unwrap();

    // What the database recorded...
    let events: Vec<(i64, String, String)> =
        sqlx::query_as("select id, payment_id, type from recon.events order by id")
            .fetch_all(app.pool())
            .await
            .unwrap();
    let history = app
        .count(
            "select (select count(*) from recon.status_transitions)
                  + (select count(*) from recon.discrepancies)
                  + (select count(*) from recon.discrepancies where resolved_at is not null)",
        )
        .await;
    assert_eq!(events.len() as i64, history, "one event per history row");
    assert!(events.iter().any(|(_, _, kind)| kind == "flag_resolved"));
    assert_eq!(
        app.count("select count(*) from recon.event_log where delivery <> 'delivered'")
            .await,
        0
    );

    // ...is what the receiver got: every event, once per id, a payment's in id order.
    let seen = receiver.seen.lock().unwrap();
    assert!(seen.bad.is_empty(), "{:?}", seen.bad);
    assert!(seen.failed_on_purpose > 0);
    let mut first_seen: Vec<i64> = Vec::new();
    let mut ids = HashSet::new();
    for (id, _, _) in &seen.accepted {
        if ids.insert(*id) {
            first_seen.push(*id);
        }
    }
    let expected: HashSet<i64> = events.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, expected, "every event delivered, and nothing else");
    let redelivered = seen.accepted.len() - ids.len();
    assert!(
        redelivered <= 64,
        "{redelivered} redeliveries: at most one claim's worth"
    );
    let payment_of: HashMap<i64, &str> =
        events.iter().map(|(id, p, _)| (*id, p.as_str())).collect();
    let mut last_by_payment: HashMap<&str, i64> = HashMap::new();
    for id in first_seen {
        let payment = payment_of[&id];
        if let Some(previous) = last_by_payment.insert(payment, id) {
            assert!(
                previous < id,
                "payment {payment}: event {id} arrived before {previous}"
            );
        }
    }
    // Every attempt at an event (a retry after a 503, a resend after the SIGKILL) carries the
    // same webhook-id and body, each signed at its own time: a receiver dedupes on the id.
    let mut attempts: HashMap<&str, Vec<&Bytes>> = HashMap::new();
    for (headers, body) in &seen.deliveries {
        let id = headers["webhook-id"].to_str().unwrap();
        attempts.entry(id).or_default().push(body);
    }
    assert_eq!(attempts.len(), expected.len());
    assert!(
        attempts.values().any(|a| a.len() > 1),
        "some events were tried more than once"
    );
    for (id, bodies) in &attempts {
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "{id}: bodies differ"
        );
    }
    let key = WEBHOOK_SECRET.trim_start_matches("whsec_");
    for log in [&first_log, &second_log] {
        assert!(!log.contains(key), "the webhook secret was logged");
    }
}

/// What the default format sends verifies with Standard Webhooks' own crate; the same
/// delivery with its body changed, or replayed once its time is more than five minutes old, does
/// not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_deliveries_verify_with_the_standardwebhooks_crate_and_a_replay_is_refused() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert("('w-1', 10, 'KZT', null, now(), null)").await;
    app.insert_first_transition("w-1").await;
    let receiver = Receiver::new(WebhookFormat::Standard);
    let stop = CancellationToken::new();
    let (addr, _server) = listening(&receiver, &stop).await;

    let settings = webhook_settings(addr);
    let deliverer = Deliverer::new(app.pool().clone(), &settings, "test:1").unwrap();
    let tally = deliverer
        .deliver_due(&CancellationToken::new())
        .await
        .unwrap();
    let sent_at = chrono::Utc::now().timestamp();
    assert_eq!(tally.delivered, 1);
    let (headers, body) = {
        let seen = receiver.seen.lock().unwrap();
        assert!(seen.bad.is_empty(), "{:?}", seen.bad);
        seen.deliveries[0].clone()
    };
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["payment_id"], "w-1");
    let id = event["id"].as_i64().unwrap();
    assert_eq!(headers["webhook-id"], id.to_string().as_str());
    let timestamp: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (sent_at - 5..=sent_at).contains(&timestamp),
        "signed at the attempt: {timestamp}, now {sent_at}"
    );
    let wh = Webhook::new(WEBHOOK_SECRET).unwrap();
    wh.verify(&body, &headers).expect("the delivery verifies");

    // The body changed in transit: refused.
    let tampered = String::from_utf8(body.to_vec())
        .unwrap()
        .replace("\"w-1\"", "\"w-2\"");
    assert_ne!(tampered.as_bytes(), &body[..]);
    assert!(matches!(
        wh.verify(tampered.as_bytes(), &headers),
        Err(WebhookError::InvalidSignature)
    ));
    // Another id or time on the captured signature: refused (both are signed).
    for (name, value) in [
        ("webhook-id", (id + 1).to_string()),
        ("webhook-timestamp", (timestamp - 1).to_string()),
    ] {
        let mut doctored = headers.clone();
        doctored.insert(name, value.parse().unwrap());
        assert!(
            matches!(
                wh.verify(&body, &doctored),
                Err(WebhookError::InvalidSignature)
            ),
            "{name}"
        );
    }
    // A replay: this delivery as the deliverer signed it six minutes ago, which is what one
    // captured then and sent again now is. Its signature is good (the crate signs it the
    // same way); its time is too old, and the receiver refuses it.
    let six_minutes_ago = timestamp - 6 * 60;
    let mut replay = headers.clone();
    let key = settings.signing_key().unwrap();
    for (name, value) in signed_headers(
        WebhookFormat::Standard,
        key.expose_secret(),
        id,
        six_minutes_ago,
        &body,
    ) {
        replay.insert(name, value.parse().unwrap());
    }
    assert_eq!(
        replay["webhook-signature"],
        wh.sign(&id.to_string(), six_minutes_ago, &body)
            .unwrap()
            .as_str()
    );
    assert!(matches!(
        wh.verify(&body, &replay),
        Err(WebhookError::TimestampTooOldError)
    ));
    stop.cancel();
}

/// `webhook.format = "github"` sends what every version before it sent: X-Recon-Event-Id and
/// X-Recon-Signature, the hex HMAC-SHA256 of the body under the plain secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_format_is_signed_as_before_and_verifies_with_a_plain_hmac() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert("('h-1', 10, 'KZT', null, now(), null)").await;
    app.insert_first_transition("h-1").await;
    let receiver = Receiver::new(WebhookFormat::Github);
    let stop = CancellationToken::new();
    let (addr, _server) = listening(&receiver, &stop).await;

    let settings = WebhookSettings {
        secret: SecretString::from(GITHUB_SECRET),
        format: WebhookFormat::Github,
        ..webhook_settings(addr)
    };
    let deliverer = Deliverer::new(app.pool().clone(), &settings, "test:1").unwrap();
    let tally = deliverer
        .deliver_due(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(tally.delivered, 1);
    let seen = receiver.seen.lock().unwrap();
    assert!(seen.bad.is_empty(), "{:?}", seen.bad);
    let (headers, body) = &seen.deliveries[0];
    let event: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event["payment_id"], "h-1");
    assert_eq!(
        headers["x-recon-event-id"],
        event["id"].as_i64().unwrap().to_string().as_str()
    );
    for standard in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert!(!headers.contains_key(standard), "{standard}");
    }
    drop(seen);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failure_retried_later_and_never_followed() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert("('r-1', 10, 'KZT', null, now(), null)").await;
    app.insert_first_transition("r-1").await;
    // The redirect points at a second receiver, which must never be asked.
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    let other = Receiver::new(WebhookFormat::Standard);
    let stop = CancellationToken::new();
    let _other = serve(elsewhere, other.clone(), stop.clone());
    let location: &'static str =
        Box::leak(format!("http://{elsewhere_addr}/hooks/recon").into_boxed_str());

    let redirecting = Receiver {
        answer: Some((StatusCode::TEMPORARY_REDIRECT, location)),
        ..Receiver::new(WebhookFormat::Standard)
    };
    let (addr, _server) = listening(&redirecting, &stop).await;

    let deliverer = Deliverer::new(app.pool().clone(), &webhook_settings(addr), "test:1").unwrap();
    let tally = deliverer
        .deliver_due(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((tally.delivered, tally.failed), (0, 1));
    assert_eq!(
        other.seen.lock().unwrap().requests,
        0,
        "the redirect was followed"
    );
    let (attempts, error, retry_in): (i32, String, f64) = sqlx::query_as(
        "select attempts, last_error, extract(epoch from next_attempt_at - now())::float8
         from recon.events",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.starts_with("HTTP 307"), "{error}");
    assert!(
        (0.3..=1.6).contains(&retry_in),
        "retried after about a second: {retry_in}"
    );
    // Not due yet: nothing more is sent.
    let again = deliverer
        .deliver_due(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(again.failed + again.delivered, 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_types_are_skipped_and_max_age_counts_from_the_first_attempt() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert("('t-1', 10, 'KZT', null, now(), null)").await;
    sqlx::raw_sql(
        "insert into recon.status_transitions
             (payment_id, observation_no, from_status, to_status, observed_at, body)
         values ('t-1', 1, null, 'process', now(), '{}');
         insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         values ('t-1', 'amount_mismatch', '10', '9', now());",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let receiver = Receiver {
        fail_every: 1,
        ..Receiver::new(WebhookFormat::Standard)
    };
    let stop = CancellationToken::new();
    let (addr, _server) = listening(&receiver, &stop).await;

    let mut settings = webhook_settings(addr);
    settings.types = vec!["flag_opened".into()];
    settings.max_age = Duration::from_secs(3600);
    // Written a day ago (it waited, say, behind earlier events): max_age counts from the
    // first attempt, so one failure now is only a failure.
    let backdate = |sql: &'static str| {
        let pool = app.pool().clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("alter table recon.events disable trigger events_append_only")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut *tx).await.unwrap();
            sqlx::query("alter table recon.events enable trigger events_append_only")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    backdate("update recon.events set created_at = now() - interval '1 day'").await;

    let deliverer = Deliverer::new(app.pool().clone(), &settings, "test:1").unwrap();
    let tally = deliverer
        .deliver_due(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((tally.delivered, tally.failed, tally.abandoned), (0, 1, 0));
    assert_eq!(
        receiver.seen.lock().unwrap().requests,
        1,
        "only the flag was sent"
    );

    // Failing for longer than max_age since its first attempt: abandoned.
    backdate(
        "update recon.events set first_attempt_at = now() - interval '2 hours',
                                 next_attempt_at = now()
         where type = 'flag_opened'",
    )
    .await;
    let tally = deliverer
        .deliver_due(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((tally.delivered, tally.failed, tally.abandoned), (0, 0, 1));
    let deliveries: Vec<(String, String)> =
        sqlx::query_as("select type, delivery from recon.event_log order by id")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(
        deliveries,
        [
            ("status_changed".to_owned(), "skipped".to_owned()),
            ("flag_opened".to_owned(), "abandoned".to_owned()),
        ]
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_delivering_at_once_never_send_an_event_twice_or_out_of_order() {
    let app = TestApp::new(Scenario::new()).await;
    // 40 payments with three events each.
    sqlx::raw_sql(
        "insert into recon.payments (payment_id) select 'c-' || g from generate_series(1, 40) g;
         insert into recon.status_transitions
             (payment_id, observation_no, from_status, to_status, observed_at, body)
         select 'c-' || g, n, case n when 1 then null when 2 then 'process' else 'waiting' end,
                case n when 1 then 'process' when 2 then 'waiting' else 'success' end, now(), '{}'
         from generate_series(1, 40) g, generate_series(1, 3) n order by n, g;",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let receiver = Receiver::new(WebhookFormat::Standard);
    let stop = CancellationToken::new();
    let (addr, _server) = listening(&receiver, &stop).await;

    let settings = webhook_settings(addr);
    let a = Deliverer::new(app.pool().clone(), &settings, "host-a:1").unwrap();
    let b = Deliverer::new(app.pool().clone(), &settings, "host-b:2").unwrap();
    let never = CancellationToken::new();
    // Both deliver until nothing is left.
    loop {
        let (sa, sb) = tokio::join!(a.deliver_due(&never), b.deliver_due(&never));
        let (sa, sb) = (sa.unwrap(), sb.unwrap());
        if sa.delivered + sb.delivered == 0 {
            break;
        }
    }
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.accepted.len(), 120, "every event once, none twice");
    let ids: HashSet<i64> = seen.accepted.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids.len(), 120);
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (id, payment, _) in &seen.accepted {
        if let Some(previous) = last.insert(payment.as_str(), *id) {
            assert!(previous < *id, "{payment}: {id} after {previous}");
        }
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receivers_long_answer_is_cut_and_cleaned_before_it_is_kept() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert("('b-1', 10, 'KZT', null, now(), null)").await;
    app.insert_first_transition("b-1").await;
    // 1 MB of answer, with a terminal escape sequence in it.
    let long = format!("\u{1b}[31mbroken{}", "x".repeat(1 << 20));
    let router = Router::new().route(
        "/hooks/recon",
        post(move || {
            let long = long.clone();
            async move { (StatusCode::INTERNAL_SERVER_ERROR, long) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let deliverer = Deliverer::new(app.pool().clone(), &webhook_settings(addr), "test:1").unwrap();
    let tally = deliverer
        .deliver_due(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(tally.failed, 1);
    let error: String = sqlx::query_scalar("select last_error from recon.events")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert!(
        error.starts_with("HTTP 500: \\u{1b}[31mbroken"),
        "{}",
        &error[..40.min(error.len())]
    );
    assert!(!error.contains('\u{1b}'));
    assert!(
        error.chars().count() <= 220,
        "{} characters kept",
        error.chars().count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_webhook_backlog_when_a_webhook_is_configured() {
    freedompay_recon::http::monitoring::recorder();
    let app = TestApp::with(
        Scenario::new(),
        &[
            ("FREEDOMPAY_RECON__WEBHOOK__URL", "http://127.0.0.1:9/hooks"),
            ("FREEDOMPAY_RECON__WEBHOOK__SECRET", WEBHOOK_SECRET),
        ],
    )
    .await;
    app.insert("('g-1', 10, 'KZT', null, now(), null)").await;
    sqlx::query(
        "insert into recon.status_transitions
             (payment_id, observation_no, from_status, to_status, observed_at, body)
         values ('g-1', 1, null, 'process', now() - interval '2 minutes', '{}')",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(freedompay_recon::http::monitoring::serve_with(
        listener,
        app.engine.clone(),
        freedompay_recon::settings::Limits::default(),
        shutdown.clone(),
        Duration::ZERO,
    ));
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("\nfreedompay_recon_webhook_backlog 1\n"),
        "{text}"
    );
    assert!(
        text.contains("\nfreedompay_recon_webhook_abandoned 0\n"),
        "{text}"
    );
    assert!(
        text.contains("freedompay_recon_webhook_oldest_pending_age_seconds"),
        "{text}"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_is_recorded_only_under_the_claim_that_made_it() {
    use freedompay_recon::store::events::{self, Attempt};

    let app = TestApp::new(Scenario::new()).await;
    app.insert("('o-1', 10, 'KZT', null, now(), null)").await;
    app.insert_first_transition("o-1").await;
    let types = ["status_changed".to_owned()];
    let lease = Duration::from_secs(60);
    let first = events::claim_undelivered(app.pool(), "host:1#a", 10, lease, &types)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // The first claim's lease runs out; another takes the event over.
    sqlx::query("update recon.events set lease_expires_at = now() - interval '1 ms'")
        .execute(app.pool())
        .await
        .unwrap();
    let second = events::claim_undelivered(app.pool(), "host:1#b", 10, lease, &types)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    // The first claim's late result is not recorded; the second's is.
    let late = events::record_attempts(
        app.pool(),
        "host:1#a",
        &[(first[0].id, Attempt::Delivered)],
        lease,
    )
    .await
    .unwrap();
    assert_eq!(late.delivered, 0);
    assert_eq!(
        app.count("select count(*) from recon.events where delivered_at is null and lease_owner = 'host:1#b'").await,
        1
    );
    let own = events::record_attempts(
        app.pool(),
        "host:1#b",
        &[(second[0].id, Attempt::Delivered)],
        lease,
    )
    .await
    .unwrap();
    assert_eq!(own.delivered, 1);
}

/// Event ids a slow receiver got, and when each request arrived.
#[derive(Clone, Default)]
struct Slow {
    arrivals: Arc<Mutex<Vec<(i64, tokio::time::Instant)>>>,
}

async fn receive_slowly(State(slow): State<Slow>, body: Bytes) -> StatusCode {
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = event["id"].as_i64().unwrap_or(-1);
    slow.arrivals
        .lock()
        .unwrap()
        .push((id, tokio::time::Instant::now()));
    // The slowness is the point: a second per event, measured against the claim's lease.
    tokio::time::sleep(Duration::from_secs(1)).await;
    StatusCode::NO_CONTENT
}

/// An instance that wakes past its claim (frozen by SIGSTOP, a paused VM) finds it no longer
/// holds its events: it sends none of them, and another instance sends each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_sends_only_the_events_its_claim_still_holds() {
    let app = TestApp::new(Scenario::new()).await;
    sqlx::raw_sql(
        "insert into recon.payments (payment_id) select 's-' || g from generate_series(1, 30) g;
         insert into recon.status_transitions
             (payment_id, observation_no, from_status, to_status, observed_at, body)
         select 's-' || g, 1, null, 'process', now(), '{}' from generate_series(1, 30) g;",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let stop = CancellationToken::new();
    // A: a receiver that takes a second per event, and a claim of 2.5 s with attempts of up
    // to 2 s: only the attempts that start at once fit in the claim.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = listener.local_addr().unwrap();
    let slow = Slow::default();
    let app_router = Router::new()
        .route("/hooks/recon", post(receive_slowly))
        .with_state(slow.clone());
    let stopping = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app_router)
            .with_graceful_shutdown(stopping.cancelled_owned())
            .await
            .unwrap();
    });
    let lease = Duration::from_millis(2500);
    let a = Deliverer::new(app.pool().clone(), &webhook_settings(slow_addr), "host-a:1")
        .unwrap()
        .with_lease(lease);
    let started = tokio::time::Instant::now();
    let tally = a
        .deliver_claim(&CancellationToken::new())
        .await
        .unwrap()
        .expect("events were due");
    let arrivals = slow.arrivals.lock().unwrap().clone();
    assert_eq!(
        arrivals.len(),
        8,
        "only the attempts that started inside the claim (8 in flight)"
    );
    assert!(
        arrivals.iter().all(|(_, at)| *at - started < lease),
        "nothing was sent after the claim ran out"
    );
    assert_eq!(tally.delivered, 8);
    assert_eq!(pending(&app).await, 22, "the rest went back to the queue");
    assert_eq!(
        app.count("select count(*) from recon.events where lease_owner is not null")
            .await,
        0
    );

    // B sends the rest, each once.
    let receiver = Receiver::new(WebhookFormat::Standard);
    let (addr, _server) = listening(&receiver, &stop).await;
    let b = Deliverer::new(app.pool().clone(), &webhook_settings(addr), "host-b:2").unwrap();
    b.deliver_due(&CancellationToken::new()).await.unwrap();
    let by_b: HashSet<i64> = receiver
        .seen
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|(id, _, _)| *id)
        .collect();
    let by_a: HashSet<i64> = arrivals.iter().map(|(id, _)| *id).collect();
    assert_eq!(by_b.len(), 22);
    assert!(by_a.is_disjoint(&by_b), "no event sent twice");
    assert_eq!(pending(&app).await, 0);
    stop.cancel();
}
