//! `freedompay-recon bench`: measures the daemon against the simulator on a scratch database.
//!
//! The daemon under test is this same binary, started as a child process (`run --once`),
//! so its CPU time and peak memory are its own; the simulator runs inside the benchmark
//! process, which also times every request it receives. Each phase starts from an empty
//! `recon.payments`:
//!
//! 1. throughput: N due payments, each answered `success` on its first poll, no rate limit,
//!    from the daemon's start to its exit with every payment terminal;
//! 2. rate fidelity: R × S payments at `poll.rate_per_second = R`: the achieved rate and the
//!    most requests in any one-second window;
//! 3. claim cost: one claim of the due rows in a large table, timed and explained;
//! 4. memory: the daemon's peak RSS while working through backlogs of growing size.
//!
//! Speed is reported, never asserted; correctness (every payment reconciled, no window over
//! budget, an index scan) is checked and fails the command.

pub mod year;

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use nix::sys::resource::{UsageWho, getrusage};
use secrecy::SecretString;
use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool};
use tokio::net::TcpListener;

use crate::provider::ParamsMode;
use crate::settings::DatabaseSettings;
use crate::simulator::{Builtin, Credentials, Scenario, Simulator};
use crate::store;

const AUTH_ID: &str = "bench";
const SECRET: &str = "bench-secret";

/// What to measure, and how much.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub payments: u32,
    pub concurrency: usize,
    pub batch_size: u32,
    pub rate: u32,
    pub burst: u32,
    pub rate_seconds: u32,
    pub claim_rows: u32,
    pub claim_due: u32,
    pub backlogs: Vec<u32>,
    pub rss_seconds: u32,
}

impl BenchOptions {
    /// The published run.
    pub fn full() -> Self {
        Self {
            payments: 50_000,
            concurrency: 64,
            batch_size: 500,
            rate: 200,
            burst: 5,
            rate_seconds: 30,
            claim_rows: 1_000_000,
            claim_due: 1_000,
            backlogs: vec![10_000, 100_000, 1_000_000],
            rss_seconds: 15,
        }
    }

    /// A few hundred payments: checks that every phase works, in seconds.
    pub fn smoke() -> Self {
        Self {
            payments: 300,
            rate: 50,
            rate_seconds: 2,
            claim_rows: 20_000,
            claim_due: 100,
            backlogs: vec![500, 2_000],
            rss_seconds: 2,
            ..Self::full()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Throughput {
    pub payments: u32,
    pub wall: Duration,
    pub daemon_cpu: Duration,
    pub postgres_cpu: Duration,
    pub simulator_cpu: Duration,
    pub daemon_peak_rss_kib: u64,
}

#[derive(Debug, Clone)]
pub struct RateFidelity {
    pub rate: u32,
    pub burst: u32,
    pub requests: usize,
    pub achieved: f64,
    pub max_in_one_second: usize,
    pub windows_over_budget: usize,
}

#[derive(Debug, Clone)]
pub struct ClaimCost {
    pub rows: u32,
    pub due: u32,
    /// Rows one claim query takes: `poll.batch_size`, as the daemon claims.
    pub limit: u32,
    pub median: Duration,
    pub worst: Duration,
    /// The same claim on a table a tenth the size (at least 10,000 rows): it must not grow.
    pub small_rows: u32,
    pub small_median: Duration,
    pub plan: String,
}

#[derive(Debug, Clone)]
pub struct Memory {
    pub backlog: u32,
    pub reconciled: i64,
    pub peak_rss_kib: u64,
}

/// Webhook delivery of the throughput run's events to a local receiver that checks every
/// signature.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub events: i64,
    pub wall: Duration,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub throughput: Throughput,
    pub delivery: Delivery,
    pub rate: RateFidelity,
    pub claim: ClaimCost,
    pub memory: Vec<Memory>,
}

/// Runs every phase on a scratch database next to `database` (created, then dropped).
pub async fn run_bench(
    database: &DatabaseSettings,
    options: &BenchOptions,
) -> anyhow::Result<BenchReport> {
    on_scratch_database(database, "bench", false, |db| async move {
        run_phases(&db, options).await
    })
    .await
}

/// Runs `work` on a scratch database `freedompay_recon_{label}_{pid}` on the server
/// `database` names, created for it and dropped afterwards (unless `keep`), whatever `work`
/// returned.
async fn on_scratch_database<T, F, Fut>(
    database: &DatabaseSettings,
    label: &str,
    keep: bool,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(PgConnectOptions) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let server = database.connect_options()?;
    let scratch = format!("freedompay_recon_{label}_{}", std::process::id());
    let mut admin = server
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", database.describe()))?;
    store::bench::create_scratch_database(&mut admin, &scratch).await?;
    let result = work(server.database(&scratch)).await;
    if keep {
        eprintln!("bench: kept database {scratch}; drop it with `dropdb {scratch}`");
    } else {
        store::bench::drop_scratch_database(&mut admin, &scratch).await?;
    }
    result
}

async fn run_phases(db: &PgConnectOptions, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let pool = PgPool::connect_with(db.clone()).await?;
    store::migrate(&pool).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let simulator = Simulator::spawn(
        listener,
        Credentials {
            auth_id: AUTH_ID.into(),
            secret: SecretString::from(SECRET),
            params: ParamsMode::Query,
        },
        Scenario::builtin(Builtin::Paid),
        false,
    )?;
    let daemon = DaemonCommand {
        database_url: db.to_url_lossy().to_string(),
        base_url: simulator.base_url(),
        options: options.clone(),
    };

    eprintln!("bench: throughput, {} payments", options.payments);
    let throughput = throughput(&pool, &daemon, options).await?;
    eprintln!("bench: webhook delivery of the throughput run's events");
    let delivery = delivery(&pool).await?;
    eprintln!(
        "bench: rate fidelity, {}/s for {} s",
        options.rate, options.rate_seconds
    );
    let rate = rate_fidelity(&pool, &simulator, &daemon, options).await?;
    eprintln!(
        "bench: claim cost, {} due of {} rows",
        options.claim_due, options.claim_rows
    );
    let claim = claim_cost(&pool, options).await?;
    let mut memory = Vec::new();
    for &backlog in &options.backlogs {
        eprintln!("bench: peak RSS with a backlog of {backlog}");
        memory.push(peak_rss(&pool, &daemon, backlog, options).await?);
    }
    pool.close().await;
    Ok(BenchReport {
        throughput,
        delivery,
        rate,
        claim,
        memory,
    })
}

/// Delivers every event in the database (the throughput run's transitions) to a local
/// receiver that checks each signature; fails unless all are delivered, each correctly signed.
/// Signed as configurations are by default (`webhook.format = "standard"`).
async fn delivery(pool: &PgPool) -> anyhow::Result<Delivery> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use base64::Engine as _;

    /// `whsec_` and the base64 of the 24 bytes `bench-webhook-key-24byte`.
    const WEBHOOK_SECRET: &str = "whsec_YmVuY2gtd2ViaG9vay1rZXktMjRieXRl";
    let key: Arc<[u8]> = base64::engine::general_purpose::STANDARD
        .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))?
        .into();
    let (good, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let receiver = {
        let (good, bad) = (Arc::clone(&good), Arc::clone(&bad));
        axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (good, bad, key) = (Arc::clone(&good), Arc::clone(&bad), Arc::clone(&key));
                async move {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                    let expected = header("webhook-id").zip(header("webhook-timestamp")).map(
                        |(id, timestamp)| {
                            let timestamp = timestamp.parse().unwrap_or(i64::MIN);
                            crate::webhook::standard_signature(&key, id, timestamp, &body)
                        },
                    );
                    let signed = header("webhook-signature");
                    if signed.is_some() && signed == expected.as_deref() {
                        good.fetch_add(1, Ordering::Relaxed);
                        StatusCode::NO_CONTENT
                    } else {
                        bad.fetch_add(1, Ordering::Relaxed);
                        StatusCode::UNAUTHORIZED
                    }
                }
            }),
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, receiver)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    let settings = crate::settings::WebhookSettings {
        url: SecretString::from(format!("http://{addr}/hooks")),
        secret: SecretString::from(WEBHOOK_SECRET),
        format: crate::settings::WebhookFormat::Standard,
        timeout: Duration::from_secs(10),
        max_age: Duration::from_secs(3 * 24 * 3600),
        types: crate::settings::EVENT_TYPES.map(String::from).into(),
    };
    let deliverer = crate::webhook::Deliverer::new(pool.clone(), &settings, "bench")?;
    let (events, _) = store::bench::event_delivery(pool).await?;
    let started = Instant::now();
    let tally = deliverer
        .deliver_due(&tokio_util::sync::CancellationToken::new())
        .await?;
    let wall = started.elapsed();
    stop.cancel();
    server.await??;
    let (_, pending) = store::bench::event_delivery(pool).await?;
    ensure!(
        pending == 0
            && tally.delivered == events as u64
            && good.load(Ordering::Relaxed) == events as u64
            && bad.load(Ordering::Relaxed) == 0,
        "webhook delivery: {} of {events} delivered, {pending} pending, {} badly signed",
        tally.delivered,
        bad.load(Ordering::Relaxed)
    );
    Ok(Delivery { events, wall })
}

async fn reset(pool: &PgPool, count: u32, due: u32) -> anyhow::Result<()> {
    Ok(store::bench::reset_payments(pool, count, due).await?)
}

/// How to start the daemon under test.
struct DaemonCommand {
    database_url: String,
    base_url: String,
    options: BenchOptions,
}

impl DaemonCommand {
    fn spawn(&self, rate: u32) -> anyhow::Result<Child> {
        let exe = std::env::current_exe().context("cannot find this binary")?;
        let poll = |key: &str| format!("FREEDOMPAY_RECON__POLL__{key}");
        // A clean environment: an inherited FREEDOMPAY_RECON__DATABASE__URL would outrank
        // DATABASE_URL and point the daemon under test at a real database.
        Command::new(exe)
            .args(["run", "--once"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("FREEDOMPAY_RECON__PROVIDER__BASE_URL", &self.base_url)
            .env("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", AUTH_ID)
            .env("FREEDOMPAY_RECON__PROVIDER__SECRET", SECRET)
            .env(poll("RATE_PER_SECOND"), rate.to_string())
            .env(poll("BURST"), self.options.burst.to_string())
            .env(poll("CONCURRENCY"), self.options.concurrency.to_string())
            .env(poll("BATCH_SIZE"), self.options.batch_size.to_string())
            .env(poll("CONFIRM_AFTER"), "1h")
            .env(poll("FIRST_POLL_AFTER"), "0s")
            .env("FREEDOMPAY_RECON__DATABASE__MAX_CONNECTIONS", "4")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the daemon under test")
    }
}

/// Runs a child to completion (or SIGTERMs it after `stop_after`), sampling its peak RSS.
/// Returns (wall time, CPU time, peak RSS in KiB).
async fn supervise(
    mut child: Child,
    stop_after: Option<Duration>,
) -> anyhow::Result<(Duration, Duration, u64)> {
    let pid = child.id();
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(hwm) = vm_hwm_kib(pid) {
                    peak.fetch_max(hwm, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let cpu_before = children_cpu()?;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        if let Some(stop_after) = stop_after {
            while started.elapsed() < stop_after {
                if child.try_wait()?.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait()?.is_none() {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                )?;
            }
        }
        Ok(child.wait()?)
    })
    .await??;
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    ensure!(status.success(), "the daemon under test failed: {status}");
    Ok((
        wall,
        children_cpu()? - cpu_before,
        peak.load(Ordering::Relaxed),
    ))
}

async fn throughput(
    pool: &PgPool,
    daemon: &DaemonCommand,
    options: &BenchOptions,
) -> anyhow::Result<Throughput> {
    reset(pool, options.payments, options.payments).await?;
    let postgres_before = postgres_cpu();
    let own_before = own_cpu()?;
    let (wall, daemon_cpu, peak) = supervise(daemon.spawn(0)?, None).await?;
    let simulator_cpu = own_cpu()? - own_before;
    let postgres_cpu = postgres_cpu().saturating_sub(postgres_before);
    let (reconciled, transitions) = store::bench::reconciled(pool).await?;
    ensure!(
        reconciled == i64::from(options.payments) && transitions == reconciled,
        "throughput run: {reconciled} of {} payments reconciled, {transitions} transitions",
        options.payments
    );
    Ok(Throughput {
        payments: options.payments,
        wall,
        daemon_cpu,
        postgres_cpu,
        simulator_cpu,
        daemon_peak_rss_kib: peak,
    })
}

async fn rate_fidelity(
    pool: &PgPool,
    simulator: &Simulator,
    daemon: &DaemonCommand,
    options: &BenchOptions,
) -> anyhow::Result<RateFidelity> {
    let payments = options.rate * options.rate_seconds;
    reset(pool, payments, payments).await?;
    simulator.record_requests(true);
    let run = supervise(daemon.spawn(options.rate)?, None).await;
    simulator.record_requests(false);
    run?;
    let mut times: Vec<_> = simulator
        .take_requests()
        .into_iter()
        .map(|r| r.at)
        .collect();
    times.sort();
    ensure!(
        times.len() == payments as usize,
        "rate run: {} requests for {payments} payments",
        times.len()
    );
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    let achieved = if span > 0.0 {
        (times.len() - 1) as f64 / span
    } else {
        0.0
    };
    let budget = (options.rate + options.burst) as usize;
    let mut max_in_one_second = 0;
    let mut windows_over_budget = 0;
    let mut end = 0;
    for start in 0..times.len() {
        while end < times.len() && times[end] - times[start] < Duration::from_secs(1) {
            end += 1;
        }
        let in_window = end - start;
        max_in_one_second = max_in_one_second.max(in_window);
        if in_window > budget {
            windows_over_budget += 1;
        }
    }
    Ok(RateFidelity {
        rate: options.rate,
        burst: options.burst,
        requests: times.len(),
        achieved,
        max_in_one_second,
        windows_over_budget,
    })
}

/// Times one claim query (`poll.batch_size` rows) 21 times, each rolled back and the table
/// vacuumed after it, so every sample sees the table as a first claim would.
async fn time_claims(pool: &PgPool, limit: u32) -> anyhow::Result<(Duration, Duration)> {
    let lease = Duration::from_secs(300);
    let mut timings = Vec::new();
    for _ in 0..21 {
        store::bench::vacuum_payments(pool).await?;
        let mut tx = pool.begin().await?;
        let started = Instant::now();
        let rows = store::claim_due(
            &mut *tx,
            "bench",
            limit,
            lease,
            None,
            Duration::ZERO,
            Duration::from_secs(5),
        )
        .await?
        .claims;
        timings.push(started.elapsed());
        tx.rollback().await?;
        ensure!(
            rows.len() == limit as usize,
            "claimed {} of {limit}",
            rows.len()
        );
    }
    timings.sort();
    Ok((timings[timings.len() / 2], timings[timings.len() - 1]))
}

async fn claim_cost(pool: &PgPool, options: &BenchOptions) -> anyhow::Result<ClaimCost> {
    let limit = options.batch_size.min(options.claim_due);
    let small_rows = (options.claim_rows / 10).max(10_000).max(options.claim_due);
    reset(pool, small_rows, options.claim_due).await?;
    let (small_median, _) = time_claims(pool, limit).await?;

    reset(pool, options.claim_rows, options.claim_due).await?;
    let (median, worst) = time_claims(pool, limit).await?;
    store::bench::vacuum_payments(pool).await?;
    let mut tx = pool.begin().await?;
    let plan = store::bench::explain_claim(&mut tx, limit).await?;
    tx.rollback().await?;
    if plan.contains("Seq Scan on payments") || !plan.contains("payments_due_") {
        bail!("the claim does not use the due index:\n{plan}");
    }
    Ok(ClaimCost {
        rows: options.claim_rows,
        due: options.claim_due,
        limit,
        median,
        worst,
        small_rows,
        small_median,
        plan,
    })
}

async fn peak_rss(
    pool: &PgPool,
    daemon: &DaemonCommand,
    backlog: u32,
    options: &BenchOptions,
) -> anyhow::Result<Memory> {
    reset(pool, backlog, backlog).await?;
    let stop_after = Duration::from_secs(u64::from(options.rss_seconds));
    let (_, _, peak) = supervise(daemon.spawn(0)?, Some(stop_after)).await?;
    let (reconciled, leased) = store::bench::answered_and_leased(pool).await?;
    ensure!(
        leased == 0,
        "{leased} claims were left held after the daemon stopped"
    );
    Ok(Memory {
        backlog,
        reconciled,
        peak_rss_kib: peak,
    })
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

fn cpu_of(usage: nix::sys::resource::Usage) -> Duration {
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    micros(usage.user_time()) + micros(usage.system_time())
}

/// CPU time of waited-for children (the daemons under test).
fn children_cpu() -> anyhow::Result<Duration> {
    Ok(cpu_of(getrusage(UsageWho::RUSAGE_CHILDREN)?))
}

/// CPU time of this process: the simulator and the benchmark's own bookkeeping.
fn own_cpu() -> anyhow::Result<Duration> {
    Ok(cpu_of(getrusage(UsageWho::RUSAGE_SELF)?))
}

/// CPU time of every PostgreSQL process on this machine, including exited backends (which
/// the postmaster has collected as children).
fn postgres_cpu() -> Duration {
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let mut ticks = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !comm.ends_with("(postgres") {
            continue;
        }
        // After the command: state is field 3; utime, stime, cutime, cstime are 14..=17.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields
            .get(11..15)
            .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    }
    Duration::from_millis(ticks * 1000 / ticks_per_second)
}

impl BenchReport {
    /// The table docs/performance.md publishes.
    pub fn to_markdown(&self, command: &str) -> String {
        let t = &self.throughput;
        let per_10k = |cpu: Duration| cpu.as_secs_f64() * 10_000.0 / f64::from(t.payments);
        let r = &self.rate;
        let c = &self.claim;
        let mut out = String::new();
        let _ = writeln!(out, "Measured with `{command}`:\n");
        let _ = writeln!(out, "| measure | result | target |");
        let _ = writeln!(out, "| --- | --- | --- |");
        let _ = writeln!(
            out,
            "| throughput, no rate limit ({} payments, start to all `success`) | **{:.0} payments/s** ({:.2} s) | ≥ 5,000/s |",
            t.payments,
            f64::from(t.payments) / t.wall.as_secs_f64(),
            t.wall.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| CPU per 10,000 payments: daemon / PostgreSQL / simulator | {:.2} s / {:.2} s / {:.2} s | |",
            per_10k(t.daemon_cpu),
            per_10k(t.postgres_cpu),
            per_10k(t.simulator_cpu)
        );
        let _ = writeln!(
            out,
            "| PostgreSQL CPU per payment reconciled (every postgres process on this machine) | **{:.0} µs** | |",
            t.postgres_cpu.as_secs_f64() * 1e6 / f64::from(t.payments)
        );
        let d = &self.delivery;
        let _ = writeln!(
            out,
            "| webhook delivery ({} events, signed, to a local receiver that checks each signature) | **{:.0} events/s** ({:.2} s) | |",
            d.events,
            d.events as f64 / d.wall.as_secs_f64(),
            d.wall.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| rate fidelity, R = {} for {} requests | achieved {:.1}/s ({:+.2} % of R); most in any 1 s window: {} (budget R + burst = {}); windows over budget: {} | within 2 %, 0 over |",
            r.rate,
            r.requests,
            r.achieved,
            (r.achieved / f64::from(r.rate) - 1.0) * 100.0,
            r.max_in_one_second,
            r.rate + r.burst,
            r.windows_over_budget
        );
        let _ = writeln!(
            out,
            "| one claim query ({} rows, `poll.batch_size`) with {} due of {} rows | median {:.2} ms, worst {:.2} ms of 21, each on a vacuumed table (table of {} rows: median {:.2} ms) | < 5 ms, not growing with the table |",
            c.limit,
            c.due,
            c.rows,
            c.median.as_secs_f64() * 1000.0,
            c.worst.as_secs_f64() * 1000.0,
            c.small_rows,
            c.small_median.as_secs_f64() * 1000.0
        );
        let rss: Vec<String> = self
            .memory
            .iter()
            .map(|m| format!("{}: {:.1} MiB", m.backlog, m.peak_rss_kib as f64 / 1024.0))
            .collect();
        let _ = writeln!(
            out,
            "| daemon peak RSS by backlog | {} | < 64 MiB, flat |",
            rss.join(", ")
        );
        let _ = writeln!(
            out,
            "| daemon peak RSS, throughput run | {:.1} MiB | |",
            t.daemon_peak_rss_kib as f64 / 1024.0
        );
        let _ = writeln!(
            out,
            "\nClaim plan (`explain analyze` of `store::CLAIM_SQL`):\n\n```\n{}\n```",
            c.plan
        );
        out
    }
}
