//! Any bytes the provider might send: the parser answers or refuses, and never panics.
#![no_main]

use chrono::FixedOffset;
use freedompay_recon::provider::{Body, parse_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let almaty = FixedOffset::east_opt(5 * 3600).unwrap();
    if let Ok(Body::Invoice(invoice)) = parse_body(data, almaty) {
        // What parsed must be usable: amounts print exactly, statuses round-trip.
        let _ = invoice.amount.map(|a| a.to_string());
        assert_eq!(
            freedompay_recon::domain::ProviderStatus::parse(invoice.status.as_str()),
            invoice.status
        );
    }
});
