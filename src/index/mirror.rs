//! The etcd mirror: every decoded key under the prefix, at one etcd revision.
//!
//! A persistent ordered set of entries ordered by their etcd key (held once, in the entry), so
//! iteration is etcd's own key order (which
//! CoreDNS's answers and groups depend on), a subtree is one range, and applying a change copies
//! O(log n) nodes while sharing the rest with the snapshot readers still hold.
//!
//! Each zone served from etcd also carries a serial: the revision of the last change to a key in
//! that zone, so a zone's SOA serial moves only when its own data does.

use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdSet;

use super::changes::ChangeLog;
use super::registry::RegistryMirror;
use crate::backend::ServiceEntry;

/// An etcd revision.
pub type Revision = i64;

/// One key's change, in revision order.
#[derive(Debug, Clone)]
pub enum Change {
    /// The key now holds this entry.
    Put(Arc<ServiceEntry>),
    /// The key was deleted, or now holds a value srvd skips.
    Delete(String),
}

/// An entry ordered and found by its etcd key (byte-wise, as etcd orders keys).
#[derive(Debug, Clone)]
struct ByKey(Arc<ServiceEntry>);

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key.cmp(&other.0.key)
    }
}

/// Look-ups and ranges by `&str`: consistent with `Ord`, which compares the same string.
impl std::borrow::Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        &self.0.key
    }
}

/// An immutable view of the mirrored keys.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Ordered by key: the key lives once, in the entry (a map keyed by a copy of it held every
    /// key twice: about 60 MB at 700,000 keys).
    entries: OrdSet<ByKey>,
    revision: Revision,
    /// `(zone root path, serial)` for each etcd zone, in the index's zone order.
    serials: Arc<Vec<(String, Revision)>>,
    /// The registry-layout keys, at the same revision (mirrored, not yet answered).
    registry: RegistryMirror,
    /// When each changed path last changed, since this mirror's listing.
    changes: ChangeLog,
}

impl Mirror {
    /// An empty mirror at `revision` for zones whose key paths are `zone_paths`.
    pub fn new(zone_paths: &[String], revision: Revision) -> Self {
        Self {
            entries: OrdSet::new(),
            revision,
            serials: Arc::new(zone_paths.iter().map(|p| (p.clone(), 0)).collect()),
            registry: RegistryMirror::default(),
            changes: ChangeLog::new(),
        }
    }

    /// A mirror holding exactly `entries` (a full listing at `revision`). Each zone's serial is
    /// the newest `mod_revision` among its keys, or `revision` when `previous` holds different
    /// keys for that zone (a relist after compaction: something changed while we were away).
    pub fn from_listing(
        zone_paths: &[String],
        revision: Revision,
        entries: impl IntoIterator<Item = (Arc<ServiceEntry>, Revision)>,
        previous: Option<&Mirror>,
    ) -> Self {
        let mut listed = Listed::new(zone_paths);
        for (entry, mod_revision) in entries {
            listed.push(entry, mod_revision);
        }
        listed.finish(revision, previous)
    }

    fn zone_entries<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a ServiceEntry> + 'a {
        self.entries
            .range::<_, str>((Bound::Included(path), Bound::Unbounded))
            .take_while(move |b| b.0.key.starts_with(path))
            .filter(move |b| is_under(&b.0.key, path))
            .map(|b| b.0.as_ref())
    }

    /// Applies changes made at `revision`.
    pub fn apply(&mut self, revision: Revision, changes: impl IntoIterator<Item = Change>) {
        let mut touched: Vec<String> = Vec::new();
        for change in changes {
            let key = match change {
                Change::Put(entry) => {
                    let key = String::from(&*entry.key);
                    self.entries.insert(ByKey(entry));
                    key
                }
                Change::Delete(key) => {
                    self.entries.remove::<str>(key.as_str());
                    key
                }
            };
            self.changes.touch(&key);
            touched.push(key);
        }
        if touched
            .iter()
            .any(|key| self.serials.iter().any(|(p, _)| is_under(key, p)))
        {
            let serials = Arc::make_mut(&mut self.serials);
            for (path, serial) in serials.iter_mut() {
                if touched.iter().any(|key| is_under(key, path)) {
                    *serial = revision;
                }
            }
        }
        self.revision = self.revision.max(revision);
    }

    /// The revision this mirror reflects: with several prefixes, the sync task sets it to one
    /// that every prefix has reached ([`Mirror::set_revision`]).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Sets the revision the whole mirror (every prefix) is known to reflect.
    pub fn set_revision(&mut self, revision: Revision) {
        self.revision = revision;
    }

    /// When the paths that changed since the listing last changed.
    pub fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    /// Records a change to the registry-layout keys (their own mirror keeps no change table:
    /// registry answers depend on the registry as a whole).
    pub fn touch_registry(&mut self) {
        self.changes.touch_registry();
    }

    /// The copy to publish: the change log starts a new epoch first (see `index::changes`), so
    /// every change applied to `self` afterwards drops the responses built from the copy that
    /// read it. Publish only such copies.
    #[must_use]
    pub fn snapshot(&mut self) -> Self {
        self.changes.seal();
        self.clone()
    }

    /// The registry-layout keys.
    pub fn registry(&self) -> &RegistryMirror {
        &self.registry
    }

    /// The registry-layout keys, to change them.
    pub fn registry_mut(&mut self) -> &mut RegistryMirror {
        &mut self.registry
    }

    /// Number of mirrored keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is mirrored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The serial of the etcd zone at position `slot`.
    pub fn serial(&self, slot: usize) -> Revision {
        self.serials.get(slot).map_or(0, |s| s.1)
    }

    /// The entry at exactly `key`.
    pub fn exact(&self, key: &str) -> Option<&Arc<ServiceEntry>> {
        self.entries.get::<str>(key).map(|b| &b.0)
    }

    /// Every entry whose key starts with `prefix` (byte-wise, as etcd's prefix read), in key order.
    pub fn with_prefix<'m, 'p>(
        &'m self,
        prefix: &'p str,
    ) -> impl Iterator<Item = &'m Arc<ServiceEntry>> + use<'m, 'p> {
        self.entries
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |b| b.0.key.starts_with(prefix))
            .map(|b| &b.0)
    }

    /// CoreDNS's read of a name that is not a wildcard: the entries strictly below `path`
    /// (keys starting `path/`, at most `limit`, in key order), or when there are none, the entry
    /// at `path` itself. One seek where two reads would take two: keys that start with `path`
    /// and sort before `path/` (`path-x`, `path.x`) are stepped over, and past a few of them the
    /// subtree gets its own seek, so a crowd of such siblings costs no more than before.
    pub fn subtree_or_exact(&self, path: &str, limit: usize) -> Vec<&Arc<ServiceEntry>> {
        const STEPS: usize = 8;
        let mut exact = None;
        let mut below = Vec::new();
        let mut range = self
            .entries
            .range::<_, str>((Bound::Included(path), Bound::Unbounded));
        let mut steps = 0;
        while let Some(ByKey(entry)) = range.next() {
            let Some(rest) = entry.key.strip_prefix(path) else {
                break;
            };
            match rest.as_bytes().first() {
                None => exact = Some(entry),
                Some(b'/') => {
                    below.push(entry);
                    below.extend(
                        range
                            .by_ref()
                            .take_while(|b| {
                                b.0.key
                                    .strip_prefix(path)
                                    .is_some_and(|r| r.starts_with('/'))
                            })
                            .map(|b| &b.0)
                            .take(limit.saturating_sub(1)),
                    );
                    break;
                }
                // A sibling sorting before the subtree: step over a few, then seek.
                Some(byte) if *byte < b'/' => {
                    steps += 1;
                    if steps > STEPS {
                        let mut prefix = String::with_capacity(path.len() + 1);
                        prefix.push_str(path);
                        prefix.push('/');
                        below.extend(self.with_prefix(&prefix).take(limit));
                        break;
                    }
                }
                // Past where the subtree would be.
                Some(_) => break,
            }
        }
        below.truncate(limit);
        if below.is_empty() {
            below.extend(exact);
        }
        below
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServiceEntry>> {
        self.entries.iter().map(|b| &b.0)
    }
}

/// A mirror being built from a full listing, one entry at a time as its pages are decoded, so
/// that building it overlaps etcd preparing the next page instead of following the whole read.
#[derive(Debug)]
pub struct Listed {
    entries: OrdSet<ByKey>,
    /// `(zone root path, newest mod_revision among its keys so far)`.
    serials: Vec<(String, Revision)>,
}

impl Listed {
    /// Nothing listed yet, for zones whose key paths are `zone_paths`.
    pub fn new(zone_paths: &[String]) -> Self {
        Self {
            entries: OrdSet::new(),
            serials: zone_paths.iter().map(|p| (p.clone(), 0)).collect(),
        }
    }

    /// One listed entry, last written at `mod_revision`.
    pub fn push(&mut self, entry: Arc<ServiceEntry>, mod_revision: Revision) {
        for (path, serial) in &mut self.serials {
            if *serial < mod_revision && is_under(&entry.key, path) {
                *serial = mod_revision;
            }
        }
        self.entries.insert(ByKey(entry));
    }

    /// The mirror of the whole listing at `revision` (see [`Mirror::from_listing`]).
    pub fn finish(self, revision: Revision, previous: Option<&Mirror>) -> Mirror {
        let mut mirror = Mirror {
            entries: self.entries,
            revision,
            serials: Arc::new(Vec::new()),
            registry: RegistryMirror::default(),
            changes: ChangeLog::new(),
        };
        let mut serials = self.serials;
        if let Some(previous) = previous {
            for (i, (path, serial)) in serials.iter_mut().enumerate() {
                let same = mirror.zone_entries(path).eq(previous.zone_entries(path));
                let before = previous.serials.get(i).map_or(0, |s| s.1);
                *serial = if same {
                    before
                } else {
                    revision.max(before + 1)
                };
            }
        }
        mirror.serials = Arc::new(serials);
        mirror
    }
}

/// Whether `key` is the zone root `path` itself or a key below it.
fn is_under(key: &str, path: &str) -> bool {
    key == path || (key.starts_with(path) && key.as_bytes().get(path.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::skydns::decode;

    fn entry(key: &str) -> Arc<ServiceEntry> {
        Arc::new(decode(key, br#"{"host":"10.0.0.1"}"#, 0).unwrap())
    }

    /// The one-seek read equals the two reads it replaces (subtree, else exact) over keys that
    /// crowd the path: siblings before and after the subtree, a subtree with and without the
    /// exact key, and more siblings than the steps it takes before seeking.
    #[test]
    fn subtree_or_exact_is_the_subtree_else_the_exact_key() {
        let two_reads = |m: &Mirror, path: &str, limit: usize| -> Vec<String> {
            let below: Vec<String> = m
                .with_prefix(&format!("{path}/"))
                .take(limit)
                .map(|e| e.key.to_string())
                .collect();
            if below.is_empty() {
                m.exact(path)
                    .map(|e| e.key.to_string())
                    .into_iter()
                    .collect()
            } else {
                below
            }
        };
        let mut keys = vec![
            "/s/t/h1",
            "/s/t/h1-a",
            "/s/t/h1.b",
            "/s/t/h1/x",
            "/s/t/h1/y/z",
            "/s/t/h10",
            "/s/t/h2",
            "/s/t/h2-a",
            "/s/t/h3/x",
            "/s/t/h4-a",
            "/s/t/h4/x",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        keys.extend((0..20).map(|i| format!("/s/t/h5-{i:02}")));
        keys.extend(["/s/t/h5".into(), "/s/t/h5/x".into(), "/s/t/h5/y".into()]);
        let mut m = Mirror::new(&[], 1);
        m.apply(2, keys.iter().map(|k| Change::Put(entry(k))));
        for path in [
            "/s/t/h1", "/s/t/h2", "/s/t/h3", "/s/t/h4", "/s/t/h5", "/s/t/h6", "/s/t", "/s/t/h",
        ] {
            for limit in [0, 1, 2, usize::MAX] {
                let one: Vec<String> = m
                    .subtree_or_exact(path, limit)
                    .iter()
                    .map(|e| e.key.to_string())
                    .collect();
                assert_eq!(one, two_reads(&m, path, limit), "{path} limit {limit}");
            }
        }
    }

    #[test]
    fn prefix_reads_follow_etcd_key_order_and_respect_the_slash() {
        let mut m = Mirror::new(&[], 1);
        m.apply(
            2,
            [
                "/skydns/t/mx1",
                "/skydns/t/mx/b",
                "/skydns/t/mx/a",
                "/skydns/t/mx",
            ]
            .map(|k| Change::Put(entry(k))),
        );
        let keys: Vec<&str> = m.with_prefix("/skydns/t/mx/").map(|e| &*e.key).collect();
        assert_eq!(keys, ["/skydns/t/mx/a", "/skydns/t/mx/b"]);
        assert!(m.exact("/skydns/t/mx").is_some());
        m.apply(3, [Change::Delete("/skydns/t/mx/a".into())]);
        assert_eq!(m.with_prefix("/skydns/t/mx/").count(), 1);
        assert_eq!(m.revision(), 3);
        // A put of a key already there replaces its entry (the key is the entry's own).
        let changed = Arc::new(decode("/skydns/t/mx", br#"{"host":"10.0.0.9"}"#, 0).unwrap());
        m.apply(4, [Change::Put(changed)]);
        assert_eq!(m.exact("/skydns/t/mx").unwrap().host, "10.0.0.9".into());
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_zone_serial_moves_only_with_its_own_keys() {
        let zones = ["/skydns/a".to_string(), "/skydns/b".to_string()];
        let mut m = Mirror::new(&zones, 1);
        m.apply(5, [Change::Put(entry("/skydns/a/x"))]);
        assert_eq!((m.serial(0), m.serial(1)), (5, 0));
        m.apply(6, [Change::Put(entry("/skydns/bb/x"))]);
        assert_eq!((m.serial(0), m.serial(1)), (5, 0), "bb is not b");
        m.apply(7, [Change::Delete("/skydns/b/y".into())]);
        assert_eq!((m.serial(0), m.serial(1)), (5, 7));
    }

    #[test]
    fn a_relist_keeps_serials_of_unchanged_zones() {
        let zones = ["/skydns/a".to_string(), "/skydns/b".to_string()];
        let before = Mirror::from_listing(
            &zones,
            10,
            [(entry("/skydns/a/x"), 4), (entry("/skydns/b/x"), 9)],
            None,
        );
        assert_eq!((before.serial(0), before.serial(1)), (4, 9));
        let after = Mirror::from_listing(&zones, 20, [(entry("/skydns/a/x"), 4)], Some(&before));
        assert_eq!((after.serial(0), after.serial(1)), (4, 20));
    }
}
