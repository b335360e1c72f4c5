//! The service-registry layout: `PREFIX/<service>/<instance-id>` → [`RegistryEntry`].
//!
//! Go services already write their instances to etcd in one of two shapes, and srvd reads them
//! as written rather than asking anyone to re-register: the service-instance form
//! (`{"Addr": "10.0.1.10", "Port": 8080, "Weight": 50, "Metadata": {…}}`, optional `Priority`,
//! `Proto`, `Tags`) and etcd's gRPC naming endpoints (`{"Addr": "10.0.1.10:8080", "Metadata": …}`,
//! `go.etcd.io/etcd/client/v3/naming/endpoints`). Both are decoded the way Go's `encoding/json`
//! fills a struct: field names match case-insensitively (the last of two spellings wins), unknown
//! fields are ignored, `null` is the same as absent, a number where Go has an `int` must be an
//! integer. Everything an answer needs is checked here, once, so the answer side never meets a
//! value it cannot encode. No logging, no I/O: the caller counts and logs skips naming the key.
//!
//! Decisions where the sources leave room (the rest follows the issue's value rules):
//! - **Port 0 is no port.** Go writes an unset `int` as 0, so `"Port": 0` (or `host:0`) means
//!   "not given"; a value without any port is skipped. When `Addr` carries a port, `Port` may be
//!   absent, 0 or the same number; a different one is a conflict and skips the value.
//! - **Priority and weight** are taken as written when present, 0 included (RFC 2782's most
//!   preferred priority; a weight-0 instance is picked last), and default to 10 and 1 when absent
//!   or `null`. Unlike the SkyDNS layout, priority 0 is not rewritten to 10.
//! - **The service label** is the `<service>` segment lower-cased, and must be an LDH label of at
//!   most 62 octets (so `_<service>` fits one label). RFC 6335's 15-character limit is not
//!   enforced: Go service names are often longer, and DNS does not need it.
//! - **The instance label** is the `<instance-id>` segment as written (case kept; it is the first
//!   label of the instance name): any UTF-8 of 1 to 63 octets without ASCII control characters
//!   (RFC 6763 §4.1.1), `.` and spaces included (etcd's endpoints are often keyed by
//!   `host:port`). It is not NFC-normalised. Two ids that differ only in ASCII case name the same
//!   DNS instance; telling such keys apart is the index's job, not a value's.
//! - **Host-name targets** must be LDH names (labels of letters, digits and hyphens, at most 253
//!   octets); they are made absolute.
//! - **TXT from a `Metadata` object**: one `key=value` per key in the order written (Go writes a
//!   map's keys sorted, a struct's fields in declaration order, so the order is stable for a
//!   writer; a writer may put `txtvers` first, as RFC 6763 §6.7 recommends). A key that repeats
//!   another case-insensitively is dropped, keeping the first (what RFC 6763 §6.4 makes clients
//!   do anyway); a key that is empty, holds `=` or anything but printable ASCII, or a string over
//!   255 octets is dropped whole, never truncated (a cut value is a wrong value); strings past the
//!   65,535 octets one TXT record can hold are dropped. Every drop is listed in
//!   [`RegistryEntry::dropped`] so the caller can warn: the instance itself still serves.
//! - **Tags** are lower-cased and de-duplicated (DNS compares labels case-insensitively); a tag
//!   that cannot be a subtype label `_<tag>` (empty, over 62 octets, control characters) skips
//!   the value, like any other wrong field.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::Name;
use serde_json::{Map, Value};

use crate::backend::{SkipReason, json_type};

/// SRV priority of an instance whose value has none.
pub const DEFAULT_PRIORITY: u16 = 10;
/// SRV weight of an instance whose value has none (Consul's default).
pub const DEFAULT_WEIGHT: u16 = 1;
/// Longest character-string in a TXT record (RFC 1035 §3.3).
const TXT_STRING_MAX: usize = 255;
/// Longest TXT RDATA: every string costs its length plus one length octet.
const TXT_RDATA_MAX: usize = 65_535;
/// Longest label (RFC 1035 §2.3.4).
const LABEL_MAX: usize = 63;

/// Where an instance is reached: the SRV target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An address (IPv4-mapped IPv6 counts as IPv4); the answer side names it inside the zone.
    Address(IpAddr),
    /// A host name, absolute; resolved by the client (glue only if inside the zone).
    Host(Name),
}

/// The transport label of the service type (`_tcp` or `_udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// `_tcp`, the default.
    #[default]
    Tcp,
    /// `_udp`.
    Udp,
}

/// One decoded registry value: a live instance of a service, with what its key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The etcd key.
    pub key: String,
    /// The service label, lower-case, without the leading `_`.
    pub service: String,
    /// The instance label exactly as the key spells it.
    pub instance: String,
    /// Where the instance is reached.
    pub target: Target,
    /// 1..=65535.
    pub port: u16,
    /// RFC 2782 priority.
    pub priority: u16,
    /// RFC 2782 weight, served as written.
    pub weight: u16,
    /// `_tcp` or `_udp`.
    pub proto: Proto,
    /// Subtype tags, lower-case, unique, in the order written.
    pub tags: Vec<String>,
    /// TXT strings from `Metadata`; empty when there is none (answered as one empty string).
    pub txt: Vec<String>,
    /// Metadata left out of `txt`, one note each (which key, and why), for the caller to warn.
    pub dropped: Vec<String>,
    /// The key's lease ID, 0 for none.
    pub lease: i64,
}

/// Decodes the value stored at `key` under `prefix` (e.g. `/services`), with its lease ID.
///
/// # Errors
/// The [`SkipReason`] for a key or value that cannot be served.
pub fn decode(
    prefix: &str,
    key: &str,
    value: &[u8],
    lease: i64,
) -> Result<RegistryEntry, SkipReason> {
    let (service, instance) = labels_of_key(prefix, key).map_err(SkipReason::BadKey)?;
    let json: Value =
        serde_json::from_slice(value).map_err(|e| SkipReason::NotJson(e.to_string()))?;
    let Value::Object(fields) = json else {
        return Err(SkipReason::NotJson(format!(
            "expected a registry object with \"Addr\", found {}",
            json_type(&json)
        )));
    };
    let fields = Fields::of(&fields);

    let addr = match fields.get("addr") {
        None => {
            return Err(SkipReason::MissingField {
                field: "Addr",
                expected: "an IP address, a host name, or either with :port",
            });
        }
        Some(addr) => addr.as_str().ok_or(SkipReason::BadField {
            field: "Addr",
            expected: "a string",
        })?,
    };
    let (target, addr_port) = split_addr(addr)?;
    let port_field = match fields.get("port") {
        None => 0,
        Some(port) => ranged(port, "Port", "an integer from 0 to 65535")?,
    };
    let port = match (addr_port, port_field) {
        (0, 0) => {
            return Err(SkipReason::MissingField {
                field: "Port",
                expected: "a port from 1 to 65535, in \"Port\" or in \"Addr\" as host:port",
            });
        }
        (0, port) | (port, 0) => port,
        (a, p) if a == p => a,
        _ => {
            return Err(SkipReason::BadField {
                field: "Port",
                expected: "absent, 0, or the port that \"Addr\" carries",
            });
        }
    };
    let priority = match fields.get("priority") {
        None => DEFAULT_PRIORITY,
        Some(v) => ranged(v, "Priority", "an integer from 0 to 65535")?,
    };
    let weight = match fields.get("weight") {
        None => DEFAULT_WEIGHT,
        Some(v) => ranged(v, "Weight", "an integer from 0 to 65535")?,
    };
    let proto = match fields.get("proto") {
        None => Proto::Tcp,
        Some(v) => proto(v)?,
    };
    let tags = match fields.get("tags") {
        None => Vec::new(),
        Some(v) => tags(v)?,
    };
    let (txt, dropped) = match fields.get("metadata") {
        None => (Vec::new(), Vec::new()),
        Some(v) => metadata(v)?,
    };
    Ok(RegistryEntry {
        key: key.to_string(),
        service,
        instance,
        target,
        port,
        priority,
        weight,
        proto,
        tags,
        txt,
        dropped,
        lease,
    })
}

/// The fields Go would fill: names folded to lower case, the last spelling winning, `null`s
/// left out (Go leaves the field at its zero value, which here is "absent").
struct Fields<'a>(Vec<(String, &'a Value)>);

impl<'a> Fields<'a> {
    fn of(object: &'a Map<String, Value>) -> Self {
        Self(
            object
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }
}

/// `PREFIX/<service>/<instance-id>` → (service label, instance label).
fn labels_of_key(prefix: &str, key: &str) -> Result<(String, String), String> {
    let prefix = prefix.trim_end_matches('/');
    let rest = key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| format!("not under {prefix}/"))?;
    let mut parts = rest.split('/');
    let (Some(service), Some(instance), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("expected {prefix}/<service>/<instance-id>"));
    };
    let service = service.to_ascii_lowercase();
    if !is_ldh_label(&service) || service.len() > LABEL_MAX - 1 {
        return Err(format!(
            "service {service:?} is not a DNS label (letters, digits and inner hyphens, at most 62)"
        ));
    }
    if instance.is_empty()
        || instance.len() > LABEL_MAX
        || instance.chars().any(|c| c.is_ascii_control())
    {
        return Err(format!(
            "instance id {instance:?} is not one DNS label (1 to 63 octets, no control characters)"
        ));
    }
    Ok((service, instance.to_string()))
}

/// A host-name label: letters, digits and hyphens, not at either end, 1 to 63 octets.
fn is_ldh_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= LABEL_MAX
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `Addr` → the target and the port it carries (0 when none): a whole IP address first (IPv6
/// unbracketed too), then `[v6]:port`, then `host:port`, then a bare host name.
fn split_addr(addr: &str) -> Result<(Target, u16), SkipReason> {
    let bad = || SkipReason::BadHost(addr.to_string());
    if let Ok(ip) = IpAddr::from_str(addr) {
        return Ok((address(ip), 0));
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (v6, port) = rest.split_once("]:").ok_or_else(bad)?;
        let v6 = Ipv6Addr::from_str(v6).map_err(|_| bad())?;
        return Ok((address(IpAddr::V6(v6)), port_of(port).ok_or_else(bad)?));
    } else if let Some((host, port)) = addr.rsplit_once(':') {
        (host, port_of(port).ok_or_else(bad)?)
    } else {
        (addr, 0)
    };
    if let Ok(ip) = IpAddr::from_str(host) {
        // `host:port` with an IPv6 host needs brackets; an unbracketed one parsed whole above.
        return match ip {
            IpAddr::V4(_) => Ok((address(ip), port)),
            IpAddr::V6(_) => Err(bad()),
        };
    }
    host_name(host)
        .map(|name| (Target::Host(name), port))
        .ok_or_else(bad)
}

fn address(ip: IpAddr) -> Target {
    match ip {
        IpAddr::V6(v6) => Target::Address(v6.to_ipv4_mapped().map_or(ip, IpAddr::V4)),
        IpAddr::V4(_) => Target::Address(ip),
    }
}

/// A decimal port as Go's `net.SplitHostPort` users parse it: digits only, at most 65535.
fn port_of(port: &str) -> Option<u16> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

fn host_name(host: &str) -> Option<Name> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.is_empty() || trimmed.len() > 253 || !trimmed.split('.').all(is_ldh_label) {
        return None;
    }
    let mut name = Name::from_ascii(trimmed).ok()?;
    name.set_fqdn(true);
    Some(name)
}

fn ranged(value: &Value, field: &'static str, expected: &'static str) -> Result<u16, SkipReason> {
    value
        .as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(SkipReason::BadField { field, expected })
}

fn proto(value: &Value) -> Result<Proto, SkipReason> {
    match value.as_str().map(str::to_ascii_lowercase).as_deref() {
        // Go writes an unset string as "".
        Some("tcp" | "") => Ok(Proto::Tcp),
        Some("udp") => Ok(Proto::Udp),
        _ => Err(SkipReason::BadField {
            field: "Proto",
            expected: "\"tcp\" or \"udp\"",
        }),
    }
}

fn tags(value: &Value) -> Result<Vec<String>, SkipReason> {
    let bad = SkipReason::BadField {
        field: "Tags",
        expected: "an array of strings, each 1 to 62 octets without control characters",
    };
    let Value::Array(items) = value else {
        return Err(bad);
    };
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let tag = item.as_str().ok_or_else(|| bad.clone())?;
        if tag.is_empty() || tag.len() > LABEL_MAX - 1 || tag.chars().any(|c| c.is_ascii_control())
        {
            return Err(bad);
        }
        let tag = tag.to_ascii_lowercase();
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// `Metadata` → (TXT strings, notes on what was left out).
fn metadata(value: &Value) -> Result<(Vec<String>, Vec<String>), SkipReason> {
    let mut txt = Vec::new();
    let mut dropped = Vec::new();
    let mut rdata = 0usize;
    let mut add = |string: String, what: &str, txt: &mut Vec<String>, dropped: &mut Vec<String>| {
        if string.len() > TXT_STRING_MAX {
            dropped.push(format!(
                "{what}: {} octets, more than a TXT string's 255",
                string.len()
            ));
        } else if rdata + 1 + string.len() > TXT_RDATA_MAX {
            dropped.push(format!("{what}: past the 65,535 octets of one TXT record"));
        } else {
            rdata += 1 + string.len();
            txt.push(string);
        }
    };
    match value {
        Value::String(s) => add(s.clone(), "Metadata", &mut txt, &mut dropped),
        Value::Object(entries) => {
            let mut seen: Vec<String> = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let folded = key.to_ascii_lowercase();
                if key.is_empty() || !key.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'=') {
                    dropped.push(format!(
                        "Metadata key {key:?}: not 1 or more printable ASCII characters without '='"
                    ));
                    continue;
                }
                if let Some(first) = seen.iter().find(|s| **s == folded) {
                    dropped.push(format!(
                        "Metadata key {key:?}: repeats {first:?} (TXT keys are case-insensitive)"
                    ));
                    continue;
                }
                seen.push(folded);
                let value = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                add(
                    format!("{key}={value}"),
                    &format!("Metadata key {key:?}"),
                    &mut txt,
                    &mut dropped,
                );
            }
        }
        _ => {
            return Err(SkipReason::BadField {
                field: "Metadata",
                expected: "an object, a string or null",
            });
        }
    }
    Ok((txt, dropped))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const PREFIX: &str = "/services";
    const KEY: &str = "/services/web/web-01";

    fn ok(json: &str) -> RegistryEntry {
        decode(PREFIX, KEY, json.as_bytes(), 7).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Target {
        Target::Address(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    fn v6(text: &str) -> Target {
        Target::Address(IpAddr::V6(Ipv6Addr::from_str(text).unwrap()))
    }

    fn host(text: &str) -> Target {
        Target::Host(Name::from_ascii(text).unwrap())
    }

    #[test]
    fn the_service_instance_form_with_its_defaults() {
        let e = ok(r#"{"Addr": "10.0.1.10", "Port": 8080, "Weight": 50,
                       "Metadata": {"version": "2", "path": "/api"}}"#);
        assert_eq!(
            e,
            RegistryEntry {
                key: KEY.into(),
                service: "web".into(),
                instance: "web-01".into(),
                target: v4(10, 0, 1, 10),
                port: 8080,
                priority: 10,
                weight: 50,
                proto: Proto::Tcp,
                tags: vec![],
                txt: vec!["version=2".into(), "path=/api".into()],
                dropped: vec![],
                lease: 7,
            }
        );
        let e = ok(
            r#"{"Addr": "10.0.1.10", "Port": 53, "Priority": 0, "Proto": "UDP",
                       "Tags": ["Canary", "eu", "canary"]}"#,
        );
        assert_eq!((e.priority, e.weight, e.proto), (0, 1, Proto::Udp));
        assert_eq!(e.tags, ["canary", "eu"], "lower-cased, unique");
        assert!(e.txt.is_empty(), "tags never go into TXT");
    }

    /// Each `Addr` form → (target, port).
    #[test]
    fn addr_forms() {
        for (json, target, port) in [
            // etcd's gRPC naming endpoints: the port inside Addr.
            (r#"{"Addr":"10.0.1.10:8080"}"#, v4(10, 0, 1, 10), 8080),
            (r#"{"Addr":"[fd00::1]:8080"}"#, v6("fd00::1"), 8080),
            // A whole address takes Port, IPv6 unbracketed too.
            (r#"{"Addr":"fd00::1","Port":9000}"#, v6("fd00::1"), 9000),
            (r#"{"Addr":"::ffff:10.0.0.1","Port":1}"#, v4(10, 0, 0, 1), 1),
            (r#"{"Addr":"::1","Port":65535}"#, v6("::1"), 65535),
            // Host names: the SRV target.
            (r#"{"Addr":"db.internal:5432"}"#, host("db.internal."), 5432),
            (
                r#"{"Addr":"DB.Example.org.","Port":80}"#,
                host("db.example.org."),
                80,
            ),
            (r#"{"Addr":"web","Port":80}"#, host("web."), 80),
            // Port in both places, agreeing; Go's zero Port beside a host:port.
            (
                r#"{"Addr":"10.0.1.10:8080","Port":8080}"#,
                v4(10, 0, 1, 10),
                8080,
            ),
            (
                r#"{"Addr":"10.0.1.10:8080","Port":0}"#,
                v4(10, 0, 1, 10),
                8080,
            ),
            (
                r#"{"Addr":"10.0.1.10:8080","Port":null}"#,
                v4(10, 0, 1, 10),
                8080,
            ),
        ] {
            let e = ok(json);
            assert_eq!((e.target, e.port), (target, port), "{json}");
        }
    }

    #[test]
    fn field_names_match_case_insensitively_and_unknown_fields_are_ignored() {
        let e = ok(
            r#"{"addr":"10.0.0.1","PORT":81,"wEiGhT":3,"priority":4,"proto":"tcp",
                       "TAGS":["a"],"metadata":"x","Extra":{"deep":[1]},"ID":"web-01"}"#,
        );
        assert_eq!((e.port, e.weight, e.priority), (81, 3, 4));
        assert_eq!(
            (e.tags, e.txt),
            (vec!["a".to_string()], vec!["x".to_string()])
        );
        // Two spellings of one field: the last wins, as in Go.
        assert_eq!(ok(r#"{"Addr":"10.0.0.1","Port":1,"port":2}"#).port, 2);
        // null is absent: the defaults apply.
        let e = ok(
            r#"{"Addr":"10.0.0.1","Port":1,"Weight":null,"Priority":null,
                       "Proto":null,"Tags":null,"Metadata":null}"#,
        );
        assert_eq!((e.weight, e.priority, e.proto), (1, 10, Proto::Tcp));
        assert!(e.tags.is_empty() && e.txt.is_empty());
        assert_eq!(
            ok(r#"{"Addr":"10.0.0.1","Port":1,"Proto":""}"#).proto,
            Proto::Tcp
        );
    }

    #[test]
    fn metadata_becomes_txt_strings() {
        let txt = |json: &str| ok(json).txt;
        // Non-string values as their JSON text, in the order written.
        assert_eq!(
            txt(
                r#"{"Addr":"10.0.0.1","Port":1,"Metadata":{"z":"1","n":2,"b":true,
                    "nil":null,"o":{"k":[1,"x"]},"empty":""}}"#
            ),
            [
                "z=1",
                "n=2",
                "b=true",
                "nil=null",
                r#"o={"k":[1,"x"]}"#,
                "empty="
            ]
        );
        // A string: one TXT string as written (not split, `=` or not).
        assert_eq!(
            txt(r#"{"Addr":"10.0.0.1:1","Metadata":"weight=5 zone=a"}"#),
            ["weight=5 zone=a"]
        );
        assert_eq!(txt(r#"{"Addr":"10.0.0.1:1","Metadata":""}"#), [""]);
        assert!(txt(r#"{"Addr":"10.0.0.1:1","Metadata":{}}"#).is_empty());
        assert!(txt(r#"{"Addr":"10.0.0.1:1"}"#).is_empty());
    }

    #[test]
    fn metadata_that_cannot_be_one_txt_string_is_dropped_and_noted() {
        let long = "v".repeat(250);
        let json = format!(
            r#"{{"Addr":"10.0.0.1:1","Metadata":{{"Version":"1","version":"2","ok":"{long}",
                "toolong":"{long}","":"x","a=b":"x","ünï":"x","VERSION":"3"}}}}"#
        );
        let e = ok(&json);
        assert_eq!(e.txt, ["Version=1".to_string(), format!("ok={long}")]);
        assert_eq!(e.dropped.len(), 6, "{:#?}", e.dropped);
        assert!(e.dropped[0].contains("\"version\"") && e.dropped[0].contains("case"));
        assert!(e.dropped[1].contains("toolong") && e.dropped[1].contains("258 octets"));
        assert!(e.dropped[5].contains("VERSION"));
        // A string Metadata over 255 octets.
        let e = ok(&format!(
            r#"{{"Addr":"10.0.0.1:1","Metadata":"{}"}}"#,
            "x".repeat(256)
        ));
        assert!(e.txt.is_empty());
        assert_eq!(e.dropped.len(), 1);
        // Exactly 255 octets fits.
        let e = ok(&format!(
            r#"{{"Addr":"10.0.0.1:1","Metadata":"{}"}}"#,
            "x".repeat(255)
        ));
        assert_eq!(e.txt[0].len(), 255);
    }

    #[test]
    fn metadata_past_one_txt_record_is_dropped_and_noted() {
        let entries: Vec<String> = (0..300)
            .map(|i| format!(r#""k{i:03}":"{}""#, "v".repeat(240)))
            .collect();
        let json = format!(
            r#"{{"Addr":"10.0.0.1:1","Metadata":{{{}}}}}"#,
            entries.join(",")
        );
        let e = ok(&json);
        let rdata: usize = e.txt.iter().map(|s| s.len() + 1).sum();
        assert!(rdata <= 65_535, "{rdata}");
        assert_eq!(e.txt.len() + e.dropped.len(), 300);
        assert_eq!(
            e.txt.len(),
            65_535 / 246,
            "strings of 245 octets plus a length octet"
        );
    }

    #[test]
    fn keys_give_the_service_and_instance_labels() {
        let labels = |key: &str| {
            decode(PREFIX, key, br#"{"Addr":"10.0.0.1:1"}"#, 0)
                .map(|e| (e.service, e.instance))
                .map_err(|e| e.to_string())
        };
        let pair = |s: &str, i: &str| Ok((s.to_string(), i.to_string()));
        assert_eq!(labels("/services/Web/web-01"), pair("web", "web-01"));
        assert_eq!(labels("/services/api-v2/Web 01"), pair("api-v2", "Web 01"));
        // etcd's naming endpoints are often keyed by host:port.
        assert_eq!(
            labels("/services/grpc/10.0.1.10:8080"),
            pair("grpc", "10.0.1.10:8080")
        );
        assert_eq!(labels("/services/web/café-ü"), pair("web", "café-ü"));
        let max = "i".repeat(63);
        assert_eq!(labels(&format!("/services/web/{max}")), pair("web", &max));
        let service = "s".repeat(62);
        assert_eq!(
            labels(&format!("/services/{service}/i")),
            pair(&service, "i")
        );
        assert!(
            decode(
                "/services/",
                "/services/web/i",
                br#"{"Addr":"::1","Port":1}"#,
                0
            )
            .is_ok()
        );
        for (key, why) in [
            (
                "/services/web",
                "expected /services/<service>/<instance-id>",
            ),
            ("/services/web/a/b", "expected"),
            ("/services/web/", "instance id"),
            ("/services//x", "service"),
            ("/servicesx/web/x", "not under"),
            ("/other/web/x", "not under"),
            ("/services/my_svc/x", "service \"my_svc\""),
            ("/services/_web/x", "service"),
            ("/services/a.b/x", "service"),
            ("/services/-web/x", "service"),
            ("/services/web-/x", "service"),
            ("/services/wéb/x", "service"),
            ("/services/web/tab\tid", "instance id"),
        ] {
            let err = labels(key).unwrap_err();
            assert!(err.contains(why), "{key}: {err}");
        }
        let too_long = format!("/services/{}/i", "s".repeat(63));
        assert!(labels(&too_long).unwrap_err().contains("at most 62"));
        let too_long = format!("/services/web/{}", "i".repeat(64));
        assert!(labels(&too_long).unwrap_err().contains("63 octets"));
        // 63 octets of UTF-8 is the limit, not 63 characters.
        let too_long = format!("/services/web/{}", "é".repeat(32));
        assert!(labels(&too_long).is_err());
    }

    /// Values that cannot be served → the skip reason's label and the field it names.
    #[test]
    fn bad_values_are_skip_reasons() {
        for (json, label, field) in [
            ("not json", "not_json", ""),
            (r#"{"Addr":"10.0.0.1:1""#, "not_json", ""),
            (r#"["10.0.0.1:1"]"#, "not_json", ""),
            ("null", "not_json", ""),
            (r#""10.0.0.1:1""#, "not_json", ""),
            (r#"{}"#, "missing_field", "Addr"),
            (r#"{"Addr":null,"Port":1}"#, "missing_field", "Addr"),
            (r#"{"Addr":"10.0.0.1"}"#, "missing_field", "Port"),
            (r#"{"Addr":"10.0.0.1","Port":0}"#, "missing_field", "Port"),
            (r#"{"Addr":"db.internal"}"#, "missing_field", "Port"),
            (r#"{"Addr":"fd00::1"}"#, "missing_field", "Port"),
            (r#"{"Addr":"10.0.0.1:0"}"#, "missing_field", "Port"),
            (r#"{"Addr":1,"Port":1}"#, "bad_field", "Addr"),
            (r#"{"Addr":"10.0.0.1","Port":"80"}"#, "bad_field", "Port"),
            (r#"{"Addr":"10.0.0.1","Port":80.0}"#, "bad_field", "Port"),
            (r#"{"Addr":"10.0.0.1","Port":-1}"#, "bad_field", "Port"),
            (r#"{"Addr":"10.0.0.1","Port":65536}"#, "bad_field", "Port"),
            (
                r#"{"Addr":"10.0.0.1:8080","Port":9090}"#,
                "bad_field",
                "Port",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Priority":65536}"#,
                "bad_field",
                "Priority",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Priority":-1}"#,
                "bad_field",
                "Priority",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Priority":"1"}"#,
                "bad_field",
                "Priority",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Weight":65536}"#,
                "bad_field",
                "Weight",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Weight":1.5}"#,
                "bad_field",
                "Weight",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Weight":18446744073709551616}"#,
                "bad_field",
                "Weight",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Proto":"sctp"}"#,
                "bad_field",
                "Proto",
            ),
            (r#"{"Addr":"10.0.0.1:1","Proto":6}"#, "bad_field", "Proto"),
            (
                r#"{"Addr":"10.0.0.1:1","Tags":"canary"}"#,
                "bad_field",
                "Tags",
            ),
            (r#"{"Addr":"10.0.0.1:1","Tags":[1]}"#, "bad_field", "Tags"),
            (r#"{"Addr":"10.0.0.1:1","Tags":[""]}"#, "bad_field", "Tags"),
            (
                r#"{"Addr":"10.0.0.1:1","Tags":["a\nb"]}"#,
                "bad_field",
                "Tags",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Metadata":5}"#,
                "bad_field",
                "Metadata",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Metadata":["a=b"]}"#,
                "bad_field",
                "Metadata",
            ),
            (
                r#"{"Addr":"10.0.0.1:1","Metadata":true}"#,
                "bad_field",
                "Metadata",
            ),
        ] {
            match decode(PREFIX, KEY, json.as_bytes(), 0) {
                Err(e) => {
                    assert_eq!(e.label(), label, "{json}: {e}");
                    assert!(e.to_string().contains(field), "{json}: {e}");
                }
                Ok(e) => panic!("{json}: decoded as {e:?}"),
            }
        }
        let long_tag = format!(r#"{{"Addr":"10.0.0.1:1","Tags":["{}"]}}"#, "t".repeat(63));
        assert_eq!(
            decode(PREFIX, KEY, long_tag.as_bytes(), 0)
                .unwrap_err()
                .label(),
            "bad_field"
        );
    }

    #[test]
    fn addrs_that_are_neither_an_address_nor_a_host_name_are_skipped() {
        for addr in [
            "",
            ":8080",
            "10.0.0.1:",
            "10.0.0.1:http",
            "10.0.0.1:+80",
            "10.0.0.1:65536",
            "fd00::1:8080:x",
            "[fd00::1]",
            "[fd00::1]8080",
            "[10.0.0.1]:80",
            "[fd00::zz]:80",
            "fe80::1%eth0",
            "under_score.example:80",
            "-web:80",
            "a..b:80",
            "spaced host:80",
            "10.0.0.1:80:90",
        ] {
            let json = format!(r#"{{"Addr":{},"Port":1}}"#, Value::from(addr));
            let err = decode(PREFIX, KEY, json.as_bytes(), 0).unwrap_err();
            assert_eq!(err.label(), "bad_host", "{addr:?}: {err}");
        }
        let long = format!("{}.example", "a.".repeat(125));
        let json = format!(r#"{{"Addr":"{long}","Port":1}}"#);
        assert_eq!(
            decode(PREFIX, KEY, json.as_bytes(), 0).unwrap_err().label(),
            "bad_host"
        );
    }
}
