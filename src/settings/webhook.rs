//! `[webhook]` and `[events]`: the outbox's delivery and retention.

use super::*;

/// The outbox's retention (`docs/operations.md`, "Partitions and event retention").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Whole monthly partitions of `recon.events` whose month ended longer ago than this are
    /// dropped by the daemon's maintenance: with a webhook configured, only once every event
    /// in them was delivered, skipped or abandoned; without one, whatever their state.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
}

/// The event types of `recon.events`, in the order a payment's life produces them.
pub const EVENT_TYPES: [&str; 4] = [
    "status_changed",
    "flag_opened",
    "flag_resolved",
    "adjustment_booked",
];

/// Where events are POSTed (`docs/operations.md`, "Webhooks"). An empty URL turns delivery off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// A secret too: a receiver's URL may carry a token (kept out of `Debug` and logs).
    pub url: SecretString,
    /// The signing key; never logged. Under `standard`, `whsec_` and the base64 of the key.
    pub secret: SecretString,
    /// How each delivery is signed: `standard` or `github`.
    pub format: WebhookFormat,
    /// One delivery attempt, connection to last byte.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// An event still failing this long after its first delivery attempt is abandoned.
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    /// Which event types to send; the others stay in `recon.events`, unsent.
    #[serde(deserialize_with = "strings")]
    pub types: Vec<String>,
}

/// How a webhook delivery is signed (`webhook.format`).
///
/// `standard` is the default for new configurations. A deployment upgraded from a version
/// that had no `webhook.format` and signed the GitHub way does not switch silently: its
/// plain secret is no `whsec_` secret, so the loader refuses it and says both ways on
/// (keep the old shape with `format = "github"`, or give the receiver a new `whsec_`
/// secret). Nothing is sent in a shape the receiver was not told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// [Standard Webhooks](https://www.standardwebhooks.com/): `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
    /// "{id}.{timestamp}.{body}">`. The id and time are signed with the body, so a receiver
    /// that refuses old timestamps and ids it has seen cannot be replayed to.
    Standard,
    /// GitHub's shape: `X-Recon-Event-Id` and `X-Recon-Signature: sha256=<hex HMAC-SHA256 of
    /// the body>`. It signs the body alone: a captured delivery verifies forever.
    Github,
}

impl WebhookFormat {
    /// What `webhook.format` may be, as written.
    const NAMES: [&str; 2] = ["standard", "github"];
}

/// A `webhook.format` it does not take is named with the ones it does, in the loader's own
/// words: the `config` crate's message for an unknown enum value names neither.
pub(super) fn check_webhook_format(config: &Config) -> Result<(), SettingsError> {
    match config.get_string("webhook.format") {
        Ok(format) if !WebhookFormat::NAMES.contains(&format.as_str()) => Err(invalid(
            "webhook.format",
            format!(
                "{} is not a format; use \"standard\" (Standard Webhooks) or \"github\" \
                 (X-Recon-Signature, as before this setting)",
                crate::text::excerpt(&format)
            ),
        )),
        _ => Ok(()),
    }
}

/// How `webhook.secret` is made for `format = "standard"`, for messages.
pub(super) const WHSEC_HOW: &str = "generate one with: echo \"whsec_$(openssl rand -base64 32)\"";
/// The fewest key bytes a `whsec_` secret may hold (Standard Webhooks recommends 24 to 64).
pub(super) const WHSEC_MIN_BYTES: usize = 16;

impl WebhookSettings {
    pub fn enabled(&self) -> bool {
        !self.url.expose_secret().trim().is_empty()
    }

    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if let Some(unknown) = self
            .types
            .iter()
            .find(|t| !EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(invalid(
                "webhook.types",
                format!(
                    "{unknown:?} is not an event type; use any of {}",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        let url = reqwest::Url::parse(self.url.expose_secret().trim()).map_err(|e| {
            invalid(
                "webhook.url",
                format!("is not a URL ({e}); e.g. https://erp.example/hooks/recon"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("webhook.url", "must be an http(s) URL"));
        }
        self.signing_key()?;
        if self.types.is_empty() {
            return Err(invalid("webhook.types", "name at least one event type"));
        }
        Ok(())
    }

    /// The HMAC key `webhook.secret` gives under `webhook.format`: under `standard` the bytes
    /// the base64 after `whsec_` stands for, under `github` the secret's own bytes (as they
    /// always were). Checked at load; the deliverer keys its signatures with it. No message
    /// quotes the secret, or any part of it.
    pub fn signing_key(&self) -> Result<SecretSlice<u8>, SettingsError> {
        let secret = self.secret.expose_secret();
        match self.format {
            WebhookFormat::Github => {
                // Whitespace is no key: 16 spaces would sign with something anyone can guess.
                if secret.trim().chars().count() < 16 {
                    return Err(invalid(
                        "webhook.secret",
                        "must be set, at least 16 characters other than spaces at either end, \
                         when webhook.url is (set FREEDOMPAY_RECON__WEBHOOK__SECRET; systemd: in \
                         the EnvironmentFile)",
                    ));
                }
                Ok(SecretSlice::from(secret.as_bytes().to_vec()))
            }
            WebhookFormat::Standard => standard_key(secret.trim()),
        }
    }
}

/// The key of a Standard Webhooks secret: `whsec_` and the base64 (standard alphabet, padded)
/// of at least [`WHSEC_MIN_BYTES`] bytes.
pub(super) fn standard_key(secret: &str) -> Result<SecretSlice<u8>, SettingsError> {
    if secret.is_empty() {
        return Err(invalid(
            "webhook.secret",
            format!(
                "must be set when webhook.url is: a Standard Webhooks secret, whsec_ and the \
                 base64 of 24 or more random bytes ({WHSEC_HOW}; set \
                 FREEDOMPAY_RECON__WEBHOOK__SECRET; systemd: in the EnvironmentFile)"
            ),
        ));
    }
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return Err(invalid(
            "webhook.secret",
            format!(
                "is not a Standard Webhooks secret (whsec_ and base64), which webhook.format = \
                 \"standard\" (the default) signs with; to keep the earlier deliveries \
                 (X-Recon-Signature) set webhook.format = \"github\", or {WHSEC_HOW} and give \
                 it to the receiver"
            ),
        ));
    };
    // The decoder's own message names the offending character: not repeated here.
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            invalid(
                "webhook.secret",
                format!(
                    "the part after whsec_ is not base64 (standard alphabet, padded with =); \
                     {WHSEC_HOW}"
                ),
            )
        })?;
    if key.len() < WHSEC_MIN_BYTES {
        return Err(invalid(
            "webhook.secret",
            format!(
                "holds {} key bytes; at least {WHSEC_MIN_BYTES} are needed, 24 or more \
                 recommended; {WHSEC_HOW}",
                key.len()
            ),
        ));
    }
    Ok(SecretSlice::from(key))
}
