-- Finance surfaces: the reporting day, a daily summary, readable history, and a record of
-- who closed a flag by hand.

-- The calendar day finance closes books by. The zone is the database setting
-- `recon.timezone` (e.g. `alter database freedompay_recon set recon.timezone = 'UTC'`),
-- Asia/Almaty when unset.
create function recon.report_day(at timestamptz) returns date
language sql stable parallel safe
as $$
    select (at at time zone coalesce(nullif(current_setting('recon.timezone', true), ''), 'Asia/Almaty'))::date
$$;

comment on function recon.report_day(timestamptz) is
    'The reporting day of a timestamp, in the zone of the setting recon.timezone (default Asia/Almaty).';

-- One row per basis, day, currency and provider status.
--   basis 'created': payments by the day they were created;
--   basis 'settled': payments by the day their terminal status was first seen.
-- currency is the provider's currency, or the expected one before an answer. Expected
-- amounts and differences only count payments expected in that same currency (a payment
-- paid in another currency is still counted, and flagged currency_mismatch).
create view recon.daily_summary as
with basis as (
    select 'created'::text as basis, recon.report_day(r.created_at) as day, r.*
    from recon.reconciliation r
    union all
    select 'settled', recon.report_day(r.settled_at), r.*
    from recon.reconciliation r
    where r.settled_at is not null
)
select
    basis,
    day,
    coalesce(currency, expected_currency)                                   as currency,
    coalesce(status, 'no_answer')                                           as status,
    count(*)                                                                as payments,
    coalesce(sum(expected_amount) filter (
        where expected_currency is null or currency is null or expected_currency = currency), 0)
                                                                            as expected_amount,
    coalesce(sum(amount), 0)                                                as amount,
    coalesce(sum(fee), 0)                                                   as fee,
    coalesce(sum(amount - expected_amount) filter (where expected_currency = currency), 0)
                                                                            as difference,
    count(*) filter (where cardinality(open_flags) > 0)                     as flagged,
    count(*) filter (where 'amount_mismatch' = any(open_flags))             as amount_mismatch,
    count(*) filter (where 'currency_mismatch' = any(open_flags))           as currency_mismatch,
    count(*) filter (where 'order_mismatch' = any(open_flags))              as order_mismatch,
    count(*) filter (where 'lifetime_exceeded' = any(open_flags))           as lifetime_exceeded,
    count(*) filter (where 'not_found' = any(open_flags))                   as not_found,
    count(*) filter (where 'unknown_status' = any(open_flags))              as unknown_status,
    count(*) filter (where 'terminal_status_changed' = any(open_flags))     as terminal_status_changed,
    count(*) filter (where 'polling_abandoned' = any(open_flags))           as polling_abandoned
from basis
group by basis, day, coalesce(currency, expected_currency), coalesce(status, 'no_answer');

comment on view recon.daily_summary is
    'Counts and sums by reporting day (created or settled basis), currency and provider status, with open flags by kind.';

-- The status history without the raw provider bodies.
create view recon.status_history as
select payment_id, observation_no, from_status, to_status, observed_at, provider_dt
from recon.status_transitions;

comment on view recon.status_history is
    'Every observed change of provider status, without the raw bodies.';

-- Every flag ever raised, open or closed, with who closed it and why.
create view recon.discrepancy_history as
select id, payment_id, kind, expected, actual, detected_at, resolved_at, resolved_by, resolution
from recon.discrepancies;

comment on view recon.discrepancy_history is
    'Every flag ever raised; resolved_by is ''daemon'' when a later observation cleared it, else the person who closed it.';
