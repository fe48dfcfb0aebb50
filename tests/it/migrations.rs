//! Landed migrations never change (issue 23, item 8): a database that applied an earlier text
//! of an edited migration is brought up to date by `migrate`, any other mismatch is refused in
//! one line with nothing changed, and the testcontainers fallback starts a server the
//! migrations accept. (The pins themselves: `store::migrations::tests`.)

use freedompay_recon::store::{self, EARLIER_TEXTS, MIGRATOR, OLDEST_SERVER};

use crate::helpers::{CONTAINER_TAG, TestDb, run_binary};
use crate::privilege::Roles;

async fn recorded_checksum(db: &TestDb, version: i64) -> String {
    sqlx::query_scalar(
        "select encode(checksum, 'hex') from recon._sqlx_migrations where version = $1",
    )
    .bind(version)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

async fn record_checksum(db: &TestDb, version: i64, hex: &str) {
    sqlx::query(
        "update recon._sqlx_migrations set checksum = decode($2, 'hex') where version = $1",
    )
    .bind(version)
    .bind(hex)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn index_exists(db: &TestDb, name: &str) -> bool {
    sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(format!("recon.{name}"))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn current_checksum(version: i64) -> String {
    hex::encode(
        &MIGRATOR
            .iter()
            .find(|m| m.version == version)
            .unwrap()
            .checksum,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_applied_an_earlier_text_of_an_edited_migration_is_brought_up_to_date() {
    let db = TestDb::new().await;
    // As a database migrated from the earlier texts looks: their checksums, and no index
    // (the one thing the later text of migration 12 added).
    sqlx::query("drop index recon.discrepancies_open_age_idx")
        .execute(&db.pool)
        .await
        .unwrap();
    for earlier in EARLIER_TEXTS {
        record_checksum(&db, earlier.version, earlier.checksum).await;
    }
    // sqlx alone refuses it: this is what an operator saw.
    let refused = sqlx::migrate::Migrator::with_migrations(MIGRATOR.iter().cloned().collect())
        .dangerous_set_table_name(store::MIGRATIONS_TABLE)
        .run(&db.pool)
        .await;
    assert!(
        matches!(
            refused,
            Err(sqlx::migrate::MigrateError::VersionMismatch(_))
        ),
        "{refused:?}"
    );

    store::migrate(&db.pool)
        .await
        .expect("migrate brings it up to date");
    assert!(index_exists(&db, "discrepancies_open_age_idx").await);
    for earlier in EARLIER_TEXTS {
        assert_eq!(
            recorded_checksum(&db, earlier.version).await,
            current_checksum(earlier.version)
        );
    }
    // Once up to date, again is nothing.
    store::migrate(&db.pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_other_edit_of_a_landed_migration_is_refused_in_one_line_and_nothing_changes() {
    let db = TestDb::new().await;
    let unknown = "00".repeat(48);
    record_checksum(&db, 20261204000012, &unknown).await;
    let output = run_binary(&["migrate"], &[("DATABASE_URL", &db.url)]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("migration 20261204000012 was applied to this database from another text")
            && stderr.contains("migrations/README.md"),
        "{stderr}"
    );
    assert_eq!(recorded_checksum(&db, 20261204000012).await, unknown);
}

/// The columns of `recon.reconciliation`, in order.
async fn reconciliation_columns(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select attname::text from pg_attribute
         where attrelid = 'recon.reconciliation'::regclass and attnum > 0 order by attnum",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bi_reader_granted_before_the_times_migration_keeps_every_column_it_read_and_gets_the_new_ones()
 {
    let db = TestDb::unmigrated().await;
    // A database as it was before migration 17, with a BI role granted the views then.
    sqlx::query("create schema recon")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut before = sqlx::migrate::Migrator::with_migrations(
        MIGRATOR
            .iter()
            .filter(|m| m.version < 20261206000017)
            .cloned()
            .collect(),
    );
    before.dangerous_set_table_name(store::MIGRATIONS_TABLE);
    before.run(&db.pool).await.unwrap();
    let roles = Roles::create(&db.pool, &["bi"]).await;
    let bi = roles.names[0].clone();
    // What grant-reader granted then: the reader views that release had (later ones, such
    // as recon.payment_money, did not exist yet).
    let then: Vec<&str> = {
        let mut then = Vec::new();
        for view in store::finance::READER_VIEWS {
            let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
                .bind(view)
                .fetch_one(&db.pool)
                .await
                .unwrap();
            then.extend(exists.then_some(view));
        }
        then
    };
    assert!(then.contains(&"recon.reconciliation"), "{then:?}");
    for grant in [
        format!("grant usage on schema recon to \"{bi}\""),
        format!("grant select on {} to \"{bi}\"", then.join(", ")),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(grant))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let old = reconciliation_columns(&db.pool).await;
    assert!(old.contains(&"settled_at".to_owned()));

    store::migrate(&db.pool).await.unwrap();
    let new = reconciliation_columns(&db.pool).await;
    assert_eq!(
        new[..old.len()],
        old[..],
        "every column as it was, in its place"
    );
    assert_eq!(
        new[old.len()..],
        [
            "first_seen_settled_at",
            "first_seen_settled_day",
            "provider_paid_at"
        ]
    );
    sqlx::query(
        "insert into recon.payments (payment_id, status, amount, currency, settled_at,
                                     provider_paid_at)
         values ('1', 'success', 10, 'KZT', '2026-11-30 20:00Z', '2026-11-30 18:30Z')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // The grant made before still covers the view, its new columns too.
    let as_bi = sqlx::PgPool::connect(&db.url_as(&bi)).await.unwrap();
    let row: (
        chrono::DateTime<chrono::Utc>,
        chrono::NaiveDate,
        chrono::NaiveDate,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "select settled_at, settled_day, first_seen_settled_day, provider_paid_at
         from recon.reconciliation",
    )
    .fetch_one(&as_bi)
    .await
    .unwrap();
    let december = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    assert_eq!(
        row,
        (
            "2026-11-30T20:00:00Z".parse().unwrap(),
            december,
            december,
            "2026-11-30T18:30:00Z".parse().unwrap()
        ),
        "first seen at 01:00 on 1 December in Almaty, paid at 23:30 on 30 November"
    );
    as_bi.close().await;
    roles.drop_all(&db).await;
}

#[test]
fn the_testcontainers_fallback_starts_a_server_the_migrations_accept() {
    let major: i32 = CONTAINER_TAG
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(major * 10_000 >= OLDEST_SERVER, "{CONTAINER_TAG}");
}
