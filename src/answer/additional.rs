//! Additional-section processing: addresses of the names an answer points at.
//!
//! SRV, MX and NS targets inside the zone get their A and AAAA (RFC 2782 "Usage rules", RFC 1035
//! §3.3.9/§3.3.11). A PTR answer that browses DNS-SD instances gets each instance's SRV and TXT
//! plus the SRV targets' addresses (RFC 6763 §12.1). Everything added here is discardable: the
//! encoder drops it, whole RRsets first, when the response would not fit.

use hickory_proto::rr::{Name, RData, RecordType};

use super::{Answer, Owner, Rr};
use crate::index::name_key::LookupKey;
use crate::index::{FileZone, Zone};

/// Adds the additional records for every record in the answer section.
pub(super) fn add_for_answers<'a>(zone: &'a Zone, file: &'a FileZone, out: &mut Answer<'a>) {
    for i in 0..out.answers.len() {
        // invariant: zone-file answers only hold borrowed records.
        let std::borrow::Cow::Borrowed(record) = out.answers[i].record else {
            continue;
        };
        match &record.data {
            RData::SRV(srv) => add_addresses(zone, file, &srv.target, out),
            RData::MX(mx) => add_addresses(zone, file, &mx.exchange, out),
            RData::NS(ns) => add_addresses(zone, file, &ns.0, out),
            RData::PTR(ptr) => add_instance(zone, file, &ptr.0, out),
            _ => {}
        }
    }
}

/// A and AAAA of `target`, if it is a name in this zone.
fn add_addresses<'a>(zone: &Zone, file: &'a FileZone, target: &Name, out: &mut Answer<'a>) {
    add_types(zone, file, target, &[RecordType::A, RecordType::AAAA], out);
}

/// SRV and TXT of a DNS-SD instance, then its targets' addresses.
fn add_instance<'a>(zone: &Zone, file: &'a FileZone, instance: &Name, out: &mut Answer<'a>) {
    let start = out.additional.len();
    add_types(
        zone,
        file,
        instance,
        &[RecordType::SRV, RecordType::TXT],
        out,
    );
    for i in start..out.additional.len() {
        if let std::borrow::Cow::Borrowed(record) = out.additional[i].record
            && let RData::SRV(srv) = &record.data
        {
            add_addresses(zone, file, &srv.target, out);
        }
    }
}

fn add_types<'a>(
    zone: &Zone,
    file: &'a FileZone,
    name: &Name,
    types: &[RecordType],
    out: &mut Answer<'a>,
) {
    let key = LookupKey::from_name(name);
    if !key.is_within(zone.key()) {
        return;
    }
    let Some(node) = file.tree().node(key.as_bytes()) else {
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
                .any(|rr| std::ptr::eq(rr.record.as_ref(), record));
            if !already {
                out.additional.push(Rr::borrowed(Owner::Record, record));
            }
        }
    }
}
