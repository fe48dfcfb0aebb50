//! Refunds the merchant made (issue 26, item 5): `import --refunds` (CSV or xlsx, all rows or
//! none), each looked for at the provider and matched to its refund; `refund_missing`,
//! `refund_amount_mismatch` and `unexpected_refund` opened once and cleared when explained.

use std::io::Write as _;

use freedompay_recon::provider::merchant_status::MerchantAccount;
use freedompay_recon::simulator::{Refund, Reply, Scenario};
use secrecy::SecretString;

use crate::helpers::{TestApp, ok, refused};

const SECRET: &str = "the-merchant-secret-key";

async fn paid_and_watched() -> TestApp {
    let app = TestApp::with(
        Scenario::new()
            .payment("900", [Reply::invoice("success", "1000", "KZT")])
            .payment("901", [Reply::invoice("success", "2000", "KZT")])
            .payment("902", [Reply::invoice("success", "500", "KZT")]),
        &[
            ("FREEDOMPAY_RECON__MERCHANT__ID", "555555"),
            ("FREEDOMPAY_RECON__MERCHANT__SECRET", SECRET),
            ("FREEDOMPAY_RECON__REFUNDS__WATCH", "30d"),
            ("FREEDOMPAY_RECON__REFUNDS__WATCH_FOR", "60d"),
        ],
    )
    .await;
    app.sim.merchant_account(MerchantAccount {
        id: "555555".into(),
        secret: SecretString::from(SECRET.to_owned()),
        script: "get_status3.php".into(),
    });
    app.insert_ids(&["900", "901", "902"]).await;
    app.sweep().await;
    app
}

fn file(suffix: &str, text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::with_suffix(suffix).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().unwrap()
}

/// Every watched payment's next look is due now.
async fn looks_due(app: &TestApp) {
    sqlx::query("update recon.refund_watch set next_at = now()")
        .execute(app.pool())
        .await
        .unwrap();
}

/// (kind, open, expected, actual) of every refund flag, by payment and kind.
async fn refund_flags(app: &TestApp) -> Vec<(String, String, bool, Option<String>)> {
    sqlx::query_as(
        "select payment_id, kind, resolved_at is null, actual from recon.discrepancies
         where kind in ('refund_missing', 'refund_amount_mismatch', 'unexpected_refund')
         order by payment_id, kind, id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_the_merchant_made_are_matched_to_the_providers_and_the_rest_flagged_once() {
    let app = paid_and_watched().await;
    let recent: String = sqlx::query_scalar("select to_char((now() - interval '20 minutes') at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let header = "payment_id,amount,currency,requested_at,reference\n";

    // One unknown payment: the whole file is refused, by line.
    let bad = file(
        ".csv",
        &format!("{header}900,400,KZT,{recent},R-1\n999,10,KZT,{recent},R-9\n"),
    );
    let said = refused(&app.run(&["import", "--refunds", path(&bad)]).await);
    assert!(
        said.contains("line 3: payment_id: no payment '999' is tracked"),
        "{said}"
    );
    assert!(said.contains("nothing was imported"), "{said}");
    assert_eq!(
        app.count("select count(*) from recon.merchant_refunds")
            .await,
        0
    );

    let good = file(
        ".csv",
        &format!(
            "{header}900,400,KZT,{recent},R-1\n901,2000,KZT,{recent},R-2\n\
             900,100,KZT,2026-11-01T10:00:00Z,R-3\n"
        ),
    );
    let said = ok(&app.run(&["import", "--refunds", path(&good)]).await);
    assert!(
        said.contains("3 refunds imported, 0 already known"),
        "{said}"
    );
    let said = ok(&app.run(&["import", "--refunds", path(&good)]).await);
    assert!(
        said.contains("0 refunds imported, 3 already known"),
        "{said}"
    );
    let changed = file(".csv", &format!("{header}900,450,KZT,{recent},R-1\n"));
    let said = refused(&app.run(&["import", "--refunds", path(&changed)]).await);
    assert!(
        said.contains("line 2: reference: 'R-1' of '900' is stored already"),
        "{said}"
    );
    // Looked for soon after: at their hour (the 10 minutes are past).
    let due_in: i64 = app
        .count("select extract(epoch from next_at - now())::int8 from recon.refund_watch where payment_id = '901'")
        .await;
    assert!((2350..=2400).contains(&due_in), "{due_in}");

    // The provider: R-1 exactly, R-2 short, and a refund of 902 nobody here made.
    let refund = |id: &str, amount: &str| Refund {
        payment_id: id.into(),
        amount: amount.into(),
        date: "2026-12-06 10:00:00".into(),
    };
    app.sim.refund("900", refund("9001", "400"));
    app.sim.refund("901", refund("9011", "1500"));
    app.sim.refund("902", refund("9021", "500"));
    looks_due(&app).await;
    let swept = app.sweep().await;
    assert_eq!(swept.watch.money_events, 3, "{swept:?}");
    let flags = refund_flags(&app).await;
    assert_eq!(
        flags
            .iter()
            .map(|(p, k, open, _)| (p.as_str(), k.as_str(), *open))
            .collect::<Vec<_>>(),
        [
            ("900", "refund_missing", true),
            ("901", "refund_amount_mismatch", true),
            ("902", "unexpected_refund", true),
        ],
        "{flags:?}"
    );
    assert!(flags[0].3.as_deref() == Some("not shown by the provider"));
    assert_eq!(flags[1].3.as_deref(), Some("1500 KZT (child:9011)"));
    assert_eq!(flags[2].3.as_deref(), Some("refund 500 KZT (child:9021)"));
    let matched: Vec<(String, Option<String>)> = sqlx::query_as(
        "select reference, matched_key from recon.merchant_refunds order by reference",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        matched,
        [
            ("R-1".to_owned(), Some("child:9001".to_owned())),
            ("R-2".to_owned(), Some("child:9011".to_owned())),
            ("R-3".to_owned(), None),
        ]
    );

    // Looked at again: nothing flagged twice, nothing matched twice.
    looks_due(&app).await;
    app.sweep().await;
    assert_eq!(refund_flags(&app).await, flags);

    // 902's refund imported late (from a workbook): matched at its look, and the flag clears.
    let xlsx = tempfile::NamedTempFile::with_suffix(".xlsx").unwrap();
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet().set_name("Refunds").unwrap();
    for (column, name) in [
        "payment_id",
        "amount",
        "currency",
        "requested_at",
        "reference",
    ]
    .iter()
    .enumerate()
    {
        sheet.write_string(0, column as u16, *name).unwrap();
    }
    sheet.write_string(1, 0, "902").unwrap();
    sheet.write_number(1, 1, 500).unwrap();
    sheet.write_string(1, 2, "KZT").unwrap();
    sheet.write_string(1, 3, recent.as_str()).unwrap();
    sheet.write_string(1, 4, "R-9").unwrap();
    book.save(xlsx.path()).unwrap();
    let said = ok(&app.run(&["import", "--refunds", path(&xlsx)]).await);
    assert!(said.contains("1 refunds imported"), "{said}");
    looks_due(&app).await;
    app.sweep().await;
    let open: Vec<(String, String)> = refund_flags(&app)
        .await
        .into_iter()
        .filter(|(_, _, open, _)| *open)
        .map(|(p, k, _, _)| (p, k))
        .collect();
    assert_eq!(
        open,
        [
            ("900".to_owned(), "refund_missing".to_owned()),
            ("901".to_owned(), "refund_amount_mismatch".to_owned()),
        ]
    );
    assert_eq!(
        app.count("select count(*) from recon.merchant_refunds where matched_key is not null")
            .await,
        3
    );
    // A match, once made, is kept.
    let changed = sqlx::query(
        "update recon.merchant_refunds set matched_key = null, matched_at = null
         where reference = 'R-9'",
    )
    .execute(app.pool())
    .await;
    assert!(changed.is_err(), "{changed:?}");
}
