//! Outbound HTTP, made one way for every peer the daemon calls (the provider, the webhook
//! receiver, the team's chat): one client builder that never follows a redirect, one reader
//! that never buffers more than its cap, and one description of a transport failure that
//! never repeats the URL (it may carry a token).

use std::sync::Once;
use std::time::Duration;

static CRYPTO_PROVIDER: Once = Once::new();

/// reqwest is built without a default TLS crypto backend; use ring, as sqlx does.
fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client for one peer: our user agent, `timeout` for a whole attempt (and
/// `connect_timeout` for the connection, when given), and no redirect followed: the next host
/// would receive what we signed (the provider's signature carries no nonce or time, so it could
/// be replayed), and its answer is not the peer's. A redirect is an answer like any other non-2xx.
pub fn client(
    timeout: Duration,
    connect_timeout: Option<Duration>,
) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    let builder = reqwest::Client::builder()
        .user_agent(concat!("freedompay-recon/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout);
    match connect_timeout {
        Some(connect) => builder.connect_timeout(connect),
        None => builder,
    }
    .build()
}

/// The first bytes of an answer's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    /// The body went on past the cap; the rest was never read.
    pub cut: bool,
}

/// Reads at most `cap` bytes of `response`'s body; a transport failure midway in words.
pub async fn read_at_most(response: &mut reqwest::Response, cap: usize) -> Result<Body, String> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - bytes.len();
                if chunk.len() > room {
                    bytes.extend_from_slice(&chunk[..room]);
                    return Ok(Body { bytes, cut: true });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Body { bytes, cut: false }),
            Err(e) => return Err(describe(&e)),
        }
    }
}

/// A transport failure in words: its kind and causes, without reqwest's own message (which
/// repeats the URL).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body could not be read"
    } else {
        "request failed"
    };
    let mut reason = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}
