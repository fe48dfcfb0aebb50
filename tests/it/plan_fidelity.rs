//! `plan` says what the daemon does (issue 23, item 3): the real daemon, run against the
//! simulator telling the very stories `plan` models (the same payments, created at the same
//! instants relative to the sweeps, with the same fates and callbacks), in compressed time,
//! makes the requests per payment `plan` predicts for the same policy and mix, within 5 %,
//! with callbacks and without.
//!
//! Compressed time: the default policy's shape in seconds where it has minutes and hours
//! (first poll 2 s, rechecks 1 s to 60 s, lifetimes of 20 s, a last look 6 s after the
//! deadline), and the default mix's shares (70 % paid, 5 % failed, 25 % abandoned) with
//! payments paid in seconds. Sweeps run every second, as `plan` models them.

use std::time::Duration;

use freedompay_recon::capacity::{self, Mix, PlanInput, Story};
use freedompay_recon::domain::Sweeps;
use freedompay_recon::settings::Settings;
use freedompay_recon::simulator::{CallbackPlan, Scenario};
use secrecy::SecretString;

use crate::callbacks::{MERCHANT_KEY, free_port};
use crate::helpers::{Spawned, TestApp};

/// Payments per run, created evenly over [`CREATED_OVER`].
const PAYMENTS: u64 = 200;
const CREATED_OVER: Duration = Duration::from_secs(10);

/// The compressed policy, as the daemon's settings (environment) say it.
fn policy_env(callbacks: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = [
        ("FREEDOMPAY_RECON__POLL__SCHEDULE", "* * * * * *"),
        ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", "0"),
        ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "64"),
        ("FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER", "2s"),
        ("FREEDOMPAY_RECON__POLL__RECHECK", "1s,2s,4s,10s,60s"),
        (
            "FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER_WITH_CALLBACKS",
            "10s",
        ),
        ("FREEDOMPAY_RECON__POLL__RECHECK_WITH_CALLBACKS", "30s,60s"),
        ("FREEDOMPAY_RECON__POLL__CONFIRM_AFTER", "6s"),
        ("FREEDOMPAY_RECON__POLL__LIFETIME_GRACE", "2s"),
        ("FREEDOMPAY_RECON__POLL__NOT_FOUND_GRACE", "3s"),
        ("FREEDOMPAY_RECON__POLL__LAST_LOOK_AFTER", "6s"),
        ("FREEDOMPAY_RECON__POLL__MAX_AGE", "90s"),
        ("FREEDOMPAY_RECON__POLL__RETRY_MIN", "1s"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    if let Some(listen) = callbacks {
        env.push(("FREEDOMPAY_RECON__CALLBACKS__LISTEN", listen.to_owned()));
        env.push((
            "FREEDOMPAY_RECON__MERCHANT__SECRET",
            MERCHANT_KEY.to_owned(),
        ));
    }
    env
}

/// The default mix's shares, in seconds: paid in about 3 s, invisible for 1 s, 20 s
/// lifetimes, callbacks 200 ms after the outcome; with callbacks, an API that shows an
/// outcome 1 s after it happens (so some callbacks meet "not found" or `process`).
fn mix() -> Mix {
    Mix {
        pay_median: Duration::from_secs(3),
        pay_sigma: 0.7,
        lifetime: Duration::from_secs(20),
        visible_after: Duration::from_secs(1),
        callback_delay: Duration::from_millis(200),
        api_lag: Duration::from_secs(1),
        ..Mix::default()
    }
}

/// Where the simulator sends told stories' callbacks: the daemon's `callbacks.listen`.
fn callbacks_to(listen: &str, delay: Duration) -> CallbackPlan {
    CallbackPlan {
        url: format!("http://{listen}/freedompay/result")
            .parse()
            .unwrap(),
        secret: SecretString::from(MERCHANT_KEY),
        loss: 0.0,
        duplicates: 0,
        delay,
        settle_after: Duration::ZERO,
    }
}

/// Tells the simulator `id`'s story and tracks the payment, created at `created`, for
/// 100.00 KZT (what the simulator answers).
async fn track_told(app: &TestApp, id: &str, created: chrono::DateTime<chrono::Utc>, story: Story) {
    app.sim.tell(id, created, story);
    sqlx::query(
        "insert into recon.payments (payment_id, expected_amount, expected_currency, created_at)
         values ($1, 100.00, 'KZT', $2)",
    )
    .bind(id)
    .bind(created)
    .execute(app.pool())
    .await
    .unwrap();
}

/// What the daemon did with a day's stories.
struct Ran {
    requests_per_payment: f64,
    /// Callbacks it recorded.
    callbacks: i64,
}

/// The daemon's run on the stories of the compressed day, and `plan`'s of the same.
async fn run_against_plan(callbacks: bool) -> (Ran, capacity::Plan, PlanInput) {
    let app = TestApp::new(Scenario::new()).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let env = policy_env(callbacks.then_some(listen.as_str()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // The plan of the same policy, loaded as the daemon loads it.
    let mut vars: std::collections::HashMap<String, String> = app
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let settings = Settings::load_from(None, vars).expect("the compressed policy is valid");
    let input = PlanInput {
        payments_per_day: PAYMENTS,
        rate_per_second: 0,
        policy: settings.policy_for(callbacks),
        mix: mix(),
        sweeps: Sweeps::parse("* * * * * *").unwrap(),
        claim_ahead: settings.poll.claim_ahead(),
        callbacks,
        created_over: CREATED_OVER,
    };
    let plan = capacity::run(&input);

    app.sim.tell_stories(
        input.mix.clone(),
        callbacks.then(|| callbacks_to(&listen, input.mix.callback_delay)),
    );
    let daemon: Spawned = app.spawn_daemon(&env_refs);
    app.wait_for_daemon_connection().await;
    // The day starts on a whole second, as `plan`'s does: the sweeps meet the payments at
    // the same phases in both.
    let now = chrono::Utc::now();
    let start = chrono::DateTime::from_timestamp(now.timestamp() + 2, 0).unwrap();
    let stories: Vec<Story> = capacity::stories(&input);
    for (k, story) in stories.iter().enumerate() {
        let created = start + chrono::TimeDelta::from_std(story.created).unwrap();
        let wait = (created - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        track_told(&app, &format!("story-{k:04}"), created, *story).await;
    }
    // Every story told to its end: no payment is due any more.
    let left = app
        .wait_for(
            "select count(*) from recon.payments where next_check_at is not null",
            0,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(
        left,
        0,
        "every payment reached its end: {}",
        daemon.stderr()
    );
    let ran = Ran {
        requests_per_payment: app.sim.total_calls() as f64 / PAYMENTS as f64,
        callbacks: app.count("select count(*) from recon.callbacks").await,
    };
    (ran, plan, input)
}

fn within_five_percent(what: &str, daemon: f64, plan: &capacity::Plan, input: &PlanInput) {
    let planned = plan.requests_per_payment();
    println!(
        "{what}: the daemon made {daemon:.3} requests per payment, plan says {planned:.3} ({:+.1} %)",
        (daemon / planned - 1.0) * 100.0
    );
    assert!(
        (daemon - planned).abs() <= 0.05 * planned,
        "{what}: the daemon made {daemon:.3} requests per payment, plan says {planned:.3}\n{}",
        capacity::render(plan, input)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_makes_the_requests_plan_predicts_with_callbacks_and_without() {
    let (without, plan, input) = run_against_plan(false).await;
    assert_eq!(without.callbacks, 0);
    within_five_percent("polling only", without.requests_per_payment, &plan, &input);
    let (with, plan, input) = run_against_plan(true).await;
    assert_eq!(
        with.callbacks as u64, plan.called_back,
        "every callback the plan counts reached the daemon"
    );
    assert!(
        plan.called_back > 130,
        "95 % of 150 paid and failed payments"
    );
    within_five_percent("with callbacks", with.requests_per_payment, &plan, &input);
}

/// Issue 23, item 3: a callback that arrives while the API still says "not found" (it knows
/// the payment only 8 s after its creation here) is followed by looks seconds apart, so the
/// payment is seen paid within a minute of the API knowing it, not when `not_found_grace`
/// (10 min by default) ends. Everything else is the daemon's default schedule with callbacks:
/// only the callback brings a poll this soon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_meets_an_api_still_saying_not_found_is_seen_within_a_minute_of_it_knowing()
{
    let app = TestApp::new(Scenario::new()).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mix = Mix {
        visible_after: Duration::from_secs(8),
        api_lag: Duration::from_secs(8),
        callback_delay: Duration::from_millis(500),
        ..Mix::default()
    };
    app.sim
        .tell_stories(mix, Some(callbacks_to(&listen, Duration::from_millis(500))));
    let daemon = app.spawn_daemon(&[
        ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", listen.as_str()),
        ("FREEDOMPAY_RECON__MERCHANT__SECRET", MERCHANT_KEY),
        (
            "FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER_WITH_CALLBACKS",
            "10m",
        ),
    ]);
    app.wait_for_daemon_connection().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Paid 500 ms after its creation, called back 500 ms later; the API knows it at 8.5 s.
    let created = chrono::Utc::now();
    let story = Story {
        created: Duration::ZERO,
        fate: capacity::Fate::Paid(Duration::from_millis(500)),
        called_back: true,
    };
    track_told(&app, "lagging-1", created, story).await;
    let paid = app
        .wait_for(
            "select count(*) from recon.payments where payment_id = 'lagging-1' and status = 'success'",
            1,
            Duration::from_secs(40),
        )
        .await;
    assert_eq!(paid, 1, "seen paid: {}", daemon.stderr());
    let seen_after_known: f64 = sqlx::query_scalar(
        "select extract(epoch from t.observed_at - $1::timestamptz)::float8 - 8.5
         from recon.status_transitions t
         where t.payment_id = 'lagging-1' and t.to_status = 'success'",
    )
    .bind(created)
    .fetch_one(app.pool())
    .await
    .unwrap();
    println!("seen paid {seen_after_known:.1} s after the API knew it");
    assert!(
        seen_after_known <= 60.0,
        "seen {seen_after_known:.1} s after the API knew it"
    );
    let polls = app
        .sim
        .calls()
        .get("lagging-1")
        .copied()
        .unwrap_or_default();
    assert!(
        polls >= 2,
        "the callback's poll met \"not found\" first: {polls} polls"
    );
}
