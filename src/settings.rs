//! The typed settings tree, loaded in layers by the `config` crate:
//!
//! 1. built-in defaults ([`DEFAULTS`]),
//! 2. a TOML file: `--config FILE`, else `/etc/freedompay-recon/config.toml` when it exists,
//! 3. `DATABASE_URL`, for `database.url`,
//! 4. environment variables `FREEDOMPAY_RECON__SECTION__KEY` (e.g. `FREEDOMPAY_RECON__PROVIDER__SECRET`).
//!
//! Credentials are `SecretString`s: a `Debug` print or an error never shows them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use chrono::FixedOffset;
use config::{Config, Environment, File, FileFormat};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Deserializer};
use sqlx::postgres::PgConnectOptions;

use crate::domain::{AutoClose, Policy, Sweeps};

/// Where the daemon looks for its config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/freedompay-recon/config.toml";

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "FREEDOMPAY_RECON";

/// Every default, in the same format a config file uses. `config.example.toml` documents them.
pub const DEFAULTS: &str = r#"
[database]
url = "postgres://postgres@127.0.0.1:5432/freedompay_recon"
max_connections = 10
connect_timeout = "5s"
statement_timeout = "5m"
lock_timeout = "30s"

[provider]
base_url = "https://api.freedompay.kz"
auth_id = ""
secret = ""
params = "query"
timeout = "10s"
connect_timeout = "5s"
max_body_bytes = 1048576
naive_utc_offset = "+05:00"
default_retry_after = "5s"
max_retry_after = "5m"

[poll]
schedule = "*/10 * * * * *"
rate_per_second = 20
burst = 1
concurrency = 16
first_poll_after = "2m"
recheck = ["1m", "2m", "4m", "10m", "24h"]
first_poll_after_with_callbacks = "10m"
recheck_with_callbacks = ["1h", "24h"]
lease = "5m"
batch_size = 500
writers = 1
confirm_after = "30m"
lifetime_grace = "15m"
not_found_grace = "10m"
max_age = "7days"
last_look_after = "2h"
retry_min = "5s"
retry_max = "5m"
drain_timeout = "20s"

[reconcile]
amount_tolerance = "0"

[flags]
auto_close = ["expired_unpaid"]

[http]
listen = ""
unready_after = "1m"
header_timeout = "10s"
body_timeout = "10s"
body_min_rate = 500
max_connections = 128

[callbacks]
listen = ""
path = "/freedompay/result"
secret = ""
allow_short_secret = false
script_name = ""
merchant_fields = []
max_untracked_per_hour = 100

[webhook]
url = ""
secret = ""
format = "standard"
timeout = "10s"
max_age = "3days"
types = ["status_changed", "flag_opened", "flag_resolved"]

[events]
retention = "30days"

[log]
format = "text"
filter = "info,sqlx::postgres::notice=warn,sqlx::query=error,tokio_cron_scheduler=warn"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub provider: ProviderSettings,
    pub poll: PollSettings,
    pub reconcile: ReconcileSettings,
    pub flags: FlagSettings,
    pub http: HttpSettings,
    pub callbacks: CallbackSettings,
    pub webhook: WebhookSettings,
    pub events: EventSettings,
    pub log: LogSettings,
}

/// The provider's Result-URL callbacks (`docs/operations.md`, "Result-URL callbacks"). An
/// empty `listen` turns them off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSettings {
    /// Where `run` accepts callbacks; separate from `http.listen`.
    #[serde(deserialize_with = "optional_address")]
    pub listen: Option<std::net::SocketAddr>,
    /// The path callbacks are sent to.
    pub path: String,
    /// The merchant's secret key (its payment password, not the Partner API secret):
    /// `pg_sig` is made with it. Never logged. At least [`CALLBACK_SECRET_MIN_CHARS`]
    /// characters unless `allow_short_secret`.
    pub secret: SecretString,
    /// Accept a `secret` shorter than [`CALLBACK_SECRET_MIN_CHARS`]: for a key the provider
    /// issued that short, which the merchant cannot lengthen on its own.
    pub allow_short_secret: bool,
    /// The script name `pg_sig` is made for; empty: the last segment of `path`. Set it to the
    /// original Result URL's when the merchant's own handler forwards requests here.
    pub script_name: String,
    /// The merchant's own fields the provider echoes in a callback (passed when the payment
    /// was created), accepted besides the documented `pg_*` ones
    /// (`crate::callbacks::DOCUMENTED_FIELDS`); a callback with any other field is refused.
    #[serde(deserialize_with = "strings")]
    pub merchant_fields: Vec<String>,
    /// How many payments callbacks may start tracking in an hour (`untracked_payment`); past
    /// it, a callback for a payment nobody tracks is answered 503 and changes nothing.
    pub max_untracked_per_hour: u32,
}

impl CallbackSettings {
    /// The script name signatures are made for.
    pub fn script_name(&self) -> &str {
        match self.script_name.trim() {
            "" => default_script_name(&self.path),
            name => name,
        }
    }

    fn validate(&self, http_listen: Option<std::net::SocketAddr>) -> Result<(), SettingsError> {
        let Some(listen) = self.listen else {
            return Ok(());
        };
        if Some(listen) == http_listen {
            return Err(invalid(
                "callbacks.listen",
                "must differ from http.listen: the callback endpoint may face the provider, \
                 /metrics must not",
            ));
        }
        let path_ok = self.path.starts_with('/')
            && self.path.len() > 1
            && self.path.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
            });
        if !path_ok {
            return Err(invalid(
                "callbacks.path",
                format!(
                    "{} is not a path like /freedompay/result (letters, digits, / - _ . ~)",
                    crate::text::excerpt(&self.path)
                ),
            ));
        }
        if self.script_name().is_empty() || self.script_name().contains(';') {
            return Err(invalid(
                "callbacks.script_name",
                "must name the script the provider signs for, e.g. result (no ;)",
            ));
        }
        if self.secret.expose_secret().trim().is_empty() {
            return Err(invalid(
                "callbacks.secret",
                "must be set when callbacks.listen is: the merchant's secret key for the Result \
                 URL (set FREEDOMPAY_RECON__CALLBACKS__SECRET; systemd: in the EnvironmentFile)",
            ));
        }
        // `pg_sig` is an unsalted MD5 over fields the callback itself carries: one captured
        // callback lets anyone try keys offline at billions a second, so a short key is
        // found in minutes and then every forged callback verifies. Spaces at either end
        // count for nothing, as for webhook.secret.
        if self.secret.expose_secret().trim().chars().count() < CALLBACK_SECRET_MIN_CHARS
            && !self.allow_short_secret
        {
            return Err(invalid(
                "callbacks.secret",
                format!(
                    "is shorter than {CALLBACK_SECRET_MIN_CHARS} characters (spaces at either end \
                     not counted): an MD5 signature over a key that short is brute-forced \
                     offline from one captured callback; use a key of {CALLBACK_SECRET_MIN_CHARS} \
                     or more characters (ask the provider for one), or, for a shorter key the \
                     provider issued, set callbacks.allow_short_secret = true"
                ),
            ));
        }
        Ok(())
    }
}

/// The fewest characters `callbacks.secret` may have without `callbacks.allow_short_secret`:
/// as `webhook.secret` under the `github` format.
pub const CALLBACK_SECRET_MIN_CHARS: usize = 16;

/// The outbox's retention (`docs/operations.md`, "Partitions and event retention").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Whole monthly partitions of `recon.events` whose month ended longer ago than this are
    /// dropped by the daemon's maintenance: with a webhook configured, only once every event
    /// in them was delivered, skipped or abandoned; without one, whatever their state.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
}

/// The event types of `recon.events`, in the order a payment's life produces them.
pub const EVENT_TYPES: [&str; 4] = [
    "status_changed",
    "flag_opened",
    "flag_resolved",
    "adjustment_booked",
];

/// Where events are POSTed (`docs/operations.md`, "Webhooks"). An empty URL turns delivery off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// A secret too: a receiver's URL may carry a token (kept out of `Debug` and logs).
    pub url: SecretString,
    /// The signing key; never logged. Under `standard`, `whsec_` and the base64 of the key.
    pub secret: SecretString,
    /// How each delivery is signed: `standard` or `github`.
    pub format: WebhookFormat,
    /// One delivery attempt, connection to last byte.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// An event still failing this long after its first delivery attempt is abandoned.
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    /// Which event types to send; the others stay in `recon.events`, unsent.
    #[serde(deserialize_with = "strings")]
    pub types: Vec<String>,
}

/// How a webhook delivery is signed (`webhook.format`).
///
/// `standard` is the default for new configurations. A deployment upgraded from a version
/// that had no `webhook.format` and signed the GitHub way does not switch silently: its
/// plain secret is no `whsec_` secret, so the loader refuses it and says both ways on
/// (keep the old shape with `format = "github"`, or give the receiver a new `whsec_`
/// secret). Nothing is sent in a shape the receiver was not told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// [Standard Webhooks](https://www.standardwebhooks.com/): `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
    /// "{id}.{timestamp}.{body}">`. The id and time are signed with the body, so a receiver
    /// that refuses old timestamps and ids it has seen cannot be replayed to.
    Standard,
    /// GitHub's shape: `X-Recon-Event-Id` and `X-Recon-Signature: sha256=<hex HMAC-SHA256 of
    /// the body>`. It signs the body alone: a captured delivery verifies forever.
    Github,
}

impl WebhookFormat {
    /// What `webhook.format` may be, as written.
    const NAMES: [&str; 2] = ["standard", "github"];
}

/// A `webhook.format` it does not take is named with the ones it does, in the loader's own
/// words: the `config` crate's message for an unknown enum value names neither.
fn check_webhook_format(config: &Config) -> Result<(), SettingsError> {
    match config.get_string("webhook.format") {
        Ok(format) if !WebhookFormat::NAMES.contains(&format.as_str()) => Err(invalid(
            "webhook.format",
            format!(
                "{} is not a format; use \"standard\" (Standard Webhooks) or \"github\" \
                 (X-Recon-Signature, as before this setting)",
                crate::text::excerpt(&format)
            ),
        )),
        _ => Ok(()),
    }
}

/// How `webhook.secret` is made for `format = "standard"`, for messages.
const WHSEC_HOW: &str = "generate one with: echo \"whsec_$(openssl rand -base64 32)\"";
/// The fewest key bytes a `whsec_` secret may hold (Standard Webhooks recommends 24 to 64).
const WHSEC_MIN_BYTES: usize = 16;

impl WebhookSettings {
    pub fn enabled(&self) -> bool {
        !self.url.expose_secret().trim().is_empty()
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if let Some(unknown) = self
            .types
            .iter()
            .find(|t| !EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(invalid(
                "webhook.types",
                format!(
                    "{unknown:?} is not an event type; use any of {}",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        let url = reqwest::Url::parse(self.url.expose_secret().trim()).map_err(|e| {
            invalid(
                "webhook.url",
                format!("is not a URL ({e}); e.g. https://erp.example/hooks/recon"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("webhook.url", "must be an http(s) URL"));
        }
        self.signing_key()?;
        if self.types.is_empty() {
            return Err(invalid("webhook.types", "name at least one event type"));
        }
        Ok(())
    }

    /// The HMAC key `webhook.secret` gives under `webhook.format`: under `standard` the bytes
    /// the base64 after `whsec_` stands for, under `github` the secret's own bytes (as they
    /// always were). Checked at load; the deliverer keys its signatures with it. No message
    /// quotes the secret, or any part of it.
    pub fn signing_key(&self) -> Result<SecretSlice<u8>, SettingsError> {
        let secret = self.secret.expose_secret();
        match self.format {
            WebhookFormat::Github => {
                // Whitespace is no key: 16 spaces would sign with something anyone can guess.
                if secret.trim().chars().count() < 16 {
                    return Err(invalid(
                        "webhook.secret",
                        "must be set, at least 16 characters other than spaces at either end, \
                         when webhook.url is (set FREEDOMPAY_RECON__WEBHOOK__SECRET; systemd: in \
                         the EnvironmentFile)",
                    ));
                }
                Ok(SecretSlice::from(secret.as_bytes().to_vec()))
            }
            WebhookFormat::Standard => standard_key(secret.trim()),
        }
    }
}

/// The key of a Standard Webhooks secret: `whsec_` and the base64 (standard alphabet, padded)
/// of at least [`WHSEC_MIN_BYTES`] bytes.
fn standard_key(secret: &str) -> Result<SecretSlice<u8>, SettingsError> {
    if secret.is_empty() {
        return Err(invalid(
            "webhook.secret",
            format!(
                "must be set when webhook.url is: a Standard Webhooks secret, whsec_ and the \
                 base64 of 24 or more random bytes ({WHSEC_HOW}; set \
                 FREEDOMPAY_RECON__WEBHOOK__SECRET; systemd: in the EnvironmentFile)"
            ),
        ));
    }
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return Err(invalid(
            "webhook.secret",
            format!(
                "is not a Standard Webhooks secret (whsec_ and base64), which webhook.format = \
                 \"standard\" (the default) signs with; to keep the earlier deliveries \
                 (X-Recon-Signature) set webhook.format = \"github\", or {WHSEC_HOW} and give \
                 it to the receiver"
            ),
        ));
    };
    // The decoder's own message names the offending character: not repeated here.
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            invalid(
                "webhook.secret",
                format!(
                    "the part after whsec_ is not base64 (standard alphabet, padded with =); \
                     {WHSEC_HOW}"
                ),
            )
        })?;
    if key.len() < WHSEC_MIN_BYTES {
        return Err(invalid(
            "webhook.secret",
            format!(
                "holds {} key bytes; at least {WHSEC_MIN_BYTES} are needed, 24 or more \
                 recommended; {WHSEC_HOW}",
                key.len()
            ),
        ));
    }
    Ok(SecretSlice::from(key))
}

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

/// An empty string is "none".
fn optional_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let raw = String::deserialize(deserializer)?;
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{raw:?} is not an address like 127.0.0.1:9187 (empty turns the listener off)"
        ))
    })
}

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

/// What the protected header's `params` carries for a GET. Undocumented by the provider,
/// hence a setting; see INVOICE_INFO.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamsMode {
    /// The exact query string sent, without `?`, so the signature covers the payment id.
    #[default]
    Query,
    /// An empty string.
    Empty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub base_url: String,
    /// The partner id; text, because ids may have leading zeros.
    pub auth_id: String,
    pub secret: SecretString,
    /// What the JWS `params` field carries for a GET: `query` or `empty`.
    pub params: ParamsMode,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// A larger body is unreadable (and retried), never buffered whole.
    pub max_body_bytes: usize,
    /// The zone of provider timestamps sent without one (`+05:00`: Asia/Almaty).
    pub naive_utc_offset: String,
    /// The pause after a 429 that carries no `Retry-After`.
    #[serde(deserialize_with = "duration")]
    pub default_retry_after: Duration,
    /// The longest pause a `Retry-After` may impose.
    #[serde(deserialize_with = "duration")]
    pub max_retry_after: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSettings {
    /// Cron with seconds, in UTC.
    pub schedule: String,
    /// Requests per second to the provider from the whole deployment (shared through
    /// PostgreSQL by every instance); 0 means unlimited.
    pub rate_per_second: u32,
    /// Requests allowed back to back above the steady rate.
    pub burst: u32,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long after `created_at` a payment is first polled (the provider may not know a
    /// new payment for up to about a minute).
    #[serde(deserialize_with = "duration")]
    pub first_poll_after: Duration,
    /// Delays between checks of a non-terminal payment: the n-th answer is followed by the
    /// n-th, the last repeating.
    #[serde(deserialize_with = "durations")]
    pub recheck: Vec<Duration>,
    /// `first_poll_after` and `recheck` for a daemon that hears the provider's callbacks
    /// (`callbacks.listen` set): a callback makes its payment due at once, so polling is
    /// only the safety net for the callbacks that never arrive, and can start later and be
    /// sparser ([`Settings::policy`]).
    #[serde(deserialize_with = "duration")]
    pub first_poll_after_with_callbacks: Duration,
    #[serde(deserialize_with = "durations")]
    pub recheck_with_callbacks: Vec<Duration>,
    /// How long a claim is held before another sweep or instance may take it over.
    #[serde(deserialize_with = "duration")]
    pub lease: Duration,
    /// Payments claimed per claim query.
    pub batch_size: u32,
    /// Write transactions a sweep runs at once (1–8).
    pub writers: u32,
    #[serde(deserialize_with = "duration")]
    pub confirm_after: Duration,
    #[serde(deserialize_with = "duration")]
    pub lifetime_grace: Duration,
    #[serde(deserialize_with = "duration")]
    pub not_found_grace: Duration,
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    /// A payment still unsettled at its deadline check is polled until its deadline plus
    /// this, looked at once more then, and no more: the provider retries its Result-URL
    /// callback for 2 hours after a payment's lifetime (docs/provider/RESULT_URL.md).
    #[serde(deserialize_with = "duration")]
    pub last_look_after: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
    /// On SIGTERM, how long in-flight polls may take before their leases are released.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSettings {
    /// Write it as a string ("0.01") so it stays exact.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount_tolerance: Decimal,
}

/// What happens to flags nobody can act on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSettings {
    /// Rules that close a flag in the transaction that opens it: `expired_unpaid` closes a
    /// `lifetime_exceeded` flag when no money moved. `[]` keeps every flag open for a person.
    #[serde(deserialize_with = "strings")]
    pub auto_close: Vec<String>,
}

impl FlagSettings {
    /// The rules, parsed; an unknown name is a configuration error.
    pub fn rules(&self) -> Result<Vec<AutoClose>, SettingsError> {
        self.auto_close
            .iter()
            .map(|name| name.parse().map_err(|e| invalid("flags.auto_close", e)))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter; `RUST_LOG` overrides it.
    pub filter: String,
}

/// A setting that cannot be used, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

fn invalid(key: &str, problem: impl std::fmt::Display) -> SettingsError {
    SettingsError::Invalid(format!("{key}: {problem}"))
}

/// A config line for an error message, its value left out (it may be a secret): ` (`key =
/// …`)` or ` (`[table]`)`; nothing for any other line.
fn quoted_without_value(line: &str) -> String {
    let line = line.trim();
    let shown = match line.split_once('=') {
        Some((key, _)) => format!("{} = …", key.trim()),
        None if line.starts_with('[') && line.ends_with(']') => line.to_owned(),
        None => return String::new(),
    };
    format!(" (`{}`)", crate::text::clean(&shown, 80))
}

/// A configuration error as the setting it is about (`poll.lease`), when it says, and the
/// problem; the `config` crate's own wording puts the key last (`… for key \`poll.lease\``).
fn split_config_error(e: &config::ConfigError) -> (Option<String>, String) {
    use config::ConfigError;
    match e {
        ConfigError::At {
            error,
            key: Some(key),
            ..
        } => (Some(key.clone()), error.to_string()),
        ConfigError::Type {
            unexpected,
            expected,
            key: Some(key),
            ..
        } => (
            Some(key.clone()),
            format!("invalid type: {unexpected}, expected {expected}"),
        ),
        other => (None, other.to_string()),
    }
}

/// The variable among `variables` that sets `key` (`poll.lease`, or `poll.recheck[1]`), as
/// the environment source matches them: ignoring case.
fn variable_for<'a>(variables: &'a [String], key: &str) -> Option<&'a str> {
    let key = key.split('[').next().unwrap_or(key);
    let wanted = format!("{ENV_PREFIX}__{}", key.replace('.', "__"));
    variables
        .iter()
        .find(|name| name.eq_ignore_ascii_case(&wanted))
        .map(String::as_str)
}

/// Every variable `FREEDOMPAY_RECON__…` that sets something (not empty) must name a setting,
/// `FREEDOMPAY_RECON__SECTION__KEY`: the `config` crate would report a misspelt one as an
/// unknown field, of the config file when there is one, never naming the variable.
fn check_variable_names(env: &HashMap<String, String>) -> Result<(), SettingsError> {
    let defaults: toml::Table = DEFAULTS.parse().expect("the defaults are TOML");
    let settings: Vec<String> = defaults
        .iter()
        .filter_map(|(section, keys)| Some((section, keys.as_table()?)))
        .flat_map(|(section, keys)| {
            keys.keys()
                .map(move |key| format!("{ENV_PREFIX}__{section}__{key}").to_ascii_uppercase())
        })
        .collect();
    let prefix = format!("{ENV_PREFIX}__");
    let mut unknown: Vec<&String> = env
        .iter()
        .filter(|(name, value)| {
            !value.is_empty()
                && name
                    .get(..prefix.len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(&prefix))
                && !settings
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(name))
        })
        .map(|(name, _)| name)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    let named: Vec<String> = unknown
        .iter()
        .map(|name| {
            let upper = name.to_ascii_uppercase();
            let closest = settings
                .iter()
                .map(|known| (edit_distance(&upper, known), known))
                .min()
                .filter(|(distance, _)| *distance <= 3);
            let name = crate::text::clean(name, 80);
            match closest {
                Some((_, known)) => format!("{name} (did you mean {known}?)"),
                None => name,
            }
        })
        .collect();
    Err(SettingsError::Invalid(format!(
        "environment variable{} {}: not a setting; fix the name or unset it (each setting is \
         {prefix}SECTION__KEY, e.g. {prefix}POLL__SCHEDULE for poll.schedule; every one is in \
         docs/configuration.md)",
        if named.len() == 1 { "" } else { "s" },
        named.join(", ")
    )))
}

/// Levenshtein distance, for suggesting the setting a misspelt variable meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The text of the config file at `path`: `given` with `--config` (or
/// `FREEDOMPAY_RECON_CONFIG`), else the default path. Only the default path may be missing,
/// and only "not found" means missing (`None`): a file that is there but cannot be read (no
/// permission on it or on its directory, a directory, not UTF-8) is an error naming the path
/// and the reason. Skipping it would run the daemon on defaults without a word, a wrong
/// database and schedule included, which is how a service user that could not enter
/// `/etc/freedompay-recon` ran before.
fn read_config_file(path: &Path, given: bool) -> Result<Option<String>, SettingsError> {
    use std::io::ErrorKind;
    let error = |reason: String| SettingsError::File {
        path: path.to_owned(),
        reason,
    };
    let how = if given {
        "pass a readable TOML file to --config"
    } else {
        "the default config file is read whenever it exists: fix it, or name another with \
         --config"
    };
    let e = match std::fs::read(path) {
        Ok(bytes) => {
            return String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| error(format!("not UTF-8 text; save it as UTF-8 TOML ({how})")));
        }
        Err(e) => e,
    };
    Err(error(match e.kind() {
        ErrorKind::NotFound if !given => return Ok(None),
        ErrorKind::NotFound => format!("no such file; {how}"),
        ErrorKind::PermissionDenied => format!(
            "permission denied: this process{} cannot read the file or cannot enter its \
             directory; make both readable by that user (the file holds no secrets: those go \
             in the environment), or under systemd load it with LoadCredential= as the \
             shipped unit does; {how}",
            process_uid().map_or_else(String::new, |uid| format!(" (uid {uid})"))
        ),
        ErrorKind::IsADirectory => format!("is a directory, not a file; {how}"),
        _ => format!("cannot read it: {e}; {how}"),
    }))
}

/// The user id this process runs as, for messages: the owner of `/proc/self` (no `unsafe`
/// call to `geteuid` needed).
fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// `["30s", "1m"]` in a file; `30s,1m` in an environment variable.
/// A list, or a comma-separated string (as environment variables give it).
fn strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Form::deserialize(deserializer)? {
        Form::List(items) => items,
        Form::Csv(csv) => csv
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}

/// How a duration is written, for messages: `humantime_serde`'s own ("expected a duration")
/// shows no form that would do.
const DURATION_EXAMPLES: &str = "write a number and a unit, e.g. \"30s\", \"5m\" or \"1h 30m\"";

/// `raw` as a duration in humantime's forms, or a message quoting it with examples.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw.trim()).map_err(|e| {
        format!(
            "{} is not a duration ({e}); {DURATION_EXAMPLES}",
            crate::text::excerpt(raw)
        )
    })
}

/// A duration setting: a string in humantime's forms (`"30s"`, `"1h 30m"`). A bare number is
/// refused with the forms shown: seconds or minutes, nobody could tell.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a duration such as \"30s\"")
        }
        fn visit_str<E: serde::de::Error>(self, raw: &str) -> Result<Duration, E> {
            parse_duration(raw).map_err(E::custom)
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "{n} has no unit; {DURATION_EXAMPLES}, as a string"
            )))
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "{n} has no unit; {DURATION_EXAMPLES}, as a string"
            )))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "{n} has no unit; {DURATION_EXAMPLES}, as a string"
            )))
        }
    }
    deserializer.deserialize_any(Visitor)
}

fn durations<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Csv(String),
    }
    let items = match Form::deserialize(deserializer)? {
        Form::List(items) => items,
        Form::Csv(csv) => csv.split(',').map(|s| s.trim().to_owned()).collect(),
    };
    items
        .iter()
        .map(|item| parse_duration(item).map_err(serde::de::Error::custom))
        .collect()
}

impl Settings {
    /// Loads settings from the layers above, reading the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(config_file, std::env::vars().collect())
    }

    /// As [`Settings::load`], with the environment given (tests pass their own).
    pub fn load_from(
        config_file: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        Self::load_with_default(config_file, Path::new(DEFAULT_CONFIG_PATH), env)
    }

    /// As [`Settings::load_from`], with `default_file` read when no file is given.
    fn load_with_default(
        config_file: Option<&Path>,
        default_file: &Path,
        env: HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));

        let (path, given) = match config_file {
            Some(path) => (path, true),
            None => (default_file, false),
        };
        let text = read_config_file(path, given)?;
        let file = text.as_ref().map(|_| path.to_owned());
        if let Some(text) = &text {
            let path = path.to_owned();
            // Report bad TOML ourselves: the parser's own message quotes the offending line,
            // which may hold a password or the partner secret.
            if let Err(e) = text.parse::<toml::Table>() {
                let at = e.span().map_or(0, |span| span.start);
                let line = text[..at.min(text.len())].matches('\n').count() + 1;
                return Err(SettingsError::File {
                    path,
                    reason: format!(
                        "not valid TOML at line {line}{}: {}",
                        quoted_without_value(text.lines().nth(line - 1).unwrap_or_default()),
                        e.message().trim_end()
                    ),
                });
            }
            builder = builder.add_source(File::from_str(text, FileFormat::Toml));
        }

        check_variable_names(&env)?;
        // The variables the environment source reads (it skips empty ones), to say which one
        // a bad value came from.
        let variables: Vec<String> = env
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, _)| name.clone())
            .collect();

        // An empty variable sets nothing: `DATABASE_URL=` must not wipe a configured URL.
        let prefixed_url = format!("{ENV_PREFIX}__DATABASE__URL");
        if let Some(url) = env
            .get("DATABASE_URL")
            .filter(|url| !url.trim().is_empty())
            .filter(|_| env.get(&prefixed_url).is_none_or(|v| v.trim().is_empty()))
        {
            builder = builder
                .set_override("database.url", url.as_str())
                .expect("a static key");
        }
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .ignore_empty(true)
                .source(Some(env.into_iter().collect())),
        );

        // A value that does not fit is named by its setting, and by where it came from: a
        // variable overrides the file, so when one sets the key, the value is the variable's.
        let unreadable = |e: config::ConfigError| {
            let (key, problem) = split_config_error(&e);
            let variable = key.as_deref().and_then(|key| variable_for(&variables, key));
            let problem = match &key {
                Some(key) => format!("{key}: {problem}"),
                None => problem,
            };
            match (variable, &file) {
                (Some(variable), _) => {
                    SettingsError::Invalid(format!("environment variable {variable}: {problem}"))
                }
                (None, Some(path)) => SettingsError::File {
                    path: path.clone(),
                    reason: problem,
                },
                (None, None) => SettingsError::Invalid(problem),
            }
        };
        let config = builder.build().map_err(unreadable)?;
        check_webhook_format(&config)?;
        let settings: Settings = config.try_deserialize().map_err(unreadable)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        self.database.connect_options()?;
        self.check_credentials_set()?;
        self.check_bounds()?;
        self.provider.naive_offset()?;
        let poll = &self.poll;
        self.webhook.validate()?;
        self.callbacks.validate(self.http.listen)?;
        check_schedule(&poll.schedule, chrono::Utc::now())?;
        for (key, ladder) in [
            ("poll.recheck", &poll.recheck),
            ("poll.recheck_with_callbacks", &poll.recheck_with_callbacks),
        ] {
            if ladder.is_empty() {
                return Err(invalid(
                    key,
                    "give at least one non-zero duration, e.g. [\"30s\", \"5m\"]",
                ));
            }
        }
        if poll.lease <= self.provider.timeout + poll.drain_timeout {
            return Err(invalid(
                "poll.lease",
                format!(
                    "{} must be longer than provider.timeout plus poll.drain_timeout ({}), \
                     or a slow poll could lose its claim",
                    humantime::format_duration(poll.lease),
                    humantime::format_duration(self.provider.timeout + poll.drain_timeout)
                ),
            ));
        }
        if poll.retry_min > poll.retry_max {
            return Err(invalid("poll.retry_min", "must be at most poll.retry_max"));
        }
        self.flags.rules()?;
        if self.reconcile.amount_tolerance.is_sign_negative() {
            return Err(invalid(
                "reconcile.amount_tolerance",
                "must not be negative",
            ));
        }
        Ok(())
    }

    /// A webhook or callbacks configured without their secret: `run`'s features, and `run`
    /// needs the partner credentials too, so every one of them not set is named at once
    /// rather than one per attempt. A single one missing gets its own, fuller message from
    /// its section's check.
    fn check_credentials_set(&self) -> Result<(), SettingsError> {
        let unset = |secret: &SecretString| secret.expose_secret().trim().is_empty();
        let mut missing = Vec::new();
        if self.webhook.enabled() && unset(&self.webhook.secret) {
            missing.push("webhook.secret");
        }
        if self.callbacks.listen.is_some() && unset(&self.callbacks.secret) {
            missing.push("callbacks.secret");
        }
        if missing.is_empty() {
            return Ok(());
        }
        missing.splice(0..0, self.provider.missing_credentials());
        if missing.len() == 1 {
            return Ok(());
        }
        Err(SettingsError::Invalid(credentials_not_set(&missing)))
    }

    /// Every count and duration within what the daemon can work with, checked first, so no
    /// setting can panic it (a pool of zero connections), make every attempt fail (a zero
    /// timeout) or overflow later arithmetic (a lease compared with a timeout plus a drain).
    /// The bounds are wide: they refuse mistakes, not tuning. docs/configuration.md lists them.
    fn check_bounds(&self) -> Result<(), SettingsError> {
        const MS: Duration = Duration::from_millis(1);
        const SECOND: Duration = Duration::from_secs(1);
        const MINUTE: Duration = Duration::from_secs(60);
        const DAY: Duration = Duration::from_secs(86_400);
        const NONE: Duration = Duration::ZERO;
        let (database, provider, poll) = (&self.database, &self.provider, &self.poll);
        let durations = [
            (
                "database.connect_timeout",
                database.connect_timeout,
                MS,
                10 * MINUTE,
            ),
            (
                "database.statement_timeout",
                database.statement_timeout,
                MS,
                DAY,
            ),
            ("database.lock_timeout", database.lock_timeout, MS, DAY),
            ("provider.timeout", provider.timeout, MS, 10 * MINUTE),
            (
                "provider.connect_timeout",
                provider.connect_timeout,
                MS,
                10 * MINUTE,
            ),
            (
                "provider.default_retry_after",
                provider.default_retry_after,
                SECOND,
                DAY,
            ),
            (
                "provider.max_retry_after",
                provider.max_retry_after,
                SECOND,
                DAY,
            ),
            (
                "poll.first_poll_after",
                poll.first_poll_after,
                NONE,
                365 * DAY,
            ),
            (
                "poll.first_poll_after_with_callbacks",
                poll.first_poll_after_with_callbacks,
                NONE,
                365 * DAY,
            ),
            ("poll.lease", poll.lease, SECOND, DAY),
            ("poll.confirm_after", poll.confirm_after, NONE, 365 * DAY),
            ("poll.lifetime_grace", poll.lifetime_grace, NONE, 365 * DAY),
            (
                "poll.not_found_grace",
                poll.not_found_grace,
                NONE,
                365 * DAY,
            ),
            ("poll.max_age", poll.max_age, SECOND, 3650 * DAY),
            (
                "poll.last_look_after",
                poll.last_look_after,
                NONE,
                365 * DAY,
            ),
            ("poll.retry_min", poll.retry_min, MS, DAY),
            ("poll.retry_max", poll.retry_max, MS, DAY),
            ("poll.drain_timeout", poll.drain_timeout, NONE, 60 * MINUTE),
            ("http.unready_after", self.http.unready_after, NONE, DAY),
            ("events.retention", self.events.retention, DAY, 3650 * DAY),
            (
                "http.header_timeout",
                self.http.header_timeout,
                SECOND,
                5 * MINUTE,
            ),
            (
                "http.body_timeout",
                self.http.body_timeout,
                SECOND,
                5 * MINUTE,
            ),
            ("webhook.timeout", self.webhook.timeout, MS, 10 * MINUTE),
            ("webhook.max_age", self.webhook.max_age, SECOND, 365 * DAY),
        ]
        .into_iter()
        .chain(
            poll.recheck
                .iter()
                .map(|&step| ("poll.recheck", step, SECOND, 365 * DAY)),
        )
        .chain(
            poll.recheck_with_callbacks
                .iter()
                .map(|&step| ("poll.recheck_with_callbacks", step, SECOND, 365 * DAY)),
        );
        for (key, value, min, max) in durations {
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    key,
                    format!(
                        "must be between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                ));
            }
        }
        let counts: [(&str, u64, u64, u64); 10] = [
            (
                "database.max_connections",
                database.max_connections.into(),
                1,
                1000,
            ),
            (
                "provider.max_body_bytes",
                provider.max_body_bytes as u64,
                1024,
                256 << 20,
            ),
            (
                "poll.rate_per_second",
                poll.rate_per_second.into(),
                0,
                100_000,
            ),
            ("poll.burst", poll.burst.into(), 1, 100_000),
            ("poll.concurrency", poll.concurrency as u64, 1, 4096),
            ("poll.batch_size", poll.batch_size.into(), 1, 100_000),
            ("poll.writers", poll.writers.into(), 1, 8),
            (
                "http.max_connections",
                self.http.max_connections as u64,
                1,
                4096,
            ),
            // Up to 1 GiB/s: far beyond any client, short of refusing every body.
            ("http.body_min_rate", self.http.body_min_rate, 0, 1 << 30),
            // 0: a callback never starts tracking a payment.
            (
                "callbacks.max_untracked_per_hour",
                self.callbacks.max_untracked_per_hour.into(),
                0,
                1_000_000,
            ),
        ];
        for (key, value, min, max) in counts {
            if !(min..=max).contains(&value) {
                return Err(invalid(key, format!("must be between {min} and {max}")));
            }
        }
        // Names as a form sends them, checked at load: a typo here would refuse every
        // callback carrying the field, and the list is read for every callback.
        let fields = &self.callbacks.merchant_fields;
        if fields.len() > 100 {
            return Err(invalid(
                "callbacks.merchant_fields",
                "name at most 100 fields",
            ));
        }
        if let Some(bad) = fields.iter().find(|name| {
            name.is_empty()
                || name.len() > 64
                || !name.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']')
                })
        }) {
            return Err(invalid(
                "callbacks.merchant_fields",
                format!(
                    "{} is not a field name (1 to 64 of the letters, digits and _ - . [ ])",
                    crate::text::excerpt(bad)
                ),
            ));
        }
        Ok(())
    }

    /// The rules' settings, for the pure core. A daemon that hears callbacks
    /// (`callbacks.listen` set) polls first after `poll.first_poll_after_with_callbacks` and
    /// rechecks on `poll.recheck_with_callbacks`; one that does not, after
    /// `poll.first_poll_after` and on `poll.recheck`. Everything else (the deadline checks,
    /// the confirmation) is the same either way.
    pub fn policy(&self) -> Policy {
        self.policy_for(self.callbacks.listen.is_some())
    }

    /// The policy of a daemon that hears callbacks (`callbacks`) or not, whatever
    /// `callbacks.listen` says: `plan --callbacks` plans for one before it is configured.
    pub fn policy_for(&self, callbacks: bool) -> Policy {
        let poll = &self.poll;
        let (first_poll_after, recheck) = if callbacks {
            (
                poll.first_poll_after_with_callbacks,
                &poll.recheck_with_callbacks,
            )
        } else {
            (poll.first_poll_after, &poll.recheck)
        };
        Policy {
            first_poll_after,
            recheck: recheck.clone(),
            confirm_after: poll.confirm_after,
            lifetime_grace: poll.lifetime_grace,
            not_found_grace: poll.not_found_grace,
            max_age: poll.max_age,
            last_look_after: poll.last_look_after,
            amount_tolerance: self.reconcile.amount_tolerance,
            retry_min: poll.retry_min,
            retry_max: poll.retry_max,
            // Checked when the settings were loaded.
            auto_close: self.flags.rules().unwrap_or_default(),
        }
    }
}

impl PollSettings {
    /// When sweeps run: `poll.schedule`, checked when the settings were loaded.
    pub fn sweeps(&self) -> Sweeps {
        Sweeps::parse(&self.schedule).expect("poll.schedule was checked at load")
    }

    /// How long before it is due a sweep takes a routine check: half the shortest gap
    /// between sweeps, at most 30 s ([`Sweeps::claim_ahead`]). The daemon's claim and `plan`
    /// both use this.
    pub fn claim_ahead(&self) -> Duration {
        self.sweeps().claim_ahead(chrono::Utc::now().date_naive())
    }
}

/// `poll.schedule` must be a cron expression with seconds, read as the scheduler reads it,
/// that fires within a year of `now`: `0 0 0 31 2 *` (the 31st of February) parses, and would
/// leave a daemon that never polls.
fn check_schedule(schedule: &str, now: chrono::DateTime<chrono::Utc>) -> Result<(), SettingsError> {
    use croner::parser::{CronParser, Seconds};
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(schedule)
        .map_err(|e| {
            invalid(
                "poll.schedule",
                format!(
                    "{} is not a cron expression with seconds (e.g. \"*/10 * * * * *\"): {e}",
                    crate::text::excerpt(schedule)
                ),
            )
        })?;
    let within_a_year = cron
        .find_next_occurrence(&now, false)
        .is_ok_and(|next| next - now <= chrono::TimeDelta::days(366));
    if within_a_year {
        Ok(())
    } else {
        Err(invalid(
            "poll.schedule",
            format!(
                "{} never fires within a year (a date that does not exist, such as the 31st of \
                 February?); the daemon would never poll",
                crate::text::excerpt(schedule)
            ),
        ))
    }
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

/// The credentials a command may need: the key, the variable that sets it, and what it is.
const CREDENTIALS: [(&str, &str, &str); 4] = [
    (
        "provider.auth_id",
        "FREEDOMPAY_RECON__PROVIDER__AUTH_ID",
        "the partner id; it may also go in the config file",
    ),
    (
        "provider.secret",
        "FREEDOMPAY_RECON__PROVIDER__SECRET",
        "the partner secret",
    ),
    (
        "callbacks.secret",
        "FREEDOMPAY_RECON__CALLBACKS__SECRET",
        "the merchant's secret key for the Result URL, as callbacks.listen is set",
    ),
    (
        "webhook.secret",
        "FREEDOMPAY_RECON__WEBHOOK__SECRET",
        "the webhook signing key, as webhook.url is set; under the standard format \
         whsec_ and base64: echo \"whsec_$(openssl rand -base64 32)\"",
    ),
];

/// One line naming every credential in `missing` (keys of [`CREDENTIALS`]), the variables
/// that set them and where those go under systemd: all at once, so a first run is not a
/// round of one error per credential.
pub fn credentials_not_set(missing: &[&str]) -> String {
    let and = |items: Vec<String>| match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => items.concat(),
    };
    let known = || CREDENTIALS.iter().filter(|(key, ..)| missing.contains(key));
    format!(
        "{} {} not set: set {}; systemd: in the EnvironmentFile",
        and(known().map(|(key, ..)| (*key).to_owned()).collect()),
        if missing.len() == 1 { "is" } else { "are" },
        and(known()
            .map(|(_, variable, what)| format!("{variable} ({what})"))
            .collect()),
    )
}

impl ProviderSettings {
    /// The partner credentials not set, as keys: `run` and `check` need both.
    pub fn missing_credentials(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.auth_id.trim().is_empty() {
            missing.push("provider.auth_id");
        }
        if self.secret.expose_secret().is_empty() {
            missing.push("provider.secret");
        }
        missing
    }

    pub fn naive_offset(&self) -> Result<FixedOffset, SettingsError> {
        self.naive_utc_offset.parse::<FixedOffset>().map_err(|_| {
            invalid(
                "provider.naive_utc_offset",
                format!("{:?} is not an offset like +05:00", self.naive_utc_offset),
            )
        })
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

/// The script name `pg_sig` is made for by default: the last segment of `path`.
pub fn default_script_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn the_default_script_name_is_the_paths_last_segment() {
        assert_eq!(default_script_name("/freedompay/result"), "result");
        assert_eq!(default_script_name("result"), "result");
    }

    #[test]
    fn defaults_alone_are_valid() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.poll.recheck.len(), 5);
        assert_eq!(s.poll.recheck[4], Duration::from_secs(24 * 3600));
        assert_eq!(s.poll.first_poll_after, Duration::from_secs(120));
        assert_eq!(s.poll.lease, Duration::from_secs(300));
        assert_eq!(s.provider.params, ParamsMode::Query);
        assert_eq!(s.reconcile.amount_tolerance, Decimal::ZERO);
        assert_eq!(s.http.listen, None, "no listener unless asked");
    }

    #[test]
    fn auto_close_rules_are_named_and_an_empty_list_keeps_every_flag_open() {
        use crate::domain::AutoClose;
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.policy().auto_close, [AutoClose::ExpiredUnpaid]);
        let f = file("[flags]\nauto_close = []\n");
        let s = Settings::load_from(Some(f.path()), env(&[])).unwrap();
        assert!(s.policy().auto_close.is_empty());
        let f = file("[flags]\nauto_close = [\"expired\"]\n");
        let e = Settings::load_from(Some(f.path()), env(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration: flags.auto_close: unknown rule \"expired\"; the rules are expired_unpaid"
        );
    }

    #[test]
    fn file_then_database_url_then_prefixed_environment() {
        let f = file(
            r#"
            [database]
            url = "postgres://file-host/db"
            [provider]
            auth_id = "007"
            [poll]
            rate_per_second = 50
            recheck = ["10s", "2m"]
            [reconcile]
            amount_tolerance = "0.01"
            "#,
        );
        let s = Settings::load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!(s.database.describe(), "file-host:5432/db");
        assert_eq!(s.provider.auth_id, "007", "leading zeros kept");
        assert_eq!(s.poll.rate_per_second, 50);
        assert_eq!(
            s.poll.recheck,
            [Duration::from_secs(10), Duration::from_secs(120)]
        );
        assert_eq!(s.reconcile.amount_tolerance.to_string(), "0.01");

        let s = Settings::load_from(
            Some(f.path()),
            env(&[
                ("DATABASE_URL", "postgres://env-host/envdb"),
                ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", "7"),
                ("FREEDOMPAY_RECON__POLL__RECHECK", "1s,2s,3s"),
                ("FREEDOMPAY_RECON__PROVIDER__SECRET", "s3cr3t"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.describe(), "env-host:5432/envdb");
        assert_eq!(s.poll.rate_per_second, 7);
        assert_eq!(s.poll.recheck.len(), 3);
        assert_eq!(s.provider.secret.expose_secret(), "s3cr3t");

        let s = Settings::load_from(
            None,
            env(&[
                ("DATABASE_URL", "postgres://env-host/envdb"),
                ("FREEDOMPAY_RECON__DATABASE__URL", "postgres://prefixed/db2"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.describe(), "prefixed:5432/db2");
    }

    #[test]
    fn no_tls_is_negotiated_on_loopback_unless_asked_for() {
        use sqlx::postgres::PgSslMode;
        let mode = |url: &str| {
            let s = Settings::load_from(None, env(&[("DATABASE_URL", url)])).unwrap();
            s.database.connect_options().unwrap().get_ssl_mode()
        };
        assert!(matches!(
            mode("postgres://u@127.0.0.1/d"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@localhost:5433/d"),
            PgSslMode::Disable
        ));
        assert!(matches!(mode("postgres://u@[::1]/d"), PgSslMode::Disable));
        assert!(matches!(
            mode("postgres://u@db.example/d"),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            mode("postgres://u@127.0.0.1/d?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://u@127.0.0.1/d?ssl-mode=verify-full"),
            PgSslMode::VerifyFull
        ));
    }

    #[test]
    fn an_empty_variable_does_not_override_a_configured_value() {
        let f = file("[database]\nurl = \"postgres://file-host/db\"\n");
        for empty in [
            ("DATABASE_URL", ""),
            ("FREEDOMPAY_RECON__DATABASE__URL", ""),
            ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", ""),
        ] {
            let s = Settings::load_from(Some(f.path()), env(&[empty])).unwrap();
            assert_eq!(s.database.describe(), "file-host:5432/db", "{empty:?}");
            assert_eq!(s.poll.rate_per_second, 20, "{empty:?}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Settings::load_from(
            None,
            env(&[
                ("FREEDOMPAY_RECON__PROVIDER__SECRET", "top-secret-value"),
                ("DATABASE_URL", "postgres://u:db-password@h/d"),
                (
                    "FREEDOMPAY_RECON__WEBHOOK__URL",
                    "https://erp.example/hooks?token=webhook-url-token",
                ),
                // whsec_ and the base64 of "webhook-signing-secret-24".
                (
                    "FREEDOMPAY_RECON__WEBHOOK__SECRET",
                    "whsec_d2ViaG9vay1zaWduaW5nLXNlY3JldC0yNA==",
                ),
            ]),
        )
        .unwrap();
        let dump = format!("{s:?} {:?}", s.webhook.signing_key().unwrap());
        assert!(!dump.contains("top-secret-value"), "{dump}");
        assert!(!dump.contains("db-password"), "{dump}");
        assert!(!dump.contains("webhook-url-token"), "{dump}");
        assert!(
            !dump.contains("d2ViaG9vay1zaWduaW5nLXNlY3JldC0yNA"),
            "{dump}"
        );
        assert!(!dump.contains("webhook-signing-secret"), "{dump}");
        // Nor the key's bytes, as Debug would print a byte slice.
        assert!(!dump.contains("119, 101, 98"), "{dump}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            (
                "FREEDOMPAY_RECON__POLL__CONCURRENCY",
                "0",
                "poll.concurrency",
            ),
            ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "many", "concurrency"),
            (
                "FREEDOMPAY_RECON__POLL__RECHECK",
                "soon",
                "\"soon\" is not a duration",
            ),
            ("FREEDOMPAY_RECON__POLL__LEASE", "5s", "poll.lease"),
            ("FREEDOMPAY_RECON__POLL__WRITERS", "0", "poll.writers"),
            ("FREEDOMPAY_RECON__POLL__WRITERS", "9", "poll.writers"),
            (
                "FREEDOMPAY_RECON__PROVIDER__NAIVE_UTC_OFFSET",
                "Almaty",
                "naive_utc_offset",
            ),
            ("FREEDOMPAY_RECON__PROVIDER__PARAMS", "body", "params"),
            (
                "FREEDOMPAY_RECON__RECONCILE__AMOUNT_TOLERANCE",
                "1,5",
                "amount_tolerance",
            ),
            (
                "FREEDOMPAY_RECON__POLL__RATE_PER_SECOUND",
                "5",
                "environment variable FREEDOMPAY_RECON__POLL__RATE_PER_SECOUND (did you mean \
                 FREEDOMPAY_RECON__POLL__RATE_PER_SECOND?)",
            ),
            ("DATABASE_URL", "mysql://x:pw@y/z", "database.url"),
            (
                "FREEDOMPAY_RECON__HTTP__LISTEN",
                "localhost",
                "is not an address",
            ),
            // These were accepted and broke the daemon (a panic, or every poll timing out).
            (
                "FREEDOMPAY_RECON__DATABASE__MAX_CONNECTIONS",
                "0",
                "database.max_connections: must be between 1 and 1000",
            ),
            (
                "FREEDOMPAY_RECON__PROVIDER__TIMEOUT",
                "0s",
                "provider.timeout: must be between 1ms and 10m",
            ),
            (
                "FREEDOMPAY_RECON__PROVIDER__CONNECT_TIMEOUT",
                "0s",
                "provider.connect_timeout: must be between 1ms and 10m",
            ),
        ];
        for (key, value, named) in cases {
            let err = Settings::load_from(None, env(&[(key, value)]))
                .err()
                .unwrap_or_else(|| panic!("{key}={value} accepted"));
            let message = err.to_string();
            assert!(message.contains(named), "{key}={value}: {message}");
            assert!(!message.contains("pw@"), "{message}");
        }
    }

    #[test]
    fn an_environment_variable_that_names_no_setting_is_refused_by_its_name() {
        let f = file("[poll]\nrate_per_second = 5\n");
        let e = Settings::load_from(
            Some(f.path()),
            env(&[("FREEDOMPAY_RECON__POLL__SCHEDUEL", "*/5 * * * * *")]),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(
            e.starts_with(
                "configuration: environment variable FREEDOMPAY_RECON__POLL__SCHEDUEL (did you \
                 mean FREEDOMPAY_RECON__POLL__SCHEDULE?): not a setting; fix the name or unset it"
            ),
            "{e}"
        );
        assert!(
            !e.contains(&f.path().display().to_string()),
            "not the file's: {e}"
        );
        // Every one at once, as the environment source reads them: any case, none empty.
        let e = Settings::load_from(
            None,
            env(&[
                ("freedompay_recon__poll__schedueL", "*/5 * * * * *"),
                ("FREEDOMPAY_RECON__NOTHING_LIKE_IT", "1"),
                ("FREEDOMPAY_RECON__POLL__LEESE", ""),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "configuration: environment variables FREEDOMPAY_RECON__NOTHING_LIKE_IT, \
                 freedompay_recon__poll__schedueL (did you mean FREEDOMPAY_RECON__POLL__SCHEDULE?): \
                 not a setting"
            ),
            "{e}"
        );
        let s = Settings::load_from(
            None,
            env(&[
                ("freedompay_recon__poll__rate_per_second", "7"),
                ("FREEDOMPAY_RECON_CONFIG", "/elsewhere.toml"),
                ("FREEDOMPAY_RECON_DIGEST_POST", "https://chat.example/hook"),
            ]),
        )
        .unwrap();
        assert_eq!(s.poll.rate_per_second, 7);
    }

    #[test]
    fn a_bad_value_names_the_variable_it_came_from_rather_than_the_file() {
        let f = file("[poll]\nlease = \"5m\"\n");
        let e = Settings::load_from(
            Some(f.path()),
            env(&[("FREEDOMPAY_RECON__POLL__LEASE", "5 minutes please")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "configuration: environment variable FREEDOMPAY_RECON__POLL__LEASE: poll.lease: \
                 \"5 minutes please\" is not a duration"
            ),
            "{e}"
        );
        let bad = file("[poll]\nlease = \"5 minutes please\"\n");
        let e = Settings::load_from(Some(bad.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "config file {}: poll.lease: \"5 minutes please\" is not a duration",
                bad.path().display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_bad_duration_is_answered_with_examples_of_good_ones() {
        let examples = r#"write a number and a unit, e.g. "30s", "5m" or "1h 30m""#;
        for (text, problem) in [
            (
                "[poll]\nlease = \"5 minutes please\"\n",
                "poll.lease: \"5 minutes please\" is not a duration",
            ),
            ("[poll]\nlease = 300\n", "poll.lease: 300 has no unit"),
            (
                "[poll]\nrecheck = [\"1m\", \"soon\"]\n",
                "poll.recheck: \"soon\" is not a duration",
            ),
            (
                "[webhook]\ntimeout = \"ten seconds\"\n",
                "webhook.timeout: \"ten seconds\" is not a duration",
            ),
        ] {
            let f = file(text);
            let e = Settings::load_from(Some(f.path()), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(problem) && e.contains(examples), "{text}: {e}");
        }
        let s =
            Settings::load_from(None, env(&[("FREEDOMPAY_RECON__POLL__LEASE", "1h 30m")])).unwrap();
        assert_eq!(s.poll.lease, Duration::from_secs(5400));
    }

    #[test]
    fn every_credential_not_set_is_named_in_one_message() {
        let e = Settings::load_from(
            None,
            env(&[
                ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", "127.0.0.1:9188"),
                (
                    "FREEDOMPAY_RECON__WEBHOOK__URL",
                    "https://erp.example/hooks",
                ),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(
            e.starts_with(
                "configuration: provider.auth_id, provider.secret, callbacks.secret and \
                 webhook.secret are not set: set FREEDOMPAY_RECON__PROVIDER__AUTH_ID (the \
                 partner id"
            ),
            "{e}"
        );
        for variable in [
            "FREEDOMPAY_RECON__PROVIDER__SECRET (the partner secret)",
            "FREEDOMPAY_RECON__CALLBACKS__SECRET",
            "FREEDOMPAY_RECON__WEBHOOK__SECRET",
            "systemd: in the EnvironmentFile",
        ] {
            assert!(e.contains(variable), "{variable} in {e}");
        }
        // Without callbacks or a webhook, `run` and `check` name the partner's two together.
        let s = Settings::load_from(None, env(&[])).unwrap();
        let e = crate::provider::ProviderClient::new(&s.provider)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "provider.auth_id and provider.secret are not set: set \
                 FREEDOMPAY_RECON__PROVIDER__AUTH_ID (the partner id; it may also go in the \
                 config file) and FREEDOMPAY_RECON__PROVIDER__SECRET (the partner secret)"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_schedule_that_never_fires_is_refused() {
        let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let now = at("2026-12-01T00:00:00Z");
        assert!(check_schedule("*/10 * * * * *", now).is_ok());
        // The 29th of February: over a year away from this December, not from next March.
        assert!(check_schedule("0 0 9 29 2 *", now).is_err());
        assert!(check_schedule("0 0 9 29 2 *", at("2027-03-01T00:00:00Z")).is_ok());
        let never = check_schedule("0 0 0 31 2 *", now).unwrap_err().to_string();
        assert!(
            never.contains("poll.schedule: \"0 0 0 31 2 *\" never fires within a year"),
            "{never}"
        );
        let e = Settings::load_from(
            None,
            env(&[("FREEDOMPAY_RECON__POLL__SCHEDULE", "0 0 0 31 2 *")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("never fires"), "{e}");
        let e = check_schedule("every minute", now).unwrap_err().to_string();
        assert!(e.contains("is not a cron expression with seconds"), "{e}");
    }

    /// Settings with a webhook to `https://erp.example/hooks`, signed with `secret` in
    /// `format` (none: the default).
    fn webhook(secret: &str, format: Option<&str>) -> Result<Settings, SettingsError> {
        let mut vars = vec![
            (
                "FREEDOMPAY_RECON__WEBHOOK__URL",
                "https://erp.example/hooks",
            ),
            ("FREEDOMPAY_RECON__WEBHOOK__SECRET", secret),
            ("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "1"),
            ("FREEDOMPAY_RECON__PROVIDER__SECRET", "partner-secret"),
        ];
        vars.extend(format.map(|f| ("FREEDOMPAY_RECON__WEBHOOK__FORMAT", f)));
        Settings::load_from(None, env(&vars))
    }

    /// `whsec_` and the base64 of `n` bytes.
    fn whsec(n: usize) -> String {
        let key: Vec<u8> = (0..n as u8).collect();
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    #[test]
    fn a_webhook_secret_of_spaces_is_no_secret() {
        let e = webhook(&" ".repeat(16), Some("github"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("webhook.secret: must be set, at least 16"),
            "{e}"
        );
        let e = webhook(&" ".repeat(16), None).unwrap_err().to_string();
        assert!(
            e.contains("webhook.secret: must be set when webhook.url is"),
            "{e}"
        );
    }

    #[test]
    fn the_github_format_keeps_the_sixteen_character_rule_and_the_secrets_own_bytes() {
        let s = webhook("0123456789abcdef", Some("github")).unwrap();
        assert_eq!(s.webhook.format, WebhookFormat::Github);
        assert_eq!(
            s.webhook.signing_key().unwrap().expose_secret(),
            b"0123456789abcdef"
        );
        let e = webhook("0123456789abcde", Some("github"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 16 characters"), "{e}");
        // A whsec_ secret is, to the GitHub shape, just characters.
        let s = webhook(&whsec(24), Some("github")).unwrap();
        assert_eq!(
            s.webhook.signing_key().unwrap().expose_secret(),
            whsec(24).as_bytes()
        );
    }

    #[test]
    fn the_webhook_format_is_standard_or_github_and_nothing_else() {
        let defaults = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(defaults.webhook.format, WebhookFormat::Standard);
        let e = webhook(&whsec(24), Some("svix")).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(
            e.starts_with(
                r#"configuration: webhook.format: "svix" is not a format; use "standard" (Standard Webhooks) or "github""#
            ),
            "{e}"
        );
        let f = file("[webhook]\nformat = \"GitHub\"\n");
        let e = Settings::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("webhook.format"), "{e}");
    }

    /// A configuration written before `webhook.format` existed (a plain secret, no format)
    /// must not switch to the new shape silently: it is refused, with both ways on.
    #[test]
    fn a_plain_secret_under_the_standard_format_is_refused_with_both_ways_on() {
        let old = "an-old-plain-secret-0123";
        for format in [None, Some("standard")] {
            let e = webhook(old, format).unwrap_err().to_string();
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(
                e.starts_with("configuration: webhook.secret: is not a Standard Webhooks secret"),
                "{e}"
            );
            assert!(e.contains(r#"set webhook.format = "github""#), "{e}");
            assert!(
                e.contains(r#"echo "whsec_$(openssl rand -base64 32)""#),
                "{e}"
            );
            assert!(!e.contains(old), "the secret is never quoted: {e}");
        }
        assert!(webhook(old, Some("github")).is_ok());
    }

    #[test]
    fn a_whsec_secret_is_base64_of_at_least_sixteen_bytes() {
        let s = webhook(&whsec(24), None).unwrap();
        let key: Vec<u8> = (0..24).collect();
        assert_eq!(s.webhook.signing_key().unwrap().expose_secret(), &key[..]);
        assert!(webhook(&whsec(16), None).is_ok());
        assert!(webhook(&whsec(64), None).is_ok());
        // Surrounding spaces are no part of base64: a trailing newline is forgiven.
        assert!(webhook(&format!(" {}\n", whsec(32)), None).is_ok());

        let short = whsec(15);
        let e = webhook(&short, None).unwrap_err().to_string();
        assert!(
            e.contains("webhook.secret: holds 15 key bytes; at least 16 are needed"),
            "{e}"
        );
        assert!(!e.contains(&short[6..]), "{e}");
        for bad in [
            "whsec_not base64 at all!!",
            // Unpadded: some receivers' libraries refuse it, so it is refused here first.
            "whsec_AAECAwQFBgcICQoLDA0ODxA",
        ] {
            let e = webhook(bad, None).unwrap_err().to_string();
            assert!(
                e.contains("webhook.secret: the part after whsec_ is not base64"),
                "{bad}: {e}"
            );
            assert!(!e.contains(&bad[6..]), "{bad}: {e}");
        }
        let e = webhook("whsec_", None).unwrap_err().to_string();
        assert!(e.contains("webhook.secret: holds 0 key bytes"), "{e}");
    }

    #[test]
    fn a_broken_config_file_never_echoes_its_secrets() {
        let broken = file("[provider]\nauth_id = \"1\"\nsecret = \"hunter2-secret\n");
        let err = Settings::load_from(Some(broken.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not valid TOML at line 3 (`secret = …`)"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");

        let duplicate = file("[provider]\nsecret = \"a-secret\"\nsecret = \"b-secret\"\n");
        let err = Settings::load_from(Some(duplicate.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not valid TOML at line 3 (`secret = …`)") && err.contains("duplicate"),
            "{err}"
        );
        assert!(!err.contains("-secret"), "{err}");
    }

    #[test]
    fn a_missing_or_broken_config_file_is_named() {
        let missing = Path::new("/nonexistent/freedompay.toml");
        let err = Settings::load_from(Some(missing), env(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/freedompay.toml"));

        let broken = file("[poll\nrate = ");
        let err = Settings::load_from(Some(broken.path()), env(&[])).unwrap_err();
        assert!(
            err.to_string()
                .contains(&broken.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn only_a_default_config_file_that_is_not_there_means_no_file() {
        let missing = Path::new("/nonexistent/freedompay-recon/config.toml");
        let s = Settings::load_with_default(None, missing, env(&[])).unwrap();
        assert_eq!(s.poll.rate_per_second, 20, "the defaults");

        // There, but not a file to read: an error naming it, never the defaults.
        let dir = tempfile::tempdir().unwrap();
        let e = Settings::load_with_default(None, dir.path(), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "config file {}: is a directory, not a file; the default config file is read \
                 whenever it exists: fix it, or name another with --config",
                dir.path().display()
            )),
            "{e}"
        );
        let latin1 = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(latin1.path(), b"[poll]\n# r\xe9sum\xe9\n").unwrap();
        let e = Settings::load_with_default(None, latin1.path(), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8 text"), "{e}");
        // And read when it is there.
        let typo = file("[poll]\nschedueL = \"* * * * * *\"\n");
        let e = Settings::load_with_default(None, typo.path(), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `schedueL`"), "{e}");
        // A file given with --config must be there.
        let e = Settings::load_with_default(Some(missing), missing, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("no such file; pass a readable TOML file to --config"),
            "{e}"
        );
    }

    #[test]
    fn callbacks_are_off_by_default_and_checked_when_on() {
        let defaults = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(defaults.callbacks.listen, None);
        assert_eq!(defaults.callbacks.script_name(), "result");
        assert!(!format!("{:?}", defaults.callbacks).contains("secret: \"\""));

        let on = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", "127.0.0.1:9188"),
                (
                    "FREEDOMPAY_RECON__CALLBACKS__SECRET",
                    "merchant-key-0123456",
                ),
            ];
            pairs.extend_from_slice(extra);
            Settings::load_from(None, env(&pairs))
        };
        let settings = on(&[]).unwrap();
        assert!(!format!("{settings:?}").contains("merchant-key"));
        assert_eq!(
            on(&[(
                "FREEDOMPAY_RECON__CALLBACKS__SCRIPT_NAME",
                "payment_result.php"
            )])
            .unwrap()
            .callbacks
            .script_name(),
            "payment_result.php"
        );
        for (key, value, named) in [
            (
                "FREEDOMPAY_RECON__CALLBACKS__SECRET",
                " ",
                "callbacks.secret",
            ),
            (
                "FREEDOMPAY_RECON__HTTP__LISTEN",
                "127.0.0.1:9188",
                "callbacks.listen",
            ),
            (
                "FREEDOMPAY_RECON__CALLBACKS__PATH",
                "result?x=1",
                "callbacks.path",
            ),
            (
                "FREEDOMPAY_RECON__CALLBACKS__SCRIPT_NAME",
                "a;b",
                "callbacks.script_name",
            ),
        ] {
            let err = on(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
            assert!(!err.contains("merchant-key"), "{err}");
        }
    }

    #[test]
    fn a_callback_secret_shorter_than_sixteen_characters_is_refused_unless_allowed() {
        let load = |secret: &str, allow: Option<&str>| {
            let mut pairs = vec![
                ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", "127.0.0.1:9188"),
                ("FREEDOMPAY_RECON__CALLBACKS__SECRET", secret),
                ("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "1"),
                ("FREEDOMPAY_RECON__PROVIDER__SECRET", "partner-secret"),
            ];
            pairs.extend(allow.map(|a| ("FREEDOMPAY_RECON__CALLBACKS__ALLOW_SHORT_SECRET", a)));
            Settings::load_from(None, env(&pairs))
        };
        for short in ["Q7", "0123456789abcde", "  0123456789abcd  "] {
            let e = load(short, None).unwrap_err().to_string();
            assert!(!e.contains('\n'), "one line: {e}");
            assert!(
                e.starts_with("configuration: callbacks.secret: is shorter than 16 characters"),
                "{e}"
            );
            assert!(e.contains("callbacks.allow_short_secret = true"), "{e}");
            assert!(!e.contains(short.trim()), "the secret is never quoted: {e}");
            let allowed = load(short, Some("true")).unwrap();
            assert!(allowed.callbacks.allow_short_secret);
        }
        assert!(load("0123456789abcdef", None).is_ok());
        // Allowing a short key never allows none.
        let e = load(" ", Some("true")).unwrap_err().to_string();
        assert!(e.contains("callbacks.secret: must be set"), "{e}");
        // Off, a short or empty secret is nobody's concern.
        let f = file("[callbacks]\nsecret = \"k\"\n");
        assert!(Settings::load_from(Some(f.path()), env(&[])).is_ok());
    }

    #[test]
    fn merchant_fields_and_the_untracked_cap_are_read_and_bounded() {
        let defaults = Settings::load_from(None, env(&[])).unwrap();
        assert!(defaults.callbacks.merchant_fields.is_empty());
        assert_eq!(defaults.callbacks.max_untracked_per_hour, 100);
        let set = Settings::load_from(
            None,
            env(&[
                (
                    "FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS",
                    "basket_id, items[0][sku]",
                ),
                ("FREEDOMPAY_RECON__CALLBACKS__MAX_UNTRACKED_PER_HOUR", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(
            set.callbacks.merchant_fields,
            ["basket_id", "items[0][sku]"]
        );
        assert_eq!(set.callbacks.max_untracked_per_hour, 0);
        let long = "f".repeat(65);
        let many = vec!["f"; 101].join(",");
        for (key, value) in [
            ("FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS", "a b"),
            ("FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS", "x=1"),
            ("FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS", "\u{1b}[2J"),
            (
                "FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS",
                long.as_str(),
            ),
            (
                "FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS",
                many.as_str(),
            ),
            (
                "FREEDOMPAY_RECON__CALLBACKS__MAX_UNTRACKED_PER_HOUR",
                "1000001",
            ),
        ] {
            let err = Settings::load_from(None, env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            let dotted = key
                .trim_start_matches("FREEDOMPAY_RECON__")
                .to_lowercase()
                .replacen("__", ".", 1);
            assert!(err.contains(&dotted), "{key}={value}: {err}");
            assert!(!err.contains('\u{1b}'), "escaped: {err}");
        }
    }

    #[test]
    fn the_schedule_with_callbacks_is_the_daemons_when_callbacks_are_on_and_bounded_like_the_other()
    {
        let off = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(off.policy().recheck, off.poll.recheck);
        assert_eq!(off.policy().first_poll_after, off.poll.first_poll_after);
        let with = off.policy_for(true);
        assert_eq!(with.recheck, off.poll.recheck_with_callbacks);
        assert_eq!(
            with.first_poll_after,
            off.poll.first_poll_after_with_callbacks
        );
        assert_ne!(off.poll.recheck, off.poll.recheck_with_callbacks);
        assert_ne!(
            off.poll.first_poll_after,
            off.poll.first_poll_after_with_callbacks
        );
        let on = Settings::load_from(
            None,
            env(&[
                ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", "127.0.0.1:9188"),
                (
                    "FREEDOMPAY_RECON__CALLBACKS__SECRET",
                    "merchant-key-0123456",
                ),
                ("FREEDOMPAY_RECON__POLL__RECHECK_WITH_CALLBACKS", "5m,1h"),
                (
                    "FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER_WITH_CALLBACKS",
                    "3m",
                ),
            ]),
        )
        .unwrap();
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(on.policy().recheck, [minutes(5), minutes(60)]);
        assert_eq!(on.policy().first_poll_after, minutes(3));
        assert_eq!(on.policy_for(false).recheck, off.poll.recheck);
        // Everything but the first poll and the ladder is the same either way.
        let (with, without) = (on.policy_for(true), on.policy_for(false));
        assert_eq!(
            (with.confirm_after, with.lifetime_grace, with.max_age),
            (
                without.confirm_after,
                without.lifetime_grace,
                without.max_age
            )
        );

        for (text, named) in [
            (
                "[poll]\nrecheck_with_callbacks = [\"10m\", \"0s\"]\n",
                "poll.recheck_with_callbacks: must be between 1s and",
            ),
            (
                "[poll]\nrecheck_with_callbacks = [\"400days\"]\n",
                "poll.recheck_with_callbacks: must be between 1s and",
            ),
            (
                "[poll]\nrecheck_with_callbacks = []\n",
                "poll.recheck_with_callbacks: give at least one",
            ),
            (
                "[poll]\nrecheck_with_callbacks = [\"soon\"]\n",
                "\"soon\" is not a duration",
            ),
            (
                "[poll]\nfirst_poll_after_with_callbacks = \"400days\"\n",
                "poll.first_poll_after_with_callbacks: must be between 0s and",
            ),
        ] {
            let f = file(text);
            let err = Settings::load_from(Some(f.path()), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn the_example_config_is_valid_and_matches_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"));
        let example = Settings::load_from(Some(path), env(&[])).unwrap();
        let defaults = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(
            format!("{:?}", example.poll),
            format!("{:?}", defaults.poll)
        );
        assert_eq!(
            format!("{:?}", example.reconcile),
            format!("{:?}", defaults.reconcile)
        );
        assert_eq!(example.provider.base_url, defaults.provider.base_url);
        assert_eq!(example.webhook.format, defaults.webhook.format);
        assert_eq!(
            format!("{:?}", example.callbacks),
            format!("{:?}", defaults.callbacks)
        );
        assert_eq!(example.events.retention, defaults.events.retention);
        assert_eq!(example.http.limits(), defaults.http.limits());
        assert_eq!(
            (
                &example.callbacks.merchant_fields,
                example.callbacks.max_untracked_per_hour
            ),
            (
                &defaults.callbacks.merchant_fields,
                defaults.callbacks.max_untracked_per_hour
            )
        );
        assert_eq!(
            defaults.http.limits(),
            Limits::default(),
            "the listener's own defaults are the daemon's"
        );
        assert_eq!(defaults.events.retention, Duration::from_secs(30 * 86_400));
    }

    /// Every count and duration, at zero, negative, its largest value and beyond: each is
    /// refused at load with one line naming the key, or it builds everything `run` and `plan`
    /// build from it. Never a panic.
    #[tokio::test]
    async fn no_count_or_duration_can_panic_the_daemon() {
        const COUNTS: &[&str] = &[
            "DATABASE__MAX_CONNECTIONS",
            "PROVIDER__MAX_BODY_BYTES",
            "POLL__RATE_PER_SECOND",
            "POLL__BURST",
            "POLL__CONCURRENCY",
            "POLL__BATCH_SIZE",
            "POLL__WRITERS",
            "HTTP__MAX_CONNECTIONS",
            "HTTP__BODY_MIN_RATE",
            "CALLBACKS__MAX_UNTRACKED_PER_HOUR",
        ];
        const DURATIONS: &[&str] = &[
            "DATABASE__CONNECT_TIMEOUT",
            "DATABASE__STATEMENT_TIMEOUT",
            "DATABASE__LOCK_TIMEOUT",
            "PROVIDER__TIMEOUT",
            "PROVIDER__CONNECT_TIMEOUT",
            "PROVIDER__DEFAULT_RETRY_AFTER",
            "PROVIDER__MAX_RETRY_AFTER",
            "POLL__FIRST_POLL_AFTER",
            "POLL__FIRST_POLL_AFTER_WITH_CALLBACKS",
            "POLL__RECHECK",
            "POLL__RECHECK_WITH_CALLBACKS",
            "POLL__LEASE",
            "POLL__CONFIRM_AFTER",
            "POLL__LIFETIME_GRACE",
            "POLL__NOT_FOUND_GRACE",
            "POLL__MAX_AGE",
            "POLL__LAST_LOOK_AFTER",
            "POLL__RETRY_MIN",
            "POLL__RETRY_MAX",
            "POLL__DRAIN_TIMEOUT",
            "HTTP__UNREADY_AFTER",
            "HTTP__HEADER_TIMEOUT",
            "HTTP__BODY_TIMEOUT",
            "WEBHOOK__TIMEOUT",
            "WEBHOOK__MAX_AGE",
        ];
        let counts = [
            "0",
            "-1",
            "1",
            "4294967295",
            "18446744073709551615",
            "1e999",
        ];
        let durations = [
            "0s",
            "-1s",
            "1ms",
            "365days",
            "18446744073709551615s",
            "584542046090years",
        ];
        let cases = COUNTS
            .iter()
            .flat_map(|key| counts.iter().map(move |v| (*key, *v)))
            .chain(
                DURATIONS
                    .iter()
                    .flat_map(|key| durations.iter().map(move |v| (*key, *v))),
            );
        let (mut refused, mut working) = (0, 0);
        for (key, value) in cases {
            let name = format!("{ENV_PREFIX}__{key}");
            let mut vars = env(&[
                (name.as_str(), value),
                ("FREEDOMPAY_RECON__WEBHOOK__URL", "http://127.0.0.1:9/hooks"),
                (
                    "FREEDOMPAY_RECON__WEBHOOK__SECRET",
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                ),
                ("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "1"),
                ("FREEDOMPAY_RECON__PROVIDER__SECRET", "s"),
            ]);
            vars.insert("DATABASE_URL".into(), "postgres://u@127.0.0.1:1/db".into());
            let loaded = std::panic::catch_unwind(|| Settings::load_from(None, vars))
                .unwrap_or_else(|_| panic!("{key}={value} panicked at load"));
            match loaded {
                Err(e) => {
                    let message = e.to_string();
                    let dotted = key.to_lowercase().replacen("__", ".", 1);
                    assert!(
                        message.contains(&dotted) && !message.contains('\n'),
                        "{key}={value}: one line naming the key: {message}"
                    );
                    refused += 1;
                }
                Ok(settings) => {
                    let started = std::time::Instant::now();
                    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        everything_run_and_plan_build(&settings)
                    }));
                    assert!(
                        started.elapsed() < std::time::Duration::from_secs(5),
                        "{key}={value}: {:?}",
                        started.elapsed()
                    );
                    assert!(built.is_ok(), "{key}={value} was accepted, then panicked");
                    working += 1;
                }
            }
        }
        assert!(
            refused > 0 && working > 0,
            "{refused} refused, {working} working"
        );
    }

    /// What `run` and `plan` build from settings, short of connecting.
    fn everything_run_and_plan_build(settings: &Settings) {
        let options = settings.database.connect_options().expect("a URL");
        let pool = crate::store::pool_options(&settings.database).connect_lazy_with(options);
        let provider = crate::provider::ProviderClient::new(&settings.provider).expect("client");
        let engine = crate::engine::Engine::new(pool.clone(), provider, settings);
        crate::webhook::Deliverer::new(pool, &settings.webhook, engine.instance())
            .expect("deliverer");
        let _ = settings.http.limits();
        check_schedule(&settings.poll.schedule, chrono::Utc::now()).expect("schedule");
        // `plan` refuses a policy it cannot simulate in reasonable time, in one line; with
        // callbacks or without.
        for callbacks in [false, true] {
            let policy = settings.policy_for(callbacks);
            if crate::capacity::simulable(&policy).is_ok() {
                let plan = crate::capacity::run(&crate::capacity::PlanInput {
                    payments_per_day: 50,
                    rate_per_second: settings.poll.rate_per_second,
                    policy,
                    mix: crate::capacity::Mix::default(),
                    sweeps: settings.poll.sweeps(),
                    claim_ahead: settings.poll.claim_ahead(),
                    callbacks,
                    created_over: crate::capacity::DAY,
                });
                assert!(plan.payments > 0);
            }
        }
    }
}
