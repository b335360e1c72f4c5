//! `answer()`: one question against one zone of one index snapshot, producing the three sections.
//!
//! Zone files keep standard authoritative semantics: exact owner names (case-insensitive), RFC 4592
//! wildcards, CNAMEs answered and followed inside the zone, empty non-terminals as NODATA
//! (RFC 8020), NXDOMAIN/NODATA with the SOA in authority at the RFC 2308 negative TTL, ANY answered
//! minimally (RFC 8482). SRV RRsets come out in a fresh RFC 2782 order every time.
//!
//! The answer borrows records from the snapshot: nothing is cloned, and the sections are vectors
//! the caller recycles between queries (see [`AnswerBuffers`]), so a warm query allocates nothing
//! here. Records whose owner is the question name carry no owner of their own ([`Rr::owner`] is
//! `None`): the encoder writes the question's name, spelled as the client spelled it.
//!
//! Invariant: no I/O, no sockets, no runtime; deterministic given the RNG.

mod additional;
mod srv;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;

use crate::index::Zone;
use crate::index::name_key::LookupKey;
use crate::index::tree::{Found, Node};

/// CNAME chains longer than this inside one zone are cut (RFC 1034 §3.6.2 asks servers to stop
/// loops; BIND and NSD use similar small bounds).
const MAX_CNAME_HOPS: usize = 8;

/// One question, as the answer path sees it.
pub struct Question<'q> {
    /// The name as the client spelled it.
    pub name: &'q Name,
    /// The name's lowercased lookup key.
    pub key: LookupKey,
    /// The type asked for.
    pub qtype: RecordType,
}

impl<'q> Question<'q> {
    /// A question for `name` and `qtype`.
    pub fn new(name: &'q Name, qtype: RecordType) -> Self {
        Self {
            name,
            key: LookupKey::from_name(name),
            qtype,
        }
    }
}

/// One resource record in a response: a borrowed record, its owner, and the TTL to send.
#[derive(Clone, Copy, Debug)]
pub struct Rr<'a> {
    /// `None`: the question name as asked (exact matches and wildcard synthesis); otherwise the
    /// record's own owner.
    pub owner: Option<&'a Name>,
    /// The record (its owner is ignored when `owner` is `None`).
    pub record: &'a Record,
    /// The TTL to send (the record's own, or the RFC 2308 negative TTL for a negative SOA).
    pub ttl: u32,
}

impl<'a> Rr<'a> {
    fn at_question(record: &'a Record) -> Self {
        Self {
            owner: None,
            record,
            ttl: record.ttl,
        }
    }

    fn at(owner: Option<&'a Name>, record: &'a Record) -> Self {
        Self {
            owner,
            record,
            ttl: record.ttl,
        }
    }

    fn own(record: &'a Record) -> Self {
        Self::at(Some(&record.name), record)
    }
}

/// The sections of an authoritative answer.
#[derive(Debug)]
pub struct Answer<'a> {
    /// NOERROR or NXDOMAIN.
    pub rcode: ResponseCode,
    /// The answer section, in the order to send it.
    pub answers: Vec<Rr<'a>>,
    /// The authority section (the SOA of negative answers).
    pub authority: Vec<Rr<'a>>,
    /// The additional section: every record here may be dropped to fit a size limit without
    /// setting TC (RFC 2181 §9), whole RRsets first.
    pub additional: Vec<Rr<'a>>,
}

/// The allocations behind an [`Answer`], kept by a listener between queries.
#[derive(Debug, Default)]
pub struct AnswerBuffers {
    answers: Vec<Rr<'static>>,
    authority: Vec<Rr<'static>>,
    additional: Vec<Rr<'static>>,
}

/// Empties `v` and hands its allocation over at another lifetime. `Rr<'a>` and `Rr<'b>` have the
/// same layout, so std's in-place collection reuses the buffer instead of allocating.
fn recycle<'b>(mut v: Vec<Rr<'_>>) -> Vec<Rr<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable_rr()).collect()
}

#[cold]
fn unreachable_rr<'b>() -> Rr<'b> {
    // invariant: `recycle` clears the vector before mapping, so this is never called.
    unreachable!("recycle maps an empty vector")
}

impl<'a> Answer<'a> {
    /// An empty NOERROR answer using `buffers`' allocations.
    pub fn with_buffers(buffers: AnswerBuffers) -> Self {
        Self {
            rcode: ResponseCode::NoError,
            answers: recycle(buffers.answers),
            authority: recycle(buffers.authority),
            additional: recycle(buffers.additional),
        }
    }

    /// Gives the allocations back for the next query.
    pub fn into_buffers(self) -> AnswerBuffers {
        AnswerBuffers {
            answers: recycle(self.answers),
            authority: recycle(self.authority),
            additional: recycle(self.additional),
        }
    }

    fn negative(&mut self, zone: &'a Zone, rcode: ResponseCode) {
        self.rcode = rcode;
        let soa = zone.soa();
        // RFC 2308 §5: the negative TTL is the minimum of the SOA's TTL and its MINIMUM field.
        let minimum = zone.soa_data().map_or(soa.ttl, |data| data.minimum);
        self.authority.push(Rr {
            owner: Some(&soa.name),
            record: soa,
            ttl: soa.ttl.min(minimum),
        });
    }
}

/// Answers `question` from `zone`, which must contain the question name.
pub fn answer<'a, R: Rng + ?Sized>(
    zone: &'a Zone,
    question: &Question<'_>,
    rng: &mut R,
    out: &mut Answer<'a>,
) {
    let mut key = question.key.clone();
    let mut owner: Option<&'a Name> = None;
    for _ in 0..MAX_CNAME_HOPS {
        let node = match zone.tree().find(&key, zone.apex_labels()) {
            Found::Exact(node) | Found::Wildcard(node) => node,
            Found::EmptyNonTerminal => return out.negative(zone, ResponseCode::NoError),
            Found::NxDomain => return out.negative(zone, ResponseCode::NXDomain),
        };
        match follow_cname(node, question.qtype) {
            Some((cname, target)) => {
                out.answers.push(Rr::at(owner, cname));
                let next = LookupKey::from_name(target);
                if !next.is_within(zone.key()) {
                    // Outside this zone: the resolver follows it (RFC 1034 §4.3.2 step 3a).
                    return;
                }
                key = next;
                owner = Some(target);
            }
            None => {
                if !answer_node(node, owner, question.qtype, rng, out) {
                    out.negative(zone, ResponseCode::NoError);
                    return;
                }
                additional::add_for_answers(zone, out);
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

/// Pushes the RRset answering `qtype` at `node`; returns false when there is none (NODATA).
fn answer_node<'a, R: Rng + ?Sized>(
    node: &'a Node,
    owner: Option<&'a Name>,
    qtype: RecordType,
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
    out.answers
        .extend(rrset.records.iter().map(|record| match owner {
            None => Rr::at_question(record),
            Some(_) => Rr::at(owner, record),
        }));
    if rrset.rtype == RecordType::SRV {
        srv::order(&mut out.answers[start..], rng);
    }
    true
}
