//! When sweeps run (`poll.schedule`), as the claim and the capacity planner need to know it.
//!
//! A check is due at an instant, and a sweep takes it only when the sweep runs. A recheck or a
//! confirmation is due a fixed interval after the observation that scheduled it, and that
//! observation comes a little after its sweep started (the claim, the pacer, the request): so
//! its due time lands a few milliseconds *after* the sweep one interval later, and without
//! help it would wait for the sweep after that, a whole sweep interval late (measured: about
//! 22 % of rechecks and confirmations on a 10-second schedule, issue 18).
//!
//! The help is [`Sweeps::claim_ahead`]: a sweep also takes the routine checks that fall due
//! within that much after it starts. It is half the shortest gap between two sweeps, so a
//! check taken early is always taken by the sweep nearest its due time, never by one that a
//! later sweep would have been closer to; and at most [`CLAIM_AHEAD_MAX`], so that on a sparse
//! schedule no check is made long before it is due. Deadline checks are never taken early:
//! the claim takes them only once they are due (`store/sql/claim.sql`).

use std::time::Duration;

use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, Timelike as _, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// The most a routine check is claimed before it is due, whatever the schedule: enough to
/// absorb a sweep's own latency (claims, pacing, requests), which is what makes a check
/// miss its sweep, and short enough that nothing is polled much before it is due.
pub const CLAIM_AHEAD_MAX: Duration = Duration::from_secs(30);

/// How far ahead [`Sweeps::first_at_or_after`] looks for a firing day: a schedule that is
/// loaded fires within a year (settings refuse one that does not).
const SEARCH_DAYS: i64 = 400;

/// `poll.schedule`, read as the scheduler reads it (cron with seconds, in UTC).
#[derive(Debug, Clone)]
pub struct Sweeps {
    cron: Cron,
    /// The seconds of a day at which a firing day fires, ascending. Cron fires at whole
    /// seconds, on the same times every day it fires.
    times_of_day: Vec<u32>,
}

impl Sweeps {
    /// Reads a cron expression with seconds, e.g. `*/10 * * * * *`.
    pub fn parse(schedule: &str) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(schedule)
            .map_err(|e| e.to_string())?;
        let pattern = &cron.pattern;
        let times_of_day = (0..86_400)
            .filter(|&s: &u32| {
                pattern.hour_match(s / 3600).unwrap_or(false)
                    && pattern.minute_match(s / 60 % 60).unwrap_or(false)
                    && pattern.second_match(s % 60).unwrap_or(false)
            })
            .collect();
        Ok(Self { cron, times_of_day })
    }

    /// The cron expression, as written.
    pub fn schedule(&self) -> &str {
        self.cron.pattern.as_str()
    }

    /// Whether sweeps run on `date` at all.
    fn fires_on(&self, date: NaiveDate) -> bool {
        let pattern = &self.cron.pattern;
        !self.times_of_day.is_empty()
            && pattern.year_match(date.year()).unwrap_or(false)
            && pattern.month_match(date.month()).unwrap_or(false)
            && pattern
                .day_match(date.year(), date.month(), date.day())
                .unwrap_or(false)
    }

    /// The first sweep at or after `at`, or `None` when none starts within a year or so.
    pub fn first_at_or_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let day = at.date_naive();
        // The first whole second at or after `at`.
        let mut second = at.num_seconds_from_midnight() + u32::from(at.nanosecond() > 0);
        for offset in 0..SEARCH_DAYS {
            let date = day.checked_add_signed(TimeDelta::days(offset))?;
            if offset > 0 {
                second = 0;
            }
            if !self.fires_on(date) {
                continue;
            }
            let index = self.times_of_day.partition_point(|&s| s < second);
            if let Some(&s) = self.times_of_day.get(index) {
                let midnight = date.and_hms_opt(0, 0, 0)?.and_utc();
                return Some(midnight + TimeDelta::seconds(i64::from(s)));
            }
        }
        None
    }

    /// The shortest gap between two consecutive sweeps, or `None` when it is a day or more:
    /// the shortest between two firings of one day, or between the last firing of a day and
    /// the first of the next when two days in a row fire (within the year after `from`).
    pub fn shortest_gap(&self, from: NaiveDate) -> Option<Duration> {
        let within_a_day = self
            .times_of_day
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .min();
        let (&first, &last) = (self.times_of_day.first()?, self.times_of_day.last()?);
        let days_in_a_row = (0..366).any(|offset| {
            let day = from.checked_add_signed(TimeDelta::days(offset));
            let next = from.checked_add_signed(TimeDelta::days(offset + 1));
            day.zip(next)
                .is_some_and(|(day, next)| self.fires_on(day) && self.fires_on(next))
        });
        let across_midnight = days_in_a_row.then_some(86_400 - last + first);
        within_a_day
            .into_iter()
            .chain(across_midnight)
            .min()
            .map(|seconds| Duration::from_secs(u64::from(seconds)))
    }

    /// How long before it is due a sweep starting on or after `from` takes a routine check:
    /// half the shortest gap between sweeps, at most [`CLAIM_AHEAD_MAX`].
    ///
    /// Why half: a check due at `t` is then taken by the first sweep at or after
    /// `t - claim_ahead`. When that sweep starts before `t`, the next one starts at least two
    /// `claim_ahead`s after it, so no later sweep is nearer `t`: each check is made by the
    /// sweep nearest its due time, early by at most `claim_ahead`, and never waits a whole
    /// extra sweep because its observation came a few milliseconds after a sweep started.
    pub fn claim_ahead(&self, from: NaiveDate) -> Duration {
        self.shortest_gap(from)
            .map_or(CLAIM_AHEAD_MAX, |gap| (gap / 2).min(CLAIM_AHEAD_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        rfc3339.parse().unwrap()
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
    }

    #[test]
    fn the_default_schedule_takes_routine_checks_five_seconds_ahead() {
        let sweeps = Sweeps::parse("*/10 * * * * *").unwrap();
        assert_eq!(sweeps.shortest_gap(day()), Some(Duration::from_secs(10)));
        assert_eq!(sweeps.claim_ahead(day()), Duration::from_secs(5));
        assert_eq!(
            sweeps.first_at_or_after(at("2026-12-04T10:00:00Z")),
            Some(at("2026-12-04T10:00:00Z")),
            "a sweep at the instant itself"
        );
        assert_eq!(
            sweeps.first_at_or_after(at("2026-12-04T10:00:00.001Z")),
            Some(at("2026-12-04T10:00:10Z")),
            "a millisecond late is the next sweep"
        );
        assert_eq!(
            sweeps.first_at_or_after(at("2026-12-04T23:59:55Z")),
            Some(at("2026-12-05T00:00:00Z"))
        );
    }

    #[test]
    fn an_irregular_schedule_counts_its_shortest_gap() {
        // Twice a minute, 5 s apart: half of 5 s, not of the 55 s gap.
        let sweeps = Sweeps::parse("0,5 * * * * *").unwrap();
        assert_eq!(sweeps.claim_ahead(day()), Duration::from_millis(2500));
        // Business hours only: the night's gap is long, the day's is 15 s.
        let sweeps = Sweeps::parse("*/15 * 8-19 * * *").unwrap();
        assert_eq!(sweeps.claim_ahead(day()), Duration::from_millis(7500));
        assert_eq!(
            sweeps.first_at_or_after(at("2026-12-04T20:00:00Z")),
            Some(at("2026-12-05T08:00:00Z"))
        );
        // The shortest gap can be across midnight: 23:59:59 then 00:00:00.
        let sweeps = Sweeps::parse("0,59 0,59 0,23 * * *").unwrap();
        assert_eq!(sweeps.shortest_gap(day()), Some(Duration::from_secs(1)));
        // ...but only when two days in a row fire: Sundays only, so 59 s within the day.
        let sweeps = Sweeps::parse("0,59 0,59 0,23 * * 0").unwrap();
        assert_eq!(sweeps.shortest_gap(day()), Some(Duration::from_secs(59)));
    }

    #[test]
    fn a_sparse_schedule_claims_ahead_at_most_the_cap() {
        let hourly = Sweeps::parse("0 0 * * * *").unwrap();
        assert_eq!(hourly.claim_ahead(day()), CLAIM_AHEAD_MAX);
        let daily = Sweeps::parse("0 0 9 * * *").unwrap();
        assert_eq!(daily.shortest_gap(day()), Some(Duration::from_secs(86_400)));
        assert_eq!(daily.claim_ahead(day()), CLAIM_AHEAD_MAX);
        let monthly = Sweeps::parse("0 0 9 1 * *").unwrap();
        assert_eq!(monthly.shortest_gap(day()), None);
        assert_eq!(monthly.claim_ahead(day()), CLAIM_AHEAD_MAX);
        assert_eq!(
            monthly.first_at_or_after(at("2026-12-04T10:00:00Z")),
            Some(at("2027-01-01T09:00:00Z"))
        );
    }

    #[test]
    fn every_sweep_is_where_the_cron_library_puts_it() {
        for schedule in [
            "*/10 * * * * *",
            "0,5 * * * * *",
            "*/15 * 8-19 * * 1-5",
            "0 0 9 1 * *",
        ] {
            let sweeps = Sweeps::parse(schedule).unwrap();
            let mut t = at("2026-12-04T07:59:58Z");
            for _ in 0..50 {
                let expected = sweeps.cron.find_next_occurrence(&t, false).unwrap();
                let after = t + TimeDelta::milliseconds(1);
                assert_eq!(
                    sweeps.first_at_or_after(after),
                    Some(expected),
                    "{schedule} at {after}"
                );
                t = expected;
            }
        }
    }
}
