-- The evidence stored once (issue 25, item 6). The provider's body was kept three times for a
-- settled payment: on the payment (payments.last_body) and on each of its transitions, the
-- payment's copy repeating its latest transition's. And one transition per observation was
-- kept by a side table (recon.transition_keys), because a unique index on the partitioned
-- transitions must contain their partition key.
--
-- What changes, and why:
--
-- 1. recon.payments.last_transition_no and last_transition_at name the payment's latest
--    transition (its observation number and observed_at: the transitions' key, so a look-up
--    reads one partition). Set from the transitions that exist.
--
-- 2. recon.payments.last_body is dropped: the body is kept with the transition it caused, and
--    the payment points at its latest one. An answer that changes no status (a poll still in
--    progress, a recheck of a settled payment) keeps no body of its own from now on: what it
--    said is in the payment's columns (amount, fee, order, provider_dt, last_request_id) and,
--    where it disagreed with what was expected, in a flag's expected and actual. No history
--    is lost: where last_body said something its latest transition's body does not (or the
--    payment has no transition), it is kept in recon.bodies_without_transition (append-only),
--    with when it was received.
--
-- 3. The transitions' own key, (payment_id, observation_no, observed_at), replaces
--    recon.transition_keys and the index on (payment_id, observation_no). What the key cannot
--    say (one transition per observation across months) the payment's pointer says: a
--    transition is accepted only as the payment's next one (observation number above the one
--    it points at, which the insert's trigger then moves) or as the one the payment already
--    points at (the daemon moves the pointer with the payment's state, in the same
--    transaction), and the key refuses that one twice. The trigger updates the payment under
--    its row lock, so two writers racing for one observation are decided by it, under every
--    isolation level: the second waits and is refused (23505), as the side table refused it.
--    A transition is now also refused below the payment's latest one: history is appended
--    in order.
--
-- Readers: a payment's latest body is its latest transition's,
--   select t.body from recon.payments p join recon.status_transitions t
--       on t.payment_id = p.payment_id and t.observation_no = p.last_transition_no
--      and t.observed_at = p.last_transition_at

set local search_path = pg_catalog;

-- 1. The pointer ------------------------------------------------------------------------------
alter table recon.payments
    add column last_transition_no integer,
    add column last_transition_at timestamptz;

comment on column recon.payments.last_transition_no is
    'The observation number of the payment''s latest status transition (recon.status_transitions.observation_no); null: none yet.';
comment on column recon.payments.last_transition_at is
    'When the payment''s latest status transition was observed (recon.status_transitions.observed_at, which with payment_id and observation_no is its key).';

update recon.payments p
set last_transition_no = t.observation_no,
    last_transition_at = t.observed_at
from (select distinct on (payment_id) payment_id, observation_no, observed_at
      from recon.status_transitions
      order by payment_id, observation_no desc) t
where t.payment_id = p.payment_id;

-- 2. Bodies that no transition holds, kept; then the payment's copy dropped --------------------
create table recon.bodies_without_transition (
    payment_id   text not null references recon.payments (payment_id),
    -- when it was received, as far as the payment says (its last answer)
    received_at  timestamptz,
    body         json not null,
    kept_at      timestamptz not null default now(),
    primary key (payment_id)
);

comment on table recon.bodies_without_transition is
    'The provider''s latest body for payments whose latest answer changed no status, as payments.last_body held it when migration 20261206000021 dropped that column (since then a body is kept with its transition only). Append-only; never written again.';

insert into recon.bodies_without_transition (payment_id, received_at, body)
select p.payment_id, p.last_checked_at, p.last_body
from recon.payments p
left join recon.status_transitions t
       on t.payment_id = p.payment_id
      and t.observation_no = p.last_transition_no
      and t.observed_at = p.last_transition_at
where p.last_body is not null
  and (t.payment_id is null or t.body::text is distinct from p.last_body::text);

create trigger bodies_without_transition_append_only
    before update or delete on recon.bodies_without_transition
    for each row execute function recon.refuse_changing_history();
create trigger bodies_without_transition_never_truncated
    before truncate on recon.bodies_without_transition
    for each statement execute function recon.refuse_truncating_history();

alter table recon.payments drop column last_body;

-- 3. The transitions' own key ----------------------------------------------------------------
alter table recon.status_transitions
    add constraint status_transitions_pkey primary key (payment_id, observation_no, observed_at);
-- the key's index serves every look-up by (payment_id, observation_no)
drop index recon.status_transitions_payment_idx;

create or replace function recon.keep_transition_unique() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    -- The one the payment points at: written with the payment's state, in this transaction
    -- (or an exact repeat, which the key refuses).
    perform 1 from recon.payments
    where payment_id = new.payment_id
      and last_transition_no = new.observation_no
      and last_transition_at = new.observed_at;
    if found then
        return new;
    end if;
    -- Otherwise only the payment's next one, which it then points at.
    update recon.payments
    set last_transition_no = new.observation_no,
        last_transition_at = new.observed_at
    where payment_id = new.payment_id
      and (last_transition_no is null or last_transition_no < new.observation_no);
    if not found then
        raise exception 'payment % has a transition at or after observation % already',
                        new.payment_id, new.observation_no
            using errcode = 'unique_violation',
                  hint = 'a transition is appended after the payment''s latest one (payments.last_transition_no)';
    end if;
    return new;
end
$$;

drop table recon.transition_keys;

comment on table recon.status_transitions is
    'Every status change the provider reported, with the body that reported it, append-only. Key: (payment_id, observation_no, observed_at); one transition per observation, in order, kept with the payment''s pointer (payments.last_transition_no).';
