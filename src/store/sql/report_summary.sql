-- The daily summary: `$1` basis, `$2`/`$3` first and last day (null: open), `$4` currency,
-- `$5` status, `$6` flag kind. Only the days asked for are read, by index.
select day as "day!", currency, status as "status!", payments as "payments!",
       expected_amount::text as "expected_amount!", amount::text as "amount!",
       fee::text as "fee!", difference::text as "difference!",
       flagged as "flagged!", amount_mismatch as "amount_mismatch!",
       currency_mismatch as "currency_mismatch!", order_mismatch as "order_mismatch!",
       lifetime_exceeded as "lifetime_exceeded!", not_found as "not_found!",
       unknown_status as "unknown_status!",
       terminal_status_changed as "terminal_status_changed!",
       polling_abandoned as "polling_abandoned!", expected_payments as "expected_payments!"
from recon.daily_summary_between(recon.day_start($2::date), recon.day_start($3::date + 1))
where basis = $1::text
  and ($4::text is null or currency = $4)
  and ($5::text is null or status = $5)
  and ($6::text is null or case $6
           when 'amount_mismatch' then amount_mismatch
           when 'currency_mismatch' then currency_mismatch
           when 'order_mismatch' then order_mismatch
           when 'lifetime_exceeded' then lifetime_exceeded
           when 'not_found' then not_found
           when 'unknown_status' then unknown_status
           when 'terminal_status_changed' then terminal_status_changed
           when 'polling_abandoned' then polling_abandoned
       end > 0)
order by day, currency, status
