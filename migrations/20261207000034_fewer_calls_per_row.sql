-- Fewer function calls per row (issue 25, item 7). Measured with log_statement_stats over
-- `run --once` on 20,000 due payments, every one paid (µs of PostgreSQL CPU a payment):
-- booking the money received costs 29.6, of which the event's dating (migration
-- money_by_day: a PL/pgSQL row trigger) is about 6; the record's update 27.4, of which the
-- closed-period test of payments_adjusted_update's WHEN (a security-definer function, one
-- call a changed payment) is about 3.5.
--
-- What it changes, and why: nothing about what is recorded, when money counts or which
-- change is an adjustment.
--
-- 1. Money dated once per statement. The rule is migration money_by_day's, unchanged
--    (recon.money_event_day states it once): an event counts on the day the provider says it
--    happened, or the day it was observed; when that day lies in the closed period, it counts
--    on the day it was recorded and names the month it adjusts. A close holds SHARE on
--    recon.payments while it signs, and every dating first takes ROW EXCLUSIVE on it, so an
--    event is in a close's figures or dated after it.
--    * recon.money_dating_cutoff(): takes that lock, then reads where the closed period
--      ends. A writer calls it once per statement and dates its rows itself.
--    * The row trigger now runs only for an event that arrives undated (as a person's or
--      another system's insert does): its WHEN is tested without a function call.
--    * A statement trigger checks every event the statement added, dated by its writer or by
--      the row trigger: one that does not count where the rule says is refused (23514), and
--      the statement with it. A writer cannot book into a closed month by naming its own day.
-- 2. The closed-period test skipped where no close can reach. A closed period ends at the
--    start of a month in the reporting zone, no later than the close that set it ran
--    (recon.close_month refuses a month not ended), and that close committed before the
--    test reads it (it holds SHARE on recon.payments; the update holds ROW EXCLUSIVE). A
--    zone's month starts within 14 hours of UTC's, so the closed period ends less than two
--    days into the current UTC month: a payment created later is in no closed period,
--    whatever the zone, and the WHEN says so before it calls recon.in_closed_period.

set local search_path = pg_catalog;

-- The day an event that happened at `happened` counts on, and the closed month it adjusts
-- (null: none), given where the closed period ends (`cutoff`, null: nothing closed). One row,
-- no table read: the planner inlines it into the statement that dates its events.
-- 1. Money dated once per statement ------------------------------------------------------------
create function recon.money_event_day(happened timestamptz, cutoff timestamptz,
                                      out counts_on date, out adjusts_month date)
returns setof record
language sql stable parallel safe
as $$
    select case when cutoff is not null and happened < cutoff
                then recon.report_day(greatest(now(), cutoff))
                else recon.report_day(happened) end,
           case when cutoff is not null and happened < cutoff
                then date_trunc('month', recon.report_day(happened))::date end
$$;

comment on function recon.money_event_day(timestamptz, timestamptz) is
    'The reporting day a money event that happened at `happened` counts on, and the closed month it adjusts (null: none), when the closed period ends at `cutoff` (null: nothing closed). The rule of migration money_by_day.';

create function recon.money_dating_cutoff() returns timestamptz
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    -- Waits for a close signing now (it holds SHARE), so what is dated with the value read
    -- next is in its figures or after them.
    lock table recon.payments in row exclusive mode;
    return (select s.closed_until from recon.period_state s);
end
$$;

-- Its lock blocks a close: only roles that book money may take it (`grant-daemon` grants it).
revoke all on function recon.money_dating_cutoff() from public;

comment on function recon.money_dating_cutoff() is
    'Where the closed period ends (null: nothing closed), read under recon.payments'' ROW EXCLUSIVE lock, which a close signing waits for: call it once per statement that books money events and date them with recon.money_event_day.';

create or replace function recon.date_money_event() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    select d.counts_on, d.adjusts_month into new.counts_on, new.adjusts_month
    from recon.money_event_day(coalesce(new.provider_at, new.observed_at),
                               recon.money_dating_cutoff()) d;
    return new;
end
$$;

drop trigger money_events_dated on recon.money_events;
create trigger money_events_dated
    before insert on recon.money_events
    for each row
    when (new.counts_on is null)
    execute function recon.date_money_event();

create function recon.check_money_event_dates() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    cutoff timestamptz := recon.money_dating_cutoff();
    bad record;
begin
    select a.payment_id, a.fact_key, a.counts_on, a.adjusts_month,
           d.counts_on as due_on, d.adjusts_month as due_month
    into bad
    from added a
    cross join lateral recon.money_event_day(coalesce(a.provider_at, a.observed_at), cutoff) d
    where (a.counts_on, a.adjusts_month) is distinct from (d.counts_on, d.adjusts_month)
    limit 1;
    if found then
        raise exception 'money event % of payment % is dated % (adjusting %), but it counts on % (adjusting %); leave counts_on and adjusts_month empty and the database dates it',
                        bad.fact_key, bad.payment_id, bad.counts_on,
                        coalesce(bad.adjusts_month::text, 'no month'), bad.due_on,
                        coalesce(bad.due_month::text, 'no month')
            using errcode = 'check_violation';
    end if;
    return null;
end
$$;

revoke all on function recon.check_money_event_dates() from public;

create trigger money_events_dates_checked
    after insert on recon.money_events
    referencing new table as added
    for each statement execute function recon.check_money_event_dates();

-- 2. The closed-period test, skipped where no close can reach --------------------------------------
drop trigger payments_adjusted_update on recon.payments;
create constraint trigger payments_adjusted_update
    after update on recon.payments
    deferrable initially deferred
    for each row
    when ((old.created_at is distinct from new.created_at
           or old.status is distinct from new.status
           or old.deadline_missed_at is distinct from new.deadline_missed_at
           or old.amount is distinct from new.amount
           or old.currency is distinct from new.currency
           or old.fee is distinct from new.fee
           or old.expected_amount is distinct from new.expected_amount
           or old.expected_currency is distinct from new.expected_currency
           or old.open_flags is distinct from new.open_flags)
          -- clock_timestamp, not now(): this transaction may have begun before the close
          and least(old.created_at, new.created_at)
              < (date_trunc('month', clock_timestamp() at time zone 'UTC') + interval '2 days')
                    at time zone 'UTC'
          and recon.in_closed_period(least(old.created_at, new.created_at)))
    execute function recon.book_adjustment();
