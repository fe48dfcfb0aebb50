-- The engine's PostgreSQL cost (issue 25, item 7). Profiled with pg_stat_statements (track =
-- all) over `bench --payments 20000 --concurrency 32`: per payment reconciled, the record's
-- UPDATE of recon.payments ran a PL/pgSQL row trigger that made three inserts (two rows into
-- recon.summary_changes, one into recon.payment_states), and every write of a payment (the
-- claim, the record, the release) checked the id and order id rules by calling
-- recon.text_problem as a function, not inlined: its test of the server encoding
-- (current_setting, which is only stable) kept the planner from inlining it since migration
-- 20261201000010.
--
-- What changes, and why (nothing about what is recorded):
--
-- 1. recon.text_problem tests NFC only in a UTF-8 database, as before, but the encoding is
--    read once, here, so the function is immutable through and through and a CHECK inlines
--    it again. (A database's encoding never changes.)
--
-- 2. The summary's changes and the payments' states are appended once per statement, from the
--    statement's transition tables, not once per row: the same rows (for an update, only
--    payments whose summary columns changed: as found with sign -1, as left with +1; a
--    payment whose id changed counts as removed and added), in the same transaction, so the
--    rollup stays exact and the states complete. The three row triggers are replaced by
--    three statement triggers, and their function, recon.record_summary_change, is dropped.
--
-- 3. The closed-period test of a changed payment (which queues its adjustment) asks once, of
--    the earlier of its two created_at, instead of twice: the same answer (the earlier is
--    before the closed period's end exactly when either is; a null one is never in it).

set local search_path = pg_catalog;

-- 1. The short-text rule, inlinable ---------------------------------------------------------
do $do$
declare
    nfc_test text := case when current_setting('server_encoding') = 'UTF8'
                          then 'value is not nfc normalized' else 'false' end;
begin
    execute format($f$
create or replace function recon.text_problem(value text, max_length integer) returns text
language sql immutable parallel safe
as $$
    select case
        when value is null then null
        when value = '' then 'is empty'
        when length(value) > max_length then 'is longer than ' || max_length::text || ' characters'
        when value ~ '[\u0001-\u001f\u007f-\u009f\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]'
            then 'contains a control or invisible character'
        -- NFC is tested in a UTF-8 database only (decided when this was created: PostgreSQL
        -- refuses the test elsewhere, where a decomposed text cannot be stored anyway).
        when %s
            then 'is not in Unicode''s composed form (NFC); normalise it, e.g. with normalize(value, NFC) in SQL'
        when value ~ '^[\u0020\u0085\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]|[\u0020\u0085\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]$'
            then 'has spaces around it'
    end
$$
$f$, nfc_test);
end
$do$;

comment on function recon.text_problem(text, integer) is
    'Why a short text (an id, an order id) breaks the rule, or null: 1 to max_length characters, none invisible or blank-looking, in Unicode NFC, no whitespace around them.';

-- 2. The summary's changes and the states, once per statement ---------------------------------
create function recon.record_summary_changes() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'INSERT' then
        insert into recon.summary_changes
        select 1, n.created_at, n.settled_at, n.status, n.deadline_missed_at, n.amount,
               n.currency, n.fee, n.expected_amount, n.expected_currency, n.open_flags
        from new_rows n;
        insert into recon.payment_states (payment_id, created_at, settled_at, status,
                                          deadline_missed_at, amount, currency, fee,
                                          expected_amount, expected_currency, open_flags)
        select n.payment_id, n.created_at, n.settled_at, n.status, n.deadline_missed_at,
               n.amount, n.currency, n.fee, n.expected_amount, n.expected_currency, n.open_flags
        from new_rows n;
    elsif tg_op = 'DELETE' then
        insert into recon.summary_changes
        select -1, o.created_at, o.settled_at, o.status, o.deadline_missed_at, o.amount,
               o.currency, o.fee, o.expected_amount, o.expected_currency, o.open_flags
        from old_rows o;
        insert into recon.payment_states (payment_id, removed)
        select o.payment_id, true from old_rows o;
    else
        -- Each payment as found and as left, where a column the summary reads changed (a
        -- payment whose id changed is one found and none left, and one left and none found).
        with changed as materialized (
            select coalesce(n.payment_id, o.payment_id) as payment_id,
                   o.payment_id is not null as existed,
                   n.payment_id is not null as exists_now,
                   o.created_at as o_created_at,
                   o.settled_at as o_settled_at,
                   o.status as o_status,
                   o.deadline_missed_at as o_deadline_missed_at,
                   o.amount as o_amount,
                   o.currency as o_currency,
                   o.fee as o_fee,
                   o.expected_amount as o_expected_amount,
                   o.expected_currency as o_expected_currency,
                   o.open_flags as o_open_flags,
                   n.created_at as n_created_at,
                   n.settled_at as n_settled_at,
                   n.status as n_status,
                   n.deadline_missed_at as n_deadline_missed_at,
                   n.amount as n_amount,
                   n.currency as n_currency,
                   n.fee as n_fee,
                   n.expected_amount as n_expected_amount,
                   n.expected_currency as n_expected_currency,
                   n.open_flags as n_open_flags
            from old_rows o
            full join new_rows n on n.payment_id = o.payment_id
            where o.payment_id is null or n.payment_id is null
               or (o.created_at, o.settled_at, o.status, o.deadline_missed_at, o.amount,
                   o.currency, o.fee, o.expected_amount, o.expected_currency, o.open_flags)
                  is distinct from
                  (n.created_at, n.settled_at, n.status, n.deadline_missed_at, n.amount,
                   n.currency, n.fee, n.expected_amount, n.expected_currency, n.open_flags)
        ),
        summarized as (
            insert into recon.summary_changes
            select -1,
                   c.o_created_at, c.o_settled_at, c.o_status, c.o_deadline_missed_at,
                   c.o_amount, c.o_currency, c.o_fee, c.o_expected_amount,
                   c.o_expected_currency, c.o_open_flags
            from changed c where c.existed
            union all
            select 1,
                   c.n_created_at, c.n_settled_at, c.n_status, c.n_deadline_missed_at,
                   c.n_amount, c.n_currency, c.n_fee, c.n_expected_amount,
                   c.n_expected_currency, c.n_open_flags
            from changed c where c.exists_now
        )
        insert into recon.payment_states (payment_id, removed, created_at, settled_at, status,
                                          deadline_missed_at, amount, currency, fee,
                                          expected_amount, expected_currency, open_flags)
        select c.payment_id, not c.exists_now,
               c.n_created_at, c.n_settled_at, c.n_status, c.n_deadline_missed_at, c.n_amount,
               c.n_currency, c.n_fee, c.n_expected_amount, c.n_expected_currency, c.n_open_flags
        from changed c;
    end if;
    return null;
end
$$;

comment on function recon.record_summary_changes() is
    'Appends what the summary reads of the payments a statement inserted, changed or deleted to recon.summary_changes (as found: -1, as left: +1) and their new states to recon.payment_states. Internal.';

drop trigger payments_summarized_insert on recon.payments;
drop trigger payments_summarized_delete on recon.payments;
drop trigger payments_summarized_update on recon.payments;
drop function recon.record_summary_change();

create trigger payments_summarized_insert
    after insert on recon.payments
    referencing new table as new_rows
    for each statement execute function recon.record_summary_changes();
create trigger payments_summarized_delete
    after delete on recon.payments
    referencing old table as old_rows
    for each statement execute function recon.record_summary_changes();
create trigger payments_summarized_update
    after update on recon.payments
    referencing old table as old_rows new table as new_rows
    for each statement execute function recon.record_summary_changes();

-- 3. One closed-period test per changed payment ------------------------------------------------
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
          and recon.in_closed_period(least(old.created_at, new.created_at)))
    execute function recon.book_adjustment();
