-- Graceful overload: when more is due than the rate budget can poll, deadline checks and
-- first polls go before routine rechecks.

alter table recon.payments
    -- the next check is a first poll, a deadline check (the lifetime check, the end of the
    -- not-found grace, the maximum age) or one a person asked for: claimed before routine
    -- rechecks. New rows are first polls.
    add column next_check_urgent boolean not null default true;

-- Rows already polled: their next check is taken as routine until their next verdict says
-- otherwise (at most one recheck interval).
update recon.payments set next_check_urgent = false where checks > 0;

-- One due index per kind of check, so each claim reads the urgent ones first, oldest first,
-- and then the routine ones, without scanning either beyond what it takes.
create index payments_due_urgent_idx on recon.payments (next_check_at)
    where next_check_at is not null and next_check_urgent;
create index payments_due_routine_idx on recon.payments (next_check_at)
    where next_check_at is not null and not next_check_urgent;
drop index recon.payments_due_idx;
