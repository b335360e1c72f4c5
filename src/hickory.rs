//! srvd's zones inside hickory-dns (feature `hickory`): a hickory-server 0.26 [`ZoneHandler`]
//! over srvd's index and answer function, for programs that already serve DNS with hickory and
//! want srvd's etcd-backed (or zone-file) zones in their [`Catalog`].
//!
//! Why a `ZoneHandler` and not a second resolver: each question is answered by
//! [`crate::answer::answer`] on the snapshot published at that moment (one
//! [`IndexHandle::load`] per question, as srvd's own handler does), so CoreDNS's etcd rules, the
//! RFC 2782 order drawn per response, glue in Additional and etcd updates all come from the same
//! code as `srvd serve`. This module only translates the result into hickory's types:
//!
//! - answers (owners spelled as asked, TTLs as srvd sends them) and glue become an
//!   [`AuthLookup`] with answers and additionals; the catalog copies the additionals into the
//!   Additional section;
//! - NODATA becomes [`LookupError::NameExists`], NXDOMAIN `LookupError::from(NXDomain)`; the
//!   catalog then asks [`ZoneHandler::lookup`] for the apex SOA, which answers with the SOA at
//!   the RFC 2308 negative TTL, as srvd puts it in a negative answer's authority section;
//! - SERVFAIL (an etcd zone before the first full read) is [`LookupControlFlow::Skip`]: a
//!   hickory authoritative zone cannot return SERVFAIL itself, and a catalog whose chain has no
//!   other handler then answers SERVFAIL (and logs that at `error`);
//! - after a positive SOA answer the catalog asks for the apex NS to put in Authority: srvd's
//!   answers carry none, so that lookup is empty.
//! - what `server::handler` refuses before asking a zone (AXFR, IXFR, classes other than IN and
//!   ANY) is REFUSED here too; hickory's defaults would answer an AXFR with an empty NOERROR.
//!
//! What stays hickory's: the response header, EDNS, and the encoding. srvd's encoder is run
//! first at hickory's size limit only to learn how much glue fits (srvd drops whole glue
//! RRsets without TC, RFC 2181 §9, where hickory would set TC); when the answer records
//! themselves do not fit, hickory truncates and sets TC.
//!
//! Two differences from `srvd serve`, both hickory's: a negative answer's SOA is read from the
//! snapshot current when the catalog asks for it, one lookup after the answer (so during an etcd
//! write its serial can be one revision newer), and hickory logs each response at `info`
//! (filter `hickory_server=warn`, as the example does).

use std::cell::RefCell;
use std::sync::Arc;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestInfo};
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, Catalog, LookupControlFlow, LookupError, LookupOptions, LookupRecords,
    ZoneHandler, ZoneType,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::answer::{self, Answer, AnswerBuffers, Question, Rr};
use crate::config::Config;
use crate::daemon::{self, Running, StartError};
use crate::index::IndexHandle;
use crate::server::wire::{self, RequestHeader, Response, Transport};

thread_local! {
    /// RFC 2782 draws need speed, not unpredictability (as in `server::handler`).
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// One of srvd's zones as a hickory [`ZoneHandler`]. Cheap to clone; every clone answers from the
/// same live index.
#[derive(Debug, Clone)]
pub struct SrvdZone {
    origin: LowerName,
    index: Arc<IndexHandle>,
}

impl SrvdZone {
    /// The zone `origin` of the snapshots published through `index` (a daemon's
    /// [`Running::index_handle`]). A question is answered from the most specific srvd zone
    /// holding its name, as `srvd serve` would: register every zone (see [`Zones`]) so that the
    /// catalog's choice and srvd's agree.
    pub fn new(index: Arc<IndexHandle>, origin: &Name) -> Self {
        Self {
            origin: LowerName::from(origin),
            index,
        }
    }

    /// srvd's answer to one question, in hickory's terms (see the module doc).
    fn respond(
        &self,
        query: &Query,
        transport: Transport,
        payload: Option<u16>,
    ) -> LookupControlFlow<AuthLookup> {
        let index = self.index.load();
        let question = Question::new(query.name(), query.query_type());
        let Some(zone) = index.find_zone(&question.key) else {
            return LookupControlFlow::Break(Err(LookupError::from(ResponseCode::Refused)));
        };
        let limit = hickory_limit(transport, payload);
        let mut answer = Answer::with_buffers(AnswerBuffers::default());
        RNG.with_borrow_mut(|rng| {
            answer::answer(&index, zone, &question, limit, rng, &mut answer);
        });
        match answer.rcode {
            ResponseCode::NoError if answer.answers.is_empty() => {
                LookupControlFlow::Continue(Err(LookupError::NameExists))
            }
            ResponseCode::NoError => {
                let glue = fitting_additionals(query, &answer, limit, payload.is_some());
                let answers = records(&answer.answers, query.name());
                let additionals = records(&answer.additional[..glue], query.name());
                LookupControlFlow::Continue(Ok(AuthLookup::answers(
                    LookupRecords::Section(answers),
                    (!additionals.is_empty()).then_some(LookupRecords::Section(additionals)),
                )))
            }
            ResponseCode::ServFail => LookupControlFlow::Skip,
            rcode => LookupControlFlow::Continue(Err(LookupError::from(rcode))),
        }
    }

    /// The apex SOA at the RFC 2308 negative TTL (the minimum of its TTL and MINIMUM), as srvd
    /// puts it in a negative answer's authority section.
    fn negative_soa(&self) -> LookupControlFlow<AuthLookup> {
        let origin = Name::from(self.origin.clone());
        let soa = Query::query(origin, RecordType::SOA);
        let index = self.index.load();
        let question = Question::new(soa.name(), RecordType::SOA);
        let mut answer = Answer::with_buffers(AnswerBuffers::default());
        if let Some(zone) = index.find_zone(&question.key) {
            RNG.with_borrow_mut(|rng| {
                answer::answer(&index, zone, &question, u16::MAX, rng, &mut answer);
            });
        }
        let mut soa_records = records(&answer.answers, soa.name());
        soa_records.retain(|r| r.record_type() == RecordType::SOA);
        for record in &mut soa_records {
            if let RData::SOA(data) = &record.data {
                record.ttl = record.ttl.min(data.minimum);
            }
        }
        LookupControlFlow::Continue(Ok(AuthLookup::answers(
            LookupRecords::Section(soa_records),
            None,
        )))
    }
}

/// The size hickory's encoder allows (`MessageResponse`): the client's advertised payload (at
/// least 512) over UDP, 512 without EDNS, a whole message over a stream.
fn hickory_limit(transport: Transport, payload: Option<u16>) -> u16 {
    match transport {
        Transport::Udp => payload.map_or(wire::MIN_UDP_PAYLOAD, |p| p.max(wire::MIN_UDP_PAYLOAD)),
        Transport::Tcp => wire::MAX_TCP_MESSAGE,
    }
}

/// How many of `answer`'s additional records srvd would send within `limit`: srvd's encoder
/// drops whole glue RRsets from the end without setting TC, so the records kept are a prefix.
/// When the answer records themselves do not fit, none: hickory cuts the answer and sets TC.
fn fitting_additionals(query: &Query, answer: &Answer<'_>, limit: u16, edns: bool) -> usize {
    if answer.additional.is_empty() {
        return 0;
    }
    let response = Response {
        header: RequestHeader {
            id: 0,
            op_code: hickory_proto::op::OpCode::Query,
            recursion_desired: false,
            checking_disabled: false,
        },
        question: Some(query),
        rcode: answer.rcode,
        authoritative: true,
        edns,
        limit,
    };
    let mut out = Vec::new();
    if wire::encode(&mut out, &response, Some(answer)).is_err() || out.len() < 12 {
        return 0;
    }
    let truncated = out[2] & 0x02 != 0;
    if truncated {
        return 0;
    }
    let sent = usize::from(u16::from_be_bytes([out[10], out[11]]));
    sent.saturating_sub(usize::from(edns))
        .min(answer.additional.len())
}

/// srvd's response records as hickory records: each under the name it is sent under, with the
/// TTL srvd sends.
fn records(rrs: &[Rr<'_>], question: &Name) -> Vec<Record> {
    rrs.iter()
        .map(|rr| {
            let mut record = rr.record.as_ref().clone();
            record.name = rr.owner_name(question).clone();
            record.ttl = rr.ttl;
            record
        })
        .collect()
}

#[async_trait::async_trait]
impl ZoneHandler for SrvdZone {
    fn zone_type(&self) -> ZoneType {
        ZoneType::Primary
    }

    /// srvd does not transfer zones (REFUSED, as `srvd serve` answers AXFR).
    fn axfr_policy(&self) -> AxfrPolicy {
        AxfrPolicy::Deny
    }

    fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// The catalog calls this without request information for the records it adds itself: the
    /// apex SOA of a negative answer (at the negative TTL) and the apex NS after a SOA answer
    /// (none: srvd sends no authority NS). Anything else is srvd's answer to that question.
    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        request_info: Option<&RequestInfo<'_>>,
        _lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        match request_info {
            None if *name == self.origin && rtype == RecordType::SOA => self.negative_soa(),
            None if *name == self.origin && rtype == RecordType::NS => {
                LookupControlFlow::Continue(Ok(AuthLookup::Empty))
            }
            None => self.respond(
                &Query::query(Name::from(name.clone()), rtype),
                Transport::Tcp,
                None,
            ),
            // The request's own question keeps the client's spelling for the owner names.
            Some(info) if info.query.name() == name && info.query.query_type() == rtype => {
                self.respond(info.query.original(), transport_of(info.protocol), None)
            }
            Some(info) => self.respond(
                &Query::query(Name::from(name.clone()), rtype),
                transport_of(info.protocol),
                None,
            ),
        }
    }

    async fn search(
        &self,
        request: &Request,
        _lookup_options: LookupOptions,
    ) -> (
        LookupControlFlow<AuthLookup>,
        Option<hickory_proto::rr::TSigResponseContext>,
    ) {
        let info = match request.request_info() {
            Ok(info) => info,
            Err(error) => return (LookupControlFlow::Break(Err(error)), None),
        };
        // What `server::handler` refuses before any zone is asked (IXFR reaches here; AXFR goes
        // to `zone_transfer`).
        if !matches!(info.query.query_class(), DNSClass::IN | DNSClass::ANY)
            || matches!(info.query.query_type(), RecordType::AXFR | RecordType::IXFR)
        {
            let refused = LookupError::from(ResponseCode::Refused);
            return (LookupControlFlow::Break(Err(refused)), None);
        }
        let payload = request.edns.as_ref().map(|edns| edns.max_payload());
        let flow = self.respond(info.query.original(), transport_of(info.protocol), payload);
        (flow, None)
    }

    /// REFUSED, as `srvd serve` answers AXFR (hickory's default, NOTIMP, comes out as NOERROR).
    async fn zone_transfer(
        &self,
        _request: &Request,
        _lookup_options: LookupOptions,
        _now: u64,
    ) -> Option<(
        Result<hickory_server::zone_handler::ZoneTransfer, LookupError>,
        Option<hickory_proto::rr::TSigResponseContext>,
    )> {
        Some((Err(LookupError::from(ResponseCode::Refused)), None))
    }

    /// No DNSSEC: srvd's zones are unsigned.
    async fn nsec_records(
        &self,
        _name: &LowerName,
        _lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        LookupControlFlow::Continue(Ok(AuthLookup::Empty))
    }
}

/// Datagrams are size-limited; every other hickory transport carries a whole message.
fn transport_of(protocol: hickory_server::net::xfer::Protocol) -> Transport {
    if protocol.is_datagram() {
        Transport::Udp
    } else {
        Transport::Tcp
    }
}

/// srvd's zones, loaded and kept in sync exactly as `srvd serve` does (zone files, an etcd
/// mirror on the caller's tokio runtime, reloads), without srvd's DNS listeners: hickory serves
/// them. Dropping it leaves the sync task running, so the handlers it gave out stay live (a
/// dropped value must not freeze a zone a catalog still serves); [`Zones::stop`] ends it, after
/// which those handlers answer from the last snapshot.
#[derive(Debug)]
pub struct Zones {
    running: Running,
}

impl Zones {
    /// Loads `config`'s zones and starts the etcd sync, as `srvd serve` would, but binds none of
    /// `config.listen` (its HTTP endpoints, if configured, are served). Like `srvd serve` it
    /// never waits for etcd: an etcd zone answers SERVFAIL until the first full read (see
    /// [`Running::sync_status`] through [`Zones::running`]).
    ///
    /// # Errors
    /// As `srvd serve`: a zone file, the etcd settings, nothing to serve, an HTTP address.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let config = Config {
            listen: Vec::new(),
            zones_by_listen: Vec::new(),
            ..config.clone()
        };
        Ok(Self {
            running: daemon::start(&config).await?,
        })
    }

    /// One handler per zone srvd serves now, most specific first.
    pub fn handlers(&self) -> Vec<SrvdZone> {
        let index = self.running.index_handle();
        self.running
            .snapshot()
            .zones()
            .iter()
            .map(|zone| SrvdZone::new(index.clone(), zone.origin()))
            .collect()
    }

    /// Puts every zone into `catalog` (replacing what it held for those names).
    pub fn add_to(&self, catalog: &mut Catalog) {
        for zone in self.handlers() {
            let origin = zone.origin.clone();
            catalog.upsert(origin, vec![Arc::new(zone)]);
        }
    }

    /// The running sync: its status, [`Running::wait_for_revision`], reloads.
    pub fn running(&self) -> &Running {
        &self.running
    }

    /// The same, mutably (for [`Running::reload`]; a reload that adds zones needs
    /// [`Zones::add_to`] again).
    pub fn running_mut(&mut self) -> &mut Running {
        &mut self.running
    }

    /// Stops the sync task (and HTTP endpoints) and waits for them.
    pub async fn stop(self) {
        self.running.shutdown();
        self.running.wait().await;
    }
}
