//! Bank statements (`recon.bank_files`, `recon.bank_lines`): each file once, each operation
//! once, as read.

use rust_decimal::Decimal;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

use super::StoreError;
use crate::domain::bank::{BankLine, Direction, Statement};

/// What `import --bank` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankImported {
    /// This very file was imported before (same SHA-256): nothing changed.
    Already {
        imported_at: chrono::DateTime<chrono::Utc>,
    },
    New {
        operations: u64,
        /// Operations not in any statement imported before.
        added: u64,
        /// Of those added, credits from the provider's accounts, and their sum.
        from_provider: u64,
        from_provider_amount: Decimal,
    },
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The identity of an operation across statements: the account's, and the operation's
/// number, date, direction, amount, sides and purpose.
fn operation_key(account: Option<&str>, line: &BankLine) -> String {
    let parts = [
        account.unwrap_or(""),
        line.number.as_deref().unwrap_or(""),
        &line.date.to_string(),
        match line.direction {
            Direction::Credit => "credit",
            Direction::Debit => "debit",
        },
        &line.amount.normalize().to_string(),
        line.payer_account.as_deref().unwrap_or(""),
        line.payee_account.as_deref().unwrap_or(""),
        line.purpose.as_deref().unwrap_or(""),
    ];
    // Each part with its length first: no two lists of parts give the same text.
    let mut text = String::new();
    for part in parts {
        text.push_str(&format!("{}:{part};", part.len()));
    }
    sha256_hex(text.as_bytes())
}

/// Stores a statement read from a file whose bytes hash to `sha256`, in one transaction: the
/// file once, its operations once each; `from_provider` says which credits are the provider's.
pub async fn import_statement(
    pool: &PgPool,
    name: &str,
    sha256: &str,
    statement: &Statement,
    from_provider: impl Fn(&BankLine) -> bool,
) -> Result<BankImported, StoreError> {
    let mut tx = pool.begin().await?;
    let file = sqlx::query_scalar!(
        "insert into recon.bank_files
             (sha256, name, format, encoding, account, period_from, period_to, operations)
         values ($1, $2, $8, $3, $4, $5, $6, $7)
         on conflict (sha256) do nothing
         returning id",
        sha256,
        name,
        statement.encoding,
        statement.account.as_deref(),
        statement.from,
        statement.to,
        i32::try_from(statement.lines.len()).unwrap_or(i32::MAX),
        statement.format,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(file_id) = file else {
        let imported_at = sqlx::query_scalar!(
            "select imported_at from recon.bank_files where sha256 = $1",
            sha256
        )
        .fetch_one(&mut *tx)
        .await?;
        return Ok(BankImported::Already { imported_at });
    };
    let lines = &statement.lines;
    let account = statement.account.as_deref();
    let text =
        |f: fn(&BankLine) -> Option<&str>| -> Vec<Option<&str>> { lines.iter().map(f).collect() };
    let added = sqlx::query!(
        r#"with added as (
               insert into recon.bank_lines
                   (file_id, line, operation_key, account, document_kind, number, value_date,
                    amount, direction, payer_account, payer_tax_id, payee_account, payee_tax_id,
                    knp, kbe, purpose, from_provider)
               select $1, u.line, u.key, $2, u.kind, u.number, u.value_date, u.amount,
                      u.direction, u.payer_account, u.payer_tax_id, u.payee_account,
                      u.payee_tax_id, u.knp, u.kbe, u.purpose, u.from_provider
               from unnest($3::int4[], $4::text[], $5::text[], $6::text[], $7::date[],
                           $8::numeric[], $9::text[], $10::text[], $11::text[], $12::text[],
                           $13::text[], $14::text[], $15::text[], $16::text[], $17::bool[])
                    as u(line, key, kind, number, value_date, amount, direction, payer_account,
                         payer_tax_id, payee_account, payee_tax_id, knp, kbe, purpose,
                         from_provider)
               order by u.line
               on conflict (operation_key) do nothing
               returning amount, from_provider
           )
           select count(*) as "added!",
                  count(*) filter (where from_provider) as "from_provider!",
                  coalesce(sum(amount) filter (where from_provider), 0) as "from_provider_amount!"
           from added"#,
        file_id,
        account,
        &lines
            .iter()
            .map(|l| i32::try_from(l.line).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
        &lines
            .iter()
            .map(|l| operation_key(account, l))
            .collect::<Vec<_>>(),
        &lines.iter().map(|l| l.kind.clone()).collect::<Vec<_>>(),
        &text(|l| l.number.as_deref()) as &[Option<&str>],
        &lines.iter().map(|l| l.date).collect::<Vec<_>>(),
        &lines.iter().map(|l| l.amount).collect::<Vec<_>>(),
        &lines
            .iter()
            .map(|l| match l.direction {
                Direction::Credit => "credit",
                Direction::Debit => "debit",
            })
            .collect::<Vec<_>>() as &[&str],
        &text(|l| l.payer_account.as_deref()) as &[Option<&str>],
        &text(|l| l.payer_tax_id.as_deref()) as &[Option<&str>],
        &text(|l| l.payee_account.as_deref()) as &[Option<&str>],
        &text(|l| l.payee_tax_id.as_deref()) as &[Option<&str>],
        &text(|l| l.knp.as_deref()) as &[Option<&str>],
        &text(|l| l.kbe.as_deref()) as &[Option<&str>],
        &text(|l| l.purpose.as_deref()) as &[Option<&str>],
        &lines.iter().map(&from_provider).collect::<Vec<_>>(),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(BankImported::New {
        operations: lines.len() as u64,
        added: u64::try_from(added.added).unwrap_or(0),
        from_provider: u64::try_from(added.from_provider).unwrap_or(0),
        from_provider_amount: added.from_provider_amount,
    })
}
