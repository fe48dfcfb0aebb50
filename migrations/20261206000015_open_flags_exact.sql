-- payments.open_flags exact whatever order concurrent writers commit in (issue 23, item 4).
--
-- What it changes, and why:
--
-- 1. recon.keep_open_flags (migration summary_rollup) recomputed payments.open_flags from
--    recon.open_flags in the statement that updates the payment. Under READ COMMITTED that
--    statement's snapshot is taken before it waits for the payment's row lock, and a
--    statement re-checked after the wait keeps its old snapshot for the subquery. So two
--    writers of the same payment, one opening a flag and one resolving another, each read the
--    flags without the other's change and the one that committed last wrote its stale array:
--    payments.open_flags = {} while recon.open_flags held amount_mismatch, for ever (and the
--    summary with it). The daemon locks the payment before writing flags, hand SQL does not.
--    Now the trigger locks the payment row first and reads the flags in the next statement,
--    whose snapshot holds every change committed by a writer that held the lock before it;
--    every later writer waits for this one's commit and reads its change in turn.
--
-- 2. A caller's own update of payments.open_flags is ignored (an insert's already was):
--    only the trigger above writes it.
--
-- 3. recon.repair_open_flags() sets payments.open_flags from the flags themselves
--    (recon.discrepancies not resolved) where it differs; recon.rebuild_summary calls it
--    before it rebuilds. This migration runs it once, so a database that drifted under the
--    old trigger is exact from here on: each repaired payment is a summary change like any
--    other, folded into the rollup by the daemon (no rebuild, no lock on writers).

set local search_path = pg_catalog;

create or replace function recon.keep_open_flags() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    changed text;
begin
    if tg_op = 'INSERT' then
        if new.follows_id is not null
           and not exists (select 1 from recon.discrepancies where id = new.follows_id) then
            raise exception 'follows_id % names no flag', new.follows_id
                using errcode = 'foreign_key_violation';
        end if;
        if new.resolved_at is null then
            insert into recon.open_flags (payment_id, kind, flag_id)
            values (new.payment_id, new.kind, new.id);
            changed := new.payment_id;
        end if;
    elsif old.resolved_at is null and new.resolved_at is not null then
        -- UPDATE (after it, so only a resolution that was written counts)
        delete from recon.open_flags where payment_id = old.payment_id and kind = old.kind;
        changed := old.payment_id;
    end if;
    if changed is not null then
        -- The lock first, the read after it, in statements of their own (see the header).
        perform 1 from recon.payments where payment_id = changed for no key update;
        update recon.payments
        set open_flags = coalesce((select array_agg(kind order by kind)
                                   from recon.open_flags where payment_id = changed), '{}')
        where payment_id = changed;
    end if;
    return case when tg_op = 'INSERT' then new end;
end
$$;

-- Only recon.keep_open_flags and recon.repair_open_flags write open_flags. The first runs as
-- a trigger, so its update of the payment fires this one at depth 2; the second says so in a
-- setting local to its transaction. A caller's update keeps the stored value. (A guard
-- against mistakes, not a wall: the owner can disable triggers.) The WHEN clause keeps every
-- other update of a payment free of it.
create function recon.keep_open_flags_derived() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    if pg_trigger_depth() < 2
       and current_setting('recon.repairing_open_flags', true) is distinct from 'on' then
        new.open_flags := old.open_flags;
    end if;
    return new;
end
$$;

revoke all on function recon.keep_open_flags_derived() from public;

create trigger payments_open_flags_derived
    before update on recon.payments
    for each row
    when (old.open_flags is distinct from new.open_flags)
    execute function recon.keep_open_flags_derived();

-- Sets payments.open_flags from the flags that are open, where it differs; returns how many
-- payments it repaired.
create function recon.repair_open_flags() returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    repaired bigint;
begin
    perform set_config('recon.repairing_open_flags', 'on', true);
    with flags as (
        select payment_id, array_agg(distinct kind order by kind) as kinds
        from recon.discrepancies
        where resolved_at is null
        group by payment_id
    ),
    truth as (
        select p.payment_id, coalesce(f.kinds, '{}') as kinds
        from recon.payments p
        left join flags f using (payment_id)
    )
    update recon.payments p
    set open_flags = t.kinds
    from truth t
    where t.payment_id = p.payment_id and p.open_flags is distinct from t.kinds;
    get diagnostics repaired = row_count;
    perform set_config('recon.repairing_open_flags', 'off', true);
    return repaired;
end
$$;

comment on function recon.repair_open_flags() is
    'Sets payments.open_flags from the open flags (recon.discrepancies not resolved) where it differs; returns the payments repaired. recon.rebuild_summary runs it first.';

revoke all on function recon.repair_open_flags() from public;

-- The rebuild, as before, after repairing payments.open_flags from the open flags.
create or replace function recon.rebuild_summary(zone text default recon.report_zone()) returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    groups bigint;
begin
    perform now() at time zone zone;  -- refuses an unknown zone before anything changes
    lock table recon.payments in share mode;
    perform pg_advisory_xact_lock(hashtext('freedompay-recon summary fold'));
    -- The flags themselves are the source (the changes this writes are truncated below).
    perform recon.repair_open_flags();
    truncate recon.summary_rollup, recon.summary_changes;
    insert into recon.summary_zone (zone) values (zone)
    on conflict (one) do update set zone = excluded.zone;
    insert into recon.summary_rollup
    select l.basis, l.day, l.currency, l.outcome, l.status,
           sum(l.legs), sum(l.payments), sum(l.expected_payments), sum(l.expected_amount),
           sum(l.received_payments), sum(l.received_amount), sum(l.received_amount_n),
           sum(l.fee), sum(l.fee_n), sum(l.payments_without_fee), sum(l.difference),
           sum(l.difference_n), sum(l.needs_action), sum(l.amount_mismatch),
           sum(l.currency_mismatch), sum(l.order_mismatch), sum(l.paid_after_deadline),
           sum(l.not_found), sum(l.unknown_status), sum(l.terminal_status_changed),
           sum(l.polling_abandoned)
    from recon.payments p
    cross join lateral recon.summary_legs(recon.summary_change(p, 1::smallint), zone) l
    group by l.basis, l.day, l.currency, l.outcome, l.status;
    get diagnostics groups = row_count;
    return groups;
end
$$;

comment on function recon.rebuild_summary(text) is
    'Repairs payments.open_flags from the open flags, then rebuilds recon.summary_rollup from the payments with reporting days in the given zone (default: recon.report_zone()). Holds writers of recon.payments back while it runs.';

-- A database that drifted under the old trigger is exact from here on.
select recon.repair_open_flags();
