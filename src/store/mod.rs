//! Every SQL statement the daemon runs. Functions take an executor where they may run inside
//! a caller's transaction, or the pool where they manage their own.

mod claim;
pub mod finance;
pub mod import;
mod intake;
pub mod rate;
mod record;
pub mod report;
pub mod summary;

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

pub use claim::{
    CLAIM_SQL, ClaimBatch, Claimed, Unreadable, answered_payment_other_than, claim_due,
    park_unreadable, release,
};
pub use intake::{EnqueueOutcome, NewPayment, enqueue};
pub use record::{
    ERROR_BODY_MAX_CHARS, Interrupted, Isolated, RecordOutcome, Recorded, is_refusal,
    record_isolated, record_verdicts,
};

use crate::settings::DatabaseSettings;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where the applied migrations are recorded: inside the schema the migrations build, so the
/// migrating role needs no privilege on `public` (PostgreSQL 15 grants none there by default).
pub const MIGRATIONS_TABLE: &str = "recon._sqlx_migrations";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot connect to PostgreSQL at {target}: {reason}; check that it is running and that database.url (or DATABASE_URL) is right"
    )]
    Connect { target: String, reason: String },
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "{pending} schema migrations are pending and this database role may not apply them ({reason}); \
         run `freedompay-recon migrate` as the migrating role (see docs/operations.md, \"Database roles\")"
    )]
    MigrationsPending { pending: usize, reason: String },
    #[error("{0}")]
    Settings(#[from] crate::settings::SettingsError),
}

/// Connects and checks the connection once, so an unreachable database is reported now,
/// in one line, rather than at the first query.
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, StoreError> {
    let millis = |d: Duration| format!("{}ms", d.as_millis());
    let options = settings
        .connect_options()?
        .application_name("freedompay-recon")
        .options([
            ("statement_timeout", millis(settings.statement_timeout)),
            ("lock_timeout", millis(settings.lock_timeout)),
        ]);
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Connect {
            target: settings.describe(),
            reason: describe_connect_error(&e),
        })?;
    Ok(pool)
}

fn describe_connect_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        other => other.to_string(),
    }
}

/// Creates the database `settings.url` names when it does not exist yet, connecting to the
/// server's `postgres` database to do so. Returns whether it was created.
pub async fn create_database_if_missing(settings: &DatabaseSettings) -> Result<bool, StoreError> {
    use sqlx::{ConnectOptions as _, Connection as _};

    let options = settings.connect_options()?;
    let name = options
        .get_database()
        .unwrap_or("freedompay_recon")
        .to_owned();
    let unreachable = |e: sqlx::Error| StoreError::Connect {
        target: settings.describe(),
        reason: describe_connect_error(&e),
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(unreachable)?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {quoted}")))
            .execute(&mut admin)
            .await?;
    }
    admin.close().await.ok();
    Ok(!exists)
}

/// Applies pending migrations. Safe to run from several instances at once: sqlx serialises
/// them with an advisory lock.
///
/// Needs a role that may create schema `recon` in this database (or already owns it), nothing
/// more: the record of applied migrations lives in [`MIGRATIONS_TABLE`]. A database migrated
/// by an earlier version, which kept that record in `public._sqlx_migrations`, has its rows
/// copied over first (the old table is left alone: it may be another application's too).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("select pg_advisory_lock(hashtext('freedompay-recon migrations'))")
        .execute(&mut *conn)
        .await?;
    let prepared = prepare_migrations_table(&mut conn).await;
    let migrated = match prepared {
        Ok(()) => migrator().run(&mut *conn).await.map_err(StoreError::from),
        Err(e) => Err(e),
    };
    sqlx::query("select pg_advisory_unlock(hashtext('freedompay-recon migrations'))")
        .execute(&mut *conn)
        .await?;
    migrated
}

/// Applies pending migrations only when there are any, so a role that may only run the
/// daemon (see `grant-daemon`) starts against an up-to-date schema without needing the
/// privileges `migrate` needs. Returns how many were applied.
pub async fn migrate_if_pending(pool: &PgPool) -> Result<usize, StoreError> {
    let pending = pending_migrations(pool).await?;
    if pending == 0 {
        return Ok(0);
    }
    match migrate(pool).await {
        Ok(()) => Ok(pending),
        Err(e) if is_permission_denied(&e) => Err(StoreError::MigrationsPending {
            pending,
            reason: e.to_string(),
        }),
        Err(e) => Err(e),
    }
}

/// How many embedded migrations the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> Result<usize, StoreError> {
    let applied: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select version from {MIGRATIONS_TABLE} where success"
    )))
    .fetch_all(pool)
    .await
    .or_else(|e| match &e {
        // No record yet (a new database, or one migrated by an earlier version).
        sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(Vec::new()),
        _ => Err(e),
    })?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count())
}

fn is_permission_denied(error: &StoreError) -> bool {
    let code = |e: &sqlx::Error| match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c == "42501"),
        _ => false,
    };
    match error {
        StoreError::Query(e) => code(e),
        StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e))
        | StoreError::Migrate(sqlx::migrate::MigrateError::ExecuteMigration(e, _)) => code(e),
        _ => false,
    }
}

/// The embedded migrations, recorded in [`MIGRATIONS_TABLE`].
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate::Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Creates schema `recon` when it is missing (not otherwise: `create schema if not exists`
/// needs the database's CREATE privilege even when the schema exists) and the migrations
/// record inside it, copying rows from a record kept in `public` by an earlier version.
async fn prepare_migrations_table(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    let schema_exists: bool = sqlx::query_scalar("select to_regnamespace('recon') is not null")
        .fetch_one(&mut *conn)
        .await?;
    if !schema_exists {
        sqlx::query("create schema recon")
            .execute(&mut *conn)
            .await?;
    }
    let (ours, legacy): (bool, bool) = sqlx::query_as(
        "select to_regclass('recon._sqlx_migrations') is not null,
                to_regclass('public._sqlx_migrations') is not null",
    )
    .fetch_one(&mut *conn)
    .await?;
    if ours {
        return Ok(());
    }
    // The same table sqlx creates.
    sqlx::query(
        "create table recon._sqlx_migrations (
             version bigint primary key,
             description text not null,
             installed_on timestamptz not null default now(),
             success boolean not null,
             checksum bytea not null,
             execution_time bigint not null
         )",
    )
    .execute(&mut *conn)
    .await?;
    if legacy {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        sqlx::query(
            "insert into recon._sqlx_migrations
             select version, description, installed_on, success, checksum, execution_time
             from public._sqlx_migrations where version = any($1)",
        )
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A `Duration` as whole milliseconds for SQL interval arithmetic.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
