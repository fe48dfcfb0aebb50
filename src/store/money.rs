//! Money events (`recon.money_events`): each provider fact about money written once.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::stream::BoxStream;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use crate::domain::money::{FlagText, MoneyFact};

/// Facts as columns, for one statement.
#[derive(Default)]
pub(super) struct MoneyColumns<'a> {
    payment_id: Vec<&'a str>,
    kind: Vec<&'static str>,
    amount: Vec<Decimal>,
    provider_amount: Vec<Option<Decimal>>,
    currency: Vec<&'a str>,
    provider_ref: Vec<Option<&'a str>>,
    provider_status: Vec<Option<&'a str>>,
    provider_at: Vec<Option<DateTime<Utc>>>,
    source: Vec<&'static str>,
    fact_key: Vec<&'a str>,
    /// `None`: now.
    observed_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> MoneyColumns<'a> {
    /// `observed_at`: when the answer stating it came (`None`: now).
    pub(super) fn push(
        &mut self,
        payment_id: &'a str,
        fact: &'a MoneyFact,
        observed_at: Option<DateTime<Utc>>,
    ) {
        self.payment_id.push(payment_id);
        self.kind.push(fact.kind.as_str());
        self.amount.push(fact.amount);
        self.provider_amount.push(fact.provider_amount);
        self.currency.push(fact.currency.as_str());
        self.provider_ref.push(fact.provider_ref.as_deref());
        self.provider_status.push(fact.provider_status.as_deref());
        self.provider_at.push(fact.provider_at);
        self.source.push(fact.source.as_str());
        self.fact_key.push(&fact.key);
        self.observed_at.push(observed_at);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.payment_id.is_empty()
    }
}

/// Writes the facts not written yet (by payment and key; the first of a repeated key in
/// `facts` wins) and returns how many. A fact another writer stored first is skipped here,
/// or refused by the keys' index (`recon.money_event_keys`, 23505) if it commits in between;
/// the callers hold the payments' row locks, so that does not happen between them.
///
/// With `first_look`, each payment a fact was written for is also watched for refunds from
/// then (`recon.refund_watch`: first seen paid at the fact's observation, first look that
/// much later, or sooner if a refund request or hint already made one due), in the same
/// statement: the engine's write path, whose facts are payments received.
pub(super) async fn insert(
    conn: &mut PgConnection,
    facts: &MoneyColumns<'_>,
    first_look: Option<std::time::Duration>,
) -> Result<u64, StoreError> {
    let first_look = first_look.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(sqlx::query_scalar!(
        r#"with cutoff as materialized (
               -- Where the closed period ends, read once under the lock a close waits for.
               select recon.money_dating_cutoff() as at
           ),
           booked as (
               insert into recon.money_events
                   (payment_id, kind, amount, provider_amount, currency, provider_ref,
                    provider_status, provider_at, source, fact_key, observed_at,
                    counts_on, adjusts_month)
               select f.payment_id, f.kind, f.amount, f.provider_amount, f.currency,
                      f.provider_ref, f.provider_status, f.provider_at, f.source, f.fact_key,
                      f.observed_at, d.counts_on, d.adjusts_month
               from (select distinct on (u.payment_id, u.fact_key)
                            u.payment_id, u.kind, u.amount, u.provider_amount, u.currency,
                            u.provider_ref, u.provider_status, u.provider_at, u.source,
                            u.fact_key, coalesce(u.observed_at, now()) as observed_at
                     from unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[],
                                 $5::text[], $6::text[], $7::text[], $8::timestamptz[],
                                 $9::text[], $10::text[], $11::timestamptz[])
                          with ordinality as u(payment_id, kind, amount, provider_amount,
                                               currency, provider_ref, provider_status,
                                               provider_at, source, fact_key, observed_at, n)
                     order by u.payment_id, u.fact_key, u.n) f
               -- Dated here, once per statement, by the rule its trigger checks.
               cross join cutoff c
               cross join lateral recon.money_event_day(coalesce(f.provider_at, f.observed_at),
                                                        c.at) d
               -- A fact already booked is skipped: one look-up of its key each, whatever the
               -- keys table's statistics say (an anti-join may hash the whole table instead).
               left join lateral (select true as booked
                                  from recon.money_event_keys k
                                  where k.payment_id = f.payment_id
                                    and k.fact_key = f.fact_key
                                  limit 1) known on true
               where known.booked is null
               order by f.payment_id
               returning payment_id, observed_at
           ),
           watched as (
               insert into recon.refund_watch (payment_id, since, next_at)
               select b.payment_id, b.observed_at,
                      b.observed_at + $12::int8 * interval '1 millisecond'
               from booked b
               where $12::int8 is not null
               order by b.payment_id
               on conflict (payment_id) do update
               set since = excluded.since,
                   next_at = least(refund_watch.next_at, excluded.next_at)
           )
           select count(*) as "booked!" from booked"#,
        &facts.payment_id as &[&str],
        &facts.kind as &[&str],
        &facts.amount,
        &facts.provider_amount as &[Option<Decimal>],
        &facts.currency as &[&str],
        &facts.provider_ref as &[Option<&str>],
        &facts.provider_status as &[Option<&str>],
        &facts.provider_at as &[Option<DateTime<Utc>>],
        &facts.source as &[&str],
        &facts.fact_key as &[&str],
        &facts.observed_at as &[Option<DateTime<Utc>>],
        first_look as Option<i64>,
    )
    .fetch_one(conn)
    .await?
    .try_into()
    .unwrap_or(0))
}

/// Makes the next refund-watch look of `payment_ids` due now: a hint (a status `invoice/info`
/// does not document, a refund notification) that money may have moved. A payment not
/// watched yet is watched from now.
pub(super) async fn look_now(
    conn: &mut PgConnection,
    payment_ids: &[&str],
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"insert into recon.refund_watch (payment_id, since, next_at)
           select id, now(), now() from unnest($1::text[]) as u(id)
           order by id
           on conflict (payment_id) do update
           set next_at = least(refund_watch.next_at, excluded.next_at)"#,
        payment_ids as &[&str],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A refund notification names `payment_id` (else a unique `order_id`): that payment's next
/// refund-watch look is due now. Returns the payment's id, or `None` when it names none
/// tracked.
pub async fn hint(
    pool: &PgPool,
    payment_id: Option<&str>,
    order_id: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query_scalar!(
        r#"select coalesce(
               (select p.payment_id from recon.payments p where p.payment_id = $1),
               (select min(p.payment_id) from recon.payments p where p.order_id = $2
                having count(*) = 1)) as found"#,
        payment_id,
        order_id,
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(id) = &found {
        look_now(&mut tx, &[id.as_str()]).await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// Writes `facts` about one payment in one transaction, under its row lock, and returns how
/// many were new. A payment nobody tracks writes nothing (`Ok(0)`).
pub async fn record_facts(
    pool: &PgPool,
    payment_id: &str,
    facts: &[MoneyFact],
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let tracked = sqlx::query_scalar!(
        "select 1 as \"one!\" from recon.payments where payment_id = $1 for no key update",
        payment_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if tracked.is_none() {
        return Ok(0);
    }
    let mut columns = MoneyColumns::default();
    for fact in facts {
        columns.push(payment_id, fact, None);
    }
    let written = if columns.is_empty() {
        0
    } else {
        insert(&mut tx, &columns, None).await?
    };
    settle_requests(&mut tx, payment_id).await?;
    tx.commit().await?;
    Ok(written)
}

/// Matches `payment_id`'s refund requests (`recon.merchant_refunds`) to the money it got back
/// ([`crate::domain::money::match_refunds`], as of the database's clock), in the caller's
/// transaction, which holds the payment's row lock: writes the new matches, opens the refund
/// flags that hold (one open per kind; not again about what a person closed) and resolves
/// those that clear. Returns when a request not matched yet is next to be looked for.
pub(super) async fn settle_requests(
    conn: &mut PgConnection,
    payment_id: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    use crate::domain::money::{RefundRequest, Returned, match_refunds};

    let now = sqlx::query_scalar!(r#"select now() as "now!""#)
        .fetch_one(&mut *conn)
        .await?;
    let requests: Vec<RefundRequest> = sqlx::query!(
        "select id, amount, currency, requested_at, reference, matched_key
         from recon.merchant_refunds where payment_id = $1",
        payment_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .filter_map(|r| {
        Some(RefundRequest {
            id: r.id,
            amount: r.amount,
            currency: r.currency.parse().ok()?,
            requested_at: r.requested_at,
            reference: r.reference,
            matched: r.matched_key,
        })
    })
    .collect();
    let returns: Vec<Returned> = sqlx::query!(
        r#"select fact_key, kind, -amount as "amount!", currency,
                  coalesce(provider_at, observed_at) as "at!"
           from recon.money_events
           where payment_id = $1 and kind in ('refund', 'reversal', 'chargeback')"#,
        payment_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .filter_map(|r| {
        Some(Returned {
            key: r.fact_key,
            kind: crate::domain::money::MoneyKind::parse(&r.kind)?,
            amount: r.amount,
            currency: r.currency.parse().ok()?,
            at: r.at,
        })
    })
    .collect();
    if requests.is_empty() && returns.is_empty() {
        return Ok(None);
    }
    let matching = match_refunds(&requests, &returns, now);
    let (ids, keys): (Vec<i64>, Vec<String>) = matching.matches.iter().cloned().unzip();
    if !ids.is_empty() {
        sqlx::query!(
            "update recon.merchant_refunds r set matched_key = m.key, matched_at = now()
             from unnest($1::int8[], $2::text[]) as m(id, key)
             where r.id = m.id and r.matched_key is null",
            &ids,
            &keys,
        )
        .execute(&mut *conn)
        .await?;
    }
    write_findings(&mut *conn, payment_id, &matching.findings).await?;
    Ok(matching.next_look)
}

/// A payment whose watch for refunds is due, claimed by this daemon.
#[derive(Debug, Clone)]
pub struct Watch {
    pub payment_id: String,
    pub order_id: Option<String>,
    /// The payment's currency, else the one expected: what a refund without one is in.
    pub currency: Option<String>,
    /// When it was first seen paid.
    pub since: DateTime<Utc>,
    /// Failed asks in a row so far.
    pub attempts: i32,
    /// What `invoice/info` last said: the amount, currency and order.
    pub invoice_amount: Option<Decimal>,
    pub invoice_currency: Option<String>,
    pub invoice_order: Option<String>,
}

/// Claims up to `limit` watches due now for `owner`, for `lease`.
pub async fn claim_watches(
    pool: &PgPool,
    owner: &str,
    lease: std::time::Duration,
    limit: i64,
) -> Result<Vec<Watch>, StoreError> {
    Ok(sqlx::query_as!(
        Watch,
        r#"with due as (
               select payment_id from recon.refund_watch
               where next_at <= now()
                 and (lease_expires_at is null or lease_expires_at <= now())
               order by next_at
               limit $3
               for update skip locked
           )
           update recon.refund_watch w
           set lease_owner = $1,
               lease_expires_at = now() + $2::int8 * interval '1 millisecond'
           from due, recon.payments p
           where w.payment_id = due.payment_id and p.payment_id = w.payment_id
           returning w.payment_id, p.order_id,
                     coalesce(p.currency, p.expected_currency) as currency, w.since,
                     w.attempts, p.amount as invoice_amount, p.currency as invoice_currency,
                     coalesce(p.provider_order_id, p.order_id) as invoice_order"#,
        owner,
        i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// Ends one look at a watched payment, in one transaction: `facts` booked, and the watch
/// moved to `next` (or ended: `None`), if `owner` still holds its lease. Returns the facts
/// written; a lease lost meanwhile writes nothing (`Ok(None)`).
pub async fn finish_look(
    pool: &PgPool,
    payment_id: &str,
    owner: &str,
    facts: &[MoneyFact],
    next: Option<DateTime<Utc>>,
    disagreement: Option<FlagText>,
) -> Result<Option<u64>, StoreError> {
    let mut tx = pool.begin().await?;
    // The payment first, as every writer of its history locks it.
    sqlx::query!(
        "select 1 as \"one!\" from recon.payments where payment_id = $1 for no key update",
        payment_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let held = sqlx::query_scalar!(
        "select 1 as \"one!\" from recon.refund_watch
         where payment_id = $1 and lease_owner = $2 and lease_expires_at > now()
         for update",
        payment_id,
        owner
    )
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(None);
    }
    let mut columns = MoneyColumns::default();
    for fact in facts {
        columns.push(payment_id, fact, None);
    }
    let written = if columns.is_empty() {
        0
    } else {
        insert(&mut tx, &columns, None).await?
    };
    write_findings(
        &mut tx,
        payment_id,
        &[(crate::domain::FlagKind::StatusApiDisagrees, disagreement)],
    )
    .await?;
    // A refund the merchant made and not seen yet keeps the payment watched until its looks.
    let next = match (next, settle_requests(&mut tx, payment_id).await?) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match next {
        Some(next_at) => {
            sqlx::query!(
                "update recon.refund_watch
                 set looks = looks + 1, next_at = $2, attempts = 0, last_error = null,
                     lease_owner = null, lease_expires_at = null
                 where payment_id = $1",
                payment_id,
                next_at
            )
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query!(
                "delete from recon.refund_watch where payment_id = $1",
                payment_id
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(Some(written))
}

/// A look that got no verified answer: asked again at `retry_at`, `reason` kept.
pub async fn fail_look(
    pool: &PgPool,
    payment_id: &str,
    owner: &str,
    retry_at: DateTime<Utc>,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "update recon.refund_watch
         set attempts = attempts + 1, next_at = $3, last_error = $4,
             lease_owner = null, lease_expires_at = null
         where payment_id = $1 and lease_owner = $2",
        payment_id,
        owner,
        retry_at,
        crate::text::clean(reason, 500),
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Money moved on one reporting day, in one currency, of one kind (`recon.money_by_day`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyDayRow {
    /// The day it counts on: the provider's date, or the day observed; for an adjustment,
    /// the open day it was booked on.
    pub day: NaiveDate,
    pub currency: String,
    pub kind: String,
    /// The closed month these events would have changed; `None` for the day's own.
    pub adjusts_month: Option<NaiveDate>,
    pub events: i64,
    pub payments: i64,
    /// Signed for the merchant, PostgreSQL's exact text.
    pub amount: String,
}

/// Money moved from `from` to `to` (reporting days, inclusive; `None`: open), by day,
/// currency and kind.
pub fn day_rows<'a>(
    pool: &'a PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> BoxStream<'a, Result<MoneyDayRow, sqlx::Error>> {
    sqlx::query_as!(
        MoneyDayRow,
        r#"select day as "day!", currency as "currency!", kind as "kind!", adjusts_month,
                  events as "events!", payments as "payments!", amount::text as "amount!"
           from recon.money_by_day
           where ($1::date is null or day >= $1) and ($2::date is null or day <= $2)
           order by day, currency,
                    array_position(array['payment', 'refund', 'reversal', 'chargeback',
                                         'commission'], kind),
                    adjusts_month nulls first"#,
        from,
        to,
    )
    .fetch(pool)
}

/// What moved from `from` to `to` in one currency: each kind's sum as a positive amount
/// (`None`: nothing of it), and the net signed for the merchant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MoneyTotal {
    pub currency: String,
    pub received: Option<String>,
    /// Payments received.
    pub payments: i64,
    pub refunded: Option<String>,
    pub refunds: i64,
    pub reversed: Option<String>,
    pub reversals: i64,
    pub charged_back: Option<String>,
    pub chargebacks: i64,
    /// Only where the provider stated a net.
    pub commission: Option<String>,
    /// Received less all that went back (refunds, reversals, chargebacks).
    pub net_received: String,
    /// `net_received` less the commission, only where the provider stated one.
    pub net_to_merchant: Option<String>,
    /// Events booked on these days against closed months (included above).
    pub adjustments: i64,
}

pub async fn totals(
    pool: &PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<MoneyTotal>, StoreError> {
    Ok(sqlx::query_as!(
        MoneyTotal,
        r#"select currency as "currency!",
                  (sum(amount) filter (where kind = 'payment'))::text as received,
                  coalesce(sum(events) filter (where kind = 'payment'), 0)::int8 as "payments!",
                  (-sum(amount) filter (where kind = 'refund'))::text as refunded,
                  coalesce(sum(events) filter (where kind = 'refund'), 0)::int8 as "refunds!",
                  (-sum(amount) filter (where kind = 'reversal'))::text as reversed,
                  coalesce(sum(events) filter (where kind = 'reversal'), 0)::int8 as "reversals!",
                  (-sum(amount) filter (where kind = 'chargeback'))::text as charged_back,
                  coalesce(sum(events) filter (where kind = 'chargeback'), 0)::int8
                      as "chargebacks!",
                  (-sum(amount) filter (where kind = 'commission'))::text as commission,
                  coalesce(sum(amount) filter (where kind <> 'commission'), 0)::text
                      as "net_received!",
                  (case when bool_or(kind = 'commission') then sum(amount) end)::text
                      as net_to_merchant,
                  coalesce(sum(events) filter (where adjusts_month is not null), 0)::int8
                      as "adjustments!"
           from recon.money_by_day
           where ($1::date is null or day >= $1) and ($2::date is null or day <= $2)
           group by currency
           order by currency"#,
        from,
        to,
    )
    .fetch_all(pool)
    .await?)
}

/// Payments with money back (a refund, reversal or chargeback) counted from `from` to `to`,
/// by what money has made of them now (`recon.payment_money.money_outcome`):
/// `(outcome, payments)`, in the order partially_refunded, refunded, reversed.
pub async fn return_outcomes(
    pool: &PgPool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"select m.money_outcome as "outcome!", count(*) as "payments!"
           from recon.payment_money m
           where m.money_outcome is not null and m.money_outcome <> 'paid'
             and m.payment_id in (
                 select e.payment_id from recon.money_events e
                 where e.kind in ('refund', 'reversal', 'chargeback')
                   and ($1::date is null or recon.money_day(e) >= $1)
                   and ($2::date is null or recon.money_day(e) <= $2))
           group by 1
           order by array_position(array['partially_refunded', 'refunded', 'reversed'],
                                   m.money_outcome)"#,
        from,
        to,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.outcome, r.payments)).collect())
}

/// Opens the flags of `findings` that hold on `payment_id` (one open per kind; never again
/// about what a closed one said) and resolves those that clear, as the daemon: how many
/// opened, and how many cleared.
pub(super) async fn write_findings(
    conn: &mut PgConnection,
    payment_id: &str,
    findings: &[(crate::domain::FlagKind, Option<FlagText>)],
) -> Result<(u64, u64), StoreError> {
    let mut hold = (Vec::new(), Vec::new(), Vec::new());
    let mut clear = Vec::new();
    for (kind, finding) in findings {
        match finding {
            Some((expected, actual)) => {
                hold.0.push(kind.as_str());
                hold.1.push(expected.as_deref());
                hold.2.push(actual.as_deref());
            }
            None => clear.push(kind.as_str()),
        }
    }
    let opened = sqlx::query!(
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at, follows_id)
         select $1, h.kind, h.expected, h.actual, now(),
                (select max(d.id) from recon.discrepancies d
                 where d.payment_id = $1 and d.kind = h.kind)
         from unnest($2::text[], $3::text[], $4::text[]) as h(kind, expected, actual)
         where not exists (select 1 from recon.open_flags f
                           where f.payment_id = $1 and f.kind = h.kind)
           and not exists (select 1 from recon.discrepancies d
                           where d.payment_id = $1 and d.kind = h.kind
                             and d.expected is not distinct from h.expected
                             and d.actual is not distinct from h.actual)",
        payment_id,
        &hold.0 as &[&str],
        &hold.1 as &[Option<&str>],
        &hold.2 as &[Option<&str>],
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let resolver = crate::domain::Resolver::Cleared;
    let cleared = sqlx::query!(
        "update recon.discrepancies d
         set resolved_at = now(), resolved_by = $3, resolution = $4
         where d.payment_id = $1 and d.kind = any($2::text[]) and d.resolved_at is null",
        payment_id,
        &clear as &[&str],
        resolver.resolved_by(),
        resolver.note(),
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((opened, cleared))
}

/// What `import --refunds` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestsImported {
    pub imported: u64,
    /// Already imported with the same values: left as they were.
    pub already_known: u64,
}

/// Why `import --refunds` wrote nothing: the lines and what is wrong with each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestsRefused {
    /// (line, problem).
    Lines(Vec<(u64, String)>),
    Store(String),
}

impl From<sqlx::Error> for RequestsRefused {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e).to_string())
    }
}

/// Stores the refunds the merchant made, all or none, in one transaction: each names a
/// tracked payment, and a (payment, reference) already stored must have the same values.
/// Each payment with a new refund is looked at through the status API at its refund's next
/// look ([`crate::domain::money::REQUEST_LOOKS`] after it was requested; now, when those
/// have passed), and matched there.
pub async fn import_requests(
    pool: &PgPool,
    rows: &[crate::domain::money::RefundRow],
) -> Result<RequestsImported, RequestsRefused> {
    let line: Vec<i64> = rows.iter().map(|r| r.line as i64).collect();
    let payment_id: Vec<&str> = rows.iter().map(|r| r.payment_id.as_str()).collect();
    let amount: Vec<Decimal> = rows.iter().map(|r| r.amount).collect();
    let currency: Vec<&str> = rows.iter().map(|r| r.currency.as_str()).collect();
    let requested_at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.requested_at).collect();
    let reference: Vec<&str> = rows.iter().map(|r| r.reference.as_str()).collect();
    let looks: Vec<i64> = crate::domain::money::REQUEST_LOOKS
        .iter()
        .map(|d| d.as_millis() as i64)
        .collect();

    let mut tx = pool.begin().await?;
    let problems = sqlx::query!(
        r#"select u.line as "line!",
                  case when p.payment_id is null
                       then 'payment_id: no payment ' || quote_literal(u.payment_id)
                            || ' is tracked; enqueue or import it first'
                       else format('reference: %s of %s is stored already as %s %s requested %s; a refund is kept as first imported: give a changed one its own reference',
                                   quote_literal(u.reference), quote_literal(u.payment_id),
                                   r.amount, r.currency, r.requested_at)
                  end as "problem!"
           from unnest($1::int8[], $2::text[], $3::numeric[], $4::text[], $5::timestamptz[],
                       $6::text[])
                as u(line, payment_id, amount, currency, requested_at, reference)
           left join recon.payments p on p.payment_id = u.payment_id
           left join recon.merchant_refunds r
                  on r.payment_id = u.payment_id and r.reference = u.reference
           where p.payment_id is null
              or (r.id is not null
                  and (r.amount, r.currency, r.requested_at)
                      is distinct from (u.amount, u.currency, u.requested_at))
           order by u.line"#,
        &line,
        &payment_id as &[&str],
        &amount,
        &currency as &[&str],
        &requested_at,
        &reference as &[&str],
    )
    .fetch_all(&mut *tx)
    .await?;
    if !problems.is_empty() {
        return Err(RequestsRefused::Lines(
            problems
                .into_iter()
                .map(|p| (p.line as u64, p.problem))
                .collect(),
        ));
    }
    let imported = sqlx::query_scalar!(
        r#"with added as (
               insert into recon.merchant_refunds
                   (payment_id, amount, currency, requested_at, reference)
               select * from unnest($1::text[], $2::numeric[], $3::text[], $4::timestamptz[],
                                    $5::text[])
               order by 1, 5
               on conflict (payment_id, reference) do nothing
               returning payment_id, requested_at
           ),
           due as (
               select a.payment_id,
                      min(coalesce((select min(a.requested_at + l * interval '1 millisecond')
                                    from unnest($6::int8[]) l
                                    where a.requested_at + l * interval '1 millisecond' > now()),
                                   now())) as next_at
               from added a
               group by a.payment_id
           ),
           watched as (
               insert into recon.refund_watch (payment_id, since, next_at)
               select payment_id, now(), next_at from due
               order by payment_id
               on conflict (payment_id) do update
               set next_at = least(refund_watch.next_at, excluded.next_at)
           )
           select count(*) as "added!" from added"#,
        &payment_id as &[&str],
        &amount,
        &currency as &[&str],
        &requested_at,
        &reference as &[&str],
        &looks,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let imported = u64::try_from(imported).unwrap_or(0);
    Ok(RequestsImported {
        imported,
        already_known: rows.len() as u64 - imported,
    })
}

/// How many refunds, reversals and chargebacks are booked.
pub async fn returns_booked(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select count(*) as "n!" from recon.money_events
           where kind in ('refund', 'reversal', 'chargeback')"#
    )
    .fetch_one(pool)
    .await?)
}
