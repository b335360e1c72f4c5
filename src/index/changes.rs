//! Which etcd paths changed, and when: what lets a prepared response (`server::prepared`)
//! outlive the snapshot it was built from.
//!
//! An etcd answer reads a few subtrees of the mirror (the question's own path, CNAME targets,
//! glue; the zone's path for the SOA serial of a negative answer) and records their hashes
//! (`answer::Answer::deps`). A change to key `K` can alter a read of path `P` only if `P` is `K`
//! or one of its ancestors, so applying a change records the change's revision for `K` and every
//! ancestor of `K`. A response built at revision `R` is still exact when none of its paths
//! changed after `R`. So a write storm on some keys leaves every response that did not read them
//! in place, instead of discarding all of them with each publish.
//!
//! Bounded: past [`MAX_PATHS`] paths the table is emptied and its floor raised to the current
//! revision; responses built before the floor count as stale. A new listing (start, or a relist
//! after compaction) starts a new lineage, which no earlier response belongs to.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::mirror::Revision;

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
    /// Changes recorded so far: equal counts mean equal contents. The mirror's revision cannot
    /// say that: with several prefixes it is the one every prefix has reached, and a change in
    /// a prefix that is ahead leaves it where it was.
    recorded: u64,
    changed: imbl::HashMap<u64, Revision>,
    floor: Revision,
}

impl ChangeLog {
    /// An empty table for a new listing read at `revision`.
    pub fn new(revision: Revision) -> Self {
        static LINEAGES: AtomicU64 = AtomicU64::new(1);
        Self {
            lineage: LINEAGES.fetch_add(1, Ordering::Relaxed),
            recorded: 0,
            changed: imbl::HashMap::new(),
            floor: revision,
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

    /// Records that `key` changed at `revision`: the key and each of its ancestor paths.
    ///
    /// Deepest first, stopping at the first path already dated `revision`: a touch dates all
    /// of a path's ancestors at once, so theirs are too. The keys of one transaction share a
    /// revision, so its shared ancestors are written once, not once per key.
    pub fn touch(&mut self, key: &str, revision: Revision) {
        self.recorded += 1;
        if self.changed.len() >= MAX_PATHS {
            self.changed = imbl::HashMap::new();
            self.floor = revision;
        }
        let ancestors = key.match_indices('/').map(|(i, _)| &key[..i]);
        let paths = std::iter::once(key).chain(ancestors.rev());
        for path in paths {
            let hash = path_hash(path);
            if self.changed.get(&hash) == Some(&revision) {
                break;
            }
            self.changed.insert(hash, revision);
        }
    }

    /// Records a change to the service registry at `revision`.
    pub fn touch_registry(&mut self, revision: Revision) {
        self.touch(REGISTRY, revision);
    }

    /// Whether no path among `deps` changed after `built`.
    pub fn unchanged_since(&self, deps: impl IntoIterator<Item = u64>, built: Revision) -> bool {
        built >= self.floor
            && deps
                .into_iter()
                .all(|dep| self.changed.get(&dep).is_none_or(|&at| at <= built))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_dates_its_key_and_every_ancestor_but_no_sibling() {
        let mut log = ChangeLog::new(10);
        log.touch("/skydns/local/service/web/x1", 12);
        for path in [
            "",
            "/skydns",
            "/skydns/local/service",
            "/skydns/local/service/web",
            "/skydns/local/service/web/",
            "/skydns/local/service/web/x1",
        ] {
            assert!(!log.unchanged_since([path_hash(path)], 11), "{path:?}");
            assert!(log.unchanged_since([path_hash(path)], 12), "{path:?}");
        }
        for path in [
            "/skydns/local/service/db",
            "/skydns/local/service/web/x1/deeper",
            "/skydns/local/service/we",
        ] {
            assert!(log.unchanged_since([path_hash(path)], 11), "{path:?}");
        }
    }

    #[test]
    fn keys_of_one_revision_date_their_shared_ancestors_once_and_still_all_of_them() {
        let mut log = ChangeLog::new(1);
        log.touch("/s/a/b/x", 5);
        log.touch("/s/a/c/y", 5);
        log.touch("/s/d", 6);
        for (path, at) in [
            ("/s/a/b/x", 5),
            ("/s/a/b", 5),
            ("/s/a/c/y", 5),
            ("/s/a/c", 5),
            ("/s/a", 5),
            ("/s/d", 6),
            ("/s", 6),
            ("", 6),
        ] {
            assert_eq!(log.changed.get(&path_hash(path)), Some(&at), "{path:?}");
        }
    }

    #[test]
    fn past_the_bound_everything_older_is_stale() {
        let mut log = ChangeLog::new(1);
        // Each key adds itself and the root path "".
        for i in 0..MAX_PATHS - 1 {
            log.touch(&format!("/k{i}"), 2);
        }
        assert_eq!(log.changed.len(), MAX_PATHS);
        assert!(log.unchanged_since([path_hash("/elsewhere")], 2));
        log.touch("/one/more", 3);
        assert!(log.changed.len() <= 3, "{} paths kept", log.changed.len());
        assert!(
            !log.unchanged_since([path_hash("/elsewhere")], 2),
            "built before the floor"
        );
        assert!(log.unchanged_since([path_hash("/elsewhere")], 3));
        assert!(!log.unchanged_since([path_hash("/one")], 2));
    }
}
