//! Every HTTP listener the daemon serves, and its limits: the connection handling they share
//! ([`listener`]: timeouts, slow bodies, the connection cap), health and metrics
//! ([`monitoring`]: `/healthz`, `/readyz`, `/metrics`) and the provider's Result-URL callbacks
//! ([`callbacks`]: verified with [`crate::callbacks`], stored, the payment woken). Handlers get
//! what they need, never a command's wiring; no room below this one serves HTTP.

pub mod callbacks;
pub mod console;
pub mod listener;
pub mod monitoring;
