//! What the console's pages read (issue 28), through the finance views a reader role is
//! granted (`grant-reader`), each statement within a time limit.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use super::StoreError;

/// The longest a page's statement may run.
const STATEMENT_TIMEOUT: &str = "5s";

/// A transaction that only reads, whose statements stop after [`STATEMENT_TIMEOUT`].
async fn reading(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction read only")
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "set local statement_timeout = '{STATEMENT_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// What the connected role could write, in words (`None`: nothing): a superuser, or a
/// table of schema `recon` it may insert into, update, delete from or truncate.
pub async fn can_write(pool: &PgPool) -> Result<Option<String>, StoreError> {
    let row = sqlx::query!(
        r#"select current_user as "role!",
                  (select rolsuper or rolbypassrls from pg_roles where rolname = current_user)
                      as "superuser!",
                  (select string_agg(c.relname, ', ' order by c.relname)
                   from pg_class c
                   where c.relnamespace = 'recon'::regnamespace and c.relkind in ('r', 'p')
                     and (has_table_privilege(c.oid, 'insert')
                          or has_table_privilege(c.oid, 'update')
                          or has_table_privilege(c.oid, 'delete')
                          or has_table_privilege(c.oid, 'truncate'))) as writable"#
    )
    .fetch_one(pool)
    .await?;
    Ok(if row.superuser {
        Some(format!("{} is a superuser", row.role))
    } else {
        row.writable
            .map(|tables| format!("{} may write to recon.{tables}", row.role))
    })
}

/// A payment as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentLine {
    pub payment_id: String,
    pub order_id: Option<String>,
    pub outcome: Option<String>,
    pub status: Option<String>,
    pub expected: Option<String>,
    pub received: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub open_flags: Vec<String>,
}

/// Payments whose id or order id is `q` (at most 50).
pub async fn find(pool: &PgPool, q: &str) -> Result<Vec<PaymentLine>, StoreError> {
    let mut tx = reading(pool).await?;
    let rows = sqlx::query!(
        r#"select payment_id as "payment_id!", order_id, outcome, status,
                  expected_amount::text || ' ' || coalesce(expected_currency, '') as expected,
                  received_amount::text || ' ' || coalesce(received_currency, '') as received,
                  created_at, coalesce(open_flags, '{}') as "open_flags!"
           from recon.reconciliation
           where payment_id = $1 or order_id = $1
           order by created_at, payment_id
           limit 50"#,
        q
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PaymentLine {
            payment_id: r.payment_id,
            order_id: r.order_id,
            outcome: r.outcome,
            status: r.status,
            expected: r.expected,
            received: r.received,
            created_at: r.created_at,
            open_flags: r.open_flags,
        })
        .collect())
}

/// One moment of a payment's story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    pub at: DateTime<Utc>,
    /// `status`, `flag opened`, `flag resolved`, `money`.
    pub what: String,
    pub detail: String,
}

/// A payment and everything that happened to it, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Story {
    pub payment: PaymentLine,
    pub moments: Vec<Moment>,
}

/// The story of payment `id`; `None` when nobody tracks it.
pub async fn story(pool: &PgPool, id: &str) -> Result<Option<Story>, StoreError> {
    let Some(payment) = find(pool, id)
        .await?
        .into_iter()
        .find(|p| p.payment_id == id)
    else {
        return Ok(None);
    };
    let mut tx = reading(pool).await?;
    let moments = sqlx::query!(
        r#"select at as "at!", what as "what!", detail as "detail!" from (
               select observed_at as at, 'status' as what,
                      coalesce(from_status, '(first answer)') || ' → ' || to_status
                      || coalesce(', the provider''s time ' || provider_dt::text, '') as detail
               from recon.status_history where payment_id = $1
               union all
               select detected_at, 'flag opened',
                      kind || coalesce(': expected ' || expected, '')
                      || coalesce(', actual ' || actual, '')
               from recon.discrepancy_history where payment_id = $1
               union all
               select resolved_at, 'flag resolved',
                      kind || ' by ' || resolved_by || coalesce(': ' || resolution, '')
               from recon.discrepancy_history where payment_id = $1 and resolved_at is not null
               union all
               select observed_at, 'money',
                      kind || ' ' || amount::text || ' ' || currency || ' (' || source
                      || coalesce(', the provider''s time ' || provider_at::text, '') || ')'
               from recon.money_events where payment_id = $1
           ) m
           order by at, what"#,
        id
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| Moment {
        at: r.at,
        what: r.what,
        detail: r.detail,
    })
    .collect();
    Ok(Some(Story { payment, moments }))
}

/// An open flag in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLine {
    pub payment_id: String,
    pub kind: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub detected_at: DateTime<Utc>,
    /// Whole days open.
    pub age_days: i64,
    pub currency: Option<String>,
}

/// The open action flags (of `kind`, when given), oldest first: `page` (from 0) of
/// `per_page`.
pub async fn queue(
    pool: &PgPool,
    kind: Option<&str>,
    page: i64,
    per_page: i64,
) -> Result<Vec<QueueLine>, StoreError> {
    let mut tx = reading(pool).await?;
    Ok(sqlx::query!(
        r#"select payment_id as "payment_id!", kind as "kind!", expected, actual,
                  detected_at as "detected_at!",
                  extract(day from age)::int8 as "age_days!",
                  coalesce(expected_currency, received_currency) as currency
           from recon.open_discrepancies
           where $1::text is null or kind = $1
           order by detected_at, id
           limit $2 offset $3"#,
        kind,
        per_page,
        page.saturating_mul(per_page),
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| QueueLine {
        payment_id: r.payment_id,
        kind: r.kind,
        expected: r.expected,
        actual: r.actual,
        detected_at: r.detected_at,
        age_days: r.age_days,
        currency: r.currency,
    })
    .collect())
}
