//! `archive`: one closed reporting month of history (transitions, flags, events; its days
//! calendar days in `recon.timezone`, as every report's) to one compressed file with a
//! manifest, recorded in `recon.archives`; with `--detach`, the monthly partitions whose
//! every row is now in recorded archives leave the tables afterwards (kept, not dropped), and
//! the command prints how to drop or reattach them, and which partitions wait for the next
//! month's archive.
//!
//! Run it as the migrating role: it reads the tables themselves (not the finance views), and
//! only their owner may detach partitions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::archive;
use crate::settings::Settings;
use crate::store;
use crate::store::archive::{Bounds, DetachError, HISTORY, Month, MonthSnapshot, MonthState};

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The reporting month to archive, YYYY-MM: its days are calendar days in recon.timezone
    /// (Asia/Almaty by default), as in every report; it must have ended there.
    #[arg(long, value_parser = parse_month)]
    pub month: Month,
    /// The archive to write: a gzip-compressed tar (e.g. recon-2026-10.tar.gz) holding
    /// manifest.json and one CSV per table. Its directory must exist.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Archive the month even though flags a person must act on (class action), detected in
    /// it, are still open; they are archived as open. With --detach, a month holding any
    /// open flag is refused all the same.
    #[arg(long)]
    pub allow_open_flags: bool,
    /// Once FILE is written and read back, detach the monthly partitions (UTC months) every
    /// row of which is now in archives (this one, and the neighbouring month's where a
    /// partition holds the end of it): the rows leave the tables and views, kept in tables of
    /// their own. Prints how to drop or reattach them, and which partitions wait for the next
    /// month's archive.
    #[arg(long)]
    pub detach: bool,
}

fn parse_month(raw: &str) -> Result<Month, String> {
    raw.parse()
}

pub async fn archive(settings: &Settings, args: ArchiveArgs) -> anyhow::Result<ExitCode> {
    let month = args.month;
    let file = args.to.display().to_string();
    let dir = archive::directory(&args.to);
    anyhow::ensure!(
        dir.is_dir(),
        "--to {file}: directory {} does not exist; create it first, or write elsewhere",
        dir.display()
    );
    anyhow::ensure!(
        !args.to.is_dir(),
        "--to {file} is a directory; name the file to write, e.g. {}",
        args.to
            .join(format!("{}.tar.gz", archive::folder(month)))
            .display()
    );
    anyhow::ensure!(
        args.force || !args.to.exists(),
        "--to {file} exists; give another file, or --force to replace it"
    );
    let pool = store::connect_to_schema(&settings.database).await?;
    // Event retention's rule: with a webhook, undelivered events are still owed to it.
    let only_finished = settings.webhook.enabled();

    let mut snapshot = MonthSnapshot::begin(&pool, month).await?;
    let bounds = snapshot.bounds().clone();
    let state = snapshot
        .state()
        .await
        .context("cannot read the month's history; run archive as the role that ran `migrate`")?;
    refuse(month, &bounds, &state, &args, only_finished)?;
    let export = archive::export(&mut snapshot, &state, &dir).await?;
    snapshot.close().await?;
    let manifest = export.manifest.clone();
    let (path, force) = (args.to.clone(), args.force);
    let size = tokio::task::spawn_blocking(move || archive::write(&path, export, force)).await??;
    let counts: Vec<String> = HISTORY
        .iter()
        .zip(&manifest.tables)
        .map(|(table, entry)| format!("{} {}", entry.rows, table.what))
        .collect();
    outln!(
        "archived {month} to {file} ({size} bytes): {}",
        counts.join(", ")
    )?;
    outln!("{month} in {}", describe(&bounds))?;
    if args.detach {
        let path = args.to.clone();
        let expected = manifest.clone();
        tokio::task::spawn_blocking(move || archive::verify(&path, month, &expected))
            .await?
            .with_context(|| format!("nothing was detached; {file} is not as written"))?;
        outln!("{file} read back: row counts and SHA-256 match its manifest")?;
    }
    // Its rows can no longer change once no flag is open and no event is owed: then a later
    // --detach may count on this file holding them.
    let rows_final = state.open_flags == 0 && !(only_finished && state.undelivered_events > 0);
    let manifest_json = serde_json::to_value(&manifest).context("the manifest as JSON")?;
    let recorded = store::archive::record(
        &pool,
        month,
        &bounds,
        &state,
        &file,
        manifest_json,
        rows_final,
    )
    .await
    .with_context(|| {
        format!("{file} is written, but could not be recorded in recon.archives; nothing detached")
    })?;
    if !args.detach {
        return Ok(ExitCode::SUCCESS);
    }

    let outcome = match store::archive::detach(&pool, recorded, only_finished).await {
        Ok(outcome) => outcome,
        Err(DetachError::Store(e)) => {
            return Err(anyhow::Error::new(e).context(format!(
                "nothing was detached ({file} is written); only the role that ran `migrate` \
                 owns the tables and may detach their partitions"
            )));
        }
        Err(e) => anyhow::bail!(
            "{e}; nothing was detached ({file} is written). Run the same command again with \
             --force to archive and detach the month afresh"
        ),
    };
    for kept in &outcome.kept {
        outln!(
            "kept {} attached (UTC month {}): {}",
            kept.partitions.join(", "),
            kept.month,
            kept.why
        )?;
    }
    let detached = outcome.detached;
    if detached.is_empty() {
        if outcome.kept.is_empty() {
            outln!("{month} has no partition to detach")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<String> = detached
        .iter()
        .map(|d| format!("recon.{} ({})", d.partition, counted(d.rows, "row")))
        .collect();
    outln!(
        "detached {}: their rows are out of the tables and views, kept in these tables \
         (append-only, readable by their owner)",
        names.join(", ")
    )?;
    outln!("to drop them for good (the archives in recon.archives keep their rows):")?;
    outln!("  {}", store::archive::drop_statement(&detached))?;
    outln!("to put them back (in one transaction):")?;
    for statement in store::archive::reattach_statements(&detached) {
        outln!("  {statement}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// "Asia/Almaty (recon.timezone): from 2026-11-01 00:00 +05:00 to 2026-12-01 00:00 +05:00
/// (2026-10-31 19:00 to 2026-11-30 19:00 UTC)"
fn describe(bounds: &Bounds) -> String {
    let local = "%Y-%m-%d %H:%M %:z";
    let utc = "%Y-%m-%d %H:%M";
    format!(
        "{} (recon.timezone): from {} to {} ({} to {} UTC)",
        bounds.zone,
        bounds.from.format(local),
        bounds.to.format(local),
        bounds.from_utc().format(utc),
        bounds.to_utc().format(utc),
    )
}

/// The refusals, before anything is written.
fn refuse(
    month: Month,
    bounds: &Bounds,
    state: &MonthState,
    args: &ArchiveArgs,
    only_finished: bool,
) -> anyhow::Result<()> {
    let nothing = "nothing was written";
    let zone = &bounds.zone;
    if bounds.from_utc() > state.now {
        anyhow::bail!(
            "--month {month} is in the future ({zone}); only a month that has ended can be \
             archived; {nothing}"
        );
    }
    if bounds.to_utc() > state.now {
        anyhow::bail!(
            "--month {month} is the current month in {zone} (recon.timezone); only a month \
             that has ended can be archived, from {} on; {nothing}",
            bounds.to.format("%Y-%m-%d %H:%M %:z")
        );
    }
    if let Some(name) = state.detached_already.first() {
        anyhow::bail!(
            "--month {month} was detached already (recon.{name} is no partition now and holds \
             rows of it), so its rows are not all in the tables; reattach that partition first \
             (archive --detach printed how) or archive that table by hand; {nothing}"
        );
    }
    if state.open_action_flags > 0 && !args.allow_open_flags {
        anyhow::bail!(
            "--month {month} has {} a person must act on (class action, detected that \
             month; `report --flags` lists them); resolve them first, or give \
             --allow-open-flags to archive them as open; {nothing}",
            counted(state.open_action_flags, "open flag")
        );
    }
    if !args.detach {
        return Ok(());
    }
    for (table, waiting) in HISTORY.iter().zip(state.waiting_in_default) {
        if waiting > 0 {
            anyhow::bail!(
                "--detach: {} of recon.{name} for {month} still wait in \
                 recon.{name}_default, which is never detached; run `freedompay-recon migrate` \
                 (or wait for the daemon's hourly maintenance), which moves them into the \
                 month's partition, then archive again; {nothing}",
                counted(waiting, "row"),
                name = table.name
            );
        }
    }
    if state.open_flags > 0 {
        anyhow::bail!(
            "--detach: --month {month} has {} (detected that month, of any class); a \
             detached month must hold none, since recon.open_flags would point at flags no \
             longer in recon.discrepancies and nobody could resolve them. Resolve them first, \
             or archive without --detach; {nothing}",
            counted(state.open_flags, "open flag")
        );
    }
    if only_finished && state.undelivered_events > 0 {
        anyhow::bail!(
            "--detach: --month {month} has {} the webhook has not delivered, skipped or \
             abandoned yet (recon.event_log); detaching them would leave them unsent. Wait \
             until they are (webhook.max_age at most), or archive without --detach; {nothing}",
            counted(state.undelivered_events, "event")
        );
    }
    Ok(())
}

/// "1 row", "2 rows".
fn counted(n: i64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}
