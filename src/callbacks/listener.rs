//! The callback endpoint: `POST` (or `GET`) `callbacks.path` on `callbacks.listen`, served
//! with the same limits as `http.listen` ([`crate::listener`]). It accepts nothing but
//! signed callbacks: a bad or missing `pg_sig` is answered 403 and changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Claim, MAX_BODY_BYTES, fields, fingerprint, ok_response, signature};
use crate::engine::Engine;
use crate::listener::{self, Limits};
use crate::store::callbacks::{self as store, Recorded};

/// Callbacks received, by `outcome`: `verified` (new), `replayed` (seen before), `rejected`
/// (bad or missing signature) or `failed` (not recorded: the database did not answer).
pub const CALLBACKS: &str = "freedompay_recon_callbacks_total";
/// Verified new callbacks by how they were matched: `payment_id`, `order_id`, `untracked`
/// (tracking started by the callback) or `unmatched` (no usable id).
pub const CALLBACKS_MATCHED: &str = "freedompay_recon_callbacks_matched_total";

/// Gives the endpoint's metrics their help text.
pub fn describe() {
    metrics::describe_counter!(
        CALLBACKS,
        "Result-URL callbacks received, by outcome: verified, replayed, rejected (bad or missing \
         signature) or failed (not recorded)."
    );
    metrics::describe_counter!(
        CALLBACKS_MATCHED,
        "Verified new callbacks by match: payment_id, order_id, untracked (tracking started) or \
         unmatched."
    );
}

/// What the endpoint needs.
#[derive(Clone)]
pub struct CallbackListener {
    pub engine: Engine,
    /// The script name `pg_sig` is made for (`callbacks.script_name`).
    pub script_name: Arc<str>,
    pub secret: SecretString,
}

/// Serves `path` on `listener` within `limits` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    path: &str,
    state: CallbackListener,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(path, post(callback).get(callback))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    listener::serve(listener, app, limits, shutdown).await
}

async fn callback(
    State(state): State<CallbackListener>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let fields = fields(query.as_deref(), &body);
    if !signature::verify(&state.script_name, &fields, &state.secret) {
        metrics::counter!(CALLBACKS, "outcome" => "rejected").increment(1);
        return (StatusCode::FORBIDDEN, "pg_sig does not verify\n").into_response();
    }
    let claim = Claim::read(&fields);
    let recorded = store::record(state.engine.pool(), &fields, &fingerprint(&fields), &claim).await;
    match recorded {
        Ok(Recorded::Replay) => {
            metrics::counter!(CALLBACKS, "outcome" => "replayed").increment(1);
        }
        Ok(Recorded::New { matched }) => {
            metrics::counter!(CALLBACKS, "outcome" => "verified").increment(1);
            let by = matched.as_ref().map_or("unmatched", |(_, by)| by.as_str());
            metrics::counter!(CALLBACKS_MATCHED, "by" => by).increment(1);
            match &matched {
                Some((payment_id, by)) => {
                    tracing::info!(payment_id = %payment_id, matched_by = by.as_str(), "callback: payment due now");
                    state.engine.wake();
                }
                None => tracing::warn!(
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
