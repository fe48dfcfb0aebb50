//! The command line's names for the values of rooms below (report formats, day bases, flag
//! classes, encodings, the simulator's mixes): clap stays in `commands`, and each room keeps
//! plain enums. Each value is listed once here, with the name `--help` shows, its aliases
//! and its help line.

use clap::builder::PossibleValue;

use crate::intake::encoding::Encoding;
use crate::reporting::Format;
use crate::reporting::digest::DigestFormat;
use crate::simulator::Builtin;
use crate::store::report::{ClassFilter, DayBasis};

/// `impl clap::ValueEnum for $ty` from its values: `Variant => "name" ["alias", …]: "help"`.
macro_rules! values {
    ($ty:ty { $($variant:path => $name:literal [$($alias:literal),*] : $help:literal),+ $(,)? }) => {
        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($variant => PossibleValue::new($name)$(.alias($alias))*.help($help)),+
                })
            }
        }
    };
}

values!(Format {
    Format::Table => "table" []: "Aligned columns for a person at a terminal",
    Format::Csv => "csv" []: "RFC 4180 CSV for programs: a dot for decimals, times in UTC",
    Format::Json => "json" []: "A JSON array of objects, amounts as strings (exact)",
    Format::Xlsx => "xlsx" []: "An Excel workbook: amounts as numbers, days and local times as \
        dates, the header row frozen (needs --output)",
});

values!(DigestFormat {
    DigestFormat::Text => "text" []: "Plain text",
    DigestFormat::Markdown => "markdown" []: "Markdown, for a chat or a ticket",
    DigestFormat::Json => "json" []: "JSON, times in RFC 3339 with the reporting zone's offset",
});

values!(DayBasis {
    DayBasis::Created => "created" []: "The day it was created (created_at, in recon.timezone): \
        the merchant's document date, the day and month the payment belongs to",
    DayBasis::FirstSeenSettled => "first-seen-settled" ["settled"]: "The day the daemon first \
        saw it paid, failed or incomplete: when the daemon learned, not when the payer paid; \
        unsettled payments are left out (`settled` is its old name)",
});

values!(ClassFilter {
    ClassFilter::Action => "action" []: "Flags a person must act on (the exception queue)",
    ClassFilter::Info => "info" []: "Flags recorded for the history only",
    ClassFilter::All => "all" []: "Both",
});

values!(Encoding {
    Encoding::Utf8 => "utf-8" ["utf8"]: "UTF-8, with or without a byte-order mark",
    Encoding::Cp1251 => "cp1251" ["windows-1251"]: "Windows-1251, what Excel in ru and kk \
        locales saves as \"CSV\"",
});

values!(Builtin {
    Builtin::Realistic => "realistic" []: "A realistic mix: most payments go process → \
        success; some fail, some expire unpaid, a few are paid a different amount or \
        currency, some are invisible at first, and a few answers are a 5xx or a 429",
    Builtin::Paid => "paid" []: "Every payment is paid on the first answer, for the expected \
        amount",
    Builtin::NotFound => "not-found" []: "The provider knows no payment",
});

#[cfg(test)]
mod tests {
    use clap::ValueEnum as _;

    use super::*;

    /// Every variant has a name, and the names parse back to it.
    fn round_trips<T: clap::ValueEnum + PartialEq + std::fmt::Debug>() {
        for value in T::value_variants() {
            let name = value.to_possible_value().unwrap();
            assert_eq!(&T::from_str(name.get_name(), false).unwrap(), value);
        }
    }

    #[test]
    fn every_value_has_a_name_that_parses_back() {
        round_trips::<Format>();
        round_trips::<DigestFormat>();
        round_trips::<DayBasis>();
        round_trips::<ClassFilter>();
        round_trips::<Encoding>();
        round_trips::<Builtin>();
        assert_eq!(
            DayBasis::from_str("settled", false),
            Ok(DayBasis::FirstSeenSettled)
        );
        assert_eq!(
            Encoding::from_str("windows-1251", false),
            Ok(Encoding::Cp1251)
        );
    }
}
