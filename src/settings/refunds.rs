//! `[refunds]`: watching paid payments for refunds through the Merchant status API.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundSettings {
    /// When a paid payment is asked about, counted from when it was first seen paid: the
    /// n-th look after the n-th delay. Refunds come within days, chargebacks within months.
    #[serde(deserialize_with = "durations")]
    pub watch: Vec<Duration>,
    /// How long after it was first seen paid a payment is watched at all; later looks are
    /// dropped.
    #[serde(deserialize_with = "duration")]
    pub watch_for: Duration,
}

impl RefundSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.watch.is_empty() {
            return Err(invalid(
                "refunds.watch",
                "give at least one delay, e.g. [\"1d\", \"7d\", \"30d\", \"90d\"]",
            ));
        }
        if self.watch.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid(
                "refunds.watch",
                "must grow: each look later than the one before (counted from when the \
                 payment was first seen paid), e.g. [\"1d\", \"7d\", \"30d\", \"90d\"]",
            ));
        }
        if self.watch.iter().any(|&step| step > self.watch_for) {
            return Err(invalid(
                "refunds.watch",
                format!(
                    "has a look after refunds.watch_for ({}): it would never be made; \
                     lengthen refunds.watch_for or drop the look",
                    humantime::format_duration(self.watch_for)
                ),
            ));
        }
        Ok(())
    }
}
