-- The claim: `$1` due by (null: now), `$2` limit, `$3` owner, `$4` lease in milliseconds,
-- `$5` how old (milliseconds) a payment must be for its first poll, `$6` how long before it
-- is due (milliseconds) a routine check is taken. See `claim.rs`.
with urgent as (
    select ctid, payment_id, lease_token as previous_token, next_check_at, true as urgent
    from recon.payments
    where next_check_urgent
      and next_check_at <= coalesce($1, now())
      and (lease_expires_at is null or lease_expires_at <= now())
      -- A new payment waits for poll.first_poll_after (unless someone asked for a look):
      -- before then the provider may not know it yet.
      and (checks > 0 or recheck_requested_at is not null
           or created_at <= now() - $5::int8 * interval '1 millisecond')
    order by next_check_at
    limit $2::int8
    for update skip locked
),
routine as (
    select ctid, payment_id, lease_token as previous_token, next_check_at, false as urgent
    from recon.payments
    where not next_check_urgent
      -- A recheck or a confirmation is due a fixed interval after the answer that scheduled
      -- it, which came a little after its sweep started: it is taken by the sweep nearest
      -- its due time (`$6`: half the gap between sweeps, domain/sweeps.rs), not by the one a
      -- whole interval later. Only when that answer came before this sweep began (a sweep
      -- never takes again what it has just rescheduled), and never after a failed attempt
      -- (its backoff is kept). Deadline checks, above, are never taken early.
      and next_check_at <= coalesce($1, now()) + $6::int8 * interval '1 millisecond'
      and (next_check_at <= coalesce($1, now())
           or (attempts = 0 and last_checked_at < coalesce($1, now())))
      and (lease_expires_at is null or lease_expires_at <= now())
    order by next_check_at
    limit greatest($2 - (select count(*) from urgent), 0)
    for update skip locked
),
-- Deadline checks and first polls before routine rechecks: under overload the routine
-- ones slip, the deadlines do not.
due as (
    select * from urgent
    union all
    select * from routine
),
claimed as (
    update recon.payments p
    set lease_token = nextval('recon.lease_tokens'),
        lease_owner = $3,
        lease_expires_at = now() + $4::int8 * interval '1 millisecond',
        recheck_requested_at = null
    where p.ctid = any(array(select ctid from due))
    returning p.payment_id, p.expected_amount, p.expected_currency, p.order_id,
              p.created_at, p.expires_at, p.status, p.lifetime_ends_at, p.lifetime_source,
              p.checks, p.attempts, p.not_found_since, p.settled_at, p.deadline_missed_at,
              p.lease_token,
              coalesce('expected_amount ' || recon.amount_problem(p.expected_amount),
                       'created_at ' || recon.timestamp_problem(p.created_at),
                       'expires_at ' || recon.timestamp_problem(p.expires_at)) as problem
),
-- The latest flag of each kind of every claimed payment: open, or closed by whom with what
-- values (a flag a person or a rule closed is not opened again for the same finding). Looked
-- up for the whole claim at once (one index scan a month of flags), not payment by payment.
latest_flags as (
    select f.payment_id,
           -- As JSON text: [[kind, open, resolved_by, expected, actual], ...].
           json_agg(json_build_array(f.kind, f.resolved_at is null, f.resolved_by, f.expected,
                                     f.actual) order by f.kind)::text as latest
    from (select distinct on (d.payment_id, d.kind) d.payment_id, d.kind, d.resolved_at,
                 d.resolved_by, d.expected, d.actual
          from recon.discrepancies d
          where d.payment_id = any (array(select payment_id from claimed))
          order by d.payment_id, d.kind, d.id desc) f
    group by f.payment_id
),
-- The latest verified callback of every claimed payment: a claim this poll checks
-- (`callback_disagrees`).
latest_callbacks as (
    select distinct on (cb.payment_id) cb.payment_id, cb.id, cb.received_at, cb.claims_paid,
           cb.amount, cb.currency
    from recon.callbacks cb
    where cb.payment_id = any (array(select payment_id from claimed))
    order by cb.payment_id, cb.id desc
)
-- A value that could not be decoded (see `problem`) is not read at all: the row is parked.
select c.payment_id as "payment_id!", c.lease_token as "lease_token!", c.problem,
       case when c.problem is null then c.expected_amount end as "expected_amount?",
       c.expected_currency as "expected_currency?", c.order_id as "order_id?",
       case when c.problem is null then c.created_at end as "created_at?",
       case when c.problem is null then c.expires_at end as "expires_at?",
       c.status as "status?", c.lifetime_ends_at as "lifetime_ends_at?",
       c.lifetime_source as "lifetime_source?", c.checks as "checks!", c.attempts as "attempts!",
       c.not_found_since as "not_found_since?", c.settled_at as "settled_at?",
       c.deadline_missed_at as "deadline_missed_at?",
       -- null when there is none
       f.latest as "latest_flags?",
       cb.id as "callback_id?", cb.received_at as "callback_received_at?",
       -- (the amount as text: read in Rust, where a value past Decimal is dropped, not fatal)
       cb.claims_paid as "callback_paid?", cb.amount::text as "callback_amount?",
       cb.currency as "callback_currency?",
       -- Whether it came after the payment's latest recorded transition: then a transition
       -- this poll records is the one it announced (the engine's
       -- freedompay_recon_callback_to_transition_seconds). The partitions before the
       -- callback's month are pruned at run time.
       case when cb.id is null then false
            else not exists (select 1 from recon.status_transitions t
                             where t.payment_id = c.payment_id
                               and t.observed_at >= cb.received_at)
       end as "callback_after_transition!",
       now() as "claimed_at!",
       due.previous_token is not null as "recovered!"
from claimed c
join due using (payment_id)
left join latest_flags f using (payment_id)
left join latest_callbacks cb using (payment_id)
order by due.urgent desc, due.next_check_at
