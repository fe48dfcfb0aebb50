-- The daily summary: `$1` basis, `$2`/`$3` first and last day (null: open), `$4` currency,
-- `$5` status, `$6` flag kind (only payments with such an open flag). Only the days asked
-- for are read, by index. Every filter narrows the payments summed, not just the rows shown.
-- By the day payments were created, a day of a closed month is read from the figures signed
-- when it closed (recon.current_closes), never from the rows: a closed month's report never
-- changes; what changed since is in recon.adjustments. (`report` refuses a flag filter on a
-- closed month: signed figures are sums, not payments.)
with signed as (
    select r.*
    from recon.current_closes() c
    cross join jsonb_to_recordset(c.figures) as r(
        day date, currency text, outcome text, status text, payments int8,
        expected_payments int8, expected_amount text, received_payments int8,
        received_amount text, fee text, payments_without_fee int8, difference text,
        needs_action int8, amount_mismatch int8, currency_mismatch int8,
        order_mismatch int8, paid_after_deadline int8, not_found int8, unknown_status int8,
        terminal_status_changed int8, polling_abandoned int8)
    where $1::text = 'created'
      and ($2::date is null or r.day >= $2)
      and ($3::date is null or r.day <= $3)
),
live as (
    select day, currency, outcome, status, payments, expected_payments,
           expected_amount::text as expected_amount, received_payments,
           received_amount::text as received_amount, fee::text as fee, payments_without_fee,
           difference::text as difference, needs_action, amount_mismatch, currency_mismatch,
           order_mismatch, paid_after_deadline, not_found, unknown_status,
           terminal_status_changed, polling_abandoned
    from recon.daily_summary_between(recon.day_start($2::date), recon.day_start($3::date + 1),
                                     $6::text)
    where basis = $1::text
      and not ($1::text = 'created' and day < coalesce(recon.first_open_day(), '-infinity'))
)
select day as "day!", currency, outcome as "outcome!", status as "status!",
       payments as "payments!", expected_payments as "expected_payments!",
       expected_amount, received_payments as "received_payments!", received_amount,
       fee, payments_without_fee as "payments_without_fee!",
       difference, needs_action as "needs_action!",
       amount_mismatch as "amount_mismatch!", currency_mismatch as "currency_mismatch!",
       order_mismatch as "order_mismatch!", paid_after_deadline as "paid_after_deadline!",
       not_found as "not_found!", unknown_status as "unknown_status!",
       terminal_status_changed as "terminal_status_changed!",
       polling_abandoned as "polling_abandoned!"
from (select * from signed union all select * from live) s
where ($4::text is null or currency = $4)
  and ($5::text is null or status = $5)
order by day, currency,
         array_position(array['paid', 'failed', 'expired_unpaid', 'in_progress'], outcome),
         status
