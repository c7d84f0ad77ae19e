//! When a cluster whose database side failed is tried again, and when that failure is told.
//!
//! A database that refuses connections or a statement that keeps failing (an extension that
//! does not exist) is retried with an exponential back-off per cluster: quick at first, for a
//! leader that is only restarting, then rarely, so that a broken cluster neither hammers its
//! database nor fills the work queue of the others. The streak of failures is kept in memory by
//! the cluster's uid; it ends with a success or with a new `metadata.generation` (the user
//! changed the manifest, possibly fixing the cause), and a restarted operator starts it afresh,
//! which costs at most one quick retry.
//!
//! The Warning Event of a failure is published again only when the failure is a different one
//! or [`WARNING_REPEAT`] has passed: the same message on every retry tells nothing new, and the
//! `Ready` condition keeps saying it meanwhile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first retry after a failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between two retries.
pub const MAX_RETRY: Duration = Duration::from_secs(5 * 60);
/// How long an unchanged failure is not warned about again: the Event then shows it still
/// happens (Kubernetes expires Events after an hour by default).
pub const WARNING_REPEAT: Duration = Duration::from_secs(10 * 60);

/// The wait after the `failures`-th failure in a row: [`FIRST_RETRY`], doubled per further
/// failure, at most `cap` (and never more than [`MAX_RETRY`]).
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let cap = cap.min(MAX_RETRY);
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(cap)
}

/// One cluster's failures in a row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Streak {
    /// The manifest generation the failures are of.
    generation: Option<i64>,
    /// How many syncs failed in a row.
    failures: u32,
    /// The failure last warned about, and when.
    warned: Option<(String, Instant)>,
}

/// What to do about one more failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Failures in a row, this one included.
    pub failures: u32,
    /// Whether to publish the Warning Event.
    pub warn: bool,
}

impl Streak {
    /// Counts a failure identified by `what` (its message without counts that vary between
    /// retries) of the manifest at `generation`.
    pub fn fail(&mut self, generation: Option<i64>, what: &str, now: Instant) -> Verdict {
        if self.generation != generation {
            *self = Streak {
                generation,
                ..Streak::default()
            };
        }
        self.failures = self.failures.saturating_add(1);
        let told = self.warned.as_ref().is_some_and(|(said, at)| {
            said == what && now.saturating_duration_since(*at) < WARNING_REPEAT
        });
        if !told {
            self.warned = Some((what.to_string(), now));
        }
        Verdict {
            failures: self.failures,
            warn: !told,
        }
    }
}

/// The streaks of all clusters that are failing, by uid.
#[derive(Debug, Default)]
pub struct Streaks(Mutex<HashMap<String, Streak>>);

impl Streaks {
    /// Ends the streak of `key` (its database side synced, or the cluster is gone).
    pub fn succeeded(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Counts a failure of `key` (see [`Streak::fail`]).
    pub fn failed(&self, key: &str, generation: Option<i64>, what: &str) -> Verdict {
        self.lock()
            .entry(key.to_string())
            .or_default()
            .fail(generation, what, Instant::now())
    }

    /// Failures in a row of `key` (0 when it is not failing).
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().get(key).map_or(0, |s| s.failures)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Streak>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_five_seconds_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n, cap).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(
            backoff(0, cap),
            FIRST_RETRY,
            "no failure yet: the first wait"
        );
        assert_eq!(backoff(u32::MAX, cap), MAX_RETRY, "no overflow");
        assert_eq!(
            backoff(4, Duration::from_secs(30)).as_secs(),
            30,
            "a shorter repair period caps it"
        );
        assert_eq!(
            backoff(20, Duration::from_secs(3600)),
            MAX_RETRY,
            "never more than the maximum"
        );
    }

    #[test]
    fn an_unchanged_failure_is_warned_once_until_it_changes_or_time_passes() {
        let t0 = Instant::now();
        let mut streak = Streak::default();
        let first = streak.fail(Some(1), "extension x", t0);
        assert_eq!(
            first,
            Verdict {
                failures: 1,
                warn: true
            }
        );
        let again = streak.fail(Some(1), "extension x", t0 + Duration::from_secs(5));
        assert_eq!(
            again,
            Verdict {
                failures: 2,
                warn: false
            }
        );
        let other = streak.fail(Some(1), "connection refused", t0 + Duration::from_secs(15));
        assert_eq!(
            other,
            Verdict {
                failures: 3,
                warn: true
            }
        );
        let late = streak.fail(Some(1), "connection refused", t0 + WARNING_REPEAT * 2);
        assert!(late.warn, "told again once the warning is old");
        assert_eq!(late.failures, 4);
    }

    #[test]
    fn a_new_generation_starts_a_new_streak() {
        let t0 = Instant::now();
        let mut streak = Streak::default();
        streak.fail(Some(1), "x", t0);
        streak.fail(Some(1), "x", t0);
        let changed = streak.fail(Some(2), "x", t0);
        assert_eq!(
            changed,
            Verdict {
                failures: 1,
                warn: true
            },
            "the changed manifest is retried quickly and its failure told"
        );
    }

    #[test]
    fn a_success_ends_the_streak() {
        let streaks = Streaks::default();
        streaks.failed("uid-a", Some(1), "x");
        streaks.failed("uid-a", Some(1), "x");
        streaks.failed("uid-b", Some(1), "y");
        assert_eq!(streaks.failures("uid-a"), 2);
        streaks.succeeded("uid-a");
        assert_eq!(streaks.failures("uid-a"), 0);
        assert_eq!(streaks.failures("uid-b"), 1, "other clusters keep theirs");
        assert!(streaks.failed("uid-a", Some(1), "x").warn);
    }
}
