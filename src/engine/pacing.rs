//! Pacing toward the provider: a token-bucket rate limit, a bound on requests in flight, and
//! a gate that a 429/503 closes for every worker of the process at once.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct Pacer {
    /// `None`: unlimited (`poll.rate_per_second = 0`).
    limiter: Option<DefaultDirectRateLimiter>,
    in_flight: Semaphore,
    /// Until when every worker holds off, after the provider asked us to slow down.
    paused_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("limited", &self.limiter.is_some())
            .field("available", &self.in_flight.available_permits())
            .finish()
    }
}

/// Leave to send one request; dropping it frees the in-flight slot.
pub struct Ticket<'a> {
    _permit: SemaphorePermit<'a>,
    /// How long this request waited for the rate limit and the gate.
    pub waited: Duration,
}

impl Pacer {
    pub fn new(rate_per_second: u32, burst: u32, concurrency: usize) -> Self {
        let limiter = NonZeroU32::new(rate_per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            in_flight: Semaphore::new(concurrency.max(1)),
            paused_until: Mutex::new(None),
        }
    }

    /// Closes the gate for `pause` (or keeps it closed longer if it already is).
    pub fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut paused = self.paused_until.lock().expect("pacer lock");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    fn paused_until(&self) -> Option<Instant> {
        let paused = *self.paused_until.lock().expect("pacer lock");
        paused.filter(|until| *until > Instant::now())
    }

    /// Waits for an in-flight slot, the gate and the rate limit, in that order; `None` if
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
            if let Some(limiter) = &self.limiter {
                tokio::select! {
                    () = limiter.until_ready() => {}
                    () = cancel.cancelled() => return None,
                }
            }
            // A pause may have begun while we waited for the rate limit.
            if self.paused_until().is_none() {
                return Some(Ticket {
                    _permit: permit,
                    waited: started.elapsed(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_worker_until_it_ends() {
        let pacer = Pacer::new(0, 1, 4);
        let cancel = CancellationToken::new();
        pacer.pause(Duration::from_secs(3));
        let started = Instant::now();
        let ticket = pacer.ticket(&cancel).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert!(ticket.waited >= Duration::from_secs(3));
        // A shorter pause never shortens a longer one.
        pacer.pause(Duration::from_secs(10));
        pacer.pause(Duration::from_secs(1));
        drop(ticket);
        let before = Instant::now();
        let _ticket = pacer.ticket(&cancel).await.unwrap();
        assert!(before.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_a_wait() {
        let pacer = Pacer::new(0, 1, 1);
        let cancel = CancellationToken::new();
        pacer.pause(Duration::from_secs(3600));
        let waiter = pacer.ticket(&cancel);
        cancel.cancel();
        assert!(waiter.await.is_none());
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let pacer = Pacer::new(0, 1, 2);
        let cancel = CancellationToken::new();
        let a = pacer.ticket(&cancel).await.unwrap();
        let _b = pacer.ticket(&cancel).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), pacer.ticket(&cancel)).await;
        assert!(third.is_err(), "a third request waited");
        drop(a);
        assert!(pacer.ticket(&cancel).await.is_some());
    }
}
