//! Finance reads from a streaming replica (issue 17, item 6): every reading command works
//! where writes are refused, as on a hot standby; commands that write say so in one line.

use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::{TestApp, run_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_digests_run_where_writes_are_refused_as_on_a_replica() {
    let app = TestApp::new(Scenario::new().fallback([Reply::invoice("success", "9", "KZT")])).await;
    app.insert("('r-1', 10, 'KZT', null, now() - interval '1 hour', null)")
        .await;
    app.sweep().await;
    // A hot standby refuses every write; a database whose transactions are read-only by
    // default behaves the same for these commands.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {} set default_transaction_read_only = on",
        app.db.name()
    )))
    .execute(app.pool())
    .await
    .unwrap();
    let env = [("DATABASE_URL", app.db.url.as_str())];
    for args in [
        vec!["report"],
        vec!["report", "--format", "csv"],
        vec!["report", "--detail", "--format", "json"],
        vec!["report", "--flags"],
        vec!["digest"],
        vec!["digest", "--format", "json"],
    ] {
        let output = run_binary(&args, &env).await;
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("r-1")
                || !matches!(
                    args.as_slice(),
                    ["report", "--detail", ..] | ["report", "--flags"]
                ),
            "{args:?} shows the payment"
        );
    }
    // Writing commands belong on the primary, and say why they failed in one line.
    let enqueued = run_binary(&["enqueue", "r-2"], &env).await;
    assert_eq!(enqueued.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&enqueued.stderr);
    assert!(
        stderr.contains("read-only transaction") && stderr.lines().count() == 1,
        "{stderr}"
    );
}
