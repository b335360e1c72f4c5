//! Prepared responses: a question answered once per snapshot, then answered again by a hash
//! look-up and a copy.
//!
//! An answer depends only on the snapshot, the question as the client spelled it, the size
//! limit, whether the query had EDNS, and (for SRV) the RNG's draw. So the first time a question
//! meets a snapshot, the answer path (`answer::answer`, the reference) answers it as always, and
//! its records are also kept, encoded, for the next time. A repeat then costs: parse the
//! question in place (no hickory `Message`), hash it, copy the header, the question and the
//! records, and draw the SRV order.
//!
//! - **SRV order stays fresh per response.** Every record is encoded with its names compressed
//!   against the question only (`wire::encode_detached`), so records can go out in any order;
//!   each SRV RRset of the answer section is drawn anew per response with the same
//!   `order_by_priority_weight` the answer path uses, on the priority and weight of each
//!   record's RDATA (the weights the answer path drew on).
//! - **Same meaning as the reference.** A response is prepared only when every record of the
//!   reference answer fits the size limit in this encoding (which compresses less than the
//!   reference encoder, so the reference fits too): nothing is truncated or trimmed, and the
//!   records are the same. Anything else is answered by the reference every time: a query that
//!   is not the plain shape [`PlainQuery::parse`] accepts, an answer whose TTLs follow the
//!   clock (leases: `Answer::clocked`), one that would not fit whole, and every query while the
//!   query log is on (it logs the parsed message).
//! - **Invalidation by the keys a change touches.** An entry records what it was built from:
//!   the snapshot's zone generation, the mirror's lineage and change-log epoch, and the hashes
//!   of the etcd paths its answer read (`Answer::deps`). It is sent only while the zones are
//!   the same ones, the mirror descends from the same listing, and none of those paths changed
//!   since the snapshot it was built from (`index::changes` dates changes by publish epoch,
//!   never by etcd revision): a write storm on some keys leaves every other prepared response
//!   in place. A stale entry is rebuilt by the next query that meets it.
//! - **Bounded.** At most `budget` bytes per handler, split evenly over the shards; a shard
//!   that would overflow is emptied first. An entry costs its one allocation (key, path
//!   hashes, pieces, records), its map slot and the allocator's header.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::sync::{PoisonError, RwLock};

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use rand::Rng;

use super::wire::{self, Response, Transport};
use crate::answer::Answer;
use crate::dnssd::srv_order::order_by_priority_weight;
use crate::index::Index;

/// Shards of the cache: a read takes one shard's lock, so two loops rarely meet on one.
const SHARDS: usize = 64;

/// What an entry was built from, and what it must still match to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    /// `Index::generation` (zone files and which zones exist).
    generation: u64,
    /// `ChangeLog::lineage` of the mirror (0: no mirror).
    lineage: u64,
    /// The mirror's change-log epoch: a change to a path the entry read, dated this epoch or
    /// later, makes the entry stale.
    epoch: u64,
    /// `ChangeLog::recorded`: while it is unchanged, so is every path.
    recorded: u64,
}

impl Origin {
    fn of(index: &Index) -> Self {
        let mirror = index.etcd().and_then(|etcd| etcd.mirror.as_ref());
        Self {
            generation: index.generation(),
            lineage: mirror.map_or(0, |m| m.changes().lineage()),
            epoch: mirror.map_or(0, |m| m.changes().epoch()),
            recorded: mirror.map_or(0, |m| m.changes().recorded()),
        }
    }
}

/// The largest response worth keeping: bigger answers are rare, and one would take a large
/// share of a shard.
const MAX_ENTRY: usize = 16 * 1024;

/// OPT record type (RFC 6891).
const OPT: u16 = 41;

/// A query of the one shape the prepared path answers: QUERY, one question whose name has no
/// compression pointer, class IN, no answer or authority records, and at most one OPT record
/// (version 0, no options) with nothing after it.
#[derive(Debug, Clone, Copy)]
pub struct PlainQuery<'r> {
    /// Message ID.
    pub id: u16,
    /// The request's RD and CD bits, in place: a response copies them.
    pub echoed_flags: u16,
    /// The question section as sent: name, type and class.
    pub question: &'r [u8],
    /// The question's type.
    pub qtype: u16,
    /// The OPT record's payload size and DO bit, when the query had one.
    pub edns: Option<(u16, bool)>,
}

impl<'r> PlainQuery<'r> {
    /// Reads `request` in place; `None` for anything but the plain shape (the reference path
    /// then decides: FORMERR, NOTIMP, BADVERS, REFUSED or an answer).
    pub fn parse(request: &'r [u8]) -> Option<Self> {
        let header = request.get(..12)?;
        let flags = u16::from_be_bytes([header[2], header[3]]);
        // QR clear and opcode QUERY.
        if flags & 0xf800 != 0 {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([header[4 + 2 * i], header[5 + 2 * i]]);
        if count(0) != 1 || count(1) != 0 || count(2) != 0 || count(3) > 1 {
            return None;
        }
        let mut at = 12;
        loop {
            let len = usize::from(*request.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            // Pointers and extended label types go the reference way.
            if len > 63 {
                return None;
            }
            at += len;
            // RFC 1035 §3.1: 255 bytes at most, the final zero included.
            if at - 12 >= 255 {
                return None;
            }
        }
        let fixed = request.get(at..at + 4)?;
        let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
        let question_end = at + 4;
        // Class IN only; zone transfers are refused by the reference path.
        if qclass != 1 || matches!(qtype, 251 | 252) {
            return None;
        }
        let edns = if count(3) == 1 {
            // Root owner, type OPT, class = payload, TTL = extended RCODE, version, flags;
            // RDLENGTH 0; and nothing after it.
            let opt = request.get(question_end..)?;
            if opt.len() != 11 || opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != OPT {
                return None;
            }
            if opt[5] != 0 || opt[6] != 0 || opt[9] != 0 || opt[10] != 0 {
                return None;
            }
            Some((u16::from_be_bytes([opt[3], opt[4]]), opt[7] & 0x80 != 0))
        } else if request.len() == question_end {
            None
        } else {
            return None;
        };
        Some(Self {
            id: u16::from_be_bytes([header[0], header[1]]),
            echoed_flags: flags & 0x0110,
            question: &request[12..question_end],
            qtype,
            edns,
        })
    }

    /// The size limit of a response over `transport`.
    pub fn limit(&self, transport: Transport) -> u16 {
        wire::payload_limit(transport, self.edns.map(|(payload, _)| payload))
    }

    /// Writes the cache key into `key`: the question as sent, the limit, and whether the query
    /// had EDNS (which adds the OPT record).
    pub fn key(&self, transport: Transport, key: &mut Vec<u8>) {
        key.clear();
        key.extend_from_slice(self.question);
        key.extend_from_slice(&self.limit(transport).to_be_bytes());
        key.push(u8::from(self.edns.is_some()));
    }
}

/// One answer-section record of a prepared response (10 bytes in the entry's allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    start: u16,
    len: u16,
    /// The SRV RRset this record is drawn with (0: its place is fixed).
    draw: u16,
    priority: u16,
    weight: u16,
}

impl Piece {
    const LEN: usize = 10;

    fn put(self, out: &mut Vec<u8>) {
        for field in [self.start, self.len, self.draw, self.priority, self.weight] {
            out.extend_from_slice(&field.to_be_bytes());
        }
    }

    fn read(bytes: &[u8]) -> Self {
        let field = |i: usize| u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        Self {
            start: field(0),
            len: field(1),
            draw: field(2),
            priority: field(3),
            weight: field(4),
        }
    }
}

/// What the counters and query log learn of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The response code sent.
    pub rcode: ResponseCode,
    /// The zone's metrics slot.
    pub zone: usize,
    /// The plugin label's index.
    pub plugin: u8,
}

/// A response ready to send again: everything after the question, and the header's fields.
#[derive(Debug)]
pub struct Prepared {
    /// Header flags but RD and CD.
    flags: u16,
    /// ANCOUNT, NSCOUNT, ARCOUNT (the OPT record included).
    counts: [u16; 3],
    /// The records of every section, then the OPT record.
    body: Vec<u8>,
    /// The answer section's records, when some of them are drawn per response (else empty:
    /// the body goes out as it is).
    pieces: Vec<Piece>,
    /// Where the answer section ends in `body`.
    answers_end: u16,
    outcome: Outcome,
}

impl Prepared {
    /// Builds the prepared form of the reference answer `answer` to `question` (the response
    /// `response` was encoded from), or `None` when it must be answered from scratch.
    /// `scratch` is a reusable buffer.
    pub fn build(
        question: &Query,
        question_bytes: &[u8],
        response: &Response<'_>,
        answer: &Answer<'_>,
        outcome: Outcome,
        scratch: &mut Vec<u8>,
    ) -> Option<Self> {
        if answer.clocked {
            return None;
        }
        // The prepared response repeats the question as the client sent it: it must be what
        // the reference encoder writes.
        scratch.clear();
        question
            .emit(&mut hickory_proto::serialize::binary::BinEncoder::new(
                scratch,
            ))
            .ok()?;
        if scratch.as_slice() != question_bytes {
            return None;
        }
        let mut body = Vec::new();
        let mut pieces: Vec<Piece> = Vec::with_capacity(answer.answers.len());
        let mut draws = 0;
        for (i, rr) in answer.answers.iter().enumerate() {
            let start = body.len();
            wire::encode_detached(question, rr, scratch, &mut body).ok()?;
            if body.len() > MAX_ENTRY {
                return None;
            }
            let (priority, weight) = match &rr.record.data {
                RData::SRV(srv) => (srv.priority, srv.weight),
                _ => (0, 0),
            };
            // Consecutive SRV records of one owner are one RRset, drawn together.
            let same_rrset = i > 0 && {
                let prev = &answer.answers[i - 1];
                rr.record.record_type() == RecordType::SRV
                    && prev.record.record_type() == RecordType::SRV
                    && prev.owner_name(question.name()) == rr.owner_name(question.name())
            };
            if same_rrset
                && let Some(last) = pieces.last_mut()
                && last.draw == 0
            {
                draws += 1;
                last.draw = draws;
            }
            pieces.push(Piece {
                start: u16::try_from(start).ok()?,
                len: u16::try_from(body.len() - start).ok()?,
                draw: if same_rrset { draws } else { 0 },
                priority,
                weight,
            });
        }
        let answers_end = u16::try_from(body.len()).ok()?;
        for rr in answer.authority.iter().chain(&answer.additional) {
            wire::encode_detached(question, rr, scratch, &mut body).ok()?;
            if body.len() > MAX_ENTRY {
                return None;
            }
        }
        let mut additional = answer.additional.len();
        if response.edns {
            body.extend_from_slice(&wire::opt_record(response.rcode));
            additional += 1;
        }
        // Whole, within the limit: the reference did not truncate or trim either.
        if 12 + question_bytes.len() + body.len() > usize::from(response.limit) {
            return None;
        }
        let counts = [
            u16::try_from(answer.answers.len()).ok()?,
            u16::try_from(answer.authority.len()).ok()?,
            u16::try_from(additional).ok()?,
        ];
        let echoed = Response {
            header: wire::RequestHeader {
                recursion_desired: false,
                checking_disabled: false,
                ..response.header
            },
            ..*response
        };
        if draws == 0 {
            pieces.clear();
        }
        Some(Self {
            flags: wire::header_flags(&echoed, false),
            counts,
            body,
            pieces,
            answers_end,
            outcome,
        })
    }
}

/// A cache entry in one allocation, `bytes` = key ‖ pieces ‖ body, with its fixed fields
/// beside it (a map slot of 40 bytes; about 60 bytes per entry beyond the key and records).
#[derive(Debug)]
struct Stored {
    bytes: Box<[u8]>,
    key_len: u16,
    /// How many pieces follow the key (0: the body goes out as it is).
    pieces: u16,
    /// Where the answer section ends in the body.
    answers_end: u16,
    flags: u16,
    counts: [u16; 3],
    rcode: ResponseCode,
    zone: u32,
    plugin: u8,
    /// The question is answered from scratch (while `origin` holds): the response fields are
    /// unused.
    from_scratch: bool,
    origin: Origin,
    /// How many path hashes (8 bytes each) follow the key.
    deps: u16,
}

impl Stored {
    /// The entry for `key`, built from `index` after reading `deps`.
    fn new(key: &[u8], index: &Index, deps: &[u64], prepared: Option<Prepared>) -> Option<Self> {
        let key_len = u16::try_from(key.len()).ok()?;
        let mut deps = deps.to_vec();
        deps.sort_unstable();
        deps.dedup();
        let mut bytes = Vec::with_capacity(
            key.len()
                + deps.len() * 8
                + prepared
                    .as_ref()
                    .map_or(0, |p| p.pieces.len() * Piece::LEN + p.body.len()),
        );
        bytes.extend_from_slice(key);
        for dep in &deps {
            bytes.extend_from_slice(&dep.to_be_bytes());
        }
        let origin = Origin::of(index);
        let deps = u16::try_from(deps.len()).ok()?;
        let Some(prepared) = prepared else {
            return Some(Self {
                bytes: bytes.into_boxed_slice(),
                key_len,
                pieces: 0,
                answers_end: 0,
                flags: 0,
                counts: [0; 3],
                rcode: ResponseCode::NoError,
                zone: 0,
                plugin: 0,
                from_scratch: true,
                origin,
                deps,
            });
        };
        for piece in &prepared.pieces {
            piece.put(&mut bytes);
        }
        bytes.extend_from_slice(&prepared.body);
        Some(Self {
            origin,
            deps,
            bytes: bytes.into_boxed_slice(),
            key_len,
            pieces: u16::try_from(prepared.pieces.len()).ok()?,
            answers_end: prepared.answers_end,
            flags: prepared.flags,
            counts: prepared.counts,
            rcode: prepared.outcome.rcode,
            zone: u32::try_from(prepared.outcome.zone).ok()?,
            plugin: prepared.outcome.plugin,
            from_scratch: false,
        })
    }

    fn key(&self) -> &[u8] {
        &self.bytes[..usize::from(self.key_len)]
    }

    fn deps(&self) -> impl Iterator<Item = u64> + '_ {
        let start = usize::from(self.key_len);
        self.bytes[start..start + usize::from(self.deps) * 8]
            .chunks_exact(8)
            .map(|chunk| u64::from_be_bytes(chunk.try_into().unwrap_or_default()))
    }

    fn pieces_start(&self) -> usize {
        usize::from(self.key_len) + usize::from(self.deps) * 8
    }

    fn piece(&self, i: usize) -> Piece {
        let at = self.pieces_start() + i * Piece::LEN;
        Piece::read(&self.bytes[at..at + Piece::LEN])
    }

    fn body(&self) -> &[u8] {
        &self.bytes[self.pieces_start() + usize::from(self.pieces) * Piece::LEN..]
    }

    /// Whether this entry still says what the reference would answer in `index`.
    fn holds_in(&self, index: &Index) -> bool {
        let now = Origin::of(index);
        if now.generation != self.origin.generation || now.lineage != self.origin.lineage {
            return false;
        }
        if now.recorded == self.origin.recorded || self.deps == 0 {
            return true;
        }
        index
            .etcd()
            .and_then(|etcd| etcd.mirror.as_ref())
            .is_some_and(|mirror| {
                mirror
                    .changes()
                    .unchanged_since(self.deps(), self.origin.epoch)
            })
    }

    /// Writes the response to `query` into `out` (cleared first), SRV RRsets in a fresh
    /// RFC 2782 order; `order` is a reusable buffer.
    fn write<R: Rng + ?Sized>(
        &self,
        query: &PlainQuery<'_>,
        rng: &mut R,
        order: &mut Vec<Piece>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        out.extend_from_slice(&query.id.to_be_bytes());
        out.extend_from_slice(&(self.flags | query.echoed_flags).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        for count in self.counts {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(query.question);
        let body = self.body();
        let outcome = Outcome {
            rcode: self.rcode,
            zone: self.zone as usize,
            plugin: self.plugin,
        };
        if self.pieces == 0 {
            out.extend_from_slice(body);
            return outcome;
        }
        let bytes = |piece: &Piece| {
            let start = usize::from(piece.start);
            &body[start..start + usize::from(piece.len)]
        };
        let count = usize::from(self.pieces);
        let mut i = 0;
        while i < count {
            let first = self.piece(i);
            if first.draw == 0 {
                out.extend_from_slice(bytes(&first));
                i += 1;
                continue;
            }
            order.clear();
            order.push(first);
            i += 1;
            while i < count {
                let next = self.piece(i);
                if next.draw != first.draw {
                    break;
                }
                order.push(next);
                i += 1;
            }
            order_by_priority_weight(order, rng, |piece| (piece.priority, piece.weight));
            for piece in order.iter() {
                out.extend_from_slice(bytes(piece));
            }
        }
        out.extend_from_slice(&body[usize::from(self.answers_end)..]);
        outcome
    }

    /// What the entry costs: its allocation, its slot, and the allocator's header.
    fn size(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<Self>() + 16
    }
}

impl std::hash::Hash for Stored {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes: `Borrow<[u8]>` look-ups find it.
        self.key().hash(state);
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Stored {}

impl std::borrow::Borrow<[u8]> for Stored {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// What the cache knows of a question in the current snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The response is in `out`.
    Sent(Outcome),
    /// Answer from scratch; do not prepare.
    FromScratch,
    /// Nothing yet: answer from scratch and prepare.
    Missing,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashSet<Stored, RandomState>,
    bytes: usize,
}

/// The prepared responses of one handler (one listen address), for the current snapshot.
#[derive(Debug)]
pub struct PreparedAnswers {
    shards: Box<[RwLock<Shard>]>,
    shard_budget: usize,
}

impl PreparedAnswers {
    /// A cache of at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            shard_budget: budget / SHARDS,
        }
    }

    fn shard(&self, key: &[u8]) -> &RwLock<Shard> {
        // FNV-1a: the shard only spreads the locks (a crowded shard evicts its own entries).
        let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        // invariant: SHARDS fits in u64.
        &self.shards[(hash % SHARDS as u64) as usize]
    }

    /// Writes the prepared response to `query` (whose key is `key`) in `index` into `out`,
    /// when there is one that still holds; `order` is a reusable buffer.
    pub fn respond<R: Rng + ?Sized>(
        &self,
        index: &Index,
        key: &[u8],
        query: &PlainQuery<'_>,
        rng: &mut R,
        order: &mut Vec<Piece>,
        out: &mut Vec<u8>,
    ) -> Found {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.entries.get(key) {
            Some(stored) if stored.holds_in(index) => {
                if stored.from_scratch {
                    Found::FromScratch
                } else {
                    Found::Sent(stored.write(query, rng, order, out))
                }
            }
            _ => Found::Missing,
        }
    }

    /// Keeps `prepared` (or, with `None`, that the question is answered from scratch) for
    /// `key`, as built from `index` after reading `deps`; it replaces what the key held.
    pub fn insert(&self, index: &Index, deps: &[u64], key: &[u8], prepared: Option<Prepared>) {
        let Some(stored) = Stored::new(key, index, deps, prepared) else {
            return;
        };
        let size = stored.size();
        if size > self.shard_budget {
            return;
        }
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = shard.entries.take(key) {
            shard.bytes -= old.size();
        }
        if shard.bytes + size > self.shard_budget {
            // Full: start over (a simple bound; the entries come back as they are asked).
            shard.entries = HashSet::default();
            shard.bytes = 0;
        }
        shard.entries.insert(stored);
        shard.bytes += size;
    }

    /// Entries and bytes held, over every shard.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), shard| {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            (n + shard.entries.len(), b + shard.bytes)
        })
    }

    /// Whether `key` has a prepared response that holds in `index` (`None`: no entry that
    /// holds).
    #[cfg(test)]
    fn holds(&self, index: &Index, key: &[u8]) -> Option<bool> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .entries
            .get(key)
            .filter(|stored| stored.holds_in(index))
            .map(|stored| !stored.from_scratch)
    }
}

#[cfg(test)]
mod tests;
