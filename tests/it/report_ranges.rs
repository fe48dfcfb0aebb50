//! Report filters an index serves: a day range becomes a range of the basis column, read by
//! its index, and gives exactly the rows the unfiltered views give for those days.

use chrono::NaiveDate;
use freedompay_recon::store::report::REPORT_SQL;

use crate::helpers::TestDb;

/// 20,000 payments, one every 15 minutes (about 208 days), with amounts; every third settled
/// an hour after creation.
async fn seeded() -> TestDb {
    let db = TestDb::new().await;
    sqlx::query(
        "insert into recon.payments
             (payment_id, expected_amount, expected_currency, created_at, status, amount,
              currency, settled_at, next_check_at)
         select 'r-' || g, (g % 97) + 0.5, 'KZT',
                timestamptz '2026-01-01 00:00+05' + g * interval '15 minutes',
                case when g % 3 = 0 then 'success' end,
                case when g % 3 = 0 then (g % 97) + 0.5 end,
                case when g % 3 = 0 then 'KZT' end,
                case when g % 3 = 0
                     then timestamptz '2026-01-01 00:00+05' + g * interval '15 minutes' + interval '1 hour'
                end,
                null
         from generate_series(1, 20000) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("analyze recon.payments")
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

fn sql(name: &str) -> &'static str {
    REPORT_SQL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| *sql)
        .unwrap()
}

/// The plan of a report statement for 10 and 11 March, as the report binds it: `$1` the
/// basis (summary only), then the two days, then no currency, status or flag.
async fn plan(db: &TestDb, name: &str) -> String {
    let day = |d| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
        "explain (analyze, costs off, timing off, summary off) {}",
        sql(name)
    )));
    if name == "summary" {
        query = query.bind("created");
    }
    query
        .bind(day("2026-03-10"))
        .bind(day("2026-03-11"))
        .bind(None::<&str>)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_range_is_read_through_the_basis_columns_index() {
    let db = seeded().await;
    let created = plan(&db, "detail_created").await;
    assert!(
        created.contains("payments_created_at_idx") && !created.contains("Seq Scan on payments"),
        "{created}"
    );
    let settled = plan(&db, "detail_first_seen_settled").await;
    assert!(
        settled.contains("payments_settled_at_idx") && !settled.contains("Seq Scan on payments"),
        "{settled}"
    );
    // The summary reads the days asked for from the rollup, by its index. The summary from
    // the rows (for a flag filter, or a reader in another zone) is planned too, behind a
    // one-time filter, and never runs.
    let summary = plan(&db, "summary").await;
    assert!(
        summary.contains("Index Scan using summary_rollup_key")
            && summary.contains("Function Scan on summary_pending"),
        "{summary}"
    );
    let payments_read: Vec<&str> = summary
        .lines()
        .filter(|line| line.contains(" on payments") && !line.contains("never executed"))
        .collect();
    assert!(payments_read.is_empty(), "{payments_read:?}\n{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_range_gives_exactly_the_views_rows_for_those_days_in_the_reporting_zone() {
    let db = seeded().await;
    for zone in ["Asia/Almaty", "UTC", "America/New_York"] {
        // One connection, so the zone set above is the one every statement sees.
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::query("select set_config('recon.timezone', $1, false)")
            .bind(zone)
            .execute(&mut *conn)
            .await
            .unwrap();
        let (ranged, whole): (i64, i64) = sqlx::query_as(
            "with ranged as (
                 select * from recon.daily_summary_between(
                     recon.day_start('2026-03-10'), recon.day_start(date '2026-03-12' + 1))
             ),
             whole as (
                 select * from recon.daily_summary where day between '2026-03-10' and '2026-03-12'
             )
             select (select count(*) from ranged),
                    (select count(*) from (select * from ranged except all select * from whole
                                           union all
                                           select * from whole except all select * from ranged) d)",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert!(
            ranged >= 6,
            "{zone}: rows for both bases and three days: {ranged}"
        );
        assert_eq!(whole, 0, "{zone}: the ranged summary differs from the view");

        // The detail: the same payments as filtering on the reporting day.
        let (by_range, by_day): (i64, i64) = sqlx::query_as(
            "select
                 (select count(*) from recon.reconciliation
                   where created_at >= recon.day_start('2026-03-10')
                     and created_at < recon.day_start(date '2026-03-10' + 1)),
                 (select count(*) from recon.reconciliation
                   where recon.report_day(created_at) = '2026-03-10')",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(by_range, by_day, "{zone}");
        assert_eq!(by_range, 96, "{zone}: a day of payments every 15 minutes");
    }
}

/// The footer's open-flag ages of a narrow range are counted from the range's payments, of a
/// wide one from the open flags: both ways count the same flags, whatever the filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_flag_ages_are_the_same_counted_from_the_payments_or_from_the_flags() {
    use freedompay_recon::domain::FlagKind;
    use freedompay_recon::store::report::{
        DayBasis, ReportFilter, open_action_ages_by_flags, open_action_ages_by_payments,
    };
    let db = seeded().await;
    let pool = &db.pool;
    sqlx::raw_sql(
        "select recon.ensure_partitions(interval '1 month');
         insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         select p.payment_id, k.kind, 'e', 'a', now() - (g % 10) * interval '1 day'
         from recon.payments p
         cross join lateral (select (regexp_replace(p.payment_id, '\\D', '', 'g'))::int as g) n
         join (values ('amount_mismatch', 7), ('lifetime_exceeded', 5), ('not_found', 11)) k(kind, m)
           on g % k.m = 0;
         update recon.discrepancies set resolved_at = now(), resolved_by = 'finance'
         where kind = 'not_found' and id % 2 = 0;",
    )
    .execute(pool)
    .await
    .unwrap();
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
    let mut filters = Vec::new();
    for basis in [DayBasis::Created, DayBasis::FirstSeenSettled] {
        for (from, to) in [(1, 1), (2, 4), (1, 7)] {
            for (currency, status, flag) in [
                (None, None, None),
                (Some("KZT"), None, None),
                (None, Some("no_answer"), None),
                (None, Some("success"), Some(FlagKind::AmountMismatch)),
                (Some("USD"), None, None),
            ] {
                filters.push(ReportFilter {
                    basis,
                    from: Some(day(from)),
                    to: Some(day(to)),
                    currency: currency.map(str::to_owned),
                    status: status.map(str::to_owned),
                    flag,
                    as_of: None,
                });
            }
        }
    }
    let mut counted = 0;
    for filter in &filters {
        let by_payments = open_action_ages_by_payments(pool, filter).await.unwrap();
        let by_flags = open_action_ages_by_flags(pool, filter).await.unwrap();
        assert_eq!(by_payments, by_flags, "{filter:?}");
        counted += by_flags.total();
    }
    assert!(
        counted > 100,
        "the filters select open action flags: {counted}"
    );
}
