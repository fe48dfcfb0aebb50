//! `[poll]`, `[reconcile]` and `[flags]`: when payments are polled and what the rules allow.

use super::*;

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
pub(super) fn check_schedule(
    schedule: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), SettingsError> {
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
