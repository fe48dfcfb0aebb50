//! The provider's registry of operations (issue 27, item 1): a CSV file read through a column
//! map, because Freedom Pay publishes no layout (docs/provider/MERCHANT_STATUS.md, "Money to
//! the bank"). The default map is the shape providers of the same family publish (Tochka: `;`,
//! decimal commas, UTF-8 with or without a byte-order mark, `PAYMENT`/`REFUND`); when Freedom
//! Pay's layout is known, the map changes, not the code.
//!
//! Read as `import` reads a file (the same delimiters, bounds and line numbers), checked whole:
//! any bad row, an operation id twice, or a header without a mapped column refuses the file.

use std::collections::HashMap;
use std::io::Read;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::import::{CsvRows, ImportError, LineError, LineErrors, column_name, decimal_mark};
use super::intake_timestamp;
use crate::domain::{Currency, parse_amount_with};
use crate::text::excerpt;

/// The map used when none is given: the Tochka registry's columns.
pub const DEFAULT_MAP: &str = r#"# The registry's columns (header names, any case), and its words for each kind of operation.
currency = "KZT"

[columns]
operation_id = "TRANSACTION_ID"
parent_payment_id = "PARENT_TRANSACTION_ID"
order_id = "ORDER_UID"
type = "TRANSACTION_TYPE"
amount = "SUM"
commission = "COMMISSION"
operation_time = "TRANS_DATE"

[types]
payment = ["PAYMENT"]
refund = ["REFUND"]
"#;

/// What a registry file's columns are called (TOML: [`DEFAULT_MAP`] is an example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryMap {
    /// The currency of every line, when no column states one.
    #[serde(default)]
    pub currency: Option<String>,
    pub columns: MapColumns,
    #[serde(default)]
    pub types: MapTypes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapColumns {
    pub operation_id: String,
    /// For a refund, reversal or chargeback: the payment it belongs to.
    #[serde(default)]
    pub parent_payment_id: Option<String>,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: String,
    #[serde(default)]
    pub commission: Option<String>,
    #[serde(default)]
    pub net: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    pub operation_time: String,
    /// The payout the line went into: its reference, its date (`YYYY-MM-DD` or `DD.MM.YYYY`).
    #[serde(default)]
    pub payout_reference: Option<String>,
    #[serde(default)]
    pub payout_date: Option<String>,
}

/// The registry's words for each kind of operation (compared without regard to case).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapTypes {
    #[serde(default)]
    pub payment: Vec<String>,
    #[serde(default)]
    pub refund: Vec<String>,
    #[serde(default)]
    pub reversal: Vec<String>,
    #[serde(default)]
    pub chargeback: Vec<String>,
    #[serde(default)]
    pub fee: Vec<String>,
}

impl RegistryMap {
    /// A map from its TOML text; `what` names it in a message.
    pub fn parse(text: &str, what: &str) -> Result<Self, ImportError> {
        let map: Self = toml::from_str(text).map_err(|e| {
            ImportError::Header(format!(
                "{what} is not a registry map: {}",
                crate::text::clean(&e.to_string(), 300)
            ))
        })?;
        if let Some(currency) = &map.currency {
            currency
                .parse::<Currency>()
                .map_err(|e| ImportError::Header(format!("{what}: currency: {e}")))?;
        }
        Ok(map)
    }

    /// The map used when none is given.
    pub fn default_map() -> Self {
        Self::parse(DEFAULT_MAP, "the default map").expect("the default map parses")
    }

    fn kind(&self, word: &str) -> Option<RegistryKind> {
        let t = &self.types;
        [
            (&t.payment, RegistryKind::Payment),
            (&t.refund, RegistryKind::Refund),
            (&t.reversal, RegistryKind::Reversal),
            (&t.chargeback, RegistryKind::Chargeback),
            (&t.fee, RegistryKind::Fee),
        ]
        .into_iter()
        .find(|(words, _)| {
            words
                .iter()
                .any(|w| w.trim().eq_ignore_ascii_case(word.trim()))
        })
        .map(|(_, kind)| kind)
    }
}

pub use crate::domain::bank::{RegistryKind, RegistryRow};

/// Reads every line of a registry CSV through `map` (times without an offset in
/// `naive_offset`): every problem, by line, or the rows.
pub fn read_registry(
    input: impl Read,
    map: &RegistryMap,
    naive_offset: FixedOffset,
) -> Result<Vec<RegistryRow>, ImportError> {
    let mut rows = CsvRows::open(input)?;
    let names: Vec<String> = rows.header.iter().map(column_name).collect();
    let at = |name: &str| names.iter().position(|n| *n == column_name(name));
    let c = &map.columns;
    let required = [
        ("operation_id", &c.operation_id),
        ("type", &c.kind),
        ("amount", &c.amount),
        ("operation_time", &c.operation_time),
    ];
    let optional = [
        ("parent_payment_id", &c.parent_payment_id),
        ("order_id", &c.order_id),
        ("commission", &c.commission),
        ("net", &c.net),
        ("currency", &c.currency),
        ("payout_reference", &c.payout_reference),
        ("payout_date", &c.payout_date),
    ];
    let missing: Vec<String> = required
        .iter()
        .map(|(key, name)| (*key, Some(*name)))
        .chain(optional.iter().map(|(key, name)| (*key, name.as_ref())))
        .filter_map(|(key, name)| {
            let name = name?;
            at(name)
                .is_none()
                .then(|| format!("{} (columns.{key})", excerpt(name)))
        })
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::Header(format!(
            "the file has no column {}; the map names it (give the registry's own header in \
             --map)",
            missing.join(", ")
        )));
    }
    if c.currency.is_none() && map.currency.is_none() {
        return Err(ImportError::Header(
            "the map names no currency column and no currency for the file".into(),
        ));
    }
    let index = |name: &Option<String>| name.as_deref().and_then(at);
    let mark = decimal_mark(rows.delimiter);
    let mut errors = LineErrors::default();
    let mut read = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    while let Some(line) = rows.next(&mut errors)? {
        let record = &rows.record;
        let cell = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let mut bad = |column: &str, problem: String| {
            errors.push(LineError {
                line,
                column: column.to_owned(),
                problem,
            })
        };
        let text = |i: Option<usize>, column: &str, bad: &mut dyn FnMut(&str, String)| {
            let value = cell(i)?;
            if value.chars().count() > 128 || value.chars().any(char::is_control) {
                bad(column, format!("{} is not an id", excerpt(value)));
                return None;
            }
            Some(value.to_owned())
        };
        let operation_id = match text(at(&c.operation_id), "operation_id", &mut bad) {
            Some(id) => Some(id),
            None => {
                if cell(at(&c.operation_id)).is_none() {
                    bad("operation_id", "is empty".into());
                }
                None
            }
        };
        let kind = match cell(at(&c.kind)) {
            Some(word) => match map.kind(word) {
                Some(kind) => Some(kind),
                None => {
                    bad(
                        "type",
                        format!("{} is no type the map knows", excerpt(word)),
                    );
                    None
                }
            },
            None => {
                bad("type", "is empty".into());
                None
            }
        };
        let mut money = |i: Option<usize>, column: &str, required: bool| match cell(i) {
            Some(raw) => signed_amount(raw, mark)
                .map(Some)
                .map_err(|e| bad(column, e))
                .ok(),
            None if required => {
                bad(column, "is empty".into());
                None
            }
            None => Some(None),
        };
        let amount = money(at(&c.amount), "amount", true).flatten();
        let commission = money(index(&c.commission), "commission", false);
        let net = money(index(&c.net), "net", false);
        let mut bad = |column: &str, problem: String| {
            errors.push(LineError {
                line,
                column: column.to_owned(),
                problem,
            })
        };
        let currency = match cell(index(&c.currency)).or(map.currency.as_deref()) {
            Some(raw) => raw
                .parse::<Currency>()
                .map_err(|e| bad("currency", e.to_string()))
                .ok(),
            None => {
                bad("currency", "is empty".into());
                None
            }
        };
        let operation_at = match cell(at(&c.operation_time)) {
            Some(raw) => time(raw, naive_offset)
                .map_err(|e| bad("operation_time", e))
                .ok(),
            None => {
                bad("operation_time", "is empty".into());
                None
            }
        };
        let payout_date = match cell(index(&c.payout_date)) {
            Some(raw) => match day(raw) {
                Some(d) => Some(Some(d)),
                None => {
                    bad("payout_date", format!("{} is not a date", excerpt(raw)));
                    None
                }
            },
            None => Some(None),
        };
        let parent_payment_id = text(index(&c.parent_payment_id), "parent_payment_id", &mut bad);
        let order_id = text(index(&c.order_id), "order_id", &mut bad);
        let payout_reference = text(index(&c.payout_reference), "payout_reference", &mut bad);
        let (
            Some(operation_id),
            Some(kind),
            Some(amount),
            Some(commission),
            Some(net),
            Some(currency),
            Some(operation_at),
            Some(payout_date),
        ) = (
            operation_id,
            kind,
            amount,
            commission,
            net,
            currency,
            operation_at,
            payout_date,
        )
        else {
            continue;
        };
        if let Some(first) = seen.get(&operation_id) {
            bad(
                "operation_id",
                format!(
                    "{} is already on line {first} of this file",
                    excerpt(&operation_id)
                ),
            );
            continue;
        }
        seen.insert(operation_id.clone(), line);
        let raw = names
            .iter()
            .zip(record.iter())
            .map(|(name, value)| (name.clone(), value.to_owned()))
            .collect();
        read.push(RegistryRow {
            line,
            operation_id,
            parent_payment_id,
            order_id,
            kind,
            amount,
            commission,
            net,
            currency,
            operation_at,
            payout_reference,
            payout_date,
            raw,
        });
    }
    if !errors.is_empty() {
        return Err(ImportError::Rejected(errors));
    }
    Ok(read)
}

/// An amount with its sign (a refund's may be negative): the rules of every amount read,
/// after a leading minus.
fn signed_amount(raw: &str, mark: crate::domain::DecimalMark) -> Result<Decimal, String> {
    let (negative, digits) = match raw.trim().strip_prefix('-') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, raw.trim()),
    };
    let amount = parse_amount_with(digits, mark).map_err(|e| e.to_string())?;
    Ok(if negative { -amount } else { amount })
}

/// A time as registries write it: what every intake path reads, or `DD.MM.YYYY HH:MM:SS`.
fn time(raw: &str, naive_offset: FixedOffset) -> Result<DateTime<Utc>, String> {
    intake_timestamp(raw, naive_offset).or_else(|problem| {
        use chrono::TimeZone as _;
        chrono::NaiveDateTime::parse_from_str(raw, "%d.%m.%Y %H:%M:%S")
            .ok()
            .and_then(|naive| naive_offset.from_local_datetime(&naive).single())
            .map(|local| local.with_timezone(&Utc))
            .ok_or(problem)
    })
}

fn day(raw: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(raw, "%d.%m.%Y"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn almaty() -> FixedOffset {
        FixedOffset::east_opt(5 * 3600).unwrap()
    }

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn a_tochka_shaped_registry_reads_through_the_default_map() {
        let text = "\u{feff}TRANS_DATE;TRANSACTION_ID;SUM;COMMISSION;PARENT_TRANSACTION_ID;\
                    TRANSACTION_TYPE;RRN;AUTH_CODE;ORDER_UID\r\n\
                    2025-07-13 10:00:00;9001;5 000,00;175,00;;PAYMENT;123;A1;order-1\r\n\
                    13.07.2025 18:30:00;9002;-1 500,00;0;9001;refund;124;;order-1\r\n";
        let rows = read_registry(text.as_bytes(), &RegistryMap::default_map(), almaty()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].kind, rows[0].amount, rows[0].commission),
            (RegistryKind::Payment, d("5000.00"), Some(d("175.00")))
        );
        assert_eq!(rows[0].currency.as_str(), "KZT", "the map's currency");
        assert_eq!(
            rows[0].operation_at,
            "2025-07-13T05:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(rows[0].raw["rrn"], "123", "every cell kept by its header");
        assert_eq!(
            (
                rows[1].kind,
                rows[1].amount,
                rows[1].parent_payment_id.as_deref()
            ),
            (RegistryKind::Refund, d("-1500.00"), Some("9001")),
            "types compared without regard to case; amounts as stated"
        );
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn a_map_of_its_own_reads_nets_and_payouts_and_names_what_the_file_lacks() {
        let map = RegistryMap::parse(
            r#"
            [columns]
            operation_id = "id"
            type = "kind"
            amount = "gross"
            net = "net"
            currency = "ccy"
            operation_time = "at"
            payout_reference = "payout"
            payout_date = "paid_out"
            [types]
            payment = ["sale"]
            chargeback = ["cb"]
            "#,
            "map.toml",
        )
        .unwrap();
        let rows = read_registry(
            "id,kind,gross,net,ccy,at,payout,paid_out\n\
             1,sale,100.00,96.50,KZT,2025-07-13T10:00:00Z,P-7,14.07.2025\n\
             2,cb,-100.00,,KZT,2025-08-01T10:00:00Z,,\n"
                .as_bytes(),
            &map,
            almaty(),
        )
        .unwrap();
        assert_eq!(rows[0].net, Some(d("96.50")));
        assert_eq!(rows[0].payout_reference.as_deref(), Some("P-7"));
        assert_eq!(rows[0].payout_date, NaiveDate::from_ymd_opt(2025, 7, 14));
        assert_eq!(
            (rows[1].kind, rows[1].net),
            (RegistryKind::Chargeback, None)
        );

        let Err(ImportError::Header(problem)) =
            read_registry("id,kind,gross\n".as_bytes(), &map, almaty())
        else {
            panic!("refused")
        };
        assert!(
            problem.starts_with("the file has no column \"at\" (columns.operation_time)"),
            "{problem}"
        );
        let Err(ImportError::Header(problem)) =
            RegistryMap::parse("[columns]\noperation_id = 1\n", "map.toml")
        else {
            panic!("refused")
        };
        assert!(
            problem.starts_with("map.toml is not a registry map"),
            "{problem}"
        );
    }

    #[test]
    fn every_bad_line_is_named_and_nothing_is_read() {
        let Err(ImportError::Rejected(errors)) = read_registry(
            "TRANS_DATE;TRANSACTION_ID;SUM;COMMISSION;PARENT_TRANSACTION_ID;TRANSACTION_TYPE;ORDER_UID\n\
             2025-07-13 10:00:00;1;десять;0;;PAYMENT;o\n\
             2025-07-13 10:00:00;2;5;0;;BONUS;o\n\
             вчера;3;5;0;;PAYMENT;o\n\
             2025-07-13 10:00:00;4;5;0;;PAYMENT;o\n\
             2025-07-13 10:00:00;4;6;0;;PAYMENT;o\n"
                .as_bytes(),
            &RegistryMap::default_map(),
            almaty(),
        ) else {
            panic!("refused")
        };
        let shown: Vec<String> = errors.shown.iter().map(ToString::to_string).collect();
        let lines: Vec<&str> = shown.iter().map(|s| &s[..s.find(':').unwrap()]).collect();
        assert_eq!(
            lines,
            ["line 2", "line 3", "line 4", "line 6"],
            "{shown:#?}"
        );
        assert!(
            shown[1].contains("\"BONUS\" is no type the map knows"),
            "{shown:#?}"
        );
        assert!(
            shown[3].contains("\"4\" is already on line 5"),
            "{shown:#?}"
        );
    }
}
