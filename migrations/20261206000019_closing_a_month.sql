-- Closing a month (issue 24, item 1): signed-off figures that never change, and every later
-- change to a closed month booked as an adjustment in the open period, naming its cause.
--
-- What it adds, and why:
--
-- 1. recon.period_closes (append-only): each close and reopen of a reporting month (of
--    recon.timezone), when, by which database role (session_user) on behalf of which name,
--    with a note; a close keeps the month's figures as signed (its summary rows, basis
--    created: per day, currency, outcome and status, as `report` prints them) and the SHA-256
--    of their text. Written only by recon.close_month and recon.reopen_month, which keep the
--    order: a month that has ended, the one after the last closed (none skipped that holds
--    payments), forward only; only the latest closed month reopens. recon.period_state holds
--    where the closed period ends, so "is this payment's month closed" is one comparison.
--
-- 2. recon.payment_changes (append-only): every change of a payment's intake columns
--    (expected amount and currency, order id, created_at, expires_at), whoever makes it (SQL
--    by hand included), with the old and new values, the role and the transaction. Before,
--    an expected amount changed by SQL moved the summary with no trace.
--
-- 3. recon.adjustments (append-only): one row per payment and transaction that changes what
--    a closed month's figures count (a late payment, a reversal a recheck finds, a changed
--    amount, fee or expected amount, a flag opened or resolved on one of its payments, a
--    payment added back-dated into it). It keeps the payment's original day, the day it was
--    booked (the day it was observed, always in an open month), the old and new values of
--    every column the summary reads, and the cause: the transitions, flags and intake changes
--    that transaction wrote for the payment. Booked at commit by a deferred constraint
--    trigger that is queued only for payments of a closed month, so the daemon's ordinary
--    writes pay nothing. The payment's own history is untouched. The live summary of a closed
--    month is always its signed figures plus its adjustments' legs
--    (recon.adjustment_legs); `report` for a closed month prints the signed figures.
--
-- 4. An `adjustment_booked` event per adjustment, in the same transaction (the outbox's type
--    check widened; NOT VALID, since every existing row has one of the earlier types and a
--    validation would read a year of events).

set local search_path = pg_catalog;

-- 1. Closes ----------------------------------------------------------------------------------

create table recon.period_closes (
    id              bigint generated always as identity primary key,
    -- the reporting month (its first day, in recon.timezone)
    month           date not null check (month = date_trunc('month', month)::date),
    action          text not null check (action in ('close', 'reopen')),
    at              timestamptz not null default now(),
    -- the database role of the session (what the audit trail proves) and the name given
    db_role         text not null default session_user,
    on_behalf_of    text not null,
    -- the close's note, or why the month was reopened
    note            text not null check (btrim(note) <> ''),
    zone            text not null,
    -- a close: the month's summary rows as signed, and the SHA-256 (hex) of their text
    figures         jsonb,
    figures_sha256  text,
    -- the last closed month before this action (a reopen goes back to it)
    closed_through_before date,
    check ((action = 'close') = (figures is not null and figures_sha256 is not null))
);

comment on table recon.period_closes is
    'Every close and reopen of a reporting month, in order (append-only). A close keeps the month''s figures as signed and their SHA-256; report prints them for a closed month.';

create trigger period_closes_append_only
    before update or delete on recon.period_closes
    for each row execute function recon.refuse_changing_history();
create trigger period_closes_never_truncated
    before truncate on recon.period_closes
    for each statement execute function recon.refuse_truncating_history();

create table recon.period_state (
    one             boolean primary key default true check (one),
    -- the last closed month (null: none) and the instant the closed period ends
    closed_through  date,
    closed_until    timestamptz
);

insert into recon.period_state default values;

comment on table recon.period_state is
    'Where the closed period ends (one row), kept by recon.close_month and recon.reopen_month.';

-- Whether an instant (a payment's created_at) lies in the closed period.
create function recon.in_closed_period(at timestamptz) returns boolean
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(at < s.closed_until, false) from recon.period_state s
$$;

-- The first day of the first open month (null: nothing is closed): reporting days before it
-- are read from the figures signed when their month closed.
create function recon.first_open_day() returns date
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select (s.closed_through + interval '1 month')::date from recon.period_state s
$$;

-- The month's summary rows, basis created, in the order `report` prints them, as signed.
create function recon.month_figures(month date) returns jsonb
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
               'day', s.day, 'currency', s.currency, 'outcome', s.outcome, 'status', s.status,
               'payments', s.payments, 'expected_payments', s.expected_payments,
               'expected_amount', s.expected_amount::text,
               'received_payments', s.received_payments,
               'received_amount', s.received_amount::text, 'fee', s.fee::text,
               'payments_without_fee', s.payments_without_fee,
               'difference', s.difference::text, 'needs_action', s.needs_action,
               'amount_mismatch', s.amount_mismatch, 'currency_mismatch', s.currency_mismatch,
               'order_mismatch', s.order_mismatch,
               'paid_after_deadline', s.paid_after_deadline, 'not_found', s.not_found,
               'unknown_status', s.unknown_status,
               'terminal_status_changed', s.terminal_status_changed,
               'polling_abandoned', s.polling_abandoned)
             order by s.day, s.currency,
                      array_position(array['paid', 'failed', 'expired_unpaid', 'in_progress'],
                                     s.outcome),
                      s.status), '[]'::jsonb)
    from recon.daily_summary_between(recon.day_start(month),
                                     recon.day_start((month + interval '1 month')::date),
                                     null) s
    where s.basis = 'created'
$$;

-- The close that holds for each closed month now (the latest, after a reopen and a new close).
create function recon.current_closes() returns setof recon.period_closes
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select distinct on (c.month) c.*
    from recon.period_closes c, recon.period_state s
    where c.action = 'close' and c.month <= s.closed_through
    order by c.month, c.id desc
$$;

-- Closes `month`, or with dry_run only says what it would sign. Holds writers of payments
-- back while it reads the figures (a SHARE lock, as a rollup rebuild), so no change can fall
-- between the figures signed and the first adjustment booked.
create function recon.close_month(month date, note text, on_behalf_of text, dry_run boolean)
returns table (id bigint, figures jsonb, figures_sha256 text)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    state recon.period_state;
    zone text := recon.report_zone();
    first_open timestamptz;
    earliest timestamptz;
    signed jsonb;
    sha text;
    new_id bigint;
begin
    if month is null or month <> date_trunc('month', month)::date then
        raise exception 'not a month: %', month using errcode = 'invalid_parameter_value';
    end if;
    if note is null or btrim(note) = '' then
        raise exception 'a close needs a note: what was checked, and by whom'
            using errcode = 'invalid_parameter_value';
    end if;
    if recon.day_start((month + interval '1 month')::date) > now() then
        raise exception 'month % has not ended in %; only a month that has ended can be closed',
            to_char(month, 'YYYY-MM'), zone using errcode = 'invalid_parameter_value';
    end if;
    select * into state from recon.period_state for update;
    if state.closed_through is not null and month <= state.closed_through then
        raise exception 'month % is closed already (the closed period runs through %)',
            to_char(month, 'YYYY-MM'), to_char(state.closed_through, 'YYYY-MM')
            using errcode = 'invalid_parameter_value';
    end if;
    lock table recon.payments in share mode;
    first_open := coalesce(state.closed_until, '-infinity');
    select min(p.created_at) into earliest from recon.payments p
    where p.created_at >= first_open and p.created_at < recon.day_start(month);
    if earliest is not null then
        raise exception 'month % holds payments and is not closed: close it first (months close in order)',
            to_char(recon.report_day(earliest), 'YYYY-MM') using errcode = 'invalid_parameter_value';
    end if;
    -- Changes not folded yet are counted by the summary too: the figures are exact now.
    signed := recon.month_figures(month);
    sha := encode(sha256(convert_to(signed::text, 'UTF8')), 'hex');
    if dry_run then
        return query select null::bigint, signed, sha;
        return;
    end if;
    insert into recon.period_closes (month, action, on_behalf_of, note, zone, figures,
                                     figures_sha256, closed_through_before)
    values (month, 'close', on_behalf_of, note, zone, signed, sha, state.closed_through)
    returning period_closes.id into new_id;
    update recon.period_state
    set closed_through = month,
        closed_until = recon.day_start((month + interval '1 month')::date);
    return query select new_id, signed, sha;
end
$$;

-- Reopens the latest closed month: the closed period goes back to where that close found
-- it. The close and its signature stay in recon.period_closes; a later close signs anew.
create function recon.reopen_month(month date, reason text, on_behalf_of text) returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    state recon.period_state;
    before date;
    new_id bigint;
begin
    if reason is null or btrim(reason) = '' then
        raise exception 'a reopen needs a reason' using errcode = 'invalid_parameter_value';
    end if;
    select * into state from recon.period_state for update;
    if state.closed_through is null or month is distinct from state.closed_through then
        raise exception 'only the latest closed month can be reopened (%)',
            coalesce(to_char(state.closed_through, 'YYYY-MM'), 'none is closed')
            using errcode = 'invalid_parameter_value';
    end if;
    lock table recon.payments in share mode;
    select c.closed_through_before into before from recon.period_closes c
    where c.month = state.closed_through and c.action = 'close'
    order by c.id desc limit 1;
    insert into recon.period_closes (month, action, on_behalf_of, note, zone,
                                     closed_through_before)
    values (month, 'reopen', on_behalf_of, reason, recon.report_zone(), state.closed_through)
    returning id into new_id;
    update recon.period_state
    set closed_through = before,
        closed_until = case when before is null then null
                            else recon.day_start((before + interval '1 month')::date) end;
    return new_id;
end
$$;

revoke all on function recon.close_month(date, text, text, boolean) from public;
revoke all on function recon.reopen_month(date, text, text) from public;

-- 2. Intake changes ---------------------------------------------------------------------------

create table recon.payment_changes (
    id              bigint generated always as identity primary key,
    payment_id      text not null,
    changed_at      timestamptz not null default now(),
    db_role         text not null default session_user,
    -- the changing transaction (an adjustment names the changes of its own)
    xact            xid8 not null default pg_current_xact_id(),
    -- the intake columns that changed: {"column": [old, new], …}
    changes         jsonb not null
);

create index payment_changes_payment_idx on recon.payment_changes (payment_id, id);

comment on table recon.payment_changes is
    'Every change of a payment''s intake columns (expected amount and currency, order id, created_at, expires_at), whoever made it, with the old and new values (append-only).';

create trigger payment_changes_append_only
    before update or delete on recon.payment_changes
    for each row execute function recon.refuse_changing_history();
create trigger payment_changes_never_truncated
    before truncate on recon.payment_changes
    for each statement execute function recon.refuse_truncating_history();

create function recon.record_intake_change() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    changes jsonb := '{}';
begin
    if old.expected_amount is distinct from new.expected_amount then
        changes := changes || jsonb_build_object('expected_amount',
            jsonb_build_array(old.expected_amount::text, new.expected_amount::text));
    end if;
    if old.expected_currency is distinct from new.expected_currency then
        changes := changes || jsonb_build_object('expected_currency',
            jsonb_build_array(old.expected_currency, new.expected_currency));
    end if;
    if old.order_id is distinct from new.order_id then
        changes := changes || jsonb_build_object('order_id',
            jsonb_build_array(old.order_id, new.order_id));
    end if;
    if old.created_at is distinct from new.created_at then
        changes := changes || jsonb_build_object('created_at',
            jsonb_build_array(old.created_at, new.created_at));
    end if;
    if old.expires_at is distinct from new.expires_at then
        changes := changes || jsonb_build_object('expires_at',
            jsonb_build_array(old.expires_at, new.expires_at));
    end if;
    insert into recon.payment_changes (payment_id, changes) values (new.payment_id, changes);
    return null;
end
$$;

revoke all on function recon.record_intake_change() from public;

create trigger payments_intake_changed
    after update on recon.payments
    for each row
    when (old.expected_amount is distinct from new.expected_amount
          or old.expected_currency is distinct from new.expected_currency
          or old.order_id is distinct from new.order_id
          or old.created_at is distinct from new.created_at
          or old.expires_at is distinct from new.expires_at)
    execute function recon.record_intake_change();

-- 3. Adjustments ------------------------------------------------------------------------------

create table recon.adjustments (
    id                      bigint generated always as identity primary key,
    booked_at               timestamptz not null default now(),
    -- the day it was observed (always in an open month: only ended months close, in order)
    booked_day              date not null,
    payment_id              text not null,
    -- the payment's reporting day, and so the closed month whose figures it changes
    original_day            date not null,
    xact                    xid8 not null default pg_current_xact_id(),
    -- transition, intake_change, flag, new_payment, removed, observation (a poll that
    -- changed an amount or fee without a status change) or direct_change (SQL by hand that
    -- changed a column the daemon keeps, with no history of its own)
    cause_kind              text not null check (cause_kind in ('transition', 'intake_change',
                                'flag', 'new_payment', 'removed', 'observation',
                                'direct_change')),
    cause                   text not null,
    -- {"transitions": [observation_no…], "flags": [id…], "changes": [id…]}
    cause_refs              jsonb not null,
    -- what the summary reads of the payment, before and after (null: no payment)
    old_created_at          timestamptz,
    new_created_at          timestamptz,
    old_status              text,
    new_status              text,
    old_deadline_missed_at  timestamptz,
    new_deadline_missed_at  timestamptz,
    old_amount              numeric,
    new_amount              numeric,
    old_currency            text,
    new_currency            text,
    old_fee                 numeric,
    new_fee                 numeric,
    old_expected_amount     numeric,
    new_expected_amount     numeric,
    old_expected_currency   text,
    new_expected_currency   text,
    old_open_flags          text[],
    new_open_flags          text[],
    unique (payment_id, xact)
);

create index adjustments_booked_idx on recon.adjustments (booked_day, id);
create index adjustments_original_idx on recon.adjustments (original_day, id);

comment on table recon.adjustments is
    'Every change to a closed month''s figures, booked on the day it was observed in the open period, with its cause and the payment''s values before and after (append-only). The payment''s own history is untouched.';

create trigger adjustments_append_only
    before update or delete on recon.adjustments
    for each row execute function recon.refuse_changing_history();
create trigger adjustments_never_truncated
    before truncate on recon.adjustments
    for each statement execute function recon.refuse_truncating_history();

-- What an adjustment adds to the summary of its payment's month: the new values' legs less
-- the old ones' (basis created, in the rollup's zone).
create function recon.adjustment_legs(a recon.adjustments) returns setof recon.summary_rollup
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select l.* from recon.summary_legs(row(-1, a.old_created_at, null, a.old_status,
              a.old_deadline_missed_at, a.old_amount, a.old_currency, a.old_fee,
              a.old_expected_amount, a.old_expected_currency,
              coalesce(a.old_open_flags, '{}'))::recon.summary_changes,
              recon.report_zone()) l
    where a.old_created_at is not null and l.basis = 'created'
    union all
    select l.* from recon.summary_legs(row(1, a.new_created_at, null, a.new_status,
              a.new_deadline_missed_at, a.new_amount, a.new_currency, a.new_fee,
              a.new_expected_amount, a.new_expected_currency,
              coalesce(a.new_open_flags, '{}'))::recon.summary_changes,
              recon.report_zone()) l
    where a.new_created_at is not null and l.basis = 'created'
$$;

-- Books the adjustment of one payment in one transaction, at commit: its values before the
-- transaction (the first queued event's OLD) against the row as committed, and the cause
-- from what this transaction wrote for it.
create function recon.book_adjustment() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    id_ text := coalesce(new.payment_id, old.payment_id);
    x xid8 := pg_current_xact_id();
    now_ recon.payments;
    before_ recon.payments;
    transitions jsonb;
    flags jsonb;
    changes jsonb;
    said_transitions text;
    said_flags text;
    said_changes text;
    words text[];
    kind text;
    booked recon.adjustments;
begin
    if exists (select 1 from recon.adjustments a where a.payment_id = id_ and a.xact = x) then
        return null;
    end if;
    select * into now_ from recon.payments p where p.payment_id = id_;
    if tg_op <> 'INSERT' then
        before_ := old;
    end if;
    -- Nothing the summary counts changed, net (a flag opened and closed by a rule at once).
    if (before_.created_at, before_.status, before_.deadline_missed_at, before_.amount,
        before_.currency, before_.fee, before_.expected_amount, before_.expected_currency,
        before_.open_flags)
       is not distinct from
       (now_.created_at, now_.status, now_.deadline_missed_at, now_.amount, now_.currency,
        now_.fee, now_.expected_amount, now_.expected_currency, now_.open_flags) then
        return null;
    end if;
    select jsonb_agg(t.observation_no order by t.observation_no),
           string_agg(format('transition %s: %s → %s', t.observation_no,
                             coalesce(t.from_status, 'no answer'), t.to_status), ', '
                      order by t.observation_no)
    into transitions, said_transitions
    from recon.status_transitions t
    where t.payment_id = id_ and t.xmin = xid(x);
    select jsonb_agg(d.id order by d.id),
           string_agg(format('flag #%s %s %s', d.id, d.kind,
                             case when d.resolved_at is null then 'opened'
                                  else 'resolved by ' || coalesce(d.resolved_role, '?')
                                       || ' (' || d.resolved_by || ')' end), ', '
                      order by d.id)
    into flags, said_flags
    from recon.discrepancies d
    where d.payment_id = id_ and d.xmin = xid(x);
    select jsonb_agg(c.id order by c.id),
           string_agg(format('intake change #%s by %s: %s', c.id, c.db_role, c.changes), ', '
                      order by c.id)
    into changes, said_changes
    from recon.payment_changes c
    where c.payment_id = id_ and c.xact = x;
    words := array_remove(array[said_transitions, said_changes, said_flags], null);
    kind := case
        when transitions is not null then 'transition'
        when changes is not null then 'intake_change'
        when tg_op = 'INSERT' then 'new_payment'
        when now_.payment_id is null then 'removed'
        when flags is not null then 'flag'
        when before_.last_checked_at is distinct from now_.last_checked_at then 'observation'
        else 'direct_change' end;
    if tg_op = 'INSERT' then
        words := array_prepend('payment added', words);
    elsif now_.payment_id is null then
        words := array_prepend('payment removed', words);
    end if;
    if kind = 'observation' then
        words := array_append(words, format('poll observed at %s', now_.last_checked_at));
    elsif kind = 'direct_change' then
        words := array_append(words, format('changed by %s with no transition, flag or intake change',
                                            session_user));
    end if;
    insert into recon.adjustments (
        booked_day, payment_id, original_day, cause_kind, cause, cause_refs,
        old_created_at, new_created_at, old_status, new_status,
        old_deadline_missed_at, new_deadline_missed_at, old_amount, new_amount,
        old_currency, new_currency, old_fee, new_fee, old_expected_amount, new_expected_amount,
        old_expected_currency, new_expected_currency, old_open_flags, new_open_flags)
    values (
        recon.report_day(now()), id_,
        recon.report_day(coalesce(before_.created_at, now_.created_at)), kind,
        array_to_string(words, '; '),
        jsonb_strip_nulls(jsonb_build_object('transitions', transitions, 'flags', flags,
                                             'changes', changes)),
        before_.created_at, now_.created_at, before_.status, now_.status,
        before_.deadline_missed_at, now_.deadline_missed_at, before_.amount, now_.amount,
        before_.currency, now_.currency, before_.fee, now_.fee,
        before_.expected_amount, now_.expected_amount,
        before_.expected_currency, now_.expected_currency,
        before_.open_flags, now_.open_flags)
    returning * into booked;
    insert into recon.events (type, payment_id, occurred_at, payload)
    values ('adjustment_booked', id_, booked.booked_at, jsonb_build_object(
        'adjustment_id', booked.id,
        'original_day', booked.original_day,
        'booked_day', booked.booked_day,
        'cause_kind', booked.cause_kind,
        'cause', booked.cause,
        'old_status', booked.old_status, 'new_status', booked.new_status,
        'old_amount', booked.old_amount::text, 'new_amount', booked.new_amount::text,
        'old_fee', booked.old_fee::text, 'new_fee', booked.new_fee::text,
        'old_expected_amount', booked.old_expected_amount::text,
        'new_expected_amount', booked.new_expected_amount::text));
    return null;
end
$$;

revoke all on function recon.book_adjustment() from public;

-- Queued only for payments of the closed period, and only when a column the month's figures
-- read changes (settled_at is the other basis's, never signed).
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
          and (recon.in_closed_period(old.created_at) or recon.in_closed_period(new.created_at)))
    execute function recon.book_adjustment();
create constraint trigger payments_adjusted_insert
    after insert on recon.payments
    deferrable initially deferred
    for each row
    when (recon.in_closed_period(new.created_at))
    execute function recon.book_adjustment();
create constraint trigger payments_adjusted_delete
    after delete on recon.payments
    deferrable initially deferred
    for each row
    when (recon.in_closed_period(old.created_at))
    execute function recon.book_adjustment();

-- 4. The event ------------------------------------------------------------------------------

alter table recon.events drop constraint events_type_check;
alter table recon.events add constraint events_type_check
    check (type in ('status_changed', 'flag_opened', 'flag_resolved', 'adjustment_booked'))
    not valid;

-- The daemon's roles read where the closed period ends (the claim writes payments whose
-- triggers ask); grant-daemon gives the same to new roles.
do $$
declare
    g record;
begin
    for g in select distinct a.grantee
             from pg_class c cross join lateral aclexplode(c.relacl) a
             where c.oid = 'recon.events'::regclass and a.privilege_type = 'INSERT'
               and a.grantee <> c.relowner and a.grantee <> 0 loop
        execute format('grant select on recon.period_closes, recon.adjustments, recon.payment_changes to %s',
                       quote_ident(pg_get_userbyid(g.grantee)));
    end loop;
end
$$;
