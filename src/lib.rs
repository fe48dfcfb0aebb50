//! freedompay-recon: reconciles Freedom Pay payments against what the merchant expected.
//!
//! How data flows:
//!
//! ```text
//! intake (SQL insert, `enqueue`) ─► recon.payments
//!        │ claim (lease, SKIP LOCKED)                                  store
//!        ▼
//! sweep: pace (rate limit, Retry-After gate) ─► signed GET invoice/info  engine, provider
//!        │ observation (typed, raw body kept)
//!        ▼
//! decide (pure: transition, flags, next check) ─► one transaction       domain, store
//!        │                    (its triggers add recon.events: the outbox)
//!        ▼
//! recon.reconciliation / recon.open_discrepancies views for finance
//! recon.events ─► NOTIFY recon_events; POSTed, signed, to webhook.url   webhook
//! ```
//!
//! Modules:
//! - [`domain`]: ids, money, statuses, flags and [`domain::decide`], the pure rules. No I/O.
//! - [`provider`]: the Freedom Pay client: JWS signer, tolerant parser, error classification.
//! - [`store`]: every SQL statement: intake, claim, record, release, migrations.
//! - [`engine`]: one sweep (claim → pace → poll → decide → record) and the cron adapter.
//! - [`settings`], [`telemetry`]: configuration layers and logging.
//! - [`monitoring`]: the optional `/healthz`, `/readyz` and `/metrics` listener.
//! - [`capacity`]: the capacity planner: the policy and `decide` on a simulated day.
//! - [`simulator`]: a local stand-in for the provider, signature check included.
//! - [`commands`]: one function per command-line command.
//! - [`benchmark`]: the benchmark harness behind `freedompay-recon bench`.
//! - [`intake`]: the rules every intake path shares, and bulk intake from CSV (validate
//!   everything, then one transaction).
//! - [`reporting`]: finance reports (summary or detail; table, CSV or JSON), streamed.
//! - [`callbacks`]: the provider's Result-URL callbacks: verified, stored, and the payment
//!   polled at once (a hint; the poll decides).
//! - [`webhook`]: delivers the outbox's events (`recon.events`) to `webhook.url`, signed.
//! - [`archive`]: one closed month of history as a .tar.gz of CSV files with a manifest,
//!   written and read back.
//! - [`text`]: untrusted text cleaned for storage, escaped for terminals, neutralised for
//!   spreadsheets.

#![forbid(unsafe_code)]

pub mod archive;
pub mod benchmark;
pub mod callbacks;
pub mod capacity;
pub mod commands;
pub mod domain;
pub mod engine;
pub mod intake;
pub mod listener;
pub mod monitoring;
pub mod outbound;
pub mod provider;
pub mod reporting;
pub mod settings;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod webhook;
