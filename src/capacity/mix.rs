//! The synthetic day a plan runs over: what share of payments is paid, failed or abandoned,
//! and how long each takes.

use std::time::Duration;

use serde::Deserialize;

/// What happens to a day's payments. Shares are of all payments and add up to 1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Paid after the time to pay.
    pub paid: f64,
    /// Failed (`error`) after the time to pay.
    pub failed: f64,
    /// Never paid: `process` until the lifetime runs out, then `expired_status`.
    pub abandoned: f64,
    /// Time to pay or fail: log-normal with this median...
    #[serde(with = "humantime_serde")]
    pub pay_median: Duration,
    /// ...and this σ of its logarithm (0: every payment takes exactly the median).
    pub pay_sigma: f64,
    /// The payments' lifetime, as the provider states it (seconds from creation).
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// How long after creation the provider still says "not found".
    #[serde(with = "humantime_serde")]
    pub visible_after: Duration,
    /// What the provider says about an abandoned payment once its lifetime has run out
    /// (optional; `incomplete` when left out).
    #[serde(default)]
    pub expired_status: ExpiredStatus,
    /// Of the paid and failed payments, the share whose Result-URL callback reaches the
    /// daemon (optional; 0.95 when left out). It matters only when the plan models a daemon
    /// with callbacks on (`plan --callbacks`, or `callbacks.listen` set): without them no
    /// callback is ever heard, whatever the provider sends.
    #[serde(default = "default_callback_share")]
    pub callback_share: f64,
    /// From paying or failing to the callback's arrival (optional; 2 s when left out).
    #[serde(default = "default_callback_delay", with = "humantime_serde")]
    pub callback_delay: Duration,
    /// How long after a payment is paid or fails the Partner API shows it (optional; 0 when
    /// left out): until then the API answers as before (`process`, or "not found" within
    /// `visible_after`), so a callback faster than this meets an API that lags it.
    #[serde(default, with = "humantime_serde")]
    pub api_lag: Duration,
}

/// The share of callbacks that arrive, when a mix does not say: issue 18's working figure.
pub const DEFAULT_CALLBACK_SHARE: f64 = 0.95;

/// How long after paying a callback arrives, when a mix does not say.
pub const DEFAULT_CALLBACK_DELAY: Duration = Duration::from_secs(2);

fn default_callback_share() -> f64 {
    DEFAULT_CALLBACK_SHARE
}

fn default_callback_delay() -> Duration {
    DEFAULT_CALLBACK_DELAY
}

/// What the provider says about an abandoned payment after its lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiredStatus {
    /// `incomplete`, as the provider documents.
    #[default]
    Incomplete,
    /// Still `process`: a provider that never closes abandoned payments (seen in the field;
    /// issue 18 measured one).
    Process,
}

impl Default for Mix {
    /// The day the defaults are chosen for: 70 % paid (median 90 s), 5 % failed, 25 %
    /// abandoned at a 24 h lifetime; invisible for the first 30 s; 95 % of the paid and
    /// failed outcomes called back 2 s after they happen (when callbacks are on).
    fn default() -> Self {
        Self {
            paid: 0.70,
            failed: 0.05,
            abandoned: 0.25,
            pay_median: Duration::from_secs(90),
            pay_sigma: 1.0,
            lifetime: Duration::from_secs(24 * 3600),
            visible_after: Duration::from_secs(30),
            expired_status: ExpiredStatus::Incomplete,
            callback_share: DEFAULT_CALLBACK_SHARE,
            callback_delay: DEFAULT_CALLBACK_DELAY,
            api_lag: Duration::ZERO,
        }
    }
}

/// The longest duration a mix may state.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

impl Mix {
    /// Reads a mix from a TOML file; every key but `expired_status`, `callback_share`,
    /// `callback_delay` and `api_lag` is required.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let mix: Mix = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let shares = [mix.paid, mix.failed, mix.abandoned];
        if shares.iter().any(|s| !(0.0..=1.0).contains(s)) {
            return Err("paid, failed and abandoned are shares between 0 and 1".into());
        }
        if ((mix.paid + mix.failed + mix.abandoned) - 1.0).abs() > 1e-9 {
            return Err("paid + failed + abandoned must add up to 1".into());
        }
        if !(0.0..=1.0).contains(&mix.callback_share) {
            return Err("callback_share is a share between 0 and 1".into());
        }
        if !(0.0..=5.0).contains(&mix.pay_sigma) {
            return Err("pay_sigma must be between 0 and 5".into());
        }
        // A day of payments: durations past a year describe no payment anyone takes.
        for (key, duration) in [
            ("pay_median", mix.pay_median),
            ("lifetime", mix.lifetime),
            ("visible_after", mix.visible_after),
            ("callback_delay", mix.callback_delay),
            ("api_lag", mix.api_lag),
        ] {
            if duration > MAX_DURATION {
                return Err(format!(
                    "{key} must be at most 365 days (it is {})",
                    humantime::format_duration(duration)
                ));
            }
        }
        Ok(mix)
    }
}
