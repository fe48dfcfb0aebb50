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
//! Rooms, in floors: each uses only the rooms above it in this list (checked by
//! [`structure`], which holds the same order).
//! - [`domain`]: ids, money, statuses, flags and [`domain::decide`], the pure rules. No I/O.
//! - [`text`]: untrusted text cleaned for storage, escaped for terminals, neutralised for
//!   spreadsheets.
//! - [`outbound`]: the one shape of an outbound HTTP client: no redirects, bounded reads.
//! - [`settings`], [`telemetry`]: configuration layers (and the listeners' limits) and logging.
//! - [`callbacks`]: a Result-URL callback, the pure part: its fields as received, `pg_sig`,
//!   which fields it may carry and what it claims.
//! - [`capacity`]: the capacity planner: the policy and `decide` on a simulated day.
//! - [`provider`]: the Freedom Pay client: JWS signer, tolerant parser, error classification.
//! - [`store`]: every SQL statement: intake, claim, record, release, reports, migrations.
//! - [`intake`]: the rules every intake path shares, and bulk intake from CSV or a workbook
//!   (validate everything, then one transaction).
//! - [`reporting`]: finance reports (summary, detail, flags, resolutions, adjustments; table,
//!   CSV, JSON or xlsx), streamed.
//! - [`archive`]: one closed month of history as a .tar.gz of CSV files with a manifest,
//!   written and read back.
//! - [`webhook`]: delivers the outbox's events (`recon.events`) to `webhook.url`, signed.
//! - [`maintenance`]: partitions ahead, event retention and the rollup's zone, after sweeps,
//!   at most hourly per instance.
//! - [`engine`]: one sweep (claim → pace → poll → decide → record) and the cron adapter.
//! - [`http`]: every listener: connection limits, `/healthz`, `/readyz`, `/metrics` and the
//!   Result-URL callbacks endpoint (verified, stored, the payment polled at once: a hint; the
//!   poll decides).
//! - [`startup`]: one wiring of pool, engine, listeners, deliverer and supervisor, shared by
//!   `run`, `demo` and the tests.
//! - [`simulator`]: a local stand-in for the provider, signature check included.
//! - [`benchmark`]: the benchmark harness behind `freedompay-recon bench`.
//! - [`commands`]: one function per command-line command.

#![forbid(unsafe_code)]

pub mod archive;
pub mod benchmark;
pub mod callbacks;
pub mod capacity;
pub mod commands;
pub mod domain;
pub mod engine;
pub mod http;
pub mod intake;
pub mod maintenance;
pub mod outbound;
pub mod provider;
pub mod reporting;
pub mod settings;
pub mod simulator;
pub mod startup;
pub mod store;
pub mod structure;
pub mod telemetry;
pub mod text;
pub mod webhook;
