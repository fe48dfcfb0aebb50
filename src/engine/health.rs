//! What the daemon says about its own health, apart from the work: the halt (a fatal provider
//! error holds polling off, for a doubling while) and readiness (how long the database has
//! refused this daemon's writes). The engine writes it as sweeps go; the monitoring listener
//! reads it through its own handle ([`Health`]), so `/readyz` and `/metrics` need no engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};

/// After a fatal provider error, sweeps are skipped for this long, doubling up to the cap.
const HALT_FIRST: Duration = Duration::from_secs(60);
const HALT_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct Halt {
    reason: String,
    until: DateTime<Utc>,
    next_wait: Duration,
}

/// The halt and readiness of one daemon; cheap to clone (one shared state).
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    halt: Mutex<Option<Halt>>,
    /// Since when, and why, the database refuses this daemon's writes (claims, verdicts);
    /// `None` while they succeed.
    writes_failing: Mutex<Option<(Instant, String)>>,
    /// How long writes may fail before the daemon says it is not ready (`http.unready_after`).
    unready_after: Duration,
}

impl Health {
    pub fn new(unready_after: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                halt: Mutex::new(None),
                writes_failing: Mutex::new(None),
                unready_after,
            }),
        }
    }

    /// The fatal provider error currently holding polling off, if any.
    pub fn halted(&self) -> Option<String> {
        let halt = self.inner.halt.lock().expect("halt lock");
        halt.as_ref().map(|h| h.reason.clone())
    }

    /// The halt still in force at `now`: its reason and when it ends.
    pub(super) fn halted_until(&self, now: DateTime<Utc>) -> Option<(String, DateTime<Utc>)> {
        let halt = self.inner.halt.lock().expect("halt lock");
        halt.as_ref()
            .filter(|h| h.until > now)
            .map(|h| (h.reason.clone(), h.until))
    }

    /// The provider rejected our configuration: polling is held off, each time twice as long.
    pub(super) fn record_fatal(&self, reason: &str) {
        let mut halt = self.inner.halt.lock().expect("halt lock");
        let wait = halt.as_ref().map_or(HALT_FIRST, |h| h.next_wait);
        *halt = Some(Halt {
            reason: reason.to_owned(),
            until: Utc::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX),
            next_wait: (wait * 2).min(HALT_MAX),
        });
    }

    /// The provider answered normally: the halt, if any, is over.
    pub(super) fn clear_fatal(&self) {
        let mut halt = self.inner.halt.lock().expect("halt lock");
        if halt.take().is_some() {
            tracing::info!("the provider accepts our requests again; polling resumed");
        }
    }

    /// How long, and why, the database has been refusing this daemon's writes; `None` while
    /// they succeed.
    pub fn writes_failing(&self) -> Option<(Duration, String)> {
        let failing = self.inner.writes_failing.lock().expect("writes lock");
        failing
            .as_ref()
            .map(|(since, reason)| (since.elapsed(), reason.clone()))
    }

    /// Why the daemon is not doing its job although its database answers: its writes have
    /// been refused for `http.unready_after` or longer.
    pub fn writes_refused(&self) -> Option<String> {
        let (failing_for, reason) = self.writes_failing()?;
        (failing_for >= self.inner.unready_after).then(|| {
            format!(
                "database writes have failed for {}s: {reason}",
                failing_for.as_secs()
            )
        })
    }

    /// A claim or a write failed: the first failure starts the clock, later ones keep it.
    pub(super) fn note_write_failure(&self, reason: &dyn std::fmt::Display) {
        let mut failing = self.inner.writes_failing.lock().expect("writes lock");
        let reason = reason.to_string();
        match failing.as_mut() {
            Some((_, last)) => *last = reason,
            None => *failing = Some((Instant::now(), reason)),
        }
    }

    /// A claim or a write succeeded: the database takes our writes again.
    pub(super) fn note_write_success(&self) {
        *self.inner.writes_failing.lock().expect("writes lock") = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_halt_doubles_up_to_its_cap_and_ends_when_the_provider_answers() {
        let health = Health::new(Duration::from_secs(30));
        let now = Utc::now();
        health.record_fatal("bad key");
        let (reason, first) = health.halted_until(now).expect("halted");
        assert_eq!(reason, "bad key");
        health.record_fatal("bad key");
        let (_, second) = health.halted_until(now).expect("halted");
        assert!(
            second - now > first - now + TimeDelta::seconds(50),
            "{first} {second}"
        );
        health.clear_fatal();
        assert_eq!(health.halted(), None);
    }

    #[test]
    fn writes_refused_only_once_they_failed_for_the_while_given() {
        let health = Health::new(Duration::from_secs(3600));
        health.note_write_failure(&"permission denied");
        assert!(health.writes_failing().is_some());
        assert_eq!(health.writes_refused(), None, "not for an hour yet");
        let now = Health::new(Duration::ZERO);
        now.note_write_failure(&"permission denied");
        assert!(
            now.writes_refused()
                .is_some_and(|r| r.ends_with("permission denied"))
        );
        now.note_write_success();
        assert_eq!(now.writes_refused(), None);
    }
}
