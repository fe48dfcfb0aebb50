//! The digest: a human summary of a span of reporting days, as plain text, Markdown (for chat
//! channels) or JSON, and its delivery to a chat incoming webhook (`{"text": ...}`, the shape
//! Slack, Mattermost and Rocket.Chat accept).
//!
//! Text that came from outside (payment ids, a flag's expected and actual values) is escaped:
//! no control character reaches a terminal or a chat message, and in Markdown it sits in a
//! code span, so it cannot format, link or mention anyone.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Serialize;
use sqlx::PgPool;

use crate::store::digest::{OpenFlag, Outcome};
use crate::store::report::{AgeBuckets, open_action_ages};
use crate::store::{self, StoreError};
use crate::text::{clean, without_mentions};

/// How many of the oldest open flags are listed.
pub const OLDEST_LISTED: i64 = 10;

/// How a digest is written (names on the command line: `commands::values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestFormat {
    Text,
    Markdown,
    Json,
}

/// Everything a digest says. Every time in it is in the reporting zone with that zone's
/// offset, the heading's zone: `2026-11-20 14:03 +05:00` in text, RFC 3339 with the offset
/// (`2026-11-20T14:03:00+05:00`) in JSON, which a program reads as the same instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// First and last reporting day, inclusive, in `timezone`.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The reporting zone (`recon.timezone`) its days and times are in.
    pub timezone: String,
    pub generated_at: DateTime<FixedOffset>,
    /// Payments the daemon first saw reach an outcome in the period: paid, failed, expired
    /// unpaid.
    pub outcomes: Vec<Outcome>,
    /// Money that moved in the period, per currency, by the day it counts on (a refund's
    /// date): what was received, refunded, reversed, charged back, kept, and the net.
    pub money: Vec<store::money::MoneyTotal>,
    /// Payments with money back in the period, by what money has made of them now
    /// (partially_refunded, refunded, reversed).
    pub money_back: Vec<(String, i64)>,
    pub flags_opened: Vec<(String, i64)>,
    pub flags_resolved: Vec<(String, i64)>,
    /// Open flags a person must act on when the digest was made, by age.
    pub open: AgeBuckets,
    /// The oldest of them.
    pub oldest_open: Vec<OpenFlag>,
}

impl Digest {
    /// Reads the digest for `from..=to`: by default yesterday in the reporting zone; `to`
    /// defaults to `from`.
    pub async fn read(
        pool: &PgPool,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Self, StoreError> {
        let zone = store::digest::zone_now(pool).await?;
        // One day unless a span is given: `--to` alone is that day.
        let from = from.or(to).unwrap_or(zone.yesterday);
        let to = to.unwrap_or(from);
        let (flags_opened, flags_resolved) = store::digest::flag_changes(pool, from, to).await?;
        let mut digest = Self {
            from,
            to,
            timezone: zone.timezone,
            generated_at: zone.now,
            outcomes: store::digest::outcomes(pool, from, to).await?,
            money: store::money::totals(pool, Some(from), Some(to)).await?,
            money_back: store::money::return_outcomes(pool, Some(from), Some(to)).await?,
            flags_opened,
            flags_resolved,
            open: open_action_ages(pool).await?,
            oldest_open: store::digest::oldest_open(pool, OLDEST_LISTED).await?,
        };
        digest.quiet_outside_text();
        Ok(digest)
    }

    /// Text from outside (ids, a flag's values, statuses, currencies) can mention nobody, in
    /// whichever format the digest is rendered and wherever it is sent.
    fn quiet_outside_text(&mut self) {
        let quiet = |text: &mut String| {
            if let std::borrow::Cow::Owned(safe) = without_mentions(text) {
                *text = safe;
            }
        };
        for outcome in &mut self.outcomes {
            outcome.currency.as_mut().map(quiet);
        }
        for total in &mut self.money {
            quiet(&mut total.currency);
        }
        for flag in &mut self.oldest_open {
            quiet(&mut flag.payment_id);
            quiet(&mut flag.status);
            flag.expected.as_mut().map(quiet);
            flag.actual.as_mut().map(quiet);
        }
    }

    fn period(&self) -> String {
        if self.from == self.to {
            self.from.to_string()
        } else {
            format!("{} to {}", self.from, self.to)
        }
    }

    pub fn render(&self, format: DigestFormat) -> String {
        match format {
            DigestFormat::Json => {
                serde_json::to_string_pretty(self).expect("a digest serialises") + "\n"
            }
            DigestFormat::Text => self.render_text(false),
            DigestFormat::Markdown => self.render_text(true),
        }
    }

    fn render_text(&self, markdown: bool) -> String {
        let mut out = String::new();
        let heading = |out: &mut String, text: &str| {
            let _ = if markdown {
                writeln!(out, "\n**{text}**")
            } else {
                writeln!(out, "\n{text}")
            };
        };
        // Outside text: escaped, bounded, and in Markdown a code span without the characters
        // chat services act on even there (Slack reads <!channel> inside code). Long enough
        // for a flag's own texts (a deadline and whose it was), short enough for a chat line.
        let value = |raw: &str| {
            let cleaned = clean(raw, 160);
            if markdown {
                let quiet: String = cleaned
                    .chars()
                    .map(|c| match c {
                        '`' => '\'',
                        '<' => '‹',
                        '>' => '›',
                        '&' => '+',
                        c => c,
                    })
                    .collect();
                format!("`{quiet}`")
            } else {
                cleaned
            }
        };
        let bullet = if markdown { "- " } else { "  " };
        let title = format!(
            "Freedom Pay reconciliation digest: {} ({})",
            self.period(),
            self.timezone
        );
        let _ = if markdown {
            writeln!(out, "### {title}")
        } else {
            writeln!(out, "{title}")
        };

        // By the day the daemon first saw each outcome: what it learned, not when the payer
        // paid (docs/finance.md, "Which time decides a payment's month").
        heading(&mut out, "Outcomes first seen in the period");
        if self.outcomes.is_empty() {
            let _ = writeln!(out, "{bullet}none");
        }
        for o in &self.outcomes {
            let (what, amount_is) = match o.outcome.as_str() {
                "paid" => ("paid", "received"),
                "failed" => ("failed", "invoiced"),
                _ => ("expired unpaid", "invoiced"),
            };
            let currency = o
                .currency
                .as_deref()
                .map_or_else(|| "no currency".to_owned(), value);
            let amount = o
                .amount
                .as_deref()
                .map_or(String::new(), |a| format!(", {amount_is} {a} {currency}"));
            let _ = writeln!(
                out,
                "{bullet}{what}: {} {}{amount}",
                o.payments,
                if o.payments == 1 {
                    "payment"
                } else {
                    "payments"
                },
            );
        }

        // By the day the money moved (a refund's own date), not the payment's: a status is
        // not money.
        if !self.money.is_empty() {
            heading(&mut out, "Money moved in the period");
            for total in &self.money {
                // The currency is a checked code (recon.money_events refuses anything else).
                let _ = writeln!(out, "{bullet}{}", super::describe_money(total));
            }
            if !self.money_back.is_empty() {
                let _ = writeln!(
                    out,
                    "{bullet}payments with money back, as they stand now: {}",
                    self.money_back
                        .iter()
                        .map(|(outcome, n)| format!("{} {n}", outcome.replace('_', " ")))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }

        let counts = |rows: &[(String, i64)]| {
            if rows.is_empty() {
                "none".to_owned()
            } else {
                rows.iter()
                    .map(|(kind, n)| format!("{kind} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        heading(&mut out, "Flags");
        let _ = writeln!(out, "{bullet}opened: {}", counts(&self.flags_opened));
        let _ = writeln!(out, "{bullet}resolved: {}", counts(&self.flags_resolved));
        let open = &self.open;
        let _ = writeln!(
            out,
            "{bullet}open, needing a person: {} ({})",
            open.total(),
            open.describe()
        );

        if !self.oldest_open.is_empty() {
            heading(&mut out, "Oldest open flags needing a person");
            for flag in &self.oldest_open {
                let _ = writeln!(
                    out,
                    "{bullet}{} {} {} (status {}): expected {}, actual {}",
                    flag.detected_at.format("%Y-%m-%d %H:%M %:z"),
                    value(&flag.payment_id),
                    flag.kind,
                    value(&flag.status),
                    flag.expected.as_deref().map_or("-".into(), value),
                    flag.actual.as_deref().map_or("-".into(), value),
                );
            }
        }
        out
    }
}

/// Posts `text` to a chat incoming webhook as `{"text": ...}`. No redirect is followed; an
/// answer other than 2xx is an error naming its status.
pub async fn post(url: &str, text: &str) -> anyhow::Result<()> {
    // The URL is a secret (whoever holds it may post): never repeated in a message.
    let url = reqwest::Url::parse(url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--post (or FREEDOMPAY_RECON_DIGEST_POST) is not an http(s) URL; \
                 give the chat's incoming-webhook URL as it is, without quotes"
            )
        })?;
    let client = crate::outbound::client(Duration::from_secs(10), None)?;
    let host = url.host_str().unwrap_or("").to_owned();
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "text": text }).to_string())
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot post the digest to {host}: {}",
                crate::outbound::describe(&e)
            )
        })?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "the chat webhook at {host} answered HTTP {}; the digest was not posted",
        status.as_u16()
    );
    Ok(())
}
