//! The simulator calls back (issue 18, item 6): with a [`CallbackPlan`], a payment whose
//! scripted replies end in `success` or `error` settles a while after the simulator learns
//! of it (its first poll, or [`super::Simulator::expect`]): until then it answers `process`,
//! from then on the terminal reply, and at that moment it POSTs a signed Result-URL request
//! to the plan's URL, as Freedom Pay does. Some are lost, some sent again with a new salt
//! (the provider's retries), as the plan says. Which ones is decided by the payment id, so a
//! run can be repeated.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;

use super::Reply;
use crate::callbacks::signature;
use crate::settings::default_script_name;

/// When and how the simulator calls back.
#[derive(Debug, Clone)]
pub struct CallbackPlan {
    /// Where to POST (the daemon's `callbacks.listen` and `callbacks.path`).
    pub url: reqwest::Url,
    /// The merchant's secret key (`merchant.secret`).
    pub secret: SecretString,
    /// The share of callbacks never sent (0 to 1).
    pub loss: f64,
    /// Extra copies of each callback sent, each with a new salt, 100 ms apart.
    pub duplicates: u32,
    /// From settling to the callback.
    pub delay: Duration,
    /// From the simulator learning of a payment to its settling, on average (each payment
    /// takes between half and one and a half times this, by its id).
    pub settle_after: Duration,
}

fn id_hash(id: &str, salt: u64) -> u64 {
    let mut hasher = DefaultHasher::new();
    salt.hash(&mut hasher);
    id.hash(&mut hasher);
    hasher.finish()
}

impl CallbackPlan {
    /// When a payment first seen at `seen` settles.
    pub fn settles_at(&self, id: &str, seen: Instant) -> Instant {
        let spread = 0.5 + (id_hash(id, 1) % 1000) as f64 / 1000.0;
        seen + self.settle_after.mul_f64(spread)
    }

    /// Whether this payment's callback is lost.
    pub fn lost(&self, id: &str) -> bool {
        ((id_hash(id, 2) % 10_000) as f64) < self.loss * 10_000.0
    }
}

/// What a terminal reply says: paid (`success`) or failed (`error`), with its amount,
/// currency and order id as the invoice shows them. `None` for anything else.
pub fn outcome_of(reply: &Reply) -> Option<Outcome> {
    let (body, http_status) = match reply {
        Reply::Json { body, http_status } => (body, http_status),
        // A slow answer is still the answer.
        Reply::Delay { then, .. } => return outcome_of(then),
        _ => return None,
    };
    if *http_status != 200 {
        return None;
    }
    let paid = match body.get("paymentStatus")?.as_str()? {
        "success" => true,
        "error" => false,
        _ => return None,
    };
    let text = |field: &str| match body.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Some(Outcome {
        paid,
        amount: text("amount"),
        currency: text("currency"),
        order_id: text("orderId"),
    })
}

/// A terminal outcome, as the callback reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub paid: bool,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub order_id: Option<String>,
}

impl Outcome {
    /// The reply before settling: the same invoice, still in progress.
    pub fn in_progress(&self) -> Reply {
        Reply::invoice(
            "process",
            self.amount.as_deref().unwrap_or("0"),
            self.currency.as_deref().unwrap_or("KZT"),
        )
    }

    /// The Result-URL request's fields for a payment settled at `paid_at`, signed for
    /// `plan`'s script with a fresh salt (a retry differs only in salt and signature).
    pub fn signed_fields(
        &self,
        payment_id: &str,
        paid_at: chrono::DateTime<chrono::Utc>,
        plan: &CallbackPlan,
    ) -> Vec<(String, String)> {
        let mut fields = vec![("pg_payment_id".to_owned(), payment_id.to_owned())];
        let mut push = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                fields.push((name.to_owned(), value));
            }
        };
        push("pg_order_id", self.order_id.clone());
        push("pg_amount", self.amount.clone());
        push("pg_currency", self.currency.clone());
        push(
            "pg_result",
            Some(if self.paid { "1" } else { "0" }.to_owned()),
        );
        // In the provider's own zone, without an offset, as Freedom Pay sends it (Almaty,
        // provider.naive_utc_offset's default).
        let almaty = chrono::FixedOffset::east_opt(5 * 3600).expect("a valid offset");
        push(
            "pg_payment_date",
            Some(
                paid_at
                    .with_timezone(&almaty)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
            ),
        );
        push("pg_can_reject", Some("0".to_owned()));
        push("pg_testing_mode", Some("1".to_owned()));
        push("pg_salt", Some(hex::encode(rand::random::<[u8; 8]>())));
        let script = default_script_name(plan.url.path()).to_owned();
        let sig = signature::sign(&script, &fields, &plan.secret);
        fields.push((signature::SIG.to_owned(), sig));
        fields
    }
}

/// Sends `payment_id`'s callback (and its duplicates) once it settled plus the plan's delay,
/// unless the plan loses it. Failures are logged: the daemon's schedule still finds it.
pub async fn call_back(
    client: reqwest::Client,
    plan: std::sync::Arc<CallbackPlan>,
    payment_id: String,
    outcome: Outcome,
    settles_at: Instant,
) {
    tokio::time::sleep_until(settles_at).await;
    let paid_at = chrono::Utc::now();
    tokio::time::sleep(plan.delay).await;
    if plan.lost(&payment_id) {
        return;
    }
    for copy in 0..=plan.duplicates {
        if copy > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let fields = outcome.signed_fields(&payment_id, paid_at, &plan);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&fields)
            .finish();
        let sent = client
            .post(plan.url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::warn!(
                payment_id,
                status = response.status().as_u16(),
                "simulator: the callback was not accepted"
            ),
            Err(e) => tracing::warn!(payment_id, error = %e, "simulator: the callback failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(loss: f64) -> CallbackPlan {
        CallbackPlan {
            url: "http://127.0.0.1:9/freedompay/result".parse().unwrap(),
            secret: SecretString::from("k".to_owned()),
            loss,
            duplicates: 0,
            delay: Duration::ZERO,
            settle_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_share_lost_is_the_plans_and_repeatable() {
        let lost = (0..10_000)
            .filter(|i| plan(0.05).lost(&format!("p-{i}")))
            .count();
        assert!((400..600).contains(&lost), "{lost} of 10,000 lost");
        assert!(!(0..1000).any(|i| plan(0.0).lost(&format!("p-{i}"))));
        assert_eq!(plan(0.05).lost("p-7"), plan(0.05).lost("p-7"));
    }

    #[test]
    fn a_callback_is_signed_for_the_urls_script_and_verifies() {
        let outcome =
            outcome_of(&Reply::invoice("success", "5000.00", "KZT").with("orderId", "A-1".into()))
                .unwrap();
        assert!(outcome.paid);
        let fields = outcome.signed_fields("123", chrono::Utc::now(), &plan(0.0));
        assert!(signature::verify(
            "result",
            &fields,
            &SecretString::from("k".to_owned())
        ));
        let value = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("pg_amount"), Some("5000.00"));
        assert_eq!(value("pg_order_id"), Some("A-1"));
        assert_eq!(value("pg_result"), Some("1"));
        assert_eq!(outcome_of(&Reply::invoice("process", "1", "KZT")), None);
        let slow = Reply::invoice("error", "1", "KZT").delayed(Duration::from_millis(20));
        assert_eq!(outcome_of(&slow).map(|o| o.paid), Some(false));
    }
}
