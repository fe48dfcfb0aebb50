//! Matching the money to the bank (issue 27, item 3), decided without I/O: which payouts the
//! bank credits paid, and which registry lines belong to which payments; `store::settlement`
//! loads the facts, and writes what this decides.
//!
//! Payouts ↔ credits, in this order, each step over what the steps before left:
//! 1. `exact`: a payout to one credit of its amount (within `tolerance`) dated on the payout's
//!    day or up to `window` days after; the nearest day first, then the lowest id.
//! 2. `credit_many_payouts`: one credit to several payouts of the `window` days before it
//!    whose nets sum to it.
//! 3. `payout_many_credits`: one payout to several credits of the `window` days after it.
//! 4. `late`: a payout to one credit of its amount after the window (up to [`LATE_DAYS`]).
//!
//! Steps 2 and 3 are a bounded search: the [`Search::candidates`] nearest in time, groups of
//! 2 to [`Search::parts`], smallest groups first (at most C(12,2)+C(12,3)+C(12,4) = 781 sums
//! with the defaults). Money is never booked twice: a payout or a credit is in at most one
//! match. A pair a person undid is never matched again by a rule.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::bank::RegistryKind;

/// How far after the window a payout's exact credit is still taken as it, late.
pub const LATE_DAYS: i64 = 60;

/// The matching's policy: `bank.match_window`, `bank.tolerance` and the search's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Days after a payout's date its credit may arrive.
    pub window_days: i64,
    /// The largest difference between a payout and its credits that still matches.
    pub tolerance: Decimal,
    pub search: Search,
}

/// Bounds of the search for several payouts in one credit, or one payout in several credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    /// Candidates looked at, the nearest in time first.
    pub candidates: usize,
    /// The most parts in one group.
    pub parts: usize,
}

impl Default for Search {
    fn default() -> Self {
        Self {
            candidates: 12,
            parts: 4,
        }
    }
}

/// A payout as the registries state it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub name: String,
    pub currency: String,
    pub date: NaiveDate,
    /// The sum of its lines' nets: what the provider owes for it.
    pub net: Decimal,
}

/// A credit from the provider's accounts, as the bank statement states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    pub id: i64,
    pub date: NaiveDate,
    pub amount: Decimal,
}

/// How payouts and credits were matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    ProviderId,
    Exact,
    CreditManyPayouts,
    PayoutManyCredits,
    Late,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderId => "provider_id",
            Self::Exact => "exact",
            Self::CreditManyPayouts => "credit_many_payouts",
            Self::PayoutManyCredits => "payout_many_credits",
            Self::Late => "late",
        }
    }
}

/// Payouts and credits matched to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankMatch {
    pub rule: Rule,
    pub payouts: Vec<String>,
    pub credits: Vec<i64>,
}

/// What stands already: matches in force, and pairs a person undid.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    pub matched_payouts: HashSet<String>,
    pub matched_credits: HashSet<i64>,
    /// (payout, credit) pairs of undone matches: never matched again by a rule.
    pub refused: HashSet<(String, i64)>,
}

/// New matches of `payouts` (in the bank's currency) to `credits`, over what `standing`
/// leaves free. Payouts whose net is not above zero are money withheld or carried forward:
/// never matched.
pub fn match_bank(
    payouts: &[Payout],
    credits: &[Credit],
    standing: &Standing,
    policy: &Policy,
) -> Vec<BankMatch> {
    let mut free = Free {
        payouts: payouts
            .iter()
            .filter(|p| p.net > Decimal::ZERO && !standing.matched_payouts.contains(&p.name))
            .collect(),
        credits: credits
            .iter()
            .filter(|c| !standing.matched_credits.contains(&c.id))
            .collect(),
        used_payouts: HashSet::new(),
        used_credits: HashSet::new(),
        standing,
        policy,
    };
    free.payouts
        .sort_by(|a, b| (a.date, &a.name).cmp(&(b.date, &b.name)));
    free.credits.sort_by_key(|c| (c.date, c.id));
    let window = policy.window_days;
    let mut found = free.one_to_one(Rule::Exact, 0, window);
    found.extend(free.credit_many_payouts());
    found.extend(free.payout_many_credits());
    found.extend(free.one_to_one(Rule::Late, window + 1, window + LATE_DAYS));
    found
}

/// What is left to match, as the steps take their share.
struct Free<'a> {
    payouts: Vec<&'a Payout>,
    credits: Vec<&'a Credit>,
    used_payouts: HashSet<&'a str>,
    used_credits: HashSet<i64>,
    standing: &'a Standing,
    policy: &'a Policy,
}

fn days(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days()
}

impl<'a> Free<'a> {
    fn open(&self, payout: &Payout, credit: &Credit) -> bool {
        !self.used_payouts.contains(payout.name.as_str())
            && !self.used_credits.contains(&credit.id)
            && !self
                .standing
                .refused
                .contains(&(payout.name.clone(), credit.id))
    }

    fn take(
        &mut self,
        rule: Rule,
        payouts: Vec<&'a Payout>,
        credits: Vec<&'a Credit>,
    ) -> BankMatch {
        let mut names: Vec<String> = payouts.iter().map(|p| p.name.clone()).collect();
        names.sort();
        let mut ids: Vec<i64> = credits.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        self.used_payouts
            .extend(payouts.iter().map(|p| p.name.as_str()));
        self.used_credits.extend(ids.iter().copied());
        BankMatch {
            rule,
            payouts: names,
            credits: ids,
        }
    }

    /// Each payout, in date order, to the nearest credit of its amount `lo..=hi` days after.
    fn one_to_one(&mut self, rule: Rule, lo: i64, hi: i64) -> Vec<BankMatch> {
        let mut found = Vec::new();
        for payout in self.payouts.clone() {
            let best = self
                .credits
                .iter()
                .filter(|c| self.open(payout, c))
                .filter(|c| (lo..=hi).contains(&days(payout.date, c.date)))
                .filter(|c| (payout.net - c.amount).abs() <= self.policy.tolerance)
                .min_by_key(|c| (days(payout.date, c.date), c.id))
                .copied();
            if let Some(credit) = best {
                found.push(self.take(rule, vec![payout], vec![credit]));
            }
        }
        found
    }

    /// Each credit, in date order, to payouts of the window before it that sum to it.
    fn credit_many_payouts(&mut self) -> Vec<BankMatch> {
        let mut found = Vec::new();
        for credit in self.credits.clone() {
            let mut near: Vec<&'a Payout> = self
                .payouts
                .iter()
                .filter(|p| self.open(p, credit))
                .filter(|p| (0..=self.policy.window_days).contains(&days(p.date, credit.date)))
                .copied()
                .collect();
            near.sort_by_key(|p| (days(p.date, credit.date), p.name.clone()));
            near.truncate(self.policy.search.candidates);
            let nets: Vec<Decimal> = near.iter().map(|p| p.net).collect();
            if let Some(group) = group_summing_to(&nets, credit.amount, self.policy) {
                let group = group.iter().map(|&i| near[i]).collect();
                found.push(self.take(Rule::CreditManyPayouts, group, vec![credit]));
            }
        }
        found
    }

    /// Each payout, in date order, to credits of the window after it that sum to it.
    fn payout_many_credits(&mut self) -> Vec<BankMatch> {
        let mut found = Vec::new();
        for payout in self.payouts.clone() {
            let mut near: Vec<&'a Credit> = self
                .credits
                .iter()
                .filter(|c| self.open(payout, c))
                .filter(|c| (0..=self.policy.window_days).contains(&days(payout.date, c.date)))
                .copied()
                .collect();
            near.sort_by_key(|c| (days(payout.date, c.date), c.id));
            near.truncate(self.policy.search.candidates);
            let amounts: Vec<Decimal> = near.iter().map(|c| c.amount).collect();
            if let Some(group) = group_summing_to(&amounts, payout.net, self.policy) {
                let group = group.iter().map(|&i| near[i]).collect();
                found.push(self.take(Rule::PayoutManyCredits, vec![payout], group));
            }
        }
        found
    }
}

/// The first group of 2 to `policy.search.parts` of `values` (indices, ascending) whose sum is
/// within `policy.tolerance` of `target`: smaller groups first, then earlier candidates.
fn group_summing_to(values: &[Decimal], target: Decimal, policy: &Policy) -> Option<Vec<usize>> {
    fn walk(
        values: &[Decimal],
        start: usize,
        left: usize,
        sum: Decimal,
        target: Decimal,
        tolerance: Decimal,
        picked: &mut Vec<usize>,
    ) -> bool {
        if left == 0 {
            return (sum - target).abs() <= tolerance;
        }
        for i in start..values.len() {
            picked.push(i);
            if walk(
                values,
                i + 1,
                left - 1,
                sum + values[i],
                target,
                tolerance,
                picked,
            ) {
                return true;
            }
            picked.pop();
        }
        false
    }
    (2..=policy.search.parts.min(values.len())).find_map(|size| {
        let mut picked = Vec::with_capacity(size);
        walk(
            values,
            0,
            size,
            Decimal::ZERO,
            target,
            policy.tolerance,
            &mut picked,
        )
        .then_some(picked)
    })
}

/// What is known of the payouts and credits after matching, for the flags: the latest day the
/// bank statements cover, and the latest payout day the registries name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    pub bank_through: Option<NaiveDate>,
    pub registry_through: Option<NaiveDate>,
}

/// A finding about a payout or a credit: open (with expected and actual) or clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: super::FlagKind,
    pub subject: String,
    pub currency: Option<String>,
    pub amount: Option<Decimal>,
    pub day: Option<NaiveDate>,
    /// `Some((expected, actual))`: the flag holds; `None`: it clears.
    pub holds: Option<(String, String)>,
}

/// The payouts and credits that need a person, given every match in force (`matches`: new
/// and standing, with the credit dates): a payout not at the bank once the statements cover
/// its window, or that arrived late; a credit no payout explains once the registries name
/// payouts up to its day.
pub fn bank_findings(
    payouts: &[Payout],
    credits: &[Credit],
    matches: &[BankMatch],
    coverage: Coverage,
    policy: &Policy,
) -> Vec<Finding> {
    let mut by_payout: BTreeMap<&str, &BankMatch> = BTreeMap::new();
    let mut matched_credits = HashSet::new();
    for m in matches {
        for p in &m.payouts {
            by_payout.insert(p, m);
        }
        matched_credits.extend(m.credits.iter().copied());
    }
    let credit_day: BTreeMap<i64, NaiveDate> = credits.iter().map(|c| (c.id, c.date)).collect();
    let mut findings = Vec::new();
    for payout in payouts.iter().filter(|p| p.net > Decimal::ZERO) {
        let due = payout.date + chrono::Duration::days(policy.window_days);
        let expected = format!(
            "{} {} at the bank by {due}",
            payout.net.normalize(),
            payout.currency
        );
        let holds = match by_payout.get(payout.name.as_str()) {
            Some(m) if m.rule == Rule::Late => {
                let arrived = m.credits.iter().filter_map(|c| credit_day.get(c)).max();
                arrived.map(|day| {
                    (
                        expected.clone(),
                        format!(
                            "arrived {day}, {} days after the window",
                            (*day - due).num_days()
                        ),
                    )
                })
            }
            Some(_) => None,
            None => match coverage.bank_through {
                Some(through) if through > due => Some((
                    expected.clone(),
                    format!("not in the bank statements up to {through}"),
                )),
                _ => None,
            },
        };
        findings.push(Finding {
            kind: super::FlagKind::PayoutNotAtBank,
            subject: format!("payout:{}", payout.name),
            currency: Some(payout.currency.clone()),
            amount: Some(payout.net),
            day: Some(payout.date),
            holds,
        });
    }
    for credit in credits {
        let holds = (!matched_credits.contains(&credit.id)
            && coverage.registry_through.is_some_and(|t| t >= credit.date))
        .then(|| {
            (
                "a payout in the registries".to_owned(),
                format!(
                    "none of the payouts up to {} sums to it",
                    coverage.registry_through.unwrap_or(credit.date)
                ),
            )
        });
        findings.push(Finding {
            kind: super::FlagKind::BankCreditUnexplained,
            subject: format!("bank_line:{}", credit.id),
            currency: None,
            amount: Some(credit.amount),
            day: Some(credit.date),
            holds,
        });
    }
    findings
}

/// A registry line waiting for its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLine {
    pub id: i64,
    pub operation_id: String,
    pub kind: RegistryKind,
    /// As stated, sign included.
    pub amount: Decimal,
    pub commission: Option<Decimal>,
    pub net: Option<Decimal>,
    pub currency: String,
    pub operation_at: chrono::DateTime<chrono::Utc>,
    /// The payment it belongs to: its parent, else (a payment line) its own id.
    pub payment_id: Option<String>,
}

/// What is recorded of a line's payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentSide {
    /// Its status, as last polled.
    pub status: String,
    /// The payment received (a `payment` money event): amount and currency.
    pub received: Option<(Decimal, String)>,
    /// The commission the provider stated otherwise (poll, status API), positive.
    pub commission: Option<Decimal>,
    /// Money that went back, positive, with its currency: every return event.
    pub returns: Vec<(Decimal, String)>,
    /// The amounts (positive) of return lines of the registries matched to it already.
    pub matched_returns: Vec<Decimal>,
}

/// What to do with a registry line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody tracks its payment, it is not paid, or a person undid its match: the flag's
    /// actual text.
    Unknown(String),
    Matched {
        /// What was recorded for the payment (received, or the return it matches).
        matched_amount: Decimal,
        /// (expected, actual) when the line disagrees with what was recorded.
        mismatch: Option<(String, String)>,
        /// The commission the line states, to book where none is booked yet.
        commission: Option<Decimal>,
        /// A return no money event records yet: to book from the registry.
        book_return: bool,
    },
}

/// The commission a payment line states: its commission, else its amount less its net.
pub fn stated_commission(line: &RegistryLine) -> Option<Decimal> {
    line.commission
        .map(|c| c.abs())
        .or_else(|| line.net.map(|net| line.amount.abs() - net.abs()))
        .filter(|c| *c > Decimal::ZERO)
}

/// Judges a line (not a fee) against its payment (`None`: nobody tracks it): the provider's
/// id names the payment; then its amount, currency and commission are compared, within
/// `tolerance`; the commission with what the provider stated otherwise, else with
/// `commission_percent` of the amount (rounded to the currency's cents).
pub fn judge_line(
    line: &RegistryLine,
    payment: Option<&PaymentSide>,
    refused: bool,
    tolerance: Decimal,
    commission_percent: Option<Decimal>,
) -> Verdict {
    let Some(payment_id) = &line.payment_id else {
        return Verdict::Unknown("the line names no payment".into());
    };
    let Some(payment) = payment else {
        return Verdict::Unknown(format!("payment {payment_id} is not tracked here"));
    };
    if refused {
        return Verdict::Unknown(format!(
            "its match to payment {payment_id} was undone by a person"
        ));
    }
    let Some((received, received_currency)) = &payment.received else {
        return Verdict::Unknown(format!(
            "payment {payment_id} is not paid here (status {})",
            payment.status
        ));
    };
    let amount = line.amount.abs();
    let money = |a: Decimal, c: &str| format!("{} {c}", a.normalize());
    if line.kind != RegistryKind::Payment {
        let returned_before = payment
            .returns
            .iter()
            .filter(|(a, c)| (*a - amount).abs() <= tolerance && *c == line.currency)
            .count();
        let matched_before = payment
            .matched_returns
            .iter()
            .filter(|a| (**a - amount).abs() <= tolerance)
            .count();
        let mismatch = (line.currency != *received_currency).then(|| {
            (
                format!("a return in {received_currency}"),
                money(amount, &line.currency),
            )
        });
        return Verdict::Matched {
            matched_amount: amount,
            mismatch,
            commission: None,
            book_return: returned_before <= matched_before && line.currency == *received_currency,
        };
    }
    let mut expected = Vec::new();
    let mut actual = Vec::new();
    if line.currency != *received_currency || (amount - received).abs() > tolerance {
        expected.push(money(*received, received_currency));
        actual.push(money(amount, &line.currency));
    }
    let stated = stated_commission(line);
    let contract = commission_percent.map(|p| {
        (amount * p / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    });
    let states_one = line.commission.is_some() || line.net.is_some();
    if let (true, Some(want)) = (states_one, payment.commission.or(contract))
        && let stated = stated.unwrap_or(Decimal::ZERO)
        && (stated - want).abs() > tolerance
    {
        expected.push(format!("commission {}", want.normalize()));
        actual.push(format!("commission {}", stated.normalize()));
    }
    Verdict::Matched {
        matched_amount: *received,
        mismatch: (!expected.is_empty()).then(|| (expected.join(", "), actual.join(", "))),
        commission: stated.filter(|_| payment.commission.is_none()),
        book_return: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, n).unwrap()
    }
    fn payout(name: &str, date: u32, net: &str) -> Payout {
        Payout {
            name: name.into(),
            currency: "KZT".into(),
            date: day(date),
            net: d(net),
        }
    }
    fn credit(id: i64, date: u32, amount: &str) -> Credit {
        Credit {
            id,
            date: day(date),
            amount: d(amount),
        }
    }
    fn policy() -> Policy {
        Policy {
            window_days: 5,
            tolerance: Decimal::ZERO,
            search: Search::default(),
        }
    }

    #[test]
    fn each_payout_meets_its_credit_once_and_groups_are_found_by_exact_sum() {
        let payouts = [
            payout("a", 1, "100"),
            payout("b", 2, "100"),
            payout("c", 3, "30"),
            payout("d", 3, "45"),
            payout("e", 4, "500"),
            payout("f", 20, "70"),
            payout("g", 21, "-15"),
        ];
        let credits = [
            credit(1, 2, "100"),
            credit(2, 3, "100"),
            credit(3, 5, "75"),
            credit(4, 6, "200"),
            credit(5, 7, "300"),
            credit(6, 28, "70"),
        ];
        let found = match_bank(&payouts, &credits, &Standing::default(), &policy());
        let got: Vec<(Rule, Vec<&str>, Vec<i64>)> = found
            .iter()
            .map(|m| {
                (
                    m.rule,
                    m.payouts.iter().map(String::as_str).collect(),
                    m.credits.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Rule::Exact, vec!["a"], vec![1]),
                (Rule::Exact, vec!["b"], vec![2]),
                (Rule::CreditManyPayouts, vec!["c", "d"], vec![3]),
                (Rule::PayoutManyCredits, vec!["e"], vec![4, 5]),
                (Rule::Late, vec!["f"], vec![6]),
            ]
        );
        let findings = bank_findings(
            &payouts,
            &credits,
            &found,
            Coverage {
                bank_through: Some(day(30)),
                registry_through: Some(day(21)),
            },
            &policy(),
        );
        let open: Vec<(&str, &str)> = findings
            .iter()
            .filter_map(|f| {
                f.holds
                    .as_ref()
                    .map(|(_, a)| (f.subject.as_str(), a.as_str()))
            })
            .collect();
        assert_eq!(
            open,
            vec![("payout:f", "arrived 2026-11-28, 3 days after the window")]
        );
    }

    #[test]
    fn a_refused_pair_is_not_matched_again_and_what_is_matched_stays() {
        let payouts = [payout("a", 1, "100"), payout("b", 1, "100")];
        let credits = [credit(1, 1, "100"), credit(2, 2, "100")];
        let mut standing = Standing::default();
        standing.refused.insert(("a".into(), 1));
        let found = match_bank(&payouts, &credits, &standing, &policy());
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].payouts[0].as_str(), found[0].credits[0]),
            ("a", 2)
        );
        assert_eq!(
            (found[1].payouts[0].as_str(), found[1].credits[0]),
            ("b", 1)
        );
        standing.matched_credits.insert(2);
        standing.matched_payouts.insert("b".into());
        assert!(match_bank(&payouts, &credits, &standing, &policy()).is_empty());
    }

    #[test]
    fn unmatched_money_is_flagged_only_once_the_other_side_has_caught_up() {
        let payouts = [payout("a", 1, "100")];
        let credits = [credit(9, 10, "55")];
        let at = |bank: u32, registry: u32| {
            bank_findings(
                &payouts,
                &credits,
                &[],
                Coverage {
                    bank_through: Some(day(bank)),
                    registry_through: Some(day(registry)),
                },
                &policy(),
            )
            .into_iter()
            .filter(|f| f.holds.is_some())
            .map(|f| f.subject)
            .collect::<Vec<_>>()
        };
        assert!(at(6, 9).is_empty());
        assert_eq!(at(7, 9), vec!["payout:a"]);
        assert_eq!(at(7, 10), vec!["payout:a", "bank_line:9"]);
    }

    fn line(kind: RegistryKind, amount: &str, commission: Option<&str>) -> RegistryLine {
        RegistryLine {
            id: 1,
            operation_id: "op".into(),
            kind,
            amount: d(amount),
            commission: commission.map(d),
            net: None,
            currency: "KZT".into(),
            operation_at: chrono::DateTime::UNIX_EPOCH,
            payment_id: Some("P1".into()),
        }
    }

    #[test]
    fn a_line_is_judged_against_what_was_recorded_for_its_payment() {
        let paid = PaymentSide {
            status: "success".into(),
            received: Some((d("1000"), "KZT".into())),
            ..PaymentSide::default()
        };
        let pay = line(RegistryKind::Payment, "1000", Some("25"));
        let verdict = |l: &RegistryLine, p: Option<&PaymentSide>, percent: Option<&str>| {
            judge_line(l, p, false, Decimal::ZERO, percent.map(d))
        };
        assert_eq!(
            verdict(&pay, Some(&paid), Some("2.5")),
            Verdict::Matched {
                matched_amount: d("1000"),
                mismatch: None,
                commission: Some(d("25")),
                book_return: false
            }
        );
        let Verdict::Matched { mismatch, .. } = verdict(&pay, Some(&paid), Some("2")) else {
            panic!("matched")
        };
        assert_eq!(
            mismatch,
            Some(("commission 20".into(), "commission 25".into()))
        );
        let short = line(RegistryKind::Payment, "990", None);
        let Verdict::Matched {
            mismatch,
            commission,
            ..
        } = verdict(&short, Some(&paid), None)
        else {
            panic!("matched")
        };
        assert_eq!(mismatch, Some(("1000 KZT".into(), "990 KZT".into())));
        assert_eq!(commission, None);
        assert!(
            matches!(verdict(&pay, None, None), Verdict::Unknown(t) if t.contains("not tracked"))
        );
        let unpaid = PaymentSide {
            status: "process".into(),
            ..PaymentSide::default()
        };
        assert!(
            matches!(verdict(&pay, Some(&unpaid), None), Verdict::Unknown(t) if t.contains("not paid"))
        );
        assert!(matches!(
            judge_line(&pay, Some(&paid), true, Decimal::ZERO, None),
            Verdict::Unknown(t) if t.contains("undone")
        ));
    }

    #[test]
    fn a_registry_return_is_booked_only_when_no_event_records_it_yet() {
        let refund = line(RegistryKind::Refund, "-300", None);
        let mut paid = PaymentSide {
            status: "success".into(),
            received: Some((d("1000"), "KZT".into())),
            ..PaymentSide::default()
        };
        let books = |p: &PaymentSide| match judge_line(&refund, Some(p), false, Decimal::ZERO, None)
        {
            Verdict::Matched { book_return, .. } => book_return,
            Verdict::Unknown(t) => panic!("{t}"),
        };
        assert!(books(&paid));
        paid.returns.push((d("300"), "KZT".into()));
        assert!(!books(&paid), "the status API's refund is the same money");
        paid.matched_returns.push(d("300"));
        assert!(books(&paid), "a second refund of 300 is money of its own");
    }

    #[test]
    fn the_search_stays_within_its_bounds_and_tolerance() {
        let mut policy = policy();
        let values: Vec<Decimal> = ["1", "2", "4", "8", "16"].iter().map(|v| d(v)).collect();
        assert_eq!(group_summing_to(&values, d("31"), &policy), None);
        policy.search.parts = 5;
        assert_eq!(
            group_summing_to(&values, d("31"), &policy),
            Some(vec![0, 1, 2, 3, 4])
        );
        assert_eq!(group_summing_to(&values, d("6"), &policy), Some(vec![1, 2]));
        policy.tolerance = d("0.5");
        assert_eq!(
            group_summing_to(&values, d("6.5"), &policy),
            Some(vec![1, 2])
        );
        assert_eq!(group_summing_to(&values, d("100"), &policy), None);
    }
}
