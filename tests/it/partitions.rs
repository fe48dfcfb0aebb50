//! History partitioned by month (issue 17): partitions ahead of time, the DEFAULT partition
//! emptied by the next maintenance, the append-only rules and history's uniqueness on
//! partitioned tables, event retention by whole partitions, and the upgrade from the single
//! tables.

use std::time::Duration;

use freedompay_recon::maintenance::Maintenance;
use freedompay_recon::simulator::{Reply, Scenario};
use freedompay_recon::store::{self, maintenance};
use sqlx::PgPool;

use crate::helpers::{TestApp, TestDb, recorded};

/// The partition a row of `table` matching `condition` sits in.
async fn partition_of(pool: &PgPool, table: &str, condition: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select tableoid::regclass::text from recon.{table} where {condition}"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn sql_error(pool: &PgPool, sql: &str) -> (String, String) {
    let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .expect_err(sql);
    let db = err.as_database_error().expect("a database error");
    (
        db.code().unwrap_or_default().into_owned(),
        db.message().to_owned(),
    )
}

async fn month_name(pool: &PgPool, months_from_now: i32) -> String {
    sqlx::query_scalar(
        "select to_char(date_trunc('month', now() at time zone 'UTC')
                        + make_interval(months => $1), 'YYYY_MM')",
    )
    .bind(months_from_now)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_exist_months_ahead_and_a_row_dated_next_month_lands_in_its_own_partition() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    sqlx::raw_sql(
        "insert into recon.payments (payment_id) values ('ahead');
         insert into recon.status_transitions
             (payment_id, observation_no, to_status, observed_at, body)
         values ('ahead', 1, 'process',
                 date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                 + interval '1 month 2 days', '{}');
         insert into recon.discrepancies (payment_id, kind, detected_at)
         values ('ahead', 'not_found',
                 date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                 + interval '1 month 2 days');
         insert into recon.events (type, payment_id, occurred_at, payload, created_at)
         values ('status_changed', 'ahead', now(), '{}',
                 date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                 + interval '1 month 2 days');",
    )
    .execute(pool)
    .await
    .unwrap();
    let next = month_name(pool, 1).await;
    assert_eq!(
        partition_of(pool, "status_transitions", "payment_id = 'ahead'").await,
        format!("recon.status_transitions_{next}")
    );
    assert_eq!(
        partition_of(pool, "discrepancies", "payment_id = 'ahead'").await,
        format!("recon.discrepancies_{next}")
    );
    assert_eq!(
        partition_of(pool, "events", "created_at > now() + interval '1 day'").await,
        format!("recon.events_{next}")
    );
    // Three months ahead exist for every table; nothing waits in a DEFAULT partition.
    let ahead = month_name(pool, maintenance::PARTITIONS_AHEAD_MONTHS).await;
    for table in ["status_transitions", "discrepancies", "events"] {
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(format!("recon.{table}_{ahead}"))
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(exists, "{table}_{ahead}");
        let waiting: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select count(*) from recon.{table}_default"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(waiting, 0, "{table}_default");
    }
    // A second run (another instance, the next hour) creates nothing.
    assert_eq!(maintenance::ensure_partitions(pool).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_beyond_the_partitions_waits_in_the_default_partition_until_the_next_run_moves_it() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    sqlx::raw_sql(
        "insert into recon.payments (payment_id) values ('far');
         insert into recon.status_transitions
             (payment_id, observation_no, to_status, observed_at, body)
         values ('far', 1, 'process', now() + interval '5 years', '{}');",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(
        partition_of(pool, "status_transitions", "payment_id = 'far'").await,
        "recon.status_transitions_default"
    );
    let created = maintenance::ensure_partitions(pool).await.unwrap();
    assert_eq!(created, 1, "the far month's partition");
    let far: String = sqlx::query_scalar(
        "select to_char((now() + interval '5 years') at time zone 'UTC', 'YYYY_MM')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        partition_of(pool, "status_transitions", "payment_id = 'far'").await,
        format!("recon.status_transitions_{far}")
    );
    // Moved, not copied: one row, still append-only where it now is.
    let rows: i64 = sqlx::query_scalar(
        "select count(*) from recon.status_transitions where payment_id = 'far'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(rows, 1);
    let (code, message) = sql_error(
        pool,
        "update recon.status_transitions set to_status = 'success' where payment_id = 'far'",
    )
    .await;
    assert_eq!(code, "23001", "{message}");
    let (_, message) = sql_error(pool, &format!("truncate recon.status_transitions_{far}")).await;
    assert!(message.contains("never truncated"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_append_only_rules_hold_on_every_partition() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool();
    app.insert_ids(&["a"]).await;
    app.insert_first_transition("a").await;
    sqlx::query(
        "insert into recon.discrepancies (payment_id, kind, detected_at) values ('a', 'not_found', now())",
    )
    .execute(pool)
    .await
    .unwrap();

    for sql in [
        "update recon.status_transitions set to_status = 'success'",
        "delete from recon.status_transitions",
        "delete from recon.discrepancies",
        "update recon.discrepancies set kind = 'order_mismatch'",
        "update recon.events set payload = '{}'",
        "delete from recon.events",
    ] {
        let (code, message) = sql_error(pool, sql).await;
        assert_eq!(code, "23001", "{sql}: {message}");
    }
    let this_month = month_name(pool, 0).await;
    for table in ["status_transitions", "discrepancies", "events"] {
        for partition in [format!("{table}_{this_month}"), format!("{table}_default")] {
            let (_, message) = sql_error(pool, &format!("truncate recon.{partition}")).await;
            assert!(
                message.contains("never truncated"),
                "{partition}: {message}"
            );
            // (the default partition is empty: a delete there has no row to refuse)
            if partition.ends_with("_default") {
                continue;
            }
            let (code, message) = sql_error(pool, &format!("delete from recon.{partition}")).await;
            assert_eq!(code, "23001", "{partition}: {message}");
        }
    }
    // A flag's resolution, and an event's delivery state, may still be written.
    sqlx::query(
        "update recon.discrepancies set resolved_at = now(), resolved_by = 'alice',
             resolution = 'checked' where payment_id = 'a'",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("update recon.events set delivered_at = now()")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        app.count("select count(*) from recon.event_log where delivery = 'delivered'")
            .await,
        3,
        "status_changed, flag_opened, flag_resolved"
    );
    assert_eq!(app.count("select count(*) from recon.open_flags").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_verdict_doubles_nothing_and_a_kind_stays_open_once() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool();
    app.insert("('r', 100, 'KZT', null, now(), null)").await;
    let claim = app.claim_one().await;
    let item = recorded(&claim, Reply::invoice("success", "90", "KZT"));
    let first = store::record_verdicts(pool, std::slice::from_ref(&item), None)
        .await
        .unwrap();
    assert_eq!(
        (first.applied, first.transitions, first.flags_opened),
        (1, 1, 1)
    );
    // The worst replay: the claim's lease is back as it was (so the payment's row takes the
    // write again), and the same verdict comes twice in one batch. No unique index on the
    // partitioned tables could stop the history: the side tables do.
    sqlx::query(
        "update recon.payments set lease_token = $1, lease_owner = 'test' where payment_id = 'r'",
    )
    .bind(claim.lease_token)
    .execute(pool)
    .await
    .unwrap();
    let again = store::record_verdicts(pool, &[item.clone(), item.clone()], None)
        .await
        .unwrap();
    assert_eq!(
        (again.applied, again.transitions, again.flags_opened),
        (1, 0, 0)
    );
    assert_eq!(
        app.count("select count(*) from recon.status_transitions where payment_id = 'r'")
            .await,
        1
    );
    assert_eq!(
        app.flag_history("r").await,
        [("amount_mismatch".to_owned(), false)]
    );
    assert_eq!(
        app.count("select count(*) from recon.events where payment_id = 'r'")
            .await,
        2,
        "one status_changed, one flag_opened"
    );

    // By hand, too: a second transition for the observation, a second open flag of a kind,
    // each refused as the old unique indexes refused them (23505), in any month.
    for sql in [
        "insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
         values ('r', 1, 'success', now() + interval '40 days', '{}')",
        "insert into recon.discrepancies (payment_id, kind, detected_at)
         values ('r', 'amount_mismatch', now() + interval '40 days')",
        "insert into recon.discrepancies (payment_id, kind, detected_at)
         values ('r', 'not_found', now()), ('r', 'not_found', now() + interval '40 days')",
    ] {
        let (code, message) = sql_error(pool, sql).await;
        assert_eq!(code, "23505", "{sql}: {message}");
    }
    // Once closed, the kind may open again (a new row, linking the one it follows).
    sqlx::raw_sql(
        "update recon.discrepancies set resolved_at = now(), resolved_by = 'bob' where payment_id = 'r';
         insert into recon.discrepancies (payment_id, kind, detected_at, follows_id)
         select 'r', 'amount_mismatch', now() + interval '40 days', max(id)
         from recon.discrepancies where payment_id = 'r'",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(
        app.flag_history("r").await,
        [
            ("amount_mismatch".to_owned(), true),
            ("amount_mismatch".to_owned(), false)
        ]
    );
    let (code, message) = sql_error(
        pool,
        "insert into recon.discrepancies (payment_id, kind, detected_at, follows_id)
         values ('r', 'order_mismatch', now(), 999999)",
    )
    .await;
    assert_eq!(code, "23503", "{message}");
}

/// Events of the month `months_ago` months before this one, delivered or not.
async fn events_in_month(pool: &PgPool, months_ago: i32, delivered: bool) {
    sqlx::query(
        "insert into recon.events (type, payment_id, occurred_at, payload, created_at, delivered_at)
         select 'status_changed', 'old', t, '{}', t, case when $2 then t end
         from (select date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                      - make_interval(months => $1) + interval '3 days' as t) m",
    )
    .bind(months_ago)
    .bind(delivered)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_an_old_delivered_month_but_never_a_month_holding_an_undelivered_event() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    sqlx::query("insert into recon.payments (payment_id) values ('old')")
        .execute(pool)
        .await
        .unwrap();
    events_in_month(pool, 4, true).await;
    events_in_month(pool, 4, true).await;
    events_in_month(pool, 3, true).await;
    events_in_month(pool, 3, false).await;
    events_in_month(pool, 0, true).await;
    // Past months had no partition: their rows waited in the default one, until now.
    assert!(maintenance::ensure_partitions(pool).await.unwrap() >= 2);
    let (four, three, this) = (
        month_name(pool, -4).await,
        month_name(pool, -3).await,
        month_name(pool, 0).await,
    );
    let partitions = || async {
        sqlx::query_scalar::<_, String>(
            "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
             where i.inhparent = 'recon.events'::regclass order by 1",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    };
    assert!(partitions().await.contains(&format!("events_{four}")));

    // A webhook is configured: only months with every event delivered go.
    let dropped = maintenance::drop_expired_events(pool, Duration::from_secs(30 * 86_400), true)
        .await
        .unwrap();
    assert_eq!(dropped, [format!("events_{four}")]);
    let left = partitions().await;
    assert!(left.contains(&format!("events_{three}")), "{left:?}");
    assert!(left.contains(&format!("events_{this}")), "{left:?}");
    assert_eq!(
        sqlx::query_scalar::<_, i64>("select count(*) from recon.events")
            .fetch_one(pool)
            .await
            .unwrap(),
        3
    );
    // Run again: still never the month with the undelivered event.
    assert!(
        maintenance::drop_expired_events(pool, Duration::from_secs(30 * 86_400), true)
            .await
            .unwrap()
            .is_empty()
    );
    // A longer retention keeps what a shorter one would drop.
    sqlx::query("update recon.events set delivered_at = now() where delivered_at is null")
        .execute(pool)
        .await
        .unwrap();
    assert!(
        maintenance::drop_expired_events(pool, Duration::from_secs(200 * 86_400), true)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        maintenance::drop_expired_events(pool, Duration::from_secs(30 * 86_400), true)
            .await
            .unwrap(),
        [format!("events_{three}")]
    );
    // Transitions and flags are never dropped; the current month's events stay.
    assert_eq!(
        sqlx::query_scalar::<_, i64>("select count(*) from recon.events")
            .fetch_one(pool)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_the_daemons_maintenance_drops_old_months_whatever_their_state() {
    let app = TestApp::new(Scenario::new()).await;
    let pool = app.pool();
    app.insert_ids(&["old"]).await;
    events_in_month(pool, 5, false).await;
    app.insert_first_transition("old").await;
    let five = month_name(pool, -5).await;

    let maintenance = Maintenance::new(app.pool().clone(), &app.settings);
    let done = maintenance.run_if_due().await.expect("due").unwrap();
    assert_eq!(done.event_partitions_dropped, [format!("events_{five}")]);
    assert_eq!(app.count("select count(*) from recon.events").await, 1);
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        1
    );
    // Within the hour, this instance does not run it again.
    assert!(maintenance.run_if_due().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_partitioned_history_keeps_every_row_id_and_grant() {
    let db = TestDb::unmigrated().await;
    let pool = &db.pool;
    let before_partitions = store::MIGRATOR
        .iter()
        .position(|m| m.description.contains("partitioned history"))
        .expect("the partitioning migration");
    db.migrate_through(before_partitions).await;
    sqlx::raw_sql(
        "insert into recon.payments (payment_id) select 'u' || g from generate_series(1, 300) g;
         insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
         select 'u' || g, n, 'process', now() - (g || ' days')::interval + (n || ' seconds')::interval, '{}'
         from generate_series(1, 300) g, generate_series(1, 2) n;
         insert into recon.discrepancies (payment_id, kind, detected_at)
         select 'u' || g, 'not_found', now() - (g || ' days')::interval from generate_series(1, 300) g;
         update recon.discrepancies set resolved_at = now(), resolved_by = 'daemon' where id % 3 = 0;
         update recon.events set delivered_at = now() where id % 2 = 0;",
    )
    .execute(pool)
    .await
    .unwrap();
    let reader = format!("{}_reader", db.name());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "create role {reader};
         grant usage on schema recon to {reader};
         grant select on recon.status_history, recon.event_log to {reader};"
    )))
    .execute(pool)
    .await
    .unwrap();
    let fingerprint = || async {
        sqlx::query_as::<_, (i64, i64, i64, i64, i64, i64, String)>(
            "select (select count(*) from recon.status_transitions),
                    (select count(*) from recon.discrepancies),
                    (select count(*) from recon.discrepancies where resolved_at is null),
                    (select count(*) from recon.events),
                    (select count(*) from recon.events where delivered_at is null),
                    ((select sum(id) from recon.events) + (select sum(id) from recon.discrepancies))::int8,
                    (select md5(string_agg(payment_id || observation_no || observed_at::text, ','
                                           order by payment_id, observation_no))
                     from recon.status_transitions)",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let before = fingerprint().await;
    // 600 status_changed, 300 flag_opened, 100 flag_resolved events
    assert_eq!((before.0, before.1, before.3), (600, 300, 1000));

    store::migrate(pool).await.unwrap();
    assert_eq!(fingerprint().await, before);
    let partitioned: i64 = sqlx::query_scalar(
        "select count(*) from pg_partitioned_table
         where partrelid in ('recon.status_transitions'::regclass,
                             'recon.discrepancies'::regclass, 'recon.events'::regclass)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(partitioned, 3);
    // Nothing waits in a DEFAULT partition; the open flags are known to the side table.
    for table in ["status_transitions", "discrepancies", "events"] {
        let waiting: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select count(*) from recon.{table}_default"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(waiting, 0, "{table}");
    }
    let open: i64 = sqlx::query_scalar("select count(*) from recon.open_flags")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(open, 200);
    // The views read the new tables, and their grants stayed.
    let (history, log): (bool, bool) = sqlx::query_as(
        "select has_table_privilege($1, 'recon.status_history', 'select'),
                has_table_privilege($1, 'recon.event_log', 'select')",
    )
    .bind(&reader)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(history && log);
    let shown: i64 = sqlx::query_scalar("select count(*) from recon.status_history")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(shown, 600);
    // New ids continue after the old ones; an open kind is still open once.
    let (max_event, new_event): (i64, i64) = sqlx::query_as(
        "with t as (insert into recon.status_transitions
                        (payment_id, observation_no, to_status, observed_at, body)
                    values ('u1', 3, 'success', now(), '{}') returning 1)
         select (select max(id) from recon.events), (select count(*) from t)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(new_event, 1);
    let newest: i64 = sqlx::query_scalar("select max(id) from recon.events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(newest > max_event, "{newest} > {max_event}");
    let (code, message) = sql_error(
        pool,
        "insert into recon.discrepancies (payment_id, kind, detected_at) values ('u1', 'not_found', now())",
    )
    .await;
    assert_eq!(code, "23505", "{message}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "drop owned by {reader}; drop role {reader}"
    )))
    .execute(pool)
    .await
    .unwrap();
}
