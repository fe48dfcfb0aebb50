//! Maintenance of the partitioned history (migration `partitioned_history`): monthly
//! partitions created ahead of time, and event retention by dropping whole partitions; and of
//! the summary's rollup (migration `summary_rollup`). All
//! are SQL functions in the schema (owned by the migrating role, so the daemon's role needs
//! only EXECUTE); these wrappers call them.

use std::time::Duration;

use sqlx::PgPool;

use super::{StoreError, millis};

/// How far ahead monthly partitions are created: inserts never wait for maintenance, even
/// when it is down for weeks (a row whose month has no partition yet lands in the DEFAULT
/// partition and is moved out by the next run).
pub const PARTITIONS_AHEAD_MONTHS: i32 = 3;

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceOutcome {
    /// Monthly partitions created (months ahead, and months of rows found in a DEFAULT
    /// partition, which are moved into them).
    pub partitions_created: i32,
    /// Event partitions dropped by retention, by name (`events_YYYY_MM`).
    pub event_partitions_dropped: Vec<String>,
    /// The summary rollup was rebuilt: the database's reporting zone (`recon.timezone`) is
    /// not the one it counted days in.
    pub summary_rebuilt: bool,
}

/// Creates the missing monthly partitions of the history tables, up to
/// [`PARTITIONS_AHEAD_MONTHS`] ahead, moving rows out of the DEFAULT partitions. Idempotent;
/// concurrent callers wait for each other. Returns how many partitions it created.
pub async fn ensure_partitions(conn: impl sqlx::PgExecutor<'_>) -> Result<i32, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select recon.ensure_partitions(make_interval(months => $1::int4)) as "created!""#,
        PARTITIONS_AHEAD_MONTHS,
    )
    .fetch_one(conn)
    .await?)
}

/// Event retention: drops the monthly event partitions whose whole month ended more than
/// `retention` ago and, when `only_finished` (a webhook is configured), whose every event
/// was delivered, skipped or abandoned. Never deletes a row. Returns the partitions dropped.
pub async fn drop_expired_events(
    pool: &PgPool,
    retention: Duration,
    only_finished: bool,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select recon.drop_expired_event_partitions(
                      $1::int8 * interval '1 millisecond', $2) as "dropped!""#,
        millis(retention),
        only_finished,
    )
    .fetch_all(pool)
    .await?)
}

/// Folds the summary's pending changes into its rollup (migration `summary_rollup`): what
/// readers see does not change, they only read fewer rows. One caller at a time; another
/// returns at once. Returns how many changes were folded.
pub async fn fold_summary(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"select recon.fold_summary_changes() as "folded!""#)
            .fetch_one(pool)
            .await?,
    )
}

/// Rebuilds the summary rollup when this session's reporting zone (the database's
/// `recon.timezone`) is not the one it counts days in. Holds writers of payments back while
/// it runs; nothing to do (a catalog read) otherwise. Returns whether it rebuilt.
pub async fn rebuild_summary_if_zone_changed(
    conn: impl sqlx::PgExecutor<'_>,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"select recon.rebuild_summary_if_zone_changed() as "rebuilt!""#)
            .fetch_one(conn)
            .await?,
    )
}

/// One maintenance run: partitions ahead first (so nothing waits in a DEFAULT partition),
/// then retention, then the summary rollup's zone.
pub async fn maintain(
    pool: &PgPool,
    retention: Duration,
    only_finished: bool,
) -> Result<MaintenanceOutcome, StoreError> {
    let partitions_created = ensure_partitions(pool).await?;
    let event_partitions_dropped = drop_expired_events(pool, retention, only_finished).await?;
    let summary_rebuilt = rebuild_summary_if_zone_changed(pool).await?;
    Ok(MaintenanceOutcome {
        partitions_created,
        event_partitions_dropped,
        summary_rebuilt,
    })
}
