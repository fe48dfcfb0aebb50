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

mod bank;
mod callbacks;
mod database;
mod http;
mod merchant;
mod poll;
mod provider;
mod refunds;
mod values;
mod webhook;

pub use self::bank::*;
pub use self::callbacks::*;
pub use self::database::*;
pub use self::http::*;
pub use self::merchant::*;
pub use self::poll::*;
pub use self::provider::*;
pub use self::refunds::*;
use self::values::*;
pub use self::webhook::*;

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

[merchant]
id = ""
secret = ""
allow_short_secret = false
status_script = "get_status3.php"
lookup = "payment_id"
rate_per_second = 0

[refunds]
watch = ["14d"]
watch_for = "180days"

[bank]
provider_accounts = []
match_window = "5d"
tolerance = "0"
currency = "KZT"

[registry]
expect_within = "3d"
commission_percent = ""

[console]
listen = "127.0.0.1:8090"
locale = "ru"

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
script_name = ""
merchant_fields = []
max_untracked_per_hour = 100
refund_path = "/freedompay/refund"

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
    pub merchant: MerchantSettings,
    pub refunds: RefundSettings,
    pub bank: BankSettings,
    pub registry: RegistrySettings,
    pub console: ConsoleSettings,
    pub poll: PollSettings,
    pub reconcile: ReconcileSettings,
    pub flags: FlagSettings,
    pub http: HttpSettings,
    pub callbacks: CallbackSettings,
    pub webhook: WebhookSettings,
    pub events: EventSettings,
    pub log: LogSettings,
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
    for (from, to) in MOVED {
        let variable = format!("{ENV_PREFIX}__{}", from.replace('.', "__"));
        if let Some((name, _)) = env
            .iter()
            .find(|(name, value)| !value.is_empty() && name.eq_ignore_ascii_case(&variable))
        {
            return Err(SettingsError::Invalid(format!(
                "environment variable {}: {from} {}",
                crate::text::clean(name, 80),
                moved(to)
            )));
        }
    }
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
        self.callbacks.check_moved()?;
        self.database.connect_options()?;
        self.check_credentials_set()?;
        self.check_bounds()?;
        self.provider.naive_offset()?;
        let poll = &self.poll;
        self.webhook.validate()?;
        self.callbacks.validate(self.http.listen)?;
        self.merchant.validate(self.callbacks.listen.is_some())?;
        self.refunds.validate()?;
        self.bank.validate()?;
        self.registry.validate()?;
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
        if self.callbacks.listen.is_some() && unset(&self.merchant.secret) {
            missing.push("merchant.secret");
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
                "refunds.watch_for",
                self.refunds.watch_for,
                SECOND,
                3650 * DAY,
            ),
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
        )
        .chain(
            self.refunds
                .watch
                .iter()
                .map(|&step| ("refunds.watch", step, SECOND, 3650 * DAY)),
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
        let counts: [(&str, u64, u64, u64); 11] = [
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
            // 0: status requests take only the shared provider budget.
            (
                "merchant.rate_per_second",
                self.merchant.rate_per_second.into(),
                0,
                10_000,
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

#[cfg(test)]
mod tests;
