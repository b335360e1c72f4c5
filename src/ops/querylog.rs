//! The query log line in CoreDNS's `log` plugin format: its default `{common}` format,
//! `{combined}`, or a format of the operator's made of CoreDNS's placeholders.
//!
//! Built only when the query log is on: the handler checks for it before it gathers anything,
//! so a server without it pays one branch per query. Lines go to the `srvd::query` target at
//! `info`, so `RUST_LOG` can route or silence them apart from the rest. Which queries are logged
//! (names, response classes) is [`crate::config::QueryLog`]'s business; this module parses
//! formats, classifies responses as CoreDNS's `response.Typify`/`Classify` do, and renders.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::RecordType;

use super::metrics::rcode_name;

/// The tracing target of query log lines.
pub const TARGET: &str = "srvd::query";

/// CoreDNS's Common Log Format, its default.
pub const COMMON: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration}";
/// CoreDNS's Combined Log Format: the common one and the query's opcode.
pub const COMBINED: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration} \"{>opcode}\"";

/// A value a format can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Type,
    Name,
    Class,
    Proto,
    Remote,
    Port,
    Size,
    Id,
    Opcode,
    Do,
    Bufsize,
    Rcode,
    Rsize,
    Duration,
    Rflags,
    /// `{/log/class}`: CoreDNS's log plugin sets this metadata itself.
    LogClass,
    /// `{/log/type}`.
    LogType,
}

const FIELDS: &[(&str, Field)] = &[
    ("{type}", Field::Type),
    ("{name}", Field::Name),
    ("{class}", Field::Class),
    ("{proto}", Field::Proto),
    ("{remote}", Field::Remote),
    ("{port}", Field::Port),
    ("{size}", Field::Size),
    ("{>id}", Field::Id),
    ("{>opcode}", Field::Opcode),
    ("{>do}", Field::Do),
    ("{>bufsize}", Field::Bufsize),
    ("{rcode}", Field::Rcode),
    ("{rsize}", Field::Rsize),
    ("{duration}", Field::Duration),
    ("{>rflags}", Field::Rflags),
    ("{/log/class}", Field::LogClass),
    ("{/log/type}", Field::LogType),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// A parsed log format: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pieces: Vec<Piece>,
}

impl Default for LogFormat {
    fn default() -> Self {
        Self::parse(COMMON).unwrap_or(Self { pieces: Vec::new() })
    }
}

impl LogFormat {
    /// Parses `text` as CoreDNS's replacer does (`{common}` and `{combined}` expanded first; a
    /// placeholder is the text from a `{` to the first `}` after it, innermost first; braces that
    /// enclose no placeholder are text).
    ///
    /// # Errors
    /// A placeholder CoreDNS does not have or srvd cannot fill, naming it and what was expected:
    /// CoreDNS would print such a `{...}` as it is, which hides a typo in every line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expanded = text
            .replace("{common}", COMMON)
            .replace("{combined}", COMBINED);
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = expanded.as_str();
        while let Some(close) = rest.find('}') {
            let Some(open) = rest[..close].rfind('{') else {
                text.push_str(&rest[..=close]);
                rest = &rest[close + 1..];
                continue;
            };
            let label = &rest[open..=close];
            let Some((_, field)) = FIELDS.iter().find(|(name, _)| *name == label) else {
                let why = match label {
                    "{local}" => "srvd does not pass the local address to the query log yet".to_string(),
                    l if l.starts_with("{/") => "srvd has no metadata plugin; of the metadata only {/log/class} and {/log/type} exist".to_string(),
                    _ => format!(
                        "expected one of {}, {{common}} or {{combined}}",
                        FIELDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ")
                    ),
                };
                return Err(format!(
                    "unknown placeholder {label} in format {expanded:?}: {why}"
                ));
            };
            text.push_str(&rest[..open]);
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Field(*field));
            rest = &rest[close + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self { pieces })
    }

    /// Whether rendering needs the response's type (`{/log/class}`, `{/log/type}`).
    pub fn needs_type(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Field(Field::LogClass | Field::LogType)))
    }
}

/// What a response is, as CoreDNS's `response.Typify` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    /// Answers with NOERROR (or NOERROR with nothing at all).
    NoError,
    /// NXDOMAIN.
    NameError,
    /// SERVFAIL or NOTIMP.
    ServerError,
    /// NOERROR, no answer, an SOA in the authority section.
    NoData,
    /// NOERROR, no answer, NS records in the authority section.
    Delegation,
    /// NOTIFY, AXFR, IXFR.
    Meta,
    /// UPDATE.
    Update,
    /// Anything else (REFUSED, FORMERR, no response).
    OtherError,
}

impl ResponseType {
    /// CoreDNS's name for it (`{/log/type}`).
    pub fn name(self) -> &'static str {
        match self {
            Self::NoError => "NOERROR",
            Self::NameError => "NXDOMAIN",
            Self::ServerError => "SERVERERROR",
            Self::NoData => "NODATA",
            Self::Delegation => "DELEGATION",
            Self::Meta => "META",
            Self::Update => "UPDATE",
            Self::OtherError => "OTHERERROR",
        }
    }

    /// CoreDNS's `response.Classify`.
    pub fn class(self) -> ResponseClass {
        match self {
            Self::NoError | Self::Delegation => ResponseClass::Success,
            Self::NameError | Self::NoData => ResponseClass::Denial,
            _ => ResponseClass::Error,
        }
    }

    /// Types the encoded `response` (`None`: nothing was sent) to `opcode` (the request's)
    /// as CoreDNS's `response.Typify` does (srvd does not sign, so no expired signatures).
    pub fn of(opcode: u8, response: Option<&[u8]>) -> Self {
        const NOTIFY: u8 = 4;
        const UPDATE: u8 = 5;
        let Some(message) = response.and_then(|r| Message::from_vec(r).ok()) else {
            return Self::OtherError;
        };
        match opcode {
            UPDATE => return Self::Update,
            NOTIFY => return Self::Meta,
            _ => {}
        }
        if message
            .queries
            .first()
            .is_some_and(|q| matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR))
        {
            return Self::Meta;
        }
        let rcode = u16::from(message.metadata.response_code);
        let answers = !message.answers.is_empty();
        match (answers, rcode) {
            (true, 0) => return Self::NoError,
            (true, 3) => return Self::OtherError,
            _ => {}
        }
        let soa = message
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA);
        let ns = message
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::NS);
        match rcode {
            0 if soa => Self::NoData,
            3 => Self::NameError,
            2 | 4 => Self::ServerError,
            0 if ns => Self::Delegation,
            0 => Self::NoError,
            _ => Self::OtherError,
        }
    }
}

/// CoreDNS's response classes (`log { class ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseClass {
    /// NOERROR with answers, or a referral.
    Success,
    /// NXDOMAIN or NODATA.
    Denial,
    /// SERVFAIL, NOTIMP, REFUSED, FORMERR and the rest.
    Error,
}

impl ResponseClass {
    /// CoreDNS's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denial => "denial",
            Self::Error => "error",
        }
    }
}

/// One query and its response, as the log line shows them.
pub struct QueryLine<'a> {
    /// Who asked.
    pub peer: SocketAddr,
    /// The request's message ID.
    pub id: u16,
    /// The request's opcode.
    pub opcode: u8,
    /// The question, when the request had exactly one that decoded.
    pub question: Option<&'a Query>,
    /// `udp` or `tcp`.
    pub proto: &'static str,
    /// Request size in bytes.
    pub size: usize,
    /// The request's DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// The EDNS buffer size the client advertised (512 without EDNS, as CoreDNS reports).
    pub bufsize: u16,
    /// The response code sent.
    pub rcode: u16,
    /// The response's header bytes 2 and 3 (flags), when a response was sent.
    pub flags: Option<[u8; 2]>,
    /// Response size in bytes (0 when nothing was sent).
    pub rsize: usize,
    /// Time from receipt to the encoded response.
    pub duration: Duration,
}

impl QueryLine<'_> {
    /// The line in `format`; `kind` is the response's type, needed only when
    /// [`LogFormat::needs_type`].
    pub fn render(&self, format: &LogFormat, kind: Option<ResponseType>) -> String {
        let mut line = String::with_capacity(128);
        for piece in &format.pieces {
            // Writing to a String cannot fail.
            let _ = match piece {
                Piece::Text(text) => line.write_str(text),
                Piece::Field(field) => self.field(&mut line, *field, kind),
            };
        }
        line
    }

    fn field(&self, f: &mut String, field: Field, kind: Option<ResponseType>) -> fmt::Result {
        let question = self.question;
        match field {
            // A request without a question shows CoreDNS's empty value.
            Field::Type => match question {
                Some(q) => write!(f, "{}", q.query_type()),
                None => f.write_str("-"),
            },
            Field::Class => match question {
                Some(q) => write!(f, "{}", q.query_class()),
                None => f.write_str("-"),
            },
            // CoreDNS logs the name lower-cased (request.Name()).
            Field::Name => match question {
                Some(q) => f.write_str(&q.name().to_string().to_ascii_lowercase()),
                None => f.write_str("-"),
            },
            Field::Proto => f.write_str(self.proto),
            // Brackets around IPv6, as Go's net.JoinHostPort and CoreDNS's {remote} write it.
            Field::Remote => match self.peer {
                SocketAddr::V4(a) => write!(f, "{}", a.ip()),
                SocketAddr::V6(a) => write!(f, "[{}]", a.ip()),
            },
            Field::Port => write!(f, "{}", self.peer.port()),
            Field::Size => write!(f, "{}", self.size),
            Field::Id => write!(f, "{}", self.id),
            Field::Opcode => write!(f, "{}", self.opcode),
            Field::Do => write!(f, "{}", self.dnssec_ok),
            Field::Bufsize => write!(f, "{}", self.bufsize),
            Field::Rcode => f.write_str(&rcode_name(self.rcode)),
            Field::Rsize => write!(f, "{}", self.rsize),
            // Go's strconv.FormatFloat(seconds, 'f', -1, 64): the shortest decimal, then `s`.
            Field::Duration => write!(f, "{}s", self.duration.as_secs_f64()),
            Field::Rflags => match self.flags {
                Some(flags) => write_flags(f, flags),
                None => f.write_str("-"),
            },
            Field::LogClass => f.write_str(kind.map_or("-", |k| k.class().name())),
            Field::LogType => f.write_str(kind.map_or("-", ResponseType::name)),
        }
    }
}

/// The response flags as CoreDNS's `{>rflags}` lists them: `qr,aa,tc,rd,ra,z,ad,cd`, set ones
/// only, `-` when none is.
fn write_flags(f: &mut String, [high, low]: [u8; 2]) -> fmt::Result {
    let set = [
        (high & 0x80 != 0, "qr"),
        (high & 0x04 != 0, "aa"),
        (high & 0x02 != 0, "tc"),
        (high & 0x01 != 0, "rd"),
        (low & 0x80 != 0, "ra"),
        (low & 0x40 != 0, "z"),
        (low & 0x20 != 0, "ad"),
        (low & 0x10 != 0, "cd"),
    ];
    let mut first = true;
    for (on, name) in set {
        if on {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
    }
    if first {
        f.write_str("-")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn a_line_reads_as_coredns_writes_it() {
        let query = Query::query(
            Name::from_ascii("Web.Service.Local.").unwrap(),
            RecordType::SRV,
        );
        let line = QueryLine {
            peer: "[::1]:40000".parse().unwrap(),
            id: 4242,
            opcode: 0,
            question: Some(&query),
            proto: "udp",
            size: 40,
            dnssec_ok: false,
            bufsize: 1232,
            rcode: 3,
            flags: Some([0x85, 0x00]),
            rsize: 100,
            duration: Duration::from_micros(250),
        };
        assert_eq!(
            line.render(&LogFormat::default(), None),
            "[::1]:40000 - 4242 \"SRV IN web.service.local. udp 40 false 1232\" NXDOMAIN qr,aa,rd 100 0.00025s"
        );
    }

    fn line(query: &Query) -> QueryLine<'_> {
        QueryLine {
            peer: "127.0.0.1:5300".parse().unwrap(),
            id: 7,
            opcode: 0,
            question: Some(query),
            proto: "tcp",
            size: 30,
            dnssec_ok: true,
            bufsize: 4096,
            rcode: 0,
            flags: Some([0x84, 0x00]),
            rsize: 60,
            duration: Duration::from_millis(2),
        }
    }

    /// Formats as CoreDNS's replacer reads them: text and placeholders, `{combined}` expanded,
    /// braces around no placeholder kept as text.
    #[test]
    fn formats_mix_text_and_placeholders() {
        let query = Query::query(
            Name::from_ascii("www.Example.test.").unwrap(),
            RecordType::A,
        );
        let render = |format: &str| {
            line(&query).render(
                &LogFormat::parse(format).unwrap(),
                Some(ResponseType::NoError),
            )
        };
        assert_eq!(
            render("{proto} Request: {name} {type} {>id}"),
            "tcp Request: www.example.test. A 7"
        );
        assert_eq!(
            render("{combined}"),
            "127.0.0.1:5300 - 7 \"A IN www.example.test. tcp 30 true 4096\" NOERROR qr,aa 60 0.002s \"0\""
        );
        assert_eq!(render("A } { {type} } {"), "A } { A } {");
        assert_eq!(
            render("{remote} {port} {/log/class} {/log/type} {class}"),
            "127.0.0.1 5300 success NOERROR IN"
        );
        assert!(!LogFormat::parse("{type}").unwrap().needs_type());
        assert!(LogFormat::parse("{/log/type}").unwrap().needs_type());
        assert!(LogFormat::parse("{Type}").unwrap_err().starts_with(
            "unknown placeholder {Type} in format \"{Type}\": expected one of {type}"
        ));
    }

    /// `response.Typify` and `Classify` on encoded responses.
    #[test]
    fn responses_are_typed_and_classed_as_coredns_does() {
        use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
        use hickory_proto::rr::{RData, Record, rdata};

        let name = Name::from_ascii("x.example.test.").unwrap();
        let soa = Record::from_rdata(
            Name::from_ascii("example.test.").unwrap(),
            60,
            RData::SOA(rdata::SOA::new(
                Name::from_ascii("ns.example.test.").unwrap(),
                Name::from_ascii("h.example.test.").unwrap(),
                1,
                2,
                3,
                4,
                5,
            )),
        );
        let ns = Record::from_rdata(
            name.clone(),
            60,
            RData::NS(rdata::NS(Name::from_ascii("ns.elsewhere.").unwrap())),
        );
        let a = Record::from_rdata(name.clone(), 60, RData::A(rdata::A::new(192, 0, 2, 1)));
        let encode =
            |rcode: ResponseCode, qtype: RecordType, answers: &[Record], auth: &[Record]| {
                let mut m = Message::new(1, MessageType::Response, OpCode::Query);
                m.metadata.response_code = rcode;
                m.add_query(Query::query(name.clone(), qtype));
                m.answers.extend(answers.iter().cloned());
                m.authorities.extend(auth.iter().cloned());
                m.to_vec().unwrap()
            };
        use ResponseCode::{NXDomain, NoError, NotImp, Refused, ServFail};
        for (bytes, opcode, want, class) in [
            (
                encode(NoError, RecordType::A, std::slice::from_ref(&a), &[]),
                0,
                ResponseType::NoError,
                ResponseClass::Success,
            ),
            (
                encode(NoError, RecordType::A, &[], &[]),
                0,
                ResponseType::NoError,
                ResponseClass::Success,
            ),
            (
                encode(NoError, RecordType::A, &[], std::slice::from_ref(&ns)),
                0,
                ResponseType::Delegation,
                ResponseClass::Success,
            ),
            (
                encode(NoError, RecordType::TXT, &[], std::slice::from_ref(&soa)),
                0,
                ResponseType::NoData,
                ResponseClass::Denial,
            ),
            (
                encode(NXDomain, RecordType::A, &[], std::slice::from_ref(&soa)),
                0,
                ResponseType::NameError,
                ResponseClass::Denial,
            ),
            (
                encode(NXDomain, RecordType::A, std::slice::from_ref(&a), &[]),
                0,
                ResponseType::OtherError,
                ResponseClass::Error,
            ),
            (
                encode(ServFail, RecordType::A, &[], &[]),
                0,
                ResponseType::ServerError,
                ResponseClass::Error,
            ),
            (
                encode(NotImp, RecordType::A, &[], &[]),
                4,
                ResponseType::Meta,
                ResponseClass::Error,
            ),
            (
                encode(NotImp, RecordType::A, &[], &[]),
                5,
                ResponseType::Update,
                ResponseClass::Error,
            ),
            (
                encode(Refused, RecordType::AXFR, &[], &[]),
                0,
                ResponseType::Meta,
                ResponseClass::Error,
            ),
            (
                encode(Refused, RecordType::A, &[], &[]),
                0,
                ResponseType::OtherError,
                ResponseClass::Error,
            ),
        ] {
            let kind = ResponseType::of(opcode, Some(&bytes));
            assert_eq!((kind, kind.class()), (want, class), "{want:?}");
        }
        assert_eq!(
            ResponseType::of(0, None),
            ResponseType::OtherError,
            "nothing sent"
        );
    }
}
