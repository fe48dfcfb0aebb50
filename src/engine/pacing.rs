//! Pacing toward the provider: the request-rate budget, a bound on requests in flight, and
//! a gate that a 429/503 closes for every worker at once.
//!
//! The rate budget is a sequence of request slots `1 / rate` apart. Slots are reserved in
//! small blocks from one row in PostgreSQL that every instance shares (`store::rate`), so
//! however many daemons run against the database, together they stay within
//! `poll.rate_per_second`; an idle instance reserves nothing, so busy ones get the whole
//! budget. Each request then waits for its own slot, an absolute instant, so timer lateness
//! never accumulates into a slower rate. Without a database (unit tests) the same
//! reservation runs in memory.

use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store;

pub struct Pacer {
    /// `None`: unlimited (`poll.rate_per_second = 0`).
    budget: Option<Budget>,
    in_flight: Semaphore,
    /// Until when every worker of this process holds off, after the provider asked us to
    /// slow down.
    paused_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("limited", &self.budget.is_some())
            .field("available", &self.in_flight.available_permits())
            .finish()
    }
}

struct Budget {
    /// Time between two slots: `1 / rate`.
    period: Duration,
    /// Slots reserved at a time (about a tenth of a second's worth).
    block: u32,
    burst: u32,
    /// The shared reservation row; `None` reserves in memory.
    shared: Option<PgPool>,
    /// The slots reserved and not yet handed out; one reservation at a time.
    slots: tokio::sync::Mutex<Slots>,
}

struct Slots {
    next: Instant,
    remaining: u32,
    /// The in-memory reservation row, when there is no shared one.
    local_next: Option<Instant>,
}

/// Leave to send one request; dropping it frees the in-flight slot.
pub struct Ticket<'a> {
    _permit: SemaphorePermit<'a>,
    /// How long this request waited for the budget and the gate.
    pub waited: Duration,
}

impl Pacer {
    /// A pacer for `rate_per_second` (0: unlimited) shared through `pool` when given.
    pub fn new(
        rate_per_second: u32,
        burst: u32,
        concurrency: usize,
        shared: Option<PgPool>,
    ) -> Self {
        let budget = (rate_per_second > 0).then(|| Budget {
            period: Duration::from_secs(1) / rate_per_second,
            block: (rate_per_second / 10).clamp(1, 50),
            burst: burst.max(1),
            shared,
            slots: tokio::sync::Mutex::new(Slots {
                next: Instant::now(),
                remaining: 0,
                local_next: None,
            }),
        });
        Self {
            budget,
            in_flight: Semaphore::new(concurrency.max(1)),
            paused_until: Mutex::new(None),
        }
    }

    /// Closes the gate for `pause` (or keeps it closed longer if it already is), here and,
    /// through the shared budget, in every other instance.
    pub async fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        {
            let mut paused = self.paused_until.lock().expect("pacer lock");
            if paused.is_none_or(|current| current < until) {
                *paused = Some(until);
            }
        }
        if let Some(budget) = &self.budget {
            // Slots reserved before the pause are not spent after it.
            budget.slots.lock().await.remaining = 0;
            if let Some(pool) = &budget.shared
                && let Err(e) = store::rate::hold_off(pool, pause).await
            {
                tracing::warn!(error = %e, "could not share the pause with other instances");
            }
        }
    }

    fn paused_until(&self) -> Option<Instant> {
        let paused = *self.paused_until.lock().expect("pacer lock");
        paused.filter(|until| *until > Instant::now())
    }

    /// Waits for an in-flight slot, the gate and a request slot, in that order; `None` if
    /// `cancel` fires first.
    pub async fn ticket(&self, cancel: &CancellationToken) -> Option<Ticket<'_>> {
        let started = Instant::now();
        let permit = tokio::select! {
            permit = self.in_flight.acquire() => permit.expect("the semaphore is never closed"),
            () = cancel.cancelled() => return None,
        };
        loop {
            while let Some(until) = self.paused_until() {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    () = cancel.cancelled() => return None,
                }
            }
            if let Some(budget) = &self.budget {
                let slot = tokio::select! {
                    slot = budget.next_slot() => slot,
                    () = cancel.cancelled() => return None,
                };
                tokio::select! {
                    () = tokio::time::sleep_until(slot) => {}
                    () = cancel.cancelled() => return None,
                }
            }
            // A pause may have begun while we waited for our slot: wait again.
            if self.paused_until().is_none() {
                return Some(Ticket {
                    _permit: permit,
                    waited: started.elapsed(),
                });
            }
        }
    }
}

impl Budget {
    /// The instant of this process's next request slot, reserving a block when needed.
    async fn next_slot(&self) -> Instant {
        let mut slots = self.slots.lock().await;
        // Slots left over from an idle spell lie in the past; spent now they would go out
        // as a burst the shared budget never granted.
        if slots.remaining > 0 && slots.next + self.period * self.burst < Instant::now() {
            slots.remaining = 0;
        }
        if slots.remaining == 0 {
            let first = self.reserve(&mut slots).await;
            slots.next = first;
            slots.remaining = self.block;
        }
        let slot = slots.next;
        slots.next += self.period;
        slots.remaining -= 1;
        slot
    }

    /// Reserves `block` slots; returns the first, on the local clock.
    async fn reserve(&self, slots: &mut Slots) -> Instant {
        if let Some(pool) = &self.shared {
            match store::rate::reserve_slots(pool, self.block, self.period, self.burst).await {
                Ok((start, db_now)) => {
                    let now = Instant::now();
                    return match (start - db_now).to_std() {
                        Ok(ahead) => now + ahead,
                        // In the past: up to a burst's worth of slots go at once.
                        Err(_) => (db_now - start)
                            .to_std()
                            .ok()
                            .and_then(|behind| now.checked_sub(behind))
                            .unwrap_or(now),
                    };
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "cannot reserve from the shared rate budget; pacing locally"
                    );
                }
            }
        }
        // The same reservation as the shared row's, in memory.
        let now = Instant::now();
        let earliest = now
            .checked_sub(self.period * (self.burst - 1))
            .unwrap_or(now);
        let start = slots.local_next.map_or(earliest, |next| next.max(earliest));
        slots.local_next = Some(start + self.period * self.block);
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_worker_until_it_ends() {
        let pacer = Pacer::new(0, 1, 4, None);
        let cancel = CancellationToken::new();
        pacer.pause(Duration::from_secs(3)).await;
        let started = Instant::now();
        let ticket = pacer.ticket(&cancel).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert!(ticket.waited >= Duration::from_secs(3));
        // A shorter pause never shortens a longer one.
        pacer.pause(Duration::from_secs(10)).await;
        pacer.pause(Duration::from_secs(1)).await;
        drop(ticket);
        let before = Instant::now();
        let _ticket = pacer.ticket(&cancel).await.unwrap();
        assert!(before.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_a_wait() {
        let pacer = Pacer::new(0, 1, 1, None);
        let cancel = CancellationToken::new();
        pacer.pause(Duration::from_secs(3600)).await;
        let waiter = pacer.ticket(&cancel);
        cancel.cancel();
        assert!(waiter.await.is_none());
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let pacer = Pacer::new(0, 1, 2, None);
        let cancel = CancellationToken::new();
        let a = pacer.ticket(&cancel).await.unwrap();
        let _b = pacer.ticket(&cancel).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), pacer.ticket(&cancel)).await;
        assert!(third.is_err(), "a third request waited");
        drop(a);
        assert!(pacer.ticket(&cancel).await.is_some());
    }

    /// The most grants within any one-second window.
    fn most_in_one_second(times: &[Duration]) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Takes `n` tickets one after another, returning when each was granted.
    async fn grant_times(pacer: &Pacer, n: usize) -> Vec<Duration> {
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..n {
            let _ticket = pacer.ticket(&cancel).await.unwrap();
            times.push(start.elapsed());
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_exactly_one_period_apart() {
        let pacer = Pacer::new(50, 1, 8, None);
        let times = grant_times(&pacer, 101).await;
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(times[100], Duration::from_secs(2), "100 periods of 20 ms");
        let most_in_a_second = most_in_one_second(&times);
        assert_eq!(most_in_a_second, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn slots_left_from_an_idle_spell_are_not_spent_as_a_burst() {
        let pacer = Pacer::new(100, 1, 8, None);
        let cancel = CancellationToken::new();
        drop(pacer.ticket(&cancel).await.unwrap()); // reserves a block of 10, spends one
        tokio::time::advance(Duration::from_secs(5)).await;
        let times = grant_times(&pacer, 5).await;
        let spacing: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            spacing.iter().all(|d| *d == Duration::from_millis(10)),
            "one per period after idling: {times:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_and_the_rate_holds_after_it() {
        let pacer = Pacer::new(10, 5, 8, None);
        // An idle budget lets a burst through at once...
        tokio::time::advance(Duration::from_secs(10)).await;
        let times = grant_times(&pacer, 25).await;
        assert!(times[..5].iter().all(|t| *t == Duration::ZERO), "{times:?}");
        // ...and then one request per period: at most rate + burst in any second.
        let most_in_a_second = most_in_one_second(&times);
        assert!(most_in_a_second <= 15, "{most_in_a_second}: {times:?}");
        assert_eq!(times[24] - times[5], Duration::from_millis(1900));
    }
}
