-- Payments as they stood at an instant, recounted from recon.payment_states: `$1` the instant,
-- `$2`/`$3` first and last day (null: open) of `$4` (false: created_at, true: first seen
-- settled, as they stood then), `$5` currency, `$6` status, `$7` flag kind (open then).
-- Checks and the last check are not kept in history: they are left empty.
select payment_id as "payment_id!", order_id, provider_order_id, outcome as "outcome!", status,
       expected_amount, expected_currency, received_amount, received_currency, difference,
       invoice_amount, invoice_currency, fee, discount,
       created_at as "created_at!", created_day as "created_day!", first_seen_settled_at,
       first_seen_settled_day, expires_at, expiry_source, deadline_missed_at,
       null::int4 as checks, null::timestamptz as last_checked_at,
       open_flags as "open_flags!", provider_paid_at,
       created_at at time zone recon.report_zone() as "created_local!",
       first_seen_settled_at at time zone recon.report_zone() as first_seen_settled_local,
       expires_at at time zone recon.report_zone() as expires_local,
       deadline_missed_at at time zone recon.report_zone() as deadline_missed_local,
       null::timestamp as last_checked_local,
       provider_paid_at at time zone recon.report_zone() as provider_paid_local,
       m.refunded, m.net_received, m.commission, m.net_to_merchant, m.money_outcome
from recon.reconciliation_as_of($1::timestamptz, recon.day_start($2::date),
                                recon.day_start($3::date + 1), $4::bool)
left join lateral recon.money_of(payment_id, $1::timestamptz) m on true
where ($5::text is null or $5 in (invoice_currency, expected_currency))
  and ($6::text is null or coalesce(status, 'no_answer') = $6)
  and ($7::text is null or $7 = any(open_flags))
order by case when $4::bool then first_seen_settled_at else created_at end, payment_id
