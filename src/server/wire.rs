//! Response encoding: sizes, truncation and EDNS, written record by record.
//!
//! Why not hickory's `MessageResponse`: it sets TC when only additional records were dropped
//! (RFC 2181 §9 says not to), and its name compression is case-sensitive, so answering with the
//! question's spelling would mean cloning every record. Here each record is emitted into a
//! size-capped encoder; a record that does not fit is rolled back:
//! - answer or authority record: TC is set and nothing more is written (the client retries over
//!   TCP, and what was sent is whole records, in RFC 2782 order);
//! - additional record: its whole RRset is dropped and encoding stops, without TC.
//!
//! The OPT record is always written when the query had one: its room is reserved up front.

use hickory_proto::ProtoError;
use hickory_proto::op::{OpCode, Query, ResponseCode};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::answer::{Answer, Rr};

/// RFC 1035 §4.2.1: the UDP limit without EDNS.
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// The largest UDP payload srvd sends or advertises (DNS Flag Day 2020: no IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// A TCP message is length-prefixed by 16 bits.
pub const MAX_TCP_MESSAGE: u16 = u16::MAX;
/// Size of an OPT record without options.
const OPT_LEN: usize = 11;
const HEADER_LEN: usize = 12;

/// How the query arrived, which decides the size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams: EDNS-negotiated size, clamped to [512, 1232].
    Udp,
    /// Length-prefixed stream: up to 65,535 bytes.
    Tcp,
}

/// The size limit for a response over `transport` to a query whose OPT record advertised
/// `payload` bytes (`None`: no OPT record).
pub fn payload_limit(transport: Transport, payload: Option<u16>) -> u16 {
    match transport {
        Transport::Tcp => MAX_TCP_MESSAGE,
        Transport::Udp => payload.map_or(MIN_UDP_PAYLOAD, |p| {
            p.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
        }),
    }
}

/// The request facts a response echoes.
#[derive(Clone, Copy, Debug)]
pub struct RequestHeader {
    /// Message ID.
    pub id: u16,
    /// Opcode, echoed.
    pub op_code: OpCode,
    /// RD, copied (RFC 1035 §4.1.1).
    pub recursion_desired: bool,
    /// CD, copied (RFC 4035 §3.1.6).
    pub checking_disabled: bool,
}

/// Everything one response needs besides the records.
pub struct Response<'r> {
    /// The request's header fields.
    pub header: RequestHeader,
    /// The question to echo, as the client spelled it (`None` for FORMERR without a question).
    pub question: Option<&'r Query>,
    /// The response code (may be an extended one such as BADVERS).
    pub rcode: ResponseCode,
    /// AA: set for every answer from a zone srvd serves.
    pub authoritative: bool,
    /// Whether to append an OPT record (the query had one).
    pub edns: bool,
    /// The size limit in bytes.
    pub limit: u16,
}

/// Encodes `response` with `answer`'s sections into `out` (cleared first).
///
/// # Errors
/// Only on a record that cannot be encoded at all (not on size, which truncates).
pub fn encode(
    out: &mut Vec<u8>,
    response: &Response<'_>,
    answer: Option<&Answer<'_>>,
) -> Result<(), ProtoError> {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    let reserve = if response.edns { OPT_LEN } else { 0 };
    let limit = usize::from(response.limit).max(HEADER_LEN + reserve);
    encoder.set_max_size((limit - reserve) as u16);

    encoder.emit_vec(&[0; HEADER_LEN])?;
    let mut truncated = false;
    let mut counts = [0u16; 4];
    if let Some(question) = response.question {
        question.emit(&mut encoder)?;
        counts[0] = 1;
    }
    let qname = response.question.map(Query::name);

    if let Some(answer) = answer {
        let (written, cut) = emit_section(&mut encoder, &answer.answers, qname)?;
        counts[1] = written;
        truncated = cut;
        if !truncated {
            let (written, cut) = emit_section(&mut encoder, &answer.authority, qname)?;
            counts[2] = written;
            truncated = cut;
        }
        if !truncated {
            counts[3] = emit_additional(&mut encoder, &answer.additional, qname)?;
        }
    }

    encoder.set_max_size(limit as u16);
    if response.edns {
        emit_opt(&mut encoder, response.rcode)?;
        counts[3] += 1;
    }

    let flags = header_flags(response, truncated);
    let mut header = [0u8; HEADER_LEN];
    header[0..2].copy_from_slice(&response.header.id.to_be_bytes());
    header[2..4].copy_from_slice(&flags.to_be_bytes());
    for (i, count) in counts.iter().enumerate() {
        header[4 + 2 * i..6 + 2 * i].copy_from_slice(&count.to_be_bytes());
    }
    out[..HEADER_LEN].copy_from_slice(&header);
    Ok(())
}

/// The header flags of `response`.
pub fn header_flags(response: &Response<'_>, truncated: bool) -> u16 {
    let mut flags: u16 = 0x8000; // QR
    flags |= u16::from(u8::from(response.header.op_code) & 0x0f) << 11;
    if response.authoritative {
        flags |= 0x0400;
    }
    if truncated {
        flags |= 0x0200;
    }
    if response.header.recursion_desired {
        flags |= 0x0100;
    }
    // RA stays clear: srvd never recurses.
    if response.header.checking_disabled {
        flags |= 0x0010;
    }
    flags | u16::from(response.rcode.low())
}

/// Writes records until one does not fit. Returns how many were written and whether one was cut.
fn emit_section(
    encoder: &mut BinEncoder<'_>,
    records: &[Rr<'_>],
    qname: Option<&Name>,
) -> Result<(u16, bool), ProtoError> {
    let mut written = 0;
    for rr in records {
        let mark = encoder.offset();
        match emit_rr(encoder, rr, qname) {
            Ok(()) => written += 1,
            Err(ProtoError::MaxBufferSizeExceeded(_)) => {
                rollback(encoder, mark);
                return Ok((written, true));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((written, false))
}

/// Writes additional records; the first one that does not fit drops its whole RRset and ends the
/// section (no TC: RFC 2181 §9).
fn emit_additional(
    encoder: &mut BinEncoder<'_>,
    records: &[Rr<'_>],
    qname: Option<&Name>,
) -> Result<u16, ProtoError> {
    let mut written = 0u16;
    let mut rrset_start = (encoder.offset(), 0u16);
    for (i, rr) in records.iter().enumerate() {
        let same_rrset = i > 0 && {
            let prev = &records[i - 1];
            prev.record.record_type() == rr.record.record_type()
                && qname.is_some_and(|q| prev.owner_name(q) == rr.owner_name(q))
        };
        if !same_rrset {
            rrset_start = (encoder.offset(), written);
        }
        match emit_rr(encoder, rr, qname) {
            Ok(()) => written += 1,
            Err(ProtoError::MaxBufferSizeExceeded(_)) => {
                rollback(encoder, rrset_start.0);
                return Ok(rrset_start.1);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

fn rollback(encoder: &mut BinEncoder<'_>, mark: usize) {
    encoder.set_offset(mark);
    encoder.trim();
}

fn emit_rr(
    encoder: &mut BinEncoder<'_>,
    rr: &Rr<'_>,
    qname: Option<&Name>,
) -> Result<(), ProtoError> {
    let name = match qname {
        Some(q) => rr.owner_name(q),
        None => &rr.record.name,
    };
    name.emit(encoder)?;
    rr.record.record_type().emit(encoder)?;
    rr.record.dns_class.emit(encoder)?;
    encoder.emit_u32(rr.ttl)?;
    let place = encoder.place::<u16>()?;
    rr.record.data.emit(encoder)?;
    let len = encoder.len_since_place(&place);
    place.replace(encoder, len as u16)
}

/// Appends `rr` to `out` as it would follow `question` in a response, placeable anywhere after
/// the question: its owner is compressed against the question only, and the names in its RDATA
/// are not compressed (a pointer into the record itself, or into an earlier record, would point
/// elsewhere once the record moves). That is what a prepared response needs to reorder SRV
/// records per response, as long as the same question bytes sit at offset 12. `scratch` is
/// reused between calls.
///
/// # Errors
/// A record that cannot be encoded.
pub fn encode_detached(
    question: &Query,
    rr: &Rr<'_>,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    scratch.clear();
    let mut encoder = BinEncoder::new(scratch);
    encoder.emit_vec(&[0; HEADER_LEN])?;
    question.emit(&mut encoder)?;
    let start = encoder.offset();
    rr.owner_name(question.name()).emit(&mut encoder)?;
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    rr.record.record_type().emit(&mut encoder)?;
    rr.record.dns_class.emit(&mut encoder)?;
    encoder.emit_u32(rr.ttl)?;
    let place = encoder.place::<u16>()?;
    rr.record.data.emit(&mut encoder)?;
    let len = encoder.len_since_place(&place);
    place.replace(&mut encoder, len as u16)?;
    out.extend_from_slice(&scratch[start..]);
    Ok(())
}

/// The OPT record [`encode`] appends for `rcode`. RFC 6891 §6.1.2: root owner, type OPT (41),
/// class = our payload size, TTL = extended RCODE, version 0, flags (DO clear: srvd does not
/// sign), no options.
pub fn opt_record(rcode: ResponseCode) -> [u8; OPT_LEN] {
    let payload = MAX_UDP_PAYLOAD.to_be_bytes();
    let [high, ..] = (u32::from(rcode.high()) << 24).to_be_bytes();
    [0, 0, 41, payload[0], payload[1], high, 0, 0, 0, 0, 0]
}

fn emit_opt(encoder: &mut BinEncoder<'_>, rcode: ResponseCode) -> Result<(), ProtoError> {
    encoder.emit_vec(&opt_record(rcode))
}
