-- History partitioned by month (issue 17, item 1).
--
-- recon.status_transitions (by observed_at), recon.discrepancies (by detected_at) and
-- recon.events (by created_at) become declaratively partitioned by calendar month (UTC), so a
-- month's history is one table: reports prune to the months they read, old events go by
-- dropping a whole partition (never a row delete), and a closed month can be archived apart.
--
-- Partitions are maintained by us, not by pg_partman: recon.ensure_partitions(ahead) below
-- creates the missing monthly partitions (the months of any row in a DEFAULT partition, and
-- every month from now to now() + ahead). It needs no extension, so it runs on any managed
-- PostgreSQL; it is idempotent and serialised by an advisory lock, so concurrent callers
-- (several daemon instances, `migrate`) are safe. `migrate` calls it after migrating, and the
-- daemon's hourly maintenance step calls it too (docs/operations.md, "Partitions"). Each
-- table also has a DEFAULT partition, so an insert never fails when maintenance lagged; the
-- next ensure_partitions moves such rows into their month's partition.
--
-- Uniqueness. A unique index on a partitioned table must contain the partition key, and
-- adding the time column to the old keys would weaken them (two transitions numbered alike
-- at different times would both be accepted). The guarantees history relies on are kept
-- exactly by two small unpartitioned side tables, written by triggers in the same
-- transaction as the history row, whoever writes it (the daemon, `resolve`, SQL by hand),
-- and exact under every isolation level because a unique index decides:
--   * recon.transition_keys (payment_id, observation_no): at most one transition per
--     observation, as the old primary key said (a duplicate is refused with 23505, as before);
--   * recon.open_flags (payment_id, kind): at most one open flag per payment and kind, as the
--     old partial unique index discrepancies_open_uq said. A row lives only while its flag is
--     open: it goes when the flag's resolution is written, so the table stays small.
-- The daemon's inserts skip what these tables already hold (instead of ON CONFLICT, which
-- cannot name them); it writes history under the payment's row lock, so its check is exact.
-- Ids stay unique as before: they come from identity columns GENERATED ALWAYS; the primary
-- keys become (id, time column). discrepancies.follows_id can no longer be a foreign key (no
-- unique index on id alone): a trigger checks that it names a flag (flags are never deleted).
--
-- The rest stays as it was: the append-only row triggers (on a partitioned table they apply
-- to every partition), the refusal of TRUNCATE (a statement trigger, put on every partition
-- too, since truncating one partition does not fire its parent's), the outbox triggers
-- (statement triggers with transition tables, on the parents), the per-payment order of
-- events (ids from one identity), every grant on the tables, and the views over them (each
-- is replaced in place by its own definition, so it reads the new table and keeps its grants).
--
-- The copy. Rows are copied into the new tables under ACCESS EXCLUSIVE locks on the old ones
-- (readers and writers of history wait until the migration commits; payments stay readable).
-- docs/operations.md says how long it takes per million rows.

set local search_path = pg_catalog;

lock table recon.status_transitions, recon.discrepancies, recon.events in access exclusive mode;

-- The views over the three tables, as they are defined now (replaced in place below).
create table recon.saved_history_views as
select distinct c.oid::bigint as view_oid, c.relkind::text as relkind, c.reloptions,
       format('%I.%I', n.nspname, c.relname) as view_name,
       pg_get_viewdef(c.oid) as definition
from pg_depend d
join pg_rewrite r on r.oid = d.objid
join pg_class c on c.oid = r.ev_class
join pg_namespace n on n.oid = c.relnamespace
where d.classid = 'pg_rewrite'::regclass
  and d.refclassid = 'pg_class'::regclass
  and d.refobjid in ('recon.status_transitions'::regclass, 'recon.discrepancies'::regclass,
                     'recon.events'::regclass)
  and c.oid not in ('recon.status_transitions'::regclass, 'recon.discrepancies'::regclass,
                    'recon.events'::regclass);

do $$
begin
    if exists (select 1 from recon.saved_history_views where relkind <> 'v') then
        raise exception 'materialized views are built on recon history tables this upgrade partitions: %; drop them, migrate, then create them again',
            (select string_agg(view_name, ', ') from recon.saved_history_views where relkind <> 'v')
            using errcode = 'dependent_objects_still_exist';
    end if;
end
$$;

-- The old tables step aside, with their indexes and identity sequences.
do $$
declare
    t text;
    i record;
begin
    foreach t in array array['status_transitions', 'discrepancies', 'events'] loop
        for i in select ic.relname from pg_index x join pg_class ic on ic.oid = x.indexrelid
                 where x.indrelid = format('recon.%I', t)::regclass loop
            execute format('alter index recon.%I rename to %I', i.relname, i.relname || '_unpartitioned');
        end loop;
        execute format('alter table recon.%I rename to %I', t, t || '_unpartitioned');
    end loop;
    alter sequence recon.discrepancies_id_seq rename to discrepancies_id_seq_unpartitioned;
    alter sequence recon.events_id_seq rename to events_id_seq_unpartitioned;
end
$$;

-- The new tables: the same columns, in the same order.
create table recon.status_transitions (
    payment_id      text not null,
    -- the payment's observation number; at most one transition per observation
    -- (recon.transition_keys keeps that)
    observation_no  integer not null,
    from_status     text,
    to_status       text not null,
    observed_at     timestamptz not null,
    provider_dt     timestamptz,
    body            json not null,
    request_id      uuid,
    constraint status_transitions_payment_id_fkey
        foreign key (payment_id) references recon.payments (payment_id)
) partition by range (observed_at);

create table recon.discrepancies (
    id           bigint generated always as identity,
    payment_id   text not null,
    kind         text not null,
    expected     text,
    actual       text,
    detected_at  timestamptz not null,
    resolved_at  timestamptz,
    resolved_by  text,
    resolution   text,
    follows_id   bigint,
    constraint discrepancies_pkey primary key (id, detected_at),
    constraint discrepancies_check check ((resolved_at is null) = (resolved_by is null)),
    constraint discrepancies_payment_id_fkey
        foreign key (payment_id) references recon.payments (payment_id),
    constraint discrepancies_kind_fkey foreign key (kind) references recon.flag_kinds (kind)
) partition by range (detected_at);

create table recon.events (
    id              bigint generated always as identity,
    type            text not null,
    payment_id      text not null,
    occurred_at     timestamptz not null,
    payload         jsonb not null,
    created_at      timestamptz not null default now(),
    delivered_at    timestamptz,
    abandoned_at    timestamptz,
    skipped_at      timestamptz,
    attempts        integer not null default 0,
    first_attempt_at timestamptz,
    last_error      text,
    next_attempt_at timestamptz not null default now(),
    lease_owner     text,
    lease_expires_at timestamptz,
    constraint events_pkey primary key (id, created_at),
    constraint events_type_check
        check (type in ('status_changed', 'flag_opened', 'flag_resolved')),
    constraint events_check check (num_nonnulls(delivered_at, abandoned_at, skipped_at) <= 1)
) partition by range (created_at);

-- Comments, from the old tables.
do $$
declare
    t text;
    c record;
begin
    foreach t in array array['status_transitions', 'discrepancies', 'events'] loop
        for c in select d.objsubid, a.attname, d.description
                 from pg_description d
                 left join pg_attribute a on a.attrelid = d.objoid and a.attnum = d.objsubid
                 where d.objoid = format('recon.%I', t || '_unpartitioned')::regclass
                   and d.classoid = 'pg_class'::regclass loop
            if c.objsubid = 0 then
                execute format('comment on table recon.%I is %L', t, c.description);
            else
                execute format('comment on column recon.%I.%I is %L', t, c.attname, c.description);
            end if;
        end loop;
    end loop;
end
$$;

-- Indexes, created on the parents (each partition gets its own).
create index status_transitions_payment_idx on recon.status_transitions (payment_id, observation_no);
create index status_transitions_observed_idx on recon.status_transitions (observed_at);
create index discrepancies_payment_idx on recon.discrepancies (payment_id);
create index discrepancies_open_idx on recon.discrepancies (payment_id, kind)
    where resolved_at is null;
create index events_pending_idx on recon.events (id)
    where delivered_at is null and abandoned_at is null and skipped_at is null;
create index events_pending_payment_idx on recon.events (payment_id, id)
    where delivered_at is null and abandoned_at is null and skipped_at is null;
create index events_abandoned_idx on recon.events (abandoned_at) where abandoned_at is not null;

-- The side tables that keep history's uniqueness (see the top of this file).
create table recon.transition_keys (
    payment_id      text not null,
    observation_no  integer not null,
    primary key (payment_id, observation_no)
);

comment on table recon.transition_keys is
    'One row per status transition (payment, observation number), written with it by a trigger: at most one transition per observation. Never changed.';

create table recon.open_flags (
    payment_id  text not null,
    kind        text not null,
    -- the open flag (recon.discrepancies.id)
    flag_id     bigint not null,
    primary key (payment_id, kind)
);

comment on table recon.open_flags is
    'One row per open flag, kept by triggers on recon.discrepancies (inserted when a flag opens, removed when its resolution is written): at most one open flag per payment and kind.';

-- Partitions -----------------------------------------------------------------------------------

-- One month's partition of one history table, created when missing. Rows of that month that
-- already sit in the DEFAULT partition are moved into it (in this transaction, so nobody sees
-- them twice or not at all). Returns whether it created the partition. Internal: called by
-- recon.ensure_partitions, which holds the lock that serialises it.
create function recon.create_month_partition(parent text, month date) returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    key_column text := case parent
        when 'status_transitions' then 'observed_at'
        when 'discrepancies' then 'detected_at'
        when 'events' then 'created_at'
    end;
    partition text := parent || '_' || to_char(month, 'YYYY_MM');
    default_partition text := parent || '_default';
    lower_bound timestamptz := date_trunc('month', month)::timestamp at time zone 'UTC';
    upper_bound timestamptz := (date_trunc('month', month) + interval '1 month')::timestamp at time zone 'UTC';
    strays boolean;
begin
    if key_column is null then
        raise exception 'recon.create_month_partition: % is not a partitioned history table', parent;
    end if;
    if to_regclass(format('recon.%I', partition)) is not null then
        return false;
    end if;
    execute format('select exists (select 1 from recon.%I where %I >= %L and %I < %L)',
                   default_partition, key_column, lower_bound, key_column, upper_bound)
        into strays;
    if not strays then
        execute format('create table recon.%I partition of recon.%I for values from (%L) to (%L)',
                       partition, parent, lower_bound, upper_bound);
    else
        -- Rows of this month wait in the DEFAULT partition: they move to a new table, which
        -- then becomes the month's partition. The default partition's append-only triggers
        -- stand aside for the move only (DDL is transactional: nobody else ever sees them off).
        execute format('create table recon.%I (like recon.%I including defaults including constraints)',
                       partition, parent);
        execute format('alter table recon.%I disable trigger user', default_partition);
        execute format('with moved as (delete from recon.%I where %I >= %L and %I < %L returning *)
                        insert into recon.%I select * from moved',
                       default_partition, key_column, lower_bound, key_column, upper_bound,
                       partition);
        execute format('alter table recon.%I enable trigger user', default_partition);
        execute format('alter table recon.%I attach partition recon.%I for values from (%L) to (%L)',
                       parent, partition, lower_bound, upper_bound);
    end if;
    -- Truncating a partition does not fire its parent's statement triggers: refuse it here too.
    execute format('create trigger %I before truncate on recon.%I for each statement execute function recon.refuse_truncating_history()',
                   partition || '_never_truncated', partition);
    return true;
end
$$;

revoke all on function recon.create_month_partition(text, date) from public;

create function recon.ensure_partitions(ahead interval default interval '3 months')
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '10s'
as $$
declare
    t record;
    month date;
    strays date[];
    created integer := 0;
begin
    if ahead < interval '0' or ahead > interval '10 years' then
        raise exception 'ahead must be between 0 and 10 years, not %', ahead;
    end if;
    perform pg_advisory_xact_lock(hashtext('freedompay-recon partitions'));
    for t in select * from (values ('status_transitions', 'observed_at'),
                                   ('discrepancies', 'detected_at'),
                                   ('events', 'created_at')) v(parent, key_column) loop
        for month in
            select generate_series(date_trunc('month', now() at time zone 'UTC'),
                                   date_trunc('month', (now() + ahead) at time zone 'UTC'),
                                   interval '1 month')::date
        loop
            created := created + recon.create_month_partition(t.parent, month)::integer;
        end loop;
        -- Rows that fell into the DEFAULT partition (maintenance lagged, or a time far from
        -- now): their months' partitions are created and the rows moved there.
        -- (Read first: a partition is not altered while a query reads it.)
        execute format(
            'select array_agg(distinct date_trunc(''month'', %I at time zone ''UTC'')::date) from recon.%I',
            t.key_column, t.parent || '_default')
            into strays;
        foreach month in array coalesce(strays, '{}') loop
            created := created + recon.create_month_partition(t.parent, month)::integer;
        end loop;
    end loop;
    return created;
end
$$;

comment on function recon.ensure_partitions(interval) is
    'Creates the missing monthly partitions of the history tables, from the earliest month a row waits for in a DEFAULT partition (rows there are moved into their month) to now() + ahead. Idempotent; concurrent callers wait for each other.';

-- The DEFAULT partitions, and the months the existing rows need, then the months ahead.
create table recon.status_transitions_default partition of recon.status_transitions default;
create table recon.discrepancies_default partition of recon.discrepancies default;
create table recon.events_default partition of recon.events default;
create trigger status_transitions_default_never_truncated before truncate on recon.status_transitions_default
    for each statement execute function recon.refuse_truncating_history();
create trigger discrepancies_default_never_truncated before truncate on recon.discrepancies_default
    for each statement execute function recon.refuse_truncating_history();
create trigger events_default_never_truncated before truncate on recon.events_default
    for each statement execute function recon.refuse_truncating_history();

select recon.create_month_partition('status_transitions', m)
from (select distinct date_trunc('month', observed_at at time zone 'UTC')::date as m
      from recon.status_transitions_unpartitioned) months;
select recon.create_month_partition('discrepancies', m)
from (select distinct date_trunc('month', detected_at at time zone 'UTC')::date as m
      from recon.discrepancies_unpartitioned) months;
select recon.create_month_partition('events', m)
from (select distinct date_trunc('month', created_at at time zone 'UTC')::date as m
      from recon.events_unpartitioned) months;
select recon.ensure_partitions(interval '3 months');

-- The copy (no trigger on the new tables yet: nothing is announced or checked twice).
insert into recon.status_transitions
    (payment_id, observation_no, from_status, to_status, observed_at, provider_dt, body, request_id)
select payment_id, observation_no, from_status, to_status, observed_at, provider_dt, body, request_id
from recon.status_transitions_unpartitioned;

insert into recon.transition_keys (payment_id, observation_no)
select payment_id, observation_no from recon.status_transitions_unpartitioned;

insert into recon.discrepancies
    (id, payment_id, kind, expected, actual, detected_at, resolved_at, resolved_by, resolution,
     follows_id)
overriding system value
select id, payment_id, kind, expected, actual, detected_at, resolved_at, resolved_by, resolution,
       follows_id
from recon.discrepancies_unpartitioned;

insert into recon.open_flags (payment_id, kind, flag_id)
select payment_id, kind, id from recon.discrepancies_unpartitioned where resolved_at is null;

insert into recon.events
    (id, type, payment_id, occurred_at, payload, created_at, delivered_at, abandoned_at,
     skipped_at, attempts, first_attempt_at, last_error, next_attempt_at, lease_owner,
     lease_expires_at)
overriding system value
select id, type, payment_id, occurred_at, payload, created_at, delivered_at, abandoned_at,
       skipped_at, attempts, first_attempt_at, last_error, next_attempt_at, lease_owner,
       lease_expires_at
from recon.events_unpartitioned;

-- Ids continue where the old identities stopped.
select setval(pg_get_serial_sequence('recon.discrepancies', 'id'),
              greatest((select last_value from recon.discrepancies_id_seq_unpartitioned),
                       (select coalesce(max(id), 0) from recon.discrepancies_unpartitioned), 1));
select setval(pg_get_serial_sequence('recon.events', 'id'),
              greatest((select last_value from recon.events_id_seq_unpartitioned),
                       (select coalesce(max(id), 0) from recon.events_unpartitioned), 1));

-- Grants on the old tables (whole table and per column) are given again on the new ones; a
-- role that may write history may also read the side tables its writes are checked against.
do $$
declare
    t text;
    g record;
    grantee_sql text;
begin
    foreach t in array array['status_transitions', 'discrepancies', 'events'] loop
        for g in
            select null::name as column_name, a.grantee, a.privilege_type
            from pg_class c cross join lateral aclexplode(c.relacl) a
            where c.oid = format('recon.%I', t || '_unpartitioned')::regclass
              and a.grantee <> c.relowner
            union all
            select att.attname, a.grantee, a.privilege_type
            from pg_attribute att
            join pg_class c on c.oid = att.attrelid
            cross join lateral aclexplode(att.attacl) a
            where att.attrelid = format('recon.%I', t || '_unpartitioned')::regclass
              and att.attnum > 0 and not att.attisdropped and a.grantee <> c.relowner
        loop
            grantee_sql := case when g.grantee = 0 then 'public'
                                else quote_ident(pg_get_userbyid(g.grantee)) end;
            if g.column_name is null then
                execute format('grant %s on recon.%I to %s', g.privilege_type, t, grantee_sql);
                if g.privilege_type = 'INSERT' and t = 'status_transitions' then
                    execute format('grant select on recon.transition_keys to %s', grantee_sql);
                elsif g.privilege_type = 'INSERT' and t = 'discrepancies' then
                    execute format('grant select on recon.open_flags to %s', grantee_sql);
                end if;
            else
                execute format('grant %s (%I) on recon.%I to %s', g.privilege_type,
                               g.column_name, t, grantee_sql);
            end if;
        end loop;
    end loop;
end
$$;

-- The views read the new tables: each is replaced by its own definition, which now names
-- them (same columns, so grants, owners and comments stay).
do $$
declare
    v record;
begin
    for v in select * from recon.saved_history_views order by view_oid loop
        execute format('create or replace view %s %s as %s', v.view_name,
                       case when v.reloptions is null then ''
                            else 'with (' || array_to_string(v.reloptions, ', ') || ')' end,
                       v.definition);
    end loop;
end
$$;

drop table recon.saved_history_views;
drop table recon.status_transitions_unpartitioned;
drop table recon.discrepancies_unpartitioned;
drop table recon.events_unpartitioned;

-- Triggers ------------------------------------------------------------------------------------

-- History's uniqueness, in the side tables (security definer: writers need no grant on them).
create function recon.keep_transition_unique() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into recon.transition_keys (payment_id, observation_no)
    values (new.payment_id, new.observation_no);
    return new;
end
$$;

create trigger status_transitions_unique
    before insert on recon.status_transitions
    for each row execute function recon.keep_transition_unique();

create function recon.keep_open_flags() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'INSERT' then
        if new.follows_id is not null
           and not exists (select 1 from recon.discrepancies where id = new.follows_id) then
            raise exception 'follows_id % names no flag', new.follows_id
                using errcode = 'foreign_key_violation';
        end if;
        if new.resolved_at is null then
            insert into recon.open_flags (payment_id, kind, flag_id)
            values (new.payment_id, new.kind, new.id);
        end if;
        return new;
    end if;
    -- UPDATE (after it, so only a resolution that was written counts)
    if old.resolved_at is null and new.resolved_at is not null then
        delete from recon.open_flags where payment_id = old.payment_id and kind = old.kind;
    end if;
    return null;
end
$$;

create trigger discrepancies_open_unique
    before insert on recon.discrepancies
    for each row execute function recon.keep_open_flags();

create trigger discrepancies_open_closed
    after update on recon.discrepancies
    for each row execute function recon.keep_open_flags();

-- Append-only, as before (row triggers on the parent apply to every partition).
create trigger status_transitions_append_only
    before update or delete on recon.status_transitions
    for each row execute function recon.refuse_changing_history();
create trigger discrepancies_append_only
    before update or delete on recon.discrepancies
    for each row execute function recon.refuse_changing_a_flag();
create trigger events_append_only
    before update or delete on recon.events
    for each row execute function recon.refuse_changing_an_event();

create trigger transition_keys_append_only
    before update or delete on recon.transition_keys
    for each row execute function recon.refuse_changing_history();

create trigger status_transitions_never_truncated
    before truncate on recon.status_transitions
    for each statement execute function recon.refuse_truncating_history();
create trigger discrepancies_never_truncated
    before truncate on recon.discrepancies
    for each statement execute function recon.refuse_truncating_history();
create trigger events_never_truncated
    before truncate on recon.events
    for each statement execute function recon.refuse_truncating_history();
create trigger transition_keys_never_truncated
    before truncate on recon.transition_keys
    for each statement execute function recon.refuse_truncating_history();

-- The outbox, as before.
create trigger status_transitions_announced
    after insert on recon.status_transitions
    referencing new table as new_rows
    for each statement execute function recon.events_from_transitions();
create trigger discrepancies_opened_announced
    after insert on recon.discrepancies
    referencing new table as new_rows
    for each statement execute function recon.events_from_opened_flags();
create trigger discrepancies_resolved_announced
    after update on recon.discrepancies
    referencing old table as old_rows new table as new_rows
    for each statement execute function recon.events_from_resolved_flags();
create trigger events_notified
    after insert on recon.events
    referencing new table as new_rows
    for each statement execute function recon.notify_events();

-- Event retention (item 2) -------------------------------------------------------------------

-- Drops the monthly partitions of recon.events whose whole month ended more than `retention`
-- ago and, when only_finished, whose every event was delivered, skipped or abandoned (checked
-- under the partition's lock, so no event can change meanwhile). Never deletes a row; never
-- touches the DEFAULT partition (ensure_partitions moves its rows out first). A partition
-- whose lock is not granted within lock_timeout is left for the next run. Returns the names
-- of the partitions dropped.
create function recon.drop_expired_event_partitions(retention interval, only_finished boolean)
returns setof text
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '5s'
as $$
declare
    p record;
    pending boolean;
begin
    if retention < interval '1 day' then
        raise exception 'events retention must be at least one day, not %', retention;
    end if;
    perform pg_advisory_xact_lock(hashtext('freedompay-recon partitions'));
    for p in
        select c.relname,
               (to_date(substring(c.relname from '^events_(\d{4}_\d{2})$'), 'YYYY_MM')
                + interval '1 month')::timestamp at time zone 'UTC' as month_ends
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'recon.events'::regclass
          and c.relname ~ '^events_\d{4}_\d{2}$'
        order by c.relname
    loop
        continue when p.month_ends > now() - retention;
        begin
            execute format('lock table recon.%I in access exclusive mode', p.relname);
            if only_finished then
                execute format('select exists (select 1 from recon.%I where delivered_at is null and abandoned_at is null and skipped_at is null)', p.relname)
                    into pending;
                continue when pending;
            end if;
            execute format('drop table recon.%I', p.relname);
            return next p.relname;
        exception when lock_not_available then
            raise notice 'events partition % is in use; it is dropped on a later run', p.relname;
        end;
    end loop;
end
$$;

comment on function recon.drop_expired_event_partitions(interval, boolean) is
    'Event retention: drops whole monthly partitions of recon.events older than retention (and, when only_finished, holding no undelivered event). Never deletes rows.';

-- Maintenance is for the roles that write history (the migrating role, and the daemon's role
-- through grant-daemon), not for readers.
revoke all on function recon.ensure_partitions(interval) from public;
revoke all on function recon.drop_expired_event_partitions(interval, boolean) from public;

do $$
declare
    g record;
begin
    for g in select distinct a.grantee
             from pg_class c cross join lateral aclexplode(c.relacl) a
             where c.oid = 'recon.events'::regclass and a.privilege_type = 'INSERT'
               and a.grantee <> c.relowner and a.grantee <> 0 loop
        execute format('grant execute on function recon.ensure_partitions(interval), recon.drop_expired_event_partitions(interval, boolean) to %s',
                       quote_ident(pg_get_userbyid(g.grantee)));
    end loop;
end
$$;
