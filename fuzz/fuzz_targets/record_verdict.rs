//! Any answer the provider might send, through the verdict-writing path into PostgreSQL: the
//! fuzzed answer either lands or is recorded as a failed poll, and the good verdict written
//! in the same batch always lands.
//!
//! Needs a PostgreSQL server the fuzzer may create a database on:
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo +nightly fuzz run record_verdict`
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use chrono::FixedOffset;
use freedompay_recon::domain::{Jitter, Policy, PollResult, decide};
use freedompay_recon::provider::{Classified, Limits, ResponseHead, classify};
use freedompay_recon::store::{self, Recorded};
use libfuzzer_sys::fuzz_target;
use sqlx::PgPool;

struct Harness {
    runtime: tokio::runtime::Runtime,
    pool: PgPool,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL: a PostgreSQL server the fuzzer may create a database on");
        let pool = runtime.block_on(async {
            let admin = PgPool::connect(&server).await.expect("DATABASE_URL connects");
            // Databases of earlier runs (libFuzzer exits without cleaning up) go first.
            let stale: Vec<String> = sqlx::query_scalar(
                "select datname from pg_database where datname like 'fpr\\_fuzz\\_%'",
            )
            .fetch_all(&admin)
            .await
            .unwrap();
            for name in stale {
                let pid = name.trim_start_matches("fpr_fuzz_");
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let drop = format!("drop database if exists {name} with (force)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await;
                }
            }
            let name = format!("fpr_fuzz_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
                .execute(&admin)
                .await
                .unwrap();
            let options: sqlx::postgres::PgConnectOptions = server.parse().unwrap();
            let pool = PgPool::connect_with(options.database(&name)).await.unwrap();
            store::migrate(&pool).await.unwrap();
            pool
        });
        Harness { runtime, pool }
    })
}

fuzz_target!(|data: &[u8]| {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let h = harness();
    h.runtime.block_on(async {
        let (fuzzed, good) = (format!("fuzz-{n}"), format!("good-{n}"));
        sqlx::query("insert into recon.payments (payment_id) values ($1), ($2)")
            .bind(&fuzzed)
            .bind(&good)
            .execute(&h.pool)
            .await
            .unwrap();
        let claims = store::claim_due(&h.pool, "fuzz", 2, Duration::from_secs(60), None, Duration::ZERO)
            .await
            .unwrap()
            .claims;
        let mut ids: Vec<&str> = claims.iter().map(|c| c.tracked.payment_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, [fuzzed.as_str(), good.as_str()], "exactly this iteration's pair");
        let limits = Limits {
            naive_offset: FixedOffset::east_opt(5 * 3600).unwrap(),
            default_retry_after: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(300),
        };
        let policy = Policy::default();
        let good_body = br#"{"paymentStatus":"process","amount":"10.00","currency":"KZT"}"#;
        let batch: Vec<Recorded> = claims
            .into_iter()
            .map(|claim| {
                let body: &[u8] = if claim.tracked.payment_id.as_str() == fuzzed {
                    data
                } else {
                    good_body
                };
                let head = ResponseHead {
                    status: 200,
                    ..ResponseHead::default()
                };
                // As the engine does: an answer is the payment's; anything else a failed poll.
                let result = match classify(head, Ok(body), SystemTime::now(), &limits) {
                    Classified::Answer(result) => result,
                    Classified::CredentialsDoubt { code, description } => {
                        PollResult::Rejected { code, description }
                    }
                    other => PollResult::Failed {
                        reason: format!("{other:?}").chars().take(200).collect(),
                    },
                };
                let verdict = decide(&claim.tracked, &result, claim.claimed_at, &policy, Jitter::NONE);
                let invoice = match result {
                    PollResult::Invoice(invoice) => Some(*invoice),
                    _ => None,
                };
                let text = String::from_utf8(body.to_vec()).ok();
                Recorded {
                    payment_id: claim.tracked.payment_id.clone(),
                    lease_token: claim.lease_token,
                    before: claim.tracked,
                    verdict,
                    raw_body: text.clone().filter(|_| invoice.is_some()),
                    error_body: text.filter(|_| invoice.is_none()),
                    invoice,
                    request_id: None,
                }
            })
            .collect();
        let written = store::record_isolated(&h.pool, batch, |item, reason| {
            item.as_failed_poll(reason, &policy, Jitter::NONE)
        })
        .await
        .unwrap_or_else(|e| panic!("the database stopped: {}", e.error));
        assert_eq!(written.done.len(), 2, "both verdicts are settled");

        let (status, leased): (Option<String>, bool) = sqlx::query_as(
            "select status, lease_token is not null from recon.payments where payment_id = $1",
        )
        .bind(&good)
        .fetch_one(&h.pool)
        .await
        .unwrap();
        assert_eq!((status.as_deref(), leased), (Some("process"), false), "the good one landed");
        let recorded: bool = sqlx::query_scalar(
            "select lease_token is null and (checks = 1 or attempts = 1) from recon.payments
             where payment_id = $1",
        )
        .bind(&fuzzed)
        .fetch_one(&h.pool)
        .await
        .unwrap();
        assert!(recorded, "the fuzzed answer landed or was recorded as a failed poll");
        // Done with this pair: neither falls due again in a later iteration.
        sqlx::query("update recon.payments set next_check_at = null where payment_id in ($1, $2)")
            .bind(&fuzzed)
            .bind(&good)
            .execute(&h.pool)
            .await
            .unwrap();
    });
});
