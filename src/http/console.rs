//! The console (issue 28): read-only pages for a controller who does not open a terminal,
//! rendered on the server (maud: every value escaped), no JavaScript, nothing fetched from
//! elsewhere. GET and HEAD only (anything else is 405); every answer carries a strict
//! Content-Security-Policy and the usual headers. Served by the listener of `http.listen`,
//! with its limits, on a reader role (`grant-reader`): `console` refuses one that can write.
//!
//! Built so far: the month, find a payment, one payment's story, the queue. Not yet:
//! downloads, the month's adjustments, filters by currency and month, the browser test.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use sqlx::PgPool;

use crate::store::console::{
    Month, PaymentLine, QueueFilter, QueueLine, Story, find, month, queue, story,
};

/// Flags shown per page of the queue.
const PER_PAGE: i64 = 100;

const STYLE: &str = include_str!("console.css");

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// What the pages read with: a reader role's pool, and the bank statement's currency.
#[derive(Clone)]
pub struct Console {
    pub pool: PgPool,
    pub bank_currency: String,
    pub locale: crate::settings::ConsoleLocale,
}

/// An exact amount as PostgreSQL writes it (`-1234567.5`), grouped and marked for `locale`:
/// `-1 234 567,5` (a no-break space) or `-1,234,567.5`. Anything else is left as it is.
pub fn localised(amount: &str, locale: crate::settings::ConsoleLocale) -> String {
    let (sign, digits) = match amount.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", amount),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return amount.to_owned();
    }
    let (group, mark) = match locale {
        crate::settings::ConsoleLocale::Ru => ('\u{a0}', ','),
        crate::settings::ConsoleLocale::En => (',', '.'),
    };
    let mut out = String::from(sign);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(group);
        }
        out.push(digit);
    }
    if !fraction.is_empty() {
        out.push(mark);
        out.push_str(fraction);
    }
    out
}

impl axum::extract::FromRef<Console> for PgPool {
    fn from_ref(console: &Console) -> PgPool {
        console.pool.clone()
    }
}

/// The console's routes.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/month/{month}", get(month_page))
        .route("/month/{month}/{file}", get(month_download))
        .route("/find", get(find_page))
        .route("/payment/{id}", get(payment_page))
        .route("/queue", get(queue_page))
        .route("/style.css", get(style))
        .fallback(not_found)
        .layer(axum::middleware::map_response(safe_headers))
        .with_state(console)
}

async fn safe_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · freedompay-recon" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                nav {
                    a href=(format!("/month/{}", chrono::Utc::now().format("%Y-%m"))) { "This month" }
                    " · "
                    a href="/" { "Find" }
                    " · "
                    a href="/queue" { "Queue" }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn failed(error: &crate::store::StoreError) -> Response {
    tracing::warn!(%error, "console: a page's query failed");
    html_response(
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Not available",
            html! { p { "The database did not answer in time. Try again in a moment." } },
        ),
    )
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn not_found() -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            html! { p { "No such page. " a href="/" { "Find a payment" } } },
        ),
    )
}

fn find_form(q: &str) -> Markup {
    html! {
        form method="get" action="/find" {
            label for="q" { "Payment id or order id" }
            " "
            input id="q" name="q" type="search" value=(q) maxlength="128" required;
            " "
            button type="submit" { "Find" }
        }
    }
}

async fn home() -> Response {
    html_response(StatusCode::OK, page("Find a payment", find_form("")))
}

#[derive(Deserialize)]
struct FindQuery {
    #[serde(default)]
    q: String,
}

fn payments_table(payments: &[PaymentLine]) -> Markup {
    html! {
        table {
            thead { tr {
                th { "payment" } th { "order" } th { "outcome" } th { "status" }
                th class="number" { "expected" } th class="number" { "received" }
                th { "created (UTC)" } th { "open flags" }
            } }
            tbody {
                @for p in payments {
                    tr {
                        td { a href=(format!("/payment/{}", urlencoding(&p.payment_id))) { (p.payment_id) } }
                        td { (p.order_id.as_deref().unwrap_or("")) }
                        td { (p.outcome.as_deref().unwrap_or("")) }
                        td { (p.status.as_deref().unwrap_or("no answer yet")) }
                        td class="number" { (p.expected.as_deref().unwrap_or("")) }
                        td class="number" { (p.received.as_deref().unwrap_or("")) }
                        td { (p.created_at.map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M").to_string())) }
                        td { (p.open_flags.join(", ")) }
                    }
                }
            }
        }
    }
}

async fn find_page(State(pool): State<PgPool>, Query(query): Query<FindQuery>) -> Response {
    let q = query.q.trim();
    if q.is_empty() || q.chars().count() > 128 {
        return html_response(
            StatusCode::BAD_REQUEST,
            page(
                "Find a payment",
                html! { p { "Give a payment id or an order id (at most 128 characters)." } (find_form("")) },
            ),
        );
    }
    match find(&pool, q).await {
        Ok(found) if found.is_empty() => html_response(
            StatusCode::NOT_FOUND,
            page(
                "Find a payment",
                html! { p { "No payment or order " code { (q) } " is tracked." } (find_form(q)) },
            ),
        ),
        Ok(found) => html_response(
            StatusCode::OK,
            page(
                "Find a payment",
                html! { (find_form(q)) (payments_table(&found)) },
            ),
        ),
        Err(e) => failed(&e),
    }
}

fn story_page(story: &Story) -> Markup {
    let p = &story.payment;
    page(
        &format!("Payment {}", p.payment_id),
        html! {
            (payments_table(std::slice::from_ref(p)))
            h2 { "What happened" }
            table {
                thead { tr { th { "when (" (story.zone) ")" } th { "what" } th { "detail" } } }
                tbody {
                    @for m in &story.moments {
                        tr {
                            td { (m.at.format("%Y-%m-%d %H:%M:%S")) }
                            td { (m.what) }
                            td { (m.detail) }
                        }
                    }
                }
            }
        },
    )
}

async fn payment_page(State(pool): State<PgPool>, Path(id): Path<String>) -> Response {
    if id.chars().count() > 128 {
        return not_found().await;
    }
    match story(&pool, &id).await {
        Ok(Some(story)) => html_response(StatusCode::OK, story_page(&story)),
        Ok(None) => html_response(
            StatusCode::NOT_FOUND,
            page(
                "Not tracked",
                html! { p { "No payment " code { (id) } " is tracked." } (find_form("")) },
            ),
        ),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
struct QueueQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    /// The payment's month, YYYY-MM.
    #[serde(default)]
    month: Option<String>,
    #[serde(default)]
    page: Option<i64>,
}

fn queue_form(filter: &QueueFilter, month: &str) -> Markup {
    html! {
        form method="get" action="/queue" {
            label for="kind" { "Flag" } " "
            select id="kind" name="kind" {
                option value="" { "every kind" }
                @for k in crate::domain::FlagKind::ALL.iter().filter(|k| k.class() == crate::domain::FlagClass::Action) {
                    @if filter.kind.as_deref() == Some(k.as_str()) {
                        option value=(k.as_str()) selected { (k.as_str()) }
                    } @else {
                        option value=(k.as_str()) { (k.as_str()) }
                    }
                }
            }
            " " label for="currency" { "Currency" } " "
            input id="currency" name="currency" size="3" maxlength="3" value=(filter.currency.as_deref().unwrap_or(""));
            " " label for="month" { "Payment's month" } " "
            input id="month" name="month" size="7" maxlength="7" placeholder="YYYY-MM" value=(month);
            " " button type="submit" { "Show" }
        }
    }
}

fn queue_table(lines: &[QueueLine], zone: &str) -> Markup {
    html! {
        table {
            thead { tr {
                th { "payment" } th { "flag" } th { "expected" } th { "actual" }
                th { "currency" } th { "opened (" (zone) ")" } th class="number" { "days open" }
            } }
            tbody {
                @for l in lines {
                    tr {
                        td { a href=(format!("/payment/{}", urlencoding(&l.payment_id))) { (l.payment_id) } }
                        td { (l.kind) }
                        td { (l.expected.as_deref().unwrap_or("")) }
                        td { (l.actual.as_deref().unwrap_or("")) }
                        td { (l.currency.as_deref().unwrap_or("")) }
                        td { (l.detected_local.format("%Y-%m-%d %H:%M")) }
                        td class="number" { (l.age_days) }
                    }
                }
            }
        }
    }
}

async fn queue_page(State(pool): State<PgPool>, Query(query): Query<QueueQuery>) -> Response {
    let text = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let mut problems = Vec::new();
    let kind = text(&query.kind);
    if let Some(k) = &kind
        && k.parse::<crate::domain::FlagKind>().is_err()
    {
        problems.push(format!("no flag kind {k}"));
    }
    let currency = text(&query.currency).map(|c| c.to_ascii_uppercase());
    if let Some(c) = &currency
        && c.parse::<crate::domain::Currency>().is_err()
    {
        problems.push(format!("{c} is not a currency code (KZT)"));
    }
    let month_text = text(&query.month).unwrap_or_default();
    let month = if month_text.is_empty() {
        None
    } else {
        match crate::reporting::parse_month(&month_text) {
            Ok(m) => Some(m),
            Err(_) => {
                problems.push(format!("{month_text} is not a month (YYYY-MM)"));
                None
            }
        }
    };
    let filter = QueueFilter {
        kind,
        currency,
        month,
    };
    let title = "The queue: open flags that need a person, oldest first";
    if !problems.is_empty() {
        return html_response(
            StatusCode::BAD_REQUEST,
            page(
                title,
                html! {
                    @for p in &problems { p { (p) "." } }
                    (queue_form(&QueueFilter::default(), ""))
                },
            ),
        );
    }
    let at = query.page.unwrap_or(0).clamp(0, 100_000);
    let zone = match crate::store::console::zone(&pool).await {
        Ok(zone) => zone,
        Err(e) => return failed(&e),
    };
    match queue(&pool, &filter, at, PER_PAGE + 1).await {
        Ok(mut lines) => {
            let more = lines.len() as i64 > PER_PAGE;
            lines.truncate(usize::try_from(PER_PAGE).unwrap_or(100));
            let link = |n: i64| {
                let mut link = format!("/queue?page={n}");
                for (key, value) in [
                    ("kind", filter.kind.as_deref()),
                    ("currency", filter.currency.as_deref()),
                    ("month", Some(month_text.as_str()).filter(|m| !m.is_empty())),
                ] {
                    if let Some(value) = value {
                        link.push_str(&format!("&{key}={}", urlencoding(value)));
                    }
                }
                link
            };
            html_response(
                StatusCode::OK,
                page(
                    title,
                    html! {
                        (queue_form(&filter, &month_text))
                        @if lines.is_empty() { p { "Nothing waits for a person." } }
                        @else { (queue_table(&lines, &zone)) }
                        p {
                            @if at > 0 { a href=(link(at - 1)) { "← newer" } " " }
                            @if more { a href=(link(at + 1)) { "older →" } }
                        }
                    },
                ),
            )
        }
        Err(e) => failed(&e),
    }
}

fn month_view(label: &str, m: &Month, locale: crate::settings::ConsoleLocale) -> Markup {
    let n = |amount: &str| localised(amount, locale);
    page(
        &format!("The month {label}"),
        html! {
            @match &m.closed {
                Some(c) => p class="closed" {
                    "Closed " (c.at.format("%Y-%m-%d %H:%M UTC")) " on behalf of " (c.on_behalf_of)
                    ": " (c.note) ". The figures below are those signed (sha256 " code { (c.sha256) } ")."
                },
                None => p { "Open: the figures below are as they stand now." },
            }
            h2 { "Payments by currency and outcome (by the day created)" }
            p class="downloads" {
                "As report writes them: the summary by day "
                a href=(format!("/month/{label}/summary.csv")) { "CSV" } ", "
                a href=(format!("/month/{label}/summary.xlsx")) { "xlsx" }
                "; the money to the bank "
                a href=(format!("/month/{label}/settlement.csv")) { "CSV" } ", "
                a href=(format!("/month/{label}/settlement.xlsx")) { "xlsx" }
            }
            @if m.outcomes.is_empty() { p { "No payments were created in " (label) "." } }
            @else {
                table {
                    thead { tr {
                        th { "currency" } th { "outcome" } th class="number" { "payments" }
                        th class="number" { "expected" } th class="number" { "received payments" }
                        th class="number" { "received" } th class="number" { "need a person" }
                    } }
                    tbody {
                        @for o in &m.outcomes {
                            tr {
                                td { (o.currency) } td { (o.outcome) }
                                td class="number" { (o.payments) }
                                td class="number" { (n(&o.expected_amount)) }
                                td class="number" { (o.received_payments) }
                                td class="number" { (n(&o.received_amount)) }
                                td class="number" { (o.needs_action) }
                            }
                        }
                    }
                }
            }
            h2 { "Money, from the payments to the bank" }
            @if m.money.is_empty() { p { "No money moved in " (label) "." } }
            @else {
                table {
                    thead { tr {
                        th { "currency" } th class="number" { "paid" } th class="number" { "refunds" }
                        th class="number" { "reversals" } th class="number" { "chargebacks" }
                        th class="number" { "commission" } th class="number" { "net due" }
                        th class="number" { "in registries" } th class="number" { "paid out" }
                        th class="number" { "at the bank" } th class="number" { "in transit" }
                        th class="number" { "unexplained" }
                    } }
                    tbody {
                        @for x in &m.money {
                            tr {
                                td { (x.currency) }
                                td class="number" { (n(&x.paid_gross)) }
                                td class="number" { (n(&x.refunds)) }
                                td class="number" { (n(&x.reversals)) }
                                td class="number" { (n(&x.chargebacks)) }
                                td class="number" { (n(&x.commission)) }
                                td class="number" { (n(&x.net_due)) }
                                td class="number" { (n(&x.in_registries)) }
                                td class="number" { (n(&x.paid_out)) }
                                td class="number" { (n(&x.arrived_at_bank)) }
                                td class="number" { (n(&x.in_transit)) }
                                td class="number" { (n(&x.unexplained)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn month_page(State(console): State<Console>, Path(label): Path<String>) -> Response {
    let Ok((first, last)) = crate::reporting::parse_month(&label) else {
        return html_response(
            StatusCode::BAD_REQUEST,
            page(
                "The month",
                html! { p { code { (label) } " is not a month: use YYYY-MM." } },
            ),
        );
    };
    match month(&console.pool, first, last, &console.bank_currency).await {
        Ok(m) => html_response(
            StatusCode::OK,
            month_view(&first.format("%Y-%m").to_string(), &m, console.locale),
        ),
        Err(e) => failed(&e),
    }
}

/// `summary.csv`, `settlement.xlsx`, …: the file `report --month M` (or `report --settlement
/// --month M`) writes, as a download.
async fn month_download(
    State(console): State<Console>,
    Path((label, file)): Path<(String, String)>,
) -> Response {
    use crate::reporting::{CsvStyle, Format, ReportKind, ReportRequest, write_report};

    let Ok((first, last)) = crate::reporting::parse_month(&label) else {
        return not_found().await;
    };
    let (kind, format, content_type) = match file.as_str() {
        "summary.csv" | "summary.xlsx" | "settlement.csv" | "settlement.xlsx" => {
            let kind = if file.starts_with("summary") {
                ReportKind::Summary(crate::store::report::ReportFilter {
                    basis: crate::store::report::DayBasis::Created,
                    from: Some(first),
                    to: Some(last),
                    currency: None,
                    status: None,
                    flag: None,
                    as_of: None,
                })
            } else {
                ReportKind::Settlement {
                    first,
                    last,
                    lines: false,
                    bank_currency: console.bank_currency.clone(),
                }
            };
            if file.ends_with(".csv") {
                (kind, Format::Csv, "text/csv; charset=utf-8")
            } else {
                (
                    kind,
                    Format::Xlsx,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                )
            }
        }
        _ => return not_found().await,
    };
    let request = ReportRequest {
        kind,
        format,
        csv: CsvStyle::default(),
        refunds_watched: false,
    };
    let mut bytes = Vec::new();
    match write_report(&console.pool, &request, &mut bytes).await {
        Ok(_) => (
            [
                (header::CONTENT_TYPE, content_type.to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"{}-{}\"",
                        first.format("%Y-%m"),
                        file
                    ),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "console: a download failed");
            html_response(
                StatusCode::SERVICE_UNAVAILABLE,
                page(
                    "Not available",
                    html! { p { "The file could not be written. Try again in a moment." } },
                ),
            )
        }
    }
}

/// A path or query component, percent-encoded (everything but unreserved characters).
fn urlencoding(text: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_written_with_the_locales_separators() {
        use crate::settings::ConsoleLocale::{En, Ru};
        assert_eq!(localised("-1234567.50", Ru), "-1\u{a0}234\u{a0}567,50");
        assert_eq!(localised("1234567.50", En), "1,234,567.50");
        assert_eq!(localised("999", Ru), "999");
        assert_eq!(localised("0.5", Ru), "0,5");
        assert_eq!(
            localised("1000.00 KZT", Ru),
            "1000.00 KZT",
            "not an amount alone: as it is"
        );
    }

    #[test]
    fn markup_in_a_value_is_escaped_and_links_are_encoded() {
        let line = PaymentLine {
            payment_id: "<script>alert(1)</script>".into(),
            order_id: Some("\"o\"&'".into()),
            outcome: None,
            status: None,
            expected: None,
            received: None,
            created_at: None,
            open_flags: vec![],
        };
        let text = payments_table(&[line]).into_string();
        assert!(!text.contains("<script>"), "{text}");
        assert!(
            text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{text}"
        );
        assert!(
            text.contains("href=\"/payment/%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""),
            "{text}"
        );
        assert!(text.contains("&quot;o&quot;&amp;'"), "{text}");
    }
}
