//! Which etcd paths changed, and when: what lets a prepared response (`server::prepared`)
//! outlive the snapshot it was built from.
//!
//! An etcd answer reads a few subtrees of the mirror (the question's own path, CNAME targets,
//! glue; the zone's path for the SOA serial of a negative answer) and records their hashes
//! (`answer::Answer::deps`). A change to key `K` can alter a read of path `P` only if `P` is `K`
//! or one of its ancestors, so applying a change dates `K` and every ancestor of `K`.
//!
//! Dates are epochs, not revisions: the sync task seals the log (a new epoch) each time it
//! publishes a snapshot, and a change is dated with the epoch it was applied in. A response
//! built from a snapshot of epoch `E` is still exact when none of its paths is dated `E` or
//! later. Revisions cannot say "after the snapshot": with several prefixes the snapshot's
//! revision is the one every prefix has reached, so a change in a prefix that is ahead leaves
//! it where it was, and etcd may answer a progress request before events of lower revisions
//! still queued for the watch (etcd issue #15220). So a write storm on some keys leaves every
//! response that did not read them in place, instead of discarding all of them with each
//! publish.
//!
//! Bounded: past [`MAX_PATHS`] paths the table is emptied and its floor raised to the current
//! epoch; responses built at or before the floor count as stale. A new listing (start, or a
//! relist after compaction) starts a new lineage, which no earlier response belongs to.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The most paths remembered before the table starts over: about 40 MiB, reached only after a
/// million distinct keys and ancestors changed (a write storm over the 100,000-service set of
/// `benches/load/vs-nsd` touches about 500,000), and starting over drops every prepared response.
pub const MAX_PATHS: usize = 1 << 20;

/// The pseudo-path every service-registry change touches: answers in a registry zone depend on
/// the registry as a whole.
const REGISTRY: &str = "\0registry";

/// The hash an answer records for a read of `path` (a subtree and its root key).
pub fn path_hash(path: &str) -> u64 {
    // SipHash with fixed keys: the same in every snapshot. A collision only makes a response
    // look changed.
    let mut hasher = std::hash::DefaultHasher::new();
    path.trim_end_matches('/').hash(&mut hasher);
    hasher.finish()
}

/// The hash answers in a registry zone record.
pub fn registry_hash() -> u64 {
    path_hash(REGISTRY)
}

/// The change table of one mirror lineage (cheap to clone: persistent).
#[derive(Debug, Clone)]
pub struct ChangeLog {
    lineage: u64,
    /// Changes recorded so far: equal counts mean equal contents.
    recorded: u64,
    /// The epoch changes are dated with now; [`ChangeLog::seal`] starts the next.
    epoch: u64,
    changed: imbl::HashMap<u64, u64>,
    floor: u64,
}

impl Default for ChangeLog {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeLog {
    /// An empty table for a new listing.
    pub fn new() -> Self {
        static LINEAGES: AtomicU64 = AtomicU64::new(1);
        Self {
            lineage: LINEAGES.fetch_add(1, Ordering::Relaxed),
            recorded: 0,
            epoch: 1,
            changed: imbl::HashMap::new(),
            floor: 0,
        }
    }

    /// Which listing this mirror descends from (never 0).
    pub fn lineage(&self) -> u64 {
        self.lineage
    }

    /// How many changes were recorded in this lineage: a mirror with the same lineage and count
    /// holds exactly the same keys.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// The current epoch: a response built from this snapshot records it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts a new epoch. Called before a copy is published, so that every change applied
    /// after the copy is dated after every response built from it.
    pub fn seal(&mut self) {
        self.epoch += 1;
    }

    /// Records that `key` changed: the key and each of its ancestor paths, dated this epoch.
    ///
    /// Deepest first, stopping at the first path already dated this epoch: a touch dates all
    /// of a path's ancestors at once, so theirs are too. The keys applied between two publishes
    /// (a transaction's, a batch's) share an epoch, so their shared ancestors are written once.
    pub fn touch(&mut self, key: &str) {
        self.recorded += 1;
        if self.changed.len() >= MAX_PATHS {
            self.changed = imbl::HashMap::new();
            self.floor = self.epoch;
        }
        let ancestors = key.match_indices('/').map(|(i, _)| &key[..i]);
        let paths = std::iter::once(key).chain(ancestors.rev());
        for path in paths {
            let hash = path_hash(path);
            if self.changed.get(&hash) == Some(&self.epoch) {
                break;
            }
            self.changed.insert(hash, self.epoch);
        }
    }

    /// Records a change to the service registry.
    pub fn touch_registry(&mut self) {
        self.touch(REGISTRY);
    }

    /// Whether no path among `deps` changed since the snapshot of epoch `built`.
    pub fn unchanged_since(&self, deps: impl IntoIterator<Item = u64>, built: u64) -> bool {
        built > self.floor
            && deps
                .into_iter()
                .all(|dep| self.changed.get(&dep).is_none_or(|&at| at < built))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_dates_its_key_and_every_ancestor_but_no_sibling() {
        let mut log = ChangeLog::new();
        log.seal();
        let before = log.epoch();
        log.touch("/skydns/local/service/web/x1");
        log.seal();
        let after = log.epoch();
        for path in [
            "",
            "/skydns",
            "/skydns/local/service",
            "/skydns/local/service/web",
            "/skydns/local/service/web/",
            "/skydns/local/service/web/x1",
        ] {
            assert!(!log.unchanged_since([path_hash(path)], before), "{path:?}");
            assert!(log.unchanged_since([path_hash(path)], after), "{path:?}");
        }
        for path in [
            "/skydns/local/service/db",
            "/skydns/local/service/web/x1/deeper",
            "/skydns/local/service/we",
        ] {
            assert!(log.unchanged_since([path_hash(path)], before), "{path:?}");
        }
    }

    #[test]
    fn a_change_after_a_snapshot_is_dated_after_it_whatever_its_revision() {
        let mut log = ChangeLog::new();
        log.seal();
        let built = log.epoch();
        // No revision is involved: a late event of a lower revision is still after the copy.
        log.touch("/s/a");
        assert!(!log.unchanged_since([path_hash("/s/a")], built));
        assert!(log.unchanged_since([path_hash("/s/b")], built));
    }

    #[test]
    fn keys_of_one_epoch_date_their_shared_ancestors_once_and_still_all_of_them() {
        let mut log = ChangeLog::new();
        log.touch("/s/a/b/x");
        log.touch("/s/a/c/y");
        log.seal();
        log.touch("/s/d");
        for (path, at) in [
            ("/s/a/b/x", 1),
            ("/s/a/b", 1),
            ("/s/a/c/y", 1),
            ("/s/a/c", 1),
            ("/s/a", 1),
            ("/s/d", 2),
            ("/s", 2),
            ("", 2),
        ] {
            assert_eq!(log.changed.get(&path_hash(path)), Some(&at), "{path:?}");
        }
    }

    #[test]
    fn past_the_bound_everything_older_is_stale() {
        let mut log = ChangeLog::new();
        // Each key adds itself and the root path "".
        for i in 0..MAX_PATHS - 1 {
            log.touch(&format!("/k{i}"));
        }
        assert_eq!(log.changed.len(), MAX_PATHS);
        log.seal();
        let built = log.epoch();
        assert!(log.unchanged_since([path_hash("/elsewhere")], built));
        log.touch("/one/more");
        assert!(log.changed.len() <= 3, "{} paths kept", log.changed.len());
        assert!(
            !log.unchanged_since([path_hash("/elsewhere")], built),
            "built before the table started over"
        );
        log.seal();
        assert!(log.unchanged_since([path_hash("/elsewhere")], log.epoch()));
        assert!(!log.unchanged_since([path_hash("/one")], built));
    }
}
