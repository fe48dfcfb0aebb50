//! The provider's answers are hostile until checked: no single answer can stall, corrupt or
//! leak anything, and no redirect takes our signature elsewhere.

use std::time::{Duration, Instant};

use freedompay_recon::engine::SweepStop;
use freedompay_recon::simulator::{Reply, Scenario};
use serde_json::json;

use crate::helpers::{TestApp, engine, simulator};

/// An invoice for `id` whose field `field` is set to `value`.
fn invoice_with(field: &str, value: serde_json::Value) -> Reply {
    Reply::invoice("process", "100.00", "KZT").with(field, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_answers_are_refused_by_field_cleaned_or_kept_and_never_stall_the_rest() {
    let huge_status = "s".repeat(500_000);
    let poison: Vec<(&str, Reply)> = vec![
        (
            "x-status-nul",
            invoice_with("paymentStatus", json!("succ\u{0}ess")),
        ),
        (
            "x-status-forged",
            invoice_with(
                "paymentStatus",
                json!("x\"} 1\nfreedompay_recon_backlog_due 99999"),
            ),
        ),
        (
            "x-status-huge",
            invoice_with("paymentStatus", json!(huge_status)),
        ),
        ("x-dt", invoice_with("dt", json!("-5000-01-01 00:00:00"))),
        (
            "x-amount-long",
            invoice_with("amount", json!("1.00000000000000000000000000001")),
        ),
        (
            "x-amount-big",
            invoice_with("amount", freedompay_recon::simulator::exact_number("1e40")),
        ),
        (
            "x-lifetime",
            invoice_with("lifetime", json!(1_000_000_000_000_000_i64)),
        ),
        ("x-order-nul", invoice_with("orderId", json!("A-1\u{0}"))),
        (
            "x-freedom",
            invoice_with("freedomId", json!(format!("\u{1b}[2J{}", "x".repeat(5000)))),
        ),
        (
            "x-error-nul",
            Reply::Json {
                body: json!({"status": "error", "error_code": "77", "error_description": "bad\u{0}thing"}),
                http_status: 200,
            },
        ),
    ];
    let mut scenario = Scenario::new().prefix("p-", [Reply::invoice("process", "100.00", "KZT")]);
    for (id, reply) in &poison {
        scenario = scenario.payment(id, [reply.clone()]);
    }
    let app = TestApp::with(scenario, &[("FREEDOMPAY_RECON__POLL__BATCH_SIZE", "50")]).await;
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency, order_id)
         select 'p-' || g, 100, 'KZT', null from generate_series(1, 200) g",
    )
    .execute(app.pool())
    .await
    .unwrap();
    for (id, _) in &poison {
        app.insert(&format!("('{id}', 100, 'KZT', 'A-1', now(), null)"))
            .await;
    }

    let started = Instant::now();
    let outcome = app.sweep().await;
    let took = started.elapsed();
    assert_eq!(outcome.stop, SweepStop::Drained);
    assert_eq!(outcome.claimed, 210);
    assert_eq!(
        outcome.recorded, 210,
        "every answer is recorded, poison or not"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        app.count(
            "select count(*) from recon.payments where payment_id like 'p-%' and status = 'process'"
        )
        .await,
        200
    );
    assert_eq!(
        app.count("select count(*) from recon.payments where lease_token is not null")
            .await,
        0
    );

    // Unreadable: a failed poll naming the field, the answer kept (cleaned) for support.
    for (id, field) in [
        ("x-status-nul", "paymentStatus"),
        ("x-status-forged", "paymentStatus"),
        ("x-status-huge", "paymentStatus"),
        ("x-dt", "dt"),
        ("x-amount-long", "amount"),
        ("x-amount-big", "amount"),
        ("x-lifetime", "lifetime"),
    ] {
        let (status, attempts, error, body): (Option<String>, i32, String, Option<String>) =
            sqlx::query_as(
                "select status, attempts, last_error, last_error_body
                 from recon.payments where payment_id = $1",
            )
            .bind(id)
            .fetch_one(app.pool())
            .await
            .unwrap();
        assert_eq!((status, attempts), (None, 1), "{id}");
        assert!(error.contains(&format!("field `{field}`")), "{id}: {error}");
        assert!(error.len() < 2048, "{id}: the reason is bounded");
        let body = body.unwrap_or_else(|| panic!("{id}: the answer is kept"));
        assert!(
            body.contains("paymentStatus") || id == "x-status-huge",
            "{id}: {body}"
        );
        assert!(body.chars().count() <= 8 * 1024 + 1, "{id}: cut at 8 KiB");
    }
    assert_eq!(
        app.count("select count(*) from recon.status_transitions where payment_id like 'x-%'")
            .await,
        2,
        "only the two cleaned answers became history"
    );

    // Cleaned: the NUL is written out, so the order no longer matches and is flagged.
    let (order, freedom): (String, String) = sqlx::query_as(
        "select (select provider_order_id from recon.payments where payment_id = 'x-order-nul'),
                (select freedom_id from recon.payments where payment_id = 'x-freedom')",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(order, "A-1\\u{0}");
    assert_eq!(app.open_flags("x-order-nul").await, ["order_mismatch"]);
    assert!(freedom.starts_with("\\u{1b}[2Jxxx"), "{freedom}");
    assert_eq!(freedom.chars().count(), 1025, "cut at 1 KiB, with a mark");
    let (error, body): (String, String) = sqlx::query_as(
        "select last_error, last_error_body from recon.payments where payment_id = 'x-error-nul'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(error, "provider error 77: bad\\u{0}thing");
    assert!(
        body.contains("\"error_code\":\"77\""),
        "a readable error body is kept too: {body}"
    );
}

/// Clean against 10 poisoned verdicts in 1,000: the database refuses the 10 (a constraint
/// added here stands for any refusal the rules did not foresee), the other 990 land in the
/// same sweep. `cargo test --release --test it refused_verdicts -- --nocapture` prints the
/// timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_verdicts_are_split_off_and_the_rest_of_their_batch_lands_at_once() {
    let app = TestApp::with(
        Scenario::new()
            .prefix(
                "c-",
                [Reply::invoice("process", "100.00", "KZT").with("orderId", json!("fine"))],
            )
            .prefix(
                "q-",
                [Reply::invoice("process", "100.00", "KZT").with("orderId", json!("fine"))],
            )
            .prefix(
                "q-poison-",
                [Reply::invoice("process", "100.00", "KZT").with("orderId", json!("poison"))],
            ),
        &[("FREEDOMPAY_RECON__POLL__CONCURRENCY", "32")],
    )
    .await;
    sqlx::query(
        "alter table recon.payments add constraint test_refuses_poison
             check (provider_order_id is distinct from 'poison')",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let pool = app.pool().clone();
    let enqueue = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    };
    enqueue(
        "insert into recon.payments (payment_id) select 'c-' || g from generate_series(1, 1000) g",
    )
    .await;
    let started = Instant::now();
    let clean = app.sweep().await;
    let clean_took = started.elapsed();
    assert_eq!((clean.recorded, clean.failed), (1000, 0));

    enqueue(
        "insert into recon.payments (payment_id)
         select case when g % 100 = 0 then 'q-poison-' else 'q-' end || g
         from generate_series(1, 1000) g",
    )
    .await;
    let started = Instant::now();
    let poisoned = app.sweep().await;
    let poisoned_took = started.elapsed();
    println!(
        "1,000 due payments: clean sweep {clean_took:?}; with 10 refused verdicts {poisoned_took:?}"
    );
    assert_eq!(poisoned.stop, SweepStop::Drained);
    assert_eq!((poisoned.claimed, poisoned.recorded), (1000, 1000));
    assert_eq!(poisoned.failed, 10);
    assert_eq!(
        app.count(
            "select count(*) from recon.payments where payment_id like 'q-%' and status = 'process'"
        )
        .await,
        990
    );
    let refused: Vec<(String, i32, Option<String>, Option<String>)> = sqlx::query_as(
        "select last_error, attempts, last_error_body, status from recon.payments
         where payment_id like 'q-poison-%'",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(refused.len(), 10);
    for (error, attempts, body, status) in refused {
        assert!(
            error.starts_with("cannot store this answer: the database refused it:")
                && error.contains("constraint test_refuses_poison"),
            "{error}"
        );
        assert_eq!((attempts, status), (1, None));
        assert!(
            body.is_some_and(|b| b.contains("\"poison\"")),
            "the answer is kept"
        );
    }
    // The target is under twice the clean time; a second of slack absorbs a busy machine.
    assert!(
        poisoned_took < clean_took * 2 + Duration::from_secs(1),
        "clean {clean_took:?}, poisoned {poisoned_took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_returns_within_the_drain_timeout_while_the_database_is_stuck() {
    let app = TestApp::new(Scenario::new().prefix(
        "s-",
        [Reply::invoice("process", "1", "KZT").delayed(Duration::from_millis(200))],
    ))
    .await;
    sqlx::query(
        "insert into recon.payments (payment_id) select 's-' || g from generate_series(1, 400) g",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let drain = Duration::from_secs(2);
    let daemon = app.spawn_daemon(&[
        ("FREEDOMPAY_RECON__POLL__DRAIN_TIMEOUT", "2s"),
        ("FREEDOMPAY_RECON__POLL__LEASE", "15s"),
        ("FREEDOMPAY_RECON__PROVIDER__TIMEOUT", "5s"),
        ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "16"),
        ("FREEDOMPAY_RECON__POLL__BATCH_SIZE", "20"),
    ]);
    let recorded = app
        .wait_for(
            "select least(count(*), 1) from recon.payments where status is not null",
            1,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(recorded, 1, "the daemon is at work");

    // The database stops answering writes: every update of a payment waits on this lock.
    let mut locker = app.pool().begin().await.unwrap();
    sqlx::query("lock table recon.payments in exclusive mode")
        .execute(&mut *locker)
        .await
        .unwrap();
    // The daemon is stuck once one of its writes waits on the lock.
    let waiting = app
        .wait_for(
            "select least(count(*), 1) from pg_locks
             where not granted and relation = 'recon.payments'::regclass
               and database = (select oid from pg_database where datname = current_database())",
            1,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(waiting, 1, "the daemon waits on the locked table");
    let stopping = Instant::now();
    let (code, stderr) = daemon.stop().await;
    let took = stopping.elapsed();
    println!(
        "SIGTERM with the payments table locked: exited in {took:?} (drain timeout {drain:?})"
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        took < drain + Duration::from_secs(8),
        "stopped in {took:?} with a stuck database"
    );
    locker.rollback().await.unwrap();
    // The daemon's statements that waited on the lock run now, in backends that outlive it
    // until they find it gone (a claim among them would take fresh leases): wait for them.
    let left = app
        .wait_for(
            "select count(*) from pg_stat_activity
             where application_name = 'freedompay-recon' and datname = current_database()",
            0,
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(left, 0, "the stopped daemon's connections are gone");

    // Nothing was lost: once the stuck leases run out (moved into the past here rather than
    // waited for), every payment is polled.
    let stuck = app
        .count("select count(*) from recon.payments where lease_token is not null")
        .await;
    println!("leases the stopped daemon left behind: {stuck}");
    sqlx::query(
        "update recon.payments set lease_expires_at = now() - interval '1 ms'
         where lease_token is not null",
    )
    .execute(app.pool())
    .await
    .unwrap();
    app.fast_forward().await;
    app.sweep().await;
    assert_eq!(
        app.count("select count(*) from recon.payments where status = 'process'")
            .await,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed_and_every_request_carries_an_id() {
    let elsewhere =
        simulator(Scenario::new().fallback([Reply::invoice("success", "1", "KZT")])).await;
    let target = format!(
        "{}/v5/partner/invoice/info?payment_id=r-1",
        elsewhere.base_url()
    );
    let app = TestApp::new(
        Scenario::new()
            .payment("r-1", [Reply::redirect(302, &target)])
            .payment("r-2", [Reply::redirect(307, "https://evil.example/\tx")])
            .payment("ok-1", [Reply::invoice("process", "1", "KZT")]),
    )
    .await;
    app.insert_ids(&["r-1", "r-2", "ok-1"]).await;
    let outcome = app.sweep().await;
    assert_eq!((outcome.recorded, outcome.failed), (3, 2));
    assert!(
        elsewhere.requests().is_empty(),
        "nothing reached the other host"
    );

    let errors: Vec<(String, i32, Option<String>)> = sqlx::query_as(
        "select last_error, attempts, status from recon.payments
         where payment_id like 'r-%' order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert!(
        errors[0].0.contains("HTTP 302") && errors[0].0.contains(&target),
        "{errors:?}"
    );
    assert!(
        errors[1].0.contains("HTTP 307") && errors[1].0.contains("evil.example/\\u{9}x"),
        "the Location is named, escaped: {errors:?}"
    );
    assert!(
        errors
            .iter()
            .all(|(_, attempts, status)| *attempts == 1 && status.is_none())
    );

    // Every request carries a fresh UUID v7 and asks for JSON; the observation keeps its id.
    let requests = app.sim.requests();
    assert_eq!(requests.len(), 3);
    let mut ids = Vec::new();
    for request in &requests {
        assert_eq!(request.accept.as_deref(), Some("application/json"));
        let id: uuid::Uuid = request
            .request_id
            .as_deref()
            .expect("X-Request-Id is sent")
            .parse()
            .unwrap();
        assert_eq!(id.get_version_num(), 7);
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "a fresh id per request");
    let sent = requests
        .iter()
        .find(|r| r.payment_id == "ok-1")
        .and_then(|r| r.request_id.clone())
        .unwrap();
    let (on_transition, on_payment): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "select t.request_id, p.last_request_id
         from recon.status_transitions t join recon.payments p using (payment_id)
         where payment_id = 'ok-1'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(on_transition.to_string(), sent);
    assert_eq!(on_payment.to_string(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_mentions_a_signature_halts_nothing_until_another_payment_confirms_it() {
    let card_error = Reply::Json {
        body: json!({"status": "error", "error_code": 55, "error_description": "Card signature check failed"}),
        http_status: 200,
    };
    let app = TestApp::new(
        Scenario::new()
            .prefix("ok-", [Reply::invoice("process", "1", "KZT")])
            .payment("card", [card_error]),
    )
    .await;
    app.insert_ids(&["ok-1", "ok-2", "ok-3"]).await;
    assert_eq!(app.sweep().await.stop, SweepStop::Drained);

    // The provider answered the others before: a re-ask about one of them decides.
    app.insert_ids(&["card"]).await;
    let calls_before: usize = app.sim.total_calls();
    let outcome = app.sweep().await;
    assert_eq!(
        outcome.stop,
        SweepStop::Drained,
        "one payment's error halts nothing"
    );
    assert_eq!(outcome.recorded, 1);
    assert_eq!(
        app.sim.total_calls() - calls_before,
        2,
        "the payment and one re-ask about another"
    );
    let error: String =
        sqlx::query_scalar("select last_error from recon.payments where payment_id = 'card'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(error, "provider error 55: Card signature check failed");
    assert!(app.engine.health().halted().is_none());

    // Now the provider refuses everything that way: the re-ask confirms it, polling halts.
    app.sim.set_scenario(Scenario::new().fallback([Reply::Json {
        body: json!({"status": "error", "error_code": 1001, "error_description": "Invalid signature"}),
        http_status: 200,
    }]));
    app.fast_forward().await;
    let fresh = engine(&app.db, &app.settings);
    let halted = fresh
        .reconcile_due(&tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let SweepStop::Fatal(reason) = halted.stop else {
        panic!("{:?}", halted.stop)
    };
    assert!(
        reason.contains("too, which it had answered normally before")
            && reason.contains("provider.secret"),
        "{reason}"
    );
    assert_eq!(
        halted.recorded, 0,
        "nothing is recorded against the payments"
    );
}

/// A deterministic stand-in for the `record_verdict` fuzz target, run by every `cargo test`:
/// hundreds of mangled answers in the same batches as good ones; each either lands or is
/// recorded as unreadable, and every good one lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_answers_land_or_are_recorded_unreadable_with_the_rest_of_their_batch() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/provider/responses"
    );
    let mut samples: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    samples.sort();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below.max(1) as u64) as usize
    };
    let specials: [&[u8]; 12] = [
        b"\\u0000",
        b"\\ud800",
        b"\xff",
        b"-5000-01-01 00:00:00",
        b"1e40",
        b"0.00000000000000000000000000000001",
        b"\"\\u001b[2J\"",
        b"99999999999999999999",
        b"\"infinity\"",
        b"NaN",
        b"[[[[[[[[[[",
        b"\"paymentStatus\":\"x\\ny\",",
    ];
    let mut scenario = Scenario::new().prefix("good-", [Reply::invoice("process", "5", "KZT")]);
    let mut ids = Vec::new();
    for n in 0..300 {
        let mut body = samples[next(samples.len())].clone();
        for _ in 0..1 + next(3) {
            let at = next(body.len() + 1);
            match next(3) {
                0 if !body.is_empty() => {
                    let last = body.len() - 1;
                    body[at.min(last)] = next(256) as u8;
                }
                _ => {
                    let special = specials[next(specials.len())];
                    body.splice(at..at, special.iter().copied());
                }
            }
        }
        let id = format!("m-{n}");
        let text = String::from_utf8_lossy(&body).into_owned();
        scenario = scenario.payment(&id, [Reply::text(200, &text, "application/json")]);
        ids.push(id);
    }
    let app = TestApp::with(scenario, &[("FREEDOMPAY_RECON__POLL__BATCH_SIZE", "40")]).await;
    for id in &ids {
        app.insert_ids(&[id.as_str()]).await;
    }
    sqlx::query(
        "insert into recon.payments (payment_id) select 'good-' || g from generate_series(1, 100) g",
    )
    .execute(app.pool())
    .await
    .unwrap();

    let before: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select now()")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let outcome = app.sweep().await;
    assert_eq!(outcome.stop, SweepStop::Drained);
    assert_eq!((outcome.claimed, outcome.recorded), (400, 400));
    assert_eq!(
        app.count("select count(*) from recon.payments where payment_id like 'good-%' and status = 'process'")
            .await,
        100
    );
    // Scheduled again, or, for an answer whose lifetime ended over 2 hours ago with the
    // payment unsettled, that one look was the last: polling stopped with a flag for a person.
    let settled: i64 = sqlx::query_scalar(
        "select count(*) from recon.payments p
         where lease_token is null
           and (next_check_at > $1
                or next_check_at is null and exists (
                    select from recon.open_discrepancies d
                    where d.payment_id = p.payment_id and d.kind = 'polling_abandoned'))
           and (status is not null or last_error is not null or not_found_since is not null)",
    )
    .bind(before)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        settled, 400,
        "every answer landed or was recorded as unreadable, and is scheduled again or given up"
    );
}
