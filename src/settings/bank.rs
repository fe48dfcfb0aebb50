//! `[bank]`: the merchant's bank statements, read for the money the provider paid out.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankSettings {
    /// The provider's accounts (IIK) and tax ids (BIN): a credit from one of them is money the
    /// provider paid out, a candidate for matching; every other line is kept and left alone.
    #[serde(deserialize_with = "strings")]
    pub provider_accounts: Vec<String>,
    /// How many days after a payout's date its credit may arrive (whole days).
    #[serde(deserialize_with = "duration")]
    pub match_window: Duration,
    /// The largest difference between a payout and its credits that still matches. Write it
    /// as a string ("0.01") so it stays exact.
    #[serde(with = "rust_decimal::serde::str")]
    pub tolerance: Decimal,
    /// The currency of the statement's account: payouts in another currency are never
    /// matched to its credits.
    pub currency: String,
}

/// `[registry]`: what the provider's registries are expected to list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// How long after it was paid a payment may be missing from the registries before it is
    /// flagged `not_in_registry`.
    #[serde(deserialize_with = "duration")]
    pub expect_within: Duration,
    /// The commission the contract sets, in percent of the amount ("2.5"); a registry line
    /// whose commission differs (beyond `bank.tolerance`) is `registry_amount_mismatch`.
    /// Empty: a line's commission is compared only with one the provider stated otherwise.
    #[serde(default, deserialize_with = "optional_decimal")]
    pub commission_percent: Option<Decimal>,
}

fn optional_decimal<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Decimal>, D::Error> {
    let raw = String::deserialize(deserializer)?;
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<Decimal>()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{raw:?} is not a number (\"2.5\")")))
}

impl RegistrySettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.expect_within.is_zero() {
            return Err(invalid(
                "registry.expect_within",
                "must be longer than zero, e.g. \"3d\"",
            ));
        }
        if self
            .commission_percent
            .is_some_and(|p| p.is_sign_negative() || p >= Decimal::ONE_HUNDRED)
        {
            return Err(invalid(
                "registry.commission_percent",
                "must be at least 0 and below 100 (percent of the amount, e.g. \"2.5\")",
            ));
        }
        Ok(())
    }
}

impl BankSettings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if let Some(bad) = self.provider_accounts.iter().find(|a| {
            let a = a.trim();
            a.is_empty() || a.len() > 34 || !a.bytes().all(|b| b.is_ascii_alphanumeric())
        }) {
            return Err(invalid(
                "bank.provider_accounts",
                format!(
                    "{} is not an account (IIK, e.g. KZ009999999999999999) or a tax id (BIN, \
                     12 digits): letters and digits, at most 34",
                    crate::text::excerpt(bad)
                ),
            ));
        }
        let day = 86_400;
        if !self.match_window.as_secs().is_multiple_of(day) || self.match_window.subsec_nanos() != 0
        {
            return Err(invalid(
                "bank.match_window",
                "must be whole days, e.g. \"5d\" (a statement dates its credits by day)",
            ));
        }
        if self.tolerance.is_sign_negative() {
            return Err(invalid("bank.tolerance", "must not be negative"));
        }
        self.currency
            .parse::<crate::domain::Currency>()
            .map_err(|e| invalid("bank.currency", e.to_string()))?;
        Ok(())
    }

    /// `bank.match_window` in days.
    pub fn window_days(&self) -> i64 {
        i64::try_from(self.match_window.as_secs() / 86_400).unwrap_or(i64::MAX)
    }

    /// Whether a credit from `account` or `tax_id` comes from the provider.
    pub fn from_provider(&self, account: Option<&str>, tax_id: Option<&str>) -> bool {
        self.provider_accounts.iter().any(|known| {
            let known = known.trim();
            account.is_some_and(|a| a.eq_ignore_ascii_case(known))
                || tax_id.is_some_and(|t| t == known)
        })
    }
}
