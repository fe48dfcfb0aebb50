-- Bank statements (issue 27, item 2): the merchant's statements, kept as read, for the money
-- the provider paid out.
--
-- What it adds, and why: finance closes a month on money that reached the bank. A statement
-- (`import --bank`, a 1C exchange file) is kept as it was read: which file (its SHA-256, so
-- the same file again changes nothing), and each operation in it, append-only.
--
-- 1. recon.bank_files: one row per file imported: its SHA-256, the name it was given, the
--    encoding it was read in, the account and period it states, who imported it and when.
-- 2. recon.bank_lines: one row per operation: the file and line its document starts on, the
--    value date, amount (positive) and direction, both sides' account and tax id, the purpose
--    and its codes, and whether it is a credit from one of the provider's accounts
--    (bank.provider_accounts as the import found them). `operation_key` (SHA-256 of the
--    statement's account and the operation's number, date, direction, amount, sides and
--    purpose) is unique, so a statement that overlaps one imported before adds only the
--    operations that are new.

set local search_path = pg_catalog;

create table recon.bank_files (
    id            bigint generated always as identity primary key,
    sha256        text not null unique check (sha256 ~ '^[0-9a-f]{64}$'),
    name          text not null check (length(name) between 1 and 1000),
    format        text not null check (format in ('1c')),
    encoding      text not null,
    account       text check (length(account) <= 64),
    period_from   date,
    period_to     date,
    operations    integer not null check (operations >= 0),
    imported_at   timestamptz not null default now(),
    db_role       text not null default session_user
);

comment on table recon.bank_files is
    'Each bank statement file imported (import --bank), once per SHA-256: its name, format, encoding, account and period, how many operations it held, who imported it and when (append-only).';

create table recon.bank_lines (
    id              bigint generated always as identity primary key,
    file_id         bigint not null references recon.bank_files (id),
    -- the line its document starts on in that file (the first line is 1)
    line            integer not null check (line >= 1),
    operation_key   text not null unique check (operation_key ~ '^[0-9a-f]{64}$'),
    account         text check (length(account) <= 64),
    document_kind   text check (length(document_kind) <= 200),
    number          text check (length(number) <= 200),
    value_date      date not null,
    amount          numeric not null check (amount >= 0 and recon.amount_problem(amount) is null),
    direction       text not null check (direction in ('credit', 'debit')),
    payer_account   text check (length(payer_account) <= 64),
    payer_tax_id    text check (length(payer_tax_id) <= 64),
    payee_account   text check (length(payee_account) <= 64),
    payee_tax_id    text check (length(payee_tax_id) <= 64),
    knp             text check (length(knp) <= 16),
    kbe             text check (length(kbe) <= 16),
    purpose         text check (length(purpose) <= 2000),
    from_provider   boolean not null
);

create index bank_lines_value_date_idx on recon.bank_lines (value_date);

comment on table recon.bank_lines is
    'Each operation of an imported bank statement, as read (append-only): value date, amount (positive) and direction for the statement''s account, both sides, purpose, KNP and KBE; from_provider: a credit from one of bank.provider_accounts when it was imported. One row per operation_key, so overlapping statements add only what is new.';

create trigger bank_files_append_only
    before update or delete on recon.bank_files
    for each row execute function recon.refuse_changing_history();
create trigger bank_files_never_truncated
    before truncate on recon.bank_files
    for each statement execute function recon.refuse_truncating_history();
create trigger bank_lines_append_only
    before update or delete on recon.bank_lines
    for each row execute function recon.refuse_changing_history();
create trigger bank_lines_never_truncated
    before truncate on recon.bank_lines
    for each statement execute function recon.refuse_truncating_history();
