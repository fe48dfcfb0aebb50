//! `import`: start tracking every payment in a CSV file, all rows checked first, in one
//! transaction.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{print_line_errors, rows};
use crate::intake::{ImportError, import_csv};
use crate::settings::Settings;
use crate::store;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CSV with a header row: payment_id (required), expected_amount, expected_currency,
    /// order_id, created_at, expires_at, in any order; `-` reads standard input.
    pub file: PathBuf,
    /// The file's encoding: utf-8, or cp1251 for what Excel in Russian and Kazakh locales
    /// saves as "CSV". Never guessed: a file that is not UTF-8 is refused, saying this.
    #[arg(long, value_enum, default_value = "utf-8")]
    pub encoding: crate::intake::encoding::Encoding,
}

pub async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let input: Box<dyn Read + Send> = if name == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.file).with_context(|| format!("cannot open {name}"))?)
    };
    let input = args.encoding.reader(input);
    let offset = settings.provider.naive_offset()?;
    let pool = store::connect_to_schema(&settings.database).await?;
    match import_csv(&pool, input, offset).await {
        Ok(outcome) => {
            outln!(
                "{name}: {}: {} imported, {} already known (unchanged)",
                rows(outcome.rows),
                outcome.imported,
                outcome.already_known
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Rejected(errors)) => {
            print_line_errors(&errors, "line");
            eprintln!(
                "error: {name}: {}; nothing was imported. Fix them and import the file again.",
                errors.summary()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("{name}: nothing was imported"))),
    }
}
