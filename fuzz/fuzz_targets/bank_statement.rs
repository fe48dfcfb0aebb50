//! Any file a bank might export as a 1C statement: read whole or refused by line, never a
//! panic, and every credit or debit read is a positive amount.
#![no_main]

use freedompay_recon::intake::statement::read_1c;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(statement) = read_1c(data) {
        for line in statement.lines {
            assert!(!line.amount.is_sign_negative());
        }
    }
});
