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

/// What the connected role could write, in words (`None`: nothing): a superuser; a table of
/// schema `recon` it may insert into, update (any column), delete from or truncate; or a
/// function of `recon` that writes as its owner (security definer) it may call.
pub async fn can_write(pool: &PgPool) -> Result<Option<String>, StoreError> {
    let row = sqlx::query!(
        r#"select current_user as "role!",
                  (select rolsuper or rolbypassrls from pg_roles where rolname = current_user)
                      as "superuser!",
                  (select string_agg('recon.' || c.relname, ', ' order by c.relname)
                   from pg_class c
                   where c.relnamespace = 'recon'::regnamespace and c.relkind in ('r', 'p')
                     and (has_any_column_privilege(c.oid, 'insert')
                          or has_any_column_privilege(c.oid, 'update')
                          or has_table_privilege(c.oid, 'delete')
                          or has_table_privilege(c.oid, 'truncate'))) as tables,
                  (select string_agg('recon.' || p.proname || '()', ', ' order by p.proname)
                   from pg_proc p
                   where p.pronamespace = 'recon'::regnamespace and p.prosecdef
                     and p.provolatile = 'v' and p.prorettype <> 'trigger'::regtype
                     and has_function_privilege(p.oid, 'execute')) as functions"#
    )
    .fetch_one(pool)
    .await?;
    Ok(if row.superuser {
        Some(format!("{} is a superuser", row.role))
    } else {
        match (row.tables, row.functions) {
            (None, None) => None,
            (tables, functions) => Some(format!(
                "{} may write to {}",
                row.role,
                [tables, functions]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
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
    /// On the reporting zone's clock.
    pub at: chrono::NaiveDateTime,
    /// `status`, `flag opened`, `flag resolved`, `money`.
    pub what: String,
    pub detail: String,
}

/// A payment and everything that happened to it, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Story {
    pub payment: PaymentLine,
    pub moments: Vec<Moment>,
    /// The reporting zone the moments' times are on.
    pub zone: String,
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
        r#"select (at at time zone recon.report_zone()) as "at!", what as "what!",
                  detail as "detail!" from (
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
    let zone = sqlx::query_scalar!(r#"select recon.report_zone() as "zone!""#)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some(Story {
        payment,
        moments,
        zone,
    }))
}

/// An open flag in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLine {
    pub payment_id: String,
    pub kind: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// When it opened, on the reporting zone's clock.
    pub detected_local: chrono::NaiveDateTime,
    /// Whole days open.
    pub age_days: i64,
    pub currency: Option<String>,
}

/// Which open flags the queue shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    pub kind: Option<String>,
    /// Expected or received in it.
    pub currency: Option<String>,
    /// The payment's month (by the day it was created): its first and last day.
    pub month: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
}

/// The open action flags `filter` keeps, oldest first: `page` (from 0) of `per_page`.
pub async fn queue(
    pool: &PgPool,
    filter: &QueueFilter,
    page: i64,
    per_page: i64,
) -> Result<Vec<QueueLine>, StoreError> {
    let mut tx = reading(pool).await?;
    Ok(sqlx::query!(
        r#"select d.payment_id as "payment_id!", d.kind as "kind!", d.expected, d.actual,
                  (d.detected_at at time zone recon.report_zone()) as "detected_local!",
                  extract(day from d.age)::int8 as "age_days!",
                  coalesce(d.expected_currency, d.received_currency) as currency
           from recon.open_discrepancies d
           where ($1::text is null or d.kind = $1)
             and ($2::text is null or d.expected_currency = $2 or d.received_currency = $2)
             and ($3::date is null
                  or exists (select 1 from recon.reconciliation r
                             where r.payment_id = d.payment_id
                               and r.created_day between $3 and $4))
           order by d.detected_at, d.id
           limit $5 offset $6"#,
        filter.kind.as_deref(),
        filter.currency.as_deref(),
        filter.month.map(|(first, _)| first),
        filter.month.map(|(_, last)| last),
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
        detected_local: r.detected_local,
        age_days: r.age_days,
        currency: r.currency,
    })
    .collect())
}

/// The reporting zone (`recon.timezone`), as the pages name their times.
pub async fn zone(pool: &PgPool) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"select recon.report_zone() as "zone!""#)
            .fetch_one(pool)
            .await?,
    )
}

/// One currency and outcome of a month's payments (by the day created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeLine {
    pub currency: String,
    pub outcome: String,
    pub payments: i64,
    pub expected_amount: String,
    pub received_payments: i64,
    pub received_amount: String,
    pub needs_action: i64,
}

/// A month closed: when, on whose behalf, why, and the SHA-256 of what was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub at: DateTime<Utc>,
    pub on_behalf_of: String,
    pub note: String,
    pub sha256: String,
}

/// The month page: its payments by currency and outcome (as signed, when closed), its money
/// to the bank (likewise), and its close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Month {
    pub closed: Option<Closed>,
    pub outcomes: Vec<OutcomeLine>,
    pub money: Vec<super::settlement::MonthMoney>,
}

/// The month `first..=last` (reporting days in recon.timezone).
pub async fn month(
    pool: &PgPool,
    first: chrono::NaiveDate,
    last: chrono::NaiveDate,
    bank_currency: &str,
) -> Result<Month, StoreError> {
    let mut tx = reading(pool).await?;
    let closed = sqlx::query!(
        r#"select closed_at as "closed_at!", on_behalf_of as "on_behalf_of!", note as "note!",
                  figures_sha256 as "sha256!", settlement_figures
           from recon.month_closes where month = $1"#,
        first
    )
    .fetch_optional(&mut *tx)
    .await?;
    let outcomes = sqlx::query!(
        r#"with signed as (
               select f.* from recon.month_closes c,
                    jsonb_to_recordset(c.figures) as f(currency text, outcome text,
                        payments int8, expected_amount numeric, received_payments int8,
                        received_amount numeric, needs_action int8)
               where c.month = $1
           ),
           live as (
               select currency, outcome, payments, expected_amount, received_payments,
                      received_amount, needs_action
               from recon.daily_summary
               where basis = 'created' and day between $1 and $2
                 and not exists (select 1 from recon.month_closes where month = $1)
           )
           select coalesce(currency, '-') as "currency!", coalesce(outcome, '-') as "outcome!",
                  coalesce(sum(payments), 0)::int8 as "payments!",
                  coalesce(sum(expected_amount), 0)::text as "expected_amount!",
                  coalesce(sum(received_payments), 0)::int8 as "received_payments!",
                  coalesce(sum(received_amount), 0)::text as "received_amount!",
                  coalesce(sum(needs_action), 0)::int8 as "needs_action!"
           from (select * from signed union all select * from live) f
           group by currency, outcome
           order by currency,
                    array_position(array['paid', 'failed', 'expired_unpaid', 'in_progress'],
                                   outcome)"#,
        first,
        last,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| OutcomeLine {
        currency: r.currency,
        outcome: r.outcome,
        payments: r.payments,
        expected_amount: r.expected_amount,
        received_payments: r.received_payments,
        received_amount: r.received_amount,
        needs_action: r.needs_action,
    })
    .collect();
    let signed_money = closed
        .as_ref()
        .and_then(|c| c.settlement_figures.clone())
        .and_then(|f| serde_json::from_value(f).ok());
    let money = match signed_money {
        Some(money) => money,
        None => super::settlement::month_money(&mut *tx, first, last, bank_currency).await?,
    };
    Ok(Month {
        closed: closed.map(|c| Closed {
            at: c.closed_at,
            on_behalf_of: c.on_behalf_of,
            note: c.note,
            sha256: c.sha256,
        }),
        outcomes,
        money,
    })
}
