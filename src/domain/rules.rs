//! The rules every value must pass before it is stored: the Rust side of the schema's
//! `recon.text_problem`, `recon.amount_problem` and `recon.timestamp_problem` (migration
//! 20261125000004). Intake (`enqueue`, `import`) and the provider's answers are checked here,
//! so PostgreSQL never refuses a value the daemon accepted; the schema's CHECK constraints
//! hold rows that other systems insert with SQL to the same rules. The problem texts are the
//! same words on both sides, and a test keeps the two in step.

use chrono::{DateTime, Datelike as _, FixedOffset, NaiveDateTime, TimeZone as _, Utc};
use rust_decimal::Decimal;

/// Most digits an amount may have before the decimal point (so `|amount| < 10^18`).
pub const AMOUNT_MAX_INTEGER_DIGITS: u32 = 18;
/// Most digits an amount may have after the decimal point.
pub const AMOUNT_MAX_SCALE: u32 = 8;

/// Characters that are invisible or look blank, so an id holding one looks like another id:
/// Unicode's format characters (general category Cf: zero-width spaces and joiners, direction
/// marks and overrides, the byte order mark, tags…), its Default_Ignorable_Code_Point set
/// (Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, variation selectors, the combining
/// grapheme joiner…), and U+2800 BRAILLE PATTERN BLANK. Derived from Unicode's
/// DerivedCoreProperties (`perl -e '… /\p{Default_Ignorable_Code_Point}/ …'` and `\p{Cf}`
/// list them); the schema's `recon.text_problem` lists the same ranges.
const INVISIBLE_CHARACTERS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{2800}', '\u{2800}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// A character that has no business inside an id or a short text: a control character, an
/// invisible or blank-looking one, or a line or paragraph separator.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || INVISIBLE_CHARACTERS
            .iter()
            .any(|&(low, high)| (low..=high).contains(&c))
}

/// What is wrong with a short text (an id, an order id), or `None`: it must be 1 to
/// `max_chars` characters, hold no control, invisible or blank-looking character, be in
/// Unicode's composed normal form (NFC: `café` typed and `café` pasted from a decomposed
/// source are then one id), and have no whitespace around it. Intake trims and normalises
/// before it asks ([`intake_text`]), so only a caller inserting by SQL meets the last two
/// rules.
pub fn text_problem(value: &str, max_chars: usize) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".into());
    }
    if value.chars().count() > max_chars {
        return Some(format!("is longer than {max_chars} characters"));
    }
    if let Some(c) = value.chars().find(|&c| is_invisible(c)) {
        return Some(format!(
            "contains a control or invisible character (U+{:04X})",
            u32::from(c)
        ));
    }
    if !unicode_normalization::is_nfc(value) {
        return Some(NOT_NFC.into());
    }
    if value.trim() != value {
        return Some("has spaces around it".into());
    }
    None
}

/// `recon.text_problem`'s words for a text that is not in NFC.
const NOT_NFC: &str = "is not in Unicode's composed form (NFC); normalise it, e.g. with \
                       normalize(value, NFC) in SQL";

/// A short text as a person, a file or a callback gives it: whitespace around it dropped and
/// composed to NFC, the same way on every intake path, so `" 1001"` and `"1001"`, or `café`
/// composed and decomposed, are one value. Rules are checked afterwards.
pub fn intake_text(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    raw.trim().nfc().collect()
}

/// What is wrong with an amount, or `None`: at most 18 digits before the decimal point and 8
/// after, so it is held exactly here (`Decimal`) and there (`numeric`), and a sum of many is
/// still exact. The sign is the caller's rule.
pub fn amount_problem(amount: Decimal) -> Option<String> {
    if amount.abs() >= Decimal::from(10_i64.pow(AMOUNT_MAX_INTEGER_DIGITS)) {
        return Some(format!(
            "has more than {AMOUNT_MAX_INTEGER_DIGITS} digits before the decimal point"
        ));
    }
    if amount.scale() > AMOUNT_MAX_SCALE {
        return Some(format!(
            "has more than {AMOUNT_MAX_SCALE} digits after the decimal point"
        ));
    }
    None
}

/// Reads a decimal exactly (plain or scientific notation) and applies [`amount_problem`].
/// Text that would have to be rounded to fit is refused, never rounded.
pub fn exact_amount(text: &str) -> Result<Decimal, String> {
    let not_a_number = || "is not a decimal number (e.g. 1234.50)".to_owned();
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (text, None),
    };
    if mantissa.is_empty()
        || mantissa.contains('_')
        || !mantissa
            .trim_start_matches(['-', '+'])
            .starts_with(|c: char| c.is_ascii_digit() || c == '.')
    {
        return Err(not_a_number());
    }
    // `from_str_exact` refuses what it would have to round; scientific notation only moves
    // the decimal point of a mantissa that was itself read exactly.
    let base = Decimal::from_str_exact(mantissa).map_err(|e| match e {
        rust_decimal::Error::Underflow => "has too many digits to be held exactly".to_owned(),
        rust_decimal::Error::ErrorString(message) if message.contains("overflow") => {
            format!("has more than {AMOUNT_MAX_INTEGER_DIGITS} digits before the decimal point")
        }
        _ => not_a_number(),
    })?;
    let amount = match exponent {
        None => base,
        Some(_) if base.is_zero() => Decimal::ZERO,
        Some(exponent) => {
            let exponent: i32 = exponent.parse().map_err(|_| not_a_number())?;
            Decimal::from_scientific(&format!("{base}e{exponent}")).map_err(|_| {
                if exponent > 0 {
                    format!(
                        "has more than {AMOUNT_MAX_INTEGER_DIGITS} digits before the decimal point"
                    )
                } else {
                    "has too many digits to be held exactly".to_owned()
                }
            })?
        }
    };
    match amount_problem(amount) {
        Some(problem) => Err(problem),
        None => Ok(amount),
    }
}

/// RFC 3339 with or without fractions; a naive `YYYY-MM-DD[ T]HH:MM:SS[.f]` is read in
/// `naive_offset` (Asia/Almaty, UTC+5, unless configured otherwise). Truncated to the
/// microsecond, as PostgreSQL stores it, so a time compares the same here and there.
pub fn parse_timestamp(raw: &str, naive_offset: FixedOffset) -> Option<DateTime<Utc>> {
    use chrono::SubsecRound as _;
    let raw = raw.trim();
    let parsed = match DateTime::parse_from_rfc3339(raw) {
        Ok(parsed) => Some(parsed.with_timezone(&Utc)),
        Err(_) => ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
            .and_then(|naive| naive_offset.from_local_datetime(&naive).single())
            .map(|local| local.with_timezone(&Utc)),
    }?;
    Some(parsed.trunc_subsecs(6))
}

/// What is wrong with a timestamp, or `None`: it must fall within the years 1 to 9999, which
/// RFC 3339, PostgreSQL and every report can all write.
pub fn timestamp_problem(at: DateTime<Utc>) -> Option<String> {
    (!(1..=9999).contains(&at.year())).then(|| "is outside the years 1 to 9999".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_visible_trimmed_and_bounded() {
        assert_eq!(text_problem("1234567890", 128), None);
        assert_eq!(text_problem("Счет-1 A", 128), None, "inner spaces are text");
        assert_eq!(text_problem("", 128).unwrap(), "is empty");
        assert_eq!(
            text_problem(&"9".repeat(129), 128).unwrap(),
            "is longer than 128 characters"
        );
        assert_eq!(
            text_problem(&"й".repeat(128), 128),
            None,
            "characters, not bytes"
        );
        for (bad, code) in [
            ("a\tb", "0009"),
            ("a\u{0}b", "0000"),
            ("12\u{200B}3", "200B"),
            ("\u{FEFF}123", "FEFF"),
            ("1\u{2028}2", "2028"),
            ("1\u{202E}2", "202E"),
            ("x\u{E0041}", "E0041"),
            ("\u{1b}[31m", "001B"),
        ] {
            let problem = text_problem(bad, 128).unwrap();
            assert!(problem.contains(&format!("U+{code}")), "{bad:?}: {problem}");
        }
        for (bad, code) in [
            ("\u{3164}", "3164"),
            ("\u{115F}1", "115F"),
            ("1\u{FFA0}", "FFA0"),
            ("\u{2800}", "2800"),
            ("1\u{FE0F}", "FE0F"),
            ("1\u{E0100}", "E0100"),
            ("1\u{034F}2", "034F"),
        ] {
            let problem = text_problem(bad, 128).unwrap();
            assert_eq!(
                problem,
                format!("contains a control or invisible character (U+{code})"),
                "{bad:?}"
            );
        }
        assert_eq!(text_problem("caf\u{E9}-1", 128), None);
        assert_eq!(text_problem("caf\u{65}\u{301}-1", 128).unwrap(), NOT_NFC);
        assert_eq!(intake_text(" caf\u{65}\u{301}-1 "), "caf\u{E9}-1");
        assert_eq!(intake_text("\u{3000}1001\u{A0}"), "1001");
        assert_eq!(text_problem(" x", 128).unwrap(), "has spaces around it");
        assert_eq!(
            text_problem("x\u{3000}", 128).unwrap(),
            "has spaces around it"
        );
    }

    #[test]
    fn amounts_are_exact_or_refused() {
        let ok = |text: &str| exact_amount(text).unwrap().to_string();
        assert_eq!(ok("5000.00"), "5000.00", "scale kept");
        assert_eq!(ok("1e3"), "1000");
        assert_eq!(ok("1.5E-2"), "0.015");
        assert_eq!(ok("-12.5"), "-12.5");
        assert_eq!(ok("0e29"), "0");
        assert_eq!(
            ok("999999999999999999.99999999"),
            "999999999999999999.99999999"
        );
        let refused = |text: &str| exact_amount(text).unwrap_err();
        assert!(refused("1000000000000000000").contains("18 digits before"));
        assert!(refused("1e18").contains("18 digits before"));
        assert!(refused("1e40").contains("18 digits before"));
        assert!(refused("0.123456789").contains("8 digits after"));
        assert!(refused("1.00000000000000000000000000001").contains("held exactly"));
        assert!(refused("99999999999999999999999999999999").contains("18 digits before"));
        for junk in [
            "NaN", "inf", "Infinity", "", "e5", "1e", "1e99999", "1_000", "0x10", "ten",
        ] {
            assert!(exact_amount(junk).is_err(), "{junk:?} accepted");
        }
    }

    #[test]
    fn timestamps_within_four_digit_years() {
        let at = |raw: &str| raw.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(timestamp_problem(at("2025-07-11T11:19:49Z")), None);
        assert_eq!(timestamp_problem(at("0001-01-01T00:00:00Z")), None);
        assert_eq!(timestamp_problem(at("9999-12-31T23:59:59Z")), None);
        assert!(timestamp_problem(DateTime::<Utc>::MAX_UTC).is_some());
        assert!(timestamp_problem(DateTime::<Utc>::MIN_UTC).is_some());
    }

    #[test]
    fn timestamps_in_every_seen_form() {
        let utc = |raw: &str| {
            DateTime::parse_from_rfc3339(raw)
                .unwrap()
                .with_timezone(&Utc)
        };
        let expected = utc("2025-07-11T11:19:49Z");
        for raw in [
            "2025-07-11T11:19:49+00:00",
            "2025-07-11T11:19:49Z",
            "2025-07-11 16:19:49",
            "2025-07-11T16:19:49",
        ] {
            assert_eq!(
                parse_timestamp(raw, FixedOffset::east_opt(5 * 3600).unwrap()),
                Some(expected),
                "{raw}"
            );
        }
        assert_eq!(
            parse_timestamp(
                "2025-07-11T11:19:49.123456Z",
                FixedOffset::east_opt(5 * 3600).unwrap()
            )
            .unwrap()
            .timestamp_subsec_micros(),
            123456
        );
        assert_eq!(
            parse_timestamp("11.07.2025", FixedOffset::east_opt(5 * 3600).unwrap()),
            None
        );
        assert_eq!(
            parse_timestamp(
                "2025-07-11T11:19:49.1234567Z",
                FixedOffset::east_opt(5 * 3600).unwrap()
            ),
            Some(utc("2025-07-11T11:19:49.123456Z")),
            "to the microsecond, as PostgreSQL keeps it"
        );
    }
}
