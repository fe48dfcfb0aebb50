-- Times that mean what they say (issue 24, item 5; docs/finance.md, "Which time decides a
-- payment's month").
--
-- What it changes, and why:
--
-- 1. recon.payments.provider_paid_at: when the provider says the payment was paid. Until now
--    the only time after creation was settled_at, which is when the daemon first saw a
--    terminal status: `report --by settled` for November said no payment settled, since the
--    daemon observed them all in December. The provider states its own time in a verified
--    Result-URL callback (pg_payment_date, `YYYY-MM-DD HH:MM:SS` in the provider's zone,
--    provider.naive_utc_offset); the daemon keeps it as what the provider said, never as a
--    verdict: the status still comes from the signed poll alone. It is set by the first
--    verified callback that names the payment and claims it paid (pg_result 1) and is never
--    overwritten: a later callback stating another time keeps it in its own row
--    (recon.callbacks.paid_at) as evidence. provider_paid_callback_id names the callback it
--    came from. The status API's own payment time (issue 26) is meant to be the authority
--    later: it may replace a callback's time, with provider_paid_callback_id null, and says
--    so. Payments paid before this migration keep null: their callbacks' dates were read in
--    a zone the database does not know (a setting), so they are not guessed here.
--    Not in the summary rollup (no report sums by it), so its trigger does not fire on it.
--
-- 2. recon.callbacks.paid_at: what a paid claim's pg_payment_date says, read in
--    provider.naive_utc_offset (null when absent, not a paid claim, or stored before this
--    migration; a date that cannot be read is said in `problem`).
--
-- 3. recon.reconciliation gains, at its end (so CREATE OR REPLACE keeps every column, every
--    grant and every reader's query as they were): first_seen_settled_at and
--    first_seen_settled_day, the same values as settled_at and settled_day under a name that
--    says what they are, and provider_paid_at (only when the status is success, as
--    received_amount). settled_at and settled_day stay, for the BI tools that read them;
--    their comments say what they hold. recon.daily_summary's basis 'settled' keeps its value
--    (BI filters name it) and its comment says it means "first seen settled".
--
-- 4. recon.archives: every month archive written (`archive`), with its reporting month, the
--    instants it covers in recon.timezone, its manifest and how many rows it holds of each
--    monthly partition. `archive --month` now takes the reporting month in recon.timezone
--    (it took the UTC month of observation: 0 transitions of an Almaty November were
--    archived). Partitions stay UTC months, so a local month spans two; `--detach` detaches a
--    partition only when every row of it is in an archive recorded here whose rows can no
--    longer change (rows_final), and says which partitions wait for the next month's archive.

set local search_path = pg_catalog;

-- 1. The provider's payment time -------------------------------------------------------------

alter table recon.payments
    add column provider_paid_at timestamptz,
    add column provider_paid_callback_id bigint references recon.callbacks (id),
    add constraint provider_paid_callback_has_a_time
        check (provider_paid_callback_id is null or provider_paid_at is not null);

comment on column recon.payments.provider_paid_at is
    'When the provider says the payment was paid: pg_payment_date of the first verified Result-URL callback claiming it paid (read in provider.naive_utc_offset), never overwritten by a later callback (each keeps its own in recon.callbacks.paid_at). What the provider said, not a verdict: the status comes from the signed poll. Null when no such callback came (or before migration 17).';
comment on column recon.payments.provider_paid_callback_id is
    'The recon.callbacks row provider_paid_at was read from; null when it came from elsewhere (the status API, issue 26) or is unknown.';
comment on column recon.payments.settled_at is
    'When the daemon first saw the current terminal status (success, error, incomplete): first seen settled, not when the payer paid (provider_paid_at).';

-- 2. What each callback said ----------------------------------------------------------------

alter table recon.callbacks add column paid_at timestamptz;

comment on column recon.callbacks.paid_at is
    'A paid claim''s pg_payment_date, read in provider.naive_utc_offset; null when absent, not a paid claim, unreadable (see problem), or stored before migration 17.';

-- 3. The finance view --------------------------------------------------------------------------
-- The definition of migration 20261201000009, unchanged, with three columns added at its end.

create or replace view recon.reconciliation as
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
               and k.class = 'action')                         as needs_action,
    p.settled_at                                               as first_seen_settled_at,
    recon.report_day(p.settled_at)                             as first_seen_settled_day,
    case when p.status = 'success' then p.provider_paid_at end as provider_paid_at
from recon.payments p;

comment on view recon.reconciliation is
    'One row per payment: its outcome, what the merchant expected against what was received (only when paid), the invoice as the provider states it, the deadline that counts, reporting days (recon.timezone; a payment''s day and month are those of created_at), when the daemon first saw it settled, when the provider says it was paid, and open flags.';
comment on column recon.reconciliation.settled_at is
    'The same as first_seen_settled_at (kept for existing readers): when the daemon first saw the current terminal status, not when the payer paid.';
comment on column recon.reconciliation.settled_day is
    'The same as first_seen_settled_day (kept for existing readers).';
comment on column recon.reconciliation.first_seen_settled_at is
    'When the daemon first saw the current terminal status (success, error, incomplete): an observation time, not a payment time.';
comment on column recon.reconciliation.first_seen_settled_day is
    'The reporting day (recon.timezone) of first_seen_settled_at.';
comment on column recon.reconciliation.provider_paid_at is
    'When the provider says the payment was paid (pg_payment_date of its first verified paid callback), shown only when the status is success; null when the provider stated no time.';
comment on column recon.reconciliation.created_day is
    'The reporting day (recon.timezone) of created_at: the day, and so the month, the payment belongs to.';

comment on view recon.daily_summary is
    'Counts and sums by reporting day, currency, outcome and provider status, per basis: created (the day a payment was created: the day it belongs to) or settled (the day the daemon first saw its terminal status: first seen settled, not paid). Expected amounts under the expected currency, received amounts (paid only) under the received one; a sum over nothing is null.';

comment on function recon.daily_summary_between(timestamptz, timestamptz, text) is
    'recon.daily_summary restricted to payments whose basis time (created_at; for basis settled, settled_at: first seen settled) is in [from_at, to_at) and, when only_flag is given, that have an open flag of that kind; null means unbounded. Whole reporting days without a flag filter are read from the rollup.';

-- 4. Archives ---------------------------------------------------------------------------------

create table recon.archives (
    id              bigint generated always as identity primary key,
    archived_at     timestamptz not null default now(),
    -- the reporting month archived, YYYY-MM, in zone
    month           text not null check (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    zone            text not null,
    -- the month's first instant and the next month's, in zone: rows with from_at <= time < to_at
    from_at         timestamptz not null,
    to_at           timestamptz not null check (to_at > from_at),
    -- the file as given to --to
    file            text not null,
    -- the manifest written into the file
    manifest        jsonb not null,
    -- rows held per monthly (UTC) partition: {"status_transitions_2026_11": 1204, ...}
    partition_rows  jsonb not null,
    -- no flag of the month open, and (with a webhook) no event still owed: its rows can no
    -- longer change, so --detach may count on this archive holding them
    rows_final      boolean not null
);

comment on table recon.archives is
    'Every month archive `archive` wrote (append-only): the reporting month, the instants it covers, its manifest and its rows per monthly partition. --detach detaches a partition only when its every row is in archives here with rows_final.';

create index archives_range_idx on recon.archives (from_at, to_at);

create trigger archives_append_only
    before update or delete on recon.archives
    for each row execute function recon.refuse_changing_history();
create trigger archives_never_truncated
    before truncate on recon.archives
    for each statement execute function recon.refuse_truncating_history();
