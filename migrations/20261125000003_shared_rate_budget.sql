-- The provider's rate budget, shared by every daemon instance on this database.
--
-- Each instance reserves blocks of request slots from this one row: a block starts at
-- next_slot (or now, if that is later) and next_slot moves past it, so blocks reserved by
-- different instances never overlap and the deployment as a whole stays within
-- poll.rate_per_second. A 429 pushes next_slot past the pause, so every instance waits.
create table recon.rate_budget (
    singleton  boolean primary key default true check (singleton),
    next_slot  timestamptz not null default '-infinity'
);

insert into recon.rate_budget default values;

comment on table recon.rate_budget is
    'The shared request-rate budget: the time of the next free request slot for the whole deployment.';
