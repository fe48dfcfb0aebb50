-- The engine's PostgreSQL cost, again (issue 25, item 7). Measured with log_statement_stats
-- (CPU per top-level statement) over `run --once` on 20,000 due payments, every one paid:
-- per payment, the transitions' insert 59 µs, the money received 51 µs, the record's update
-- of the payments 49 µs, the rollup's fold 31.5 µs, the claim 24.6 µs. Against 3805828's
-- 52, 0, 30, 0 and 16 µs.
--
-- What changes, and why (nothing about what is recorded or refused):
--
-- 1. recon.summary_legs is one SELECT instead of two CTEs over a VALUES list. The planner
--    inlines it either way, but the CTEs were evaluated again for every change row: the fold
--    spent about 10 µs a change row there (a paid payment makes three: its intake, and its
--    record as found and as left). Same rows, same values: every leg and measure is the same
--    expression of the same columns (checked against the old definition on 200,000 random
--    change rows, nulls included, and by the tests that compare the rollup with the summary
--    from the rows).
--
-- 2. recon.fold_summary_changes runs without JIT: the fold's plan crosses jit_above_cost,
--    and compiling it cost about 25 ms a fold, more than the fold of a sweep's changes.
--
-- 3. A transition is accepted as its payment's next one, or as the one it already points at,
--    by a statement trigger over the statement's new rows instead of a row trigger per
--    transition (a security-definer PL/pgSQL call, its search_path set and reset, and a
--    look-up, for every row). The rule is the same, checked set-wise after the insert: the
--    daemon's transitions, each the one its payment already points at, with one read; any
--    other under the payments' row locks, so two writers racing for one observation are still
--    decided by the lock: the second waits and is refused (23505). One difference, where no
--    writer goes:
--    several new transitions of one payment in one statement are accepted when each is after
--    the payment's latest (with distinct observation numbers), in any order; the row trigger
--    took them in the order the rows came. Like the outbox's trigger and the money events'
--    keys, it is a trigger of the partitioned table, so it sees what is inserted through it:
--    grant-daemon gives INSERT on recon.status_transitions only, never on a month of it.
--
-- And outside this file: the daemon's insert of money events looks each fact's key up (one
-- index probe a fact), where the planner hashed the whole keys table for an anti-join.

set local search_path = pg_catalog;

-- 1. The legs, one SELECT -------------------------------------------------------------------
create or replace function recon.summary_legs(p recon.summary_changes, zone text)
returns setof recon.summary_rollup
language sql stable parallel safe
as $$
    -- h: the payment's values, whichever leg; b: its bases (created, and settled once it
    -- settled); l: its leg in its own currency (home), and its expected amount under the
    -- expected currency when that is another one.
    select b.basis,
           (b.at at time zone zone)::date,
           case when l.home then h.home_currency else p.expected_currency end,
           h.outcome,
           h.row_status,
           p.sign::bigint,
           case when l.home then p.sign else 0 end::bigint,
           (p.sign * ((not l.home or h.expected_here) and p.expected_amount is not null)::int)::bigint,
           p.sign * case when not l.home or h.expected_here then coalesce(p.expected_amount, 0) else 0 end,
           (p.sign * (l.home and h.paid)::int)::bigint,
           p.sign * case when l.home and h.paid then coalesce(p.amount, 0) else 0 end,
           (p.sign * (l.home and h.paid and p.amount is not null)::int)::bigint,
           p.sign * case when l.home and h.paid then coalesce(p.fee, 0) else 0 end,
           (p.sign * (l.home and h.paid and p.fee is not null)::int)::bigint,
           (p.sign * (l.home and h.paid and p.fee is null)::int)::bigint,
           p.sign * case when l.home and h.paid and p.currency = p.expected_currency
                         then coalesce(p.amount - p.expected_amount, 0) else 0 end,
           (p.sign * (case when l.home and h.paid and p.currency = p.expected_currency
                           then p.amount - p.expected_amount end is not null)::int)::bigint,
           case when l.home then h.needs_action else 0 end,
           case when l.home then p.sign * ('amount_mismatch' = any (p.open_flags))::int else 0 end::bigint,
           case when l.home then p.sign * ('currency_mismatch' = any (p.open_flags))::int else 0 end::bigint,
           case when l.home then p.sign * ('order_mismatch' = any (p.open_flags))::int else 0 end::bigint,
           case when l.home then p.sign * ('paid_after_deadline' = any (p.open_flags))::int else 0 end::bigint,
           case when l.home then p.sign * ('not_found' = any (p.open_flags))::int else 0 end::bigint,
           case when l.home then p.sign * ('unknown_status' = any (p.open_flags))::int else 0 end::bigint,
           case when l.home then p.sign * ('terminal_status_changed' = any (p.open_flags))::int else 0 end::bigint,
           case when l.home then p.sign * ('polling_abandoned' = any (p.open_flags))::int else 0 end::bigint
    from (select case when p.status is null then p.expected_currency else p.currency end
                     as home_currency,
                 recon.outcome(p.status, p.deadline_missed_at) as outcome,
                 coalesce(p.status, 'no_answer') as row_status,
                 coalesce(p.status = 'success', false) as paid,
                 p.expected_currency is not distinct from
                     (case when p.status is null then p.expected_currency else p.currency end)
                     as expected_here,
                 case when p.open_flags is null or p.open_flags = '{}' then 0::bigint
                      else p.sign * (exists (select 1 from recon.flag_kinds k
                                             where k.kind = any (p.open_flags)
                                               and k.class = 'action'))::int::bigint
                 end as needs_action) h,
         (values ('created'::text, p.created_at), ('settled', p.settled_at)) b(basis, at),
         (values (true), (false)) l(home)
    where b.at is not null and (l.home or not h.expected_here)
$$;

comment on function recon.summary_legs(recon.summary_changes, text) is
    'What a payment with these values adds to recon.daily_summary (times sign), with reporting days in the given zone. Internal.';

-- 2. The fold without JIT ------------------------------------------------------------------------
alter function recon.fold_summary_changes() set jit = off;

-- 3. Transitions in order, once per statement -------------------------------------------------
create function recon.keep_transitions_in_order() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    refused record;
begin
    -- The daemon's case: each new transition is the one its payment already points at
    -- (written with the payment's state, under its row lock, in this transaction). Read
    -- without a lock: a pointer that names a transition another transaction wrote names one
    -- that is committed, and the transitions' key refuses it twice.
    perform 1
    from added a
    join recon.payments p using (payment_id)
    where a.observation_no is distinct from p.last_transition_no
       or a.observed_at is distinct from p.last_transition_at
    limit 1;
    if not found then
        return null;
    end if;
    -- Otherwise each payment's pointer is read under its row lock (a writer racing for the
    -- same observation waits here, then reads what the other wrote): a new transition is
    -- the one it points at, or after its latest, once.
    with latest as materialized (
        select p.payment_id, p.last_transition_no, p.last_transition_at
        from recon.payments p
        where p.payment_id in (select payment_id from added)
        order by p.payment_id
        for update
    ),
    judged as (
        select a.payment_id, a.observation_no,
               (a.observation_no = l.last_transition_no and a.observed_at = l.last_transition_at)
                   as pointed_at,
               (l.last_transition_no is null or a.observation_no > l.last_transition_no)
                   as after_latest,
               count(*) over (partition by a.payment_id, a.observation_no) as same_observation
        from added a
        join latest l using (payment_id)
    )
    select j.payment_id, j.observation_no into refused
    from judged j
    where not (coalesce(j.pointed_at, false) or (j.after_latest and j.same_observation = 1))
    order by j.payment_id, j.observation_no
    limit 1;
    if found then
        raise exception 'payment % has a transition at or after observation % already',
                        refused.payment_id, refused.observation_no
            using errcode = 'unique_violation',
                  hint = 'a transition is appended after the payment''s latest one (payments.last_transition_no)';
    end if;
    -- The payments then point at their latest new transition.
    update recon.payments p
    set last_transition_no = n.observation_no,
        last_transition_at = n.observed_at
    from (select distinct on (payment_id) payment_id, observation_no, observed_at
          from added
          order by payment_id, observation_no desc) n
    where p.payment_id = n.payment_id
      and (p.last_transition_no is null or p.last_transition_no < n.observation_no);
    return null;
end
$$;

comment on function recon.keep_transitions_in_order() is
    'Refuses a new transition that is neither the one its payment points at nor after its latest (23505), then points each payment at its latest new transition. Internal.';

revoke all on function recon.keep_transitions_in_order() from public;

drop trigger status_transitions_unique on recon.status_transitions;
drop function recon.keep_transition_unique();

create trigger status_transitions_in_order
    after insert on recon.status_transitions
    referencing new table as added
    for each statement execute function recon.keep_transitions_in_order();
