//! The benchmark's smoke run: every phase works and its correctness checks hold. Speed is
//! not asserted here; docs/performance.md publishes measured numbers.

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_smoke_run_reconciles_everything_within_the_rate_budget() {
    // The bench creates (and drops) its own scratch database on this server.
    let server = crate::helpers::server_url().to_owned();
    let mut command = Command::new(env!("CARGO_BIN_EXE_freedompay-recon"));
    command
        .args(["bench", "--smoke"])
        .env_clear()
        .env("DATABASE_URL", &server)
        .env("RUST_LOG", "error");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "| throughput, no rate limit (300 payments, start to all `success`) |",
        "windows over budget: 0 |",
        "Index Scan using payments_due_urgent_idx",
        "| daemon peak RSS by backlog | 500: ",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(!text.contains("Seq Scan on payments"), "{text}");
}
