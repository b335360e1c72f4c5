//! Warnings about skipped keys, aggregated: a writer that stores the same bad value again and
//! again must not flood the log. The first skip of a key for a reason warns; repeats within
//! [`WINDOW`] of that warning are only counted, and the next warning for that key and reason
//! (after the window) reports them as `repeats`. Memory is bounded by [`CAPACITY`] entries; beyond
//! that, skips are counted in one overflow figure reported at most once per window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Repeats within this long of a warning are counted, not logged.
pub(super) const WINDOW: Duration = Duration::from_secs(10);
/// Most (key, reason) pairs remembered at once.
pub(super) const CAPACITY: usize = 4_096;

/// What to do about one skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Note {
    /// Warn, reporting this many repeats counted since the last warning for the key and reason.
    Warn {
        /// Repeats not logged since the last warning.
        repeats: u64,
    },
    /// Too many distinct keys to remember: warn once for all of them, with this many skips.
    Overflow {
        /// Skips not itemised since the last overflow warning.
        skips: u64,
    },
    /// Counted; nothing to log now.
    Quiet,
}

struct Seen {
    warned: Instant,
    repeats: u64,
}

/// The memory of recent warnings.
#[derive(Default)]
pub(super) struct SkipLog {
    seen: HashMap<(String, String), Seen>,
    overflow: u64,
    overflow_warned: Option<Instant>,
}

impl SkipLog {
    /// Notes a skip of `key` for `reason` at `now`.
    pub(super) fn note(&mut self, key: &str, reason: &str, now: Instant) -> Note {
        let id = (key.to_owned(), reason.to_owned());
        if let Some(seen) = self.seen.get_mut(&id) {
            if now.saturating_duration_since(seen.warned) < WINDOW {
                seen.repeats += 1;
                return Note::Quiet;
            }
            seen.warned = now;
            return Note::Warn {
                repeats: std::mem::take(&mut seen.repeats),
            };
        }
        if self.seen.len() >= CAPACITY {
            // Entries past their window have nothing left to suppress; their unreported
            // repeats are dropped with them (SKIPPED_KEYS still has every skip).
            self.seen
                .retain(|_, seen| now.saturating_duration_since(seen.warned) < WINDOW);
        }
        if self.seen.len() >= CAPACITY {
            self.overflow += 1;
            let due = self
                .overflow_warned
                .is_none_or(|at| now.saturating_duration_since(at) >= WINDOW);
            if !due {
                return Note::Quiet;
            }
            self.overflow_warned = Some(now);
            return Note::Overflow {
                skips: std::mem::take(&mut self.overflow),
            };
        }
        self.seen.insert(
            id,
            Seen {
                warned: now,
                repeats: 0,
            },
        );
        Note::Warn { repeats: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_reported_with_the_next_warning() {
        let mut log = SkipLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note("k", "bad", t0), Note::Warn { repeats: 0 });
        for i in 1..=99 {
            let at = t0 + Duration::from_millis(i * 50);
            assert_eq!(log.note("k", "bad", at), Note::Quiet);
        }
        assert_eq!(log.note("k", "other", t0), Note::Warn { repeats: 0 });
        assert_eq!(
            log.note("k", "bad", t0 + WINDOW),
            Note::Warn { repeats: 99 }
        );
        assert_eq!(
            log.note("k", "bad", t0 + WINDOW * 2),
            Note::Warn { repeats: 0 }
        );
    }

    #[test]
    fn memory_stays_bounded_and_overflow_is_reported_once_per_window() {
        let mut log = SkipLog::default();
        let t0 = Instant::now();
        for i in 0..CAPACITY {
            assert_eq!(
                log.note(&format!("k{i}"), "bad", t0),
                Note::Warn { repeats: 0 }
            );
        }
        assert_eq!(log.note("extra0", "bad", t0), Note::Overflow { skips: 1 });
        for i in 1..50 {
            assert_eq!(log.note(&format!("extra{i}"), "bad", t0), Note::Quiet);
        }
        assert_eq!(log.seen.len(), CAPACITY);
        // After the window, old entries make room again.
        assert_eq!(
            log.note("fresh", "bad", t0 + WINDOW),
            Note::Warn { repeats: 0 }
        );
        assert_eq!(log.seen.len(), 1);
    }
}
