//! Issue 26's acceptance, in compressed time: 1,000 paid payments watched on the default
//! ladder (1 d, 7 d, 30 d, 90 d) while the provider refunds 5 % of them at random times up to
//! 90 days (some in part, some twice), reverses 1 % and 0.5 % are charged back (entered by
//! hand: the status API never shows a chargeback). Every one is found, the money events are
//! exact, the net the reports print equals hand SQL, the merchant's own refunds are matched
//! and the ones nobody asked for are flagged once.

use std::collections::{BTreeMap, BTreeSet};

use freedompay_recon::domain::money::{MoneyFact, MoneyKind, MoneySource};
use freedompay_recon::domain::{PaymentId, money::RefundRow};
use freedompay_recon::provider::merchant_status::MerchantAccount;
use freedompay_recon::simulator::{Refund, Reply, Scenario};
use freedompay_recon::store;
use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::helpers::{TestApp, ok};

const SECRET: &str = "the-merchant-secret-key";
const PAYMENTS: usize = 1000;

/// A small deterministic generator (xorshift): the same plan every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn id(n: usize) -> String {
    format!("q{n:04}")
}

fn amount(n: usize) -> Decimal {
    Decimal::new(100_000 + n as i64 * 137, 2)
}

/// What the provider gives back, and when (days after the payment was seen paid).
#[derive(Debug, Clone)]
struct Planned {
    payment: usize,
    kind: MoneyKind,
    amount: Decimal,
    day: u32,
    /// The merchant made it (imported with its refunds).
    requested: bool,
}

fn plan() -> Vec<Planned> {
    let mut dice = Dice(0x2026_1206);
    let mut chosen = BTreeSet::new();
    let mut pick = |dice: &mut Dice| loop {
        let n = dice.below(PAYMENTS as u64) as usize + 1;
        if chosen.insert(n) {
            return n;
        }
    };
    let mut planned = Vec::new();
    for j in 0..50 {
        let n = pick(&mut dice);
        let day = dice.below(89) as u32 + 1;
        let quarter = (amount(n) / Decimal::from(4)).round_dp(2);
        let refund = |amount, day| Planned {
            payment: n,
            kind: MoneyKind::Refund,
            amount,
            day,
            requested: j % 2 == 0,
        };
        match j % 3 {
            0 => planned.push(refund(amount(n), day)),
            1 => planned.push(refund(quarter, day)),
            _ => {
                planned.push(refund(quarter, day));
                planned.push(refund(quarter, (day + 10).min(89)));
            }
        }
    }
    for _ in 0..10 {
        let n = pick(&mut dice);
        planned.push(Planned {
            payment: n,
            kind: MoneyKind::Reversal,
            amount: amount(n),
            day: dice.below(89) as u32 + 1,
            requested: false,
        });
    }
    for _ in 0..5 {
        let n = pick(&mut dice);
        planned.push(Planned {
            payment: n,
            kind: MoneyKind::Chargeback,
            amount: amount(n),
            day: 60,
            requested: false,
        });
    }
    planned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_of_refunds_reversals_and_chargebacks_is_found_exactly_and_matched() {
    let mut scenario = Scenario::new();
    for n in 1..=PAYMENTS {
        scenario = scenario.payment(
            &id(n),
            [Reply::invoice("success", &amount(n).to_string(), "KZT")],
        );
    }
    let app = TestApp::with(
        scenario,
        &[
            ("FREEDOMPAY_RECON__MERCHANT__ID", "555555"),
            ("FREEDOMPAY_RECON__MERCHANT__SECRET", SECRET),
            ("FREEDOMPAY_RECON__REFUNDS__WATCH", "1d,7d,30d,90d"),
            ("FREEDOMPAY_RECON__REFUNDS__WATCH_FOR", "180d"),
        ],
    )
    .await;
    app.sim.merchant_account(MerchantAccount {
        id: "555555".into(),
        secret: SecretString::from(SECRET.to_owned()),
        script: "get_status3.php".into(),
    });
    let pool = app.pool();
    let ids: Vec<String> = (1..=PAYMENTS).map(id).collect();
    app.insert_ids(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let swept = app.sweep().await;
    assert_eq!(swept.money_events, PAYMENTS as u64, "{swept:?}");

    let planned = plan();
    // A refund the merchant made that the provider never shows: missing after a day.
    let untouched = (1..=PAYMENTS)
        .find(|n| planned.iter().all(|p| p.payment != *n))
        .unwrap();
    let never = RefundRow {
        line: 2,
        payment_id: PaymentId::parse(&id(untouched)).unwrap(),
        amount: Decimal::new(100, 0),
        currency: "KZT".parse().unwrap(),
        requested_at: chrono::Utc::now() - chrono::Duration::days(2),
        reference: "never-made".into(),
    };
    store::money::import_requests(pool, &[never]).await.unwrap();

    // Day by day: what happened during the day, then the day passes for the watch.
    let mut looks = 0;
    for day in 0..=95u32 {
        let mut requests = Vec::new();
        for (k, p) in planned.iter().enumerate().filter(|(_, p)| p.day == day + 1) {
            let child = Refund {
                payment_id: format!("{}-{k}", id(p.payment)),
                amount: p.amount.to_string(),
                date: "2026-12-06 10:00:00".into(),
            };
            match p.kind {
                MoneyKind::Refund => app.sim.refund(&id(p.payment), child),
                MoneyKind::Reversal => app.sim.reverse(&id(p.payment), child),
                _ => {
                    let fact = MoneyFact::returned(
                        MoneyKind::Chargeback,
                        p.amount,
                        "KZT".parse().unwrap(),
                        Some(&format!("cb-{k}")),
                        None,
                        None,
                        None,
                        MoneySource::Manual,
                    );
                    store::money::record_facts(pool, &id(p.payment), &[fact])
                        .await
                        .unwrap();
                }
            }
            if p.requested {
                requests.push(RefundRow {
                    line: requests.len() as u64 + 2,
                    payment_id: PaymentId::parse(&id(p.payment)).unwrap(),
                    amount: p.amount,
                    currency: "KZT".parse().unwrap(),
                    requested_at: chrono::Utc::now(),
                    reference: format!("R-{k}"),
                });
            }
        }
        if !requests.is_empty() {
            store::money::import_requests(pool, &requests)
                .await
                .unwrap();
        }
        sqlx::query(
            "update recon.refund_watch
             set since = since - interval '1 day', next_at = next_at - interval '1 day'",
        )
        .execute(pool)
        .await
        .unwrap();
        looks += app.sweep().await.watch.looks;
    }

    // Every return found, each once, exactly.
    let booked: Vec<(String, String, Decimal)> = sqlx::query_as(
        "select payment_id, kind, -amount from recon.money_events
         where kind <> 'payment' order by payment_id, kind, -amount",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut expected: Vec<(String, String, Decimal)> = planned
        .iter()
        .map(|p| (id(p.payment), p.kind.as_str().to_owned(), p.amount))
        .collect();
    expected.sort();
    assert_eq!(
        booked.len(),
        81,
        "50 refunded (16 of them twice), 10 reversed, 5 charged back"
    );
    assert_eq!(booked, expected);
    // Looks: the ladder's four per payment, and those the merchant's refunds asked for.
    assert!(
        (4 * PAYMENTS as u64..=4 * PAYMENTS as u64 + 60).contains(&looks),
        "{looks}"
    );

    // What money made of each payment, as planned.
    let by_hand: BTreeMap<String, i64> = {
        let mut seen = BTreeMap::<usize, &str>::new();
        for p in &planned {
            let total: Decimal = planned
                .iter()
                .filter(|q| q.payment == p.payment)
                .map(|q| q.amount)
                .sum();
            seen.insert(
                p.payment,
                match (p.kind, total == amount(p.payment)) {
                    (MoneyKind::Reversal, _) => "reversed",
                    (_, true) => "refunded",
                    (_, false) => "partially_refunded",
                },
            );
        }
        let mut counted = BTreeMap::new();
        for outcome in seen.values() {
            *counted.entry((*outcome).to_owned()).or_default() += 1;
        }
        counted
    };
    let stored: BTreeMap<String, i64> = sqlx::query_as(
        "select money_outcome, count(*) from recon.payment_money
         where money_outcome <> 'paid' group by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(stored, by_hand);
    assert_eq!(
        app.count("select count(*) from recon.payment_money where money_outcome = 'paid'")
            .await,
        (PAYMENTS - by_hand.values().sum::<i64>() as usize) as i64
    );

    // The net the reports print is the events summed by hand.
    let net: String = sqlx::query_scalar(
        "select sum(amount)::text from recon.money_events where kind <> 'commission'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let received: String = sqlx::query_scalar(
        "select sum(amount)::text from recon.money_events where kind = 'payment'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let report = ok(&app.run(&["report", "--money"]).await);
    assert!(
        report.contains(&format!(
            "money moved, KZT: received {received} ({PAYMENTS})"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(", net received {net}")),
        "{report}"
    );
    let totals = store::money::totals(pool, None, None).await.unwrap();
    assert_eq!(totals[0].net_received, net);

    // The merchant's refunds: every one the provider made is matched; the one it never made
    // is missing. The rest of the returns, nobody here asked for: one flag per payment.
    let unmatched: Vec<String> = sqlx::query_scalar(
        "select reference from recon.merchant_refunds where matched_key is null",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(unmatched, ["never-made"]);
    let requested = planned.iter().filter(|p| p.requested).count() as i64;
    assert_eq!(
        app.count("select count(*) from recon.merchant_refunds where matched_key is not null")
            .await,
        requested
    );
    let flagged: BTreeMap<String, i64> = sqlx::query_as(
        "select kind, count(*) from recon.discrepancies
         where kind in ('refund_missing', 'refund_amount_mismatch', 'unexpected_refund')
         group by kind",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let unasked: BTreeSet<usize> = planned
        .iter()
        .filter(|p| !p.requested)
        .map(|p| p.payment)
        .collect();
    assert_eq!(
        flagged,
        BTreeMap::from([
            ("refund_missing".to_owned(), 1),
            ("unexpected_refund".to_owned(), unasked.len() as i64),
        ]),
        "each once, none for an amount: the merchant's refunds are the provider's"
    );
    assert_eq!(
        app.count(
            "select count(*) from recon.open_flags
             where kind = 'unexpected_refund'"
        )
        .await,
        unasked.len() as i64
    );
}
