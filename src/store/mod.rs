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

pub use claim::{CLAIM_SQL, ClaimBatch, Claimed, Unreadable, claim_due, park_unreadable, release};
pub use intake::{EnqueueOutcome, NewPayment, enqueue};
pub use record::{RecordOutcome, Recorded, record_verdicts};

use crate::settings::DatabaseSettings;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// A `Duration` as whole milliseconds for SQL interval arithmetic.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
