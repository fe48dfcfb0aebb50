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
use crate::provider::ProviderClient;
use crate::settings::Settings;
use crate::simulator::{
    Builtin, CallbackPlan, Credentials, Reply, Scenario, Simulator, expected_amount,
};
use crate::startup::{Daemon, Listeners};
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
/// The share of callbacks the simulator never sends: the ladder finds those payments.
const CALLBACK_LOSS: f64 = 0.05;
/// A payment settles between half and one and a half times this after its first poll.
const SETTLE_AFTER: Duration = Duration::from_secs(2);
/// The most payments each side of the detection measurement enqueues: enough for a p95, few
/// enough to take a few seconds.
const COMPARISON_PAYMENTS: u32 = 100;

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
    // Callbacks are on in the demo: the same fast schedule, so both halves of its detection
    // measure (called back, and polling only) run on one ladder and only callbacks differ.
    poll.first_poll_after_with_callbacks = Duration::ZERO;
    poll.recheck_with_callbacks = vec![Duration::from_secs(1)];
    poll.confirm_after = Duration::from_secs(2);
    poll.lifetime_grace = Duration::from_secs(1);
    poll.not_found_grace = Duration::from_secs(3);
    poll.retry_min = Duration::from_secs(1);
    poll.retry_max = Duration::from_secs(2);
    // The demo's events are its own: never delivered to a configured receiver.
    demo.webhook.url = SecretString::from("");
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
    let mut demo = demo_settings(settings, &simulator);

    // Result-URL callbacks, as `run` takes them with `callbacks.listen`: on loopback, signed
    // with a merchant secret made for this run and never shown.
    let callback_listener = TcpListener::bind("127.0.0.1:0").await?;
    let callback_addr = callback_listener.local_addr()?;
    demo.callbacks.listen = Some(callback_addr);
    demo.merchant.secret = SecretString::from(hex::encode(rand::random::<[u8; 16]>()));
    // The Merchant status API, with the same key: paid payments are watched for refunds on a
    // ladder of seconds instead of days.
    demo.merchant.id = DEMO_MERCHANT_ID.into();
    demo.refunds.watch = vec![Duration::from_secs(1), Duration::from_secs(3)];
    demo.refunds.watch_for = Duration::from_secs(10);
    if let Some(account) =
        crate::provider::merchant_status::MerchantAccount::from_settings(&demo.merchant)
    {
        simulator.merchant_account(account);
    }
    let callback_url = format!("http://{callback_addr}{}", demo.callbacks.path);
    let plan = CallbackPlan {
        url: callback_url.parse().context("the callback URL")?,
        secret: demo.merchant.secret.clone(),
        loss: CALLBACK_LOSS,
        duplicates: 0,
        delay: Duration::ZERO,
        settle_after: SETTLE_AFTER,
    };
    simulator.call_back(plan.clone());
    outln!(
        "Result-URL callbacks on {callback_url}: the simulator settles payments {} to {} s after \
         their first poll and calls back, losing {:.0} %",
        SETTLE_AFTER.as_secs_f64() / 2.0,
        SETTLE_AFTER.as_secs_f64() * 1.5,
        CALLBACK_LOSS * 100.0
    )?;

    // The same ids every run: the simulator's answers follow from the id, so every run
    // reaches the same verdicts.
    let prefix = "demo-";
    let ids: Vec<String> = (1..=args.payments)
        .map(|n| format!("{prefix}{n:04}"))
        .collect();
    enqueue_payments(&pool, &ids).await?;
    outln!("enqueued {} payments {prefix}0001..", args.payments)?;
    let returns = plan_returns(&simulator, &ids);
    let requested = request_refunds(&pool, &ids).await?;
    outln!(
        "the provider will refund or reverse {returns} of the paid payments (some in part, some \
         twice); the merchant's own records list {requested} refunds (import --refunds)"
    )?;

    let daemon = daemon(&pool, &demo, callback_listener)?;
    let shutdown = CancellationToken::new();
    let (daemon, finished) = tokio::join!(daemon.run_until_stopped(shutdown.clone()), async {
        let started = Instant::now();
        let mut finished = watch_progress(&pool, prefix, started, args.timeout, true).await;
        if let Ok(true) = finished {
            let left = args.timeout.saturating_sub(started.elapsed());
            finished = returns_found(&pool, returns, left).await;
            // The last line says where everything ended, refund flags included.
            if let Ok(true) = finished {
                finished = watch_progress(&pool, prefix, started, Duration::ZERO, true).await;
            }
        }
        shutdown.cancel();
        finished
    });
    daemon?;
    let mut finished = finished?;
    if finished {
        demo.bank.provider_accounts = vec![crate::simulator::settlement::PROVIDER_IIK.into()];
        demo.registry.commission_percent = Some(DEMO_COMMISSION_PERCENT);
        to_the_bank(&pool, &simulator, &demo).await?;
    }

    // Detection lag and requests per payment, with callbacks and without, measured side by
    // side in one short run of its own: payments that settle plainly (in progress, then paid
    // or failed), half of them never called back. Not in the run above: its first sweep
    // spends seconds in the realistic mix's 429 pauses (each holds every poll for a second),
    // and a payment settling meanwhile waits for them, callback or not, so its lag would
    // measure the pauses. Same daemon, same schedule, same moment: only the callbacks differ.
    // In a database of its own, dropped afterwards: the demo's database keeps the payments
    // its summary counts and nothing else, so `report` on it shows the same (and nothing in
    // the history tables may be deleted).
    let (mut with_callbacks, mut polling_only) = (None, None);
    if finished {
        let mut lag = settings.database.clone();
        lag.url = SecretString::from(scratch_url(&args.database_url, LAG_DATABASE_SUFFIX)?);
        store::recreate_demo_database(&lag, false).await?;
        let measured = measure_detection(&lag, &simulator, &mut demo, plan, &args).await;
        store::drop_demo_database(&lag).await?;
        let (done, with, without) = measured?;
        (finished, with_callbacks, polling_only) = (done, with, without);
    }

    print_summary(&pool, prefix).await?;
    print_detection(with_callbacks, polling_only, settings)?;
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
         {me} report                   # the daily summary\n  \
         {me} report --money           # money by day: received, refunded, reversed, net\n  \
         {me} report --settlement --month {month}   # money to the bank: registries, payouts, credits",
        month = chrono::Utc::now().format("%Y-%m")
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

const DEMO_MERCHANT_ID: &str = "demo-merchant";

/// The commission the demo's registries state, and its contract sets.
const DEMO_COMMISSION_PERCENT: rust_decimal::Decimal =
    rust_decimal::Decimal::from_parts(25, 0, 0, false, 1);

/// The provider's registries and the merchant's bank statement for the demo's payments, as
/// `simulate --registry` writes them (the first payout paid as two credits), imported
/// and matched as `import --registry` and `import --bank` do.
async fn to_the_bank(
    pool: &sqlx::PgPool,
    simulator: &Simulator,
    demo: &Settings,
) -> anyhow::Result<()> {
    use crate::intake::registry::{RegistryMap, read_registry};
    use crate::simulator::settlement::{Knobs, REGISTRY_MAP, write};

    let (paid, returned) = simulator.settlement_ops();
    let written = write(
        &paid,
        &returned,
        DEMO_COMMISSION_PERCENT,
        Knobs {
            split_payouts: 1,
            ..Knobs::default()
        },
    );
    let dir = std::env::temp_dir().join(format!("freedompay-recon-demo-{}", std::process::id()));
    let (registries, statement) = super::simulate::write_month(&dir, &written)?;
    let map = RegistryMap::parse(REGISTRY_MAP, "the simulator's map")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let offset = demo.provider.naive_offset()?;
    let map_sha256 = store::bank::sha256_hex(REGISTRY_MAP.as_bytes());
    for path in &registries {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let rows = read_registry(bytes.as_slice(), &map, offset)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let sha256 = store::bank::sha256_hex(&bytes);
        store::registry::import_registry(
            pool,
            &path.display().to_string(),
            &sha256,
            &map_sha256,
            &rows,
        )
        .await?;
    }
    let bytes = std::fs::read(&statement)?;
    let read = crate::intake::statement::read_1c(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", statement.display()))?;
    let bank = &demo.bank;
    store::bank::import_statement(
        pool,
        &statement.display().to_string(),
        &store::bank::sha256_hex(&bytes),
        &read,
        |line| bank.from_provider(line.payer_account.as_deref(), line.payer_tax_id.as_deref()),
    )
    .await?;
    let settled = store::settlement::settle(pool, &super::matching::policy(demo)?).await?;
    outln!(
        "the provider's registries ({} days) and the bank statement ({} credits) written to {} \
         and imported: {}",
        registries.len(),
        read.lines.len(),
        dir.display(),
        super::matching::said(&settled)
    )?;
    Ok(())
}

/// The demo's paid payments the provider gives money back for: every 10th of those that end
/// paid in full is refunded in full, every 10th after the 4th in part (two refunds of a
/// quarter each), every 20th after the 7th reversed. Returns how many returns are planned.
fn plan_returns(simulator: &Simulator, ids: &[String]) -> usize {
    use crate::simulator::Refund;

    let scenario = Scenario::builtin(Builtin::Realistic);
    let paid: Vec<&String> = ids
        .iter()
        .filter(|id| ends_paid_in_full(&scenario, id))
        .collect();
    let date = "2026-12-06 12:00:00".to_owned();
    let mut planned = 0;
    for (n, id) in paid.iter().enumerate() {
        let amount = expected_amount(id);
        let refund = |suffix: &str, amount: rust_decimal::Decimal| Refund {
            payment_id: format!("{id}-{suffix}"),
            amount: amount.to_string(),
            date: date.clone(),
        };
        if n % 10 == 0 {
            simulator.refund(id, refund("r1", amount));
            planned += 1;
        } else if n % 10 == 4 {
            let quarter = (amount / rust_decimal::Decimal::from(4)).round_dp(2);
            simulator.refund(id, refund("r1", quarter));
            simulator.refund(id, refund("r2", quarter));
            planned += 2;
        } else if n % 20 == 7 {
            simulator.reverse(id, refund("v1", amount));
            planned += 1;
        }
    }
    planned
}

/// The merchant's own record of the full refunds ([`plan_returns`]), as `import --refunds`
/// stores it: matched when the provider's refund is seen; the others become
/// `unexpected_refund`.
async fn request_refunds(pool: &sqlx::PgPool, ids: &[String]) -> anyhow::Result<usize> {
    let scenario = Scenario::builtin(Builtin::Realistic);
    let rows: Vec<crate::domain::money::RefundRow> = ids
        .iter()
        .filter(|id| ends_paid_in_full(&scenario, id))
        .step_by(10)
        .enumerate()
        .map(|(n, id)| crate::domain::money::RefundRow {
            line: n as u64 + 2,
            payment_id: PaymentId::parse(id).expect("a demo id"),
            amount: expected_amount(id),
            currency: "KZT".parse().expect("a currency"),
            requested_at: chrono::Utc::now(),
            reference: format!("refund-{id}"),
        })
        .collect();
    match store::money::import_requests(pool, &rows).await {
        Ok(_) => Ok(rows.len()),
        Err(e) => anyhow::bail!("the demo's refund requests were not stored: {e:?}"),
    }
}

/// Whether `id`'s script ends paid, the amount asked, in KZT.
fn ends_paid_in_full(scenario: &Scenario, id: &str) -> bool {
    match scenario.reply(id, usize::MAX) {
        Reply::Json {
            body,
            http_status: 200,
        } => {
            let text = |name: &str| {
                body.get(name)
                    .map(|v| v.to_string().trim_matches('"').to_owned())
            };
            text("paymentStatus").as_deref() == Some("success")
                && text("amount") == Some(expected_amount(id).to_string())
                && text("currency").as_deref() == Some("KZT")
        }
        _ => false,
    }
}

/// Waits, at most `timeout`, until the refund watch has booked the `planned` returns.
async fn returns_found(
    pool: &sqlx::PgPool,
    planned: usize,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    loop {
        let found = store::money::returns_booked(pool).await?;
        if found >= planned as i64 {
            outln!("the refund watch found all {planned} refunds and reversals")?;
            return Ok(true);
        }
        if started.elapsed() >= timeout {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The database the detection measurement runs in: the demo's, with this suffix.
const LAG_DATABASE_SUFFIX: &str = "_lag";

/// `url` naming the database of its own name plus `suffix` on the same server, everything
/// else (user, password, options) as it was.
fn scratch_url(url: &str, suffix: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(url).context("--database-url is not a URL")?;
    let name = url.path().trim_start_matches('/').to_owned();
    anyhow::ensure!(
        !name.is_empty() && !name.contains('/'),
        "--database-url names no database"
    );
    url.set_path(&format!("/{name}{suffix}"));
    Ok(url.to_string())
}

/// The detection measurement ([`demo`] says why apart): migrates `database` (created for
/// it), enqueues payments that settle plainly, `cb-…` called back and `poll-…` never, runs
/// the daemon until both are found, prints how long that took, and measures both sides.
/// Returns whether every payment was found, and the two measurements.
async fn measure_detection(
    database: &crate::settings::DatabaseSettings,
    simulator: &Simulator,
    demo: &mut Settings,
    plan: CallbackPlan,
    args: &DemoArgs,
) -> anyhow::Result<(bool, Option<Detection>, Option<Detection>)> {
    let pool = store::connect(database).await?;
    store::migrate(&pool).await?;
    let scenario = Scenario::builtin(Builtin::Realistic);
    simulator.silence("poll-");
    let count = args.payments.min(COMPARISON_PAYMENTS) as usize;
    let plain = |prefix: &'static str| {
        (1..)
            .map(move |n| format!("{prefix}{n:04}"))
            .filter(|id| settles_plainly(&scenario, id))
            .take(count)
            .collect::<Vec<String>>()
    };
    let (called, silent) = (plain("cb-"), plain("poll-"));
    enqueue_payments(&pool, &[called.clone(), silent.clone()].concat()).await?;

    let shutdown = CancellationToken::new();
    // A fresh endpoint (the first stopped with its daemon), the plan sent there.
    let callback_listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = callback_listener.local_addr()?;
    demo.callbacks.listen = Some(addr);
    simulator.call_back(CallbackPlan {
        url: format!("http://{addr}{}", demo.callbacks.path)
            .parse()
            .context("the callback URL")?,
        ..plan
    });
    let daemon = daemon(&pool, demo, callback_listener)?;
    let started = Instant::now();
    let (daemon, done) = tokio::join!(daemon.run_until_stopped(shutdown.clone()), async {
        let mut done = watch_progress(&pool, "cb-", Instant::now(), args.timeout, false).await;
        if matches!(done, Ok(true)) {
            done = watch_progress(&pool, "poll-", Instant::now(), args.timeout, false).await;
        }
        shutdown.cancel();
        done
    });
    daemon?;
    let finished = done?;
    outln!(
        "then, to measure detection, in a database of its own ({}, dropped afterwards): {count} \
         payments cb-… called back and {count} poll-… never called back, settling the same way: \
         {} in {:.1} s",
        database.describe(),
        if finished {
            "all found"
        } else {
            "not all found"
        },
        started.elapsed().as_secs_f32()
    )?;
    let with_callbacks = measure(&pool, simulator, &called, &scenario).await?;
    let polling_only = measure(&pool, simulator, &silent, &scenario).await?;
    pool.close().await;
    Ok((finished, with_callbacks, polling_only))
}

/// The daemon `run` builds ([`crate::startup`]), on the demo's settings, serving Result-URL
/// callbacks on `callbacks` (and no health listener, no webhook: the demo's events stay in
/// its database).
fn daemon(pool: &sqlx::PgPool, demo: &Settings, callbacks: TcpListener) -> anyhow::Result<Daemon> {
    let listeners = Listeners {
        http: None,
        callbacks: Some(callbacks),
    };
    Daemon::build(
        pool.clone(),
        ProviderClient::new(&demo.provider)?,
        demo,
        listeners,
    )
}

async fn enqueue_payments(pool: &sqlx::PgPool, ids: &[String]) -> anyhow::Result<()> {
    let kzt: Currency = "KZT".parse().expect("a valid code");
    let mut tx = pool.begin().await?;
    for id in ids {
        let payment = NewPayment {
            payment_id: PaymentId::parse(id)?,
            expected: ExpectedValues {
                amount: Some(expected_amount(id)),
                currency: Some(kzt),
                // The merchant's order, as a shop would give it (`order-demo-0001`): the
                // console finds a payment by it. The simulator states no order, so none is
                // compared.
                order_id: Some(format!("order-{id}")),
            },
            created_at: None,
            expires_at: None,
        };
        store::enqueue(&mut tx, &payment).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Waits until every payment of `prefix` is settled or flagged (`true`), printing a progress
/// line (timed from `started`) when `show`; false when `timeout` from now passes, or on
/// Ctrl-C.
async fn watch_progress(
    pool: &sqlx::PgPool,
    prefix: &str,
    started: Instant,
    timeout: Duration,
    show: bool,
) -> anyhow::Result<bool> {
    let timeout = timeout + started.elapsed();
    let interactive = show && std::io::stdout().is_terminal();
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
        } else if show && line[8..] != last_line.get(8..).unwrap_or_default()[..] {
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

/// What a run measured over the payments the simulator settled by time and the daemon
/// found.
#[derive(Debug)]
struct Detection {
    payments: usize,
    /// Of those, the ones whose callback the simulator sent.
    called_back: usize,
    /// Detection lag (see [`measure`]), median and 95th percentile.
    p50: Duration,
    p95: Duration,
    /// Provider requests per payment until the first answer that showed its outcome.
    requests: f64,
}

/// A payment whose script goes from in progress to paid (the amount asked, in KZT) or
/// failed, and nothing else: the payments detection is measured on.
fn settles_plainly(scenario: &Scenario, id: &str) -> bool {
    let field = |reply: Reply, name: &str| match reply {
        Reply::Json {
            body,
            http_status: 200,
        } => Some(body.get(name)?.to_string().trim_matches('"').to_owned()),
        _ => None,
    };
    let first = field(scenario.reply(id, 0), "paymentStatus");
    let last = scenario.reply(id, usize::MAX);
    let plain = |status| {
        field(last.clone(), "paymentStatus").as_deref() == Some(status)
            && field(last.clone(), "amount") == Some(expected_amount(id).to_string())
            && field(last.clone(), "currency").as_deref() == Some("KZT")
    };
    first.as_deref() == Some("process") && (plain("success") || plain("error"))
}

/// The detection lag of the payments among `ids` that settle plainly: from the moment the
/// simulator settled each one (it knows: [`Simulator::settled`]) to the `observed_at` of the
/// transition that recorded it paid or failed (`recon.status_transitions`); and the provider
/// requests each took until the first answer that showed its outcome, that one included (the
/// one confirmation re-check `poll.confirm_after` later is left out: both sides make it).
/// `None` when none was found.
async fn measure(
    pool: &sqlx::PgPool,
    simulator: &Simulator,
    ids: &[String],
    scenario: &Scenario,
) -> anyhow::Result<Option<Detection>> {
    let settled: std::collections::HashMap<String, _> = simulator
        .settled()
        .into_iter()
        .filter(|s| settles_plainly(scenario, &s.payment_id))
        .map(|s| (s.payment_id.clone(), s))
        .collect();
    let wanted: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| settled.contains_key(*id))
        .collect();
    let mut lags = Vec::new();
    let (mut requests, mut called_back) = (0, 0);
    for (id, observed_at) in summary::outcome_observed_at(pool, &wanted).await? {
        let s = &settled[&id];
        lags.push((observed_at - s.at).to_std().unwrap_or_default());
        requests += s.requests_to_outcome;
        called_back += usize::from(s.called_back);
    }
    if lags.is_empty() {
        return Ok(None);
    }
    lags.sort();
    let rank = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).clamp(1, lags.len()) - 1];
    Ok(Some(Detection {
        payments: lags.len(),
        called_back,
        p50: rank(0.5),
        p95: rank(0.95),
        requests: requests as f64 / lags.len() as f64,
    }))
}

fn print_detection(
    with_callbacks: Option<Detection>,
    polling_only: Option<Detection>,
    settings: &Settings,
) -> anyhow::Result<()> {
    outln!(
        "\ndetection lag: from the moment the simulator settled a payment to the observed_at of \
         the transition recorded for it; requests: to the provider, until the answer that showed \
         the outcome"
    )?;
    let show = |d: Duration| {
        if d < Duration::from_secs(1) {
            format!("{} ms", d.as_millis())
        } else {
            format!("{:.2} s", d.as_secs_f64())
        }
    };
    for (label, measured) in [
        ("with callbacks", with_callbacks),
        ("polling only", polling_only),
    ] {
        match measured {
            Some(d) => {
                let lost = match d.payments - d.called_back {
                    n if n > 0 && d.called_back > 0 => {
                        format!(" ({n} callbacks lost: found by polling)")
                    }
                    _ => String::new(),
                };
                outln!(
                    "  {label:<15} {:>4} payments   lag p50 {:>7}, p95 {:>7}   {:.2} requests \
                     per payment{lost}",
                    d.payments,
                    show(d.p50),
                    show(d.p95),
                    d.requests
                )?;
            }
            None => outln!("  {label:<15} (nothing measured)")?,
        }
    }
    outln!(
        "  (callbacks cut the lag, not the polls: the ladder runs either way. The demo looks at \
         an unsettled payment every second; with these settings a deployment looks {} \
         (poll.first_poll_after, poll.recheck), or, hearing callbacks, {} (the same with \
         _with_callbacks): polling alone takes that long)",
        ladder(&settings.policy_for(false)),
        ladder(&settings.policy_for(true))
    )?;
    Ok(())
}

/// When a policy looks at a payment: `2m after creation, then 1m, 2m, 4m, 10m after each
/// look, then every 1day`.
fn ladder(policy: &crate::domain::Policy) -> String {
    let show = |d: &Duration| humantime::format_duration(*d).to_string();
    let first = show(&policy.first_poll_after);
    match policy.recheck.split_last() {
        Some((last, [])) => format!("{first} after creation, then every {}", show(last)),
        Some((last, steps)) => format!(
            "{first} after creation, then {} after each look, then every {}",
            steps.iter().map(show).collect::<Vec<_>>().join(", "),
            show(last)
        ),
        None => format!("{first} after creation"),
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
    outln!(
        "\nmoney (by the day it moved; refunds and reversals are money of their own, never \
         erasing what was received)"
    )?;
    for total in store::money::totals(pool, None, None).await? {
        outln!("  {}", crate::reporting::describe_money(&total))?;
    }
    let back = store::money::return_outcomes(pool, None, None).await?;
    if !back.is_empty() {
        outln!(
            "  paid payments with money back: {}",
            back.iter()
                .map(|(outcome, n)| format!("{outcome} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    let today = chrono::Utc::now().date_naive().format("%Y-%m").to_string();
    let (first, last) = crate::reporting::parse_month(&today).map_err(anyhow::Error::msg)?;
    let month = store::settlement::month_money(pool, first, last, "KZT").await?;
    if !month.is_empty() {
        outln!("\nmoney to the bank in {today} (report --settlement --month {today})")?;
    }
    for m in month {
        outln!(
            "  {}: net due {}; in the registries {}; paid out {} (withheld {}); at the bank {}; \
             in transit {}; unexplained {}",
            crate::text::escape_invisible(&m.currency),
            m.net_due,
            m.in_registries,
            m.paid_out,
            m.withheld,
            m.arrived_at_bank,
            m.in_transit,
            m.unexplained
        )?;
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
