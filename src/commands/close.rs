//! `close`: sign off a reporting month's figures (or reopen the latest closed month).

use std::process::ExitCode;

use clap::Args;

use crate::settings::Settings;
use crate::store;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").args(["month", "reopen"]).required(true))]
pub struct CloseArgs {
    /// The reporting month to close (YYYY-MM, in recon.timezone): it must have ended, and be
    /// the month after the last closed one (months close in order).
    #[arg(long, value_parser = crate::reporting::parse_month, requires = "note")]
    pub month: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    /// What was checked, for the record (kept with the signed figures).
    #[arg(long, conflicts_with = "reopen")]
    pub note: Option<String>,
    /// Reopen this month, the latest closed one; its signature stays on record and a later
    /// close signs anew.
    #[arg(long, value_parser = crate::reporting::parse_month, requires = "reason")]
    pub reopen: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    /// Why the month is reopened (kept on record).
    #[arg(long, conflicts_with = "month")]
    pub reason: Option<String>,
    /// On whose behalf [default: your login name]; the database records its own role beside.
    #[arg(long)]
    pub by: Option<String>,
    /// Show the figures that would be signed, and close nothing.
    #[arg(long, conflicts_with = "reopen")]
    pub dry_run: bool,
}

pub async fn close(settings: &Settings, args: CloseArgs) -> anyhow::Result<ExitCode> {
    let by = super::resolve::closed_by(args.by.as_deref())?;
    let pool = store::connect_to_schema(&settings.database).await?;
    if let (Some((month, _)), Some(reason)) = (args.reopen, &args.reason) {
        store::close::reopen_month(&pool, month, reason, &by).await?;
        outln!(
            "reopened {}: its figures are the rows' again until it is closed anew (the close \
             and its signature stay on record)",
            month.format("%Y-%m")
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some((first, last)), Some(note)) = (args.month, &args.note) else {
        unreachable!("clap requires --month with --note, or --reopen with --reason");
    };
    let signed = store::close::close_month(
        &pool,
        first,
        note,
        &by,
        args.dry_run,
        &settings.bank.currency,
    )
    .await?;
    // The month's summary, as `report --month` prints it (from now on, from the figures).
    let request = crate::reporting::ReportRequest {
        kind: crate::reporting::ReportKind::Summary(store::report::ReportFilter::created_between(
            first, last,
        )),
        format: crate::reporting::Format::Table,
        csv: crate::reporting::CsvStyle::default(),
        refunds_watched: settings.merchant.watches_refunds(),
    };
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match crate::reporting::write_report(&pool, &request, stdout).await {
        Err(crate::reporting::ReportError::Write(e)) => return Err(super::stdout_error(e)),
        other => {
            other?;
        }
    }
    let month = first.format("%Y-%m");
    if args.dry_run {
        outln!(
            "would close {month}: {} summary rows signed, sha256 {} (nothing was closed)",
            signed.rows,
            signed.sha256
        )?;
    } else {
        outln!(
            "closed {month}: {} summary rows signed, sha256 {}; `report --month {month}` prints \
             these figures from now on, and later changes are booked as adjustments",
            signed.rows,
            signed.sha256
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
