-- Verdicts finance can sign off on: the deadline that counts, sums that lose no money, and a
-- history the database itself refuses to rewrite.

-- The deadline that counts is the earlier of the merchant's expires_at and the lifetime the
-- provider stated (either one passing unpaid is a finance problem); expiry_source says which.
-- On a tie the provider's lifetime is named. Same columns as before, so the view is replaced
-- in place and every grant on it stays.
create or replace view recon.reconciliation as
select
    p.payment_id,
    p.order_id,
    p.provider_order_id,
    p.expected_amount,
    p.expected_currency,
    p.status,
    p.amount,
    p.currency,
    p.fee,
    p.discount,
    p.amount - p.expected_amount                               as amount_difference,
    least(p.lifetime_ends_at, p.expires_at)                    as expires_at,
    case
        when p.lifetime_ends_at is not null
             and (p.expires_at is null or p.lifetime_ends_at <= p.expires_at)
            then p.lifetime_source
        when p.expires_at is not null then 'merchant'
    end                                                        as expiry_source,
    p.created_at,
    p.first_checked_at,
    p.last_checked_at,
    p.settled_at,
    p.checks,
    p.last_checked_by,
    p.next_check_at is null                                    as polling_finished,
    p.last_error,
    coalesce(
        (select array_agg(d.kind order by d.kind)
           from recon.discrepancies d
          where d.payment_id = p.payment_id and d.resolved_at is null),
        '{}'::text[])                                          as open_flags
from recon.payments p;

comment on view recon.reconciliation is
    'One row per payment: what the merchant expected against what the provider says, the deadline that counts (the earlier of the merchant''s and the provider''s), and the open flags.';

-- Money is counted where it belongs: expected amounts under the currency the merchant
-- expected, received amounts under the currency the provider reports (a null currency is a
-- row of its own: an amount whose currency is unknown is never added to another's). A payment
-- expected in KZT and paid in USD adds its expected amount to a KZT row and its amount to a
-- USD row; it is counted (payments, flags) once, in its USD row. expected_payments counts the payments whose
-- expected amount is in the row. Existing columns keep their names and types (new ones go at
-- the end), so grants on the view stay.
create or replace view recon.daily_summary as
with basis as (
    select 'created'::text as basis, recon.report_day(r.created_at) as day, r.*
    from recon.reconciliation r
    union all
    select 'settled', recon.report_day(r.settled_at), r.*
    from recon.reconciliation r
    where r.settled_at is not null
),
home as (
    -- The payment's own currency: the one it was paid in once the provider answered (null
    -- when the answer named none), the expected one before that.
    select b.*, case when b.status is null then b.expected_currency else b.currency end as home_currency
    from basis b
),
legs as (
    -- the payment itself, in its own currency, with its expected amount when that is the
    -- expected currency too
    select h.basis, h.day, h.home_currency as row_currency,
           coalesce(h.status, 'no_answer') as row_status, true as home,
           h.expected_currency is not distinct from h.home_currency as expected_here,
           h.expected_amount, h.amount, h.fee, h.currency, h.expected_currency, h.open_flags
    from home h
    union all
    -- its expected amount, under the expected currency, when that is another one
    select h.basis, h.day, h.expected_currency, coalesce(h.status, 'no_answer'), false, true,
           h.expected_amount, null, null, h.currency, h.expected_currency, h.open_flags
    from home h
    where h.expected_currency is distinct from h.home_currency
)
select
    basis,
    day,
    row_currency                                                            as currency,
    row_status                                                              as status,
    count(*) filter (where home)                                            as payments,
    coalesce(sum(expected_amount) filter (where expected_here), 0)          as expected_amount,
    coalesce(sum(amount) filter (where home), 0)                            as amount,
    coalesce(sum(fee) filter (where home), 0)                               as fee,
    coalesce(sum(amount - expected_amount)
             filter (where home and expected_currency = currency), 0)       as difference,
    count(*) filter (where home and cardinality(open_flags) > 0)            as flagged,
    count(*) filter (where home and 'amount_mismatch' = any(open_flags))    as amount_mismatch,
    count(*) filter (where home and 'currency_mismatch' = any(open_flags))  as currency_mismatch,
    count(*) filter (where home and 'order_mismatch' = any(open_flags))     as order_mismatch,
    count(*) filter (where home and 'lifetime_exceeded' = any(open_flags))  as lifetime_exceeded,
    count(*) filter (where home and 'not_found' = any(open_flags))          as not_found,
    count(*) filter (where home and 'unknown_status' = any(open_flags))     as unknown_status,
    count(*) filter (where home and 'terminal_status_changed' = any(open_flags))
                                                                            as terminal_status_changed,
    count(*) filter (where home and 'polling_abandoned' = any(open_flags))  as polling_abandoned,
    count(*) filter (where expected_here and expected_amount is not null)   as expected_payments
from legs
group by basis, day, row_currency, row_status;

comment on view recon.daily_summary is
    'Counts and sums by reporting day (created or settled basis), currency and provider status: expected amounts under the expected currency, received amounts under the received one.';

-- History is evidence. Deleting a payment never takes its history with it: the references
-- lose their cascade, and deleting a payment that has history is refused with a reason.
alter table recon.status_transitions
    drop constraint status_transitions_payment_id_fkey,
    add constraint status_transitions_payment_id_fkey
        foreign key (payment_id) references recon.payments (payment_id);
alter table recon.discrepancies
    drop constraint discrepancies_payment_id_fkey,
    add constraint discrepancies_payment_id_fkey
        foreign key (payment_id) references recon.payments (payment_id);

create function recon.refuse_deleting_a_payment_with_history() returns trigger
language plpgsql
as $$
begin
    if exists (select 1 from recon.status_transitions where payment_id = old.payment_id)
       or exists (select 1 from recon.discrepancies where payment_id = old.payment_id) then
        raise exception 'payment % has history (status transitions or flags), which is evidence: it cannot be deleted', quote_literal(old.payment_id)
            using errcode = 'restrict_violation',
                  hint = 'to stop polling it, set next_check_at to null';
    end if;
    return old;
end
$$;

create trigger payments_keep_history
    before delete on recon.payments
    for each row execute function recon.refuse_deleting_a_payment_with_history();

-- Transitions are never changed or deleted.
create function recon.refuse_changing_history() returns trigger
language plpgsql
as $$
begin
    raise exception '% is append-only history: rows are never changed or deleted', tg_table_name
        using errcode = 'restrict_violation';
end
$$;

create trigger status_transitions_append_only
    before update or delete on recon.status_transitions
    for each row execute function recon.refuse_changing_history();

-- A flag is never deleted; only an open flag's resolution (resolved_at, resolved_by,
-- resolution) may be written, once.
create function recon.refuse_changing_a_flag() returns trigger
language plpgsql
as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'discrepancies is append-only history: flags are never deleted'
            using errcode = 'restrict_violation';
    end if;
    if (new.id, new.payment_id, new.kind, new.expected, new.actual, new.detected_at)
       is distinct from (old.id, old.payment_id, old.kind, old.expected, old.actual, old.detected_at) then
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

create trigger discrepancies_append_only
    before update or delete on recon.discrepancies
    for each row execute function recon.refuse_changing_a_flag();

-- TRUNCATE skips row triggers: refuse it on history too, unless a session says it means it
-- (`set recon.allow_truncate = 'on'`: the benchmark's scratch database does, nothing else).
create function recon.refuse_truncating_history() returns trigger
language plpgsql
as $$
begin
    if coalesce(current_setting('recon.allow_truncate', true), '') <> 'on' then
        raise exception '% is append-only history: it is never truncated', tg_table_name
            using errcode = 'restrict_violation';
    end if;
    return null;
end
$$;

create trigger status_transitions_never_truncated
    before truncate on recon.status_transitions
    for each statement execute function recon.refuse_truncating_history();

create trigger discrepancies_never_truncated
    before truncate on recon.discrepancies
    for each statement execute function recon.refuse_truncating_history();
