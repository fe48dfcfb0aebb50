//! Attacks from the third hostile pass (issue 16) that are not already another module's
//! test: terminal escapes in what a person types. The rest are listed with their tests in
//! docs/trust-boundaries.md ("Attacks kept as tests").

use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::TestApp;

/// What a terminal would act on: ESC, BEL, and the 8-bit CSI and OSC introducers.
fn assert_terminal_safe(what: &str, output: &std::process::Output) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text
                .chars()
                .any(|c| matches!(c, '\u{1b}' | '\u{7}' | '\u{9b}' | '\u{9d}')),
            "{what}: {stream} carries a terminal control: {text:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_person_types_reaches_the_terminal_raw() {
    let app = TestApp::new(Scenario::new().fallback([Reply::invoice("success", "9", "KZT")])).await;
    app.insert("('short-1', 10, 'KZT', null, now() - interval '1 hour', null)")
        .await;
    app.sweep().await;
    let osc = "\u{1b}]0;owned\u{7}";
    let csi = "\u{1b}[2J\u{9b}31m";

    let attempts: Vec<(&str, Vec<String>)> = vec![
        (
            "a payment id",
            vec![
                "resolve".into(),
                format!("short-1{osc}"),
                "--kind".into(),
                "amount_mismatch".into(),
                "--note".into(),
                "n".into(),
                "--by".into(),
                "a".into(),
            ],
        ),
        (
            "a flag kind",
            vec![
                "resolve".into(),
                "short-1".into(),
                "--kind".into(),
                format!("amount{csi}"),
                "--note".into(),
                "n".into(),
            ],
        ),
        (
            "--by",
            vec![
                "resolve".into(),
                "short-1".into(),
                "--kind".into(),
                "amount_mismatch".into(),
                "--note".into(),
                "n".into(),
                "--by".into(),
                format!("aigerim{osc}"),
            ],
        ),
        (
            "a date",
            vec!["report".into(), "--from".into(), format!("2026-12-01{csi}")],
        ),
        (
            "an id to enqueue",
            vec!["enqueue".into(), format!("x{csi}")],
        ),
        (
            "an id to recheck",
            vec!["recheck".into(), format!("short-1{osc}")],
        ),
        (
            "a role name",
            vec!["grant-reader".into(), format!("bi{osc}")],
        ),
    ];
    for (what, args) in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = app.run(&args).await;
        assert!(!output.status.success(), "{what}: refused");
        assert_terminal_safe(what, &output);
    }
    assert_eq!(
        app.count("select count(*) from recon.discrepancies where resolved_at is not null")
            .await,
        0,
        "nothing was closed"
    );

    // A note is kept, escaped, and every report that shows it stays safe.
    let note = format!("refunded{osc}{csi}");
    let closed = app
        .run(&[
            "resolve",
            "short-1",
            "--kind",
            "amount_mismatch",
            "--note",
            &note,
            "--by",
            "aigerim",
        ])
        .await;
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    assert_terminal_safe("resolve", &closed);
    let stored: String = sqlx::query_scalar(
        "select resolution from recon.discrepancies where payment_id = 'short-1'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        stored, "refunded\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{9b}31m",
        "kept, escaped"
    );
    for format in ["table", "csv", "json"] {
        let report = app.run(&["report", "--detail", "--format", format]).await;
        assert!(
            report.status.success(),
            "{}",
            String::from_utf8_lossy(&report.stderr)
        );
        assert_terminal_safe(format, &report);
    }
}

/// Item 5 with real processes: one instance frozen by SIGSTOP past its delivery claim while
/// another sends its events and newer ones of the same payments; resumed, the frozen one sends
/// nothing (before the fix it sent its 32 stale events after the newer ones). About 16 s,
/// mostly the claim running out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_instance_sends_nothing_stale_when_it_wakes() {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::StatusCode;

    type Arrivals = Arc<Mutex<Vec<(i64, String)>>>;
    async fn receive(State(seen): State<Arrivals>, body: axum::body::Bytes) -> StatusCode {
        let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        seen.lock().unwrap().push((
            event["id"].as_i64().unwrap_or(-1),
            event["payment_id"].as_str().unwrap_or_default().to_owned(),
        ));
        // Slow enough that a claim of 40 events is still being sent when the freeze comes.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        StatusCode::NO_CONTENT
    }

    let app = TestApp::new(Scenario::new()).await;
    let first_transitions = |n: i32| {
        format!(
            "insert into recon.status_transitions
                 (payment_id, observation_no, from_status, to_status, observed_at, body)
             select 'f-' || g, {n}, null, 'process', now(), '{{}}' from generate_series(1, 40) g"
        )
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "insert into recon.payments (payment_id) select 'f-' || g from generate_series(1, 40) g;
         {}",
        first_transitions(1)
    )))
    .execute(app.pool())
    .await
    .unwrap();

    let seen = Arrivals::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(listener, router).await });
    // webhook.timeout 1 s: a claim is held 9 s (64 events / 8 at once + 1 attempts). No
    // payment is due for an hour, so only these events move.
    let env = [
        ("FREEDOMPAY_RECON__WEBHOOK__URL", url.as_str()),
        (
            "FREEDOMPAY_RECON__WEBHOOK__SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("FREEDOMPAY_RECON__WEBHOOK__TIMEOUT", "1s"),
        ("FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER", "1h"),
    ];
    let arrived = || seen.lock().unwrap().len();

    let a = app.spawn_daemon(&env);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while arrived() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "A delivers");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    a.signal("STOP");
    let held_by_a = app
        .count("select count(*) from recon.events where lease_owner is not null")
        .await;
    assert!(held_by_a > 8, "A froze holding unsent events ({held_by_a})");

    // Newer events of the same payments, and a second instance that sends everything once
    // A's claim has run out.
    sqlx::raw_sql(sqlx::AssertSqlSafe(first_transitions(2)))
        .execute(app.pool())
        .await
        .unwrap();
    let b = app.spawn_daemon(&env);
    let delivered = app
        .wait_for(
            "select count(*) from recon.events where delivered_at is null",
            0,
            std::time::Duration::from_secs(40),
        )
        .await;
    assert_eq!(delivered, 0, "B delivered every event");

    let before_waking = arrived();
    a.signal("CONT");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let arrivals = seen.lock().unwrap().clone();
    assert_eq!(
        arrivals.len(),
        before_waking,
        "A sent nothing after waking: {:?}",
        &arrivals[before_waking..]
    );
    // Per payment, events arrived in id order: nothing older after something newer.
    let mut newest: std::collections::HashMap<&str, i64> = Default::default();
    for (id, payment) in &arrivals {
        let last = newest.entry(payment).or_insert(*id);
        assert!(*id >= *last, "{payment}: event {id} after {last}");
        *last = (*last).max(*id);
    }
    drop((a, b));
}
