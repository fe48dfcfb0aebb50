-- One id, one payment (issue 16, item 4).
--
-- `café-1` composed (NFC) and decomposed (NFD) look the same and were two payments; so were
-- ids made of, or carrying, characters that show as nothing or as a blank: Hangul fillers
-- (U+115F, U+1160, U+3164, U+FFA0), U+2800 BRAILLE PATTERN BLANK, variation selectors and the
-- rest of Unicode's Default_Ignorable_Code_Point set. The short-text rule now refuses them
-- and texts that are not in NFC, in the same words as the daemon's rule
-- (src/domain/rules.rs::text_problem; a test keeps the two in step). Intake (enqueue, import,
-- resolve --from-csv) trims and composes ids to NFC before it checks them, so only rows
-- inserted with SQL can meet the NFC rule.
--
-- Rows already stored that break the new rule are parked, never rewritten: an id is the key
-- history refers to, and composing it could merge two payments' histories.

create or replace function recon.text_problem(value text, max_length integer) returns text
language sql immutable parallel safe
as $$
    select case
        when value is null then null
        when value = '' then 'is empty'
        when length(value) > max_length then 'is longer than ' || max_length::text || ' characters'
        when value ~ '[\u0001-\u001f\u007f-\u009f\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]'
            then 'contains a control or invisible character'
        -- Normal forms exist only in UTF-8 databases (PostgreSQL refuses the test elsewhere,
        -- where a decomposed text cannot be stored anyway).
        when case when current_setting('server_encoding') = 'UTF8'
                  then value is not nfc normalized else false end
            then 'is not in Unicode''s composed form (NFC); normalise it, e.g. with normalize(value, NFC) in SQL'
        when value ~ '^[\u0020\u0085\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]|[\u0020\u0085\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]$'
            then 'has spaces around it'
    end
$$;

comment on function recon.text_problem(text, integer) is
    'Why a short text (an id, an order id) breaks the rule, or null: 1 to max_length characters, none invisible or blank-looking, in Unicode NFC, no whitespace around them.';

-- The constraints are dropped while rows that break the new rule are parked (an UPDATE is
-- checked against them), then put back: the id rule as before, for rows inserted or changed
-- from now on; the order id rule validated, since bad order ids move aside.
alter table recon.payments
    drop constraint payment_id_is_1_to_128_visible_chars_without_outer_spaces,
    drop constraint order_id_is_null_or_1_to_256_visible_chars_without_outer_spaces;

update recon.payments p set
    parked_at = coalesce(p.parked_at, now()),
    next_check_at = null,
    lease_token = null,
    lease_owner = null,
    lease_expires_at = null,
    last_error = 'parked: ' || concat_ws('; ',
        'payment_id ' || recon.text_problem(p.payment_id, 128),
        'order_id ' || recon.text_problem(p.order_id, 256),
        case when recon.text_problem(p.payment_id, 128) is not null
             then 'an id is never rewritten: enqueue the payment again (intake composes and '
                  || 'cleans ids) and keep this row as evidence'
             else 'fix the row, then run `freedompay-recon recheck` with its id' end,
        -- a reason it was parked for already
        case when p.parked_at is not null then 'before: ' || p.last_error end),
    parked_values = coalesce(p.parked_values, '{}'::jsonb) || jsonb_strip_nulls(jsonb_build_object(
        'order_id', case when recon.text_problem(p.order_id, 256) is not null then p.order_id end)),
    order_id = case when recon.text_problem(p.order_id, 256) is null then p.order_id end
where recon.text_problem(p.payment_id, 128) is not null
   or recon.text_problem(p.order_id, 256) is not null;

alter table recon.payments
    add constraint payment_id_is_1_to_128_visible_chars_without_outer_spaces
        check (recon.text_problem(payment_id, 128) is null) not valid,
    add constraint order_id_is_null_or_1_to_256_visible_chars_without_outer_spaces
        check (recon.text_problem(order_id, 256) is null);
