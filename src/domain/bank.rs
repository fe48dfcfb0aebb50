//! Money to the bank, as read: a bank statement's operations (`intake::statement`) and the
//! provider's registry lines (`intake::registry`).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::Currency;

/// Which way money went, for the statement's own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Money in.
    Credit,
    /// Money out.
    Debit,
}

/// One operation of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankLine {
    /// The line its `СекцияДокумент` starts on (the first line is 1).
    pub line: u64,
    /// The section's value: the kind of document (`выписка`, `Платежное поручение`, …).
    pub kind: String,
    pub number: Option<String>,
    /// The value date: `ДатаОперации`, else `ДатаПоступило` / `ДатаСписано`, else the
    /// document's date.
    pub date: NaiveDate,
    /// Positive; `direction` says which way.
    pub amount: Decimal,
    pub direction: Direction,
    pub payer_account: Option<String>,
    pub payer_tax_id: Option<String>,
    pub payee_account: Option<String>,
    pub payee_tax_id: Option<String>,
    /// Kazakh payment purpose code (`КодНазначенияПлатежа`, `КНП`).
    pub knp: Option<String>,
    /// Kazakh beneficiary code (`ПолучательКБЕ`, `КБЕ`).
    pub kbe: Option<String>,
    pub purpose: Option<String>,
}

/// A statement read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `1c` (an exchange file) or `xlsx` (a workbook read through a map).
    pub format: &'static str,
    /// The encoding it was decoded from (`windows-1251`, `IBM866`, `UTF-8`; `xlsx`).
    pub encoding: &'static str,
    /// The account it is for (`РасчСчет` of the header or its balance section).
    pub account: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub lines: Vec<BankLine>,
}

/// What a registry line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    Payment,
    Refund,
    Reversal,
    Chargeback,
    Fee,
}

/// One registry line, read through the map; `raw` keeps every cell by its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRow {
    pub line: u64,
    pub operation_id: String,
    pub parent_payment_id: Option<String>,
    pub order_id: Option<String>,
    pub kind: RegistryKind,
    /// As the registry states it, sign included.
    pub amount: Decimal,
    pub commission: Option<Decimal>,
    pub net: Option<Decimal>,
    pub currency: Currency,
    pub operation_at: DateTime<Utc>,
    pub payout_reference: Option<String>,
    pub payout_date: Option<NaiveDate>,
    pub raw: BTreeMap<String, String>,
}

impl RegistryKind {
    pub const ALL: [RegistryKind; 5] = [
        Self::Payment,
        Self::Refund,
        Self::Reversal,
        Self::Chargeback,
        Self::Fee,
    ];

    /// The kind [`RegistryKind::as_str`] names.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Refund => "refund",
            Self::Reversal => "reversal",
            Self::Chargeback => "chargeback",
            Self::Fee => "fee",
        }
    }
}
