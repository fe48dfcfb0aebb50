//! `import`: start tracking every payment in a CSV file, all rows checked first, in one
//! transaction; with `--refunds`, the refunds the merchant made (CSV or xlsx), each then
//! looked for at the provider and matched to its refund.

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
    /// The file lists refunds the merchant made, not payments: payment_id, amount,
    /// currency, requested_at, reference (CSV, or an xlsx workbook when FILE ends in .xlsx).
    /// Each is looked for through the Merchant status API 10 minutes, an hour and a day
    /// after it was requested, and matched to the provider's refund.
    #[arg(long, conflicts_with = "bank")]
    pub refunds: bool,
    /// The file is the merchant's bank statement, a 1C exchange file
    /// (1CClientBankExchange, in the encoding it names), or an xlsx workbook read through
    /// --map: each operation is kept once; a credit from one of bank.provider_accounts is
    /// money the provider paid out.
    #[arg(long, conflicts_with_all = ["refunds", "registry"])]
    pub bank: bool,
    /// The file is the provider's registry of operations (CSV; `;` takes decimal commas),
    /// read through the column map --map gives (TOML; default: the Tochka shape, see
    /// docs/finance.md). Each operation is kept once.
    #[arg(long, conflicts_with = "refunds")]
    pub registry: bool,
    /// With --registry, or --bank and an xlsx workbook: the column map, a TOML file
    /// (docs/finance.md, "Money to the bank").
    #[arg(long, value_name = "FILE")]
    pub map: Option<PathBuf>,
}

pub async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    if args.map.is_some() && !args.bank && !args.registry {
        anyhow::bail!("--map is for --registry, or --bank with an xlsx statement");
    }
    if args.refunds {
        return import_refunds(settings, args).await;
    }
    if args.bank {
        return import_bank(settings, args).await;
    }
    if args.registry {
        return import_registry(settings, args).await;
    }
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

async fn import_refunds(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    use crate::intake::refunds::{read_refunds, read_refunds_xlsx};
    use store::money::RequestsRefused;

    let name = args.file.display().to_string();
    let offset = settings.provider.naive_offset()?;
    let xlsx = args
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
    let read = if xlsx {
        let file =
            std::fs::File::open(&args.file).with_context(|| format!("cannot open {name}"))?;
        tokio::task::spawn_blocking(move || {
            read_refunds_xlsx(std::io::BufReader::new(file), offset)
        })
        .await?
    } else {
        let input: Box<dyn Read + Send> = if name == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(
                std::fs::File::open(&args.file).with_context(|| format!("cannot open {name}"))?,
            )
        };
        let input = args.encoding.reader(input);
        tokio::task::spawn_blocking(move || read_refunds(input, offset)).await?
    };
    let unit = if xlsx { "row" } else { "line" };
    let refunds = match read {
        Ok(refunds) => refunds,
        Err(ImportError::Rejected(errors)) => {
            print_line_errors(&errors, unit);
            eprintln!(
                "error: {name}: {}; nothing was imported. Fix them and import the file again.",
                errors.summary()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("{name}: nothing was imported")));
        }
    };
    let pool = store::connect_to_schema(&settings.database).await?;
    match store::money::import_requests(&pool, &refunds).await {
        Ok(outcome) => {
            outln!(
                "{name}: {}: {} refunds imported, {} already known (unchanged)",
                rows(refunds.len() as u64),
                outcome.imported,
                outcome.already_known
            )?;
            if !settings.merchant.watches_refunds() {
                eprintln!(
                    "warning: merchant.id and merchant.secret are not set: the provider's \
                     refunds are not watched, so these cannot be matched (each becomes \
                     refund_missing once a daemon with credentials looks)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(RequestsRefused::Lines(lines)) => {
            // One message: the first few lines, and how many more.
            const SHOWN: usize = 5;
            let mut said: Vec<String> = lines
                .iter()
                .take(SHOWN)
                .map(|(line, problem)| format!("{unit} {line}: {problem}"))
                .collect();
            if lines.len() > SHOWN {
                said.push(format!("and {} more", lines.len() - SHOWN));
            }
            eprintln!(
                "error: {name}: {}; nothing was imported. Fix them and import the file again.",
                said.join("; ")
            );
            Ok(ExitCode::FAILURE)
        }
        Err(RequestsRefused::Store(e)) => {
            anyhow::bail!("{name}: nothing was imported: {e}")
        }
    }
}

async fn import_bank(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    use crate::intake::statement::{MAX_STATEMENT_BYTES, StatementError, read_1c};
    use store::bank::BankImported;

    let name = args.file.display().to_string();
    let bytes = if name == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_STATEMENT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        bytes
    } else {
        let file =
            std::fs::File::open(&args.file).with_context(|| format!("cannot open {name}"))?;
        let mut bytes = Vec::new();
        file.take(MAX_STATEMENT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {name}"))?;
        bytes
    };
    let xlsx = args
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
    let statement = if xlsx {
        use crate::intake::bank_sheet::{BankMap, read_statement_xlsx};
        let Some(map_path) = &args.map else {
            anyhow::bail!(
                "{name}: an xlsx statement is read through a column map: give it with --map \
                 FILE (docs/finance.md, \"The bank statement\"); nothing was imported"
            );
        };
        let text = std::fs::read_to_string(map_path)
            .with_context(|| format!("cannot read the map {}", map_path.display()))?;
        let map = BankMap::parse(&text, &map_path.display().to_string())
            .map_err(|e| anyhow::anyhow!("{e}; nothing was imported"))?;
        match read_statement_xlsx(std::io::Cursor::new(bytes.clone()), &map) {
            Ok(statement) => statement,
            Err(ImportError::Rejected(errors)) => {
                print_line_errors(&errors, "row");
                eprintln!(
                    "error: {name}: {}; nothing was imported. Fix them (or the map) and \
                     import the file again.",
                    errors.summary()
                );
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("{name}: nothing was imported")));
            }
        }
    } else {
        if args.map.is_some() {
            anyhow::bail!(
                "--map: a 1C statement names its own fields; a map is for an xlsx statement \
                 or a registry"
            );
        }
        match read_1c(&bytes) {
            Ok(statement) => statement,
            Err(StatementError::Lines(lines)) => {
                const SHOWN: usize = 5;
                let mut said: Vec<String> = lines
                    .iter()
                    .take(SHOWN)
                    .map(|(line, problem)| format!("line {line}: {problem}"))
                    .collect();
                if lines.len() > SHOWN {
                    said.push(format!("and {} more", lines.len() - SHOWN));
                }
                eprintln!(
                    "error: {name}: {}; nothing was imported. Export the statement again, or ask \
                 the bank why.",
                    said.join("; ")
                );
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => anyhow::bail!("{name}: {e}; nothing was imported"),
        }
    };
    let pool = store::connect_to_schema(&settings.database).await?;
    let sha256 = store::bank::sha256_hex(&bytes);
    let bank = &settings.bank;
    let imported = store::bank::import_statement(&pool, &name, &sha256, &statement, |line| {
        line.direction == crate::intake::statement::Direction::Credit
            && bank.from_provider(line.payer_account.as_deref(), line.payer_tax_id.as_deref())
    })
    .await?;
    match imported {
        BankImported::Already { imported_at } => outln!(
            "{name}: imported already on {} (the same file, SHA-256 {sha256}): nothing changed",
            imported_at.format("%Y-%m-%d %H:%M UTC")
        )?,
        BankImported::New {
            operations,
            added,
            from_provider,
            from_provider_amount,
        } => {
            outln!(
                "{name}: {operations} operations ({}), {added} new, {} in statements imported \
                 before; {from_provider} of the new are credits from the provider ({} in all)",
                statement.encoding,
                operations - added,
                from_provider_amount
            )?;
            if bank.provider_accounts.is_empty() {
                eprintln!(
                    "warning: bank.provider_accounts is empty: no credit is recognised as the \
                     provider's payout; set the provider's IIK or BIN"
                );
            }
        }
    }
    match_after_import(settings, &pool).await?;
    Ok(ExitCode::SUCCESS)
}

async fn import_registry(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    use crate::intake::registry::{DEFAULT_MAP, RegistryMap, read_registry};
    use store::registry::RegistryImported;

    let name = args.file.display().to_string();
    let (map_text, map_name) = match &args.map {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the map {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (DEFAULT_MAP.to_owned(), "the default map".to_owned()),
    };
    let map = RegistryMap::parse(&map_text, &map_name)
        .map_err(|e| anyhow::anyhow!("{e}; nothing was imported"))?;
    let mut bytes = Vec::new();
    if name == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {name}"))?
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {name}"))?;
    }
    let offset = settings.provider.naive_offset()?;
    let xlsx = args
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
    let input = args.encoding.reader(std::io::Cursor::new(bytes.clone()));
    let workbook = std::io::Cursor::new(bytes.clone());
    let rows = match tokio::task::spawn_blocking(move || {
        if xlsx {
            crate::intake::registry::read_registry_xlsx(workbook, &map, offset)
        } else {
            read_registry(input, &map, offset)
        }
    })
    .await?
    {
        Ok(rows) => rows,
        Err(ImportError::Rejected(errors)) => {
            print_line_errors(&errors, "line");
            eprintln!(
                "error: {name}: {}; nothing was imported. Fix them (or the map) and import the \
                 file again.",
                errors.summary()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("{name}: nothing was imported")));
        }
    };
    let pool = store::connect_to_schema(&settings.database).await?;
    let sha256 = store::bank::sha256_hex(&bytes);
    let map_sha256 = store::bank::sha256_hex(map_text.as_bytes());
    match store::registry::import_registry(&pool, &name, &sha256, &map_sha256, &rows).await? {
        RegistryImported::Already { imported_at } => outln!(
            "{name}: imported already on {} (the same file, SHA-256 {sha256}): nothing changed",
            imported_at.format("%Y-%m-%d %H:%M UTC")
        )?,
        RegistryImported::New { operations, added } => outln!(
            "{name}: {operations} operations, {added} new, {} in registries imported before",
            operations - added
        )?,
    }
    match_after_import(settings, &pool).await?;
    Ok(ExitCode::SUCCESS)
}

/// After a registry or a statement: match what it adds (`match`), and say what that did.
async fn match_after_import(settings: &Settings, pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let policy = super::matching::policy(settings)?;
    let settled = store::settlement::settle(pool, &policy).await?;
    outln!("then {}", super::matching::said(&settled))?;
    Ok(())
}
