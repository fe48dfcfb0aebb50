-- Payments by the day they were settled: `$1`/`$2` first and last day (null: open), `$3`
-- currency, `$4` status, `$5` flag kind. The day range is a range of settled_at, read by
-- index, in order.
select payment_id as "payment_id!", order_id, provider_order_id, created_at as "created_at!",
       settled_at, status, expected_amount, expected_currency, amount, currency, fee, discount,
       amount_difference, expires_at, expiry_source, checks as "checks!", last_checked_at,
       open_flags as "open_flags!"
from recon.reconciliation
where settled_at >= coalesce(recon.day_start($1::date), '-infinity')
  and settled_at < coalesce(recon.day_start($2::date + 1), 'infinity')
  and ($3::text is null or coalesce(currency, expected_currency) = $3)
  and ($4::text is null or coalesce(status, 'no_answer') = $4)
  and ($5::text is null or $5 = any(open_flags))
order by settled_at, payment_id
