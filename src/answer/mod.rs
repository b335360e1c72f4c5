//! `answer()`: one question against one zone of one index snapshot, producing the three sections.
//!
//! Two sources, two rule sets:
//! - zone files (`file`) keep standard authoritative semantics (exact names, RFC 4592
//!   wildcards, RFC 8020 empty non-terminals, CNAMEs followed in-zone, RFC 8482 ANY);
//! - etcd data (`etcd`) is answered as CoreDNS's `etcd` plugin answers it (subtree reads,
//!   `*`/`any` wildcards, groups, weight normalisation; CoreDNS `plugin/etcd`, `plugin/backend_lookup.go`), except
//!   where srvd is deliberately better (RFC 2782 order, REFUSED outside zones, skipped keys).
//!
//! A zone with both: a name that owns records in the zone file is answered from the file alone,
//! SOA and apex NS come from the file, every other name from etcd, and when etcd has nothing at
//! or below the name, the file's rules decide (wildcard, empty non-terminal or NXDOMAIN).
//!
//! Answers borrow zone-file records from the snapshot; etcd answers are synthesised per question.
//! Records whose owner is the question name carry [`Owner::Question`]: the encoder writes the
//! question's name, spelled as the client spelled it. SRV RRsets come out in a fresh RFC 2782
//! order every time.
//!
//! `answer()` takes the transport's payload limit and builds at most the records that could fit
//! (`budget`): a question's cost is bounded by the limit and the data under its own name, never
//! by how many records exist in all (the encoder still decides TC).
//!
//! Invariant: no I/O, no sockets, no runtime; deterministic given the RNG (and lease clock).

mod additional;
pub mod budget;
mod etcd;
mod file;
pub mod registry;
mod small;
mod srv;

use std::borrow::Cow;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use rand::Rng;

use crate::index::name_key::LookupKey;
use crate::index::{Index, Zone};

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

/// Whose name a response record is sent under.
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    /// The question name as asked (exact matches, wildcard synthesis, etcd answers).
    Question,
    /// This name (a CNAME target reached through a zone-file wildcard).
    Name(&'a Name),
    /// The record's own name.
    Record,
}

/// One resource record in a response: a record, its owner, and the TTL to send.
#[derive(Clone, Debug)]
pub struct Rr<'a> {
    /// Whose name to send.
    pub owner: Owner<'a>,
    /// The record, borrowed from a zone file or synthesised from etcd data.
    pub record: Cow<'a, Record>,
    /// The TTL to send (the record's own, or the RFC 2308 negative TTL for a negative SOA).
    pub ttl: u32,
}

impl<'a> Rr<'a> {
    fn borrowed(owner: Owner<'a>, record: &'a Record) -> Self {
        Self {
            owner,
            ttl: record.ttl,
            record: Cow::Borrowed(record),
        }
    }

    fn owned(owner: Owner<'a>, record: Record) -> Self {
        Self {
            owner,
            ttl: record.ttl,
            record: Cow::Owned(record),
        }
    }

    /// The name this record goes out under, given the question name.
    pub fn owner_name<'n>(&'n self, question: &'n Name) -> &'n Name {
        match self.owner {
            Owner::Question => question,
            Owner::Name(name) => name,
            Owner::Record => &self.record.name,
        }
    }
}

/// The sections of an authoritative answer.
#[derive(Debug)]
pub struct Answer<'a> {
    /// NOERROR, NXDOMAIN, or SERVFAIL (etcd zone not synced yet; a CoreDNS error case).
    pub rcode: ResponseCode,
    /// The answer section, in the order to send it.
    pub answers: Vec<Rr<'a>>,
    /// The authority section (the SOA of negative answers).
    pub authority: Vec<Rr<'a>>,
    /// The additional section: every record here may be dropped to fit a size limit without
    /// setting TC (RFC 2181 §9), whole RRsets first.
    pub additional: Vec<Rr<'a>>,
    /// Some TTL came from a lease's remaining time, so the same question asked later gets other
    /// TTLs from the same snapshot: this answer must not be prepared for reuse.
    pub clocked: bool,
    /// The etcd paths this answer read (`index::changes::path_hash`): it stays exact until one
    /// of them changes. Zone-file data is fixed for the snapshot's generation.
    pub deps: Vec<u64>,
}

/// The allocations behind an [`Answer`], kept by a listener between queries.
#[derive(Debug, Default)]
pub struct AnswerBuffers {
    answers: Vec<Rr<'static>>,
    authority: Vec<Rr<'static>>,
    additional: Vec<Rr<'static>>,
    deps: Vec<u64>,
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
            clocked: false,
            deps: {
                let mut deps = buffers.deps;
                deps.clear();
                deps
            },
        }
    }

    /// Gives the allocations back for the next query.
    pub fn into_buffers(self) -> AnswerBuffers {
        AnswerBuffers {
            answers: recycle(self.answers),
            authority: recycle(self.authority),
            additional: recycle(self.additional),
            deps: self.deps,
        }
    }

    /// Empties the sections to answer again; what was read so far (`clocked`, `deps`) still
    /// counts.
    fn clear(&mut self) {
        self.rcode = ResponseCode::NoError;
        self.answers.clear();
        self.authority.clear();
        self.additional.clear();
    }
}

/// Answers `question` from `zone` of `index`; the zone must contain the question name.
///
/// `limit` is the size in bytes the response may take (`server::wire::payload_limit`): at most
/// [`budget::record_cap`]`(limit)` answer records are built, and as many additional ones, SRV
/// records being the first ones of an RFC 2782 draw over all candidates.
pub fn answer<'a, R: Rng + ?Sized>(
    index: &'a Index,
    zone: &'a Zone,
    question: &Question<'_>,
    limit: u16,
    rng: &mut R,
    out: &mut Answer<'a>,
) {
    let cap = budget::record_cap(limit);
    let etcd = zone.etcd().zip(index.etcd());
    let mut registry_name = false;
    if let (Some(registry), Some((_, data))) = (zone.registry(), etcd) {
        // Whether a name is the registry's depends on every registry key.
        out.deps.push(crate::index::changes::registry_hash());
        match registry::answer(zone, registry, data, question, cap, rng, out) {
            registry::Found::Answered => {
                // Registry records are leased: their TTLs follow the clock.
                out.clocked = true;
                return;
            }
            registry::Found::Exists => registry_name = true,
            registry::Found::Absent => {}
        }
    }
    from_zone_sources(zone, etcd, question, cap, rng, out);
    if registry_name
        && out.rcode == ResponseCode::NXDomain
        && let Some((etcd_zone, data)) = etcd
    {
        // The name exists in the registry: NODATA, not NXDOMAIN (RFC 8020).
        out.clear();
        etcd::negative(zone, etcd_zone, data, ResponseCode::NoError, out);
    }
}

/// The zone file and SkyDNS answer (everything but the registry).
fn from_zone_sources<'a, R: Rng + ?Sized>(
    zone: &'a Zone,
    etcd: Option<(&'a crate::index::EtcdZone, &'a crate::index::EtcdData)>,
    question: &Question<'_>,
    cap: usize,
    rng: &mut R,
    out: &mut Answer<'a>,
) {
    match (zone.file(), etcd) {
        (Some(file), None) => file::answer(zone, file, question, cap, rng, out),
        (None, Some((etcd_zone, data))) => {
            if etcd::answer(zone, etcd_zone, data, question, cap, rng, out)
                == etcd::Outcome::NotFound
            {
                etcd::negative(zone, etcd_zone, data, ResponseCode::NXDomain, out);
            }
        }
        (Some(file), Some((etcd_zone, data))) => {
            let apex = question.key.label_count() == zone.apex_labels();
            let from_file = question.qtype == RecordType::SOA
                || (question.qtype == RecordType::NS && apex)
                || file.tree().node(question.key.as_bytes()).is_some();
            if from_file
                || etcd::answer(zone, etcd_zone, data, question, cap, rng, out)
                    == etcd::Outcome::NotFound
            {
                file::answer(zone, file, question, cap, rng, out);
            }
        }
        (None, None) => out.rcode = ResponseCode::ServFail,
    }
}
