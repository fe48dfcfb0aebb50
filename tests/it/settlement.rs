//! Matching the money to the bank (issue 27, item 3): registry lines to their payments (the
//! commission and returns they state booked once), payouts to bank credits by exact sum, each
//! problem flagged once, re-imports changing nothing, and an undone match re-matching what
//! depended on it.

use std::io::Write as _;

use chrono::{Duration, NaiveDate, Utc};
use freedompay_recon::simulator::{Reply, Scenario};
use rust_decimal::Decimal;

use crate::helpers::{TestApp, ok, refused};

const PROVIDER_IIK: &str = "KZ009999999999999999";

/// The registry's columns, with the payout each line went into.
const MAP: &str = r#"currency = "KZT"

[columns]
operation_id = "TRANSACTION_ID"
parent_payment_id = "PARENT_TRANSACTION_ID"
type = "TRANSACTION_TYPE"
amount = "SUM"
commission = "COMMISSION"
operation_time = "TRANS_DATE"
payout_reference = "PAYOUT_ID"
payout_date = "PAYOUT_DATE"

[types]
payment = ["PAYMENT"]
refund = ["REFUND"]
"#;

fn file(suffix: &str, text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::with_suffix(suffix).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().unwrap()
}

fn dmy(day: NaiveDate) -> String {
    day.format("%d.%m.%Y").to_string()
}

/// A registry: (id, parent, type, sum, commission, payout, payout day) per line, all made a
/// minute from now (written as the registry does, without an offset: +05:00).
fn registry(lines: &[(&str, &str, &str, &str, &str, &str, NaiveDate)]) -> String {
    let made = (Utc::now() + Duration::hours(5) + Duration::minutes(1)).format("%Y-%m-%d %H:%M:%S");
    let mut text = String::from(
        "TRANSACTION_ID;PARENT_TRANSACTION_ID;TRANSACTION_TYPE;SUM;COMMISSION;TRANS_DATE;PAYOUT_ID;PAYOUT_DATE\n",
    );
    for (id, parent, kind, sum, commission, payout, day) in lines {
        text.push_str(&format!(
            "{id};{parent};{kind};{sum};{commission};{made};{payout};{day}\n"
        ));
    }
    text
}

/// A UTF-8 1C statement of credits (number, day, amount, payer's account) covering
/// `from..=to`.
fn statement(from: NaiveDate, to: NaiveDate, credits: &[(&str, NaiveDate, &str, &str)]) -> String {
    let mut text = format!(
        "1CClientBankExchange\nВерсияФормата=1.01\nКодировка=UTF-8\nДатаНачала={}\nДатаКонца={}\n\
         РасчСчет=KZ001234567890123456\n",
        dmy(from),
        dmy(to)
    );
    for (number, day, amount, payer) in credits {
        text.push_str(&format!(
            "СекцияДокумент=выписка\nНомерДокумента={number}\nДатаДокумента={d}\n\
             ПлательщикИИК={payer}\nПолучательИИК=KZ001234567890123456\nСуммаПриход={amount}\n\
             ДатаОперации={d}\nНазначениеПлатежа=Возмещение по реестру\nКодНазначенияПлатежа=119\n\
             КонецДокумента\n",
            d = dmy(*day)
        ));
    }
    text.push_str("КонецФайла\n");
    text
}

const ENV: [(&str, &str); 3] = [
    ("FREEDOMPAY_RECON__BANK__PROVIDER_ACCOUNTS", PROVIDER_IIK),
    ("FREEDOMPAY_RECON__REGISTRY__EXPECT_WITHIN", "1ms"),
    ("FREEDOMPAY_RECON__REGISTRY__COMMISSION_PERCENT", "2.5"),
];

/// Open flags: (kind, what it is about, expected, actual), settlement flags and payment flags.
async fn open_flags(app: &TestApp) -> Vec<(String, String, String, String)> {
    sqlx::query_as(
        "select kind, subject, expected, actual from recon.open_settlement_flags
         union all
         select kind, 'payment:' || payment_id, expected, actual from recon.discrepancies
         where resolved_at is null
           and kind in ('not_in_registry', 'registry_amount_mismatch')
         order by 1, 2",
    )
    .fetch_all(app.pool())
    .await
    .unwrap()
}

async fn bank_matches(app: &TestApp) -> Vec<(String, Vec<String>, Vec<String>, bool)> {
    sqlx::query_as(
        "select m.rule, m.payouts,
                array(select b.number from recon.bank_lines b where b.id = any(m.credits)
                      order by b.number),
                m.undone_at is null
         from recon.settlement_matches m where m.side = 'bank' order by m.id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_lines_meet_their_payments_payouts_their_credits_and_each_problem_one_flag() {
    let app = TestApp::with(
        Scenario::new()
            .payment("900", [Reply::invoice("success", "1000", "KZT")])
            .payment("901", [Reply::invoice("success", "2000", "KZT")])
            .payment("902", [Reply::invoice("success", "500", "KZT")])
            .payment("903", [Reply::invoice("success", "300", "KZT")])
            .payment("905", [Reply::invoice("success", "400", "KZT")])
            .payment("999", [Reply::invoice("success", "700", "KZT")]),
        &ENV,
    )
    .await;
    app.insert_ids(&["900", "901", "902", "903", "905"]).await;
    app.sweep().await;

    let today = Utc::now().date_naive();
    let early = today - Duration::days(20);
    let day = |n: i64| today + Duration::days(n);
    let reg = file(
        ".csv",
        &registry(&[
            // PO-1: two payments, their commission as the contract says: 975 + 1950.
            ("900", "", "PAYMENT", "1000", "25", "PO-1", today),
            ("901", "", "PAYMENT", "2000", "50", "PO-1", today),
            // PO-2: a payment stated short, one nobody tracks, and a refund of 900:
            // 490 + 682.5 - 100 = 1072.5, paid as two credits.
            ("902", "", "PAYMENT", "490", "0", "PO-2", today),
            ("999", "", "PAYMENT", "700", "17.5", "PO-2", today),
            ("R-1", "900", "REFUND", "-100", "", "PO-2", today),
            // PO-3, twenty days ago: a commission above the contract's 10; paid late.
            ("905", "", "PAYMENT", "400", "12", "PO-3", early),
        ]),
    );
    let map = file(".toml", MAP);
    let said = ok(&app
        .run_with(
            &["import", "--registry", path(&reg), "--map", path(&map)],
            &ENV,
        )
        .await);
    assert!(said.contains("6 operations, 6 new"), "{said}");
    assert!(said.contains("then matched 5 registry lines"), "{said}");

    let bank = file(
        ".txt",
        &statement(
            early,
            day(10),
            &[
                ("1", day(1), "2925.00", PROVIDER_IIK),
                ("2", day(2), "600.00", PROVIDER_IIK),
                ("3", day(3), "472.50", PROVIDER_IIK),
                ("4", early + Duration::days(8), "388.00", PROVIDER_IIK),
                ("5", today, "5000.00", PROVIDER_IIK),
                ("6", today, "2925.00", "KZ000000000000000001"),
            ],
        ),
    );
    let said = ok(&app.run_with(&["import", "--bank", path(&bank)], &ENV).await);
    assert!(said.contains("and 3 payouts to bank credits"), "{said}");

    assert_eq!(
        bank_matches(&app).await,
        [
            (
                "exact".into(),
                vec![format!("KZT:PO-1:{today}")],
                vec!["1".into()],
                true
            ),
            (
                "payout_many_credits".into(),
                vec![format!("KZT:PO-2:{today}")],
                vec!["2".into(), "3".into()],
                true
            ),
            (
                "late".into(),
                vec![format!("KZT:PO-3:{early}")],
                vec!["4".into()],
                true
            ),
        ]
    );
    let five: i64 = sqlx::query_scalar("select id from recon.bank_lines where number = '5'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let flags = open_flags(&app).await;
    assert_eq!(
        flags,
        [
            (
                "bank_credit_unexplained".into(),
                format!("bank_line:{five}"),
                "a payout in the registries".into(),
                format!("none of the payouts up to {today} sums to it"),
            ),
            (
                "not_in_registry".into(),
                "payment:903".into(),
                flags[1].2.clone(),
                "in none imported".into(),
            ),
            (
                "payout_not_at_bank".into(),
                format!("payout:KZT:PO-3:{early}"),
                format!("388 KZT at the bank by {}", early + Duration::days(5)),
                format!(
                    "arrived {}, 3 days after the window",
                    early + Duration::days(8)
                ),
            ),
            (
                "registry_amount_mismatch".into(),
                "payment:902".into(),
                "500 KZT, commission 12.25".into(),
                "490 KZT, commission 0".into(),
            ),
            (
                "registry_amount_mismatch".into(),
                "payment:905".into(),
                "commission 10".into(),
                "commission 12".into(),
            ),
            (
                "registry_unknown".into(),
                "registry_line:999".into(),
                "a paid payment tracked here (payment)".into(),
                "payment 999 is not tracked here".into(),
            ),
        ]
    );
    assert!(
        flags[1]
            .2
            .starts_with("in a registry within 1ms of being paid")
    );

    // What the registry states of money is booked once: the commissions, and the refund no
    // other source recorded.
    let booked: Vec<(String, String, Decimal)> = sqlx::query_as(
        "select payment_id, kind, amount from recon.money_events
         where source = 'registry' order by payment_id, kind",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        booked,
        [
            ("900".into(), "commission".into(), "-25".parse().unwrap()),
            ("900".into(), "refund".into(), "-100".parse().unwrap()),
            ("901".into(), "commission".into(), "-50".parse().unwrap()),
            ("905".into(), "commission".into(), "-12".parse().unwrap()),
        ]
    );

    // The month's money, from the payments to the bank (PO-3 is November's).
    let month = today.format("%Y-%m").to_string();
    let table = ok(&app
        .run_with(
            &[
                "report",
                "--settlement",
                "--month",
                &month,
                "--format",
                "csv",
            ],
            &ENV,
        )
        .await);
    assert_eq!(
        table.lines().collect::<Vec<_>>(),
        [
            "currency,paid_gross,refunds,reversals,chargebacks,commission,net_due,in_registries,paid_out,withheld,arrived_at_bank,in_transit,unexplained",
            "KZT,4200,100,0,0,87,4013,4385.5,3997.5,0,3997.5,0,5000.00",
        ]
    );
    let lines = ok(&app
        .run_with(
            &[
                "report",
                "--settlement",
                "--month",
                &month,
                "--lines",
                "--format",
                "csv",
            ],
            &ENV,
        )
        .await);
    assert!(
        lines.contains(&format!(
            "payout,KZT:PO-2:{today},{today},KZT,payout_many_credits,1072.5,\"bank lines 2, 3\","
        )),
        "{lines}"
    );
    assert!(
        lines.contains(&format!(
            "bank_credit,5,{today},KZT,not matched,5000.00,,bank_credit_unexplained"
        )),
        "{lines}"
    );
    assert!(
        lines.contains(",registry_line,999,") || lines.contains("registry_line,999,"),
        "{lines}"
    );

    // The same files again, and the matcher again: nothing changes.
    let before = (
        app.count("select count(*) from recon.settlement_matches")
            .await,
        app.count("select count(*) from recon.settlement_flags")
            .await,
        app.count("select count(*) from recon.discrepancies").await,
        app.count("select count(*) from recon.money_events").await,
    );
    ok(&app
        .run_with(
            &["import", "--registry", path(&reg), "--map", path(&map)],
            &ENV,
        )
        .await);
    ok(&app.run_with(&["import", "--bank", path(&bank)], &ENV).await);
    let again = ok(&app.run_with(&["match"], &ENV).await);
    assert!(
        again.contains("Matched 0 registry lines to their payments (0 money events booked from them) and 0 payouts to bank credits; 0 flags opened, 0 cleared"),
        "{again}"
    );
    let after = (
        app.count("select count(*) from recon.settlement_matches")
            .await,
        app.count("select count(*) from recon.settlement_flags")
            .await,
        app.count("select count(*) from recon.discrepancies").await,
        app.count("select count(*) from recon.money_events").await,
    );
    assert_eq!(before, after);

    // 999 is tracked and paid after all: its line is matched and its flag clears.
    app.insert_ids(&["999"]).await;
    app.sweep().await;
    let later = ok(&app.run_with(&["match"], &ENV).await);
    assert!(
        later.contains("Matched 1 registry lines") && later.contains("0 flags opened, 1 cleared"),
        "{later}"
    );
    assert_eq!(
        app.count(
            "select count(*) from recon.open_settlement_flags where kind = 'registry_unknown'"
        )
        .await,
        0
    );

    // A closed settlement flag is a person's: by hand, with a note, once.
    let id: i64 = sqlx::query_scalar(
        "select id from recon.open_settlement_flags where kind = 'bank_credit_unexplained'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let closed = ok(&app
        .run_with(
            &[
                "match",
                "--resolve",
                &id.to_string(),
                "--note",
                "a loan repayment",
                "--by",
                "aigerim",
            ],
            &ENV,
        )
        .await);
    assert!(
        closed.contains(&format!("flag {id} closed by aigerim")),
        "{closed}"
    );
    let twice = refused(
        &app.run_with(
            &[
                "match",
                "--resolve",
                &id.to_string(),
                "--note",
                "again",
                "--by",
                "aigerim",
            ],
            &ENV,
        )
        .await,
    );
    assert!(twice.contains("is not an open flag"), "{twice}");
    ok(&app.run_with(&["match"], &ENV).await);
    assert_eq!(
        app.count(
            "select count(*) from recon.settlement_flags where kind = 'bank_credit_unexplained'"
        )
        .await,
        1,
        "a flag a person closed does not open again about the same"
    );
    // History: a match is never rewritten.
    let err = sqlx::query("update recon.settlement_matches set rule = 'exact'")
        .execute(app.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("history"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undone_match_is_never_made_again_and_what_was_matched_after_it_is_matched_again() {
    let app = TestApp::with(Scenario::new(), &ENV).await;
    let today = Utc::now().date_naive();
    let reg = file(
        ".csv",
        &registry(&[
            ("A1", "", "PAYMENT", "100", "0", "PO-A", today),
            ("B1", "", "PAYMENT", "100", "0", "PO-B", today),
        ]),
    );
    let map = file(".toml", MAP);
    ok(&app
        .run_with(
            &["import", "--registry", path(&reg), "--map", path(&map)],
            &ENV,
        )
        .await);
    let bank = file(
        ".txt",
        &statement(
            today,
            today + Duration::days(1),
            &[
                ("c1", today, "100.00", PROVIDER_IIK),
                ("c2", today + Duration::days(1), "100.00", PROVIDER_IIK),
            ],
        ),
    );
    ok(&app.run_with(&["import", "--bank", path(&bank)], &ENV).await);
    let a = format!("KZT:PO-A:{today}");
    let b = format!("KZT:PO-B:{today}");
    assert_eq!(
        bank_matches(&app).await,
        [
            ("exact".into(), vec![a.clone()], vec!["c1".into()], true),
            ("exact".into(), vec![b.clone()], vec!["c2".into()], true),
        ]
    );
    let first: i64 =
        sqlx::query_scalar("select min(id) from recon.settlement_matches where side = 'bank'")
            .fetch_one(app.pool())
            .await
            .unwrap();

    let no_note = app
        .run_with(&["match", "--undo", &first.to_string()], &ENV)
        .await;
    assert!(!no_note.status.success());
    assert!(crate::helpers::stderr(&no_note).contains("--note"));
    let undone = ok(&app
        .run_with(
            &[
                "match",
                "--undo",
                &first.to_string(),
                "--note",
                "c1 was PO-B's: the bank's reference says so",
                "--by",
                "aigerim",
            ],
            &ENV,
        )
        .await);
    assert!(
        undone.contains(&format!(
            "match {first} undone by aigerim, with 1 made after it"
        )) && undone.contains("and 2 payouts to bank credits"),
        "{undone}"
    );
    assert_eq!(
        bank_matches(&app).await,
        [
            ("exact".into(), vec![a.clone()], vec!["c1".into()], false),
            ("exact".into(), vec![b.clone()], vec!["c2".into()], false),
            ("exact".into(), vec![a.clone()], vec!["c2".into()], true),
            ("exact".into(), vec![b.clone()], vec!["c1".into()], true),
        ]
    );
    let why: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "select undone_by, undo_note, undone_with from recon.settlement_matches
         where undone_at is not null order by id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        why,
        [
            (
                "aigerim".into(),
                "c1 was PO-B's: the bank's reference says so".into(),
                None
            ),
            (
                "daemon".into(),
                format!("matched again after match {first} was undone"),
                Some(first)
            ),
        ]
    );
    let listed = ok(&app.run_with(&["match", "--list"], &ENV).await);
    assert!(
        listed.contains("[undone ") && listed.contains("by aigerim: c1 was PO-B's"),
        "{listed}"
    );
    let again = refused(
        &app.run_with(
            &[
                "match",
                "--undo",
                &first.to_string(),
                "--note",
                "again",
                "--by",
                "aigerim",
            ],
            &ENV,
        )
        .await,
    );
    assert!(again.contains("was undone already, by aigerim"), "{again}");
}
