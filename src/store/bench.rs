//! SQL behind `freedompay-recon bench`, which works on a scratch database of its own.

use sqlx::{PgConnection, PgPool};

use super::StoreError;

/// Creates the benchmark's scratch database. `name` is the benchmark's own (letters, digits
/// and `_`), never input; it is quoted all the same.
pub async fn create_scratch_database(
    admin: &mut PgConnection,
    name: &str,
) -> Result<(), StoreError> {
    let quoted = super::finance::quote_ident(name);
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {quoted}")))
        .execute(admin)
        .await?;
    Ok(())
}

/// Drops the scratch database, closing its connections.
pub async fn drop_scratch_database(admin: &mut PgConnection, name: &str) -> Result<(), StoreError> {
    let quoted = super::finance::quote_ident(name);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {quoted} with (force)"
    )))
    .execute(admin)
    .await?;
    Ok(())
}

/// Empties the scratch database's payments and history (the schema refuses that unless the
/// session says it means it) and inserts `count` payments, `due` of them due now and the
/// rest in a day; then vacuums, so every phase starts from the same table.
pub async fn reset_payments(pool: &PgPool, count: u32, due: u32) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query!("select set_config('recon.allow_truncate', 'on', true)")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("truncate recon.payments, recon.events, recon.open_flags cascade")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    sqlx::query!(
        "insert into recon.payments (payment_id, next_check_at)
         select 'bench-' || g,
                case when g <= $2 then now() - interval '1 second' else now() + interval '1 day' end
         from generate_series(1, $1::int8) g",
        i64::from(count),
        i64::from(due),
    )
    .execute(pool)
    .await?;
    sqlx::query("vacuum analyze recon.payments")
        .execute(pool)
        .await?;
    Ok(())
}

/// Vacuums the payments table, so a claim sees it as a first claim would.
pub async fn vacuum_payments(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("vacuum recon.payments").execute(pool).await?;
    Ok(())
}

/// `(payments reconciled as success, status transitions)`.
pub async fn reconciled(pool: &PgPool) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query!(
        r#"select (select count(*) from recon.payments where status = 'success') as "success!",
                  (select count(*) from recon.status_transitions) as "transitions!""#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.success, row.transitions))
}

/// `(payments answered, payments still leased)`.
pub async fn answered_and_leased(pool: &PgPool) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query!(
        r#"select count(*) filter (where status is not null) as "answered!",
                  count(*) filter (where lease_token is not null) as "leased!"
           from recon.payments"#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.answered, row.leased))
}

/// `(events, events not yet delivered)`.
pub async fn event_delivery(pool: &PgPool) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query!(
        r#"select count(*) as "events!",
                  count(*) filter (where delivered_at is null) as "pending!"
           from recon.events"#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.events, row.pending))
}

/// The claim's plan as it runs (analyzed, then rolled back) for `limit` rows.
pub async fn explain_claim(conn: &mut PgConnection, limit: u32) -> Result<String, StoreError> {
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "explain (analyze, buffers, costs off) {}",
        super::CLAIM_SQL
    )))
    .bind(None::<chrono::DateTime<chrono::Utc>>)
    .bind(i64::from(limit))
    .bind("bench")
    .bind(300_000_i64)
    .bind(0_i64)
    .bind(5_000_i64)
    .fetch_all(conn)
    .await?;
    Ok(plan.join("\n"))
}

/// Synthesizes a year of history directly in SQL: `per_day` payments a day for `days` days
/// ending yesterday, with the default mix's outcomes (70 % paid, 1 in 100 of them short by
/// one, 5 % failed, 25 % expired unpaid), two transitions each (`process`, then the outcome)
/// carrying the body that reported it (compact, in the documented shape: about 320 bytes), a
/// `lifetime_exceeded` flag closed by the rule on every expiry and an open `amount_mismatch`
/// flag on every short payment, and the events the outbox would have written for all of them,
/// delivered. The outbox triggers are off while it runs (`session_replication_role =
/// replica`, the scratch database's owner may) so events carry their own times, as a year of
/// real ones would; what those triggers keep (the payments' pointers to their latest
/// transition and open flags, `recon.open_flags`, `recon.payment_states`) is written here
/// instead (the summary's rollup is left to [`rebuild_summary`]), and every month's
/// partitions are made first, as the daemon's maintenance would have over the year. Returns
/// the payments written.
pub async fn synthesize_year(pool: &PgPool, per_day: i64, days: i64) -> Result<i64, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "select recon.create_month_partition(t, m::date)
         from unnest(array['status_transitions', 'discrepancies', 'events']) t,
              generate_series(date_trunc('month', now() - make_interval(days => $1::int + 1)),
                              now(), interval '1 month') m",
    )
    .bind(days)
    .execute(&mut *tx)
    .await?;
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    let payments = sqlx::query(
        "insert into recon.payments (
             payment_id, expected_amount, expected_currency, order_id, created_at, status,
             amount, currency, fee, provider_order_id, freedom_id, merchant_id, provider_dt,
             lifetime_ends_at, lifetime_source, checks, first_checked_at,
             last_checked_at, last_checked_by, settled_at, next_check_at, next_check_urgent,
             last_transition_no, last_transition_at)
         select id, amount, 'KZT', 'order-' || g, created, status,
                case when status = 'success' then amount - case when g % 100 = 0 then 1 else 0 end end,
                case when status = 'success' then 'KZT' end,
                case when status = 'success' then round(amount * 0.025, 2) end,
                'order-' || g, (700000000 + g)::text, '545443', settled,
                created + interval '24 hours', 'provider_seconds',
                3, created + interval '30 seconds', settled, 'bench:1', settled, null, false,
                2, settled
         from (select g, 'year-' || g as id,
                      date_trunc('day', now()) - make_interval(days => $2::int)
                          + make_interval(days => ((g - 1) / $1)::int)
                          + make_interval(secs => ((g - 1) % $1) * 86400.0 / $1) as created,
                      round((1000 + (g * 7919) % 90000) / 100.0, 2) as amount,
                      case when g % 100 < 70 then 'success'
                           when g % 100 < 75 then 'error'
                           else 'incomplete' end as status
               from generate_series(1, $1 * $2) g) p,
              lateral (select case when status = 'incomplete'
                                   then created + interval '24 hours 5 minutes'
                                   else created + make_interval(secs => 60 + g % 600) end
                              as settled) s",
    )
    .bind(per_day)
    .bind(days)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    for statement in [
        // Each transition carries the body that reported it, as the provider sends it: the
        // first says `process` (no fee yet), the second the outcome.
        r#"insert into recon.status_transitions
             (payment_id, observation_no, from_status, to_status, observed_at, provider_dt, body,
              request_id)
         select p.payment_id, t.no, t.from_status, t.to_status, t.at, t.dt,
                -- compact, in the documented shape (responses/success-seed-example.json)
                format('{"paymentStatus":"%s","amount":%s,"currency":"KZT","fee":%s,'
                       '"discount":%s,"freedomId":"%s","orderId":"%s","merchantId":545443,'
                       '"merchantName":"Merchant name","description":"Order %s",'
                       '"lifetime":86400,"facilitatorIBAN":"KZ505518729251417KZT",'
                       '"mcc":"5599","dt":"%s"}',
                       t.to_status,
                       case when t.no = 2 then coalesce(p.amount, p.expected_amount)
                            else p.expected_amount end,
                       case when t.no = 2 then coalesce(p.fee, 0)::text else 'null' end,
                       case when t.no = 2 then '0' else 'null' end,
                       p.freedom_id, p.order_id, substr(p.order_id, 7),
                       to_char(t.dt at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'))::json,
                gen_random_uuid()
         from recon.payments p,
              lateral (values (1, null, 'process', p.first_checked_at, p.created_at),
                              (2, 'process', p.status, p.settled_at, p.settled_at))
                  as t(no, from_status, to_status, at, dt)"#,
        "insert into recon.discrepancies
             (payment_id, kind, expected, actual, detected_at, resolved_at, resolved_by, resolution)
         select payment_id, 'lifetime_exceeded', 'settled by ' || lifetime_ends_at, 'process',
                settled_at, settled_at, 'rule:expired_unpaid',
                'expired unpaid: the provider says no money moved'
         from recon.payments where status = 'incomplete'
         union all
         select payment_id, 'amount_mismatch', expected_amount::text, amount::text, settled_at,
                null, null, null
         from recon.payments where amount <> expected_amount",
        "insert into recon.events
             (type, payment_id, occurred_at, payload, created_at, delivered_at, attempts,
              first_attempt_at, next_attempt_at)
         select type, payment_id, at, payload, at, at + interval '1 second', 1,
                at + interval '1 second', at
         from (select 'status_changed' as type, t.payment_id, t.observed_at as at,
                      jsonb_build_object(
                          'from_status', t.from_status, 'to_status', t.to_status,
                          'observation_no', t.observation_no, 'provider_dt', t.provider_dt,
                          'amount', p.amount::text, 'currency', p.currency,
                          'expected_amount', p.expected_amount::text,
                          'expected_currency', p.expected_currency, 'order_id', p.order_id)
                          as payload
               from recon.status_transitions t join recon.payments p using (payment_id)
               union all
               select 'flag_opened', payment_id, detected_at,
                      jsonb_build_object('flag_id', id, 'kind', kind, 'expected', expected,
                                         'actual', actual)
               from recon.discrepancies
               union all
               select 'flag_resolved', payment_id, resolved_at,
                      jsonb_build_object('flag_id', id, 'kind', kind, 'resolved_by', resolved_by,
                                         'resolution', resolution)
               from recon.discrepancies where resolved_at is not null) e
         order by at, payment_id",
        // The states recon.record_summary_changes appends: the payment as inserted, after its
        // first answer and as it settled (with its open flags).
        "insert into recon.payment_states
             (payment_id, valid_from, created_at, settled_at, status, deadline_missed_at,
              amount, currency, fee, expected_amount, expected_currency, open_flags)
         select s.*
         from recon.payments p,
              lateral (values
                  (p.payment_id, p.created_at, p.created_at, null::timestamptz, null::text,
                   null::timestamptz, null::numeric, null::text, null::numeric,
                   p.expected_amount, p.expected_currency, '{}'::text[]),
                  (p.payment_id, p.first_checked_at, p.created_at, null, 'process', null,
                   p.expected_amount, 'KZT', null, p.expected_amount, p.expected_currency, '{}'),
                  (p.payment_id, p.settled_at, p.created_at, p.settled_at, p.status, null,
                   p.amount, p.currency, p.fee, p.expected_amount, p.expected_currency,
                   case when p.amount <> p.expected_amount then '{amount_mismatch}'
                        else '{}' end::text[])) as s
         order by 2",
        "insert into recon.open_flags (payment_id, kind, flag_id)
         select payment_id, kind, id from recon.discrepancies where resolved_at is null",
        "update recon.payments p set open_flags = f.kinds
         from (select payment_id, array_agg(kind order by kind) as kinds
               from recon.open_flags group by payment_id) f
         where f.payment_id = p.payment_id",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(payments as i64)
}

/// Builds the summary's rollup from every payment, as after a change of reporting zone.
pub async fn rebuild_summary(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("select recon.rebuild_summary()")
        .execute(pool)
        .await?;
    Ok(())
}

/// Bytes on disk of each history table, indexes and partitions included, by table.
pub async fn table_bytes(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select t.name,
                (select coalesce(sum(pg_total_relation_size(r)), 0)::int8
                 from (select relid as r from pg_partition_tree(('recon.' || t.name)::regclass)
                       union
                       select ('recon.' || t.name)::regclass) parts)
         from unnest(array['payments', 'status_transitions', 'discrepancies', 'open_flags',
                           'events', 'summary_rollup', 'payment_states'])
              with ordinality as t(name, n)
         order by t.n",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Makes `count` payments of the synthesized year due now, for the claim to find.
pub async fn make_due(pool: &PgPool, count: i64) -> Result<(), StoreError> {
    sqlx::query(
        "update recon.payments set next_check_at = now() - interval '1 second',
                                   next_check_urgent = true
         where payment_id in (select payment_id from recon.payments
                              order by created_at desc limit $1)",
    )
    .bind(count)
    .execute(pool)
    .await?;
    Ok(())
}

/// One payment's whole history, as a person looking into it reads it: its transitions, its
/// flags and its events. Returns the rows read.
pub async fn payment_history(pool: &PgPool, payment_id: &str) -> Result<usize, StoreError> {
    let transitions: Vec<(i32,)> = sqlx::query_as(
        "select observation_no from recon.status_transitions where payment_id = $1
         order by observation_no",
    )
    .bind(payment_id)
    .fetch_all(pool)
    .await?;
    let flags: Vec<(i64,)> =
        sqlx::query_as("select id from recon.discrepancies where payment_id = $1 order by id")
            .bind(payment_id)
            .fetch_all(pool)
            .await?;
    let events: Vec<(i64,)> =
        sqlx::query_as("select id from recon.events where payment_id = $1 order by id")
            .bind(payment_id)
            .fetch_all(pool)
            .await?;
    Ok(transitions.len() + flags.len() + events.len())
}

/// Event retention for the oldest month only: the retention is set so that exactly the
/// oldest monthly event partition has expired. Returns the partitions dropped.
pub async fn retain_oldest_event_month(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    let oldest_month_end: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "select min((to_date(substring(c.relname from '^events_(\\d{4}_\\d{2})$'), 'YYYY_MM')
                     + interval '1 month')::timestamp at time zone 'UTC')
         from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'recon.events'::regclass and c.relname ~ '^events_\\d{4}_\\d{2}$'",
    )
    .fetch_one(pool)
    .await?;
    let Some(month_end) = oldest_month_end else {
        return Ok(Vec::new());
    };
    // Whole days since that month ended: its partition is past the retention, the next
    // month's (which ended a month later) is not.
    let days = (chrono::Utc::now() - month_end).num_days().max(1);
    super::maintenance::drop_expired_events(
        pool,
        std::time::Duration::from_secs(days as u64 * 86_400),
        true,
    )
    .await
}

/// `vacuum analyze` of every history table.
pub async fn vacuum_history(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query(
        "vacuum analyze recon.payments, recon.status_transitions, recon.discrepancies, recon.events",
    )
    .execute(pool)
    .await?;
    Ok(())
}
