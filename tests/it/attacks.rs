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
