-- The flags resolved in a period (`$1`/`$2`: first and last reporting day of the resolution,
-- null: open), in the order they were resolved: who (the session's database role, and the
-- name it was written on behalf of), when and why. For an auditor.
select d.id as "flag_id!", d.payment_id as "payment_id!",
       recon.report_day(p.created_at) as "payment_day!",
       d.kind as "kind!", k.class as "class!",
       d.detected_at as "opened_at!",
       d.detected_at at time zone recon.report_zone() as "opened_local!",
       d.resolved_at as "resolved_at!",
       d.resolved_at at time zone recon.report_zone() as "resolved_local!",
       recon.report_day(d.resolved_at) as "resolved_day!",
       d.resolved_role, d.resolved_by as "resolved_by!", d.resolution as "resolution!",
       d.expected, d.actual
from recon.discrepancies d
join recon.flag_kinds k using (kind)
join recon.payments p using (payment_id)
where d.resolved_at is not null
  and d.resolved_at >= coalesce(recon.day_start($1::date), '-infinity')
  and d.resolved_at < coalesce(recon.day_start($2::date + 1), 'infinity')
order by d.resolved_at, d.id
