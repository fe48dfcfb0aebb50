-- Money by day, and the outcomes money gives a paid payment (issue 26, item 3).
--
-- What it changes, and why: migration money_events keeps what moved; finance closes a month
-- by the day money moved, and a closed month never changes.
--
-- 1. recon.money_events gains `counts_on`, the reporting day (recon.timezone) an event counts
--    in, and `adjusts_month`. An event counts on the day the provider says it happened (a
--    refund's date) or, not said, the day it was observed; but when that day lies in a month
--    already closed, it counts on the day it was recorded (always open: only ended months
--    close) and `adjusts_month` names the closed month it would have changed: the event is
--    the adjustment, its kind, source and provider id its cause. Set once, before insert, by
--    recon.date_money_event, which first takes recon.payments' ROW EXCLUSIVE lock (a weak
--    lock, usually held already by the same transaction's write of the payment): a close
--    holds SHARE on recon.payments while it signs, so an event is either in the figures it
--    reads or dated after it. Events written before this migration have no counts_on; they
--    count on the day of their provider time or observation (recon.money_day).
-- 2. recon.payment_money gains `money_outcome`: paid (nothing went back), partially_refunded,
--    refunded (all of it went back: refunds or chargebacks), reversed (all of it, a reversal
--    among them: a hold released); null when nothing was received.
-- 3. recon.money_by_day: per reporting day, currency and kind, the events, payments and the
--    signed sum, and the closed month an adjustment changes.
-- 4. recon.money_of(payment, until): one payment's money as recon.payment_money sums it,
--    from the events observed until an instant: what `report --detail` shows, now or as of
--    a day.

set local search_path = pg_catalog;

-- 1. The day an event counts on ------------------------------------------------------------------
alter table recon.money_events
    add column counts_on date,
    add column adjusts_month date;

comment on column recon.money_events.counts_on is
    'The reporting day (recon.timezone) it counts on: the provider''s date, or the day observed; when that day''s month was closed already, the day it was recorded (see adjusts_month). Null for events written before migration money_by_day: read recon.money_day.';
comment on column recon.money_events.adjusts_month is
    'When the event belongs to a month closed before it was recorded: that month (it counts on counts_on, in the open period, as an adjustment). Null otherwise.';

create function recon.date_money_event() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    happened timestamptz := coalesce(new.provider_at, new.observed_at);
    closed_until_ timestamptz;
begin
    -- Waits for a close signing now (it holds SHARE), so the event is in its figures or after.
    lock table recon.payments in row exclusive mode;
    select s.closed_until into closed_until_ from recon.period_state s;
    if closed_until_ is not null and happened < closed_until_ then
        new.counts_on := recon.report_day(greatest(now(), closed_until_));
        new.adjusts_month := date_trunc('month', recon.report_day(happened))::date;
    else
        new.counts_on := recon.report_day(happened);
        new.adjusts_month := null;
    end if;
    return new;
end
$$;

revoke all on function recon.date_money_event() from public;

create trigger money_events_dated
    before insert on recon.money_events
    for each row execute function recon.date_money_event();

-- Events are written near the day they count on: a summary per block range serves reads by day.
create index money_events_counts_on_idx on recon.money_events using brin (counts_on);

create function recon.money_day(e recon.money_events) returns date
language sql stable parallel safe
as $$
    select coalesce(e.counts_on, recon.report_day(coalesce(e.provider_at, e.observed_at)))
$$;

comment on function recon.money_day(recon.money_events) is
    'The reporting day a money event counts on: counts_on, or for an event written before migration money_by_day the day of its provider time or observation.';

-- 2. Outcomes money gives a payment --------------------------------------------------------------
create function recon.money_outcome(received numeric, refunded numeric, reversed boolean)
returns text
language sql immutable parallel safe
as $$
    select case
        when received is null or received <= 0 then null
        when refunded <= 0 then 'paid'
        when refunded < received then 'partially_refunded'
        when reversed then 'reversed'
        else 'refunded' end
$$;

comment on function recon.money_outcome(numeric, numeric, boolean) is
    'What money made of a paid payment: paid (nothing went back), partially_refunded, refunded (all of it went back), reversed (all of it, a reversal among what went back); null when nothing was received.';

-- The definition of migration money_events, unchanged, with money_outcome added at its end.
create or replace view recon.payment_money as
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
       max(coalesce(provider_at, observed_at)) as last_moved_at,
       recon.money_outcome(
           coalesce(sum(amount) filter (where kind = 'payment'), 0),
           coalesce(-sum(amount) filter (where kind in ('refund', 'reversal', 'chargeback')), 0),
           coalesce(bool_or(kind = 'reversal'), false)) as money_outcome
from recon.money_events
group by payment_id;

comment on view recon.payment_money is
    'Per payment with money events: received (the payment), refunded (refunds, reversals and chargebacks, as a positive amount), net_received (received less refunded), commission and net_to_merchant (only where the provider stated a net; empty otherwise, never 0), returns (how many refunds, reversals and chargebacks), in the payment''s currency (currencies > 1: mixed, read the events); money_outcome: paid, partially_refunded, refunded or reversed (recon.money_outcome).';

-- 3. By day ------------------------------------------------------------------------------------
create view recon.money_by_day as
select recon.money_day(e) as day,
       e.currency,
       e.kind,
       e.adjusts_month,
       count(*) as events,
       count(distinct e.payment_id) as payments,
       sum(e.amount) as amount
from recon.money_events e
group by 1, 2, 3, 4;

comment on view recon.money_by_day is
    'Money moved per reporting day (the day it counts on: recon.money_day), currency and kind: events, payments and the sum signed for the merchant (+ received, − refunded, reversed, charged back or kept as commission). adjusts_month: the closed month these events would have changed, booked on this open day instead; null for the day''s own.';

-- 4. One payment's money, until an instant ------------------------------------------------------
create function recon.money_of(payment text, until timestamptz)
returns table (received numeric, refunded numeric, net_received numeric, commission numeric,
               net_to_merchant numeric, money_outcome text)
language sql stable
as $$
    select coalesce(sum(e.amount) filter (where e.kind = 'payment'), 0),
           coalesce(-sum(e.amount) filter (where e.kind in ('refund', 'reversal', 'chargeback')), 0),
           coalesce(sum(e.amount) filter (where e.kind <> 'commission'), 0),
           -sum(e.amount) filter (where e.kind = 'commission'),
           case when bool_or(e.kind = 'commission') then sum(e.amount) end,
           recon.money_outcome(
               coalesce(sum(e.amount) filter (where e.kind = 'payment'), 0),
               coalesce(-sum(e.amount) filter (where e.kind in ('refund', 'reversal', 'chargeback')), 0),
               coalesce(bool_or(e.kind = 'reversal'), false))
    from recon.money_events e
    where e.payment_id = payment and e.observed_at <= until
$$;

comment on function recon.money_of(text, timestamptz) is
    'One payment''s money from the events observed until an instant, as recon.payment_money sums it: received, refunded, net_received, commission and net_to_merchant (null without a stated net), money_outcome (null when nothing was received).';
