//! Backends: how one etcd key/value becomes a [`ServiceEntry`], or a [`SkipReason`].
//!
//! Two layouts: the SkyDNS one that CoreDNS's `etcd` plugin reads ([`skydns`]), and the service
//! registry Go services write ([`registry`]: decoded, not yet served). Nothing here logs or does
//! I/O: callers count and log skips once, naming the key.

pub mod registry;
pub mod skydns;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// CoreDNS's default SRV priority and MX preference when a value has none (`etcd.go`).
pub const DEFAULT_PRIORITY: u16 = 10;
/// CoreDNS's default record TTL when a value has none (`etcd.go`).
pub const DEFAULT_TTL_SECS: u32 = 300;

/// What a value's `host` holds, decided as CoreDNS's `HostType` does (HEAD): an IPv4 address
/// (IPv4-mapped IPv6 included) is A, any other IPv6 address AAAA, anything else a name, unless
/// the value also has text, which makes it a TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// `host` is an IPv4 address.
    A(Ipv4Addr),
    /// `host` is an IPv6 address.
    Aaaa(Ipv6Addr),
    /// `host` is a domain name (the CNAME/SRV/MX/PTR target), made absolute. Boxed: a `Name`
    /// is 80 bytes inline, which every entry would carry, address or not.
    Name(Box<Name>),
    /// `host` is not an address and `text` is set: the value is TXT data only.
    Txt,
    /// `host` and `text` are both empty: the key exists but answers nothing.
    Empty,
}

/// One decoded etcd value with CoreDNS's defaults applied, plus what the key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The etcd key (boxed, not a `String`: 700,000 of them spend no capacity field).
    pub key: Box<str>,
    /// The name the key stands for (`Domain` in CoreDNS's `msg/path.go`).
    pub key_name: Name,
    /// Number of `/` in the key (the depth CoreDNS's groups compare): at most 129, since every
    /// segment after the prefix's is a label of a name of at most 127 labels.
    pub depth: u8,
    /// `host` as written.
    pub host: Box<str>,
    /// What `host` is.
    pub kind: HostKind,
    /// `port`: 0..=65535, or `-1`, which drops the SRV (checked at decode time).
    pub port: i32,
    /// `priority`: 1..=65535, 0 or absent replaced by [`DEFAULT_PRIORITY`].
    pub priority: u16,
    /// `weight`: 0..=65535 as written (0 counts as 100 when normalised).
    pub weight: u16,
    /// `text`.
    pub text: Box<str>,
    /// `mail`: the value is also an MX.
    pub mail: bool,
    /// `ttl` as written; 0 means unset.
    pub ttl: u32,
    /// `targetstrip`, with negative values as 0 and values over 255 as 255: a name has at most
    /// 127 labels, and stripping as many or more keeps it whole, as any larger count does.
    pub target_strip: u8,
    /// `group`.
    pub group: Box<str>,
    /// The key's lease ID, 0 for none.
    pub lease: i64,
}

/// Why a key was not mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The key is not UTF-8 or does not map to a DNS name.
    BadKey(String),
    /// The value is not a JSON object.
    NotJson(String),
    /// A field has the wrong JSON type or is out of range.
    BadField {
        /// The field, as CoreDNS names it.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// `host` (SkyDNS) or `Addr` (registry) is neither an address nor a domain name.
    BadHost(String),
    /// A field the value cannot do without is absent (or `null`, or Go's zero value).
    MissingField {
        /// The field, as the layout names it.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

impl SkipReason {
    /// A short label for metrics (`srvd_skipped_keys_total{reason}` later).
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadKey(_) => "bad_key",
            Self::NotJson(_) => "not_json",
            Self::BadField { .. } => "bad_field",
            Self::BadHost(_) => "bad_host",
            Self::MissingField { .. } => "missing_field",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadKey(why) => write!(f, "key is not a DNS name: {why}"),
            Self::NotJson(why) => write!(f, "value is not a JSON object of its layout: {why}"),
            Self::BadField { field, expected } => {
                write!(f, "field \"{field}\": expected {expected}")
            }
            Self::BadHost(host) => write!(
                f,
                "host {host:?} is neither an IP address nor a domain name"
            ),
            Self::MissingField { field, expected } => {
                write!(f, "field \"{field}\" is missing: expected {expected}")
            }
        }
    }
}

/// How an error message names a JSON value's type.
pub(crate) fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
