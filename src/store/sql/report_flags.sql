-- Flags open now (`$1` null), or open at the instant `$1` (the end of a day: from history,
-- with each payment's status at that instant), oldest first. `$2` class (null: any), `$3`
-- kind, `$4`/`$5` first and last day the flag was opened (null: open), `$6` status, `$7`
-- currency (expected or invoiced), `$8`/`$9` first and last day of the payment (its
-- created_at's reporting day; null: open), whenever its flag opened. `opened_local` is
-- `opened_at` on the reporting zone's clock. Read through the finance views only, so that a
-- reader role (`grant-reader`: the console's downloads) may run it too.
select d.id as "flag_id!", d.payment_id as "payment_id!", d.kind as "kind!",
       d.class as "class!", d.detected_at as "opened_at!",
       recon.report_day(d.detected_at) as "opened_day!",
       d.detected_at at time zone recon.report_zone() as "opened_local!",
       extract(epoch from coalesce($1, now()) - d.detected_at)::int8 as "age_seconds!",
       d.expected, d.actual, d.follows_id, p.order_id,
       recon.report_day(p.created_at) as "payment_day!",
       s.status, recon.outcome(s.status, s.deadline_missed_at) as "outcome!",
       p.expected_amount, p.expected_currency,
       case when s.status = 'success' then p.invoice_amount end as received_amount,
       case when s.status = 'success' then p.invoice_currency end as received_currency,
       p.invoice_amount, p.invoice_currency
from recon.discrepancy_history d
join recon.reconciliation p using (payment_id)
cross join lateral (
    select case when $1::timestamptz is null then p.status
                else (select t.to_status from recon.status_history t
                      where t.payment_id = d.payment_id and t.observed_at < $1
                      order by t.observation_no desc limit 1)
           end as status,
           case when $1::timestamptz is null or p.deadline_missed_at < $1
                then p.deadline_missed_at end as deadline_missed_at
) s
where (($1::timestamptz is null and d.resolved_at is null)
       or ($1 is not null and d.detected_at < $1
           and (d.resolved_at is null or d.resolved_at >= $1)))
  and ($2::text is null or d.class = $2)
  and ($3::text is null or d.kind = $3)
  and d.detected_at >= coalesce(recon.day_start($4::date), '-infinity')
  and d.detected_at < coalesce(recon.day_start($5::date + 1), 'infinity')
  and ($6::text is null or coalesce(s.status, 'no_answer') = $6)
  and ($7::text is null or $7 in (p.invoice_currency, p.expected_currency))
  and p.created_at >= coalesce(recon.day_start($8::date), '-infinity')
  and p.created_at < coalesce(recon.day_start($9::date + 1), 'infinity')
order by d.detected_at, d.id
