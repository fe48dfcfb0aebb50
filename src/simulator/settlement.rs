//! What a provider and a bank would write about the simulator's payments (issue 27, item 5):
//! a registry CSV per day (`;`, decimal commas, as providers of the same family publish them),
//! the map that reads them, and the merchant's 1C bank statement (cp1251, Kazakh keys) with a
//! credit per payout; with knobs for the errors a month brings.
//!
//! Each day's operations (in the registry's zone, +05:00) are paid out the next day as one
//! payout, `PO-YYYYMMDD`, whose net (payments less commission, less money returned) reaches
//! the bank the same day, unless a knob says otherwise.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

/// The map that reads the registries written here (`import --registry FILE --map map.toml`).
pub const REGISTRY_MAP: &str = r#"# The simulator's registries: `;`, decimal commas, a payout per day.
[columns]
operation_id = "TRANSACTION_ID"
parent_payment_id = "PARENT_TRANSACTION_ID"
order_id = "ORDER_UID"
type = "TRANSACTION_TYPE"
amount = "SUM"
commission = "COMMISSION"
currency = "CURRENCY"
operation_time = "TRANS_DATE"
payout_reference = "PAYOUT_ID"
payout_date = "PAYOUT_DATE"

[types]
payment = ["PAYMENT"]
refund = ["REFUND"]
reversal = ["REVERSAL"]
"#;

/// The provider's account and tax id the statement's credits come from.
pub const PROVIDER_IIK: &str = "KZ009999999999999999";
pub const PROVIDER_BIN: &str = "111111111111";
/// The merchant's account the statement is for.
pub const MERCHANT_IIK: &str = "KZ001234567890123456";

/// A payment the provider took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub payment_id: String,
    pub order_id: Option<String>,
    pub amount: Decimal,
    pub currency: String,
    pub at: DateTime<Utc>,
}

/// Money the provider gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned {
    /// Its own id.
    pub id: String,
    pub payment_id: String,
    pub reversal: bool,
    /// Positive.
    pub amount: Decimal,
    pub currency: String,
    pub at: DateTime<Utc>,
}

/// What goes wrong in the month, each so many times (the first that fit, in day order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Knobs {
    /// Paid payments the registries leave out.
    pub missing_lines: usize,
    /// Payment lines stating a commission one unit above the contract's.
    pub wrong_commission: usize,
    /// Payouts paid as two credits.
    pub split_payouts: usize,
    /// Pairs of payouts paid in one credit (on the later one's day).
    pub merged_payouts: usize,
    /// Payouts paid `late_days` after their day.
    pub late_payouts: usize,
    pub late_days: i64,
}

/// What was written, and which errors were put in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// (file name, bytes): a registry per day with operations.
    pub registries: Vec<(String, Vec<u8>)>,
    /// The statement's file name and bytes (cp1251).
    pub statement: (String, Vec<u8>),
    pub missing_lines: Vec<String>,
    pub wrong_commission: Vec<String>,
    pub split_payouts: Vec<String>,
    pub merged_payouts: Vec<(String, String)>,
    pub late_payouts: Vec<String>,
}

fn zone() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600).expect("+05:00")
}

fn comma(amount: Decimal) -> String {
    format!("{:.2}", amount).replace('.', ",")
}

fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

struct Line {
    id: String,
    parent: String,
    order: String,
    kind: &'static str,
    sum: Decimal,
    commission: Decimal,
    currency: String,
    at: DateTime<FixedOffset>,
}

/// Writes the registries and the statement for `paid` and `returned`, at `commission_percent`.
pub fn write(
    paid: &[Paid],
    returned: &[Returned],
    commission_percent: Decimal,
    knobs: Knobs,
) -> Written {
    let mut written = Written::default();
    let mut paid: Vec<&Paid> = paid.iter().collect();
    paid.sort_by(|a, b| (a.at, &a.payment_id).cmp(&(b.at, &b.payment_id)));
    let mut lines: Vec<Line> = Vec::new();
    for p in &paid {
        if written.missing_lines.len() < knobs.missing_lines {
            written.missing_lines.push(p.payment_id.clone());
            continue;
        }
        let mut commission = cents(p.amount * commission_percent / Decimal::ONE_HUNDRED);
        if written.wrong_commission.len() < knobs.wrong_commission {
            written.wrong_commission.push(p.payment_id.clone());
            commission += Decimal::ONE;
        }
        lines.push(Line {
            id: p.payment_id.clone(),
            parent: String::new(),
            order: p.order_id.clone().unwrap_or_default(),
            kind: "PAYMENT",
            sum: p.amount,
            commission,
            currency: p.currency.clone(),
            at: p.at.with_timezone(&zone()),
        });
    }
    for r in returned {
        lines.push(Line {
            id: r.id.clone(),
            parent: r.payment_id.clone(),
            order: String::new(),
            kind: if r.reversal { "REVERSAL" } else { "REFUND" },
            sum: -r.amount,
            commission: Decimal::ZERO,
            currency: r.currency.clone(),
            at: r.at.with_timezone(&zone()),
        });
    }
    lines.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));

    // A registry per day; a payout per day and currency, the next day.
    let mut days: Vec<NaiveDate> = lines.iter().map(|l| l.at.date_naive()).collect();
    days.dedup();
    let mut payouts: Vec<(String, NaiveDate, Decimal)> = Vec::new();
    for day in days {
        let payout_day = day + Duration::days(1);
        let reference = format!("PO-{}", day.format("%Y%m%d"));
        let mut text = String::from(
            "TRANSACTION_ID;PARENT_TRANSACTION_ID;ORDER_UID;TRANSACTION_TYPE;SUM;COMMISSION;\
             CURRENCY;TRANS_DATE;PAYOUT_ID;PAYOUT_DATE\n",
        );
        let mut net = Decimal::ZERO;
        for line in lines.iter().filter(|l| l.at.date_naive() == day) {
            text.push_str(&format!(
                "{};{};{};{};{};{};{};{};{reference};{}\n",
                line.id,
                line.parent,
                line.order,
                line.kind,
                comma(line.sum),
                comma(line.commission),
                line.currency,
                line.at.format("%Y-%m-%d %H:%M:%S"),
                payout_day.format("%d.%m.%Y"),
            ));
            if line.currency == "KZT" {
                net += line.sum - line.commission;
            }
        }
        written
            .registries
            .push((format!("registry-{day}.csv"), text.into_bytes()));
        if net > Decimal::ZERO {
            payouts.push((reference, payout_day, net));
        }
    }

    // The bank: a credit per payout, bent by the knobs.
    let mut credits: Vec<(NaiveDate, Decimal, String)> = Vec::new();
    let mut i = 0;
    while i < payouts.len() {
        let (reference, day, net) = &payouts[i];
        let purpose = format!("Возмещение по реестру {reference}");
        if written.merged_payouts.len() < knobs.merged_payouts && i + 1 < payouts.len() {
            let (next, next_day, next_net) = &payouts[i + 1];
            written
                .merged_payouts
                .push((reference.clone(), next.clone()));
            credits.push((
                *next_day,
                net + next_net,
                format!("Возмещение по реестрам {reference}, {next}"),
            ));
            i += 2;
            continue;
        }
        if written.split_payouts.len() < knobs.split_payouts {
            written.split_payouts.push(reference.clone());
            let half = cents(net / Decimal::TWO);
            credits.push((*day, half, format!("{purpose} (1/2)")));
            credits.push((*day, net - half, format!("{purpose} (2/2)")));
        } else if written.late_payouts.len() < knobs.late_payouts {
            written.late_payouts.push(reference.clone());
            credits.push((*day + Duration::days(knobs.late_days), *net, purpose));
        } else {
            credits.push((*day, *net, purpose));
        }
        i += 1;
    }
    written.statement = statement(&credits);
    written
}

/// A 1C exchange file with Kazakh keys, in cp1251, of `credits` (day, amount, purpose).
fn statement(credits: &[(NaiveDate, Decimal, String)]) -> (String, Vec<u8>) {
    let dmy = |d: NaiveDate| d.format("%d.%m.%Y").to_string();
    let from = credits.iter().map(|c| c.0).min();
    let to = credits.iter().map(|c| c.0).max();
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        _ => {
            let today = Utc::now().date_naive();
            (today, today)
        }
    };
    let total: Decimal = credits.iter().map(|c| c.1).sum();
    let mut text = format!(
        "1CClientBankExchange\r\nВерсияФормата=1.01\r\nКодировка=Windows\r\n\
         Отправитель=Simulated bank\r\nДатаСоздания={}\r\nДатаНачала={}\r\nДатаКонца={}\r\n\
         РасчСчет={MERCHANT_IIK}\r\nСекцияРасчСчет\r\nДатаНачала={}\r\nДатаКонца={}\r\n\
         РасчСчет={MERCHANT_IIK}\r\nНачальныйОстаток=0.00\r\nВсегоПоступило={total:.2}\r\n\
         ВсегоСписано=0.00\r\nКонечныйОстаток={total:.2}\r\nКонецРасчСчет\r\n",
        dmy(to),
        dmy(from),
        dmy(to),
        dmy(from),
        dmy(to),
    );
    for (n, (day, amount, purpose)) in credits.iter().enumerate() {
        text.push_str(&format!(
            "СекцияДокумент=выписка\r\nНомерДокумента={}\r\nДатаДокумента={d}\r\n\
             ПлательщикНаименование=ТОО \"Freedom Pay\"\r\nПлательщикБИН_ИИН={PROVIDER_BIN}\r\n\
             ПлательщикИИК={PROVIDER_IIK}\r\nПолучательНаименование=ТОО \"Магазин\"\r\n\
             ПолучательИИК={MERCHANT_IIK}\r\nПолучательКБЕ=17\r\nСуммаПриход={amount:.2}\r\n\
             СуммаРасход=0.00\r\nДатаОперации={d}\r\nНазначениеПлатежа={purpose}\r\n\
             КодНазначенияПлатежа=119\r\nКонецДокумента\r\n",
            7001 + n,
            d = dmy(*day),
        ));
    }
    text.push_str("КонецФайла\r\n");
    let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(&text);
    (format!("statement-{from}-{to}.txt"), bytes.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::statement::read_1c;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn paid(id: &str, amount: &str, day: u32) -> Paid {
        Paid {
            payment_id: id.into(),
            order_id: Some(format!("order-{id}")),
            amount: d(amount),
            currency: "KZT".into(),
            at: format!("2026-11-{day:02}T06:00:00Z").parse().unwrap(),
        }
    }

    #[test]
    fn each_day_is_a_registry_and_a_payout_and_the_knobs_bend_the_bank() {
        let paid = [
            paid("1", "1000", 2),
            paid("2", "2000", 2),
            paid("3", "400", 3),
            paid("4", "800", 4),
            paid("5", "610", 5),
            paid("6", "300", 6),
            paid("7", "700", 7),
        ];
        let returned = [Returned {
            id: "r1".into(),
            payment_id: "2".into(),
            reversal: false,
            amount: d("500"),
            currency: "KZT".into(),
            at: "2026-11-03T07:00:00Z".parse().unwrap(),
        }];
        let knobs = Knobs {
            missing_lines: 1,
            wrong_commission: 1,
            split_payouts: 1,
            merged_payouts: 1,
            late_payouts: 1,
            late_days: 9,
        };
        let written = write(&paid, &returned, d("2"), knobs);
        assert_eq!(written.registries.len(), 6);
        let first = String::from_utf8(written.registries[0].1.clone()).unwrap();
        // 1 is left out; 2 states a commission of 41 (40 by the contract, plus one).
        assert_eq!(
            first.lines().nth(1),
            Some("2;;order-2;PAYMENT;2000,00;41,00;KZT;2026-11-02 11:00:00;PO-20261102;03.11.2026")
        );
        assert_eq!(written.missing_lines, ["1"]);
        assert_eq!(written.wrong_commission, ["2"]);
        // Nov 3 takes back more than it brings (392 - 500): withheld, no payout.
        assert_eq!(
            written.merged_payouts,
            [("PO-20261102".to_owned(), "PO-20261104".to_owned())]
        );
        assert_eq!(written.split_payouts, ["PO-20261105"]);
        assert_eq!(written.late_payouts, ["PO-20261106"]);

        let statement = read_1c(&written.statement.1).unwrap();
        assert_eq!(statement.encoding, "windows-1251");
        let credits: Vec<(String, String)> = statement
            .lines
            .iter()
            .map(|l| (l.date.to_string(), l.amount.to_string()))
            .collect();
        // Nov 2's 1959 and Nov 4's 784 in one credit, on Nov 4's payout day; Nov 5's 597.8 in
        // two; Nov 6's 294 nine days late; Nov 7's 686 on time.
        assert_eq!(
            credits,
            [
                ("2026-11-05", "2743.00"),
                ("2026-11-06", "298.90"),
                ("2026-11-06", "298.90"),
                ("2026-11-16", "294.00"),
                ("2026-11-08", "686.00"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert!(
            statement
                .lines
                .iter()
                .all(|l| l.payer_account.as_deref() == Some(PROVIDER_IIK)
                    && l.knp.as_deref() == Some("119"))
        );
    }
}
