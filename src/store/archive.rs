//! SQL behind `archive`: one reporting month of history read in one snapshot (what decides
//! whether it may be archived, and each table's rows as PostgreSQL's own CSV), the archive
//! recorded in `recon.archives`, and the monthly partitions every row of which is in
//! recorded archives detached, re-checked under the tables' locks.
//!
//! Two kinds of month meet here. `--month` is a reporting month: its days are calendar days
//! in `recon.timezone` (Asia/Almaty by default), as every report's are, so its rows are those
//! with `recon.day_start(first day) <= time < recon.day_start(next month's first day)`. The
//! history tables are partitioned by UTC month, so a reporting month in another zone spans
//! two partitions, and a partition holds the ends of two reporting months: it can be
//! detached only once both are archived (see [`detach`]).
//!
//! Partition names are never taken from input: they are built from the table names below and
//! a [`Month`] whose year and month are numbers, so the dynamic statements here hold no text
//! anyone typed.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike as _, FixedOffset, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::StoreError;

/// A calendar month (`--month YYYY-MM`): a reporting month, whose instants the database
/// gives in `recon.timezone` ([`MonthSnapshot::begin`]), or the UTC month a history partition
/// holds ([`Month::start`], [`Month::end`]).
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

    /// The UTC month holding `at`.
    pub fn of_utc(at: DateTime<Utc>) -> Self {
        Self {
            first: at
                .date_naive()
                .with_day(1)
                .expect("every month has a first day"),
        }
    }

    /// The month's first day.
    pub fn first_day(&self) -> NaiveDate {
        self.first
    }

    /// As a UTC month: its first instant (inclusive).
    pub fn start(&self) -> DateTime<Utc> {
        self.first.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// As a UTC month: the next month's first instant (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.next().start()
    }

    /// The UTC months (partitions) that hold some instant of `[from, to)`, in order.
    pub fn utc_months_overlapping(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Self> {
        let mut months = Vec::new();
        let mut month = Self::of_utc(from);
        while month.start() < to {
            months.push(month);
            let next = month.next();
            if next == month {
                break;
            }
            month = next;
        }
        months
    }

    pub fn next(&self) -> Self {
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
    /// whatever the session's time zone (`'2026-10-01 00:00:00+00'`; microseconds when it
    /// has them).
    pub fn literal(at: DateTime<Utc>) -> String {
        format!("'{}'", at.format("%Y-%m-%d %H:%M:%S%.f+00"))
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

/// The instants a reporting month covers, in the zone it was read in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// `recon.timezone` when it was read.
    pub zone: String,
    /// The month's first instant (inclusive) and the next month's (exclusive), in `zone`
    /// with its offset at each.
    pub from: DateTime<FixedOffset>,
    pub to: DateTime<FixedOffset>,
}

impl Bounds {
    pub fn from_utc(&self) -> DateTime<Utc> {
        self.from.with_timezone(&Utc)
    }

    pub fn to_utc(&self) -> DateTime<Utc> {
        self.to.with_timezone(&Utc)
    }

    /// The UTC months whose partitions hold rows of this reporting month.
    pub fn partition_months(&self) -> Vec<Month> {
        Month::utc_months_overlapping(self.from_utc(), self.to_utc())
    }
}

/// What decides whether a month may be archived and detached, read in the export's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthState {
    /// The database's clock.
    pub now: DateTime<Utc>,
    /// The last migration applied (`recon.schema_version()`).
    pub schema_version: i64,
    /// Rows of the month per table, in [`HISTORY`] order (partitions and DEFAULT partition).
    pub rows: [i64; 3],
    /// Of those, rows in each monthly (UTC) partition, by its name; rows still in a DEFAULT
    /// partition are under the partition they belong in.
    pub partition_rows: Vec<(String, i64)>,
    /// Of those, rows still in the table's DEFAULT partition (not moved out yet).
    pub waiting_in_default: [i64; 3],
    /// Flags detected in the month and still open, of class `action`.
    pub open_action_flags: i64,
    /// Flags detected in the month and still open, of any class.
    pub open_flags: i64,
    /// Events created in the month and not delivered, skipped or abandoned.
    pub undelivered_events: i64,
    /// The month's partitions that exist but are no partition of their table (detached
    /// before, with this month's archive or the one beside it) and hold rows of this month.
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
    bounds: Bounds,
}

impl MonthSnapshot {
    /// Begins the snapshot and reads the reporting month's bounds in `recon.timezone`.
    pub async fn begin(pool: &PgPool, month: Month) -> Result<Self, StoreError> {
        let mut tx = pool
            .begin_with("begin isolation level repeatable read, read only")
            .await?;
        // Timestamps print in ISO form in UTC, whoever runs the command from where.
        sqlx::raw_sql("set local timezone = 'UTC'; set local datestyle = 'ISO, YMD'")
            .execute(&mut *tx)
            .await?;
        let b = sqlx::query!(
            r#"select recon.report_zone() as "zone!", f as "from!", t as "to!",
                      extract(epoch from (f at time zone recon.report_zone())
                                         - (f at time zone 'UTC'))::int as "from_offset!",
                      extract(epoch from (t at time zone recon.report_zone())
                                         - (t at time zone 'UTC'))::int as "to_offset!"
               from (select recon.day_start($1) as f, recon.day_start($2) as t) b"#,
            month.first_day(),
            month.next().first_day(),
        )
        .fetch_one(&mut *tx)
        .await?;
        let local = |at: DateTime<Utc>, seconds: i32| {
            let offset = FixedOffset::east_opt(seconds)
                .unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"));
            at.with_timezone(&offset)
        };
        let bounds = Bounds {
            zone: b.zone,
            from: local(b.from, b.from_offset),
            to: local(b.to, b.to_offset),
        };
        Ok(Self { tx, month, bounds })
    }

    pub fn month(&self) -> Month {
        self.month
    }

    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    pub async fn state(&mut self) -> Result<MonthState, StoreError> {
        let (from, to) = (self.bounds.from_utc(), self.bounds.to_utc());
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
        // Each partition's share of the month, read through the table (so rows waiting in
        // its DEFAULT partition count where they belong): what --detach checks later.
        let mut partition_rows = Vec::new();
        let mut names = Vec::new();
        for utc in self.bounds.partition_months() {
            let (piece_from, piece_to) = (from.max(utc.start()), to.min(utc.end()));
            for table in &HISTORY {
                let rows =
                    count_between(&mut self.tx, table.name, table, piece_from, piece_to).await?;
                partition_rows.push((utc.partition(table), rows));
                names.push((utc.partition(table), table, piece_from, piece_to));
            }
        }
        let partitions: Vec<String> = names.iter().map(|(name, ..)| name.clone()).collect();
        let detached = sqlx::query_scalar!(
            r#"select c.relname::text as "name!"
               from pg_class c
               join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'recon' and c.relname = any($1::text[])
                 and not exists (select 1 from pg_inherits i where i.inhrelid = c.oid)
               order by 1"#,
            &partitions,
        )
        .fetch_all(&mut *self.tx)
        .await?;
        // A partition detached with the neighbouring month's archive may hold none of this
        // month's rows (its share was empty then): only one that does keeps rows out of reach.
        let mut detached_already = Vec::new();
        for (name, table, piece_from, piece_to) in &names {
            if detached.contains(name)
                && count_between(&mut self.tx, name, table, *piece_from, *piece_to).await? > 0
            {
                detached_already.push(name.clone());
            }
        }
        Ok(MonthState {
            now: s.now,
            schema_version: s.schema_version,
            rows: [s.transitions, s.flags, s.events],
            partition_rows,
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
        // COPY takes no parameters: the bounds are literals made from the month's instants.
        let statement = format!(
            "copy (select * from recon.{name} where {key} >= {from} and {key} < {to} \
             order by {order}) to stdout with (format csv, header true)",
            name = table.name,
            key = table.time_column,
            from = Month::literal(self.bounds.from_utc()),
            to = Month::literal(self.bounds.to_utc()),
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

/// Rows of `relation` (in schema `recon`: a history table, or one of its partitions) whose
/// time column is within `[from, to)`. Built from constants and instants.
async fn count_between(
    conn: &mut PgConnection,
    relation: &str,
    table: &HistoryTable,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from recon.{relation} where {key} >= {from} and {key} < {to}",
        key = table.time_column,
        from = Month::literal(from),
        to = Month::literal(to),
    )))
    .fetch_one(conn)
    .await
}

/// Records an archive written to `file` (as given to `--to`) in `recon.archives`, with what
/// `--detach` counts on later: its bounds, its rows per partition and whether they can still
/// change (`rows_final`: no open flag, and, when a webhook is configured, no event still
/// owed). Returns its id.
pub async fn record(
    pool: &PgPool,
    month: Month,
    bounds: &Bounds,
    state: &MonthState,
    file: &str,
    manifest: serde_json::Value,
    rows_final: bool,
) -> Result<i64, StoreError> {
    let partition_rows: serde_json::Map<String, serde_json::Value> = state
        .partition_rows
        .iter()
        .map(|(name, rows)| (name.clone(), serde_json::Value::from(*rows)))
        .collect();
    Ok(sqlx::query_scalar!(
        "insert into recon.archives
             (month, zone, from_at, to_at, file, manifest, partition_rows, rows_final)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         returning id",
        month.to_string(),
        bounds.zone,
        bounds.from_utc(),
        bounds.to_utc(),
        file,
        manifest,
        serde_json::Value::Object(partition_rows),
        rows_final,
    )
    .fetch_one(pool)
    .await?)
}

/// How long the detach waits for its locks before giving up (it takes ACCESS EXCLUSIVE on the
/// three tables, and everyone reading or writing history queues behind a waiting request).
pub const DETACH_LOCK_WAIT: &str = "5s";

/// A partition `detach` detached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    pub table: HistoryTable,
    /// The UTC month it held.
    pub month: Month,
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

/// The partitions of a UTC month `detach` left attached, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub month: Month,
    /// Its partitions that exist, `recon.…`.
    pub partitions: Vec<String>,
    pub why: KeptBecause,
}

/// Why a month's partitions stay attached: some of their rows are in no archive that can
/// stand for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptBecause {
    /// Rows in no archive whose rows are final (usually the neighbouring reporting month's,
    /// not archived yet): the first of them, in the reporting zone, and its reporting month.
    Unarchived {
        table: &'static str,
        rows: i64,
        first: String,
        reporting_month: String,
    },
    /// An archive recorded fewer (or more) rows of the partition than it holds now: rows came
    /// since it was written.
    Changed {
        table: &'static str,
        archive_id: i64,
        archive_month: String,
        recorded: i64,
        now: i64,
    },
    /// Open flags: `recon.open_flags` would point at flags no longer in the table.
    OpenFlags(i64),
    /// Events a configured webhook still owes.
    Undelivered(i64),
}

impl fmt::Display for KeptBecause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unarchived {
                table,
                rows,
                first,
                reporting_month,
            } => write!(
                f,
                "{rows} of recon.{table}'s rows in them, from {first} on, are in no archive yet; \
                 they belong to reporting month {reporting_month}: archiving it with --detach \
                 detaches these then"
            ),
            Self::Changed {
                table,
                archive_id,
                archive_month,
                recorded,
                now,
            } => write!(
                f,
                "they hold {now} rows of recon.{table} in the span of archive #{archive_id} \
                 ({archive_month}), which holds {recorded}: rows came since it was written; \
                 archive {archive_month} again"
            ),
            Self::OpenFlags(n) => write!(
                f,
                "they hold {n} open flags (recon.open_flags would point at flags no longer in \
                 recon.discrepancies); resolve them, then archive again"
            ),
            Self::Undelivered(n) => write!(
                f,
                "they hold {n} events the webhook has not delivered, skipped or abandoned yet \
                 (webhook.max_age at most)"
            ),
        }
    }
}

/// What `detach` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetachOutcome {
    pub detached: Vec<Detached>,
    pub kept: Vec<Kept>,
}

/// Why `detach` detached nothing.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the history tables are busy (their locks were not granted within {DETACH_LOCK_WAIT})")]
    Busy,
    #[error(
        "{rows} rows of recon.{table} for {month} (UTC) still wait in recon.{table}_default; \
         run `freedompay-recon migrate` (or wait for the daemon's hourly maintenance), which \
         moves them into the month's partition"
    )]
    WaitingInDefault {
        table: &'static str,
        month: Month,
        rows: i64,
    },
    #[error(
        "recon.{partition} holds {now} rows of this month and the archive {archived}: rows \
         came or went since it was read"
    )]
    Changed {
        partition: String,
        archived: i64,
        now: i64,
    },
}

/// Detaches, in one transaction, the monthly (UTC) partitions of the three history tables
/// that hold rows of archive `archive_id` (just recorded) and every row of which is in
/// recorded archives that can stand for them; the others stay attached, each month with why
/// ([`Kept`]).
///
/// The three tables are locked first (ACCESS EXCLUSIVE, held to the commit, waiting at most
/// [`DETACH_LOCK_WAIT`]), so nothing changes between the checks and the detach:
/// - every partition's share of this archive still holds the rows it archived, and no row of
///   those months waits in a DEFAULT partition, else nothing is detached (an error);
/// - a month's partitions are detached together, when each row of them is within an archive
///   recorded with `rows_final` (its flags closed and events finished when it was written:
///   such rows never change again), each such archive (the newest of its span) still counts
///   the rows it held there, no flag in them is open and, when `only_finished` (a webhook is
///   configured, as for event retention), every event was delivered, skipped or abandoned.
///
/// In the reporting zone UTC, a month's archive holds its partitions whole; in Almaty
/// (+05:00), a partition holds the last five hours of the reporting month before it too, so
/// it is detached with the second of the two archives.
///
/// Each detached partition gets a `before update or delete` trigger refusing any change
/// ([`Detached::frozen_trigger`]); the `before truncate` one it had stays.
pub async fn detach(
    pool: &PgPool,
    archive_id: i64,
    only_finished: bool,
) -> Result<DetachOutcome, DetachError> {
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let result = detach_in(&mut tx, archive_id, only_finished).await;
    match result {
        Ok(outcome) => {
            tx.commit().await.map_err(StoreError::from)?;
            Ok(outcome)
        }
        Err(e) => {
            tx.rollback().await.ok();
            Err(e)
        }
    }
}

async fn detach_in(
    conn: &mut PgConnection,
    archive_id: i64,
    only_finished: bool,
) -> Result<DetachOutcome, DetachError> {
    let busy = |e: sqlx::Error| match e.as_database_error().and_then(|d| d.code()) {
        // lock_not_available
        Some(code) if code == "55P03" => DetachError::Busy,
        _ => DetachError::Store(e.into()),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "set local lock_timeout = '{DETACH_LOCK_WAIT}'; \
         lock table only recon.status_transitions, recon.discrepancies, recon.events \
         in access exclusive mode"
    )))
    .execute(&mut *conn)
    .await
    .map_err(busy)?;
    let this = sqlx::query!(
        "select from_at, to_at, partition_rows from recon.archives where id = $1",
        archive_id
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(busy)?;
    let recorded = |rows: &serde_json::Value, partition: &str| {
        rows.get(partition)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
    };
    let mut outcome = DetachOutcome::default();
    for utc in Month::utc_months_overlapping(this.from_at, this.to_at) {
        let mut attached = Vec::new();
        for table in &HISTORY {
            let partition = utc.partition(table);
            let is_attached = sqlx::query_scalar!(
                r#"select exists (select 1 from pg_inherits
                                  where inhparent = $1::text::regclass
                                    and inhrelid = to_regclass($2)) as "attached!""#,
                format!("recon.{}", table.name),
                format!("recon.{partition}"),
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(busy)?;
            let default = format!("{}_default", table.name);
            let waiting = count_between(conn, &default, table, utc.start(), utc.end())
                .await
                .map_err(busy)?;
            if waiting > 0 {
                return Err(DetachError::WaitingInDefault {
                    table: table.name,
                    month: utc,
                    rows: waiting,
                });
            }
            let share = if is_attached {
                let (from, to) = (this.from_at.max(utc.start()), this.to_at.min(utc.end()));
                count_between(conn, &partition, table, from, to)
                    .await
                    .map_err(busy)?
            } else {
                0
            };
            let archived = recorded(&this.partition_rows, &partition);
            if share != archived {
                return Err(DetachError::Changed {
                    partition,
                    archived,
                    now: share,
                });
            }
            if is_attached {
                attached.push((table, partition));
            }
        }
        if attached.is_empty() {
            continue;
        }
        let mut why = None;
        for (table, partition) in &attached {
            why = kept_because(conn, utc, table, partition, only_finished).await?;
            if why.is_some() {
                break;
            }
        }
        if let Some(why) = why {
            outcome.kept.push(Kept {
                month: utc,
                partitions: attached.iter().map(|(_, p)| format!("recon.{p}")).collect(),
                why,
            });
            continue;
        }
        for (table, partition) in attached {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "alter table recon.{} detach partition recon.{partition}; \
                 create trigger {partition}_frozen before update or delete on recon.{partition} \
                 for each row execute function recon.refuse_changing_history()",
                table.name
            )))
            .execute(&mut *conn)
            .await
            .map_err(busy)?;
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "select count(*) from recon.{partition}"
            )))
            .fetch_one(&mut *conn)
            .await
            .map_err(busy)?;
            outcome.detached.push(Detached {
                table: *table,
                month: utc,
                partition,
                rows,
            });
        }
    }
    Ok(outcome)
}

/// Why `partition` (of `table`, holding UTC month `utc`) must stay attached, or `None` when
/// every row of it is in an archive that stands for it (see [`detach`]).
async fn kept_because(
    conn: &mut PgConnection,
    utc: Month,
    table: &HistoryTable,
    partition: &str,
    only_finished: bool,
) -> Result<Option<KeptBecause>, DetachError> {
    let store = |e: sqlx::Error| DetachError::Store(e.into());
    let key = table.time_column;
    // Rows outside every final archive's span, the first of them for the message.
    let (rows, first, reporting_month): (i64, Option<String>, Option<String>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select count(*),
                    to_char(min({key}) at time zone recon.report_zone(), 'YYYY-MM-DD HH24:MI')
                        || ' ' || recon.report_zone(),
                    to_char(recon.report_day(min({key})), 'YYYY-MM')
             from recon.{partition} r
             where not exists (select 1 from recon.archives a
                               where a.rows_final and r.{key} >= a.from_at and r.{key} < a.to_at)"
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(store)?;
    if rows > 0 {
        return Ok(Some(KeptBecause::Unarchived {
            table: table.name,
            rows,
            first: first.unwrap_or_default(),
            reporting_month: reporting_month.unwrap_or_default(),
        }));
    }
    // Each final archive that overlaps the partition, the newest of its span (an archive of
    // the same month written again stands for the earlier one), still counts its rows there.
    let archives = sqlx::query!(
        r#"select distinct on (from_at, to_at) id, month, from_at, to_at,
                  coalesce((partition_rows ->> $3)::bigint, 0) as "recorded!"
           from recon.archives
           where rows_final and from_at < $2 and to_at > $1
           order by from_at, to_at, id desc"#,
        utc.start(),
        utc.end(),
        partition,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(store)?;
    for a in archives {
        let (from, to) = (a.from_at.max(utc.start()), a.to_at.min(utc.end()));
        let now = count_between(conn, partition, table, from, to)
            .await
            .map_err(store)?;
        if now != a.recorded {
            return Ok(Some(KeptBecause::Changed {
                table: table.name,
                archive_id: a.id,
                archive_month: a.month,
                recorded: a.recorded,
                now,
            }));
        }
    }
    let (condition, why): (&str, fn(i64) -> KeptBecause) = match table.name {
        "discrepancies" => ("resolved_at is null", KeptBecause::OpenFlags),
        "events" if only_finished => (
            "delivered_at is null and abandoned_at is null and skipped_at is null",
            KeptBecause::Undelivered,
        ),
        _ => return Ok(None),
    };
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from recon.{partition} where {condition}"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(store)?;
    Ok((n > 0).then(|| why(n)))
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
/// attached for its UTC month's bounds.
pub fn reattach_statements(detached: &[Detached]) -> Vec<String> {
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
                    Month::literal(d.month.start()),
                    Month::literal(d.month.end()),
                ),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reporting_month_away_from_utc_spans_two_partitions_and_a_utc_one_its_own() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let months = |from, to| -> Vec<String> {
            Month::utc_months_overlapping(at(from), at(to))
                .iter()
                .map(Month::to_string)
                .collect()
        };
        // November in Almaty (+05:00), and in a zone behind UTC (-03:00).
        assert_eq!(
            months("2026-10-31T19:00:00Z", "2026-11-30T19:00:00Z"),
            ["2026-10", "2026-11"]
        );
        assert_eq!(
            months("2026-11-01T03:00:00Z", "2026-12-01T03:00:00Z"),
            ["2026-11", "2026-12"]
        );
        assert_eq!(
            months("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
            ["2026-11"]
        );
        assert_eq!(
            Month::literal(at("2026-10-31T19:00:00.25Z")),
            "'2026-10-31 19:00:00.250+00'"
        );
    }

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
