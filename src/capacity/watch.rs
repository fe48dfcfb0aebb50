//! The refund watch's cost in `plan`: every paid payment is asked about once at each point of
//! `refunds.watch` within `refunds.watch_for` (`engine::watch`), in the rate budget polls use.
//! Counted in steady state: a day's paid payments each cost that many looks over their
//! watch, so a day of looks is a day's paid payments times the looks.

use std::time::Duration;

use super::Plan;

/// What the watch adds to a plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchCost {
    /// Looks per paid payment.
    pub looks: usize,
    /// Status requests a day, once the watch is in steady state.
    pub requests: u64,
    /// The longest a refund waits to be seen: the widest gap between looks (from the payment
    /// to the first, then between two).
    pub worst_lag: Duration,
    /// The last look after the payment: a refund after it is not seen by the watch.
    pub horizon: Duration,
}

impl WatchCost {
    pub fn of(plan: &Plan, watch: &[Duration], watch_for: Duration) -> Self {
        let looks: Vec<Duration> = watch.iter().copied().filter(|&d| d <= watch_for).collect();
        let mut previous = Duration::ZERO;
        let worst_lag = looks
            .iter()
            .map(|&look| {
                let gap = look.saturating_sub(previous);
                previous = look;
                gap
            })
            .max()
            .unwrap_or_default();
        Self {
            looks: looks.len(),
            requests: plan.by_outcome[0].1 * looks.len() as u64,
            worst_lag,
            horizon: looks.last().copied().unwrap_or_default(),
        }
    }

    /// Requests per payment the watch adds.
    pub fn per_payment(&self, plan: &Plan) -> f64 {
        self.requests as f64 / plan.payments.max(1) as f64
    }

    /// The rate the plan needs with the watch.
    pub fn needed_rate(&self, plan: &Plan) -> f64 {
        plan.needed_rate() + self.requests as f64 / 86_400.0
    }

    /// Whether the budget holds polls and the watch together.
    pub fn fits(&self, plan: &Plan) -> bool {
        plan.rate_budget == 0 || self.needed_rate(plan) <= f64::from(plan.rate_budget)
    }

    /// The watch's lines of the plan. `watched`: merchant credentials are set.
    pub fn render(&self, plan: &Plan, watched: bool) -> String {
        // The ladder is written in days: say it in days, not in humantime's 30.44-day months.
        let human = |d: Duration| match d.as_secs() {
            s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
            _ => humantime::format_duration(d).to_string(),
        };
        format!(
            "refund watch{}: {} look{} per paid payment, +{:.2} requests per payment ({} a day \
             in steady state)\nwith the watch: requests per payment {:.2}, rate needed {:.2}/s{}\n\
             a refund is seen at most {} after it is made, up to {} after the payment; later \
             ones, and chargebacks, are not seen by the watch",
            if watched {
                ""
            } else {
                " (merchant.id and merchant.secret not set: nothing is asked until they are)"
            },
            self.looks,
            if self.looks == 1 { "" } else { "s" },
            self.per_payment(plan),
            self.requests,
            plan.requests_per_payment() + self.per_payment(plan),
            self.needed_rate(plan),
            if self.fits(plan) {
                ""
            } else {
                ": DOES NOT FIT"
            },
            human(self.worst_lag),
            human(self.horizon),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(paid: u64, payments: u64, requests: u64, budget: u32) -> Plan {
        Plan {
            payments,
            requests,
            by_outcome: [("paid", paid, 0), ("failed", 0, 0), ("abandoned", 0, 0)],
            called_back: 0,
            paid_lag: Default::default(),
            failed_lag: Default::default(),
            routine_wait: Default::default(),
            lifetime_flagged: 0,
            lifetime_on_time: 0,
            rate_budget: budget,
        }
    }

    #[test]
    fn each_paid_payment_costs_one_request_per_look_within_the_horizon() {
        let day = |n: u64| Duration::from_secs(n * 86_400);
        let plan = plan(70, 100, 181, 0);
        let cost = WatchCost::of(&plan, &[day(1), day(7), day(30), day(90)], day(60));
        assert_eq!(cost.looks, 3, "the 90-day look is past the horizon");
        assert_eq!(cost.requests, 210);
        assert!((cost.per_payment(&plan) - 2.10).abs() < 1e-9);
        assert_eq!(
            cost.worst_lag,
            day(23),
            "between the 7- and the 30-day looks"
        );
        assert_eq!(cost.horizon, day(30));
        let text = cost.render(&plan, true);
        assert!(
            text.contains("with the watch: requests per payment 3.91"),
            "{text}"
        );
        // A budget the watch overruns says so.
        let tight = self::plan(86_400, 86_400, 86_400, 2);
        let cost = WatchCost::of(&tight, &[day(1), day(7)], day(60));
        assert!(!cost.fits(&tight));
        assert!(cost.render(&tight, false).contains("DOES NOT FIT"));
        assert!(
            cost.render(&tight, false)
                .contains("merchant.id and merchant.secret not set")
        );
    }
}
