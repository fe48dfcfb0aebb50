\timing on
insert into recon.payments (payment_id, expected_amount, expected_currency, created_at)
select 'b-' || i, round(1000 + (i * 7919 % 9000000) / 100.0, 2), 'KZT',
       timestamptz '2025-12-01 00:00+05' + (i * interval '315.36 seconds')
from generate_series(1, 100000) i;
insert into recon.money_events (payment_id, kind, amount, provider_amount, currency, provider_at, observed_at, source, fact_key)
select payment_id, 'payment', expected_amount, expected_amount, 'KZT', created_at + interval '1 minute', created_at + interval '1 minute', 'poll', 'payment'
from recon.payments;
insert into recon.registry_files (sha256, name, map_sha256, operations)
values (repeat('a', 64), 'bench', repeat('b', 64), 100000);
insert into recon.registry_lines (file_id, line, operation_id, kind, amount, commission, currency, operation_at, payout_reference, payout_date, raw)
select 1, row_number() over (order by created_at) + 1, payment_id, 'payment', expected_amount,
       round(expected_amount * 0.025, 2), 'KZT', created_at + interval '1 minute',
       'PO-' || to_char((created_at at time zone 'Asia/Almaty')::date, 'YYYYMMDD'),
       (created_at at time zone 'Asia/Almaty')::date + 1, '{}'
from recon.payments;
insert into recon.bank_files (sha256, name, format, encoding, operations)
values (repeat('c', 64), 'bench', '1c', 'UTF-8', 365);
insert into recon.bank_lines (file_id, line, operation_key, value_date, amount, direction, payer_account, from_provider)
select 1, row_number() over (order by payout_date), encode(sha256(convert_to(payout_reference, 'UTF8')), 'hex'),
       payout_date, sum(amount - commission), 'credit', 'KZ009999999999999999', true
from recon.registry_lines group by payout_reference, payout_date;
analyze;
