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
use serde_json::Value;

use super::key::name_of_key;
use crate::backend::{DEFAULT_PRIORITY, HostKind, ServiceEntry, SkipReason, json_type};

/// Decodes the value stored at `key` (with its lease ID, 0 for none).
///
/// # Errors
/// The [`SkipReason`] for a key or value srvd cannot serve.
pub fn decode(key: &str, value: &[u8], lease: i64) -> Result<ServiceEntry, SkipReason> {
    let key_name = name_of_key(key).map_err(SkipReason::BadKey)?;
    let json: Value =
        serde_json::from_slice(value).map_err(|e| SkipReason::NotJson(e.to_string()))?;
    let mut entry = ServiceEntry {
        depth: key.matches('/').count(),
        key: key.to_string(),
        key_name,
        host: String::new(),
        kind: HostKind::Empty,
        port: 0,
        priority: 0,
        weight: 0,
        text: String::new(),
        mail: false,
        ttl: 0,
        target_strip: 0,
        group: String::new(),
        lease,
    };
    match json {
        Value::Object(fields) => {
            for (name, value) in &fields {
                set_field(&mut entry, name, value)?;
            }
        }
        // Go: unmarshalling `null` into a struct changes nothing.
        Value::Null => {}
        other => {
            return Err(SkipReason::NotJson(format!(
                "expected an object, found {}",
                json_type(&other)
            )));
        }
    }
    if entry.priority == 0 {
        entry.priority = DEFAULT_PRIORITY;
    }
    entry.kind = host_kind(&entry.host, &entry.text)?;
    Ok(entry)
}

fn set_field(entry: &mut ServiceEntry, name: &str, value: &Value) -> Result<(), SkipReason> {
    if value.is_null() {
        return Ok(());
    }
    match name.to_ascii_lowercase().as_str() {
        "host" => entry.host = string(value, "host")?,
        "text" => entry.text = string(value, "text")?,
        "group" => entry.group = string(value, "group")?,
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

fn ranged(
    value: &Value,
    field: &'static str,
    range: std::ops::RangeInclusive<i64>,
    expected: &'static str,
) -> Result<i64, SkipReason> {
    value
        .as_i64()
        .filter(|v| range.contains(v))
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
    Ok(HostKind::Name(name))
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
            HostKind::Name(Name::from_ascii("127.0.0.257.").unwrap())
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
}
