-- The engine's PostgreSQL cost, a third time (issue 25, item 7). Measured with
-- log_statement_stats over `run --once` on 20,000 due payments, every one paid, µs of CPU per
-- payment: the rollup's fold 56, the transitions' insert 49 (3805828: 26), the claim 52
-- (3805828: 32). Looked at with auto_explain inside the triggers:
--
-- 1. The fold computed the legs of every change row, then sorted all of them (on disk: the
--    sort outgrew work_mem) to group them. But most change rows cancel: a payment's intake
--    (+1) and its first record's "as found" (-1) are the same values with opposite signs, and
--    so is every state a payment passes through between two folds. The fold now adds the
--    signs of identical change rows first (one hash over the changes), and computes the legs
--    only of what is left, each weighted by its net count (every leg and measure is its
--    change's sign times a function of its values: recon.summary_legs). Same rollup: on
--    122,388 changes of 30,000 payments (chains of statuses, mixed currencies and scales,
--    moved creation days) both folds gave what recon.rebuild_summary gives, value for value
--    and as text; 60,000 changes of 20,000 paid payments fold in 235 ms instead of 720 ms.
--    Its grouping runs in memory (work_mem 64 MB, one fold at a time: it holds an advisory
--    lock).
--
--    The net count is a bigint outside the change row: many payments with one creation time
--    (an intake of thousands in one statement) make identical change rows beyond smallint.
--
-- 2. The outbox's trigger on transitions hashed the whole payments table to join a
--    statement's few hundred transitions to their payments (the planner's choice while the
--    table is small); it now looks each payment up (enable_hashjoin and enable_mergejoin off
--    inside the function): 19 ms for 500 transitions before, 10 ms after, the same at any
--    size of the table.

set local search_path = pg_catalog;

-- 1. The fold, net of what cancels ---------------------------------------------------------
create or replace function recon.fold_summary_changes() returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set jit = off
set work_mem = '64MB'
as $$
declare
    zone text := recon.summary_rollup_zone();
    folded bigint;
begin
    if zone is null or not pg_try_advisory_xact_lock(hashtext('freedompay-recon summary fold')) then
        return 0;
    end if;
    with moved as (
        delete from recon.summary_changes returning *
    ),
    -- Identical changes add up; a value found and left again (+1, -1) cancels.
    net as (
        select (case when n.total > 0 then 1 else -1 end)::smallint as sign, abs(n.total) as weight,
               n.created_at, n.settled_at, n.status, n.deadline_missed_at, n.amount,
               n.currency, n.fee, n.expected_amount, n.expected_currency, n.open_flags
        from (select m.created_at, m.settled_at, m.status, m.deadline_missed_at, m.amount,
                     m.currency, m.fee, m.expected_amount, m.expected_currency, m.open_flags,
                     sum(m.sign) as total
              from moved m
              group by m.created_at, m.settled_at, m.status, m.deadline_missed_at, m.amount,
                       m.currency, m.fee, m.expected_amount, m.expected_currency,
                       m.open_flags) n
        where n.total <> 0
    ),
    legs as (
        select l.*, c.weight
        from net c
        cross join lateral recon.summary_legs(
            row(c.sign, c.created_at, c.settled_at, c.status, c.deadline_missed_at, c.amount,
                c.currency, c.fee, c.expected_amount, c.expected_currency,
                c.open_flags)::recon.summary_changes,
            zone) l
    ),
    grouped as (
        select basis, day, currency, outcome, status,
               sum(legs * weight) as legs, sum(payments * weight) as payments,
               sum(expected_payments * weight) as expected_payments,
               sum(expected_amount * weight) as expected_amount,
               sum(received_payments * weight) as received_payments,
               sum(received_amount * weight) as received_amount,
               sum(received_amount_n * weight) as received_amount_n,
               sum(fee * weight) as fee,
               sum(fee_n * weight) as fee_n,
               sum(payments_without_fee * weight) as payments_without_fee,
               sum(difference * weight) as difference,
               sum(difference_n * weight) as difference_n,
               sum(needs_action * weight) as needs_action,
               sum(amount_mismatch * weight) as amount_mismatch,
               sum(currency_mismatch * weight) as currency_mismatch,
               sum(order_mismatch * weight) as order_mismatch,
               sum(paid_after_deadline * weight) as paid_after_deadline,
               sum(not_found * weight) as not_found,
               sum(unknown_status * weight) as unknown_status,
               sum(terminal_status_changed * weight) as terminal_status_changed,
               sum(polling_abandoned * weight) as polling_abandoned
        from legs
        group by basis, day, currency, outcome, status
    ),
    merged as (  -- a data-modifying CTE runs to completion, read or not
        insert into recon.summary_rollup as r
        select * from grouped
        on conflict (day, basis, currency, outcome, status) do update set
            legs = r.legs + excluded.legs,
            payments = r.payments + excluded.payments,
            expected_payments = r.expected_payments + excluded.expected_payments,
            expected_amount = r.expected_amount + excluded.expected_amount,
            received_payments = r.received_payments + excluded.received_payments,
            received_amount = r.received_amount + excluded.received_amount,
            received_amount_n = r.received_amount_n + excluded.received_amount_n,
            fee = r.fee + excluded.fee,
            fee_n = r.fee_n + excluded.fee_n,
            payments_without_fee = r.payments_without_fee + excluded.payments_without_fee,
            difference = r.difference + excluded.difference,
            difference_n = r.difference_n + excluded.difference_n,
            needs_action = r.needs_action + excluded.needs_action,
            amount_mismatch = r.amount_mismatch + excluded.amount_mismatch,
            currency_mismatch = r.currency_mismatch + excluded.currency_mismatch,
            order_mismatch = r.order_mismatch + excluded.order_mismatch,
            paid_after_deadline = r.paid_after_deadline + excluded.paid_after_deadline,
            not_found = r.not_found + excluded.not_found,
            unknown_status = r.unknown_status + excluded.unknown_status,
            terminal_status_changed = r.terminal_status_changed + excluded.terminal_status_changed,
            polling_abandoned = r.polling_abandoned + excluded.polling_abandoned
    )
    select count(*) into folded from moved;
    -- A group whose every payment moved elsewhere shows nothing: it goes.
    delete from recon.summary_rollup where legs = 0;
    return folded;
end
$$;

-- 2. The outbox looks each transition's payment up --------------------------------------------
alter function recon.events_from_transitions() set enable_hashjoin = off;
alter function recon.events_from_transitions() set enable_mergejoin = off;
