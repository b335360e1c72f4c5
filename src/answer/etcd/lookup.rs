//! Which etcd entries a question sees (CoreDNS `etcd.go` `Records`, `get`, `loopNodes`,
//! `shouldInclude`, and `msg.Group`), read from the mirror instead of etcd.

use hickory_proto::rr::{Name, RecordType};

use crate::backend::ServiceEntry;
use crate::backend::skydns::key;
use crate::index::mirror::Mirror;

/// Nothing exists at or below the name: NXDOMAIN (or the zone file's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFound;

/// The entries for `name`: its subtree (or, when that is empty, the exact key; only the exact
/// key when `exact`), filtered by `*`/`any` wildcards and by what `qtype` can use, then grouped.
///
/// At most `budget` entries are read (it is reduced by those read); a subtree larger than that
/// counts as [`NotFound`] (only further reads of a question have a finite budget). The path
/// read goes into `deps` (`index::changes`).
pub fn services<'m>(
    mirror: &'m Mirror,
    root: &str,
    name: &Name,
    qtype: RecordType,
    exact: bool,
    budget: &mut usize,
    deps: &mut Vec<u64>,
) -> Result<Vec<&'m ServiceEntry>, NotFound> {
    #[cfg(test)]
    tests::count_lookup();
    let (path, star) = key::path_with_wildcard(name, root);
    deps.push(crate::index::changes::path_hash(&path));
    let mut found: Vec<&ServiceEntry> = Vec::new();
    if exact {
        found.extend(mirror.exact(&path).map(AsRef::as_ref));
    } else if path.ends_with('/') {
        // A path that is its own subtree prefix (the root `/`): the subtree, else the key.
        found.extend(
            mirror
                .with_prefix(&path)
                .take(budget.saturating_add(1))
                .map(AsRef::as_ref),
        );
        if found.is_empty() {
            found.extend(mirror.exact(&path).map(AsRef::as_ref));
        }
    } else {
        // Subtree, else the key itself: CoreDNS's two reads, in one seek.
        found.extend(
            mirror
                .subtree_or_exact(&path, budget.saturating_add(1))
                .into_iter()
                .map(AsRef::as_ref),
        );
    }
    if found.len() > *budget {
        *budget = 0;
        return Err(NotFound);
    }
    *budget -= found.len();
    if found.is_empty() {
        return Err(NotFound);
    }
    if star {
        let full = key::path(name, root);
        let segments: Vec<&str> = full.split('/').collect();
        found.retain(|entry| key::matches_wildcard(&entry.key, &segments));
    }
    // shouldInclude: a host, or TXT data for a TXT question.
    found.retain(|entry| {
        !entry.host.is_empty() || (qtype == RecordType::TXT && !entry.text.is_empty())
    });
    Ok(group(found))
}

/// `msg.Group`: the first entry's group, overridden by shallower entries until a group-less one
/// stops the scan; group-less entries always stay; disagreement at the group's depth disables it.
fn group(entries: Vec<&ServiceEntry>) -> Vec<&ServiceEntry> {
    let Some(first) = entries.first() else {
        return entries;
    };
    let mut group = &*first.group;
    let mut slashes = first.depth;
    // Unscanned entries keep depth 0, as Go's zero-initialised slice does.
    let mut depths = vec![0u8; entries.len()];
    for (i, entry) in entries.iter().enumerate() {
        depths[i] = entry.depth;
        if entry.depth < slashes {
            if entry.group.is_empty() {
                break;
            }
            slashes = entry.depth;
            group = &*entry.group;
        }
    }
    if group.is_empty() {
        return entries;
    }
    let mut kept = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if entry.group.is_empty() {
            kept.push(*entry);
            continue;
        }
        if depths[i] == slashes && *entry.group != *group {
            return entries;
        }
        if *entry.group == *group {
            kept.push(*entry);
        }
    }
    kept
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::skydns::decode;
    use std::cell::Cell;

    thread_local! {
        /// Lookups on this thread, and the number after which a test wants to stop (fail fast
        /// instead of running an exponential walk to its end).
        static LOOKUPS: Cell<(usize, usize)> = const { Cell::new((0, usize::MAX)) };
    }

    pub(crate) fn count_lookup() {
        LOOKUPS.with(|c| {
            let (n, limit) = c.get();
            assert!(n < limit, "more than {limit} name lookups for one question");
            c.set((n + 1, limit));
        });
    }

    /// Resets the counter and panics on the lookup after `limit`.
    pub(crate) fn limit_lookups(limit: usize) {
        LOOKUPS.with(|c| c.set((0, limit)));
    }

    /// Lookups since the last [`limit_lookups`].
    pub(crate) fn lookups() -> usize {
        LOOKUPS.with(|c| c.get().0)
    }

    fn entries(list: &[(&str, &str)]) -> Vec<ServiceEntry> {
        list.iter()
            .map(|(key, group)| {
                let json = format!(r#"{{"host":"10.0.0.1","group":"{group}"}}"#);
                decode(key, json.as_bytes(), 0).unwrap()
            })
            .collect()
    }

    fn grouped(list: &[(&str, &str)]) -> Vec<String> {
        let owned = entries(list);
        group(owned.iter().collect())
            .iter()
            .map(|e| e.key.to_string())
            .collect()
    }

    #[test]
    fn groups_follow_coredns_examples() {
        // same-level disagreement ⇒ everything
        assert_eq!(grouped(&[("/s/t/a", "g1"), ("/s/t/b", "g2")]).len(), 2);
        // shallow g1 + deep g2 ⇒ g1 only
        assert_eq!(
            grouped(&[("/s/t/a/deep", "g2"), ("/s/t/b", "g1")]),
            ["/s/t/b"]
        );
        // group-less entries always kept
        assert_eq!(
            grouped(&[("/s/t/a", "g1"), ("/s/t/b", ""), ("/s/t/c", "g2")]).len(),
            3
        );
        // a/x(g1), b(none), c/y(g2) ⇒ a/x and b: the scan stopped at b
        assert_eq!(
            grouped(&[("/s/t/a/x", "g1"), ("/s/t/b", ""), ("/s/t/c/y", "g2")]),
            ["/s/t/a/x", "/s/t/b"]
        );
    }
}
