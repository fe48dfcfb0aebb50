-- Reports that stay flat (issue 17, item 4).
--
-- recon.daily_summary used to aggregate every payment each time it was read: a month's
-- summary cost what the whole table holds, and a BI tool filtering the view by day got no
-- bounds pushed down. It now reads a rollup: one row per (basis, day, currency, outcome,
-- status) with the counts and exact sums the summary shows, kept in the same transaction as
-- every change to a payment, so it is exact at every instant, not only after a refresh.
--
-- How it stays exact:
--   * A payment's contribution to the summary (its "legs": per basis, the payment in its own
--     currency, and its expected amount under the expected currency when that is another
--     one) is a pure function of the columns the summary reads: recon.summary_legs. The open
--     flags it counts are on the payment row too: payments.open_flags, kept by the trigger
--     that keeps recon.open_flags.
--   * A row trigger on recon.payments, fired only when one of those columns changes, appends
--     the old values (sign -1) and the new ones (sign +1) to recon.summary_changes, in the
--     writer's transaction: two plain rows (about 15 µs a payment change here; computing the
--     legs in the trigger cost 120 µs), and no contention: writers share no row.
--   * recon.fold_summary_changes() turns the changes into legs and adds them to
--     recon.summary_rollup, in one statement (the daemon calls it after every sweep; one
--     folder at a time). A reader adds the rollup and the legs of the changes not folded yet,
--     in one snapshot, so folding never changes what it reads.
--   * Money sums are numeric; each nullable sum carries the count of the amounts in it, so a
--     sum over nothing reads as null, as before.
--
-- Days are reporting days in one zone: the zone recorded in recon.summary_zone, which is the
-- database's recon.timezone when the rollup was built. A reader whose recon.timezone differs
-- (a session that sets its own) gets the summary computed from the rows, exact and as slow
-- as before. After `alter database … set recon.timezone`, the daemon's hourly maintenance
-- (and `migrate`) rebuilds the rollup in the new zone (recon.rebuild_summary, which holds
-- writers of payments back while it runs: docs/operations.md).

set local search_path = pg_catalog;

-- The reporting zone, as recon.report_day reads it.
create function recon.report_zone() returns text
language sql stable parallel safe
as $$
    select coalesce(nullif(current_setting('recon.timezone', true), ''), 'Asia/Almaty')
$$;

comment on function recon.report_zone() is
    'The reporting zone: the setting recon.timezone, default Asia/Almaty.';

-- Open flags on the payment row ------------------------------------------------------------

alter table recon.payments add column open_flags text[] not null default '{}';

comment on column recon.payments.open_flags is
    'Kinds of the payment''s open flags, sorted: kept by a trigger on recon.discrepancies (never written by callers; an insert''s value is ignored).';

update recon.payments p
set open_flags = f.kinds
from (select payment_id, array_agg(kind order by kind) as kinds
      from recon.open_flags group by payment_id) f
where f.payment_id = p.payment_id;

-- A new payment has no flag yet, whatever its writer says.
create function recon.payment_starts_without_flags() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    new.open_flags := '{}';
    return new;
end
$$;

create trigger payments_start_without_flags
    before insert on recon.payments
    for each row execute function recon.payment_starts_without_flags();

-- recon.keep_open_flags (migration partitioned_history) also keeps payments.open_flags.
-- Writers lock the payment before its flags change, so this update waits for nobody.
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
        update recon.payments
        set open_flags = coalesce((select array_agg(kind order by kind)
                                   from recon.open_flags where payment_id = changed), '{}')
        where payment_id = changed;
    end if;
    return case when tg_op = 'INSERT' then new end;
end
$$;

-- The rollup -------------------------------------------------------------------------------

create table recon.summary_zone (
    one   boolean primary key default true check (one),
    zone  text not null
);

comment on table recon.summary_zone is
    'The zone whose reporting days recon.summary_rollup counts (one row).';

-- The measures, in one order everywhere below. Nullable sums are stored as 0 beside the
-- count of amounts in them (expected_payments, received_amount_n, fee_n, difference_n).
create table recon.summary_rollup (
    basis                   text not null,
    day                     date not null,
    currency                text,
    outcome                 text not null,
    status                  text not null,
    legs                    bigint not null,
    payments                bigint not null,
    expected_payments       bigint not null,
    expected_amount         numeric not null,
    received_payments       bigint not null,
    received_amount         numeric not null,
    received_amount_n       bigint not null,
    fee                     numeric not null,
    fee_n                   bigint not null,
    payments_without_fee    bigint not null,
    difference              numeric not null,
    difference_n            bigint not null,
    needs_action            bigint not null,
    amount_mismatch         bigint not null,
    currency_mismatch       bigint not null,
    order_mismatch          bigint not null,
    paid_after_deadline     bigint not null,
    not_found               bigint not null,
    unknown_status          bigint not null,
    terminal_status_changed bigint not null,
    polling_abandoned       bigint not null
);

create unique index summary_rollup_key on recon.summary_rollup
    (day, basis, currency, outcome, status) nulls not distinct;

comment on table recon.summary_rollup is
    'recon.daily_summary''s counts and sums by reporting day, folded from recon.summary_changes. Internal: read recon.daily_summary.';

-- The columns the summary reads, as a payment change left them (sign +1) and as it found
-- them (sign -1).
create table recon.summary_changes (
    sign                smallint not null check (sign in (-1, 1)),
    created_at          timestamptz,
    settled_at          timestamptz,
    status              text,
    deadline_missed_at  timestamptz,
    amount              numeric,
    currency            text,
    fee                 numeric,
    expected_amount     numeric,
    expected_currency   text,
    open_flags          text[]
);

comment on table recon.summary_changes is
    'Payment changes not folded into recon.summary_rollup yet, appended in the transaction of the change. Internal.';

-- One payment's contribution to the summary, in the given zone: per basis (created, and
-- settled once it settled), the payment in its own currency (its invoice's once the provider
-- answered, the expected one before), and its expected amount under the expected currency
-- when that is another one. The same definitions as recon.daily_summary_rows below. No SET
-- clause (every name is qualified), so a rebuild's planner inlines it.
create function recon.summary_legs(p recon.summary_changes, zone text)
returns setof recon.summary_rollup
language sql stable parallel safe
as $$
    with base as (
        select b.basis, (b.at at time zone zone)::date as day,
               case when p.status is null then p.expected_currency else p.currency end
                   as home_currency,
               recon.outcome(p.status, p.deadline_missed_at) as outcome,
               coalesce(p.status, 'no_answer') as row_status,
               coalesce(p.status = 'success', false) as paid
        from (values ('created'::text, p.created_at), ('settled', p.settled_at)) b(basis, at)
        where b.at is not null
    ),
    home as (
        select b.*,
               p.expected_currency is not distinct from b.home_currency as expected_here,
               case when b.paid then p.amount end as received,
               case when b.paid and p.currency = p.expected_currency
                    then p.amount - p.expected_amount end as difference
        from base b
    )
    select h.basis, h.day, h.home_currency, h.outcome, h.row_status,
           p.sign::bigint,
           p.sign::bigint,
           p.sign * (h.expected_here and p.expected_amount is not null)::int::bigint,
           p.sign * case when h.expected_here then coalesce(p.expected_amount, 0) else 0 end,
           p.sign * h.paid::int::bigint,
           p.sign * coalesce(h.received, 0),
           p.sign * (h.received is not null)::int::bigint,
           p.sign * case when h.paid then coalesce(p.fee, 0) else 0 end,
           p.sign * (h.paid and p.fee is not null)::int::bigint,
           p.sign * (h.paid and p.fee is null)::int::bigint,
           p.sign * coalesce(h.difference, 0),
           p.sign * (h.difference is not null)::int::bigint,
           p.sign * exists (select 1 from recon.flag_kinds k
                            where k.kind = any (p.open_flags) and k.class = 'action')::int::bigint,
           p.sign * ('amount_mismatch' = any (p.open_flags))::int::bigint,
           p.sign * ('currency_mismatch' = any (p.open_flags))::int::bigint,
           p.sign * ('order_mismatch' = any (p.open_flags))::int::bigint,
           p.sign * ('paid_after_deadline' = any (p.open_flags))::int::bigint,
           p.sign * ('not_found' = any (p.open_flags))::int::bigint,
           p.sign * ('unknown_status' = any (p.open_flags))::int::bigint,
           p.sign * ('terminal_status_changed' = any (p.open_flags))::int::bigint,
           p.sign * ('polling_abandoned' = any (p.open_flags))::int::bigint
    from home h
    union all
    select h.basis, h.day, p.expected_currency, h.outcome, h.row_status,
           p.sign, 0, p.sign * (p.expected_amount is not null)::int,
           p.sign * coalesce(p.expected_amount, 0),
           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
    from home h
    where not h.expected_here
$$;

comment on function recon.summary_legs(recon.summary_changes, text) is
    'What a payment with these values adds to recon.daily_summary (times sign), with reporting days in the given zone. Internal.';

-- A payment's columns the summary reads, as a change row.
create function recon.summary_change(p recon.payments, sign smallint) returns recon.summary_changes
language sql immutable parallel safe
as $$
    select row(sign, p.created_at, p.settled_at, p.status, p.deadline_missed_at, p.amount,
               p.currency, p.fee, p.expected_amount, p.expected_currency, p.open_flags)::recon.summary_changes
$$;

-- The zone the rollup counts in (null before the first build).
create function recon.summary_rollup_zone() returns text
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select zone from recon.summary_zone
$$;

comment on function recon.summary_rollup_zone() is
    'The zone whose reporting days recon.summary_rollup counts; when it is not recon.report_zone(), readers get the summary computed from the rows.';

-- Appends the values the summary reads: as found (-1) and as left (+1).
create function recon.record_summary_change() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'UPDATE' then
        insert into recon.summary_changes values
            (-1, old.created_at, old.settled_at, old.status, old.deadline_missed_at, old.amount,
             old.currency, old.fee, old.expected_amount, old.expected_currency, old.open_flags),
            (1, new.created_at, new.settled_at, new.status, new.deadline_missed_at, new.amount,
             new.currency, new.fee, new.expected_amount, new.expected_currency, new.open_flags);
    elsif tg_op = 'INSERT' then
        insert into recon.summary_changes values
            (1, new.created_at, new.settled_at, new.status, new.deadline_missed_at, new.amount,
             new.currency, new.fee, new.expected_amount, new.expected_currency, new.open_flags);
    else
        insert into recon.summary_changes values
            (-1, old.created_at, old.settled_at, old.status, old.deadline_missed_at, old.amount,
             old.currency, old.fee, old.expected_amount, old.expected_currency, old.open_flags);
    end if;
    return null;
end
$$;

create trigger payments_summarized_insert
    after insert on recon.payments
    for each row execute function recon.record_summary_change();
create trigger payments_summarized_delete
    after delete on recon.payments
    for each row execute function recon.record_summary_change();
-- Only when a column the summary reads changes: claims, releases and routine polls that
-- change none of them cost nothing here.
create trigger payments_summarized_update
    after update on recon.payments
    for each row
    when (old.created_at is distinct from new.created_at
          or old.settled_at is distinct from new.settled_at
          or old.status is distinct from new.status
          or old.deadline_missed_at is distinct from new.deadline_missed_at
          or old.amount is distinct from new.amount
          or old.currency is distinct from new.currency
          or old.fee is distinct from new.fee
          or old.expected_amount is distinct from new.expected_amount
          or old.expected_currency is distinct from new.expected_currency
          or old.open_flags is distinct from new.open_flags)
    execute function recon.record_summary_change();

-- Turns every pending change into legs and adds them to the rollup, in one statement; a
-- group left with no leg goes. One folder at a time (others return at once). Returns the
-- changes folded. Before the rollup's first build (no zone yet) there is nothing to fold.
create function recon.fold_summary_changes() returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
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
    legs as (
        select l.* from moved c cross join lateral recon.summary_legs(c::recon.summary_changes, zone) l
    ),
    grouped as (
        select basis, day, currency, outcome, status,
               sum(legs) as legs, sum(payments) as payments,
               sum(expected_payments) as expected_payments,
               sum(expected_amount) as expected_amount,
               sum(received_payments) as received_payments,
               sum(received_amount) as received_amount,
               sum(received_amount_n) as received_amount_n, sum(fee) as fee,
               sum(fee_n) as fee_n, sum(payments_without_fee) as payments_without_fee,
               sum(difference) as difference, sum(difference_n) as difference_n,
               sum(needs_action) as needs_action, sum(amount_mismatch) as amount_mismatch,
               sum(currency_mismatch) as currency_mismatch,
               sum(order_mismatch) as order_mismatch,
               sum(paid_after_deadline) as paid_after_deadline, sum(not_found) as not_found,
               sum(unknown_status) as unknown_status,
               sum(terminal_status_changed) as terminal_status_changed,
               sum(polling_abandoned) as polling_abandoned
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

comment on function recon.fold_summary_changes() is
    'Adds recon.summary_changes into recon.summary_rollup (what readers see does not change). One caller at a time; returns the changes folded.';

-- Builds the rollup anew from the payments, in the given zone (by default the caller's
-- reporting zone). Holds writers of payments back while it runs (SHARE lock); readers go on.
create function recon.rebuild_summary(zone text default recon.report_zone()) returns bigint
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
    'Rebuilds recon.summary_rollup from the payments with reporting days in the given zone (default: recon.report_zone()). Holds writers of recon.payments back while it runs.';

-- Rebuilds the rollup when the caller's reporting zone is not the rollup's (after
-- `alter database … set recon.timezone`). Returns whether it rebuilt.
create function recon.rebuild_summary_if_zone_changed() returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if recon.summary_rollup_zone() is not distinct from recon.report_zone() then
        return false;
    end if;
    perform recon.rebuild_summary(recon.report_zone());
    return true;
end
$$;

revoke all on function recon.fold_summary_changes() from public;
revoke all on function recon.rebuild_summary(text) from public;
revoke all on function recon.rebuild_summary_if_zone_changed() from public;
revoke all on function recon.record_summary_change() from public;
revoke all on function recon.payment_starts_without_flags() from public;

select recon.rebuild_summary();

-- The readers -------------------------------------------------------------------------------

-- The summary computed from the rows, as recon.daily_summary_between did until now: for a
-- flag filter, instants that are not day starts, and a reader in another zone.
alter function recon.daily_summary_between(timestamptz, timestamptz, text)
    rename to daily_summary_rows;

comment on function recon.daily_summary_rows(timestamptz, timestamptz, text) is
    'recon.daily_summary computed from the payments whose basis time (created_at or settled_at) is in [from_at, to_at) and, when only_flag is given, that have an open flag of that kind; null means unbounded. Reads every payment in the range: recon.daily_summary_between reads the rollup when it can.';

-- The same, behind a PL/pgSQL wall: the planner sees a small function scan, not a plan over
-- every payment, so a query whose fallback branch never runs does not pay for planning (or
-- JIT-compiling) it. The inner query is planned when it runs, with its bounds, by index.
create function recon.daily_summary_computed(
    from_at timestamptz, to_at timestamptz, only_flag text
)
returns table (
    basis text, day date, currency text, outcome text, status text, payments bigint,
    expected_payments bigint, expected_amount numeric,
    received_payments bigint, received_amount numeric,
    fee numeric, payments_without_fee bigint, difference numeric,
    needs_action bigint, amount_mismatch bigint, currency_mismatch bigint,
    order_mismatch bigint, paid_after_deadline bigint, not_found bigint,
    unknown_status bigint, terminal_status_changed bigint, polling_abandoned bigint
)
language plpgsql stable
rows 100
as $$
begin
    return query select * from recon.daily_summary_rows(from_at, to_at, only_flag) r;
end
$$;

-- The legs of the changes not folded yet, also behind a PL/pgSQL wall: the table swings
-- between empty and a sweep's worth, and a stale estimate of it made the planner JIT-compile
-- a 3 ms read. Security definer: the view's readers are not granted the table.
create function recon.summary_pending() returns setof recon.summary_rollup
language plpgsql stable
security definer
set search_path = pg_catalog, pg_temp
rows 100
as $$
begin
    return query
        select l.* from recon.summary_changes c
        cross join lateral recon.summary_legs(c, recon.summary_rollup_zone()) l;
end
$$;

-- Whether the rollup counts days in the caller's reporting zone.
create function recon.summary_rollup_is_current() returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select recon.summary_rollup_zone() is not distinct from recon.report_zone()
$$;

-- The view keeps its columns (and so its grants). A filter on day reaches the rollup's index.
create or replace view recon.daily_summary as
select basis, day, currency, outcome, status,
       sum(payments)::bigint as payments,
       sum(expected_payments)::bigint as expected_payments,
       case when sum(expected_payments) > 0 then sum(expected_amount) end as expected_amount,
       sum(received_payments)::bigint as received_payments,
       case when sum(received_amount_n) > 0 then sum(received_amount) end as received_amount,
       case when sum(fee_n) > 0 then sum(fee) end as fee,
       sum(payments_without_fee)::bigint as payments_without_fee,
       case when sum(difference_n) > 0 then sum(difference) end as difference,
       sum(needs_action)::bigint as needs_action,
       sum(amount_mismatch)::bigint as amount_mismatch,
       sum(currency_mismatch)::bigint as currency_mismatch,
       sum(order_mismatch)::bigint as order_mismatch,
       sum(paid_after_deadline)::bigint as paid_after_deadline,
       sum(not_found)::bigint as not_found,
       sum(unknown_status)::bigint as unknown_status,
       sum(terminal_status_changed)::bigint as terminal_status_changed,
       sum(polling_abandoned)::bigint as polling_abandoned
from (select * from recon.summary_rollup
      union all
      select * from recon.summary_pending()) counted
where recon.summary_rollup_is_current()
group by basis, day, currency, outcome, status
having sum(legs) > 0
union all
select * from recon.daily_summary_computed(null, null, null)
where not recon.summary_rollup_is_current();

-- Whether the rollup serves a summary: whole reporting days in the rollup's zone, no flag
-- filter.
create function recon.summary_rollup_serves(from_at timestamptz, to_at timestamptz, only_flag text)
returns boolean
language sql stable
as $$
    select only_flag is null and recon.summary_rollup_is_current()
       and (from_at is null or from_at = recon.day_start(recon.report_day(from_at)))
       and (to_at is null or to_at = recon.day_start(recon.report_day(to_at)))
$$;

-- Same signature as before. A plain SQL function (no SET clause), so the planner inlines it
-- and a report's bounds reach the rollup's index; the branch not taken is a one-time filter.
create function recon.daily_summary_between(
    from_at timestamptz, to_at timestamptz, only_flag text default null
)
returns table (
    basis text, day date, currency text, outcome text, status text, payments bigint,
    expected_payments bigint, expected_amount numeric,
    received_payments bigint, received_amount numeric,
    fee numeric, payments_without_fee bigint, difference numeric,
    needs_action bigint, amount_mismatch bigint, currency_mismatch bigint,
    order_mismatch bigint, paid_after_deadline bigint, not_found bigint,
    unknown_status bigint, terminal_status_changed bigint, polling_abandoned bigint
)
language sql stable
as $$
    select s.* from recon.daily_summary s
    where recon.summary_rollup_serves(from_at, to_at, only_flag)
      and s.day >= coalesce(recon.report_day(from_at), '-infinity'::date)
      and s.day < coalesce(recon.report_day(to_at), 'infinity'::date)
    union all
    select r.* from recon.daily_summary_computed(from_at, to_at, only_flag) r
    where not recon.summary_rollup_serves(from_at, to_at, only_flag)
$$;

comment on function recon.daily_summary_between(timestamptz, timestamptz, text) is
    'recon.daily_summary restricted to payments whose basis time (created_at or settled_at) is in [from_at, to_at) and, when only_flag is given, that have an open flag of that kind; null means unbounded. Whole reporting days without a flag filter are read from the rollup.';

-- The daemon's roles fold the changes and rebuild after a zone change.
do $$
declare
    g record;
begin
    for g in select distinct a.grantee
             from pg_class c cross join lateral aclexplode(c.relacl) a
             where c.oid = 'recon.events'::regclass and a.privilege_type = 'INSERT'
               and a.grantee <> c.relowner and a.grantee <> 0 loop
        execute format('grant execute on function recon.fold_summary_changes(), recon.rebuild_summary_if_zone_changed() to %s',
                       quote_ident(pg_get_userbyid(g.grantee)));
    end loop;
end
$$;

-- BRIN ranges of the newest pages summarized as they fill, not only at vacuum: the detail
-- report for a recent day reads the pages of that day, not the whole table.
alter index recon.payments_created_at_idx set (autosummarize = on);
alter index recon.payments_settled_at_idx set (autosummarize = on);

-- One payment's events, whatever their delivery state (the full history, by index).
create index events_payment_idx on recon.events (payment_id, id);

-- The digest of a day reads that day only. Expired payments by the day they were seen
-- expired (a payment's row moves to the table's end when its verdict is written, so this
-- time follows the pages as created_at does); flags by the day they opened (appended in
-- time order) and by the day they were resolved (a resolved flag is rewritten wherever there
-- is room in its partition, so this one needs a btree; only resolved flags are in it).
create index payments_expired_seen_idx on recon.payments
    using brin ((coalesce(deadline_missed_at, settled_at))) with (autosummarize = on);
create index discrepancies_detected_idx on recon.discrepancies using brin (detected_at)
    with (autosummarize = on);
create index discrepancies_resolved_idx on recon.discrepancies (resolved_at)
    where resolved_at is not null;

-- The exception queue's ages (`report`'s age line, /metrics' oldest open flag): read from
-- the index alone, whatever the partitions hold besides (bench --year: 23,000 open flags over
-- a year of partitions took most of a day's 150 ms report).
create index discrepancies_open_age_idx on recon.discrepancies (kind, detected_at)
    where resolved_at is null;
