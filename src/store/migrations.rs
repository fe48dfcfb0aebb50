//! The schema migrations: embedded in the binary, applied in order, each once, and never
//! changed once they have landed on main.
//!
//! sqlx records each applied migration's checksum (SHA-384 of its file) and refuses `migrate`
//! when a file no longer matches what a database applied. So a landed migration never
//! changes: `migrations/checksums.txt` pins every one (checked by the tests below), and a
//! change is a new migration that says what it changes and why (`migrations/README.md`).
//!
//! Two landed files were edited before that rule was enforced (issue 23, item 8). A database
//! that applied their earlier text is recognised by its recorded checksum and brought up to
//! the text on main by [`EARLIER_TEXTS`]: the exact difference, applied idempotently, and the
//! current checksum recorded, in one transaction.

use sqlx::PgConnection;
use sqlx::postgres::PgPool;

use super::{StoreError, maintenance};

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where the applied migrations are recorded: inside the schema the migrations build, so the
/// migrating role needs no privilege on `public` (PostgreSQL 15 grants none there by default).
pub const MIGRATIONS_TABLE: &str = "recon._sqlx_migrations";

/// The oldest PostgreSQL the migrations run on: 15, for `nulls not distinct` (the summary
/// rollup's key, migration 20261204000012).
pub const OLDEST_SERVER: i32 = 150_000;

/// Refuses a server older than [`OLDEST_SERVER`], in one line, before anything is changed.
async fn refuse_an_older_server(conn: &mut PgConnection) -> Result<(), StoreError> {
    let (number, text): (String, String) = sqlx::query_as(
        "select current_setting('server_version_num'), current_setting('server_version')",
    )
    .fetch_one(&mut *conn)
    .await?;
    server_is_new_enough(&number, &text)
}

/// Whether `server_version_num` (`number`; `text` for the message) is at least
/// [`OLDEST_SERVER`].
fn server_is_new_enough(number: &str, text: &str) -> Result<(), StoreError> {
    match number.trim().parse::<i32>() {
        Ok(n) if n >= OLDEST_SERVER => Ok(()),
        _ => Err(StoreError::ServerTooOld {
            version: crate::text::clean(text, 64),
        }),
    }
}

/// A text of a landed migration that was later edited (before the rule above was kept), and
/// what brings a database that applied it to the text on main.
#[derive(Debug)]
pub struct EarlierText {
    pub version: i64,
    /// The checksum sqlx recorded for the earlier text, as lowercase hex.
    pub checksum: &'static str,
    /// What the later text changed, for the log and the docs.
    pub change: &'static str,
    /// The difference, idempotent (it may run on a database that has part of it); empty
    /// when the edit changed only comments.
    pub difference: &'static str,
}

/// Every earlier text of a landed migration that a database may hold (migrations/README.md).
pub const EARLIER_TEXTS: &[EarlierText] = &[
    EarlierText {
        version: 20261204000012,
        checksum: "a269df59e19076abb2b987bf21066c577af259f3a199453a61a7d31171f2302b92f53531423bc0aece9dd31951d6df60",
        change: "added the index discrepancies_open_age_idx (commit fa7d48a)",
        difference: "create index if not exists discrepancies_open_age_idx on recon.discrepancies \
                     (kind, detected_at) where resolved_at is null",
    },
    EarlierText {
        version: 20261204000014,
        checksum: "42570c8fd280f3cc930fc219e5097a74c3ca57b6f5f6725785b2565a93bb37143e755c566a71682009675067a1b65379",
        change: "a comment's reference to RESULT_URL.md only (commit 8774a85)",
        difference: "",
    },
];

/// Brings every migration recorded with one of its [`EARLIER_TEXTS`] up to the text on main:
/// its difference and the current checksum, in one transaction each. Anything else that
/// differs is left for sqlx to refuse.
async fn bring_earlier_texts_up_to_date(conn: &mut PgConnection) -> Result<(), StoreError> {
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select version, checksum from {MIGRATIONS_TABLE} where success"
    )))
    .fetch_all(&mut *conn)
    .await?;
    for (version, checksum) in applied {
        let earlier = EARLIER_TEXTS
            .iter()
            .find(|e| e.version == version && e.checksum == hex::encode(&checksum));
        let current = MIGRATOR.iter().find(|m| m.version == version);
        let (Some(earlier), Some(current)) = (earlier, current) else {
            continue;
        };
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if !earlier.difference.is_empty() {
            sqlx::query(earlier.difference).execute(&mut *tx).await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "update {MIGRATIONS_TABLE} set checksum = $1 where version = $2 and checksum = $3"
        )))
        .bind(&current.checksum[..])
        .bind(version)
        .bind(&checksum)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(
            migration = version,
            "this database applied an earlier text of migration {version}; brought it up to \
             the text on main ({})",
            earlier.change
        );
    }
    Ok(())
}

/// Applies pending migrations. Safe to run from several instances at once: they are
/// serialised with an advisory lock.
///
/// Refuses a server older than [`OLDEST_SERVER`] in one line, before anything changes. A
/// migration recorded with one of its [`EARLIER_TEXTS`] is brought up to its text on main
/// first; one recorded with any other text is refused by sqlx ([`StoreError::Migrate`] says
/// what to do).
///
/// Needs a role that may create schema `recon` in this database (or already owns it), nothing
/// more: the record of applied migrations lives in [`MIGRATIONS_TABLE`]. A database migrated
/// by an earlier version, which kept that record in `public._sqlx_migrations`, has its rows
/// copied over first (the old table is left alone: it may be another application's too).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query!("select pg_advisory_lock(hashtext('freedompay-recon migrations'))")
        .fetch_one(&mut *conn)
        .await?;
    let prepared = match refuse_an_older_server(&mut conn).await {
        Ok(()) => prepare_migrations_table(&mut conn).await,
        Err(e) => Err(e),
    };
    let prepared = match prepared {
        Ok(()) => bring_earlier_texts_up_to_date(&mut conn).await,
        Err(e) => Err(e),
    };
    let migrated = match prepared {
        Ok(()) => migrator().run(&mut *conn).await.map_err(StoreError::from),
        Err(e) => Err(e),
    };
    // The monthly partitions ahead, on every `migrate` (the daemon keeps them too), and the
    // summary rollup in the database's reporting zone when that changed.
    let migrated = match migrated {
        Ok(()) => match maintenance::ensure_partitions(&mut *conn).await {
            Ok(_) => maintenance::rebuild_summary_if_zone_changed(&mut *conn)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    sqlx::query!("select pg_advisory_unlock(hashtext('freedompay-recon migrations'))")
        .fetch_one(&mut *conn)
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
    // [`migrate`] holds its own advisory lock around the run. sqlx's lock would stay held by a
    // pooled connection after a failed migration (it is not released on error), and the next
    // `migrate` in the same process would wait for it forever.
    migrator.set_locking(false);
    migrator
}

/// Creates schema `recon` when it is missing (not otherwise: `create schema if not exists`
/// needs the database's CREATE privilege even when the schema exists) and the migrations
/// record inside it, copying rows from a record kept in `public` by an earlier version.
async fn prepare_migrations_table(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    let schema_exists =
        sqlx::query_scalar!(r#"select to_regnamespace('recon') is not null as "exists!""#)
            .fetch_one(&mut *conn)
            .await?;
    if !schema_exists {
        sqlx::query("create schema recon")
            .execute(&mut *conn)
            .await?;
    }
    let tables = sqlx::query!(
        r#"select to_regclass('recon._sqlx_migrations') is not null as "ours!",
                  to_regclass('public._sqlx_migrations') is not null as "legacy!""#
    )
    .fetch_one(&mut *conn)
    .await?;
    let (ours, legacy) = (tables.ours, tables.legacy);
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

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha384};

    use super::*;

    /// `migrations/checksums.txt`: `(version, checksum, file)` per line.
    fn pinned() -> Vec<(i64, String, String)> {
        include_str!("../../migrations/checksums.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let [version, checksum, file] = parts[..] else {
                    panic!("checksums.txt: not `version checksum file`: {line}");
                };
                (
                    version.parse().unwrap(),
                    checksum.to_owned(),
                    file.to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn every_migration_is_pinned_and_no_landed_one_changed_or_went() {
        let pinned = pinned();
        for migration in MIGRATOR.iter() {
            let checksum = hex::encode(&migration.checksum);
            let file = format!(
                "{}_{}.sql",
                migration.version,
                migration.description.replace(' ', "_")
            );
            match pinned.iter().find(|(v, _, _)| *v == migration.version) {
                None => panic!(
                    "migration {} is not pinned: once it is final, add this line to \
                     migrations/checksums.txt:\n{} {checksum} {file}",
                    migration.version, migration.version
                ),
                Some((_, pin, _)) => assert_eq!(
                    pin, &checksum,
                    "migration {file} differs from the text that landed: a landed migration \
                     never changes; undo the edit and write a new migration \
                     (migrations/README.md)"
                ),
            }
        }
        for (version, _, file) in &pinned {
            assert!(
                MIGRATOR.iter().any(|m| m.version == *version),
                "the landed migration {file} is gone; a landed migration is never removed"
            );
        }
    }

    /// Each earlier text is the text on main without its recorded difference: taking the
    /// difference out again gives exactly the checksum a database recorded.
    #[test]
    fn the_earlier_texts_are_the_current_ones_without_their_difference() {
        let rollup = include_str!("../../migrations/20261204000012_summary_rollup.sql");
        let added = "\n-- The exception queue's ages (`report`'s age line, /metrics' oldest open flag): read from\n-- the index alone, whatever the partitions hold besides (bench --year: 23,000 open flags over\n-- a year of partitions took most of a day's 150 ms report).\ncreate index discrepancies_open_age_idx on recon.discrepancies (kind, detected_at)\n    where resolved_at is null;\n";
        assert!(rollup.ends_with(added));
        let callbacks = include_str!("../../migrations/20261204000014_result_callbacks.sql");
        let earlier = [
            (
                20261204000012,
                rollup[..rollup.len() - added.len()].to_owned(),
            ),
            (
                20261204000014,
                callbacks.replacen(
                    "(issue 18; docs/provider/RESULT_URL.md)",
                    "(issue 18; ../shared/provider/RESULT_URL.md)",
                    1,
                ),
            ),
        ];
        // sqlx's checksum is SHA-384 of the file: the same function over the text on main
        // gives what MIGRATOR recorded.
        let sha384 = |text: &str| hex::encode(Sha384::digest(text.as_bytes()));
        let recorded = |version| {
            hex::encode(
                &MIGRATOR
                    .iter()
                    .find(|m| m.version == version)
                    .unwrap()
                    .checksum,
            )
        };
        assert_eq!(sha384(rollup), recorded(20261204000012));
        assert_eq!(sha384(callbacks), recorded(20261204000014));
        for (version, text) in earlier {
            let known = EARLIER_TEXTS.iter().find(|e| e.version == version).unwrap();
            assert_eq!(sha384(&text), known.checksum, "migration {version}");
        }
        assert_eq!(EARLIER_TEXTS.len(), 2);
    }

    #[test]
    fn a_server_older_than_fifteen_is_refused_in_one_line() {
        assert!(server_is_new_enough("150019", "15.19").is_ok());
        assert!(server_is_new_enough("170002", "17.2").is_ok());
        let e = server_is_new_enough("140010", "14.10 (Debian)")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PostgreSQL 14.10 (Debian)") && e.contains("15 or newer"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(server_is_new_enough("", "?").is_err());
    }
}
