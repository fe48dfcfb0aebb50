use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::rules;

/// Input that failed validation at the boundary; the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// A payment id in the aggregator's system. Documented as a string, shown as a number:
/// we keep it as text and accept any visible id of 1 to 128 characters (see
/// [`rules::text_problem`]), the same rule the schema's CHECK constraint enforces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentId(String);

impl PaymentId {
    /// Longest id accepted; the schema enforces the same bound.
    pub const MAX_LEN: usize = 128;

    /// An id exactly as stored: it must already follow the rule.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        match rules::text_problem(raw, Self::MAX_LEN) {
            None => Ok(Self(raw.to_owned())),
            Some(problem) => Err(InvalidInput(format!("payment id {problem}"))),
        }
    }

    /// An id as a person, a file or a callback gives it: trimmed and composed to NFC first
    /// ([`rules::intake_text`]), the same way on every intake path, so `" 1001"` and
    /// `"1001"`, or `café-1` composed and decomposed, are one payment.
    pub fn from_input(raw: &str) -> Result<Self, InvalidInput> {
        Self::parse(&rules::intake_text(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest merchant order id accepted; the schema enforces the same bound.
pub const ORDER_ID_MAX_LEN: usize = 256;

/// An optional short text as a person or a file gives it (an order id): trimmed and composed
/// to NFC ([`rules::intake_text`]), and empty means "not given" (`None`), never an empty string.
pub fn optional_text(raw: &str, max_chars: usize) -> Result<Option<String>, InvalidInput> {
    let value = rules::intake_text(raw);
    if value.is_empty() {
        return Ok(None);
    }
    match rules::text_problem(&value, max_chars) {
        None => Ok(Some(value)),
        Some(problem) => Err(InvalidInput(problem)),
    }
}

/// The decimal separator a file's amounts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalMark {
    /// `1234.50`: commas are refused (the usual mistake, or a thousands separator).
    Dot,
    /// `1 234,50`, as spreadsheets write in Russian and Kazakh locales (files separated by
    /// `;`): a comma is the decimal separator, a space or no-break space may separate
    /// thousands, and a dot is still read as a decimal point when no comma is present.
    Comma,
}

/// An amount as people and files write it: an exact, non-negative decimal with a dot and no
/// thousands separators, within [`rules::amount_problem`]'s bounds. A comma gets a hint of
/// its own, because it is the usual mistake. Never rounded: what cannot be held exactly is
/// refused.
pub fn parse_amount(raw: &str) -> Result<Decimal, InvalidInput> {
    parse_amount_with(raw, DecimalMark::Dot)
}

/// [`parse_amount`], with the decimal separator of the file the amount comes from.
pub fn parse_amount_with(raw: &str, mark: DecimalMark) -> Result<Decimal, InvalidInput> {
    let raw = raw.trim();
    let plain = match mark {
        DecimalMark::Dot if raw.contains(',') => {
            return Err(InvalidInput(format!(
                "{raw:?} uses a comma; write a dot as the decimal separator and no thousands separators (e.g. 1234.50)"
            )));
        }
        DecimalMark::Dot => std::borrow::Cow::Borrowed(raw),
        DecimalMark::Comma => std::borrow::Cow::Owned(comma_decimal(raw)?),
    };
    let amount = rules::exact_amount(&plain)
        .map_err(|problem| InvalidInput(format!("{raw:?} {problem}")))?;
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(InvalidInput(format!(
            "{raw:?} is negative; an expected amount is what the customer is asked to pay, 0 or more"
        )));
    }
    Ok(amount)
}

/// `1 234,50` as `1234.50`. Spaces (plain, no-break, narrow no-break) may only separate groups
/// of three digits before the decimal comma. A dot alone is a decimal point (files written by
/// programs), except where it could be a thousands separator (`1.234`, `12.345.678`, as
/// German-locale spreadsheets write): that is refused, not guessed, since reading it wrong
/// would be off by a factor of 1000.
fn comma_decimal(raw: &str) -> Result<String, InvalidInput> {
    let refuse = |why: &str| {
        InvalidInput(format!(
            "{raw:?} {why}; in a file separated by semicolons write a decimal comma and, if \
             you like, spaces between thousands (e.g. 1 234,50)"
        ))
    };
    if raw.contains(',') && raw.contains('.') {
        return Err(refuse("has both a dot and a comma"));
    }
    if raw.matches(',').count() > 1 {
        return Err(refuse("has more than one comma"));
    }
    let (whole, fraction) = match raw.split_once(',') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (raw, None),
    };
    let is_space = |c: char| matches!(c, ' ' | '\u{a0}' | '\u{202f}');
    if whole.contains(is_space) {
        let groups: Vec<&str> = whole.split(is_space).collect();
        let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
        let grouped = digits(groups[0])
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3 && digits(g));
        if !grouped {
            return Err(refuse(
                "has a space that is not between groups of three digits",
            ));
        }
    }
    if fraction.is_none() && looks_like_dotted_thousands(whole) {
        return Err(refuse(
            "may use a dot between thousands (1.234 = 1234?) or as a decimal point; it is not guessed",
        ));
    }
    let mut plain: String = whole.chars().filter(|&c| !is_space(c)).collect();
    if let Some(fraction) = fraction {
        plain.push('.');
        plain.push_str(fraction);
    }
    Ok(plain)
}

/// `1.234`, `12.345.678`: digits in groups of three after a first group of 1 to 3 (not
/// starting with 0), separated by dots.
fn looks_like_dotted_thousands(value: &str) -> bool {
    let mut groups = value.split('.');
    let first = groups.next().unwrap_or_default();
    let rest: Vec<&str> = groups.collect();
    let digits = |g: &str| g.bytes().all(|b| b.is_ascii_digit());
    !rest.is_empty()
        && (1..=3).contains(&first.len())
        && digits(first)
        && !first.starts_with('0')
        && rest.iter().all(|g| g.len() == 3 && digits(g))
}

/// An ISO 4217 alphabetic code: exactly three uppercase ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn as_str(&self) -> &str {
        // Only ASCII uppercase letters are ever stored.
        std::str::from_utf8(&self.0).expect("currency is ASCII")
    }
}

impl FromStr for Currency {
    type Err = InvalidInput;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|b| b.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(InvalidInput(format!(
                "currency {raw:?} is not an ISO 4217 code (three uppercase letters, e.g. KZT)"
            ))),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `paymentStatus` as the provider reports it. The group is marked "Developing", so a value we
/// do not know is kept verbatim, treated as non-terminal and flagged for a person.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProviderStatus {
    /// Paid.
    Success,
    /// Failed.
    Error,
    /// The payment's lifetime ran out unpaid.
    Incomplete,
    /// Waiting for the payer or the payment system.
    Process,
    /// Undocumented; most likely "created, no attempt yet".
    Waiting,
    Other(String),
}

impl ProviderStatus {
    /// The statuses the provider documents, as it spells them.
    pub const DOCUMENTED: [&'static str; 5] =
        ["success", "error", "incomplete", "process", "waiting"];

    pub fn parse(raw: &str) -> Self {
        match raw {
            "success" => Self::Success,
            "error" => Self::Error,
            "incomplete" => Self::Incomplete,
            "process" => Self::Process,
            "waiting" => Self::Waiting,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Incomplete => "incomplete",
            Self::Process => "process",
            Self::Waiting => "waiting",
            Self::Other(raw) => raw,
        }
    }

    /// Terminal statuses stop regular polling (after one confirmation re-check).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Success | Self::Error | Self::Incomplete)
    }

    /// Paid or failed: the answers that settle whether a lifetime ran out unpaid.
    pub fn is_paid_or_failed(&self) -> bool {
        matches!(self, Self::Success | Self::Error)
    }
}

impl fmt::Display for ProviderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of discrepancy the daemon flags. The table `recon.flag_kinds` lists the same,
/// with the same classes (a test compares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlagKind {
    AmountMismatch,
    CurrencyMismatch,
    OrderMismatch,
    LifetimeExceeded,
    NotFound,
    UnknownStatus,
    TerminalStatusChanged,
    PollingAbandoned,
    /// Paid (`success`) after the payment was seen unpaid past its deadline.
    PaidAfterDeadline,
    /// The provider's Result-URL callback named a payment nobody enqueued.
    UntrackedPayment,
    /// A callback claimed what the signed Partner API did not confirm.
    CallbackDisagrees,
    /// A signed callback's claim could not be read (`recon.callbacks.problem`), so it was
    /// never checked against the poll.
    CallbackUnreadable,
    /// A refund the merchant made (`import --refunds`) the provider has not shown by its
    /// last look.
    RefundMissing,
    /// The provider's refund matched to the merchant's returned another amount.
    RefundAmountMismatch,
    /// Money back (a refund, reversal or chargeback) no refund the merchant made matches.
    UnexpectedRefund,
    /// The Merchant status API states another amount, currency or order than `invoice/info`.
    StatusApiDisagrees,
    /// Paid, and in no registry `registry.expect_within` after.
    NotInRegistry,
    /// A registry line states another amount, currency or commission for the payment.
    RegistryAmountMismatch,
    /// A registry line for a payment nobody tracks, or one not paid (`recon.settlement_flags`).
    RegistryUnknown,
    /// A payout at no bank credit within `bank.match_window`, or after it
    /// (`recon.settlement_flags`).
    PayoutNotAtBank,
    /// A credit from the provider no payout explains (`recon.settlement_flags`).
    BankCreditUnexplained,
}

/// Whether a flag is an exception a person must act on, or an outcome worth recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlagClass {
    /// Money or truth at stake: the flag waits in the exception queue
    /// (`recon.open_discrepancies`) until a person resolves it or a later answer clears it.
    Action,
    /// Recorded for the history; nobody can act on it (a payment that expired unpaid).
    Info,
}

impl FlagClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Action => "action",
            Self::Info => "info",
        }
    }
}

impl FlagKind {
    pub const ALL: [FlagKind; 21] = [
        Self::AmountMismatch,
        Self::CurrencyMismatch,
        Self::OrderMismatch,
        Self::LifetimeExceeded,
        Self::NotFound,
        Self::UnknownStatus,
        Self::TerminalStatusChanged,
        Self::PollingAbandoned,
        Self::PaidAfterDeadline,
        Self::UntrackedPayment,
        Self::CallbackDisagrees,
        Self::CallbackUnreadable,
        Self::RefundMissing,
        Self::RefundAmountMismatch,
        Self::UnexpectedRefund,
        Self::StatusApiDisagrees,
        Self::NotInRegistry,
        Self::RegistryAmountMismatch,
        Self::RegistryUnknown,
        Self::PayoutNotAtBank,
        Self::BankCreditUnexplained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AmountMismatch => "amount_mismatch",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::OrderMismatch => "order_mismatch",
            Self::LifetimeExceeded => "lifetime_exceeded",
            Self::NotFound => "not_found",
            Self::UnknownStatus => "unknown_status",
            Self::TerminalStatusChanged => "terminal_status_changed",
            Self::PollingAbandoned => "polling_abandoned",
            Self::PaidAfterDeadline => "paid_after_deadline",
            Self::UntrackedPayment => "untracked_payment",
            Self::CallbackDisagrees => "callback_disagrees",
            Self::CallbackUnreadable => "callback_unreadable",
            Self::RefundMissing => "refund_missing",
            Self::RefundAmountMismatch => "refund_amount_mismatch",
            Self::UnexpectedRefund => "unexpected_refund",
            Self::StatusApiDisagrees => "status_api_disagrees",
            Self::NotInRegistry => "not_in_registry",
            Self::RegistryAmountMismatch => "registry_amount_mismatch",
            Self::RegistryUnknown => "registry_unknown",
            Self::PayoutNotAtBank => "payout_not_at_bank",
            Self::BankCreditUnexplained => "bank_credit_unexplained",
        }
    }

    /// Only an expired deadline is `info`: when no money moved, nobody can do anything about
    /// it. `polling_abandoned` is `action`: the provider never gave a final answer, so whether
    /// money moved is unknown until someone asks.
    pub fn class(self) -> FlagClass {
        match self {
            Self::LifetimeExceeded => FlagClass::Info,
            _ => FlagClass::Action,
        }
    }

    /// Whether a flag of this kind with `expected`/`actual` is about the same thing as an
    /// earlier one: a flag a person (or a rule) closed reopens only when it is not. A missed
    /// deadline, and a payment made after one, are about the deadline, whatever the payment
    /// shows after it.
    pub fn same_subject(
        self,
        earlier: &ClosedFlag,
        expected: Option<&str>,
        actual: Option<&str>,
    ) -> bool {
        let about_the_deadline = matches!(self, Self::LifetimeExceeded | Self::PaidAfterDeadline);
        earlier.expected.as_deref() == expected
            && (about_the_deadline || earlier.actual.as_deref() == actual)
    }
}

impl FromStr for FlagKind {
    type Err = InvalidInput;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                InvalidInput(format!(
                    "unknown flag kind {raw:?}; expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

impl fmt::Display for FlagKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule that closes a flag in the transaction that opens it (setting `flags.auto_close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AutoClose {
    /// A `lifetime_exceeded` flag of a payment on which no money moved (it ended
    /// `incomplete` or `error`, or is still unpaid at its deadline): an outcome, not an
    /// exception.
    ExpiredUnpaid,
}

impl AutoClose {
    pub const ALL: [AutoClose; 1] = [Self::ExpiredUnpaid];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiredUnpaid => "expired_unpaid",
        }
    }
}

impl FromStr for AutoClose {
    type Err = InvalidInput;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|rule| rule.as_str() == raw)
            .ok_or_else(|| {
                InvalidInput(format!(
                    "unknown rule {raw:?}; the rules are {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// Who closes a flag the daemon itself closes, and why: written to `resolved_by` and
/// `resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// A later observation no longer supports it.
    Cleared,
    /// A late payment: the `lifetime_exceeded` flag gives way to `paid_after_deadline`.
    Superseded,
    /// A `flags.auto_close` rule closed it as it opened (or at its next poll).
    Rule(AutoClose),
}

impl Resolver {
    /// `resolved_by`: `daemon`, or `rule:<name>`.
    pub fn resolved_by(self) -> String {
        match self {
            Self::Cleared | Self::Superseded => "daemon".into(),
            Self::Rule(rule) => format!("rule:{}", rule.as_str()),
        }
    }

    /// `resolution`: why, in a sentence for finance.
    pub fn note(self) -> &'static str {
        match self {
            Self::Cleared => "cleared by a later observation",
            Self::Superseded => {
                "superseded: the payment was paid after its deadline (see its paid_after_deadline flag)"
            }
            Self::Rule(AutoClose::ExpiredUnpaid) => {
                "expired unpaid: the deadline passed and no money moved; closed by the rule \
                 expired_unpaid (flags.auto_close)"
            }
        }
    }
}

/// The latest flag of a kind on a payment, closed by a person or a rule: a new finding about
/// the same thing does not open it again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosedFlag {
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// The provider's `lifetime`: documented as a UTC date-time, shown as an integer. We read an
/// integer as seconds counted from the payment's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    Until(DateTime<Utc>),
    Seconds(i64),
}

/// Where an effective expiry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeSource {
    ProviderDatetime,
    ProviderSeconds,
}

impl LifetimeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderDatetime => "provider_datetime",
            Self::ProviderSeconds => "provider_seconds",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "provider_datetime" => Some(Self::ProviderDatetime),
            "provider_seconds" => Some(Self::ProviderSeconds),
            _ => None,
        }
    }
}

/// An expiry the provider stated, resolved to an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub at: DateTime<Utc>,
    pub source: LifetimeSource,
}

/// A parsed success body of `invoice/info`. Fields the provider calls required may still be
/// missing: the reader is tolerant and the raw body is kept beside this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub status: ProviderStatus,
    pub amount: Option<Decimal>,
    pub currency: Option<Currency>,
    pub fee: Option<Decimal>,
    pub discount: Option<Decimal>,
    pub freedom_id: Option<String>,
    pub order_id: Option<String>,
    pub merchant_id: Option<String>,
    pub merchant_name: Option<String>,
    pub description: Option<String>,
    pub lifetime: Option<Lifetime>,
    pub facilitator_iban: Option<String>,
    pub mcc: Option<String>,
    /// The provider's timestamp of this answer.
    pub dt: Option<DateTime<Utc>>,
}

/// What the merchant said it expects. Only what was given is compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedValues {
    pub amount: Option<Decimal>,
    pub currency: Option<Currency>,
    pub order_id: Option<String>,
}

/// Everything the core needs to know about a payment before a poll: the claimed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub payment_id: PaymentId,
    pub expected: ExpectedValues,
    pub created_at: DateTime<Utc>,
    /// The merchant's own expiry from intake.
    pub merchant_expires_at: Option<DateTime<Utc>>,
    /// The provider's last known status; `None` before the first answer.
    pub status: Option<ProviderStatus>,
    /// The expiry the provider stated in an earlier answer.
    pub provider_expiry: Option<Expiry>,
    /// Answers received so far.
    pub checks: i32,
    /// Consecutive failed attempts.
    pub attempts: i32,
    pub not_found_since: Option<DateTime<Utc>>,
    /// When the current terminal status was first observed.
    pub settled_at: Option<DateTime<Utc>>,
    /// When the payment was first seen unpaid past its deadline (plus grace), or incomplete.
    pub deadline_missed_at: Option<DateTime<Utc>>,
    pub open_flags: BTreeSet<FlagKind>,
    /// For each kind whose latest flag a person or a rule closed: what that flag said.
    pub closed_flags: BTreeMap<FlagKind, ClosedFlag>,
    /// The latest verified Result-URL callback about this payment: a claim the poll checks.
    pub callback: Option<CallbackClaim>,
}

/// What the provider's latest verified Result-URL callback claimed (`recon.callbacks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackClaim {
    /// Its id in `recon.callbacks`, named in a `callback_disagrees` flag.
    pub id: i64,
    pub received_at: DateTime<Utc>,
    /// `pg_result`: paid (`true`) or failed (`false`); `None` when unreadable.
    pub paid: Option<bool>,
    pub amount: Option<Decimal>,
    pub currency: Option<Currency>,
    /// It arrived after the payment's latest recorded transition (or before any): the next
    /// transition recorded is the one it announced, and the time between the two is the
    /// callback's detection lag (`freedompay_recon_callback_to_transition_seconds`).
    pub after_last_transition: bool,
}

impl CallbackClaim {
    /// The claim in words, for a flag's `expected`.
    pub fn describe(&self) -> String {
        let outcome = match self.paid {
            Some(true) => "paid",
            Some(false) => "failed",
            None => "an unreadable result",
        };
        let mut text = format!("callback #{}: {outcome}", self.id);
        if let Some(amount) = self.amount {
            text.push_str(&format!(" {amount}"));
        }
        if let Some(currency) = self.currency {
            text.push_str(&format!(" {currency}"));
        }
        text
    }
}

impl Tracked {
    /// A payment as intake creates it: nothing observed yet.
    pub fn new(payment_id: PaymentId, created_at: DateTime<Utc>) -> Self {
        Self {
            payment_id,
            expected: ExpectedValues::default(),
            created_at,
            merchant_expires_at: None,
            status: None,
            provider_expiry: None,
            checks: 0,
            attempts: 0,
            not_found_since: None,
            settled_at: None,
            deadline_missed_at: None,
            open_flags: BTreeSet::new(),
            closed_flags: BTreeMap::new(),
            callback: None,
        }
    }
}

/// A status change to append to the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub from: Option<ProviderStatus>,
    pub to: ProviderStatus,
}

/// A flag to open, with the values that triggered it (as text, for people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFlag {
    pub kind: FlagKind,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_ids_must_be_visible_and_non_empty() {
        assert!(PaymentId::parse("1234567890").is_ok());
        assert!(PaymentId::parse("Счет-1").is_ok());
        assert_eq!(
            PaymentId::from_input("   ").unwrap_err().0,
            "payment id is empty"
        );
        assert!(PaymentId::parse("a\tb").is_err());
        assert!(PaymentId::parse(&"9".repeat(129)).is_err());
        assert!(PaymentId::parse("12\u{200B}3").is_err(), "zero-width space");
        assert_eq!(
            PaymentId::parse(" x ").unwrap_err().0,
            "payment id has spaces around it"
        );
        assert_eq!(PaymentId::from_input(" x ").unwrap().as_str(), "x");
    }

    #[test]
    fn optional_text_is_trimmed_and_empty_is_none() {
        assert_eq!(optional_text("", 256).unwrap(), None);
        assert_eq!(optional_text("  ", 256).unwrap(), None);
        assert_eq!(optional_text(" A-1 ", 256).unwrap().as_deref(), Some("A-1"));
        assert!(optional_text("A\u{0}1", 256).is_err());
        assert!(optional_text(&"x".repeat(257), 256).is_err());
    }

    #[test]
    fn amounts_are_exact_with_a_dot() {
        assert_eq!(parse_amount("1234.50").unwrap().to_string(), "1234.50");
        assert_eq!(parse_amount(" 7 ").unwrap().to_string(), "7");
        assert!(
            parse_amount("12,50")
                .unwrap_err()
                .0
                .contains("uses a comma")
        );
        assert!(
            parse_amount("1,234.50")
                .unwrap_err()
                .0
                .contains("uses a comma")
        );
        assert!(
            parse_amount("ten")
                .unwrap_err()
                .0
                .contains("not a decimal number")
        );
        assert!(parse_amount("-1").unwrap_err().0.contains("negative"));
        assert_eq!(
            parse_amount("1e3").unwrap(),
            Decimal::from(1000),
            "exact, as spreadsheets export"
        );
        for refused in ["NaN", "Infinity", "1e40", "0.12345678901234567890123456789"] {
            assert!(parse_amount(refused).is_err(), "{refused} accepted");
        }
    }

    #[test]
    fn currencies_are_three_uppercase_letters() {
        assert_eq!("KZT".parse::<Currency>().unwrap().as_str(), "KZT");
        for bad in ["kzt", "KZ", "KZTT", "K1T", "", "ТЕН"] {
            assert!(bad.parse::<Currency>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn statuses_round_trip_and_keep_unknown_values() {
        for raw in [
            "success",
            "error",
            "incomplete",
            "process",
            "waiting",
            "refunded",
        ] {
            assert_eq!(ProviderStatus::parse(raw).as_str(), raw);
        }
        assert!(ProviderStatus::parse("incomplete").is_terminal());
        assert!(!ProviderStatus::parse("refunded").is_terminal());
        assert!(!ProviderStatus::parse("waiting").is_terminal());
    }

    #[test]
    fn flag_kinds_round_trip() {
        for kind in FlagKind::ALL {
            assert_eq!(kind.as_str().parse::<FlagKind>().unwrap(), kind);
        }
        assert!("amount".parse::<FlagKind>().is_err());
    }
}
