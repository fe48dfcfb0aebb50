//! `freedompay-recon bench --year [--scale S]`: a year of history in place, and what reading
//! it costs (issue 17).
//!
//! A scratch database gets 365 days of payments at 450,000 a day × S, with their
//! transitions, flags and delivered events (synthesized in SQL: see
//! [`store::bench::synthesize_year`]). Then, once as written and once after `vacuum analyze`:
//! the claim (p50/p99 of 101 claims of 100 due payments), the summary of one day, one month
//! and the year, `report --detail` for one day and `digest` for one day (each the real
//! command, run as a child process, so the time is what a person waits), one payment's whole
//! history (p50/p99 over 101 payments), and bytes per payment on disk by table; last, event
//! retention of the oldest month.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{Days, NaiveDate, Utc};
use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool};

use crate::settings::DatabaseSettings;
use crate::store;

/// Payments a day at the default rate budget (20 requests/s at 3.84 requests per payment).
const FULL_DAY: f64 = 450_000.0;
const DAYS: i64 = 365;
/// Claims and histories timed per measurement.
const SAMPLES: usize = 101;

/// One pass of measurements.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    pub claim: (Duration, Duration),
    pub day_summary: Duration,
    /// The day's summary statement alone, in this process (p50/p99): the command's time
    /// less starting a process and connecting.
    pub day_summary_statement: (Duration, Duration),
    pub month_summary: Duration,
    pub year_summary: Duration,
    pub day_detail: Duration,
    pub day_digest: Duration,
    pub history: (Duration, Duration),
    /// The console's pages, their queries in this process (p50/p99): server time.
    pub console_month: (Duration, Duration),
    pub console_story: (Duration, Duration),
    pub console_find: (Duration, Duration),
    pub console_queue: (Duration, Duration),
    /// The queue filtered by the payment's month, and by a currency (KZT: every flag).
    pub console_queue_month: (Duration, Duration),
    pub console_queue_currency: (Duration, Duration),
}

#[derive(Debug, Clone)]
pub struct YearReport {
    pub scale: f64,
    pub payments: i64,
    pub synthesis: Duration,
    /// `recon.rebuild_summary()` over the whole year (what a change of zone costs).
    pub rollup_rebuild: Duration,
    /// Bytes on disk by table, indexes included.
    pub bytes: Vec<(String, i64)>,
    pub before_vacuum: Pass,
    pub after_vacuum: Pass,
    /// Event retention of the oldest month (one partition dropped), after both passes.
    pub retention: Duration,
    pub retention_dropped: Vec<String>,
}

/// Runs the year benchmark on a scratch database next to `database` (created, then dropped
/// unless `keep`).
pub async fn run_year(
    database: &DatabaseSettings,
    scale: f64,
    keep: bool,
) -> anyhow::Result<YearReport> {
    super::on_scratch_database(database, "year", keep, |db| async move {
        year(&db, scale).await
    })
    .await
}

async fn year(db: &PgConnectOptions, scale: f64) -> anyhow::Result<YearReport> {
    let pool = PgPool::connect_with(db.clone()).await?;
    store::migrate(&pool).await?;
    let per_day = ((FULL_DAY * scale).round() as i64).max(1);
    eprintln!("bench: synthesizing {DAYS} days of {per_day} payments");
    let started = Instant::now();
    let payments = store::bench::synthesize_year(&pool, per_day, DAYS).await?;
    let synthesis = started.elapsed();
    eprintln!("bench: building the summary's rollup from the year");
    let started = Instant::now();
    store::bench::rebuild_summary(&pool).await?;
    let rollup_rebuild = started.elapsed();
    ensure!(
        payments == per_day * DAYS,
        "synthesized {payments} payments"
    );
    store::bench::make_due(&pool, SAMPLES as i64 * 10).await?;
    let url = db.to_url_lossy().to_string();
    eprintln!("bench: measuring with the year in place, before a vacuum");
    let before_vacuum = measure(&pool, &url, payments).await?;
    store::bench::vacuum_history(&pool).await?;
    eprintln!("bench: measuring after vacuum analyze");
    let after_vacuum = measure(&pool, &url, payments).await?;
    let bytes = store::bench::table_bytes(&pool).await?;
    eprintln!("bench: event retention of the oldest month");
    let started = Instant::now();
    let retention_dropped = store::bench::retain_oldest_event_month(&pool).await?;
    let retention = started.elapsed();
    ensure!(
        retention_dropped.len() == 1,
        "retention dropped {retention_dropped:?}, not one month"
    );
    Ok(YearReport {
        scale,
        payments,
        synthesis,
        rollup_rebuild,
        bytes,
        before_vacuum,
        after_vacuum,
        retention,
        retention_dropped,
    })
}

async fn measure(pool: &PgPool, url: &str, payments: i64) -> anyhow::Result<Pass> {
    // Days of the synthesized year: it ends yesterday, in the reporting zone or not.
    let today = Utc::now().date_naive();
    let day = today - Days::new(30);
    let month_start = NaiveDate::from_ymd_opt(
        chrono::Datelike::year(&day),
        chrono::Datelike::month(&day),
        1,
    )
    .context("a month's first day")?;
    let month_end = month_start
        .checked_add_months(chrono::Months::new(1))
        .and_then(|d| d.pred_opt())
        .context("a month's last day")?;
    let year_start = today - Days::new(DAYS as u64);
    let d = |date: NaiveDate| date.format("%Y-%m-%d").to_string();
    let report = |args: Vec<String>| command(url, args);
    Ok(Pass {
        claim: time_claims(pool).await?,
        day_summary_statement: time_summary_statement(pool, day).await?,
        day_summary: report(vec![
            "report".into(),
            "--from".into(),
            d(day),
            "--to".into(),
            d(day),
        ])?,
        month_summary: report(vec![
            "report".into(),
            "--from".into(),
            d(month_start),
            "--to".into(),
            d(month_end),
        ])?,
        year_summary: report(vec![
            "report".into(),
            "--from".into(),
            d(year_start),
            "--to".into(),
            d(today),
        ])?,
        day_detail: report(vec![
            "report".into(),
            "--detail".into(),
            "--from".into(),
            d(day),
            "--to".into(),
            d(day),
        ])?,
        day_digest: report(vec![
            "digest".into(),
            "--from".into(),
            d(day),
            "--to".into(),
            d(day),
        ])?,
        history: time_histories(pool, payments).await?,
        console_month: time_console(|_| async move {
            store::console::month(pool, month_start, month_end, "KZT")
                .await
                .map(|m| !m.outcomes.is_empty())
        })
        .await?,
        console_story: time_console(|k| async move {
            let id = format!("year-{}", 1 + (k * 7_919 * 4 + 75) % payments);
            store::console::story(pool, &id).await.map(|s| s.is_some())
        })
        .await?,
        console_find: time_console(|k| async move {
            let id = format!("year-{}", 1 + (k * 7_919 * 4 + 75) % payments);
            store::console::find(pool, &id).await.map(|f| f.len() == 1)
        })
        .await?,
        console_queue: time_console(|k| async move {
            // The page's two reads: the flags by kind and age, and a page of them.
            let filter = store::console::QueueFilter::default();
            store::console::queue_ages(pool).await?;
            store::console::queue(pool, &filter, k % 5, 101)
                .await
                .map(|_| true)
        })
        .await?,
        console_queue_month: time_console(|_| async move {
            let filter = store::console::QueueFilter {
                month: Some((month_start, month_end)),
                ..Default::default()
            };
            // The first page: a small year may hold fewer than one page of these.
            store::console::queue(pool, &filter, 0, 101)
                .await
                .map(|_| true)
        })
        .await?,
        console_queue_currency: time_console(|_| async move {
            let filter = store::console::QueueFilter {
                currency: Some("KZT".into()),
                ..Default::default()
            };
            // The first page: a small year may hold fewer than one page of these.
            store::console::queue(pool, &filter, 0, 101)
                .await
                .map(|_| true)
        })
        .await?,
    })
}

/// A console page's queries, [`SAMPLES`] times (the `k`-th asks about sample `k`): p50 and
/// p99. Each must find what it looks for.
async fn time_console<F, Fut>(page: F) -> anyhow::Result<(Duration, Duration)>
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = Result<bool, store::StoreError>>,
{
    let mut timings = Vec::with_capacity(SAMPLES);
    for k in 0..SAMPLES as i64 {
        let started = Instant::now();
        let found = page(k).await?;
        timings.push(started.elapsed());
        ensure!(found, "a console page found nothing for sample {k}");
    }
    Ok(percentiles(timings))
}

/// Runs this binary's `args` against the scratch database, its output discarded; the wall
/// time from start to exit.
fn command(url: &str, args: Vec<String>) -> anyhow::Result<Duration> {
    let exe = std::env::current_exe().context("this binary's path")?;
    let started = Instant::now();
    let output = Command::new(exe)
        .args(&args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "error")
        .output()
        .with_context(|| format!("cannot run {}", args.join(" ")))?;
    let elapsed = started.elapsed();
    ensure!(
        output.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}

fn percentiles(mut timings: Vec<Duration>) -> (Duration, Duration) {
    timings.sort();
    let at = |q: f64| timings[((timings.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

async fn time_claims(pool: &PgPool) -> anyhow::Result<(Duration, Duration)> {
    let mut timings = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let mut tx = pool.begin().await?;
        let started = Instant::now();
        let claimed = store::claim_due(
            &mut *tx,
            "bench",
            100,
            Duration::from_secs(300),
            None,
            Duration::ZERO,
            Duration::from_secs(5),
        )
        .await?
        .claims
        .len();
        timings.push(started.elapsed());
        tx.rollback().await?;
        ensure!(claimed == 100, "claimed {claimed} of 100");
    }
    Ok(percentiles(timings))
}

async fn time_summary_statement(
    pool: &PgPool,
    day: NaiveDate,
) -> anyhow::Result<(Duration, Duration)> {
    use futures_util::TryStreamExt as _;
    let filter = store::report::ReportFilter::created_between(day, day);
    let mut timings = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let rows: Vec<_> = store::report::summary_rows(pool, &filter)
            .try_collect()
            .await?;
        timings.push(started.elapsed());
        ensure!(!rows.is_empty(), "no summary rows for {day}");
    }
    Ok(percentiles(timings))
}

async fn time_histories(pool: &PgPool, payments: i64) -> anyhow::Result<(Duration, Duration)> {
    let mut timings = Vec::with_capacity(SAMPLES);
    for k in 0..SAMPLES as i64 {
        // Spread over the year.
        let id = format!("year-{}", 1 + (k * 7_919 * 4 + 75) % payments);
        let started = Instant::now();
        let rows = store::bench::payment_history(pool, &id).await?;
        timings.push(started.elapsed());
        ensure!(rows >= 4, "{id}: {rows} history rows");
    }
    Ok(percentiles(timings))
}

impl YearReport {
    /// The table docs/performance.md publishes.
    pub fn to_markdown(&self, command: &str) -> String {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let pair = |(p50, p99): (Duration, Duration)| format!("{} / {}", ms(p50), ms(p99));
        let (b, a) = (&self.before_vacuum, &self.after_vacuum);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured with `{command}`: {} payments over {DAYS} days (scale {}), synthesized in {:.1} s; the summary's rollup rebuilt from them in {:.1} s.\n",
            self.payments,
            self.scale,
            self.synthesis.as_secs_f64(),
            self.rollup_rebuild.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| measure | as written | after vacuum | target at scale 0.1 |"
        );
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        let rows: [(&str, String, String, &str); 14] = [
            (
                "claim of 100 due, p50 / p99",
                pair(b.claim),
                pair(a.claim),
                "p99 ≤ 10 ms",
            ),
            (
                "`report` for one day",
                ms(b.day_summary),
                ms(a.day_summary),
                "≤ 100 ms",
            ),
            (
                "the day's summary statement alone, p50 / p99",
                pair(b.day_summary_statement),
                pair(a.day_summary_statement),
                "",
            ),
            (
                "`report` for one month",
                ms(b.month_summary),
                ms(a.month_summary),
                "≤ 1 s",
            ),
            (
                "`report` for the year",
                ms(b.year_summary),
                ms(a.year_summary),
                "≤ 5 s",
            ),
            (
                "`report --detail` for one day",
                ms(b.day_detail),
                ms(a.day_detail),
                "",
            ),
            (
                "`digest` for one day",
                ms(b.day_digest),
                ms(a.day_digest),
                "",
            ),
            (
                "one payment's history, p50 / p99",
                pair(b.history),
                pair(a.history),
                "≤ 5 ms",
            ),
            (
                "console: the month, p50 / p99",
                pair(b.console_month),
                pair(a.console_month),
                "≤ 100 ms",
            ),
            (
                "console: one payment's story, p50 / p99",
                pair(b.console_story),
                pair(a.console_story),
                "≤ 100 ms",
            ),
            (
                "console: find by id, p50 / p99",
                pair(b.console_find),
                pair(a.console_find),
                "≤ 100 ms",
            ),
            (
                "console: a page of the queue, p50 / p99",
                pair(b.console_queue),
                pair(a.console_queue),
                "≤ 100 ms",
            ),
            (
                "console: the queue by the payment's month, p50 / p99",
                pair(b.console_queue_month),
                pair(a.console_queue_month),
                "≤ 100 ms",
            ),
            (
                "console: the queue by currency (KZT), p50 / p99",
                pair(b.console_queue_currency),
                pair(a.console_queue_currency),
                "≤ 100 ms",
            ),
        ];
        for (what, before, after, target) in rows {
            let _ = writeln!(out, "| {what} | {before} | {after} | {target} |");
        }
        let _ = writeln!(
            out,
            "| event retention of one month ({}) | | {} | ≤ 1 s |",
            self.retention_dropped.join(", "),
            ms(self.retention)
        );
        let total: i64 = self.bytes.iter().map(|(_, n)| n).sum();
        let per = |n: i64| n as f64 / self.payments as f64;
        let by_table = self
            .bytes
            .iter()
            .map(|(table, n)| format!("{table} {:.0}", per(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| bytes per payment on disk, indexes included | {:.0} ({by_table}) | | |",
            per(total)
        );
        // Evidence: what is kept for as long as finance needs it (events expire; the
        // rollup and the states are derived from the payments' changes).
        let evidence: i64 = self
            .bytes
            .iter()
            .filter(|(table, _)| {
                matches!(
                    table.as_str(),
                    "payments" | "status_transitions" | "discrepancies" | "open_flags"
                )
            })
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(
            out,
            "| evidence per payment (payments, status_transitions, discrepancies, open_flags) | {:.0} | | ≤ 1,700 |",
            per(evidence)
        );
        out
    }
}
