use chrono::TimeZone as _;
use md5::{Digest as _, Md5};

use super::*;

fn secret() -> SecretString {
    SecretString::from("k3y".to_owned())
}

fn almaty() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600).unwrap()
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// MERCHANT_STATUS.md's example answer, signed as documented (its `pg_sig` is the MD5 of the
/// string the document gives).
const EXAMPLE: &str = r#"<response>
  <pg_status>ok</pg_status>
  <pg_payment_id>123456789</pg_payment_id>
  <pg_amount>5000</pg_amount>
  <pg_currency>KZT</pg_currency>
  <pg_payment_status>success</pg_payment_status>
  <pg_refund_payments>
    <pg_refund_payment>
      <pg_payment_id>123456790</pg_payment_id>
      <pg_payment_status>success</pg_payment_status>
      <pg_amount>-1500</pg_amount>
      <pg_payment_date>2025-07-12 10:00:00</pg_payment_date>
      <pg_reference>123456789012</pg_reference>
    </pg_refund_payment>
  </pg_refund_payments>
  <pg_refund_amount>-1500</pg_refund_amount>
  <pg_captured>1</pg_captured>
  <pg_salt>xyz</pg_salt>
  <pg_sig>bded753e2921990ae91060f5c16ee514</pg_sig>
</response>"#;

#[test]
fn the_documented_example_is_signed_as_the_document_says() {
    assert_eq!(
        md5_hex(
            "get_status3.php;5000;1;KZT;123456789;success;-1500;-1500;2025-07-12 10:00:00;\
             123456790;success;123456789012;xyz;ok;k3y"
        ),
        "bded753e2921990ae91060f5c16ee514"
    );
}

#[test]
fn requests_are_signed_as_the_documented_examples() {
    let by_payment = request_form(
        SCRIPT,
        "555555",
        &Lookup::PaymentId("123456789".into()),
        "abc",
        &secret(),
    );
    assert_eq!(
        by_payment.last().unwrap(),
        &("pg_sig", "56dba0676f58bb4c46c2bde341ca1e0e".to_owned())
    );
    let by_order = request_form(
        SCRIPT,
        "555555",
        &Lookup::OrderId("A-1".into()),
        "abc",
        &secret(),
    );
    assert_eq!(
        by_order,
        [
            ("pg_merchant_id", "555555".to_owned()),
            ("pg_order_id", "A-1".to_owned()),
            ("pg_salt", "abc".to_owned()),
            ("pg_sig", "1eec9256134a51a9709bd7caf3f7526f".to_owned()),
        ]
    );
}

#[test]
fn the_example_answer_verifies_and_reads_exactly() {
    let answer = read_answer(SCRIPT, EXAMPLE.as_bytes(), &secret(), almaty()).expect("verified");
    assert!(answer.ok);
    assert_eq!(answer.payment_id.as_deref(), Some("123456789"));
    assert_eq!(answer.amount, Some(Decimal::new(5000, 0)));
    assert_eq!(answer.currency.as_deref(), Some("KZT"));
    assert_eq!(answer.refund_amount, Some(Decimal::new(-1500, 0)));
    assert_eq!(answer.captured, Some(true));
    assert_eq!(answer.net_amount, None, "not in get_status3's answer");
    assert_eq!(
        answer.children,
        [Child {
            list: "pg_refund_payments".into(),
            payment_id: Some("123456790".into()),
            status: Some("success".into()),
            amount: Some(Decimal::new(-1500, 0)),
            date: Some(Utc.with_ymd_and_hms(2025, 7, 12, 5, 0, 0).unwrap()),
            reference: Some("123456789012".into()),
        }]
    );
}

#[test]
fn a_changed_answer_or_another_key_is_refused() {
    let changed = EXAMPLE.replace(
        "<pg_amount>-1500</pg_amount>",
        "<pg_amount>-150</pg_amount>",
    );
    assert_eq!(
        read_answer(SCRIPT, changed.as_bytes(), &secret(), almaty()),
        Err(AnswerError::BadSignature)
    );
    let other_key = SecretString::from("other".to_owned());
    assert_eq!(
        read_answer(SCRIPT, EXAMPLE.as_bytes(), &other_key, almaty()),
        Err(AnswerError::BadSignature)
    );
    let unsigned = EXAMPLE.replace("  <pg_sig>bded753e2921990ae91060f5c16ee514</pg_sig>\n", "");
    assert_eq!(
        read_answer(SCRIPT, unsigned.as_bytes(), &secret(), almaty()),
        Err(AnswerError::Unsigned)
    );
    let twice = EXAMPLE.replace(
        "<pg_salt>",
        "<pg_sig>bded753e2921990ae91060f5c16ee514</pg_sig><pg_salt>",
    );
    assert_eq!(
        read_answer(SCRIPT, twice.as_bytes(), &secret(), almaty()),
        Err(AnswerError::Unsigned)
    );
}

/// Two refunds: same-name siblings sign in document order, so swapping them breaks the
/// signature; the root may be named otherwise (`<root>`); an empty element is an empty value.
#[test]
fn same_name_siblings_sign_in_document_order() {
    let body = |first: (&str, &str), second: (&str, &str), sig: &str| {
        format!(
            "<root><pg_status>ok</pg_status><pg_amount>482.5</pg_amount><pg_failure_code/>\
             <pg_refund_payments>\
             <pg_refund_payment><pg_payment_id>{}</pg_payment_id><pg_amount>{}</pg_amount></pg_refund_payment>\
             <pg_refund_payment><pg_payment_id>{}</pg_payment_id><pg_amount>{}</pg_amount></pg_refund_payment>\
             </pg_refund_payments><pg_salt>s</pg_salt><pg_sig>{sig}</pg_sig></root>",
            first.0, first.1, second.0, second.1
        )
    };
    let sig = md5_hex("get_status3.php;482.5;;-100;11;-50.25;12;s;ok;k3y");
    let answer = read_answer(
        SCRIPT,
        body(("11", "-100"), ("12", "-50.25"), &sig).as_bytes(),
        &secret(),
        almaty(),
    )
    .expect("verified");
    assert_eq!(
        answer
            .children
            .iter()
            .map(|c| (c.payment_id.as_deref().unwrap(), c.amount.unwrap()))
            .collect::<Vec<_>>(),
        [
            ("11", Decimal::new(-100, 0)),
            ("12", Decimal::new(-5025, 2))
        ]
    );
    assert_eq!(
        read_answer(
            SCRIPT,
            body(("12", "-50.25"), ("11", "-100"), &sig).as_bytes(),
            &secret(),
            almaty()
        ),
        Err(AnswerError::BadSignature)
    );
}

/// Hostile answers are refused before anything is read: entities, depth, size, bytes.
#[test]
fn hostile_answers_are_refused_with_a_reason() {
    let entity = "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\">]><r><pg_status>&a;</pg_status></r>";
    assert!(matches!(
        read_answer(SCRIPT, entity.as_bytes(), &secret(), almaty()),
        Err(AnswerError::NotXml(_))
    ));
    let deep = format!("{}{}", "<a>".repeat(50), "</a>".repeat(50));
    assert_eq!(
        read_answer(SCRIPT, deep.as_bytes(), &secret(), almaty()),
        Err(AnswerError::TooDeep)
    );
    let large = format!("<r>{}</r>", "x".repeat(ANSWER_MAX_BYTES));
    assert_eq!(
        read_answer(SCRIPT, large.as_bytes(), &secret(), almaty()),
        Err(AnswerError::TooLarge)
    );
    assert!(matches!(
        read_answer(SCRIPT, b"<r>\xff</r>", &secret(), almaty()),
        Err(AnswerError::NotXml(_))
    ));
    assert!(matches!(
        read_answer(SCRIPT, b"{\"pg_status\": \"ok\"}", &secret(), almaty()),
        Err(AnswerError::NotXml(_))
    ));
}

/// A signed answer with an unreadable amount names the field; its text is never echoed raw.
#[test]
fn a_signed_answer_with_an_unreadable_field_names_it() {
    let sig = md5_hex("get_status3.php;1e999;s;ok;k3y");
    let answer = format!(
        "<response><pg_status>ok</pg_status><pg_amount>1e999</pg_amount>\
         <pg_salt>s</pg_salt><pg_sig>{sig}</pg_sig></response>"
    );
    let error = read_answer(SCRIPT, answer.as_bytes(), &secret(), almaty()).unwrap_err();
    assert!(
        matches!(&error, AnswerError::Field { field, .. } if field == "pg_amount"),
        "{error:?}"
    );
    let sig = md5_hex("get_status3.php;7;Unknown\u{202e}payment;error;s;error;k3y");
    let refused = format!(
        "<response><pg_status>error</pg_status><pg_error_code>7</pg_error_code>\
         <pg_error_description>Unknown\u{202e}payment</pg_error_description>\
         <pg_payment_status>error</pg_payment_status>\
         <pg_salt>s</pg_salt><pg_sig>{sig}</pg_sig></response>"
    );
    let answer = read_answer(SCRIPT, refused.as_bytes(), &secret(), almaty()).expect("verified");
    assert!(!answer.ok);
    let (code, description) = answer.error.unwrap();
    assert_eq!(code.as_deref(), Some("7"));
    assert!(
        !description.unwrap().contains('\u{202e}'),
        "a direction override never reaches a terminal"
    );
}

#[test]
fn the_example_answer_states_the_payment_and_its_refund_signed_for_the_merchant() {
    let answer = read_answer(SCRIPT, EXAMPLE.as_bytes(), &secret(), almaty()).expect("verified");
    let facts = answer.money_facts(None);
    let seen: Vec<_> = facts
        .iter()
        .map(|f| (f.kind, f.amount, f.key.as_str(), f.currency.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (MoneyKind::Payment, Decimal::new(5000, 0), "payment", "KZT"),
            (
                MoneyKind::Refund,
                Decimal::new(-1500, 0),
                "child:123456790",
                "KZT"
            ),
        ]
    );
    let refund = &facts[1];
    assert_eq!(refund.source, MoneySource::StatusApi);
    assert_eq!(
        refund.provider_at,
        Some(Utc.with_ymd_and_hms(2025, 7, 12, 5, 0, 0).unwrap()),
        "the provider's date, in its zone"
    );
}

#[test]
fn only_money_that_moved_is_a_fact() {
    let kzt: Currency = "KZT".parse().unwrap();
    let child = |list: &str, id: &str, status: &str, amount: i64| Child {
        list: list.into(),
        payment_id: Some(id.into()),
        status: Some(status.into()),
        amount: Some(Decimal::new(amount, 0)),
        date: None,
        reference: None,
    };
    let answer = StatusAnswer {
        ok: true,
        error: None,
        payment_id: Some("9".into()),
        order_id: None,
        amount: Some(Decimal::new(500, 0)),
        currency: None,
        payment_status: Some("refunded".into()),
        captured: Some(true),
        clearing_amount: None,
        refund_amount: None,
        revoke_amount: None,
        net_amount: Some(Decimal::new(4825, 1)),
        payment_date: None,
        children: vec![
            child("pg_refund_payments", "10", "success", -100),
            child("pg_refund_payments", "11", "error", -100),
            child("pg_revoked_payments", "12", "success", 50),
            child("pg_bonus_payments", "13", "success", -1),
        ],
    };
    let kinds = |answer: &StatusAnswer, fallback| {
        answer
            .money_facts(fallback)
            .into_iter()
            .map(|f| (f.kind, f.amount))
            .collect::<Vec<_>>()
    };
    // A refund that went through says the payment was received, whatever its status word;
    // a failed refund and an unknown list are not money; a positive reversal is negated.
    assert_eq!(
        kinds(&answer, Some(kzt)),
        [
            (MoneyKind::Payment, Decimal::new(500, 0)),
            (MoneyKind::Refund, Decimal::new(-100, 0)),
            (MoneyKind::Reversal, Decimal::new(-50, 0)),
            (MoneyKind::Commission, Decimal::new(-175, 1)),
        ]
    );
    // No currency anywhere: nothing can be booked.
    assert!(kinds(&answer, None).is_empty());
    // A hold not captured moved nothing; an error answer states nothing.
    let hold = StatusAnswer {
        captured: Some(false),
        ..answer.clone()
    };
    assert!(kinds(&hold, Some(kzt)).is_empty());
    let error = StatusAnswer {
        ok: false,
        ..answer
    };
    assert!(kinds(&error, Some(kzt)).is_empty());
}

/// `doc` with its `pg_sig` made anew for what it now says (the key known), so that a mangled
/// answer gets past the signature to the reader; `None` when it no longer parses or has no
/// `pg_sig` element.
fn resigned(doc: &str) -> Option<String> {
    let sig = answer_signature(SCRIPT, doc.as_bytes(), &secret()).ok()?;
    let start = doc.find("<pg_sig>")? + "<pg_sig>".len();
    let end = start + doc[start..].find("</pg_sig>")?;
    Some(format!("{}{sig}{}", &doc[..start], &doc[end..]))
}

/// The in-`cargo test` share of fuzzing the reader (the `status_answer` fuzz target runs
/// longer): thousands of mangled versions of the example, each signed anew, are read or
/// refused, never a panic, and whatever reads states money signed for the merchant.
#[test]
fn mangled_signed_answers_are_read_or_refused_and_money_keeps_its_sign() {
    let mut state: u64 = 0x5eed_2026;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    const PIECES: [&str; 14] = [
        "<",
        ">",
        "/",
        "-",
        "0",
        "9",
        ".",
        ",",
        " ",
        "&amp;",
        "x",
        "\u{0}",
        "é",
        "<pg_refund_payment><pg_amount>7</pg_amount></pg_refund_payment>",
    ];
    let (mut read, mut refused) = (0, 0);
    for _ in 0..3000 {
        let mut doc: Vec<char> = EXAMPLE.chars().collect();
        for _ in 0..1 + next(3) {
            let at = next(doc.len());
            match next(3) {
                0 => {
                    doc.remove(at);
                }
                1 => {
                    let piece = PIECES[next(PIECES.len())];
                    doc.splice(at..at, piece.chars());
                }
                _ => doc[at] = PIECES[next(12)].chars().next().unwrap(),
            }
        }
        let doc: String = doc.into_iter().collect();
        let Some(signed) = resigned(&doc) else {
            refused += 1;
            continue;
        };
        match read_answer(SCRIPT, signed.as_bytes(), &secret(), almaty()) {
            Ok(answer) => {
                read += 1;
                for fact in answer.money_facts(Some("KZT".parse().unwrap())) {
                    if fact.kind == MoneyKind::Payment {
                        assert!(fact.amount >= Decimal::ZERO, "{signed}");
                    } else {
                        assert!(fact.amount <= Decimal::ZERO, "{signed}");
                    }
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert!(read > 100, "some mangled answers still read ({read})");
    assert!(refused > 300, "some are refused ({refused})");
}
