//! The Merchant status API as the simulator serves it: `POST /get_status3.php`, a form signed
//! with the merchant's secret key, answered in XML signed the same way
//! (docs/provider/MERCHANT_STATUS.md). A payment's status and amount are those of the latest
//! invoice `invoice/info` answered it with (its first reply, before any poll; or the amount
//! [`super::Simulator::status_amount`] set); its refunds and reversals are those
//! [`super::Simulator::refund`] and [`super::Simulator::reverse`] gave it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

use super::{Reply, Shared};
use crate::callbacks::signature;
use crate::provider::merchant_status::{SCRIPT, answer_signature};

/// The path the simulator serves the status API on.
pub const PATH: &str = "/get_status3.php";

/// A refund the provider made of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// Its own payment id.
    pub payment_id: String,
    /// Positive: the money returned (the answer shows it negative, as the provider does).
    pub amount: String,
    /// `YYYY-MM-DD HH:MM:SS`, naive, as the provider writes it.
    pub date: String,
}

/// An element and its value, or its children.
enum Xml {
    Leaf(&'static str, String),
    List(&'static str, Vec<Xml>),
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn write(node: &Xml, out: &mut String) {
    match node {
        Xml::Leaf(name, value) => {
            out.push_str(&format!("<{name}>{}</{name}>", escape(value)));
        }
        Xml::List(name, children) => {
            out.push_str(&format!("<{name}>"));
            for child in children {
                write(child, out);
            }
            out.push_str(&format!("</{name}>"));
        }
    }
}

/// A signed `<response>` of `fields` (a fresh salt added), signed as the provider signs
/// ([`answer_signature`]).
fn answer(fields: Vec<Xml>, secret: &SecretString) -> Response {
    let mut fields = fields;
    fields.push(Xml::Leaf(
        "pg_salt",
        format!("{:016x}", rand::random::<u64>()),
    ));
    let mut body = String::from("<response>");
    for field in &fields {
        write(field, &mut body);
    }
    let sig = match answer_signature(SCRIPT, format!("{body}</response>").as_bytes(), secret) {
        Ok(sig) => sig,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    write(&Xml::Leaf("pg_sig", sig), &mut body);
    body.push_str("</response>");
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{body}"),
    )
        .into_response()
}

fn error(code: &str, description: &str, secret: &SecretString) -> Response {
    answer(
        vec![
            Xml::Leaf("pg_status", "error".into()),
            Xml::Leaf("pg_error_code", code.into()),
            Xml::Leaf("pg_error_description", description.into()),
        ],
        secret,
    )
}

pub(super) async fn serve(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(account) = shared.merchant.lock().expect("merchant lock").clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if field("pg_merchant_id") != Some(account.id.as_str()) {
        // An unknown merchant: no key to sign with, so unsigned (RESULT_URL.md).
        return (
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            "<response><pg_status>error</pg_status><pg_error_code>101</pg_error_code>\
             <pg_error_description>Unknown merchant</pg_error_description></response>",
        )
            .into_response();
    }
    if !signature::verify(SCRIPT, &fields, &account.secret) {
        return error("9998", "Incorrect signature", &account.secret);
    }
    let Some(payment_id) = field("pg_payment_id") else {
        return error("9997", "pg_payment_id is required", &account.secret);
    };
    // The invoice it was last answered with (an error invoice/info gave meanwhile is not the
    // payment's state: the status API is another service); before any, its first reply.
    let last = shared
        .last_invoice
        .lock()
        .expect("last invoice lock")
        .get(payment_id)
        .cloned();
    let body = match last {
        Some(body) => body,
        None => match shared
            .scenario
            .lock()
            .expect("scenario lock")
            .reply(payment_id, 0)
        {
            Reply::Json { body, .. } => body,
            _ => return error("340", "Payment not found", &account.secret),
        },
    };
    let text = |name: &str| match &body[name] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let Some(status) = text("paymentStatus") else {
        return error("340", "Payment not found", &account.secret);
    };
    let mut fields = vec![
        Xml::Leaf("pg_status", "ok".into()),
        Xml::Leaf("pg_payment_id", payment_id.to_owned()),
        Xml::Leaf("pg_payment_status", status),
        Xml::Leaf("pg_captured", "1".into()),
    ];
    if let Some(order) = text("orderId") {
        fields.push(Xml::Leaf("pg_order_id", order));
    }
    let stated = shared
        .status_amounts
        .lock()
        .expect("status amounts lock")
        .get(payment_id)
        .cloned();
    if let Some(amount) = stated.or_else(|| text("amount")) {
        fields.push(Xml::Leaf("pg_amount", amount));
    }
    if let Some(currency) = text("currency") {
        fields.push(Xml::Leaf("pg_currency", currency));
    }
    let children = |list: &Mutex<HashMap<String, Vec<Refund>>>| {
        list.lock()
            .expect("children lock")
            .get(payment_id)
            .cloned()
            .unwrap_or_default()
    };
    let lists = [
        (
            children(&shared.refunds),
            "pg_refund_amount",
            "pg_refund_payments",
            "pg_refund_payment",
        ),
        (
            children(&shared.reversals),
            "pg_revoke_amount",
            "pg_revoked_payments",
            "pg_revoked_payment",
        ),
    ];
    for (made, total_name, list_name, child_name) in lists {
        if made.is_empty() {
            continue;
        }
        let total: rust_decimal::Decimal = made
            .iter()
            .filter_map(|r| r.amount.parse::<rust_decimal::Decimal>().ok())
            .sum();
        fields.push(Xml::Leaf(total_name, format!("-{total}")));
        fields.push(Xml::List(
            list_name,
            made.into_iter()
                .map(|r| {
                    Xml::List(
                        child_name,
                        vec![
                            Xml::Leaf("pg_payment_id", r.payment_id),
                            Xml::Leaf("pg_payment_status", "success".into()),
                            Xml::Leaf("pg_amount", format!("-{}", r.amount)),
                            Xml::Leaf("pg_payment_date", r.date),
                        ],
                    )
                })
                .collect(),
        ));
    }
    answer(fields, &account.secret)
}
