//! Integration tests: a real PostgreSQL (a fresh database per test) and the provider
//! simulator on loopback, speaking the real protocol with signatures.

mod archive;
mod attacks;
mod bench;
mod boundaries;
mod callbacks;
mod cli;
mod config_file;
mod daemon;
mod demo;
mod digest;
mod events;
mod exceptions;
mod faults;
mod finance;
mod flags;
mod helpers;
mod instances;
mod intake;
mod leases;
mod listener;
mod monitoring;
mod output;
mod pacing;
mod partitions;
mod privilege;
mod provider_faults;
mod readme;
mod replica;
mod report_ranges;
mod rollup;
mod schedule;
mod signoff;
mod statuses;
mod systemd;
mod webhook;
