//! Bank statements (issue 27, item 2): `import --bank` keeps each 1C file once and each
//! operation once, as read; a credit from the provider's accounts is marked as its payout; a
//! bad statement imports nothing.

use std::io::Write as _;

use freedompay_recon::simulator::Scenario;
use rust_decimal::Decimal;

use crate::helpers::{TestApp, ok, refused};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/bank/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_kept_once_and_an_overlapping_one_adds_only_what_is_new() {
    let app = TestApp::new(Scenario::new()).await;
    let provider = [(
        "FREEDOMPAY_RECON__BANK__PROVIDER_ACCOUNTS",
        "KZ009999999999999999",
    )];
    let said = ok(&app
        .run_with(&["import", "--bank", &fixture("kz_windows.txt")], &provider)
        .await);
    assert!(
        said.contains("2 operations (windows-1251), 2 new, 0 in statements imported before; 1 of the new are credits from the provider (96525.00 in all)"),
        "{said}"
    );
    let lines: Vec<(i32, String, Decimal, String, bool, Option<String>)> = sqlx::query_as(
        "select line, direction, amount, value_date::text, from_provider, purpose
         from recon.bank_lines order by line",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        lines,
        [
            (
                18,
                "credit".to_owned(),
                "96525.00".parse().unwrap(),
                "2025-07-14".to_owned(),
                true,
                Some("Возмещение по реестру за 13.07.2025".to_owned())
            ),
            (
                34,
                "debit".to_owned(),
                "1500.00".parse().unwrap(),
                "2025-07-14".to_owned(),
                false,
                Some("Аренда за июль".to_owned())
            ),
        ]
    );
    // The same file again: nothing changes. The same operations in another file (the cp866
    // export of the same day): the file is kept, no operation twice.
    let again = ok(&app
        .run_with(&["import", "--bank", &fixture("kz_windows.txt")], &provider)
        .await);
    assert!(again.contains("imported already on"), "{again}");
    let overlap = ok(&app
        .run_with(&["import", "--bank", &fixture("kz_dos.txt")], &provider)
        .await);
    assert!(
        overlap.contains("2 operations (IBM866), 0 new, 2 in statements imported before"),
        "{overlap}"
    );
    assert_eq!(app.count("select count(*) from recon.bank_files").await, 2);
    assert_eq!(app.count("select count(*) from recon.bank_lines").await, 2);

    // A statement with a bad document: refused by line, nothing stored.
    let mut bad = tempfile::NamedTempFile::with_suffix(".txt").unwrap();
    bad.write_all(
        "1CClientBankExchange\nКодировка=UTF-8\nРасчСчет=KZ1\nСекцияДокумент=выписка\n\
         СуммаПриход=десять\nДатаОперации=14.07.2025\nКонецДокумента\n"
            .as_bytes(),
    )
    .unwrap();
    let said = refused(
        &app.run(&["import", "--bank", bad.path().to_str().unwrap()])
            .await,
    );
    assert!(
        said.contains("line 4: \"десять\" is not an amount; nothing was imported"),
        "{said}"
    );
    assert_eq!(app.count("select count(*) from recon.bank_files").await, 2);
    // As read, for good.
    let changed = sqlx::query("update recon.bank_lines set amount = 1")
        .execute(app.pool())
        .await;
    assert!(changed.is_err());
}
