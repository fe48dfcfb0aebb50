//! The console (issue 28): read-only pages on a reader role; a role that can write
//! is refused; GET and HEAD only; every value escaped; the usual headers on every answer.

use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::{Spawned, TestApp, drop_role, fresh_login_role, ok, spawn_console};

/// The console on a new reader role `role` (`grant-reader`), and its address.
async fn reader_console(app: &TestApp, role: &str) -> (Spawned, String) {
    fresh_login_role(app.pool(), role).await;
    assert!(app.run(&["grant-reader", role]).await.status.success());
    let mut command = app.command(&["console", "--listen", "127.0.0.1:0"]);
    command.env("DATABASE_URL", app.db.url_as(role));
    spawn_console(&mut command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_as_a_reader_shows_a_payments_story_and_refuses_writes_and_markup() {
    let app =
        TestApp::new(Scenario::new().payment("900", [Reply::invoice("success", "990.00", "KZT")]))
            .await;
    app.insert("('900', 1000.00, 'KZT', 'order-900', now(), null)")
        .await;
    app.sweep().await;
    // A verified Result-URL callback for it, as the listener stores one.
    sqlx::query(
        "insert into recon.callbacks
             (fields, fingerprint, pg_payment_id, claims_paid, amount, currency, payment_id,
              matched_by)
         values ('[]', '\\x01', '900', true, 990.00, 'KZT', '900', 'payment_id')",
    )
    .execute(app.pool())
    .await
    .unwrap();

    // A role that can write is refused before anything is served.
    let writer = app.run(&["console", "--listen", "127.0.0.1:0"]).await;
    assert_eq!(writer.status.code(), Some(1));
    let said = crate::helpers::stderr(&writer);
    assert!(
        said.contains("is a superuser") && said.contains("grant-reader"),
        "{said}"
    );

    let role = format!("fpr_console_{}", std::process::id());
    fresh_login_role(app.pool(), &role).await;
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
    drop_role(app.pool(), &role).await;
    let (console, base) = reader_console(&app, &role).await;
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
        text.contains("1\u{a0}000,00 KZT") && text.contains("990,00 KZT"),
        "{text}"
    );
    // Each answer with the amount it stated; each callback with what it said.
    assert!(
        text.contains("(first answer) → success, 990,00 KZT"),
        "{text}"
    );
    assert!(
        text.contains("<td>callback</td><td>said paid, 990,00 KZT (matched by payment_id)</td>"),
        "{text}"
    );
    assert!(
        text.contains("flag opened")
            && text.contains("amount_mismatch: expected 1\u{a0}000,00, actual 990,00"),
        "{text}"
    );

    // The story downloads as report --story writes it.
    let download = get("/payment/900/story.csv").await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()["content-disposition"],
        "attachment; filename=\"payment-900.csv\""
    );
    let body = download.text().await.unwrap();
    assert!(
        body.contains(",flag opened,amount_mismatch,1000.00,990.00,"),
        "{body}"
    );
    assert_eq!(
        body,
        ok(&app
            .run(&["report", "--story", "900", "--format", "csv"])
            .await)
    );
    assert_eq!(
        get("/payment/nobody/story.csv").await.unwrap().status(),
        404
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
    // Every open flag that needs a person, by kind and age: one amount_mismatch, under a day.
    assert!(
        queue.contains(
            "<tr><td><a href=\"/queue?kind=amount_mismatch\">amount_mismatch</a></td>\
             <td class=\"number\">1</td><td class=\"number\">0</td>\
             <td class=\"number\">0</td><td class=\"number\">0</td></tr>"
        ),
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
    // The queue downloads as report --flags writes it, with the page's filters, read as the
    // reader.
    let download = get(&format!(
        "/queue/queue.csv?kind=amount_mismatch&currency=KZT&month={label}"
    ))
    .await
    .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()["content-disposition"],
        "attachment; filename=\"open-flags.csv\""
    );
    let body = download.text().await.unwrap();
    assert!(body.contains(",900,amount_mismatch,"), "{body}");
    let flags = ok(&app
        .run(&[
            "report",
            "--flags",
            "--flag",
            "amount_mismatch",
            "--currency",
            "KZT",
            "--month",
            &label,
            "--format",
            "csv",
        ])
        .await);
    assert_eq!(body, flags);
    assert_eq!(
        get("/queue/queue.xlsx?month=2026-13")
            .await
            .unwrap()
            .status(),
        400
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
    // "This month" is the reporting zone's.
    let this_month: String =
        sqlx::query_scalar("select to_char(recon.report_day(now()), 'YYYY-MM')")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(
        get("/month").await.unwrap().url().path(),
        format!("/month/{this_month}")
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_month_shows_its_signature_and_the_money_booked_after_it_as_adjustments() {
    let app = crate::money_by_day::october().await;
    ok(&app
        .run(&[
            "close",
            "--month",
            "2026-10",
            "--note",
            "money checked",
            "--by",
            "b.sadykova",
        ])
        .await);
    let sha256: String = sqlx::query_scalar(
        "select figures_sha256 from recon.month_closes where month = '2026-10-01'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    // The provider's refund of 20 October is seen only now: booked today, adjusting October.
    crate::money_by_day::book(
        &app,
        "kept",
        "refund",
        "-250",
        "2026-10-20T10:00:00+05:00",
        "child:k1",
    )
    .await;
    // An expected amount changed by hand after the close: an adjustment of October's figures.
    sqlx::query("update recon.payments set expected_amount = 2500 where payment_id = 'partly'")
        .execute(app.pool())
        .await
        .unwrap();
    let role = format!("fpr_console_month_{}", std::process::id());
    let (console, base) = reader_console(&app, &role).await;
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move {
            let answer = reqwest::get(&url).await.unwrap();
            assert_eq!(answer.status(), 200, "{url}");
            answer.text().await.unwrap()
        }
    };

    let october = get("/month/2026-10".into()).await;
    assert!(
        october.contains("on behalf of b.sadykova: money checked")
            && october.contains(&format!("<code>{sha256}</code>")),
        "{october}"
    );
    let today: (String, String) = sqlx::query_as(
        "select to_char(recon.report_day(now()), 'DD.MM.YYYY'),
                to_char(recon.report_day(now()), 'YYYY-MM')",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let late = format!(
        "<tr class=\"late\"><td><a href=\"/payment/kept\">kept</a></td><td>20.10.2026</td>\
         <td>{}</td><td>refund -250 KZT</td><td>money recorded after the close (manual)</td></tr>",
        today.0
    );
    assert!(october.contains(&late), "{late} in {october}");
    let changed = format!(
        "<tr class=\"late\"><td><a href=\"/payment/partly\">partly</a></td><td>10.10.2026</td>\
         <td>{}</td><td>expected 2\u{a0}000 KZT → 2\u{a0}500 KZT</td><td>",
        today.0
    );
    assert!(october.contains(&changed), "{changed} in {october}");
    // The month it was booked in lists it too, as booked there for October.
    let this_month = get(format!("/month/{}", today.1)).await;
    assert!(
        this_month.contains("<tr class=\"booked-here\"><td><a href=\"/payment/kept\">kept</a>"),
        "{this_month}"
    );
    // September has none.
    assert!(
        get("/month/2026-09".into())
            .await
            .contains("<p id=\"no-adjustments\">None.</p>")
    );

    console.stop().await;
    drop_role(app.pool(), &role).await;
}
