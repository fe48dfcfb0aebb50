//! Amounts as of a date (issue 24, item 2): the summary and the payment list as of an instant
//! equal a recount taken at that instant, whatever changed since; a day the history does not
//! cover is refused, never guessed.

use chrono::{DateTime, Utc};
use freedompay_recon::store::report::{
    AsOf, DayBasis, DetailRow, ReportFilter, SummaryRow, detail_rows, summary_rows,
};
use futures_util::TryStreamExt as _;
use rust_decimal::Decimal;

use crate::helpers::{self, TestApp, TestDb, ok};
use freedompay_recon::simulator::Scenario;

/// One day of a November in Almaty, as the database sees it: 12 payments created on day
/// `day`; the day before's answered (paid, one short, one with a fee, one failed); two days
/// before's: a reversal, a partial refund, an expected amount changed by SQL, a deadline
/// missed; a flag opened on yesterday's payment and the day before's resolved.
fn day_of_changes(day: u32) -> String {
    let (yesterday, before) = (day.saturating_sub(1), day.saturating_sub(2));
    format!(
        "insert into recon.payments (payment_id, expected_amount, expected_currency, created_at,
                                     next_check_at)
         select format('n%s-%s', {day}, g), 1000 + g * 10 + {day} * 0.01,
                case when g % 6 = 0 then 'USD' else 'KZT' end,
                timestamptz '2026-11-01 09:00+05' + ({day} - 1) * interval '1 day'
                    + g * interval '50 minutes',
                null
         from generate_series(1, 12) g;
         update recon.payments
         set status = case when payment_id like '%-2' then 'error' else 'success' end,
             amount = case when payment_id like '%-4' then expected_amount - 7.5
                           else expected_amount end,
             currency = expected_currency,
             fee = case when payment_id like '%-1' then null else round(expected_amount * 0.025, 2) end,
             settled_at = clock_timestamp()
         where payment_id like 'n{yesterday}-%' and payment_id not like '%-8';
         update recon.payments set status = 'error'
         where payment_id = 'n{before}-3';
         update recon.payments set amount = amount - 100.25
         where payment_id = 'n{before}-5';
         update recon.payments set expected_amount = expected_amount + 1
         where payment_id = 'n{before}-7';
         update recon.payments set deadline_missed_at = clock_timestamp()
         where payment_id = 'n{before}-8';
         insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         select payment_id, 'amount_mismatch', '1', '2', clock_timestamp()
         from recon.payments where payment_id = 'n{yesterday}-4';
         update recon.discrepancies
         set resolved_at = clock_timestamp(), resolved_by = 'test', resolution = 'refund agreed'
         where payment_id = 'n{before}-4' and resolved_at is null;"
    )
}

fn filter(basis: DayBasis, as_of: Option<DateTime<Utc>>) -> ReportFilter {
    ReportFilter {
        basis,
        from: None,
        to: None,
        currency: None,
        status: None,
        flag: None,
        as_of: as_of.map(|at| AsOf { at, day: None }),
    }
}

/// A summary row with its sums as numbers (a sum's text may differ in trailing zeros only).
fn summary_key(row: &SummaryRow) -> String {
    let n = |v: &Option<String>| {
        v.as_deref()
            .map(|t| t.parse::<Decimal>().unwrap().normalize().to_string())
    };
    format!(
        "{} {:?} {} {} {} {} {:?} {} {:?} {:?} {} {:?} {} {:?}",
        row.day,
        row.currency,
        row.outcome,
        row.status,
        row.payments,
        row.expected_payments,
        n(&row.expected_amount),
        row.received_payments,
        n(&row.received_amount),
        n(&row.fee),
        row.payments_without_fee,
        n(&row.difference),
        row.needs_action,
        row.flag_counts()
    )
}

/// What history keeps of a payment: checks and the last check are not in it.
fn kept(mut row: DetailRow) -> DetailRow {
    row.checks = None;
    row.last_checked_at = None;
    row.last_checked_local = None;
    row
}

async fn summaries(db: &TestDb, as_of: Option<DateTime<Utc>>) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for basis in [DayBasis::Created, DayBasis::FirstSeenSettled] {
        let filter = filter(basis, as_of);
        let rows: Vec<SummaryRow> = summary_rows(&db.pool, &filter).try_collect().await.unwrap();
        all.push(rows.iter().map(summary_key).collect());
        // Narrowed to the payments with an open amount flag, then.
        let flagged = ReportFilter {
            flag: Some(freedompay_recon::domain::FlagKind::AmountMismatch),
            ..filter
        };
        let rows: Vec<SummaryRow> = summary_rows(&db.pool, &flagged)
            .try_collect()
            .await
            .unwrap();
        all.push(rows.iter().map(summary_key).collect());
    }
    all
}

async fn details(db: &TestDb, as_of: Option<DateTime<Utc>>) -> Vec<Vec<DetailRow>> {
    let mut all = Vec::new();
    for basis in [DayBasis::Created, DayBasis::FirstSeenSettled] {
        let filter = filter(basis, as_of);
        let rows: Vec<DetailRow> = detail_rows(&db.pool, &filter).try_collect().await.unwrap();
        all.push(rows.into_iter().map(kept).collect());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_and_the_list_as_of_an_instant_equal_a_recount_then() {
    let db = TestDb::new().await;
    // Thirty days of November, each changing the days before: after each, a recount now
    // (the live report) and the instant it was taken.
    let mut recounts = Vec::new();
    for day in 1..=30 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(day_of_changes(day)))
            .execute(&db.pool)
            .await
            .unwrap();
        let at: DateTime<Utc> = sqlx::query_scalar("select clock_timestamp()")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        recounts.push((
            day,
            at,
            summaries(&db, None).await,
            details(&db, None).await,
        ));
    }
    let changed: i64 = sqlx::query_scalar(
        "select count(*) from recon.payment_states s
         where exists (select 1 from recon.payment_states e
                       where e.payment_id = s.payment_id and e.id < s.id)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        changed > 300,
        "payments changed after they were created: {changed}"
    );
    for (day, at, summary, detail) in &recounts {
        assert!(
            summary[0].len() > 1 && detail[0].len() == 12 * *day as usize,
            "day {day}: {summary:?}"
        );
        assert_eq!(
            &summaries(&db, Some(*at)).await,
            summary,
            "the summary as of day {day}'s recount"
        );
        assert_eq!(
            &details(&db, Some(*at)).await,
            detail,
            "the payment list as of day {day}'s recount"
        );
    }
    // And each recount differs from the next: every day changed what was counted.
    for pair in recounts.windows(2) {
        assert_ne!(
            pair[0].2[0], pair[1].2[0],
            "day {} changed nothing",
            pair[1].0
        );
    }
    // The states are history: the database refuses to change or remove them.
    for statement in [
        "update recon.payment_states set amount = 0 where payment_id = 'n1-1'",
        "delete from recon.payment_states where payment_id = 'n1-1'",
        "truncate recon.payment_states",
    ] {
        let error = sqlx::query(statement).execute(&db.pool).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
}

/// Refused in one line ([`helpers::refused`]), with nothing printed.
fn refused(output: &std::process::Output) -> String {
    assert!(output.stdout.is_empty(), "nothing printed");
    helpers::refused(output)
}

/// The CSV without the columns history does not keep (checks, last_checked_at).
fn without_checks(csv: &str) -> Vec<String> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let skip: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, name)| **name == "checks" || **name == "last_checked_at")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(skip.len(), 2, "{header:?}");
    std::iter::once(csv.lines().next().unwrap().to_owned())
        .chain(lines.map(|line| {
            line.split(',')
                .enumerate()
                .filter(|(i, _)| !skip.contains(i))
                .map(|(_, cell)| cell)
                .collect::<Vec<_>>()
                .join(",")
        }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_today_is_the_report_now_and_before_the_history_began_is_refused() {
    let app = TestApp::new(Scenario::new()).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "{} {}",
        day_of_changes(1),
        day_of_changes(2)
    )))
    .execute(app.pool())
    .await
    .unwrap();
    let today: chrono::NaiveDate = sqlx::query_scalar("select recon.report_day(now())")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let today = today.to_string();

    for by in ["created", "first-seen-settled"] {
        let now = ok(&app.run(&["report", "--by", by, "--format", "csv"]).await);
        let then = ok(&app
            .run(&["report", "--by", by, "--format", "csv", "--as-of", &today])
            .await);
        assert!(now.lines().count() > 3, "{now}");
        assert_eq!(then, now, "--by {by}");
        let now = ok(&app
            .run(&["report", "--detail", "--by", by, "--format", "csv"])
            .await);
        let then = ok(&app
            .run(&[
                "report", "--detail", "--by", by, "--format", "csv", "--as-of", &today,
            ])
            .await);
        // A header, and 24 payments by the day created, the 11 seen settled by that day.
        let payments = if by == "created" { 24 } else { 11 };
        assert_eq!(now.lines().count(), 1 + payments, "{now}");
        assert_eq!(without_checks(&then), without_checks(&now), "--by {by}");
    }
    let table = ok(&app.run(&["report", "--as-of", &today]).await);
    assert!(
        table.contains(&format!(
            "as of the end of {today} (recon.timezone), recounted"
        )),
        "{table}"
    );

    // The history began with this database: the day before is not in it.
    let yesterday = (chrono::NaiveDate::parse_from_str(&today, "%Y-%m-%d").unwrap()
        - chrono::Days::new(1))
    .to_string();
    for what in [&["report"][..], &["report", "--detail"]] {
        let args: Vec<&str> = what
            .iter()
            .copied()
            .chain(["--as-of", &yesterday])
            .collect();
        let stderr = refused(&app.run(&args).await);
        assert!(
            stderr.contains("the history of amounts begins at"),
            "{stderr}"
        );
    }
    // A day that has not come is not a day whose end can be reported.
    let tomorrow = (chrono::NaiveDate::parse_from_str(&today, "%Y-%m-%d").unwrap()
        + chrono::Days::new(1))
    .to_string();
    let stderr = refused(&app.run(&["report", "--as-of", &tomorrow]).await);
    assert!(stderr.contains("has not begun"), "{stderr}");
    // The flags open at the end of a day still come from transitions and flags, which go
    // back further.
    ok(&app.run(&["report", "--flags", "--as-of", &yesterday]).await);
}
