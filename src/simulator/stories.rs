//! Stories told by time (issue 23, item 3): a payment told to the simulator with a
//! [`capacity::Story`] is answered as the capacity planner's provider answers it at that
//! moment ([`capacity::answer`]: "not found", `process`, then its outcome, or `incomplete`
//! once its lifetime runs out), and, when the story says so, called back `callback_delay`
//! after its outcome, signed. So the real daemon can be run against the very day `plan`
//! models, and the two compared request for request.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Reply;
use super::callbacks::{self, CallbackPlan, Outcome};
use crate::capacity::{self, Fate, Mix, Story};
use crate::domain::{Lifetime, PollResult};

/// The amount and currency every told payment is for.
pub const AMOUNT: &str = "100.00";
pub const CURRENCY: &str = "KZT";

/// What the simulator tells: the mix the stories were drawn from and where callbacks go.
pub struct Teller {
    pub mix: Mix,
    /// Where and how called-back stories are called back (its `loss`, `duplicates` and
    /// `settle_after` are not used: the story says whether, the mix says when).
    pub callbacks: Option<Arc<CallbackPlan>>,
}

/// One payment told: created at `created` (wall clock), living `story`.
#[derive(Debug, Clone, Copy)]
pub struct Told {
    pub created: DateTime<Utc>,
    pub story: Story,
}

impl Told {
    /// The reply for a request at `now`.
    pub fn reply(&self, now: DateTime<Utc>, mix: &Mix) -> Reply {
        let age = (now - self.created).to_std().unwrap_or_default();
        if now < self.created {
            return Reply::not_found();
        }
        match capacity::answer(self.story.fate, age, mix) {
            PollResult::Invoice(invoice) => {
                let lifetime = match invoice.lifetime {
                    Some(Lifetime::Seconds(seconds)) => seconds,
                    _ => i64::try_from(mix.lifetime.as_secs()).unwrap_or(i64::MAX),
                };
                Reply::invoice(invoice.status.as_str(), AMOUNT, CURRENCY)
                    .with("lifetime", lifetime.into())
            }
            _ => Reply::not_found(),
        }
    }

    /// When its outcome happens, and which, if it has one.
    fn outcome(&self) -> Option<(DateTime<Utc>, bool)> {
        let (when, paid) = match self.story.fate {
            Fate::Paid(when) => (when, true),
            Fate::Failed(when) => (when, false),
            Fate::Abandoned => return None,
        };
        let at = chrono::TimeDelta::from_std(when)
            .ok()
            .and_then(|d| self.created.checked_add_signed(d))?;
        Some((at, paid))
    }
}

/// Calls `payment_id` back as its story says: `mix.callback_delay` after its outcome, once,
/// signed for `plan`'s URL. Nothing when the story is not called back or has no outcome.
pub async fn call_back(
    client: reqwest::Client,
    plan: Arc<CallbackPlan>,
    payment_id: String,
    told: Told,
    delay: Duration,
) {
    if !told.story.called_back {
        return;
    }
    let Some((at, paid)) = told.outcome() else {
        return;
    };
    let until = (at - Utc::now()).to_std().unwrap_or_default();
    let settles_at = tokio::time::Instant::now() + until;
    let outcome = Outcome {
        paid,
        amount: Some(AMOUNT.to_owned()),
        currency: Some(CURRENCY.to_owned()),
        order_id: None,
    };
    let plan = Arc::new(CallbackPlan {
        loss: 0.0,
        duplicates: 0,
        delay,
        ..(*plan).clone()
    });
    callbacks::call_back(client, plan, payment_id, outcome, settles_at).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_told_payment_is_answered_as_the_plan_says_at_each_moment() {
        let mix = Mix {
            visible_after: Duration::from_secs(1),
            lifetime: Duration::from_secs(20),
            ..Mix::default()
        };
        let created = Utc::now();
        let paid = Told {
            created,
            story: Story {
                created: Duration::ZERO,
                fate: Fate::Paid(Duration::from_secs(3)),
                called_back: true,
            },
        };
        let status = |told: &Told, ms: i64| match told
            .reply(created + chrono::TimeDelta::milliseconds(ms), &mix)
        {
            Reply::Json { body, .. } => body
                .get("paymentStatus")
                .and_then(|s| s.as_str())
                .unwrap_or("not found")
                .to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(status(&paid, -5), "not found");
        assert_eq!(status(&paid, 500), "not found");
        assert_eq!(status(&paid, 1_500), "process");
        assert_eq!(status(&paid, 3_000), "success");
        let abandoned = Told {
            story: Story {
                fate: Fate::Abandoned,
                ..paid.story
            },
            ..paid
        };
        assert_eq!(status(&abandoned, 19_000), "process");
        assert_eq!(status(&abandoned, 20_000), "incomplete");
        assert_eq!(paid.outcome().map(|(_, p)| p), Some(true));
        assert_eq!(abandoned.outcome(), None);
    }
}
