-- What the console's pages read, kept fast on a year of history (issue 28).
--
-- 1. The month page lists the money recorded after its month was closed
--    (recon.money_events.adjusts_month: booked on an open day instead) and the money booked in
--    it for months closed before. Few events are ever booked so, and without an index each
--    read went through a year of money events: a partial index holds only those.
--
-- 2. The queue (open action flags, oldest first, a page at a time) sorted every open flag of
--    the year before it could show the first 100: bench --year --scale 0.02 (32,850 open
--    flags over 13 monthly partitions), 320 ms a page. An index of the open flags in the
--    queue's order lets each page read its rows and stop (12 ms): per partition, merged.
--    discrepancies_open_age_idx (kind, detected_at) stays: the ages by kind read it alone.
--
-- Nothing else changes; no row is rewritten.

set local search_path = pg_catalog;

create index money_events_adjustments_idx on recon.money_events (adjusts_month, counts_on)
    where adjusts_month is not null;

create index discrepancies_open_queue_idx on recon.discrepancies (detected_at, id)
    where resolved_at is null;
