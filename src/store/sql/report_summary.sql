-- The daily summary: `$1` basis, `$2`/`$3` first and last day (null: open), `$4` currency,
-- `$5` status, `$6` flag kind (only payments with such an open flag). Only the days asked
-- for are read, by index. Every filter narrows the payments summed, not just the rows shown.
select day as "day!", currency, outcome as "outcome!", status as "status!",
       payments as "payments!", expected_payments as "expected_payments!",
       expected_amount::text as expected_amount,
       received_payments as "received_payments!", received_amount::text as received_amount,
       fee::text as fee, payments_without_fee as "payments_without_fee!",
       difference::text as difference, needs_action as "needs_action!",
       amount_mismatch as "amount_mismatch!", currency_mismatch as "currency_mismatch!",
       order_mismatch as "order_mismatch!", paid_after_deadline as "paid_after_deadline!",
       not_found as "not_found!", unknown_status as "unknown_status!",
       terminal_status_changed as "terminal_status_changed!",
       polling_abandoned as "polling_abandoned!"
from recon.daily_summary_between(recon.day_start($2::date), recon.day_start($3::date + 1),
                                 $6::text)
where basis = $1::text
  and ($4::text is null or currency = $4)
  and ($5::text is null or status = $5)
order by day, currency,
         array_position(array['paid', 'failed', 'expired_unpaid', 'in_progress'], outcome),
         status
