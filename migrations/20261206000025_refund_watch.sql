-- Watching paid payments for refunds (issue 26, item 4).
--
-- What it adds, and why: invoice/info never shows a refund, so a paid payment is asked about
-- through the Merchant status API on a sparse ladder after it was first seen paid
-- (`refunds.watch`, until `refunds.watch_for`). recon.refund_watch holds one row per payment
-- still watched: when it was first seen paid, how many looks are done, when the next is due,
-- and the lease of the daemon asking now (as payments' leases, so several instances share
-- the work). It is a schedule, not history: a row is deleted when the watch ends. The poll
-- that books a payment received adds its row, in the same transaction.
--
-- Payments paid before this migration are added with their next look due now: the daemon
-- asks about them a batch per sweep, in the rate budget it shares with polls (those paid
-- longer ago than refunds.watch_for are let go at their first look).

set local search_path = pg_catalog;

create table recon.refund_watch (
    payment_id        text primary key references recon.payments (payment_id),
    -- when the payment was first seen paid: the ladder counts from here
    since             timestamptz not null,
    -- looks done so far
    looks             integer not null default 0 check (looks >= 0),
    next_at           timestamptz not null,
    -- failed asks in a row, and the last one's reason
    attempts          integer not null default 0 check (attempts >= 0),
    last_error        text,
    lease_owner       text,
    lease_expires_at  timestamptz
);

create index refund_watch_due_idx on recon.refund_watch (next_at);

comment on table recon.refund_watch is
    'Paid payments still watched for refunds through the Merchant status API: first seen paid (since), looks done, next look due (next_at). A schedule, not history: a row goes when its watch ends.';

insert into recon.refund_watch (payment_id, since, next_at)
select payment_id, observed_at, now()
from recon.money_events
where kind = 'payment'
on conflict do nothing;
