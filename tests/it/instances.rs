//! Several daemons on one database: safe (no payment polled twice within a lease), within
//! the deployment's rate budget, and sharing the work.

use std::time::Duration;

use freedompay_recon::simulator::{Reply, Scenario};

use crate::helpers::TestApp;

/// Every reservation of the shared budget, as the database keeps it: the row's next free slot
/// before and after, and when (a test-only trigger on `recon.rate_budget`).
const NOTE_RESERVATIONS: &str = "
    create table public.reservations (
        id bigint generated always as identity,
        old_next timestamptz not null,
        new_next timestamptz not null,
        at timestamptz not null default clock_timestamp());
    create function public.note_reservation() returns trigger language plpgsql as $$
    begin
        insert into public.reservations (old_next, new_next) values (old.next_slot, new.next_slot);
        return null;
    end $$;
    create trigger note_reservation after update on recon.rate_budget
        for each row execute function public.note_reservation();";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_rate_budget_and_the_work() {
    const RATE: i64 = 40;
    let app = TestApp::new(Scenario::new().prefix(
        "mi-",
        [Reply::invoice("success", "10", "KZT").delayed(Duration::from_millis(5))],
    ))
    .await;
    sqlx::raw_sql(NOTE_RESERVATIONS)
        .execute(app.pool())
        .await
        .unwrap();

    let rate = RATE.to_string();
    let env = [
        ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", rate.as_str()),
        ("FREEDOMPAY_RECON__POLL__BURST", "1"),
        ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "4"),
        ("FREEDOMPAY_RECON__POLL__CONFIRM_AFTER", "1h"),
        // Errors, and the line each daemon writes once its schedule runs.
        ("RUST_LOG", "error,freedompay_recon::engine::daemon=info"),
    ];
    let daemons: Vec<_> = (0..3).map(|_| app.spawn_daemon(&env)).collect();
    // The payments come once all three daemons run (on a loaded machine one may take
    // seconds to start, and the work would be done before it could share it).
    for daemon in &daemons {
        assert!(
            daemon
                .wait_for_stderr("daemon started", Duration::from_secs(60))
                .await,
            "{}",
            daemon.stderr()
        );
    }
    sqlx::query(
        "insert into recon.payments (payment_id) select 'mi-' || g from generate_series(1, 240) g",
    )
    .execute(app.pool())
    .await
    .unwrap();

    let done = app
        .wait_for(
            "select count(*) from recon.payments where status = 'success'",
            240,
            Duration::from_secs(60),
        )
        .await;
    for daemon in &daemons {
        daemon.signal("TERM");
    }
    for daemon in daemons {
        let (code, log) = daemon.wait(Duration::from_secs(60)).await;
        assert_eq!(code, Some(0), "{log}");
    }
    assert_eq!(done, 240, "every payment was reconciled");

    let calls = app.sim.calls();
    assert!(
        calls.values().all(|&n| n == 1),
        "a payment was polled twice"
    );
    assert_eq!(app.sim.requests().len(), 240);

    // The budget where it is kept: every request slot the three reserved, one reservation
    // at a time on one row. A reservation of k slots moves the next free slot from
    // max(before, now) to k periods later; its slots are the k instants a period apart
    // before where it ends. All of them a period apart or more: never more than RATE in a
    // second, whichever instance took them.
    let period_us = 1_000_000 / RATE;
    let slots: Vec<i64> = sqlx::query_scalar(
        "with r as (
             select id, new_next,
                    round(extract(epoch from new_next - greatest(old_next, at)) * 1e6 / $1)::int8
                        as k
             from public.reservations)
         select (extract(epoch from new_next) * 1e6)::int8 - g * $1
         from r, generate_series(1, r.k) g
         order by 1",
    )
    .bind(period_us)
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert!(slots.len() >= 240, "{} slots for 240 requests", slots.len());
    let closest = slots.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(
        closest >= period_us - 1,
        "two slots {closest} µs apart (a period is {period_us} µs)"
    );
    let reservations = app.count("select count(*) from public.reservations").await;
    assert!(reservations >= 3, "{reservations} reservations");

    let per_instance: Vec<(String, i64)> = sqlx::query_as(
        "select last_checked_by, count(*) from recon.payments group by 1 order by 2 desc",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        per_instance.len(),
        3,
        "all three instances worked: {per_instance:?}"
    );
    assert!(
        per_instance.iter().all(|(_, n)| *n >= 20),
        "the work spreads: {per_instance:?}"
    );
    assert_eq!(
        app.count("select count(*) from recon.status_transitions")
            .await,
        240,
        "one transition per payment, none doubled"
    );
}
