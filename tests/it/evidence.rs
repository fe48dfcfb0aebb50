//! The evidence stored once (migration `evidence_stored_once`): the provider's body lives with
//! the transition it caused, the payment points at its latest transition, and one transition
//! per observation is kept by the transitions' own key and that pointer.

use freedompay_recon::simulator::{Reply, Scenario};
use freedompay_recon::store;
use sqlx::PgPool;

use crate::helpers::{TestApp, TestDb};

async fn sql_error_code(pool: &PgPool, sql: &str) -> String {
    let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .expect_err(sql);
    err.as_database_error()
        .and_then(|e| e.code())
        .unwrap_or_default()
        .into_owned()
}

/// `(observation_no, to_status, the body's paymentStatus)` of the payment's latest transition,
/// found through its pointer.
async fn latest_by_pointer(pool: &PgPool, id: &str) -> (i32, String, Option<String>) {
    sqlx::query_as(
        "select t.observation_no, t.to_status, t.body->>'paymentStatus'
         from recon.payments p
         join recon.status_transitions t
           on t.payment_id = p.payment_id and t.observation_no = p.last_transition_no
          and t.observed_at = p.last_transition_at
         where p.payment_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_body_is_kept_once_with_its_transition_which_the_payment_points_at() {
    let app = TestApp::new(Scenario::new().payment(
        "e1",
        [
            Reply::invoice("process", "5000", "KZT"),
            Reply::invoice("process", "5000", "KZT"),
            Reply::invoice("success", "5000", "KZT"),
        ],
    ))
    .await;
    let pool = app.pool();
    app.insert_ids(&["e1"]).await;
    assert_eq!(app.sweep().await.transitions, 1);
    assert_eq!(
        latest_by_pointer(pool, "e1").await,
        (1, "process".into(), Some("process".into()))
    );
    // An answer that changes no status moves nothing and stores no body.
    app.fast_forward().await;
    assert_eq!(app.sweep().await.transitions, 0);
    assert_eq!(latest_by_pointer(pool, "e1").await.0, 1);
    app.fast_forward().await;
    assert_eq!(app.sweep().await.transitions, 1);
    assert_eq!(
        latest_by_pointer(pool, "e1").await,
        (3, "success".into(), Some("success".into()))
    );
    assert_eq!(
        app.count(
            "select count(*) from information_schema.columns
                   where table_schema = 'recon' and table_name = 'payments'
                     and column_name = 'last_body'"
        )
        .await,
        0,
        "the payment keeps no copy of the body"
    );
    assert_eq!(
        app.count("select count(*) from pg_class where relname = 'transition_keys'")
            .await,
        0
    );

    // By hand: a second transition for an observation is refused in the same month or any
    // other, so is one below the latest (history is appended in order) and an exact repeat
    // (23505, as before); the payment's next one is taken and the pointer follows it.
    for sql in [
        "insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
         select 'e1', 3, 'error', last_transition_at, '{}' from recon.payments where payment_id = 'e1'",
        "insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
         values ('e1', 3, 'error', now() + interval '40 days', '{}')",
        "insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
         values ('e1', 2, 'error', now(), '{}')",
    ] {
        assert_eq!(sql_error_code(pool, sql).await, "23505", "{sql}");
    }
    sqlx::query(
        "insert into recon.status_transitions (payment_id, observation_no, from_status, to_status, observed_at, body)
         values ('e1', 7, 'success', 'error', now() + interval '40 days', '{\"by\": \"hand\"}')",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(
        latest_by_pointer(pool, "e1").await,
        (7, "error".into(), None)
    );
    // Two writers racing for the same next observation: one wins, the other is refused.
    let race = "insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
                values ('e1', 8, 'success', clock_timestamp() + interval '40 days', '{}')";
    let (a, b) = tokio::join!(
        sqlx::raw_sql(race).execute(pool),
        sqlx::raw_sql(race).execute(pool)
    );
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(
        app.count("select count(*) from recon.status_transitions where payment_id = 'e1'")
            .await,
        4
    );

    // The rule is checked once per statement (migration `engine_cost_per_statement`): several
    // transitions after the latest, in any order, are taken and the pointer goes to the last;
    // one below it refuses the whole statement, and one observation twice is refused.
    sqlx::raw_sql(
        "insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
         values ('e1', 10, 'success', now() + interval '42 days', '{}'),
                ('e1', 9, 'error', now() + interval '41 days', '{}')",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(latest_by_pointer(pool, "e1").await.0, 10);
    for sql in [
        "insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
         values ('e1', 11, 'error', now() + interval '43 days', '{}'),
                ('e1', 6, 'error', now() + interval '43 days', '{}')",
        "insert into recon.status_transitions (payment_id, observation_no, to_status, observed_at, body)
         values ('e1', 12, 'error', now() + interval '44 days', '{}'),
                ('e1', 12, 'success', now() + interval '45 days', '{}')",
    ] {
        assert_eq!(sql_error_code(pool, sql).await, "23505", "{sql}");
    }
    assert_eq!(
        app.count("select count(*) from recon.status_transitions where payment_id = 'e1'")
            .await,
        6
    );
    assert_eq!(latest_by_pointer(pool, "e1").await.0, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_points_every_payment_at_its_latest_transition_and_loses_no_body() {
    let before = store::MIGRATOR
        .iter()
        .position(|m| m.description.contains("evidence stored once"))
        .expect("the migration");
    let db = TestDb::migrated_through(before).await;
    let pool = &db.pool;
    // u1: its last body is its latest transition's; u2: a later answer changed no status
    // (its body differs); u3: answered, never a transition; u4: never answered.
    sqlx::raw_sql(
        r#"insert into recon.payments (payment_id) values ('u1'), ('u2'), ('u3'), ('u4');
         insert into recon.status_transitions (payment_id, observation_no, from_status, to_status, observed_at, body)
         values ('u1', 1, null, 'process', now() - interval '40 days', '{"s": "process"}'),
                ('u1', 2, 'process', 'success', now() - interval '39 days', '{"s": "success"}'),
                ('u2', 1, null, 'process', now() - interval '2 days', '{"s": "process"}');
         update recon.payments set last_body = '{"s": "success"}', checks = 2 where payment_id = 'u1';
         update recon.payments set last_body = '{"s": "process", "n": 2}', checks = 2,
                                   last_checked_at = now() - interval '1 day'
         where payment_id = 'u2';
         update recon.payments set last_body = '{"s": "odd"}', checks = 1 where payment_id = 'u3';"#,
    )
    .execute(pool)
    .await
    .unwrap();
    let transitions_before: String = sqlx::query_scalar(
        "select string_agg(payment_id || observation_no || body::text, ',' order by payment_id, observation_no)
         from recon.status_transitions",
    )
    .fetch_one(pool)
    .await
    .unwrap();

    store::migrate(pool).await.expect("the migration applies");

    let pointers: Vec<(String, Option<i32>, bool)> = sqlx::query_as(
        "select p.payment_id, p.last_transition_no,
                p.last_transition_at is not distinct from
                    (select max(observed_at) from recon.status_transitions t
                     where t.payment_id = p.payment_id)
         from recon.payments p order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        pointers,
        [
            ("u1".into(), Some(2), true),
            ("u2".into(), Some(1), true),
            ("u3".into(), None, true),
            ("u4".into(), None, true)
        ]
    );
    let kept: Vec<(String, String, bool)> = sqlx::query_as(
        "select payment_id, body::text, received_at is not null
         from recon.bodies_without_transition order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        kept,
        [
            ("u2".into(), r#"{"s": "process", "n": 2}"#.into(), true),
            ("u3".into(), r#"{"s": "odd"}"#.into(), false)
        ]
    );
    let transitions_after: String = sqlx::query_scalar(
        "select string_agg(payment_id || observation_no || body::text, ',' order by payment_id, observation_no)
         from recon.status_transitions",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(transitions_after, transitions_before);
    assert_eq!(
        sql_error_code(pool, "delete from recon.bodies_without_transition").await,
        "23001",
        "append-only"
    );
}
