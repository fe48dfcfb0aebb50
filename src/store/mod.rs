//! Every SQL statement the daemon runs. Functions take an executor where they may run inside
//! a caller's transaction, or the pool where they manage their own.

pub mod archive;
pub mod bank;
pub mod bench;
pub mod callbacks;
mod claim;
pub mod close;
pub mod console;
pub mod digest;
pub mod events;
pub mod finance;
pub mod import;
mod intake;
pub mod maintenance;
mod migrations;
pub mod money;
pub mod rate;
mod record;
pub mod registry;
pub mod report;
pub mod settlement;
pub mod summary;

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

pub use claim::{
    CLAIM_SQL, ClaimBatch, Claimed, Lease, Unreadable, answered_payment_other_than, claim_due,
    park_unreadable, release,
};
pub use intake::{EnqueueOutcome, NewPayment, enqueue};
pub use record::{
    ERROR_BODY_MAX_CHARS, Interrupted, Isolated, RecordOutcome, Recorded, is_refusal,
    record_isolated, record_verdicts,
};

pub use migrations::{
    EARLIER_TEXTS, EarlierText, MIGRATIONS_TABLE, MIGRATOR, OLDEST_SERVER, migrate,
    migrate_if_pending, pending_migrations,
};

use crate::settings::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `reason` says what went wrong and what to do about it.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    /// One line: the database's own message, once (sqlx's text would repeat it for every
    /// layer it wraps and add PostgreSQL's source line number).
    #[error("database error: {}", describe_query_error(.0))]
    Query(sqlx::Error),
    #[error("migration failed: {}", describe_migrate_error(.0))]
    Migrate(sqlx::migrate::MigrateError),
    /// The server is older than the migrations need ([`OLDEST_SERVER`]).
    #[error(
        "the database server is PostgreSQL {version}; freedompay-recon needs PostgreSQL 15 or \
         newer (its migrations use `nulls not distinct`); nothing was changed"
    )]
    ServerTooOld { version: String },
    #[error(
        "{pending} schema migrations are pending and this database role may not apply them ({reason}); \
         run `freedompay-recon migrate` as the migrating role (see docs/operations.md, \"Database roles\")"
    )]
    MigrationsPending { pending: usize, reason: String },
    #[error("{0}")]
    Settings(#[from] crate::settings::SettingsError),
    /// `database` has no freedompay-recon schema: nothing was migrated there yet.
    #[error(
        "database {database} has no freedompay-recon schema; run `freedompay-recon migrate` \
         with the same settings first (it creates schema recon)"
    )]
    NoSchema { database: String },
    /// The schema is older than this binary needs.
    #[error(
        "database {database} has an older freedompay-recon schema than this version needs \
         (migrations up to {need}); run `freedompay-recon migrate` with the same settings"
    )]
    SchemaBehind { database: String, need: i64 },
    #[error(
        "database {0:?} exists and is not a demo database (demo replaces its database on every \
         run); nothing was changed. Pick another with --database-url"
    )]
    NotADemoDatabase(String),
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(e)
    }
}

/// A migration's failure in one line, as [`describe_query_error`] words a query's.
fn describe_migrate_error(e: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::ExecuteMigration(e, version) => {
            format!("migration {version}: {}", describe_query_error(e))
        }
        MigrateError::Execute(e) => describe_query_error(e),
        MigrateError::VersionMismatch(version) => format!(
            "migration {version} was applied to this database from another text than this \
             build's (its recorded checksum differs): a landed migration was edited. Nothing \
             was changed; migrations/README.md in the source says how to get past it safely"
        ),
        MigrateError::VersionMissing(version) => format!(
            "this database has migration {version}, which this build does not know: it was \
             migrated by a newer freedompay-recon; run that version or a later one"
        ),
        other => other.to_string(),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Query(e)
    }
}

/// A query's failure in one line: PostgreSQL's message (with its detail, which names the
/// offending value), or sqlx's own text for anything else; escaped, since a value in it may
/// come from a row another system inserted.
fn describe_query_error(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(db) => {
            let detail = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.detail());
            match detail {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_owned(),
            }
        }
        other => other.to_string(),
    };
    crate::text::clean(&text, 1024)
}

/// Connects and checks the connection once, so an unreachable database is reported now,
/// in one line, rather than at the first query.
/// The pool's sizing and waits, from `database.*`.
pub fn pool_options(settings: &DatabaseSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.connect_timeout)
}

pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, StoreError> {
    let millis = |d: Duration| format!("{}ms", d.as_millis());
    let options = settings
        .connect_options()?
        .application_name("freedompay-recon")
        .options([
            ("statement_timeout", millis(settings.statement_timeout)),
            ("lock_timeout", millis(settings.lock_timeout)),
            // Every statement here is an index read or a bounded write; PostgreSQL's JIT
            // compiles a plan whose estimate is large (a big table's rows behind a one-time
            // filter, never run) and spent 2.8 s doing so on a 15 ms report (bench --year).
            ("jit", "off".to_owned()),
        ]);
    let unreachable = |error: sqlx::Error| StoreError::Connect {
        target: settings.describe(),
        reason: describe_connect_error(&error, settings),
    };
    // One direct attempt first: a wrong URL fails at once with the real reason (no such
    // database or role, a refused password, TLS), where the pool would retry until its
    // timeout and keep only "timed out". A server that is not up yet (refused, starting, out
    // of slots) is waited for by the pool, up to database.connect_timeout, as before; if it
    // never comes, the probe's reason is the one reported.
    let probe = {
        use sqlx::{ConnectOptions as _, Connection as _};
        match tokio::time::timeout(settings.connect_timeout, options.connect()).await {
            Ok(Ok(probe)) => {
                probe.close().await.ok();
                None
            }
            Ok(Err(e)) if !is_transient(&e) => return Err(unreachable(e)),
            Ok(Err(e)) => Some(e),
            Err(_) => return Err(unreachable(sqlx::Error::PoolTimedOut)),
        }
    };
    match pool_options(settings).connect_with(options).await {
        Ok(pool) => Ok(pool),
        Err(sqlx::Error::PoolTimedOut) => {
            Err(unreachable(probe.unwrap_or(sqlx::Error::PoolTimedOut)))
        }
        Err(e) => Err(unreachable(e)),
    }
}

/// Connects like [`connect`], for a command that works on the schema without migrating it:
/// a database without the schema, or with an older one than this binary needs, is refused
/// in one line that says to run `migrate`.
pub async fn connect_to_schema(settings: &DatabaseSettings) -> Result<PgPool, StoreError> {
    let pool = connect(settings).await?;
    let need = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let behind = || StoreError::SchemaBehind {
        database: settings.describe(),
        need,
    };
    // The function reads the migrations record for any role that may use the schema.
    let version: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar!("select recon.schema_version()")
            .fetch_one(&pool)
            .await;
    match version {
        Ok(Some(have)) if have >= need => Ok(pool),
        Ok(_) => Err(behind()),
        Err(sqlx::Error::Database(db)) => match db.code().as_deref() {
            // schema recon does not exist
            Some("3F000") => Err(StoreError::NoSchema {
                database: settings.describe(),
            }),
            // recon.schema_version() came with the schema this version needs
            Some("42883") => Err(behind()),
            _ => Err(StoreError::Query(sqlx::Error::Database(db))),
        },
        Err(e) => Err(e.into()),
    }
}

/// A connection failure that waiting may cure: nothing listening yet, the server starting up
/// (57P03) or out of connection slots (53300).
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P03" | "53300")),
        _ => false,
    }
}

/// What went wrong connecting, in a person's words, with what to run or fix. Never the URL
/// itself: it may hold a password.
fn describe_connect_error(e: &sqlx::Error, settings: &DatabaseSettings) -> String {
    let options = settings.connect_options().ok();
    let database = options
        .as_ref()
        .and_then(|o| o.get_database().map(str::to_owned))
        .unwrap_or_default();
    let user = options
        .as_ref()
        .map(|o| o.get_username().to_owned())
        .unwrap_or_default();
    let timeout = humantime::format_duration(settings.connect_timeout);
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => format!(
                "the database {database:?} does not exist; create it with \
                 `freedompay-recon migrate --create-database` (or: createdb {database})"
            ),
            Some("28000") if db.message().contains("does not exist") => format!(
                "the role {user:?} does not exist; create it (create role \"{user}\" login) or \
                 fix the user in database.url (DATABASE_URL)"
            ),
            Some("28000" | "28P01") => format!(
                "the server refused role {user:?} ({}); check the user and password in \
                 database.url (DATABASE_URL or secrets.env) and the server's pg_hba.conf",
                db.message()
            ),
            Some("53300") => "the server has no connection slots left; retry later or raise \
                 max_connections"
                .into(),
            _ => db.message().to_owned(),
        },
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing is listening there (connection refused); start PostgreSQL, or fix the host \
             and port in database.url (DATABASE_URL)"
                .into()
        }
        sqlx::Error::Io(io) => {
            format!("{io}; check the host in database.url (DATABASE_URL) and that the server is up")
        }
        sqlx::Error::PoolTimedOut => format!(
            "no answer within database.connect_timeout ({timeout}); check that the host is \
             reachable (a firewall?) and the server is up"
        ),
        sqlx::Error::Tls(tls) => {
            format!("TLS: {tls}; check sslmode in database.url and the server's certificate")
        }
        other => other.to_string(),
    }
}

/// The database a URL names. One that names none would connect to the role's own database,
/// which no command that creates or replaces a database may guess at.
fn named_database(options: &sqlx::postgres::PgConnectOptions) -> Result<String, StoreError> {
    options
        .get_database()
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            StoreError::Settings(crate::settings::SettingsError::Invalid(
                "database.url names no database; add one, e.g. postgres://user@host:5432/freedompay_recon"
                    .into(),
            ))
        })
}

/// The comment that marks a database as the demo's own: `demo` replaces it on every run.
pub const DEMO_DATABASE_MARK: &str =
    "freedompay-recon demo database: every demo run replaces it with a fresh one";

/// Replaces the database `settings.url` names with a fresh, empty one for a demo run, so one
/// run never changes another's verdicts. An existing database is dropped only when it carries
/// [`DEMO_DATABASE_MARK`] or `unmarked_is_demo` says its name is the demo's own; any other is
/// refused, untouched.
pub async fn recreate_demo_database(
    settings: &DatabaseSettings,
    unmarked_is_demo: bool,
) -> Result<(), StoreError> {
    use sqlx::Connection as _;

    let (mut admin, name, existing) = demo_database(settings).await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    if let Some(comment) = existing {
        if comment.as_deref() != Some(DEMO_DATABASE_MARK) && !unmarked_is_demo {
            return Err(StoreError::NotADemoDatabase(name));
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database {quoted} with (force)"
        )))
        .execute(&mut admin)
        .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {quoted}")))
        .execute(&mut admin)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "comment on database {quoted} is '{DEMO_DATABASE_MARK}'"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await.ok();
    Ok(())
}

/// Drops the database `settings.url` names when it carries [`DEMO_DATABASE_MARK`] (a demo's
/// scratch database it is done with); any other, or none, is left as it is.
pub async fn drop_demo_database(settings: &DatabaseSettings) -> Result<(), StoreError> {
    use sqlx::Connection as _;

    let (mut admin, name, existing) = demo_database(settings).await?;
    if existing.flatten().as_deref() == Some(DEMO_DATABASE_MARK) {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database {quoted} with (force)"
        )))
        .execute(&mut admin)
        .await?;
    }
    admin.close().await.ok();
    Ok(())
}

/// A connection to the server's `postgres` database, the name of the database `settings.url`
/// names, and that database's comment: `None` when it does not exist, `Some(None)` when it
/// has no comment.
async fn demo_database(
    settings: &DatabaseSettings,
) -> Result<(sqlx::PgConnection, String, Option<Option<String>>), StoreError> {
    use sqlx::ConnectOptions as _;

    let options = settings.connect_options()?;
    let name = named_database(&options)?;
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(|e| StoreError::Connect {
            target: settings.describe(),
            reason: describe_connect_error(&e, settings),
        })?;
    let existing: Option<Option<String>> = sqlx::query_scalar!(
        "select shobj_description(oid, 'pg_database') from pg_database where datname = $1",
        &name,
    )
    .fetch_optional(&mut admin)
    .await?;
    Ok((admin, name, existing))
}

/// Creates the database `settings.url` names when it does not exist yet, connecting to the
/// server's `postgres` database to do so. Returns whether it was created.
pub async fn create_database_if_missing(settings: &DatabaseSettings) -> Result<bool, StoreError> {
    use sqlx::{ConnectOptions as _, Connection as _};

    let options = settings.connect_options()?;
    let name = named_database(&options)?;
    let unreachable = |e: sqlx::Error| StoreError::Connect {
        target: settings.describe(),
        reason: describe_connect_error(&e, settings),
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(unreachable)?;
    let exists = sqlx::query_scalar!(
        r#"select exists (select 1 from pg_database where datname = $1) as "exists!""#,
        &name,
    )
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

/// Whether the database answers at all (`/readyz`).
pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query!("select 1 as one").fetch_one(pool).await?;
    Ok(())
}

/// A `Duration` as whole milliseconds for SQL interval arithmetic.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
