//! Integration tests: a real PostgreSQL (a fresh database per test) and the provider
//! simulator on loopback, speaking the real protocol with signatures.

mod bench;
mod cli;
mod daemon;
mod demo;
mod faults;
mod finance;
mod flags;
mod helpers;
mod instances;
mod leases;
mod observe;
mod pacing;
mod provider_faults;
mod statuses;
mod systemd;
