//! Bank statements as XLSX workbooks (issue 27, item 2), read through a column map, because
//! every bank lays its export out its own way: the map (TOML) names the columns, and the
//! statement's own account. Checked whole, as a 1C file is: any bad row refuses it, by row.

use std::borrow::Cow;
use std::io::{Read, Seek};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::import::{ImportError, LineError, LineErrors, column_name};
use crate::domain::bank::{BankLine, Direction, Statement};
use crate::domain::{DecimalMark, parse_amount_with};
use crate::text::excerpt;

/// An example map (docs/finance.md): a Kazakh bank's export with a column per direction.
pub const EXAMPLE_MAP: &str = r#"# The statement's own account (IIK): the credits are to it.
account = "KZ001234567890123456"

[columns]                      # header names, any case
date = "Дата операции"         # 2025-07-14 or 14.07.2025 (a time after it is ignored)
credit = "Кредит"              # money in
debit = "Дебет"                # money out
number = "Номер документа"
counterparty_account = "Счет корреспондента"   # the payer of a credit, the payee of a debit
counterparty_tax_id = "БИН/ИИН корреспондента"
purpose = "Назначение платежа"
knp = "КНП"
"#;

/// What a statement workbook's columns are called.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankMap {
    /// The statement's own account.
    #[serde(default)]
    pub account: Option<String>,
    pub columns: BankColumns,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankColumns {
    pub date: String,
    pub credit: String,
    #[serde(default)]
    pub debit: Option<String>,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub counterparty_account: Option<String>,
    #[serde(default)]
    pub counterparty_tax_id: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub knp: Option<String>,
}

impl BankMap {
    /// A map from its TOML text; `what` names it in a message.
    pub fn parse(text: &str, what: &str) -> Result<Self, ImportError> {
        toml::from_str(text).map_err(|e| {
            ImportError::Header(format!(
                "{what} is not a bank statement map: {}",
                crate::text::clean(&e.to_string(), 300)
            ))
        })
    }
}

/// The sheet a statement workbook is read from: `Statement`, or the only one.
pub const STATEMENT_SHEET: &str = "Statement";

const KEYS: [&str; 8] = [
    "date",
    "credit",
    "debit",
    "number",
    "counterparty_account",
    "counterparty_tax_id",
    "purpose",
    "knp",
];

struct Checker {
    account: Option<String>,
    at: [Option<usize>; 8],
    errors: LineErrors,
    lines: Vec<BankLine>,
}

impl Checker {
    fn new(names: &[String], map: &BankMap) -> Result<Self, ImportError> {
        let c = &map.columns;
        let named = [
            Some(&c.date),
            Some(&c.credit),
            c.debit.as_ref(),
            c.number.as_ref(),
            c.counterparty_account.as_ref(),
            c.counterparty_tax_id.as_ref(),
            c.purpose.as_ref(),
            c.knp.as_ref(),
        ];
        let find = |name: &str| names.iter().position(|n| *n == column_name(name));
        let mut missing = Vec::new();
        let mut at = [None; 8];
        for (i, name) in named.iter().enumerate() {
            if let Some(name) = name {
                at[i] = find(name);
                if at[i].is_none() {
                    missing.push(format!("{} (columns.{})", excerpt(name), KEYS[i]));
                }
            }
        }
        if !missing.is_empty() {
            return Err(ImportError::Header(format!(
                "the sheet has no column {}; the map names it (give the bank's own header in \
                 --map)",
                missing.join(", ")
            )));
        }
        Ok(Self {
            account: map.account.clone(),
            at,
            errors: LineErrors::default(),
            lines: Vec::new(),
        })
    }
}

fn amount(raw: &str) -> Result<Decimal, String> {
    parse_amount_with(raw, DecimalMark::Dot)
        .or_else(|_| parse_amount_with(raw, DecimalMark::Comma))
        .map_err(|e| e.to_string())
}

/// A day, a time after it ignored.
fn day(raw: &str) -> Option<NaiveDate> {
    super::registry::day(raw.split([' ', 'T']).next().unwrap_or(raw))
}

impl super::sheet::RowChecker for Checker {
    type Output = Statement;

    fn read_columns(&self) -> Vec<(&'static str, usize)> {
        KEYS.iter()
            .zip(self.at)
            .filter_map(|(key, at)| Some((*key, at?)))
            .collect()
    }

    fn errors(&mut self) -> &mut LineErrors {
        &mut self.errors
    }

    fn row<'c>(&mut self, line: u64, cell: impl Fn(usize) -> Cow<'c, str>) {
        let get = |i: usize| -> Option<String> {
            let at = self.at[i]?;
            let value = cell(at).trim().to_owned();
            (!value.is_empty()).then_some(value)
        };
        let mut bad = |column: &str, problem: String| {
            self.errors.push(LineError {
                line,
                column: column.to_owned(),
                problem,
            })
        };
        let date = match get(0) {
            Some(raw) => day(&raw).or_else(|| {
                bad("date", format!("{} is not a date", excerpt(&raw)));
                None
            }),
            None => {
                bad("date", "is empty".into());
                None
            }
        };
        let mut money = |i: usize, column: &str| match get(i) {
            Some(raw) => match amount(&raw) {
                Ok(a) => Some(a),
                Err(e) => {
                    bad(column, e);
                    None
                }
            },
            None => Some(Decimal::ZERO),
        };
        let credit = money(1, "credit");
        let debit = money(2, "debit");
        let (Some(date), Some(credit), Some(debit)) = (date, credit, debit) else {
            return;
        };
        let (direction, amount) = match (credit > Decimal::ZERO, debit > Decimal::ZERO) {
            (true, false) => (Direction::Credit, credit),
            (false, true) => (Direction::Debit, debit),
            _ => {
                self.errors.push(LineError {
                    line,
                    column: "credit".into(),
                    problem: format!(
                        "a row is money in or money out: credit {credit}, debit {debit}"
                    ),
                });
                return;
            }
        };
        let text = |i: usize| get(i).map(|v| crate::text::clean(&v, 2000));
        let (counterparty_account, counterparty_tax_id) = (text(4), text(5));
        let ours = self.account.clone();
        let (payer_account, payer_tax_id, payee_account, payee_tax_id) = match direction {
            Direction::Credit => (counterparty_account, counterparty_tax_id, ours, None),
            Direction::Debit => (ours, None, counterparty_account, counterparty_tax_id),
        };
        self.lines.push(BankLine {
            line,
            kind: "выписка".into(),
            number: text(3),
            date,
            amount,
            direction,
            payer_account,
            payer_tax_id,
            payee_account,
            payee_tax_id,
            knp: text(7),
            kbe: None,
            purpose: text(6),
        });
    }

    fn finish(self) -> Result<Statement, ImportError> {
        if !self.errors.is_empty() {
            return Err(ImportError::Rejected(self.errors));
        }
        Ok(Statement {
            format: "xlsx",
            encoding: "xlsx",
            from: self.lines.iter().map(|l| l.date).min(),
            to: self.lines.iter().map(|l| l.date).max(),
            account: self.account,
            lines: self.lines,
        })
    }
}

/// Reads a statement workbook (sheet `Statement`, or its only sheet) through `map`.
pub fn read_statement_xlsx(
    input: impl Read + Seek,
    map: &BankMap,
) -> Result<Statement, ImportError> {
    super::sheet::read_xlsx(
        input,
        STATEMENT_SHEET,
        "with the operations on a sheet named Statement",
        |names| Checker::new(names, map),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workbook(rows: &[&[&str]], amounts: &[(u32, u16, f64)]) -> Vec<u8> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        for (r, row) in rows.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                if !value.is_empty() {
                    sheet
                        .write_string(u32::try_from(r).unwrap(), u16::try_from(c).unwrap(), *value)
                        .unwrap();
                }
            }
        }
        for (r, c, v) in amounts {
            sheet.write_number(*r, *c, *v).unwrap();
        }
        book.save_to_buffer().unwrap()
    }

    const HEADER: &[&str] = &[
        "Дата операции",
        "Номер документа",
        "Дебет",
        "Кредит",
        "Счет корреспондента",
        "БИН/ИИН корреспондента",
        "Назначение платежа",
        "КНП",
    ];

    #[test]
    fn a_statement_workbook_reads_through_its_map() {
        let bytes = workbook(
            &[
                HEADER,
                &[
                    "14.07.2025",
                    "5521",
                    "",
                    "",
                    "KZ009999999999999999",
                    "111111111111",
                    "Возмещение по реестру",
                    "119",
                ],
                &[
                    "2025-07-14",
                    "5522",
                    "",
                    "",
                    "KZ550000000000000001",
                    "",
                    "Аренда за июль",
                    "710",
                ],
            ],
            &[(1, 3, 96525.0), (2, 2, 1500.5)],
        );
        let map = BankMap::parse(EXAMPLE_MAP, "the example").unwrap();
        let statement = read_statement_xlsx(std::io::Cursor::new(bytes), &map).unwrap();
        assert_eq!(statement.format, "xlsx");
        assert_eq!(statement.lines.len(), 2);
        let credit = &statement.lines[0];
        assert_eq!(
            (credit.direction, credit.amount, credit.date.to_string()),
            (
                Direction::Credit,
                "96525".parse().unwrap(),
                "2025-07-14".to_owned()
            )
        );
        assert_eq!(
            credit.payer_account.as_deref(),
            Some("KZ009999999999999999")
        );
        assert_eq!(
            credit.payee_account.as_deref(),
            Some("KZ001234567890123456")
        );
        assert_eq!(credit.knp.as_deref(), Some("119"));
        let debit = &statement.lines[1];
        assert_eq!(
            (debit.direction, debit.amount),
            (Direction::Debit, "1500.5".parse().unwrap())
        );
        assert_eq!(debit.payee_account.as_deref(), Some("KZ550000000000000001"));
    }

    #[test]
    fn a_bad_row_refuses_the_workbook_by_row_and_a_missing_column_by_name() {
        let bytes = workbook(
            &[
                HEADER,
                &["вчера", "1", "", "", "", "", "", ""],
                &["2025-07-14", "2", "", "", "", "", "", ""],
            ],
            &[(1, 3, 10.0), (2, 2, 5.0), (2, 3, 5.0)],
        );
        let map = BankMap::parse(EXAMPLE_MAP, "the example").unwrap();
        let Err(ImportError::Rejected(errors)) =
            read_statement_xlsx(std::io::Cursor::new(bytes), &map)
        else {
            panic!("refused")
        };
        let shown: Vec<String> = errors.shown.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("line 2: date:"), "{shown:?}");
        assert!(
            shown[1].starts_with("line 3: credit: a row is money in or money out"),
            "{shown:?}"
        );

        let bytes = workbook(&[&["Дата операции", "Кредит"]], &[]);
        let Err(ImportError::Header(problem)) =
            read_statement_xlsx(std::io::Cursor::new(bytes), &map)
        else {
            panic!("refused")
        };
        assert!(problem.contains("(columns.debit)"), "{problem}");
    }
}
