//! `[provider]`: Freedom Pay's Partner API and the merchant's credentials.

use super::*;

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

/// The credentials a command may need: the key, the variable that sets it, and what it is.
pub(super) const CREDENTIALS: [(&str, &str, &str); 4] = [
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
        "merchant.secret",
        "FREEDOMPAY_RECON__MERCHANT__SECRET",
        "the merchant's secret key, as callbacks.listen is set",
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
