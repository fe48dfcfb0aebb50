//! Issue 27's acceptance: a month of payments with refunds and reversals, the registries and
//! the statement the simulator writes for them with every knob turned, imported as a
//! finance team would: every payout matched, each injected error flagged exactly once,
//! re-imports change nothing, and the money table equals hand SQL over the raw rows.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use freedompay_recon::simulator::Scenario;
use freedompay_recon::simulator::settlement::{
    Knobs, PROVIDER_IIK, Paid, REGISTRY_MAP, Returned, write,
};
use rust_decimal::Decimal;

use crate::helpers::{TestApp, ok};

const ENV: [(&str, &str); 2] = [
    ("FREEDOMPAY_RECON__BANK__PROVIDER_ACCOUNTS", PROVIDER_IIK),
    ("FREEDOMPAY_RECON__REGISTRY__COMMISSION_PERCENT", "2.5"),
];

const PAYMENTS: usize = 240;

/// November's payments, eight a day, at hours spread over the day (UTC), with amounts that
/// do not repeat.
fn november() -> Vec<Paid> {
    (0..PAYMENTS)
        .map(|i| {
            let day = u32::try_from(i / 8).unwrap() + 1;
            let hour = u32::try_from((i * 5) % 24).unwrap();
            let cents = 100_000 + (i as i64 * 7919) % 9_000_000;
            Paid {
                payment_id: format!("nov-{i:03}"),
                order_id: Some(format!("order-{i:03}")),
                amount: Decimal::new(cents, 2),
                currency: "KZT".into(),
                at: Utc.with_ymd_and_hms(2026, 11, day, hour, 17, 0).unwrap(),
            }
        })
        .collect()
}

/// Money given back: every 19th payment refunded in half two days later, every 47th
/// reversed in full the next day.
fn returns(paid: &[Paid]) -> Vec<Returned> {
    let mut back = Vec::new();
    for (i, p) in paid.iter().enumerate() {
        if i % 19 == 3 {
            back.push(Returned {
                id: format!("refund-{i:03}"),
                payment_id: p.payment_id.clone(),
                reversal: false,
                amount: (p.amount / Decimal::TWO).round_dp(2),
                currency: p.currency.clone(),
                at: p.at + Duration::days(2),
            });
        }
        if i % 47 == 5 {
            back.push(Returned {
                id: format!("reversal-{i:03}"),
                payment_id: p.payment_id.clone(),
                reversal: true,
                amount: p.amount,
                currency: p.currency.clone(),
                at: p.at + Duration::days(1),
            });
        }
    }
    back
}

/// The payments as tracked and paid, and half the returns as the status API booked them
/// (the registries state the others first), by plain SQL.
async fn recorded(app: &TestApp, paid: &[Paid], back: &[Returned]) {
    for p in paid {
        sqlx::query(
            "insert into recon.payments (payment_id, expected_amount, expected_currency, order_id, created_at)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(&p.payment_id)
        .bind(p.amount)
        .bind(&p.currency)
        .bind(&p.order_id)
        .bind(p.at - Duration::minutes(3))
        .execute(app.pool())
        .await
        .unwrap();
        money_event(
            app,
            &p.payment_id,
            "payment",
            p.amount,
            p.at,
            "poll",
            "payment",
        )
        .await;
    }
    for r in back.iter().step_by(2) {
        let kind = if r.reversal { "reversal" } else { "refund" };
        money_event(
            app,
            &r.payment_id,
            kind,
            -r.amount,
            r.at,
            "status_api",
            &format!("child:{}", r.id),
        )
        .await;
    }
}

async fn money_event(
    app: &TestApp,
    payment_id: &str,
    kind: &str,
    amount: Decimal,
    at: DateTime<Utc>,
    source: &str,
    key: &str,
) {
    sqlx::query(
        "insert into recon.money_events
             (payment_id, kind, amount, provider_amount, currency, provider_at, observed_at,
              source, fact_key)
         values ($1, $2, $3, $3, 'KZT', $4, $4, $5, $6)",
    )
    .bind(payment_id)
    .bind(kind)
    .bind(amount)
    .bind(at)
    .bind(source)
    .bind(key)
    .execute(app.pool())
    .await
    .unwrap();
}

/// Everything the matching writes, counted.
async fn state(app: &TestApp) -> [i64; 6] {
    [
        app.count("select count(*) from recon.registry_lines").await,
        app.count("select count(*) from recon.bank_lines").await,
        app.count("select count(*) from recon.settlement_matches")
            .await,
        app.count("select count(*) from recon.settlement_flags")
            .await,
        app.count("select count(*) from recon.discrepancies").await,
        app.count("select count(*) from recon.money_events").await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_month_is_matched_to_the_bank_with_each_injected_error_flagged_once() {
    let app = TestApp::with(Scenario::new(), &ENV).await;
    let paid = november();
    let back = returns(&paid);
    recorded(&app, &paid, &back).await;
    let knobs = Knobs {
        missing_lines: 3,
        wrong_commission: 2,
        split_payouts: 2,
        merged_payouts: 2,
        late_payouts: 1,
        late_days: 9,
    };
    let written = write(&paid, &back, "2.5".parse().unwrap(), knobs);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("map.toml"), REGISTRY_MAP).unwrap();
    let map = dir.path().join("map.toml");
    let mut files = Vec::new();
    for (name, bytes) in &written.registries {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
    }
    let statement = dir.path().join(&written.statement.0);
    std::fs::write(&statement, &written.statement.1).unwrap();

    let import_all = || async {
        for file in &files {
            ok(&app
                .run_with(
                    &[
                        "import",
                        "--registry",
                        file.to_str().unwrap(),
                        "--map",
                        map.to_str().unwrap(),
                    ],
                    &ENV,
                )
                .await);
        }
        ok(&app
            .run_with(&["import", "--bank", statement.to_str().unwrap()], &ENV)
            .await)
    };
    let said = import_all().await;
    assert!(said.contains("(windows-1251)"), "{said}");
    assert_eq!(
        app.count("select count(*) from recon.registry_lines").await,
        (PAYMENTS - 3 + back.len()) as i64
    );

    // Every payout of the bank's currency is matched, by the rules the knobs call for.
    assert_eq!(
        app.count("select count(*) from recon.payouts where net > 0 and bank_lines is null")
            .await,
        0
    );
    let rules: Vec<(String, i64)> = sqlx::query_as(
        "select rule, count(*) from recon.settlement_matches
         where side = 'bank' and undone_at is null group by rule order by rule",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    let payouts = app
        .count("select count(*) from recon.payouts where net > 0")
        .await;
    assert_eq!(
        rules,
        [
            ("credit_many_payouts".to_owned(), 2),
            ("exact".to_owned(), payouts - 4 - 2 - 1),
            ("late".to_owned(), 1),
            ("payout_many_credits".to_owned(), 2),
        ]
    );

    // Each injected error, flagged exactly once; nothing else.
    let mut expected: Vec<(String, String)> = written
        .missing_lines
        .iter()
        .map(|id| ("not_in_registry".to_owned(), format!("payment:{id}")))
        .chain(written.wrong_commission.iter().map(|id| {
            (
                "registry_amount_mismatch".to_owned(),
                format!("payment:{id}"),
            )
        }))
        .chain(written.late_payouts.iter().map(|reference| {
            let day =
                NaiveDate::parse_from_str(&reference[3..], "%Y%m%d").unwrap() + Duration::days(1);
            (
                "payout_not_at_bank".to_owned(),
                format!("payout:KZT:{reference}:{day}"),
            )
        }))
        .collect();
    expected.sort();
    let flags: Vec<(String, String)> = sqlx::query_as(
        "select kind, subject from recon.settlement_flags
         union all
         select kind, 'payment:' || payment_id from recon.discrepancies
         where kind in ('not_in_registry', 'registry_amount_mismatch', 'registry_unknown')
         order by 1, 2",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(flags, expected);

    // What the registries state of money is booked once: a commission per listed payment,
    // and each return the status API had not booked.
    assert_eq!(
        app.count("select count(*) from recon.money_events where kind = 'commission'")
            .await,
        (PAYMENTS - 3) as i64
    );
    assert_eq!(
        app.count("select count(*) from recon.money_events where kind in ('refund', 'reversal')")
            .await,
        back.len() as i64
    );

    // Everything again: nothing changes.
    let before = state(&app).await;
    import_all().await;
    ok(&app.run_with(&["match"], &ENV).await);
    assert_eq!(state(&app).await, before);

    // The money table equals hand SQL over the raw rows (November in Almaty, the default
    // reporting zone).
    let table = ok(&app
        .run_with(
            &[
                "report",
                "--settlement",
                "--month",
                "2026-11",
                "--format",
                "csv",
            ],
            &ENV,
        )
        .await);
    let row: Vec<Decimal> = table
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("{table}"))
        .split(',')
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let hand: (Decimal, Decimal, Decimal, Decimal, Decimal, Decimal) = sqlx::query_as(
        "with nov as (select timestamptz '2026-11-01 00:00+05' as a,
                             timestamptz '2026-12-01 00:00+05' as b),
              lines as (
                  select l.*, case when kind = 'payment' then abs(amount) - coalesce(commission, 0)
                                   else -abs(amount) end as line_net
                  from recon.registry_lines l)
         select
             (select sum(amount) from recon.money_events, nov
              where kind = 'payment' and provider_at >= a and provider_at < b),
             (select -sum(amount) from recon.money_events, nov
              where kind in ('refund', 'reversal', 'commission')
                and provider_at >= a and provider_at < b),
             (select sum(line_net) from lines, nov where operation_at >= a and operation_at < b),
             (select sum(net) from (select sum(line_net) as net from lines
                                    where payout_date between '2026-11-01' and '2026-11-30'
                                    group by payout_reference) p where net > 0),
             (select coalesce(-sum(net), 0) from (select sum(line_net) as net from lines
                                    where payout_date between '2026-11-01' and '2026-11-30'
                                    group by payout_reference) p where net <= 0),
             (select coalesce(sum(b.amount), 0) from recon.bank_lines b
              where b.from_provider and b.value_date between '2026-11-01' and '2026-11-30'
                and not exists (select 1 from recon.settlement_matches m
                                where b.id = any(m.credits)))",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    // paid, refunds, reversals, chargebacks, commission, net due, registries, paid out,
    // withheld, at the bank, in transit, unexplained
    assert_eq!(row[0], hand.0, "{table}");
    assert_eq!(row[1] + row[2] + row[3] + row[4], hand.1, "{table}");
    assert_eq!(row[5], hand.0 - hand.1, "{table}");
    assert_eq!(row[6], hand.2, "{table}");
    assert_eq!(row[7], hand.3, "{table}");
    assert_eq!(row[8], hand.4, "{table}");
    assert_eq!(row[9], hand.3, "every payout of November arrived: {table}");
    assert_eq!(row[10], Decimal::ZERO, "{table}");
    assert_eq!(row[11], hand.5, "{table}");
    assert_eq!(hand.5, Decimal::ZERO);

    // Closed is closed: November signed, a match undone after, and the month's money as
    // signed is what report prints; what changed since is said apart.
    ok(&app
        .run_with(
            &[
                "close",
                "--month",
                "2026-11",
                "--note",
                "registries and bank agree",
                "--by",
                "aigerim",
            ],
            &ENV,
        )
        .await);
    assert_eq!(
        app.count(
            "select count(*) from recon.month_closes where month = '2026-11-01'
             and on_behalf_of = 'aigerim' and settlement_sha256 is not null
             and jsonb_array_length(settlement_figures) = 1"
        )
        .await,
        1,
        "readers see the close and what it signed"
    );
    let exact: i64 = sqlx::query_scalar(
        "select min(id) from recon.settlement_matches where rule = 'exact' and undone_at is null",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    ok(&app
        .run_with(
            &[
                "match",
                "--undo",
                &exact.to_string(),
                "--note",
                "wrong credit",
                "--by",
                "aigerim",
            ],
            &ENV,
        )
        .await);
    let after = ok(&app
        .run_with(
            &[
                "report",
                "--settlement",
                "--month",
                "2026-11",
                "--format",
                "csv",
            ],
            &ENV,
        )
        .await);
    assert_eq!(
        after, table,
        "a closed month's money to the bank never changes"
    );
    let said = ok(&app
        .run_with(&["report", "--settlement", "--month", "2026-11"], &ENV)
        .await);
    assert!(
        said.contains("2026-11 is closed: these are its figures as signed")
            && said.contains("on behalf of aigerim"),
        "{said}"
    );
    let moved: Decimal = sqlx::query_scalar(
        "select p.net from recon.payouts p, recon.settlement_matches m
         where m.id = $1 and p.payout = m.payouts[1]",
    )
    .bind(exact)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(
        said.contains(&format!("in transit {moved}")),
        "the undone payout is in transit now, said apart: {said}"
    );
}
