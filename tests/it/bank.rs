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

/// (operation_id, kind, amount, commission, parent_payment_id) of a registry line.
type RegistryLine = (String, String, Decimal, Option<Decimal>, Option<String>);

fn registry_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::with_suffix(".csv").unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_is_kept_once_an_overlapping_one_adds_only_what_is_new_and_a_bad_one_nothing() {
    let app = TestApp::new(Scenario::new()).await;
    let header = "TRANS_DATE;TRANSACTION_ID;SUM;COMMISSION;PARENT_TRANSACTION_ID;TRANSACTION_TYPE;ORDER_UID\n";
    let monday = registry_file(&format!(
        "{header}2025-07-13 10:00:00;9001;5 000,00;175,00;;PAYMENT;o-1\n\
         2025-07-13 18:30:00;9002;-1 500,00;0;9001;REFUND;o-1\n"
    ));
    let path = |f: &tempfile::NamedTempFile| f.path().to_str().unwrap().to_owned();
    let said = ok(&app.run(&["import", "--registry", &path(&monday)]).await);
    assert!(
        said.contains("2 operations, 2 new, 0 in registries imported before"),
        "{said}"
    );
    let again = ok(&app.run(&["import", "--registry", &path(&monday)]).await);
    assert!(again.contains("imported already on"), "{again}");
    // Monday's refund again, and Tuesday's payment.
    let overlap = registry_file(&format!(
        "{header}2025-07-13 18:30:00;9002;-1 500,00;0;9001;REFUND;o-1\n\
         2025-07-14 09:00:00;9003;700,00;24,50;;PAYMENT;o-2\n"
    ));
    let said = ok(&app.run(&["import", "--registry", &path(&overlap)]).await);
    assert!(
        said.contains("2 operations, 1 new, 1 in registries imported before"),
        "{said}"
    );
    let lines: Vec<RegistryLine> = sqlx::query_as(
        "select operation_id, kind, amount, commission, parent_payment_id
         from recon.registry_lines order by operation_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        lines,
        [
            (
                "9001".into(),
                "payment".into(),
                "5000.00".parse().unwrap(),
                Some("175.00".parse().unwrap()),
                None
            ),
            (
                "9002".into(),
                "refund".into(),
                "-1500.00".parse().unwrap(),
                Some("0".parse().unwrap()),
                Some("9001".into())
            ),
            (
                "9003".into(),
                "payment".into(),
                "700.00".parse().unwrap(),
                Some("24.50".parse().unwrap()),
                None
            ),
        ]
    );
    let raw: String = sqlx::query_scalar(
        "select raw ->> 'order_uid' from recon.registry_lines where operation_id = '9003'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(raw, "o-2", "every cell kept by its header");

    // One bad line: nothing of the file. A map that names a column the file lacks: said.
    let bad = registry_file(&format!(
        "{header}2025-07-15 10:00:00;9004;100,00;0;;PAYMENT;o\n2025-07-15 10:00:00;9005;сто;0;;PAYMENT;o\n"
    ));
    let output = app.run(&["import", "--registry", &path(&bad)]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3: amount:"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    let mut map = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    map.write_all(
        b"currency = \"KZT\"\n[columns]\noperation_id = \"ID\"\ntype = \"TYPE\"\namount = \"SUM\"\noperation_time = \"TRANS_DATE\"\n[types]\npayment = [\"PAYMENT\"]\n",
    )
    .unwrap();
    let said = refused(
        &app.run(&[
            "import",
            "--registry",
            &path(&bad),
            "--map",
            map.path().to_str().unwrap(),
        ])
        .await,
    );
    assert!(
        said.contains("the file has no column \"ID\" (columns.operation_id)"),
        "{said}"
    );
    assert_eq!(
        app.count("select count(*) from recon.registry_lines").await,
        3
    );
    assert_eq!(
        app.count("select count(*) from recon.registry_files").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xlsx_statement_is_read_through_its_map_and_refused_without_one() {
    use freedompay_recon::intake::bank_sheet::EXAMPLE_MAP;

    let app = TestApp::new(Scenario::new()).await;
    let provider = [(
        "FREEDOMPAY_RECON__BANK__PROVIDER_ACCOUNTS",
        "KZ009999999999999999",
    )];
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet().set_name("Statement").unwrap();
    let rows: [[&str; 6]; 3] = [
        [
            "Дата операции",
            "Номер документа",
            "Дебет",
            "Кредит",
            "Счет корреспондента",
            "Назначение платежа",
        ],
        [
            "14.07.2025",
            "5521",
            "",
            "",
            "KZ009999999999999999",
            "Возмещение по реестру",
        ],
        [
            "14.07.2025",
            "5522",
            "",
            "",
            "KZ550000000000000001",
            "Аренда за июль",
        ],
    ];
    for (r, row) in rows.iter().enumerate() {
        for (c, value) in row.iter().enumerate() {
            if !value.is_empty() {
                sheet
                    .write_string(u32::try_from(r).unwrap(), u16::try_from(c).unwrap(), *value)
                    .unwrap();
            }
        }
    }
    sheet.write_number(1, 3, 96525.0).unwrap();
    sheet.write_number(2, 2, 1500.0).unwrap();
    let file = tempfile::NamedTempFile::with_suffix(".xlsx").unwrap();
    book.save(file.path()).unwrap();
    let path = file.path().to_str().unwrap();

    let without = refused(&app.run_with(&["import", "--bank", path], &provider).await);
    assert!(
        without.contains("read through a column map: give it with --map"),
        "{without}"
    );
    assert_eq!(app.count("select count(*) from recon.bank_files").await, 0);

    // The example map names columns this export lacks (КНП, БИН/ИИН): refused by name.
    let mut map = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    map.write_all(EXAMPLE_MAP.as_bytes()).unwrap();
    let lacking = refused(
        &app.run_with(
            &[
                "import",
                "--bank",
                path,
                "--map",
                map.path().to_str().unwrap(),
            ],
            &provider,
        )
        .await,
    );
    assert!(
        lacking.contains("(columns.counterparty_tax_id)"),
        "{lacking}"
    );

    let own = EXAMPLE_MAP
        .lines()
        .filter(|l| !l.starts_with("counterparty_tax_id") && !l.starts_with("knp"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut map = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    map.write_all(own.as_bytes()).unwrap();
    let said = ok(&app
        .run_with(
            &[
                "import",
                "--bank",
                path,
                "--map",
                map.path().to_str().unwrap(),
            ],
            &provider,
        )
        .await);
    assert!(
        said.contains("2 operations (xlsx), 2 new, 0 in statements imported before; 1 of the new are credits from the provider (96525 in all)"),
        "{said}"
    );
    let stored: Vec<(String, String, Decimal, bool)> = sqlx::query_as(
        "select f.format, l.direction, l.amount, l.from_provider
         from recon.bank_lines l join recon.bank_files f on f.id = l.file_id order by l.line",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            (
                "xlsx".into(),
                "credit".into(),
                "96525".parse().unwrap(),
                true
            ),
            (
                "xlsx".into(),
                "debit".into(),
                "1500".parse().unwrap(),
                false
            ),
        ]
    );
}
