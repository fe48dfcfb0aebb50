//! Money events (`recon.money_events`): each provider fact about money written once.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use crate::domain::money::MoneyFact;

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
}

impl<'a> MoneyColumns<'a> {
    pub(super) fn push(&mut self, payment_id: &'a str, fact: &'a MoneyFact) {
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
    }

    pub(super) fn is_empty(&self) -> bool {
        self.payment_id.is_empty()
    }
}

/// Writes the facts not written yet (by payment and key; the first of a repeated key in
/// `facts` wins) and returns how many. The caller holds the payments' row locks, or the
/// table's trigger takes them (`recon.keep_money_event_unique`): a fact another writer
/// stored first is skipped here, or refused there (23505) if it commits in between.
pub(super) async fn insert(
    conn: &mut PgConnection,
    facts: &MoneyColumns<'_>,
) -> Result<u64, StoreError> {
    Ok(sqlx::query!(
        "insert into recon.money_events
             (payment_id, kind, amount, provider_amount, currency, provider_ref,
              provider_status, provider_at, source, fact_key)
         select f.payment_id, f.kind, f.amount, f.provider_amount, f.currency, f.provider_ref,
                f.provider_status, f.provider_at, f.source, f.fact_key
         from (select distinct on (u.payment_id, u.fact_key) u.*
               from unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::text[],
                           $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[])
                    with ordinality as u(payment_id, kind, amount, provider_amount, currency,
                                         provider_ref, provider_status, provider_at, source,
                                         fact_key, n)
               order by u.payment_id, u.fact_key, u.n) f
         where not exists (select 1 from recon.money_events m
                           where m.payment_id = f.payment_id and m.fact_key = f.fact_key)
         order by f.payment_id",
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
    )
    .execute(conn)
    .await?
    .rows_affected())
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
        columns.push(payment_id, fact);
    }
    let written = if columns.is_empty() {
        0
    } else {
        insert(&mut tx, &columns).await?
    };
    tx.commit().await?;
    Ok(written)
}
