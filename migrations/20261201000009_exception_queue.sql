-- An exception queue finance can work to zero: outcomes apart from exceptions, flags that
-- stay closed, and columns that cannot be misread.
--
-- 1. Every flag kind has a class: `action` (money or truth at stake: a person must act) or
--    `info` (an outcome worth recording that nobody can act on). recon.open_discrepancies
--    holds action flags only.
-- 2. A new action kind, `paid_after_deadline`: a `success` seen after the payment was seen
--    unpaid past its deadline (a late payment, possibly a refund to make).
-- 3. payments.deadline_missed_at remembers that a deadline passed unpaid, so the payment's
--    outcome (`expired_unpaid`) and a late payment are known after the lifetime flag closed.
-- 4. A flag links the earlier flag of the same kind it follows (follows_id).
-- 5. Flags already open on an upgraded database are closed here by the rule the daemon now
--    applies (flags.auto_close = ["expired_unpaid"], the default), through the resolution
--    columns: history is never rewritten.
-- 6. The finance views are rebuilt with columns that say what they hold (expected_*,
--    received_*, invoice_*, difference, outcome, reporting days); grants on them are kept.

-- The finance views are rebuilt below (their columns change names). A view someone built on
-- one of them would make that fail halfway; say so first, in one line, naming it.
do $$
declare
    dependents text;
begin
    select string_agg(distinct dep.relnamespace::regnamespace::text || '.' || dep.relname
                      || ' (on recon.' || ref.relname || ')', ', ')
    into dependents
    from pg_depend d
    join pg_rewrite r on r.oid = d.objid
    join pg_class dep on dep.oid = r.ev_class
    join pg_class ref on ref.oid = d.refobjid
    where d.classid = 'pg_rewrite'::regclass
      and d.refclassid = 'pg_class'::regclass
      and ref.relnamespace = 'recon'::regnamespace
      and ref.relname in ('reconciliation', 'open_discrepancies', 'daily_summary',
                          'discrepancy_history')
      and dep.oid <> ref.oid
      and not (dep.relnamespace = 'recon'::regnamespace
               and dep.relname in ('reconciliation', 'open_discrepancies', 'daily_summary',
                                   'discrepancy_history'));
    if dependents is not null then
        raise exception 'these views are built on finance views this upgrade rebuilds with new column names: %; drop them, migrate, then create them again on the new columns (docs/finance.md)', dependents
            using errcode = 'dependent_objects_still_exist';
    end if;
end
$$;

-- 1. Flag kinds ------------------------------------------------------------------------------

create table recon.flag_kinds (
    kind    text primary key,
    -- action: a person must act (money or truth at stake); info: an outcome, recorded
    class   text not null check (class in ('action', 'info')),
    meaning text not null
);

comment on table recon.flag_kinds is
    'Every kind of flag, its class (action: a person must act; info: recorded, nobody can act on it) and what it means. src/domain/types.rs (FlagKind) lists the same.';

insert into recon.flag_kinds (kind, class, meaning) values
    ('amount_mismatch', 'action',
     'the provider''s amount differs from the expected amount by more than reconcile.amount_tolerance'),
    ('currency_mismatch', 'action',
     'the provider''s currency differs from the expected currency'),
    ('order_mismatch', 'action',
     'the provider''s orderId differs from the merchant''s order id'),
    ('terminal_status_changed', 'action',
     'a terminal status (success, error, incomplete) later changed'),
    ('unknown_status', 'action',
     'the provider sent a status value nobody documented'),
    ('not_found', 'action',
     'the provider does not know the payment id, past poll.not_found_grace'),
    ('paid_after_deadline', 'action',
     'paid (success) after the payment was seen unpaid past its deadline: a late payment, possibly a refund to make'),
    ('polling_abandoned', 'action',
     'no terminal status within poll.max_age; polling stopped, so nobody knows whether money moved'),
    ('lifetime_exceeded', 'info',
     'the deadline (plus poll.lifetime_grace) passed unpaid; closed at once by the rule expired_unpaid when no money moved');

-- The kinds are the table's rows: a new kind is a row, not a new constraint.
alter table recon.discrepancies
    drop constraint discrepancies_kind_check,
    add constraint discrepancies_kind_fkey foreign key (kind) references recon.flag_kinds (kind);

-- 4. The earlier flag this one follows ------------------------------------------------------

alter table recon.discrepancies
    -- the previous flag of the same kind on the same payment, when there was one: a flag
    -- that reopens links the one it follows
    add column follows_id bigint references recon.discrepancies (id);

comment on column recon.discrepancies.follows_id is
    'The earlier flag of the same kind on this payment that this one follows (it was closed when this one opened); null for the first.';
comment on column recon.discrepancies.resolved_by is
    'Who or what closed the flag: a person''s name; ''daemon'' when a later observation cleared it; ''rule:<name>'' when a flags.auto_close rule closed it as it opened.';

-- History stays evidence: follows_id is written once, with the flag.
create or replace function recon.refuse_changing_a_flag() returns trigger
language plpgsql
as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'discrepancies is append-only history: flags are never deleted'
            using errcode = 'restrict_violation';
    end if;
    if (new.id, new.payment_id, new.kind, new.expected, new.actual, new.detected_at, new.follows_id)
       is distinct from (old.id, old.payment_id, old.kind, old.expected, old.actual, old.detected_at, old.follows_id) then
        raise exception 'discrepancies is append-only history: only an open flag''s resolution may be written'
            using errcode = 'restrict_violation';
    end if;
    if old.resolved_at is not null then
        raise exception 'flag % is already resolved; its resolution is history', old.id
            using errcode = 'restrict_violation';
    end if;
    if new.resolved_at is null
       and (new.resolved_by, new.resolution) is distinct from (old.resolved_by, old.resolution) then
        raise exception 'a flag''s resolution is written whole, with resolved_at, once'
            using errcode = 'restrict_violation';
    end if;
    return new;
end
$$;

-- 3. The deadline that passed unpaid --------------------------------------------------------

alter table recon.payments
    -- when the daemon first saw this payment unpaid past its deadline (plus grace), or
    -- `incomplete`; cleared only if a later lifetime moves the deadline ahead again
    add column deadline_missed_at timestamptz;

comment on column recon.payments.deadline_missed_at is
    'When the daemon first saw this payment unpaid past its deadline (the earlier of expires_at and the provider''s lifetime, plus poll.lifetime_grace), or incomplete. A success after it is a late payment (paid_after_deadline).';

-- From the lifetime flags raised so far: the latest one, unless a later observation cleared it.
-- A payment that was paid and whose lifetime flag a person closed is left alone: closing that
-- flag was how a late payment was settled before, so it raises no paid_after_deadline now.
update recon.payments p
set deadline_missed_at = f.detected_at
from (
    select distinct on (payment_id) payment_id, detected_at, resolved_at, resolved_by
    from recon.discrepancies
    where kind = 'lifetime_exceeded'
    order by payment_id, id desc
) f
where f.payment_id = p.payment_id
  and f.resolved_by is distinct from 'daemon'
  and not (p.status = 'success' and f.resolved_at is not null);

-- What happened to a payment, in one word, from its status and whether its deadline passed
-- unpaid: paid, failed, expired_unpaid, or in_progress (including no answer yet).
create function recon.outcome(status text, deadline_missed_at timestamptz) returns text
language sql immutable parallel safe
as $$
    select case
        when status = 'success' then 'paid'
        when status = 'error' then 'failed'
        when status = 'incomplete' or deadline_missed_at is not null then 'expired_unpaid'
        else 'in_progress'
    end
$$;

comment on function recon.outcome(text, timestamptz) is
    'A payment''s outcome: paid (success), failed (error), expired_unpaid (incomplete, or its deadline passed unpaid), else in_progress.';

-- 5. Flags already open on an upgraded database ---------------------------------------------
-- Each payment is locked before its flags change, as every writer of history does (see
-- migration 20261126000008), so its events keep their order.
select 1 from recon.payments p
where exists (select 1 from recon.discrepancies d
              where d.payment_id = p.payment_id and d.kind = 'lifetime_exceeded'
                and d.resolved_at is null)
for no key update;

-- A lifetime flag on a payment that was paid: it was paid late. The late payment is the
-- action flag now; the lifetime flag is closed as superseded by it.
insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
select d.payment_id, 'paid_after_deadline', d.expected,
       'success, first seen ' || to_char(p.settled_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       now()
from recon.discrepancies d
join recon.payments p using (payment_id)
where d.kind = 'lifetime_exceeded' and d.resolved_at is null and p.status = 'success'
  and not exists (select 1 from recon.discrepancies o
                  where o.payment_id = d.payment_id and o.kind = 'paid_after_deadline'
                    and o.resolved_at is null);

update recon.discrepancies d
set resolved_at = now(),
    resolved_by = 'daemon',
    resolution = 'superseded: the payment was paid after its deadline (see its paid_after_deadline flag)'
from recon.payments p
where p.payment_id = d.payment_id
  and d.kind = 'lifetime_exceeded' and d.resolved_at is null and p.status = 'success';

-- No money moved: an expired unpaid payment is an outcome, not an exception.
update recon.discrepancies d
set resolved_at = now(),
    resolved_by = 'rule:expired_unpaid',
    resolution = 'expired unpaid: the deadline passed and no money moved (status '
                 || coalesce(p.status, 'no answer')
                 || '); closed by migration 20261201000009 under flags.auto_close = ["expired_unpaid"]'
from recon.payments p
where p.payment_id = d.payment_id
  and d.kind = 'lifetime_exceeded' and d.resolved_at is null
  and p.status is distinct from 'success';

-- 6. The finance views, rebuilt -------------------------------------------------------------
-- Their grants are kept: saved here (in a table of the schema: the migrating role may not
-- create temporary tables), given again below.

create table recon.saved_view_grants as
select c.relname, a.grantee, a.privilege_type
from pg_class c
cross join lateral aclexplode(c.relacl) a
where c.relnamespace = 'recon'::regnamespace
  and c.relname in ('reconciliation', 'open_discrepancies', 'daily_summary', 'discrepancy_history')
  and a.grantee <> c.relowner;

drop view recon.daily_summary;
drop function recon.daily_summary_between(timestamptz, timestamptz);
drop view recon.open_discrepancies;
drop view recon.discrepancy_history;
drop view recon.reconciliation;

-- One row per payment. Money columns say whose money they are:
--   expected_*  what the merchant asked for;
--   received_*  what the provider says was paid: filled only when the status is success;
--   invoice_*   the amount and currency on the provider's invoice, whatever its status;
--   difference  received_amount - expected_amount, only when both are known in the same
--               currency (otherwise a flag says why: currency_mismatch, or nothing to compare).
create view recon.reconciliation as
select
    p.payment_id,
    p.order_id,
    p.provider_order_id,
    recon.outcome(p.status, p.deadline_missed_at)              as outcome,
    p.status,
    p.expected_amount,
    p.expected_currency,
    case when p.status = 'success' then p.amount end           as received_amount,
    case when p.status = 'success' then p.currency end         as received_currency,
    case when p.status = 'success' and p.currency = p.expected_currency
         then p.amount - p.expected_amount end                 as difference,
    p.amount                                                   as invoice_amount,
    p.currency                                                 as invoice_currency,
    p.fee,
    p.discount,
    least(p.lifetime_ends_at, p.expires_at)                    as expires_at,
    case
        when p.lifetime_ends_at is not null
             and (p.expires_at is null or p.lifetime_ends_at <= p.expires_at)
            then p.lifetime_source
        when p.expires_at is not null then 'merchant'
    end                                                        as expiry_source,
    p.deadline_missed_at,
    p.created_at,
    recon.report_day(p.created_at)                             as created_day,
    p.first_checked_at,
    p.last_checked_at,
    p.last_checked_by,
    p.settled_at,
    recon.report_day(p.settled_at)                             as settled_day,
    p.checks,
    p.next_check_at is null                                    as polling_finished,
    p.last_error,
    coalesce(
        (select array_agg(d.kind order by d.kind)
           from recon.discrepancies d
          where d.payment_id = p.payment_id and d.resolved_at is null),
        '{}'::text[])                                          as open_flags,
    exists (select 1
              from recon.discrepancies d
              join recon.flag_kinds k using (kind)
             where d.payment_id = p.payment_id and d.resolved_at is null
               and k.class = 'action')                         as needs_action
from recon.payments p;

comment on view recon.reconciliation is
    'One row per payment: its outcome, what the merchant expected against what was received (only when paid), the invoice as the provider states it, the deadline that counts, reporting days (recon.timezone) and open flags.';

-- The exception queue: open flags a person must act on (class action), oldest first by id.
create view recon.open_discrepancies as
select
    d.id,
    d.payment_id,
    d.kind,
    d.expected,
    d.actual,
    d.detected_at,
    recon.report_day(d.detected_at)                            as detected_day,
    now() - d.detected_at                                      as age,
    d.follows_id,
    p.order_id,
    p.status,
    recon.outcome(p.status, p.deadline_missed_at)              as outcome,
    p.expected_amount,
    p.expected_currency,
    case when p.status = 'success' then p.amount end           as received_amount,
    case when p.status = 'success' then p.currency end         as received_currency,
    p.amount                                                   as invoice_amount,
    p.currency                                                 as invoice_currency
from recon.discrepancies d
join recon.flag_kinds k using (kind)
join recon.payments p using (payment_id)
where d.resolved_at is null and k.class = 'action';

comment on view recon.open_discrepancies is
    'The exception queue: every open flag a person must act on (class action), with its age and the payment''s expected and received values.';

create view recon.discrepancy_history as
select d.id, d.payment_id, d.kind, k.class, d.expected, d.actual, d.detected_at,
       d.resolved_at, d.resolved_by, d.resolution, d.follows_id
from recon.discrepancies d
join recon.flag_kinds k using (kind);

comment on view recon.discrepancy_history is
    'Every flag ever raised; resolved_by is a person, ''daemon'' when a later observation cleared it, or ''rule:<name>'' when a flags.auto_close rule closed it; follows_id links the flag it follows.';

-- The daily summary over payments whose basis time is in [from_at, to_at) (null: no bound)
-- and, when only_flag is given, that have an open flag of that kind. One row per basis,
-- day, currency, outcome and status. Money is counted where it belongs: expected amounts
-- under the expected currency, received amounts (paid payments only) under the received
-- currency. A sum over nothing is null (shown empty), never 0: "no expected amount" is not
-- "an expected amount of 0".
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
language sql stable parallel safe
as $$
    with basis as (
        select 'created'::text as basis, r.created_day as day, r.*
        from recon.reconciliation r
        where r.created_at >= coalesce(from_at, '-infinity')
          and r.created_at < coalesce(to_at, 'infinity')
          and (only_flag is null or only_flag = any(r.open_flags))
        union all
        select 'settled', r.settled_day, r.*
        from recon.reconciliation r
        where r.settled_at >= coalesce(from_at, '-infinity')
          and r.settled_at < coalesce(to_at, 'infinity')
          and (only_flag is null or only_flag = any(r.open_flags))
    ),
    home as (
        -- The payment's own currency: its invoice's once the provider answered (null when
        -- the answer named none), the expected one before that.
        select b.*, case when b.status is null then b.expected_currency
                         else b.invoice_currency end as home_currency
        from basis b
    ),
    legs as (
        -- the payment itself, in its own currency, with its expected amount when that is
        -- the expected currency too
        select h.basis, h.day, h.home_currency as row_currency, h.outcome,
               coalesce(h.status, 'no_answer') as row_status, true as home,
               h.expected_currency is not distinct from h.home_currency as expected_here,
               h.expected_amount, h.received_amount, h.difference, h.fee, h.status,
               h.open_flags, h.needs_action
        from home h
        union all
        -- its expected amount, under the expected currency, when that is another one
        select h.basis, h.day, h.expected_currency, h.outcome, coalesce(h.status, 'no_answer'),
               false, true, h.expected_amount, null, null, null, h.status, h.open_flags,
               h.needs_action
        from home h
        where h.expected_currency is distinct from h.home_currency
    )
    select
        basis,
        day,
        row_currency,
        outcome,
        row_status,
        count(*) filter (where home),
        count(*) filter (where expected_here and expected_amount is not null),
        sum(expected_amount) filter (where expected_here),
        count(*) filter (where home and status = 'success'),
        sum(received_amount) filter (where home),
        sum(fee) filter (where home and status = 'success'),
        count(*) filter (where home and status = 'success' and fee is null),
        sum(difference) filter (where home),
        count(*) filter (where home and needs_action),
        count(*) filter (where home and 'amount_mismatch' = any(open_flags)),
        count(*) filter (where home and 'currency_mismatch' = any(open_flags)),
        count(*) filter (where home and 'order_mismatch' = any(open_flags)),
        count(*) filter (where home and 'paid_after_deadline' = any(open_flags)),
        count(*) filter (where home and 'not_found' = any(open_flags)),
        count(*) filter (where home and 'unknown_status' = any(open_flags)),
        count(*) filter (where home and 'terminal_status_changed' = any(open_flags)),
        count(*) filter (where home and 'polling_abandoned' = any(open_flags))
    from legs
    group by basis, day, row_currency, outcome, row_status
$$;

comment on function recon.daily_summary_between(timestamptz, timestamptz, text) is
    'recon.daily_summary restricted to payments whose basis time (created_at or settled_at) is in [from_at, to_at) and, when only_flag is given, that have an open flag of that kind; null means unbounded.';

create view recon.daily_summary as
select * from recon.daily_summary_between(null, null);

comment on view recon.daily_summary is
    'Counts and sums by reporting day (created or settled basis), currency, outcome and provider status: expected amounts under the expected currency, received amounts (paid only) under the received one; a sum over nothing is null.';

do $$
declare
    g record;
begin
    for g in select * from recon.saved_view_grants loop
        execute format('grant %s on recon.%I to %s', g.privilege_type, g.relname,
                       case when g.grantee = 0 then 'public'
                            else quote_ident(pg_get_userbyid(g.grantee)) end);
    end loop;
    -- Whoever reads the views may read what the flag kinds mean.
    for g in select distinct grantee from recon.saved_view_grants where relname = 'reconciliation' loop
        execute format('grant select on recon.flag_kinds to %s',
                       case when g.grantee = 0 then 'public'
                            else quote_ident(pg_get_userbyid(g.grantee)) end);
    end loop;
end
$$;

drop table recon.saved_view_grants;

-- Which schema a database holds, for commands that do not migrate: they refuse, in one line,
-- a database without the schema or with an older one than the binary needs. Readable by
-- every role that may use the schema, whatever its grants on the migrations record.
create function recon.schema_version() returns bigint
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
    return (select max(version) from recon._sqlx_migrations where success);
end
$$;

comment on function recon.schema_version() is
    'The newest migration applied to this database (freedompay-recon commands compare it with the one they need).';
