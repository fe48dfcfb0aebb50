//! `[bank]`: the merchant's bank statements, read for the money the provider paid out.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankSettings {
    /// The provider's accounts (IIK) and tax ids (BIN): a credit from one of them is money the
    /// provider paid out, a candidate for matching; every other line is kept and left alone.
    #[serde(deserialize_with = "strings")]
    pub provider_accounts: Vec<String>,
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
        Ok(())
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
