-- Payments by the day the daemon first saw them settled (paid, failed or incomplete: an
-- observation, not a payment time): `$1`/`$2` first and last day (null: open), `$3`
-- currency, `$4` status, `$5` flag kind. The day range is a range of first_seen_settled_at
-- (payments.settled_at), read by index, in order. The `_local` columns are the same times on
-- the reporting zone's clock, converted by PostgreSQL, whose zone rules also give the days.
select payment_id as "payment_id!", order_id, provider_order_id, outcome as "outcome!", status,
       expected_amount, expected_currency, received_amount, received_currency, difference,
       invoice_amount, invoice_currency, fee, discount,
       created_at as "created_at!", created_day as "created_day!", first_seen_settled_at,
       first_seen_settled_day, expires_at, expiry_source, deadline_missed_at,
       checks, last_checked_at, open_flags as "open_flags!", provider_paid_at,
       created_at at time zone recon.report_zone() as "created_local!",
       first_seen_settled_at at time zone recon.report_zone() as first_seen_settled_local,
       expires_at at time zone recon.report_zone() as expires_local,
       deadline_missed_at at time zone recon.report_zone() as deadline_missed_local,
       last_checked_at at time zone recon.report_zone() as last_checked_local,
       provider_paid_at at time zone recon.report_zone() as provider_paid_local,
       m.refunded, m.net_received, m.commission, m.net_to_merchant, m.money_outcome
from recon.reconciliation
left join lateral recon.money_of(payment_id, 'infinity') m on true
where first_seen_settled_at >= coalesce(recon.day_start($1::date), '-infinity')
  and first_seen_settled_at < coalesce(recon.day_start($2::date + 1), 'infinity')
  and ($3::text is null or $3 in (invoice_currency, expected_currency))
  and ($4::text is null or coalesce(status, 'no_answer') = $4)
  and ($5::text is null or $5 = any(open_flags))
order by first_seen_settled_at, payment_id
