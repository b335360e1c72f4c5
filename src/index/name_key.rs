//! Name keys: a domain name as bytes that sort so that every subtree is one contiguous range.
//!
//! A key is the name's labels from the root down, each as `[len][lowercased bytes]`. Because the
//! length prefix makes the encoding unambiguous, a key is a byte prefix of another exactly when the
//! first name is an ancestor of (or equal to) the second. That gives exact, subtree ("is this an
//! empty non-terminal?") and closest-encloser lookups on an ordinary ordered map, and it makes
//! case-insensitive matching (RFC 4343) a byte comparison.
//!
//! [`LookupKey`] lives on the stack so that a query builds its key without allocating.

use hickory_proto::rr::Name;

/// Longest possible key: a name is at most 255 octets in wire form, and the key drops the final
/// root byte.
const MAX_KEY_LEN: usize = 255;
/// A name has at most 127 labels (each at least 2 wire octets).
const MAX_LABELS: usize = 128;

/// The key of one name, plus where each ancestor's key ends, built on the stack.
#[derive(Clone)]
pub struct LookupKey {
    bytes: [u8; MAX_KEY_LEN],
    len: usize,
    /// `ends[i]` is the key length of the ancestor with `i` labels (`ends[0] == 0`, the root).
    ends: [u8; MAX_LABELS],
    labels: usize,
}

impl LookupKey {
    /// Builds the key of `name`, lowercasing ASCII letters.
    pub fn from_name(name: &Name) -> Self {
        let mut key = Self {
            bytes: [0; MAX_KEY_LEN],
            len: 0,
            ends: [0; MAX_LABELS],
            labels: 0,
        };
        for label in name.iter().rev() {
            // invariant: hickory's `Name` enforces 63-octet labels and 255 octets in all, so the
            // key (same size minus the root byte) always fits.
            let end = key.len + 1 + label.len();
            if end > MAX_KEY_LEN || key.labels + 1 >= MAX_LABELS {
                break;
            }
            key.bytes[key.len] = label.len() as u8;
            for (dst, src) in key.bytes[key.len + 1..end].iter_mut().zip(label) {
                *dst = src.to_ascii_lowercase();
            }
            key.len = end;
            key.labels += 1;
            key.ends[key.labels] = end as u8;
        }
        key
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Number of labels (the root has 0).
    pub fn label_count(&self) -> usize {
        self.labels
    }

    /// The key of the ancestor with `labels` labels (`labels <= label_count()`).
    pub fn ancestor(&self, labels: usize) -> &[u8] {
        &self.bytes[..usize::from(self.ends[labels.min(self.labels)])]
    }

    /// Whether this name is `zone` or below it, `zone` being another key.
    pub fn is_within(&self, zone: &[u8]) -> bool {
        self.as_bytes().starts_with(zone)
    }
}

/// Builds the owned key of `name` (for map keys, built once at load time).
pub fn owned_key(name: &Name) -> Box<[u8]> {
    LookupKey::from_name(name).as_bytes().into()
}

/// The key of the wildcard child `*.<parent>`, written into `buf`.
pub fn wildcard_child<'b>(parent: &[u8], buf: &'b mut [u8; MAX_KEY_LEN + 2]) -> Option<&'b [u8]> {
    let len = parent.len() + 2;
    if len > buf.len() {
        return None;
    }
    buf[..parent.len()].copy_from_slice(parent);
    buf[parent.len()] = 1;
    buf[parent.len() + 1] = b'*';
    Some(&buf[..len])
}

/// Scratch space for [`wildcard_child`].
pub fn wildcard_buffer() -> [u8; MAX_KEY_LEN + 2] {
    [0; MAX_KEY_LEN + 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Vec<u8> {
        LookupKey::from_name(&Name::from_ascii(s).unwrap())
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn ancestors_are_byte_prefixes_and_case_is_folded() {
        let child = key("_HTTP._tcp.Web.service.local.");
        assert!(child.starts_with(&key("service.local.")));
        assert!(child.starts_with(&key("web.SERVICE.local.")));
        assert!(!key("ab.local.").starts_with(&key("a.local.")));
        assert_eq!(key("A.B."), key("a.b."));
    }

    #[test]
    fn ancestor_slices_match_the_ancestor_names() {
        let k = LookupKey::from_name(&Name::from_ascii("x.y.z.").unwrap());
        assert_eq!(k.label_count(), 3);
        assert_eq!(k.ancestor(0), &[] as &[u8]);
        assert_eq!(k.ancestor(2), key("y.z.").as_slice());
        assert_eq!(k.ancestor(3), key("x.y.z.").as_slice());
    }

    #[test]
    fn wildcard_child_key_equals_the_key_of_the_star_name() {
        let parent = key("service.local.");
        let mut buf = wildcard_buffer();
        assert_eq!(
            wildcard_child(&parent, &mut buf).unwrap(),
            key("*.service.local.").as_slice()
        );
    }
}
