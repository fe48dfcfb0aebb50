//! `archive` (issue 17, item 3): a closed month of history to one .tar.gz of CSV files and a
//! manifest, checked against the database row by row; the refusals (the current month, open
//! action flags, rows still in a DEFAULT partition) write nothing; `--detach` detaches exactly
//! the month's three partitions and the statements it prints put them back.

use std::io::Read as _;
use std::path::Path;

use freedompay_recon::archive::Manifest;
use freedompay_recon::simulator::Scenario;
use freedompay_recon::store::maintenance;
use sha2::Digest as _;
use sqlx::PgPool;

use crate::helpers::{TestApp, stderr, stdout};

/// The month `months_ago` months before this one (UTC), as `--month` takes it.
async fn month(pool: &PgPool, months_ago: i32) -> String {
    sqlx::query_scalar(
        "select to_char(date_trunc('month', now() at time zone 'UTC')
                        - make_interval(months => $1), 'YYYY-MM')",
    )
    .bind(months_ago)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// History of payments `a` and `b` in the month `months_ago` months back: transitions (one
/// body with an exact long number, quotes, a comma and a line break), a resolved action flag
/// with empty text beside a NULL, an info flag, and delivered events; then maintenance moves
/// it all out of the DEFAULT partitions into the month's own.
async fn history_in_month(pool: &PgPool, months_ago: i32) {
    sqlx::query(
        r#"with m as (select date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                             - make_interval(months => $1) + interval '3 days' as t),
                tr as (insert into recon.status_transitions
                           (payment_id, observation_no, from_status, to_status, observed_at,
                            provider_dt, body, request_id)
                       select p, n + 10 * $1, null, 'process', m.t + make_interval(hours => n),
                              case when n = 1 then m.t end,
                              ('{"amount": 16938.530000000000000000001,' || E'\n' || ' "note": "a, \"b\""}')::json,
                              case when n = 2 then '0190d7c2-3b7a-7cc0-8000-000000000001'::uuid end
                       from m, unnest(array['a', 'b']) p, generate_series(1, 2) n
                       returning 1),
                fl as (insert into recon.discrepancies
                           (payment_id, kind, expected, actual, detected_at, resolved_at,
                            resolved_by, resolution)
                       select 'a', 'amount_mismatch', '', null, m.t, m.t + interval '1 hour',
                              'bob', 'paid, "in cash"'
                       from m
                       union all
                       select 'b', 'lifetime_exceeded', '5000', '0', m.t, m.t, 'rule:expired_unpaid', null
                       from m
                       returning 1),
                ev as (insert into recon.events
                           (type, payment_id, occurred_at, payload, created_at, delivered_at)
                       select 'status_changed', p, m.t, '{"x": 1.50}', m.t + make_interval(mins => n),
                              m.t + interval '1 day'
                       from m, unnest(array['a', 'b']) p, generate_series(1, 3) n
                       returning 1)
           select (select count(*) from tr) + (select count(*) from fl) + (select count(*) from ev)"#,
    )
    .bind(months_ago)
    .execute(pool)
    .await
    .unwrap();
    maintenance::ensure_partitions(pool).await.unwrap();
}

async fn app_with_payments() -> TestApp {
    let app = TestApp::new(Scenario::new()).await;
    app.insert_ids(&["a", "b"]).await;
    app
}

/// The archive's entries, by name inside its folder.
fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(path).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// The rows of `table` in the month, each column as text (NULL as ""), as the archive's CSV
/// should hold them.
async fn database_rows(
    pool: &PgPool,
    table: &str,
    key: &str,
    order: &str,
    columns: &[String],
    month: &str,
) -> Vec<Vec<String>> {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql("set timezone = 'UTC'; set datestyle = 'ISO, YMD'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let cells: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
    let rows: Vec<Vec<Option<String>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select array[{}] from recon.{table}
         where {key} >= ($1 || '-01 00:00+00')::timestamptz
           and {key} < ($1 || '-01 00:00+00')::timestamptz + interval '1 month'
         order by {order}",
        cells.join(", ")
    )))
    .bind(month)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|row| row.into_iter().map(Option::unwrap_or_default).collect())
        .collect()
}

fn csv_rows(data: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(data);
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// Runs `archive --month MONTH --to TO` with `extra` arguments against `app`.
async fn archive(app: &TestApp, month: &str, to: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["archive", "--month", month, "--to", to];
    args.extend_from_slice(extra);
    app.run(&args).await
}

/// The month partitions attached to `table`.
async fn attached(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = $1::regclass order by 1",
    )
    .bind(format!("recon.{table}"))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_month_is_archived_with_a_manifest_whose_counts_and_checksums_match_its_csvs() {
    let app = app_with_payments().await;
    let pool = app.pool();
    history_in_month(pool, 2).await;
    history_in_month(pool, 3).await; // another month: not in the archive
    let m = month(pool, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("recon-{m}.tar.gz"));

    let out = archive(&app, &m, file.to_str().unwrap(), &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("archived {m} to")),
        "{}",
        stdout(&out)
    );
    // Only the archive is left in the directory: no staging or temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let entries = entries(&file);
    let folder = format!("recon-{m}");
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{folder}/manifest.json"),
            format!("{folder}/status_transitions.csv"),
            format!("{folder}/discrepancies.csv"),
            format!("{folder}/events.csv"),
        ]
    );
    let manifest: Manifest = serde_json::from_slice(&entries[0].1).unwrap();
    assert_eq!(manifest.month, m);
    assert!(manifest.from.starts_with(&m), "{}", manifest.from);
    let expected_rows = [
        ("status_transitions", 4),
        ("discrepancies", 2),
        ("events", 6),
    ];
    let keys = [
        ("observed_at", "payment_id, observation_no"),
        ("detected_at", "id"),
        ("created_at", "id"),
    ];
    for (i, table) in manifest.tables.iter().enumerate() {
        let (name, rows) = expected_rows[i];
        let data = &entries[i + 1].1;
        assert_eq!(table.table, format!("recon.{name}"));
        assert_eq!(table.rows, rows, "{name}");
        assert_eq!(table.bytes, data.len() as u64, "{name}");
        assert_eq!(
            table.sha256,
            hex::encode(sha2::Sha256::digest(data)),
            "{name}"
        );
        let (header, csv) = csv_rows(data);
        let columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(header, columns, "{name}");
        let (key, order) = keys[i];
        let db = database_rows(pool, name, key, order, &columns, &m).await;
        assert_eq!(csv.len() as u64, rows, "{name}");
        assert_eq!(csv, db, "{name}");
    }
    // Exact values: the long number and the text as stored; empty text and NULL differ.
    let transitions = String::from_utf8(entries[1].1.clone()).unwrap();
    assert!(
        transitions.contains("16938.530000000000000000001"),
        "{transitions}"
    );
    assert!(
        transitions.contains("+00,"),
        "timestamps in UTC: {transitions}"
    );
    let flags = String::from_utf8(entries[2].1.clone()).unwrap();
    assert!(flags.contains(",amount_mismatch,\"\",,"), "{flags}");
    let types: Vec<&str> = manifest.tables[0]
        .columns
        .iter()
        .map(|c| c.type_name.as_str())
        .collect();
    assert!(types.contains(&"timestamp with time zone"), "{types:?}");
    assert!(types.contains(&"json"), "{types:?}");

    // The same month again is refused without --force, and the archive stays as it was.
    let before = std::fs::read(&file).unwrap();
    let again = archive(&app, &m, file.to_str().unwrap(), &[]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let forced = archive(&app, &m, file.to_str().unwrap(), &["--force"]).await;
    assert!(forced.status.success(), "{}", stderr(&forced));
    // Nothing was detached without --detach.
    assert!(
        attached(pool, "events")
            .await
            .contains(&format!("events_{}", m.replace('-', "_")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_month_a_future_one_a_malformed_one_and_a_missing_directory_are_refused() {
    let app = app_with_payments().await;
    let pool = app.pool();
    app.insert_first_transition("a").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.tar.gz");
    let to = file.to_str().unwrap();
    let (this, next) = (month(pool, 0).await, month(pool, -1).await);

    let out = archive(&app, &this, to, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("is the current month"),
        "{}",
        stderr(&out)
    );
    let out = archive(&app, &next, to, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is in the future"),
        "{}",
        stderr(&out)
    );
    for bad in ["2026-1", "2026-13", "10-2026"] {
        let out = archive(&app, bad, to, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains("YYYY-MM"), "{}", stderr(&out));
    }
    let missing = dir.path().join("no-such-dir").join("out.tar.gz");
    let past = month(pool, 2).await;
    let out = archive(&app, &past, missing.to_str().unwrap(), &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // Nothing was written anywhere.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_with_an_open_action_flag_is_refused_unless_allowed_and_never_detached() {
    let app = app_with_payments().await;
    let pool = app.pool();
    history_in_month(pool, 2).await;
    let m = month(pool, 2).await;
    sqlx::query(
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         values ('b', 'currency_mismatch', 'KZT', 'USD',
                 ($1 || '-10 12:00+00')::timestamptz)",
    )
    .bind(&m)
    .execute(pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.tar.gz");
    let to = file.to_str().unwrap();

    let out = archive(&app, &m, to, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("1 open flag a person must act on")
            && message.contains("--allow-open-flags"),
        "{message}"
    );
    assert!(!file.exists());

    let out = archive(&app, &m, to, &["--allow-open-flags"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let entries = entries(&file);
    let manifest: Manifest = serde_json::from_slice(&entries[0].1).unwrap();
    assert_eq!(manifest.tables[1].rows, 3);
    let flags = String::from_utf8(entries[2].1.clone()).unwrap();
    assert!(flags.contains("currency_mismatch,KZT,USD"), "{flags}");

    // --detach never takes a month with an open flag, allowed or not; nothing is written.
    let before = std::fs::read(&file).unwrap();
    let out = archive(&app, &m, to, &["--allow-open-flags", "--detach", "--force"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has 1 open flag (detected that month, of any class)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let partition = format!("discrepancies_{}", m.replace('-', "_"));
    assert!(attached(pool, "discrepancies").await.contains(&partition));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_waits_for_rows_in_a_default_partition_and_for_events_a_webhook_still_owes() {
    let app = app_with_payments().await;
    let pool = app.pool();
    let m = month(pool, 2).await;
    // A transition of the month with no partition yet: it waits in the DEFAULT partition.
    sqlx::query(
        "insert into recon.status_transitions
             (payment_id, observation_no, to_status, observed_at, body)
         values ('a', 1, 'process', ($1 || '-05 00:00+00')::timestamptz, '{}')",
    )
    .bind(&m)
    .execute(pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.tar.gz");
    let to = file.to_str().unwrap();
    let out = archive(&app, &m, to, &["--detach"]).await;
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("recon.status_transitions_default") && message.contains("migrate"),
        "{message}"
    );
    assert!(!file.exists());
    // Without --detach, the rows waiting there are archived all the same.
    let out = archive(&app, &m, to, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: Manifest = serde_json::from_slice(&entries(&file)[0].1).unwrap();
    assert_eq!(manifest.tables[0].rows, 1);

    // Events of the month not yet delivered, with a webhook configured: not detached.
    maintenance::ensure_partitions(pool).await.unwrap();
    sqlx::query(
        "insert into recon.events (type, payment_id, occurred_at, payload, created_at)
         values ('status_changed', 'a', now(), '{}', ($1 || '-06 00:00+00')::timestamptz)",
    )
    .bind(&m)
    .execute(pool)
    .await
    .unwrap();
    maintenance::ensure_partitions(pool).await.unwrap();
    let webhook = [
        ("FREEDOMPAY_RECON__WEBHOOK__URL", "http://127.0.0.1:9/hooks"),
        (
            "FREEDOMPAY_RECON__WEBHOOK__SECRET",
            "whsec_cmVjZWl2ZXItc2hhcmVkLWtleS0wMTIz",
        ),
    ];
    let out = app
        .run_with(
            &["archive", "--month", &m, "--to", to, "--detach", "--force"],
            &webhook,
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has not delivered"),
        "{}",
        stderr(&out)
    );
    let partition = format!("events_{}", m.replace('-', "_"));
    assert!(attached(pool, "events").await.contains(&partition));
}

/// The month's rows of each table, read through the tables (attached partitions only).
async fn in_parents(app: &TestApp, m: &str) -> Vec<i64> {
    let mut n = Vec::new();
    for (table, key) in [
        ("status_transitions", "observed_at"),
        ("discrepancies", "detected_at"),
        ("events", "created_at"),
    ] {
        n.push(
            app.count(&format!(
                "select count(*) from recon.{table}
                 where to_char({key} at time zone 'UTC', 'YYYY-MM') = '{m}'"
            ))
            .await,
        );
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_takes_exactly_the_months_three_partitions_and_the_printed_statements_reattach_them()
{
    let app = app_with_payments().await;
    let pool = app.pool();
    history_in_month(pool, 2).await;
    history_in_month(pool, 3).await;
    let (m, other) = (month(pool, 2).await, month(pool, 3).await);
    let (suffix, other_suffix) = (m.replace('-', "_"), other.replace('-', "_"));
    let tables = ["status_transitions", "discrepancies", "events"];
    assert_eq!(in_parents(&app, &m).await, [4, 2, 6]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("detach.tar.gz");

    let out = archive(&app, &m, file.to_str().unwrap(), &["--detach"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("read back"), "{printed}");
    assert!(
        printed.contains(&format!(
            "drop table recon.status_transitions_{suffix}, recon.discrepancies_{suffix}, recon.events_{suffix};"
        )),
        "{printed}"
    );
    for table in tables {
        let partitions = attached(pool, table).await;
        assert!(
            !partitions.contains(&format!("{table}_{suffix}")),
            "{partitions:?}"
        );
        assert!(
            partitions.contains(&format!("{table}_{other_suffix}")),
            "{partitions:?}"
        );
        assert!(
            partitions.contains(&format!("{table}_default")),
            "{partitions:?}"
        );
    }
    assert_eq!(in_parents(&app, &m).await, [0, 0, 0]);
    // The rows stay readable in the detached tables, and cannot be changed there.
    for (table, rows) in tables.iter().zip([4, 2, 6]) {
        assert_eq!(
            app.count(&format!("select count(*) from recon.{table}_{suffix}"))
                .await,
            rows
        );
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "delete from recon.{table}_{suffix}"
        )))
        .execute(pool)
        .await
        .expect_err("a detached partition stays append-only");
        assert_eq!(
            err.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("23001"),
            "{err}"
        );
    }
    // Maintenance neither recreates the month nor fails on it.
    maintenance::ensure_partitions(pool).await.unwrap();
    for table in tables {
        assert!(
            !attached(pool, table)
                .await
                .contains(&format!("{table}_{suffix}"))
        );
    }

    // The printed statements put them back as they were.
    let reattach: Vec<&str> = printed
        .lines()
        .skip_while(|l| !l.starts_with("to put them back"))
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(reattach.len(), 6, "{printed}");
    let mut tx = pool.begin().await.unwrap();
    for statement in &reattach {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    tx.commit().await.unwrap();
    for table in tables {
        assert!(
            attached(pool, table)
                .await
                .contains(&format!("{table}_{suffix}"))
        );
    }
    assert_eq!(in_parents(&app, &m).await, [4, 2, 6]);
    // The tables' own append-only rules apply to the month again (through the parent too).
    let err = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "update recon.discrepancies set resolution = 'x' where payment_id = 'a'
         and to_char(detected_at at time zone 'UTC', 'YYYY-MM') = '{m}'"
    )))
    .execute(pool)
    .await
    .expect_err("a resolved flag stays as it was");
    assert!(err.to_string().contains("already resolved"), "{err}");
    let frozen = app
        .count(&format!(
            "select count(*) from pg_trigger where tgname like '%{suffix}_frozen'"
        ))
        .await;
    assert_eq!(frozen, 0);
    // And the month can be archived again, the same rows.
    let again = dir.path().join("again.tar.gz");
    let out = archive(&app, &m, again.to_str().unwrap(), &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let first: Manifest = serde_json::from_slice(&entries(&file)[0].1).unwrap();
    let second: Manifest = serde_json::from_slice(&entries(&again)[0].1).unwrap();
    let checksums =
        |m: &Manifest| -> Vec<String> { m.tables.iter().map(|t| t.sha256.clone()).collect() };
    assert_eq!(checksums(&first), checksums(&second));
}

/// Transitions of payment `a` observed at `times` (UTC), numbered from `first_no`, moved
/// into their month's partitions.
async fn transitions_at(pool: &PgPool, first_no: i32, times: &[&str]) {
    for (i, at) in times.iter().enumerate() {
        sqlx::query(
            "insert into recon.status_transitions
                 (payment_id, observation_no, to_status, observed_at, body)
             values ('a', $1, 'process', $2::timestamptz, '{}')",
        )
        .bind(first_no + i as i32)
        .bind(at)
        .execute(pool)
        .await
        .unwrap();
    }
    maintenance::ensure_partitions(pool).await.unwrap();
}

/// The `observed_at` values an archive's transitions CSV holds, as PostgreSQL printed them.
fn observed(path: &Path) -> Vec<String> {
    let entries = entries(path);
    let (header, rows) = csv_rows(&entries[1].1);
    let at = header.iter().position(|h| h == "observed_at").unwrap();
    rows.into_iter().map(|row| row[at].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_is_the_reporting_month_in_almaty_and_its_partitions_go_once_both_ends_are_archived()
 {
    // The default reporting zone, Asia/Almaty (+05:00): its November is 2026-10-31 19:00 UTC
    // to 2026-11-30 19:00 UTC, across the UTC partitions of October and November.
    let app = app_with_payments().await;
    let pool = app.pool();
    transitions_at(
        pool,
        1,
        &[
            "2026-10-31 18:59:59Z", // 23:59:59 on 31 October in Almaty: October
            "2026-10-31 19:00:00Z", // midnight, 1 November in Almaty: November
            "2026-11-30 18:59:59Z", // 23:59:59 on 30 November: November
            "2026-11-30 20:00:00Z", // 01:00 on 1 December: December
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recon-2026-11.tar.gz");
    let to = file.to_str().unwrap();

    let out = archive(&app, "2026-11", to, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "2026-11 in Asia/Almaty (recon.timezone): from 2026-11-01 00:00 +05:00 to \
             2026-12-01 00:00 +05:00 (2026-10-31 19:00 to 2026-11-30 19:00 UTC)"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        observed(&file),
        ["2026-10-31 19:00:00+00", "2026-11-30 18:59:59+00"],
        "the Almaty November, not the UTC one"
    );
    let manifest: Manifest = serde_json::from_slice(&entries(&file)[0].1).unwrap();
    assert_eq!(
        (
            manifest.timezone.as_str(),
            manifest.from.as_str(),
            manifest.to.as_str()
        ),
        (
            "Asia/Almaty",
            "2026-11-01T00:00:00+05:00",
            "2026-12-01T00:00:00+05:00"
        )
    );

    // Each partition also holds rows of a month not archived yet: both stay attached.
    let out = archive(&app, "2026-11", to, &["--force", "--detach"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains(
            "kept recon.status_transitions_2026_10 attached (UTC month 2026-10): 1 of \
             recon.status_transitions's rows in them, from 2026-10-31 23:59 Asia/Almaty on, are \
             in no archive yet; they belong to reporting month 2026-10"
        ),
        "{printed}"
    );
    assert!(
        printed.contains(
            "kept recon.status_transitions_2026_11 attached (UTC month 2026-11): 1 of \
             recon.status_transitions's rows in them, from 2026-12-01 01:00 Asia/Almaty on"
        ),
        "{printed}"
    );
    assert!(!printed.contains("detached recon."), "{printed}");
    let partitions = attached(pool, "status_transitions").await;
    for month in ["2026_10", "2026_11"] {
        assert!(
            partitions.contains(&format!("status_transitions_{month}")),
            "{partitions:?}"
        );
    }

    // A row arriving in November's span after its archive: that archive no longer stands
    // for the October partition's share of November.
    transitions_at(pool, 5, &["2026-10-31 21:00:00Z"]).await;
    let october = dir.path().join("recon-2026-10.tar.gz");
    let out = archive(&app, "2026-10", october.to_str().unwrap(), &["--detach"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("which holds 1: rows came since it was written; archive 2026-11 again"),
        "{}",
        stdout(&out)
    );
    assert!(
        attached(pool, "status_transitions")
            .await
            .contains(&"status_transitions_2026_10".to_owned())
    );

    // November archived again: now every row of the October partition is in an archive
    // (October's first hours in October's, its last five in November's), so it goes; the
    // November partition waits for December's.
    let out = archive(&app, "2026-11", to, &["--force"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(observed(&file).len(), 3);
    let out = archive(
        &app,
        "2026-10",
        october.to_str().unwrap(),
        &["--force", "--detach"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains("detached recon.status_transitions_2026_10 (3 rows)"),
        "{printed}"
    );
    let partitions = attached(pool, "status_transitions").await;
    assert!(!partitions.contains(&"status_transitions_2026_10".to_owned()));
    assert!(partitions.contains(&"status_transitions_2026_11".to_owned()));
    assert_eq!(observed(&october), ["2026-10-31 18:59:59+00"]);
    // The printed statements put it back for its UTC month's bounds.
    assert!(
        printed.contains(
            "alter table recon.status_transitions attach partition \
             recon.status_transitions_2026_10 for values from ('2026-10-01 00:00:00+00') to \
             ('2026-11-01 00:00:00+00');"
        ),
        "{printed}"
    );
    // Every archive written is recorded, with what --detach counted on.
    let recorded: Vec<(String, bool)> =
        sqlx::query_as("select month, rows_final from recon.archives order by id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        recorded,
        [
            ("2026-11".to_owned(), true),
            ("2026-11".to_owned(), true),
            ("2026-10".to_owned(), true),
            ("2026-11".to_owned(), true),
            ("2026-10".to_owned(), true),
        ]
    );
}
