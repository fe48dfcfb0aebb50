//! Whatever the provider sends, the daemon records a failure and tries again later.

use std::time::Duration;

use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_answers_are_retried_with_backoff_and_never_become_history() {
    let html = include_str!("../fixtures/provider/responses/gateway-502.html");
    let answer = Reply::invoice("process", "1", "KZT");
    let app = TestApp::with(
        Scenario::new()
            .payment(
                "html",
                [Reply::text(502, html, "text/html"), answer.clone()],
            )
            .payment(
                "html200",
                [Reply::text(200, html, "text/html"), answer.clone()],
            )
            .payment(
                "truncated",
                [
                    Reply::text(200, r#"{"paymentStatus":"succ"#, "application/json"),
                    answer.clone(),
                ],
            )
            .payment(
                "huge",
                [
                    Reply::text(200, &"x".repeat(2 * 1024 * 1024), "application/json"),
                    answer.clone(),
                ],
            )
            .payment("dropped", [Reply::Drop, answer.clone()])
            .payment(
                "slow",
                [
                    answer.clone().delayed(Duration::from_secs(3)),
                    answer.clone(),
                ],
            )
            .payment("unavailable", [Reply::status(503, None), answer.clone()]),
        &[
            ("FREEDOMPAY_RECON__PROVIDER__TIMEOUT", "1s"),
            ("FREEDOMPAY_RECON__POLL__RETRY_MIN", "30s"),
            ("FREEDOMPAY_RECON__POLL__RETRY_MAX", "1m"),
        ],
    )
    .await;
    let ids = [
        "html",
        "html200",
        "truncated",
        "huge",
        "dropped",
        "slow",
        "unavailable",
    ];
    app.insert_ids(&ids).await;

    let outcome = app.sweep().await;
    assert_eq!(
        (outcome.recorded, outcome.failed, outcome.transitions),
        (7, 7, 0)
    );
    let rows: Vec<(String, i32, Option<String>, bool)> = sqlx::query_as(
        "select payment_id, attempts, last_error, next_check_at > now() + interval '10 seconds'
         from recon.payments order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    for (id, attempts, last_error, later) in &rows {
        assert_eq!(*attempts, 1, "{id}");
        assert!(later, "{id} is retried later, not at once");
        let error = last_error.as_deref().unwrap_or_default();
        let expected = match id.as_str() {
            "html" => "HTTP 502",
            "unavailable" => "HTTP 503",
            "html200" | "truncated" => "not JSON",
            "huge" => "larger than",
            "dropped" => "connection closed",
            "slow" => "timed out",
            _ => unreachable!(),
        };
        assert!(error.contains(expected), "{id}: {error}");
    }

    app.fast_forward().await;
    let retried = app.sweep().await;
    assert_eq!(
        (retried.recorded, retried.failed, retried.transitions),
        (7, 0, 7)
    );
    assert_eq!(
        app.count("select count(*) from recon.payments where attempts = 0 and last_error is null and status = 'process'")
            .await,
        7
    );
}
