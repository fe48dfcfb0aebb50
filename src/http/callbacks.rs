//! The callback endpoint: `POST` (or `GET`) `callbacks.path` on `callbacks.listen`, served
//! with the same limits as `http.listen` ([`crate::http::listener`]).
//!
//! Each request is checked in this order, and the first failure answers it with nothing
//! written:
//! 1. the signature, over the bytes received: bad or missing, 403 (`rejected`). It comes
//!    first so that whatever an unsigned request carries, it is only ever counted as that;
//! 2. the fields: one outside the documented `pg_*` names and `callbacks.merchant_fields`, or
//!    a documented one given twice, 400 (`refused`). Signed by the merchant's key, so either
//!    the provider sends a field nobody listed yet (the warning says which and where to add
//!    it; the provider retries for 2 hours) or someone replays a captured callback with a
//!    field renamed;
//! 3. a payment nobody tracks, when callbacks already started `callbacks.max_untracked_per_hour`
//!    payments in the last hour: 503 (`capped`), so the provider calls again later.
//!
//! Anything else signed is recorded and answered 200, even what cannot be read (a NUL, bytes
//! that are not UTF-8, an amount that is no number): the row says what, and a flag opens.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::callbacks::{Claim, MAX_BODY_BYTES, check_fields, fields, ok_response, signature};
use crate::engine::Waker;
use crate::http::listener;
use crate::settings::CallbackSettings;
use crate::settings::Limits;
use crate::store::callbacks::{self as store, MatchedBy, Received, Recorded};

/// Callbacks received, by `outcome`: `verified` (new), `replayed` (its claim seen before),
/// `rejected` (bad or missing signature), `refused` (signed, but a field outside the accepted
/// set or a documented one twice), `capped` (a payment nobody tracks, past
/// `callbacks.max_untracked_per_hour`) or `failed` (not recorded: the database did not answer).
pub const CALLBACKS: &str = "freedompay_recon_callbacks_total";
/// Verified new callbacks by how they were matched: `payment_id`, `order_id`, `untracked`
/// (tracking started by the callback) or `unmatched` (no usable id).
pub const CALLBACKS_MATCHED: &str = "freedompay_recon_callbacks_matched_total";
/// 1 while this instance refuses callbacks for untracked payments because the hourly cap is
/// reached; 0 once the hour has moved on (or one was accepted again).
pub const UNTRACKED_CAPPED: &str = "freedompay_recon_callbacks_untracked_capped";

/// How often a burst of refusals is logged: once, then a line with how many followed.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Gives the endpoint's metrics their help text.
pub fn describe() {
    metrics::describe_counter!(
        CALLBACKS,
        "Result-URL callbacks received, by outcome: verified, replayed, rejected (bad or missing \
         signature), refused (signed, with a field not accepted), capped (an untracked payment \
         past callbacks.max_untracked_per_hour) or failed (not recorded)."
    );
    metrics::describe_counter!(
        CALLBACKS_MATCHED,
        "Verified new callbacks by match: payment_id, order_id, untracked (tracking started) or \
         unmatched."
    );
    metrics::describe_gauge!(
        UNTRACKED_CAPPED,
        "1 while callbacks for payments nobody tracks are refused: callbacks.max_untracked_per_hour \
         payments were started by callbacks in the last hour."
    );
    // Present from the start, so an alert sees 0 rather than nothing.
    metrics::gauge!(UNTRACKED_CAPPED).set(0.0);
}

/// What the endpoint needs: the pool, a way to wake the sweeps, and its settings.
#[derive(Clone)]
pub struct CallbackListener {
    pub pool: sqlx::PgPool,
    pub waker: Waker,
    /// The script name `pg_sig` is made for (`callbacks.script_name`).
    pub script_name: Arc<str>,
    pub secret: SecretString,
    /// `callbacks.merchant_fields`.
    pub merchant_fields: Arc<[String]>,
    /// `callbacks.max_untracked_per_hour`.
    pub max_untracked_per_hour: u32,
    /// The script name refund notifications are signed for, when they are accepted.
    pub refund_script: Option<Arc<str>>,
    /// The provider's zone (`provider.naive_utc_offset`): `pg_payment_date` carries none.
    pub naive_offset: chrono::FixedOffset,
    /// Until when this listener was told the cap holds, while it does: [`UNTRACKED_CAPPED`]
    /// is 1 until then. Outer `None`: not capped; inner `None`: for good (a cap of 0).
    capped_until: Arc<Mutex<Option<Option<Instant>>>>,
    refusals: Arc<Throttle>,
    capped: Arc<Throttle>,
}

impl CallbackListener {
    /// `naive_offset`: the provider's zone (`provider.naive_utc_offset`); `secret`: the
    /// merchant's secret key (`merchant.secret`).
    pub fn new(
        pool: sqlx::PgPool,
        waker: Waker,
        naive_offset: chrono::FixedOffset,
        settings: &CallbackSettings,
        secret: SecretString,
    ) -> Self {
        Self {
            pool,
            waker,
            script_name: settings.script_name().into(),
            secret,
            merchant_fields: settings.merchant_fields.clone().into(),
            max_untracked_per_hour: settings.max_untracked_per_hour,
            refund_script: settings.refund_route().map(|(_, script)| script.into()),
            naive_offset,
            capped_until: Arc::default(),
            refusals: Arc::default(),
            capped: Arc::default(),
        }
    }

    fn cap_reached(&self, until: Option<chrono::DateTime<chrono::Utc>>) {
        let until = until.map(|at| {
            let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            Instant::now() + left
        });
        *self.capped_until.lock().expect("cap lock") = Some(until);
        metrics::gauge!(UNTRACKED_CAPPED).set(1.0);
    }

    /// Clears the gauge when the cap this listener saw has ended: `accepted` (an untracked
    /// payment was started again) or its time has come.
    fn cap_over(&self, accepted: bool) {
        let mut capped = self.capped_until.lock().expect("cap lock");
        let over = match *capped {
            None => false,
            Some(_) if accepted => true,
            Some(None) => false,
            Some(Some(until)) => Instant::now() >= until,
        };
        if over {
            *capped = None;
            metrics::gauge!(UNTRACKED_CAPPED).set(0.0);
        }
    }
}

/// Logs the first of a burst at once, then at most one line every [`LOG_EVERY`] saying how
/// many were not logged: a flood of forged or refused requests cannot flood the journal (the
/// counters count every one).
#[derive(Default)]
struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// `Some(n)` when this one is to be logged, `n` being how many were not since the last.
    fn admit(&self) -> Option<u64> {
        let mut state = self.state.lock().expect("throttle lock");
        let (last, skipped) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            *skipped += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(skipped))
    }
}

/// Serves `path` (and, when set, `refund_path`) on `listener` within `limits` until
/// `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    path: &str,
    refund_path: Option<&str>,
    state: CallbackListener,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // The gauge says when the cap is over even if no callback comes to find out.
    let watch = {
        let (state, stop) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = every.tick() => state.cap_over(false),
                }
            }
        })
    };
    let _watch = tokio_util::task::AbortOnDropHandle::new(watch);
    let mut app = Router::new().route(path, post(callback).get(callback));
    if let Some(refund_path) = refund_path {
        app = app.route(refund_path, post(refund_hint).get(refund_hint));
    }
    let app = app
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    listener::serve(listener, app, limits, shutdown).await
}

async fn callback(
    State(state): State<CallbackListener>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = query.as_deref().map(str::as_bytes);
    let fields = fields(query, &body);
    if !signature::verify(&state.script_name, &fields, &state.secret) {
        metrics::counter!(CALLBACKS, "outcome" => "rejected").increment(1);
        return (StatusCode::FORBIDDEN, "pg_sig does not verify\n").into_response();
    }
    if let Err(refusal) = check_fields(&fields, &state.merchant_fields) {
        metrics::counter!(CALLBACKS, "outcome" => "refused").increment(1);
        if let Some(not_logged) = state.refusals.admit() {
            tracing::warn!(
                not_logged,
                "a signed callback was refused (400), nothing recorded: {refusal}. If the \
                 provider sends it, or the merchant passes it when creating payments, add the \
                 name to callbacks.merchant_fields; otherwise someone replays a captured callback \
                 with a field renamed"
            );
        }
        return (StatusCode::BAD_REQUEST, format!("refused: {refusal}\n")).into_response();
    }
    let claim = Claim::read(&fields, state.naive_offset);
    let received = Received {
        raw_query: query,
        raw_body: &body,
        fields: &fields,
        claim: &claim,
    };
    let recorded = store::record(&state.pool, received, state.max_untracked_per_hour).await;
    match recorded {
        Ok(Recorded::Replay) => {
            metrics::counter!(CALLBACKS, "outcome" => "replayed").increment(1);
        }
        Ok(Recorded::Capped { until }) => {
            metrics::counter!(CALLBACKS, "outcome" => "capped").increment(1);
            state.cap_reached(until);
            if let Some(not_logged) = state.capped.admit() {
                tracing::warn!(
                    not_logged,
                    cap = state.max_untracked_per_hour,
                    "a verified callback names a payment nobody tracks, and callbacks started \
                     callbacks.max_untracked_per_hour payments in the last hour: answered 503 \
                     (the provider calls again every 30 minutes for 2 hours), nothing recorded"
                );
            }
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many untracked payments this hour; try again later\n",
            )
                .into_response();
        }
        Ok(Recorded::New { id, matched }) => {
            metrics::counter!(CALLBACKS, "outcome" => "verified").increment(1);
            let by = matched.as_ref().map_or("unmatched", |(_, by)| by.as_str());
            metrics::counter!(CALLBACKS_MATCHED, "by" => by).increment(1);
            if matches!(matched, Some((_, MatchedBy::Untracked))) {
                state.cap_over(true);
            }
            if let Some(problem) = &claim.problem {
                // The problem's provider text is escaped and bounded (Claim::read).
                tracing::warn!(callback.id = id, %problem, "a verified callback cannot be read whole; stored as received in recon.callbacks");
            }
            match &matched {
                Some((payment_id, by)) => {
                    tracing::info!(payment_id = %payment_id, matched_by = by.as_str(), "callback: payment due now");
                    state.waker.wake();
                }
                None => tracing::warn!(
                    callback.id = id,
                    "a verified callback names no payment id the daemon can track; stored in recon.callbacks"
                ),
            }
        }
        Err(e) => {
            // Not 200: the provider calls again (every 30 minutes, for 2 hours).
            metrics::counter!(CALLBACKS, "outcome" => "failed").increment(1);
            tracing::error!(error = %e, "callback not recorded; the provider will retry");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not recorded; try again later\n",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        ok_response(&state.script_name, &state.secret),
    )
        .into_response()
}

/// A refund notification: signed by the merchant's key for the refund path's script, it names
/// a payment (`pg_payment_id`, else a unique `pg_order_id`) whose refund watch then looks at
/// once. Nothing it claims is recorded: the Merchant status API's answer decides.
async fn refund_hint(
    State(state): State<CallbackListener>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some(script) = state.refund_script.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let query = query.as_deref().map(str::as_bytes);
    let fields = fields(query, &body);
    if !signature::verify(&script, &fields, &state.secret) {
        metrics::counter!(CALLBACKS, "outcome" => "rejected").increment(1);
        return (StatusCode::FORBIDDEN, "pg_sig does not verify\n").into_response();
    }
    let text = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 128)
    };
    match crate::store::money::hint(&state.pool, text("pg_payment_id"), text("pg_order_id")).await {
        Ok(Some(payment_id)) => {
            metrics::counter!(CALLBACKS, "outcome" => "refund_hint").increment(1);
            tracing::info!(payment_id = %crate::text::escape_invisible(&payment_id), "refund notification: the payment's refund watch looks now");
            state.waker.wake();
        }
        Ok(None) => {
            metrics::counter!(CALLBACKS, "outcome" => "refund_hint_unmatched").increment(1);
            tracing::warn!(
                "a verified refund notification names no tracked payment; nothing to look at"
            );
        }
        Err(e) => {
            metrics::counter!(CALLBACKS, "outcome" => "failed").increment(1);
            tracing::error!(error = %e, "refund notification not taken; the provider may retry");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not taken; try again later\n",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        ok_response(&script, &state.secret),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_logged_once_then_once_every_ten_seconds_with_how_many_were_not() {
        let throttle = Throttle::default();
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..299 {
            assert_eq!(throttle.admit(), None);
        }
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(throttle.admit(), Some(299));
        assert_eq!(throttle.admit(), None);
    }
}
