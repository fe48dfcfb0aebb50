//! Shared test fixtures: a fresh PostgreSQL database per test, the provider simulator, and
//! an engine wired to both with the same settings loader the daemon uses.

use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use freedompay_recon::engine::{Engine, SweepOutcome};
use freedompay_recon::provider::{ParamsMode, ProviderClient};
use freedompay_recon::settings::Settings;
use freedompay_recon::simulator::{Credentials, Scenario, Simulator};
use freedompay_recon::store;
use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;

pub const AUTH_ID: &str = "13989";
pub const SECRET: &str = "partner-secret-for-tests";

/// The server tests create their databases on: `DATABASE_URL`, else a testcontainers
/// PostgreSQL (needs Docker).
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => start_container(),
    })
}

/// The PostgreSQL image tag the testcontainers fallback starts.
pub const CONTAINER_TAG: &str = "15-alpine";

/// Starts PostgreSQL in Docker on a thread that keeps it alive for the whole test run.
fn start_container() -> String {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::ImageExt as _;
    use testcontainers_modules::testcontainers::runners::AsyncRunner as _;

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the container");
        runtime.block_on(async move {
            // The module's default image is PostgreSQL 11, which the migrations refuse
            // (store::OLDEST_SERVER): the same major version as the build machines'.
            match Postgres::default().with_tag(CONTAINER_TAG).start().await {
                Ok(container) => {
                    let port = container.get_host_port_ipv4(5432).await;
                    let _ = tx.send(
                        port.map(|port| {
                            format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres")
                        })
                        .map_err(|e| e.to_string()),
                    );
                    std::future::pending::<()>().await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
    });
    match rx.recv().expect("the container thread answers") {
        Ok(url) => url,
        Err(e) => panic!(
            "DATABASE_URL is not set and no PostgreSQL container could be started ({e}).\n\
             Either set DATABASE_URL to a PostgreSQL server the tests may create databases on \
             (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres), or start Docker."
        ),
    }
}

/// The test server's connection options, TLS left off on loopback as the daemon does.
fn server_options() -> PgConnectOptions {
    let options: PgConnectOptions = server_url().parse().expect("DATABASE_URL parses");
    freedompay_recon::settings::without_tls_on_loopback(server_url(), options)
}

/// A database of its own for one test, migrated; dropped when the test ends.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    name: String,
    server: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> Self {
        let db = Self::unmigrated().await;
        store::migrate(&db.pool).await.expect("migrations apply");
        db
    }
    /// A fresh database as an earlier release left it, for upgrade tests: its first `n`
    /// migrations applied and recorded where that release recorded them: sqlx's default
    /// (`public._sqlx_migrations`, which `migrate` adopts) before migration
    /// `20261206000015`, whose release moved the record into schema `recon`.
    pub async fn migrated_through(n: usize) -> Self {
        let db = Self::unmigrated().await;
        db.migrate_through(n).await;
        db
    }

    /// Applies the first `n` migrations, as [`TestDb::migrated_through`].
    pub async fn migrate_through(&self, n: usize) {
        let migrations: Vec<_> = freedompay_recon::store::MIGRATOR
            .iter()
            .take(n)
            .cloned()
            .collect();
        let in_recon = migrations
            .last()
            .is_some_and(|m| m.version >= 20261206000015);
        let mut migrator = sqlx::migrate::Migrator::with_migrations(migrations);
        if in_recon {
            sqlx::query("create schema if not exists recon")
                .execute(&self.pool)
                .await
                .unwrap();
            migrator.dangerous_set_table_name(freedompay_recon::store::MIGRATIONS_TABLE);
        }
        migrator
            .run(&self.pool)
            .await
            .expect("the earlier migrations apply");
    }

    /// A database of its own with nothing in it yet.
    pub async fn unmigrated() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let server = server_options();
        let mut admin = server.connect().await.unwrap_or_else(|e| {
            panic!("cannot connect to the test PostgreSQL server from DATABASE_URL: {e}")
        });
        drop_abandoned_databases(&mut admin).await;
        let name = format!(
            "fpr_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.ok();

        let options = server.clone().database(&name);
        let pool = PgPool::connect_with(options.clone())
            .await
            .expect("connect");
        let url = options.to_url_lossy().to_string();
        Self {
            pool,
            url,
            name,
            server,
        }
    }

    /// This database's URL as another role (trust authentication: no password).
    pub fn url_as(&self, role: &str) -> String {
        url_as(&self.server, &self.name, role)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Database `name` on `server` as `role` (trust authentication: no password).
fn url_as(server: &PgConnectOptions, name: &str, role: &str) -> String {
    server
        .clone()
        .database(name)
        .username(role)
        .to_url_lossy()
        .to_string()
}

/// A new login role `role` (dropped first, should an earlier run have left it).
pub async fn fresh_login_role(pool: &PgPool, role: &str) {
    for statement in [
        format!("drop role if exists {role}"),
        format!("create role {role} login"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Drops `role`, and what it was granted in `pool`'s database.
pub async fn drop_role(pool: &PgPool, role: &str) {
    for statement in [format!("drop owned by {role}"), format!("drop role {role}")] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Starts `console --listen 127.0.0.1:0` as `command` (its environment set by the caller);
/// the process and the address it says it serves on.
pub fn spawn_console(command: &mut Command) -> (Spawned, String) {
    use std::io::{BufRead as _, BufReader};
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut console = Spawned::spawn(command);
    let mut first = String::new();
    BufReader::new(console.take_stdout())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("console on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .trim_end_matches('/')
        .to_owned();
    (console, base)
}

/// The binary with `args`, and nothing from the test's environment but PATH; logging at
/// `warn` (a test that reads the default level removes `RUST_LOG`).
pub fn binary(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_freedompay-recon"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    command
}
/// A command's standard output.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A command's standard output, once it succeeded (its standard error shown when not).
pub fn ok(output: &Output) -> String {
    assert!(output.status.success(), "{}", stderr(output));
    stdout(output)
}

/// A command's standard error, once it was refused: exit 1, one line saying why.
pub fn refused(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{}", stdout(output));
    let said = stderr(output);
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
    said
}

/// Runs `command` to its end (off the runtime's threads); returns its output.
pub async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap()
}

/// Runs `command` to its end with `input` on its standard input; returns its output.
pub async fn output_with_input(mut command: Command, input: &str) -> Output {
    use std::io::Write as _;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("the binary runs");
        let written = child.stdin.take().unwrap().write_all(input.as_bytes());
        let output = child.wait_with_output().unwrap();
        written.expect("the binary reads its input");
        output
    })
    .await
    .unwrap()
}

/// Runs the binary with `args` and only `env` (plus PATH); for a database or a setting that
/// is not a [`TestApp`]'s. A test with an app uses [`TestApp::run`].
pub async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = binary(args);
    command.envs(env.iter().copied());
    output(command).await
}

/// What the binary needs to work against a test's database and a simulator: the database
/// URL, the provider's URL and credentials, no rate limit and no wait before a first poll.
pub fn binary_env(database_url: &str, provider_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_owned()),
        (
            "FREEDOMPAY_RECON__PROVIDER__BASE_URL",
            provider_url.to_owned(),
        ),
        ("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", AUTH_ID.to_owned()),
        ("FREEDOMPAY_RECON__PROVIDER__SECRET", SECRET.to_owned()),
        ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", "0".to_owned()),
        ("FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER", "0s".to_owned()),
        (
            "FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER_WITH_CALLBACKS",
            "0s".to_owned(),
        ),
    ]
}

/// Test databases whose process is gone (a crashed or killed run) are dropped.
async fn drop_abandoned_databases(admin: &mut PgConnection) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar("select datname from pg_database where datname like 'fpr\\_test\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "drop database if exists {name} with (force)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database(&self.server, &self.name, Some(self.pool.clone()));
    }
}

/// Drops a test database from a thread of its own: the test's runtime is going away.
fn drop_database(server: &PgConnectOptions, name: &str, pool: Option<PgPool>) {
    let (server, name) = (server.clone(), name.to_owned());
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            if let Some(pool) = pool {
                pool.close().await;
            }
            if let Ok(mut admin) = server.connect().await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut admin)
                .await;
            }
        });
    })
    .join();
}

/// The URL of a database that does not exist yet (for commands that create it); dropped,
/// if it was created, when the test ends.
pub struct MissingDb {
    pub url: String,
    name: String,
    server: PgConnectOptions,
}

impl MissingDb {
    pub fn new(label: &str) -> Self {
        let server = server_options();
        let name = format!("fpr_test_{}_{label}", std::process::id());
        let url = server.clone().database(&name).to_url_lossy().to_string();
        Self { url, name, server }
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url)
            .await
            .expect("the database exists now")
    }

    /// This database's URL as another role (trust authentication: no password).
    pub fn url_as(&self, role: &str) -> String {
        url_as(&self.server, &self.name, role)
    }
}

impl Drop for MissingDb {
    fn drop(&mut self) {
        drop_database(&self.server, &self.name, None);
    }
}

/// Settings as the daemon would load them, pointing at `db` and `sim`, plus `overrides`
/// (environment-style keys such as `FREEDOMPAY_RECON__POLL__CONCURRENCY`).
pub fn settings(db: &TestDb, sim: &Simulator, overrides: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", db.url.as_str()),
        ("FREEDOMPAY_RECON__PROVIDER__BASE_URL", &sim.base_url()),
        ("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", AUTH_ID),
        ("FREEDOMPAY_RECON__PROVIDER__SECRET", SECRET),
        ("FREEDOMPAY_RECON__PROVIDER__TIMEOUT", "5s"),
        ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", "0"),
        ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "8"),
        ("FREEDOMPAY_RECON__POLL__LEASE", "60s"),
        ("FREEDOMPAY_RECON__POLL__DRAIN_TIMEOUT", "2s"),
        ("FREEDOMPAY_RECON__POLL__RETRY_MIN", "1s"),
        ("FREEDOMPAY_RECON__POLL__RETRY_MAX", "2s"),
        ("FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER", "0s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (key, value) in overrides {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    Settings::load_from(None, env).expect("test settings are valid")
}

/// A simulator accepting the test credentials.
pub async fn simulator(scenario: Scenario) -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::spawn(
        listener,
        Credentials {
            auth_id: AUTH_ID.into(),
            secret: SecretString::from(SECRET),
            params: ParamsMode::Query,
        },
        scenario,
        true,
    )
    .unwrap()
}

/// A database, a simulator and an engine wired together.
pub struct TestApp {
    pub db: TestDb,
    pub sim: Simulator,
    pub settings: Settings,
    pub engine: Engine,
}

impl TestApp {
    pub async fn new(scenario: Scenario) -> Self {
        Self::with(scenario, &[]).await
    }

    pub async fn with(scenario: Scenario, overrides: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let sim = simulator(scenario).await;
        let settings = settings(&db, &sim, overrides);
        let engine = engine(&db, &settings);
        Self {
            db,
            sim,
            settings,
            engine,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    pub async fn sweep(&self) -> SweepOutcome {
        self.engine
            .reconcile_due(&CancellationToken::new())
            .await
            .expect("sweep runs")
    }

    /// Enqueues payments by plain SQL, as other systems do.
    pub async fn insert(&self, sql_values: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "insert into recon.payments (payment_id, expected_amount, expected_currency, order_id, created_at, expires_at) values {sql_values}"
        )))
        .execute(self.pool())
        .await
        .expect("insert payments");
    }

    pub async fn insert_ids(&self, ids: &[&str]) {
        for id in ids {
            sqlx::query("insert into recon.payments (payment_id) values ($1)")
                .bind(id)
                .execute(self.pool())
                .await
                .unwrap();
        }
    }

    /// Writes a payment's first status transition (`process`, now) by plain SQL, as a person
    /// or another system could; the outbox's triggers turn it into an event.
    pub async fn insert_first_transition(&self, payment_id: &str) {
        sqlx::query(
            "insert into recon.status_transitions
                 (payment_id, observation_no, from_status, to_status, observed_at, body)
             values ($1, 1, null, 'process', now(), '{}')",
        )
        .bind(payment_id)
        .execute(self.pool())
        .await
        .expect("insert a transition");
    }

    /// Reporting days in UTC for commands that connect from now on (the database setting
    /// `recon.timezone`), so a test's times read as written; the summary's rollup is rebuilt
    /// in UTC, as `migrate` or the daemon's maintenance would after the change.
    pub async fn report_in_utc(&self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "alter database {} set recon.timezone = 'UTC'",
            self.db.name()
        )))
        .execute(self.pool())
        .await
        .unwrap();
        sqlx::query("select recon.rebuild_summary('UTC')")
            .execute(self.pool())
            .await
            .unwrap();
    }

    /// Time passes: every payment still polled is due now.
    pub async fn fast_forward(&self) {
        sqlx::query(
            "update recon.payments set next_check_at = now() - interval '1 millisecond'
             where next_check_at is not null",
        )
        .execute(self.pool())
        .await
        .unwrap();
    }

    pub async fn status(&self, id: &str) -> Option<String> {
        sqlx::query_scalar("select status from recon.payments where payment_id = $1")
            .bind(id)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    /// `(from, to)` transitions of one payment, in order.
    pub async fn transitions(&self, id: &str) -> Vec<(Option<String>, String)> {
        sqlx::query_as(
            "select from_status, to_status from recon.status_transitions
             where payment_id = $1 order by observation_no",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .unwrap()
    }

    pub async fn open_flags(&self, id: &str) -> Vec<String> {
        sqlx::query_scalar("select open_flags from recon.reconciliation where payment_id = $1")
            .bind(id)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    /// Every flag of a payment ever raised: `(kind, resolved)`.
    pub async fn flag_history(&self, id: &str) -> Vec<(String, bool)> {
        sqlx::query_as(
            "select kind, resolved_at is not null from recon.discrepancies
             where payment_id = $1 order by id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

pub fn engine(db: &TestDb, settings: &Settings) -> Engine {
    let provider = ProviderClient::new(&settings.provider).expect("provider client");
    Engine::new(db.pool.clone(), provider, settings)
}

impl TestApp {
    /// This app's environment for the binary: its database, its simulator and the
    /// credentials the simulator accepts ([`binary_env`]). The app's `overrides` are the
    /// in-process engine's, not passed on.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        binary_env(&self.db.url, &self.sim.base_url())
    }

    /// The binary with `args` and this app's environment ([`TestApp::env`]), logging at
    /// `warn`; `.env(..)` on the result overrides or adds a setting.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = binary(args);
        command.envs(self.env());
        command
    }

    /// Runs the binary with `args` against this app; returns its output.
    pub async fn run(&self, args: &[&str]) -> Output {
        output(self.command(args)).await
    }

    /// [`TestApp::run`] with `env` added to (or overriding) the app's environment.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        output(command).await
    }

    /// The daemon (`run`) against this app, sweeping every second, logging errors only to a
    /// piped stderr; `env` adds or overrides settings.
    pub fn daemon_command(&self, env: &[(&str, &str)]) -> Command {
        let mut command = self.command(&["run"]);
        command
            .env("FREEDOMPAY_RECON__POLL__SCHEDULE", "* * * * * *")
            .env("RUST_LOG", "error")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Starts the daemon ([`TestApp::daemon_command`]); it is killed if the test ends first.
    pub fn spawn_daemon(&self, env: &[(&str, &str)]) -> Spawned {
        Spawned::spawn(&mut self.daemon_command(env))
    }
}

impl TestApp {
    /// Claims the first due payment as an instance named `test` would (a 60 s lease, nothing
    /// held back).
    pub async fn claim_one(&self) -> store::Claimed {
        let mut batch = store::claim_due(
            self.pool(),
            "test",
            10,
            Duration::from_secs(60),
            None,
            Duration::ZERO,
            Duration::ZERO,
        )
        .await
        .expect("the claim");
        assert!(!batch.claims.is_empty(), "nothing was due");
        batch.claims.remove(0)
    }
}

/// What the daemon records for `claim` when the provider answers `reply` (an invoice): the
/// body parsed as the daemon parses it, decided by `decide` with the default policy and no
/// jitter, ready for [`store::record_verdicts`].
pub fn recorded(
    claim: &store::Claimed,
    reply: freedompay_recon::simulator::Reply,
) -> store::Recorded {
    use freedompay_recon::domain::{Jitter, Policy, PollResult, decide};
    use freedompay_recon::provider::{Body, parse_body};
    let freedompay_recon::simulator::Reply::Json { body, .. } = reply else {
        panic!("an answer with a body")
    };
    let raw = body.to_string();
    let Body::Invoice(invoice) = parse_body(
        raw.as_bytes(),
        chrono::FixedOffset::east_opt(5 * 3600).unwrap(),
    )
    .expect("the body parses") else {
        panic!("an invoice")
    };
    let verdict = decide(
        &claim.tracked,
        &PollResult::Invoice(invoice.clone()),
        claim.claimed_at,
        &Policy::default(),
        Jitter::NONE,
    );
    store::Recorded {
        payment_id: claim.tracked.payment_id.clone(),
        lease_token: claim.lease_token,
        verdict,
        invoice: Some(*invoice),
        raw_body: Some(raw),
        error_body: None,
        request_id: None,
        before: claim.tracked.clone(),
    }
}

impl TestApp {
    /// Waits until a daemon process holds a connection to this test's database.
    pub async fn wait_for_daemon_connection(&self) {
        let connected = self
            .wait_for(
                "select least(count(*), 1) from pg_stat_activity
                 where application_name = 'freedompay-recon' and datname = current_database()",
                1,
                std::time::Duration::from_secs(10),
            )
            .await;
        assert_eq!(connected, 1, "the daemon connected");
    }

    /// Polls `sql` (a count) until it equals `expected` or `within` passes; returns the last
    /// count.
    pub async fn wait_for(&self, sql: &str, expected: i64, within: std::time::Duration) -> i64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let n = self.count(sql).await;
            if n == expected || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// The most instants within any one-second window (a sliding window starting at each).
pub fn most_in_one_second(times: &[tokio::time::Instant]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t - sorted[i] < std::time::Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A process a test spawned (a daemon, a simulator): killed and reaped when dropped, so a
/// failing or panicking test leaves no process behind. What it writes to a piped stderr is
/// collected as it comes (and printed if the test panics).
pub struct Spawned {
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// How long [`Spawned::stop`] waits for a process to exit after SIGTERM before failing the
/// test (and killing it).
const STOP_WITHIN: Duration = Duration::from_secs(60);

impl Spawned {
    /// Spawns `command` and guards the child.
    pub fn spawn(command: &mut Command) -> Self {
        Self::new(command.spawn().expect("the process starts"))
    }

    pub fn new(mut child: Child) -> Self {
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let reader = child.stderr.take().map(|mut pipe| {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                use std::io::Read as _;
                let mut buffer = [0u8; 8192];
                loop {
                    match pipe.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => stderr.lock().unwrap().extend_from_slice(&buffer[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            })
        });
        Self {
            child: Some(child),
            stderr,
            reader,
        }
    }

    fn child(&self) -> &Child {
        self.child.as_ref().expect("running")
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// Its standard output, if piped (once).
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child
            .as_mut()
            .and_then(|child| child.stdout.take())
            .expect("stdout is piped")
    }

    /// Sends `signal` (e.g. "TERM", "KILL", "STOP").
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Whether it is still running (not exited, not a zombie).
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("not waited for");
        matches!(child.try_wait(), Ok(None))
    }

    /// What it has written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until its stderr contains `needle` or `within` passes; returns whether it did.
    pub async fn wait_for_stderr(&self, needle: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for it to exit by itself; fails the test (and kills it) if it has not within
    /// `within`. Returns its exit code (`None` if a signal ended it) and all of its stderr.
    pub async fn wait(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = tokio::time::Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "process {} did not exit within {within:?}",
                child.id()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.child = None;
        if let Some(reader) = self.reader.take() {
            // The pipe closes when the process exits: the reader ends at once.
            tokio::task::spawn_blocking(move || reader.join())
                .await
                .unwrap()
                .expect("the stderr reader");
        }
        (status.code(), self.stderr())
    }

    /// SIGTERM, then [`Spawned::wait`] (at most a minute).
    pub async fn stop(self) -> (Option<i32>, String) {
        self.signal("TERM");
        self.wait(STOP_WITHIN).await
    }

    /// SIGKILL, then [`Spawned::wait`].
    pub async fn kill(self) -> (Option<i32>, String) {
        self.signal("KILL");
        self.wait(STOP_WITHIN).await
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "process {} (killed as the test failed) wrote to stderr:\n{}",
                    child.id(),
                    self.stderr()
                );
            }
        }
    }
}
