-- Money events (issue 26, item 2): what moved, not what a status says.
--
-- What it adds, and why: a payment's status is not money. The provider's facts about money
-- (the payment received, each refund, reversal or chargeback, the commission it keeps) are
-- rows of their own in recon.money_events, append-only and partitioned by month as the
-- other history is; a refund never erases what was received. recon.payment_money sums them
-- per payment for finance.
--
-- 1. recon.money_events: one row per provider fact. `amount` is signed for the merchant:
--    the payment received is positive, everything that takes money back (refund, reversal,
--    chargeback, commission) negative; `provider_amount` is the amount exactly as the
--    provider stated it (a refund the provider sends as a positive number is negated in
--    `amount`, kept as sent here). `fact_key` names the fact within its payment: `payment`,
--    `commission`, `child:<the provider's id>` for a refund or reversal with an id of its own,
--    or `<kind>:<its time>:<its amount>` for one that repeats its parent's id (the
--    documentation's XML example does). One row per (payment_id, fact_key): a partitioned
--    table can have no unique index across months, so each insert adds its keys to
--    recon.money_event_keys, whose primary key refuses a second (23505).
-- 2. The partition functions of migration partitioned_history, taught the new table
--    (partitioned by observed_at), and this month's partitions and the next three made.
--    Payments already paid are booked here, as the poll that saw them paid would have.
-- 3. recon.payment_money: per payment with money events, what was received, refunded (all
--    that went back, as a positive amount), net received, and the commission and net to the
--    merchant where the provider stated a net (empty, never 0, until it does).

set local search_path = pg_catalog;

-- 1. The table ---------------------------------------------------------------------------------
create table recon.money_events (
    id               bigint generated always as identity,
    payment_id       text not null references recon.payments (payment_id),
    kind             text not null check (kind in ('payment', 'refund', 'reversal',
                                                   'chargeback', 'commission')),
    amount           numeric not null,
    provider_amount  numeric,
    currency         text not null,
    -- the provider's own id for this fact (a refund's pg_payment_id), when it gives one
    provider_ref     text,
    -- the provider's word for it (a refund's pg_payment_status)
    provider_status  text,
    -- when the provider says it happened; null: not said
    provider_at      timestamptz,
    observed_at      timestamptz not null default now(),
    source           text not null check (source in ('poll', 'callback', 'status_api',
                                                     'registry', 'manual')),
    fact_key         text not null,
    constraint money_events_pkey primary key (id, observed_at),
    constraint money_events_amount_signed_for_the_merchant check (
        case when kind = 'payment' then amount >= 0 else amount <= 0 end),
    constraint money_events_amount_is_exact check (
        recon.amount_problem(amount) is null and recon.amount_problem(provider_amount) is null),
    constraint money_events_currency_is_a_code check (currency ~ '^[A-Z]{3}$'),
    constraint money_events_texts_are_short check (
        length(fact_key) between 1 and 300 and coalesce(length(provider_ref), 0) <= 128
        and coalesce(length(provider_status), 0) <= 64)
) partition by range (observed_at);

create table recon.money_events_default partition of recon.money_events default;

create index money_events_payment_idx on recon.money_events (payment_id);

comment on table recon.money_events is
    'Money the provider says moved for a payment, one row per fact, append-only: the payment received (+), each refund, reversal, chargeback and the commission (−, signed for the merchant). Key within a payment: fact_key. Partitioned by observed_at (UTC months).';
comment on column recon.money_events.amount is
    'Signed for the merchant: + the payment received, − money that went back or that the provider kept.';
comment on column recon.money_events.provider_amount is
    'The amount exactly as the provider stated it (its sign included).';
comment on column recon.money_events.provider_at is
    'When the provider says it happened (a refund''s pg_payment_date); null: not said, count it at observed_at.';
comment on column recon.money_events.source is
    'Where the fact came from: poll (invoice/info), callback, status_api (get_status3.php), registry, manual.';
comment on column recon.money_events.fact_key is
    'The fact within its payment: payment, commission, child:<provider id>, or <kind>:<time>:<amount> for a child without an id of its own. One row per (payment_id, fact_key).';

create trigger money_events_append_only
    before update or delete on recon.money_events
    for each row execute function recon.refuse_changing_history();
create trigger money_events_never_truncated
    before truncate on recon.money_events
    for each statement execute function recon.refuse_truncating_history();
create trigger money_events_default_never_truncated
    before truncate on recon.money_events_default
    for each statement execute function recon.refuse_truncating_history();

-- The facts' keys, in a table of their own whose primary key refuses a second row for a fact
-- (a partitioned table can have no unique index across its months). Every insert into
-- recon.money_events adds its rows' keys here, once per statement: a duplicate is refused by
-- the index (23505), concurrent writers of the same key wait for each other as with any
-- unique index, and no lock or look-up is needed (a row trigger that locked the payment and
-- looked the key up in every month cost 57 µs a row). Writers skip keys already here.
create table recon.money_event_keys (
    payment_id  text not null,
    fact_key    text not null,
    primary key (payment_id, fact_key)
);

comment on table recon.money_event_keys is
    'The key of every row of recon.money_events (payment_id, fact_key), kept by its insert trigger: one row per provider fact.';

create function recon.keep_money_event_keys() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into recon.money_event_keys (payment_id, fact_key)
    select payment_id, fact_key from added;
    return null;
exception when unique_violation then
    raise exception 'a money event is written once per (payment_id, fact_key): %', sqlerrm
        using errcode = 'unique_violation';
end
$$;

revoke all on function recon.keep_money_event_keys() from public;

create trigger money_events_unique
    after insert on recon.money_events
    referencing new table as added
    for each statement execute function recon.keep_money_event_keys();

create trigger money_event_keys_append_only
    before update or delete on recon.money_event_keys
    for each row execute function recon.refuse_changing_history();
create trigger money_event_keys_never_truncated
    before truncate on recon.money_event_keys
    for each statement execute function recon.refuse_truncating_history();

-- 2. Partitions --------------------------------------------------------------------------------
create or replace function recon.create_month_partition(parent text, month date) returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    key_column text := case parent
        when 'status_transitions' then 'observed_at'
        when 'discrepancies' then 'detected_at'
        when 'events' then 'created_at'
        when 'money_events' then 'observed_at'
    end;
    partition text := parent || '_' || to_char(month, 'YYYY_MM');
    default_partition text := parent || '_default';
    lower_bound timestamptz := date_trunc('month', month)::timestamp at time zone 'UTC';
    upper_bound timestamptz := (date_trunc('month', month) + interval '1 month')::timestamp at time zone 'UTC';
    strays boolean;
begin
    if key_column is null then
        raise exception 'recon.create_month_partition: % is not a partitioned history table', parent;
    end if;
    if to_regclass(format('recon.%I', partition)) is not null then
        return false;
    end if;
    execute format('select exists (select 1 from recon.%I where %I >= %L and %I < %L)',
                   default_partition, key_column, lower_bound, key_column, upper_bound)
        into strays;
    if not strays then
        execute format('create table recon.%I partition of recon.%I for values from (%L) to (%L)',
                       partition, parent, lower_bound, upper_bound);
    else
        execute format('create table recon.%I (like recon.%I including defaults including constraints)',
                       partition, parent);
        execute format('alter table recon.%I disable trigger user', default_partition);
        execute format('with moved as (delete from recon.%I where %I >= %L and %I < %L returning *)
                        insert into recon.%I select * from moved',
                       default_partition, key_column, lower_bound, key_column, upper_bound,
                       partition);
        execute format('alter table recon.%I enable trigger user', default_partition);
        execute format('alter table recon.%I attach partition recon.%I for values from (%L) to (%L)',
                       parent, partition, lower_bound, upper_bound);
    end if;
    execute format('create trigger %I before truncate on recon.%I for each statement execute function recon.refuse_truncating_history()',
                   partition || '_never_truncated', partition);
    return true;
end
$$;

create or replace function recon.ensure_partitions(ahead interval default interval '3 months')
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '10s'
as $$
declare
    t record;
    month date;
    strays date[];
    created integer := 0;
begin
    if ahead < interval '0' or ahead > interval '10 years' then
        raise exception 'ahead must be between 0 and 10 years, not %', ahead;
    end if;
    perform pg_advisory_xact_lock(hashtext('freedompay-recon partitions'));
    for t in select * from (values ('status_transitions', 'observed_at'),
                                   ('discrepancies', 'detected_at'),
                                   ('events', 'created_at'),
                                   ('money_events', 'observed_at')) v(parent, key_column) loop
        for month in
            select generate_series(date_trunc('month', now() at time zone 'UTC'),
                                   date_trunc('month', (now() + ahead) at time zone 'UTC'),
                                   interval '1 month')::date
        loop
            created := created + recon.create_month_partition(t.parent, month)::integer;
        end loop;
        execute format(
            'select array_agg(distinct date_trunc(''month'', %I at time zone ''UTC'')::date) from recon.%I',
            t.key_column, t.parent || '_default')
            into strays;
        foreach month in array coalesce(strays, '{}') loop
            created := created + recon.create_month_partition(t.parent, month)::integer;
        end loop;
    end loop;
    return created;
end
$$;

-- Payments already paid: what they received, booked as the poll that saw it would have, at
-- the time it was first seen paid (as far as the payment says), in that month's partition.
insert into recon.money_events
    (payment_id, kind, amount, provider_amount, currency, provider_at, observed_at, source,
     fact_key)
select payment_id, 'payment', amount, amount, currency, provider_dt,
       coalesce(settled_at, last_checked_at, now()), 'poll', 'payment'
from recon.payments
where status = 'success' and amount >= 0 and currency ~ '^[A-Z]{3}$'
  and recon.amount_problem(amount) is null;

select recon.ensure_partitions();

-- 3. Per payment, for finance ------------------------------------------------------------------
create view recon.payment_money as
select payment_id,
       min(currency) as currency,
       count(distinct currency) as currencies,
       coalesce(sum(amount) filter (where kind = 'payment'), 0) as received,
       coalesce(-sum(amount) filter (where kind in ('refund', 'reversal', 'chargeback')), 0)
           as refunded,
       coalesce(sum(amount) filter (where kind <> 'commission'), 0) as net_received,
       -sum(amount) filter (where kind = 'commission') as commission,
       case when bool_or(kind = 'commission') then sum(amount) end as net_to_merchant,
       count(*) filter (where kind in ('refund', 'reversal', 'chargeback')) as returns,
       max(coalesce(provider_at, observed_at)) as last_moved_at
from recon.money_events
group by payment_id;

comment on view recon.payment_money is
    'Per payment with money events: received (the payment), refunded (refunds, reversals and chargebacks, as a positive amount), net_received (received less refunded), commission and net_to_merchant (only where the provider stated a net; empty otherwise, never 0), returns (how many refunds, reversals and chargebacks), in the payment''s currency (currencies > 1: mixed, read the events).';
