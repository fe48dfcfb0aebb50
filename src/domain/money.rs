//! Money events: what the provider says moved for a payment, as opposed to its status
//! (`recon.money_events`, migration `money_events`). A payment received is one fact; each
//! refund, reversal, chargeback and the commission is another, signed for the merchant.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::Currency;

/// What kind of money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoneyKind {
    /// The payment received (+).
    Payment,
    /// Money returned after capture (−).
    Refund,
    /// A hold released before capture (−).
    Reversal,
    /// Money taken back by the card's bank (−); from registries or by hand.
    Chargeback,
    /// What the provider keeps (−), where it states a net.
    Commission,
}

impl MoneyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Refund => "refund",
            Self::Reversal => "reversal",
            Self::Chargeback => "chargeback",
            Self::Commission => "commission",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Payment,
            Self::Refund,
            Self::Reversal,
            Self::Chargeback,
            Self::Commission,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == raw)
    }

    /// Whether money of this kind comes in (the payment) rather than goes back.
    pub fn is_income(self) -> bool {
        self == Self::Payment
    }
}

/// Where a fact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneySource {
    Poll,
    Callback,
    StatusApi,
    Registry,
    Manual,
}

impl MoneySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Callback => "callback",
            Self::StatusApi => "status_api",
            Self::Registry => "registry",
            Self::Manual => "manual",
        }
    }
}

/// One fact about money, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyFact {
    pub kind: MoneyKind,
    /// Signed for the merchant: + for the payment, − for everything else.
    pub amount: Decimal,
    /// As the provider stated it, sign included.
    pub provider_amount: Option<Decimal>,
    pub currency: Currency,
    /// The provider's own id for it, when it gives one.
    pub provider_ref: Option<String>,
    /// The provider's word for it (a refund's status).
    pub provider_status: Option<String>,
    /// When the provider says it happened.
    pub provider_at: Option<DateTime<Utc>>,
    pub source: MoneySource,
    /// The fact within its payment: one row per (payment, key) ([`MoneyFact::key`]).
    pub key: String,
}

impl MoneyFact {
    /// The payment received: `amount` as the provider reports it paid.
    pub fn payment(
        amount: Decimal,
        currency: Currency,
        provider_at: Option<DateTime<Utc>>,
        source: MoneySource,
    ) -> Self {
        Self {
            kind: MoneyKind::Payment,
            amount: amount.abs(),
            provider_amount: Some(amount),
            currency,
            provider_ref: None,
            provider_status: None,
            provider_at,
            source,
            key: "payment".into(),
        }
    }

    /// Money that went back (`kind` is not [`MoneyKind::Payment`]): `stated` as the provider
    /// sent it, whatever its sign, is counted negative. `provider_ref` is the provider's id
    /// for it; `parent_id`, the payment's own id at the provider: a child that repeats it (as
    /// the documentation's example does) or has none is told apart by its time and amount.
    #[allow(clippy::too_many_arguments)]
    pub fn returned(
        kind: MoneyKind,
        stated: Decimal,
        currency: Currency,
        provider_ref: Option<&str>,
        parent_id: Option<&str>,
        provider_status: Option<&str>,
        provider_at: Option<DateTime<Utc>>,
        source: MoneySource,
    ) -> Self {
        debug_assert!(!kind.is_income());
        let own_id = provider_ref.filter(|id| Some(*id) != parent_id && !id.is_empty());
        let key = match own_id {
            Some(id) => format!("child:{id}"),
            None => format!(
                "{}:{}:{}",
                kind.as_str(),
                provider_at.map_or_else(|| "undated".to_owned(), |at| at.to_rfc3339()),
                stated.abs().normalize()
            ),
        };
        Self {
            kind,
            amount: -stated.abs(),
            provider_amount: Some(stated),
            currency,
            provider_ref: provider_ref.map(str::to_owned),
            provider_status: provider_status.map(str::to_owned),
            provider_at,
            source,
            key,
        }
    }

    /// What the provider kept: `gross` less `net`, when it states a net below the gross.
    /// `None` when the net is not below the gross (nothing kept, or a net that makes no
    /// sense: left for a person, never booked as a negative commission).
    pub fn commission(
        gross: Decimal,
        net: Decimal,
        currency: Currency,
        provider_at: Option<DateTime<Utc>>,
        source: MoneySource,
    ) -> Option<Self> {
        let kept = gross - net;
        (kept > Decimal::ZERO && net >= Decimal::ZERO).then(|| Self {
            kind: MoneyKind::Commission,
            amount: -kept,
            provider_amount: Some(kept),
            currency,
            provider_ref: None,
            provider_status: None,
            provider_at,
            source,
            key: "commission".into(),
        })
    }
}

/// When a paid payment first seen paid at `since` is next asked about, after a look (or its
/// enrolment) at `now`: the first point of `ladder` (delays from `since`) still ahead, within
/// `watch_for`. `None`: the watch is over. Points missed while nobody looked (a daemon down,
/// a backlog after an upgrade) are not made up: one look covers them.
pub fn next_look(
    ladder: &[std::time::Duration],
    watch_for: std::time::Duration,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let at = |delay: std::time::Duration| {
        chrono::Duration::from_std(delay)
            .ok()
            .and_then(|d| since.checked_add_signed(d))
    };
    let end = at(watch_for)?;
    ladder
        .iter()
        .filter_map(|&delay| at(delay))
        .find(|&look| look > now)
        .filter(|&look| look <= end)
}

/// How long after the `attempts`-th failed ask in a row the next is made: 5 minutes,
/// doubling, at most a day. A status API that is down is not asked in a loop.
pub fn watch_retry_after(attempts: u32) -> std::time::Duration {
    const FIRST: u64 = 5 * 60;
    const MOST: u64 = 24 * 3600;
    std::time::Duration::from_secs(
        FIRST
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
            .min(MOST),
    )
}

/// When a refund the merchant made is looked for at the provider, after it was requested:
/// soon, then an hour, then a day; not seen by the last look, it is `refund_missing`.
pub const REQUEST_LOOKS: [std::time::Duration; 3] = [
    std::time::Duration::from_secs(10 * 60),
    std::time::Duration::from_secs(3600),
    std::time::Duration::from_secs(24 * 3600),
];

/// One refund the merchant made, as a file (`import --refunds`) states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRow {
    /// Its line (or sheet row) in the file.
    pub line: u64,
    pub payment_id: super::PaymentId,
    /// What went back, positive.
    pub amount: Decimal,
    pub currency: Currency,
    pub requested_at: DateTime<Utc>,
    /// The merchant's own reference for it: one refund per payment and reference.
    pub reference: String,
}

/// A refund the merchant says it made (`import --refunds`), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub id: i64,
    pub amount: Decimal,
    pub currency: Currency,
    pub requested_at: DateTime<Utc>,
    pub reference: String,
    /// The provider's fact it was matched to, once it is.
    pub matched: Option<String>,
}

/// Money the provider returned for the same payment (a refund, reversal or chargeback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned {
    /// Its `fact_key`.
    pub key: String,
    pub kind: MoneyKind,
    /// As a positive amount.
    pub amount: Decimal,
    pub currency: Currency,
    /// When the provider says it happened, or when it was seen.
    pub at: DateTime<Utc>,
}

/// What `invoice/info` says of a payment, against what the Merchant status API says:
/// `Some((expected, actual))` when they name another amount, currency or order (each
/// compared only when both state it), for `status_api_disagrees`; `None` when they agree.
pub fn status_disagreement(
    invoice: (Option<Decimal>, Option<&str>, Option<&str>),
    status_api: (Option<Decimal>, Option<&str>, Option<&str>),
) -> Option<FlagText> {
    let differ = |a: Option<&str>, b: Option<&str>| matches!((a, b), (Some(a), Some(b)) if a != b);
    let amounts = matches!((invoice.0, status_api.0), (Some(a), Some(b)) if a != b);
    if !(amounts || differ(invoice.1, status_api.1) || differ(invoice.2, status_api.2)) {
        return None;
    }
    let said = |(amount, currency, order): (Option<Decimal>, Option<&str>, Option<&str>)| {
        format!(
            "{} {}, order {}",
            amount.map_or_else(|| "no amount".to_owned(), |a| a.to_string()),
            currency.unwrap_or("(no currency)"),
            order.map_or_else(|| "(none)".to_owned(), |o| format!("{o:?}"))
        )
    };
    Some((
        Some(format!("invoice/info: {}", said(invoice))),
        Some(format!("status API: {}", said(status_api))),
    ))
}

/// A flag's expected and actual.
pub type FlagText = (Option<String>, Option<String>);

/// What matching a payment's refund requests to its returns found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefundMatching {
    /// (request id, fact key): new matches to write.
    pub matches: Vec<(i64, String)>,
    /// Per refund flag kind: `Some` holds (its expected and actual), `None` clears.
    pub findings: Vec<(super::FlagKind, Option<FlagText>)>,
    /// The next time a request not matched yet is to be looked for (its next step of
    /// [`REQUEST_LOOKS`] after `now`).
    pub next_look: Option<DateTime<Utc>>,
}

/// Matches a payment's refund requests to the money it got back, as of `now`: each request
/// not matched yet takes a return nobody took, of its currency, a refund or reversal (a
/// chargeback is never something a merchant asks for): first one of the same amount, then,
/// for requests still unmatched, the earliest left; requests in the order they were made. Then three findings:
/// `refund_amount_mismatch` (a match whose amounts differ), `refund_missing` (a request not
/// matched by its last look), `unexpected_refund` (a return no request matches).
pub fn match_refunds(
    requests: &[RefundRequest],
    returns: &[Returned],
    now: DateTime<Utc>,
) -> RefundMatching {
    use super::FlagKind;

    let mut taken: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.matched.as_deref())
        .collect();
    let mut pairs: Vec<(&RefundRequest, &Returned)> = requests
        .iter()
        .filter_map(|r| {
            let key = r.matched.as_deref()?;
            Some((r, returns.iter().find(|x| x.key == key)?))
        })
        .collect();
    let mut matching = RefundMatching::default();
    let mut open: Vec<&RefundRequest> = requests.iter().filter(|r| r.matched.is_none()).collect();
    open.sort_by_key(|r| (r.requested_at, r.id));
    // The same amount first, for every request, then what is left by time: a request of
    // 100 made earlier never takes the 400 another request of 400 was answered with.
    let mut unmatched = Vec::new();
    for exact in [true, false] {
        for request in std::mem::take(&mut open) {
            let found = returns
                .iter()
                .filter(|x| {
                    x.kind != MoneyKind::Chargeback
                        && x.currency == request.currency
                        && (!exact || x.amount == request.amount)
                        && !taken.contains(&x.key.as_str())
                })
                .min_by_key(|x| (x.at, x.key.as_str()));
            match found {
                Some(returned) => {
                    taken.push(&returned.key);
                    pairs.push((request, returned));
                    matching.matches.push((request.id, returned.key.clone()));
                }
                None if exact => open.push(request),
                None => unmatched.push(request),
            }
        }
    }
    matching.matches.sort();

    let listed = |items: Vec<String>| (!items.is_empty()).then(|| bounded(items.join("; ")));
    let differ: Vec<&(&RefundRequest, &Returned)> =
        pairs.iter().filter(|(r, x)| r.amount != x.amount).collect();
    let mismatch = listed(
        differ
            .iter()
            .map(|(r, _)| format!("{} {} ({})", r.amount, r.currency, r.reference))
            .collect(),
    )
    .map(|expected| {
        let actual = differ
            .iter()
            .map(|(_, x)| format!("{} {} ({})", x.amount, x.currency, x.key))
            .collect::<Vec<_>>()
            .join("; ");
        (Some(expected), Some(bounded(actual)))
    });
    let last_look =
        |r: &RefundRequest| after(r.requested_at, REQUEST_LOOKS[REQUEST_LOOKS.len() - 1]);
    let missing: Vec<&&RefundRequest> = unmatched.iter().filter(|r| now >= last_look(r)).collect();
    let missing = listed(
        missing
            .iter()
            .map(|r| {
                format!(
                    "{} {} ({}, requested {})",
                    r.amount,
                    r.currency,
                    r.reference,
                    r.requested_at.to_rfc3339()
                )
            })
            .collect(),
    )
    .map(|expected| (Some(expected), Some("not shown by the provider".to_owned())));
    let unexpected = listed(
        returns
            .iter()
            .filter(|x| !taken.contains(&x.key.as_str()))
            .map(|x| {
                format!(
                    "{} {} {} ({})",
                    x.kind.as_str(),
                    x.amount,
                    x.currency,
                    x.key
                )
            })
            .collect(),
    )
    .map(|actual| (Some("a refund the merchant made".to_owned()), Some(actual)));
    matching.findings = vec![
        (FlagKind::RefundAmountMismatch, mismatch),
        (FlagKind::RefundMissing, missing),
        (FlagKind::UnexpectedRefund, unexpected),
    ];
    matching.next_look = unmatched
        .iter()
        .filter_map(|r| {
            REQUEST_LOOKS
                .iter()
                .map(|&delay| after(r.requested_at, delay))
                .find(|&at| at > now)
        })
        .min();
    matching
}

fn after(at: DateTime<Utc>, delay: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A flag's text is bounded: the first refunds listed, and how many more.
fn bounded(text: String) -> String {
    const MOST: usize = 400;
    if text.chars().count() <= MOST {
        return text;
    }
    let cut: String = text.chars().take(MOST).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn kzt() -> Currency {
        "KZT".parse().unwrap()
    }

    #[test]
    fn money_is_signed_for_the_merchant_whatever_sign_the_provider_sends() {
        let paid = MoneyFact::payment(d("5000"), kzt(), None, MoneySource::Poll);
        assert_eq!((paid.amount, paid.key.as_str()), (d("5000"), "payment"));
        for stated in [d("-1500"), d("1500")] {
            let refund = MoneyFact::returned(
                MoneyKind::Refund,
                stated,
                kzt(),
                Some("123456790"),
                Some("123456789"),
                Some("success"),
                None,
                MoneySource::StatusApi,
            );
            assert_eq!(refund.amount, d("-1500"), "{stated}");
            assert_eq!(refund.provider_amount, Some(stated), "kept as sent");
            assert_eq!(refund.key, "child:123456790");
        }
    }

    #[test]
    fn a_child_without_an_id_of_its_own_is_told_apart_by_its_time_and_amount() {
        let at = "2025-07-12T05:00:00Z".parse().ok();
        let child = |id: Option<&str>, amount| {
            MoneyFact::returned(
                MoneyKind::Refund,
                amount,
                kzt(),
                id,
                Some("123456789"),
                None,
                at,
                MoneySource::StatusApi,
            )
            .key
        };
        assert_eq!(
            child(Some("123456789"), d("-1500.00")),
            "refund:2025-07-12T05:00:00+00:00:1500"
        );
        assert_eq!(
            child(None, d("-1500")),
            child(Some("123456789"), d("-1500.0"))
        );
        assert_ne!(child(None, d("-1500")), child(None, d("-1000")));
    }

    #[test]
    fn a_commission_is_booked_only_from_a_net_below_the_gross() {
        let kept =
            MoneyFact::commission(d("500"), d("482.5"), kzt(), None, MoneySource::Poll).unwrap();
        assert_eq!((kept.amount, kept.key.as_str()), (d("-17.5"), "commission"));
        assert!(
            MoneyFact::commission(d("500"), d("500"), kzt(), None, MoneySource::Poll).is_none()
        );
        assert!(
            MoneyFact::commission(d("500"), d("510"), kzt(), None, MoneySource::Poll).is_none()
        );
        assert!(MoneyFact::commission(d("500"), d("-1"), kzt(), None, MoneySource::Poll).is_none());
    }

    #[test]
    fn the_watch_looks_at_each_point_still_ahead_and_ends_with_its_horizon() {
        use std::time::Duration as D;
        let day = |n: u64| D::from_secs(n * 86400);
        let ladder = [day(1), day(7), day(30), day(90)];
        let since: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |n: i64| since + chrono::Duration::days(n);
        assert_eq!(next_look(&ladder, day(180), since, since), Some(at(1)));
        assert_eq!(next_look(&ladder, day(180), since, at(1)), Some(at(7)));
        // Missed points are not made up: a look on day 40 is followed by day 90.
        assert_eq!(next_look(&ladder, day(180), since, at(40)), Some(at(90)));
        assert_eq!(next_look(&ladder, day(180), since, at(90)), None);
        // The horizon cuts the ladder.
        assert_eq!(next_look(&ladder, day(30), since, at(7)), Some(at(30)));
        assert_eq!(next_look(&ladder, day(20), since, at(7)), None);
    }

    #[test]
    fn a_failing_status_api_is_asked_less_and_less_often() {
        let waits: Vec<u64> = (1..=12)
            .map(|n| watch_retry_after(n).as_secs() / 60)
            .collect();
        assert_eq!(
            waits,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 1440, 1440, 1440]
        );
        assert_eq!(watch_retry_after(u32::MAX).as_secs(), 86400);
    }

    fn request(id: i64, amount: &str, minutes: i64) -> RefundRequest {
        RefundRequest {
            id,
            amount: d(amount),
            currency: kzt(),
            requested_at: t(minutes),
            reference: format!("R-{id}"),
            matched: None,
        }
    }

    fn returned(key: &str, kind: MoneyKind, amount: &str, minutes: i64) -> Returned {
        Returned {
            key: key.into(),
            kind,
            amount: d(amount),
            currency: kzt(),
            at: t(minutes),
        }
    }

    fn t(minutes: i64) -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::minutes(minutes)
    }

    fn holds(m: &RefundMatching) -> Vec<(&'static str, FlagText)> {
        m.findings
            .iter()
            .filter_map(|(kind, f)| Some((kind.as_str(), f.clone()?)))
            .collect()
    }

    #[test]
    fn requests_take_the_same_amount_first_and_what_nobody_asked_for_is_unexpected() {
        let requests = [request(1, "300", 0), request(2, "500", 5)];
        let returns = [
            returned("child:a", MoneyKind::Refund, "500", 20),
            returned("child:b", MoneyKind::Refund, "300", 30),
            returned("child:c", MoneyKind::Chargeback, "300", 40),
        ];
        let m = match_refunds(&requests, &returns, t(60));
        assert_eq!(m.matches, [(1, "child:b".into()), (2, "child:a".into())]);
        assert_eq!(
            holds(&m),
            [(
                "unexpected_refund",
                (
                    Some("a refund the merchant made".into()),
                    Some("chargeback 300 KZT (child:c)".into())
                )
            )],
            "a chargeback is never what the merchant asked for"
        );
        assert_eq!(m.next_look, None, "everything asked for is found");
    }

    #[test]
    fn a_request_not_seen_is_looked_for_on_its_steps_and_missing_after_the_last() {
        let requests = [request(1, "300", 0)];
        let m = match_refunds(&requests, &[], t(5));
        assert_eq!(m.next_look, Some(t(10)));
        assert!(holds(&m).is_empty());
        let m = match_refunds(&requests, &[], t(10));
        assert_eq!(m.next_look, Some(t(60)));
        let m = match_refunds(&requests, &[], t(24 * 60));
        assert_eq!(m.next_look, None);
        assert_eq!(holds(&m)[0].0, "refund_missing");
        // Seen later, with another amount: matched, missing clears, the amounts differ.
        let returns = [returned("child:a", MoneyKind::Reversal, "250", 2000)];
        let m = match_refunds(&requests, &returns, t(3000));
        assert_eq!(m.matches, [(1, "child:a".into())]);
        assert_eq!(
            holds(&m),
            [(
                "refund_amount_mismatch",
                (
                    Some("300 KZT (R-1)".into()),
                    Some("250 KZT (child:a)".into())
                )
            )]
        );
        let cleared: Vec<&str> = m
            .findings
            .iter()
            .filter(|(_, f)| f.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(cleared, ["refund_missing", "unexpected_refund"]);
        // Already matched: kept, nothing new.
        let mut matched = requests.clone();
        matched[0].matched = Some("child:a".into());
        let again = match_refunds(&matched, &returns, t(3001));
        assert!(again.matches.is_empty());
        assert_eq!(holds(&again), holds(&m));
    }

    #[test]
    fn the_status_api_disagrees_only_about_what_both_state() {
        let order = Some("A-1");
        let same = status_disagreement(
            (Some(d("900")), Some("KZT"), order),
            (Some(d("900.00")), Some("KZT"), None),
        );
        assert_eq!(
            same, None,
            "900 = 900.00, and an order one side does not state"
        );
        let (expected, actual) = status_disagreement(
            (Some(d("900")), Some("KZT"), order),
            (Some(d("1000")), Some("KZT"), Some("A-2")),
        )
        .unwrap();
        assert_eq!(
            expected.as_deref(),
            Some("invoice/info: 900 KZT, order \"A-1\"")
        );
        assert_eq!(
            actual.as_deref(),
            Some("status API: 1000 KZT, order \"A-2\"")
        );
    }
}
