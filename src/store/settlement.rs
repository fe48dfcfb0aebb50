//! Matching the money to the bank (`recon.settlement_matches`, `recon.settlement_flags`):
//! loads the registry lines, payouts and credits not matched yet, lets
//! [`crate::domain::settlement`] decide, and writes its matches, the money the registry states
//! and the flags, in one transaction. One matcher at a time across instances (a transaction
//! advisory lock): an import and the daemon never match the same money twice.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use super::money::{MoneyColumns, insert, settle_requests, write_findings};
use crate::domain::FlagKind;
use crate::domain::bank::RegistryKind;
use crate::domain::money::{MoneyFact, MoneyKind, MoneySource};
use crate::domain::settlement::{
    self, BankMatch, Coverage, Credit, Finding, PaymentSide, Payout, Policy, RegistryLine,
    Standing, Verdict, judge_line,
};

/// The key of the advisory lock one matcher holds (`hashtext('recon.settlement')`, fixed).
const MATCHER_LOCK: i64 = 0x7265_636f_6e53_746c;

/// What the matching is told by the settings.
#[derive(Debug, Clone, Copy)]
pub struct SettlePolicy {
    pub bank: Policy,
    /// The statement account's currency: only payouts in it meet its credits.
    pub bank_currency: crate::domain::Currency,
    /// `registry.expect_within`.
    pub expect_within: std::time::Duration,
    /// `registry.commission_percent`.
    pub commission_percent: Option<Decimal>,
}

/// What a matching run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Registry lines matched to their payments now.
    pub lines_matched: u64,
    /// Money events booked from the registries (commissions, returns).
    pub booked: u64,
    /// Matches of payouts to bank credits made now.
    pub payouts_matched: u64,
    /// Flags opened, and closed because they no longer hold.
    pub flags_opened: u64,
    pub flags_cleared: u64,
}

/// Matches what is not matched yet, opens the flags that hold and clears those that do not.
pub async fn settle(pool: &PgPool, policy: &SettlePolicy) -> Result<Settled, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query!("select pg_advisory_xact_lock($1)", MATCHER_LOCK)
        .execute(&mut *tx)
        .await?;
    let settled = settle_in(&mut tx, policy).await?;
    tx.commit().await?;
    Ok(settled)
}

/// What undoing a match did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undone {
    NoSuchMatch,
    /// It was undone before, by `by` at `at`.
    Already {
        by: String,
        at: DateTime<Utc>,
    },
    /// Undone; `with_it` matches made after it were undone with it, and the run after.
    Done {
        with_it: u64,
        settled: Settled,
    },
}

/// Undoes match `id` as `by`, with `note`: its pairs are never matched again by a rule, the
/// matches made after it on the same side (the same payment, for a registry match) are undone
/// with it, and everything is matched again, in one transaction.
pub async fn undo(
    pool: &PgPool,
    id: i64,
    by: &str,
    note: &str,
    policy: &SettlePolicy,
) -> Result<Undone, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query!("select pg_advisory_xact_lock($1)", MATCHER_LOCK)
        .execute(&mut *tx)
        .await?;
    let Some(target) = sqlx::query!(
        "select side, payment_id, undone_by, undone_at from recon.settlement_matches where id = $1",
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Undone::NoSuchMatch);
    };
    if let (Some(by), Some(at)) = (target.undone_by, target.undone_at) {
        return Ok(Undone::Already { by, at });
    }
    sqlx::query!(
        "update recon.settlement_matches
         set undone_at = now(), undone_by = $2, undo_note = $3
         where id = $1",
        id,
        by,
        note,
    )
    .execute(&mut *tx)
    .await?;
    let with_it = sqlx::query!(
        "update recon.settlement_matches
         set undone_at = now(), undone_by = 'daemon', undone_with = $1,
             undo_note = 'matched again after match ' || $1 || ' was undone'
         where id > $1 and undone_at is null and side = $2
           and (side = 'bank' or payment_id = $3)",
        id,
        target.side,
        target.payment_id,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let settled = settle_in(&mut tx, policy).await?;
    tx.commit().await?;
    Ok(Undone::Done { with_it, settled })
}

async fn settle_in(conn: &mut PgConnection, policy: &SettlePolicy) -> Result<Settled, StoreError> {
    let mut settled = Settled::default();
    match_registry(conn, policy, &mut settled).await?;
    flag_not_in_registry(conn, policy, &mut settled).await?;
    match_bank(conn, policy, &mut settled).await?;
    Ok(settled)
}

/// Registry lines (not fees) with no match in force, each judged against its payment.
async fn match_registry(
    conn: &mut PgConnection,
    policy: &SettlePolicy,
    settled: &mut Settled,
) -> Result<(), StoreError> {
    let lines: Vec<RegistryLine> = sqlx::query!(
        r#"select l.id, l.operation_id, l.kind, l.amount, l.commission, l.net, l.currency,
                  l.operation_at,
                  case when l.kind = 'payment' then coalesce(l.parent_payment_id, l.operation_id)
                       else l.parent_payment_id end as payment_id
           from recon.registry_lines l
           where l.kind <> 'fee'
             and not exists (select 1 from recon.settlement_matches m
                             where m.registry_line_id = l.id and m.undone_at is null)
           order by l.operation_at, l.id"#
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .filter_map(|r| {
        Some(RegistryLine {
            id: r.id,
            operation_id: r.operation_id,
            kind: RegistryKind::parse(&r.kind)?,
            amount: r.amount,
            commission: r.commission,
            net: r.net,
            currency: r.currency,
            operation_at: r.operation_at,
            payment_id: r.payment_id,
        })
    })
    .collect();
    if lines.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<String> = lines.iter().filter_map(|l| l.payment_id.clone()).collect();
    ids.sort();
    ids.dedup();
    sqlx::query!("select recon.lock_payments($1)", &ids)
        .execute(&mut *conn)
        .await?;
    let mut payments = payment_sides(conn, &ids).await?;
    let refused: HashSet<(i64, String)> = sqlx::query!(
        r#"select registry_line_id as "line!", payment_id as "payment_id!"
           from recon.settlement_matches
           where side = 'registry' and undone_at is not null and undone_with is null"#
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.line, r.payment_id))
    .collect();

    let mut matches = MatchColumns::default();
    let mut facts: Vec<(String, MoneyFact)> = Vec::new();
    let mut findings: HashMap<String, Option<(String, String)>> = HashMap::new();
    let mut unknown = Vec::new();
    for line in &lines {
        let payment = line.payment_id.as_ref().and_then(|id| payments.get(id));
        let is_refused = line
            .payment_id
            .as_ref()
            .is_some_and(|p| refused.contains(&(line.id, p.clone())));
        match judge_line(
            line,
            payment,
            is_refused,
            policy.bank.tolerance,
            policy.commission_percent,
        ) {
            Verdict::Unknown(actual) => unknown.push((line, actual)),
            Verdict::Matched {
                matched_amount,
                mismatch,
                commission,
                book_return,
            } => {
                let payment_id = line.payment_id.clone().unwrap_or_default();
                let currency: crate::domain::Currency = match line.currency.parse() {
                    Ok(c) => c,
                    Err(_) => continue,
                };
                if let Some(kept) = commission {
                    let key = if line.kind == RegistryKind::Payment {
                        "commission".to_owned()
                    } else {
                        format!("commission:{}", line.operation_id)
                    };
                    facts.push((
                        payment_id.clone(),
                        MoneyFact {
                            kind: MoneyKind::Commission,
                            amount: -kept,
                            provider_amount: Some(kept),
                            currency,
                            provider_ref: Some(line.operation_id.clone()),
                            provider_status: None,
                            provider_at: Some(line.operation_at),
                            source: MoneySource::Registry,
                            key,
                        },
                    ));
                }
                let side = payments.entry(payment_id.clone()).or_default();
                if line.kind != RegistryKind::Payment {
                    side.matched_returns.push(line.amount.abs());
                    if book_return {
                        side.returns
                            .push((line.amount.abs(), line.currency.clone()));
                        let kind = match line.kind {
                            RegistryKind::Reversal => MoneyKind::Reversal,
                            RegistryKind::Chargeback => MoneyKind::Chargeback,
                            _ => MoneyKind::Refund,
                        };
                        facts.push((
                            payment_id.clone(),
                            MoneyFact::returned(
                                kind,
                                line.amount,
                                currency,
                                Some(&line.operation_id),
                                Some(&payment_id),
                                None,
                                Some(line.operation_at),
                                MoneySource::Registry,
                            ),
                        ));
                    }
                }
                if line.kind == RegistryKind::Payment || mismatch.is_some() {
                    findings.insert(payment_id.clone(), mismatch);
                }
                matches.push(line, &payment_id, matched_amount);
            }
        }
    }
    settled.lines_matched = matches.insert(conn).await?;
    if !facts.is_empty() {
        let mut columns = MoneyColumns::default();
        for (payment_id, fact) in &facts {
            columns.push(payment_id, fact, None);
        }
        settled.booked = insert(conn, &columns, None).await?;
        // Money back may answer a refund the merchant made (or be one nobody made).
        let mut booked_for: Vec<&str> = facts
            .iter()
            .filter(|(_, f)| f.kind != MoneyKind::Commission)
            .map(|(p, _)| p.as_str())
            .collect();
        booked_for.sort_unstable();
        booked_for.dedup();
        for payment_id in booked_for {
            settle_requests(conn, payment_id).await?;
        }
    }
    // A line that agrees clears the payment's flag only where one is open: most have none.
    let agreeing: Vec<String> = findings
        .iter()
        .filter(|(_, f)| f.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    let open: HashSet<String> = sqlx::query_scalar!(
        "select payment_id from recon.open_flags
         where kind = 'registry_amount_mismatch' and payment_id = any($1)",
        &agreeing,
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    findings.retain(|p, f| f.is_some() || open.contains(p));
    for (payment_id, finding) in &findings {
        let (opened, cleared) = write_findings(
            conn,
            payment_id,
            &[(
                FlagKind::RegistryAmountMismatch,
                finding.clone().map(|(e, a)| (Some(e), Some(a))),
            )],
        )
        .await?;
        settled.flags_opened += opened;
        settled.flags_cleared += cleared;
    }
    // A line matched now explains its earlier registry_unknown.
    let matched_subjects: Vec<String> = lines
        .iter()
        .filter(|l| !unknown.iter().any(|(u, _)| u.id == l.id))
        .map(|l| format!("registry_line:{}", l.operation_id))
        .collect();
    settled.flags_cleared += clear_settlement_flags(
        conn,
        FlagKind::RegistryUnknown,
        &matched_subjects,
        "the payment is tracked and paid now: the line is matched to it",
    )
    .await?;
    let findings: Vec<Finding> = unknown
        .iter()
        .map(|(line, actual)| Finding {
            kind: FlagKind::RegistryUnknown,
            subject: format!("registry_line:{}", line.operation_id),
            currency: Some(line.currency.clone()),
            amount: Some(line.amount),
            day: None,
            holds: Some((
                format!("a paid payment tracked here ({})", line.kind.as_str()),
                actual.clone(),
            )),
        })
        .collect();
    let (opened, _) = write_settlement_flags(conn, &findings, line_payment(&unknown)).await?;
    settled.flags_opened += opened;
    Ok(())
}

fn line_payment(unknown: &[(&RegistryLine, String)]) -> HashMap<String, String> {
    unknown
        .iter()
        .filter_map(|(l, _)| {
            Some((
                format!("registry_line:{}", l.operation_id),
                l.payment_id.clone()?,
            ))
        })
        .collect()
}

/// What is recorded of `ids`: every one tracked gets an entry.
async fn payment_sides(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, PaymentSide>, StoreError> {
    let mut sides: HashMap<String, PaymentSide> = sqlx::query!(
        r#"select payment_id, coalesce(status, 'no answer yet') as "status!"
           from recon.payments where payment_id = any($1)"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| {
        (
            r.payment_id,
            PaymentSide {
                status: r.status,
                ..PaymentSide::default()
            },
        )
    })
    .collect();
    let events = sqlx::query!(
        r#"select payment_id, kind, amount, currency, source from recon.money_events
           where payment_id = any($1)"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    for e in events {
        let Some(side) = sides.get_mut(&e.payment_id) else {
            continue;
        };
        match e.kind.as_str() {
            "payment" => side.received = Some((e.amount, e.currency)),
            "commission" if e.source != "registry" => {
                side.commission = Some(side.commission.unwrap_or_default() - e.amount);
            }
            "refund" | "reversal" | "chargeback" => side.returns.push((-e.amount, e.currency)),
            _ => {}
        }
    }
    let matched = sqlx::query!(
        r#"select m.payment_id as "payment_id!", l.amount
           from recon.settlement_matches m
           join recon.registry_lines l on l.id = m.registry_line_id
           where m.payment_id = any($1) and m.undone_at is null and l.kind <> 'payment'"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    for m in matched {
        if let Some(side) = sides.get_mut(&m.payment_id) {
            side.matched_returns.push(m.amount.abs());
        }
    }
    Ok(sides)
}

/// Registry matches as columns, for one statement.
#[derive(Default)]
struct MatchColumns {
    line: Vec<i64>,
    payment_id: Vec<String>,
    currency: Vec<String>,
    amount: Vec<Decimal>,
    matched_amount: Vec<Decimal>,
}

impl MatchColumns {
    fn push(&mut self, line: &RegistryLine, payment_id: &str, matched_amount: Decimal) {
        self.line.push(line.id);
        self.payment_id.push(payment_id.to_owned());
        self.currency.push(line.currency.clone());
        self.amount.push(line.amount);
        self.matched_amount.push(matched_amount);
    }

    async fn insert(&self, conn: &mut PgConnection) -> Result<u64, StoreError> {
        Ok(sqlx::query!(
            "insert into recon.settlement_matches
                 (side, rule, registry_line_id, payment_id, currency, amount, matched_amount,
                  matched_by)
             select 'registry', 'provider_id', u.line, u.payment_id, u.currency, u.amount,
                    u.matched, 'daemon'
             from unnest($1::int8[], $2::text[], $3::text[], $4::numeric[], $5::numeric[])
                  as u(line, payment_id, currency, amount, matched)",
            &self.line,
            &self.payment_id,
            &self.currency,
            &self.amount,
            &self.matched_amount,
        )
        .execute(conn)
        .await?
        .rows_affected())
    }
}

/// Paid payments no registry lists though the registries list operations `expect_within`
/// after it was paid (and that long has passed), since the registries began (the reporting
/// day of the earliest operation any lists): `not_in_registry`; and those listed now, cleared.
async fn flag_not_in_registry(
    conn: &mut PgConnection,
    policy: &SettlePolicy,
    settled: &mut Settled,
) -> Result<(), StoreError> {
    let expect_ms = i64::try_from(policy.expect_within.as_millis()).unwrap_or(i64::MAX);
    let cleared = crate::domain::Resolver::Cleared;
    let cleared_now = sqlx::query!(
        "update recon.discrepancies d
         set resolved_at = now(), resolved_by = $1,
             resolution = 'a registry lists it now'
         where d.kind = 'not_in_registry' and d.resolved_at is null
           and exists (select 1 from recon.settlement_matches m
                       join recon.registry_lines l on l.id = m.registry_line_id
                       where m.payment_id = d.payment_id and m.undone_at is null
                         and l.kind = 'payment')",
        cleared.resolved_by(),
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    settled.flags_cleared += cleared_now;
    let missing: Vec<(String, DateTime<Utc>)> = sqlx::query!(
        r#"with reach as (
               select date_trunc('day', min(operation_at), recon.report_zone()) as first,
                      max(operation_at) as last
               from recon.registry_lines)
           select e.payment_id, coalesce(e.provider_at, e.observed_at) as "paid_at!"
           from recon.money_events e, reach
           where e.kind = 'payment'
             and reach.first is not null
             and e.observed_at >= reach.first - interval '1 day'
             and coalesce(e.provider_at, e.observed_at) >= reach.first
             and coalesce(e.provider_at, e.observed_at) + $1::int8 * interval '1 millisecond'
                 <= least(reach.last, now())
             and not exists (select 1 from recon.settlement_matches m
                             join recon.registry_lines l on l.id = m.registry_line_id
                             where m.payment_id = e.payment_id and m.undone_at is null
                               and l.kind = 'payment')
             and not exists (select 1 from recon.open_flags f
                             where f.payment_id = e.payment_id and f.kind = 'not_in_registry')
           order by e.payment_id"#,
        expect_ms,
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.payment_id, r.paid_at))
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = missing.iter().map(|(id, _)| id.clone()).collect();
    sqlx::query!("select recon.lock_payments($1)", &ids)
        .execute(&mut *conn)
        .await?;
    let expect = humantime::format_duration(policy.expect_within).to_string();
    for (payment_id, paid_at) in &missing {
        let (opened, _) = write_findings(
            conn,
            payment_id,
            &[(
                FlagKind::NotInRegistry,
                Some((
                    Some(format!(
                        "in a registry within {expect} of being paid ({})",
                        paid_at.format("%Y-%m-%d %H:%M UTC")
                    )),
                    Some("in none imported".to_owned()),
                )),
            )],
        )
        .await?;
        settled.flags_opened += opened;
    }
    Ok(())
}

/// Payouts to bank credits, and the flags on both.
async fn match_bank(
    conn: &mut PgConnection,
    policy: &SettlePolicy,
    settled: &mut Settled,
) -> Result<(), StoreError> {
    let payouts: Vec<Payout> = sqlx::query!(
        r#"select payout as "payout!", currency as "currency!", payout_date as "payout_date!",
                  net as "net!"
           from recon.payouts where currency = $1"#,
        policy.bank_currency.as_str(),
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| Payout {
        name: r.payout,
        currency: r.currency,
        date: r.payout_date,
        net: r.net,
    })
    .collect();
    let credits: Vec<Credit> = sqlx::query!(
        "select id, value_date, amount from recon.bank_lines
         where from_provider and direction = 'credit'"
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| Credit {
        id: r.id,
        date: r.value_date,
        amount: r.amount,
    })
    .collect();
    let standing_rows = sqlx::query!(
        r#"select rule, payouts, credits, undone_at is not null as "undone!",
                  undone_with is null as "by_a_person!"
           from recon.settlement_matches where side = 'bank'"#
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut standing = Standing::default();
    let mut in_force = Vec::new();
    for row in standing_rows {
        if row.undone {
            if row.by_a_person {
                for p in &row.payouts {
                    for c in &row.credits {
                        standing.refused.insert((p.clone(), *c));
                    }
                }
            }
            continue;
        }
        standing.matched_payouts.extend(row.payouts.iter().cloned());
        standing.matched_credits.extend(row.credits.iter().copied());
        in_force.push(BankMatch {
            rule: match row.rule.as_str() {
                "late" => settlement::Rule::Late,
                "credit_many_payouts" => settlement::Rule::CreditManyPayouts,
                "payout_many_credits" => settlement::Rule::PayoutManyCredits,
                _ => settlement::Rule::Exact,
            },
            payouts: row.payouts,
            credits: row.credits,
        });
    }
    let found = settlement::match_bank(&payouts, &credits, &standing, &policy.bank);
    if !found.is_empty() {
        let net: HashMap<&str, Decimal> =
            payouts.iter().map(|p| (p.name.as_str(), p.net)).collect();
        let amount: HashMap<i64, Decimal> = credits.iter().map(|c| (c.id, c.amount)).collect();
        for m in &found {
            sqlx::query!(
                "insert into recon.settlement_matches
                     (side, rule, payouts, credits, currency, amount, matched_amount, matched_by)
                 values ('bank', $1, $2, $3, $4, $5, $6, 'daemon')",
                m.rule.as_str(),
                &m.payouts,
                &m.credits,
                policy.bank_currency.as_str(),
                m.payouts
                    .iter()
                    .filter_map(|p| net.get(p.as_str()))
                    .sum::<Decimal>(),
                m.credits
                    .iter()
                    .filter_map(|c| amount.get(c))
                    .sum::<Decimal>(),
            )
            .execute(&mut *conn)
            .await?;
        }
        settled.payouts_matched = found.len() as u64;
    }
    in_force.extend(found);
    let coverage = sqlx::query!(
        r#"select (select greatest(max(f.period_to), max(l.value_date))
                   from recon.bank_files f left join recon.bank_lines l on l.file_id = f.id)
                      as bank_through,
                  (select max(payout_date) from recon.payouts where currency = $1)
                      as registry_through"#,
        policy.bank_currency.as_str(),
    )
    .fetch_one(&mut *conn)
    .await?;
    let findings = settlement::bank_findings(
        &payouts,
        &credits,
        &in_force,
        Coverage {
            bank_through: coverage.bank_through,
            registry_through: coverage.registry_through,
        },
        &policy.bank,
    );
    let (opened, cleared) = write_settlement_flags(conn, &findings, HashMap::new()).await?;
    settled.flags_opened += opened;
    settled.flags_cleared += cleared;
    Ok(())
}

/// Opens the findings that hold (one open per subject and kind; never again what a closed
/// one said) and clears, as the daemon, the open ones that no longer do.
async fn write_settlement_flags(
    conn: &mut PgConnection,
    findings: &[Finding],
    payments: HashMap<String, String>,
) -> Result<(u64, u64), StoreError> {
    let mut hold = HoldColumns::default();
    let mut clear: HashMap<FlagKind, Vec<String>> = HashMap::new();
    for f in findings {
        match &f.holds {
            Some((expected, actual)) => {
                hold.kind.push(f.kind.as_str());
                hold.subject.push(f.subject.clone());
                hold.payment_id.push(payments.get(&f.subject).cloned());
                hold.currency.push(f.currency.clone());
                hold.amount.push(f.amount);
                hold.day.push(f.day);
                hold.expected.push(expected.clone());
                hold.actual.push(actual.clone());
            }
            None => clear.entry(f.kind).or_default().push(f.subject.clone()),
        }
    }
    let opened = sqlx::query!(
        "insert into recon.settlement_flags
             (kind, subject, payment_id, currency, amount, day, expected, actual)
         select h.* from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                                $6::date[], $7::text[], $8::text[])
              as h(kind, subject, payment_id, currency, amount, day, expected, actual)
         where not exists (select 1 from recon.settlement_flags f
                           where f.subject = h.subject and f.kind = h.kind
                             and (f.resolved_at is null
                                  or (f.expected, f.actual)
                                     is not distinct from (h.expected, h.actual)))",
        &hold.kind as &[&str],
        &hold.subject,
        &hold.payment_id as &[Option<String>],
        &hold.currency as &[Option<String>],
        &hold.amount as &[Option<Decimal>],
        &hold.day as &[Option<NaiveDate>],
        &hold.expected,
        &hold.actual,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let mut cleared = 0;
    for (kind, subjects) in clear {
        cleared += clear_settlement_flags(
            conn,
            kind,
            &subjects,
            match kind {
                FlagKind::PayoutNotAtBank => "matched to a bank credit within the window",
                _ => "matched to a payout",
            },
        )
        .await?;
    }
    Ok((opened, cleared))
}

#[derive(Default)]
struct HoldColumns {
    kind: Vec<&'static str>,
    subject: Vec<String>,
    payment_id: Vec<Option<String>>,
    currency: Vec<Option<String>>,
    amount: Vec<Option<Decimal>>,
    day: Vec<Option<NaiveDate>>,
    expected: Vec<String>,
    actual: Vec<String>,
}

async fn clear_settlement_flags(
    conn: &mut PgConnection,
    kind: FlagKind,
    subjects: &[String],
    why: &str,
) -> Result<u64, StoreError> {
    if subjects.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query!(
        "update recon.settlement_flags
         set resolved_at = now(), resolved_by = 'daemon', resolution = $3
         where kind = $1 and subject = any($2) and resolved_at is null",
        kind.as_str(),
        subjects,
        why,
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// A match, as `match --list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRow {
    pub id: i64,
    pub side: String,
    pub rule: String,
    pub what: String,
    pub currency: String,
    pub amount: Decimal,
    pub matched_amount: Option<Decimal>,
    pub matched_at: DateTime<Utc>,
    pub undone: Option<String>,
}

/// Every match, oldest first.
pub async fn matches(pool: &PgPool) -> Result<Vec<MatchRow>, StoreError> {
    Ok(sqlx::query!(
        r#"select m.id, m.side, m.rule, m.currency, m.amount, m.matched_amount, m.matched_at,
                  case when m.side = 'registry'
                       then 'registry line ' || l.operation_id || ' (' || l.kind || ') -> payment '
                            || m.payment_id
                       else 'payouts ' || array_to_string(m.payouts, ', ') || ' -> bank lines '
                            || array_to_string(m.credits, ', ') end as "what!",
                  case when m.undone_at is not null
                       then 'undone ' || to_char(m.undone_at at time zone 'UTC',
                                                 'YYYY-MM-DD HH24:MI') || ' by ' || m.undone_by
                            || ': ' || m.undo_note end as undone
           from recon.settlement_matches m
           left join recon.registry_lines l on l.id = m.registry_line_id
           order by m.id"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| MatchRow {
        id: r.id,
        side: r.side,
        rule: r.rule,
        what: r.what,
        currency: r.currency,
        amount: r.amount,
        matched_amount: r.matched_amount,
        matched_at: r.matched_at,
        undone: r.undone,
    })
    .collect())
}

/// Closes open settlement flag `id` as `by`, with `note`; `false` when there is no such open
/// flag.
pub async fn resolve_flag(
    pool: &PgPool,
    id: i64,
    by: &str,
    note: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query!(
        "update recon.settlement_flags
         set resolved_at = now(), resolved_by = $2, resolution = $3
         where id = $1 and resolved_at is null",
        id,
        by,
        note,
    )
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// One currency's money for a month, from the payments to the bank (`report --settlement`).
/// Amounts are positive, PostgreSQL's exact text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MonthMoney {
    pub currency: String,
    /// Payments received (gross), by the day the money moved (`recon.money_by_day`).
    pub paid_gross: String,
    pub refunds: String,
    pub reversals: String,
    pub chargebacks: String,
    /// What the provider kept (stated by the poll, the status API or a registry).
    pub commission: String,
    /// Paid less everything that went back and the commission: what the provider owes.
    pub net_due: String,
    /// The nets of the registry lines of operations in the month.
    pub in_registries: String,
    /// The nets of the payouts dated in the month (those above zero).
    pub paid_out: String,
    /// Payouts of the month whose net is zero or less: withheld or carried forward.
    pub withheld: String,
    /// The month's payouts matched to bank credits (their nets: a credit paying several
    /// payouts, of this month and another, is counted by the payouts it paid).
    pub arrived_at_bank: String,
    /// The month's payouts no credit is matched to yet.
    pub in_transit: String,
    /// Credits from the provider dated in the month that no payout explains.
    pub unexplained: String,
}

/// The money of the month `first..=last` (reporting days in recon.timezone), per currency.
pub async fn month_money<'e>(
    db: impl sqlx::PgExecutor<'e>,
    first: NaiveDate,
    last: NaiveDate,
    bank_currency: &str,
) -> Result<Vec<MonthMoney>, StoreError> {
    Ok(sqlx::query_as!(
        MonthMoney,
        r#"with money as (
               select currency,
                      coalesce(sum(amount) filter (where kind = 'payment'), 0) as paid,
                      coalesce(-sum(amount) filter (where kind = 'refund'), 0) as refunds,
                      coalesce(-sum(amount) filter (where kind = 'reversal'), 0) as reversals,
                      coalesce(-sum(amount) filter (where kind = 'chargeback'), 0) as chargebacks,
                      coalesce(-sum(amount) filter (where kind = 'commission'), 0) as commission,
                      coalesce(sum(amount), 0) as net
               from recon.money_by_day where day between $1 and $2 group by currency
           ),
           registered as (
               select currency,
                      sum(recon.registry_net(kind, amount, commission, net)) as net
               from recon.registry_lines
               where (operation_at at time zone recon.report_zone())::date between $1 and $2
               group by currency
           ),
           payouts as (
               select p.currency,
                      coalesce(sum(p.net) filter (where p.net > 0), 0) as paid_out,
                      coalesce(-sum(p.net) filter (where p.net <= 0), 0) as withheld,
                      coalesce(sum(p.net) filter (where p.net > 0 and p.bank_lines is null), 0)
                          as in_transit,
                      coalesce(sum(p.net) filter (where p.net > 0 and p.bank_lines is not null), 0)
                          as arrived
               from recon.payouts p
               where p.payout_date between $1 and $2
               group by p.currency
           ),
           unexplained as (
               select $3::text as currency, coalesce(sum(b.amount), 0) as amount
               from recon.bank_lines b
               where b.from_provider and b.direction = 'credit'
                 and b.value_date between $1 and $2
                 and not exists (select 1 from recon.settlement_matches m
                                 where m.side = 'bank' and m.undone_at is null
                                   and b.id = any(m.credits))
               having count(*) > 0
           ),
           currencies as (
               select currency from money union select currency from registered
               union select currency from payouts union select currency from unexplained
           )
           select c.currency as "currency!",
                  coalesce(m.paid, 0)::text as "paid_gross!",
                  coalesce(m.refunds, 0)::text as "refunds!",
                  coalesce(m.reversals, 0)::text as "reversals!",
                  coalesce(m.chargebacks, 0)::text as "chargebacks!",
                  coalesce(m.commission, 0)::text as "commission!",
                  coalesce(m.net, 0)::text as "net_due!",
                  coalesce(r.net, 0)::text as "in_registries!",
                  coalesce(p.paid_out, 0)::text as "paid_out!",
                  coalesce(p.withheld, 0)::text as "withheld!",
                  coalesce(p.arrived, 0)::text as "arrived_at_bank!",
                  coalesce(p.in_transit, 0)::text as "in_transit!",
                  coalesce(u.amount, 0)::text as "unexplained!"
           from currencies c
           left join money m using (currency)
           left join registered r using (currency)
           left join payouts p using (currency)
           left join unexplained u using (currency)
           order by c.currency"#,
        first,
        last,
        bank_currency,
    )
    .fetch_all(db)
    .await?)
}

/// The month's money to the bank as a close signed it, when `first`'s month is closed now:
/// the figures, when and by whom, and their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMoney {
    pub figures: Vec<MonthMoney>,
    pub closed_at: DateTime<Utc>,
    pub on_behalf_of: String,
    pub sha256: String,
}

pub async fn signed_month_money(
    pool: &PgPool,
    first: NaiveDate,
) -> Result<Option<SignedMoney>, StoreError> {
    // Through the readers' view of the closes: a reader role may print it too.
    let row = sqlx::query!(
        r#"select settlement_figures as "figures!", settlement_sha256 as "figures_sha256!",
                  closed_at as "at!", on_behalf_of as "on_behalf_of!"
           from recon.month_closes
           where month = $1 and settlement_figures is not null"#,
        first,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|r| {
        Some(SignedMoney {
            figures: serde_json::from_value(r.figures).ok()?,
            closed_at: r.at,
            on_behalf_of: r.on_behalf_of,
            sha256: r.figures_sha256,
        })
    }))
}

/// One line behind the month's money table (`report --settlement --lines`): a registry line,
/// a payout or a bank credit, and what it was matched to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MoneyLine {
    /// `registry_line`, `payout` or `bank_credit`.
    pub source: String,
    /// The operation id, the payout's name, or the bank line's number.
    pub reference: String,
    pub day: NaiveDate,
    pub currency: String,
    /// Kind of operation (a registry line's), or the rule it was matched by.
    pub kind: String,
    /// Signed for the merchant (a registry line's net; a payout's net; a credit's amount).
    pub amount: String,
    /// The payment, the payouts or the credits it was matched to; empty: not matched.
    pub matched_to: String,
    /// Open flags about it.
    pub flags: String,
}

/// Every line of the month `first..=last`: registry lines by operation day, payouts and
/// credits by their date.
pub async fn month_lines(
    pool: &PgPool,
    first: NaiveDate,
    last: NaiveDate,
    bank_currency: &str,
) -> Result<Vec<MoneyLine>, StoreError> {
    Ok(sqlx::query_as!(
        MoneyLine,
        r#"select 'registry_line' as "source!", l.operation_id as "reference!",
                  (l.operation_at at time zone recon.report_zone())::date as "day!",
                  l.currency as "currency!", l.kind as "kind!",
                  recon.registry_net(l.kind, l.amount, l.commission, l.net)::text as "amount!",
                  coalesce((select string_agg('payment ' || m.payment_id, ', ')
                            from recon.settlement_matches m
                            where m.registry_line_id = l.id and m.undone_at is null), '')
                      as "matched_to!",
                  coalesce((select string_agg(f.kind, ', ') from recon.open_settlement_flags f
                            where f.subject = 'registry_line:' || l.operation_id), '')
                      as "flags!"
           from recon.registry_lines l
           where (l.operation_at at time zone recon.report_zone())::date between $1 and $2
           union all
           select 'payout', p.payout, p.payout_date, p.currency,
                  coalesce((select string_agg(distinct m.rule, ', ')
                            from recon.settlement_matches m
                            where m.side = 'bank' and m.undone_at is null
                              and p.payout = any(m.payouts)),
                           case when p.net <= 0 then 'withheld' else 'not matched' end),
                  p.net::text,
                  coalesce((select 'bank lines ' || string_agg(b.number, ', ' order by b.id)
                            from recon.bank_lines b where b.id = any(p.bank_lines)), ''),
                  coalesce((select string_agg(f.kind, ', ') from recon.open_settlement_flags f
                            where f.subject = 'payout:' || p.payout), '')
           from recon.payouts p
           where p.payout_date between $1 and $2
           union all
           select 'bank_credit', coalesce(b.number, b.id::text), b.value_date, $3::text,
                  coalesce((select string_agg(distinct m.rule, ', ')
                            from recon.settlement_matches m
                            where m.side = 'bank' and m.undone_at is null
                              and b.id = any(m.credits)), 'not matched'),
                  b.amount::text,
                  coalesce((select 'payouts ' || string_agg(p, ', ')
                            from recon.settlement_matches m, unnest(m.payouts) p
                            where m.side = 'bank' and m.undone_at is null
                              and b.id = any(m.credits)), ''),
                  coalesce((select string_agg(f.kind, ', ') from recon.open_settlement_flags f
                            where f.subject = 'bank_line:' || b.id), '')
           from recon.bank_lines b
           where b.from_provider and b.direction = 'credit' and b.value_date between $1 and $2
           order by 1 desc, 3, 2"#,
        first,
        last,
        bank_currency,
    )
    .fetch_all(pool)
    .await?)
}
