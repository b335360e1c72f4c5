//! The service registry's DNS-SD names (RFC 6763 over unicast DNS), answered in the registry
//! zone Z from the snapshot's `RegistryMirror`:
//!
//! | name | records |
//! |---|---|
//! | `_S._P.Z` | PTR → each instance `<id>._S._P.Z` (additional: its SRV, TXT, addresses); SRV of every instance in RFC 2782 order (additional: addresses) |
//! | `<id>._S._P.Z` | SRV and TXT of that instance (TXT: one empty string when it has no metadata, RFC 6763 §6) |
//! | `_<tag>._sub._S._P.Z` | PTR → the instances carrying the tag (§7.1) |
//! | `_services._dns-sd._udp.Z` | PTR → every `_S._P.Z` with a live instance (§9) |
//! | `b._dns-sd._udp.Z`, `lb._dns-sd._udp.Z` | PTR → Z (§11) |
//! | `<address>.addr.Z` | A or AAAA: the target of instances registered by address |
//!
//! An instance registered by address gets the target `<address>.addr.Z`, the address spelled as
//! one LDH label (`10-0-1-10`; IPv6 as its eight groups in hex, `fd00-0-0-0-0-0-0-1`): a valid
//! host name that exists exactly while some instance uses the address, and whose one spelling per
//! address means two instances on one address share one name and one A record.
//!
//! Where the registry meets the zone's other sources (SkyDNS keys, a zone file), the registry wins
//! for the records it has; a registry name without the asked type (or an empty non-terminal such
//! as `_tcp.Z`) lets the other sources answer, and turns their NXDOMAIN into NODATA (RFC 8020).
//!
//! TTLs are `--registry-ttl`, lowered to the remaining lease time of a leased key; a name that
//! exists through several keys (an address, a service type in `_services`) lives as long as the
//! longest of them, judged from the first 16 of them (fewer can only lower it). Every question
//! builds at most the record cap (`budget`); a service type's SRV is the first places of a draw
//! over all its instances, as for SkyDNS; enumerating types costs one map look-up per type sent.

use std::borrow::Cow;
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;

use super::budget::Sink;
use super::small::SmallSet;
use super::{Answer, Owner, Question, Rr};
use crate::backend::registry::{Proto, RegistryEntry, Target};
use crate::dnssd::srv_order::select_first_by_priority_weight;
use crate::index::leases::LeaseTable;
use crate::index::mirror::Mirror;
use crate::index::registry::{ADDRESS_LABEL, Instance, InstanceNames, address_label};
use crate::index::{EtcdData, RegistryZone, Zone};

/// How many of the keys behind one record its TTL looks at: the first one with no lease (or a
/// long one) ends the search, so this bounds only the rare case of many short leases.
const TTL_SAMPLE: usize = 16;

/// What the registry knows of a question name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// `out` holds a positive answer.
    Answered,
    /// The name exists in the registry (or is an empty non-terminal of it) without records of
    /// the asked type: the zone's other sources answer, and their NXDOMAIN becomes NODATA.
    Exists,
    /// Not a registry name.
    Absent,
}

/// A question name below Z, as the registry reads it.
#[derive(Debug)]
enum Shape<'q> {
    /// `_P.Z`.
    Proto(Proto),
    /// `_S._P.Z`.
    ServiceType(String, Proto),
    /// `<id>._S._P.Z` (or `_sub._S._P.Z`, an empty non-terminal when no instance has that id).
    Instance(&'q [u8], String, Proto),
    /// `_<tag>._sub._S._P.Z`.
    Subtype(String, String, Proto),
    /// `_dns-sd._udp.Z`.
    DnsSd,
    /// `_services._dns-sd._udp.Z`.
    Services,
    /// `b._dns-sd._udp.Z` and `lb._dns-sd._udp.Z`.
    BrowseDomain,
    /// `addr.Z`.
    Addresses,
    /// `<address>.addr.Z`.
    Address(IpAddr),
    /// Anything else.
    Other,
}

fn is(label: &[u8], text: &str) -> bool {
    label.eq_ignore_ascii_case(text.as_bytes())
}

fn proto_of(label: &[u8]) -> Option<Proto> {
    if is(label, "_tcp") {
        Some(Proto::Tcp)
    } else if is(label, "_udp") {
        Some(Proto::Udp)
    } else {
        None
    }
}

/// `_name` → `name`, lower-case.
fn underscored(label: &[u8]) -> Option<String> {
    let rest = label.strip_prefix(b"_")?;
    let text = std::str::from_utf8(rest).ok()?;
    (!text.is_empty()).then(|| text.to_ascii_lowercase())
}

/// Reads the labels below Z, leftmost first.
fn shape<'q>(below: &[&'q [u8]]) -> Shape<'q> {
    let service_type = |s: &[u8], p: &[u8]| Some((underscored(s)?, proto_of(p)?));
    match below {
        [a] if is(a, ADDRESS_LABEL) => Shape::Addresses,
        [p] => proto_of(p).map_or(Shape::Other, Shape::Proto),
        [ip, a] if is(a, ADDRESS_LABEL) => {
            parse_address_label(ip).map_or(Shape::Other, Shape::Address)
        }
        [d, u] if is(d, "_dns-sd") && is(u, "_udp") => Shape::DnsSd,
        [s, d, u] if is(d, "_dns-sd") && is(u, "_udp") && is(s, "_services") => Shape::Services,
        [b, d, u] if is(d, "_dns-sd") && is(u, "_udp") && (is(b, "b") || is(b, "lb")) => {
            Shape::BrowseDomain
        }
        [s, p] => service_type(s, p).map_or(Shape::Other, |(s, p)| Shape::ServiceType(s, p)),
        [id, s, p] => service_type(s, p).map_or(Shape::Other, |(s, p)| Shape::Instance(id, s, p)),
        [tag, sub, s, p] if is(sub, "_sub") => match (underscored(tag), service_type(s, p)) {
            (Some(tag), Some((s, p))) => Shape::Subtype(tag, s, p),
            _ => Shape::Other,
        },
        _ => Shape::Other,
    }
}

/// The address an `addr.Z` label names, only in its one canonical spelling (so no two names
/// alias one address).
fn parse_address_label(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?.to_ascii_lowercase();
    let parts: Vec<&str> = text.split('-').collect();
    let ip = match parts.len() {
        4 => {
            let mut octets = [0u8; 4];
            for (octet, part) in octets.iter_mut().zip(&parts) {
                *octet = part.parse().ok()?;
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        8 => {
            let mut groups = [0u16; 8];
            for (group, part) in groups.iter_mut().zip(&parts) {
                if part.is_empty() || part.len() > 4 {
                    return None;
                }
                *group = u16::from_str_radix(part, 16).ok()?;
            }
            IpAddr::V6(Ipv6Addr::from(groups))
        }
        _ => return None,
    };
    (address_label(ip) == text).then_some(ip)
}

/// One question's view of the registry, and what it may still build.
struct Reg<'a> {
    zone: &'a Zone,
    leases: &'a LeaseTable,
    ttl: u32,
    /// Whether the mirror's names were built in this zone (always, in the daemon).
    named_here: bool,
    answer_left: Cell<usize>,
    extra_left: Cell<usize>,
}

impl<'a> Reg<'a> {
    /// TTL of records built from `entry`: the registry TTL, at most the lease's remaining time.
    fn ttl_of(&self, entry: &RegistryEntry) -> u32 {
        if entry.lease == 0 {
            self.ttl
        } else {
            self.leases.capped_ttl(entry.lease, self.ttl)
        }
    }

    /// TTL of a record that exists while any of `entries` does: the longest of theirs among
    /// the first [`TTL_SAMPLE`].
    fn ttl_of_any<'e>(&self, entries: impl Iterator<Item = &'e Arc<RegistryEntry>>) -> u32 {
        let mut ttl = 0;
        for entry in entries.take(TTL_SAMPLE) {
            ttl = ttl.max(self.ttl_of(entry));
            if ttl >= self.ttl {
                break;
            }
        }
        ttl
    }

    /// The instance's names in this zone: the ones built when it was mirrored.
    fn names<'i>(&self, instance: &'i Instance) -> Option<Cow<'i, InstanceNames>> {
        if self.named_here {
            instance.names.as_ref().map(Cow::Borrowed)
        } else {
            InstanceNames::of(&instance.entry, self.zone.origin()).map(Cow::Owned)
        }
    }

    fn srv(&self, entry: &RegistryEntry, names: &InstanceNames, owner: &Name) -> Record {
        let data = SRV::new(
            entry.priority,
            entry.weight,
            entry.port,
            names.target.clone(),
        );
        Record::from_rdata(owner.clone(), self.ttl_of(entry), RData::SRV(data))
    }

    fn txt(&self, entry: &RegistryEntry, owner: &Name) -> Record {
        // RFC 6763 §6.1: never zero strings; no metadata is one empty string.
        let strings = if entry.txt.is_empty() {
            vec![String::new()]
        } else {
            entry.txt.clone()
        };
        Record::from_rdata(
            owner.clone(),
            self.ttl_of(entry),
            RData::TXT(TXT::new(strings)),
        )
    }

    fn address_record(ip: IpAddr, owner: Name, ttl: u32) -> Record {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(owner, ttl, data)
    }

    /// The target's addresses as additional records: an address target's own, or a host
    /// inside the zone that the zone file has addresses for. Each address once per response.
    fn add_addresses(
        &self,
        entry: &RegistryEntry,
        names: &InstanceNames,
        glued: &mut SmallSet<IpAddr>,
        extra: &mut Sink<'_, 'a>,
    ) {
        match &entry.target {
            Target::Address(ip) => {
                if extra.full() || !glued.insert(*ip) {
                    return;
                }
                let record = Self::address_record(*ip, names.target.clone(), self.ttl_of(entry));
                extra.push(Rr::owned(Owner::Record, record));
            }
            Target::Host(host) => {
                let Some(file) = self.zone.file() else {
                    return;
                };
                if !self.zone.origin().zone_of(host) {
                    return;
                }
                let key = crate::index::name_key::LookupKey::from_name(host);
                let Some(node) = file.tree().node(key.as_bytes()) else {
                    return;
                };
                for rtype in [RecordType::A, RecordType::AAAA] {
                    for record in node.rrset(rtype).map_or(&[][..], |r| &r.records[..]) {
                        let ip = match &record.data {
                            RData::A(a) => IpAddr::V4(a.0),
                            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                            _ => continue,
                        };
                        if extra.full() {
                            return;
                        }
                        if glued.insert(ip) {
                            extra.push(Rr::borrowed(Owner::Record, record));
                        }
                    }
                }
            }
        }
    }

    /// PTR answers to `instances` (each DNS name once), with each one's SRV, TXT and addresses
    /// as additional records (RFC 6763 §12.1).
    fn browse<'e>(
        &self,
        question: &Name,
        instances: impl Iterator<Item = &'e Arc<Instance>>,
        out: &mut Answer<'a>,
    ) {
        let mut answers = Sink::new(&mut out.answers, &self.answer_left);
        let mut extra = Sink::new(&mut out.additional, &self.extra_left);
        let mut glued = SmallSet::default();
        for instance in distinct(instances) {
            if answers.full() {
                break;
            }
            let Some(names) = self.names(instance) else {
                continue;
            };
            let entry = &*instance.entry;
            let ptr = Record::from_rdata(
                question.clone(),
                self.ttl_of(entry),
                RData::PTR(PTR(names.instance.clone())),
            );
            answers.push(Rr::owned(Owner::Question, ptr));
            if extra.full() {
                continue;
            }
            let srv = self.srv(entry, &names, &names.instance);
            extra.push(Rr::owned(Owner::Record, srv));
            if !extra.full() {
                let txt = self.txt(entry, &names.instance);
                extra.push(Rr::owned(Owner::Record, txt));
            }
            self.add_addresses(entry, &names, &mut glued, &mut extra);
        }
    }
}

/// `instances` (in name order) without the later ones of ids equal but for case: one DNS name
/// is one instance, the lowest etcd key's (as `RegistryMirror::instance` finds it).
fn distinct<'e>(
    instances: impl Iterator<Item = &'e Arc<Instance>>,
) -> impl Iterator<Item = &'e Arc<Instance>> {
    let mut last: Option<&'e str> = None;
    instances.filter(move |instance| {
        let id = instance.entry.instance.as_str();
        let same = last.is_some_and(|l| l.eq_ignore_ascii_case(id));
        last = Some(id);
        !same
    })
}

/// Answers `question` from the registry if it names a registry name in `zone`; `out` must be
/// empty, and is left empty unless the result is [`Found::Answered`].
pub(super) fn answer<'a, R: Rng + ?Sized>(
    zone: &'a Zone,
    registry: &'a RegistryZone,
    data: &'a EtcdData,
    question: &Question<'_>,
    cap: usize,
    rng: &mut R,
    out: &mut Answer<'a>,
) -> Found {
    let Some(mirror) = data.mirror.as_ref().map(Mirror::registry) else {
        return Found::Absent;
    };
    let leases = &*data.leases;
    let labels: Vec<&[u8]> = question.name.iter().collect();
    let Some(below) = labels.len().checked_sub(zone.apex_labels()) else {
        return Found::Absent;
    };
    let reg = Reg {
        zone,
        leases,
        ttl: registry.ttl,
        named_here: mirror.zone() == zone.origin(),
        answer_left: Cell::new(cap),
        extra_left: Cell::new(cap),
    };
    let qname = question.name;
    let qtype = question.qtype;
    let exists = |yes: bool| if yes { Found::Exists } else { Found::Absent };
    match shape(&labels[..below]) {
        Shape::Other => Found::Absent,
        Shape::Proto(proto) => exists(proto == Proto::Udp || mirror.has_proto(proto)),
        Shape::DnsSd => Found::Exists,
        Shape::Addresses => exists(mirror.has_addresses()),
        Shape::BrowseDomain => {
            if qtype != RecordType::PTR {
                return Found::Exists;
            }
            let ptr = RData::PTR(PTR(zone.origin().clone()));
            out.answers.push(Rr::owned(
                Owner::Question,
                Record::from_rdata(qname.clone(), reg.ttl, ptr),
            ));
            Found::Answered
        }
        Shape::Services => {
            let mut types = mirror.types().peekable();
            if types.peek().is_none() {
                return Found::Absent;
            }
            if qtype != RecordType::PTR {
                return Found::Exists;
            }
            let mut answers = Sink::new(&mut out.answers, &reg.answer_left);
            for instance in types {
                if answers.full() {
                    break;
                }
                if let Some(names) = reg.names(instance) {
                    let name = names.service_type.clone();
                    let entry = &instance.entry;
                    // The type's first instance is at hand; the others are looked up only when
                    // its TTL is short (a lease about to end).
                    let others = std::iter::once(())
                        .flat_map(|()| mirror.instances(&entry.service, entry.proto).skip(1));
                    let users = std::iter::once(instance).chain(others);
                    let ttl = reg.ttl_of_any(users.map(|i| &i.entry));
                    let ptr = Record::from_rdata(qname.clone(), ttl, RData::PTR(PTR(name)));
                    answers.push(Rr::owned(Owner::Question, ptr));
                }
            }
            Found::Answered
        }
        Shape::Address(ip) => {
            if !mirror.has_address(ip) {
                return Found::Absent;
            }
            let wanted = match ip {
                IpAddr::V4(_) => RecordType::A,
                IpAddr::V6(_) => RecordType::AAAA,
            };
            if qtype != wanted {
                return Found::Exists;
            }
            let ttl = reg.ttl_of_any(mirror.at_address(ip));
            let record = Reg::address_record(ip, qname.clone(), ttl);
            out.answers.push(Rr::owned(Owner::Question, record));
            Found::Answered
        }
        Shape::ServiceType(service, proto) => {
            let mut instances = mirror.instances(&service, proto).peekable();
            if instances.peek().is_none() {
                return Found::Absent;
            }
            match qtype {
                RecordType::PTR => reg.browse(qname, instances, out),
                RecordType::SRV => {
                    let mut all: Vec<&Instance> = distinct(instances).map(|i| &**i).collect();
                    select_first_by_priority_weight(&mut all, cap, rng, |i| {
                        (i.entry.priority, i.entry.weight)
                    });
                    all.truncate(cap);
                    let mut answers = Sink::new(&mut out.answers, &reg.answer_left);
                    let mut extra = Sink::new(&mut out.additional, &reg.extra_left);
                    let mut glued = SmallSet::default();
                    for instance in all {
                        let Some(names) = reg.names(instance) else {
                            continue;
                        };
                        let srv = reg.srv(&instance.entry, &names, &names.service_type);
                        answers.push(Rr::owned(Owner::Question, srv));
                        reg.add_addresses(&instance.entry, &names, &mut glued, &mut extra);
                    }
                }
                _ => return Found::Exists,
            }
            Found::Answered
        }
        Shape::Instance(id, service, proto) => {
            let instance = std::str::from_utf8(id)
                .ok()
                .and_then(|id| mirror.instance(&service, proto, id));
            let Some(instance) = instance else {
                // `_sub._S._P.Z` is an empty non-terminal while some instance has a tag.
                let sub = is(id, "_sub")
                    && mirror
                        .instances(&service, proto)
                        .any(|i| !i.entry.tags.is_empty());
                return exists(sub);
            };
            let Some(names) = reg.names(instance) else {
                return Found::Absent;
            };
            let entry = &*instance.entry;
            match qtype {
                RecordType::SRV => {
                    let srv = reg.srv(entry, &names, &names.instance);
                    out.answers.push(Rr::owned(Owner::Question, srv));
                    let mut extra = Sink::new(&mut out.additional, &reg.extra_left);
                    reg.add_addresses(entry, &names, &mut SmallSet::default(), &mut extra);
                }
                RecordType::TXT => {
                    let txt = reg.txt(entry, &names.instance);
                    out.answers.push(Rr::owned(Owner::Question, txt));
                }
                _ => return Found::Exists,
            }
            Found::Answered
        }
        Shape::Subtype(tag, service, proto) => {
            let tagged = || {
                mirror
                    .instances(&service, proto)
                    .filter(|i| i.entry.tags.contains(&tag))
            };
            if tagged().next().is_none() {
                return Found::Absent;
            }
            if qtype != RecordType::PTR {
                return Found::Exists;
            }
            reg.browse(qname, tagged(), out);
            Found::Answered
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_labels_have_one_spelling_per_address() {
        for text in [
            "10.0.1.10",
            "0.0.0.0",
            "255.255.255.255",
            "fd00::1",
            "::",
            "2001:db8::ff:1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let label = address_label(ip);
            assert_eq!(parse_address_label(label.as_bytes()), Some(ip), "{label}");
            assert!(!label.starts_with('-') && !label.ends_with('-'), "{label}");
        }
        assert_eq!(
            address_label("fd00::1".parse().unwrap()),
            "fd00-0-0-0-0-0-0-1"
        );
        for alias in [
            "010-0-1-10",
            "10-0-1-256",
            "10-0-1",
            "fd00-0-0-0-0-0-0-01",
            "FD00-0-0-0-0-0-0-1x",
            "10-0-1-+1",
        ] {
            assert_eq!(parse_address_label(alias.as_bytes()), None, "{alias}");
        }
        assert_eq!(
            parse_address_label(b"FD00-0-0-0-0-0-0-1"),
            Some("fd00::1".parse().unwrap()),
            "DNS names compare case-insensitively"
        );
    }
}
