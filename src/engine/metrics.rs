//! The engine's metric names, and what each one means. Counters and histograms are recorded
//! where things happen (the sweep); the `/metrics` listener ([`crate::http::monitoring`]) only
//! exports them, so the names live with the code that records them.

/// Polls by outcome: `answer`, `not_found`, `rejected`, `failed`, `rate_limited`, `fatal`.
pub const POLLS: &str = "freedompay_recon_polls_total";
/// Time from sending a request to having its body, successful or not.
pub const PROVIDER_LATENCY: &str = "freedompay_recon_provider_request_duration_seconds";
/// Time a request waited for the rate budget and any pause before it was sent.
pub const RATE_LIMIT_WAIT: &str = "freedompay_recon_rate_limit_wait_seconds";
/// 429/503 answers that paused every worker.
pub const RATE_LIMIT_PAUSES: &str = "freedompay_recon_rate_limit_pauses_total";
/// Claims taken over after the previous holder's lease ran out.
pub const LEASES_RECOVERED: &str = "freedompay_recon_lease_recoveries_total";
/// Wall time of one sweep.
pub const SWEEP_DURATION: &str = "freedompay_recon_sweep_duration_seconds";
/// Status transitions recorded.
pub const TRANSITIONS: &str = "freedompay_recon_transitions_total";
/// Flags raised and cleared by the daemon.
pub const FLAGS_OPENED: &str = "freedompay_recon_flags_opened_total";
pub const FLAGS_RESOLVED: &str = "freedompay_recon_flags_resolved_total";
/// Money events written by the daemon (payments received, refunds).
pub const MONEY_EVENTS: &str = "freedompay_recon_money_events_total";

/// From a Result-URL callback's arrival to the transition its payment's poll recorded, once
/// committed: see [`crate::domain::callback_lag`] for which transitions count.
pub const CALLBACK_TO_TRANSITION: &str = "freedompay_recon_callback_to_transition_seconds";

pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
pub const SWEEP_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
/// Milliseconds when the poll a callback asks for finds the outcome; up to
/// `poll.confirm_after` (30 min by default) when the Partner API lags behind the callback and
/// the confirmation look finds it; beyond, the ladder's later looks.
pub const CALLBACK_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0, 1800.0, 3600.0, 7200.0,
];

/// Gives every metric its help text (once the recorder is installed).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(POLLS, "Polls of the provider by outcome.");
    describe_histogram!(PROVIDER_LATENCY, Unit::Seconds, "Provider request latency.");
    describe_histogram!(
        RATE_LIMIT_WAIT,
        Unit::Seconds,
        "Time a request waited for the rate budget or a pause."
    );
    describe_counter!(
        RATE_LIMIT_PAUSES,
        "429/503 answers that paused every worker."
    );
    describe_counter!(
        LEASES_RECOVERED,
        "Claims taken over after their lease ran out."
    );
    describe_histogram!(SWEEP_DURATION, Unit::Seconds, "Duration of one sweep.");
    describe_counter!(TRANSITIONS, "Status transitions recorded.");
    describe_counter!(FLAGS_OPENED, "Flags raised by the daemon.");
    describe_counter!(FLAGS_RESOLVED, "Flags cleared by a later observation.");
    describe_counter!(
        MONEY_EVENTS,
        "Money events written: payments received, refunds and reversals (recon.money_events)."
    );
    describe_histogram!(
        CALLBACK_TO_TRANSITION,
        Unit::Seconds,
        "From a Result-URL callback's arrival to the observation of the transition it \
         announced, counted once the transition is committed."
    );
}
