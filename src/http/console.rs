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

use crate::store::console::{Month, PaymentLine, QueueLine, Story, find, month, queue, story};

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
                thead { tr { th { "when (UTC)" } th { "what" } th { "detail" } } }
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
    page: Option<i64>,
}

fn queue_table(lines: &[QueueLine]) -> Markup {
    html! {
        table {
            thead { tr {
                th { "payment" } th { "flag" } th { "expected" } th { "actual" }
                th { "currency" } th { "opened (UTC)" } th class="number" { "days open" }
            } }
            tbody {
                @for l in lines {
                    tr {
                        td { a href=(format!("/payment/{}", urlencoding(&l.payment_id))) { (l.payment_id) } }
                        td { (l.kind) }
                        td { (l.expected.as_deref().unwrap_or("")) }
                        td { (l.actual.as_deref().unwrap_or("")) }
                        td { (l.currency.as_deref().unwrap_or("")) }
                        td { (l.detected_at.format("%Y-%m-%d %H:%M")) }
                        td class="number" { (l.age_days) }
                    }
                }
            }
        }
    }
}

async fn queue_page(State(pool): State<PgPool>, Query(query): Query<QueueQuery>) -> Response {
    let kind = query
        .kind
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    if let Some(kind) = kind
        && kind.parse::<crate::domain::FlagKind>().is_err()
    {
        return html_response(
            StatusCode::BAD_REQUEST,
            page(
                "The queue",
                html! { p { "No flag kind " code { (kind) } "." } },
            ),
        );
    }
    let at = query.page.unwrap_or(0).clamp(0, 100_000);
    match queue(&pool, kind, at, PER_PAGE + 1).await {
        Ok(mut lines) => {
            let more = lines.len() as i64 > PER_PAGE;
            lines.truncate(usize::try_from(PER_PAGE).unwrap_or(100));
            let link = |n: i64| match kind {
                Some(k) => format!("/queue?kind={}&page={n}", urlencoding(k)),
                None => format!("/queue?page={n}"),
            };
            html_response(
                StatusCode::OK,
                page(
                    "The queue: open flags that need a person, oldest first",
                    html! {
                        @if lines.is_empty() { p { "Nothing waits for a person." } }
                        @else { (queue_table(&lines)) }
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

fn month_view(label: &str, m: &Month) -> Markup {
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
                                td class="number" { (o.expected_amount) }
                                td class="number" { (o.received_payments) }
                                td class="number" { (o.received_amount) }
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
                                td class="number" { (x.paid_gross) }
                                td class="number" { (x.refunds) }
                                td class="number" { (x.reversals) }
                                td class="number" { (x.chargebacks) }
                                td class="number" { (x.commission) }
                                td class="number" { (x.net_due) }
                                td class="number" { (x.in_registries) }
                                td class="number" { (x.paid_out) }
                                td class="number" { (x.arrived_at_bank) }
                                td class="number" { (x.in_transit) }
                                td class="number" { (x.unexplained) }
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
            month_view(&first.format("%Y-%m").to_string(), &m),
        ),
        Err(e) => failed(&e),
    }
}

/// A path or query component, percent-encoded (everything but unreserved characters).
fn urlencoding(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
