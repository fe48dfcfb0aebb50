//! An HTTP/1 listener that a client cannot starve.
//!
//! - Every connection must send a complete request header within [`Limits::header_timeout`],
//!   counted from connect and, on a kept-alive connection, from its previous response: idle,
//!   half-sent ("slowloris") and abandoned keep-alive connections are closed.
//! - At most [`Limits::max_connections`] are open at once. One more is never queued: the
//!   connection idle longest (no request in progress) is closed to make room, so a health
//!   check still gets in while a scanner holds the rest; when every open connection is in the
//!   middle of a request, the new one is closed at once.
//! - Anything that is not HTTP/1 (an HTTP/2 preface, TLS, a scanner's probe) is answered with
//!   an error by hyper's parser and closed.
//!
//! `axum::serve` has none of these: an idle connection stays open for ever, and 1,100 of them
//! exhaust a soft limit of 1,024 open files, which the daemon shares with its provider
//! connections and database pool (docs/trust-boundaries.md, "The listener").

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections the listener closed to stay within `max_connections`, by `reason`: `evicted`
/// (the longest idle, to make room) or `refused` (every open one was busy).
pub const CONNECTIONS_SHED: &str = "freedompay_recon_http_connections_shed_total";

/// Gives the listener's metric its help text.
pub fn describe() {
    metrics::describe_counter!(
        CONNECTIONS_SHED,
        "HTTP connections closed to stay within http.max_connections: evicted (idle longest) \
         or refused (all busy)."
    );
}

/// The largest request header, in bytes (hyper's smallest read buffer). The listener's
/// requests are a request line and a few headers.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// How long open connections may finish their request once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// What one listener allows (`http.header_timeout`, `http.max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection that has not sent a whole request header this long after it opened, or
    /// after its previous response, is closed: this is also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 128,
        }
    }
}

/// One open connection, as the accept loop sees it.
struct Open {
    /// Requests in progress.
    busy: AtomicUsize,
    /// When it last finished a request (or opened).
    idle_since: Mutex<Instant>,
    /// Closes it (drops the socket) when cancelled.
    close: CancellationToken,
}

impl Open {
    fn idle_since(&self) -> Option<Instant> {
        (self.busy.load(Ordering::Acquire) == 0)
            .then(|| *self.idle_since.lock().expect("idle lock"))
    }
}

/// Marks its connection busy while a request is served.
struct Busy(Arc<Open>);

impl Busy {
    fn start(open: &Arc<Open>) -> Self {
        open.busy.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(open))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().expect("idle lock") = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections by number.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Arc<Open>>>,
}

impl Connections {
    /// Admits connection `id` within `cap`, closing the one idle longest when full; `None`
    /// when every open connection is busy.
    fn admit(&self, id: u64, cap: usize) -> Option<Arc<Open>> {
        let mut open = self.open.lock().expect("connections lock");
        if open.len() >= cap {
            let (&oldest, _) = open
                .iter()
                .filter_map(|(id, conn)| conn.idle_since().map(|since| (id, since)))
                .min_by_key(|(_, since)| *since)?;
            let evicted = open.remove(&oldest).expect("just found");
            evicted.close.cancel();
            metrics::counter!(CONNECTIONS_SHED, "reason" => "evicted").increment(1);
        }
        let conn = Arc::new(Open {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            close: CancellationToken::new(),
        });
        open.insert(id, Arc::clone(&conn));
        Some(conn)
    }

    fn remove(&self, id: u64) {
        self.open.lock().expect("connections lock").remove(&id);
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` fires, then lets open
/// connections finish their request for up to [`DRAIN`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = Arc::new(Connections::default());
    let tasks = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    for id in 0_u64.. {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: the connection waits in the backlog while
                    // open ones time out. Never a reason to stop serving.
                    tracing::warn!(%error, "http listener: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(open) = connections.admit(id, limits.max_connections) else {
            metrics::counter!(CONNECTIONS_SHED, "reason" => "refused").increment(1);
            drop(stream);
            continue;
        };
        let router = TowerToHyperService::new(app.clone());
        let service = {
            let open = Arc::clone(&open);
            hyper::service::service_fn(move |request| {
                let busy = Busy::start(&open);
                let response = router.call(request);
                async move {
                    let response = response.await;
                    drop(busy);
                    response
                }
            })
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let (stop, connections) = (shutdown.clone(), Arc::clone(&connections));
        tasks.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // A connection's errors (a timeout, a malformed or HTTP/2 request, a reset) are
            // the client's; they end that connection only.
            tokio::select! {
                _ = connection.as_mut() => {}
                () = open.close.cancelled() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, connection).await;
                }
            }
            connections.remove(id);
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(DRAIN, tasks.wait()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_listener_closes_the_longest_idle_or_refuses_when_all_are_busy() {
        let connections = Connections::default();
        let first = connections.admit(1, 2).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = connections.admit(2, 2).unwrap();
        let third = connections.admit(3, 2).expect("room made");
        assert!(first.close.is_cancelled(), "the longest idle was closed");
        assert!(!second.close.is_cancelled());

        // Both open ones in the middle of a request: the newcomer is refused, no one closed.
        let _busy = (Busy::start(&second), Busy::start(&third));
        assert!(connections.admit(4, 2).is_none());
        assert!(!second.close.is_cancelled() && !third.close.is_cancelled());
        drop(_busy);
        assert!(
            connections.admit(4, 2).is_some(),
            "idle again after the request"
        );
    }
}
