//! The HTTP listener's limits (issue 16, item 1): idle, half-sent and non-HTTP/1 connections
//! are closed, and a flood of them never starves health checks or the daemon's own work.
//! Request bodies have a deadline and a minimum rate, and a slow one holds no slot (issue 23,
//! item 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use freedompay_recon::http::monitoring;
use freedompay_recon::settings::Limits;
use freedompay_recon::simulator::{Reply, Scenario};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::callbacks;
use crate::helpers::{Spawned, TestApp};

/// Waits until the peer closes `stream` (end of file or a reset), or `deadline`; whether it
/// closed.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0_u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An error answer (hyper's 400 or 408, say) before the close.
            Ok(Ok(_)) => {}
        }
    }
}

async fn healthz(base: &str, within: Duration) -> Result<u16, String> {
    let client = reqwest::Client::builder().timeout(within).build().unwrap();
    client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// Serves the listener for `app` on a free port with `limits`; returns its address.
async fn listen(app: &TestApp, limits: Limits, shutdown: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(monitoring::serve_with(
        listener,
        app.engine.clone(),
        limits,
        shutdown.clone(),
        Duration::ZERO,
    ));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_half_sent_and_http2_connections_are_closed() {
    let app = TestApp::new(Scenario::new()).await;
    let shutdown = CancellationToken::new();
    let limits = Limits {
        header_timeout: Duration::from_secs(2),
        max_connections: 16,
        ..Limits::default()
    };
    let addr = listen(&app, limits, &shutdown).await;
    let opened = Instant::now();

    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut half_sent = TcpStream::connect(&addr).await.unwrap();
    half_sent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut http2 = TcpStream::connect(&addr).await.unwrap();
    http2
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // A kept-alive connection that answered once, then says nothing more.
    let mut kept_alive = TcpStream::connect(&addr).await.unwrap();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    assert!(
        closed_by(&mut http2, opened + Duration::from_millis(500)).await,
        "an HTTP/2 preface is closed at once, not held for the header timeout"
    );
    for (name, stream) in [
        ("silent", &mut silent),
        ("half-sent", &mut half_sent),
        ("kept-alive", &mut kept_alive),
    ] {
        assert!(
            closed_by(stream, opened + Duration::from_secs(4)).await,
            "the {name} connection is closed within the 2 s header timeout"
        );
        assert!(
            opened.elapsed() >= Duration::from_millis(1900),
            "the {name} connection had its full header timeout"
        );
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_closes_its_longest_idle_connection_to_let_a_health_check_in() {
    let app = TestApp::new(Scenario::new()).await;
    let shutdown = CancellationToken::new();
    let limits = Limits {
        header_timeout: Duration::from_secs(30),
        max_connections: 2,
        ..Limits::default()
    };
    let addr = listen(&app, limits, &shutdown).await;
    // Idle time is what decides, so the two connections are made apart in time (and the
    // second is accepted before the health check comes).
    let mut oldest = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut newer = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    let status = healthz(&format!("http://{addr}"), Duration::from_secs(1)).await;
    assert_eq!(status, Ok(200), "the health check gets in at once");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        closed_by(&mut oldest, Instant::now() + Duration::from_secs(1)).await,
        "the connection idle longest made room"
    );
    assert!(
        !closed_by(&mut newer, Instant::now() + Duration::from_millis(300)).await,
        "the other idle connection is still open (its header timeout is 30 s)"
    );
    shutdown.cancel();
}

/// The red team's attack: 1,100 idle connections against a daemon whose soft limit is 1,024
/// open files. Health checks still answer within a second, polls and their writes go on, and
/// every idle connection is closed within the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_starves_neither_health_checks_nor_the_daemon() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const IDLE: usize = 1_100;
    // This process holds the 1,100 client ends: give it room (the daemon gets 1,024).
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 2 * IDLE as u64,
        "this test needs a hard limit of at least {} open files (ulimit -Hn)",
        2 * IDLE
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();

    let app =
        TestApp::new(Scenario::new().fallback([Reply::invoice("success", "10", "KZT")])).await;
    let before: Vec<String> = (1..=5).map(|i| format!("flood-before-{i}")).collect();
    app.insert_ids(&before.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = app.daemon_command(&[
        ("FREEDOMPAY_RECON__HTTP__LISTEN", &addr),
        ("FREEDOMPAY_RECON__HTTP__HEADER_TIMEOUT", "3s"),
    ]);
    // The soft (and hard) limit the red team found the daemon under: systemd's default.
    let mut limited = std::process::Command::new("prlimit");
    limited
        .arg("--nofile=1024:1024")
        .arg("--")
        .arg(daemon.get_program())
        .args(daemon.get_args())
        .env_clear()
        .envs(daemon.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let daemon = Spawned::new(
        limited
            .spawn()
            .expect("prlimit (util-linux) runs the daemon"),
    );

    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while healthz(&base, Duration::from_secs(1)).await != Ok(200) {
        assert!(Instant::now() < deadline, "the daemon's listener came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recorded = "select count(*) from recon.payments where status = 'success'";
    assert_eq!(
        app.wait_for(recorded, 5, Duration::from_secs(15)).await,
        5,
        "the daemon polls before the flood"
    );

    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let flooded = Instant::now();
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(
            healthz(&base, Duration::from_secs(1)).await,
            Ok(200),
            "/healthz answers under the flood"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // Polls and their writes go on: new payments are polled and recorded under the flood.
    let during: Vec<String> = (1..=5).map(|i| format!("flood-during-{i}")).collect();
    app.insert_ids(&during.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_eq!(
        app.wait_for(recorded, 10, Duration::from_secs(10)).await,
        10,
        "payments enqueued during the flood are polled and recorded"
    );

    // Every idle connection is closed within the 3 s header timeout (plus a margin for 1,100
    // reads on this side).
    let deadline = flooded + Duration::from_secs(3) + Duration::from_secs(3);
    let mut still_open = 0;
    for stream in &mut idle {
        if !closed_by(stream, deadline).await {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open,
        0,
        "idle connections still open {:?} after the flood began",
        opened.elapsed()
    );
    let (_, stderr) = daemon.stop().await;
    assert!(
        !stderr.contains("Too many open files"),
        "the daemon never ran out of file descriptors: {stderr}"
    );
}

/// A whole callback header announcing a 16,000-byte body: just under the endpoint's 16 KiB
/// limit, so it is accepted and its body awaited.
const SLOW_BODY_HEADER: &[u8] = b"POST /freedompay/result HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 16000\r\n\r\n";

/// One slow-body sender of the flood: [`SLOW_BODY_HEADER`], then one body byte every
/// `every`. When the listener closes it, it connects again after a short pause, so the flood
/// stays as large as it was sent for as long as `stop` is not cancelled; the pause keeps it a
/// slow-body attack rather than a connect-as-fast-as-possible one. Counts its connections in
/// `connected`.
async fn slow_body(
    addr: String,
    every: Duration,
    connected: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    let mut buf = [0_u8; 1024];
    while !stop.is_cancelled() {
        if let Ok(mut stream) = TcpStream::connect(&addr).await {
            connected.fetch_add(1, Ordering::Relaxed);
            if stream.write_all(SLOW_BODY_HEADER).await.is_ok() {
                let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        read = stream.read(&mut buf) => match read {
                            Ok(0) | Err(_) => break,
                            // An answer (a 408, say) before the close.
                            Ok(_) => {}
                        },
                        _ = ticks.tick() => {
                            if stream.write_all(b"a").await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// The `q`-th quantile of `sorted` by the nearest rank.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Issue 23, item 1: 200 connections that send a whole header with `Content-Length: 16000`,
/// then one body byte every 5 s, once held every slot of `callbacks.listen` (a connection
/// mid-body counted as busy and was never evicted; the body had no deadline), and genuine
/// callbacks were reset. With the listener's limits as configured (`http.max_connections` 64
/// here, below the flood, to keep the test light), every genuine signed callback is answered
/// 200, p95 within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_slot_signed_callbacks_are_answered_within_a_second() {
    const FLOOD: usize = 200;
    const GENUINE: usize = 20;
    let app = TestApp::with(
        Scenario::new(),
        &[("FREEDOMPAY_RECON__HTTP__MAX_CONNECTIONS", "64")],
    )
    .await;
    let endpoint = callbacks::endpoint(&app).await;
    let addr = endpoint.addr();

    let (connected, stop) = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
    let _stop_flood = stop.clone().drop_guard();
    for _ in 0..FLOOD {
        tokio::spawn(slow_body(
            addr.clone(),
            Duration::from_secs(5),
            Arc::clone(&connected),
            stop.clone(),
        ));
    }
    // The flood is in: every sender connected and sent its header.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        connected.load(Ordering::Relaxed) >= FLOOD,
        "the whole flood connected"
    );

    // Genuine callbacks, each on a new connection as the provider sends them, one every
    // 200 ms while the flood goes on.
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..GENUINE {
        let (url, body) = (
            endpoint.url.clone(),
            callbacks::body_of(
                &callbacks::paid(&format!("slow-{i}"), &format!("S-{i}")),
                &format!("salt-{i}"),
            ),
        );
        sent.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let started = Instant::now();
            let answer = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await;
            (answer.map(|r| r.status().as_u16()), started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut latencies, mut failed) = (Vec::new(), Vec::new());
    while let Some(joined) = sent.join_next().await {
        match joined.unwrap() {
            (Ok(200), latency) => latencies.push(latency),
            (answer, latency) => failed.push(format!("{answer:?} after {latency:?}")),
        }
    }
    latencies.sort();
    let figures = if latencies.is_empty() {
        "none answered".to_owned()
    } else {
        format!(
            "p50 {:?}, p95 {:?}, max {:?}",
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.95),
            latencies[latencies.len() - 1]
        )
    };
    println!(
        "{} of {GENUINE} signed callbacks answered 200 under {FLOOD} slow bodies ({} flood \
         connections): {figures}",
        latencies.len(),
        connected.load(Ordering::Relaxed)
    );
    assert!(
        failed.is_empty(),
        "{} of {GENUINE} signed callbacks were not answered 200 ({figures}); the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(
        quantile(&latencies, 0.95) <= Duration::from_secs(1),
        "p95 within a second: {figures}"
    );
}

/// Sends `addr` [`SLOW_BODY_HEADER`], then `chunk` body bytes every
/// `every`, until the listener answers and closes (or 10 s pass); the answer's status line,
/// when it began, and whether the connection was closed after it.
async fn trickle(addr: &str, chunk: usize, every: Duration) -> (String, Duration, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(SLOW_BODY_HEADER).await.unwrap();
    let sent = Instant::now();
    let mut ticks = tokio::time::interval_at(sent + every, every);
    let (mut answer, mut answered_after, mut buf) = (Vec::new(), None, [0_u8; 1024]);
    let closed = loop {
        tokio::select! {
            () = tokio::time::sleep_until(sent + Duration::from_secs(10)) => break false,
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break true,
                Ok(n) => {
                    answered_after.get_or_insert(sent.elapsed());
                    answer.extend_from_slice(&buf[..n]);
                }
            },
            // Once the listener stops reading, writes may fail: the answer is still to read.
            _ = ticks.tick() => { let _ = stream.write_all(&vec![b'a'; chunk]).await; }
        }
    };
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (status, answered_after.unwrap_or(Duration::MAX), closed)
}

/// A body that stalls is answered 408 and its connection closed once it falls below
/// `http.body_min_rate` (500 bytes a second by default) after the 2 s grace; one that keeps
/// the rate but is not whole within `http.body_timeout` (3 s here) is answered 408 then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_or_outlasts_the_body_timeout_is_answered_408_and_closed() {
    let app = TestApp::with(
        Scenario::new(),
        &[("FREEDOMPAY_RECON__HTTP__BODY_TIMEOUT", "3s")],
    )
    .await;
    assert_eq!(app.settings.http.body_min_rate, 500);
    let endpoint = callbacks::endpoint(&app).await;
    let addr = endpoint.addr();

    // One byte every second, as a stall: late 2 s (the grace) and 2 ms (its bytes' earning)
    // after the header.
    let stalled = tokio::spawn({
        let addr = addr.clone();
        async move { trickle(&addr, 1, Duration::from_secs(1)).await }
    });
    // 700 bytes a second, above the minimum rate, but 16,000 bytes take 23 s.
    let (status, after, closed) = trickle(&addr, 70, Duration::from_millis(100)).await;
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    assert!(closed, "closed after the answer");
    assert!(
        (Duration::from_millis(2_900)..Duration::from_millis(4_000)).contains(&after),
        "answered at the 3 s body timeout, not before: {after:?}"
    );

    let (status, after, closed) = stalled.await.unwrap();
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    assert!(closed, "closed after the answer");
    assert!(
        (Duration::from_millis(1_900)..Duration::from_millis(3_000)).contains(&after),
        "answered once below the minimum rate after the grace: {after:?}"
    );

    // The listener still takes a genuine callback.
    let (status, xml) = callbacks::post(
        &endpoint.url,
        callbacks::body_of(&callbacks::paid("after-408", "A-408"), "s408"),
    )
    .await;
    assert_eq!(status, 200, "{xml}");
}
