//! etcd answers, as CoreDNS's `etcd` plugin gives them (`plugin/etcd/handler.go`,
//! `plugin/backend_lookup.go`), from the mirror instead of etcd.
//!
//! Response shape (contract §5): records built ⇒ NOERROR, AA, answer + additional, empty
//! authority; nothing at or below the name ⇒ NXDOMAIN with the SOA; the name exists but yields
//! nothing for the type ⇒ NODATA with the SOA; an NS entry whose host is a name ⇒ SERVFAIL with
//! the SOA. srvd differs on purpose in the SRV order (RFC 2782, fresh per response) and the SOA
//! serial (the revision of the zone's last change, not the clock).
//!
//! Records are synthesised per question (owned), with TTLs from the values and, for leased keys,
//! from the lease table.

mod address;
mod lookup;
mod names;
mod targets;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;

use super::{Answer, Owner, Question, Rr, file, srv};
use crate::backend::{DEFAULT_TTL_SECS, ServiceEntry};
use crate::index::mirror::Mirror;
use crate::index::{EtcdData, EtcdZone, Zone};

pub(crate) use lookup::NotFound;

/// CoreDNS's `MinTTL` for etcd zones: the synthesised SOA's TTL and MINIMUM.
const SOA_TTL_SECS: u32 = 30;

/// Whether etcd had anything at or below the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// `out` holds the answer (positive, NODATA or SERVFAIL).
    Answered,
    /// Nothing in etcd at or below the name; `out` is untouched.
    NotFound,
}

/// Why an etcd lookup produced no records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    NotFound,
    /// CoreDNS answers SERVFAIL (an NS entry whose host is a name).
    ServFail,
}

impl From<NotFound> for Failure {
    fn from(_: NotFound) -> Self {
        Self::NotFound
    }
}

/// Everything a lookup needs from the snapshot.
pub(super) struct Ctx<'a> {
    pub zone: &'a Zone,
    pub mirror: &'a Mirror,
    pub data: &'a EtcdData,
}

impl<'a> Ctx<'a> {
    /// The entries a question for `name` sees.
    pub fn services(
        &self,
        name: &Name,
        qtype: RecordType,
        exact: bool,
    ) -> Result<Vec<&'a ServiceEntry>, NotFound> {
        lookup::services(self.mirror, &self.data.root, name, qtype, exact)
    }

    /// The TTL of records built from `entry` (contract §6).
    pub fn ttl(&self, entry: &ServiceEntry) -> u32 {
        if entry.lease != 0 {
            self.data.leases.ttl(entry.lease, entry.ttl)
        } else if entry.ttl == 0 {
            DEFAULT_TTL_SECS
        } else {
            entry.ttl
        }
    }

    /// Whether `name` is in this zone (CoreDNS `dns.IsSubDomain(zone, name)`).
    pub fn in_zone(&self, name: &Name) -> bool {
        self.zone.origin().zone_of(name)
    }

    /// `<label>.dns.<zone>`: where apex A/AAAA (`apex`) and NS (`ns`) entries live.
    pub fn special(&self, label: &str) -> Option<Name> {
        Name::from_ascii(format!("{label}.dns"))
            .ok()?
            .append_domain(self.zone.origin())
            .ok()
    }
}

/// A record for the answer, named `owner` (ignored when it goes out under the question).
pub(super) fn record(owner: &Name, ttl: u32, data: RData) -> Record {
    Record::from_rdata(owner.clone(), ttl, data)
}

/// Answers `question` from etcd data into `out`, which must be empty. Returns
/// [`Outcome::NotFound`], with `out` left empty, when nothing exists at or below the name.
pub(super) fn answer<'a, R: Rng + ?Sized>(
    zone: &'a Zone,
    etcd_zone: &'a EtcdZone,
    data: &'a EtcdData,
    question: &Question<'_>,
    rng: &mut R,
    out: &mut Answer<'a>,
) -> Outcome {
    let Some(mirror) = data.mirror.as_ref() else {
        // Not synced yet: an honest SERVFAIL, never an NXDOMAIN from a half-loaded mirror.
        out.rcode = ResponseCode::ServFail;
        return Outcome::Answered;
    };
    let ctx = Ctx { zone, mirror, data };
    let name = question.name.to_lowercase();
    let apex = name == *zone.origin();
    // Written straight into the caller's (recycled) sections; emptied again on failure.
    let (answers, additional) = (&mut out.answers, &mut out.additional);
    let result: Result<(), Failure> = match question.qtype {
        RecordType::A | RecordType::AAAA => address::addresses(
            &ctx,
            &name,
            Owner::Question,
            question.qtype,
            &mut Vec::new(),
            answers,
        )
        .map_err(Failure::from),
        RecordType::TXT => address::txt(&ctx, &name, Owner::Question, &mut Vec::new(), answers)
            .map_err(Failure::from),
        RecordType::CNAME => names::cname(&ctx, &name, answers).map_err(Failure::from),
        RecordType::PTR => names::ptr(&ctx, &name, answers).map_err(Failure::from),
        RecordType::MX => targets::mx(&ctx, &name, answers, additional).map_err(Failure::from),
        RecordType::SRV => targets::srv(&ctx, &name, answers, additional).map_err(Failure::from),
        RecordType::SOA => {
            answers.push(soa(&ctx, etcd_zone));
            Ok(())
        }
        RecordType::NS if apex => targets::ns(&ctx, answers, additional),
        _ => {
            // Other types: an A lookup only tells NXDOMAIN from NODATA (handler.go `default`).
            let mut discard = Vec::new();
            address::addresses(
                &ctx,
                &name,
                Owner::Question,
                RecordType::A,
                &mut Vec::new(),
                &mut discard,
            )
            .map_err(Failure::from)
        }
    };
    match result {
        Err(Failure::NotFound) => {
            out.clear();
            return Outcome::NotFound;
        }
        Err(Failure::ServFail) => {
            out.clear();
            negative(zone, etcd_zone, data, ResponseCode::ServFail, out);
        }
        Ok(()) if out.answers.is_empty() => {
            out.clear();
            negative(zone, etcd_zone, data, ResponseCode::NoError, out);
        }
        Ok(()) => {
            if question.qtype == RecordType::SRV {
                srv::order(&mut out.answers, rng);
            }
            out.rcode = ResponseCode::NoError;
        }
    }
    Outcome::Answered
}

/// A negative (or SERVFAIL) answer with the zone's SOA in authority: the zone file's when the
/// zone has one, else the synthesised one.
pub(super) fn negative<'a>(
    zone: &'a Zone,
    etcd_zone: &'a EtcdZone,
    data: &'a EtcdData,
    rcode: ResponseCode,
    out: &mut Answer<'a>,
) {
    if let Some(file) = zone.file() {
        return file::negative(file, rcode, out);
    }
    out.rcode = rcode;
    if let Some(mirror) = data.mirror.as_ref() {
        let ctx = Ctx { zone, mirror, data };
        out.authority.push(soa(&ctx, etcd_zone));
    }
}

/// The synthesised SOA (contract §4 "SOA"): `ns.dns.<zone> hostmaster.<zone> SERIAL 7200 1800
/// 86400 30`, TTL 30. SERIAL is the revision of the zone's last change (a deliberate difference:
/// CoreDNS uses the clock), so it moves only when this zone's data does.
fn soa<'a>(ctx: &Ctx<'a>, etcd_zone: &EtcdZone) -> Rr<'a> {
    let origin = ctx.zone.origin();
    let mname = ctx.special("ns").unwrap_or_else(|| origin.clone());
    let rname = Name::from_ascii("hostmaster")
        .ok()
        .and_then(|h| h.append_domain(origin).ok())
        .unwrap_or_else(|| origin.clone());
    // An etcd revision is an i64; the SOA serial field is 32 bits and compared in serial
    // arithmetic (RFC 1982), so the low 32 bits keep growing with the revision.
    let serial = ctx.mirror.serial(etcd_zone.slot) as u32;
    let data = SOA::new(mname, rname, serial, 7200, 1800, 86400, SOA_TTL_SECS);
    Rr::owned(
        Owner::Record,
        record(origin, SOA_TTL_SECS, RData::SOA(data)),
    )
}
