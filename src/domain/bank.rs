//! A bank statement's operations, as read from the merchant's bank (`intake::statement`).

use chrono::NaiveDate;
use rust_decimal::Decimal;

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
    /// The encoding it was decoded from (`windows-1251`, `IBM866`, `UTF-8`).
    pub encoding: &'static str,
    /// The account it is for (`РасчСчет` of the header or its balance section).
    pub account: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub lines: Vec<BankLine>,
}
