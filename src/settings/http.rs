//! `[http]`: the health and metrics listener, and the limits every listener keeps.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Where `run` serves /healthz, /readyz and /metrics; empty: no listener.
    #[serde(deserialize_with = "optional_address")]
    pub listen: Option<std::net::SocketAddr>,
    /// `/readyz` answers 503 once the daemon's database writes have failed for this long
    /// (a read-only database after a failover, a full disk, a revoked grant).
    #[serde(deserialize_with = "duration")]
    pub unready_after: Duration,
    /// A connection must send a whole request header within this, from connect and from its
    /// previous response (so it is also the keep-alive idle timeout).
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// A request's body must be whole within this of its header; a late one is answered 408
    /// and its connection closed.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// Bytes a second a request body must average after a 2 s grace; 0: no minimum rate.
    pub body_min_rate: u64,
    /// Connections open at once; when full, the one idle longest (a body still coming counts
    /// as idle) is closed for a new one, or the new one is closed when all are busy.
    pub max_connections: usize,
}

impl HttpSettings {
    /// The listener's limits, as checked at load.
    pub fn limits(&self) -> Limits {
        Limits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            body_min_rate: self.body_min_rate,
            max_connections: self.max_connections,
        }
    }
}

/// What one listener allows (`http.header_timeout`, `http.body_timeout`,
/// `http.body_min_rate`, `http.max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection that has not sent a whole request header this long after it opened, or
    /// after its previous response, is closed: this is also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// A request's body must be whole this long after its header, however steadily it comes.
    pub body_timeout: Duration,
    /// Bytes a second a request body must average, counted from its header, once
    /// [`crate::http::listener::RATE_GRACE`] is over; 0: no minimum rate, only `body_timeout`.
    pub body_min_rate: u64,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            // Apache's mod_reqtimeout default (MinRate=500): a stall is closed within
            // seconds, while a client on a poor line still gets a 16 KiB body through.
            body_min_rate: 500,
            max_connections: 128,
        }
    }
}

/// `[console]`: the read-only pages for finance (`console`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Where `console` serves; put it behind a reverse proxy that authenticates
    /// (docs/operations.md).
    pub listen: std::net::SocketAddr,
    /// How amounts are written: `ru` (also for Kazakh: `1 234 567,89`) or `en`
    /// (`1,234,567.89`).
    pub locale: ConsoleLocale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleLocale {
    Ru,
    En,
}
