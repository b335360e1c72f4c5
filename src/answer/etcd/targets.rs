//! SRV, MX and NS from etcd: records pointing at targets, with the targets' addresses as
//! additional records (CoreDNS `SRV`, `MX`, `NS`).
//!
//! An IP host's target is the key turned into a name (minus `targetstrip` labels), one record
//! per (target, port) and one address per (target, address); a name host's target is the host,
//! never de-duplicated, with an in-zone A resolution of it as additional records.

use std::collections::HashMap;

use hickory_proto::rr::rdata::{A, AAAA, MX, NS, SRV};
use hickory_proto::rr::{Name, RData, RecordType};

use super::lookup::NotFound;
use super::{Ctx, Failure, address, record};
use crate::answer::{Owner, Rr};
use crate::backend::skydns::key::target_strip;
use crate::backend::{HostKind, ServiceEntry};

/// Seen (target, port) and (target, address) pairs (`isDuplicate`).
#[derive(Default)]
struct Seen {
    records: Vec<(Name, u16)>,
    addresses: Vec<(Name, String)>,
    glued: Vec<Name>,
}

impl Seen {
    fn first_record(&mut self, target: &Name, port: u16) -> bool {
        let fresh = !self.records.iter().any(|(t, p)| t == target && *p == port);
        if fresh {
            self.records.push((target.clone(), port));
        }
        fresh
    }

    fn first_address(&mut self, target: &Name, addr: &str) -> bool {
        let fresh = !self.addresses.iter().any(|(t, a)| t == target && a == addr);
        if fresh {
            self.addresses.push((target.clone(), addr.to_string()));
        }
        fresh
    }

    fn first_glue(&mut self, target: &Name) -> bool {
        let fresh = !self.glued.contains(target);
        if fresh {
            self.glued.push(target.clone());
        }
        fresh
    }
}

/// The address record of an IP-host entry, owned by `owner`.
fn address_record<'a>(ctx: &Ctx<'a>, entry: &ServiceEntry, owner: &Name) -> Option<Rr<'a>> {
    let ttl = ctx.ttl(entry);
    let data = match entry.kind {
        HostKind::A(ip) => RData::A(A(ip)),
        HostKind::Aaaa(ip) => RData::AAAA(AAAA(ip)),
        _ => return None,
    };
    Some(Rr::owned(Owner::Record, record(owner, ttl, data)))
}

/// Additional records for a name target: an in-zone A resolution (CNAME chain and A records;
/// CoreDNS has no AAAA here). Targets outside the zone get none: srvd does not forward.
fn glue_for_name<'a>(ctx: &Ctx<'a>, target: &Name, seen: &mut Seen, extra: &mut Vec<Rr<'a>>) {
    if !seen.first_glue(target) || !ctx.in_zone(target) {
        return;
    }
    let _ = address::addresses(
        ctx,
        target,
        Owner::Record,
        RecordType::A,
        &mut Vec::new(),
        extra,
    );
}

/// CoreDNS's weight normalisation: per priority, `floor((100 / Σ(w or 100)) · (w or 100))`, at
/// least 1, in IEEE doubles and in that order (a lone weight 97 gives 99).
fn normalised_weight(entry: &ServiceEntry, sums: &HashMap<i64, i64>) -> u16 {
    let sum = sums.get(&entry.priority).copied().unwrap_or(100) as f64;
    let mut w = 100.0 / sum;
    w *= if entry.weight == 0 {
        100.0
    } else {
        entry.weight as f64
    };
    // Go's uint16(math.Floor(w)); values are 1..=100 for sane weights.
    let weight = w.floor() as u16;
    weight.max(1)
}

/// SRV records at `name`.
pub(super) fn srv<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    out: &mut Vec<Rr<'a>>,
    extra: &mut Vec<Rr<'a>>,
) -> Result<(), NotFound> {
    let services = ctx.services(name, RecordType::SRV, false)?;
    let mut sums: HashMap<i64, i64> = HashMap::new();
    for entry in &services {
        let weight = if entry.weight == 0 { 100 } else { entry.weight };
        *sums.entry(entry.priority).or_insert(0) += weight;
    }
    let mut seen = Seen::default();
    for entry in services {
        // Port -1 drops the record (it still counted in the weight sum above).
        if entry.port == -1 {
            continue;
        }
        let weight = normalised_weight(entry, &sums);
        let (priority, port) = (entry.priority as u16, entry.port as u16);
        let ttl = ctx.ttl(entry);
        match &entry.kind {
            HostKind::Name(host) => {
                let target = target_strip(host, entry.target_strip);
                let data = RData::SRV(SRV::new(priority, weight, port, target.clone()));
                out.push(Rr::owned(Owner::Question, record(name, ttl, data)));
                glue_for_name(ctx, &target, &mut seen, extra);
            }
            HostKind::A(_) | HostKind::Aaaa(_) => {
                let target = target_strip(&entry.key_name, entry.target_strip);
                if seen.first_record(&target, port) {
                    let data = RData::SRV(SRV::new(priority, weight, port, target.clone()));
                    out.push(Rr::owned(Owner::Question, record(name, ttl, data)));
                }
                if seen.first_address(&target, &entry.host)
                    && let Some(rr) = address_record(ctx, entry, &target)
                {
                    extra.push(rr);
                }
            }
            HostKind::Txt | HostKind::Empty => {}
        }
    }
    Ok(())
}

/// MX records at `name`: only `mail: true` entries; preference = priority.
pub(super) fn mx<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    out: &mut Vec<Rr<'a>>,
    extra: &mut Vec<Rr<'a>>,
) -> Result<(), NotFound> {
    let services = ctx.services(name, RecordType::MX, false)?;
    let mut seen = Seen::default();
    for entry in services.into_iter().filter(|e| e.mail) {
        let preference = entry.priority as u16;
        let ttl = ctx.ttl(entry);
        match &entry.kind {
            HostKind::Name(host) => {
                let exchange = target_strip(host, entry.target_strip);
                let data = RData::MX(MX::new(preference, exchange.clone()));
                out.push(Rr::owned(Owner::Question, record(name, ttl, data)));
                glue_for_name(ctx, &exchange, &mut seen, extra);
            }
            HostKind::A(_) | HostKind::Aaaa(_) => {
                let exchange = target_strip(&entry.key_name, entry.target_strip);
                if seen.first_record(&exchange, preference) {
                    let data = RData::MX(MX::new(preference, exchange));
                    out.push(Rr::owned(Owner::Question, record(name, ttl, data)));
                }
                // The address is owned by the key's name without targetstrip (as CoreDNS does).
                if seen.first_address(&entry.key_name, &entry.host)
                    && let Some(rr) = address_record(ctx, entry, &entry.key_name)
                {
                    extra.push(rr);
                }
            }
            HostKind::Txt | HostKind::Empty => {}
        }
    }
    Ok(())
}

/// NS at the zone apex, from `ns.dns.<zone>`: IP hosts only (a name host is CoreDNS's SERVFAIL),
/// one NS per distinct key-derived target, one address per entry.
pub(super) fn ns<'a>(
    ctx: &Ctx<'a>,
    out: &mut Vec<Rr<'a>>,
    extra: &mut Vec<Rr<'a>>,
) -> Result<(), Failure> {
    let Some(ns_name) = ctx.special("ns") else {
        return Err(Failure::NotFound);
    };
    let services = ctx.services(&ns_name, RecordType::NS, false)?;
    let origin = ctx.zone.origin();
    let mut targets: Vec<Name> = Vec::new();
    for entry in services {
        match &entry.kind {
            HostKind::Name(_) => return Err(Failure::ServFail),
            HostKind::A(_) | HostKind::Aaaa(_) => {
                let target = target_strip(&entry.key_name, entry.target_strip);
                if let Some(rr) = address_record(ctx, entry, &target) {
                    extra.push(rr);
                }
                if !targets.contains(&target) {
                    targets.push(target.clone());
                    let data = RData::NS(NS(target));
                    out.push(Rr::owned(
                        Owner::Question,
                        record(origin, ctx.ttl(entry), data),
                    ));
                }
            }
            HostKind::Txt | HostKind::Empty => {}
        }
    }
    Ok(())
}
