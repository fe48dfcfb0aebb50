//! The HTTP side: one signed GET per poll, a capped body read, and [`classify`], the one
//! function that decides what any response or failure means.

use std::time::{Duration, Instant, SystemTime};

use chrono::FixedOffset;
use reqwest::Url;
use reqwest::header::{ACCEPT, LOCATION, RETRY_AFTER};
use uuid::Uuid;

use super::INVOICE_INFO_PATH;
use super::jws::Signer;
use super::parse::{Body, parse_body};
use crate::domain::{PaymentId, PollResult};
use crate::settings::ProviderSettings;
use crate::text::excerpt;

/// What a response (or the lack of one) means. Decided in [`classify`] and nowhere else.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// The provider answered about this payment: an invoice, "not found", another error.
    Answer(PollResult),
    /// No usable answer this time (timeout, connection error, 5xx, unreadable body):
    /// try this payment again later.
    Retryable(String),
    /// The provider asks us to slow down: every worker pauses this long.
    RateLimited(Duration),
    /// Our configuration is wrong (credentials, signature, base URL): stop polling.
    Fatal(String),
    /// A partner error body inside a normal answer that reads like a credentials failure
    /// ("Invalid signature"). Card and 3-D Secure errors read the same way, so this is one
    /// payment's answer until a request that does not depend on this payment confirms it
    /// (see `Engine`): only then does polling halt.
    CredentialsDoubt { code: String, description: String },
}

/// One poll's result, with the body kept for the history when it was readable JSON.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub classified: Classified,
    /// The body as received, when it parsed (an invoice or a partner error).
    pub raw_body: Option<String>,
    /// A body that did not parse (HTML, truncated JSON…), as text: invalid UTF-8 replaced.
    pub unreadable_body: Option<String>,
    pub http_status: Option<u16>,
    /// The `X-Request-Id` sent (a UUID v7): the provider's support needs it.
    pub request_id: Uuid,
    pub elapsed: Duration,
}

/// The parts of a response's head that classification looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub retry_after: Option<&'a str>,
    pub location: Option<&'a str>,
}

/// Limits that shape classification, from the provider settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub naive_offset: FixedOffset,
    pub default_retry_after: Duration,
    pub max_retry_after: Duration,
}

/// Classifies an HTTP response.
///
/// * 200 (or any status) with a readable invoice: an answer.
/// * A partner error body: "not found" or another per-payment error is an answer; one that
///   reads like a credentials failure is a [`Classified::CredentialsDoubt`], for the engine
///   to confirm.
/// * 401/403: fatal. 429 and 503 with `Retry-After`: rate limited (429 without it too, for
///   `default_retry_after`). Other 5xx: retryable.
/// * 3xx: retryable. Redirects are never followed (the signature would go to another host,
///   and its answer is not the provider's); the message names the `Location`.
/// * 404/405/410 without a readable error body (a wrong base URL): fatal, because every
///   request would fail the same way; any other 4xx: retryable, recorded against the payment.
/// * An unreadable 2xx body (HTML, truncated or invalid JSON, over the size cap): retryable.
pub fn classify(
    head: ResponseHead<'_>,
    body: Result<&[u8], String>,
    now: SystemTime,
    limits: &Limits,
) -> Classified {
    let ResponseHead {
        status,
        retry_after,
        location,
    } = head;
    let pause = |raw: Option<&str>| {
        raw.and_then(|raw| parse_retry_after(raw, now))
            .map(|d| d.min(limits.max_retry_after))
    };
    match status {
        300..=399 => {
            return Classified::Retryable(format!(
                "the provider answered HTTP {status}, a redirect to {}; redirects are not followed \
                 (check provider.base_url)",
                location.map_or_else(|| "nowhere".to_owned(), excerpt)
            ));
        }
        401 | 403 => {
            return Classified::Fatal(format!(
                "the provider refused our credentials (HTTP {status}); check provider.auth_id, \
                 provider.secret and provider.params"
            ));
        }
        429 => {
            return Classified::RateLimited(
                pause(retry_after).unwrap_or(limits.default_retry_after),
            );
        }
        503 => {
            if let Some(pause) = pause(retry_after) {
                return Classified::RateLimited(pause);
            }
        }
        _ => {}
    }
    if status >= 500 {
        return Classified::Retryable(format!("provider returned HTTP {status}"));
    }
    let body = match body {
        Ok(body) => body,
        Err(reason) => return Classified::Retryable(reason),
    };
    match parse_body(body, limits.naive_offset) {
        Ok(Body::Invoice(invoice)) => Classified::Answer(PollResult::Invoice(invoice)),
        Ok(Body::ApiError(error)) if error.is_auth_failure() => Classified::CredentialsDoubt {
            code: error.code.unwrap_or_default(),
            description: error.description.unwrap_or_default(),
        },
        Ok(Body::ApiError(error)) if error.is_not_found() => {
            Classified::Answer(PollResult::NotFound)
        }
        Ok(Body::ApiError(error)) => Classified::Answer(PollResult::Rejected {
            code: error.code.unwrap_or_default(),
            description: error.description.unwrap_or_default(),
        }),
        // No such endpoint or method: every request would fail the same way.
        Err(parse_error) if matches!(status, 404 | 405 | 410) => Classified::Fatal(format!(
            "the provider answered HTTP {status} ({parse_error}); check provider.base_url"
        )),
        // Any other client error may be about this one request (an odd id, a proxy rule):
        // it is recorded against the payment, and polling goes on.
        Err(parse_error) if (400..500).contains(&status) => {
            Classified::Retryable(format!("provider returned HTTP {status}: {parse_error}"))
        }
        Err(parse_error) => {
            Classified::Retryable(format!("unreadable body (HTTP {status}): {parse_error}"))
        }
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date.
fn parse_retry_after(raw: &str, now: SystemTime) -> Option<Duration> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A setting that prevents building the client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProviderSettingsError(String);

/// The Freedom Pay Partner API client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ProviderClient {
    http: reqwest::Client,
    endpoint: Url,
    /// `provider.base_url` for messages, without any user or password in it: a request that
    /// never reached the provider names where it went, so a wrong URL is seen as one.
    base_url: String,
    signer: Signer,
    max_body_bytes: usize,
    limits: Limits,
}

impl ProviderClient {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderSettingsError> {
        let err = |m: String| ProviderSettingsError(m);
        let missing = settings.missing_credentials();
        if !missing.is_empty() {
            return Err(err(crate::settings::credentials_not_set(&missing)));
        }
        let mut endpoint = Url::parse(&settings.base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.query().is_none())
            .ok_or_else(|| {
                err(format!(
                    "provider.base_url {:?} is not an http(s) URL such as https://api.freedompay.kz",
                    settings.base_url
                ))
            })?;
        let mut shown = endpoint.clone();
        // Cannot fail on an http(s) URL.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let base_url = shown.to_string();
        let path = format!(
            "{}{INVOICE_INFO_PATH}",
            endpoint.path().trim_end_matches('/')
        );
        endpoint.set_path(&path);

        let http = crate::outbound::client(settings.timeout, Some(settings.connect_timeout))
            .map_err(|e| err(format!("cannot build the HTTP client: {e}")))?;
        let limits = Limits {
            naive_offset: settings.naive_offset().map_err(|e| err(e.to_string()))?,
            default_retry_after: settings.default_retry_after,
            max_retry_after: settings.max_retry_after,
        };
        Ok(Self {
            http,
            endpoint,
            base_url,
            signer: Signer::new(
                settings.auth_id.clone(),
                settings.secret.clone(),
                settings.params,
            ),
            max_body_bytes: settings.max_body_bytes,
            limits,
        })
    }

    /// The zone of the provider's timestamps sent without one (`provider.naive_utc_offset`).
    pub fn naive_offset(&self) -> FixedOffset {
        self.limits.naive_offset
    }

    /// `GET /v5/partner/invoice/info?payment_id=…`, signed, classified.
    pub async fn invoice_info(&self, payment_id: &PaymentId) -> Fetched {
        let started = Instant::now();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("payment_id", payment_id.as_str())
            .finish();
        let mut url = self.endpoint.clone();
        url.set_query(Some(&query));
        let signature = self.signer.sign_get(url.path(), &query);
        let request_id = Uuid::now_v7();

        let response = self
            .http
            .get(url)
            .header("X-JWS-Signature", signature)
            .header("X-Request-Id", request_id.to_string())
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let mut response = match response {
            Ok(response) => response,
            Err(e) => {
                return Fetched {
                    classified: Classified::Retryable(format!(
                        "{}; the request went to {} (provider.base_url)",
                        crate::outbound::describe(&e),
                        self.base_url
                    )),
                    raw_body: None,
                    unreadable_body: None,
                    http_status: None,
                    request_id,
                    elapsed: started.elapsed(),
                };
            }
        };
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let (retry_after, location) = (header(RETRY_AFTER), header(LOCATION));
        let body = self.read_capped(&mut response).await;
        let classified = classify(
            ResponseHead {
                status: status.as_u16(),
                retry_after: retry_after.as_deref(),
                location: location.as_deref(),
            },
            body.as_deref().map_err(Clone::clone),
            SystemTime::now(),
            &self.limits,
        );
        let (raw_body, unreadable_body) = match (&classified, body) {
            (
                Classified::Answer(_) | Classified::Fatal(_) | Classified::CredentialsDoubt { .. },
                Ok(bytes),
            ) => (String::from_utf8(bytes).ok(), None),
            (_, Ok(bytes)) if !bytes.is_empty() => {
                (None, Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
            _ => (None, None),
        };
        Fetched {
            classified,
            raw_body,
            unreadable_body,
            http_status: Some(status.as_u16()),
            request_id,
            elapsed: started.elapsed(),
        }
    }

    /// Reads at most `max_body_bytes`; a larger body is an error, never buffered whole.
    async fn read_capped(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, String> {
        let cap = self.max_body_bytes;
        let too_large = || format!("body larger than {cap} bytes");
        if response
            .content_length()
            .is_some_and(|len| len as usize > cap)
        {
            return Err(too_large());
        }
        let body = crate::outbound::read_at_most(response, cap).await?;
        if body.cut {
            return Err(too_large());
        }
        Ok(body.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            naive_offset: FixedOffset::east_opt(5 * 3600).unwrap(),
            default_retry_after: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(300),
        }
    }

    fn at(status: u16, retry_after: Option<&str>, body: &str) -> Classified {
        classify(
            ResponseHead {
                status,
                retry_after,
                location: None,
            },
            Ok(body.as_bytes()),
            SystemTime::UNIX_EPOCH,
            &limits(),
        )
    }

    const INVOICE: &str = r#"{"paymentStatus":"process","amount":10,"currency":"KZT"}"#;

    #[test]
    fn a_readable_invoice_is_an_answer() {
        assert!(matches!(
            at(200, None, INVOICE),
            Classified::Answer(PollResult::Invoice(_))
        ));
    }

    #[test]
    fn redirects_are_retryable_and_name_where_they_point() {
        let redirect = classify(
            ResponseHead {
                status: 302,
                retry_after: None,
                location: Some("http://evil.example/\u{1b}[31m"),
            },
            Ok(INVOICE.as_bytes()),
            SystemTime::UNIX_EPOCH,
            &limits(),
        );
        let Classified::Retryable(message) = redirect else {
            panic!("{redirect:?}")
        };
        assert!(message.contains("HTTP 302"), "{message}");
        assert!(
            message.contains("http://evil.example/\\u{1b}[31m"),
            "the Location is named, escaped: {message}"
        );
        assert!(matches!(at(307, None, ""), Classified::Retryable(m) if m.contains("nowhere")));
    }

    #[test]
    fn partner_errors_are_per_payment_or_doubted() {
        assert_eq!(
            at(
                200,
                None,
                r#"{"status":"error","error_code":"404","error_description":"Payment not found"}"#
            ),
            Classified::Answer(PollResult::NotFound)
        );
        assert_eq!(
            at(
                200,
                None,
                r#"{"status":"error","error_code":77,"error_description":"Try later"}"#
            ),
            Classified::Answer(PollResult::Rejected {
                code: "77".into(),
                description: "Try later".into()
            })
        );
        assert_eq!(
            at(
                200,
                None,
                r#"{"status":"error","error_code":1001,"error_description":"Invalid signature"}"#
            ),
            Classified::CredentialsDoubt {
                code: "1001".into(),
                description: "Invalid signature".into()
            },
            "only a doubt: the engine confirms it before anything halts"
        );
        assert_eq!(
            at(
                404,
                None,
                r#"{"status":"error","error_code":"404","error_description":"Payment not found"}"#
            ),
            Classified::Answer(PollResult::NotFound)
        );
    }

    #[test]
    fn credentials_and_wrong_urls_are_fatal() {
        assert!(matches!(at(401, None, ""), Classified::Fatal(m) if m.contains("provider.secret")));
        assert!(matches!(at(403, None, INVOICE), Classified::Fatal(_)));
        assert!(
            matches!(at(404, None, "<html>Not Found</html>"), Classified::Fatal(m) if m.contains("base_url"))
        );
        assert!(
            matches!(at(400, None, "<html>Bad Request</html>"), Classified::Retryable(m) if m.contains("HTTP 400")),
            "a client error about one request does not halt polling"
        );
    }

    #[test]
    fn rate_limits_pause_for_retry_after_capped() {
        assert_eq!(
            at(429, Some("7"), ""),
            Classified::RateLimited(Duration::from_secs(7))
        );
        assert_eq!(
            at(429, None, ""),
            Classified::RateLimited(Duration::from_secs(5))
        );
        assert_eq!(
            at(503, Some("2"), ""),
            Classified::RateLimited(Duration::from_secs(2))
        );
        assert_eq!(
            at(429, Some("86400"), ""),
            Classified::RateLimited(Duration::from_secs(300))
        );
        assert_eq!(
            at(429, Some("Thu, 01 Jan 1970 00:00:42 GMT"), ""),
            Classified::RateLimited(Duration::from_secs(42))
        );
    }

    #[test]
    fn server_errors_and_unreadable_bodies_are_retryable() {
        let html = include_str!("../../tests/fixtures/provider/responses/gateway-502.html");
        assert!(matches!(at(502, None, html), Classified::Retryable(_)));
        assert!(matches!(at(503, None, ""), Classified::Retryable(_)));
        assert!(matches!(at(500, None, INVOICE), Classified::Retryable(_)));
        assert!(matches!(at(200, None, html), Classified::Retryable(m) if m.contains("not JSON")));
        assert!(matches!(
            at(200, None, &INVOICE[..20]),
            Classified::Retryable(_)
        ));
        let too_big = classify(
            ResponseHead {
                status: 200,
                ..ResponseHead::default()
            },
            Err("body larger than 1048576 bytes".into()),
            SystemTime::UNIX_EPOCH,
            &limits(),
        );
        assert_eq!(
            too_big,
            Classified::Retryable("body larger than 1048576 bytes".into())
        );
    }
}
