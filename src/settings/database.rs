//! `[database]`: where the daemon connects.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May carry a password, hence secret.
    pub url: SecretString,
    pub max_connections: u32,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// No statement runs longer (a stuck connection or lock never hangs a sweep forever).
    #[serde(deserialize_with = "duration")]
    pub statement_timeout: Duration,
    /// No statement waits longer for a row or table lock.
    #[serde(deserialize_with = "duration")]
    pub lock_timeout: Duration,
}

impl DatabaseSettings {
    pub fn connect_options(&self) -> Result<PgConnectOptions, SettingsError> {
        let url = self.url.expose_secret();
        let postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.starts_with(scheme));
        // sqlx's message may quote the URL, password included: say it in our words.
        postgres
            .then(|| PgConnectOptions::from_str(url).ok())
            .flatten()
            .map(|options| without_tls_on_loopback(url, options))
            .ok_or_else(|| {
                invalid(
                    "database.url",
                    "not a PostgreSQL URL; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                )
            })
    }

    /// Host, port and database, for messages (never the password).
    pub fn describe(&self) -> String {
        match self.connect_options() {
            Ok(options) => format!(
                "{}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or("(default database)")
            ),
            Err(_) => "(invalid database.url)".into(),
        }
    }
}

/// On a loopback host, and unless the URL (or `PGSSLMODE`) asks for an `sslmode`, no TLS is
/// negotiated: there it protects nothing, and sqlx 0.9.0 leaves Nagle's algorithm on, so a
/// statement larger than one TLS record (16 KiB: a batch of verdicts) waits 40 ms for a
/// delayed ACK (sqlx issue #4335). Anywhere else the server's and the URL's choice stands.
pub fn without_tls_on_loopback(url: &str, options: PgConnectOptions) -> PgConnectOptions {
    let asked = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.starts_with("sslmode=") || pair.starts_with("ssl-mode="))
    }) || std::env::var_os("PGSSLMODE").is_some();
    let host = options.get_host().trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback && !asked {
        options.ssl_mode(sqlx::postgres::PgSslMode::Disable)
    } else {
        options
    }
}
