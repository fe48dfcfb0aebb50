//! What the console's pages read (issue 28), through the finance views a reader role is
//! granted (`grant-reader`), each statement within a time limit.

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
    /// When it was created, on the reporting zone's clock.
    pub created_local: Option<chrono::NaiveDateTime>,
    pub open_flags: Vec<String>,
}

/// Payments whose id or order id is `q` (at most 50).
pub async fn find(pool: &PgPool, q: &str) -> Result<Vec<PaymentLine>, StoreError> {
    let mut tx = reading(pool).await?;
    let rows = sqlx::query!(
        r#"select payment_id as "payment_id!", order_id, outcome, status,
                  expected_amount::text || ' ' || coalesce(expected_currency, '') as expected,
                  received_amount::text || ' ' || coalesce(received_currency, '') as received,
                  created_at at time zone recon.report_zone() as created_local,
                  coalesce(open_flags, '{}') as "open_flags!"
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
            created_local: r.created_local,
            open_flags: r.open_flags,
        })
        .collect())
}

/// One moment of a payment's story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    /// When it was recorded, and the same on the reporting zone's clock.
    pub at_utc: chrono::DateTime<chrono::Utc>,
    pub at: chrono::NaiveDateTime,
    pub what: MomentKind,
    /// The status change (`process → success`, `(first answer) → process`), what a callback
    /// said, the flag's kind, the money's kind, or the closed month an adjustment changed.
    pub subject: String,
    /// A flag's expected and actual values, as the flag states them.
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// The amount an answer or a callback stated, or money's (signed for the merchant), and
    /// its currency.
    pub amount: Option<String>,
    pub currency: Option<String>,
    /// Who: the money's source (poll, callback, registry…), who resolved a flag, how a
    /// callback was matched, or an adjustment's cause kind.
    pub by: Option<String>,
    /// A resolution's note, or an adjustment's cause.
    pub note: Option<String>,
    /// When the provider says it happened, and the same on the reporting zone's clock.
    pub provider_utc: Option<chrono::DateTime<chrono::Utc>>,
    pub provider_at: Option<chrono::NaiveDateTime>,
}

/// What a moment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MomentKind {
    /// A provider answer that changed the status (with the amount it stated).
    Status,
    /// A Result-URL callback: a hint, what it said.
    Callback,
    FlagOpened,
    FlagResolved,
    Money,
    /// A change to a closed month's figures, booked in an open one.
    Adjustment,
}

impl MomentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Callback => "callback",
            Self::FlagOpened => "flag opened",
            Self::FlagResolved => "flag resolved",
            Self::Money => "money",
            Self::Adjustment => "adjustment",
        }
    }
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
        r#"select at as "at_utc!", (at at time zone recon.report_zone()) as "at!",
                  what as "what!", subject as "subject!", expected, actual, amount, currency,
                  by, note, provider_at as provider_utc,
                  provider_at at time zone recon.report_zone() as provider_at
           from (
               select observed_at as at, 1 as what,
                      coalesce(from_status, '(first answer)') || ' → ' || to_status as subject,
                      null::text as expected, null::text as actual,
                      stated_amount as amount, stated_currency as currency,
                      null::text as by, null::text as note, provider_dt as provider_at
               from recon.provider_answers where payment_id = $1
               union all
               select received_at, 2,
                      case claims_paid when true then 'said paid' when false then 'said failed'
                                       else 'said nothing readable' end,
                      null, null, amount::text, currency, 'matched by ' || matched_by, null,
                      null
               from recon.callback_history where payment_id = $1
               union all
               select detected_at, 3, kind, expected, actual, null, null, null, null, null
               from recon.discrepancy_history where payment_id = $1
               union all
               select resolved_at, 4, kind, null, null, null, null, resolved_by, resolution,
                      null
               from recon.discrepancy_history where payment_id = $1 and resolved_at is not null
               union all
               select observed_at, 5, kind, null, null, amount::text, currency, source, null,
                      provider_at
               from recon.money_events where payment_id = $1
               union all
               select booked_at, 6,
                      'of ' || to_char(original_day, 'YYYY-MM') || ' (closed), booked '
                      || to_char(booked_day, 'YYYY-MM-DD'),
                      null, null, null, null, cause_kind, cause, null
               from recon.adjustments where payment_id = $1
           ) m
           order by at, what"#,
        id
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| Moment {
        at_utc: r.at_utc,
        at: r.at,
        what: match r.what {
            1 => MomentKind::Status,
            2 => MomentKind::Callback,
            3 => MomentKind::FlagOpened,
            4 => MomentKind::FlagResolved,
            5 => MomentKind::Money,
            _ => MomentKind::Adjustment,
        },
        subject: r.subject,
        expected: r.expected,
        actual: r.actual,
        amount: r.amount,
        currency: r.currency,
        by: r.by,
        note: r.note,
        provider_utc: r.provider_utc,
        provider_at: r.provider_at,
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
    /// Expected or invoiced in it (as `report --flags --currency`).
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
    // The page is found in the open flags' index alone (recon.discrepancy_history, with the
    // payments a filter keeps from recon.flagged_payments), then only its rows are read whole;
    // see migration console_reads.
    Ok(sqlx::query!(
        r#"with flagged as materialized (
               select f.payment_id from recon.flagged_payments f
               where ($2::text is not null or $3::date is not null)
                 and ($2::text is null or f.expected_currency = $2 or f.invoice_currency = $2)
                 and ($3::date is null or f.created_day between $3 and $4)
           ),
           page as (
               -- No filter by payment: the open flags' index in the queue's order, read until
               -- the page is full.
               (select h.id, h.detected_at from recon.discrepancy_history h
                where $2::text is null and $3::date is null
                  and h.resolved_at is null and h.class = 'action'
                  and ($1::text is null or h.kind = $1)
                order by h.detected_at, h.id
                limit $5 offset $6)
               union all
               -- A filter by payment: the payments it keeps are hashed once (`offset 0`
               -- keeps it out of each partition's scan, which would hash them again).
               (select s.id, s.detected_at from (
                    select h.id, h.detected_at, h.payment_id
                    from recon.discrepancy_history h
                    where ($2::text is not null or $3::date is not null)
                      and h.resolved_at is null and h.class = 'action'
                      and ($1::text is null or h.kind = $1)
                    order by h.detected_at, h.id
                    offset 0
                ) s
                where s.payment_id in (select payment_id from flagged)
                order by s.detected_at, s.id
                limit $5 offset $6)
           )
           select d.payment_id as "payment_id!", d.kind as "kind!", d.expected, d.actual,
                  (d.detected_at at time zone recon.report_zone()) as "detected_local!",
                  extract(day from d.age)::int8 as "age_days!",
                  coalesce(d.expected_currency, d.received_currency) as currency
           from page
           cross join lateral (
               select * from recon.open_discrepancies o
               where o.id = page.id and o.detected_at = page.detected_at
               limit 1
           ) d
           order by page.detected_at, page.id"#,
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

/// Open action flags of one kind, by how long they have been open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindAges {
    pub kind: String,
    pub under_1_day: i64,
    pub days_1_to_7: i64,
    pub days_8_to_30: i64,
    pub over_30_days: i64,
}

/// Every open action flag, counted by kind and age (read from the open flags' index alone).
pub async fn queue_ages(pool: &PgPool) -> Result<Vec<KindAges>, StoreError> {
    let mut tx = reading(pool).await?;
    Ok(sqlx::query_as!(
        KindAges,
        r#"select h.kind as "kind!",
                  count(*) filter (where h.detected_at > now() - interval '1 day')
                      as "under_1_day!",
                  count(*) filter (where h.detected_at <= now() - interval '1 day'
                                     and h.detected_at > now() - interval '7 days')
                      as "days_1_to_7!",
                  count(*) filter (where h.detected_at <= now() - interval '7 days'
                                     and h.detected_at > now() - interval '30 days')
                      as "days_8_to_30!",
                  count(*) filter (where h.detected_at <= now() - interval '30 days')
                      as "over_30_days!"
           from recon.discrepancy_history h
           where h.resolved_at is null and h.class = 'action'
           group by h.kind
           order by count(*) desc, h.kind"#
    )
    .fetch_all(&mut *tx)
    .await?)
}

/// The reporting zone (`recon.timezone`), as the pages name their times.
pub async fn zone(pool: &PgPool) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar!(r#"select recon.report_zone() as "zone!""#)
            .fetch_one(pool)
            .await?,
    )
}

/// The first day of this month in the reporting zone.
pub async fn this_month(pool: &PgPool) -> Result<chrono::NaiveDate, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select date_trunc('month', recon.report_day(now()))::date as "first!""#
    )
    .fetch_one(pool)
    .await?)
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
    /// On the reporting zone's clock.
    pub at: chrono::NaiveDateTime,
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
    /// What changed after a month was closed: what belongs to this month but was booked in
    /// a later, open one, and what was booked in this month for an earlier one, by the day
    /// booked; of each kind (figures, money) at most [`ADJUSTMENTS_SHOWN`].
    pub adjustments: Vec<Adjustment>,
    /// There are more than those.
    pub more_adjustments: bool,
}

/// The most adjustments of each kind the month page lists (`report --adjustments` and
/// `report --money` list them all).
pub const ADJUSTMENTS_SHOWN: usize = 200;

/// A change to a closed month's figures, booked in a later, open one instead (a closed
/// month's figures never change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub payment_id: String,
    /// The reporting day it belongs to (the payment's, or the day the money moved).
    pub belongs_to: chrono::NaiveDate,
    /// The open day it is booked on.
    pub booked_on: chrono::NaiveDate,
    pub change: Change,
}

/// What an adjustment changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A payment's figures (`recon.adjustments`): each before and after, amounts with their
    /// currency; `None` where it did not change.
    Figures {
        status: Option<(Option<String>, Option<String>)>,
        amount: Option<(Option<String>, Option<String>)>,
        expected: Option<(Option<String>, Option<String>)>,
        fee: Option<(Option<String>, Option<String>)>,
        /// The open flags, comma separated (`None` within: none open).
        flags: Option<(Option<String>, Option<String>)>,
        /// What caused it: a transition, a flag, an intake change…
        cause: String,
    },
    /// Money recorded after the close (`recon.money_events.adjusts_month`): its kind, the
    /// amount signed for the merchant and its currency, and who said so.
    Money {
        kind: String,
        amount: String,
        currency: String,
        source: String,
    },
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
        r#"select closed_at at time zone recon.report_zone() as "closed_at!", on_behalf_of as "on_behalf_of!", note as "note!",
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
    let shown = ADJUSTMENTS_SHOWN as i64 + 1;
    let mut adjustments: Vec<Adjustment> = sqlx::query!(
        r#"select a.payment_id as "payment_id!", a.original_day as "belongs_to!",
                  a.booked_day as "booked_on!", a.cause as "cause!",
                  a.old_status is distinct from a.new_status as "status_changed!",
                  a.old_status, a.new_status,
                  (a.old_amount, a.old_currency) is distinct from (a.new_amount, a.new_currency)
                      as "amount_changed!",
                  a.old_amount::text || ' ' || a.old_currency as old_amount,
                  a.new_amount::text || ' ' || a.new_currency as new_amount,
                  (a.old_expected_amount, a.old_expected_currency)
                      is distinct from (a.new_expected_amount, a.new_expected_currency)
                      as "expected_changed!",
                  a.old_expected_amount::text || ' ' || a.old_expected_currency as old_expected,
                  a.new_expected_amount::text || ' ' || a.new_expected_currency as new_expected,
                  a.old_fee is distinct from a.new_fee as "fee_changed!",
                  a.old_fee::text as old_fee, a.new_fee::text as new_fee,
                  coalesce(a.old_open_flags, '{}') <> coalesce(a.new_open_flags, '{}')
                      as "flags_changed!",
                  nullif(array_to_string(a.old_open_flags, ', '), '') as old_flags,
                  nullif(array_to_string(a.new_open_flags, ', '), '') as new_flags
           from recon.adjustments a
           where a.original_day between $1 and $2 or a.booked_day between $1 and $2
           order by a.booked_day, a.id
           limit $3"#,
        first,
        last,
        shown,
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| {
        let pair = |changed: bool, old, new| changed.then_some((old, new));
        Adjustment {
            payment_id: r.payment_id,
            belongs_to: r.belongs_to,
            booked_on: r.booked_on,
            change: Change::Figures {
                status: pair(r.status_changed, r.old_status, r.new_status),
                amount: pair(r.amount_changed, r.old_amount, r.new_amount),
                expected: pair(r.expected_changed, r.old_expected, r.new_expected),
                fee: pair(r.fee_changed, r.old_fee, r.new_fee),
                flags: pair(r.flags_changed, r.old_flags, r.new_flags),
                cause: r.cause,
            },
        }
    })
    .collect();
    let late_money = sqlx::query!(
        r#"select payment_id, kind, amount::text as "amount!", currency, source,
                  recon.report_day(coalesce(provider_at, observed_at)) as "belongs_to!",
                  counts_on as "booked_on!"
           from recon.money_events
           where adjusts_month is not null
             and (adjusts_month = $1 or counts_on between $1 and $2)
           order by counts_on, observed_at, id
           limit $3"#,
        first,
        last,
        shown,
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut more_adjustments = late_money.len() > ADJUSTMENTS_SHOWN;
    if adjustments.len() > ADJUSTMENTS_SHOWN {
        adjustments.truncate(ADJUSTMENTS_SHOWN);
        more_adjustments = true;
    }
    adjustments.extend(
        late_money
            .into_iter()
            .take(ADJUSTMENTS_SHOWN)
            .map(|r| Adjustment {
                payment_id: r.payment_id,
                belongs_to: r.belongs_to,
                booked_on: r.booked_on,
                change: Change::Money {
                    kind: r.kind,
                    amount: r.amount,
                    currency: r.currency,
                    source: r.source,
                },
            }),
    );
    adjustments.sort_by_key(|a| a.booked_on);
    Ok(Month {
        adjustments,
        more_adjustments,
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
