//! Additional-section processing: addresses of the names an answer points at.
//!
//! SRV, MX and NS targets inside the zone get their A and AAAA (RFC 2782 "Usage rules", RFC 1035
//! §3.3.9/§3.3.11). A PTR answer that browses DNS-SD instances gets each instance's SRV and TXT
//! plus the SRV targets' addresses (RFC 6763 §12.1). Everything added here is discardable: the
//! encoder drops it, whole RRsets first, when the response would not fit.

use hickory_proto::rr::{Name, RData, RecordType};

use super::{Answer, Rr};
use crate::index::Zone;
use crate::index::name_key::LookupKey;

/// Adds the additional records for every record in the answer section.
pub(super) fn add_for_answers<'a>(zone: &'a Zone, out: &mut Answer<'a>) {
    for i in 0..out.answers.len() {
        let record = out.answers[i].record;
        match &record.data {
            RData::SRV(srv) => add_addresses(zone, &srv.target, out),
            RData::MX(mx) => add_addresses(zone, &mx.exchange, out),
            RData::NS(ns) => add_addresses(zone, &ns.0, out),
            RData::PTR(ptr) => add_instance(zone, &ptr.0, out),
            _ => {}
        }
    }
}

/// A and AAAA of `target`, if it is a name in this zone.
fn add_addresses<'a>(zone: &'a Zone, target: &Name, out: &mut Answer<'a>) {
    add_types(zone, target, &[RecordType::A, RecordType::AAAA], out);
}

/// SRV and TXT of a DNS-SD instance, then its targets' addresses.
fn add_instance<'a>(zone: &'a Zone, instance: &Name, out: &mut Answer<'a>) {
    let start = out.additional.len();
    add_types(zone, instance, &[RecordType::SRV, RecordType::TXT], out);
    for i in start..out.additional.len() {
        if let RData::SRV(srv) = &out.additional[i].record.data {
            add_addresses(zone, &srv.target, out);
        }
    }
}

fn add_types<'a>(zone: &'a Zone, name: &Name, types: &[RecordType], out: &mut Answer<'a>) {
    let key = LookupKey::from_name(name);
    if !key.is_within(zone.key()) {
        return;
    }
    let Some(node) = zone.tree().node(key.as_bytes()) else {
        return;
    };
    for rtype in types {
        let Some(rrset) = node.rrset(*rtype) else {
            continue;
        };
        for record in &rrset.records {
            let already = out
                .answers
                .iter()
                .chain(&out.additional)
                .any(|rr| std::ptr::eq(rr.record, record));
            if !already {
                out.additional.push(Rr::own(record));
            }
        }
    }
}
