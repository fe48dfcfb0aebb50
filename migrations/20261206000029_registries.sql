-- The provider's registries (issue 27, item 1): each file and each operation in it, as read.
--
-- What it adds, and why: a registry lists what the provider counts as paid, refunded and kept
-- as commission, and which payout each line went into; finance matches it to the payments and
-- to the bank. It is kept as read (`import --registry`, through a column map), append-only:
--
-- 1. recon.registry_files: one row per file, by SHA-256 (the same file again changes nothing),
--    with its name, the SHA-256 of the map it was read through, who imported it and when.
-- 2. recon.registry_lines: one row per operation, by the provider's operation id (a file that
--    overlaps one imported before adds only the operations that are new): the file and line,
--    its kind (payment, refund, reversal, chargeback, fee), amount as stated, commission and
--    net where stated, currency, time, the payment it belongs to, the payout it went into, and
--    every cell of the line by its header (`raw`).

set local search_path = pg_catalog;

create table recon.registry_files (
    id            bigint generated always as identity primary key,
    sha256        text not null unique check (sha256 ~ '^[0-9a-f]{64}$'),
    name          text not null check (length(name) between 1 and 1000),
    map_sha256    text not null check (map_sha256 ~ '^[0-9a-f]{64}$'),
    operations    integer not null check (operations >= 0),
    imported_at   timestamptz not null default now(),
    db_role       text not null default session_user
);

comment on table recon.registry_files is
    'Each registry file imported (import --registry), once per SHA-256: its name, the SHA-256 of the column map it was read through, how many operations it held, who imported it and when (append-only).';

create table recon.registry_lines (
    id                  bigint generated always as identity primary key,
    file_id             bigint not null references recon.registry_files (id),
    line                integer not null check (line >= 1),
    operation_id        text not null unique check (length(operation_id) between 1 and 128),
    kind                text not null check (kind in ('payment', 'refund', 'reversal',
                                                      'chargeback', 'fee')),
    amount              numeric not null check (recon.amount_problem(amount) is null),
    commission          numeric check (recon.amount_problem(commission) is null),
    net                 numeric check (recon.amount_problem(net) is null),
    currency            text not null check (currency ~ '^[A-Z]{3}$'),
    operation_at        timestamptz not null,
    parent_payment_id   text check (length(parent_payment_id) <= 128),
    order_id            text check (length(order_id) <= 128),
    payout_reference    text check (length(payout_reference) <= 128),
    payout_date         date,
    raw                 jsonb not null
);

create index registry_lines_parent_idx on recon.registry_lines (parent_payment_id);
create index registry_lines_payout_idx on recon.registry_lines (payout_reference, payout_date);

comment on table recon.registry_lines is
    'Each operation of an imported registry, as read through the map (append-only): kind, amount as stated (a refund may be negative), commission and net where stated, currency, time, the payment it belongs to (parent_payment_id for a refund), the payout it went into, and every cell by its header (raw). One row per operation_id, so overlapping registries add only what is new.';

create trigger registry_files_append_only
    before update or delete on recon.registry_files
    for each row execute function recon.refuse_changing_history();
create trigger registry_files_never_truncated
    before truncate on recon.registry_files
    for each statement execute function recon.refuse_truncating_history();
create trigger registry_lines_append_only
    before update or delete on recon.registry_lines
    for each row execute function recon.refuse_changing_history();
create trigger registry_lines_never_truncated
    before truncate on recon.registry_lines
    for each statement execute function recon.refuse_truncating_history();
