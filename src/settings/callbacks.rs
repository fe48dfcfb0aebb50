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
    /// Where a refund notification from the provider is accepted, if it sends one (empty:
    /// off). Signed as a callback is, for the last segment of this path; only a hint: the
    /// payment's refund watch looks at once, and the Merchant status API decides.
    pub refund_path: String,
    /// Moved to `merchant.secret` (one secret key signs callbacks and status requests): set
    /// here, it is refused with a message saying where it goes now.
    #[serde(default, rename = "secret")]
    moved_secret: Option<SecretString>,
    /// Moved to `merchant.allow_short_secret`, likewise.
    #[serde(default, rename = "allow_short_secret")]
    moved_allow_short_secret: Option<bool>,
}

impl CallbackSettings {
    /// The refund notifications' path and the script name they are signed for, when on.
    pub fn refund_route(&self) -> Option<(&str, &str)> {
        let path = self.refund_path.trim();
        (!path.is_empty()).then(|| (path, default_script_name(path)))
    }

    /// The script name signatures are made for.
    pub fn script_name(&self) -> &str {
        match self.script_name.trim() {
            "" => default_script_name(&self.path),
            name => name,
        }
    }

    /// A key that moved to `[merchant]`, named with where it goes now: checked before
    /// anything else, so its message is not a missing `merchant.secret`.
    pub(super) fn check_moved(&self) -> Result<(), SettingsError> {
        let set = [
            self.moved_secret.is_some(),
            self.moved_allow_short_secret.is_some(),
        ];
        match MOVED.iter().zip(set).find(|(_, set)| *set) {
            Some(((from, to), _)) => Err(invalid(from, moved(to))),
            None => Ok(()),
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
        let path_ok = |path: &str| {
            path.starts_with('/')
                && path.len() > 1
                && !path.ends_with('/')
                && path.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
                })
        };
        if !path_ok(&self.path) {
            return Err(invalid(
                "callbacks.path",
                format!(
                    "{} is not a path like /freedompay/result (letters, digits, / - _ . ~)",
                    crate::text::excerpt(&self.path)
                ),
            ));
        }
        if let Some((refund_path, _)) = self.refund_route()
            && (!path_ok(refund_path) || refund_path == self.path)
        {
            return Err(invalid(
                "callbacks.refund_path",
                format!(
                    "{} is not a path like /freedompay/refund (letters, digits, / - _ . ~), \
                     other than callbacks.path; empty turns refund notifications off",
                    crate::text::excerpt(refund_path)
                ),
            ));
        }
        if self.script_name().is_empty() || self.script_name().contains(';') {
            return Err(invalid(
                "callbacks.script_name",
                "must name the script the provider signs for, e.g. result (no ;)",
            ));
        }
        Ok(())
    }
}

/// Keys that moved to `[merchant]` in issue 26 (one secret key signs callbacks and status
/// requests): from, to.
pub(super) const MOVED: [(&str, &str); 2] = [
    ("callbacks.secret", "merchant.secret"),
    (
        "callbacks.allow_short_secret",
        "merchant.allow_short_secret",
    ),
];

/// What to do about a key that moved to `to`.
pub(super) fn moved(to: &str) -> String {
    let variable = format!("{ENV_PREFIX}__{}", to.replace('.', "__")).to_ascii_uppercase();
    format!(
        "has moved to {to} (one secret key signs callbacks and status requests): set {variable} \
         instead, or move the line to [merchant] as {}",
        to.trim_start_matches("merchant.")
    )
}

/// The script name `pg_sig` is made for by default: the last segment of `path`.
pub fn default_script_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
