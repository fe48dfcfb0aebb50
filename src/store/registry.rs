//! The provider's registries (`recon.registry_files`, `recon.registry_lines`): each file once,
//! each operation once, as read.

use sqlx::PgPool;

use super::StoreError;
use crate::domain::bank::RegistryRow;

/// What `import --registry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryImported {
    /// This very file was imported before (same SHA-256): nothing changed.
    Already {
        imported_at: chrono::DateTime<chrono::Utc>,
    },
    /// Operations in the file, and those not in any registry imported before.
    New { operations: u64, added: u64 },
}

/// Stores a registry's rows, read from a file whose bytes hash to `sha256` through a map whose
/// text hashes to `map_sha256`, in one transaction: the file once, each operation once.
pub async fn import_registry(
    pool: &PgPool,
    name: &str,
    sha256: &str,
    map_sha256: &str,
    rows: &[RegistryRow],
) -> Result<RegistryImported, StoreError> {
    let mut tx = pool.begin().await?;
    let file = sqlx::query_scalar!(
        "insert into recon.registry_files (sha256, name, map_sha256, operations)
         values ($1, $2, $3, $4)
         on conflict (sha256) do nothing
         returning id",
        sha256,
        name,
        map_sha256,
        i32::try_from(rows.len()).unwrap_or(i32::MAX),
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(file_id) = file else {
        let imported_at = sqlx::query_scalar!(
            "select imported_at from recon.registry_files where sha256 = $1",
            sha256
        )
        .fetch_one(&mut *tx)
        .await?;
        return Ok(RegistryImported::Already { imported_at });
    };
    let text =
        |f: fn(&RegistryRow) -> Option<&str>| -> Vec<Option<&str>> { rows.iter().map(f).collect() };
    let raw: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::to_value(&r.raw).unwrap_or_default())
        .collect();
    let added = sqlx::query_scalar!(
        r#"with added as (
               insert into recon.registry_lines
                   (file_id, line, operation_id, kind, amount, commission, net, currency,
                    operation_at, parent_payment_id, order_id, payout_reference, payout_date,
                    raw)
               select $1, u.*
               from unnest($2::int4[], $3::text[], $4::text[], $5::numeric[], $6::numeric[],
                           $7::numeric[], $8::text[], $9::timestamptz[], $10::text[],
                           $11::text[], $12::text[], $13::date[], $14::jsonb[])
                    as u(line, operation_id, kind, amount, commission, net, currency,
                         operation_at, parent_payment_id, order_id, payout_reference,
                         payout_date, raw)
               order by u.line
               on conflict (operation_id) do nothing
               returning 1
           )
           select count(*) as "added!" from added"#,
        file_id,
        &rows
            .iter()
            .map(|r| i32::try_from(r.line).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
        &rows
            .iter()
            .map(|r| r.operation_id.clone())
            .collect::<Vec<_>>(),
        &rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>() as &[&str],
        &rows.iter().map(|r| r.amount).collect::<Vec<_>>(),
        &rows.iter().map(|r| r.commission).collect::<Vec<_>>()
            as &[Option<rust_decimal::Decimal>],
        &rows.iter().map(|r| r.net).collect::<Vec<_>>() as &[Option<rust_decimal::Decimal>],
        &rows.iter().map(|r| r.currency.as_str()).collect::<Vec<_>>() as &[&str],
        &rows.iter().map(|r| r.operation_at).collect::<Vec<_>>(),
        &text(|r| r.parent_payment_id.as_deref()) as &[Option<&str>],
        &text(|r| r.order_id.as_deref()) as &[Option<&str>],
        &text(|r| r.payout_reference.as_deref()) as &[Option<&str>],
        &rows.iter().map(|r| r.payout_date).collect::<Vec<_>>() as &[Option<chrono::NaiveDate>],
        &raw,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(RegistryImported::New {
        operations: rows.len() as u64,
        added: u64::try_from(added).unwrap_or(0),
    })
}
