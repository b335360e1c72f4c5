//! The lease table: lease ID → the deadline srvd last learned from etcd.
//!
//! Record TTLs of leased keys come from here, never from an etcd call per question. Keep-alives
//! extend leases without any key event, so a deadline is only a lower bound: when it passes, the
//! entry expires (moka per-entry expiry) and the sync task asks etcd again (`LeaseTimeToLive`).
//! When a lease really ends, etcd deletes its keys and the watch brings the DELETEs.
//!
//! The table holds deadlines only for leases that keys in the mirror use: it counts the keys per
//! lease itself, and counting, forgetting and recording a look-up's answer happen under one
//! small mutex, so an answer that arrives after the lease's last key went is dropped instead of
//! being refreshed for as long as the lease lives. Readers (`ttl`) never take that mutex.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::sync::Cache;

/// The clamp applied to a lease's remaining time (CoreDNS `min-lease-ttl`/`max-lease-ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseBounds {
    /// Lower bound, seconds (default 30).
    pub min_secs: u32,
    /// Upper bound, seconds (default 86,400).
    pub max_secs: u32,
}

impl Default for LeaseBounds {
    fn default() -> Self {
        Self {
            min_secs: 30,
            max_secs: 86_400,
        }
    }
}

struct UntilDeadline;

impl Expiry<i64, Instant> for UntilDeadline {
    fn expire_after_create(&self, _: &i64, deadline: &Instant, now: Instant) -> Option<Duration> {
        Some(deadline.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &i64,
        deadline: &Instant,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(deadline.saturating_duration_since(now))
    }
}

/// Known lease deadlines, shared by the sync task (writer) and the query path (reader).
pub struct LeaseTable {
    deadlines: Cache<i64, Instant>,
    /// Keys in the mirror per lease; only the sync task and the lease refresher take it.
    uses: Mutex<HashMap<i64, usize>>,
    bounds: LeaseBounds,
}

impl std::fmt::Debug for LeaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTable")
            .field("leases", &self.deadlines.entry_count())
            .field("used", &self.uses().len())
            .field("bounds", &self.bounds)
            .finish()
    }
}

impl LeaseTable {
    /// A table whose expired entries are reported to `on_expired` (called on a thread that
    /// touches the table; keep it cheap, e.g. a channel send).
    pub fn new(bounds: LeaseBounds, on_expired: impl Fn(i64) + Send + Sync + 'static) -> Self {
        let deadlines = Cache::builder()
            .expire_after(UntilDeadline)
            .eviction_listener(move |id: Arc<i64>, _, cause| {
                if cause == RemovalCause::Expired {
                    on_expired(*id);
                }
            })
            .build();
        Self {
            deadlines,
            uses: Mutex::new(HashMap::new()),
            bounds,
        }
    }

    fn uses(&self) -> MutexGuard<'_, HashMap<i64, usize>> {
        // The map stays consistent even if a holder panicked: every change is one statement.
        self.uses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more key uses `lease`; returns whether it is the first (then look the lease up).
    pub fn acquire(&self, lease: i64) -> bool {
        let mut uses = self.uses();
        let count = uses.entry(lease).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// One key fewer uses `lease`; with the last one, its deadline is forgotten.
    pub fn release(&self, lease: i64) {
        let mut uses = self.uses();
        if let Some(count) = uses.get_mut(&lease) {
            *count -= 1;
            if *count == 0 {
                uses.remove(&lease);
                self.deadlines.invalidate(&lease);
            }
        }
    }

    /// Replaces every count after a full re-read; returns the leases that no key used before
    /// (to look up). Deadlines of leases no longer used are forgotten.
    pub fn replace_uses(&self, counts: HashMap<i64, usize>) -> Vec<i64> {
        let mut uses = self.uses();
        let new = counts
            .keys()
            .filter(|lease| !uses.contains_key(lease))
            .copied()
            .collect();
        for lease in uses.keys() {
            if !counts.contains_key(lease) {
                self.deadlines.invalidate(lease);
            }
        }
        *uses = counts;
        new
    }

    /// Whether some key in the mirror uses `lease`.
    pub fn in_use(&self, lease: i64) -> bool {
        self.uses().contains_key(&lease)
    }

    /// Records that `lease` has `remaining` time left as of now, if a key still uses it;
    /// returns whether it did.
    pub fn record(&self, lease: i64, remaining: Duration) -> bool {
        let uses = self.uses();
        let used = uses.contains_key(&lease);
        if used {
            // Inserted under the lock, so a `release` cannot slip in between check and insert.
            self.deadlines.insert(lease, Instant::now() + remaining);
        }
        used
    }

    /// Whether a deadline is known and has not passed.
    pub fn is_known(&self, lease: i64) -> bool {
        self.deadlines.contains_key(&lease)
    }

    /// How many leases have a known deadline (after pending bookkeeping).
    pub fn known(&self) -> u64 {
        self.deadlines.run_pending_tasks();
        self.deadlines.entry_count()
    }

    /// Runs expiry bookkeeping (moka does it lazily); the sync task calls this periodically.
    pub fn run_pending(&self) {
        self.deadlines.run_pending_tasks();
    }

    /// The TTL for a registry record on `lease`: `ttl`, lowered to the remaining lease time
    /// (no `--min-lease-ttl` floor: that is CoreDNS's rule for the SkyDNS layout). A lease whose
    /// deadline is not known yet gives `ttl`.
    pub fn capped_ttl(&self, lease: i64, ttl: u32) -> u32 {
        self.deadlines.get(&lease).map_or(ttl, |deadline| {
            let secs = deadline.saturating_duration_since(Instant::now()).as_secs();
            u32::try_from(secs).unwrap_or(u32::MAX).min(ttl)
        })
    }

    /// The TTL for a record on `lease` whose own `ttl` is `value_ttl` (0 = unset): the remaining
    /// lease time clamped to the bounds, then no more than a non-zero `value_ttl` (as CoreDNS's etcd plugin does).
    /// While a deadline is being re-read, the lower bound stands in for the remaining time.
    pub fn ttl(&self, lease: i64, value_ttl: u32) -> u32 {
        let remaining = self
            .deadlines
            .get(&lease)
            .map(|deadline| deadline.saturating_duration_since(Instant::now()).as_secs())
            .map_or(self.bounds.min_secs, |secs| {
                u32::try_from(secs).unwrap_or(u32::MAX)
            });
        let clamped = remaining.clamp(
            self.bounds.min_secs,
            self.bounds.max_secs.max(self.bounds.min_secs),
        );
        if value_ttl == 0 {
            clamped
        } else {
            clamped.min(value_ttl)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_using(leases: &[i64]) -> LeaseTable {
        let table = LeaseTable::new(LeaseBounds::default(), |_| {});
        for lease in leases {
            table.acquire(*lease);
        }
        table
    }

    #[test]
    fn a_deadline_is_kept_only_while_a_key_uses_the_lease() {
        let table = table_using(&[5]);
        assert!(table.acquire(6), "first key on 6: look it up");
        assert!(!table.acquire(6), "second key on 6: known already");
        table.release(6);
        assert!(table.record(6, Duration::from_secs(100)));
        table.release(6);
        assert!(!table.is_known(6), "last key gone: forgotten");
        // A look-up answer arriving after the last key went is dropped.
        assert!(!table.record(6, Duration::from_secs(100)));
        assert!(!table.is_known(6));
        assert!(table.record(5, Duration::from_secs(100)));
        assert_eq!(table.known(), 1);
        // A re-read: 5 gone, 7 new.
        assert_eq!(table.replace_uses(HashMap::from([(7, 2)])), vec![7]);
        assert!(!table.is_known(5));
        assert!(!table.in_use(5) && table.in_use(7));
    }

    #[test]
    fn ttl_is_remaining_time_clamped_and_capped_by_the_value_ttl() {
        let table = table_using(&[1, 2, 3, 7]);
        table.record(1, Duration::from_secs(100));
        let ttl = table.ttl(1, 0);
        assert!((98..=100).contains(&ttl), "{ttl}");
        assert_eq!(table.ttl(1, 60), 60);
        table.record(2, Duration::from_secs(5));
        assert_eq!(table.ttl(2, 0), 30, "raised to min-lease-ttl");
        table.record(3, Duration::from_secs(200_000));
        assert_eq!(table.ttl(3, 0), 86_400, "lowered to max-lease-ttl");
        assert_eq!(table.ttl(99, 0), 30, "unknown lease: the lower bound");
    }

    #[test]
    fn a_registry_ttl_is_capped_by_the_lease_without_a_floor() {
        let table = table_using(&[1, 2]);
        table.record(1, Duration::from_secs(100));
        assert_eq!(table.capped_ttl(1, 5), 5);
        table.record(2, Duration::from_secs(3));
        assert!(
            (2..=3).contains(&table.capped_ttl(2, 5)),
            "below the 30 s floor"
        );
        assert_eq!(
            table.capped_ttl(99, 5),
            5,
            "unknown lease: the registry TTL"
        );
    }

    #[test]
    fn an_expired_deadline_is_reported() {
        let (tx, rx) = std::sync::mpsc::channel();
        let table = LeaseTable::new(LeaseBounds::default(), move |id| {
            let _ = tx.send(id);
        });
        table.acquire(7);
        table.record(7, Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            table.run_pending();
            if let Ok(id) = rx.try_recv() {
                assert_eq!(id, 7);
                break;
            }
            assert!(Instant::now() < deadline, "expiry reported");
            std::thread::yield_now();
        }
        assert!(!table.is_known(7));
    }
}
