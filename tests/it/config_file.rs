//! The config file as a service meets it: owned by root, read by another user (systemd's
//! `DynamicUser=`). A file the daemon cannot read is an error naming it, never a silent run on
//! the defaults.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::output;

/// `nobody` on Debian: a user that owns nothing here.
const OTHER_UID: &str = "65534";

/// Whether this test process runs as root: only root may run the binary as another user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `setpriv` running the binary as [`OTHER_UID`], with no supplementary groups (root's
/// would let it read a group-readable file) and nothing from the test's environment but PATH.
fn as_other_user(args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            &format!("--reuid={OTHER_UID}"),
            &format!("--regid={OTHER_UID}"),
            "--clear-groups",
            env!("CARGO_BIN_EXE_freedompay-recon"),
        ])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

/// A command that loads the settings and then needs neither a database nor a network.
const PLAN: [&str; 3] = ["plan", "--payments-per-day", "10"];

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit 1 and one line on stderr, naming `path` and containing each of `words`.
fn assert_refused(output: &Output, path: &Path, words: &[&str]) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    assert!(
        message.starts_with(&format!("error: config file {}: ", path.display())),
        "{message}"
    );
    for word in words {
        assert!(message.contains(word), "{word:?} in {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_another_user_cannot_read_is_an_error_naming_it_and_why() {
    if !running_as_root() {
        eprintln!(
            "skipped: running the binary as another user (uid {OTHER_UID}) needs root, and \
             this test runs as uid {:?}",
            std::fs::metadata("/proc/self").map(|m| m.uid()).ok()
        );
        return;
    }
    // Root-owned directories as systemd's ConfigurationDirectoryMode=0750 leaves them, and
    // tighter; the file itself readable by all.
    for mode in [0o700, 0o750] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[poll]\nrate_per_second = 5\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        let path_arg = path.to_str().unwrap();
        let refused = output(as_other_user(
            &[&["--config", path_arg][..], &PLAN].concat(),
        ))
        .await;
        assert_refused(
            &refused,
            &path,
            &[
                "permission denied",
                &format!("(uid {OTHER_UID})"),
                "LoadCredential=",
            ],
        );
        // The same file, readable: a typo in it is refused under that user too, naming it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&path, "[poll]\nschedueL = \"* * * * * *\"\n").unwrap();
        let typo = output(as_other_user(
            &[&["--config", path_arg][..], &PLAN].concat(),
        ))
        .await;
        assert_refused(&typo, &path, &["unknown field `schedueL`"]);
    }
}

/// The default path, as the shipped unit met it: `/etc/freedompay-recon/config.toml` in a
/// root-owned 0750 directory, read by another user. The binary runs in a mount namespace of
/// its own with an empty `/etc` (a tmpfs), so the machine's `/etc` is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_config_file_unreadable_to_the_service_user_is_an_error_not_the_defaults() {
    if !running_as_root() {
        eprintln!("skipped: a mount namespace and another user need root");
        return;
    }
    let script = r#"
        mount -t tmpfs -o mode=0755 tmpfs /etc || exit 90
        mkdir -m 0750 /etc/freedompay-recon
        printf '[poll]\nschedueL = "* * * * * *"\n' > /etc/freedompay-recon/config.toml
        chmod 0644 /etc/freedompay-recon/config.toml
        exec setpriv --reuid="$1" --regid="$1" --clear-groups "$2" plan --payments-per-day 10
    "#;
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args([OTHER_UID, env!("CARGO_BIN_EXE_freedompay-recon")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let ran = output(command).await;
    let message = stderr(&ran);
    if message.starts_with("unshare: ") || ran.status.code() == Some(90) {
        // Root without CAP_SYS_ADMIN (a locked-down container) cannot build the namespace;
        // the test above covers the same code through --config.
        eprintln!("skipped: no private mount namespace here: {message}");
        return;
    }
    assert_refused(
        &ran,
        Path::new("/etc/freedompay-recon/config.toml"),
        &["permission denied", "--config"],
    );
}
