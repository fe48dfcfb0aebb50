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

/// Where the map's columns sit in a file's header.
struct At {
    operation_id: usize,
    kind: usize,
    amount: usize,
    operation_time: usize,
    parent_payment_id: Option<usize>,
    order_id: Option<usize>,
    commission: Option<usize>,
    net: Option<usize>,
    currency: Option<usize>,
    payout_reference: Option<usize>,
    payout_date: Option<usize>,
}

/// Checks a registry's rows through a map, whatever file they came in.
struct Registry<'m> {
    map: &'m RegistryMap,
    names: Vec<String>,
    at: At,
    mark: crate::domain::DecimalMark,
    naive_offset: FixedOffset,
    errors: LineErrors,
    read: Vec<RegistryRow>,
    seen: HashMap<String, u64>,
}

impl<'m> Registry<'m> {
    /// Finds the map's columns among a header's `names`: every column the map names must be
    /// there.
    fn new(
        names: &[String],
        map: &'m RegistryMap,
        mark: crate::domain::DecimalMark,
        naive_offset: FixedOffset,
    ) -> Result<Self, ImportError> {
        let find = |name: &str| names.iter().position(|n| *n == column_name(name));
        let c = &map.columns;
        let named = [
            ("operation_id", Some(&c.operation_id)),
            ("type", Some(&c.kind)),
            ("amount", Some(&c.amount)),
            ("operation_time", Some(&c.operation_time)),
            ("parent_payment_id", c.parent_payment_id.as_ref()),
            ("order_id", c.order_id.as_ref()),
            ("commission", c.commission.as_ref()),
            ("net", c.net.as_ref()),
            ("currency", c.currency.as_ref()),
            ("payout_reference", c.payout_reference.as_ref()),
            ("payout_date", c.payout_date.as_ref()),
        ];
        let missing: Vec<String> = named
            .iter()
            .filter_map(|(key, name)| {
                let name = (*name)?;
                find(name)
                    .is_none()
                    .then(|| format!("{} (columns.{key})", excerpt(name)))
            })
            .collect();
        if !missing.is_empty() {
            return Err(ImportError::Header(format!(
                "the file has no column {}; the map names it (give the registry's own header \
                 in --map)",
                missing.join(", ")
            )));
        }
        if c.currency.is_none() && map.currency.is_none() {
            return Err(ImportError::Header(
                "the map names no currency column and no currency for the file".into(),
            ));
        }
        let optional = |name: &Option<String>| name.as_deref().and_then(find);
        let at = At {
            operation_id: find(&c.operation_id).unwrap_or(0),
            kind: find(&c.kind).unwrap_or(0),
            amount: find(&c.amount).unwrap_or(0),
            operation_time: find(&c.operation_time).unwrap_or(0),
            parent_payment_id: optional(&c.parent_payment_id),
            order_id: optional(&c.order_id),
            commission: optional(&c.commission),
            net: optional(&c.net),
            currency: optional(&c.currency),
            payout_reference: optional(&c.payout_reference),
            payout_date: optional(&c.payout_date),
        };
        Ok(Self {
            map,
            names: names.to_vec(),
            at,
            mark,
            naive_offset,
            errors: LineErrors::default(),
            read: Vec::new(),
            seen: HashMap::new(),
        })
    }

    fn check(&mut self, line: u64, cells: &[String]) {
        let at = &self.at;
        let cell = |i: Option<usize>| {
            i.and_then(|i| cells.get(i))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        let mut text = |i: Option<usize>, column: &'static str| {
            let value = cell(i)?;
            if value.chars().count() > 128 || value.chars().any(char::is_control) {
                problems.push((column, format!("{} is not an id", excerpt(value))));
                return None;
            }
            Some(value.to_owned())
        };
        let operation_id = text(Some(at.operation_id), "operation_id");
        let parent_payment_id = text(at.parent_payment_id, "parent_payment_id");
        let order_id = text(at.order_id, "order_id");
        let payout_reference = text(at.payout_reference, "payout_reference");
        if operation_id.is_none() && cell(Some(at.operation_id)).is_none() {
            problems.push(("operation_id", "is empty".into()));
        }
        let kind = match cell(Some(at.kind)) {
            Some(word) => {
                let kind = self.map.kind(word);
                if kind.is_none() {
                    problems.push((
                        "type",
                        format!("{} is no type the map knows", excerpt(word)),
                    ));
                }
                kind
            }
            None => {
                problems.push(("type", "is empty".into()));
                None
            }
        };
        let mark = self.mark;
        let mut money = |i: Option<usize>, column: &'static str, required: bool| match cell(i) {
            Some(raw) => match signed_amount(raw, mark) {
                Ok(amount) => Some(Some(amount)),
                Err(e) => {
                    problems.push((column, e));
                    None
                }
            },
            None if required => {
                problems.push((column, "is empty".into()));
                None
            }
            None => Some(None),
        };
        let amount = money(Some(at.amount), "amount", true).flatten();
        let commission = money(at.commission, "commission", false);
        let net = money(at.net, "net", false);
        let currency = match cell(at.currency).or(self.map.currency.as_deref()) {
            Some(raw) => match raw.parse::<Currency>() {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.push(("currency", e.to_string()));
                    None
                }
            },
            None => {
                problems.push(("currency", "is empty".into()));
                None
            }
        };
        let operation_at = match cell(Some(at.operation_time)) {
            Some(raw) => match time(raw, self.naive_offset) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(("operation_time", e));
                    None
                }
            },
            None => {
                problems.push(("operation_time", "is empty".into()));
                None
            }
        };
        let payout_date = match cell(at.payout_date) {
            Some(raw) => match day(raw) {
                Some(d) => Some(Some(d)),
                None => {
                    problems.push(("payout_date", format!("{} is not a date", excerpt(raw))));
                    None
                }
            },
            None => Some(None),
        };
        let fine = problems.is_empty();
        for (column, problem) in problems {
            self.errors.push(LineError {
                line,
                column: column.to_owned(),
                problem,
            });
        }
        let (
            true,
            Some(operation_id),
            Some(kind),
            Some(amount),
            Some(commission),
            Some(net),
            Some(currency),
            Some(operation_at),
            Some(payout_date),
        ) = (
            fine,
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
            return;
        };
        if let Some(first) = self.seen.get(&operation_id) {
            self.errors.push(LineError {
                line,
                column: "operation_id".into(),
                problem: format!(
                    "{} is already on line {first} of this file",
                    excerpt(&operation_id)
                ),
            });
            return;
        }
        self.seen.insert(operation_id.clone(), line);
        let raw = self
            .names
            .iter()
            .zip(cells.iter())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        self.read.push(RegistryRow {
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
}

impl super::sheet::RowChecker for Registry<'_> {
    type Output = Vec<RegistryRow>;

    fn read_columns(&self) -> Vec<(&'static str, usize)> {
        let at = &self.at;
        [
            ("operation_id", Some(at.operation_id)),
            ("type", Some(at.kind)),
            ("amount", Some(at.amount)),
            ("operation_time", Some(at.operation_time)),
            ("parent_payment_id", at.parent_payment_id),
            ("order_id", at.order_id),
            ("commission", at.commission),
            ("net", at.net),
            ("currency", at.currency),
            ("payout_reference", at.payout_reference),
            ("payout_date", at.payout_date),
        ]
        .into_iter()
        .filter_map(|(key, at)| Some((key, at?)))
        .collect()
    }

    fn errors(&mut self) -> &mut LineErrors {
        &mut self.errors
    }

    fn row<'c>(&mut self, line: u64, cell: impl Fn(usize) -> std::borrow::Cow<'c, str>) {
        let cells: Vec<String> = (0..self.names.len())
            .map(|i| cell(i).into_owned())
            .collect();
        self.check(line, &cells);
    }

    fn finish(self) -> Result<Vec<RegistryRow>, ImportError> {
        if !self.errors.is_empty() {
            return Err(ImportError::Rejected(self.errors));
        }
        Ok(self.read)
    }
}

/// Reads every line of a registry CSV through `map` (times without an offset in
/// `naive_offset`): every problem, by line, or the rows.
pub fn read_registry(
    input: impl Read,
    map: &RegistryMap,
    naive_offset: FixedOffset,
) -> Result<Vec<RegistryRow>, ImportError> {
    use super::sheet::RowChecker as _;

    let mut rows = CsvRows::open(input)?;
    let names: Vec<String> = rows.header.iter().map(column_name).collect();
    let mut registry = Registry::new(&names, map, decimal_mark(rows.delimiter), naive_offset)?;
    while let Some(line) = rows.next(&mut registry.errors)? {
        let cells: Vec<String> = (0..names.len())
            .map(|i| rows.record.get(i).unwrap_or_default().to_owned())
            .collect();
        registry.check(line, &cells);
    }
    registry.finish()
}

/// The sheet a registry workbook is read from: `Registry`, or the only one.
pub const REGISTRY_SHEET: &str = "Registry";

/// Reads every row of a registry workbook (xlsx) through `map`: the same checks as a CSV
/// file. A number cell is read as the spreadsheet shows it (`1234.5`).
pub fn read_registry_xlsx(
    input: impl Read + std::io::Seek,
    map: &RegistryMap,
    naive_offset: FixedOffset,
) -> Result<Vec<RegistryRow>, ImportError> {
    super::sheet::read_xlsx(
        input,
        REGISTRY_SHEET,
        "with the operations on a sheet named Registry",
        |names| Registry::new(names, map, crate::domain::DecimalMark::Dot, naive_offset),
    )
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

/// A day as registries and statements write it: `YYYY-MM-DD` or `DD.MM.YYYY`.
pub(super) fn day(raw: &str) -> Option<NaiveDate> {
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
    fn a_registry_workbook_reads_as_its_csv_does() {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet().set_name("Registry").unwrap();
        let rows: [[&str; 7]; 3] = [
            [
                "TRANSACTION_ID",
                "PARENT_TRANSACTION_ID",
                "TRANSACTION_TYPE",
                "SUM",
                "COMMISSION",
                "TRANS_DATE",
                "ORDER_UID",
            ],
            [
                "9001",
                "",
                "PAYMENT",
                "",
                "",
                "2025-07-13 10:00:00",
                "order-1",
            ],
            ["9002", "9001", "REFUND", "", "", "13.07.2025 18:30:00", ""],
        ];
        for (r, row) in rows.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                let (r, c) = (u32::try_from(r).unwrap(), u16::try_from(c).unwrap());
                if !value.is_empty() {
                    sheet.write_string(r, c, *value).unwrap();
                }
            }
        }
        sheet.write_number(1, 3, 5000.0).unwrap();
        sheet.write_number(1, 4, 175.5).unwrap();
        sheet.write_number(2, 3, -1500.0).unwrap();
        let bytes = book.save_to_buffer().unwrap();
        let read = read_registry_xlsx(
            std::io::Cursor::new(bytes),
            &RegistryMap::default_map(),
            almaty(),
        )
        .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (read[0].line, read[0].amount, read[0].commission),
            (2, d("5000"), Some(d("175.5")))
        );
        assert_eq!(
            (
                read[1].kind,
                read[1].amount,
                read[1].parent_payment_id.as_deref()
            ),
            (RegistryKind::Refund, d("-1500"), Some("9001"))
        );
        // A bad cell is named by the sheet's row, and nothing is read.
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        for (c, name) in rows[0].iter().enumerate() {
            sheet
                .write_string(0, u16::try_from(c).unwrap(), *name)
                .unwrap();
        }
        sheet.write_string(1, 0, "9003").unwrap();
        sheet.write_string(1, 2, "PAYMENT").unwrap();
        sheet.write_string(1, 3, "five").unwrap();
        sheet.write_string(1, 5, "2025-07-13 10:00:00").unwrap();
        let Err(ImportError::Rejected(errors)) = read_registry_xlsx(
            std::io::Cursor::new(book.save_to_buffer().unwrap()),
            &RegistryMap::default_map(),
            almaty(),
        ) else {
            panic!("refused")
        };
        let shown: Vec<String> = errors.shown.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].starts_with("line 2: amount:"), "{shown:?}");
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
