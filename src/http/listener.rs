//! An HTTP/1 listener that a client cannot starve.
//!
//! - Every connection must send a complete request header within [`Limits::header_timeout`],
//!   counted from connect and, on a kept-alive connection, from its previous response: idle,
//!   half-sent ("slowloris") and abandoned keep-alive connections are closed.
//! - A request's body must be whole within [`Limits::body_timeout`] of its header, and arrive
//!   at [`Limits::body_min_rate`] on average after a grace of [`RATE_GRACE`]; one that does
//!   not is answered 408 and its connection closed. Without this a header announcing 16,000
//!   bytes and one byte every few seconds held a connection for as long as its sender liked.
//! - At most [`Limits::max_connections`] are open at once. One more is never queued: the
//!   connection idle longest is closed to make room, so a health check still gets in while a
//!   scanner holds the rest. A connection is idle while it waits for a request header *or
//!   receives a request body*, counted from its last progress (opening, its last response,
//!   the last body bytes): only one whose request is being handled, its body all in, is busy.
//!   When every open connection is busy, the new one is closed at once.
//! - Anything that is not HTTP/1 (an HTTP/2 preface, TLS, a scanner's probe) is answered with
//!   an error by hyper's parser and closed.
//!
//! `axum::serve` has none of these: an idle connection stays open for ever, and 1,100 of them
//! exhaust a soft limit of 1,024 open files, which the daemon shares with its provider
//! connections and database pool (docs/trust-boundaries.md, "The listener").

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::settings::Limits;

/// Connections the listener closed to stay within `max_connections`, by `reason`: `evicted`
/// (the longest idle, to make room) or `refused` (every open one was busy).
pub const CONNECTIONS_SHED: &str = "freedompay_recon_http_connections_shed_total";
/// Requests answered 408 (and their connection closed) because their body came too slowly:
/// not whole within `http.body_timeout`, or below `http.body_min_rate`.
pub const SLOW_BODIES: &str = "freedompay_recon_http_slow_bodies_total";

/// Gives the listener's metrics their help text.
pub fn describe() {
    metrics::describe_counter!(
        CONNECTIONS_SHED,
        "HTTP connections closed to stay within http.max_connections: evicted (idle longest) \
         or refused (all busy)."
    );
    metrics::describe_counter!(
        SLOW_BODIES,
        "HTTP requests answered 408 and closed because their body came too slowly \
         (http.body_timeout, http.body_min_rate)."
    );
}

/// The largest request header, in bytes (hyper's smallest read buffer). The listener's
/// requests are a request line and a few headers.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// How long open connections may finish their request once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// How long a body may bring nothing before [`Limits::body_min_rate`] counts: time for its
/// first bytes to follow the header, or for one lost segment to be sent again (Linux waits
/// 200 ms at least, a second on a fresh connection), with room to spare. The bodies this
/// listener takes (a callback's form, a few hundred bytes) arrive with their header.
pub const RATE_GRACE: Duration = Duration::from_secs(2);

impl Limits {
    /// When a body whose header arrived at `header_at`, and which has brought `received`
    /// bytes since, must be whole, unless more bytes move it later: by then either
    /// `body_timeout` is over or the body fell below `body_min_rate`. Each byte earns
    /// `1 / body_min_rate` s, so the deadline only ever moves later as bytes come.
    fn body_deadline(&self, header_at: Instant, received: u64) -> Instant {
        let mut allowed = self.body_timeout;
        // No minimum rate (0): only the timeout.
        if let Some(earned_ms) = received
            .saturating_mul(1000)
            .checked_div(self.body_min_rate)
        {
            let earned = Duration::from_millis(earned_ms);
            allowed = allowed.min(RATE_GRACE.saturating_add(earned));
        }
        header_at + allowed
    }
}

/// One open connection, as the accept loop sees it.
struct Open {
    /// Since when it has made no progress: it opened, finished a response, or received a
    /// request's header or body bytes. `None` while a request is handled (its body all in):
    /// only then is it busy, and never closed to make room. A request waiting for its body
    /// is not busy: a sender that trickles one holds no slot against newcomers.
    idle_since: Mutex<Option<Instant>>,
    /// Closes it (drops the socket) when cancelled.
    close: CancellationToken,
}

impl Open {
    fn new() -> Self {
        Self {
            idle_since: Mutex::new(Some(Instant::now())),
            close: CancellationToken::new(),
        }
    }

    fn idle_since(&self) -> Option<Instant> {
        *self.idle_since.lock().expect("idle lock")
    }

    /// It received something (a header, body bytes, or it finished a response).
    fn progressed(&self) {
        *self.idle_since.lock().expect("idle lock") = Some(Instant::now());
    }

    /// Its request is being handled, its body all in.
    fn handling(&self) {
        *self.idle_since.lock().expect("idle lock") = None;
    }
}

/// One request's body as it arrives: counted by [`Counted`], read by the deadline.
struct Arrival {
    open: Arc<Open>,
    /// When its header was complete.
    header_at: Instant,
    received: AtomicU64,
    whole: AtomicBool,
}

impl Arrival {
    /// A request whose header just arrived on `open`; `whole` when it has no body to wait for.
    fn start(open: &Arc<Open>, whole: bool) -> Arc<Self> {
        if whole {
            open.handling();
        } else {
            open.progressed();
        }
        Arc::new(Self {
            open: Arc::clone(open),
            header_at: Instant::now(),
            received: AtomicU64::new(0),
            whole: AtomicBool::new(whole),
        })
    }

    fn received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::AcqRel);
        self.open.progressed();
    }

    fn finished(&self) {
        self.whole.store(true, Ordering::Release);
        self.open.handling();
    }

    /// Resolves when the body is late (see [`Limits::body_deadline`]); never once it is whole.
    async fn late(&self, limits: Limits) {
        loop {
            if self.whole.load(Ordering::Acquire) {
                return std::future::pending().await;
            }
            let deadline =
                limits.body_deadline(self.header_at, self.received.load(Ordering::Acquire));
            if Instant::now() >= deadline {
                return;
            }
            // Bytes that come meanwhile move the deadline later: look again then.
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Marks the connection idle from the moment its request is answered (or given up).
struct Answered(Arc<Open>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.progressed();
    }
}

/// A request body that reports what arrives to its [`Arrival`].
struct Counted {
    inner: Incoming,
    arrival: Arc<Arrival>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.arrival
                    .received(frame.data_ref().map_or(0, Bytes::len));
                if self.inner.is_end_stream() {
                    self.arrival.finished();
                }
            }
            Poll::Ready(None) => self.arrival.finished(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request whose body came too slowly. `Connection: close` makes hyper close
/// the connection once it is written: the rest of the body is never read.
fn body_too_slow() -> Response {
    metrics::counter!(SLOW_BODIES).increment(1);
    (
        StatusCode::REQUEST_TIMEOUT,
        [(header::CONNECTION, "close")],
        "request body too slow\n",
    )
        .into_response()
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
        let conn = Arc::new(Open::new());
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
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let answered = Answered(Arc::clone(&open));
                let arrival = Arrival::start(&open, request.body().is_end_stream());
                let request = request.map(|inner| Counted {
                    inner,
                    arrival: Arc::clone(&arrival),
                });
                let response = router.call(request);
                async move {
                    let _answered = answered;
                    // The deadline is raced here, not inside the body, so it holds whether or
                    // not the handler is reading the body at that moment. Once the body is
                    // whole the handler runs to its end.
                    tokio::select! {
                        response = response => response,
                        () = arrival.late(limits) => Ok(body_too_slow()),
                    }
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

    /// Lets the clock move so connections opened in turn are idle since different instants.
    async fn tick() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[tokio::test]
    async fn a_full_listener_closes_the_longest_idle_or_refuses_when_all_are_busy() {
        let connections = Connections::default();
        let first = connections.admit(1, 2).unwrap();
        tick().await;
        let second = connections.admit(2, 2).unwrap();
        let third = connections.admit(3, 2).expect("room made");
        assert!(first.close.is_cancelled(), "the longest idle was closed");
        assert!(!second.close.is_cancelled());

        // Both open ones handling a request: the newcomer is refused, no one closed.
        let (_second, _third) = (Arrival::start(&second, true), Arrival::start(&third, true));
        let answered = (Answered(Arc::clone(&second)), Answered(Arc::clone(&third)));
        assert!(connections.admit(4, 2).is_none());
        assert!(!second.close.is_cancelled() && !third.close.is_cancelled());
        drop(answered);
        assert!(
            connections.admit(4, 2).is_some(),
            "idle again after the request"
        );
    }

    /// The defect of issue 23, item 1: a connection whose request waited for its body
    /// counted as busy, so slow bodies held every slot. Now it is idle since its last bytes;
    /// only once its body is whole is it busy.
    #[tokio::test]
    async fn a_request_waiting_for_its_body_is_idle_since_its_last_bytes_until_the_body_is_whole() {
        let connections = Connections::default();
        let receiving = connections.admit(1, 3).unwrap();
        let body = Arrival::start(&receiving, false);
        tick().await;
        let idle = connections.admit(2, 3).unwrap();
        tick().await;
        let handled = connections.admit(3, 3).unwrap();
        let _handled = Arrival::start(&handled, true);
        tick().await;

        // Bytes are progress: its header came before the idle one opened, but its last bytes
        // came after, so the idle one has been quiet longer and makes room.
        body.received(100);
        let fourth = connections.admit(4, 3).expect("room made");
        assert!(
            idle.close.is_cancelled(),
            "quiet longer than the fresh bytes"
        );
        assert!(!receiving.close.is_cancelled() && !handled.close.is_cancelled());

        // A body that brings nothing more is idle since its last bytes: it makes room though
        // its request has begun. The request being handled is never closed.
        tick().await;
        let fifth = connections.admit(5, 3).expect("room made");
        assert!(receiving.close.is_cancelled(), "the stalled body made room");
        assert!(!handled.close.is_cancelled() && !fourth.close.is_cancelled());

        // Once its body is whole, a request is handled: busy, never closed for room.
        let on_fourth = Arrival::start(&fourth, false);
        on_fourth.received(16_000);
        on_fourth.finished();
        let _fifth = Arrival::start(&fifth, true);
        assert!(
            connections.admit(6, 3).is_none(),
            "every open connection is handling a request"
        );
        assert!(!fourth.close.is_cancelled() && !fifth.close.is_cancelled());
    }

    #[test]
    fn a_body_must_keep_the_minimum_rate_after_the_grace_and_be_whole_by_the_timeout() {
        let limits = Limits {
            body_timeout: Duration::from_secs(10),
            body_min_rate: 500,
            ..Limits::default()
        };
        let header_at = Instant::now();
        let after = |received| limits.body_deadline(header_at, received) - header_at;
        assert_eq!(after(0), RATE_GRACE, "nothing yet: only the grace");
        assert_eq!(after(1), RATE_GRACE + Duration::from_millis(2));
        // One byte every 5 s is far below 500 bytes a second: late soon after the grace.
        assert!(after(2) < Duration::from_secs(3));
        assert_eq!(after(2_000), RATE_GRACE + Duration::from_secs(4));
        // However steadily it comes, the body is whole by the timeout.
        assert_eq!(after(16_000), Duration::from_secs(10));
        assert_eq!(after(u64::MAX), Duration::from_secs(10));

        let no_rate = Limits {
            body_min_rate: 0,
            ..limits
        };
        assert_eq!(
            no_rate.body_deadline(header_at, 0) - header_at,
            Duration::from_secs(10),
            "without a minimum rate, only the timeout"
        );
    }
}
