//! The benchmark's smoke run: every phase works and its correctness checks hold. Speed is
//! not asserted here; docs/performance.md publishes measured numbers.

use crate::helpers::run_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_smoke_run_reconciles_everything_within_the_rate_budget() {
    // The bench creates (and drops) its own scratch database on this server.
    let output = run_binary(
        &["bench", "--smoke"],
        &[
            ("DATABASE_URL", crate::helpers::server_url()),
            ("RUST_LOG", "error"),
        ],
    )
    .await;
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

/// `bench --year` in its smoke form: a small year synthesized, every measure taken twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_year_benchmark_synthesizes_a_year_and_measures_it() {
    let output = run_binary(
        &["bench", "--year", "--scale", "0.0001"],
        &[
            ("DATABASE_URL", crate::helpers::server_url()),
            ("RUST_LOG", "error"),
        ],
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains(": 16425 payments over 365 days (scale 0.0001)"),
        "{text}"
    );
    for measure in [
        "| claim of 100 due, p50 / p99 | ",
        "| `report` for one day | ",
        "| `report` for one month | ",
        "| `report` for the year | ",
        "| `report --detail` for one day | ",
        "| `digest` for one day | ",
        "| one payment's history, p50 / p99 | ",
    ] {
        let row = text
            .lines()
            .find(|line| line.starts_with(measure))
            .unwrap_or_else(|| panic!("{measure:?} missing from:\n{text}"));
        assert!(row.matches(" ms").count() >= 2, "{row}");
    }
    let bytes = text
        .lines()
        .find(|line| line.starts_with("| bytes per payment on disk"))
        .unwrap_or_else(|| panic!("no bytes row:\n{text}"));
    assert!(
        !bytes.contains("| 0 (")
            && !bytes.contains("events 0")
            && !bytes.contains("status_transitions 0,")
            && !bytes.contains("payment_states 0"),
        "{bytes}"
    );
    let evidence = text
        .lines()
        .find(|line| line.starts_with("| evidence per payment "))
        .unwrap_or_else(|| panic!("no evidence row:\n{text}"));
    let figure: u32 = evidence.split(" | ").nth(1).unwrap().parse().unwrap();
    assert!(figure > 0, "{evidence}");
}
