//! One DNS message in, at most one DNS message out: decode, validate, match a zone, answer, encode.
//!
//! Failure maps to an RCODE here and nowhere else (`Refusal::rcode`):
//! - not even a header: silence; a response sent to us: silence (no reflection);
//! - anything else that does not decode, or QDCOUNT ≠ 1: FORMERR;
//! - an opcode other than QUERY: NOTIMP; EDNS version > 0: BADVERS (RFC 6891 §6.1.3);
//! - a name outside every zone, a class other than IN, AXFR/IXFR: REFUSED (srvd never recurses
//!   and does not transfer zones yet).
//!
//! The handler is synchronous and shared by every listener: the UDP loop and each TCP
//! connection call [`Handler::respond`] with their own reusable [`Scratch`].
//!
//! A repeat of a question already answered in the current snapshot is answered from its
//! prepared response (`prepared`) before anything is decoded; the reference path below prepares
//! it the first time.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tracing::trace;

use super::prepared::{self, Found, PlainQuery, Prepared, PreparedAnswers};
use super::wire::{self, RequestHeader, Response, Transport};
use crate::answer::{self, Answer, AnswerBuffers, Question};
use crate::config::QueryLog;
use crate::index::{Index, IndexHandle};
use crate::ops::metrics::{DURATION_SAMPLE, DnsMetrics, LoopCounters, Observation, Proto};
use crate::ops::querylog::{self, QueryLine, ResponseType};

thread_local! {
    /// RFC 2782 draws need speed, not unpredictability: one fast generator per thread, seeded once
    /// from the OS.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// Per-listener buffers reused across queries, and the listener's own counters.
#[derive(Debug, Default)]
pub struct Scratch {
    answer: AnswerBuffers,
    counters: Option<Arc<LoopCounters>>,
    /// Queries since the last timed one (see `ops::metrics::DURATION_SAMPLE`).
    untimed: u32,
    /// Time every query: a TCP connection often carries one query, so sampling per connection
    /// would time none.
    time_all: bool,
    /// The prepared-response key of the query being answered.
    key: Vec<u8>,
    /// Encoding and drawing buffers of the prepared path.
    encode: Vec<u8>,
    order: Vec<prepared::Piece>,
}

/// The keys of the zones one listen address serves.
type ZoneKeys = Arc<[Box<[u8]>]>;

/// Answers DNS messages from the published index, for one listen address (a reload that changes
/// what an address serves gives its loops a new handler).
#[derive(Debug, Clone)]
pub struct Handler {
    index: Arc<IndexHandle>,
    metrics: Option<Arc<DnsMetrics>>,
    /// The address's slot in the metrics (its `server` label).
    server: usize,
    /// The query log's rules; `None`: off, and nothing is gathered for it.
    log_queries: Option<Arc<QueryLog>>,
    /// The zones this address serves, when it serves only some.
    zones: Option<ZoneKeys>,
    /// Responses prepared in the current snapshot; `None`: every query answered from scratch.
    prepared: Option<Arc<PreparedAnswers>>,
}

/// The default bound on one address's prepared responses.
pub const DEFAULT_PREPARED_BYTES: usize = 128 << 20;

/// What a query came to, for the counters and the query log.
struct Outcome {
    sent: bool,
    rcode: ResponseCode,
    /// The zone's metrics slot (0: none).
    zone: usize,
    plugin: u8,
}

/// Why a query gets no answer from a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    FormErr,
    NotImp,
    BadVers,
    Refused,
}

impl Refusal {
    fn rcode(self) -> ResponseCode {
        match self {
            Self::FormErr => ResponseCode::FormErr,
            Self::NotImp => ResponseCode::NotImp,
            Self::BadVers => ResponseCode::BADVERS,
            Self::Refused => ResponseCode::Refused,
        }
    }
}

/// A decoded request: header, questions and EDNS.
struct Request {
    header: RequestHeader,
    qdcount: usize,
    queries: Vec<Query>,
    edns: Option<Edns>,
}

impl Handler {
    /// A handler answering from `index`.
    pub fn new(index: Arc<IndexHandle>) -> Self {
        Self {
            index,
            metrics: None,
            server: 0,
            log_queries: None,
            zones: None,
            prepared: Some(Arc::new(PreparedAnswers::new(DEFAULT_PREPARED_BYTES))),
        }
    }

    /// The prepared responses, when this handler keeps them.
    #[cfg(test)]
    pub(crate) fn prepared(&self) -> Option<&PreparedAnswers> {
        self.prepared.as_deref()
    }

    /// Keeps at most `bytes` of prepared responses; 0 answers every query from scratch.
    #[must_use]
    pub fn with_prepared_bytes(mut self, bytes: usize) -> Self {
        self.prepared = (bytes > 0).then(|| Arc::new(PreparedAnswers::new(bytes)));
        self
    }

    /// Serves only the zones `zones` names here (a Corefile whose blocks put different zones on
    /// different ports: CoreDNS routes by port, then by zone); `None` serves every zone.
    #[must_use]
    pub fn with_zones(mut self, zones: Option<&[hickory_proto::rr::Name]>) -> Self {
        self.zones = zones.map(|names| {
            names
                .iter()
                .map(crate::index::name_key::owned_key)
                .collect::<Vec<_>>()
                .into()
        });
        self
    }

    /// Counts every query into `metrics` under server slot `server` (per loop, see
    /// [`Handler::scratch`]) and, with `log_queries`, logs the queries its rules select on the
    /// `srvd::query` target.
    #[must_use]
    pub fn with_ops(
        mut self,
        metrics: Option<Arc<DnsMetrics>>,
        server: usize,
        log_queries: Option<QueryLog>,
    ) -> Self {
        self.metrics = metrics;
        self.server = server;
        self.log_queries = log_queries.map(Arc::new);
        self
    }

    /// Buffers for one receive loop; with metrics on, they carry that loop's counters
    /// (`shared`: several tasks write them, as a TCP listener's connections do).
    pub fn scratch(&self, transport: Transport, shared: bool) -> Scratch {
        let proto = match transport {
            Transport::Udp => Proto::Udp,
            Transport::Tcp => Proto::Tcp,
        };
        Scratch {
            counters: self
                .metrics
                .as_ref()
                .map(|m| m.counters(self.server, proto, shared)),
            time_all: shared,
            ..Scratch::default()
        }
    }

    /// A scratch sharing `other`'s counters (a TCP connection of the same listener).
    pub fn scratch_like(other: &Scratch) -> Scratch {
        Scratch {
            counters: other.counters.clone(),
            time_all: other.time_all,
            ..Scratch::default()
        }
    }

    /// Answers `request` from `peer` into `out`. Returns false when nothing must be sent.
    pub fn respond(
        &self,
        request: &[u8],
        transport: Transport,
        peer: SocketAddr,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> bool {
        // Nothing below is gathered unless counters or the query log want it.
        let observe = scratch.counters.is_some() || self.log_queries.is_some();
        let timed = observe && {
            scratch.untimed += 1;
            if self.log_queries.is_some() || scratch.time_all || scratch.untimed >= DURATION_SAMPLE
            {
                scratch.untimed = 0;
                true
            } else {
                false
            }
        };
        let start = timed.then(Instant::now);
        let index = self.index.load();
        let mut prepare = false;
        if let Some(cache) = &self.prepared
            && self.log_queries.is_none()
            && let Some(query) = PlainQuery::parse(request)
        {
            query.key(transport, &mut scratch.key);
            let found = RNG.with_borrow_mut(|rng| {
                cache.respond(&index, &scratch.key, &query, rng, &mut scratch.order, out)
            });
            match found {
                Found::Sent(outcome) => {
                    if scratch.counters.is_some() {
                        let observation = Observation {
                            zone: outcome.zone,
                            ipv6: peer.ip().to_canonical().is_ipv6(),
                            qtype: Some(RecordType::from(query.qtype)),
                            rcode: u16::from(outcome.rcode),
                            plugin: outcome.plugin,
                            dnssec_ok: query.edns.is_some_and(|(_, dnssec_ok)| dnssec_ok),
                            request_size: request.len(),
                            response_size: out.len(),
                            duration: start.map(|s| s.elapsed()),
                        };
                        self.count(transport, scratch, &observation);
                    }
                    return true;
                }
                Found::FromScratch => {}
                Found::Missing => prepare = true,
            }
        }
        let mut decoder = BinDecoder::new(request);
        let Ok(header) = Header::read(&mut decoder) else {
            trace!(len = request.len(), "dropped: no DNS header");
            return false;
        };
        if header.metadata.message_type == hickory_proto::op::MessageType::Response {
            trace!("dropped: a response sent as a query");
            return false;
        }
        let request_header = RequestHeader {
            id: header.metadata.id,
            op_code: header.metadata.op_code,
            recursion_desired: header.metadata.recursion_desired,
            checking_disabled: header.metadata.checking_disabled,
        };
        let decoded = decode(request, &mut decoder, &header, request_header);
        let outcome = match &decoded {
            Err(()) => {
                trace!("FORMERR: undecodable message");
                self.refuse(request_header, None, false, Refusal::FormErr, out)
            }
            Ok(request) => match self.check(request, transport) {
                Ok(()) => self.answer(request, transport, &index, prepare, scratch, out),
                Err(refusal) => {
                    let question = if request.queries.len() == 1 {
                        request.queries.first()
                    } else {
                        None
                    };
                    self.refuse(
                        request.header,
                        question,
                        request.edns.is_some(),
                        refusal,
                        out,
                    )
                }
            },
        };
        if observe {
            self.observe(
                request,
                decoded.as_ref().ok(),
                request_header,
                transport,
                peer,
                scratch,
                out,
                &outcome,
                start,
            );
        }
        outcome.sent
    }

    /// Counts the query and, with the query log on, logs it. Kept out of `respond`'s body so
    /// that a server with neither pays one branch.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn observe(
        &self,
        raw: &[u8],
        request: Option<&Request>,
        header: RequestHeader,
        transport: Transport,
        peer: SocketAddr,
        scratch: &mut Scratch,
        out: &[u8],
        outcome: &Outcome,
        start: Option<Instant>,
    ) {
        let duration = start.map(|s| s.elapsed());
        // A dual-stack socket (a block without `bind`) sees IPv4 clients as ::ffff:a.b.c.d;
        // CoreDNS counts and logs them as IPv4.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let question = request.and_then(|r| {
            if r.queries.len() == 1 {
                r.queries.first()
            } else {
                None
            }
        });
        let edns = request.and_then(|r| r.edns.as_ref());
        let dnssec_ok = edns.is_some_and(|e| e.flags().dnssec_ok);
        let rsize = if outcome.sent { out.len() } else { 0 };
        if scratch.counters.is_some() {
            let observation = Observation {
                zone: outcome.zone,
                ipv6: peer.is_ipv6(),
                qtype: question.map(Query::query_type),
                rcode: u16::from(outcome.rcode),
                plugin: outcome.plugin,
                dnssec_ok,
                request_size: raw.len(),
                response_size: rsize,
                duration,
            };
            self.count(transport, scratch, &observation);
        }
        if let Some(log) = &self.log_queries {
            let root = Name::root();
            let Some(rule) = log.rule_for(question.map_or(&root, Query::name)) else {
                return;
            };
            let sent = outcome.sent.then_some(out);
            let opcode = u8::from(header.op_code);
            let kind = (rule.filters() || rule.format.needs_type())
                .then(|| ResponseType::of(opcode, sent));
            if kind.is_some_and(|k| !rule.logs(k.class())) {
                return;
            }
            let line = QueryLine {
                peer,
                id: header.id,
                opcode,
                question,
                proto: match transport {
                    Transport::Udp => "udp",
                    Transport::Tcp => "tcp",
                },
                size: raw.len(),
                dnssec_ok,
                bufsize: edns.map_or(512, Edns::max_payload),
                rcode: u16::from(outcome.rcode),
                flags: (outcome.sent && out.len() >= 4).then(|| [out[2], out[3]]),
                rsize,
                duration: duration.unwrap_or_default(),
            };
            let line = line.render(&rule.format, kind);
            tracing::info!(target: querylog::TARGET, "{line}");
        }
    }

    /// Counts one query into the loop's counters (which must exist).
    fn count(&self, transport: Transport, scratch: &mut Scratch, observation: &Observation) {
        let Some(counters) = &scratch.counters else {
            return;
        };
        if !counters.record(observation)
            && let Some(metrics) = &self.metrics
        {
            // A zone added by a reload: counters covering it, from now on.
            let proto = match transport {
                Transport::Udp => Proto::Udp,
                Transport::Tcp => Proto::Tcp,
            };
            let grown =
                metrics.counters_covering(self.server, proto, scratch.time_all, observation.zone);
            let _ = grown.record(observation);
            scratch.counters = Some(grown);
        }
    }

    fn check(&self, request: &Request, _transport: Transport) -> Result<(), Refusal> {
        if request.header.op_code != OpCode::Query {
            return Err(Refusal::NotImp);
        }
        if request.qdcount != 1 || request.queries.len() != 1 {
            return Err(Refusal::FormErr);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Err(Refusal::BadVers);
        }
        let query = &request.queries[0];
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return Err(Refusal::Refused);
        }
        if matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return Err(Refusal::Refused);
        }
        Ok(())
    }

    /// Answers from scratch; with `prepare`, also keeps the answer for `scratch.key` in that
    /// snapshot (which must be `index`).
    fn answer(
        &self,
        request: &Request,
        transport: Transport,
        index: &Arc<Index>,
        prepare: bool,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let query = &request.queries[0];
        let question = Question::new(query.name(), query.query_type());
        // The most specific zone holding the name, among those this address serves.
        let served = |zone: &crate::index::Zone| {
            self.zones
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| **k == *zone.key()))
        };
        let Some(zone) = index
            .zones()
            .iter()
            .find(|zone| question.key.is_within(zone.key()) && served(zone))
        else {
            return self.refuse(
                request.header,
                Some(query),
                request.edns.is_some(),
                Refusal::Refused,
                out,
            );
        };

        let limit = wire::payload_limit(transport, request.edns.as_ref().map(Edns::max_payload));
        let mut answer = Answer::with_buffers(std::mem::take(&mut scratch.answer));
        RNG.with_borrow_mut(|rng| {
            answer::answer(index, zone, &question, limit, rng, &mut answer);
        });
        let response = Response {
            header: request.header,
            question: Some(query),
            rcode: answer.rcode,
            authoritative: true,
            edns: request.edns.is_some(),
            limit,
        };
        let mut rcode = answer.rcode;
        let sent = match wire::encode(out, &response, Some(&answer)) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, name = %query.name(), "cannot encode answer; SERVFAIL");
                rcode = ResponseCode::ServFail;
                let failed = Response {
                    rcode: ResponseCode::ServFail,
                    ..response
                };
                wire::encode(out, &failed, None).is_ok()
            }
        };
        let outcome = Outcome {
            sent,
            rcode,
            zone: zone.metrics_slot(),
            // CoreDNS names the plugin that wrote the answer; a zone with etcd counts as etcd.
            plugin: if zone.etcd().is_some() { 2 } else { 1 },
        };
        if prepare
            && sent
            && let Some(cache) = &self.prepared
        {
            // The key ends with the limit (2 bytes) and the EDNS flag (1).
            let question_bytes = &scratch.key[..scratch.key.len() - 3];
            let entry = if rcode == answer.rcode {
                Prepared::build(
                    query,
                    question_bytes,
                    &response,
                    &answer,
                    prepared::Outcome {
                        rcode,
                        zone: outcome.zone,
                        plugin: outcome.plugin,
                    },
                    &mut scratch.encode,
                )
            } else {
                None
            };
            cache.insert(index, &answer.deps, &scratch.key, entry);
        }
        scratch.answer = answer.into_buffers();
        outcome
    }

    fn refuse(
        &self,
        header: RequestHeader,
        question: Option<&Query>,
        edns: bool,
        refusal: Refusal,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let response = Response {
            header,
            question,
            rcode: refusal.rcode(),
            authoritative: false,
            edns,
            limit: wire::MIN_UDP_PAYLOAD,
        };
        Outcome {
            sent: wire::encode(out, &response, None).is_ok(),
            rcode: refusal.rcode(),
            // Never reached a zone: CoreDNS's `dropped`, written by the server itself.
            zone: 0,
            plugin: 0,
        }
    }
}

/// Whether the first question's name is written without compression pointers. It is the
/// message's first name, so a pointer in it can only lead into the header or back into itself
/// (a loop): never a real client's query. Decoded anyway, the name grows (the fuzzer found one
/// pointing into the header), and the echoed question would make a REFUSED or FORMERR answer
/// larger than the query: an amplifier. A truncated name is left to the decoder to reject.
fn first_name_uncompressed(raw: &[u8]) -> bool {
    let mut at = 12; // after the header
    while let Some(&len) = raw.get(at) {
        match len {
            0 => return true,
            1..=63 => at += 1 + usize::from(len),
            _ => return false,
        }
    }
    true
}

/// Decodes everything after the header (`raw` is the whole request). Any error is a FORMERR.
fn decode(
    raw: &[u8],
    decoder: &mut BinDecoder<'_>,
    header: &Header,
    request_header: RequestHeader,
) -> Result<Request, ()> {
    let qdcount = usize::from(header.counts.queries);
    if qdcount > 0 && !first_name_uncompressed(raw) {
        return Err(());
    }
    let queries = Message::read_queries(decoder, qdcount).map_err(|_| ())?;
    let op = header.metadata.op_code;
    for (count, is_additional) in [
        (header.counts.answers, false),
        (header.counts.authorities, false),
    ] {
        Message::read_records(decoder, usize::from(count), is_additional, op).map_err(|_| ())?;
    }
    let (_, edns, _) =
        Message::read_records(decoder, usize::from(header.counts.additionals), true, op)
            .map_err(|_| ())?;
    Ok(Request {
        header: request_header,
        qdcount,
        queries,
        edns,
    })
}
