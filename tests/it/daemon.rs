//! The scheduled daemon, in process and as a real process under SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use freedompay_recon::engine::run_daemon;
use freedompay_recon::maintenance::Maintenance;
use freedompay_recon::provider::ProviderClient;
use freedompay_recon::simulator::{Reply, Scenario};
use freedompay_recon::startup::{Daemon, Listeners};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Spawned, TestApp};

/// The daemon as `run` and `demo` build it (`startup::Daemon`): its sweeps fire on the
/// schedule, its listeners answer, and shutdown stops every part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cron_schedule_fires_sweeps_until_shutdown() {
    let app =
        TestApp::new(Scenario::new().prefix("d-", [Reply::invoice("process", "1", "KZT")])).await;
    app.insert_ids(&["d-1", "d-2"]).await;
    let mut settings = app.settings.clone();
    settings.poll.schedule = "* * * * * *".into();
    let listeners = Listeners {
        http: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
        callbacks: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
    };
    let health = format!(
        "http://{}/healthz",
        listeners.http.as_ref().unwrap().local_addr().unwrap()
    );
    let callbacks = format!(
        "http://{}{}",
        listeners.callbacks.as_ref().unwrap().local_addr().unwrap(),
        settings.callbacks.path
    );
    let provider = ProviderClient::new(&settings.provider).unwrap();
    let daemon = Daemon::build(app.pool().clone(), provider, &settings, listeners).unwrap();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(daemon.run_until_stopped(shutdown.clone()));
    let polled = app
        .wait_for(
            "select count(*) from recon.payments where checks = 1",
            2,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(polled, 2, "a scheduled sweep reconciled both payments");

    // Added while running: picked up by a later firing.
    app.insert_ids(&["d-3"]).await;
    let polled = app
        .wait_for(
            "select count(*) from recon.payments where checks = 1",
            3,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(polled, 3);
    // Both listeners serve: health, and the callback endpoint (an unsigned call is refused).
    let answer = reqwest::get(&health).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok\n");
    let refused = reqwest::Client::new()
        .post(&callbacks)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("pg_payment_id=d-1")
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("the daemon stops promptly")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(&health).await.is_err(),
        "the listener stopped with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schedule_is_named() {
    let app = TestApp::new(Scenario::new()).await;
    let maintenance = Maintenance::new(app.pool().clone(), &app.settings);
    let err = run_daemon(
        app.engine.clone(),
        maintenance,
        "every minute",
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("poll.schedule \"every minute\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_daemon_exits_zero_and_leaves_no_lease() {
    let app = TestApp::new(Scenario::new().prefix(
        "t-",
        [Reply::invoice("process", "1", "KZT").delayed(Duration::from_millis(300))],
    ))
    .await;
    sqlx::query(
        "insert into recon.payments (payment_id) select 't-' || g from generate_series(1, 200) g",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let daemon = app.spawn_daemon(&[
        ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "4"),
        ("FREEDOMPAY_RECON__POLL__DRAIN_TIMEOUT", "2s"),
        ("RUST_LOG", "info"),
    ]);

    // Wait until it is mid-sweep: some payments done, most still claimed or due.
    let started = app
        .wait_for(
            "select least(count(*), 1) from recon.payments where checks > 0",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(started, 1, "the daemon began polling");
    let (code, log) = daemon.stop().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert_eq!(
        app.count("select count(*) from recon.payments where lease_token is not null")
            .await,
        0,
        "every claim was written or released"
    );
    let done = app
        .count("select count(*) from recon.payments where checks > 0")
        .await;
    assert!(
        done < 200,
        "the sweep was interrupted, not finished ({done})"
    );
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        done,
        "one transition per polled payment"
    );
}

/// Plays systemd's side of `Type=notify`: a datagram socket in `NOTIFY_SOCKET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_pings_and_stopping() {
    let app = TestApp::new(Scenario::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let daemon = app.daemon_command(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ]);
    // systemd names the watched process in WATCHDOG_PID; `exec` keeps the shell's pid.
    let child = Spawned::spawn(
        Command::new("/bin/sh")
            .arg("-c")
            .arg("WATCHDOG_PID=$$ exec \"$0\" run")
            .arg(env!("CARGO_BIN_EXE_freedompay-recon"))
            .env_clear()
            .envs(
                daemon
                    .get_envs()
                    .filter_map(|(key, value)| value.map(|value| (key, value))),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );

    let receive = move |socket: &std::os::unix::net::UnixDatagram| {
        let mut buffer = [0u8; 512];
        let n = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let first = receive(&socket);
    assert!(first.contains("READY=1"), "{first:?}");
    // READY comes after migrations: the schema is there (31 tables: two of them the side
    // tables of partitioned history, three the summary's rollup, its zone and its pending
    // changes, one the callbacks, one the archives written, four of closing a month (closes,
    // the closed period, adjustments, intake changes), two of amounts as of a date (the
    // payments' states and when they begin), four of money (its events and their keys, the
    // refund watch, the refunds the merchant made), two of bank statements and two of
    // registries (files and operations), three of matching (matches, flags without a payment,
    // the money to the bank a close signed);
    // and the migrations record; partitions not counted).
    assert_eq!(
        app.count("select count(*) from pg_class where relnamespace = 'recon'::regnamespace and relkind in ('r', 'p') and not relispartition")
            .await,
        31
    );
    let mut pings = 0;
    while pings < 3 {
        let message = receive(&socket);
        assert!(message.contains("WATCHDOG=1"), "{message:?}");
        pings += 1;
    }
    child.signal("TERM");
    let mut stopping = false;
    for _ in 0..50 {
        if receive(&socket).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "systemd is told the daemon is stopping");
    let (code, log) = child.wait(Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "{log}");
}
