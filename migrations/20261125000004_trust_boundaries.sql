-- Trust boundaries: the schema refuses what the daemon cannot handle.
--
-- Other systems insert into recon.payments with plain SQL. Until now a row could pass the
-- schema and still be unreadable: an amount of 'NaN' or 1e40, a created_at of '-infinity', an
-- id with a zero-width space. Each rule below is one function that names the problem (or
-- returns null); the CHECK constraints, this migration's parking and the daemon's claim all
-- use them, and the daemon's intake (src/domain/rules.rs) applies the same rules in Rust with
-- the same words, so PostgreSQL never refuses a value the daemon accepted.
--
-- The functions use immutable operations only (no `||` with a number, no concat_ws), so
-- PostgreSQL inlines them: a CHECK costs a fraction of a microsecond per row, not a function
-- call.

-- A short text (an id, an order id): 1 to max_length characters, no control or invisible
-- character (control characters, Unicode format characters such as zero-width spaces and
-- direction overrides, line and paragraph separators), no whitespace around it.
create function recon.text_problem(value text, max_length integer) returns text
language sql immutable parallel safe
as $$
    select case
        when value is null then null
        when value = '' then 'is empty'
        when length(value) > max_length then 'is longer than ' || max_length::text || ' characters'
        when value ~ '[\u0001-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]'
            then 'contains a control or invisible character'
        when value ~ '^[\u0020\u0085\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]|[\u0020\u0085\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]$'
            then 'has spaces around it'
    end
$$;

comment on function recon.text_problem(text, integer) is
    'Why a short text (an id, an order id) breaks the rule, or null: 1 to max_length visible characters, no whitespace around them.';

-- An amount: finite, at most 18 digits before the decimal point and 8 after, so the daemon
-- holds it exactly and a sum of many is still exact.
create function recon.amount_problem(amount numeric) returns text
language sql immutable parallel safe
as $$
    select case
        when amount is null then null
        when amount = 'NaN' then 'is not a number'
        when amount in ('Infinity', '-Infinity') then 'is infinite'
        when abs(amount) >= 1e18 then 'has more than 18 digits before the decimal point'
        when scale(amount) > 8 then 'has more than 8 digits after the decimal point'
    end
$$;

comment on function recon.amount_problem(numeric) is
    'Why an amount breaks the rule, or null: finite, at most 18 digits before the decimal point and 8 after.';

-- A timestamp: finite, within the years 1 to 9999 (what RFC 3339 and every report can write).
create function recon.timestamp_problem(at timestamptz) returns text
language sql immutable parallel safe
as $$
    select case
        when at is null then null
        when not isfinite(at) then 'is infinite'
        when at < to_timestamp(-62135596800) or at >= to_timestamp(253402300800)
            then 'is outside the years 1 to 9999'
    end
$$;

comment on function recon.timestamp_problem(timestamptz) is
    'Why a timestamp breaks the rule, or null: finite, within the years 1 to 9999.';

-- Everything wrong with a payment's intake columns, or null.
create function recon.intake_problem(
    payment_id text, expected_amount numeric, order_id text,
    created_at timestamptz, expires_at timestamptz
) returns text
language sql immutable parallel safe
as $$
    select nullif(substr(
        coalesce('; payment_id ' || recon.text_problem(payment_id, 128), '') ||
        coalesce('; expected_amount ' || recon.amount_problem(expected_amount), '') ||
        coalesce('; order_id ' || recon.text_problem(order_id, 256), '') ||
        coalesce('; created_at ' || recon.timestamp_problem(created_at), '') ||
        coalesce('; expires_at ' || recon.timestamp_problem(expires_at), ''), 3), '')
$$;

comment on function recon.intake_problem(text, numeric, text, timestamptz, timestamptz) is
    'Everything wrong with a payment''s intake columns, or null when they follow the rules.';

alter table recon.payments
    -- set when the daemon cannot read this row; it is not polled until `recheck` takes it back
    add column parked_at timestamptz,
    -- values this migration moved out of their columns because they broke a rule, as text
    add column parked_values jsonb,
    -- the X-Request-Id of the last request whose answer was recorded (support tickets need it)
    add column last_request_id uuid,
    -- the body of the last answer that was not an invoice (an error, an unreadable answer),
    -- cleaned and cut at 8,192 characters; never granted to readers
    add column last_error_body text;

comment on column recon.payments.parked_at is
    'When the daemon parked this row because it could not read it (last_error says why); parked rows are not polled until `freedompay-recon recheck` takes them back.';
comment on column recon.payments.parked_values is
    'Values moved out of this row by migration 20261125000004 because they broke a rule, as text.';

alter table recon.status_transitions
    -- the X-Request-Id of the request that observed this transition
    add column request_id uuid;

-- Empty optional text means "not given".
update recon.payments set order_id = null where btrim(order_id) = '';

-- Rows that break a rule are parked, never deleted: the offending values move to
-- parked_values (the columns they leave become null; a bad created_at becomes the time of this
-- migration), the row stops being polled, and last_error says what to fix.
update recon.payments p set
    parked_at = now(),
    next_check_at = null,
    lease_token = null,
    lease_owner = null,
    lease_expires_at = null,
    last_error = 'parked: ' || recon.intake_problem(p.payment_id, p.expected_amount, p.order_id,
                                                   p.created_at, p.expires_at)
                 || '; fix the row, then run `freedompay-recon recheck` with its id',
    parked_values = jsonb_strip_nulls(jsonb_build_object(
        'expected_amount', case when recon.amount_problem(p.expected_amount) is not null
                                then p.expected_amount::text end,
        'order_id', case when recon.text_problem(p.order_id, 256) is not null then p.order_id end,
        'created_at', case when recon.timestamp_problem(p.created_at) is not null
                           then p.created_at::text end,
        'expires_at', case when recon.timestamp_problem(p.expires_at) is not null
                           then p.expires_at::text end)),
    expected_amount = case when recon.amount_problem(p.expected_amount) is null
                           then p.expected_amount end,
    order_id = case when recon.text_problem(p.order_id, 256) is null then p.order_id end,
    created_at = case when recon.timestamp_problem(p.created_at) is null
                      then p.created_at else now() end,
    expires_at = case when recon.timestamp_problem(p.expires_at) is null then p.expires_at end
where recon.intake_problem(p.payment_id, p.expected_amount, p.order_id, p.created_at,
                           p.expires_at) is not null;

-- The rules, enforced. The id rule cannot be validated against rows that break it (an id is
-- the key history refers to, so it is never rewritten): those were parked above, and the rule
-- holds for every row inserted or changed from now on.
alter table recon.payments
    add constraint payment_id_is_1_to_128_visible_chars_without_outer_spaces
        check (recon.text_problem(payment_id, 128) is null) not valid,
    add constraint expected_amount_is_finite_below_1e18_with_at_most_8_decimals
        check (recon.amount_problem(expected_amount) is null),
    add constraint order_id_is_null_or_1_to_256_visible_chars_without_outer_spaces
        check (recon.text_problem(order_id, 256) is null),
    add constraint created_at_is_within_years_1_to_9999
        check (recon.timestamp_problem(created_at) is null),
    add constraint expires_at_is_within_years_1_to_9999
        check (recon.timestamp_problem(expires_at) is null);

-- Counting parked rows (a gauge, /readyz) reads this small index, not the table.
create index payments_parked_idx on recon.payments (parked_at) where parked_at is not null;

-- Parked rows, for the people who fix them.
create view recon.parked_payments as
select payment_id, parked_at, last_error, parked_values, expected_amount, expected_currency,
       order_id, created_at, expires_at
from recon.payments
where parked_at is not null;

comment on view recon.parked_payments is
    'Payments the daemon cannot read, with why (last_error) and the values it moved aside; fix the row, then run `freedompay-recon recheck` with its id.';
