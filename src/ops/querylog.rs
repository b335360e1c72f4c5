//! The query log line in CoreDNS's `log` plugin format (its default `{common}` format):
//! `{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}`.
//!
//! Built only when `--log-queries` is on: the handler checks the flag before it gathers anything,
//! so a server without it pays one branch per query. Lines go to the `srvd::query` target at
//! `info`, so `RUST_LOG` can route or silence them apart from the rest.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Query;

use super::metrics::rcode_name;

/// The tracing target of query log lines.
pub const TARGET: &str = "srvd::query";

/// One query and its response, as the log line shows them.
pub struct QueryLine<'a> {
    /// Who asked.
    pub peer: SocketAddr,
    /// The request's message ID.
    pub id: u16,
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

impl fmt::Display for QueryLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SocketAddr's Display already brackets IPv6 (`[::1]:53`), as Go's net.JoinHostPort does.
        write!(f, "{} - {} \"", self.peer, self.id)?;
        match self.question {
            Some(q) => write!(
                f,
                "{} {} {}",
                q.query_type(),
                q.query_class(),
                // CoreDNS logs the name lower-cased (request.Name()).
                Lower(q.name())
            )?,
            None => f.write_str("- - -")?,
        }
        write!(
            f,
            " {} {} {} {}\" {} ",
            self.proto,
            self.size,
            self.dnssec_ok,
            self.bufsize,
            rcode_name(self.rcode)
        )?;
        match self.flags {
            Some(flags) => write_flags(f, flags)?,
            None => f.write_str("-")?,
        }
        // Go's strconv.FormatFloat(seconds, 'f', -1, 64): the shortest decimal, then `s`.
        write!(f, " {} {}s", self.rsize, self.duration.as_secs_f64())
    }
}

struct Lower<'a>(&'a hickory_proto::rr::Name);

impl fmt::Display for Lower<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        f.write_str(&text.to_ascii_lowercase())
    }
}

/// The response flags as CoreDNS's `{>rflags}` lists them: `qr,aa,tc,rd,ra,z,ad,cd`, set ones
/// only, `-` when none is.
fn write_flags(f: &mut fmt::Formatter<'_>, [high, low]: [u8; 2]) -> fmt::Result {
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
            line.to_string(),
            "[::1]:40000 - 4242 \"SRV IN web.service.local. udp 40 false 1232\" NXDOMAIN qr,aa,rd 100 0.00025s"
        );
    }
}
