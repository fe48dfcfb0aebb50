-- What the console's pages read, kept fast on a year of history (issue 28).
--
-- 1. The month page lists the money recorded after its month was closed
--    (recon.money_events.adjusts_month: booked on an open day instead) and the money booked in
--    it for months closed before. Few events are ever booked so, and without an index each
--    read went through a year of money events: a partial index holds only those.
--
-- 2. The queue (open action flags, oldest first, a page at a time) joined every open flag of
--    the year to its payment before it could show the first 100: bench --year --scale 0.02
--    (32,850 open flags over 13 monthly partitions), 320 ms a page. discrepancies_open_queue_idx
--    holds the open flags in the queue's order with their payment and kind, so the order is
--    read from that index alone (about 14 ms a page) and only a page's rows are read whole.
--    discrepancies_open_age_idx (kind, detected_at) stays: the ages by kind read it alone.
--
-- 3. The queue filtered by currency or by the payment's month read every open flag's payment
--    (330 to 440 ms). recon.flagged_payments lists the payments with an open flag (of any
--    class) with what those filters read, the currency expected and the one invoiced (as
--    `report --flags --currency` filters); payments_flagged_idx holds just those payments (one
--    in a hundred), so a filter is read from that index alone (15 to 40 ms a page). Granted
--    to readers (grant-reader) with the other finance views.
--
-- 4. One payment's story in the console tells every provider answer with the amount it
--    stated, and every callback. Readers may not read the provider's bodies or the callbacks'
--    fields; two views give them what the story shows and nothing raw:
--    recon.provider_answers (each status transition, with the amount and currency its answer
--    stated, as written, when they read as an amount and a currency code) and
--    recon.callback_history (each verified callback matched to a payment: paid or failed,
--    amount, currency, how it was matched). Granted to readers (grant-reader).
--
-- Nothing else changes; no row is rewritten.

set local search_path = pg_catalog;

create index money_events_adjustments_idx on recon.money_events (adjusts_month, counts_on)
    where adjusts_month is not null;

create index discrepancies_open_queue_idx on recon.discrepancies (detected_at, id)
    include (payment_id, kind)
    where resolved_at is null;

create index payments_flagged_idx on recon.payments (created_at)
    include (payment_id, expected_currency, currency)
    where open_flags <> '{}';

create view recon.flagged_payments as
select payment_id,
       created_at,
       recon.report_day(created_at)                              as created_day,
       expected_currency,
       currency                                                  as invoice_currency
from recon.payments
where open_flags <> '{}';

comment on view recon.flagged_payments is
    'The payments with at least one open flag (of any class): when created (created_day in recon.timezone), the currency expected and the invoice''s. What the console''s queue filters by.';

create view recon.provider_answers as
select t.payment_id,
       t.observation_no,
       t.from_status,
       t.to_status,
       t.observed_at,
       t.provider_dt,
       case when json_typeof(t.body -> 'amount') in ('number', 'string')
                 and (t.body ->> 'amount') ~ '^-?[0-9]{1,18}([.][0-9]{1,8})?$'
            then t.body ->> 'amount' end                              as stated_amount,
       case when (t.body ->> 'currency') ~ '^[A-Z]{3}$'
            then t.body ->> 'currency' end                            as stated_currency
from recon.status_transitions t;

comment on view recon.provider_answers is
    'Each status transition (recon.status_history) with the amount and currency the provider''s answer stated, as written, when they read as an amount and a three-letter code (otherwise empty); never the raw body.';

create view recon.callback_history as
select c.payment_id,
       c.received_at,
       c.claims_paid,
       c.amount,
       c.currency,
       c.matched_by
from recon.callbacks c
where c.payment_id is not null;

comment on view recon.callback_history is
    'Each verified Result-URL callback matched to a payment: when it came, whether it said paid (true) or failed (false; empty: unreadable), the amount and currency it stated, and how it was matched (payment_id, order_id, untracked). A callback is a hint: the poll decides what is recorded.';
