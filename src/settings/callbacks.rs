//! `[callbacks]`: the provider's Result-URL callbacks.

use super::*;

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

    pub(super) fn validate(
        &self,
        http_listen: Option<std::net::SocketAddr>,
    ) -> Result<(), SettingsError> {
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

/// The script name `pg_sig` is made for by default: the last segment of `path`.
pub fn default_script_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
