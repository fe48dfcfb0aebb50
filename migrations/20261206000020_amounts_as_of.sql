-- Amounts as of a date (issue 24, item 2): `report --as-of D` and `report --detail --as-of D`
-- recount every payment's status, amounts, fee and flags as they stood at the end of D.
--
-- What it adds, and why:
--
-- 1. recon.payment_states (append-only): each payment's summary columns (created_at,
--    settled_at, status, deadline_missed_at, amount, currency, fee, expected amount and
--    currency, open flags) every time one of them changes, with the instant it was written;
--    a removed payment leaves a row marked removed. Appended by recon.record_summary_change,
--    the trigger that already feeds the summary's rollup on exactly these changes, so a poll
--    that changes nothing the summary reads costs nothing here either. Before, only the
--    current values were kept (and transitions, which hold neither fees nor flags).
--
-- 2. recon.payment_states_since: the instant the states begin (this migration). Payments that
--    exist then get their current values as their first state, stamped then: the database
--    cannot say what they were before, so a report as of an earlier day is refused, not
--    guessed.
--
-- 3. recon.payment_states_at(at, …), recon.daily_summary_as_of(at, from, to, flag, basis) and
--    recon.reconciliation_as_of(at, from, to): the states that held at an instant, and the
--    summary and payment list computed from them with the definitions of the live ones
--    (recon.summary_legs; recon.reconciliation's columns). A range of days reads the states
--    of the payments in it (BRIN on created_at and settled_at); no range reads them all up
--    to the instant. Security definer: a role that may use schema recon reads them as it
--    reads the finance views.
--
-- Nothing else changes: the live summary, the rollup and the closes read what they read.

set local search_path = pg_catalog;

create table recon.payment_states (
    id                  bigint generated always as identity primary key,
    payment_id          text not null,
    -- when the change was written (clock time, so a later change of a payment is later here
    -- even when its transaction began first)
    valid_from          timestamptz not null default clock_timestamp(),
    removed             boolean not null default false,
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

create index payment_states_payment_idx on recon.payment_states (payment_id, valid_from, id);
-- Rows are appended as payments are created and settle, so each block range covers a narrow
-- span of both times: a month's payments are found without reading the rest.
create index payment_states_created_idx on recon.payment_states using brin (created_at)
    with (autosummarize = on);
create index payment_states_settled_idx on recon.payment_states using brin (settled_at)
    with (autosummarize = on);

comment on table recon.payment_states is
    'Each payment''s summary columns from each change on (append-only), for reports as of a past instant. Rows begin at recon.payment_states_since.';

create trigger payment_states_append_only
    before update or delete on recon.payment_states
    for each row execute function recon.refuse_changing_history();
create trigger payment_states_never_truncated
    before truncate on recon.payment_states
    for each statement execute function recon.refuse_truncating_history();

create table recon.payment_states_since (
    one    boolean primary key default true check (one),
    since  timestamptz not null
);

comment on table recon.payment_states_since is
    'The instant recon.payment_states begins (one row): no report is computed as of before it.';

insert into recon.payment_states_since (since) values (clock_timestamp());

insert into recon.payment_states (payment_id, valid_from, created_at, settled_at, status,
                                  deadline_missed_at, amount, currency, fee, expected_amount,
                                  expected_currency, open_flags)
select p.payment_id, s.since, p.created_at, p.settled_at, p.status, p.deadline_missed_at,
       p.amount, p.currency, p.fee, p.expected_amount, p.expected_currency, p.open_flags
from recon.payments p, recon.payment_states_since s;

-- The definition of migration 20261204000012, with each change's new values (or the removal)
-- appended to recon.payment_states.
create or replace function recon.record_summary_change() returns trigger
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
        insert into recon.payment_states (payment_id, removed) values (old.payment_id, true);
        return null;
    end if;
    insert into recon.payment_states (payment_id, created_at, settled_at, status,
                                      deadline_missed_at, amount, currency, fee,
                                      expected_amount, expected_currency, open_flags)
    values (new.payment_id, new.created_at, new.settled_at, new.status, new.deadline_missed_at,
            new.amount, new.currency, new.fee, new.expected_amount, new.expected_currency,
            new.open_flags);
    return null;
end
$$;

-- When the states begin.
create function recon.states_since() returns timestamptz
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select since from recon.payment_states_since
$$;

-- Each payment's state at an instant: its last change written before it (none: the payment
-- was not recorded yet, or had been removed). With a range, only payments that ever had their
-- basis time (created_at, by_settled: settled_at) in [from_at, to_at) are looked at, found by
-- the BRIN index of that column and each read by its own index; the caller keeps those whose
-- state then is in the range. Without one, every payment's.
create function recon.payment_states_at(
    at timestamptz, from_at timestamptz, to_at timestamptz, by_settled boolean
)
returns setof recon.payment_states
language plpgsql stable
security definer
set search_path = pg_catalog, pg_temp
rows 10000
as $$
begin
    if from_at is null and to_at is null then
        return query
            select l.* from (
                select distinct on (s.payment_id) s.*
                from recon.payment_states s
                where s.valid_from < at
                order by s.payment_id, s.valid_from desc, s.id desc
            ) l
            where not l.removed;
        return;
    end if;
    return query
        with candidates as (
            select c.payment_id from recon.payment_states c
            where not by_settled
              and c.created_at >= coalesce(from_at, '-infinity')
              and c.created_at < coalesce(to_at, 'infinity')
              and c.valid_from < at
            union
            select c.payment_id from recon.payment_states c
            where by_settled
              and c.settled_at >= coalesce(from_at, '-infinity')
              and c.settled_at < coalesce(to_at, 'infinity')
              and c.valid_from < at
        )
        select l.* from candidates c
        cross join lateral (
            select s.* from recon.payment_states s
            where s.payment_id = c.payment_id and s.valid_from < at
            order by s.valid_from desc, s.id desc
            limit 1
        ) l
        where not l.removed;
end
$$;

comment on function recon.payment_states_at(timestamptz, timestamptz, timestamptz, boolean) is
    'Each payment as it stood at an instant (its last change written before it), of those whose created_at (by_settled: settled_at) was ever in [from_at, to_at) (both null: all); removed payments and payments recorded later are absent.';

-- recon.daily_summary of one basis as it stood at an instant, for payments whose basis time
-- was in [from_at, to_at) then and, when only_flag is given, that had an open flag of that
-- kind then.
create function recon.daily_summary_as_of(
    at timestamptz, from_at timestamptz, to_at timestamptz, only_flag text, by_settled boolean
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
security definer
set search_path = pg_catalog, pg_temp
as $$
    select l.basis, l.day, l.currency, l.outcome, l.status,
           sum(l.payments)::bigint,
           sum(l.expected_payments)::bigint,
           case when sum(l.expected_payments) > 0 then sum(l.expected_amount) end,
           sum(l.received_payments)::bigint,
           case when sum(l.received_amount_n) > 0 then sum(l.received_amount) end,
           case when sum(l.fee_n) > 0 then sum(l.fee) end,
           sum(l.payments_without_fee)::bigint,
           case when sum(l.difference_n) > 0 then sum(l.difference) end,
           sum(l.needs_action)::bigint,
           sum(l.amount_mismatch)::bigint,
           sum(l.currency_mismatch)::bigint,
           sum(l.order_mismatch)::bigint,
           sum(l.paid_after_deadline)::bigint,
           sum(l.not_found)::bigint,
           sum(l.unknown_status)::bigint,
           sum(l.terminal_status_changed)::bigint,
           sum(l.polling_abandoned)::bigint
    from recon.payment_states_at(at, from_at, to_at, by_settled) s
    cross join lateral recon.summary_legs(
        row(1, s.created_at, s.settled_at, s.status, s.deadline_missed_at, s.amount,
            s.currency, s.fee, s.expected_amount, s.expected_currency,
            s.open_flags)::recon.summary_changes,
        recon.report_zone()) l
    where (only_flag is null or only_flag = any (s.open_flags))
      and l.basis = case when by_settled then 'settled' else 'created' end
      and l.day >= coalesce(recon.report_day(from_at), '-infinity'::date)
      and l.day < coalesce(recon.report_day(to_at), 'infinity'::date)
    group by l.basis, l.day, l.currency, l.outcome, l.status
    having sum(l.legs) > 0
$$;

comment on function recon.daily_summary_as_of(timestamptz, timestamptz, timestamptz, text, boolean) is
    'recon.daily_summary of one basis (created, by_settled: settled) as it stood at an instant, from recon.payment_states: payments whose basis time was in [from_at, to_at) then (null: unbounded) and, with only_flag, that had an open flag of that kind then.';

-- recon.reconciliation's columns as they stood at an instant, for payments whose created_at
-- (by_settled: settled_at) was in [from_at, to_at) then. What history does not keep (checks,
-- the last check) is left out; intake and provider facts that are not summary columns (order
-- ids, discount, the deadline, the provider's payment time) are the current ones, as
-- recon.reconciliation computes them.
create function recon.reconciliation_as_of(
    at timestamptz, from_at timestamptz, to_at timestamptz, by_settled boolean
)
returns table (
    payment_id text, order_id text, provider_order_id text, outcome text, status text,
    expected_amount numeric, expected_currency text, received_amount numeric,
    received_currency text, difference numeric, invoice_amount numeric,
    invoice_currency text, fee numeric, discount numeric, created_at timestamptz,
    created_day date, first_seen_settled_at timestamptz, first_seen_settled_day date,
    expires_at timestamptz, expiry_source text, deadline_missed_at timestamptz,
    open_flags text[], provider_paid_at timestamptz
)
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select s.payment_id, p.order_id, p.provider_order_id,
           recon.outcome(s.status, s.deadline_missed_at), s.status,
           s.expected_amount, s.expected_currency,
           case when s.status = 'success' then s.amount end,
           case when s.status = 'success' then s.currency end,
           case when s.status = 'success' and s.currency = s.expected_currency
                then s.amount - s.expected_amount end,
           s.amount, s.currency, s.fee,
           case when s.status = 'success' then p.discount end,
           s.created_at, recon.report_day(s.created_at),
           s.settled_at, recon.report_day(s.settled_at),
           least(p.lifetime_ends_at, p.expires_at),
           case
               when p.lifetime_ends_at is not null
                    and (p.expires_at is null or p.lifetime_ends_at <= p.expires_at)
                   then p.lifetime_source
               when p.expires_at is not null then 'merchant'
           end,
           s.deadline_missed_at,
           coalesce(s.open_flags, '{}'),
           case when s.status = 'success' then p.provider_paid_at end
    from recon.payment_states_at(at, from_at, to_at, by_settled) s
    left join recon.payments p on p.payment_id = s.payment_id
    cross join lateral (select case when by_settled then s.settled_at else s.created_at end
                            as basis_at) b
    where b.basis_at >= coalesce(from_at, '-infinity')
      and b.basis_at < coalesce(to_at, 'infinity')
$$;

comment on function recon.reconciliation_as_of(timestamptz, timestamptz, timestamptz, boolean) is
    'recon.reconciliation as it stood at an instant, from recon.payment_states, for payments whose created_at (by_settled: settled_at) was in [from_at, to_at) then. checks and the last check are not kept in history.';
