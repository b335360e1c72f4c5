//! `TxtRecord`: a DNS-SD instance's TXT strings read as attributes by RFC 6763 §6, so every
//! caller gets the same answer to "what is `path`?" whatever the server's spelling or repeats.

/// The attributes of a DNS-SD instance (RFC 6763 §6), in the order the server sent them.
///
/// Built by the rules of §6.4 and §6.5, which make different encodings of the same data read the
/// same: keys are compared case-insensitively and kept lower-cased; only the first occurrence of
/// a key counts; `key` without `=` is a boolean attribute (present, no value); `key=` has an
/// empty value; a string starting with `=` (no key) or whose key is not printable US-ASCII is
/// ignored; one empty string, no strings and no TXT record at all all mean "no attributes".
/// Values are opaque bytes: most are UTF-8 text, but §6.5 allows binary data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxtRecord {
    attributes: Vec<(String, Option<Vec<u8>>)>,
}

impl TxtRecord {
    /// Reads the character-strings of a TXT record (in wire order) as attributes.
    pub fn from_strings<S: AsRef<[u8]>>(strings: impl IntoIterator<Item = S>) -> Self {
        let mut attributes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for string in strings {
            let string = string.as_ref();
            let (key, value) = match string.iter().position(|&b| b == b'=') {
                Some(eq) => (&string[..eq], Some(string[eq + 1..].to_vec())),
                None => (string, None),
            };
            // §6.4: at least one printable US-ASCII character, '=' excluded (it ended the key).
            if key.is_empty() || !key.iter().all(|b| (0x20..=0x7e).contains(b)) {
                continue;
            }
            let key = String::from_utf8_lossy(key).to_ascii_lowercase();
            if attributes.iter().all(|(k, _)| *k != key) {
                attributes.push((key, value));
            }
        }
        Self { attributes }
    }

    /// The attribute `key` (any case): `None` when absent, `Some(None)` for a boolean attribute
    /// (`key` without `=`), `Some(Some(value))` otherwise (`key=` gives an empty value).
    pub fn get(&self, key: &str) -> Option<Option<&[u8]>> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `key` as text, if present with a UTF-8 value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        std::str::from_utf8(self.get(key)??).ok()
    }

    /// Whether `key` (any case) is present, with or without a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The attributes in the server's order: lower-cased key, value (`None`: boolean attribute).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// How many attributes there are.
    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    /// Whether there are none (the RFC 6763 "empty TXT record").
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::TxtRecord;

    #[test]
    fn rfc_6763_section_6_rules() {
        let txt = TxtRecord::from_strings([
            &b"txtvers=1"[..],
            b"Path=/api",
            b"PATH=/ignored",
            b"secure",
            b"empty=",
            b"=no-key",
            b"",
            b"bin=\x00\xff",
            b"k\x01=control",
        ]);
        let keys: Vec<&str> = txt.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["txtvers", "path", "secure", "empty", "bin"]);
        assert_eq!(txt.get("path"), Some(Some(&b"/api"[..])));
        assert_eq!(txt.get_str("PaTh"), Some("/api"));
        assert_eq!(txt.get("secure"), Some(None));
        assert!(txt.contains_key("SECURE"));
        assert_eq!(txt.get("empty"), Some(Some(&b""[..])));
        assert_eq!(txt.get("bin"), Some(Some(&b"\x00\xff"[..])));
        assert_eq!(txt.get_str("bin"), None);
        assert_eq!(txt.get("missing"), None);
    }

    #[test]
    fn one_empty_string_no_strings_and_no_record_are_all_empty() {
        assert!(TxtRecord::from_strings([b""]).is_empty());
        assert!(TxtRecord::from_strings(Vec::<Vec<u8>>::new()).is_empty());
        assert_eq!(TxtRecord::from_strings([b""]), TxtRecord::default());
    }

    #[test]
    fn a_value_may_hold_equals_signs_and_spaces() {
        let txt = TxtRecord::from_strings([b"q=a=b c"]);
        assert_eq!(txt.get_str("q"), Some("a=b c"));
        assert_eq!(txt.len(), 1);
    }
}
