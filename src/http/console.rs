//! The console (issue 28): read-only pages for a controller who does not open a terminal,
//! rendered on the server (maud: every value escaped), no JavaScript, nothing fetched from
//! elsewhere. GET and HEAD only (anything else is 405); every answer carries a strict
//! Content-Security-Policy and the usual headers. Served by the listener of `http.listen`,
//! with its limits, on a reader role (`grant-reader`): `console` refuses one that can write.
//!
//! The pages: the month (its figures as `report` prints them, its close and adjustments, its
//! tables as downloads), the queue (and its download, as `report --flags`), one payment's
//! story, and find. Amounts, counts and days are written for `console.locale`, times on the
//! reporting zone's clock (`recon.timezone`).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use sqlx::PgPool;

use crate::settings::ConsoleLocale;
use crate::store::console::{
    ADJUSTMENTS_SHOWN, Change, Moment, MomentKind, Month, PaymentLine, QueueFilter, QueueLine,
    Story, find, month, queue, story,
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
pub fn localised(amount: &str, locale: ConsoleLocale) -> String {
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
        ConsoleLocale::Ru => ('\u{a0}', ','),
        ConsoleLocale::En => (',', '.'),
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

/// A count, grouped for `locale`.
fn count(n: i64, locale: ConsoleLocale) -> String {
    localised(&n.to_string(), locale)
}

/// A day as `locale` writes it: `31.12.2026` or `2026-12-31`.
fn day(d: chrono::NaiveDate, locale: ConsoleLocale) -> String {
    match locale {
        ConsoleLocale::Ru => d.format("%d.%m.%Y").to_string(),
        ConsoleLocale::En => d.format("%Y-%m-%d").to_string(),
    }
}

/// A time of day on the reporting zone's clock as `locale` writes it, to the minute or (with
/// `seconds`) to the second.
fn when(t: chrono::NaiveDateTime, locale: ConsoleLocale, seconds: bool) -> String {
    let clock = if seconds { "%H:%M:%S" } else { "%H:%M" };
    format!("{} {}", day(t.date(), locale), t.format(clock))
}

/// `1000.00 KZT` as `locale` writes it: `1 000,00 KZT`.
fn money(text: &str, locale: ConsoleLocale) -> String {
    match text.rsplit_once(' ') {
        Some((amount, currency)) => format!("{} {currency}", localised(amount, locale)),
        None => localised(text, locale),
    }
}

/// The console's routes.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/month", get(this_month))
        .route("/month/{month}", get(month_page))
        .route("/month/{month}/{file}", get(month_download))
        .route("/find", get(find_page))
        .route("/payment/{id}", get(payment_page))
        .route("/payment/{id}/{file}", get(story_download))
        .route("/queue", get(queue_page))
        .route("/queue/{file}", get(queue_download))
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
                    a href="/month" { "This month" }
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

fn payments_table(payments: &[PaymentLine], zone: &str, locale: ConsoleLocale) -> Markup {
    html! {
        table {
            thead { tr {
                th { "payment" } th { "order" } th { "outcome" } th { "status" }
                th class="number" { "expected" } th class="number" { "received" }
                th { "created (" (zone) ")" } th { "open flags" }
            } }
            tbody {
                @for p in payments {
                    tr {
                        td { a href=(format!("/payment/{}", urlencoding(&p.payment_id))) { (p.payment_id) } }
                        td { (p.order_id.as_deref().unwrap_or("")) }
                        td { (p.outcome.as_deref().unwrap_or("")) }
                        td { (p.status.as_deref().unwrap_or("no answer yet")) }
                        td class="number" { (p.expected.as_deref().map(|a| money(a, locale)).unwrap_or_default()) }
                        td class="number" { (p.received.as_deref().map(|a| money(a, locale)).unwrap_or_default()) }
                        td { (p.created_local.map(|t| when(t, locale, false)).unwrap_or_default()) }
                        td { (p.open_flags.join(", ")) }
                    }
                }
            }
        }
    }
}

async fn find_page(State(console): State<Console>, Query(query): Query<FindQuery>) -> Response {
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
    let found = match find(&console.pool, q).await {
        Ok(found) => found,
        Err(e) => return failed(&e),
    };
    if found.is_empty() {
        return html_response(
            StatusCode::NOT_FOUND,
            page(
                "Find a payment",
                html! { p { "No payment or order " code { (q) } " is tracked." } (find_form(q)) },
            ),
        );
    }
    match crate::store::console::zone(&console.pool).await {
        Ok(zone) => html_response(
            StatusCode::OK,
            page(
                "Find a payment",
                html! {
                    (find_form(q))
                    div id="found" { (payments_table(&found, &zone, console.locale)) }
                },
            ),
        ),
        Err(e) => failed(&e),
    }
}

fn story_page(story: &Story, locale: ConsoleLocale) -> Markup {
    let p = &story.payment;
    page(
        &format!("Payment {}", p.payment_id),
        html! {
            (payments_table(std::slice::from_ref(p), &story.zone, locale))
            h2 { "What happened" }
            p class="downloads" {
                "As " code { "report --story" } " writes it: "
                a href=(format!("/payment/{}/story.csv", urlencoding(&p.payment_id))) { "CSV" } ", "
                a href=(format!("/payment/{}/story.xlsx", urlencoding(&p.payment_id))) { "xlsx" }
            }
            table id="story" {
                thead { tr { th { "when (" (story.zone) ")" } th { "what" } th { "detail" } } }
                tbody {
                    @for m in &story.moments {
                        tr {
                            td { (when(m.at, locale, true)) }
                            td { (m.what.as_str()) }
                            td { (moment_words(m, locale)) }
                        }
                    }
                }
            }
        },
    )
}

/// What a moment of the story says, amounts and times written for `locale`: `process →
/// success, 14 039,42 KZT, the provider's time 06.12.2026 21:13:17`, `amount_mismatch:
/// expected 14 139,42, actual 14 039,42`, `refund, -500,50 KZT (status_api)`.
fn moment_words(m: &Moment, locale: ConsoleLocale) -> String {
    let mut words = m.subject.clone();
    let mut push = |label: &str, value: String| {
        words.push_str(label);
        words.push_str(&value);
    };
    match m.what {
        MomentKind::FlagOpened => {
            if let Some(expected) = &m.expected {
                push(": expected ", localised(expected, locale));
            }
            if let Some(actual) = &m.actual {
                push(", actual ", localised(actual, locale));
            }
        }
        MomentKind::FlagResolved => {
            if let Some(by) = &m.by {
                push(" by ", by.clone());
            }
            if let Some(note) = &m.note {
                push(": ", note.clone());
            }
        }
        MomentKind::Status | MomentKind::Callback | MomentKind::Money => {
            if let Some(amount) = &m.amount {
                push(", ", localised(amount, locale));
                if let Some(currency) = &m.currency {
                    push(" ", currency.clone());
                }
            }
            if let Some(by) = &m.by {
                push(" (", format!("{by})"));
            }
        }
        MomentKind::Adjustment => {
            if let Some(note) = &m.note {
                push(": ", note.clone());
            }
        }
    }
    if let Some(at) = m.provider_at {
        push(", the provider's time ", when(at, locale, true));
    }
    words
}

/// `story.csv`, `story.xlsx`: what `report --story ID` writes, as a download.
async fn story_download(
    State(console): State<Console>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    if id.chars().count() > 128 {
        return not_found().await;
    }
    match story(&console.pool, &id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found().await,
        Err(e) => return failed(&e),
    }
    // A name for the browser's file from the id's safe characters only.
    let safe: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    let kind = crate::reporting::ReportKind::Story { payment_id: id };
    download(&console, kind, "story", &file, &format!("payment-{safe}")).await
}

async fn payment_page(State(console): State<Console>, Path(id): Path<String>) -> Response {
    if id.chars().count() > 128 {
        return not_found().await;
    }
    match story(&console.pool, &id).await {
        Ok(Some(story)) => html_response(StatusCode::OK, story_page(&story, console.locale)),
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

/// Every open action flag by kind and age, each kind linking to its queue.
fn ages_table(ages: &[crate::store::console::KindAges], locale: ConsoleLocale) -> Markup {
    html! {
        table id="ages" {
            thead { tr {
                th { "flag" } th class="number" { "under 1 day" } th class="number" { "1 to 7 days" }
                th class="number" { "8 to 30 days" } th class="number" { "over 30 days" }
            } }
            tbody {
                @for a in ages {
                    tr {
                        td { a href=(format!("/queue?kind={}", urlencoding(&a.kind))) { (a.kind) } }
                        td class="number" { (count(a.under_1_day, locale)) }
                        td class="number" { (count(a.days_1_to_7, locale)) }
                        td class="number" { (count(a.days_8_to_30, locale)) }
                        td class="number" { (count(a.over_30_days, locale)) }
                    }
                }
            }
        }
    }
}

fn queue_table(lines: &[QueueLine], zone: &str, locale: ConsoleLocale) -> Markup {
    html! {
        table id="queue" {
            thead { tr {
                th { "payment" } th { "flag" } th { "expected" } th { "actual" }
                th { "currency" } th { "opened (" (zone) ")" } th class="number" { "days open" }
            } }
            tbody {
                @for l in lines {
                    tr {
                        td { a href=(format!("/payment/{}", urlencoding(&l.payment_id))) { (l.payment_id) } }
                        td { (l.kind) }
                        td { (l.expected.as_deref().map(|v| localised(v, locale)).unwrap_or_default()) }
                        td { (l.actual.as_deref().map(|v| localised(v, locale)).unwrap_or_default()) }
                        td { (l.currency.as_deref().unwrap_or("")) }
                        td { (when(l.detected_local, locale, false)) }
                        td class="number" { (count(l.age_days, locale)) }
                    }
                }
            }
        }
    }
}

/// The queue's filter from its query, and what is wrong with it.
fn queue_filter(query: &QueueQuery) -> (QueueFilter, String, Vec<String>) {
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
    (filter, month_text, problems)
}

/// `queue.csv`, `queue.xlsx`: what `report --flags` writes for the same filter (`--flag`,
/// `--currency`, `--month`), as a download.
async fn queue_download(
    State(console): State<Console>,
    Path(file): Path<String>,
    Query(query): Query<QueueQuery>,
) -> Response {
    let (filter, _, problems) = queue_filter(&query);
    if !problems.is_empty() {
        return html_response(
            StatusCode::BAD_REQUEST,
            page("The queue", html! { @for p in &problems { p { (p) "." } } }),
        );
    }
    let kind = crate::reporting::ReportKind::Flags(crate::store::report::FlagFilter {
        as_of: None,
        class: crate::store::report::ClassFilter::Action,
        kind: filter.kind.as_deref().and_then(|k| k.parse().ok()),
        from: None,
        to: None,
        status: None,
        currency: filter.currency.clone(),
        payment_from: filter.month.map(|(first, _)| first),
        payment_to: filter.month.map(|(_, last)| last),
    });
    download(&console, kind, "queue", &file, "open-flags").await
}

async fn queue_page(State(console): State<Console>, Query(query): Query<QueueQuery>) -> Response {
    let pool = &console.pool;
    let (filter, month_text, problems) = queue_filter(&query);
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
    let zone = match crate::store::console::zone(pool).await {
        Ok(zone) => zone,
        Err(e) => return failed(&e),
    };
    let ages = match crate::store::console::queue_ages(pool).await {
        Ok(ages) => ages,
        Err(e) => return failed(&e),
    };
    match queue(pool, &filter, at, PER_PAGE + 1).await {
        Ok(mut lines) => {
            let more = lines.len() as i64 > PER_PAGE;
            lines.truncate(usize::try_from(PER_PAGE).unwrap_or(100));
            let mut filters = String::new();
            for (key, value) in [
                ("kind", filter.kind.as_deref()),
                ("currency", filter.currency.as_deref()),
                ("month", Some(month_text.as_str()).filter(|m| !m.is_empty())),
            ] {
                if let Some(value) = value {
                    filters.push_str(&format!("&{key}={}", urlencoding(value)));
                }
            }
            let link = |n: i64| format!("/queue?page={n}{filters}");
            let file = |extension: &str| {
                format!(
                    "/queue/queue.{extension}?{}",
                    filters.trim_start_matches('&')
                )
            };
            html_response(
                StatusCode::OK,
                page(
                    title,
                    html! {
                        @if !ages.is_empty() { (ages_table(&ages, console.locale)) }
                        (queue_form(&filter, &month_text))
                        p class="downloads" {
                            "Every flag shown here, as " code { "report --flags" } " writes them: "
                            a href=(file("csv")) { "CSV" } ", " a href=(file("xlsx")) { "xlsx" }
                            " (give it back, with notes, to " code { "resolve --from-csv" } ")"
                        }
                        @if lines.is_empty() { p { "Nothing waits for a person." } }
                        @else { (queue_table(&lines, &zone, console.locale)) }
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

fn month_view(first: chrono::NaiveDate, m: &Month, zone: &str, locale: ConsoleLocale) -> Markup {
    let n = |amount: &str| localised(amount, locale);
    let label = first.format("%Y-%m").to_string();
    let label = label.as_str();
    page(
        &format!("The month {label}"),
        html! {
            @match &m.closed {
                Some(c) => p id="status" class="closed" {
                    "Closed " (when(c.at, locale, false)) " (" (zone) ") on behalf of " (c.on_behalf_of)
                    ": " (c.note) ". The figures below are those signed (sha256 " code { (c.sha256) } ")."
                },
                None => p id="status" { "Open: the figures below are as they stand now." },
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
                table id="outcomes" {
                    thead { tr {
                        th { "currency" } th { "outcome" } th class="number" { "payments" }
                        th class="number" { "expected" } th class="number" { "received payments" }
                        th class="number" { "received" } th class="number" { "need a person" }
                    } }
                    tbody {
                        @for o in &m.outcomes {
                            tr {
                                td { (o.currency) } td { (o.outcome) }
                                td class="number" { (count(o.payments, locale)) }
                                td class="number" { (n(&o.expected_amount)) }
                                td class="number" { (count(o.received_payments, locale)) }
                                td class="number" { (n(&o.received_amount)) }
                                td class="number" { (count(o.needs_action, locale)) }
                            }
                        }
                    }
                }
            }
            h2 { "Money, from the payments to the bank" }
            @if m.money.is_empty() { p { "No money moved in " (label) "." } }
            @else {
                table id="money" {
                    thead { tr {
                        th { "currency" } th class="number" { "paid" } th class="number" { "refunds" }
                        th class="number" { "reversals" } th class="number" { "chargebacks" }
                        th class="number" { "commission" } th class="number" { "net due" }
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
                            }
                        }
                    }
                }
                table id="bank" {
                    thead { tr {
                        th { "currency" } th class="number" { "in registries" }
                        th class="number" { "paid out" } th class="number" { "withheld" }
                        th class="number" { "at the bank" } th class="number" { "in transit" }
                        th class="number" { "unexplained at the bank" }
                    } }
                    tbody {
                        @for x in &m.money {
                            tr {
                                td { (x.currency) }
                                td class="number" { (n(&x.in_registries)) }
                                td class="number" { (n(&x.paid_out)) }
                                td class="number" { (n(&x.withheld)) }
                                td class="number" { (n(&x.arrived_at_bank)) }
                                td class="number" { (n(&x.in_transit)) }
                                td class="number" { (n(&x.unexplained)) }
                            }
                        }
                    }
                }
            }
            h2 { "Adjustments" }
            p {
                "What changed after a month was closed is booked on an open day instead: a \
                 closed month's figures never change. Below, what belongs to " (label)
                " but was booked later, and what was booked in " (label)
                " for a month closed before. As report writes them: the changes to payments "
                a href=(format!("/month/{label}/adjustments.csv")) { "CSV" } ", "
                a href=(format!("/month/{label}/adjustments.xlsx")) { "xlsx" }
                " (booked in " (label) "); money by day "
                a href=(format!("/month/{label}/money.csv")) { "CSV" } ", "
                a href=(format!("/month/{label}/money.xlsx")) { "xlsx" }
            }
            @if m.adjustments.is_empty() { p id="no-adjustments" { "None." } }
            @else {
                table id="adjustments" {
                    thead { tr {
                        th { "payment" } th { "belongs to" } th { "booked on" }
                        th { "what changed" } th { "cause" }
                    } }
                    tbody {
                        @for a in &m.adjustments {
                            tr class=(if chrono::Datelike::with_day(&a.belongs_to, 1) == Some(first) { "late" } else { "booked-here" }) {
                                td { a href=(format!("/payment/{}", urlencoding(&a.payment_id))) { (a.payment_id) } }
                                td { (day(a.belongs_to, locale)) }
                                td { (day(a.booked_on, locale)) }
                                @let (what, cause) = change_words(&a.change, locale);
                                td { (what) }
                                td { (cause) }
                            }
                        }
                    }
                }
                @if m.more_adjustments {
                    p { "The first " (ADJUSTMENTS_SHOWN) " of each only: the downloads list them all." }
                }
            }
        },
    )
}

/// An adjustment's change and cause, in words: `status success → error; amount 1 000,00 KZT →
/// 900,00 KZT`.
fn change_words(change: &Change, locale: ConsoleLocale) -> (String, String) {
    match change {
        Change::Figures {
            status,
            amount,
            expected,
            fee,
            flags,
            cause,
        } => {
            let side = |v: &Option<String>| {
                v.as_deref()
                    .map_or_else(|| "none".to_owned(), |v| money(v, locale))
            };
            let words = [
                ("status", status, false),
                ("amount", amount, true),
                ("expected", expected, true),
                ("fee", fee, true),
                ("open flags", flags, false),
            ]
            .into_iter()
            .filter_map(|(name, pair, amount)| {
                pair.as_ref().map(|(old, new)| {
                    if amount {
                        format!("{name} {} → {}", side(old), side(new))
                    } else {
                        let word = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
                        format!("{name} {} → {}", word(old), word(new))
                    }
                })
            })
            .collect::<Vec<_>>()
            .join("; ");
            (words, cause.clone())
        }
        Change::Money {
            kind,
            amount,
            currency,
            source,
        } => (
            format!("{kind} {} {currency}", localised(amount, locale)),
            format!("money recorded after the close ({source})"),
        ),
    }
}

/// This month in the reporting zone: a redirect to its page.
async fn this_month(State(console): State<Console>) -> Response {
    match crate::store::console::this_month(&console.pool).await {
        Ok(first) => axum::response::Redirect::to(&format!("/month/{}", first.format("%Y-%m")))
            .into_response(),
        Err(e) => failed(&e),
    }
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
    let zone = match crate::store::console::zone(&console.pool).await {
        Ok(zone) => zone,
        Err(e) => return failed(&e),
    };
    match month(&console.pool, first, last, &console.bank_currency).await {
        Ok(m) => html_response(StatusCode::OK, month_view(first, &m, &zone, console.locale)),
        Err(e) => failed(&e),
    }
}

/// `summary.csv`, `settlement.xlsx`, …: the file `report` writes for the month, as a download:
/// `report --month M` (summary), `report --settlement --month M`, `report --money --month M`,
/// `report --adjustments` from the month's first day to its last (adjustments booked in it).
async fn month_download(
    State(console): State<Console>,
    Path((label, file)): Path<(String, String)>,
) -> Response {
    use crate::reporting::ReportKind;

    let Ok((first, last)) = crate::reporting::parse_month(&label) else {
        return not_found().await;
    };
    let Some((stem, _)) = file.rsplit_once('.') else {
        return not_found().await;
    };
    let kind = match stem {
        "summary" => ReportKind::Summary(crate::store::report::ReportFilter::created_between(
            first, last,
        )),
        "settlement" => ReportKind::Settlement {
            first,
            last,
            lines: false,
            bank_currency: console.bank_currency.clone(),
        },
        "money" => ReportKind::Money {
            from: Some(first),
            to: Some(last),
        },
        "adjustments" => ReportKind::Adjustments {
            from: Some(first),
            to: Some(last),
        },
        _ => return not_found().await,
    };
    let name = format!("{}-{stem}", first.format("%Y-%m"));
    download(&console, kind, stem, &file, &name).await
}

/// `file` (`{stem}.csv` or `{stem}.xlsx`) as `report` writes `kind`, named `{name}.csv` or
/// `.xlsx` for the browser; read as the console's reader.
async fn download(
    console: &Console,
    kind: crate::reporting::ReportKind,
    stem: &str,
    file: &str,
    name: &str,
) -> Response {
    use crate::reporting::{CsvStyle, Format, ReportRequest, write_report};

    let (format, extension, content_type) = match file.strip_prefix(stem) {
        Some(".csv") => (Format::Csv, "csv", "text/csv; charset=utf-8"),
        Some(".xlsx") => (
            Format::Xlsx,
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
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
                    format!("attachment; filename=\"{name}.{extension}\""),
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
        use ConsoleLocale::{En, Ru};
        assert_eq!(localised("-1234567.50", Ru), "-1\u{a0}234\u{a0}567,50");
        assert_eq!(localised("1234567.50", En), "1,234,567.50");
        assert_eq!(localised("999", Ru), "999");
        assert_eq!(localised("0.5", Ru), "0,5");
        assert_eq!(
            localised("1000.00 KZT", Ru),
            "1000.00 KZT",
            "not an amount alone: as it is"
        );
        assert_eq!(money("1000.00 KZT", Ru), "1\u{a0}000,00 KZT");
        assert_eq!(count(12345, En), "12,345");
        let t = chrono::NaiveDate::from_ymd_opt(2026, 12, 31)
            .unwrap()
            .and_hms_opt(23, 5, 9)
            .unwrap();
        assert_eq!(when(t, Ru, false), "31.12.2026 23:05");
        assert_eq!(when(t, En, true), "2026-12-31 23:05:09");
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
            created_local: None,
            open_flags: vec![],
        };
        let text = payments_table(&[line], "Asia/Almaty", ConsoleLocale::Ru).into_string();
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
