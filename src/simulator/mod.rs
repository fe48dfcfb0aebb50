//! A stand-in for Freedom Pay's `GET /v5/partner/invoice/info`, speaking its real protocol:
//! it verifies `X-JWS-Signature` with the configured partner credentials (401 with the
//! provider's error shape when wrong) and answers each payment id from a scripted sequence
//! of replies, the last one repeating.
//!
//! Tests drive the daemon against it; `freedompay-recon simulate` serves it to people.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::provider::{INVOICE_INFO_PATH, ParamsMode, verify_detached};

mod callbacks;
mod scenario;
pub mod settlement;
mod status;
pub mod stories;

pub use crate::provider::merchant_status::MerchantAccount;
pub use callbacks::CallbackPlan;
pub use status::Refund;

pub use scenario::{Builtin, Scenario, ScenarioError, expected_amount};

/// One scripted reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// A JSON body (an invoice, a partner error, anything), HTTP 200 unless given.
    Json {
        body: Value,
        #[serde(default = "ok")]
        http_status: u16,
    },
    /// Any HTTP status with a text body (HTML, truncated JSON, nothing), an optional
    /// `Retry-After` and an optional `Location` (a redirect, as a misconfigured proxy sends).
    Text {
        #[serde(default = "ok")]
        http_status: u16,
        #[serde(default)]
        body: String,
        #[serde(default)]
        content_type: Option<String>,
        #[serde(default)]
        retry_after: Option<String>,
        #[serde(default)]
        location: Option<String>,
    },
    /// Waits, then sends `then`.
    Delay {
        #[serde(with = "humantime_serde")]
        delay: Duration,
        then: Box<Reply>,
    },
    /// Drops the connection before the response is complete.
    Drop,
}

fn ok() -> u16 {
    200
}

impl Reply {
    /// An invoice body with the given status and amount; adjust with [`Reply::with`].
    pub fn invoice(status: &str, amount: &str, currency: &str) -> Self {
        Self::Json {
            body: json!({
                "paymentStatus": status,
                "amount": exact_number(amount),
                "currency": currency,
                "fee": exact_number("0"),
                "discount": exact_number("0"),
                "orderId": null,
                "merchantId": "555555",
                "merchantName": "Simulated merchant",
                "description": "simulated payment",
                "lifetime": 86400,
                "facilitatorIBAN": "KZ505518729251417KZT",
                "dt": chrono::Utc::now().to_rfc3339(),
            }),
            http_status: 200,
        }
    }

    /// Sets a field of a JSON body (a no-op on other replies).
    pub fn with(mut self, field: &str, value: Value) -> Self {
        if let Self::Json {
            body: Value::Object(map),
            ..
        } = &mut self
        {
            map.insert(field.to_owned(), value);
        }
        self
    }

    /// The provider's "not found" partner error.
    pub fn not_found() -> Self {
        Self::Json {
            body: json!({
                "status": "error",
                "error_code": "404",
                "error_description": "Payment not found",
                "dt": chrono::Utc::now().to_rfc3339(),
            }),
            http_status: 200,
        }
    }

    pub fn status(http_status: u16, retry_after: Option<&str>) -> Self {
        Self::Text {
            http_status,
            body: String::new(),
            content_type: None,
            retry_after: retry_after.map(str::to_owned),
            location: None,
        }
    }

    pub fn text(http_status: u16, body: &str, content_type: &str) -> Self {
        Self::Text {
            http_status,
            body: body.to_owned(),
            content_type: Some(content_type.to_owned()),
            retry_after: None,
            location: None,
        }
    }

    /// A redirect to `location`.
    pub fn redirect(http_status: u16, location: &str) -> Self {
        Self::Text {
            http_status,
            body: String::new(),
            content_type: None,
            retry_after: None,
            location: Some(location.to_owned()),
        }
    }

    pub fn delayed(self, delay: Duration) -> Self {
        Self::Delay {
            delay,
            then: Box::new(self),
        }
    }
}

/// A JSON number with exactly this text (`serde_json` keeps it with `arbitrary_precision`).
pub fn exact_number(text: &str) -> Value {
    serde_json::from_str::<serde_json::Number>(text)
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// The partner credentials the simulator accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub auth_id: String,
    pub secret: SecretString,
    pub params: ParamsMode,
}

/// A request the simulator received.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub payment_id: String,
    /// When the request arrived.
    pub at: Instant,
    /// The HTTP status answered (0 for a dropped connection).
    pub http_status: u16,
    /// The request's `X-Request-Id` and `Accept` headers, as sent.
    pub request_id: Option<String>,
    pub accept: Option<String>,
}

struct Shared {
    credentials: Credentials,
    scenario: Mutex<Scenario>,
    calls: Mutex<HashMap<String, usize>>,
    /// Requests received so far, for whoever waits on a count ([`Simulator::wait_for_calls`]).
    received: tokio::sync::watch::Sender<usize>,
    log: Mutex<Vec<LoggedRequest>>,
    keep_log: AtomicBool,
    /// With a plan, payments settle by time and are called back ([`Simulator::call_back`]).
    callbacks: Mutex<Option<Arc<CallbackPlan>>>,
    /// When each payment settles, from when the simulator learned of it.
    settling: Mutex<HashMap<String, Instant>>,
    /// Id prefixes never called back ([`Simulator::silence`]).
    silent: Mutex<Vec<String>>,
    /// For each payment settling by time: the requests answered until the first answer that
    /// showed its outcome (that one included), and whether that answer has gone out.
    to_outcome: Mutex<HashMap<String, (usize, bool)>>,
    /// Sends the callbacks; no redirect is followed.
    client: reqwest::Client,
    /// With a teller, payments told a story are answered by it ([`Simulator::tell`]).
    teller: Mutex<Option<Arc<stories::Teller>>>,
    told: Mutex<HashMap<String, stories::Told>>,
    /// With an account, the Merchant status API answers ([`Simulator::merchant_account`]).
    merchant: Mutex<Option<MerchantAccount>>,
    /// Each payment's refunds, in the order made ([`Simulator::refund`]).
    refunds: Mutex<HashMap<String, Vec<Refund>>>,
    /// The invoice each payment was last answered with (a 200): what the status API states.
    last_invoice: Mutex<HashMap<String, serde_json::Value>>,
    /// Each payment's reversals ([`Simulator::reverse`]).
    reversals: Mutex<HashMap<String, Vec<Refund>>>,
    /// Amounts the status API states instead of the invoice's ([`Simulator::status_amount`]).
    status_amounts: Mutex<HashMap<String, String>>,
}

impl Shared {
    /// When `id` settles, if callbacks are on and its replies end in `success` or `error`;
    /// the first time, its callback is scheduled.
    fn settling(&self, id: &str) -> Option<(Instant, callbacks::Outcome)> {
        let plan = self.callbacks.lock().expect("callbacks lock").clone()?;
        let last = self
            .scenario
            .lock()
            .expect("scenario lock")
            .reply(id, usize::MAX);
        let outcome = callbacks::outcome_of(&last)?;
        let mut settling = self.settling.lock().expect("settling lock");
        let at = *settling.entry(id.to_owned()).or_insert_with(|| {
            let at = plan.settles_at(id, Instant::now());
            if !self.silenced(id) {
                tokio::spawn(callbacks::call_back(
                    self.client.clone(),
                    Arc::clone(&plan),
                    id.to_owned(),
                    outcome.clone(),
                    at,
                ));
            }
            at
        });
        Some((at, outcome))
    }

    fn silenced(&self, id: &str) -> bool {
        let silent = self.silent.lock().expect("silent lock");
        silent.iter().any(|prefix| id.starts_with(prefix.as_str()))
    }

    /// Counts a request for a payment settling by time; `shows_outcome` when it was answered
    /// with the outcome.
    fn count_until_outcome(&self, id: &str, shows_outcome: bool) {
        let mut counts = self.to_outcome.lock().expect("to_outcome lock");
        let (requests, shown) = counts.entry(id.to_owned()).or_default();
        if !*shown {
            *requests += 1;
            *shown = shows_outcome;
        }
    }
}

/// A payment the simulator settled by time ([`Simulator::call_back`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub payment_id: String,
    /// When it settled (paid or failed), on the wall clock: what a detection lag counts from.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Requests for it answered until the first one that showed its outcome, that one
    /// included; 0 while none has.
    pub requests_to_outcome: usize,
    /// Its callback was sent: the plan did not lose it, and its id is not silenced.
    pub called_back: bool,
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Simulator {
    /// Serves on `listener` until dropped. `keep_log` records every request (tests); leave it
    /// off for long runs.
    pub fn spawn(
        listener: TcpListener,
        credentials: Credentials,
        scenario: Scenario,
        keep_log: bool,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            credentials,
            scenario: Mutex::new(scenario),
            calls: Mutex::new(HashMap::new()),
            received: tokio::sync::watch::Sender::new(0),
            log: Mutex::new(Vec::new()),
            keep_log: AtomicBool::new(keep_log),
            callbacks: Mutex::new(None),
            settling: Mutex::new(HashMap::new()),
            silent: Mutex::new(Vec::new()),
            to_outcome: Mutex::new(HashMap::new()),
            client: crate::outbound::client(Duration::from_secs(10), None)
                .map_err(std::io::Error::other)?,
            teller: Mutex::new(None),
            told: Mutex::new(HashMap::new()),
            merchant: Mutex::new(None),
            refunds: Mutex::new(HashMap::new()),
            reversals: Mutex::new(HashMap::new()),
            last_invoice: Mutex::new(HashMap::new()),
            status_amounts: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        let app = Router::new()
            .route(INVOICE_INFO_PATH, get(invoice_info))
            .route(status::PATH, post(status::serve))
            .with_state(Arc::clone(&shared));
        let until = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok(Self { addr, shared, stop })
    }

    /// The base URL to put in `provider.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, payments whose replies end in `success` or `error` settle by time and are
    /// called back as `plan` says (see [`CallbackPlan`]).
    pub fn call_back(&self, plan: CallbackPlan) {
        *self.shared.callbacks.lock().expect("callbacks lock") = Some(Arc::new(plan));
    }

    /// Payments whose id starts with `prefix` still settle by time but are never called back
    /// (from their first poll on): a merchant whose Result URL misses them, or a comparison.
    pub fn silence(&self, prefix: &str) {
        self.shared
            .silent
            .lock()
            .expect("silent lock")
            .push(prefix.to_owned());
    }

    /// Starts the settling clock of `ids` now, as if they had been polled: their callbacks
    /// come whether or not anyone polls them.
    pub fn expect<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.shared.settling(id);
        }
    }

    /// The payments settled by now (with a plan), in no particular order.
    pub fn settled(&self) -> Vec<Settled> {
        let plan = self
            .shared
            .callbacks
            .lock()
            .expect("callbacks lock")
            .clone();
        let (now, wall) = (Instant::now(), chrono::Utc::now());
        let counts = self
            .shared
            .to_outcome
            .lock()
            .expect("to_outcome lock")
            .clone();
        let settling = self.shared.settling.lock().expect("settling lock");
        settling
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, at)| Settled {
                payment_id: id.clone(),
                at: wall - chrono::TimeDelta::from_std(now - *at).unwrap_or_default(),
                requests_to_outcome: counts
                    .get(id)
                    .filter(|(_, shown)| *shown)
                    .map_or(0, |(n, _)| *n),
                called_back: plan.as_ref().is_some_and(|plan| !plan.lost(id))
                    && !self.shared.silenced(id),
            })
            .collect()
    }

    /// From now on, payments told a story ([`Simulator::tell`]) are answered as `mix`'s
    /// provider answers it by their age, and those whose story says so are called back as
    /// `callbacks` says ([`stories`]).
    pub fn tell_stories(&self, mix: crate::capacity::Mix, callbacks: Option<CallbackPlan>) {
        *self.shared.teller.lock().expect("teller lock") = Some(Arc::new(stories::Teller {
            mix,
            callbacks: callbacks.map(Arc::new),
        }));
    }

    /// Tells `payment_id`'s story, created at `created`; its callback, if it has one, is on
    /// its way from now. Needs [`Simulator::tell_stories`] first.
    pub fn tell(
        &self,
        payment_id: &str,
        created: chrono::DateTime<chrono::Utc>,
        story: crate::capacity::Story,
    ) {
        let teller = self
            .shared
            .teller
            .lock()
            .expect("teller lock")
            .clone()
            .expect("tell_stories first");
        let told = stories::Told { created, story };
        self.shared
            .told
            .lock()
            .expect("told lock")
            .insert(payment_id.to_owned(), told);
        if let Some(plan) = &teller.callbacks {
            tokio::spawn(stories::call_back(
                self.shared.client.clone(),
                Arc::clone(plan),
                payment_id.to_owned(),
                told,
                teller.mix.callback_delay,
            ));
        }
    }

    /// From now on, the Merchant status API answers for `account` (before: 404).
    pub fn merchant_account(&self, account: MerchantAccount) {
        *self.shared.merchant.lock().expect("merchant lock") = Some(account);
    }

    /// The provider refunds part or all of `payment_id`: its status answers list it from now.
    pub fn refund(&self, payment_id: &str, refund: Refund) {
        self.shared
            .refunds
            .lock()
            .expect("refunds lock")
            .entry(payment_id.to_owned())
            .or_default()
            .push(refund);
    }

    /// The provider releases (reverses) part or all of `payment_id`: its status answers list
    /// it among `pg_revoked_payments` from now.
    pub fn reverse(&self, payment_id: &str, reversal: Refund) {
        self.shared
            .reversals
            .lock()
            .expect("reversals lock")
            .entry(payment_id.to_owned())
            .or_default()
            .push(reversal);
    }

    /// From now on the status API states `amount` for `payment_id`, whatever `invoice/info`
    /// says: the two channels disagree.
    pub fn status_amount(&self, payment_id: &str, amount: &str) {
        self.shared
            .status_amounts
            .lock()
            .expect("status amounts lock")
            .insert(payment_id.to_owned(), amount.to_owned());
    }

    /// What the provider would put in its registries: each payment last answered `success`
    /// (its amount, currency, order and time as answered), and each refund and reversal made,
    /// in its currency. Payments in order of id.
    pub fn settlement_ops(&self) -> (Vec<settlement::Paid>, Vec<settlement::Returned>) {
        let invoices = self
            .shared
            .last_invoice
            .lock()
            .expect("last invoice lock")
            .clone();
        let text = |v: &serde_json::Value, key: &str| match v.get(key) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let mut paid: Vec<settlement::Paid> = invoices
            .iter()
            .filter(|(_, v)| text(v, "paymentStatus").as_deref() == Some("success"))
            .filter_map(|(id, v)| {
                Some(settlement::Paid {
                    payment_id: id.clone(),
                    order_id: text(v, "orderId"),
                    amount: text(v, "amount")?.parse().ok()?,
                    currency: text(v, "currency")?,
                    at: text(v, "dt")
                        .and_then(|dt| chrono::DateTime::parse_from_rfc3339(&dt).ok())
                        .map_or_else(chrono::Utc::now, |dt| dt.to_utc()),
                })
            })
            .collect();
        paid.sort_by(|a, b| a.payment_id.cmp(&b.payment_id));
        let zone = chrono::FixedOffset::east_opt(5 * 3600).expect("+05:00");
        let mut returned = Vec::new();
        for (reversal, made) in [
            (
                false,
                self.shared.refunds.lock().expect("refunds lock").clone(),
            ),
            (
                true,
                self.shared
                    .reversals
                    .lock()
                    .expect("reversals lock")
                    .clone(),
            ),
        ] {
            for (payment_id, list) in made {
                let currency = invoices
                    .get(&payment_id)
                    .and_then(|v| text(v, "currency"))
                    .unwrap_or_else(|| "KZT".into());
                for r in list {
                    let Ok(amount) = r.amount.parse() else {
                        continue;
                    };
                    let at = chrono::NaiveDateTime::parse_from_str(&r.date, "%Y-%m-%d %H:%M:%S")
                        .ok()
                        .and_then(|t| t.and_local_timezone(zone).single())
                        .map_or_else(chrono::Utc::now, |t| t.to_utc());
                    returned.push(settlement::Returned {
                        id: r.payment_id,
                        payment_id: payment_id.clone(),
                        reversal,
                        amount,
                        currency: currency.clone(),
                        at,
                    });
                }
            }
        }
        returned.sort_by(|a, b| a.id.cmp(&b.id));
        (paid, returned)
    }

    /// Replaces the scenario; per-id positions carry on.
    pub fn set_scenario(&self, scenario: Scenario) {
        *self.shared.scenario.lock().expect("scenario lock") = scenario;
    }

    /// Every request so far (when started with `keep_log`).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// Starts or stops recording every request.
    pub fn record_requests(&self, on: bool) {
        self.shared.keep_log.store(on, Ordering::Relaxed);
    }

    /// The recorded requests, emptying the record.
    pub fn take_requests(&self) -> Vec<LoggedRequest> {
        std::mem::take(&mut *self.shared.log.lock().expect("log lock"))
    }

    /// Requests per payment id so far.
    pub fn calls(&self) -> HashMap<String, usize> {
        self.shared.calls.lock().expect("calls lock").clone()
    }

    pub fn total_calls(&self) -> usize {
        self.shared.calls.lock().expect("calls lock").values().sum()
    }

    /// Resolves once `count` requests have arrived (their replies may still be on the way).
    pub async fn wait_for_calls(&self, count: usize) {
        let mut received = self.shared.received.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = received.wait_for(|n| *n >= count).await;
    }
}

fn partner_error(http: StatusCode, code: Value, description: &str) -> Response {
    let body = json!({
        "status": "error",
        "error_code": code,
        "error_description": description,
        "dt": chrono::Utc::now().to_rfc3339(),
    });
    (
        http,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn invoice_info(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let arrived = Instant::now();
    let query = query.unwrap_or_default();
    if let Err(reason) = check_signature(&shared.credentials, &headers, &query) {
        tracing::debug!("simulator refused a request: {reason}");
        return partner_error(StatusCode::UNAUTHORIZED, json!(1001), "Invalid signature");
    }
    let Some(payment_id) = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "payment_id")
        .map(|(_, value)| value.into_owned())
    else {
        return partner_error(
            StatusCode::BAD_REQUEST,
            json!("400"),
            "payment_id is required",
        );
    };

    let reply = {
        let mut calls = shared.calls.lock().expect("calls lock");
        let n = calls.entry(payment_id.clone()).or_insert(0);
        let reply = shared
            .scenario
            .lock()
            .expect("scenario lock")
            .reply(&payment_id, *n);
        *n += 1;
        reply
    };
    // A told story answers by the payment's age.
    let told = shared
        .told
        .lock()
        .expect("told lock")
        .get(&payment_id)
        .copied();
    let teller = shared.teller.lock().expect("teller lock").clone();
    let reply = match (told, teller) {
        (Some(told), Some(teller)) => told.reply(chrono::Utc::now(), &teller.mix),
        _ => reply,
    };
    // Settling by time: in progress until the payment settles, then its terminal reply.
    let settling = shared.settling(&payment_id);
    let now = Instant::now();
    let reply = match &settling {
        Some((at, outcome)) if now < *at => match callbacks::outcome_of(&reply) {
            Some(_) => outcome.in_progress(),
            None => reply,
        },
        Some(_) => shared
            .scenario
            .lock()
            .expect("scenario lock")
            .reply(&payment_id, usize::MAX),
        None => reply,
    };
    if let Some((at, _)) = settling {
        shared.count_until_outcome(&payment_id, now >= at);
    }
    shared.received.send_modify(|n| *n += 1);
    let mut answered = &reply;
    while let Reply::Delay { then, .. } = answered {
        answered = then;
    }
    if let Reply::Json {
        body,
        http_status: 200,
    } = answered
    {
        shared
            .last_invoice
            .lock()
            .expect("last invoice lock")
            .insert(payment_id.clone(), body.clone());
    }
    let response = render(reply).await;
    if shared.keep_log.load(Ordering::Relaxed) {
        let status = response.status().as_u16();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        shared.log.lock().expect("log lock").push(LoggedRequest {
            payment_id,
            at: arrived,
            http_status: status,
            request_id: header("x-request-id"),
            accept: header("accept"),
        });
    }
    response
}

fn check_signature(
    credentials: &Credentials,
    headers: &HeaderMap,
    query: &str,
) -> Result<(), String> {
    let signature = headers
        .get("x-jws-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or("no X-JWS-Signature header")?;
    let header = verify_detached(
        signature,
        b"",
        credentials.secret.expose_secret().as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let expected_params = match credentials.params {
        ParamsMode::Query => query,
        ParamsMode::Empty => "",
    };
    if header.auth_id != credentials.auth_id {
        return Err(format!("unknown auth_id {:?}", header.auth_id));
    }
    if header.uri != INVOICE_INFO_PATH || header.method != "GET" || header.params != expected_params
    {
        return Err("the signed uri, method or params do not match the request".into());
    }
    Ok(())
}

async fn render(reply: Reply) -> Response {
    let mut reply = reply;
    while let Reply::Delay { delay, then } = reply {
        tokio::time::sleep(delay).await;
        reply = *then;
    }
    match reply {
        Reply::Json { body, http_status } => (
            status_code(http_status),
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response(),
        Reply::Text {
            http_status,
            body,
            content_type,
            retry_after,
            location,
        } => {
            let mut response = (status_code(http_status), body).into_response();
            let headers = response.headers_mut();
            if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert("content-type", value);
            }
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert("retry-after", value);
            }
            if let Some(value) = location.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert("location", value);
            }
            response
        }
        Reply::Drop => {
            let broken = futures_util::stream::iter([
                Ok(axum::body::Bytes::from_static(b"{\"paymentStatus\":")),
                Err(std::io::Error::other("connection dropped by the scenario")),
            ]);
            let mut response = Response::new(Body::from_stream(broken));
            *response.status_mut() = StatusCode::OK;
            response
        }
        Reply::Delay { .. } => unreachable!("delays are unwrapped above"),
    }
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
