//! The registry mirror: every decoded `PREFIX/<service>/<instance-id>` key, mirrored beside the
//! SkyDNS keys and shared with snapshots the same way (persistent maps, O(log n) per change), and
//! answered by `answer::registry`.
//!
//! Two maps over the same entries. By etcd key, because a watch's DELETE names only the key. By
//! DNS name, `"<service>\0<proto>\0<instance lower-cased>\0<etcd key>"`, because the answers
//! range over one service type (`_S._P` PTR/SRV), look one instance up whatever the question's
//! case (DNS compares ASCII case-insensitively), and enumerate the service types by jumping from
//! one type to the next rather than walking every instance. `\0` cannot occur in a service label
//! (LDH) nor in an instance id (control characters are refused by the decoder), so it separates
//! the parts and sorts a type before any longer type that starts with its name. The etcd key at
//! the end keeps two keys whose ids differ only in case (or that sit under two prefixes) apart.
//!
//! A third map holds the instances per target address, so that an address's host name
//! (`<address>.addr.Z`) exists exactly while some instance uses the address, found in O(log n),
//! and lives (its TTL) as long as the instances that use it.
//! Only answering instances count: of two keys whose ids differ only in case, the one hidden by
//! the lower key is no SRV's target, so its address must not make a name exist.
//!
//! Each instance's DNS names in the registry zone (its service type, its instance name, its SRV
//! target) are built once, when its key is mirrored, not per answer: a name costs several
//! allocations to build and an answer holds a dozen of them.

use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;

use hickory_proto::rr::{Label, Name};
use imbl::OrdMap;

use super::mirror::Revision;
use crate::backend::registry::{Proto, RegistryEntry, Target};

/// The label under the registry zone that holds the address targets' host names.
pub const ADDRESS_LABEL: &str = "addr";

/// The one label naming `ip` under `addr.Z`: `10-0-1-10`, IPv6 as its eight groups in hex
/// (`fd00-0-0-0-0-0-0-1`), so a valid host name (LDH, no leading or trailing hyphen) with one
/// spelling per address.
pub fn address_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{a}-{b}-{c}-{d}")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!(
                "{:x}-{:x}-{:x}-{:x}-{:x}-{:x}-{:x}-{:x}",
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
            )
        }
    }
}

/// `labels` (leftmost first, raw bytes) under `zone`; `None` past 255 octets.
pub fn name_under(zone: &Name, labels: &[&[u8]]) -> Option<Name> {
    let labels: Result<Vec<Label>, _> = labels.iter().map(|l| Label::from_raw_bytes(l)).collect();
    Name::from_labels(labels.ok()?)
        .ok()?
        .append_domain(zone)
        .ok()
}

/// `_service._proto.zone`.
pub fn type_name(zone: &Name, service: &str, proto: Proto) -> Option<Name> {
    let service = format!("_{service}");
    let proto = format!("_{}", proto_label(proto));
    name_under(zone, &[service.as_bytes(), proto.as_bytes()])
}

/// `<address label>.addr.zone`.
pub fn address_name(zone: &Name, ip: IpAddr) -> Option<Name> {
    let label = address_label(ip);
    name_under(zone, &[label.as_bytes(), ADDRESS_LABEL.as_bytes()])
}

/// An instance's names in the registry zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceNames {
    /// `_S._P.Z`.
    pub service_type: Name,
    /// `<id>._S._P.Z`, the id spelled as the key spells it.
    pub instance: Name,
    /// The SRV target: `<address>.addr.Z`, or the value's host name.
    pub target: Name,
}

impl InstanceNames {
    /// The names of `entry` in `zone`; `None` when one would exceed 255 octets (a long id in a
    /// long zone name), and then the instance cannot be answered.
    pub fn of(entry: &RegistryEntry, zone: &Name) -> Option<Self> {
        let service_type = type_name(zone, &entry.service, entry.proto)?;
        let instance = name_under(&service_type, &[entry.instance.as_bytes()])?;
        let target = match &entry.target {
            Target::Address(ip) => address_name(zone, *ip)?,
            Target::Host(host) => host.clone(),
        };
        Some(Self {
            service_type,
            instance,
            target,
        })
    }
}

/// A mirrored instance: its decoded value and its names in the registry zone.
#[derive(Debug)]
pub struct Instance {
    /// The decoded value.
    pub entry: Arc<RegistryEntry>,
    /// Its names, `None` when they do not fit in a DNS name.
    pub names: Option<InstanceNames>,
}

/// The decoded registry keys, by etcd key and by DNS name.
#[derive(Debug, Clone)]
pub struct RegistryMirror {
    /// The zone the names are built in.
    zone: Name,
    by_key: OrdMap<String, Arc<RegistryEntry>>,
    by_name: OrdMap<String, Arc<Instance>>,
    /// Answering instances per address target, by etcd key.
    addresses: OrdMap<IpAddr, OrdMap<String, Arc<RegistryEntry>>>,
    /// Instances per protocol (`Proto as usize`): whether `_tcp.Z` / `_udp.Z` exist.
    per_proto: [usize; 2],
    /// The revision of the last change (the registry zone's SOA serial takes it into account).
    serial: Revision,
}

/// The label a protocol has in a service type, without the `_`.
pub fn proto_label(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

/// `"<service>\0<proto>\0"`: every name key of that service type starts with it.
fn type_prefix(service: &str, proto: Proto) -> String {
    format!("{service}\0{}\0", proto_label(proto))
}

fn name_key(entry: &RegistryEntry) -> String {
    format!(
        "{}{}\0{}",
        type_prefix(&entry.service, entry.proto),
        entry.instance.to_ascii_lowercase(),
        entry.key
    )
}

/// The first key in `map` at or after `from` that starts with `prefix`, with its entry.
fn first_with_prefix<'a>(
    map: &'a OrdMap<String, Arc<Instance>>,
    from: &str,
    prefix: &str,
) -> Option<&'a Arc<Instance>> {
    map.range::<_, str>((Bound::Included(from), Bound::Unbounded))
        .next()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
}

impl Default for RegistryMirror {
    /// An empty mirror named in the root zone: what a mirror holds before (or without) a
    /// registry listing, which brings the registry zone.
    fn default() -> Self {
        Self::new(Name::root())
    }
}

impl RegistryMirror {
    /// An empty mirror whose instances are named in `zone`.
    pub fn new(zone: Name) -> Self {
        Self {
            zone,
            by_key: OrdMap::new(),
            by_name: OrdMap::new(),
            addresses: OrdMap::new(),
            per_proto: [0; 2],
            serial: 0,
        }
    }

    /// The zone the instances' names are built in.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// A mirror holding exactly `entries` (a full listing at `revision`), named in `zone`. Its
    /// serial is `previous`'s when that held the same entries (a re-read that found nothing
    /// new), else `revision`.
    pub fn from_listing(
        zone: Name,
        entries: impl IntoIterator<Item = Arc<RegistryEntry>>,
        revision: Revision,
        previous: Option<&RegistryMirror>,
    ) -> Self {
        let mut mirror = Self::new(zone);
        for entry in entries {
            mirror.insert(entry);
        }
        mirror.serial = match previous {
            Some(previous)
                if previous.by_key.len() == mirror.by_key.len()
                    && previous.iter().eq(mirror.iter()) =>
            {
                previous.serial
            }
            _ => revision,
        };
        mirror
    }

    /// A mirror holding exactly `entries` named in `zone`, at serial 0 (tests and benchmarks).
    pub fn from_entries(zone: Name, entries: impl IntoIterator<Item = Arc<RegistryEntry>>) -> Self {
        Self::from_listing(zone, entries, 0, None)
    }

    /// Stores `entry` at its key, a change made at `revision`; returns the entry it replaces.
    pub fn put(
        &mut self,
        entry: Arc<RegistryEntry>,
        revision: Revision,
    ) -> Option<Arc<RegistryEntry>> {
        self.serial = self.serial.max(revision);
        self.insert(entry)
    }

    /// Removes the entry at `key`, a change made at `revision`; returns it.
    pub fn remove(&mut self, key: &str, revision: Revision) -> Option<Arc<RegistryEntry>> {
        let old = self.take(key)?;
        self.serial = self.serial.max(revision);
        Some(old)
    }

    fn insert(&mut self, entry: Arc<RegistryEntry>) -> Option<Arc<RegistryEntry>> {
        let old = self.take(&entry.key);
        let before = self.answering(&entry);
        self.per_proto[entry.proto as usize] += 1;
        let instance = Instance {
            names: InstanceNames::of(&entry, &self.zone),
            entry: entry.clone(),
        };
        self.by_name.insert(name_key(&entry), Arc::new(instance));
        self.by_key.insert(entry.key.clone(), entry.clone());
        let after = self.answering(&entry);
        self.recount(before, after);
        old
    }

    fn take(&mut self, key: &str) -> Option<Arc<RegistryEntry>> {
        let old = self.by_key.remove(key)?;
        let before = self.answering(&old);
        self.by_name.remove(name_key(&old).as_str());
        self.per_proto[old.proto as usize] -= 1;
        let after = self.answering(&old);
        self.recount(before, after);
        Some(old)
    }

    /// The entry that answers for `entry`'s DNS name now (itself, or a case duplicate).
    fn answering(&self, entry: &RegistryEntry) -> Option<Arc<RegistryEntry>> {
        self.instance(&entry.service, entry.proto, &entry.instance)
            .map(|i| i.entry.clone())
    }

    /// Moves one DNS name's place among its address's users from the entry that answered for
    /// it to the one that answers now.
    fn recount(&mut self, before: Option<Arc<RegistryEntry>>, after: Option<Arc<RegistryEntry>>) {
        if before.as_ref().map(|e| &e.key) == after.as_ref().map(|e| &e.key) {
            return;
        }
        if let Some(before) = before
            && let Target::Address(ip) = before.target
            && let Some(users) = self.addresses.get_mut(&ip)
        {
            users.remove(&before.key);
            if users.is_empty() {
                self.addresses.remove(&ip);
            }
        }
        if let Some(after) = after
            && let Target::Address(ip) = after.target
        {
            self.addresses
                .entry(ip)
                .or_default()
                .insert(after.key.clone(), after);
        }
    }

    /// The revision of the last change to a registry key.
    pub fn serial(&self) -> Revision {
        self.serial
    }

    /// Whether some instance's target is the address `ip`.
    pub fn has_address(&self, ip: IpAddr) -> bool {
        self.addresses.contains_key(&ip)
    }

    /// The answering instances whose target is `ip`, in etcd key order.
    pub fn at_address(&self, ip: IpAddr) -> impl Iterator<Item = &Arc<RegistryEntry>> {
        self.addresses
            .get(&ip)
            .into_iter()
            .flat_map(|users| users.values())
    }

    /// Whether some instance's target is an address.
    pub fn has_addresses(&self) -> bool {
        !self.addresses.is_empty()
    }

    /// The entry at exactly the etcd key `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<RegistryEntry>> {
        self.by_key.get(key)
    }

    /// Number of mirrored keys.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no key is mirrored.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every entry, in etcd key order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<RegistryEntry>> {
        self.by_key.values()
    }

    /// The instances of `_service._proto` (`service` lower-case), ordered by lower-cased
    /// instance id, then etcd key.
    pub fn instances<'a>(
        &'a self,
        service: &str,
        proto: Proto,
    ) -> impl Iterator<Item = &'a Arc<Instance>> + use<'a> {
        let prefix = type_prefix(service, proto);
        self.by_name
            .range::<_, str>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix.as_str()))
            .map(|(_, v)| v)
    }

    /// The instance `id` of `_service._proto`, matched ASCII case-insensitively (as DNS matches
    /// its first label). When two keys' ids differ only in case, the lowest etcd key wins, so
    /// the answer does not depend on the order they were written in.
    pub fn instance(&self, service: &str, proto: Proto, id: &str) -> Option<&Arc<Instance>> {
        let prefix = format!(
            "{}{}\0",
            type_prefix(service, proto),
            id.to_ascii_lowercase()
        );
        first_with_prefix(&self.by_name, &prefix, &prefix)
    }

    /// Every service type with at least one instance, in order, found with one map look-up per
    /// type (not per instance).
    pub fn service_types(&self) -> Vec<(String, Proto)> {
        self.types()
            .map(|i| (i.entry.service.clone(), i.entry.proto))
            .collect()
    }

    /// One instance of every service type, in type order, lazily: a caller that needs only the
    /// first few types pays only for those.
    pub fn types(&self) -> impl Iterator<Item = &Arc<Instance>> {
        let mut from = String::new();
        std::iter::from_fn(move || {
            let instance = first_with_prefix(&self.by_name, &from, "")?;
            // Just past every key of this type: its prefix with the final `\0` raised to `\x01`.
            from = type_prefix(&instance.entry.service, instance.entry.proto);
            from.pop();
            from.push('\u{1}');
            Some(instance)
        })
    }

    /// Whether some instance's service type uses `proto`.
    pub fn has_proto(&self, proto: Proto) -> bool {
        self.per_proto[proto as usize] > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::registry::decode;

    fn entry(key: &str, value: &str) -> Arc<RegistryEntry> {
        Arc::new(decode("/services", key, value.as_bytes(), 0).unwrap())
    }

    fn keys<'a>(instances: impl Iterator<Item = &'a Arc<Instance>>) -> Vec<&'a str> {
        instances.map(|i| i.entry.key.as_str()).collect()
    }

    fn sample() -> RegistryMirror {
        RegistryMirror::from_entries(
            Name::from_ascii("service.local.").unwrap(),
            [
                entry("/services/web/b", r#"{"Addr":"10.0.0.2","Port":80}"#),
                entry("/services/web/A", r#"{"Addr":"10.0.0.1","Port":80}"#),
                entry("/services/web-api/x", r#"{"Addr":"10.0.0.3","Port":80}"#),
                entry(
                    "/services/web/dns",
                    r#"{"Addr":"10.0.0.4","Port":53,"Proto":"udp"}"#,
                ),
                entry("/services/Db/one", r#"{"Addr":"10.0.0.5","Port":5432}"#),
            ],
        )
    }

    #[test]
    fn instances_range_over_one_service_type_only() {
        let m = sample();
        assert_eq!(
            keys(m.instances("web", Proto::Tcp)),
            ["/services/web/A", "/services/web/b"],
            "ordered by lower-cased id; web-api and _udp are other types"
        );
        assert_eq!(keys(m.instances("web", Proto::Udp)), ["/services/web/dns"]);
        assert_eq!(keys(m.instances("db", Proto::Tcp)), ["/services/Db/one"]);
        assert_eq!(m.instances("we", Proto::Tcp).count(), 0);
    }

    #[test]
    fn one_instance_is_found_whatever_the_case() {
        let m = sample();
        let a = m.instance("web", Proto::Tcp, "a").unwrap();
        assert_eq!(a.entry.key, "/services/web/A");
        assert_eq!(
            m.instance("web", Proto::Tcp, "B").unwrap().entry.key,
            "/services/web/b"
        );
        assert!(m.instance("web", Proto::Udp, "a").is_none());
        assert!(m.instance("web", Proto::Tcp, "").is_none());
    }

    #[test]
    fn service_types_are_listed_once_each_in_order() {
        let m = sample();
        assert_eq!(
            m.service_types(),
            [
                ("db".to_string(), Proto::Tcp),
                ("web".to_string(), Proto::Tcp),
                ("web".to_string(), Proto::Udp),
                ("web-api".to_string(), Proto::Tcp),
            ]
        );
        assert!(RegistryMirror::new(Name::root()).service_types().is_empty());
    }

    #[test]
    fn puts_and_deletes_keep_both_maps_equal() {
        let mut m = sample();
        // The same key re-written as another type leaves its old type.
        let old = m.put(
            entry(
                "/services/web/b",
                r#"{"Addr":"10.0.0.2","Port":80,"Proto":"udp"}"#,
            ),
            7,
        );
        assert_eq!(old.unwrap().proto, Proto::Tcp);
        let b = m.instance("web", Proto::Udp, "b").unwrap();
        let names = b.names.as_ref().unwrap();
        assert_eq!(names.instance.to_string(), "b._web._udp.service.local.");
        assert_eq!(names.service_type.to_string(), "_web._udp.service.local.");
        assert_eq!(names.target.to_string(), "10-0-0-2.addr.service.local.");
        assert_eq!(keys(m.instances("web", Proto::Tcp)), ["/services/web/A"]);
        assert_eq!(
            keys(m.instances("web", Proto::Udp)),
            ["/services/web/b", "/services/web/dns"]
        );
        assert_eq!(m.serial(), 7);
        assert!(m.remove("/services/Db/one", 8).is_some());
        assert!(m.remove("/services/Db/one", 9).is_none());
        assert_eq!(m.serial(), 8, "removing nothing changes nothing");
        assert!(!m.has_address("10.0.0.5".parse().unwrap()));
        assert!(m.has_address("10.0.0.2".parse().unwrap()));
        assert_eq!(m.len(), 4);
        assert_eq!(m.by_name.len(), 4);
        assert!(!m.service_types().iter().any(|(s, _)| s == "db"));
        // Ids equal but for case: both kept, the lowest etcd key answers.
        m.put(
            entry("/services/web/a", r#"{"Addr":"10.0.0.9","Port":80}"#),
            10,
        );
        assert_eq!(m.instances("web", Proto::Tcp).count(), 2);
        assert_eq!(
            m.instance("web", Proto::Tcp, "A").unwrap().entry.key,
            "/services/web/A"
        );
        m.remove("/services/web/A", 11);
        assert_eq!(
            m.instance("web", Proto::Tcp, "A").unwrap().entry.key,
            "/services/web/a"
        );
    }

    #[test]
    fn only_the_answering_case_duplicate_gives_its_address_a_name() {
        let hidden: IpAddr = "10.0.0.9".parse().unwrap();
        let shown: IpAddr = "10.0.0.1".parse().unwrap();
        let mut m = sample();
        m.put(
            entry("/services/web/a", r#"{"Addr":"10.0.0.9","Port":80}"#),
            10,
        );
        assert!(m.has_address(shown));
        assert!(!m.has_address(hidden), "/services/web/A answers for a");
        let at: Vec<&str> = m.at_address(shown).map(|e| e.key.as_str()).collect();
        assert_eq!(at, ["/services/web/A"]);
        assert_eq!(m.at_address(hidden).count(), 0);
        m.remove("/services/web/A", 11);
        assert!(m.has_address(hidden) && !m.has_address(shown));
        // A lower key arriving later takes the name, and the address, over.
        m.put(
            entry("/services/web/A", r#"{"Addr":"10.0.0.1","Port":80}"#),
            12,
        );
        assert!(m.has_address(shown) && !m.has_address(hidden));
        m.remove("/services/web/a", 13);
        m.remove("/services/web/A", 14);
        assert!(!m.has_address(shown) && !m.has_address(hidden));
        // The same holds when a listing brings both at once, in either order.
        let both = [
            entry("/services/web/a", r#"{"Addr":"10.0.0.9","Port":80}"#),
            entry("/services/web/A", r#"{"Addr":"10.0.0.1","Port":80}"#),
        ];
        for entries in [both.to_vec(), both.iter().rev().cloned().collect()] {
            let m = RegistryMirror::from_entries(Name::root(), entries);
            assert!(m.has_address(shown) && !m.has_address(hidden));
        }
    }
}
