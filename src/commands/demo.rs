//! `freedompay-recon demo`: the whole product on a fresh machine, against the built-in
//! simulator, through the same daemon code path as `run`.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{Currency, ExpectedValues, PaymentId};
use crate::engine::{Engine, run_daemon};
use crate::provider::ProviderClient;
use crate::settings::Settings;
use crate::simulator::{Builtin, Credentials, Scenario, Simulator, expected_amount};
use crate::store::{self, NewPayment, summary};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo's database, created afresh on every run (a database that is not the demo's
    /// own is refused, untouched). Kept apart from database.url so that demo payments never
    /// mix with real ones.
    #[arg(long, value_name = "URL", default_value = DEFAULT_DEMO_URL)]
    pub database_url: String,
    /// How many payments to enqueue.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub payments: u32,
    /// Give up (exit 1) if the payments are not all settled or flagged by then.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

const DEFAULT_DEMO_URL: &str = "postgres://postgres@127.0.0.1:5432/freedompay_recon_demo";
const DEMO_AUTH_ID: &str = "demo";
const DEMO_SECRET: &str = "demo-secret";

/// The demo's own settings: the configured database, the in-process simulator, and a fast
/// schedule so that a few hundred payments settle in seconds rather than hours.
fn demo_settings(settings: &Settings, simulator: &Simulator) -> Settings {
    let mut demo = settings.clone();
    demo.provider.base_url = simulator.base_url();
    demo.provider.auth_id = DEMO_AUTH_ID.into();
    demo.provider.secret = SecretString::from(DEMO_SECRET);
    demo.provider.default_retry_after = Duration::from_secs(1);
    let poll = &mut demo.poll;
    poll.schedule = "* * * * * *".into();
    poll.rate_per_second = 500;
    poll.burst = 20;
    poll.concurrency = 16;
    poll.first_poll_after = Duration::ZERO;
    poll.recheck = vec![Duration::from_secs(1)];
    poll.confirm_after = Duration::from_secs(2);
    poll.lifetime_grace = Duration::from_secs(1);
    poll.not_found_grace = Duration::from_secs(3);
    poll.retry_min = Duration::from_secs(1);
    poll.retry_max = Duration::from_secs(2);
    demo
}

pub async fn demo(settings: &Settings, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut settings = settings.clone();
    settings.database.url = SecretString::from(args.database_url.clone());
    settings.database.connect_options()?;
    let settings = &settings;
    let database = settings.database.describe();
    // A fresh database per run: an earlier run's payments, due for their confirmation check,
    // would otherwise meet this run's simulator and start their story again.
    let options = settings.database.connect_options()?;
    let default_name = DEFAULT_DEMO_URL.rsplit('/').next();
    store::recreate_demo_database(&settings.database, options.get_database() == default_name)
        .await?;
    outln!("created database {database} (a fresh one for this run)")?;
    let pool = store::connect(&settings.database).await?;
    store::migrate(&pool).await?;
    outln!("database {database} is migrated")?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let simulator = Simulator::spawn(
        listener,
        Credentials {
            auth_id: DEMO_AUTH_ID.into(),
            secret: SecretString::from(DEMO_SECRET),
            params: settings.provider.params,
        },
        Scenario::builtin(Builtin::Realistic),
        false,
    )?;
    outln!(
        "Freedom Pay simulator (realistic mix) on {}",
        simulator.base_url()
    )?;
    let demo = demo_settings(settings, &simulator);

    // The same ids every run: the simulator's answers follow from the id, so every run
    // reaches the same verdicts.
    let prefix = "demo-";
    enqueue_payments(&pool, prefix, args.payments).await?;
    outln!("enqueued {} payments {prefix}0001..", args.payments)?;

    let engine = Engine::new(pool.clone(), ProviderClient::new(&demo.provider)?, &demo);
    let shutdown = CancellationToken::new();
    let (daemon, finished) = tokio::join!(
        run_daemon(engine, &demo.poll.schedule, shutdown.clone()),
        async {
            let finished = watch_progress(&pool, prefix, args.timeout).await;
            shutdown.cancel();
            finished
        }
    );
    daemon.context("the daemon stopped")?;
    let finished = finished?;

    print_summary(&pool, prefix).await?;
    let options = settings.database.connect_options()?;
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let me = this_program();
    outln!(
        "\nThe other commands work on this database too, e.g.:\n  \
         export DATABASE_URL={url}\n  \
         {me} report --flags           # the flags that need a person, oldest first\n  \
         {me} report --detail --flag amount_mismatch\n  \
         {me} report                   # the daily summary"
    )?;
    if finished {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: not every payment was settled or flagged within {}",
            humantime::format_duration(args.timeout)
        );
        Ok(ExitCode::FAILURE)
    }
}

async fn enqueue_payments(pool: &sqlx::PgPool, prefix: &str, count: u32) -> anyhow::Result<()> {
    let kzt: Currency = "KZT".parse().expect("a valid code");
    let mut tx = pool.begin().await?;
    for n in 1..=count {
        let id = format!("{prefix}{n:04}");
        let payment = NewPayment {
            payment_id: PaymentId::parse(&id)?,
            expected: ExpectedValues {
                amount: Some(expected_amount(&id)),
                currency: Some(kzt),
                order_id: None,
            },
            created_at: None,
            expires_at: None,
        };
        store::enqueue(&mut tx, &payment).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Prints a progress line until every payment is settled or flagged; false on timeout or
/// Ctrl-C.
async fn watch_progress(
    pool: &sqlx::PgPool,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let interactive = std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    let shutdown = super::shutdown_on_signal()?;
    let interrupted = shutdown.cancelled();
    tokio::pin!(interrupted);
    let mut last_line = String::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut interrupted => return Ok(false),
        }
        let p = summary::progress(pool, prefix).await?;
        let waiting = match p.in_progress_flagged {
            0 => String::new(),
            n => format!(", {n} in progress with a flag"),
        };
        let line = format!(
            "[{:>4.1}s] {}/{} done: {} paid, {} failed, {} expired unpaid{waiting}; {} need{} a person",
            started.elapsed().as_secs_f32(),
            p.done,
            p.total,
            p.paid,
            p.failed,
            p.expired_unpaid,
            p.need_a_person,
            if p.need_a_person == 1 { "s" } else { "" },
        );
        if interactive {
            let mut out = std::io::stdout();
            write!(out, "\r{line}").map_err(super::stdout_error)?;
            out.flush().map_err(super::stdout_error)?;
        } else if line[8..] != last_line.get(8..).unwrap_or_default()[..] {
            outln!("{line}")?;
        }
        last_line = line;
        if p.done == p.total {
            if interactive {
                outln!()?;
            }
            return Ok(true);
        }
        if started.elapsed() >= timeout {
            if interactive {
                outln!()?;
            }
            return Ok(false);
        }
    }
}

async fn print_summary(pool: &sqlx::PgPool, prefix: &str) -> anyhow::Result<()> {
    outln!("\npayments by outcome")?;
    for (outcome, n) in summary::outcome_counts(pool, prefix).await? {
        outln!("  {outcome:<14} {n:>6}")?;
    }
    outln!("\npayments by provider status")?;
    for (status, n) in summary::status_counts(pool, prefix).await? {
        outln!(
            "  {:<14} {n:>6}",
            status
                .as_deref()
                .map_or("(no answer)".into(), crate::text::escape_invisible)
        )?;
    }
    outln!(
        "\ntotals by currency (expected: every payment, as the merchant asked; received: paid \
         payments, as the provider reports)"
    )?;
    outln!(
        "  {:<8} {:>8} {:>16} {:>8} {:>16} {:>12}",
        "currency",
        "expected",
        "expected_amount",
        "received",
        "received_amount",
        "fees"
    )?;
    let show = |d: Option<String>| d.unwrap_or_else(|| "-".to_owned());
    let mut without_fee = 0;
    for t in summary::currency_totals(pool, prefix).await? {
        without_fee += t.without_fee;
        outln!(
            "  {:<8} {:>8} {:>16} {:>8} {:>16} {:>12}",
            t.currency.as_deref().unwrap_or("-"),
            t.expected_payments,
            show(t.expected),
            t.received_payments,
            show(t.received),
            show(t.fees)
        )?;
    }
    if without_fee > 0 {
        outln!("  ({without_fee} payments received without a stated fee: not in fees)")?;
    }
    outln!("\nopen flags needing a person, by kind")?;
    let flags = summary::open_flag_counts(pool, prefix).await?;
    if flags.is_empty() {
        outln!("  (none)")?;
    }
    for (kind, n) in flags {
        outln!("  {kind:<24} {n:>6}")?;
    }
    for (rule, n) in summary::closed_by_rules(pool, prefix).await? {
        outln!(
            "\n{n} {} closed as {} opened by {rule} (no money moved: an outcome, not an \
             exception; see recon.discrepancy_history)",
            if n == 1 { "flag was" } else { "flags were" },
            if n == 1 { "it" } else { "they" },
        )?;
    }
    outln!(
        "\nEvery row is in recon.reconciliation; the flags that need a person are in \
         recon.open_discrepancies:\n  select payment_id, kind, expected, actual from recon.open_discrepancies order by payment_id;"
    )?;
    Ok(())
}

/// How to run this program again from the current directory: `./target/release/…` after
/// the quick start, or the full path.
fn this_program() -> String {
    let exe = std::env::current_exe().ok();
    let here = std::env::current_dir().ok();
    match (exe, here) {
        (Some(exe), Some(here)) => match exe.strip_prefix(&here) {
            Ok(relative) => format!("./{}", relative.display()),
            Err(_) => exe.display().to_string(),
        },
        _ => "freedompay-recon".into(),
    }
}
