-- The daily summary as it stood at an instant, recounted from recon.payment_states: `$1` the
-- instant, `$2` basis, `$3`/`$4` first and last day (null: open), `$5` currency, `$6` status,
-- `$7` flag kind (only payments with such an open flag then). Every payment as it stood then,
-- whatever was signed since: a closed month's signed figures are `report --month`.
select day as "day!", currency, outcome as "outcome!", status as "status!",
       payments as "payments!", expected_payments as "expected_payments!",
       expected_amount::text as expected_amount, received_payments as "received_payments!",
       received_amount::text as received_amount, fee::text as fee,
       payments_without_fee as "payments_without_fee!", difference::text as difference,
       needs_action as "needs_action!",
       amount_mismatch as "amount_mismatch!", currency_mismatch as "currency_mismatch!",
       order_mismatch as "order_mismatch!", paid_after_deadline as "paid_after_deadline!",
       not_found as "not_found!", unknown_status as "unknown_status!",
       terminal_status_changed as "terminal_status_changed!",
       polling_abandoned as "polling_abandoned!"
from recon.daily_summary_as_of($1::timestamptz, recon.day_start($3::date),
                               recon.day_start($4::date + 1), $7::text, $2::text = 'settled')
where ($5::text is null or currency = $5)
  and ($6::text is null or status = $6)
order by day, currency,
         array_position(array['paid', 'failed', 'expired_unpaid', 'in_progress'], outcome),
         status
