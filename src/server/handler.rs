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

use std::cell::RefCell;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tracing::trace;

use super::wire::{self, RequestHeader, Response, Transport};
use crate::answer::{self, Answer, AnswerBuffers, Question};
use crate::index::IndexHandle;

thread_local! {
    /// RFC 2782 draws need speed, not unpredictability: one fast generator per thread, seeded once
    /// from the OS.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// Per-listener buffers reused across queries.
#[derive(Debug, Default)]
pub struct Scratch {
    answer: AnswerBuffers,
}

/// Answers DNS messages from the published index.
#[derive(Debug, Clone)]
pub struct Handler {
    index: Arc<IndexHandle>,
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
        Self { index }
    }

    /// Answers `request` into `out`. Returns false when nothing must be sent.
    pub fn respond(
        &self,
        request: &[u8],
        transport: Transport,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> bool {
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
        let request = match decode(&mut decoder, &header, request_header) {
            Ok(request) => request,
            Err(()) => {
                trace!("FORMERR: undecodable message");
                return self.refuse(request_header, None, false, Refusal::FormErr, out);
            }
        };
        match self.check(&request, transport) {
            Ok(()) => self.answer(&request, transport, scratch, out),
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

    fn answer(
        &self,
        request: &Request,
        transport: Transport,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> bool {
        let query = &request.queries[0];
        let question = Question::new(query.name(), query.query_type());
        let index = self.index.load();
        let Some(zone) = index.find_zone(&question.key) else {
            return self.refuse(
                request.header,
                Some(query),
                request.edns.is_some(),
                Refusal::Refused,
                out,
            );
        };

        let limit = wire::payload_limit(transport, request.edns.as_ref());
        let mut answer = Answer::with_buffers(std::mem::take(&mut scratch.answer));
        RNG.with_borrow_mut(|rng| {
            answer::answer(&index, zone, &question, limit, rng, &mut answer);
        });
        let response = Response {
            header: request.header,
            question: Some(query),
            rcode: answer.rcode,
            authoritative: true,
            edns: request.edns.is_some(),
            limit,
        };
        let sent = match wire::encode(out, &response, Some(&answer)) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, name = %query.name(), "cannot encode answer; SERVFAIL");
                let failed = Response {
                    rcode: ResponseCode::ServFail,
                    ..response
                };
                wire::encode(out, &failed, None).is_ok()
            }
        };
        scratch.answer = answer.into_buffers();
        sent
    }

    fn refuse(
        &self,
        header: RequestHeader,
        question: Option<&Query>,
        edns: bool,
        refusal: Refusal,
        out: &mut Vec<u8>,
    ) -> bool {
        let response = Response {
            header,
            question,
            rcode: refusal.rcode(),
            authoritative: false,
            edns,
            limit: wire::MIN_UDP_PAYLOAD,
        };
        wire::encode(out, &response, None).is_ok()
    }
}

/// Decodes everything after the header. Any error is a FORMERR.
fn decode(
    decoder: &mut BinDecoder<'_>,
    header: &Header,
    request_header: RequestHeader,
) -> Result<Request, ()> {
    let qdcount = usize::from(header.counts.queries);
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
