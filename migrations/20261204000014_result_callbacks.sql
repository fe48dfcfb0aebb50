-- Freedom Pay's Result-URL callbacks as a fast path (issue 18; docs/provider/RESULT_URL.md).
--
-- A verified callback is a hint: it makes its payment due at once and wakes a sweep; the signed
-- Partner API poll stays the truth. Each distinct callback is kept here, as received, as
-- evidence; the provider's retries and replays (the same fields again, with a new pg_salt and
-- pg_sig) are one observation: the fingerprint leaves the salt and signature out.

set local search_path = pg_catalog;

insert into recon.flag_kinds (kind, class, meaning) values
    ('untracked_payment', 'action',
     'the provider sent a callback for a payment nobody enqueued: the merchant''s systems forgot to track it'),
    ('callback_disagrees', 'action',
     'the provider''s callback claimed an outcome, amount or currency the signed Partner API did not confirm');

create table recon.callbacks (
    id              bigint generated always as identity primary key,
    received_at     timestamptz not null default now(),
    -- every field as received, in order: [[name, value], …] (names may repeat)
    fields          jsonb not null,
    -- sha256 of the fields without pg_salt and pg_sig, sorted: one row per distinct callback
    fingerprint     bytea not null unique,
    -- what it claims, read from the fields (null when absent or unreadable)
    pg_payment_id   text,
    pg_order_id     text,
    -- pg_result: paid (1) or failed (0)
    claims_paid     boolean,
    amount          numeric,
    currency        text,
    -- the payment it was matched to, and how: payment_id, order_id, or untracked (tracking
    -- started by this callback); null when it names no usable id
    payment_id      text references recon.payments (payment_id),
    matched_by      text check (matched_by in ('payment_id', 'order_id', 'untracked')),
    check ((payment_id is null) = (matched_by is null))
);

create index callbacks_payment_idx on recon.callbacks (payment_id, id);

-- A callback whose pg_payment_id is unknown is matched by order id.
create index payments_order_idx on recon.payments (order_id) where order_id is not null;

comment on table recon.callbacks is
    'Every distinct verified Result-URL callback, as received (append-only): a hint that made its payment due at once. The Partner API poll decides what is recorded; a callback it contradicts opens callback_disagrees.';

create trigger callbacks_append_only
    before update or delete on recon.callbacks
    for each row execute function recon.refuse_changing_history();
create trigger callbacks_never_truncated
    before truncate on recon.callbacks
    for each statement execute function recon.refuse_truncating_history();

-- The daemon's roles record callbacks (grant-daemon gives the same to new roles).
do $$
declare
    g record;
begin
    for g in select distinct a.grantee
             from pg_class c cross join lateral aclexplode(c.relacl) a
             where c.oid = 'recon.events'::regclass and a.privilege_type = 'INSERT'
               and a.grantee <> c.relowner and a.grantee <> 0 loop
        execute format('grant select, insert on recon.callbacks to %s',
                       quote_ident(pg_get_userbyid(g.grantee)));
    end loop;
end
$$;
