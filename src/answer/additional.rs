//! Additional-section processing: addresses of the names an answer points at.
//!
//! SRV, MX and NS targets inside the zone get their A and AAAA (RFC 2782 "Usage rules", RFC 1035
//! §3.3.9/§3.3.11). A PTR answer that browses DNS-SD instances gets each instance's SRV and TXT
//! plus the SRV targets' addresses (RFC 6763 §12.1). Everything added here is discardable: the
//! encoder drops it, whole RRsets first, when the response would not fit.

use std::collections::HashSet;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Answer, Owner, Rr};
use crate::index::name_key::LookupKey;
use crate::index::{FileZone, Zone};

/// Up to this many records in the response, a linear scan finds duplicates faster than hashing.
const LINEAR: usize = 16;

/// The additional section being built: records already in the response (by address: each is
/// borrowed from the snapshot once; a hash set once there are more than [`LINEAR`]), and how
/// many more may be added.
struct Extra<'a> {
    present: Option<HashSet<*const Record>>,
    left: usize,
    zone: &'a Zone,
    file: &'a FileZone,
}

/// Adds the additional records for every record in the answer section, at most `cap` of them.
pub(super) fn add_for_answers<'a>(
    zone: &'a Zone,
    file: &'a FileZone,
    cap: usize,
    out: &mut Answer<'a>,
) {
    let mut extra = Extra {
        present: None,
        left: cap.saturating_sub(out.additional.len()),
        zone,
        file,
    };
    for i in 0..out.answers.len() {
        if extra.left == 0 {
            return;
        }
        // invariant: zone-file answers only hold borrowed records.
        let std::borrow::Cow::Borrowed(record) = out.answers[i].record else {
            continue;
        };
        match &record.data {
            RData::SRV(srv) => extra.add_addresses(&srv.target, out),
            RData::MX(mx) => extra.add_addresses(&mx.exchange, out),
            RData::NS(ns) => extra.add_addresses(&ns.0, out),
            RData::PTR(ptr) => extra.add_instance(&ptr.0, out),
            _ => {}
        }
    }
}

impl<'a> Extra<'a> {
    /// A and AAAA of `target`, if it is a name in this zone.
    fn add_addresses(&mut self, target: &Name, out: &mut Answer<'a>) {
        self.add_types(target, &[RecordType::A, RecordType::AAAA], out);
    }

    /// SRV and TXT of a DNS-SD instance, then its targets' addresses.
    fn add_instance(&mut self, instance: &Name, out: &mut Answer<'a>) {
        let start = out.additional.len();
        self.add_types(instance, &[RecordType::SRV, RecordType::TXT], out);
        for i in start..out.additional.len() {
            if let std::borrow::Cow::Borrowed(record) = out.additional[i].record
                && let RData::SRV(srv) = &record.data
            {
                self.add_addresses(&srv.target, out);
            }
        }
    }

    /// Whether `record` is not in the response yet (then it counts as present from now on).
    fn first_time(&mut self, record: &Record, out: &Answer<'a>) -> bool {
        let record = std::ptr::from_ref(record);
        let all = || out.answers.iter().chain(&out.additional);
        if self.present.is_none() && out.answers.len() + out.additional.len() > LINEAR {
            self.present = Some(
                all()
                    .map(|rr| std::ptr::from_ref(rr.record.as_ref()))
                    .collect(),
            );
        }
        match &mut self.present {
            Some(present) => present.insert(record),
            None => !all().any(|rr| std::ptr::eq(rr.record.as_ref(), record)),
        }
    }

    fn add_types(&mut self, name: &Name, types: &[RecordType], out: &mut Answer<'a>) {
        let key = LookupKey::from_name(name);
        if !key.is_within(self.zone.key()) {
            return;
        }
        let Some(node) = self.file.tree().node(key.as_bytes()) else {
            return;
        };
        for rtype in types {
            let Some(rrset) = node.rrset(*rtype) else {
                continue;
            };
            for record in &rrset.records {
                if self.left == 0 {
                    return;
                }
                if self.first_time(record, out) {
                    self.left -= 1;
                    out.additional.push(Rr::borrowed(Owner::Record, record));
                }
            }
        }
    }
}
