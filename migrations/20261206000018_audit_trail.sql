-- An audit trail the database proves (issue 24, item 3).
--
-- What it changes, and why:
--
-- 1. recon.discrepancies.resolved_role: the database role of the session that wrote a flag's
--    resolution (session_user), set by a trigger whatever the writer says. resolved_by stays
--    the name the writer gave (`resolve --by`, the OS login, `rule:…`, `daemon`): "on behalf
--    of". A name typed on a command line proves nothing; a login role does, when each person
--    has one (docs/finance.md, "One role per person").
--
-- 2. recon.lock_payments(ids): locks payments before their flags change, the order the
--    daemon's writes take them in (so `resolve` and the daemon never wait on each other in a
--    circle). It was `select … for no key update` on recon.payments, which needs the UPDATE
--    privilege there; a finance role (`grant-finance`) must not be able to change payments.
--
-- 3. The outbox's triggers on transitions and flags run as the schema's owner (security
--    definer): a role that resolves a flag needs no INSERT on recon.events, so it cannot
--    write events of its own, which the webhook would deliver signed.

set local search_path = pg_catalog;

alter table recon.discrepancies add column resolved_role text;

comment on column recon.discrepancies.resolved_role is
    'The database role (session_user) of the session that wrote the resolution, set by the database; resolved_by is the name it was written on behalf of.';

create function recon.record_resolution_role() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'INSERT' then
        new.resolved_role := case when new.resolved_at is not null then session_user::text end;
    elsif old.resolved_at is null and new.resolved_at is not null then
        new.resolved_role := session_user::text;
    else
        new.resolved_role := old.resolved_role;
    end if;
    return new;
end
$$;

revoke all on function recon.record_resolution_role() from public;

create trigger discrepancies_resolution_role
    before insert or update on recon.discrepancies
    for each row execute function recon.record_resolution_role();

create function recon.lock_payments(ids text[]) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    -- PERFORM runs the query to its end: every row is locked, not only the first.
    perform 1 from recon.payments
    where payment_id = any (ids)
    order by payment_id
    for no key update;
end
$$;

comment on function recon.lock_payments(text[]) is
    'Locks these payments (in id order) before their flags change, as the daemon does. For roles that may resolve flags but not change payments.';

revoke all on function recon.lock_payments(text[]) from public;

alter function recon.events_from_transitions() security definer;
alter function recon.events_from_transitions() set search_path = pg_catalog, pg_temp;
alter function recon.events_from_opened_flags() security definer;
alter function recon.events_from_opened_flags() set search_path = pg_catalog, pg_temp;
alter function recon.events_from_resolved_flags() security definer;
alter function recon.events_from_resolved_flags() set search_path = pg_catalog, pg_temp;

-- The roles that run the daemon lock payments the same way (grant-daemon gives it to new ones).
do $$
declare
    g record;
begin
    for g in select distinct a.grantee
             from pg_class c cross join lateral aclexplode(c.relacl) a
             where c.oid = 'recon.events'::regclass and a.privilege_type = 'INSERT'
               and a.grantee <> c.relowner and a.grantee <> 0 loop
        execute format('grant execute on function recon.lock_payments(text[]) to %s',
                       quote_ident(pg_get_userbyid(g.grantee)));
    end loop;
end
$$;
