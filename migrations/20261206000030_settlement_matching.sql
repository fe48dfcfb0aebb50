-- Matching the registry to the payments, and payouts to the bank (issue 27, item 3).
--
-- What it adds, and why: a registry line says the provider counts a payment, a refund or a
-- fee; a payout is the lines it paid in one transfer; a bank credit is what arrived. Finance
-- closes on the three agreeing, and a person must be able to see, and undo, every match.
--
-- 1. Five action flags:
--    not_in_registry           a paid payment in no registry line after registry.expect_within
--                              (a flag on the payment, recon.discrepancies);
--    registry_amount_mismatch  a registry line for a tracked payment states another amount,
--                              currency or commission (on the payment, recon.discrepancies);
--    registry_unknown          a registry line for a payment nobody tracks, or one not paid;
--    payout_not_at_bank        a payout with no bank credit within bank.match_window, or one
--                              that arrived after it;
--    bank_credit_unexplained   a credit from the provider's accounts no payout explains.
--    The last three are about a line or a transfer, not a payment of ours: they live in
--    recon.settlement_flags, named by their subject.
-- 2. recon.settlement_matches: one row per match: what matched what (a registry line and the
--    payment it belongs to; or payouts and bank credits), by which rule, when and by whom.
--    Only undone_at, undone_by and undo_note are ever written after, once: an undone match
--    stays as evidence, its pair is never matched again by a rule, and what was matched after
--    it is matched again.
-- 3. recon.settlement_flags: the flags of item 1 that have no payment, with the same
--    resolution columns and rules as recon.discrepancies (append-only; one open per subject
--    and kind); recon.open_settlement_flags lists the open ones for finance.
-- 4. recon.payouts: each payout the registries name, per currency: its lines, gross, refunds,
--    commission and net, and the credits it was matched to.
-- 5. recon.bank_files.format may also be 'xlsx': a statement workbook read through a column
--    map (import --bank FILE.xlsx --map MAP), besides a 1C exchange file.
-- 6. recon.settlement_closes: a close (recon.period_closes) also signs the month's money to
--    the bank as it stood (report --settlement), in the same transaction; report prints those
--    figures for the closed month from then on, and what registries and statements imported
--    later changed, apart.
-- 7. recon.month_closes: each month closed now, for readers (the console's month page): when,
--    on whose behalf, the note, and the figures signed with their SHA-256.

set local search_path = pg_catalog;

-- 1. Flag kinds ------------------------------------------------------------------------------
insert into recon.flag_kinds (kind, class, meaning) values
    ('not_in_registry', 'action',
     'the payment was paid, but no registry imported lists it registry.expect_within after it was paid: ask Freedom Pay for the registry that covers it, or whether it was settled; the flag clears itself when a registry lists it'),
    ('registry_amount_mismatch', 'action',
     'a registry line for this payment states another amount, currency or commission than was recorded here: expected is what was recorded, actual what the registry states; ask Freedom Pay which is right (the registry''s commission is what is booked)'),
    ('registry_unknown', 'action',
     'a registry line names a payment nobody tracks here, or one not paid: find whose payment it is (another shop on the same account?) or enqueue it; the flag clears itself when the payment is tracked and paid'),
    ('payout_not_at_bank', 'action',
     'a payout the registry names reached no bank statement within bank.match_window, or arrived after it (actual says when): ask the bank, or Freedom Pay for the transfer''s details'),
    ('bank_credit_unexplained', 'action',
     'a credit from the provider''s accounts that no payout in the registries explains: ask Freedom Pay which registry covers it (a registry not imported yet, money carried forward)');

-- 2. Matches ---------------------------------------------------------------------------------
create table recon.settlement_matches (
    id                bigint generated always as identity primary key,
    -- registry: a registry line and its payment; bank: payouts and bank credits
    side              text not null check (side in ('registry', 'bank')),
    rule              text not null check (rule in (
                          'provider_id', 'exact', 'credit_many_payouts',
                          'payout_many_credits', 'late')),
    registry_line_id  bigint references recon.registry_lines (id),
    payment_id        text references recon.payments (payment_id),
    -- the payouts (recon.payouts.payout) and bank credits (recon.bank_lines.id) matched
    payouts           text[] not null default '{}',
    credits           bigint[] not null default '{}',
    currency          text not null check (currency ~ '^[A-Z]{3}$'),
    -- what the registry side sums to (a line's amount; the payouts' nets)
    amount            numeric not null check (recon.amount_problem(amount) is null),
    -- what the other side sums to (the payment's received amount; the credits)
    matched_amount    numeric check (recon.amount_problem(matched_amount) is null),
    matched_at        timestamptz not null default now(),
    matched_by        text not null check (length(matched_by) between 1 and 200),
    undone_at         timestamptz,
    undone_by         text check (length(undone_by) between 1 and 200),
    undo_note         text check (length(undo_note) between 1 and 2000),
    -- the match whose undoing undid this one (null: undone by a person, or not undone)
    undone_with       bigint references recon.settlement_matches (id),
    check ((undone_at is null) = (undone_by is null) and (undone_at is null) = (undo_note is null)),
    check (case side
               when 'registry' then registry_line_id is not null and payment_id is not null
                                    and cardinality(payouts) = 0 and cardinality(credits) = 0
               else registry_line_id is null and payment_id is null
                    and cardinality(payouts) >= 1 and cardinality(credits) >= 1
           end)
);

create unique index settlement_matches_line_uq on recon.settlement_matches (registry_line_id)
    where undone_at is null;
create index settlement_matches_payment_idx on recon.settlement_matches (payment_id);
create index settlement_matches_payouts_idx on recon.settlement_matches using gin (payouts);
create index settlement_matches_credits_idx on recon.settlement_matches using gin (credits);

comment on table recon.settlement_matches is
    'Each match of the money to the bank: side registry (a registry line and the payment it belongs to) or bank (payouts and the bank credits that paid them), by which rule, when and by whom. Undone matches stay (undone_at, undone_by, undo_note; undone_with: the match whose undoing undid this one); their pairs are never matched again by a rule.';
comment on column recon.settlement_matches.rule is
    'provider_id: the registry line names the payment by the provider''s id; exact: one payout, one credit of that amount within bank.match_window; credit_many_payouts: one credit, several payouts summing to it; payout_many_credits: one payout paid as several credits; late: one credit of the payout''s amount after bank.match_window.';

create function recon.refuse_changing_a_match() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'settlement_matches is history: a wrong match is undone (match --undo), never deleted'
            using errcode = 'restrict_violation';
    end if;
    if (new.id, new.side, new.rule, new.registry_line_id, new.payment_id, new.payouts,
        new.credits, new.currency, new.amount, new.matched_amount, new.matched_at,
        new.matched_by)
       is distinct from
       (old.id, old.side, old.rule, old.registry_line_id, old.payment_id, old.payouts,
        old.credits, old.currency, old.amount, old.matched_amount, old.matched_at,
        old.matched_by)
       or old.undone_at is not null then
        raise exception 'settlement_matches is history: only a match''s undoing is written, once'
            using errcode = 'restrict_violation';
    end if;
    return new;
end
$$;

create trigger settlement_matches_kept
    before update or delete on recon.settlement_matches
    for each row execute function recon.refuse_changing_a_match();
create trigger settlement_matches_never_truncated
    before truncate on recon.settlement_matches
    for each statement execute function recon.refuse_truncating_history();

-- 3. Flags without a payment -------------------------------------------------------------------
create table recon.settlement_flags (
    id           bigint generated always as identity primary key,
    kind         text not null references recon.flag_kinds (kind)
                 check (kind in ('registry_unknown', 'payout_not_at_bank',
                                 'bank_credit_unexplained')),
    -- what it is about: 'registry_line:<operation id>', 'payout:<payout>', 'bank_line:<id>'
    subject      text not null check (length(subject) between 1 and 400),
    -- the payment the subject names, where it names one (tracked or not)
    payment_id   text check (length(payment_id) <= 128),
    currency     text check (currency ~ '^[A-Z]{3}$'),
    amount       numeric check (recon.amount_problem(amount) is null),
    day          date,
    expected     text,
    actual       text,
    detected_at  timestamptz not null default now(),
    resolved_at  timestamptz,
    resolved_by  text,
    resolution   text,
    check ((resolved_at is null) = (resolved_by is null))
);

create unique index settlement_flags_open_uq on recon.settlement_flags (subject, kind)
    where resolved_at is null;

comment on table recon.settlement_flags is
    'Flags about a registry line, a payout or a bank credit rather than a payment of ours (registry_unknown, payout_not_at_bank, bank_credit_unexplained): what (subject), the payment it names, its currency, amount and day, expected and actual, and its resolution. History: only an open flag''s resolution is written, once.';
comment on column recon.settlement_flags.resolved_by is
    'Who closed the flag: a person''s name; ''daemon'' when a later match or import explained it.';

create function recon.refuse_changing_a_settlement_flag() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'settlement_flags is append-only history: flags are never deleted'
            using errcode = 'restrict_violation';
    end if;
    if (new.id, new.kind, new.subject, new.payment_id, new.currency, new.amount, new.day,
        new.expected, new.actual, new.detected_at)
       is distinct from
       (old.id, old.kind, old.subject, old.payment_id, old.currency, old.amount, old.day,
        old.expected, old.actual, old.detected_at)
       or old.resolved_at is not null
       or new.resolved_at is null then
        raise exception 'settlement_flags is append-only history: only an open flag''s resolution is written, whole and once'
            using errcode = 'restrict_violation';
    end if;
    return new;
end
$$;

create trigger settlement_flags_kept
    before update or delete on recon.settlement_flags
    for each row execute function recon.refuse_changing_a_settlement_flag();
create trigger settlement_flags_never_truncated
    before truncate on recon.settlement_flags
    for each statement execute function recon.refuse_truncating_history();

create view recon.open_settlement_flags as
select f.id, f.kind, f.subject, f.payment_id, f.currency, f.amount, f.day, f.expected,
       f.actual, f.detected_at, k.meaning
from recon.settlement_flags f
join recon.flag_kinds k using (kind)
where f.resolved_at is null;

comment on view recon.open_settlement_flags is
    'The open flags about registry lines, payouts and bank credits: each waits for a person (see meaning) or clears itself when a later import explains it.';

-- 4. Payouts -----------------------------------------------------------------------------------
-- A line's net, signed for the merchant: a payment brings its net (stated, else the amount
-- less the commission); everything else takes money (stated net, else amount and commission).
create function recon.registry_net(kind text, amount numeric, commission numeric, net numeric)
returns numeric
language sql immutable parallel safe
set search_path = pg_catalog
return case
    when kind = 'payment' then coalesce(abs(net), abs(amount) - coalesce(abs(commission), 0))
    when kind = 'fee' then -coalesce(abs(net), abs(amount))
    else -coalesce(abs(net), abs(amount) + coalesce(abs(commission), 0))
end;

-- A payout's name: its reference, its date, or both (as recon.settlement_matches.payouts).
create function recon.payout_name(currency text, reference text, day date)
returns text
language sql immutable parallel safe
set search_path = pg_catalog
return currency || ':' || concat_ws(':', reference, day::text);

create view recon.payouts as
select g.*,
       (select array_agg(distinct c order by c)
        from recon.settlement_matches m, unnest(m.credits) c
        where m.side = 'bank' and m.undone_at is null and g.payout = any(m.payouts))
                                                                 as bank_lines
from (
    select recon.payout_name(l.currency, l.payout_reference, l.payout_date) as payout,
           l.currency,
           min(l.payout_reference)                                   as reference,
           coalesce(min(l.payout_date), max(l.operation_at)::date)   as payout_date,
           count(*)                                                  as lines,
           coalesce(sum(abs(l.amount)) filter (where l.kind = 'payment'), 0)       as gross,
           coalesce(sum(abs(l.amount))
                    filter (where l.kind in ('refund', 'reversal', 'chargeback')), 0)
                                                                     as returned,
           coalesce(sum(abs(l.commission)), 0)
             + coalesce(sum(abs(l.amount)) filter (where l.kind = 'fee'), 0)      as commission,
           sum(recon.registry_net(l.kind, l.amount, l.commission, l.net))          as net
    from recon.registry_lines l
    where l.payout_reference is not null or l.payout_date is not null
    group by 1, 2
) g;

comment on view recon.payouts is
    'Each payout the registries name (payout: currency:reference:date), per currency: its lines, gross payments, money returned, commission (stated and fees), net (what the provider owes for it; 0 or less: withheld or carried forward, never matched to the bank), and the bank lines it was matched to.';

-- 5. Statement workbooks ----------------------------------------------------------------------
alter table recon.bank_files drop constraint bank_files_format_check;
alter table recon.bank_files add constraint bank_files_format_check
    check (format in ('1c', 'xlsx'));

-- 6. The month's money to the bank, as signed ---------------------------------------------------
create table recon.settlement_closes (
    close_id        bigint primary key references recon.period_closes (id),
    month           date not null check (month = date_trunc('month', month)::date),
    bank_currency   text not null check (bank_currency ~ '^[A-Z]{3}$'),
    -- the rows of report --settlement for the month as they stood at the close
    figures         jsonb not null,
    figures_sha256  text not null check (figures_sha256 ~ '^[0-9a-f]{64}$')
);

comment on table recon.settlement_closes is
    'For each close (recon.period_closes), the month''s money to the bank as it stood then (the rows of report --settlement) and the SHA-256 of their text: report prints them for the closed month (append-only).';

create trigger settlement_closes_append_only
    before update or delete on recon.settlement_closes
    for each row execute function recon.refuse_changing_history();
create trigger settlement_closes_never_truncated
    before truncate on recon.settlement_closes
    for each statement execute function recon.refuse_truncating_history();

-- 7. Closed months, for readers --------------------------------------------------------------
create view recon.month_closes as
select c.month, c.at as closed_at, c.db_role, c.on_behalf_of, c.note, c.zone,
       c.figures, c.figures_sha256,
       s.figures as settlement_figures, s.figures_sha256 as settlement_sha256
from recon.period_state st
join lateral (select distinct on (pc.month) pc.*
              from recon.period_closes pc
              where pc.action = 'close' and pc.month <= st.closed_through
              order by pc.month, pc.id desc) c on true
left join recon.settlement_closes s on s.close_id = c.id;

comment on view recon.month_closes is
    'Each month closed now (through recon.period_state.closed_through): its latest close, when and on whose behalf, the note, the summary figures signed and the money to the bank signed, each with its SHA-256.';
