//! The health and metrics listener.

use std::time::Duration;

use freedompay_recon::engine::Engine;
use freedompay_recon::http::monitoring;
use freedompay_recon::provider::ProviderClient;
use freedompay_recon::simulator::{Reply, Scenario};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, engine, settings};

/// Serves the listener for `engine` on a free port, database gauges read afresh for every
/// scrape; returns its base URL.
async fn listen(engine: Engine, shutdown: &CancellationToken) -> String {
    listen_caching(engine, shutdown, Duration::ZERO).await
}

async fn listen_caching(engine: Engine, shutdown: &CancellationToken, ttl: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(monitoring::serve_with(
        listener,
        engine,
        freedompay_recon::settings::Limits::default(),
        shutdown.clone(),
        ttl,
    ));
    base
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the listener answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_describe_the_daemon_and_the_database() {
    // As `run` does: the recorder is in place before the first sweep.
    monitoring::recorder();
    let app = TestApp::new(
        Scenario::new()
            .prefix("m-", [Reply::invoice("process", "10", "KZT")])
            .payment("m-nf", [Reply::not_found()]),
    )
    .await;
    app.insert("('m-1', 11, 'KZT', null, now(), null)").await;
    app.insert_ids(&["m-2", "m-3", "m-nf"]).await;
    app.sweep().await;
    let shutdown = CancellationToken::new();
    let base = listen(app.engine.clone(), &shutdown).await;

    assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok\n".into()));
    assert_eq!(
        get(&format!("{base}/readyz")).await,
        (200, "ready\n".into())
    );

    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for line in [
        "freedompay_recon_payments{status=\"process\"} 3",
        "freedompay_recon_payments{status=\"no_answer\"} 1",
        "freedompay_recon_open_discrepancies{kind=\"amount_mismatch\"} 1",
        "freedompay_recon_backlog_due 0",
        "freedompay_recon_oldest_due_age_seconds 0",
        "freedompay_recon_provider_halted 0",
        // No merchant credentials in the test settings: refunds go unseen, and it says so.
        "freedompay_recon_refunds_watched 0",
        "# TYPE freedompay_recon_polls_total counter",
        "# TYPE freedompay_recon_provider_request_duration_seconds histogram",
        "freedompay_recon_provider_request_duration_seconds_bucket{le=\"0.005\"}",
        "# TYPE freedompay_recon_sweep_duration_seconds histogram",
        "# TYPE freedompay_recon_rate_limit_wait_seconds histogram",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let answers: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("freedompay_recon_polls_total{outcome=\"answer\"} "))
        .and_then(|v| v.parse().ok())
        .expect("answers are counted");
    assert!(answers >= 3.0, "{answers}");

    // Time passes: the backlog is due and has been waiting.
    sqlx::query("update recon.payments set next_check_at = now() - interval '90 seconds'")
        .execute(app.pool())
        .await
        .unwrap();
    let (_, text) = get(&format!("{base}/metrics")).await;
    assert!(text.contains("freedompay_recon_backlog_due 4"), "{text}");
    let age: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("freedompay_recon_oldest_due_age_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((90.0..120.0).contains(&age), "{age}");

    // Only flags a person must act on count, and the oldest of them is aged: an open
    // lifetime_exceeded (info) five days old is neither counted nor the oldest.
    sqlx::query(
        "insert into recon.discrepancies (payment_id, kind, detected_at) values
             ('m-2', 'order_mismatch', now() - interval '2 hours'),
             ('m-3', 'lifetime_exceeded', now() - interval '5 days')",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let (_, text) = get(&format!("{base}/metrics")).await;
    assert!(
        text.contains("freedompay_recon_open_discrepancies{kind=\"order_mismatch\"} 1"),
        "{text}"
    );
    assert!(!text.contains("kind=\"lifetime_exceeded\""), "{text}");
    let oldest: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("freedompay_recon_oldest_open_action_flag_age_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("the oldest action flag's age");
    assert!((7200.0..7300.0).contains(&oldest), "{oldest}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_polling_is_halted_or_the_database_is_gone() {
    let app = TestApp::new(Scenario::new()).await;
    app.insert_ids(&["h-1"]).await;
    let wrong = settings(
        &app.db,
        &app.sim,
        &[("FREEDOMPAY_RECON__PROVIDER__SECRET", "wrong")],
    );
    let halted = engine(&app.db, &wrong);
    halted
        .reconcile_due(&CancellationToken::new())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let base = listen(halted, &shutdown).await;
    let (status, text) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(
        text.starts_with("not ready: provider: polling halted"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "the secret never shows: {text}");
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(metrics.contains("freedompay_recon_provider_halted 1"));
    assert_eq!(
        get(&format!("{base}/healthz")).await.0,
        200,
        "the process is up"
    );

    let nowhere: PgConnectOptions = "postgres://postgres@127.0.0.1:1/nowhere".parse().unwrap();
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(nowhere);
    let cut_off = Engine::new(
        pool,
        ProviderClient::new(&app.settings.provider).unwrap(),
        &app.settings,
    );
    let base = listen(cut_off, &shutdown).await;
    let (status, text) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(text.starts_with("not ready: database"), "{text}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_text_never_becomes_a_metric_label() {
    monitoring::recorder();
    let forged = "x\"} 1 freedompay_recon_backlog_due{a=\"99999";
    let app = TestApp::new(
        Scenario::new()
            .payment("l-1", [Reply::invoice("refunded", "1", "KZT")])
            .payment("l-2", [Reply::invoice(forged, "1", "KZT")])
            .payment("l-3", [Reply::invoice("success", "1", "KZT")]),
    )
    .await;
    app.insert_ids(&["l-1", "l-2", "l-3"]).await;
    app.sweep().await;
    assert_eq!(
        app.status("l-2").await.as_deref(),
        Some(forged),
        "kept verbatim"
    );
    let shutdown = CancellationToken::new();
    let base = listen(app.engine.clone(), &shutdown).await;
    let (_, text) = get(&format!("{base}/metrics")).await;
    assert!(
        text.contains("freedompay_recon_payments{status=\"unknown\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("freedompay_recon_payments{status=\"success\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("refunded") && !text.contains("backlog_due{"),
        "no provider text, no forged series: {text}"
    );
    // Every sample's labels are from the closed sets.
    let statuses = freedompay_recon::store::summary::STATUS_LABELS;
    for line in text
        .lines()
        .filter(|l| l.starts_with("freedompay_recon_payments{"))
    {
        let label = line
            .strip_prefix("freedompay_recon_payments{status=\"")
            .and_then(|rest| rest.split_once('"'))
            .map(|(label, _)| label)
            .unwrap_or_else(|| panic!("{line}"));
        assert!(statuses.contains(&label), "{line}");
    }
    let mut series: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(series, _)| series))
        .collect();
    let all = series.len();
    series.sort();
    series.dedup();
    assert_eq!(
        series.len(),
        all,
        "no series twice: a scrape would be rejected"
    );
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_gauges_are_read_at_most_once_per_interval_and_shared_by_scrapes() {
    monitoring::recorder();
    let app = TestApp::new(Scenario::new()).await;
    app.insert_ids(&["g-1"]).await;
    let shutdown = CancellationToken::new();
    let interval = Duration::from_secs(3);
    let started = tokio::time::Instant::now();
    let base = listen_caching(app.engine.clone(), &shutdown, interval).await;
    let due = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("freedompay_recon_backlog_due "))
            .map(str::to_owned)
    };
    let (_, first) = get(&format!("{base}/metrics")).await;
    assert_eq!(due(&first).as_deref(), Some("1"));

    // The database changes; 40 scrapes at once within the interval all see the shared read.
    app.insert_ids(&["g-2", "g-3"]).await;
    let scrapes: Vec<_> = (0..40)
        .map(|_| {
            let url = format!("{base}/metrics");
            tokio::spawn(async move { get(&url).await.1 })
        })
        .collect();
    for scrape in scrapes {
        assert_eq!(due(&scrape.await.unwrap()).as_deref(), Some("1"));
    }
    // Scrapes share the first read until the interval has passed, then one reads again.
    let (later, after) = loop {
        let (_, text) = get(&format!("{base}/metrics")).await;
        let later = due(&text);
        if later.as_deref() != Some("1") {
            break (later, started.elapsed());
        }
        assert!(
            started.elapsed() < interval + Duration::from_secs(10),
            "never read again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(later.as_deref(), Some("3"), "read again after the interval");
    assert!(
        after >= interval,
        "read again after {after:?}, within the interval"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_rows_are_counted_and_readiness_says_so() {
    monitoring::recorder();
    let app = TestApp::new(Scenario::new()).await;
    sqlx::query(
        "alter table recon.payments
             drop constraint expected_amount_is_finite_below_1e18_with_at_most_8_decimals",
    )
    .execute(app.pool())
    .await
    .unwrap();
    app.insert("('pk-1', 'NaN', null, null, now(), null)").await;
    app.sweep().await;
    let shutdown = CancellationToken::new();
    let base = listen(app.engine.clone(), &shutdown).await;
    let (_, text) = get(&format!("{base}/metrics")).await;
    assert!(
        text.contains("freedompay_recon_payments_parked 1"),
        "{text}"
    );
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "a parked row needs a person, not a restart");
    assert!(
        body.starts_with("ready; 1 payments are parked") && body.contains("recon.parked_payments"),
        "{body}"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_open_to_the_network_is_warned_about_at_start() {
    let app = TestApp::new(Scenario::new()).await;
    let daemon = app.spawn_daemon(&[
        ("FREEDOMPAY_RECON__HTTP__LISTEN", "0.0.0.0:0"),
        ("RUST_LOG", "warn"),
    ]);
    app.wait_for_daemon_connection().await;
    // Until the warning is written (asserted below, with everything it wrote).
    daemon
        .wait_for_stderr(
            "http.listen is not a loopback address",
            Duration::from_secs(10),
        )
        .await;
    let (code, text) = daemon.stop().await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("http.listen is not a loopback address"),
        "{text}"
    );
}

/// Ready means working: a database that answers but refuses the daemon's writes (read-only
/// after a failover, a full disk raised by a trigger) turns /readyz 503 with the reason, and
/// it recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_while_the_database_refuses_writes_and_recovers() {
    let app = TestApp::with(
        Scenario::new().fallback([Reply::invoice("process", "10", "KZT")]),
        &[("FREEDOMPAY_RECON__HTTP__UNREADY_AFTER", "0s")],
    )
    .await;
    app.insert_ids(&["w-1"]).await;

    // A read-only database (the role's default, as on a standby after a failover).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {} set default_transaction_read_only = on",
        app.db.name()
    )))
    .execute(app.pool())
    .await
    .unwrap();
    let read_only = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let provider = ProviderClient::new(&app.settings.provider).unwrap();
    let engine = Engine::new(read_only, provider, &app.settings);
    let shutdown = CancellationToken::new();
    let base = listen(engine.clone(), &shutdown).await;
    assert_eq!(
        get(&format!("{base}/readyz")).await.0,
        200,
        "nothing failed yet"
    );
    assert!(engine.reconcile_due(&shutdown).await.is_err());
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: database writes have failed for ")
            && body.contains("read-only transaction"),
        "{body}"
    );
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains("# TYPE freedompay_recon_writes_failing_seconds gauge"),
        "{metrics}"
    );
    shutdown.cancel();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {} reset default_transaction_read_only",
        app.db.name()
    )))
    .execute(app.pool())
    .await
    .unwrap();

    // A full disk, as a trigger would raise it; then room again.
    sqlx::raw_sql(
        "create function recon.disk_full() returns trigger language plpgsql as $$
         begin
             raise exception 'could not extend file \"base/16384/2619\": No space left on device'
                 using errcode = '53100';
         end $$;
         create trigger disk_full before update on recon.payments
             for each statement execute function recon.disk_full();",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let base = listen(app.engine.clone(), &shutdown).await;
    assert!(app.engine.reconcile_due(&shutdown).await.is_err());
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    sqlx::raw_sql("drop trigger disk_full on recon.payments; drop function recon.disk_full()")
        .execute(app.pool())
        .await
        .unwrap();
    let outcome = app.engine.reconcile_due(&shutdown).await.unwrap();
    assert_eq!(outcome.recorded, 1);
    assert_eq!(
        get(&format!("{base}/readyz")).await,
        (200, "ready\n".into()),
        "recovered by itself"
    );
    shutdown.cancel();
}

/// The value of an unlabelled sample `name` on a /metrics page.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_to_transition_histogram_counts_the_transitions_callbacks_announced() {
    use crate::callbacks::{MERCHANT_KEY, body_of, free_port, paid, post};
    let app =
        TestApp::new(Scenario::new().prefix("cm-", [Reply::invoice("success", "5000.00", "KZT")]))
            .await;
    app.insert(
        "('cm-1', 5000, 'KZT', 'A-1', now(), null), ('cm-2', 5000, 'KZT', 'A-2', now(), null),
         ('cm-3', 5000, 'KZT', 'A-3', now(), null)",
    )
    .await;
    // cm-1 was polled once (process), its next look a day away: only its callback explains a
    // prompt transition. cm-2 and cm-3 are due now.
    app.insert_first_transition("cm-1").await;
    sqlx::query(
        "update recon.payments set checks = 1, status = 'process',
                next_check_at = now() + interval '1 day', next_check_urgent = false
         where payment_id = 'cm-1'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    // The daemon process has its own recorder: no other test's samples.
    let (http, callbacks) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let daemon = app.spawn_daemon(&[
        ("FREEDOMPAY_RECON__HTTP__LISTEN", http.as_str()),
        ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", callbacks.as_str()),
        ("FREEDOMPAY_RECON__MERCHANT__SECRET", MERCHANT_KEY),
    ]);
    let found = app
        .wait_for(
            "select count(*) from recon.payments where status = 'success'",
            2,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        found,
        2,
        "cm-2 and cm-3 found by their first poll: {}",
        daemon.stderr()
    );

    // cm-3's callback comes after its transition: the poll it asks for changes nothing.
    let url = format!("http://{callbacks}/freedompay/result");
    for (id, order) in [("cm-3", "A-3"), ("cm-1", "A-1")] {
        let (status, xml) = post(&url, body_of(&paid(id, order), "s1")).await;
        assert_eq!(status, 200, "{xml}");
    }
    let done = app
        .wait_for(
            "select count(*) from recon.payments
             where (payment_id = 'cm-1' and status = 'success')
                or (payment_id = 'cm-3' and checks = 2)",
            2,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done, 2, "both callbacks polled: {}", daemon.stderr());

    let (status, text) = get(&format!("http://{http}/metrics")).await;
    assert_eq!(status, 200);
    let name = "freedompay_recon_callback_to_transition_seconds";
    assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
    assert!(
        text.contains(&format!("{name}_bucket{{le=\"0.01\"}}")),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("{name}_count")),
        Some(1.0),
        "cm-1 only: cm-2 had no callback, cm-3's came after its transition:\n{text}"
    );
    // The same figure as SQL reads it from the two tables.
    let expected: f64 = sqlx::query_scalar(
        "select extract(epoch from t.observed_at - c.received_at)::float8
         from recon.callbacks c
         join recon.status_transitions t on t.payment_id = c.payment_id and t.to_status = 'success'
         where c.payment_id = 'cm-1'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let sum = sample(&text, &format!("{name}_sum")).unwrap();
    assert!((sum - expected).abs() < 1e-3, "{sum} against {expected}");
    assert!(sum < 3.0, "polled at once after its callback: {sum} s");
}
