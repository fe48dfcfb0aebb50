-- Telling people and systems what changed: an outbox of events, written by the database in
-- the same transaction as the change it describes, whoever makes the change (the daemon,
-- `resolve`, or SQL by hand). Nothing can be announced that did not happen, and nothing that
-- happened can go unannounced.

create table recon.events (
    -- increasing: a payment's events are delivered in this order
    id              bigint generated always as identity primary key,
    type            text not null check (type in ('status_changed', 'flag_opened', 'flag_resolved')),
    -- the payment's history rows reference the payment; an event exists only beside one
    payment_id      text not null,
    occurred_at     timestamptz not null,
    payload         jsonb not null,
    created_at      timestamptz not null default now(),
    -- delivery state: the only columns that ever change
    delivered_at    timestamptz,
    -- given up after webhook.max_age of failures
    abandoned_at    timestamptz,
    -- not sent: its type is not in webhook.types
    skipped_at      timestamptz,
    attempts        integer not null default 0,
    first_attempt_at timestamptz,
    last_error      text,
    next_attempt_at timestamptz not null default now(),
    lease_owner     text,
    lease_expires_at timestamptz,
    check (num_nonnulls(delivered_at, abandoned_at, skipped_at) <= 1)
);

comment on table recon.events is
    'Outbox: one row per status transition, flag opened and flag resolved, written in the transaction that made the change. Append-only, except the delivery columns.';

-- Undelivered events, in id order and per payment: what delivery claims from.
create index events_pending_idx on recon.events (id)
    where delivered_at is null and abandoned_at is null and skipped_at is null;
create index events_pending_payment_idx on recon.events (payment_id, id)
    where delivered_at is null and abandoned_at is null and skipped_at is null;
-- Abandoned events, counted by /metrics.
create index events_abandoned_idx on recon.events (abandoned_at) where abandoned_at is not null;

-- Events from history rows, one statement at a time (transition tables: one trigger call per
-- statement, however many rows), in the order the rows were written.
-- A payment's events must become visible in id order, or delivery could send a later one
-- first. Every writer holds the payment's row lock while it writes history, so two
-- transactions changing one payment take event ids in the order they commit: the daemon
-- updates the payment before its transitions and flags, and `resolve` locks it before the
-- flag. (The triggers do not lock it themselves: re-locking rows the daemon's transaction
-- already holds costs a WAL record per row.) SQL written by hand that adds history should
-- lock the payment first too: select 1 from recon.payments where payment_id = ... for no key update.
create function recon.events_from_transitions() returns trigger
language plpgsql
as $$
begin
    insert into recon.events (type, payment_id, occurred_at, payload)
    select 'status_changed', t.payment_id, t.observed_at,
           jsonb_build_object(
               'from_status', t.from_status,
               'to_status', t.to_status,
               'observation_no', t.observation_no,
               'provider_dt', t.provider_dt,
               'amount', p.amount::text,
               'currency', p.currency,
               'expected_amount', p.expected_amount::text,
               'expected_currency', p.expected_currency,
               'order_id', p.order_id)
    from new_rows t
    join recon.payments p using (payment_id)
    order by t.payment_id, t.observation_no;
    return null;
end
$$;

create trigger status_transitions_announced
    after insert on recon.status_transitions
    referencing new table as new_rows
    for each statement execute function recon.events_from_transitions();

create function recon.events_from_opened_flags() returns trigger
language plpgsql
as $$
begin
    insert into recon.events (type, payment_id, occurred_at, payload)
    select 'flag_opened', d.payment_id, d.detected_at,
           jsonb_build_object(
               'flag_id', d.id,
               'kind', d.kind,
               'expected', d.expected,
               'actual', d.actual)
    from new_rows d
    order by d.id;
    return null;
end
$$;

create trigger discrepancies_opened_announced
    after insert on recon.discrepancies
    referencing new table as new_rows
    for each statement execute function recon.events_from_opened_flags();

create function recon.events_from_resolved_flags() returns trigger
language plpgsql
as $$
begin
    insert into recon.events (type, payment_id, occurred_at, payload)
    select 'flag_resolved', n.payment_id, n.resolved_at,
           jsonb_build_object(
               'flag_id', n.id,
               'kind', n.kind,
               'expected', n.expected,
               'actual', n.actual,
               'resolved_by', n.resolved_by,
               'resolution', n.resolution)
    from new_rows n
    join old_rows o using (id)
    where o.resolved_at is null and n.resolved_at is not null
    order by n.id;
    return null;
end
$$;

create trigger discrepancies_resolved_announced
    after update on recon.discrepancies
    referencing old table as old_rows new table as new_rows
    for each statement execute function recon.events_from_resolved_flags();

-- After commit, every new event is announced on channel recon_events with its id, so a
-- system on the same database can LISTEN instead of polling.
create function recon.notify_events() returns trigger
language plpgsql
as $$
begin
    perform pg_notify('recon_events', e.id::text) from new_rows e order by e.id;
    return null;
end
$$;

create trigger events_notified
    after insert on recon.events
    referencing new table as new_rows
    for each statement execute function recon.notify_events();

-- History is evidence: events are never deleted, and only their delivery state changes.
create function recon.refuse_changing_an_event() returns trigger
language plpgsql
as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'events is append-only history: events are never deleted'
            using errcode = 'restrict_violation';
    end if;
    if (new.id, new.type, new.payment_id, new.occurred_at, new.payload, new.created_at)
       is distinct from (old.id, old.type, old.payment_id, old.occurred_at, old.payload, old.created_at) then
        raise exception 'events is append-only history: only an event''s delivery state may change'
            using errcode = 'restrict_violation';
    end if;
    return new;
end
$$;

create trigger events_append_only
    before update or delete on recon.events
    for each row execute function recon.refuse_changing_an_event();

create trigger events_never_truncated
    before truncate on recon.events
    for each statement execute function recon.refuse_truncating_history();

-- For finance: every event and how its delivery went, without delivery internals (leases).
create view recon.event_log as
select id, type, payment_id, occurred_at, payload, created_at,
       case
           when delivered_at is not null then 'delivered'
           when abandoned_at is not null then 'abandoned'
           when skipped_at is not null then 'skipped'
           else 'pending'
       end as delivery,
       delivered_at, abandoned_at, skipped_at, attempts, last_error
from recon.events;

comment on view recon.event_log is
    'Every event (status changed, flag opened, flag resolved) and its webhook delivery: pending, delivered, abandoned or skipped.';
