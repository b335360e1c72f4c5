//! SkyDNS values: JSON → [`ServiceEntry`] with CoreDNS's defaults (`plugin/etcd/msg/service.go`).
//!
//! Decoding follows Go's `encoding/json` into `msg.Service`: field names match case-insensitively,
//! unknown fields are ignored, `null` leaves a field at its zero value, and a wrong type (`"port":
//! "80"`, `1.5` for an int, a negative `ttl`) is an error, and so is a number outside what the
//! record field can carry (priority, weight and port are 16 bits on the wire). CoreDNS fails the whole question on
//! such an error; srvd skips the key instead (docs/coredns.md §5, deliberate differences).

use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::rr::Name;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::key::name_of_key;
use crate::backend::{DEFAULT_PRIORITY, HostKind, ServiceEntry, SkipReason, json_type};

/// Decodes the value stored at `key` (with its lease ID, 0 for none).
///
/// # Errors
/// The [`SkipReason`] for a key or value srvd cannot serve.
pub fn decode(key: &str, value: &[u8], lease: i64) -> Result<ServiceEntry, SkipReason> {
    decode_owned(key.to_string(), value, lease).map_err(|(_, reason)| reason)
}

/// [`decode`] taking the key, which becomes the entry's without a copy (the initial read
/// decodes every key once); on failure the key comes back with the reason.
///
/// # Errors
/// As [`decode`].
pub fn decode_owned(
    key: String,
    value: &[u8],
    lease: i64,
) -> Result<ServiceEntry, (Box<str>, SkipReason)> {
    let key = key.into_boxed_str();
    match decode_fields(&key, value) {
        Ok((key_name, depth, fields)) => {
            let mut entry = ServiceEntry {
                depth,
                key,
                key_name,
                host: Box::default(),
                kind: HostKind::Empty,
                port: 0,
                priority: 0,
                weight: 0,
                text: Box::default(),
                mail: false,
                ttl: 0,
                target_strip: 0,
                group: Box::default(),
                lease,
            };
            fields.apply(&mut entry);
            if entry.priority == 0 {
                entry.priority = DEFAULT_PRIORITY;
            }
            match host_kind(&entry.host, &entry.text) {
                Ok(kind) => {
                    entry.kind = kind;
                    Ok(entry)
                }
                Err(reason) => Err((entry.key, reason)),
            }
        }
        Err(reason) => Err((key, reason)),
    }
}

/// What the key and the value say, before the entry is built.
fn decode_fields(key: &str, value: &[u8]) -> Result<(Name, u8, Fields), SkipReason> {
    let key_name = name_of_key(key).map_err(SkipReason::BadKey)?;
    let depth = u8::try_from(key.matches('/').count())
        .map_err(|_| SkipReason::BadKey(format!("{key}: too many segments")))?;
    let mut fields = Fields::default();
    if read_fields(value, &mut fields).is_err() {
        // Anything unusual (bad JSON, a wrong type, a repeated field, not an object) goes the
        // way that builds the whole JSON tree first, which says exactly what is wrong.
        fields = Fields::default();
        read_tree(value, &mut fields)?;
    }
    Ok((key_name, depth, fields))
}

/// The fields of a value as Go's `encoding/json` leaves them in `msg.Service`.
#[derive(Debug, Default)]
struct Fields {
    host: Option<String>,
    text: Option<String>,
    group: Option<String>,
    port: i32,
    priority: u16,
    weight: u16,
    target_strip: i64,
    ttl: u32,
    mail: bool,
}

impl Fields {
    fn apply(self, entry: &mut ServiceEntry) {
        let boxed = |s: Option<String>| s.map(String::into_boxed_str).unwrap_or_default();
        entry.host = boxed(self.host);
        entry.text = boxed(self.text);
        entry.group = boxed(self.group);
        entry.port = self.port;
        entry.priority = self.priority;
        entry.weight = self.weight;
        entry.target_strip = u8::try_from(self.target_strip.clamp(0, 255)).unwrap_or(u8::MAX);
        entry.ttl = self.ttl;
        entry.mail = self.mail;
    }
}

/// The reference reading: the whole JSON tree, then each field in document order.
fn read_tree(value: &[u8], fields: &mut Fields) -> Result<(), SkipReason> {
    let json: Value =
        serde_json::from_slice(value).map_err(|e| SkipReason::NotJson(e.to_string()))?;
    match json {
        Value::Object(map) => {
            for (name, value) in &map {
                set_field(fields, name, value)?;
            }
            Ok(())
        }
        // Go: unmarshalling `null` into a struct changes nothing.
        Value::Null => Ok(()),
        other => Err(SkipReason::NotJson(format!(
            "expected an object, found {}",
            json_type(&other)
        ))),
    }
}

/// The fast reading of a well-formed value: field by field, values of unknown fields skipped
/// unbuilt. Gives up (`Err`) wherever [`read_tree`] could end differently: any error, and a
/// field name written twice exactly (the tree keeps its first position with its last value).
fn read_fields(value: &[u8], fields: &mut Fields) -> Result<(), ()> {
    let mut json = serde_json::Deserializer::from_slice(value);
    json.deserialize_any(FieldsVisitor(fields))
        .map_err(|_: serde_json::Error| ())?;
    json.end().map_err(|_| ())
}

struct FieldsVisitor<'f>(&'f mut Fields);

impl<'de> Visitor<'de> for FieldsVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<FieldName<'de>> = Vec::new();
        while let Some(name) = map.next_key::<FieldName<'de>>()? {
            if !is_field(&name) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen.iter().any(|s| s.as_str() == name.as_str()) {
                return Err(de::Error::custom("a field written twice"));
            }
            let value: Value = map.next_value()?;
            set_field(self.0, name.as_str(), &value).map_err(de::Error::custom)?;
            seen.push(name);
        }
        Ok(())
    }
}

/// A field name, borrowed from the value unless it has escapes.
enum FieldName<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl FieldName<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = FieldName<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName::Borrowed(s))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(FieldName::Owned(s.to_string()))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// The `msg.Service` fields srvd reads, lower-case.
const FIELDS: [&str; 9] = [
    "host",
    "text",
    "group",
    "port",
    "priority",
    "weight",
    "targetstrip",
    "ttl",
    "mail",
];

fn is_field(name: &FieldName<'_>) -> bool {
    FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name.as_str()))
}

fn set_field(entry: &mut Fields, name: &str, value: &Value) -> Result<(), SkipReason> {
    if value.is_null() {
        return Ok(());
    }
    match name.to_ascii_lowercase().as_str() {
        "host" => entry.host = Some(string(value, "host")?),
        "text" => entry.text = Some(string(value, "text")?),
        "group" => entry.group = Some(string(value, "group")?),
        // Checked here, once, so that answers never wrap a value around (-1 as 65535) and a
        // weight sum cannot overflow; port -1 is CoreDNS's "no SRV for this key".
        "port" => {
            entry.port = ranged(
                value,
                "port",
                -1..=65535,
                "an integer from 0 to 65535, or -1 (no SRV)",
            )?;
        }
        "priority" => {
            entry.priority = ranged(value, "priority", 0..=65535, "an integer from 0 to 65535")?;
        }
        "weight" => {
            entry.weight = ranged(value, "weight", 0..=65535, "an integer from 0 to 65535")?;
        }
        "targetstrip" => entry.target_strip = int(value, "targetstrip")?,
        "ttl" => {
            entry.ttl =
                value
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or(SkipReason::BadField {
                        field: "ttl",
                        expected: "an integer from 0 to 4294967295",
                    })?;
        }
        "mail" => {
            entry.mail = value.as_bool().ok_or(SkipReason::BadField {
                field: "mail",
                expected: "true or false",
            })?;
        }
        _ => {} // unknown fields are ignored, as Go does
    }
    Ok(())
}

fn string(value: &Value, field: &'static str) -> Result<String, SkipReason> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or(SkipReason::BadField {
            field,
            expected: "a string",
        })
}

fn int(value: &Value, field: &'static str) -> Result<i64, SkipReason> {
    value.as_i64().ok_or(SkipReason::BadField {
        field,
        expected: "an integer",
    })
}

/// An integer within `range`, as the field's type `T` (which holds all of `range`).
fn ranged<T: TryFrom<i64>>(
    value: &Value,
    field: &'static str,
    range: std::ops::RangeInclusive<i64>,
    expected: &'static str,
) -> Result<T, SkipReason> {
    value
        .as_i64()
        .filter(|v| range.contains(v))
        .and_then(|v| T::try_from(v).ok())
        .ok_or(SkipReason::BadField { field, expected })
}

/// `HostType` (HEAD): IPv4 and IPv4-mapped IPv6 are A, other IPv6 AAAA; a non-address is a name,
/// or TXT data when `text` is set.
fn host_kind(host: &str, text: &str) -> Result<HostKind, SkipReason> {
    if let Ok(ip) = IpAddr::from_str(host) {
        return Ok(match ip {
            IpAddr::V4(v4) => HostKind::A(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => HostKind::A(v4),
                None => HostKind::Aaaa(v6),
            },
        });
    }
    if !text.is_empty() {
        return Ok(HostKind::Txt);
    }
    if host.is_empty() {
        return Ok(HostKind::Empty);
    }
    let mut name = Name::from_ascii(host).map_err(|_| SkipReason::BadHost(host.to_string()))?;
    name.set_fqdn(true);
    Ok(HostKind::Name(Box::new(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const KEY: &str = "/skydns/local/service/backend/_tcp/_http/x1";

    fn ok(json: &str) -> ServiceEntry {
        decode(KEY, json.as_bytes(), 0).unwrap()
    }

    #[test]
    fn defaults_follow_coredns() {
        let e = ok(r#"{"host":"10.0.0.1","port":8080}"#);
        assert_eq!(e.kind, HostKind::A(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((e.port, e.priority, e.weight, e.ttl), (8080, 10, 0, 0));
        assert_eq!(
            e.key_name.to_ascii(),
            "x1._http._tcp.backend.service.local."
        );
        assert_eq!(e.depth, 7);
    }

    #[test]
    fn field_names_match_case_insensitively_and_unknown_fields_are_ignored() {
        let e = ok(r#"{"Host":"10.0.0.2","PORT":81,"extra":[1,2],"Priority":5}"#);
        assert_eq!((e.port, e.priority), (81, 5));
        assert_eq!(e.kind, HostKind::A(Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn host_types_follow_go_parse_ip() {
        assert_eq!(
            ok(r#"{"host":"::ffff:1.2.3.4"}"#).kind,
            HostKind::A(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(
            ok(r#"{"host":"fd00::1"}"#).kind,
            HostKind::Aaaa(Ipv6Addr::from_str("fd00::1").unwrap())
        );
        assert_eq!(
            ok(r#"{"host":"127.0.0.257"}"#).kind,
            HostKind::Name(Box::new(Name::from_ascii("127.0.0.257.").unwrap()))
        );
        assert_eq!(
            ok(r#"{"host":"10.0.0.1","text":"t"}"#).kind,
            HostKind::A(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(
            ok(r#"{"host":"www.example.org","text":"t"}"#).kind,
            HostKind::Txt
        );
        assert_eq!(ok(r#"{"text":"t"}"#).kind, HostKind::Txt);
        assert_eq!(ok(r#"{}"#).kind, HostKind::Empty);
        assert_eq!(ok("null").kind, HostKind::Empty);
    }

    #[test]
    fn wrong_types_and_bad_json_are_skip_reasons() {
        for (json, label) in [
            (r#"{"host":"10.0.0.1","port":"80"}"#, "bad_field"),
            (r#"{"port":1.5}"#, "bad_field"),
            (r#"{"ttl":-1}"#, "bad_field"),
            (r#"{"mail":"yes"}"#, "bad_field"),
            (r#"{"host":1}"#, "bad_field"),
            (r#"{"host":"10.0.0.1""#, "not_json"),
            (r#"[1,2]"#, "not_json"),
            (r#"not json"#, "not_json"),
        ] {
            let err = decode(KEY, json.as_bytes(), 0).unwrap_err();
            assert_eq!(err.label(), label, "{json}: {err}");
        }
        let err = decode("/skydns/local//x", b"{}", 0).unwrap_err();
        assert_eq!(err.label(), "bad_key", "{err}");
    }

    #[test]
    fn numbers_outside_their_wire_range_are_skipped_not_wrapped() {
        for (json, field) in [
            (r#"{"host":"10.0.0.1","priority":-1}"#, "priority"),
            (r#"{"host":"10.0.0.1","priority":65546}"#, "priority"),
            (r#"{"host":"10.0.0.1","weight":-3}"#, "weight"),
            (r#"{"host":"10.0.0.1","weight":65536}"#, "weight"),
            (
                r#"{"host":"10.0.0.1","weight":9223372036854775807}"#,
                "weight",
            ),
            (r#"{"host":"10.0.0.1","port":-5}"#, "port"),
            (r#"{"host":"10.0.0.1","port":70000}"#, "port"),
        ] {
            match decode(KEY, json.as_bytes(), 0) {
                Err(SkipReason::BadField { field: f, expected }) => {
                    assert_eq!(f, field, "{json}");
                    assert!(expected.contains("65535"), "{json}: expected {expected:?}");
                }
                other => panic!("{json}: expected a bad {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn numbers_at_the_edges_of_their_range_keep_coredns_meanings() {
        let e = ok(r#"{"host":"10.0.0.1","priority":65535,"weight":65535,"port":65535}"#);
        assert_eq!((e.priority, e.weight, e.port), (65535, 65535, 65535));
        // Priority 0 is CoreDNS's default 10; port -1 is kept (it drops the SRV when answering).
        let e = ok(r#"{"host":"10.0.0.1","priority":0,"weight":0,"port":-1}"#);
        assert_eq!((e.priority, e.weight, e.port), (10, 0, -1));
    }

    /// The field-by-field reading must end where the whole-tree reading ends, or give up.
    #[test]
    fn the_fast_reading_agrees_with_the_tree_or_gives_up() {
        for json in [
            r#"{"host":"10.0.0.1","port":8080,"priority":20,"weight":5,"ttl":30}"#,
            r#"{"HOST":"a.example","Port":-1,"TargetStrip":2,"mail":true,"group":"g"}"#,
            r#"{"host":"10.0.0.1","Host":"10.0.0.2","host":"10.0.0.3"}"#,
            r#"{"h\u006fst":"10.0.0.4","text":"t\"x","extra":{"a":[1,{"b":null}]}}"#,
            r#"{"host":null,"port":null,"text":"only"}"#,
            r#"{"host":"10.0.0.1","port":80.0}"#,
            r#"{"host":"10.0.0.1"} x"#,
            r#"null"#,
            r#"[1]"#,
            r#"{}"#,
        ] {
            let mut tree = Fields::default();
            let tree = read_tree(json.as_bytes(), &mut tree).map(|()| format!("{tree:?}"));
            let mut fast = Fields::default();
            if read_fields(json.as_bytes(), &mut fast).is_ok() {
                assert_eq!(Ok(format!("{fast:?}")), tree, "{json}");
            } else {
                assert!(
                    tree.is_err() || json.contains(r#""host":"10.0.0.3""#),
                    "{json}: gave up on a value the tree reads"
                );
            }
        }
        // A field written twice keeps the tree's answer: its first place, its last value.
        let e = ok(r#"{"host":"10.0.0.1","Host":"10.0.0.2","host":"10.0.0.3"}"#);
        assert_eq!(e.kind, HostKind::A(Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn targetstrip_beyond_any_label_count_or_negative_keeps_its_meaning() {
        assert_eq!(ok(r#"{"targetstrip":-4}"#).target_strip, 0);
        assert_eq!(ok(r#"{"targetstrip":3}"#).target_strip, 3);
        assert_eq!(ok(r#"{"targetstrip":9000000000}"#).target_strip, 255);
    }
}
