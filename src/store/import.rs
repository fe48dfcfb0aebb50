//! SQL for bulk intake: the `import_rows` staging table that `import` fills with `COPY`
//! inside the caller's transaction, the checks on it, and the insert itself.
//!
//! These are the statements the compiler cannot check against the schema (see
//! `docs/design.md`): the staging table is temporary, so it exists only inside an import's
//! transaction, never in the schema the build checks against. Tests cover each one.

use sqlx::PgConnection;
use sqlx::postgres::PgCopyIn;

use super::StoreError;

/// A line whose id already appeared on an earlier line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub line: i64,
    pub payment_id: String,
    /// The first line the id appears on.
    pub first_line: i64,
}

/// A value in the file that differs from what is stored for the same payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub line: i64,
    pub payment_id: String,
    pub column: String,
    pub stored: Option<String>,
    pub offered: String,
}

/// The staging table's columns, in the order `COPY` sends them.
pub const STAGING_COLUMNS: &str =
    "line, payment_id, expected_amount, expected_currency, order_id, created_at, expires_at";

/// Creates the staging table, dropped when the caller's transaction ends.
pub async fn create_staging(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query(
        "create temporary table import_rows (
             line bigint not null,
             payment_id text not null,
             expected_amount numeric,
             expected_currency text,
             order_id text,
             created_at timestamptz,
             expires_at timestamptz
         ) on commit drop",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Starts a `COPY` of CSV rows ([`STAGING_COLUMNS`], in that order) into the staging table.
pub async fn copy_into_staging(
    conn: &mut PgConnection,
) -> Result<PgCopyIn<&mut PgConnection>, StoreError> {
    Ok(conn
        .copy_in_raw(&format!(
            "copy import_rows ({STAGING_COLUMNS}) from stdin with (format csv)"
        ))
        .await?)
}

/// Lines whose id already appeared on an earlier line: `(line, payment_id, first_line)`.
const DUPLICATES: &str = "select line, payment_id, first_line
     from (select line, payment_id, min(line) over (partition by payment_id) as first_line
           from import_rows) r
     where line > first_line";

/// Values in the file that differ from what is stored for the same payment:
/// `(line, payment_id, column, stored, offered)`. Only values the file gives are compared: an
/// empty cell never conflicts.
const CONFLICTS: &str = "select i.line, i.payment_id, c.column_name as column, c.stored, c.offered
     from import_rows i
     join recon.payments p using (payment_id)
     cross join lateral (values
         ('expected_amount', p.expected_amount::text, i.expected_amount::text,
          i.expected_amount is distinct from p.expected_amount),
         ('expected_currency', p.expected_currency, i.expected_currency,
          i.expected_currency is distinct from p.expected_currency),
         ('order_id', p.order_id, i.order_id, i.order_id is distinct from p.order_id),
         ('created_at', to_char(p.created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.USZ'),
          to_char(i.created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.USZ'),
          i.created_at is distinct from p.created_at),
         ('expires_at', to_char(p.expires_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.USZ'),
          to_char(i.expires_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.USZ'),
          i.expires_at is distinct from p.expires_at)
     ) as c(column_name, stored, offered, differs)
     where c.offered is not null and c.differs";

/// How many lines of the file have a duplicate or conflict problem (a line may have several).
pub async fn lines_with_problems(conn: &mut PgConnection) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from (select line from ({DUPLICATES}) d
                               union select line from ({CONFLICTS}) c) l"
    )))
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The first `limit` repeated lines, in line order, and how many there are in all.
pub async fn duplicates_in_file(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<(Vec<Duplicate>, u64), StoreError> {
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select line, payment_id, first_line, count(*) over ()
         from ({DUPLICATES}) d
         order by line
         limit $1"
    )))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(with_total(rows, |(line, payment_id, first_line, total)| {
        (
            Duplicate {
                line,
                payment_id,
                first_line,
            },
            total,
        )
    }))
}

/// Splits rows that carry `count(*) over ()` into the rows and that total.
fn with_total<R, T>(rows: Vec<R>, split: impl Fn(R) -> (T, i64)) -> (Vec<T>, u64) {
    let mut total = 0;
    let items = rows
        .into_iter()
        .map(|row| {
            let (item, count) = split(row);
            total = u64::try_from(count).unwrap_or(0);
            item
        })
        .collect();
    (items, total)
}

/// The first `limit` conflicting values, in line order, and how many there are in all.
pub async fn conflicts_with_stored(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<(Vec<Conflict>, u64), StoreError> {
    let rows: Vec<(i64, String, String, Option<String>, String, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select line, payment_id, \"column\", stored, offered, count(*) over ()
             from ({CONFLICTS}) c
             order by line, \"column\"
             limit $1"
        )))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    Ok(with_total(
        rows,
        |(line, payment_id, column, stored, offered, total)| {
            (
                Conflict {
                    line,
                    payment_id,
                    column,
                    stored,
                    offered,
                },
                total,
            )
        },
    ))
}

/// Inserts the rows not yet tracked; returns how many.
pub async fn insert_new(conn: &mut PgConnection) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "insert into recon.payments
             (payment_id, expected_amount, expected_currency, order_id, created_at, expires_at)
         select payment_id, expected_amount, expected_currency, order_id,
                coalesce(created_at, now()), expires_at
         from import_rows
         order by line
         on conflict (payment_id) do nothing",
    )
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
