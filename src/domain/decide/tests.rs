//! The rules of [`super::decide`], case by case.

use std::collections::BTreeSet;

use chrono::TimeZone;

use super::*;
use crate::domain::types::{ClosedFlag, Currency, ExpectedValues, FlagClass, PaymentId};

fn dec(exact: &str) -> Decimal {
    exact.parse().unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 7, 11, 10, 0, 0).unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

fn tracked() -> Tracked {
    Tracked::new(PaymentId::parse("1001").unwrap(), t0())
}

fn invoice(status: &str) -> Invoice {
    Invoice {
        status: ProviderStatus::parse(status),
        amount: Some(dec("5000")),
        currency: Some("KZT".parse().unwrap()),
        fee: Some(dec("0")),
        discount: None,
        freedom_id: None,
        order_id: Some("A-1".into()),
        merchant_id: None,
        merchant_name: None,
        description: None,
        lifetime: None,
        facilitator_iban: None,
        mcc: None,
        dt: None,
    }
}

fn decide_at(before: &Tracked, result: PollResult, minutes: i64) -> Verdict {
    decide(
        before,
        &result,
        at(minutes),
        &Policy::default(),
        Jitter::NONE,
    )
}

/// The state the shell would store after `verdict`: what the next poll starts from.
fn apply(before: &Tracked, verdict: &Verdict) -> Tracked {
    let mut next = before.clone();
    next.apply(verdict);
    next
}

fn opened(verdict: &Verdict) -> Vec<FlagKind> {
    verdict.open.iter().map(|f| f.kind).collect()
}

fn resolved(verdict: &Verdict) -> Vec<FlagKind> {
    verdict.resolve.iter().map(|(kind, _)| *kind).collect()
}

/// The resolver of `kind`, if the verdict closes it.
fn resolver(verdict: &Verdict, kind: FlagKind) -> Option<Resolver> {
    verdict
        .resolve
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, r)| *r)
}

fn keep_flags_open() -> Policy {
    Policy {
        auto_close: vec![],
        ..Policy::default()
    }
}

#[test]
fn first_answer_is_a_transition_from_nothing() {
    let v = decide_at(
        &tracked(),
        PollResult::Invoice(Box::new(invoice("process"))),
        1,
    );
    assert_eq!(
        v.change,
        Some(StatusChange {
            from: None,
            to: ProviderStatus::Process
        })
    );
    assert_eq!(v.checks, 1);
    assert_eq!(v.settled_at, None);
    assert_eq!(v.next_check_at, Some(at(1) + TimeDelta::seconds(30)));
    assert!(v.open.is_empty() && v.resolve.is_empty());
}

#[test]
fn the_same_status_again_is_not_a_transition_and_rechecks_follow_the_schedule() {
    let mut state = tracked();
    let mut nexts = Vec::new();
    for minute in 0..7 {
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("process"))),
            minute,
        );
        assert_eq!(v.change.is_some(), minute == 0);
        nexts.push(v.next_check_at.unwrap() - at(minute));
        state = apply(&state, &v);
    }
    let expected: Vec<_> = [30, 60, 300, 900, 3600, 3600, 3600]
        .into_iter()
        .map(TimeDelta::seconds)
        .collect();
    assert_eq!(nexts, expected);
}

/// A payment polled once (`process` at minute 0) that a callback, received at minute 1,
/// says was paid 5000 KZT (or failed).
fn with_callback(paid: bool) -> Tracked {
    let mut state = apply(
        &tracked(),
        &decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("process"))),
            0,
        ),
    );
    state.callback = Some(CallbackClaim {
        id: 7,
        received_at: at(1),
        paid: Some(paid),
        amount: Some(dec("5000")),
        currency: Some("KZT".parse().unwrap()),
        after_last_transition: true,
    });
    state
}

fn disagreement(verdict: &Verdict) -> Option<(String, String)> {
    verdict
        .open
        .iter()
        .find(|f| f.kind == FlagKind::CallbackDisagrees)
        .map(|f| (f.expected.clone().unwrap(), f.actual.clone().unwrap()))
}

#[test]
fn a_callback_the_api_contradicts_opens_callback_disagrees_at_once() {
    let v = decide_at(
        &with_callback(true),
        PollResult::Invoice(Box::new(invoice("error"))),
        2,
    );
    assert_eq!(
        disagreement(&v),
        Some((
            "callback #7: paid 5000 KZT".to_owned(),
            "API: error 5000 KZT".to_owned()
        ))
    );
    let v = decide_at(
        &with_callback(false),
        PollResult::Invoice(Box::new(invoice("success"))),
        2,
    );
    assert_eq!(
        disagreement(&v).map(|(e, _)| e),
        Some("callback #7: failed 5000 KZT".to_owned())
    );
    let mut short = invoice("success");
    short.amount = Some(dec("4000"));
    let v = decide_at(
        &with_callback(true),
        PollResult::Invoice(Box::new(short)),
        2,
    );
    assert_eq!(
        disagreement(&v).map(|(_, a)| a),
        Some("API: success 4000 KZT".to_owned())
    );
}

#[test]
fn a_paid_callback_the_api_has_not_confirmed_is_checked_at_its_confirmation_delay() {
    let state = with_callback(true);
    // Minute 2: still in progress, within the 30 minutes the API may lag: no flag yet,
    // and the next look is no later than minute 31.
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 2);
    assert_eq!(disagreement(&v), None);
    assert!(v.next_check_at.unwrap() <= at(31), "{:?}", v.next_check_at);
    // Minute 31: still in progress: the callback claimed what the API does not show.
    let state = apply(&state, &v);
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("process"))),
        31,
    );
    assert_eq!(
        disagreement(&v),
        Some((
            "callback #7: paid 5000 KZT".to_owned(),
            "API: process 5000 KZT".to_owned()
        ))
    );
    let v = decide_at(&state, PollResult::NotFound, 31);
    assert_eq!(
        disagreement(&v).map(|(_, a)| a),
        Some("API: no such payment".to_owned())
    );
}

#[test]
fn a_confirmed_callback_flags_nothing_and_clears_an_earlier_disagreement() {
    let state = with_callback(true);
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("success"))), 2);
    assert_eq!(disagreement(&v), None);
    assert!(!resolved(&v).contains(&FlagKind::CallbackDisagrees));

    let mut late = state.clone();
    late.open_flags.insert(FlagKind::CallbackDisagrees);
    let v = decide_at(&late, PollResult::Invoice(Box::new(invoice("success"))), 40);
    assert_eq!(
        resolver(&v, FlagKind::CallbackDisagrees),
        Some(Resolver::Cleared),
        "the API was late, the callback right"
    );
    // Without a callback, nothing is said either way.
    let v = decide_at(
        &tracked(),
        PollResult::Invoice(Box::new(invoice("error"))),
        2,
    );
    assert_eq!(disagreement(&v), None);
}

#[test]
fn a_status_the_callback_claimed_needs_no_confirmation_recheck() {
    // Paid, said the callback at minute 1; success, says the API at minute 2: told twice,
    // by two channels, so polling stops.
    let v = decide_at(
        &with_callback(true),
        PollResult::Invoice(Box::new(invoice("success"))),
        2,
    );
    assert_eq!(v.change.as_ref().unwrap().to, ProviderStatus::Success);
    assert_eq!(v.next_check_at, None);
    let v = decide_at(
        &with_callback(false),
        PollResult::Invoice(Box::new(invoice("error"))),
        2,
    );
    assert_eq!(v.next_check_at, None);
    // A claim the answer contradicts confirms nothing: the re-check stays, as it does
    // for a claim nobody can read.
    let v = decide_at(
        &with_callback(false),
        PollResult::Invoice(Box::new(invoice("success"))),
        2,
    );
    assert_eq!(v.next_check_at, Some(at(32)));
    let mut unreadable = with_callback(true);
    unreadable.callback.as_mut().unwrap().paid = None;
    let v = decide_at(
        &unreadable,
        PollResult::Invoice(Box::new(invoice("success"))),
        2,
    );
    assert_eq!(v.next_check_at, Some(at(32)));
}

#[test]
fn the_callback_lag_counts_from_a_callback_to_the_transition_it_announced_only() {
    let minutes = |m: u64| Some(Duration::from_secs(60 * m));
    let paid = || PollResult::Invoice(Box::new(invoice("success")));
    let process = || PollResult::Invoice(Box::new(invoice("process")));
    // Received at minute 1, the API shows it at minute 2 (the poll it asked for) or,
    // lagging behind the callback, only at minute 31 (its confirmation look).
    let state = with_callback(true);
    let v = decide_at(&state, paid(), 2);
    assert_eq!(callback_lag(&state, &v), minutes(1));
    let still = decide_at(&state, process(), 2);
    assert_eq!(callback_lag(&state, &still), None, "no transition");
    let later = apply(&state, &still);
    let v = decide_at(&later, paid(), 31);
    assert_eq!(callback_lag(&later, &v), minutes(30));

    // Once a transition answered it, the callback explains no later one.
    let settled = apply(&later, &v);
    assert!(!settled.callback.as_ref().unwrap().after_last_transition);
    let refunded = decide_at(
        &settled,
        PollResult::Invoice(Box::new(invoice("refunded"))),
        90,
    );
    assert!(refunded.change.is_some());
    assert_eq!(callback_lag(&settled, &refunded), None);
    // Nor does one that arrived before the latest transition (as the claim reads it), and
    // a transition without a callback has no lag.
    let mut stale = with_callback(true);
    stale.callback.as_mut().unwrap().after_last_transition = false;
    assert_eq!(callback_lag(&stale, &decide_at(&stale, paid(), 2)), None);
    let none = apply(&tracked(), &decide_at(&tracked(), process(), 0));
    assert_eq!(callback_lag(&none, &decide_at(&none, paid(), 2)), None);
}

#[test]
fn a_terminal_status_gets_one_confirmation_recheck_then_polling_stops() {
    let state = apply(
        &tracked(),
        &decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("process"))),
            0,
        ),
    );
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("success"))), 5);
    assert_eq!(v.change.as_ref().unwrap().to, ProviderStatus::Success);
    assert_eq!(v.settled_at, Some(at(5)));
    assert_eq!(v.next_check_at, Some(at(35)));

    let state = apply(&state, &v);
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("success"))),
        35,
    );
    assert_eq!(v.change, None);
    assert_eq!(v.next_check_at, None, "confirmed terminal stops polling");
    assert_eq!(v.settled_at, Some(at(5)), "settled time is kept");
    assert!(v.open.is_empty());
}

#[test]
fn error_is_terminal_and_failed_is_not_a_lifetime_problem() {
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("error"))), 600);
    assert_eq!(v.change.as_ref().unwrap().to, ProviderStatus::Error);
    assert!(opened(&v).is_empty());
    assert_eq!(v.next_check_at, Some(at(630)));
}

#[test]
fn a_terminal_status_that_changes_is_a_transition_and_a_flag_and_is_confirmed_again() {
    let mut state = tracked();
    state.status = Some(ProviderStatus::Incomplete);
    state.checks = 3;
    state.settled_at = Some(at(1));
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("success"))),
        30,
    );
    assert_eq!(
        v.change,
        Some(StatusChange {
            from: Some(ProviderStatus::Incomplete),
            to: ProviderStatus::Success
        })
    );
    assert_eq!(v.settled_at, Some(at(30)));
    assert_eq!(v.open.len(), 1);
    assert_eq!(v.open[0].kind, FlagKind::TerminalStatusChanged);
    assert_eq!(v.open[0].expected.as_deref(), Some("incomplete"));
    assert_eq!(v.open[0].actual.as_deref(), Some("success"));
    assert_eq!(v.next_check_at, Some(at(60)));

    // A later answer never clears it: a person must look.
    let state = apply(&state, &v);
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("success"))),
        60,
    );
    assert!(v.resolve.is_empty());
    assert_eq!(v.next_check_at, None);
}

#[test]
fn amount_mismatch_respects_tolerance_and_clears_when_amounts_agree() {
    let mut state = tracked();
    state.expected.amount = Some(dec("5000.00"));
    let mut paid_less = invoice("success");
    paid_less.amount = Some(dec("4999.99"));
    let v = decide_at(&state, PollResult::Invoice(Box::new(paid_less.clone())), 1);
    assert_eq!(opened(&v), vec![FlagKind::AmountMismatch]);
    assert_eq!(v.open[0].expected.as_deref(), Some("5000.00"));
    assert_eq!(v.open[0].actual.as_deref(), Some("4999.99"));

    let lenient = Policy {
        amount_tolerance: dec("0.01"),
        ..Policy::default()
    };
    let v2 = decide(
        &state,
        &PollResult::Invoice(Box::new(paid_less)),
        at(1),
        &lenient,
        Jitter::NONE,
    );
    assert!(v2.open.is_empty(), "within tolerance");

    let state = apply(&state, &v);
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("success"))),
        31,
    );
    assert_eq!(resolved(&v), vec![FlagKind::AmountMismatch]);
}

#[test]
fn nothing_is_compared_when_the_merchant_gave_nothing() {
    let mut other = invoice("success");
    other.amount = Some(dec("1"));
    other.currency = Some("USD".parse().unwrap());
    other.order_id = Some("zzz".into());
    let v = decide_at(&tracked(), PollResult::Invoice(Box::new(other)), 1);
    assert!(v.open.is_empty());
}

#[test]
fn currency_and_order_mismatches_are_flagged_and_cleared() {
    let mut state = tracked();
    state.expected = ExpectedValues {
        amount: None,
        currency: Some("USD".parse::<Currency>().unwrap()),
        order_id: Some("B-2".into()),
    };
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 1);
    assert_eq!(
        opened(&v),
        vec![FlagKind::CurrencyMismatch, FlagKind::OrderMismatch]
    );
    let state = apply(&state, &v);
    let mut fixed = invoice("process");
    fixed.currency = Some("USD".parse().unwrap());
    fixed.order_id = Some("B-2".into());
    let v = decide_at(&state, PollResult::Invoice(Box::new(fixed)), 2);
    assert_eq!(
        resolved(&v),
        vec![FlagKind::CurrencyMismatch, FlagKind::OrderMismatch]
    );
}

#[test]
fn a_missing_provider_value_neither_raises_nor_clears() {
    let mut state = tracked();
    state.expected.amount = Some(dec("10"));
    state.open_flags = BTreeSet::from([FlagKind::AmountMismatch]);
    let mut no_amount = invoice("process");
    no_amount.amount = None;
    let v = decide_at(&state, PollResult::Invoice(Box::new(no_amount)), 1);
    assert!(v.open.is_empty() && v.resolve.is_empty());
}

#[test]
fn lifetime_in_seconds_counts_from_creation_and_caps_the_next_check() {
    let mut lived = invoice("process");
    lived.lifetime = Some(Lifetime::Seconds(1800));
    let mut state = tracked();
    state.checks = 4; // the schedule is at one hour by now
    let v = decide_at(&state, PollResult::Invoice(Box::new(lived.clone())), 20);
    assert_eq!(
        v.provider_expiry,
        Some(Expiry {
            at: at(30),
            source: LifetimeSource::ProviderSeconds
        })
    );
    // expiry 10:30 + 15 min grace: never scheduled past the lifetime check
    assert_eq!(v.next_check_at, Some(at(45)));
    assert!(v.open.is_empty());

    let state = apply(&state, &v);
    let v = decide_at(&state, PollResult::Invoice(Box::new(lived)), 45);
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    assert_eq!(
        v.next_check_at,
        Some(at(105)),
        "past the check, the schedule resumes (until the last look, 10:30 + 2 h)"
    );
}

#[test]
fn lifetime_exceeded_covers_waiting_and_incomplete_and_a_late_payment_is_its_own_flag() {
    let mut lived = invoice("waiting");
    lived.lifetime = Some(Lifetime::Until(at(60)));
    let v = decide_at(&tracked(), PollResult::Invoice(Box::new(lived.clone())), 80);
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    assert_eq!(v.deadline_missed_at, Some(at(80)));
    assert_eq!(
        v.provider_expiry.unwrap().source,
        LifetimeSource::ProviderDatetime
    );

    lived.status = ProviderStatus::Incomplete;
    let v = decide_at(&tracked(), PollResult::Invoice(Box::new(lived.clone())), 80);
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);

    // Paid after the provider said the time ran out: late, for a person to settle.
    let state = apply(&tracked(), &v);
    assert_eq!(state.deadline_missed_at, Some(at(80)));
    lived.status = ProviderStatus::Success;
    let v = decide_at(&state, PollResult::Invoice(Box::new(lived)), 100);
    assert_eq!(
        opened(&v),
        vec![FlagKind::TerminalStatusChanged, FlagKind::PaidAfterDeadline]
    );
    assert_eq!(
        v.deadline_missed_at,
        Some(at(80)),
        "the miss stays on record"
    );
    let late = &v.open[1];
    assert_eq!(
        late.expected.as_deref(),
        Some("settled by 2025-07-11T11:00:00+00:00 (the provider's lifetime)")
    );
    assert_eq!(
        late.actual.as_deref(),
        Some("success, first seen 2025-07-11T11:40:00+00:00")
    );
    assert!(
        v.open.iter().all(|f| f.kind.class() == FlagClass::Action),
        "both need a person"
    );
}

#[test]
fn an_expired_unpaid_payment_is_an_outcome_closed_by_its_rule_as_the_flag_opens() {
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    for status in ["process", "waiting", "incomplete"] {
        let v = decide_at(&state, PollResult::Invoice(Box::new(invoice(status))), 25);
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded], "{status}");
        assert_eq!(
            resolver(&v, FlagKind::LifetimeExceeded),
            Some(Resolver::Rule(AutoClose::ExpiredUnpaid)),
            "{status}"
        );
        assert_eq!(FlagKind::LifetimeExceeded.class(), FlagClass::Info);

        // `flags.auto_close = []`: the flag stays open for a person.
        let v = decide(
            &state,
            &PollResult::Invoice(Box::new(invoice(status))),
            at(25),
            &keep_flags_open(),
            Jitter::NONE,
        );
        assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
        assert!(v.resolve.is_empty(), "{status}");
    }

    // Closed by the rule, it is not raised again while the deadline is the same, whatever
    // status follows; its story goes on in deadline_missed_at.
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("process"))),
        25,
    );
    let state = apply(&state, &v);
    assert!(state.open_flags.is_empty());
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("incomplete"))),
        30,
    );
    assert!(v.open.is_empty() && v.resolve.is_empty(), "{v:?}");
    assert_eq!(v.deadline_missed_at, Some(at(25)));
    // A new deadline, passed too, is a new flag (closed by the same rule).
    let mut later = invoice("incomplete");
    later.lifetime = Some(Lifetime::Until(at(5)));
    let v = decide_at(&state, PollResult::Invoice(Box::new(later)), 31);
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    assert_eq!(resolved(&v), vec![FlagKind::LifetimeExceeded]);

    // A lifetime flag left open (before the rule existed) closes by it at the next poll.
    let mut open = tracked();
    open.merchant_expires_at = Some(at(10));
    open.status = Some(ProviderStatus::Process);
    open.deadline_missed_at = Some(at(25));
    open.open_flags = BTreeSet::from([FlagKind::LifetimeExceeded]);
    let v = decide_at(&open, PollResult::Invoice(Box::new(invoice("process"))), 40);
    assert_eq!(
        resolver(&v, FlagKind::LifetimeExceeded),
        Some(Resolver::Rule(AutoClose::ExpiredUnpaid))
    );
}

#[test]
fn a_flag_a_person_closed_reopens_only_when_what_it_is_about_changes() {
    let mut state = tracked();
    state.expected.amount = Some(dec("6000"));
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("success"))), 1);
    assert_eq!(opened(&v), vec![FlagKind::AmountMismatch]);
    // A person closes it (the rest was paid in cash): the claim then reads it as closed.
    let mut state = apply(&state, &v);
    state.open_flags.clear();
    state.closed_flags.insert(
        FlagKind::AmountMismatch,
        ClosedFlag {
            expected: Some("6000".into()),
            actual: Some("5000".into()),
        },
    );
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("success"))),
        90,
    );
    assert!(v.open.is_empty(), "a recheck with the same values: {v:?}");

    let mut changed = invoice("success");
    changed.amount = Some(dec("4000"));
    let v = decide_at(&state, PollResult::Invoice(Box::new(changed)), 91);
    assert_eq!(opened(&v), vec![FlagKind::AmountMismatch]);
    assert_eq!(v.open[0].actual.as_deref(), Some("4000"));
}

#[test]
fn a_late_payment_supersedes_a_lifetime_flag_left_open() {
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    let policy = keep_flags_open();
    let v = decide(
        &state,
        &PollResult::Invoice(Box::new(invoice("process"))),
        at(25),
        &policy,
        Jitter::NONE,
    );
    let state = apply(&state, &v);
    assert!(state.open_flags.contains(&FlagKind::LifetimeExceeded));
    let v = decide(
        &state,
        &PollResult::Invoice(Box::new(invoice("success"))),
        at(40),
        &policy,
        Jitter::NONE,
    );
    assert_eq!(opened(&v), vec![FlagKind::PaidAfterDeadline]);
    assert_eq!(
        resolver(&v, FlagKind::LifetimeExceeded),
        Some(Resolver::Superseded)
    );
}

#[test]
fn incomplete_without_a_known_expiry_is_a_lifetime_flag() {
    let v = decide_at(
        &tracked(),
        PollResult::Invoice(Box::new(invoice("incomplete"))),
        1,
    );
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
}

#[test]
fn the_earlier_of_the_merchant_expiry_and_the_provider_lifetime_counts() {
    // The merchant cancels at 10:10; the provider's lifetime runs to 11:00.
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    let mut lived = invoice("process");
    lived.lifetime = Some(Lifetime::Until(at(60)));
    state.checks = 4;
    let v = decide_at(&state, PollResult::Invoice(Box::new(lived.clone())), 5);
    assert_eq!(
        v.next_check_at,
        Some(at(25)),
        "checked at the earlier deadline"
    );
    let v = decide_at(&state, PollResult::Invoice(Box::new(lived.clone())), 25);
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    assert_eq!(
        v.open[0].expected.as_deref(),
        Some("settled by 2025-07-11T10:10:00+00:00 (the merchant's expires_at)")
    );
    assert_eq!(v.open[0].actual.as_deref(), Some("process"));

    // The provider's lifetime is earlier: it counts, and says so.
    lived.lifetime = Some(Lifetime::Seconds(300));
    state.merchant_expires_at = Some(at(60));
    let v = decide_at(&state, PollResult::Invoice(Box::new(lived)), 25);
    assert_eq!(
        v.open[0].expected.as_deref(),
        Some(
            "settled by 2025-07-11T10:05:00+00:00 (the provider's lifetime, counted from created_at)"
        )
    );
}

#[test]
fn a_payment_seen_unpaid_past_its_deadline_is_flagged_again_when_it_is_paid_late() {
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("process"))),
        25,
    );
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    let state = apply(&state, &v);
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("success"))),
        40,
    );
    assert_eq!(
        opened(&v),
        vec![FlagKind::PaidAfterDeadline],
        "paid late: a person settles it"
    );
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("error"))), 40);
    assert!(v.open.is_empty(), "no money moved");
    assert_eq!(v.deadline_missed_at, Some(at(25)));

    // Paid by the first look past the deadline: nothing shows it was late.
    let mut fresh = tracked();
    fresh.merchant_expires_at = Some(at(10));
    let v = decide_at(
        &fresh,
        PollResult::Invoice(Box::new(invoice("success"))),
        25,
    );
    assert!(v.open.is_empty());
}

#[test]
fn on_a_tie_the_provider_lifetime_is_named_as_the_view_names_it() {
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    let mut lived = invoice("process");
    lived.lifetime = Some(Lifetime::Until(at(10)));
    let v = decide_at(&state, PollResult::Invoice(Box::new(lived)), 30);
    assert!(
        v.open[0]
            .expected
            .as_deref()
            .unwrap()
            .ends_with("(the provider's lifetime)"),
        "{:?}",
        v.open
    );
}

#[test]
fn incomplete_is_a_lifetime_flag_even_before_the_stated_lifetime() {
    let mut lived = invoice("incomplete");
    lived.lifetime = Some(Lifetime::Until(at(600)));
    let v = decide_at(&tracked(), PollResult::Invoice(Box::new(lived)), 1);
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    assert_eq!(
        v.open[0].expected.as_deref(),
        Some("settled by 2025-07-11T20:00:00+00:00 (the provider's lifetime)")
    );
    assert_eq!(v.open[0].actual.as_deref(), Some("incomplete"));
}

#[test]
fn the_merchant_expiry_applies_until_the_provider_states_a_lifetime() {
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    let v = decide_at(&state, PollResult::NotFound, 3);
    assert_eq!(v.next_check_at, Some(at(3) + TimeDelta::seconds(30)));
    state.checks = 4;
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 5);
    assert_eq!(v.next_check_at, Some(at(25)), "capped at expiry + grace");
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("process"))),
        25,
    );
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
}

#[test]
fn deadline_checks_are_marked_urgent_and_routine_ones_are_not() {
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    state.checks = 4;
    let capped = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 5);
    assert_eq!(capped.next_check_at, Some(at(25)));
    assert!(capped.next_check_urgent, "the lifetime check");
    let routine = decide_at(
        &tracked(),
        PollResult::Invoice(Box::new(invoice("process"))),
        1,
    );
    assert_eq!(routine.next_check_at, Some(at(1) + TimeDelta::seconds(30)));
    assert!(!routine.next_check_urgent);
    // Not found near the end of its grace: checked exactly when the grace ends.
    let mut unknown = tracked();
    unknown.checks = 4;
    let v = decide_at(&unknown, PollResult::NotFound, 5);
    assert_eq!(v.next_check_at, Some(at(10)));
    assert!(v.next_check_urgent, "the end of the not-found grace");
    let confirm = decide_at(
        &tracked(),
        PollResult::Invoice(Box::new(invoice("success"))),
        1,
    );
    assert!(!confirm.next_check_urgent, "a confirmation is routine");
}

#[test]
fn not_found_is_normal_at_first_and_flagged_after_the_grace_period() {
    let v = decide_at(&tracked(), PollResult::NotFound, 1);
    assert!(v.open.is_empty());
    assert_eq!(v.not_found_since, Some(at(1)));
    assert_eq!(v.change, None);
    assert_eq!(v.checks, 1);

    let state = apply(&tracked(), &v);
    let v = decide_at(&state, PollResult::NotFound, 11);
    assert_eq!(opened(&v), vec![FlagKind::NotFound]);
    assert_eq!(v.not_found_since, Some(at(1)), "the first sighting is kept");

    let state = apply(&state, &v);
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("process"))),
        12,
    );
    assert_eq!(resolved(&v), vec![FlagKind::NotFound]);
    assert_eq!(v.not_found_since, None);
}

/// Issue 23, item 3: a callback came while the API still says "not found" (it lags its
/// own callback in a payment's first seconds). The payment is looked at again on a short
/// ladder from the callback, then every minute, not when the grace from its creation
/// ends; once that grace from the callback is over, the usual rules apply.
#[test]
fn after_a_callback_not_found_is_looked_at_again_within_seconds_then_every_minute() {
    let called_back = t0() + TimeDelta::seconds(3);
    // A payment not polled yet whose callback, received then, says it was paid.
    let called_back_paid = || {
        let mut state = tracked();
        state.callback = Some(CallbackClaim {
            id: 7,
            received_at: called_back,
            paid: Some(true),
            amount: None,
            currency: None,
            after_last_transition: true,
        });
        state
    };
    let mut state = called_back_paid();
    let policy = Policy::default();
    let mut now = called_back + TimeDelta::milliseconds(50);
    let mut looks = Vec::new();
    while now < called_back + TimeDelta::minutes(12) {
        let v = decide(&state, &PollResult::NotFound, now, &policy, Jitter::NONE);
        let Some(next) = v.next_check_at else { break };
        looks.push(((next - called_back).num_milliseconds(), v.next_check_urgent));
        state = apply(&state, &v);
        now = next + TimeDelta::milliseconds(50);
    }
    let (steps, urgent): (Vec<i64>, Vec<bool>) = looks.iter().copied().unzip();
    assert_eq!(
        &steps[..6],
        [2_000, 5_000, 15_000, 30_000, 90_050, 150_100],
        "seconds, then every minute: {looks:?}"
    );
    assert!(
        urgent[..6].iter().all(|&u| u),
        "deadline checks, never taken late"
    );
    // Never more than a minute apart until the grace (10 min) from the callback is over.
    let ladder: Vec<i64> = steps.iter().copied().filter(|&s| s <= 600_000).collect();
    assert!(
        ladder.windows(2).all(|w| w[1] - w[0] <= 60_100),
        "{steps:?}"
    );
    assert_eq!(ladder.last(), Some(&600_000), "{steps:?}");
    // After it, the callback's own confirmation check (30 min), not another minute.
    assert_eq!(steps[ladder.len()], 1_800_000, "{steps:?}");

    // Without a callback, "not found" waits for the grace from creation, as before.
    let v = decide(
        &tracked(),
        &PollResult::NotFound,
        t0() + TimeDelta::seconds(3),
        &policy,
        Jitter::NONE,
    );
    assert_eq!(v.next_check_at, Some(t0() + TimeDelta::seconds(33)));

    // Still in progress after a callback that says paid: the API lags it the same way.
    let mut state = called_back_paid();
    let in_progress = PollResult::Invoice(Box::new(invoice("process")));
    let v = decide(
        &state,
        &in_progress,
        called_back + TimeDelta::milliseconds(50),
        &policy,
        Jitter::NONE,
    );
    assert_eq!(v.next_check_at, Some(called_back + TimeDelta::seconds(2)));
    assert!(v.next_check_urgent);
    // A callback with no readable outcome claims nothing to wait for.
    state.callback.as_mut().unwrap().paid = None;
    let v = decide(
        &state,
        &in_progress,
        called_back + TimeDelta::milliseconds(50),
        &policy,
        Jitter::NONE,
    );
    assert_eq!(
        v.next_check_at,
        Some(called_back + TimeDelta::milliseconds(50) + TimeDelta::seconds(30)),
        "the schedule's first recheck"
    );
}

#[test]
fn an_unknown_status_is_kept_non_terminal_and_flagged_until_known() {
    let v = decide_at(
        &tracked(),
        PollResult::Invoice(Box::new(invoice("refunded"))),
        1,
    );
    assert_eq!(v.status, Some(ProviderStatus::Other("refunded".into())));
    assert_eq!(opened(&v), vec![FlagKind::UnknownStatus]);
    assert_eq!(v.open[0].actual.as_deref(), Some("refunded"));
    assert!(v.next_check_at.is_some());
    let state = apply(&tracked(), &v);
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("success"))), 2);
    assert_eq!(resolved(&v), vec![FlagKind::UnknownStatus]);
}

#[test]
fn an_undocumented_word_backs_off_to_a_day_asks_the_status_api_once_and_flags_once() {
    // Paid, then `refunded`: a word invoice/info does not document.
    let mut state = apply(
        &tracked(),
        &decide_at(
            &tracked(),
            PollResult::Invoice(Box::new(invoice("success"))),
            1,
        ),
    );
    state.checks = 1;
    let mut delays = Vec::new();
    let mut asks = Vec::new();
    let mut last_error = None;
    for n in 0..20 {
        let v = decide_at(
            &state,
            PollResult::Invoice(Box::new(invoice("refunded"))),
            2 + n,
        );
        if n == 0 {
            assert_eq!(
                opened(&v),
                vec![FlagKind::UnknownStatus],
                "one flag: not terminal_status_changed as well"
            );
        } else {
            assert!(v.open.is_empty(), "{n}: {:?}", v.open);
        }
        asks.push(v.ask_what_money_moved);
        last_error = v.last_error.clone();
        delays.push((v.next_check_at.unwrap() - at(2 + n)).num_seconds());
        state = apply(&state, &v);
    }
    assert_eq!(
        asks.iter().filter(|&&a| a).count(),
        1,
        "asked once, when it appeared"
    );
    assert!(asks[0]);
    // Never sooner than the ladder (a minute for the second check, then up to an hour),
    // doubling from 5 s until that passes the hour, and then to a day.
    assert_eq!(&delays[..6], &[60, 300, 900, 3600, 3600, 3600]);
    assert_eq!(delays[12], 5 << 12);
    assert_eq!(*delays.last().unwrap(), 24 * 3600);
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    // Looks over a week: a bounded handful, where the hourly ladder alone would take 168.
    let week: i64 = 7 * 24 * 3600;
    let mut spent = 0;
    let looks = delays.iter().take_while(|&&d| {
        spent += d;
        spent <= week
    });
    assert!(looks.count() < 25);
    assert!(last_error.unwrap().contains("does not document"));
    // A documented answer ends it: no backoff left, no ask.
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("success"))),
        30,
    );
    assert_eq!(
        (v.attempts, v.last_error.clone(), v.ask_what_money_moved),
        (0, None, false)
    );
}

#[test]
fn failures_back_off_exponentially_with_jitter_and_keep_state() {
    let mut state = tracked();
    state.status = Some(ProviderStatus::Process);
    state.checks = 2;
    let failed = || PollResult::Failed {
        reason: "timeout".into(),
    };
    let mut delays = Vec::new();
    for _ in 0..8 {
        let v = decide(&state, &failed(), at(0), &Policy::default(), Jitter::NONE);
        assert_eq!(v.change, None);
        assert!(!v.answered);
        assert_eq!(v.checks, 2);
        assert_eq!(v.last_error.as_deref(), Some("timeout"));
        delays.push((v.next_check_at.unwrap() - at(0)).num_seconds());
        state = apply(&state, &v);
    }
    assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(state.attempts, 8);

    let v = decide(
        &state,
        &failed(),
        at(0),
        &Policy::default(),
        Jitter::from_permille(0),
    );
    assert_eq!((v.next_check_at.unwrap() - at(0)).num_seconds(), 150);

    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 0);
    assert_eq!((v.attempts, v.last_error), (0, None));
}

#[test]
fn other_provider_errors_are_recorded_and_rechecked_on_schedule() {
    let v = decide_at(
        &tracked(),
        PollResult::Rejected {
            code: "500".into(),
            description: "Internal".into(),
        },
        1,
    );
    assert!(v.answered);
    assert_eq!(
        v.last_error.as_deref(),
        Some("provider error 500: Internal")
    );
    assert_eq!(v.next_check_at, Some(at(1) + TimeDelta::seconds(30)));
    assert!(v.open.is_empty());
}

#[test]
fn polling_is_abandoned_after_the_maximum_age_and_resumed_flags_clear_on_terminal() {
    let mut state = tracked();
    state.status = Some(ProviderStatus::Process);
    state.checks = 30;
    let week = 7 * 24 * 60;
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("process"))),
        week - 30,
    );
    assert_eq!(
        v.next_check_at,
        Some(at(week)),
        "never past the abandon time"
    );

    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("process"))),
        week,
    );
    assert_eq!(v.next_check_at, None);
    assert_eq!(opened(&v), vec![FlagKind::PollingAbandoned]);

    let failing = decide_at(
        &state,
        PollResult::Failed {
            reason: "connection refused".into(),
        },
        week + 1,
    );
    assert_eq!(failing.next_check_at, None);

    let state = apply(&state, &v);
    let v = decide_at(
        &state,
        PollResult::Invoice(Box::new(invoice("success"))),
        week + 60,
    );
    assert_eq!(resolved(&v), vec![FlagKind::PollingAbandoned]);
}

#[test]
fn an_unsettled_payment_gets_one_last_look_when_the_callback_retries_end_then_none() {
    // Deadline 10:10; its check at 10:25 finds it still in `process`, on a schedule whose
    // last step is a day (as the default one).
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    state.status = Some(ProviderStatus::Process);
    state.checks = 4;
    let daily = Policy {
        recheck: vec![Duration::from_secs(60), Duration::from_secs(86_400)],
        ..Policy::default()
    };
    let decide_at = |state: &Tracked, result: PollResult, minutes: i64| {
        decide(state, &result, at(minutes), &daily, Jitter::NONE)
    };
    let process = || PollResult::Invoice(Box::new(invoice("process")));
    let v = decide_at(&state, process(), 25);
    assert_eq!(opened(&v), vec![FlagKind::LifetimeExceeded]);
    assert_eq!(
        v.next_check_at,
        Some(at(130)),
        "the last look: the deadline plus the provider's 2 h of callback retries"
    );
    assert!(v.next_check_urgent, "a deadline placed it");
    let state = apply(&state, &v);

    // A failed attempt at the last look is no look: it is tried again.
    let failed = decide_at(
        &state,
        PollResult::Failed {
            reason: "timeout".into(),
        },
        130,
    );
    assert!(failed.next_check_at.is_some_and(|next| next > at(130)));
    assert!(failed.open.is_empty());

    // Still unsettled: polling stops, and a person is told nobody knows whether money
    // moved.
    let v = decide_at(&state, process(), 130);
    assert_eq!(v.next_check_at, None, "no more looks");
    assert_eq!(opened(&v), vec![FlagKind::PollingAbandoned]);
    assert_eq!(
        v.open[0].expected.as_deref(),
        Some(
            "a terminal status by 2025-07-11T12:10:00+00:00 (the deadline plus the \
             provider's 2h of callback retries)"
        )
    );
    assert_eq!(v.open[0].actual.as_deref(), Some("process"));
    assert_eq!(FlagKind::PollingAbandoned.class(), FlagClass::Action);
    let stopped = apply(&state, &v);

    // Something else makes it due (`recheck`): a change is still caught...
    let paid = decide_at(
        &stopped,
        PollResult::Invoice(Box::new(invoice("success"))),
        600,
    );
    assert_eq!(opened(&paid), vec![FlagKind::PaidAfterDeadline]);
    assert_eq!(resolved(&paid), vec![FlagKind::PollingAbandoned]);
    assert_eq!(paid.next_check_at, Some(at(630)), "and confirmed");
    // ...and the same answer is that one look, with no flag opened again, even one a
    // person closed.
    let mut closed = stopped.clone();
    closed.open_flags.remove(&FlagKind::PollingAbandoned);
    closed.closed_flags.insert(
        FlagKind::PollingAbandoned,
        ClosedFlag {
            expected: v.open[0].expected.clone(),
            actual: Some("process".into()),
        },
    );
    for state in [&stopped, &closed] {
        let again = decide_at(state, process(), 600);
        assert_eq!(again.next_check_at, None);
        assert!(again.open.is_empty(), "{again:?}");
    }
}

#[test]
fn a_denser_schedule_goes_on_until_the_last_look() {
    // Rechecks every hour: 10:25 (the deadline check), 11:25, then 12:10, the last look.
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    state.checks = 4;
    let process = || PollResult::Invoice(Box::new(invoice("process")));
    let v = decide_at(&state, process(), 25);
    assert_eq!(v.next_check_at, Some(at(85)));
    assert!(!v.next_check_urgent);
    let state = apply(&state, &v);
    let v = decide_at(&state, process(), 85);
    assert_eq!(v.next_check_at, Some(at(130)));
    assert!(v.next_check_urgent, "capped at the last look");
    let state = apply(&state, &v);
    let v = decide_at(&state, process(), 130);
    assert_eq!(v.next_check_at, None);
    assert_eq!(opened(&v), vec![FlagKind::PollingAbandoned]);
}

#[test]
fn with_a_grace_past_the_callback_retries_the_deadline_check_is_the_last_look() {
    let mut state = tracked();
    state.merchant_expires_at = Some(at(10));
    state.checks = 4;
    let patient = Policy {
        lifetime_grace: Duration::from_secs(3 * 3600),
        ..Policy::default()
    };
    let v = decide(
        &state,
        &PollResult::Invoice(Box::new(invoice("waiting"))),
        at(190),
        &patient,
        Jitter::NONE,
    );
    assert_eq!(
        opened(&v),
        vec![FlagKind::LifetimeExceeded, FlagKind::PollingAbandoned]
    );
    assert_eq!(v.next_check_at, None);
}

#[test]
fn a_settled_payment_past_the_maximum_age_is_never_scheduled_in_the_past() {
    let week = 7 * 24 * 60;
    let mut state = tracked();
    state.status = Some(ProviderStatus::Success);
    state.checks = 2;
    for result in [
        PollResult::NotFound,
        PollResult::Failed {
            reason: "timeout".into(),
        },
        PollResult::Rejected {
            code: "1".into(),
            description: "x".into(),
        },
    ] {
        let v = decide_at(&state, result, week + 30);
        assert_eq!(v.next_check_at, None, "one look only after the maximum age");
        assert!(
            !opened(&v).contains(&FlagKind::PollingAbandoned),
            "a settled payment is not abandoned"
        );
    }
    // Before the maximum age, a failed confirmation backs off into the future.
    let v = decide_at(
        &state,
        PollResult::Failed {
            reason: "timeout".into(),
        },
        week - 1,
    );
    assert!(v.next_check_at.unwrap() > at(week - 1));
}

#[test]
fn an_absurd_lifetime_in_seconds_is_far_future_not_a_crash() {
    let mut lived = invoice("process");
    lived.lifetime = Some(Lifetime::Seconds(i64::MAX));
    let v = decide_at(&tracked(), PollResult::Invoice(Box::new(lived)), 1);
    assert_eq!(v.provider_expiry.unwrap().at, DateTime::<Utc>::MAX_UTC);
    assert!(v.open.is_empty());
}

#[test]
fn an_open_flag_is_not_opened_twice() {
    let mut state = tracked();
    state.expected.amount = Some(dec("1"));
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 1);
    assert_eq!(opened(&v), vec![FlagKind::AmountMismatch]);
    let state = apply(&state, &v);
    let v = decide_at(&state, PollResult::Invoice(Box::new(invoice("process"))), 2);
    assert!(v.open.is_empty());
}

#[test]
fn a_callback_flags_a_payment_nobody_tracked_and_a_claim_it_could_not_read() {
    let arrival = CallbackArrival {
        callback_id: 41,
        started_tracking: true,
        paid: Some(true),
        amount: Some(Decimal::new(150000, 2)),
        currency: Some("KZT"),
        order_id: Some("o-7"),
        problem: None,
    };
    let flags = callback_flags(&arrival);
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].kind, FlagKind::UntrackedPayment);
    assert_eq!(
        flags[0].actual.as_deref(),
        Some("a callback: paid 1500.00 KZT, order o-7")
    );

    let tracked_unreadable = CallbackArrival {
        started_tracking: false,
        paid: None,
        problem: Some("pg_amount is not an amount"),
        ..arrival
    };
    let flags = callback_flags(&tracked_unreadable);
    assert_eq!(
        flags
            .iter()
            .map(|f| (f.kind, f.actual.as_deref()))
            .collect::<Vec<_>>(),
        [(
            FlagKind::CallbackUnreadable,
            Some("callback #41: pg_amount is not an amount")
        )]
    );
    let plain = CallbackArrival {
        started_tracking: false,
        problem: None,
        ..arrival
    };
    assert!(callback_flags(&plain).is_empty());
}
