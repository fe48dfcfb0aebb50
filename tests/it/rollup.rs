//! The summary's rollup (migration `summary_rollup`): `recon.daily_summary` read from it
//! equals the summary computed from the payments' rows, at every instant, whoever changed
//! the payments and however the changes interleave.

use freedompay_recon::simulator::{Builtin, Scenario};
use sqlx::PgPool;

use crate::helpers::TestApp;

/// Rows of the view that the summary from the rows lacks, and the other way round (as
/// multisets), and how many rows the view has.
async fn differences(pool: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "with rolled as (select * from recon.daily_summary),
              computed as (select * from recon.daily_summary_rows(null, null, null))
         select (select count(*) from rolled),
                (select count(*) from (select * from rolled except all select * from computed) d),
                (select count(*) from (select * from computed except all select * from rolled) d)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn assert_exact(pool: &PgPool, when: &str) -> i64 {
    let current: bool = sqlx::query_scalar("select recon.summary_rollup_is_current()")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(current, "{when}: the rollup counts days in this zone");
    let (rows, extra, missing) = differences(pool).await;
    assert_eq!(
        (extra, missing),
        (0, 0),
        "{when}: the rollup differs from the summary computed from the rows"
    );
    rows
}

async fn execute(pool: &PgPool, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn fold(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select recon.fold_summary_changes()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_equals_the_summary_from_the_rows_through_every_kind_of_change() {
    let app = TestApp::new(Scenario::builtin(Builtin::Realistic)).await;
    let pool = app.pool();
    // Payments over two weeks, in three expected currencies, some with no expected amount.
    execute(
        pool,
        "insert into recon.payments (payment_id, expected_amount, expected_currency, created_at)
         select 'mix-' || g, case when g % 11 = 0 then null else (g % 7) * 100.5 end,
                case when g % 5 = 0 then null when g % 3 = 0 then 'USD' else 'KZT' end,
                now() - (g % 40) * interval '7 hours'
         from generate_series(1, 400) g",
    )
    .await;
    assert_exact(pool, "after the intake").await;

    // The daemon polls them all (the realistic mix: paid, failed, expired, mismatches…).
    for _ in 0..4 {
        app.sweep().await;
        app.fast_forward().await;
    }
    let answered = app
        .count("select count(*) from recon.payments where status is not null")
        .await;
    assert!(answered > 300, "the daemon answered {answered} payments");
    assert_exact(pool, "after the daemon's sweeps (folded after each)").await;

    // Changes by hand, left unfolded: the provider's figures, fees, a late settlement, a
    // deadline missed, an expected amount corrected, and flags opened and resolved.
    execute(
        pool,
        "update recon.payments set amount = amount + 1.25, fee = null
         where payment_id like 'mix-1%' and status = 'success'",
    )
    .await;
    execute(
        pool,
        "update recon.payments set currency = 'EUR' where payment_id like 'mix-2%'",
    )
    .await;
    execute(
        pool,
        "update recon.payments set deadline_missed_at = now(), settled_at = coalesce(settled_at, now())
         where payment_id like 'mix-3%' and status is distinct from 'success'",
    )
    .await;
    execute(
        pool,
        "update recon.payments set expected_amount = 999.99, expected_currency = 'KZT'
         where payment_id like 'mix-4%'",
    )
    .await;
    execute(
        pool,
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         select payment_id, 'order_mismatch', 'a', 'b', now() from recon.payments
         where payment_id like 'mix-5%'
           and not exists (select 1 from recon.open_flags f
                           where f.payment_id = payments.payment_id and f.kind = 'order_mismatch')",
    )
    .await;
    execute(
        pool,
        "update recon.discrepancies set resolved_at = now(), resolved_by = 'finance',
                                        resolution = 'checked'
         where resolved_at is null and payment_id like 'mix-%1'",
    )
    .await;
    execute(
        pool,
        "insert into recon.payments (payment_id, expected_amount, expected_currency)
         values ('late-1', 10, 'KZT')",
    )
    .await;
    // A payment whose id changed (no history holds it yet) is one removed and one added.
    execute(
        pool,
        "update recon.payments set payment_id = 'late-2', expected_amount = 11
         where payment_id = 'late-1'",
    )
    .await;
    assert_exact(pool, "after an id changed").await;
    execute(
        pool,
        "delete from recon.payments where payment_id = 'late-2'",
    )
    .await;
    let pending: i64 = app
        .count("select count(*) from recon.summary_changes")
        .await;
    assert!(pending > 0, "changes wait to be folded");
    let rows = assert_exact(pool, "with the changes not folded yet").await;
    assert!(rows > 20, "a summary of some size: {rows} rows");

    let folded = fold(pool).await;
    assert_eq!(folded, pending, "every delta is folded");
    assert_eq!(
        app.count("select count(*) from recon.summary_changes")
            .await,
        0
    );
    assert_exact(pool, "after folding").await;

    // The flags counted are the open ones, as the rows say.
    let open_on_rows: i64 = app
        .count("select coalesce(sum(cardinality(open_flags)), 0) from recon.reconciliation")
        .await;
    let open_in_table: i64 = app
        .count("select count(*) from recon.discrepancies where resolved_at is null")
        .await;
    assert_eq!(open_on_rows, open_in_table);
}

/// The fold adds identical changes up before it computes their legs (migration
/// `fold_net_changes`): more identical changes than a smallint counts (one intake statement,
/// one creation time), and values found and left again, which cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_changes_in_their_tens_of_thousands_fold_exactly() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool();
    fold(pool).await;
    execute(
        pool,
        "insert into recon.payments (payment_id, expected_amount, expected_currency, created_at)
         select 'same-' || g, 250.50, 'KZT', timestamptz '2026-11-30 10:00:00+00'
         from generate_series(1, 33000) g",
    )
    .await;
    // Paid at one instant, half of them; a tenth paid a different amount, then corrected
    // back (that change and its reverse cancel in the fold); one more in another currency.
    execute(
        pool,
        "update recon.payments set status = 'success', amount = 250.50, currency = 'KZT',
                                   fee = 2.5, settled_at = timestamptz '2026-12-01 09:00:00+00'
         where payment_id::text ~ '[02468]$'",
    )
    .await;
    execute(
        pool,
        "update recon.payments set amount = 250.00 where payment_id::text ~ '0$'",
    )
    .await;
    execute(
        pool,
        "update recon.payments set amount = 250.50 where payment_id::text ~ '0$'",
    )
    .await;
    execute(
        pool,
        "update recon.payments set status = 'success', amount = 3, currency = 'USD',
                                   settled_at = now()
         where payment_id = 'same-1'",
    )
    .await;
    let pending: i64 = app
        .count("select count(*) from recon.summary_changes")
        .await;
    assert_eq!(pending, 33000 + 2 * 16500 + 4 * 3300 + 2);
    assert_eq!(fold(pool).await, pending, "every change is folded");
    assert_exact(pool, "after folding identical changes").await;
    let (payments, received): (i64, rust_decimal::Decimal) = sqlx::query_as(
        "select sum(payments)::int8, sum(received_amount) from recon.summary_rollup
         where basis = 'created' and currency = 'KZT'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(payments, 32999);
    assert_eq!(
        received,
        rust_decimal::Decimal::new(25_050, 2) * rust_decimal::Decimal::from(16_500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_and_folds_interleaved_lose_and_double_nothing() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool().clone();
    execute(
        &pool,
        "insert into recon.payments (payment_id, expected_amount, expected_currency)
         select 'w-' || g, g, 'KZT' from generate_series(1, 200) g",
    )
    .await;
    // Four writers settle payments one transaction at a time while a folder folds.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for g in (1..=200).filter(|g| g % 4 == w) {
                    let status = if g % 3 == 0 { "error" } else { "success" };
                    sqlx::query(
                        "update recon.payments
                         set status = $2, amount = expected_amount, currency = 'KZT',
                             fee = 0.01, settled_at = now()
                         where payment_id = $1",
                    )
                    .bind(format!("w-{g}"))
                    .bind(status)
                    .execute(&pool)
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    let folder = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut folded = 0;
            for _ in 0..50 {
                folded += fold(&pool).await;
                tokio::task::yield_now().await;
            }
            folded
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    let folded_meanwhile = folder.await.unwrap();
    assert!(folded_meanwhile > 0, "folds ran while the writers wrote");
    assert_exact(&pool, "after interleaved writes and folds").await;
    fold(&pool).await;
    assert_exact(&pool, "after the last fold").await;
    let (paid, received): (i64, String) = sqlx::query_as(
        "select sum(received_payments)::int8, sum(received_amount)::text
         from recon.daily_summary where basis = 'created'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let expected_paid = (1..=200).filter(|g| g % 3 != 0).count() as i64;
    let expected_received: i64 = (1..=200).filter(|g| g % 3 != 0).sum();
    assert_eq!(paid, expected_paid);
    assert_eq!(received, expected_received.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_zone_reads_the_rows_until_the_rollup_is_rebuilt_in_it() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool();
    // Payments around midnight UTC, whose reporting day depends on the zone.
    execute(
        pool,
        "insert into recon.payments (payment_id, expected_amount, expected_currency, created_at)
         select 'z-' || g, 100, 'KZT',
                date_trunc('day', now()) - interval '2 days' + g * interval '1 hour'
         from generate_series(1, 30) g",
    )
    .await;
    fold(pool).await;
    let zone_of = |pool: PgPool| async move {
        sqlx::query_scalar::<_, Option<String>>("select recon.summary_rollup_zone()")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(zone_of(pool.clone()).await.as_deref(), Some("Asia/Almaty"));

    // The database's zone changes: new sessions read the summary from the rows, exactly.
    execute(
        pool,
        &format!(
            "alter database {} set recon.timezone = 'UTC'",
            app.db.name()
        ),
    )
    .await;
    let utc = sqlx::postgres::PgPoolOptions::new()
        .connect(&app.db.url)
        .await
        .unwrap();
    let current: bool = sqlx::query_scalar("select recon.summary_rollup_is_current()")
        .fetch_one(&utc)
        .await
        .unwrap();
    assert!(
        !current,
        "the rollup counts Almaty days, the reader wants UTC days"
    );
    let (_, extra, missing) = differences(&utc).await;
    assert_eq!((extra, missing), (0, 0), "another zone reads the rows");
    let days_in_utc: i64 = sqlx::query_scalar(
        "select count(distinct day) from recon.daily_summary where basis = 'created'",
    )
    .fetch_one(&utc)
    .await
    .unwrap();

    // The daemon's maintenance rebuilds the rollup in the database's zone.
    let maintenance = freedompay_recon::maintenance::Maintenance::new(utc.clone(), &app.settings);
    let done = maintenance.run().await.unwrap();
    assert!(done.summary_rebuilt, "maintenance saw the zone change");
    assert_eq!(zone_of(utc.clone()).await.as_deref(), Some("UTC"));
    assert_exact(&utc, "rebuilt in UTC").await;
    let days_from_rollup: i64 = sqlx::query_scalar(
        "select count(distinct day) from recon.daily_summary where basis = 'created'",
    )
    .fetch_one(&utc)
    .await
    .unwrap();
    assert_eq!(days_from_rollup, days_in_utc);
    let again = maintenance.run().await.unwrap();
    assert!(!again.summary_rebuilt, "nothing to rebuild the second time");
}

/// Payments whose `open_flags` differs from their open flags (the source rows).
async fn drifted(pool: &PgPool) -> Vec<(String, Vec<String>, Vec<String>)> {
    sqlx::query_as(
        "select p.payment_id, p.open_flags,
                coalesce(array(select d.kind from recon.discrepancies d
                               where d.payment_id = p.payment_id and d.resolved_at is null
                               order by d.kind), '{}')
         from recon.payments p
         where p.open_flags is distinct from
               coalesce(array(select d.kind from recon.discrepancies d
                              where d.payment_id = p.payment_id and d.resolved_at is null
                              order by d.kind), '{}')",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Waits until the session `pid` waits for a lock.
async fn blocked_on_a_lock(pool: &PgPool, pid: i32) {
    for _ in 0..500 {
        let waiting: bool = sqlx::query_scalar(
            "select coalesce((select wait_event_type = 'Lock' from pg_stat_activity
                              where pid = $1), false)",
        )
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("session {pid} never waited for a lock");
}

/// Two transactions of hand SQL on one payment, one opening a flag and one resolving
/// another, the second made to wait for the first (issue 23, item 4): whichever commits
/// first, `open_flags` ends as the flags say, and so does the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_flags_stay_exact_whatever_order_two_flag_writers_commit_in() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool().clone();
    execute(
        &pool,
        "insert into recon.payments (payment_id, expected_amount, expected_currency)
         values ('race-1', 100, 'KZT'), ('race-2', 100, 'KZT')",
    )
    .await;
    let open = "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
                values ($1, $2, 'a', 'b', now())";
    let resolve = "update recon.discrepancies
                   set resolved_at = now(), resolved_by = 'finance', resolution = 'checked'
                   where payment_id = $1 and kind = $2 and resolved_at is null";
    for payment in ["race-1", "race-2"] {
        sqlx::query(open)
            .bind(payment)
            .bind("order_mismatch")
            .execute(&pool)
            .await
            .unwrap();
    }
    // race-1: the opener goes first and the resolver waits for it; race-2: the other way.
    for (payment, first, second) in [
        (
            "race-1",
            (open, "amount_mismatch"),
            (resolve, "order_mismatch"),
        ),
        (
            "race-2",
            (resolve, "order_mismatch"),
            (open, "amount_mismatch"),
        ),
    ] {
        let mut one = pool.begin().await.unwrap();
        sqlx::query(first.0)
            .bind(payment)
            .bind(first.1)
            .execute(&mut *one)
            .await
            .unwrap();
        let mut two = pool.acquire().await.unwrap();
        let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
            .fetch_one(&mut *two)
            .await
            .unwrap();
        let (payment_two, sql_two, kind_two) = (payment.to_owned(), second.0, second.1);
        let waiting = tokio::spawn(async move {
            let mut tx = sqlx::Connection::begin(&mut *two).await.unwrap();
            sqlx::query(sql_two)
                .bind(&payment_two)
                .bind(kind_two)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        });
        blocked_on_a_lock(&pool, pid).await;
        one.commit().await.unwrap();
        waiting.await.unwrap();
        let flags: Vec<String> =
            sqlx::query_scalar("select open_flags from recon.payments where payment_id = $1")
                .bind(payment)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(flags, ["amount_mismatch"], "{payment}");
    }
    assert_eq!(drifted(&pool).await, []);
    assert_exact(&pool, "after two races").await;
    fold(&pool).await;
    assert_exact(&pool, "after folding them").await;
    let counted = app
        .count("select sum(amount_mismatch)::int8 from recon.daily_summary where basis = 'created'")
        .await;
    assert_eq!(counted, 2);
}

/// A database that drifted (under the trigger before migration 15, or with triggers off)
/// is repaired from the flags by the rebuild, and a caller's own write of the column is
/// ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebuild_repairs_open_flags_from_the_flags_and_a_caller_cannot_update_them() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool().clone();
    execute(
        &pool,
        "insert into recon.payments (payment_id, expected_amount, expected_currency)
         select 'drift-' || g, 100, 'KZT' from generate_series(1, 3) g",
    )
    .await;
    execute(
        &pool,
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         values ('drift-1', 'amount_mismatch', 'a', 'b', now())",
    )
    .await;

    execute(
        &pool,
        "update recon.payments set open_flags = '{not_found}' where payment_id like 'drift-%'",
    )
    .await;
    assert_eq!(drifted(&pool).await, [], "a caller's write is ignored");

    // Drift as the old trigger left it: written with triggers off.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "update recon.payments set open_flags = case payment_id when 'drift-1' then '{}'::text[]
                                                 else '{order_mismatch}' end
         where payment_id in ('drift-1', 'drift-2')",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("reset session_replication_role")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(drifted(&pool).await.len(), 2);

    let _: i64 = sqlx::query_scalar("select recon.rebuild_summary()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(drifted(&pool).await, [], "the rebuild repaired them");
    assert_exact(&pool, "after the rebuild").await;
    let counted = app
        .count("select sum(amount_mismatch)::int8 from recon.daily_summary where basis = 'created'")
        .await;
    assert_eq!(counted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_cannot_write_a_payments_open_flags() {
    let app = TestApp::new(Scenario::new()).await;
    execute(
        app.pool(),
        "insert into recon.payments (payment_id, open_flags)
         values ('forged', '{amount_mismatch,not_found}')",
    )
    .await;
    let flags: Vec<String> =
        sqlx::query_scalar("select open_flags from recon.payments where payment_id = 'forged'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(flags.is_empty(), "{flags:?}");
    let counted = app
        .count(
            "select coalesce(sum(amount_mismatch + not_found), 0)::int8 from recon.daily_summary",
        )
        .await;
    assert_eq!(counted, 0);
    assert_exact(app.pool(), "after a forged insert").await;
}
