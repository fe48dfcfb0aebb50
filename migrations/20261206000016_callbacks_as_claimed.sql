-- Result-URL callbacks: one row per claim, every signed one kept as received (issue 23, items
-- 2 and 6; docs/provider/RESULT_URL.md, docs/trust-boundaries.md).
--
-- What it changes, and why:
--
-- 1. recon.callbacks.fingerprint now stands for what a callback claims, not its raw field set.
--    pg_sig signs the values in the order of the field names, never the names, so a renamed
--    field that still sorts where it did (pg_salt -> pg_salt_000001) kept a captured
--    callback's signature valid and made it a "new" callback: 200 renamed copies were 200
--    rows and 200 wakes. The daemon now refuses a field outside the documented pg_* names and
--    callbacks.merchant_fields, or a documented name given twice, before anything is written;
--    and a stored callback's fingerprint is the sha256 of a versioned encoding of its claim
--    (payment id, order id, result, amount, currency, payment date, captured, failure code,
--    each normalised: trimmed, the amount as a number), so the provider's retries and any
--    re-encoding of one claim are one row. Rows stored before keep the fingerprint they were
--    stored with (the table is append-only, and history is evidence): a retry of a callback
--    first stored before this migration is stored once more, under its new fingerprint, and
--    wakes its payment once more. The column and its unique constraint are unchanged.
--
-- 2. raw_query and raw_body: the request as received. jsonb cannot hold a NUL, and values
--    that were not UTF-8 were decoded lossily before the signature check, so a genuinely
--    signed callback holding either was answered 503 for ever (the provider gave up after
--    2 hours and the hint was lost) or 403. The signature is now checked over the bytes
--    received; `fields` keeps every field, each value a JSON string except one jsonb cannot
--    hold (not UTF-8, or with a NUL): {"base64": "..."}; raw_query and raw_body are the
--    authority. Null on rows stored before this migration.
--
-- 3. problem: what the daemon could not read of what a callback claims (a NUL or bytes that
--    are not UTF-8 in a field the claim reads, an amount that is not a number, a pg_result
--    other than 0 or 1). Such a callback is still stored and answered 200; when it names a
--    tracked payment, a callback_unreadable flag opens on it.
--
-- 4. An index for callbacks.max_untracked_per_hour: before a callback may start tracking a
--    payment nobody enqueued, the daemon counts those started in the last hour.

set local search_path = pg_catalog;

insert into recon.flag_kinds (kind, class, meaning) values
    ('callback_unreadable', 'action',
     'the provider sent a signed callback whose claim the daemon could not read (recon.callbacks.problem says what): the poll still decides, but that claim was never checked against it (callback_disagrees cannot); compare the callback''s raw request with the payment''s answer');

alter table recon.callbacks
    -- the query string as received (null: none, or stored before migration 16)
    add column raw_query bytea,
    -- the body as received (empty for a GET; null: stored before migration 16)
    add column raw_body bytea,
    -- what could not be read of the claim; null when all of it was (or before migration 16)
    add column problem text;

comment on column recon.callbacks.fields is
    'Every field as received, in order: [[name, value], ...] (names may repeat); a value jsonb cannot hold (not UTF-8, or with a NUL) is {"base64": "..."}. raw_query and raw_body are the authority.';
comment on column recon.callbacks.fingerprint is
    'One row per claim: sha256 of a versioned encoding of what the callback claims (payment id, order id, result, amount, currency, payment date, captured, failure code; normalised). Rows stored before migration 16 keep their fingerprint over the raw fields without pg_salt and pg_sig.';
comment on column recon.callbacks.raw_query is
    'The request''s query string as received (null: none, or stored before migration 16).';
comment on column recon.callbacks.raw_body is
    'The request''s body as received (empty for a GET; null: stored before migration 16).';
comment on column recon.callbacks.problem is
    'What the daemon could not read of the claim (e.g. pg_amount: "ten" is not an amount); null when it read all of it. On a tracked payment it opened a callback_unreadable flag.';

-- The callbacks that started tracking a payment, newest first: counted against
-- callbacks.max_untracked_per_hour.
create index callbacks_untracked_idx on recon.callbacks (received_at)
    where matched_by = 'untracked';
