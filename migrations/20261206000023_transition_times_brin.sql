-- The transitions' time index as a BRIN (issue 25, item 6: the evidence's bytes).
--
-- What it changes, and why: recon.status_transitions_observed_idx, a btree on observed_at
-- (migration partitioned_history), cost about 20 bytes a transition, two or more a payment,
-- for the readers that ask for transitions by time alone (a finance query: what changed
-- last week). Every read by payment uses the key (payment_id, observation_no, observed_at).
-- Transitions arrive in observed_at order within their monthly partition, so a BRIN index
-- (a few pages a partition) narrows a time range to the same blocks; autosummarize keeps it
-- current as rows arrive. Nothing else changes.

set local search_path = pg_catalog;

drop index recon.status_transitions_observed_idx;
create index status_transitions_observed_brin on recon.status_transitions
    using brin (observed_at) with (autosummarize = on);
