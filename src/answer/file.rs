//! Zone-file answers: standard authoritative semantics over a [`FileZone`]'s tree.
//!
//! Exact owner names (case-insensitive), RFC 4592 wildcards, CNAMEs answered and followed inside
//! the zone, empty non-terminals as NODATA (RFC 8020), NXDOMAIN/NODATA with the SOA in authority
//! at the RFC 2308 negative TTL, ANY answered minimally (RFC 8482).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;

use super::{Answer, Owner, Question, Rr, additional, srv};
use crate::index::name_key::LookupKey;
use crate::index::tree::{Found, Node};
use crate::index::{FileZone, Zone};

/// CNAME chains longer than this inside one zone are cut (RFC 1034 §3.6.2 asks servers to stop
/// loops; BIND and NSD use similar small bounds).
const MAX_CNAME_HOPS: usize = 8;

/// Appends the zone file's SOA to the authority section and sets `rcode` (RFC 2308 §5: the
/// negative TTL is the minimum of the SOA's TTL and its MINIMUM field).
pub(super) fn negative<'a>(file: &'a FileZone, rcode: ResponseCode, out: &mut Answer<'a>) {
    out.rcode = rcode;
    let soa = file.soa();
    let minimum = file.soa_data().map_or(soa.ttl, |data| data.minimum);
    let mut rr = Rr::borrowed(Owner::Record, soa);
    rr.ttl = soa.ttl.min(minimum);
    out.authority.push(rr);
}

/// Answers `question` from the zone file of `zone`, which must contain the question name.
pub(super) fn answer<'a, R: Rng + ?Sized>(
    zone: &'a Zone,
    file: &'a FileZone,
    question: &Question<'_>,
    cap: usize,
    rng: &mut R,
    out: &mut Answer<'a>,
) {
    let mut key = question.key.clone();
    let mut owner: Owner<'a> = Owner::Question;
    for _ in 0..MAX_CNAME_HOPS {
        let node = match file.tree().find(&key, zone.apex_labels()) {
            Found::Exact(node) | Found::Wildcard(node) => node,
            Found::EmptyNonTerminal => return negative(file, ResponseCode::NoError, out),
            Found::NxDomain => return negative(file, ResponseCode::NXDomain, out),
        };
        match follow_cname(node, question.qtype) {
            Some((cname, target)) => {
                out.answers.push(Rr::borrowed(owner, cname));
                let next = LookupKey::from_name(target);
                if !next.is_within(zone.key()) {
                    // Outside this zone: the resolver follows it (RFC 1034 §4.3.2 step 3a).
                    return;
                }
                key = next;
                owner = Owner::Name(target);
            }
            None => {
                if !answer_node(node, owner, question.qtype, cap, rng, out) {
                    negative(file, ResponseCode::NoError, out);
                    return;
                }
                additional::add_for_answers(zone, file, cap, out);
                return;
            }
        }
    }
}

/// The CNAME to follow at `node`, if it has one and the question is not for the CNAME itself.
fn follow_cname(node: &Node, qtype: RecordType) -> Option<(&Record, &Name)> {
    if matches!(qtype, RecordType::CNAME) {
        return None;
    }
    let record = node.rrset(RecordType::CNAME)?.records.first()?;
    match &record.data {
        RData::CNAME(target) => Some((record, &target.0)),
        _ => None,
    }
}

/// Pushes the RRset answering `qtype` at `node`, at most `cap` records of it (an SRV RRset: the
/// first `cap` of an RFC 2782 draw over all of it); returns false when there is none (NODATA).
fn answer_node<'a, R: Rng + ?Sized>(
    node: &'a Node,
    owner: Owner<'a>,
    qtype: RecordType,
    cap: usize,
    rng: &mut R,
    out: &mut Answer<'a>,
) -> bool {
    let rrset = if qtype == RecordType::ANY {
        // RFC 8482 §4.1: answer with one RRset of the name's choosing, never the whole node.
        node.rrsets.first()
    } else {
        node.rrset(qtype)
    };
    let Some(rrset) = rrset else {
        return false;
    };
    let start = out.answers.len();
    if rrset.rtype == RecordType::SRV {
        out.answers.extend(
            rrset
                .records
                .iter()
                .map(|record| Rr::borrowed(owner, record)),
        );
        srv::order_first(&mut out.answers[start..], cap, rng);
    } else {
        out.answers.extend(
            rrset
                .records
                .iter()
                .take(cap)
                .map(|record| Rr::borrowed(owner, record)),
        );
    }
    out.answers.truncate(start + cap);
    true
}
