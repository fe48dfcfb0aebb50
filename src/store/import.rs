//! SQL for bulk intake: checks on the `import_rows` temporary table that `import` fills with
//! `COPY` inside the caller's transaction, and the insert itself.

use sqlx::PgConnection;

use super::StoreError;

/// An id that appears on more than one line of the file.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Duplicate {
    pub payment_id: String,
    /// Every line it appears on, in order.
    pub lines: Vec<i64>,
}

/// A value in the file that differs from what is stored for the same payment.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Conflict {
    pub line: i64,
    pub payment_id: String,
    pub column: String,
    pub stored: Option<String>,
    pub offered: String,
}

pub async fn duplicates_in_file(conn: &mut PgConnection) -> Result<Vec<Duplicate>, StoreError> {
    Ok(sqlx::query_as(
        "select payment_id, array_agg(line order by line) as lines
         from import_rows group by payment_id having count(*) > 1",
    )
    .fetch_all(conn)
    .await?)
}

/// Only values the file gives are compared: an empty cell never conflicts.
pub async fn conflicts_with_stored(conn: &mut PgConnection) -> Result<Vec<Conflict>, StoreError> {
    Ok(sqlx::query_as(
        "select i.line, i.payment_id, c.column_name as column, c.stored, c.offered
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
         where c.offered is not null and c.differs
         order by i.line, c.column_name",
    )
    .fetch_all(conn)
    .await?)
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
