//! Freedom Pay's Result-URL callbacks (issue 18; docs/provider/RESULT_URL.md).
//!
//! After a payment succeeds or fails the provider calls the merchant's Result URL with the
//! outcome, signed with the merchant's secret key (`pg_sig`). The daemon takes these calls as
//! hints: a verified callback is stored as received ([`crate::store::callbacks`]), makes its
//! payment due at once and wakes a sweep; the signed Partner API poll decides what is recorded.
//!
//! This module is the pure part: reading the fields, the signature ([`signature`]), what a
//! callback claims, its fingerprint (so retries and replays are one observation) and the XML
//! answer. The listener is [`serve`].

mod listener;
pub mod signature;

use rust_decimal::Decimal;
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};

pub use listener::{CALLBACKS, CALLBACKS_MATCHED, CallbackListener, describe, serve};

use crate::domain::{PaymentId, parse_amount};

/// The largest callback body read, in bytes: a Result-URL request is a few dozen short fields.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The fields of one request, in the order they came: the query string's, then the
/// form-encoded body's. Names may repeat.
pub fn fields(query: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    fields.extend(form_urlencoded::parse(body).into_owned());
    fields
}

/// The first value of `name`, if any.
fn first<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// What a verified callback says, read from its fields. Anything unreadable is `None`: the
/// callback is still stored as received.
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
}

impl Claim {
    pub fn read(fields: &[(String, String)]) -> Self {
        let text = |name| first(fields, name).map(str::trim).filter(|v| !v.is_empty());
        Self {
            payment_id: text("pg_payment_id").and_then(|id| PaymentId::from_input(id).ok()),
            order_id: text("pg_order_id")
                .and_then(|id| {
                    crate::domain::optional_text(id, crate::domain::ORDER_ID_MAX_LEN).ok()
                })
                .flatten(),
            paid: match text("pg_result") {
                Some("1") => Some(true),
                Some("0") => Some(false),
                _ => None,
            },
            amount: text("pg_amount").and_then(|a| parse_amount(a).ok()),
            currency: text("pg_currency")
                .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
                .map(str::to_owned),
        }
    }
}

/// One distinct callback: sha256 of its fields without `pg_salt` and `pg_sig`, sorted by
/// name (same names in arrival order), each as length-prefixed name and value. The
/// provider's retries re-sign with a new salt; they, and replays, share this.
pub fn fingerprint(fields: &[(String, String)]) -> [u8; 32] {
    let mut kept: Vec<&(String, String)> = fields
        .iter()
        .filter(|(name, _)| name != "pg_salt" && name != signature::SIG)
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    for (name, value) in kept {
        for part in [name, value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hasher.finalize().into()
}

/// The answer the provider expects: `<response>` with `pg_status` `ok`, a fresh `pg_salt`
/// and `pg_sig` signed the same way (script name included). The daemon never answers
/// `rejected` (RESULT_URL.md, "The answer the provider expects").
pub fn ok_response(script: &str, secret: &SecretString) -> String {
    let salt = hex::encode(rand::random::<[u8; 8]>());
    let fields = [
        ("pg_status".to_owned(), "ok".to_owned()),
        ("pg_salt".to_owned(), salt.clone()),
    ];
    let sig = signature::sign(script, &fields, secret);
    // Every value is ours (hex and a constant): nothing to escape.
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<response><pg_status>ok</pg_status>\
         <pg_salt>{salt}</pg_salt><pg_sig>{sig}</pg_sig></response>\n"
    )
}

/// The script name `pg_sig` is made for by default: the last segment of `path`.
pub fn default_script_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_the_query_then_the_body_in_order() {
        let got = fields(Some("pg_salt=a%20b&pg_x=1"), b"pg_x=2&pg_order_id=A%2B1");
        assert_eq!(
            got,
            [
                ("pg_salt", "a b"),
                ("pg_x", "1"),
                ("pg_x", "2"),
                ("pg_order_id", "A+1")
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn a_claim_reads_what_it_can_and_nothing_else() {
        let given = fields(
            None,
            b"pg_payment_id=%20123&pg_order_id=A-1&pg_result=1&pg_amount=100.50&pg_currency=KZT",
        );
        let claim = Claim::read(&given);
        assert_eq!(claim.payment_id.unwrap().as_str(), "123");
        assert_eq!(claim.order_id.as_deref(), Some("A-1"));
        assert_eq!(claim.paid, Some(true));
        assert_eq!(claim.amount, Some(Decimal::new(10050, 2)));
        assert_eq!(claim.currency.as_deref(), Some("KZT"));

        let odd = Claim::read(&fields(
            None,
            b"pg_payment_id=%01&pg_result=yes&pg_amount=ten&pg_currency=kzt",
        ));
        assert_eq!(
            odd,
            Claim {
                payment_id: None,
                order_id: None,
                paid: None,
                amount: None,
                currency: None
            }
        );
    }

    #[test]
    fn retries_with_a_new_salt_share_a_fingerprint_and_other_values_do_not() {
        let a = fields(None, b"pg_payment_id=1&pg_result=1&pg_salt=x&pg_sig=s1");
        let retry = fields(None, b"pg_salt=y&pg_result=1&pg_payment_id=1&pg_sig=s2");
        let other = fields(None, b"pg_payment_id=1&pg_result=0&pg_salt=x&pg_sig=s1");
        assert_eq!(fingerprint(&a), fingerprint(&retry));
        assert_ne!(fingerprint(&a), fingerprint(&other));
        // Length prefixes: moving a character from a name to its value is another callback.
        let shifted = fields(None, b"pg_payment_i=d1&pg_result=1");
        assert_ne!(
            fingerprint(&fields(None, b"pg_payment_id=1&pg_result=1")),
            fingerprint(&shifted)
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

    #[test]
    fn the_default_script_name_is_the_paths_last_segment() {
        assert_eq!(default_script_name("/freedompay/result"), "result");
        assert_eq!(default_script_name("result"), "result");
    }
}
