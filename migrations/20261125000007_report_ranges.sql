-- Report filters an index can serve. A reporting day becomes the range of timestamps it
-- covers, computed once per query (`recon.day_start`), and the time columns reports filter
-- on are indexed. A verdict's update is never HOT (it moves next_check_at, which is
-- indexed), so every index of the table sees it; hence BRIN (below), whose cost is measured
-- in docs/performance.md.

-- The first instant of a reporting day, in the zone recon.report_day uses. A day's rows are
-- those with day_start(day) <= at < day_start(day + 1), whatever the zone's offset that day.
create function recon.day_start(day date) returns timestamptz
language sql stable parallel safe
as $$
    select day::timestamp at time zone coalesce(nullif(current_setting('recon.timezone', true), ''), 'Asia/Almaty')
$$;

comment on function recon.day_start(date) is
    'The first instant of a reporting day, in the zone of the setting recon.timezone (default Asia/Almaty).';

-- BRIN, not B-tree: payments are inserted roughly in created_at order, and settle soon after,
-- so each block range covers a narrow span of both; and a BRIN entry is a summary per range
-- of pages, which a verdict's update leaves alone unless it widens it, where a B-tree would
-- take a new entry on every verdict.
create index payments_created_at_idx on recon.payments using brin (created_at)
    with (autosummarize = on);
create index payments_settled_at_idx on recon.payments using brin (settled_at)
    with (autosummarize = on)
    where settled_at is not null;

-- recon.daily_summary over payments whose basis time is in [from_at, to_at) (null: no
-- bound). Reports call this with a day range, so only those days' payments are read, by
-- index; the view is this function unbounded, so both always agree.
create function recon.daily_summary_between(from_at timestamptz, to_at timestamptz)
returns table (
    basis text, day date, currency text, status text, payments bigint,
    expected_amount numeric, amount numeric, fee numeric, difference numeric, flagged bigint,
    amount_mismatch bigint, currency_mismatch bigint, order_mismatch bigint,
    lifetime_exceeded bigint, not_found bigint, unknown_status bigint,
    terminal_status_changed bigint, polling_abandoned bigint, expected_payments bigint
)
language sql stable parallel safe
as $$
    with basis as (
        select 'created'::text as basis, recon.report_day(r.created_at) as day, r.*
        from recon.reconciliation r
        where r.created_at >= coalesce(from_at, '-infinity')
          and r.created_at < coalesce(to_at, 'infinity')
        union all
        select 'settled', recon.report_day(r.settled_at), r.*
        from recon.reconciliation r
        where r.settled_at >= coalesce(from_at, '-infinity')
          and r.settled_at < coalesce(to_at, 'infinity')
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
    group by basis, day, row_currency, row_status
$$;

comment on function recon.daily_summary_between(timestamptz, timestamptz) is
    'recon.daily_summary restricted to payments whose basis time (created_at or settled_at) is in [from_at, to_at); null means unbounded.';

-- Same columns, same grants.
create or replace view recon.daily_summary as
select * from recon.daily_summary_between(null, null);
