//! `[merchant]`: the merchant's own account at Freedom Pay's Merchant API. Its secret key signs
//! the Result-URL callbacks and the status requests that watch for refunds: one secret, one
//! place.

use super::*;

/// Which id a status request names the payment by (`merchant.lookup`). Whether the Partner
/// API's `payment_id` is the Merchant API's `pg_payment_id` is an open question
/// (MERCHANT_STATUS.md); the order id is the other way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantLookup {
    /// `pg_payment_id`: the payment's id as polled.
    #[default]
    PaymentId,
    /// `pg_order_id`: the merchant's order id (`recon.payments.order_id`).
    OrderId,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantSettings {
    /// `pg_merchant_id`; text, as ids may have leading zeros. Empty: refunds are not watched.
    pub id: String,
    /// The merchant's secret key (its payment password, not `provider.secret`): `pg_sig` of
    /// callbacks and status requests is made with it. Never logged. At least
    /// [`MERCHANT_SECRET_MIN_CHARS`] characters unless `allow_short_secret`.
    pub secret: SecretString,
    /// Accept a `secret` shorter than [`MERCHANT_SECRET_MIN_CHARS`]: for a key the provider
    /// issued that short, which the merchant cannot lengthen on its own.
    pub allow_short_secret: bool,
    /// The status script, relative to `provider.base_url`; its last segment is what `pg_sig`
    /// is made for (`get_status3.php`, or the Gateway's `g2g/status_v2`).
    pub status_script: String,
    /// Which id a status request sends.
    pub lookup: MerchantLookup,
    /// Status requests per second from this instance at most, besides the provider budget
    /// they share with polls (`poll.rate_per_second`, deployment-wide); 0: only that.
    pub rate_per_second: u32,
}

/// The fewest characters `merchant.secret` may have without `merchant.allow_short_secret`:
/// as `webhook.secret` under the `github` format.
pub const MERCHANT_SECRET_MIN_CHARS: usize = 16;

impl MerchantSettings {
    /// Whether a secret key is set (spaces at either end count for nothing).
    pub fn has_secret(&self) -> bool {
        !self.secret.expose_secret().trim().is_empty()
    }

    /// Whether the status API can be asked: an id and a secret key.
    pub fn watches_refunds(&self) -> bool {
        !self.id.trim().is_empty() && self.has_secret()
    }

    /// The script name the status request and its answer are signed with: the last segment
    /// of `status_script`.
    pub fn status_script_name(&self) -> &str {
        default_script_name(self.status_script.trim())
    }

    /// `callbacks_listen`: whether callbacks are heard, which need the secret key.
    pub(super) fn validate(&self, callbacks_listen: bool) -> Result<(), SettingsError> {
        let script = self.status_script.trim();
        let script_ok = !script.is_empty()
            && !script.starts_with('/')
            && !script.ends_with('/')
            && script.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
            });
        if !script_ok {
            return Err(invalid(
                "merchant.status_script",
                format!(
                    "{} is not a script path like get_status3.php or g2g/status_v2 (letters, \
                     digits, / - _ . ~; no leading or trailing /)",
                    crate::text::excerpt(&self.status_script)
                ),
            ));
        }
        if !self.id.trim().is_empty() && !self.id.trim().bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "merchant.id",
                format!(
                    "{} is not a merchant id (digits, as in the provider's merchant cabinet)",
                    crate::text::excerpt(&self.id)
                ),
            ));
        }
        if !self.has_secret() {
            if callbacks_listen {
                return Err(invalid(
                    "merchant.secret",
                    "must be set when callbacks.listen is: the merchant's secret key signs \
                     Result-URL callbacks (set FREEDOMPAY_RECON__MERCHANT__SECRET; systemd: in \
                     the EnvironmentFile)",
                ));
            }
            if !self.id.trim().is_empty() {
                return Err(invalid(
                    "merchant.secret",
                    "must be set when merchant.id is: the merchant's secret key signs status \
                     requests (set FREEDOMPAY_RECON__MERCHANT__SECRET; systemd: in the \
                     EnvironmentFile), or leave merchant.id empty to watch no refunds",
                ));
            }
            return Ok(());
        }
        if !callbacks_listen && self.id.trim().is_empty() {
            // Neither callbacks nor the status API: the key signs nothing.
            return Ok(());
        }
        // `pg_sig` is an unsalted MD5 over fields a callback itself carries: one captured
        // callback lets anyone try keys offline at billions a second, so a short key is
        // found in minutes and then every forged callback verifies. Spaces at either end
        // count for nothing, as for webhook.secret.
        if self.secret.expose_secret().trim().chars().count() < MERCHANT_SECRET_MIN_CHARS
            && !self.allow_short_secret
        {
            return Err(invalid(
                "merchant.secret",
                format!(
                    "is shorter than {MERCHANT_SECRET_MIN_CHARS} characters (spaces at either \
                     end not counted): an MD5 signature over a key that short is brute-forced \
                     offline from one captured callback; use a key of \
                     {MERCHANT_SECRET_MIN_CHARS} or more characters (ask the provider for one), \
                     or, for a shorter key the provider issued, set \
                     merchant.allow_short_secret = true"
                ),
            ));
        }
        Ok(())
    }
}
