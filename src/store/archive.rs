//! SQL behind `archive`: one closed month of history read in one snapshot (what decides
//! whether it may be archived, and each table's rows as PostgreSQL's own CSV), and the
//! month's partitions detached, re-checked under the locks the detach takes.
//!
//! Partition names are never taken from input: they are built from the table names below and
//! a [`Month`] whose year and month are numbers, so the dynamic statements here hold no text
//! anyone typed.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::StoreError;

/// A calendar month in UTC, the unit history is partitioned by (`--month YYYY-MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    /// The first day of the month.
    first: NaiveDate,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        (1000..=9999)
            .contains(&year)
            .then(|| NaiveDate::from_ymd_opt(year, month, 1))
            .flatten()
            .map(|first| Self { first })
    }

    /// The month's first instant (inclusive), UTC.
    pub fn start(&self) -> DateTime<Utc> {
        self.first.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The next month's first instant (exclusive), UTC.
    pub fn end(&self) -> DateTime<Utc> {
        self.next().start()
    }

    fn next(&self) -> Self {
        let first = self
            .first
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDate::MAX);
        Self { first }
    }

    /// The partition of `table` that holds this month, as `recon.ensure_partitions` names it
    /// (`status_transitions_2026_10`).
    pub fn partition(&self, table: &HistoryTable) -> String {
        format!(
            "{}_{:04}_{:02}",
            table.name,
            self.first.year(),
            self.first.month()
        )
    }

    /// A bound as a timestamptz literal with its offset, so it means the same instant
    /// whatever the session's time zone (`'2026-10-01 00:00:00+00'`).
    pub fn literal(at: DateTime<Utc>) -> String {
        format!("'{}'", at.format("%Y-%m-%d %H:%M:%S+00"))
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.first.year(), self.first.month())
    }
}

/// `YYYY-MM`, exactly: four digits, a hyphen, two digits, a month from 01 to 12.
impl FromStr for Month {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{}: write the month as YYYY-MM, e.g. 2026-10",
                crate::text::excerpt(s)
            )
        };
        let b = s.as_bytes();
        let shaped = b.len() == 7
            && b[4] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || c.is_ascii_digit());
        if !shaped {
            return Err(bad());
        }
        let year = s[..4].parse().map_err(|_| bad())?;
        let month = s[5..].parse().map_err(|_| bad())?;
        Self::new(year, month).ok_or_else(bad)
    }
}

/// One partitioned history table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryTable {
    /// In schema `recon`.
    pub name: &'static str,
    /// What its rows are, for people (plural).
    pub what: &'static str,
    /// The partition key.
    pub time_column: &'static str,
    /// The archive's row order: the table's key, so two archives of the same rows are the
    /// same bytes.
    pub order_by: &'static str,
}

/// The history tables partitioned by month, in the order they are archived and detached.
pub const HISTORY: [HistoryTable; 3] = [
    HistoryTable {
        name: "status_transitions",
        what: "transitions",
        time_column: "observed_at",
        order_by: "payment_id, observation_no",
    },
    HistoryTable {
        name: "discrepancies",
        what: "flags",
        time_column: "detected_at",
        order_by: "id",
    },
    HistoryTable {
        name: "events",
        what: "events",
        time_column: "created_at",
        order_by: "id",
    },
];

/// One column of a history table, as the archive's manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// PostgreSQL's name for its type (`timestamp with time zone`, `json`).
    pub type_name: String,
}

/// What decides whether a month may be archived and detached, read in the export's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthState {
    /// The database's clock.
    pub now: DateTime<Utc>,
    /// The last migration applied (`recon.schema_version()`).
    pub schema_version: i64,
    /// Rows of the month per table, in [`HISTORY`] order (partition and DEFAULT partition).
    pub rows: [i64; 3],
    /// Of those, rows still in the table's DEFAULT partition (not moved out yet).
    pub waiting_in_default: [i64; 3],
    /// Flags detected in the month and still open, of class `action`.
    pub open_action_flags: i64,
    /// Flags detected in the month and still open, of any class.
    pub open_flags: i64,
    /// Events created in the month and not delivered, skipped or abandoned.
    pub undelivered_events: i64,
    /// The month's tables that exist but are no partition of their table: detached before.
    pub detached_already: Vec<String>,
}

/// A month's rows could not be copied out.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Write(std::io::Error),
}

/// A read-only REPEATABLE READ transaction: the month's state and all three tables are read
/// as of one instant, so the manifest's counts and the CSVs agree, and a flag resolved or an
/// event delivered meanwhile is either in all of them or in none.
pub struct MonthSnapshot {
    tx: Transaction<'static, Postgres>,
    month: Month,
}

impl MonthSnapshot {
    pub async fn begin(pool: &PgPool, month: Month) -> Result<Self, StoreError> {
        let mut tx = pool
            .begin_with("begin isolation level repeatable read, read only")
            .await?;
        // Timestamps print in ISO form in UTC, whoever runs the command from where.
        sqlx::raw_sql("set local timezone = 'UTC'; set local datestyle = 'ISO, YMD'")
            .execute(&mut *tx)
            .await?;
        Ok(Self { tx, month })
    }

    pub fn month(&self) -> Month {
        self.month
    }

    pub async fn state(&mut self) -> Result<MonthState, StoreError> {
        let (from, to) = (self.month.start(), self.month.end());
        let s = sqlx::query!(
            r#"select now() as "now!",
                      recon.schema_version() as "schema_version!",
                      (select count(*) from recon.status_transitions
                       where observed_at >= $1 and observed_at < $2) as "transitions!",
                      (select count(*) from recon.discrepancies
                       where detected_at >= $1 and detected_at < $2) as "flags!",
                      (select count(*) from recon.events
                       where created_at >= $1 and created_at < $2) as "events!",
                      (select count(*) from recon.status_transitions_default
                       where observed_at >= $1 and observed_at < $2) as "transitions_waiting!",
                      (select count(*) from recon.discrepancies_default
                       where detected_at >= $1 and detected_at < $2) as "flags_waiting!",
                      (select count(*) from recon.events_default
                       where created_at >= $1 and created_at < $2) as "events_waiting!",
                      (select count(*) from recon.discrepancies d
                       join recon.flag_kinds k using (kind)
                       where d.detected_at >= $1 and d.detected_at < $2
                         and d.resolved_at is null and k.class = 'action') as "open_action_flags!",
                      (select count(*) from recon.discrepancies
                       where detected_at >= $1 and detected_at < $2
                         and resolved_at is null) as "open_flags!",
                      (select count(*) from recon.events
                       where created_at >= $1 and created_at < $2
                         and delivered_at is null and abandoned_at is null
                         and skipped_at is null) as "undelivered_events!""#,
            from,
            to,
        )
        .fetch_one(&mut *self.tx)
        .await?;
        let names: Vec<String> = HISTORY.iter().map(|t| self.month.partition(t)).collect();
        let detached_already = sqlx::query_scalar!(
            r#"select c.relname::text as "name!"
               from pg_class c
               join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'recon' and c.relname = any($1::text[])
                 and not exists (select 1 from pg_inherits i where i.inhrelid = c.oid)
               order by 1"#,
            &names,
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(MonthState {
            now: s.now,
            schema_version: s.schema_version,
            rows: [s.transitions, s.flags, s.events],
            waiting_in_default: [s.transitions_waiting, s.flags_waiting, s.events_waiting],
            open_action_flags: s.open_action_flags,
            open_flags: s.open_flags,
            undelivered_events: s.undelivered_events,
            detached_already,
        })
    }

    /// The columns of `table`, in order: every one, whatever migrations added.
    pub async fn columns(&mut self, table: &HistoryTable) -> Result<Vec<Column>, StoreError> {
        let rows = sqlx::query!(
            r#"select a.attname::text as "name!",
                      format_type(a.atttypid, a.atttypmod) as "type_name!"
               from pg_attribute a
               where a.attrelid = $1::text::regclass and a.attnum > 0 and not a.attisdropped
               order by a.attnum"#,
            format!("recon.{}", table.name),
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Column {
                name: r.name,
                type_name: r.type_name,
            })
            .collect())
    }

    /// Writes the month's rows of `table` to `out` as PostgreSQL's own CSV (`COPY … (format
    /// csv, header)`), as the server streams them: every column as PostgreSQL prints it
    /// (numeric exact, json as stored, timestamps ISO in UTC), a NULL as an empty unquoted
    /// field and empty text as `""`. Read from the parent table, so rows still in the DEFAULT
    /// partition are included.
    pub async fn copy_csv(
        &mut self,
        table: &HistoryTable,
        out: &mut impl std::io::Write,
    ) -> Result<(), CopyError> {
        use futures_util::TryStreamExt as _;
        // COPY takes no parameters: the bounds are literals made from the month's numbers.
        let statement = format!(
            "copy (select * from recon.{name} where {key} >= {from} and {key} < {to} \
             order by {order}) to stdout with (format csv, header true)",
            name = table.name,
            key = table.time_column,
            from = Month::literal(self.month.start()),
            to = Month::literal(self.month.end()),
            order = table.order_by,
        );
        let mut stream = self
            .tx
            .copy_out_raw(&statement)
            .await
            .map_err(StoreError::from)?;
        while let Some(chunk) = stream.try_next().await.map_err(StoreError::from)? {
            out.write_all(&chunk).map_err(CopyError::Write)?;
        }
        Ok(())
    }

    /// Ends the read-only transaction.
    pub async fn close(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}

/// How long the detach waits for its locks before giving up (it takes ACCESS EXCLUSIVE on the
/// three tables, and everyone reading or writing history queues behind a waiting request).
pub const DETACH_LOCK_WAIT: &str = "5s";

/// A partition `detach` detached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    pub table: HistoryTable,
    /// `status_transitions_2026_10`, in schema `recon`.
    pub partition: String,
    pub rows: i64,
}

impl Detached {
    /// The trigger that keeps a detached partition append-only: detaching drops the row
    /// triggers a partition had from its table, the append-only ones included.
    pub fn frozen_trigger(&self) -> String {
        format!("{}_frozen", self.partition)
    }
}

/// Why `detach` detached nothing.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the history tables are busy (their locks were not granted within {DETACH_LOCK_WAIT})")]
    Busy,
    #[error(
        "{rows} rows of recon.{table} for this month still wait in recon.{table}_default; run \
         `freedompay-recon migrate` (or wait for the daemon's hourly maintenance), which moves \
         them into the month's partition"
    )]
    WaitingInDefault { table: &'static str, rows: i64 },
    #[error(
        "recon.{table} holds {now} rows of this month and the archive {archived}: rows came \
         or went since it was read"
    )]
    Changed {
        table: &'static str,
        archived: i64,
        now: i64,
    },
    #[error(
        "the month holds {0} open flags: recon.open_flags would point at flags no longer in \
         recon.discrepancies, and nobody could resolve them; resolve them first"
    )]
    OpenFlags(i64),
    #[error(
        "the month holds {0} events the webhook has not delivered, skipped or abandoned yet; \
         detach it once they are (webhook.max_age at most)"
    )]
    Undelivered(i64),
}

/// Detaches the month's partitions of the three history tables (those that exist), in one
/// transaction, then checks under the locks DETACH took (ACCESS EXCLUSIVE on each table, its
/// month partition and its DEFAULT partition, held to the commit, so nothing can change in
/// between) that they hold exactly the `archived` row counts, none waits in a DEFAULT
/// partition, no flag is open and, when `only_finished` (a webhook is configured, as for
/// event retention), every event was delivered, skipped or abandoned. Any difference rolls it
/// all back: nothing is detached.
///
/// Transitions are never changed and a flag or event changes only while open or undelivered,
/// which the archive was refused with: so equal counts mean equal rows.
///
/// Each detached partition gets a `before update or delete` trigger refusing any change
/// ([`Detached::frozen_trigger`]); the `before truncate` one it had stays.
pub async fn detach(
    pool: &PgPool,
    month: Month,
    archived: [i64; 3],
    only_finished: bool,
) -> Result<Vec<Detached>, DetachError> {
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let result = detach_in(&mut tx, month, archived, only_finished).await;
    match result {
        Ok(detached) => {
            tx.commit().await.map_err(StoreError::from)?;
            Ok(detached)
        }
        Err(e) => {
            tx.rollback().await.ok();
            Err(e)
        }
    }
}

async fn detach_in(
    conn: &mut PgConnection,
    month: Month,
    archived: [i64; 3],
    only_finished: bool,
) -> Result<Vec<Detached>, DetachError> {
    let busy = |e: sqlx::Error| match e.as_database_error().and_then(|d| d.code()) {
        // lock_not_available
        Some(code) if code == "55P03" => DetachError::Busy,
        _ => DetachError::Store(e.into()),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "set local lock_timeout = '{DETACH_LOCK_WAIT}'"
    )))
    .execute(&mut *conn)
    .await
    .map_err(busy)?;
    let mut detached = Vec::new();
    for (i, table) in HISTORY.iter().enumerate() {
        let partition = month.partition(table);
        let attached = sqlx::query_scalar!(
            r#"select exists (select 1 from pg_inherits
                              where inhparent = $1::text::regclass
                                and inhrelid = to_regclass($2)) as "attached!""#,
            format!("recon.{}", table.name),
            format!("recon.{partition}"),
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(busy)?;
        if attached {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "alter table recon.{} detach partition recon.{partition}",
                table.name
            )))
            .execute(&mut *conn)
            .await
            .map_err(busy)?;
        }
        // The DEFAULT partition is locked too now (DETACH locks it), or, with no partition
        // to detach, read under this lock.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "lock table recon.{}_default in share mode",
            table.name
        )))
        .execute(&mut *conn)
        .await
        .map_err(busy)?;
        let waiting: i64 = count(
            conn,
            &format!(
                "select count(*) from recon.{name}_default where {key} >= {from} and {key} < {to}",
                name = table.name,
                key = table.time_column,
                from = Month::literal(month.start()),
                to = Month::literal(month.end()),
            ),
        )
        .await?;
        if waiting > 0 {
            return Err(DetachError::WaitingInDefault {
                table: table.name,
                rows: waiting,
            });
        }
        let rows = if attached {
            count(conn, &format!("select count(*) from recon.{partition}")).await?
        } else {
            0
        };
        if rows != archived[i] {
            return Err(DetachError::Changed {
                table: table.name,
                archived: archived[i],
                now: rows,
            });
        }
        if attached {
            detached.push(Detached {
                table: *table,
                partition,
                rows,
            });
        }
    }
    for d in &detached {
        let condition = match d.table.name {
            "discrepancies" => "resolved_at is null",
            "events" if only_finished => {
                "delivered_at is null and abandoned_at is null and skipped_at is null"
            }
            _ => continue,
        };
        let n = count(
            conn,
            &format!(
                "select count(*) from recon.{} where {condition}",
                d.partition
            ),
        )
        .await?;
        if n > 0 {
            return Err(match d.table.name {
                "discrepancies" => DetachError::OpenFlags(n),
                _ => DetachError::Undelivered(n),
            });
        }
    }
    for d in &detached {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "create trigger {trigger} before update or delete on recon.{partition} \
             for each row execute function recon.refuse_changing_history()",
            trigger = d.frozen_trigger(),
            partition = d.partition,
        )))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from)?;
    }
    Ok(detached)
}

/// A `select count(*)` built here from constants and a month.
async fn count(conn: &mut PgConnection, sql: &str) -> Result<i64, DetachError> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .map_err(StoreError::from)?)
}

/// The statements that drop detached partitions for good (one statement).
pub fn drop_statement(detached: &[Detached]) -> String {
    let names: Vec<String> = detached
        .iter()
        .map(|d| format!("recon.{}", d.partition))
        .collect();
    format!("drop table {};", names.join(", "))
}

/// The statements that put detached partitions back, as they were: the freezing trigger
/// goes (the table's own triggers come back with the partition), then the partition is
/// attached for its month's bounds.
pub fn reattach_statements(month: Month, detached: &[Detached]) -> Vec<String> {
    detached
        .iter()
        .flat_map(|d| {
            [
                format!(
                    "drop trigger {} on recon.{};",
                    d.frozen_trigger(),
                    d.partition
                ),
                format!(
                    "alter table recon.{} attach partition recon.{} for values from ({}) to ({});",
                    d.table.name,
                    d.partition,
                    Month::literal(month.start()),
                    Month::literal(month.end()),
                ),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_yyyy_mm_exactly() {
        let m: Month = "2026-10".parse().unwrap();
        assert_eq!(m.to_string(), "2026-10");
        assert_eq!(m.partition(&HISTORY[0]), "status_transitions_2026_10");
        assert_eq!(m.start().to_rfc3339(), "2026-10-01T00:00:00+00:00");
        assert_eq!(
            "2026-12".parse::<Month>().unwrap().end().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(Month::literal(m.end()), "'2026-11-01 00:00:00+00'");
        for bad in [
            "2026-1",
            "2026-13",
            "2026-00",
            "26-10",
            "2026/10",
            "2026-10-01",
            "+026-10",
            "２026-10",
            "",
            "0999-01",
        ] {
            let e = bad.parse::<Month>().unwrap_err();
            assert!(e.contains("YYYY-MM"), "{bad}: {e}");
        }
    }
}
