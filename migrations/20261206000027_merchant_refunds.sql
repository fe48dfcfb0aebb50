-- Refunds the merchant made (issue 26, item 5), matched to the provider's.
--
-- What it adds, and why: a refund the merchant made in its own system and one the provider
-- shows are two sides of one fact; finance needs to know when they do not meet.
--
-- 1. recon.merchant_refunds: each refund the merchant says it made (`import --refunds`):
--    the payment, amount, currency, when it was requested and the merchant's reference (one
--    row per payment and reference: importing a file twice adds nothing), and the provider's
--    money event it was matched to (matched_key, recon.money_events.fact_key of the same
--    payment) once it is. Intake, as recon.payments is: rows come from outside; only the
--    match columns are the daemon's to write, once.
-- 2. Four action flags:
--    refund_missing          requested, not shown by the provider at its last look (a day
--                            after the request);
--    refund_amount_mismatch  matched, but the provider returned another amount;
--    unexpected_refund       money back (a refund, reversal or chargeback) that no refund
--                            imported here matches;
--    status_api_disagrees    the Merchant status API states another amount, currency or
--                            order for the payment than invoice/info.

set local search_path = pg_catalog;

insert into recon.flag_kinds (kind, class, meaning) values
    ('refund_missing', 'action',
     'a refund the merchant made (import --refunds) is not among the provider''s by its last look, a day after it was requested: ask Freedom Pay whether it went through; the flag clears itself if it appears later'),
    ('refund_amount_mismatch', 'action',
     'the provider''s refund matched to one the merchant made returned another amount: expected is what the merchant refunded, actual what the provider returned'),
    ('unexpected_refund', 'action',
     'the provider returned money (a refund, reversal or chargeback) that no refund imported with import --refunds matches: find out who made it; it clears itself when a matching refund is imported'),
    ('status_api_disagrees', 'action',
     'the Merchant status API (get_status3.php) states another amount, currency or order for the payment than invoice/info does: its refunds are booked, but which answer is right is for a person to find out (is merchant.lookup asking for the right payment?)');

create table recon.merchant_refunds (
    id            bigint generated always as identity primary key,
    payment_id    text not null references recon.payments (payment_id),
    amount        numeric not null check (amount > 0 and recon.amount_problem(amount) is null),
    currency      text not null check (currency ~ '^[A-Z]{3}$'),
    requested_at  timestamptz not null,
    reference     text not null check (length(reference) between 1 and 128),
    imported_at   timestamptz not null default now(),
    -- the provider's money event it matched (recon.money_events.fact_key of this payment)
    matched_key   text check (matched_key is null or length(matched_key) between 1 and 300),
    matched_at    timestamptz,
    unique (payment_id, reference),
    check ((matched_key is null) = (matched_at is null))
);

create index merchant_refunds_unmatched_idx on recon.merchant_refunds (requested_at)
    where matched_key is null;

comment on table recon.merchant_refunds is
    'Refunds the merchant says it made (import --refunds), one per payment and reference, and the provider''s money event each was matched to (matched_key: recon.money_events.fact_key of the same payment; null: not seen yet).';

-- A match is written once: the request's own columns never change, and a match stays.
create function recon.refuse_changing_a_refund_request() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    if (new.id, new.payment_id, new.amount, new.currency, new.requested_at, new.reference,
        new.imported_at)
       is distinct from
       (old.id, old.payment_id, old.amount, old.currency, old.requested_at, old.reference,
        old.imported_at)
       or (old.matched_key is not null
           and (new.matched_key, new.matched_at) is distinct from (old.matched_key, old.matched_at))
    then
        raise exception 'a refund request is kept as imported, and its match once made: import a new one with its own reference'
            using errcode = 'integrity_constraint_violation';
    end if;
    return new;
end
$$;

create trigger merchant_refunds_kept
    before update or delete on recon.merchant_refunds
    for each row execute function recon.refuse_changing_a_refund_request();
create trigger merchant_refunds_never_truncated
    before truncate on recon.merchant_refunds
    for each statement execute function recon.refuse_truncating_history();
