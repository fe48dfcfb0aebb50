//! Bank statements in the 1C exchange format (`1CClientBankExchange`,
//! http://v8.1c.ru/edi/edi_stnd/100/101.htm), as Kazakh and Russian banks export them: `key=value`
//! lines, a header, balance sections, one `СекцияДокумент … КонецДокумента` per operation
//! (docs/provider/MERCHANT_STATUS.md, "Bank statements").
//!
//! Two key sets are read: the Russian standard (`Сумма`, `ДатаПоступило`/`ДатаСписано`,
//! `…Счет`, `…ИНН`; the direction follows from which account is ours) and the Kazakh exports
//! (`СуммаПриход`/`СуммаРасход`, `ДатаОперации`, `…ИИК`, `…БИН_ИИН` and its variants, `КБЕ`,
//! `КодНазначенияПлатежа` or `КНП`). The encoding is the file's own `Кодировка`: `Windows`
//! (cp1251) or `DOS` (cp866), decoded strictly (a byte the encoding has no character for is an
//! error, never a replacement character); UTF-8, which some banks write, is read as such.
//! The whole file is checked first: any bad document refuses it, by line.

use chrono::NaiveDate;
use rust_decimal::Decimal;

/// The largest statement read: a year of a busy account is a few megabytes.
pub const MAX_STATEMENT_BYTES: usize = 64 << 20;

pub use crate::domain::bank::{BankLine, Direction, Statement};

/// Why a statement was refused: nothing of it is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error(
        "not a 1C bank statement: its first line is not 1CClientBankExchange (export the \
         statement from the bank as a 1C exchange file)"
    )]
    NotOneC,
    #[error("the file is larger than {MAX_STATEMENT_BYTES} bytes; export a shorter period")]
    TooLarge,
    #[error("{0}")]
    Encoding(String),
    /// Every bad line, in order.
    #[error("{}", .0.iter().map(|(line, problem)| format!("line {line}: {problem}")).collect::<Vec<_>>().join("; "))]
    Lines(Vec<(u64, String)>),
}

/// Decodes and reads a 1C statement.
pub fn read_1c(bytes: &[u8]) -> Result<Statement, StatementError> {
    if bytes.len() > MAX_STATEMENT_BYTES {
        return Err(StatementError::TooLarge);
    }
    let (text, encoding) = decode(bytes)?;
    parse(&text, encoding)
}

/// The text of the file, in the encoding its `Кодировка` names.
fn decode(bytes: &[u8]) -> Result<(String, &'static str), StatementError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if !bytes.starts_with(b"1CClientBankExchange") {
        return Err(StatementError::NotOneC);
    }
    // `Кодировка` is itself in the file's encoding: read the header as each one would.
    let strict = |encoding: &'static encoding_rs::Encoding| {
        encoding
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|text| text.into_owned())
    };
    if let Ok(text) = std::str::from_utf8(bytes)
        && declared(text).is_none_or(|name| name.eq_ignore_ascii_case("utf-8"))
    {
        return Ok((text.to_owned(), "UTF-8"));
    }
    for (encoding, name) in [
        (encoding_rs::WINDOWS_1251, "windows"),
        (encoding_rs::IBM866, "dos"),
    ] {
        let head = encoding
            .decode_without_bom_handling(&bytes[..bytes.len().min(4096)])
            .0;
        if declared(&head).is_some_and(|said| said.eq_ignore_ascii_case(name)) {
            return strict(encoding)
                .map(|text| (text, encoding.name()))
                .ok_or_else(|| {
                    StatementError::Encoding(format!(
                        "the file says Кодировка={} but holds bytes that are no characters in {}: \
                         export it again",
                        name,
                        encoding.name()
                    ))
                });
        }
    }
    Err(StatementError::Encoding(
        "the file names no encoding this reader knows (Кодировка=Windows or DOS, or UTF-8 \
         text): export it again from the bank"
            .into(),
    ))
}

/// The value of `Кодировка` among the header's lines, before the first section.
fn declared(text: &str) -> Option<&str> {
    text.lines()
        .take_while(|line| !line.starts_with("Секция"))
        .find_map(|line| line.trim().strip_prefix("Кодировка="))
        .map(str::trim)
}

/// One document's fields, as read, by key.
#[derive(Default)]
struct Fields<'t> {
    start: u64,
    kind: &'t str,
    values: Vec<(&'t str, &'t str)>,
}

impl<'t> Fields<'t> {
    /// The first of `keys` present with a value.
    fn get(&self, keys: &[&str]) -> Option<&'t str> {
        keys.iter().find_map(|key| {
            self.values
                .iter()
                .find(|(k, v)| k == key && !v.is_empty())
                .map(|(_, v)| *v)
        })
    }

    fn text(&self, keys: &[&str]) -> Option<String> {
        self.get(keys).map(str::to_owned)
    }
}

fn parse(text: &str, encoding: &'static str) -> Result<Statement, StatementError> {
    let mut statement = Statement {
        format: "1c",
        encoding,
        account: None,
        from: None,
        to: None,
        lines: Vec::new(),
    };
    let mut documents: Vec<Fields<'_>> = Vec::new();
    let mut current: Option<Fields<'_>> = None;
    let mut errors: Vec<(u64, String)> = Vec::new();
    let mut ended = false;
    for (index, raw) in text.lines().enumerate().skip(1) {
        let line = index as u64 + 1;
        let raw = raw.trim_end_matches('\r').trim();
        if raw.is_empty() {
            continue;
        }
        if ended {
            errors.push((line, "text after КонецФайла".into()));
            break;
        }
        let (key, value) = raw.split_once('=').unwrap_or((raw, ""));
        let (key, value) = (key.trim(), value.trim());
        match (key, current.as_mut()) {
            ("СекцияДокумент", None) => {
                current = Some(Fields {
                    start: line,
                    kind: value,
                    values: Vec::new(),
                })
            }
            ("СекцияДокумент", Some(_)) => {
                errors.push((line, "a document starts before the last one ended".into()));
            }
            ("КонецДокумента", Some(_)) => documents.extend(current.take()),
            ("КонецДокумента", None) => {
                errors.push((line, "КонецДокумента without a document".into()));
            }
            ("КонецФайла", None) => ended = true,
            (_, Some(fields)) => fields.values.push((key, value)),
            ("РасчСчет", None) if !value.is_empty() => {
                statement.account.get_or_insert_with(|| value.to_owned());
            }
            ("ДатаНачала", None) => statement.from = statement.from.or(date(value)),
            ("ДатаКонца", None) => statement.to = statement.to.or(date(value)),
            _ => {}
        }
    }
    if let Some(open) = current {
        errors.push((
            open.start,
            "the document never ends (no КонецДокумента)".into(),
        ));
    }
    for fields in &documents {
        match line_of(fields, statement.account.as_deref()) {
            Ok(line) => statement.lines.push(line),
            Err(problem) => errors.push((fields.start, problem)),
        }
    }
    if errors.is_empty() {
        Ok(statement)
    } else {
        errors.sort();
        Err(StatementError::Lines(errors))
    }
}

fn date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%d.%m.%Y").ok()
}

/// An amount as banks write it: digits, a dot or a comma before the kopecks/tiyn.
fn amount(text: &str) -> Result<Decimal, String> {
    let plain = text.trim().replace([' ', '\u{a0}'], "").replace(',', ".");
    match plain.parse::<Decimal>() {
        Ok(a) if a >= Decimal::ZERO && a.scale() <= 2 => Ok(a),
        Ok(_) => Err(format!(
            "{} is not an amount of money (0 or more, at most two decimals)",
            crate::text::excerpt(text)
        )),
        Err(_) => Err(format!("{} is not an amount", crate::text::excerpt(text))),
    }
}

const PAYER_ACCOUNT: [&str; 3] = ["ПлательщикИИК", "ПлательщикСчет", "ПлательщикРасчСчет"];
const PAYEE_ACCOUNT: [&str; 3] = ["ПолучательИИК", "ПолучательСчет", "ПолучательРасчСчет"];
const PAYER_TAX_ID: [&str; 5] = [
    "ПлательщикБИН_ИИН",
    "ПлательщикБИНИИН",
    "ПлательщикБИН",
    "ПлательщикИИН",
    "ПлательщикИНН",
];
const PAYEE_TAX_ID: [&str; 5] = [
    "ПолучательБИН_ИИН",
    "ПолучательБИНИИН",
    "ПолучательБИН",
    "ПолучательИИН",
    "ПолучательИНН",
];

fn line_of(fields: &Fields<'_>, ours: Option<&str>) -> Result<BankLine, String> {
    let payer_account = fields.text(&PAYER_ACCOUNT);
    let payee_account = fields.text(&PAYEE_ACCOUNT);
    let read = |key: &str| fields.get(&[key]).map(amount).transpose();
    let (amount, direction) = match (read("СуммаПриход")?, read("СуммаРасход")?)
    {
        (Some(credit), Some(debit)) if !credit.is_zero() && !debit.is_zero() => {
            return Err("both СуммаПриход and СуммаРасход hold an amount".into());
        }
        (Some(credit), _) if !credit.is_zero() => (credit, Direction::Credit),
        (_, Some(debit)) if !debit.is_zero() => (debit, Direction::Debit),
        _ => {
            let amount = read("Сумма")?.ok_or("no amount (Сумма, СуммаПриход or СуммаРасход)")?;
            // The Russian set names no direction: it is whichever side is ours.
            let direction = if ours.is_some() && payee_account.as_deref() == ours {
                Direction::Credit
            } else if ours.is_some() && payer_account.as_deref() == ours {
                Direction::Debit
            } else if fields.get(&["ДатаПоступило"]).is_some() {
                Direction::Credit
            } else if fields.get(&["ДатаСписано"]).is_some() {
                Direction::Debit
            } else {
                return Err(
                    "neither side is the statement's account (РасчСчет) and no ДатаПоступило \
                     or ДатаСписано says which way the money went"
                        .into(),
                );
            };
            (amount, direction)
        }
    };
    let value_date = match direction {
        Direction::Credit => ["ДатаОперации", "ДатаПоступило", "ДатаДокумента", "Дата"],
        Direction::Debit => ["ДатаОперации", "ДатаСписано", "ДатаДокумента", "Дата"],
    };
    let raw_date = fields
        .get(&value_date)
        .ok_or("no date (ДатаОперации, ДатаПоступило, ДатаСписано or Дата)")?;
    let date = date(raw_date).ok_or_else(|| {
        format!(
            "{} is not a date (DD.MM.YYYY)",
            crate::text::excerpt(raw_date)
        )
    })?;
    Ok(BankLine {
        line: fields.start,
        kind: fields.kind.to_owned(),
        number: fields.text(&["НомерДокумента", "Номер"]),
        date,
        amount,
        direction,
        payer_account,
        payer_tax_id: fields.text(&PAYER_TAX_ID),
        payee_account,
        payee_tax_id: fields.text(&PAYEE_TAX_ID),
        knp: fields.text(&["КодНазначенияПлатежа", "КНП"]),
        kbe: fields.text(&["ПолучательКБЕ", "КБЕ"]),
        purpose: fields.text(&["НазначениеПлатежа"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/bank/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn a_kazakh_statement_reads_the_same_in_either_encoding() {
        for (name, encoding) in [("kz_windows.txt", "windows-1251"), ("kz_dos.txt", "IBM866")] {
            let statement = read_1c(&fixture(name)).unwrap();
            assert_eq!(statement.encoding, encoding, "{name}");
            assert_eq!(statement.account.as_deref(), Some("KZ001234567890123456"));
            assert_eq!(statement.from, NaiveDate::from_ymd_opt(2025, 7, 14));
            let [credit, debit] = statement.lines.as_slice() else {
                panic!("{name}: {:?}", statement.lines)
            };
            assert_eq!(
                (credit.amount, credit.direction, credit.line),
                (d("96525.00"), Direction::Credit, 18)
            );
            assert_eq!(credit.payer_tax_id.as_deref(), Some("111111111111"));
            assert_eq!(
                credit.payer_account.as_deref(),
                Some("KZ009999999999999999")
            );
            assert_eq!(
                (credit.knp.as_deref(), credit.kbe.as_deref()),
                (Some("119"), Some("17"))
            );
            assert_eq!(
                credit.purpose.as_deref(),
                Some("Возмещение по реестру за 13.07.2025")
            );
            assert_eq!(credit.date, NaiveDate::from_ymd_opt(2025, 7, 14).unwrap());
            assert_eq!(
                (debit.amount, debit.direction),
                (d("1500.00"), Direction::Debit),
                "a decimal comma, and the debit column"
            );
            assert_eq!(debit.payee_tax_id.as_deref(), Some("333333333333"), "…БИН");
            assert_eq!(
                debit.payer_tax_id.as_deref(),
                Some("222222222222"),
                "…БИНИИН"
            );
            assert_eq!(debit.knp.as_deref(), Some("859"), "КНП, as an alias");
        }
    }

    #[test]
    fn a_russian_statement_takes_its_direction_from_which_account_is_ours() {
        for name in ["ru_dos.txt", "ru_windows.txt"] {
            let statement = read_1c(&fixture(name)).unwrap();
            assert_eq!(statement.account.as_deref(), Some("40702810900000012345"));
            let [credit, debit] = statement.lines.as_slice() else {
                panic!("{name}: {:?}", statement.lines)
            };
            assert_eq!(
                (credit.amount, credit.direction, credit.number.as_deref()),
                (d("48210.55"), Direction::Credit, Some("17"))
            );
            assert_eq!(
                credit.date,
                NaiveDate::from_ymd_opt(2025, 8, 2).unwrap(),
                "the day it arrived, not the order's date"
            );
            assert_eq!(credit.payer_tax_id.as_deref(), Some("7700000001"));
            assert_eq!(credit.kind, "Платежное поручение");
            assert_eq!(
                (debit.amount, debit.direction),
                (d("300.00"), Direction::Debit)
            );
        }
    }

    #[test]
    fn a_statement_with_a_bad_document_is_refused_whole_by_line() {
        let text = "1CClientBankExchange\nКодировка=UTF-8\nРасчСчет=KZ1\n\
                    СекцияДокумент=выписка\nСуммаПриход=десять\nДатаОперации=14.07.2025\nКонецДокумента\n\
                    СекцияДокумент=выписка\nСуммаПриход=5.00\nДатаОперации=31.02.2025\nКонецДокумента\n\
                    СекцияДокумент=выписка\nСуммаПриход=5.00\nСуммаРасход=6.00\nДатаОперации=01.03.2025\nКонецДокумента\n\
                    СекцияДокумент=выписка\nСуммаПриход=5.001\nДатаОперации=01.03.2025\n";
        let Err(StatementError::Lines(lines)) = read_1c(text.as_bytes()) else {
            panic!("refused")
        };
        let lines: Vec<u64> = lines.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [4, 8, 12, 17]);
        assert!(matches!(
            read_1c(b"payment_id,amount\n1,2\n"),
            Err(StatementError::NotOneC)
        ));
        // A file that names no encoding this reader knows is refused.
        let unknown = "1CClientBankExchange\nКодировка=KOI8\n".as_bytes();
        assert!(matches!(read_1c(unknown), Err(StatementError::Encoding(_))));
    }
}
