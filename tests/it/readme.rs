//! The README's shell blocks, pasted as a reader pastes them: they work, they may be pasted
//! twice, and when something is in the way they end and say why instead of waiting for ever.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::ConnectOptions as _;

use crate::helpers::{MissingDb, Spawned, TestDb, server_url};

const BINARY: &str = env!("CARGO_BIN_EXE_freedompay-recon");

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The first ```sh block after the line `heading`.
fn block(heading: &str) -> String {
    let readme = readme();
    let after = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} in the README"))
        .1;
    let start = after.find("```sh\n").expect("a shell block") + "```sh\n".len();
    let length = after[start..].find("\n```").expect("the block ends");
    after[start..start + length + 1].to_owned()
}

/// `script` with each `(from, to)` replaced; every `from` must be there, so a README that
/// changes under the test fails it rather than running something else.
fn replaced(script: &str, replacements: &[(&str, &str)]) -> String {
    replacements
        .iter()
        .fold(script.to_owned(), |script, (from, to)| {
            assert!(script.contains(from), "{from:?} is not in:\n{script}");
            script.replace(from, to)
        })
}

/// What a pasted block printed and how its last command ended.
struct Pasted {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `script` with bash, in `dir`, with only PATH, `USER` and `env` from outside; fails
/// the test if it has not ended `within`.
async fn paste(script: &str, dir: &Path, env: &[(&str, &str)], within: Duration) -> Pasted {
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let child = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "readme-reader")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("bash runs");
    let (code, _) = Spawned::new(child).wait(within).await;
    Pasted {
        code,
        stdout: std::fs::read_to_string(stdout).unwrap(),
        stderr: std::fs::read_to_string(stderr).unwrap(),
    }
}

/// A loopback port nobody listens on: bound for a moment, then let go.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
}

/// The "Against the simulator" block, on `port`, against `db`; its provider answers within
/// 2 s or not at all.
async fn paste_the_simulator_block(db: &MissingDb, port: u16) -> Pasted {
    let port = port.to_string();
    let script = replaced(
        &block("### Against the simulator"),
        &[
            ("./target/release/freedompay-recon", BINARY),
            (
                "postgres://postgres@127.0.0.1:5432/freedompay_recon",
                &format!("'{}'", db.url),
            ),
            ("8089", &port),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FREEDOMPAY_RECON__PROVIDER__TIMEOUT", "2s"),
        // As the block sets it: every command on the test's database even if that changed.
        ("DATABASE_URL", db.url.as_str()),
    ];
    paste(&script, dir.path(), &env, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_block_tracks_checks_and_reconciles_one_payment() {
    let db = MissingDb::new("readme_sim");
    let pasted = paste_the_simulator_block(&db, free_port()).await;
    let said = format!("{}{}", pasted.stdout, pasted.stderr);
    assert_eq!(pasted.code, Some(0), "{said}");
    // What its comments promise.
    assert!(pasted.stdout.contains("amount:       16938.53"), "{said}");
    assert!(pasted.stdout.contains("flags opened 1"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_block_ends_and_says_why_when_its_port_is_taken() {
    let db = MissingDb::new("readme_taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let pasted = paste_the_simulator_block(&db, port).await;
    let said = format!("{}{}", pasted.stdout, pasted.stderr);
    // The simulator's log, shown when it did not come up.
    assert!(
        pasted.stdout.contains(&format!(
            "error: cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{said}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finance_block_can_be_pasted_twice_and_leaves_no_files_behind() {
    // Roles belong to the whole server: one of this test's own, dropped when the test ends,
    // after its database (declared later, dropped first).
    let role = DroppedRole(format!("fpr_test_{}_bi", std::process::id()));
    let role = role.0.as_str();
    let db = TestDb::new().await;
    let psql = format!("psql '{}'", server_url());
    let url = format!("'{}'", db.url);
    let script = replaced(
        &block("## For finance"),
        &[
            ("./target/release/freedompay-recon", BINARY),
            (
                "postgres://postgres@127.0.0.1:5432/freedompay_recon_demo",
                &url,
            ),
            ("psql -h 127.0.0.1 -U postgres", &psql),
            ("finance_bi", role),
        ],
    );
    let here = tempfile::tempdir().unwrap();
    // The block sets DATABASE_URL itself; the same here keeps every command on the test's
    // database even if that line changed.
    let env = [("DATABASE_URL", db.url.as_str())];
    for time in ["first", "second"] {
        let pasted = paste(&script, here.path(), &env, Duration::from_secs(120)).await;
        let said = format!("{}{}", pasted.stdout, pasted.stderr);
        assert!(
            pasted.stdout.contains("payments.csv: 1 row: "),
            "{time}: {said}"
        );
        assert!(
            pasted
                .stdout
                .contains(&format!("role \"{role}\" may now read")),
            "{time}: {said}"
        );
        assert!(!pasted.stderr.contains("ERROR"), "{time}: {said}");
        assert_eq!(pasted.code, Some(0), "{time}: {said}");
    }
    let left: Vec<_> = std::fs::read_dir(here.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left where it was pasted: {left:?}");
}

/// A role a test creates, dropped when the test ends, passed or failed: from a thread of its
/// own, as the test's runtime is going away.
struct DroppedRole(String);

impl Drop for DroppedRole {
    fn drop(&mut self) {
        let role = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let Ok(options) = server_url().parse::<sqlx::postgres::PgConnectOptions>() else {
                    return;
                };
                if let Ok(mut admin) = options.connect().await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "drop role if exists \"{role}\""
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

#[test]
fn the_readme_front_page_stays_under_16_kb() {
    let size = readme().len();
    assert!(size < 16 * 1024, "README.md is {size} bytes");
}
