//! The console (issue 28, in part): read-only pages on a reader role; a role that can write
//! is refused; GET and HEAD only; every value escaped; the usual headers on every answer.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::{Spawned, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_as_a_reader_shows_a_payments_story_and_refuses_writes_and_markup() {
    let app =
        TestApp::new(Scenario::new().payment("900", [Reply::invoice("success", "990.00", "KZT")]))
            .await;
    app.insert("('900', 1000.00, 'KZT', 'order-900', now(), null)")
        .await;
    app.sweep().await;

    // A role that can write is refused before anything is served.
    let writer = app.run(&["console", "--listen", "127.0.0.1:0"]).await;
    assert_eq!(writer.status.code(), Some(1));
    let said = crate::helpers::stderr(&writer);
    assert!(
        said.contains("is a superuser") && said.contains("grant-reader"),
        "{said}"
    );

    let role = format!("fpr_console_{}", std::process::id());
    for statement in [
        format!("drop role if exists {role}"),
        format!("create role {role} login"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(app.pool())
            .await
            .unwrap();
    }
    // A finance role (resolve and close: a column grant and security-definer functions) is
    // refused too.
    assert!(app.run(&["grant-finance", &role]).await.status.success());
    let mut finance = app.command(&["console", "--listen", "127.0.0.1:0"]);
    finance.env("DATABASE_URL", app.db.url_as(&role));
    let finance = crate::helpers::output(finance).await;
    assert_eq!(finance.status.code(), Some(1));
    let said = crate::helpers::stderr(&finance);
    assert!(
        said.contains("may write to recon.") && said.contains("recon.close_month()"),
        "{said}"
    );
    for statement in [
        format!("drop owned by {role}"),
        format!("drop role {role}"),
        format!("create role {role} login"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(app.pool())
            .await
            .unwrap();
    }
    assert!(app.run(&["grant-reader", &role]).await.status.success());
    let mut command = app.command(&["console", "--listen", "127.0.0.1:0"]);
    command
        .env("DATABASE_URL", app.db.url_as(&role))
        .stdout(Stdio::piped());
    let mut console = Spawned::spawn(&mut command);
    let mut first = String::new();
    BufReader::new(console.take_stdout())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("console on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .trim_end_matches('/')
        .to_owned();
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    // One payment's story: what was expected, the provider's answer, the flag.
    let story = get("/payment/900").await.unwrap();
    assert_eq!(story.status(), 200);
    let headers = story.headers().clone();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let text = story.text().await.unwrap();
    assert!(
        text.contains("1000.00 KZT") && text.contains("990.00 KZT"),
        "{text}"
    );
    assert!(text.contains("(first answer) → success"), "{text}");
    assert!(
        text.contains("flag opened") && text.contains("amount_mismatch: expected 1000.00"),
        "{text}"
    );

    // Find by order id; the queue links each flag to its payment.
    let found = get("/find?q=order-900")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(found.contains("href=\"/payment/900\""), "{found}");
    let queue = get("/queue").await.unwrap().text().await.unwrap();
    assert!(
        queue.contains("amount_mismatch") && queue.contains("href=\"/payment/900\""),
        "{queue}"
    );
    let bad_kind = get("/queue?kind=nonsense").await.unwrap();
    assert_eq!(bad_kind.status(), 400);
    // Filtered by currency and by the payment's month; times on the reporting zone's clock.
    let label = chrono::Utc::now().format("%Y-%m").to_string();
    let kzt = get(&format!(
        "/queue?currency=kzt&month={label}&kind=amount_mismatch"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        kzt.contains("href=\"/payment/900\"") && kzt.contains("opened (Asia/Almaty)"),
        "{kzt}"
    );
    let usd = get("/queue?currency=USD")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(usd.contains("Nothing waits for a person."), "{usd}");
    let earlier = get("/queue?month=2020-01")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(earlier.contains("Nothing waits for a person."), "{earlier}");
    assert_eq!(get("/queue?month=2026-13").await.unwrap().status(), 400);

    // Markup in what a visitor types comes back as text.
    let markup = get("/find?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await
        .unwrap();
    assert_eq!(markup.status(), 404);
    let text = markup.text().await.unwrap();
    assert!(!text.contains("<script>"), "{text}");
    assert!(
        text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{text}"
    );
    let markup = get("/payment/%3Cb%3Ebold%3C%2Fb%3E").await.unwrap();
    assert_eq!(markup.status(), 404);
    assert!(
        markup
            .text()
            .await
            .unwrap()
            .contains("&lt;b&gt;bold&lt;/b&gt;")
    );

    // The month: payments by currency and outcome, as report prints them (amounts with the
    // locale's separators: console.locale = "ru"), and open.
    let month = get(&format!("/month/{label}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        month.contains("Open: the figures below are as they stand now."),
        "{month}"
    );
    let report = crate::helpers::ok(
        &app.run(&["report", "--month", &label, "--format", "csv"])
            .await,
    );
    let paid = report
        .lines()
        .find(|l| l.contains(",paid,"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        paid.contains("1000.00") && paid.contains("990.00"),
        "{paid}"
    );
    assert!(
        month.contains("<td>KZT</td><td>paid</td><td class=\"number\">1</td><td class=\"number\">1\u{a0}000,00</td><td class=\"number\">1</td><td class=\"number\">990,00</td><td class=\"number\">1</td>"),
        "{month}"
    );
    assert_eq!(get("/month/2026-13").await.unwrap().status(), 400);
    // Its tables download as the very files report writes, read as the reader.
    for (file, args) in [
        (
            "summary.csv",
            vec!["report", "--month", &label, "--format", "csv"],
        ),
        (
            "settlement.csv",
            vec![
                "report",
                "--settlement",
                "--month",
                &label,
                "--format",
                "csv",
            ],
        ),
    ] {
        let download = get(&format!("/month/{label}/{file}")).await.unwrap();
        assert_eq!(download.status(), 200);
        assert_eq!(
            download.headers()["content-disposition"],
            format!("attachment; filename=\"{label}-{file}\"").as_str()
        );
        let body = download.text().await.unwrap();
        assert_eq!(body, crate::helpers::ok(&app.run(&args).await), "{file}");
    }
    let xlsx = get(&format!("/month/{label}/settlement.xlsx"))
        .await
        .unwrap();
    assert_eq!(xlsx.status(), 200);
    assert!(
        xlsx.bytes().await.unwrap().starts_with(b"PK"),
        "a zip: an xlsx workbook"
    );
    assert_eq!(
        get(&format!("/month/{label}/passwords.csv"))
            .await
            .unwrap()
            .status(),
        404
    );

    // GET and HEAD only.
    let post = client
        .post(format!("{base}/find"))
        .body("q=900")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert!(post.headers().contains_key("content-security-policy"));
    let head = client.head(format!("{base}/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let css = get("/style.css").await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    console.stop().await;
}
