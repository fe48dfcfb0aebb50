-- freedompay-recon schema.
--
-- recon.payments is a public contract: other systems insert rows into it, finance reads the
-- views. Callers write only the intake columns (payment_id .. expires_at); every other column
-- belongs to the daemon. `insert into recon.payments (payment_id) values ('123')` is enough to
-- start tracking a payment: it is due at once.

create schema if not exists recon;

create table recon.payments (
    -- intake: written by callers ---------------------------------------------------------
    payment_id        text primary key
                      check (btrim(payment_id) <> '' and length(payment_id) <= 128
                             and payment_id !~ '[[:cntrl:]]'),
    -- what the merchant asked for; null means "not known", and nothing is compared
    expected_amount   numeric check (expected_amount is null or expected_amount >= 0),
    expected_currency text check (expected_currency is null or expected_currency ~ '^[A-Z]{3}$'),
    order_id          text,
    -- when the payment was created; an integer provider lifetime counts from here
    created_at        timestamptz not null default now(),
    -- the merchant's own expiry, used until the provider states a lifetime
    expires_at        timestamptz,

    -- daemon state: the provider's last answer --------------------------------------------
    -- provider status as the provider spelled it (unknown values are kept verbatim)
    status            text,
    amount            numeric,
    currency          text,
    fee               numeric,
    discount          numeric,
    provider_order_id text,
    freedom_id        text,
    merchant_id       text,
    -- the provider's own timestamp of its last answer (`dt`)
    provider_dt       timestamptz,
    -- the expiry the provider stated, and how: an absolute date-time or seconds from created_at
    lifetime_ends_at  timestamptz,
    lifetime_source   text check (lifetime_source in ('provider_datetime', 'provider_seconds')),
    -- the last successfully parsed body, verbatim (never granted to readers)
    last_body         json,

    -- daemon state: bookkeeping ----------------------------------------------------------
    -- answers received (invoice or "not found"); also numbers the observations
    checks            integer not null default 0,
    first_checked_at  timestamptz,
    last_checked_at   timestamptz,
    -- the daemon instance (host:pid) whose poll was recorded last
    last_checked_by   text,
    -- when the current terminal status was first observed
    settled_at        timestamptz,
    -- since when the provider has said it does not know this id (null once it answers)
    not_found_since   timestamptz,
    -- consecutive failed attempts (timeouts, 5xx, unreadable bodies); reset by any answer
    attempts          integer not null default 0,
    last_error        text,
    -- when the payment is next due; null = no longer polled (confirmed terminal or abandoned)
    next_check_at     timestamptz default now(),
    -- set by `recheck` while a poll may be under way: the verdict then keeps the payment due
    recheck_requested_at timestamptz,
    -- the current claim: a fresh token per claim, so a late write from a lost lease is ignored.
    -- A due payment is claimable when it holds no lease or its lease has run out, so a crashed
    -- daemon's claims come back by themselves. No index covers these columns, so claiming
    -- and releasing are HOT updates.
    lease_token       bigint,
    lease_owner       text,
    lease_expires_at  timestamptz
) with (fillfactor = 50);

comment on table recon.payments is
    'One row per tracked Freedom Pay payment. Callers insert payment_id and optionally the expected values; the daemon owns every other column.';

-- Claiming scans only due rows in due order, whatever the size of the table. (fillfactor
-- leaves room on each page for the HOT update of a claim.)
create index payments_due_idx on recon.payments (next_check_at) where next_check_at is not null;

create sequence recon.lease_tokens;

create table recon.status_transitions (
    payment_id      text not null references recon.payments (payment_id) on delete cascade,
    -- the payment's observation number (payments.checks after it); at most one transition
    -- per observation, so a replayed write can never add a second row
    observation_no  integer not null,
    from_status     text,
    to_status       text not null,
    observed_at     timestamptz not null,
    provider_dt     timestamptz,
    -- the provider's body, verbatim
    body            json not null,
    primary key (payment_id, observation_no)
);

comment on table recon.status_transitions is
    'Append-only history: one row per observed change of provider status; from_status is null for the first observation.';

create index status_transitions_observed_idx on recon.status_transitions (observed_at);

create table recon.discrepancies (
    id           bigint generated always as identity primary key,
    payment_id   text not null references recon.payments (payment_id) on delete cascade,
    kind         text not null check (kind in (
                     'amount_mismatch', 'currency_mismatch', 'order_mismatch',
                     'lifetime_exceeded', 'not_found', 'unknown_status',
                     'terminal_status_changed', 'polling_abandoned')),
    expected     text,
    actual       text,
    detected_at  timestamptz not null,
    resolved_at  timestamptz,
    -- who or what closed the flag: 'daemon' when a later observation cleared it
    resolved_by  text,
    resolution   text,
    check ((resolved_at is null) = (resolved_by is null))
);

comment on table recon.discrepancies is
    'Flags raised by the daemon. History is kept: a resolved flag keeps its row, and a new row opens if the condition returns.';

-- At most one open flag per payment and kind.
create unique index discrepancies_open_uq on recon.discrepancies (payment_id, kind)
    where resolved_at is null;
create index discrepancies_payment_idx on recon.discrepancies (payment_id);

create view recon.reconciliation as
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
    coalesce(p.lifetime_ends_at, p.expires_at)                 as expires_at,
    case
        when p.lifetime_ends_at is not null then p.lifetime_source
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
    'One row per payment: what the merchant expected against what the provider says, and the open flags.';

create view recon.open_discrepancies as
select
    d.id,
    d.payment_id,
    d.kind,
    d.expected,
    d.actual,
    d.detected_at,
    p.order_id,
    p.status,
    p.expected_amount,
    p.amount,
    p.expected_currency,
    p.currency
from recon.discrepancies d
join recon.payments p using (payment_id)
where d.resolved_at is null;

comment on view recon.open_discrepancies is
    'Every flag that is still open, with the payment''s expected and actual values.';
