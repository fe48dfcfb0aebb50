//! Freedom Pay's Result-URL callbacks (issue 18; docs/provider/RESULT_URL.md).
//!
//! After a payment succeeds or fails the provider calls the merchant's Result URL with the
//! outcome, signed with the merchant's secret key (`pg_sig`). The daemon takes these calls as
//! hints: a verified callback is stored as received ([`crate::store::callbacks`]), makes its
//! payment due at once and wakes a sweep; the signed Partner API poll decides what is recorded.
//!
//! This module is the pure part: reading the fields as the bytes they are, the signature
//! ([`signature`]), which fields a callback may carry ([`check_fields`]), what it claims and
//! the fingerprint of that claim ([`Claim`]: retries, replays and re-encodings of one claim
//! are one observation), how its fields are kept ([`fields_json`]) and the XML answer. The
//! endpoint is [`crate::http::callbacks`].
//!
//! Why the field check: `pg_sig` signs the values in the order of the names, not the names
//! themselves. Renaming a field so that it still sorts where it did (`pg_salt` →
//! `pg_salt_000001`, or `pg_order_id` → a second `pg_payment_id`) keeps a captured callback's
//! signature valid. Only the documented names, the merchant's own fields and no repeated
//! documented name leave a captured callback a handful of variants instead of unlimited ones;
//! docs/trust-boundaries.md says what remains.

pub mod signature;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};

use crate::domain::{PaymentId, parse_amount};

/// The largest callback body read, in bytes: a Result-URL request is a few dozen short fields.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// One field as it came: its name and value, percent-decoded to bytes (no character set is
/// assumed: the signature is over these bytes).
pub type Field = (Vec<u8>, Vec<u8>);

/// Every field name Freedom Pay documents for a Result-URL request; with
/// `callbacks.merchant_fields`, the only names a callback may carry ([`check_fields`]).
/// Sources: docs/provider/RESULT_URL.md ("Fields"); the Merchant API's "Result notify"
/// request (docs.freedompay.kz, api-12007677; docs.freedompay.uz, api-13679518), which adds
/// `pg_ps_full_amount`, `pg_description`, `pg_user_phone`, `pg_user_contact_email`, the card
/// fields `pg_card_id`, `pg_card_token`, `pg_card_pan`, `pg_card_exp`, `pg_card_owner`,
/// `pg_card_brand`, and `pg_payment_method`, `pg_discount_percent`, `pg_discount_amount`; the
/// bank and payer fields the provider reports about a payment on other routes (freedompay.kz
/// gateway-api "after-pay": `pg_card_name`, `pg_auth_code`, `pg_reference`,
/// `pg_intreference`, `pg_user_email`); and what a payment page may be created with and is
/// echoed on some routes (`pg_user_ip`, `pg_need_email_notification`,
/// `pg_recurring_profile_id`, `pg_recurring_profile_expiry_date`, `pg_param1` to `pg_param3`).
/// A field the provider starts sending that is not here is refused and logged by name: add it
/// to `callbacks.merchant_fields` until this list has it.
pub const DOCUMENTED_FIELDS: [&str; 41] = [
    "pg_amount",
    "pg_auth_code",
    "pg_can_reject",
    "pg_captured",
    "pg_card_brand",
    "pg_card_exp",
    "pg_card_id",
    "pg_card_name",
    "pg_card_owner",
    "pg_card_pan",
    "pg_card_token",
    "pg_currency",
    "pg_description",
    "pg_discount_amount",
    "pg_discount_percent",
    "pg_failure_code",
    "pg_failure_description",
    "pg_intreference",
    "pg_need_email_notification",
    "pg_net_amount",
    "pg_order_id",
    "pg_param1",
    "pg_param2",
    "pg_param3",
    "pg_payment_date",
    "pg_payment_id",
    "pg_payment_method",
    "pg_ps_amount",
    "pg_ps_currency",
    "pg_ps_full_amount",
    "pg_recurring_profile_expiry_date",
    "pg_recurring_profile_id",
    "pg_reference",
    "pg_result",
    "pg_salt",
    "pg_sig",
    "pg_testing_mode",
    "pg_user_contact_email",
    "pg_user_email",
    "pg_user_ip",
    "pg_user_phone",
];

/// The fields of one request, in the order they came: the query string's, then the
/// form-encoded body's. Names may repeat. Each name and value is percent-decoded (`+` is a
/// space) to the bytes sent, as `form_urlencoded::parse` splits and decodes them, but without
/// its lossy conversion to text: a value that is not UTF-8 must still verify and be kept.
pub fn fields(query: Option<&[u8]>, body: &[u8]) -> Vec<Field> {
    query
        .into_iter()
        .chain([body])
        .flat_map(|form| form.split(|&b| b == b'&'))
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(at) => (decoded(&pair[..at]), decoded(&pair[at + 1..])),
            None => (decoded(pair), Vec::new()),
        })
        .collect()
}

fn decoded(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced).collect()
}

/// A field's name for a log line or an answer: escaped, quoted, at most 64 characters.
pub fn shown_name(name: &[u8]) -> String {
    crate::text::excerpt(&String::from_utf8_lossy(name))
}

/// Why a signed callback is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A field neither documented nor in `callbacks.merchant_fields`.
    UnknownField(Vec<u8>),
    /// A documented field given twice: a claim must read one value, and a second
    /// `pg_payment_id` is how a renamed field would move another value into it.
    RepeatedField(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownField(name) => write!(
                f,
                "field {} is neither one Freedom Pay documents nor in callbacks.merchant_fields",
                shown_name(name)
            ),
            Self::RepeatedField(name) => write!(f, "field \"{name}\" is given more than once"),
        }
    }
}

/// Whether a callback carries only documented fields, each at most once, and the merchant's
/// own (`merchant_fields`, which may repeat: no claim reads them).
pub fn check_fields(fields: &[Field], merchant_fields: &[String]) -> Result<(), Refusal> {
    let mut seen = [false; DOCUMENTED_FIELDS.len()];
    for (name, _) in fields {
        match DOCUMENTED_FIELDS
            .iter()
            .position(|documented| documented.as_bytes() == name.as_slice())
        {
            Some(at) if seen[at] => return Err(Refusal::RepeatedField(DOCUMENTED_FIELDS[at])),
            Some(at) => seen[at] = true,
            None if merchant_fields
                .iter()
                .any(|m| m.as_bytes() == name.as_slice()) => {}
            None => return Err(Refusal::UnknownField(name.clone())),
        }
    }
    Ok(())
}

/// A field's value as far as text goes: absent or blank, text, or bytes no text column can
/// hold (why in words).
enum Value<'a> {
    Absent,
    Text(&'a str),
    Bytes(&'a [u8], &'static str),
}

/// The value of `name`: unambiguous once [`check_fields`] passed (no documented name twice).
fn value<'a>(fields: &'a [Field], name: &str) -> Value<'a> {
    let Some((_, raw)) = fields.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) else {
        return Value::Absent;
    };
    match std::str::from_utf8(raw) {
        Err(_) => Value::Bytes(raw, "is not UTF-8"),
        // PostgreSQL text cannot hold a NUL.
        Ok(text) if text.contains('\0') => Value::Bytes(raw, "holds a NUL"),
        Ok(text) => match text.trim() {
            "" => Value::Absent,
            trimmed => Value::Text(trimmed),
        },
    }
}

/// What a verified callback says, read from its fields. What it gives but the daemon cannot
/// read is `None`, and said in `problem`: the callback is still stored as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `pg_payment_id`, when it is a valid payment id.
    pub payment_id: Option<PaymentId>,
    /// `pg_order_id`, trimmed, when given.
    pub order_id: Option<String>,
    /// `pg_result`: `1` paid, `0` failed, else unknown.
    pub paid: Option<bool>,
    pub amount: Option<Decimal>,
    /// `pg_currency`, when it is three capital letters.
    pub currency: Option<String>,
    /// `pg_payment_date` of a paid claim: when the provider says the payment was paid, read
    /// in the provider's zone (`provider.naive_utc_offset`; the provider documents
    /// `YYYY-MM-DD HH:MM:SS`). Kept as what the provider said (`provider_paid_at`), never a
    /// verdict. Not read on other claims: a failed payment was never paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// What the callback gives that could not be read, e.g. `pg_amount: "ten" is not an
    /// amount; pg_order_id: holds a NUL`. Provider text in it is escaped and bounded.
    pub problem: Option<String>,
    /// One observation per claim: see [`Claim::read`].
    pub fingerprint: [u8; 32],
}

/// Fingerprints of this encoding start from this; another encoding gets another version, so
/// no two encodings can give one fingerprint by accident. (Rows from before it, migration
/// `callbacks_as_claimed`, keep the raw-fields fingerprint they were stored with.)
const FINGERPRINT_V2: &[u8] = b"freedompay-recon callback claim v2\n";

/// The fields a claim is made of, in the fingerprint's order; the first five are read.
const CLAIMED: [&str; 8] = [
    "pg_payment_id",
    "pg_order_id",
    "pg_result",
    "pg_amount",
    "pg_currency",
    "pg_payment_date",
    "pg_captured",
    "pg_failure_code",
];

/// One claimed field in the fingerprint: absent, its reading (a parsed amount as its
/// normalised number, an id as the intake rules read it), or the bytes it came as, when it
/// cannot be read.
enum Canonical {
    Absent,
    Read(String),
    Raw(Vec<u8>),
}

impl Claim {
    /// Reads what `fields` claim and fingerprints it: sha256 over [`FINGERPRINT_V2`] and each
    /// of [`CLAIMED`] as a tag (absent, read, raw) and length-prefixed bytes. A timestamp
    /// without an offset is in `naive_offset` (the provider's zone). Everything else
    /// (`pg_salt`, `pg_sig`, `pg_can_reject`, which only the first call sets, card details,
    /// the merchant's fields, the fields' order and encoding) is left out: the provider's
    /// retries and any re-encoding of one claim are one observation, and a renamed or added
    /// field makes no new one.
    pub fn read(fields: &[Field], naive_offset: FixedOffset) -> Self {
        let mut problems = Vec::new();
        let mut canonical = Vec::with_capacity(CLAIMED.len());
        let mut claim = Self {
            payment_id: None,
            order_id: None,
            paid: None,
            amount: None,
            currency: None,
            paid_at: None,
            problem: None,
            fingerprint: [0; 32],
        };
        for name in CLAIMED {
            let text = match value(fields, name) {
                Value::Absent => {
                    canonical.push(Canonical::Absent);
                    continue;
                }
                Value::Bytes(raw, why) => {
                    problems.push(format!("{name}: {why}"));
                    canonical.push(Canonical::Raw(raw.to_vec()));
                    continue;
                }
                Value::Text(text) => text,
            };
            let excerpt = crate::text::excerpt(text);
            let read: Result<Option<String>, String> = match name {
                "pg_payment_id" => PaymentId::from_input(text)
                    .map(|id| {
                        let shown = id.as_str().to_owned();
                        claim.payment_id = Some(id);
                        Some(shown)
                    })
                    .map_err(|e| format!("{name}: {e}")),
                "pg_order_id" => {
                    crate::domain::optional_text(text, crate::domain::ORDER_ID_MAX_LEN)
                        .inspect(|id| claim.order_id.clone_from(id))
                        .map_err(|e| format!("{name}: order id {e}"))
                }
                "pg_result" => match text {
                    "1" | "0" => {
                        claim.paid = Some(text == "1");
                        Ok(Some(text.to_owned()))
                    }
                    _ => Err(format!(
                        "{name}: {excerpt} is neither 1 (paid) nor 0 (failed)"
                    )),
                },
                "pg_amount" => match parse_amount(text) {
                    Ok(amount) => {
                        claim.amount = Some(amount);
                        // 5000, 5000.0 and 5000.00 are one amount.
                        Ok(Some(amount.normalize().to_string()))
                    }
                    Err(_) => Err(format!("{name}: {excerpt} is not an amount")),
                },
                "pg_currency" => {
                    if text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase()) {
                        claim.currency = Some(text.to_owned());
                        Ok(Some(text.to_owned()))
                    } else {
                        Err(format!("{name}: {excerpt} is not a currency code"))
                    }
                }
                // Read only on a paid claim (pg_result comes first in CLAIMED), and told
                // apart by its text, trimmed, either way: the fingerprint is what it was
                // before the date was read, so a claim stored then is the same claim now.
                "pg_payment_date" => {
                    if claim.paid == Some(true) {
                        match crate::domain::rules::parse_timestamp(text, naive_offset) {
                            Some(at) if crate::domain::rules::timestamp_problem(at).is_none() => {
                                claim.paid_at = Some(at);
                            }
                            _ => problems.push(format!(
                                "{name}: {excerpt} is not a time (YYYY-MM-DD HH:MM:SS)"
                            )),
                        }
                    }
                    Ok(Some(text.to_owned()))
                }
                // Not read, only told apart: a flag, a code, trimmed.
                _ => Ok(Some(text.to_owned())),
            };
            canonical.push(match read {
                Ok(Some(reading)) => Canonical::Read(reading),
                Ok(None) => Canonical::Absent,
                Err(problem) => {
                    problems.push(problem);
                    Canonical::Raw(text.as_bytes().to_vec())
                }
            });
        }
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_V2);
        for part in &canonical {
            let (tag, bytes): (u8, &[u8]) = match part {
                Canonical::Absent => (0, b""),
                Canonical::Read(reading) => (1, reading.as_bytes()),
                Canonical::Raw(raw) => (2, raw),
            };
            hasher.update([tag]);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        claim.fingerprint = hasher.finalize().into();
        claim.problem = (!problems.is_empty()).then(|| problems.join("; "));
        claim
    }
}

/// The fields as `recon.callbacks.fields` keeps them: `[[name, value], …]` in the order they
/// came, each a JSON string, except one jsonb cannot hold (bytes that are not UTF-8, or a NUL),
/// which is `{"base64": "…"}` (standard alphabet, padded). `raw_query` and `raw_body` keep
/// the request itself.
pub fn fields_json(fields: &[Field]) -> serde_json::Value {
    let as_json = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => serde_json::Value::String(text.to_owned()),
        _ => serde_json::json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(bytes)
        }),
    };
    serde_json::Value::Array(
        fields
            .iter()
            .map(|(name, value)| serde_json::Value::Array(vec![as_json(name), as_json(value)]))
            .collect(),
    )
}

/// The answer the provider expects: `<response>` with `pg_status` `ok`, a fresh `pg_salt`
/// and `pg_sig` signed the same way (script name included). The daemon never answers
/// `rejected` (RESULT_URL.md, "The answer the provider expects").
pub fn ok_response(script: &str, secret: &SecretString) -> String {
    let salt = hex::encode(rand::random::<[u8; 8]>());
    let fields = [("pg_status", "ok"), ("pg_salt", salt.as_str())];
    let sig = signature::sign(script, &fields, secret);
    // Every value is ours (hex and a constant): nothing to escape.
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<response><pg_status>ok</pg_status>\
         <pg_salt>{salt}</pg_salt><pg_sig>{sig}</pg_sig></response>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The provider's zone, as `provider.naive_utc_offset` has it by default.
    fn almaty() -> FixedOffset {
        FixedOffset::east_opt(5 * 3600).unwrap()
    }

    fn field(name: &str, value: &str) -> Field {
        (name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn fields_come_from_the_query_then_the_body_in_order_as_bytes() {
        let got = fields(
            Some(b"pg_salt=a%20b&pg_x=1"),
            b"pg_x=2&pg_order_id=A%2B1+2&&pg_description=%CE%EF%00&flag",
        );
        assert_eq!(
            got,
            [
                field("pg_salt", "a b"),
                field("pg_x", "1"),
                field("pg_x", "2"),
                field("pg_order_id", "A+1 2"),
                (b"pg_description".to_vec(), vec![0xCE, 0xEF, 0x00]),
                field("flag", ""),
            ]
        );
        // The same splitting and decoding as form_urlencoded, where the bytes are UTF-8.
        let body = b"a=1&b=x%2By+z&c&=d&e=%E2%82%AC";
        let ours: Vec<(String, String)> = fields(None, body)
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        let theirs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn only_documented_fields_once_and_the_merchants_own_are_accepted() {
        let merchant = ["basket".to_owned()];
        let ok = fields(
            None,
            b"pg_payment_id=1&pg_salt=s&basket=1&basket=2&pg_sig=x",
        );
        assert_eq!(check_fields(&ok, &merchant), Ok(()));
        let renamed = fields(None, b"pg_payment_id=1&pg_salt_000001=s&pg_sig=x");
        assert_eq!(
            check_fields(&renamed, &merchant),
            Err(Refusal::UnknownField(b"pg_salt_000001".to_vec()))
        );
        assert_eq!(
            check_fields(&ok, &[]),
            Err(Refusal::UnknownField(b"basket".to_vec())),
            "a merchant field only when configured"
        );
        let repeated = fields(None, b"pg_payment_id=A-1&pg_payment_id=1&pg_sig=x");
        assert_eq!(
            check_fields(&repeated, &merchant),
            Err(Refusal::RepeatedField("pg_payment_id"))
        );
        // A name that is no text is shown escaped.
        let odd = fields(None, b"%1B%5B31m=1");
        let refusal = check_fields(&odd, &merchant).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "field \"\\u{1b}[31m\" is neither one Freedom Pay documents nor in \
             callbacks.merchant_fields"
        );
    }

    #[test]
    fn the_documented_names_are_sorted_and_distinct() {
        let mut sorted = DOCUMENTED_FIELDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, DOCUMENTED_FIELDS);
        assert!(DOCUMENTED_FIELDS.iter().all(|n| n.starts_with("pg_")));
        for claimed in CLAIMED {
            assert!(DOCUMENTED_FIELDS.contains(&claimed), "{claimed}");
        }
    }

    #[test]
    fn a_claim_reads_what_it_can_and_says_what_it_cannot() {
        let given = fields(
            None,
            b"pg_payment_id=%20123&pg_order_id=A-1&pg_result=1&pg_amount=100.50&pg_currency=KZT",
        );
        let claim = Claim::read(&given, almaty());
        assert_eq!(claim.payment_id.unwrap().as_str(), "123");
        assert_eq!(claim.order_id.as_deref(), Some("A-1"));
        assert_eq!(claim.paid, Some(true));
        assert_eq!(claim.amount, Some(Decimal::new(10050, 2)));
        assert_eq!(claim.currency.as_deref(), Some("KZT"));
        assert_eq!(claim.problem, None);

        let odd = Claim::read(
            &fields(
                None,
                b"pg_payment_id=%01&pg_order_id=A%00&pg_result=yes&pg_amount=ten&pg_currency=kzt",
            ),
            almaty(),
        );
        assert_eq!(
            (
                odd.payment_id,
                odd.order_id,
                odd.paid,
                odd.amount,
                odd.currency
            ),
            (None, None, None, None, None)
        );
        assert_eq!(
            odd.problem.as_deref(),
            Some(
                "pg_payment_id: payment id contains a control or invisible character (U+0001); \
                 pg_order_id: holds a NUL; \
                 pg_result: \"yes\" is neither 1 (paid) nor 0 (failed); \
                 pg_amount: \"ten\" is not an amount; \
                 pg_currency: \"kzt\" is not a currency code"
            )
        );
        let not_utf8 = Claim::read(&fields(None, b"pg_payment_id=1&pg_amount=%FF"), almaty());
        assert_eq!(not_utf8.problem.as_deref(), Some("pg_amount: is not UTF-8"));
        // Absent and blank are not problems.
        assert_eq!(
            Claim::read(&fields(None, b"pg_payment_id=1&pg_order_id=+"), almaty()).problem,
            None
        );
    }

    #[test]
    fn a_paid_claims_payment_date_is_read_in_the_providers_zone_and_said_when_it_cannot_be() {
        let paid = Claim::read(
            &fields(
                None,
                b"pg_payment_id=1&pg_result=1&pg_amount=5000.00&pg_payment_date=2026-11-20+14%3A03%3A00",
            ),
            almaty(),
        );
        assert_eq!(
            paid.paid_at,
            Some("2026-11-20T09:03:00Z".parse().unwrap()),
            "14:03 in Almaty (+05:00)"
        );
        assert_eq!(paid.problem, None);
        // Its fingerprint is the one it had before the date was read (pinned from that
        // encoding): a claim stored then is the same claim now.
        assert_eq!(
            hex::encode(paid.fingerprint),
            "15f5771943e698f01530ec84b44658e1b0a5afaad849633e17be63dc79c5b798"
        );

        // A failed claim's date is no payment time: not read, not a problem.
        let failed = Claim::read(
            &fields(
                None,
                b"pg_payment_id=1&pg_result=0&pg_payment_date=0000-00-00",
            ),
            almaty(),
        );
        assert_eq!((failed.paid_at, failed.problem), (None, None));

        let unreadable = Claim::read(
            &fields(
                None,
                b"pg_payment_id=1&pg_result=1&pg_amount=5000.00&pg_payment_date=20.11.2026+14%3A03",
            ),
            almaty(),
        );
        assert_eq!(unreadable.paid_at, None);
        assert_eq!(
            unreadable.problem.as_deref(),
            Some("pg_payment_date: \"20.11.2026 14:03\" is not a time (YYYY-MM-DD HH:MM:SS)")
        );
        assert_eq!(
            hex::encode(unreadable.fingerprint),
            "9b111c4d8fc43f2223c9bd7c102bd3728690d4bbbb7c7a8f38c8f041a71c4bbf",
            "told apart by its text, as before"
        );
    }

    #[test]
    fn one_claim_is_one_fingerprint_however_it_is_sent() {
        let of = |body: &[u8]| Claim::read(&fields(None, body), almaty()).fingerprint;
        let first = of(
            b"pg_payment_id=1&pg_amount=5000.00&pg_result=1&pg_can_reject=1&pg_salt=x&pg_sig=s1",
        );
        for same in [
            // The provider's retry: a new salt and signature, and it can no longer reject.
            &b"pg_salt=y&pg_result=1&pg_payment_id=1&pg_amount=5000.00&pg_can_reject=0&pg_sig=s2"[..],
            // Re-encoded: the same number, spaces, percent-escapes, card details added.
            b"pg_payment_id=+1+&pg_amount=5000&pg_result=%31&pg_card_pan=4111",
        ] {
            assert_eq!(first, of(same), "{}", String::from_utf8_lossy(same));
        }
        for other in [
            &b"pg_payment_id=1&pg_amount=5000.00&pg_result=0"[..],
            b"pg_payment_id=2&pg_amount=5000.00&pg_result=1",
            b"pg_payment_id=1&pg_amount=5000.01&pg_result=1",
            b"pg_payment_id=1&pg_amount=5000.00&pg_result=1&pg_currency=KZT",
            b"pg_payment_id=1&pg_amount=5000.00&pg_result=1&pg_payment_date=2026-01-01",
            b"pg_payment_id=1&pg_amount=5000.00&pg_result=1&pg_captured=1",
            // A value moved to another claimed field is another claim.
            b"pg_order_id=1&pg_amount=5000.00&pg_result=1",
        ] {
            assert_ne!(first, of(other), "{}", String::from_utf8_lossy(other));
        }
        // Unreadable values are told apart by their bytes.
        assert_ne!(of(b"pg_amount=%FF"), of(b"pg_amount=%FE"));
        assert_ne!(of(b"pg_amount=ten"), of(b"pg_amount=eleven"));
        assert_ne!(of(b"pg_amount=%FF"), of(b""));
    }

    #[test]
    fn fields_are_kept_as_json_strings_or_base64_when_jsonb_cannot_hold_them() {
        let given = fields(None, b"pg_order_id=A-1&pg_description=a%00b&x=%CE%EF");
        assert_eq!(
            fields_json(&given),
            serde_json::json!([
                ["pg_order_id", "A-1"],
                ["pg_description", { "base64": "YQBi" }],
                ["x", { "base64": "zu8=" }],
            ])
        );
    }

    #[test]
    fn the_answer_is_signed_like_a_callback() {
        let secret = SecretString::from("k3y".to_owned());
        let xml = ok_response("result", &secret);
        let tag = |name: &str| {
            let open = format!("<{name}>");
            let start = xml.find(&open).unwrap() + open.len();
            let end = xml[start..].find('<').unwrap() + start;
            xml[start..end].to_owned()
        };
        assert_eq!(tag("pg_status"), "ok");
        let answer = [
            ("pg_status".to_owned(), tag("pg_status")),
            ("pg_salt".to_owned(), tag("pg_salt")),
            ("pg_sig".to_owned(), tag("pg_sig")),
        ];
        assert!(signature::verify("result", &answer, &secret), "{xml}");
    }
}
