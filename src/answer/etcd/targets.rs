//! SRV, MX and NS from etcd: records pointing at targets, with the targets' addresses as
//! additional records (CoreDNS `SRV`, `MX`, `NS`).
//!
//! An IP host's target is the key turned into a name (minus `targetstrip` labels), one record
//! per (target, port) and one address per (target, address); a name host's target is the host,
//! never de-duplicated, with an in-zone A resolution of it as additional records. Duplicates are
//! found with `answer/small.rs` sets over names borrowed from the answer's own target list, and at most the
//! question's record cap is built (for SRV: the first ones of a draw over every candidate).

use std::borrow::Cow;

use hickory_proto::rr::rdata::{A, AAAA, MX, NS, SRV};
use hickory_proto::rr::{Name, RData, RecordType};
use rand::Rng;

use super::lookup::NotFound;
use super::{Ctx, Failure, address, record};
use crate::answer::small::{SmallMap, SmallSet};
use crate::answer::{Owner, Rr};
use crate::backend::skydns::key::target_strip;
use crate::backend::{HostKind, ServiceEntry};
use crate::dnssd::srv_order::select_first_by_priority_weight;

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

/// Pushes an address record as additional data, within the question's additional cap.
fn push_extra<'a>(ctx: &Ctx<'a>, extra: &mut Vec<Rr<'a>>, rr: Option<Rr<'a>>) {
    if let Some(rr) = rr {
        let mut sink = ctx.extra(extra);
        if !sink.full() {
            sink.push(rr);
        }
    }
}

/// Additional records for a name target: an in-zone A resolution (CNAME chain and A records;
/// CoreDNS has no AAAA here), once per target. Targets outside the zone get none: srvd does not
/// forward.
fn glue_for_name<'a, 't>(
    ctx: &Ctx<'a>,
    target: &'t Name,
    glued: &mut SmallSet<&'t Name>,
    extra: &mut Vec<Rr<'a>>,
) {
    let mut sink = ctx.extra(extra);
    if sink.full() || !ctx.in_zone(target) || !glued.insert(target) {
        return;
    }
    let _ = address::addresses(
        ctx,
        target,
        Owner::Record,
        RecordType::A,
        &mut Vec::new(),
        &mut sink,
    );
}

/// CoreDNS's weight normalisation: per priority, `floor((100 / Σ(w or 100)) · (w or 100))`, at
/// least 1, in IEEE doubles and in that order (a lone weight 97 gives 99).
fn normalised_weight(entry: &ServiceEntry, sums: &SmallMap<i64, i64>) -> u16 {
    let sum = sums.get(&i64::from(entry.priority)).copied().unwrap_or(100) as f64;
    let mut w = 100.0 / sum;
    w *= if entry.weight == 0 {
        100.0
    } else {
        f64::from(entry.weight)
    };
    // Go's uint16(math.Floor(w)); values are 1..=100 for sane weights.
    let weight = w.floor() as u16;
    weight.max(1)
}

/// One SRV record CoreDNS would build: its entry, target and fields.
struct Candidate {
    entry: usize,
    priority: u16,
    weight: u16,
    port: u16,
}

/// SRV records at `name`: the first [`Ctx::answer_left`] of an RFC 2782 order drawn over every
/// record CoreDNS would build (in key order, de-duplicated by (target, port) for IP hosts), then
/// glue for the targets of those records only.
pub(super) fn srv<'a, R: Rng + ?Sized>(
    ctx: &Ctx<'a>,
    name: &Name,
    rng: &mut R,
    out: &mut Vec<Rr<'a>>,
    extra: &mut Vec<Rr<'a>>,
) -> Result<(), NotFound> {
    let services = ctx.services(name, RecordType::SRV, false)?;
    let mut sums: SmallMap<i64, i64> = SmallMap::default();
    for entry in &services {
        let weight = if entry.weight == 0 {
            100
        } else {
            i64::from(entry.weight)
        };
        *sums.get_or_insert_with(i64::from(entry.priority), || 0).0 += weight;
    }
    let targets: Vec<Option<Cow<'a, Name>>> = services.iter().map(|e| target_of(e)).collect();
    let mut records: SmallSet<(&Name, u16)> = SmallSet::default();
    // IP-host entries by target, as a chain through `next_same_target`: (first, last) per target.
    let mut chains: SmallMap<&Name, (usize, usize)> = SmallMap::default();
    let mut next_same_target: Vec<Option<usize>> = vec![None; services.len()];
    let mut candidates = Vec::new();
    for (i, entry) in services.iter().enumerate() {
        // Port -1 drops the record (it still counted in the weight sum above).
        let Some(target) = targets[i].as_deref().filter(|_| entry.port != -1) else {
            continue;
        };
        // invariant: decoding keeps priority and port within 16 bits (port -1 is skipped).
        let (priority, port) = (entry.priority, entry.port as u16);
        let candidate = Candidate {
            entry: i,
            priority,
            weight: normalised_weight(entry, &sums),
            port,
        };
        if matches!(entry.kind, HostKind::Name(_)) {
            candidates.push(candidate);
            continue;
        }
        let (chain, new) = chains.get_or_insert_with(target, || (i, i));
        if !new {
            next_same_target[chain.1] = Some(i);
            chain.1 = i;
        }
        if records.insert((target, port)) {
            candidates.push(candidate);
        }
    }
    let k = ctx.answer_left.get();
    select_first_by_priority_weight(&mut candidates, k, rng, |c| (c.priority, c.weight));
    candidates.truncate(k);
    ctx.answer_left.set(k - candidates.len());

    let mut glued: SmallSet<&Name> = SmallSet::default();
    let mut glued_addresses: SmallSet<(&Name, &str)> = SmallSet::default();
    for c in &candidates {
        let entry = services[c.entry];
        let Some(target) = targets[c.entry].as_deref() else {
            continue;
        };
        let data = RData::SRV(SRV::new(c.priority, c.weight, c.port, target.clone()));
        out.push(Rr::owned(
            Owner::Question,
            record(name, ctx.ttl(entry), data),
        ));
        if matches!(entry.kind, HostKind::Name(_)) {
            glue_for_name(ctx, target, &mut glued, extra);
            continue;
        }
        let mut next = chains.get(&target).map(|chain| chain.0);
        while let Some(i) = next {
            let entry = services[i];
            if glued_addresses.insert((target, &*entry.host)) {
                push_extra(ctx, extra, address_record(ctx, entry, target));
            }
            next = next_same_target[i];
        }
    }
    Ok(())
}

/// The SRV target of an entry: its host for a name host, else the key's name, minus
/// `targetstrip` labels (borrowed from the snapshot unless labels are stripped).
fn target_of(entry: &ServiceEntry) -> Option<Cow<'_, Name>> {
    let name = match &entry.kind {
        HostKind::Name(host) => &**host,
        HostKind::A(_) | HostKind::Aaaa(_) => &entry.key_name,
        HostKind::Txt | HostKind::Empty => return None,
    };
    Some(if entry.target_strip == 0 {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(target_strip(name, i64::from(entry.target_strip)))
    })
}

/// MX records at `name`: only `mail: true` entries; preference = priority. In key order, up to
/// the question's record cap.
pub(super) fn mx<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    out: &mut Vec<Rr<'a>>,
    extra: &mut Vec<Rr<'a>>,
) -> Result<(), NotFound> {
    let services = ctx.services(name, RecordType::MX, false)?;
    let exchanges: Vec<Option<Cow<'a, Name>>> = services
        .iter()
        .map(|entry| target_of(entry).filter(|_| entry.mail))
        .collect();
    let mut records: SmallSet<(&Name, u16)> = SmallSet::default();
    let mut addresses: SmallSet<(&Name, &str)> = SmallSet::default();
    let mut glued: SmallSet<&Name> = SmallSet::default();
    for (entry, exchange) in services.iter().zip(&exchanges) {
        let Some(exchange) = exchange.as_deref() else {
            continue;
        };
        if ctx.answers(out).full() {
            break;
        }
        // invariant: decoding keeps priority within 16 bits.
        let preference = entry.priority;
        let ttl = ctx.ttl(entry);
        let mx = || {
            let data = RData::MX(MX::new(preference, exchange.clone()));
            Rr::owned(Owner::Question, record(name, ttl, data))
        };
        if matches!(entry.kind, HostKind::Name(_)) {
            ctx.answers(out).push(mx());
            glue_for_name(ctx, exchange, &mut glued, extra);
            continue;
        }
        if records.insert((exchange, preference)) {
            ctx.answers(out).push(mx());
        }
        // The address is owned by the key's name without targetstrip (as CoreDNS does).
        if addresses.insert((&entry.key_name, &*entry.host)) {
            push_extra(ctx, extra, address_record(ctx, entry, &entry.key_name));
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
    if services
        .iter()
        .any(|entry| matches!(entry.kind, HostKind::Name(_)))
    {
        return Err(Failure::ServFail);
    }
    let origin = ctx.zone.origin();
    let mut targets: SmallSet<Name> = SmallSet::default();
    for entry in services {
        if ctx.answers(out).full() {
            break;
        }
        if let HostKind::A(_) | HostKind::Aaaa(_) = &entry.kind {
            let target = target_strip(&entry.key_name, i64::from(entry.target_strip));
            push_extra(ctx, extra, address_record(ctx, entry, &target));
            if targets.insert(target.clone()) {
                let data = RData::NS(NS(target));
                ctx.answers(out).push(Rr::owned(
                    Owner::Question,
                    record(origin, ctx.ttl(entry), data),
                ));
            }
        }
    }
    Ok(())
}
