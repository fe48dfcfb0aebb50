//! Any answer the Merchant status API might send, signed anew for what it says (the key is
//! known here, so the reader behind the signature is what gets fuzzed): read or refused,
//! never a panic, and the money it states is signed for the merchant.
#![no_main]

use chrono::FixedOffset;
use freedompay_recon::domain::money::MoneyKind;
use freedompay_recon::provider::merchant_status::{SCRIPT, answer_signature, read_answer};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("k3y".to_owned());
    let almaty = FixedOffset::east_opt(5 * 3600).unwrap();
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = read_answer(SCRIPT, data, &secret, almaty);
        return;
    };
    let Ok(sig) = answer_signature(SCRIPT, data, &secret) else {
        return;
    };
    let signed = match (text.find("<pg_sig>"), text.find("</pg_sig>")) {
        (Some(start), Some(end)) if start + 8 <= end => {
            format!("{}{sig}{}", &text[..start + 8], &text[end..])
        }
        _ => return,
    };
    if let Ok(answer) = read_answer(SCRIPT, signed.as_bytes(), &secret, almaty) {
        for fact in answer.money_facts(Some("KZT".parse().unwrap())) {
            if fact.kind == MoneyKind::Payment {
                assert!(fact.amount.is_sign_positive() || fact.amount.is_zero());
            } else {
                assert!(fact.amount.is_sign_negative() || fact.amount.is_zero());
            }
        }
    }
});
