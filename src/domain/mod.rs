//! The pure core: the types the daemon reasons about and [`decide`], the one function that
//! turns "what we knew" plus "what the provider just said" into a verdict.
//!
//! Nothing here performs I/O or reads a clock: time, randomness and settings are inputs.

pub mod bank;
mod decide;
pub mod money;
pub mod rules;
pub mod settlement;
mod sweeps;
mod types;

pub use decide::{
    CallbackArrival, Jitter, Policy, PollResult, Verdict, callback_flags, callback_lag, decide,
};
pub use sweeps::{CLAIM_AHEAD_MAX, Sweeps};
pub use types::{
    AutoClose, CallbackClaim, ClosedFlag, Currency, DecimalMark, ExpectedValues, Expiry, FlagClass,
    FlagKind, InvalidInput, Invoice, Lifetime, LifetimeSource, NewFlag, ORDER_ID_MAX_LEN,
    PaymentId, ProviderStatus, Resolver, StatusChange, Tracked, optional_text, parse_amount,
    parse_amount_with,
};
