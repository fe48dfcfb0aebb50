//! Webhook delivery: POSTs the outbox's events (`recon.events`) to `webhook.url`, signed.
//!
//! Each event is one request: the body is `{"id", "type", "payment_id", "occurred_at",
//! "data"}`, signed as `webhook.format` says. `standard` ([Standard Webhooks]): `webhook-id`
//! (the event's id, the same on every attempt), `webhook-timestamp` (this attempt's time) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//! bytes of the `whsec_` secret, so a receiver refusing old timestamps and seen ids cannot be
//! replayed to. `github`, as before: `X-Recon-Event-Id` and `X-Recon-Signature:
//! sha256=<hex HMAC-SHA256 of the exact body>`.
//!
//! An event counts as delivered only on a 2xx answer; anything else (another status, a
//! timeout, a refused connection, a redirect, which is never followed) is tried again after a
//! jittered, doubling delay, until `webhook.max_age` after its first attempt, when it is
//! abandoned. A payment's events go in id order (see
//! [`store::events::claim_undelivered`]); instances share the work through leases. Delivery runs
//! beside the sweeps and never holds them up: a dead receiver only grows the backlog.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng as _;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;
use sha2::Sha256;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::settings::{WebhookFormat, WebhookSettings};
use crate::store::events::{Attempt, DeliveryTally, Outgoing};
use crate::store::{self, StoreError};
use crate::text;

/// Deliveries by outcome: `delivered`, `failed` (tried again later), `abandoned`.
pub const DELIVERIES: &str = "freedompay_recon_webhook_deliveries_total";

/// Gives the webhook's metrics their help text.
pub fn describe() {
    metrics::describe_counter!(
        DELIVERIES,
        "Webhook delivery attempts by outcome (delivered, failed and tried again later, abandoned)."
    );
}

/// Events claimed at a time; one per payment at most.
const CLAIM: u32 = 64;
/// Requests in flight at once.
const IN_FLIGHT: usize = 8;
/// How much of a receiver's answer is read: enough for an error message.
const ANSWER_CAP: usize = 4 * 1024;
/// The first retry waits about this long, doubling up to [`RETRY_MAX`], ±50 %.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(600);
/// Events of unwanted types marked skipped per statement.
const SKIP_BATCH: u32 = 1000;
/// Between passes when nothing was due.
const IDLE: Duration = Duration::from_secs(1);

/// The JSON an event is sent as.
#[derive(Serialize)]
struct Body<'a> {
    id: i64,
    #[serde(rename = "type")]
    event_type: &'a str,
    payment_id: &'a str,
    occurred_at: String,
    data: &'a serde_json::Value,
}

/// The exact bytes POSTed for an event.
pub fn body(event: &Outgoing) -> Vec<u8> {
    serde_json::to_vec(&Body {
        id: event.id,
        event_type: &event.event_type,
        payment_id: &event.payment_id,
        occurred_at: event
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        data: &event.payload,
    })
    .expect("an event serialises")
}

/// `X-Recon-Signature` (format `github`) for `body`: `sha256=` and the hex HMAC-SHA256 of the
/// exact bytes.
pub fn github_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `webhook-signature` (format `standard`) for message `id`, sent at `timestamp` (seconds
/// since the epoch): `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let signed = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("v1,{signed}")
}

/// The headers that identify and sign one attempt at event `event_id`, whose request body is
/// `body`, made at `timestamp` (seconds since the epoch; signed only under `standard`).
pub fn signed_headers(
    format: WebhookFormat,
    key: &[u8],
    event_id: i64,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let id = event_id.to_string();
    match format {
        WebhookFormat::Standard => {
            let signature = standard_signature(key, &id, timestamp, body);
            vec![
                ("webhook-id", id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
            ]
        }
        WebhookFormat::Github => vec![
            ("X-Recon-Event-Id", id),
            ("X-Recon-Signature", github_signature(key, body)),
        ],
    }
}

/// The delay before attempt `attempts + 1`: doubling from [`RETRY_FIRST`] up to
/// [`RETRY_MAX`], times `jitter` (0.5 to 1.5).
pub fn retry_delay(attempts: i32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
    let base = RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX);
    base.mul_f64(jitter.clamp(0.5, 1.5))
}

pub struct Deliverer {
    pool: PgPool,
    http: reqwest::Client,
    url: Url,
    format: WebhookFormat,
    /// The HMAC key, decoded from `webhook.secret` once; never printed.
    key: SecretSlice<u8>,
    max_age: Duration,
    types: Vec<String>,
    lease: Duration,
    /// One attempt's longest wait (`webhook.timeout`).
    timeout: Duration,
    instance: String,
}

impl std::fmt::Debug for Deliverer {
    /// The URL without credentials or query (which may hold a token); never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("url", &redacted(&self.url))
            .field("format", &self.format)
            .field("types", &self.types)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// `instance` names this process in leases.
    pub fn new(pool: PgPool, settings: &WebhookSettings, instance: &str) -> anyhow::Result<Self> {
        let url = Url::parse(settings.url.expose_secret().trim())
            .map_err(|e| anyhow::anyhow!("webhook.url is not a URL: {e}"))?;
        let key = settings.signing_key()?;
        // A redirect is an answer that is not a 2xx: retried, never followed.
        let http = crate::outbound::client(settings.timeout, None)
            .map_err(|e| anyhow::anyhow!("cannot build the webhook client: {e}"))?;
        Ok(Self {
            pool,
            http,
            url,
            format: settings.format,
            key,
            max_age: settings.max_age,
            types: settings.types.clone(),
            // Long enough for a batch of attempts at the timeout each.
            lease: settings.timeout * (CLAIM.div_ceil(IN_FLIGHT as u32) + 1),
            timeout: settings.timeout,
            instance: instance.to_owned(),
        })
    }

    /// How long a claim of events is held ([`CLAIM`] / [`IN_FLIGHT`] + 1 attempts at
    /// `webhook.timeout` by default). For tests, and for receivers that answer very slowly.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Whether an attempt started now would still finish inside the claim made at `claimed`.
    /// A process frozen past its lease (SIGSTOP, a paused VM) finds on waking that it no
    /// longer holds its events: another instance may have sent them, and later ones of the
    /// same payments, since.
    fn still_held(&self, claimed: tokio::time::Instant) -> bool {
        claimed.elapsed() + self.timeout < self.lease
    }

    /// Delivers until nothing is due (or `stop` fires); returns what it recorded.
    pub async fn deliver_due(&self, stop: &CancellationToken) -> Result<DeliveryTally, StoreError> {
        let mut total = DeliveryTally::default();
        // Only when some type is not sent: the scan costs as much as the backlog.
        if !crate::settings::EVENT_TYPES
            .iter()
            .all(|t| self.types.iter().any(|wanted| wanted == t))
        {
            while store::events::skip_unwanted(&self.pool, &self.types, SKIP_BATCH).await?
                == u64::from(SKIP_BATCH)
            {}
        }
        while !stop.is_cancelled() {
            let Some(tally) = self.deliver_claim(stop).await? else {
                break;
            };
            total.delivered += tally.delivered;
            total.failed += tally.failed;
            total.abandoned += tally.abandoned;
            if tally.delivered + tally.failed + tally.abandoned == 0 {
                // Nothing was sent (a stop, or a claim that ran out at once): the next pass
                // tries again, rather than claiming in a tight loop.
                break;
            }
        }
        Ok(total)
    }

    /// One claim's worth: claims up to [`CLAIM`] due events (the first undelivered one of
    /// each payment), sends those the claim still holds, records the attempts and gives back
    /// the rest. `None` when nothing was due.
    pub async fn deliver_claim(
        &self,
        stop: &CancellationToken,
    ) -> Result<Option<DeliveryTally>, StoreError> {
        // Unique per claim, across processes and restarts: recording the attempts checks it.
        let owner = format!("{}#{}", self.instance, uuid::Uuid::now_v7());
        let events =
            store::events::claim_undelivered(&self.pool, &owner, CLAIM, self.lease, &self.types)
                .await?;
        if events.is_empty() {
            return Ok(None);
        }
        // This process's monotonic clock: it runs on while the process is frozen.
        let claimed = tokio::time::Instant::now();
        let events = &events;
        let attempts: Vec<(i64, Attempt)> = futures_util::stream::iter(0..events.len())
            .map(|i| async move {
                // Deliver only what is still held: checked as each attempt starts.
                if !self.still_held(claimed) {
                    return None;
                }
                Some((events[i].id, self.send(&events[i]).await))
            })
            .buffer_unordered(IN_FLIGHT)
            .take_until(stop.cancelled())
            .filter_map(std::future::ready)
            .collect()
            .await;
        let attempted: Vec<i64> = attempts.iter().map(|(id, _)| *id).collect();
        let unsent: Vec<i64> = events
            .iter()
            .map(|e| e.id)
            .filter(|id| !attempted.contains(id))
            .collect();
        if !unsent.is_empty() && !self.still_held(claimed) {
            tracing::warn!(
                unsent = unsent.len(),
                "the claim on these events ran out before they were sent (was the process \
                 paused?); they were not sent and go back to the queue"
            );
        }
        // Attempts first: a delivered event must be recorded even if the release fails.
        let tally =
            store::events::record_attempts(&self.pool, &owner, &attempts, self.max_age).await?;
        if !unsent.is_empty()
            && let Err(e) = store::events::release(&self.pool, &owner, &unsent).await
        {
            tracing::warn!(
                error = %e,
                events = unsent.len(),
                "could not give back unsent events; they are sent when their lease runs out"
            );
        }
        for (outcome, n) in [
            ("delivered", tally.delivered),
            ("failed", tally.failed),
            ("abandoned", tally.abandoned),
        ] {
            if n > 0 {
                ::metrics::counter!(DELIVERIES, "outcome" => outcome).increment(n);
            }
        }
        if tally.abandoned > 0 {
            tracing::error!(
                abandoned = tally.abandoned,
                "webhook events abandoned after webhook.max_age of failed attempts; see recon.event_log"
            );
        }
        Ok(Some(tally))
    }

    /// Delivers until `shutdown`: a pass, then a pause when nothing was due.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(url = %redacted(&self.url), "delivering events to the webhook");
        loop {
            match self.deliver_due(&shutdown).await {
                Ok(tally) if tally.failed > 0 => tracing::warn!(
                    delivered = tally.delivered,
                    failed = tally.failed,
                    "the webhook refused or missed some events; they are tried again later"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook delivery paused"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(IDLE) => {}
            }
        }
    }

    /// One attempt at one event.
    async fn send(&self, event: &Outgoing) -> Attempt {
        let body = body(event);
        // Each attempt's own time: a retry is signed afresh, and verifies as fresh.
        let now = chrono::Utc::now().timestamp();
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in
            signed_headers(self.format, self.key.expose_secret(), event.id, now, &body)
        {
            request = request.header(name, value);
        }
        let sent = request.body(body).send().await;
        let error = match sent {
            Ok(response) if response.status().is_success() => return Attempt::Delivered,
            Ok(mut response) => {
                let status = response.status().as_u16();
                // At most ANSWER_CAP bytes of it; the rest is never read.
                let answer = crate::outbound::read_at_most(&mut response, ANSWER_CAP)
                    .await
                    .map_or_else(|_| Vec::new(), |body| body.bytes);
                let answer = text::clean(&String::from_utf8_lossy(&answer), 200);
                if answer.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {answer}")
                }
            }
            Err(e) => crate::outbound::describe(&e),
        };
        let jitter = rand::rng().random_range(0.5..=1.5);
        Attempt::Failed {
            error,
            retry_in: retry_delay(event.attempts, jitter),
        }
    }
}

/// The URL for logs: scheme, host and path, never credentials or a query (which may hold a
/// token).
fn redacted(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_github_signature_is_the_hex_hmac_of_the_exact_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            github_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The key bytes of a `whsec_` secret.
    fn whsec(secret: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap()
    }

    #[test]
    fn the_standard_signature_matches_the_published_vectors() {
        // The vector the Svix libraries test with (Standard Webhooks is their scheme), then
        // the one in the Rust `standardwebhooks` crate's own tests.
        assert_eq!(
            standard_signature(
                &whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(
            standard_signature(
                &whsec("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn each_format_sends_its_own_headers() {
        let key = whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"id":7}"#;
        assert_eq!(
            signed_headers(WebhookFormat::Standard, &key, 7, 1614265330, body),
            [
                ("webhook-id", "7".to_owned()),
                ("webhook-timestamp", "1614265330".to_owned()),
                (
                    "webhook-signature",
                    standard_signature(&key, "7", 1614265330, body)
                ),
            ]
        );
        // The id and the time are signed: another of either is another signature.
        assert_ne!(
            standard_signature(&key, "7", 1614265330, body),
            standard_signature(&key, "7", 1614265331, body)
        );
        assert_ne!(
            standard_signature(&key, "7", 1614265330, body),
            standard_signature(&key, "8", 1614265330, body)
        );
        assert_eq!(
            signed_headers(WebhookFormat::Github, b"Jefe", 7, 1614265330, body),
            [
                ("X-Recon-Event-Id", "7".to_owned()),
                ("X-Recon-Signature", github_signature(b"Jefe", body)),
            ]
        );
    }

    #[test]
    fn the_body_has_the_documented_fields() {
        let event = Outgoing {
            id: 7,
            event_type: "status_changed".into(),
            payment_id: "p-1".into(),
            occurred_at: "2026-03-10T09:00:00Z".parse().unwrap(),
            payload: serde_json::json!({"to_status": "success"}),
            attempts: 1,
        };
        assert_eq!(
            String::from_utf8(body(&event)).unwrap(),
            r#"{"id":7,"type":"status_changed","payment_id":"p-1","occurred_at":"2026-03-10T09:00:00.000000Z","data":{"to_status":"success"}}"#
        );
    }

    #[test]
    fn retries_double_up_to_ten_minutes_with_jitter() {
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(4, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(40, 1.0), RETRY_MAX);
        assert_eq!(retry_delay(2, 0.5), Duration::from_secs(1));
        assert_eq!(retry_delay(2, 1.5), Duration::from_secs(3));
    }

    #[test]
    fn logged_urls_carry_no_credentials_or_query() {
        let url = Url::parse("https://user:pw@erp.example/hooks?token=abc").unwrap();
        assert_eq!(redacted(&url), "https://erp.example/hooks");
    }
}
