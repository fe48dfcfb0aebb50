//! Any file a person might import: every row is accepted or named, and nothing panics.
#![no_main]

use chrono::FixedOffset;
use freedompay_recon::intake::check_csv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let almaty = FixedOffset::east_opt(5 * 3600).unwrap();
    if let Ok((rows, errors)) = check_csv(data, almaty) {
        assert!(errors.shown.iter().all(|e| e.line >= 2 && e.line <= rows + 1 + data.len() as u64));
    }
});
