//! The Merchant status API, `POST {api}/get_status3.php` (docs/provider/MERCHANT_STATUS.md):
//! the signed request form and a strict reader of its signed XML answer, both pure, and
//! [`fetch_status`], which posts one and reads the other.
//!
//! The request is signed as a Result-URL callback is (`pg_sig`, script `get_status3.php`).
//! The answer is verified over every field, nested ones included: an element's children sort
//! by their names where their parent sorts (stably, so same-name siblings such as several
//! `pg_refund_payment` keep document order), a nested element contributes its leaves in that
//! order, and an empty element is an empty value. Only a verified answer is read.
//!
//! Everything read is ready for PostgreSQL and a terminal: amounts exact (never a float),
//! text cleaned and cut, times naive in the provider's zone. An unreadable field makes the
//! whole answer unreadable, naming the field.

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::callbacks::signature;
use crate::domain::Currency;
use crate::domain::money::{MoneyFact, MoneyKind, MoneySource};
use crate::domain::rules::{exact_amount, parse_timestamp};
use crate::text::{PROVIDER_TEXT_MAX_CHARS, clean, excerpt};

/// The documented status script (`merchant.status_script`'s default): its name is what the
/// request and its answer are signed with.
pub const SCRIPT: &str = "get_status3.php";

/// The largest answer read. A status with dozens of refunds is a few kilobytes.
pub const ANSWER_MAX_BYTES: usize = 256 * 1024;

/// How deep an answer's elements may nest (the documented answer nests three deep).
const MAX_DEPTH: usize = 8;

/// Which payment to ask about: by the provider's payment id, or by the merchant's order id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    PaymentId(String),
    OrderId(String),
}

/// The signed form fields of a status request to `script` (the name signed: the last segment
/// of its path), `pg_sig` last.
pub fn request_form(
    script: &str,
    merchant_id: &str,
    lookup: &Lookup,
    salt: &str,
    secret: &SecretString,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![("pg_merchant_id", merchant_id.to_owned())];
    match lookup {
        Lookup::PaymentId(id) => fields.push(("pg_payment_id", id.clone())),
        Lookup::OrderId(id) => fields.push(("pg_order_id", id.clone())),
    }
    fields.push(("pg_salt", salt.to_owned()));
    let sig = signature::sign(script, &fields, secret);
    fields.push((signature::SIG, sig));
    fields
}

/// Why an answer was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the status answer is larger than {ANSWER_MAX_BYTES} bytes")]
    TooLarge,
    #[error("the status answer is not XML: {0}")]
    NotXml(String),
    #[error("the status answer nests deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("the status answer carries no pg_sig, or more than one")]
    Unsigned,
    #[error("the status answer's pg_sig is not ours: wrong secret key, or the answer was changed")]
    BadSignature,
    #[error("the status answer's {field} is unreadable: {problem}")]
    Field { field: String, problem: String },
}

/// A refund, reversal or other child payment the answer lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The list it came in (`pg_refund_payments`, `pg_revoked_payments`).
    pub list: String,
    pub payment_id: Option<String>,
    pub status: Option<String>,
    /// Signed as the provider sends it: negative for money returned.
    pub amount: Option<Decimal>,
    pub date: Option<DateTime<Utc>>,
    pub reference: Option<String>,
}

/// A verified answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAnswer {
    /// `pg_status`: `ok`, or `error` with [`StatusAnswer::error`].
    pub ok: bool,
    pub error: Option<(Option<String>, Option<String>)>,
    pub payment_id: Option<String>,
    pub order_id: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub payment_status: Option<String>,
    pub captured: Option<bool>,
    pub clearing_amount: Option<Decimal>,
    pub refund_amount: Option<Decimal>,
    pub revoke_amount: Option<Decimal>,
    /// Amount less the provider's commission, where the answer states it.
    pub net_amount: Option<Decimal>,
    pub payment_date: Option<DateTime<Utc>>,
    pub children: Vec<Child>,
}

/// One element as the signature reads it: its name, and its text or its children.
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

fn tree(element: roxmltree::Node<'_, '_>, depth: usize) -> Result<Node, AnswerError> {
    if depth > MAX_DEPTH {
        return Err(AnswerError::TooDeep);
    }
    let children = element
        .children()
        .filter(|c| c.is_element())
        .map(|c| tree(c, depth + 1))
        .collect::<Result<Vec<_>, _>>()?;
    let text = if children.is_empty() {
        element
            .children()
            .filter(|c| c.is_text())
            .filter_map(|c| c.text())
            .collect()
    } else {
        String::new()
    };
    Ok(Node {
        name: element.tag_name().name().to_owned(),
        text,
        children,
    })
}

/// The leaves' values in signing order (see the module's documentation); the root's `pg_sig`
/// is left out.
fn signed_values<'n>(node: &'n Node, top: bool, out: &mut Vec<&'n str>) {
    let mut children: Vec<&Node> = node
        .children
        .iter()
        .filter(|c| !(top && c.name == signature::SIG))
        .collect();
    children.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for child in children {
        if child.children.is_empty() {
            out.push(&child.text);
        } else {
            signed_values(child, false, out);
        }
    }
}

/// An answer parsed into the tree its signature is made over.
fn parse(bytes: &[u8]) -> Result<Node, AnswerError> {
    if bytes.len() > ANSWER_MAX_BYTES {
        return Err(AnswerError::TooLarge);
    }
    let text =
        std::str::from_utf8(bytes).map_err(|e| AnswerError::NotXml(format!("not UTF-8 ({e})")))?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let document = roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| AnswerError::NotXml(clean(&e.to_string(), 200)))?;
    tree(document.root_element(), 0)
}

/// The `pg_sig` an answer from `script` calls for (any `pg_sig` it carries ignored): how the
/// provider signs, and how the simulator does.
pub fn answer_signature(
    script: &str,
    bytes: &[u8],
    secret: &SecretString,
) -> Result<String, AnswerError> {
    let root = parse(bytes)?;
    let mut signed = Vec::new();
    signed_values(&root, true, &mut signed);
    Ok(signature::sign_in_order(script, signed, secret))
}

/// Verifies the signature of an answer from `script` and reads it. `naive_offset` is the zone
/// of the provider's naive times.
pub fn read_answer(
    script: &str,
    bytes: &[u8],
    secret: &SecretString,
    naive_offset: FixedOffset,
) -> Result<StatusAnswer, AnswerError> {
    let root = parse(bytes)?;
    let sigs: Vec<&Node> = root
        .children
        .iter()
        .filter(|c| c.name == signature::SIG)
        .collect();
    let [sig] = sigs.as_slice() else {
        return Err(AnswerError::Unsigned);
    };
    let mut signed = Vec::new();
    signed_values(&root, true, &mut signed);
    let expected = signature::sign_in_order(script, signed, secret);
    if !signature::same_signature(&expected, sig.text.as_bytes()) {
        return Err(AnswerError::BadSignature);
    }
    Reader { naive_offset }.answer(&root)
}

struct Reader {
    naive_offset: FixedOffset,
}

fn field_error(field: &str, problem: impl Into<String>) -> AnswerError {
    AnswerError::Field {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

impl Reader {
    fn leaf<'n>(node: &'n Node, name: &str) -> Result<Option<&'n str>, AnswerError> {
        let mut found = node.children.iter().filter(|c| c.name == name);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(field_error(name, "given more than once")),
            (Some(leaf), None) if !leaf.children.is_empty() => {
                Err(field_error(name, "is a list, not a value"))
            }
            (Some(leaf), None) => {
                let value = leaf.text.trim();
                Ok((!value.is_empty()).then_some(value))
            }
        }
    }

    fn text(node: &Node, name: &str) -> Result<Option<String>, AnswerError> {
        Ok(Self::leaf(node, name)?.map(|v| clean(v, PROVIDER_TEXT_MAX_CHARS)))
    }

    fn amount(node: &Node, name: &str) -> Result<Option<Decimal>, AnswerError> {
        Self::leaf(node, name)?
            .map(|v| exact_amount(v).map_err(|problem| field_error(name, problem)))
            .transpose()
    }

    fn time(&self, node: &Node, name: &str) -> Result<Option<DateTime<Utc>>, AnswerError> {
        Self::leaf(node, name)?
            .map(|v| {
                parse_timestamp(v, self.naive_offset).ok_or_else(|| {
                    field_error(name, format!("{} is not a date and time", excerpt(v)))
                })
            })
            .transpose()
    }

    fn answer(&self, root: &Node) -> Result<StatusAnswer, AnswerError> {
        let ok = match Self::leaf(root, "pg_status")? {
            Some(s) if s.eq_ignore_ascii_case("ok") => true,
            Some(s) if s.eq_ignore_ascii_case("error") => false,
            Some(other) => {
                return Err(field_error(
                    "pg_status",
                    format!("{} is neither ok nor error", excerpt(other)),
                ));
            }
            None => return Err(field_error("pg_status", "missing")),
        };
        let captured = match Self::leaf(root, "pg_captured")? {
            None => None,
            Some("1") => Some(true),
            Some("0") => Some(false),
            Some(other) => {
                return Err(field_error(
                    "pg_captured",
                    format!("{} is neither 1 nor 0", excerpt(other)),
                ));
            }
        };
        let mut children = Vec::new();
        for list in root.children.iter().filter(|c| !c.children.is_empty()) {
            for child in &list.children {
                children.push(Child {
                    list: clean(&list.name, 64),
                    payment_id: Self::text(child, "pg_payment_id")?,
                    status: Self::text(child, "pg_payment_status")?,
                    amount: Self::amount(child, "pg_amount")?,
                    date: self.time(child, "pg_payment_date")?,
                    reference: Self::text(child, "pg_reference")?,
                });
            }
        }
        let error = (!ok).then(|| {
            (
                Self::text(root, "pg_error_code").ok().flatten(),
                Self::text(root, "pg_error_description").ok().flatten(),
            )
        });
        Ok(StatusAnswer {
            ok,
            error,
            payment_id: Self::text(root, "pg_payment_id")?,
            order_id: Self::text(root, "pg_order_id")?,
            amount: Self::amount(root, "pg_amount")?,
            currency: Self::text(root, "pg_currency")?,
            payment_status: Self::text(root, "pg_payment_status")?,
            captured,
            clearing_amount: Self::amount(root, "pg_clearing_amount")?,
            refund_amount: Self::amount(root, "pg_refund_amount")?,
            revoke_amount: Self::amount(root, "pg_revoke_amount")?,
            net_amount: Self::amount(root, "pg_net_amount")?,
            payment_date: self.time(root, "pg_payment_date")?,
            children,
        })
    }
}

impl StatusAnswer {
    /// The money facts this answer states (MERCHANT_STATUS.md, "Decisions"), in the
    /// answer's currency, else `fallback` (the payment's), else none at all:
    /// - the payment received, when it says `success` or lists a refund that went through;
    ///   never for a two-step hold not yet captured (`pg_captured` 0: nothing moved yet,
    ///   and the reversal of such a hold returns nothing either);
    /// - one fact per child that says `success`, in either list (`pg_refund_payments`:
    ///   refund, `pg_revoked_payments`: reversal; other lists are not money we know);
    /// - the commission, where a net below the amount is stated.
    ///
    /// An error answer states nothing.
    pub fn money_facts(&self, fallback: Option<Currency>) -> Vec<MoneyFact> {
        let currency = self
            .currency
            .as_deref()
            .and_then(|c| c.parse::<Currency>().ok())
            .or(fallback);
        let (true, Some(currency)) = (self.ok, currency) else {
            return Vec::new();
        };
        if self.captured == Some(false) {
            return Vec::new();
        }
        let succeeded =
            |status: Option<&str>| status.is_some_and(|s| s.eq_ignore_ascii_case("success"));
        let mut facts: Vec<MoneyFact> = self
            .children
            .iter()
            .filter(|child| succeeded(child.status.as_deref()))
            .filter_map(|child| {
                let kind = match child.list.as_str() {
                    "pg_refund_payments" => MoneyKind::Refund,
                    "pg_revoked_payments" => MoneyKind::Reversal,
                    _ => return None,
                };
                Some(MoneyFact::returned(
                    kind,
                    child.amount?,
                    currency,
                    child.payment_id.as_deref(),
                    self.payment_id.as_deref(),
                    child.status.as_deref(),
                    child.date,
                    MoneySource::StatusApi,
                ))
            })
            .collect();
        if let Some(amount) = self.amount {
            if succeeded(self.payment_status.as_deref()) || !facts.is_empty() {
                facts.insert(
                    0,
                    MoneyFact::payment(amount, currency, self.payment_date, MoneySource::StatusApi),
                );
            }
            if let Some(net) = self.net_amount {
                facts.extend(MoneyFact::commission(
                    amount,
                    net,
                    currency,
                    self.payment_date,
                    MoneySource::StatusApi,
                ));
            }
        }
        facts
    }
}

/// The merchant asking: its id at the Merchant API, its secret key (never shown:
/// `SecretString`'s `Debug` hides it) and the status script's path.
#[derive(Debug, Clone)]
pub struct MerchantAccount {
    pub id: String,
    pub secret: SecretString,
    /// Relative to the provider's base URL (`merchant.status_script`).
    pub script: String,
}

impl MerchantAccount {
    /// The account `merchant` configures, or `None` when refunds are not watched (no id or
    /// no secret key).
    pub fn from_settings(merchant: &crate::settings::MerchantSettings) -> Option<Self> {
        merchant.watches_refunds().then(|| Self {
            id: merchant.id.trim().to_owned(),
            secret: merchant.secret.clone(),
            script: merchant.status_script.trim().to_owned(),
        })
    }

    /// The name the request and its answer are signed with: the script path's last segment.
    pub fn script_name(&self) -> &str {
        crate::settings::default_script_name(&self.script)
    }
}

/// Why a status request got no verified answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the status API did not answer: {0}")]
    Transport(String),
    #[error("the status API answered HTTP {0}")]
    Http(u16),
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

/// Asks `{base_url}/{account.script}` (`get_status3.php`) about `lookup` (a form, URL-encoded as Platron's SDK
/// sends it; PHP reads it as it reads the documented multipart form) and reads the answer:
/// at most [`ANSWER_MAX_BYTES`], verified before anything in it is believed. `client` must
/// not follow redirects ([`crate::outbound::client`]).
pub async fn fetch_status(
    client: &reqwest::Client,
    base_url: &str,
    account: &MerchantAccount,
    lookup: &Lookup,
    naive_offset: FixedOffset,
) -> Result<StatusAnswer, StatusError> {
    let salt = format!("{:016x}", rand::random::<u64>());
    let form = request_form(
        account.script_name(),
        &account.id,
        lookup,
        &salt,
        &account.secret,
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(n, v)| (*n, v.as_str())))
        .finish();
    let url = format!("{}/{}", base_url.trim_end_matches('/'), account.script);
    let mut response = client
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| StatusError::Transport(crate::outbound::describe(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(StatusError::Http(status.as_u16()));
    }
    let read = crate::outbound::read_at_most(&mut response, ANSWER_MAX_BYTES)
        .await
        .map_err(StatusError::Transport)?;
    if read.cut {
        return Err(AnswerError::TooLarge.into());
    }
    Ok(read_answer(
        account.script_name(),
        &read.bytes,
        &account.secret,
        naive_offset,
    )?)
}

#[cfg(test)]
mod tests;
