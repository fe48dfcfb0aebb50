//! The console in a real browser (issue 28): Debian's headless Chromium, driven through
//! chromedriver (WebDriver) by fantoccini, reads the demo's database as a reader role.
//!
//! Where chromedriver is not installed the test says so and skips, unless
//! `FREEDOMPAY_RECON_REQUIRE_CHROMIUM` is set, as `.ci/run` sets it after installing
//! `chromium` and `chromium-driver`: in CI it always runs. Screenshots of the three pages are
//! saved under `target/console-screenshots/` (docs/finance.md shows them).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use rust_decimal::Decimal;

use crate::helpers::{
    MissingDb, Spawned, binary, drop_role, fresh_login_role, ok, output, spawn_console,
};

/// chromedriver on a free loopback port, or `None` (the test skips) where it is missing and
/// not required.
fn chromedriver() -> Option<(Spawned, String)> {
    let found = Command::new("chromedriver").arg("--version").output();
    if let Err(e) = found {
        assert!(
            std::env::var_os("FREEDOMPAY_RECON_REQUIRE_CHROMIUM").is_none(),
            "chromedriver is required here and cannot be run: {e}; \
             apt-get install chromium chromium-driver"
        );
        eprintln!("skipped: no chromedriver ({e}); apt-get install chromium chromium-driver");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let driver = Spawned::spawn(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    Some((driver, format!("http://127.0.0.1:{port}")))
}

/// A headless Chromium session, once chromedriver answers.
async fn browser(webdriver: &str, profile: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,1100",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(webdriver)
            .await
        {
            Ok(client) => return client,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no browser session from chromedriver: {last:?}");
}

/// An amount or count as a page shows it (`1 234,50` with a no-break space, or `1,234.50`
/// in English), as a number.
fn page_number(text: &str, decimal_comma: bool) -> Decimal {
    let plain: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
        .filter(|c| decimal_comma || *c != ',')
        .map(|c| if decimal_comma && c == ',' { '.' } else { c })
        .collect();
    plain
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} on the page is not a number: {e}"))
}

/// The body rows of the table `#id`, each a list of its cells' texts.
async fn table(client: &Client, id: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for row in client
        .find_all(Locator::Css(&format!("#{id} tbody tr")))
        .await
        .unwrap()
    {
        let mut cells = Vec::new();
        for cell in row.find_all(Locator::Css("td")).await.unwrap() {
            cells.push(cell.text().await.unwrap());
        }
        rows.push(cells);
    }
    rows
}

/// A report's CSV: its rows as maps of column to value.
fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// Waits until the browser is on a page whose path starts with `path`; that page's heading.
async fn arrive(client: &Client, path: &str) -> String {
    for _ in 0..100 {
        if client.current_url().await.unwrap().path().starts_with(path) {
            return client
                .find(Locator::Css("h1"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "still on {} rather than {path}",
        client.current_url().await.unwrap()
    );
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reads_the_demos_month_follows_a_flag_and_finds_an_order_in_chromium() {
    let Some((_driver, webdriver)) = chromedriver() else {
        return;
    };
    let db = MissingDb::new("browser");
    ok(&output(binary(&["demo", "--database-url", &db.url])).await);
    let pool = db.pool().await;
    let label: String =
        sqlx::query_scalar("select to_char(recon.report_day(now()), 'YYYY-MM') as label")
            .fetch_one(&pool)
            .await
            .unwrap();

    // The console on a reader role.
    let role = format!("fpr_browser_{}", std::process::id());
    fresh_login_role(&pool, &role).await;
    let mut grant = binary(&["grant-reader", &role]);
    grant.env("DATABASE_URL", &db.url);
    ok(&output(grant).await);
    let mut command = binary(&["console", "--listen", "127.0.0.1:0"]);
    command.env("DATABASE_URL", db.url_as(&role));
    let (console, base) = spawn_console(&mut command);

    let profile = tempfile::tempdir().unwrap();
    let client = browser(&webdriver, profile.path()).await;
    let shots = screenshots();

    // The month: the figures report prints, summed over its days, per currency and outcome.
    client.goto(&format!("{base}/month/{label}")).await.unwrap();
    let mut report = binary(&["report", "--month", &label, "--format", "csv"]);
    report.env("DATABASE_URL", &db.url);
    let report = ok(&output(report).await);
    let mut printed: BTreeMap<(String, String), [Decimal; 5]> = BTreeMap::new();
    for row in csv_rows(&report) {
        let sums = printed
            .entry((row["currency"].clone(), row["outcome"].clone()))
            .or_default();
        for (i, column) in [
            "payments",
            "expected_amount",
            "received_payments",
            "received_amount",
            "needs_action",
        ]
        .into_iter()
        .enumerate()
        {
            let value = row[column].as_str();
            sums[i] += if value.is_empty() {
                Decimal::ZERO
            } else {
                value.parse::<Decimal>().unwrap()
            };
        }
    }
    let mut shown: BTreeMap<(String, String), [Decimal; 5]> = BTreeMap::new();
    for cells in table(&client, "outcomes").await {
        assert_eq!(cells.len(), 7, "{cells:?}");
        let mut sums = [Decimal::ZERO; 5];
        for (i, cell) in cells[2..].iter().enumerate() {
            sums[i] = page_number(cell, true);
        }
        shown.insert((cells[0].clone(), cells[1].clone()), sums);
    }
    assert!(shown.len() >= 2, "{shown:?}");
    assert_eq!(shown, printed, "the month page against report --month");
    // And the money to the bank, as report --settlement prints it.
    let mut settlement = binary(&[
        "report",
        "--settlement",
        "--month",
        &label,
        "--format",
        "csv",
    ]);
    settlement.env("DATABASE_URL", &db.url);
    let settlement = csv_rows(&ok(&output(settlement).await));
    let money = table(&client, "money").await;
    let bank = table(&client, "bank").await;
    assert_eq!(money.len(), settlement.len(), "{money:?}");
    assert_eq!(bank.len(), settlement.len(), "{bank:?}");
    assert!(!money.is_empty());
    for ((payments, to_bank), row) in money.iter().zip(&bank).zip(&settlement) {
        for (cells, columns) in [
            (
                payments,
                &[
                    "paid_gross",
                    "refunds",
                    "reversals",
                    "chargebacks",
                    "commission",
                    "net_due",
                ][..],
            ),
            (
                to_bank,
                &[
                    "in_registries",
                    "paid_out",
                    "withheld",
                    "arrived_at_bank",
                    "in_transit",
                    "unexplained",
                ][..],
            ),
        ] {
            assert_eq!(cells[0], row["currency"]);
            assert_eq!(cells.len(), columns.len() + 1, "{cells:?}");
            for (i, column) in columns.iter().enumerate() {
                assert_eq!(
                    page_number(&cells[i + 1], true),
                    row[*column].parse::<Decimal>().unwrap(),
                    "{column} of {}",
                    row["currency"]
                );
            }
        }
    }
    let status = client
        .find(Locator::Css("#status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.starts_with("Open"), "{status}");
    std::fs::write(shots.join("month.png"), client.screenshot().await.unwrap()).unwrap();

    // The queue: follow its first flag to the payment's story, where that flag opened.
    client.goto(&format!("{base}/queue")).await.unwrap();
    let first_flag = table(&client, "queue").await;
    assert!(!first_flag.is_empty(), "the demo leaves flags for a person");
    let (payment, kind) = (first_flag[0][0].clone(), first_flag[0][1].clone());
    std::fs::write(shots.join("queue.png"), client.screenshot().await.unwrap()).unwrap();
    client
        .find(Locator::Css("#queue tbody tr a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        arrive(&client, "/payment/").await,
        format!("Payment {payment}")
    );
    let story = table(&client, "story").await;
    assert!(
        story
            .iter()
            .any(|m| m[1] == "flag opened" && m[2].starts_with(&kind)),
        "{kind} opened in the story of {payment}: {story:?}"
    );
    assert!(
        story.iter().any(|m| m[1] == "status"),
        "the provider's answers: {story:?}"
    );
    std::fs::write(shots.join("story.png"), client.screenshot().await.unwrap()).unwrap();

    // Find by order id, typed into the form and submitted.
    let (paid, order): (String, String) = sqlx::query_as(
        "select payment_id, order_id from recon.reconciliation
         where outcome = 'paid' and order_id is not null order by payment_id limit 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    client.goto(&format!("{base}/")).await.unwrap();
    client
        .find(Locator::Css("input#q"))
        .await
        .unwrap()
        .send_keys(&order)
        .await
        .unwrap();
    client
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrive(&client, "/find").await;
    let found = client
        .find(Locator::Css("#found tbody tr"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(found.contains(&paid) && found.contains(&order), "{found}");
    client
        .find(Locator::LinkText(&paid))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        arrive(&client, "/payment/").await,
        format!("Payment {paid}")
    );

    client.close().await.unwrap();
    console.stop().await;
    drop_role(&pool, &role).await;
}
