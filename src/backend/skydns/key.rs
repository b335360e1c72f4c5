//! SkyDNS keys ⇄ names (CoreDNS `plugin/etcd/msg/path.go`).
//!
//! A name's key is its labels reversed under the prefix: `x1._http._tcp.backend.service.local.`
//! ⇄ `/skydns/local/service/backend/_tcp/_http/x1`. Lookups always use the lower-cased name;
//! key → name (`Domain`) drops exactly one leading prefix segment, as CoreDNS does.

use hickory_proto::rr::Name;

/// The root path for a prefix: `skydns`, `/skydns` and `/skydns/` all give `/skydns` (CoreDNS
/// builds `"/" + prefix + "/"` and `path.Join` cleans it).
pub fn root_path(prefix: &str) -> String {
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

/// Appends `/label`, lower-cased (a label that is not UTF-8 is appended as `from_utf8_lossy`
/// writes it, as Go's string conversion does), to `out`; returns where the label starts. No
/// allocation per label: a query builds a path for every read.
fn push_label(out: &mut String, label: &[u8]) -> usize {
    if !out.ends_with('/') {
        out.push('/');
    }
    let start = out.len();
    out.push_str(&String::from_utf8_lossy(label));
    out[start..].make_ascii_lowercase();
    start
}

/// The capacity a path for `name` needs (labels, separators, the root).
fn path_capacity(name: &Name, root: &str) -> usize {
    root.len() + name.len() + 2
}

/// `Path`: the key of `name` under `root` (from [`root_path`]).
pub fn path(name: &Name, root: &str) -> String {
    let mut out = String::with_capacity(path_capacity(name, root));
    out.push_str(root);
    for label in name.iter().rev() {
        push_label(&mut out, label);
    }
    out
}

/// The prefix of every key strictly below `path` (`path` + `/`, as CoreDNS's recursive `get`).
pub fn subtree_prefix(path: &str) -> String {
    if path.ends_with('/') {
        path.to_string()
    } else {
        let mut out = String::with_capacity(path.len() + 1);
        out.push_str(path);
        out.push('/');
        out
    }
}

/// Whether a label is a SkyDNS wildcard (`*` or `any`, after lower-casing).
pub fn is_wildcard(label: &str) -> bool {
    label == "*" || label == "any"
}

/// `PathWithWildcard`: the key to read for `name`, cut before its first wildcard label, and
/// whether there was one.
pub fn path_with_wildcard(name: &Name, root: &str) -> (String, bool) {
    let mut out = String::with_capacity(path_capacity(name, root) + 1);
    out.push_str(root);
    for label in name.iter().rev() {
        let before = out.len();
        let start = push_label(&mut out, label);
        if is_wildcard(&out[start..]) {
            out.truncate(before);
            return (out, true);
        }
    }
    (out, false)
}

/// Whether `key` matches the wildcard name whose full path split on `/` is `segments`: every
/// non-wildcard segment equal, and the key at least as deep (`loopNodes` in `etcd.go`).
pub fn matches_wildcard(key: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    if parts.len() < segments.len() {
        return false;
    }
    segments
        .iter()
        .zip(&parts)
        .all(|(want, got)| is_wildcard(want) || want == got)
}

/// `Domain`: the name a key stands for.
///
/// # Errors
/// A segment that is not a DNS label (empty, or over 63 bytes), or a name over 255 bytes.
pub fn name_of_key(key: &str) -> Result<Name, String> {
    // One trailing '/' ends no label; what precedes the first '/' and the prefix segment after
    // it are dropped; the rest are the labels, last first. No allocation but the name's own:
    // the initial read makes one per key.
    let trimmed = key.strip_suffix('/').unwrap_or(key);
    let Some(labels) = trimmed.splitn(3, '/').nth(2) else {
        return Ok(Name::root());
    };
    let mut name = Name::from_labels(labels.rsplit('/').map(str::as_bytes))
        .map_err(|e| format!("{key}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// Drops `strip` labels from the left of `name`; if that would remove every label, the name is
/// kept whole (`targetStrip` in `msg/service.go`).
pub fn target_strip(name: &Name, strip: i64) -> Name {
    if strip <= 0 {
        return name.clone();
    }
    let labels = usize::from(name.num_labels());
    let strip = usize::try_from(strip).unwrap_or(usize::MAX);
    if strip >= labels {
        return name.clone();
    }
    let mut out = name.clone();
    for _ in 0..strip {
        out = out.base_name();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn name_and_key_round_trip_under_the_prefix() {
        let root = root_path("/skydns/");
        assert_eq!(root, "/skydns");
        assert_eq!(root_path("skydns"), "/skydns");
        let key = path(&n("X1._http._tcp.backend.service.local."), &root);
        assert_eq!(key, "/skydns/local/service/backend/_tcp/_http/x1");
        assert_eq!(
            name_of_key(&key).unwrap(),
            n("x1._http._tcp.backend.service.local.")
        );
        assert_eq!(path(&Name::root(), &root), "/skydns");
        assert_eq!(name_of_key("/skydns").unwrap(), Name::root());
        assert_eq!(name_of_key("/skydns/test/").unwrap(), n("test."));
    }

    /// The old reading of a key, segment list first, as the reference for edge cases.
    fn name_of_key_by_segments(key: &str) -> Result<Name, String> {
        let mut parts: Vec<&str> = key.split('/').collect();
        if parts.last() == Some(&"") {
            parts.pop();
        }
        let labels: Vec<&str> = parts.iter().skip(2).rev().copied().collect();
        if labels.is_empty() {
            return Ok(Name::root());
        }
        let mut name = Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .map_err(|e| format!("{key}: {e}"))?;
        name.set_fqdn(true);
        Ok(name)
    }

    #[test]
    fn name_of_key_reads_edge_keys_as_the_segment_list_did() {
        for key in [
            "",
            "/",
            "//",
            "a",
            "/skydns",
            "/skydns/",
            "/skydns//",
            "/skydns/x",
            "/skydns/x/",
            "/skydns/x//",
            "/skydns//x",
            "skydns/a/b",
            "/s/t/u/v/w",
            "/s/t/u/v/w/",
        ] {
            assert_eq!(name_of_key(key), name_of_key_by_segments(key), "{key:?}");
        }
    }

    #[test]
    fn only_one_prefix_segment_is_dropped() {
        // Multi-segment prefixes give wrong key-derived names in CoreDNS too.
        assert_eq!(name_of_key("/a/b/test/x").unwrap(), n("x.test.b."));
    }

    #[test]
    fn wildcards_cut_the_path_and_match_any_label() {
        let root = root_path("skydns");
        let name = n("prod.*.skydns.test.");
        assert_eq!(
            path_with_wildcard(&name, &root),
            ("/skydns/test/skydns".into(), true)
        );
        let full = path(&name, &root);
        let segments: Vec<&str> = full.split('/').collect();
        assert!(matches_wildcard(
            "/skydns/test/skydns/region1/prod",
            &segments
        ));
        assert!(matches_wildcard(
            "/skydns/test/skydns/region1/prod/deeper",
            &segments
        ));
        assert!(!matches_wildcard(
            "/skydns/test/skydns/region1/dev",
            &segments
        ));
        assert!(!matches_wildcard("/skydns/test/skydns/region1", &segments));
        assert!(path_with_wildcard(&n("ANY.skydns.test."), &root).1);
    }

    #[test]
    fn target_strip_keeps_the_name_when_it_would_strip_everything() {
        assert_eq!(target_strip(&n("a.b.c."), 1), n("b.c."));
        assert_eq!(target_strip(&n("a.b.c."), 3), n("a.b.c."));
        assert_eq!(target_strip(&n("a.b.c."), 0), n("a.b.c."));
    }
}
