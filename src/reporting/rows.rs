//! The column tables of the report row types. Each column's name is stable (CSV headers,
//! JSON keys, `resolve --from-csv` reads them back); its kind decides how every format writes
//! it ([`super::columns`]).

use super::columns::{Amount, Cell, Column, Kind, Layout, ReportRow, TableColumn};
use crate::domain::FlagKind;
use crate::store::close::AdjustmentRow;
use crate::store::console::Moment;
use crate::store::money::MoneyDayRow;
use crate::store::report::{DetailRow, FlagRow, ResolutionRow, SummaryRow};
use crate::store::settlement::{MoneyLine, MonthMoney};

/// `5000.00 KZT`, or empty when there is no amount.
fn money(amount: Option<&str>, currency: &Option<String>) -> String {
    match amount {
        Some(amount) => format!("{amount} {}", currency.as_deref().unwrap_or(""))
            .trim_end()
            .to_owned(),
        None => String::new(),
    }
}

/// An age for a person: `3d 4h`, `5h 10m`, `12m`.
fn age(seconds: i64) -> String {
    let minutes = seconds.max(0) / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

const fn column<R>(
    name: &'static str,
    kind: Kind,
    cell: for<'a> fn(&'a R) -> Cell<'a>,
) -> Column<R> {
    Column { name, kind, cell }
}

const fn shown<R>(
    name: &'static str,
    width: usize,
    layout: Layout,
    cell: fn(&R) -> String,
) -> TableColumn<R> {
    TableColumn {
        name,
        width,
        layout,
        cell,
    }
}

impl ReportRow for SummaryRow {
    const SHEET: &'static str = "Summary";
    const COLUMNS: &'static [Column<Self>] = &[
        column("day", Kind::Day, |r| Cell::Day(r.day)),
        column("currency", Kind::Text, |r| Cell::text(&r.currency)),
        column("outcome", Kind::Text, |r| Cell::Text(&r.outcome)),
        column("status", Kind::Text, |r| Cell::Text(&r.status)),
        column("payments", Kind::Count, |r| Cell::Count(r.payments)),
        column("expected_payments", Kind::Count, |r| {
            Cell::Count(r.expected_payments)
        }),
        column("expected_amount", Kind::Amount, |r| {
            Cell::sum(&r.expected_amount)
        }),
        column("received_payments", Kind::Count, |r| {
            Cell::Count(r.received_payments)
        }),
        column("received_amount", Kind::Amount, |r| {
            Cell::sum(&r.received_amount)
        }),
        column("fee", Kind::Amount, |r| Cell::sum(&r.fee)),
        column("payments_without_fee", Kind::Count, |r| {
            Cell::Count(r.payments_without_fee)
        }),
        column("difference", Kind::Amount, |r| Cell::sum(&r.difference)),
        column("needs_action", Kind::Count, |r| Cell::Count(r.needs_action)),
        column("amount_mismatch", Kind::Count, |r| {
            Cell::Count(r.amount_mismatch)
        }),
        column("currency_mismatch", Kind::Count, |r| {
            Cell::Count(r.currency_mismatch)
        }),
        column("order_mismatch", Kind::Count, |r| {
            Cell::Count(r.order_mismatch)
        }),
        column("not_found", Kind::Count, |r| Cell::Count(r.not_found)),
        column("unknown_status", Kind::Count, |r| {
            Cell::Count(r.unknown_status)
        }),
        column("terminal_status_changed", Kind::Count, |r| {
            Cell::Count(r.terminal_status_changed)
        }),
        column("polling_abandoned", Kind::Count, |r| {
            Cell::Count(r.polling_abandoned)
        }),
        column("paid_after_deadline", Kind::Count, |r| {
            Cell::Count(r.paid_after_deadline)
        }),
    ];
    // Each sum sits beside the count a reader needs to read it: `n_exp` payments were expected
    // in the row's currency (the others, expected in another one, are not in `expected`), and
    // `n_no_fee` payments were received without a stated fee (not in `fee`). The table ends
    // with a line that says so.
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("day", 10, Layout::Text, |r| r.day.to_string()),
        shown("cur", 3, Layout::Code, |r| text(&r.currency)),
        shown("outcome", 14, Layout::Text, |r| r.outcome.clone()),
        shown("status", 10, Layout::Text, |r| r.status.clone()),
        shown("payments", 8, Layout::Number, |r| r.payments.to_string()),
        shown("n_exp", 5, Layout::Number, |r| {
            r.expected_payments.to_string()
        }),
        shown("expected", 12, Layout::Number, |r| text(&r.expected_amount)),
        shown("received", 12, Layout::Number, |r| text(&r.received_amount)),
        shown("fee", 10, Layout::Number, |r| text(&r.fee)),
        shown("n_no_fee", 8, Layout::Number, |r| {
            r.payments_without_fee.to_string()
        }),
        shown("difference", 11, Layout::Number, |r| text(&r.difference)),
        shown("action", 6, Layout::Number, |r| r.needs_action.to_string()),
    ];
}

/// What the summary table's count columns mean, said under it.
pub const SUMMARY_LEGEND: &str = "n_exp: payments expected in this currency, summed in \
     expected; n_no_fee: payments received without a stated fee";

impl ReportRow for DetailRow {
    const SHEET: &'static str = "Payments";
    const COLUMNS: &'static [Column<Self>] = &[
        column("payment_id", Kind::Text, |r| Cell::Text(&r.payment_id)),
        column("order_id", Kind::Text, |r| Cell::text(&r.order_id)),
        column("provider_order_id", Kind::Text, |r| {
            Cell::text(&r.provider_order_id)
        }),
        column("outcome", Kind::Text, |r| Cell::Text(&r.outcome)),
        column("status", Kind::Text, |r| Cell::text(&r.status)),
        column("expected_amount", Kind::Amount, |r| {
            Cell::amount(r.expected_amount)
        }),
        column("expected_currency", Kind::Text, |r| {
            Cell::text(&r.expected_currency)
        }),
        column("received_amount", Kind::Amount, |r| {
            Cell::amount(r.received_amount)
        }),
        column("received_currency", Kind::Text, |r| {
            Cell::text(&r.received_currency)
        }),
        column("difference", Kind::Amount, |r| Cell::amount(r.difference)),
        column("invoice_amount", Kind::Amount, |r| {
            Cell::amount(r.invoice_amount)
        }),
        column("invoice_currency", Kind::Text, |r| {
            Cell::text(&r.invoice_currency)
        }),
        column("fee", Kind::Amount, |r| Cell::amount(r.fee)),
        column("discount", Kind::Amount, |r| Cell::amount(r.discount)),
        column("created_at", Kind::Time, |r| {
            Cell::time(Some(r.created_at), Some(r.created_local))
        }),
        column("created_day", Kind::Day, |r| Cell::Day(r.created_day)),
        // When the daemon first saw the payment settled: an observation, not a payment time
        // (that is `provider_paid_at`, when the provider said).
        column("first_seen_settled_at", Kind::Time, |r| {
            Cell::time(r.first_seen_settled_at, r.first_seen_settled_local)
        }),
        column("first_seen_settled_day", Kind::Day, |r| {
            r.first_seen_settled_day.map_or(Cell::Empty, Cell::Day)
        }),
        column("expires_at", Kind::Time, |r| {
            Cell::time(r.expires_at, r.expires_local)
        }),
        column("expiry_source", Kind::Text, |r| {
            Cell::text(&r.expiry_source)
        }),
        column("deadline_missed_at", Kind::Time, |r| {
            Cell::time(r.deadline_missed_at, r.deadline_missed_local)
        }),
        column("checks", Kind::Count, |r| {
            r.checks.map_or(Cell::Empty, |c| Cell::Count(c.into()))
        }),
        column("last_checked_at", Kind::Time, |r| {
            Cell::time(r.last_checked_at, r.last_checked_local)
        }),
        column("open_flags", Kind::List, |r| Cell::List(&r.open_flags)),
        column("provider_paid_at", Kind::Time, |r| {
            Cell::time(r.provider_paid_at, r.provider_paid_local)
        }),
        // Money, not status (recon.payment_money): what went back, and what is left.
        column("refunded", Kind::Amount, |r| Cell::amount(r.refunded)),
        column("net_received", Kind::Amount, |r| {
            Cell::amount(r.net_received)
        }),
        column("commission", Kind::Amount, |r| Cell::amount(r.commission)),
        column("net_to_merchant", Kind::Amount, |r| {
            Cell::amount(r.net_to_merchant)
        }),
        column("money_outcome", Kind::Text, |r| {
            Cell::text(&r.money_outcome)
        }),
    ];
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("payment_id", 26, Layout::Text, |r| r.payment_id.clone()),
        shown("status", 11, Layout::Text, |r| text(&r.status)),
        shown("expected", 19, Layout::Number, |r| {
            let amount = r.expected_amount.map(|d| d.to_string());
            money(amount.as_deref(), &r.expected_currency)
        }),
        shown("received", 19, Layout::Number, |r| {
            let amount = r.received_amount.map(|d| d.to_string());
            money(amount.as_deref(), &r.received_currency)
        }),
        shown("difference", 14, Layout::Number, |r| {
            r.difference.map(|d| d.to_string()).unwrap_or_default()
        }),
        shown("open_flags", 25, Layout::Text, |r| r.open_flags.join(" ")),
    ];
}

/// What an amount flag compared is a pair of amounts; any other flag's is text.
fn compared<'a>(row: &FlagRow, value: &'a Option<String>) -> Cell<'a> {
    match value.as_deref() {
        None => Cell::Empty,
        Some(amount)
            if row.kind == FlagKind::AmountMismatch.as_str()
                && crate::text::is_plain_number(amount) =>
        {
            Cell::Amount(Amount::Text(amount))
        }
        Some(text) => Cell::Text(text),
    }
}

impl ReportRow for FlagRow {
    const SHEET: &'static str = "Flags";
    const COLUMNS: &'static [Column<Self>] = &[
        column("flag_id", Kind::Count, |r| Cell::Count(r.flag_id)),
        column("payment_id", Kind::Text, |r| Cell::Text(&r.payment_id)),
        column("kind", Kind::Text, |r| Cell::Text(&r.kind)),
        column("class", Kind::Text, |r| Cell::Text(&r.class)),
        column("opened_at", Kind::Time, |r| {
            Cell::time(Some(r.opened_at), Some(r.opened_local))
        }),
        column("opened_day", Kind::Day, |r| Cell::Day(r.opened_day)),
        column("age_days", Kind::Count, |r| {
            Cell::Count(r.age_seconds.div_euclid(86_400))
        }),
        column("expected", Kind::TextOrAmount, |r| compared(r, &r.expected)),
        column("actual", Kind::TextOrAmount, |r| compared(r, &r.actual)),
        column("follows_id", Kind::Count, |r| {
            r.follows_id.map_or(Cell::Empty, Cell::Count)
        }),
        column("order_id", Kind::Text, |r| Cell::text(&r.order_id)),
        column("status", Kind::Text, |r| Cell::text(&r.status)),
        column("outcome", Kind::Text, |r| Cell::Text(&r.outcome)),
        column("expected_amount", Kind::Amount, |r| {
            Cell::amount(r.expected_amount)
        }),
        column("expected_currency", Kind::Text, |r| {
            Cell::text(&r.expected_currency)
        }),
        column("received_amount", Kind::Amount, |r| {
            Cell::amount(r.received_amount)
        }),
        column("received_currency", Kind::Text, |r| {
            Cell::text(&r.received_currency)
        }),
        column("invoice_amount", Kind::Amount, |r| {
            Cell::amount(r.invoice_amount)
        }),
        column("invoice_currency", Kind::Text, |r| {
            Cell::text(&r.invoice_currency)
        }),
        // The payment's reporting day: the day, and month, whose figures the flag is about.
        column("payment_day", Kind::Day, |r| Cell::Day(r.payment_day)),
        // For a person's note: `resolve --from-csv` and `--from-xlsx` read it back.
        column("note", Kind::Text, |_| Cell::Empty),
    ];
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("payment_id", 26, Layout::Text, |r| r.payment_id.clone()),
        shown("kind", 23, Layout::Text, |r| r.kind.clone()),
        shown("age", 7, Layout::Number, |r| age(r.age_seconds)),
        shown("status", 10, Layout::Text, |r| {
            r.status.clone().unwrap_or_else(|| "no_answer".into())
        }),
        shown("expected", 24, Layout::Text, |r| text(&r.expected)),
        shown("actual", 24, Layout::Text, |r| text(&r.actual)),
    ];
}

impl ReportRow for ResolutionRow {
    const SHEET: &'static str = "Resolutions";
    const COLUMNS: &'static [Column<Self>] = &[
        column("flag_id", Kind::Count, |r| Cell::Count(r.flag_id)),
        column("payment_id", Kind::Text, |r| Cell::Text(&r.payment_id)),
        column("payment_day", Kind::Day, |r| Cell::Day(r.payment_day)),
        column("kind", Kind::Text, |r| Cell::Text(&r.kind)),
        column("class", Kind::Text, |r| Cell::Text(&r.class)),
        column("opened_at", Kind::Time, |r| {
            Cell::time(Some(r.opened_at), Some(r.opened_local))
        }),
        column("resolved_at", Kind::Time, |r| {
            Cell::time(Some(r.resolved_at), Some(r.resolved_local))
        }),
        column("resolved_day", Kind::Day, |r| Cell::Day(r.resolved_day)),
        // The database role of the session that wrote it; `resolved_by` the name it was
        // written on behalf of.
        column("resolved_role", Kind::Text, |r| {
            Cell::text(&r.resolved_role)
        }),
        column("resolved_by", Kind::Text, |r| Cell::Text(&r.resolved_by)),
        column("resolution", Kind::Text, |r| Cell::Text(&r.resolution)),
        column("expected", Kind::Text, |r| Cell::text(&r.expected)),
        column("actual", Kind::Text, |r| Cell::text(&r.actual)),
    ];
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("resolved_day", 12, Layout::Text, |r| {
            r.resolved_day.to_string()
        }),
        shown("payment_id", 22, Layout::Text, |r| r.payment_id.clone()),
        shown("kind", 20, Layout::Text, |r| r.kind.clone()),
        shown("role", 14, Layout::Text, |r| text(&r.resolved_role)),
        shown("on behalf of", 14, Layout::Text, |r| r.resolved_by.clone()),
        shown("note", 30, Layout::Text, |r| r.resolution.clone()),
    ];
}

impl ReportRow for AdjustmentRow {
    const SHEET: &'static str = "Adjustments";
    const COLUMNS: &'static [Column<Self>] = &[
        column("adjustment_id", Kind::Count, |r| {
            Cell::Count(r.adjustment_id)
        }),
        column("booked_day", Kind::Day, |r| Cell::Day(r.booked_day)),
        column("booked_at", Kind::Time, |r| {
            Cell::time(Some(r.booked_at), Some(r.booked_local))
        }),
        column("payment_id", Kind::Text, |r| Cell::Text(&r.payment_id)),
        // The payment's day: the closed month whose figures it changes.
        column("original_day", Kind::Day, |r| Cell::Day(r.original_day)),
        column("cause_kind", Kind::Text, |r| Cell::Text(&r.cause_kind)),
        column("cause", Kind::Text, |r| Cell::Text(&r.cause)),
        column("old_status", Kind::Text, |r| Cell::text(&r.old_status)),
        column("new_status", Kind::Text, |r| Cell::text(&r.new_status)),
        column("old_amount", Kind::Amount, |r| Cell::amount(r.old_amount)),
        column("new_amount", Kind::Amount, |r| Cell::amount(r.new_amount)),
        column("old_currency", Kind::Text, |r| Cell::text(&r.old_currency)),
        column("new_currency", Kind::Text, |r| Cell::text(&r.new_currency)),
        column("old_fee", Kind::Amount, |r| Cell::amount(r.old_fee)),
        column("new_fee", Kind::Amount, |r| Cell::amount(r.new_fee)),
        column("old_expected_amount", Kind::Amount, |r| {
            Cell::amount(r.old_expected_amount)
        }),
        column("new_expected_amount", Kind::Amount, |r| {
            Cell::amount(r.new_expected_amount)
        }),
        column("old_expected_currency", Kind::Text, |r| {
            Cell::text(&r.old_expected_currency)
        }),
        column("new_expected_currency", Kind::Text, |r| {
            Cell::text(&r.new_expected_currency)
        }),
        column("old_open_flags", Kind::List, |r| {
            Cell::List(&r.old_open_flags)
        }),
        column("new_open_flags", Kind::List, |r| {
            Cell::List(&r.new_open_flags)
        }),
    ];
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("booked_day", 10, Layout::Text, |r| r.booked_day.to_string()),
        shown("payment_id", 20, Layout::Text, |r| r.payment_id.clone()),
        shown("original", 10, Layout::Text, |r| r.original_day.to_string()),
        shown("status", 19, Layout::Text, |r| {
            format!(
                "{} → {}",
                r.old_status.as_deref().unwrap_or("-"),
                r.new_status.as_deref().unwrap_or("-")
            )
        }),
        shown("cause", 55, Layout::Text, |r| r.cause.clone()),
    ];
}

impl ReportRow for MoneyDayRow {
    const SHEET: &'static str = "Money";
    const COLUMNS: &'static [Column<Self>] = &[
        // The day it counts on: the provider's date, or the day seen; for an adjustment, the
        // open day it was booked on.
        column("day", Kind::Day, |r| Cell::Day(r.day)),
        column("currency", Kind::Text, |r| Cell::Text(&r.currency)),
        column("kind", Kind::Text, |r| Cell::Text(&r.kind)),
        column("events", Kind::Count, |r| Cell::Count(r.events)),
        column("payments", Kind::Count, |r| Cell::Count(r.payments)),
        // Signed for the merchant: + received, − refunded, reversed, charged back or kept.
        column("amount", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.amount))
        }),
        column("adjusts_month", Kind::Day, |r| {
            r.adjusts_month.map_or(Cell::Empty, Cell::Day)
        }),
    ];
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("day", 10, Layout::Text, |r| r.day.to_string()),
        shown("currency", 8, Layout::Code, |r| r.currency.clone()),
        shown("kind", 10, Layout::Text, |r| r.kind.clone()),
        shown("events", 7, Layout::Number, |r| r.events.to_string()),
        shown("payments", 8, Layout::Number, |r| r.payments.to_string()),
        shown("amount", 16, Layout::Number, |r| r.amount.clone()),
        shown("adjusts", 7, Layout::Text, |r| {
            r.adjusts_month
                .map_or(String::new(), |m| m.format("%Y-%m").to_string())
        }),
    ];
}

impl ReportRow for MonthMoney {
    const SHEET: &'static str = "Settlement";
    const COLUMNS: &'static [Column<Self>] = &[
        column("currency", Kind::Text, |r| Cell::Text(&r.currency)),
        column("paid_gross", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.paid_gross))
        }),
        column("refunds", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.refunds))
        }),
        column("reversals", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.reversals))
        }),
        column("chargebacks", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.chargebacks))
        }),
        column("commission", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.commission))
        }),
        column("net_due", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.net_due))
        }),
        column("in_registries", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.in_registries))
        }),
        column("paid_out", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.paid_out))
        }),
        column("withheld", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.withheld))
        }),
        column("arrived_at_bank", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.arrived_at_bank))
        }),
        column("in_transit", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.in_transit))
        }),
        column("unexplained", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.unexplained))
        }),
    ];
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("currency", 8, Layout::Code, |r| r.currency.clone()),
        shown("paid", 12, Layout::Number, |r| r.paid_gross.clone()),
        shown("refunds", 10, Layout::Number, |r| r.refunds.clone()),
        shown("reversals", 10, Layout::Number, |r| r.reversals.clone()),
        shown("chargebacks", 11, Layout::Number, |r| r.chargebacks.clone()),
        shown("commission", 10, Layout::Number, |r| r.commission.clone()),
        shown("net due", 12, Layout::Number, |r| r.net_due.clone()),
        shown("registries", 12, Layout::Number, |r| {
            r.in_registries.clone()
        }),
        shown("paid out", 12, Layout::Number, |r| r.paid_out.clone()),
        shown("withheld", 9, Layout::Number, |r| r.withheld.clone()),
        shown("at bank", 12, Layout::Number, |r| r.arrived_at_bank.clone()),
        shown("in transit", 10, Layout::Number, |r| r.in_transit.clone()),
        shown("unexplained", 11, Layout::Number, |r| r.unexplained.clone()),
    ];
}

impl ReportRow for MoneyLine {
    const SHEET: &'static str = "Settlement lines";
    const COLUMNS: &'static [Column<Self>] = &[
        column("source", Kind::Text, |r| Cell::Text(&r.source)),
        column("reference", Kind::Text, |r| Cell::Text(&r.reference)),
        column("day", Kind::Day, |r| Cell::Day(r.day)),
        column("currency", Kind::Text, |r| Cell::Text(&r.currency)),
        column("kind", Kind::Text, |r| Cell::Text(&r.kind)),
        column("amount", Kind::Amount, |r| {
            Cell::Amount(Amount::Text(&r.amount))
        }),
        column("matched_to", Kind::Text, |r| Cell::Text(&r.matched_to)),
        column("open_flags", Kind::Text, |r| Cell::Text(&r.flags)),
    ];
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("source", 13, Layout::Text, |r| r.source.clone()),
        shown("reference", 24, Layout::Text, |r| r.reference.clone()),
        shown("day", 10, Layout::Text, |r| r.day.to_string()),
        shown("currency", 8, Layout::Code, |r| r.currency.clone()),
        shown("kind", 19, Layout::Text, |r| r.kind.clone()),
        shown("amount", 12, Layout::Number, |r| r.amount.clone()),
        shown("matched to", 30, Layout::Text, |r| r.matched_to.clone()),
        shown("open flags", 24, Layout::Text, |r| r.flags.clone()),
    ];
}

impl ReportRow for Moment {
    const SHEET: &'static str = "Story";
    const COLUMNS: &'static [Column<Self>] = &[
        column("at", Kind::Time, |r| Cell::time(Some(r.at_utc), Some(r.at))),
        column("what", Kind::Text, |r| Cell::Text(r.what.as_str())),
        // The status change, or the flag's or the money's kind.
        column("subject", Kind::Text, |r| Cell::Text(&r.subject)),
        column("expected", Kind::Text, |r| Cell::text(&r.expected)),
        column("actual", Kind::Text, |r| Cell::text(&r.actual)),
        column("amount", Kind::Amount, |r| {
            r.amount
                .as_deref()
                .map_or(Cell::Empty, |a| Cell::Amount(Amount::Text(a)))
        }),
        column("currency", Kind::Text, |r| Cell::text(&r.currency)),
        // The money's source, or who resolved the flag.
        column("by", Kind::Text, |r| Cell::text(&r.by)),
        column("note", Kind::Text, |r| Cell::text(&r.note)),
        column("provider_at", Kind::Time, |r| {
            Cell::time(r.provider_utc, r.provider_at)
        }),
    ];
    const TABLE: &'static [TableColumn<Self>] = &[
        shown("at", 19, Layout::Text, |r| {
            r.at.format("%Y-%m-%d %H:%M:%S").to_string()
        }),
        shown("what", 13, Layout::Text, |r| r.what.as_str().to_owned()),
        shown("subject", 26, Layout::Text, |r| r.subject.clone()),
        shown("detail", 40, Layout::Text, |r| {
            [
                r.expected.as_ref().map(|e| format!("expected {e}")),
                r.actual.as_ref().map(|a| format!("actual {a}")),
                r.amount.as_ref().map(|a| money(Some(a), &r.currency)),
                r.by.clone(),
                r.note.clone(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        }),
    ];
}
