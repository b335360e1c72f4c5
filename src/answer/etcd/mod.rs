//! etcd answers, as CoreDNS's `etcd` plugin gives them (`plugin/etcd/handler.go`,
//! `plugin/backend_lookup.go`), from the mirror instead of etcd. docs/coredns.md §3–§5 is the
//! contract these modules keep; a change of behaviour here changes it in the same commit.
//!
//! Response shape (CoreDNS `plugin/etcd/handler.go`): records built ⇒ NOERROR, AA, answer + additional, empty
//! authority; nothing at or below the name ⇒ NXDOMAIN with the SOA; the name exists but yields
//! nothing for the type ⇒ NODATA with the SOA; an NS entry whose host is a name ⇒ SERVFAIL with
//! the SOA. srvd differs on purpose in the SRV order (RFC 2782, fresh per response) and the SOA
//! serial (the revision of the zone's last change, not the clock).
//!
//! Records are synthesised per question (owned), with TTLs from the values and, for leased keys,
//! from the lease table. A question builds at most the records that can fit (`cap`), reads the
//! entries under its own name once, and makes a bounded number of further reads (`Ctx::lookup`,
//! see `answer::budget`); each name a CNAME leads to is resolved at most once per question.

mod address;
mod lookup;
mod names;
mod targets;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;

use super::budget::{Lookups, Sink};
use super::small::SmallMap;
use super::{Answer, Owner, Question, Rr, file};
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

/// What resolving a CNAME target gave, earlier in the same question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visit {
    /// Being resolved further up the current chain (a loop: skipped).
    InProgress,
    /// Resolved to records, which are already in the answer: a second CNAME to it is enough.
    Yielded,
    /// Resolved to nothing (or past the budget): a CNAME to it is dropped.
    Empty,
}

/// Everything a lookup needs from the snapshot, and what the question has spent so far.
pub(super) struct Ctx<'a> {
    pub zone: &'a Zone,
    pub mirror: &'a Mirror,
    pub data: &'a EtcdData,
    /// Further reads allowed after the question's own.
    pub lookups: Lookups,
    /// The question name, lower-cased: always "in progress" for the CNAME loop guard.
    pub question: Name,
    /// CNAME targets resolved in this question.
    pub visits: RefCell<SmallMap<Cow<'a, Name>, Visit>>,
    /// Answer records the question may still build.
    pub answer_left: Cell<usize>,
    /// Additional records the question may still build.
    pub extra_left: Cell<usize>,
    /// Whether some TTL came from a lease (see [`Answer::clocked`]).
    pub clocked: Cell<bool>,
    /// The paths read so far (see [`Answer::deps`]).
    pub deps: RefCell<Vec<u64>>,
}

impl<'a> Ctx<'a> {
    fn new(
        zone: &'a Zone,
        mirror: &'a Mirror,
        data: &'a EtcdData,
        question: Name,
        cap: usize,
    ) -> Self {
        Self {
            zone,
            mirror,
            data,
            question,
            lookups: Lookups::new(),
            visits: RefCell::new(SmallMap::default()),
            answer_left: Cell::new(cap),
            extra_left: Cell::new(cap),
            clocked: Cell::new(false),
            deps: RefCell::new(Vec::new()),
        }
    }

    /// The entries a question for `name` sees: the question's own read, never cut short.
    pub fn services(
        &self,
        name: &Name,
        qtype: RecordType,
        exact: bool,
    ) -> Result<Vec<&'a ServiceEntry>, NotFound> {
        let mut unbounded = usize::MAX;
        lookup::services(
            self.mirror,
            &self.data.root,
            name,
            qtype,
            exact,
            &mut unbounded,
            &mut self.deps.borrow_mut(),
        )
    }

    /// A further read (a CNAME target, glue) within the question's budget; past the budget it
    /// finds nothing.
    pub fn lookup(
        &self,
        name: &Name,
        qtype: RecordType,
    ) -> Result<Vec<&'a ServiceEntry>, NotFound> {
        let mut entries = self.lookups.take().ok_or(NotFound)?;
        let before = entries;
        let found = lookup::services(
            self.mirror,
            &self.data.root,
            name,
            qtype,
            false,
            &mut entries,
            &mut self.deps.borrow_mut(),
        );
        self.lookups.spend(before - entries);
        found
    }

    /// The question's own read (`own`) or a further one.
    pub fn read(
        &self,
        name: &Name,
        qtype: RecordType,
        own: bool,
    ) -> Result<Vec<&'a ServiceEntry>, NotFound> {
        if own {
            self.services(name, qtype, false)
        } else {
            self.lookup(name, qtype)
        }
    }

    /// What resolving `name` gave earlier in this question, if it was tried.
    pub fn visit(&self, name: &Name) -> Option<Visit> {
        if *name == self.question {
            return Some(Visit::InProgress);
        }
        self.visits.borrow().get(name).copied()
    }

    pub fn set_visit(&self, name: Cow<'a, Name>, visit: Visit) {
        *self
            .visits
            .borrow_mut()
            .get_or_insert_with(name, || visit)
            .0 = visit;
    }

    /// A sink for answer records, sharing the question's answer cap.
    pub fn answers<'s>(&'s self, out: &'s mut Vec<Rr<'a>>) -> Sink<'s, 'a> {
        Sink::new(out, &self.answer_left)
    }

    /// A sink for additional records, sharing the question's additional cap.
    pub fn extra<'s>(&'s self, out: &'s mut Vec<Rr<'a>>) -> Sink<'s, 'a> {
        Sink::new(out, &self.extra_left)
    }

    /// The TTL of records built from `entry` (CoreDNS `plugin/etcd/etcd.go`).
    pub fn ttl(&self, entry: &ServiceEntry) -> u32 {
        if entry.lease != 0 {
            self.clocked.set(true);
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

/// Answers `question` from etcd data into `out`, which must be empty, building at most `cap`
/// answer and `cap` additional records. Returns [`Outcome::NotFound`], with `out` left empty,
/// when nothing exists at or below the name.
pub(super) fn answer<'a, R: Rng + ?Sized>(
    zone: &'a Zone,
    etcd_zone: &'a EtcdZone,
    data: &'a EtcdData,
    question: &Question<'_>,
    cap: usize,
    rng: &mut R,
    out: &mut Answer<'a>,
) -> Outcome {
    let Some(mirror) = data.mirror.as_ref() else {
        // Not synced yet: an honest SERVFAIL, never an NXDOMAIN from a half-loaded mirror.
        out.rcode = ResponseCode::ServFail;
        return Outcome::Answered;
    };
    // The question is kept in the context, not copied into the visit map on every question.
    let ctx = Ctx::new(zone, mirror, data, question.name.to_lowercase(), cap);
    let name = &ctx.question;
    let apex = *name == *zone.origin();
    // Written straight into the caller's (recycled) sections; emptied again on failure.
    let (answers, additional) = (&mut out.answers, &mut out.additional);
    let result: Result<(), Failure> = match question.qtype {
        RecordType::A | RecordType::AAAA => address::addresses(
            &ctx,
            name,
            Owner::Question,
            question.qtype,
            &mut Vec::new(),
            &mut ctx.answers(answers),
        )
        .map_err(Failure::from),
        RecordType::TXT => address::txt(
            &ctx,
            name,
            Owner::Question,
            &mut Vec::new(),
            &mut ctx.answers(answers),
        )
        .map_err(Failure::from),
        RecordType::CNAME => names::cname(&ctx, name, answers).map_err(Failure::from),
        RecordType::PTR => names::ptr(&ctx, name, answers).map_err(Failure::from),
        RecordType::MX => targets::mx(&ctx, name, answers, additional).map_err(Failure::from),
        RecordType::SRV => {
            targets::srv(&ctx, name, rng, answers, additional).map_err(Failure::from)
        }
        RecordType::SOA => {
            answers.push(soa(&ctx, etcd_zone));
            Ok(())
        }
        RecordType::NS if apex => targets::ns(&ctx, answers, additional),
        // Other types: whether the name has A entries only tells NXDOMAIN from NODATA
        // (handler.go `default`); no record is needed for that.
        _ => address::address_services(&ctx, name, RecordType::A, true)
            .map(|_| ())
            .map_err(Failure::from),
    };
    // What was read counts whatever came of it (a path that held nothing is a dependency too).
    out.clocked |= ctx.clocked.get();
    out.deps.extend(ctx.deps.take());
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
        Ok(()) => out.rcode = ResponseCode::NoError,
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
        // Only the SOA is built here: no CNAME is followed, so no question name is needed.
        let ctx = Ctx::new(zone, mirror, data, Name::root(), 1);
        out.authority.push(soa(&ctx, etcd_zone));
        out.deps.extend(ctx.deps.take());
    }
}

/// The synthesised SOA (CoreDNS `plugin/backend_lookup.go` `SOA`): `ns.dns.<zone> hostmaster.<zone> SERIAL 7200 1800
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
    // The serial moves with any change in the zone.
    ctx.deps
        .borrow_mut()
        .push(crate::index::changes::path_hash(&etcd_zone.path));
    let mut serial = ctx.mirror.serial(etcd_zone.slot);
    if ctx.zone.registry().is_some() {
        // The registry zone's data changes with the registry's keys too.
        serial = serial.max(ctx.mirror.registry().serial());
    }
    let serial = serial as u32;
    let data = SOA::new(mname, rname, serial, 7200, 1800, 86400, SOA_TTL_SECS);
    Rr::owned(
        Owner::Record,
        record(origin, SOA_TTL_SECS, RData::SOA(data)),
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use hickory_proto::rr::{Name, RData, RecordType};
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::lookup::tests::{limit_lookups, lookups};
    use crate::answer::{self, Answer, Question};
    use crate::backend::skydns::decode;
    use crate::config::{EtcdConfig, parse_zone};
    use crate::daemon::build_index;
    use crate::index::leases::{LeaseBounds, LeaseTable};
    use crate::index::mirror::Mirror;
    use crate::index::{EtcdData, Index};

    /// An index whose only zone, `etcd.test.`, is a mirror of `entries` (key, JSON value).
    fn mirror_index(entries: impl IntoIterator<Item = (String, String)>) -> Index {
        let mut etcd = EtcdConfig::new(Vec::new());
        etcd.zones = vec![parse_zone("etcd.test.").unwrap()];
        let (base, paths) = build_index(Vec::new(), Some(&etcd)).unwrap();
        let entries: Vec<_> = entries
            .into_iter()
            .map(|(key, value)| (Arc::new(decode(&key, value.as_bytes(), 0).unwrap()), 1))
            .collect();
        base.with_etcd(EtcdData {
            mirror: Some(Mirror::from_listing(&paths, 1, entries, None)),
            root: "/skydns".into(),
            leases: Arc::new(LeaseTable::new(LeaseBounds::default(), |_| {})),
        })
    }

    fn ask<'a>(index: &'a Index, name: &str, qtype: RecordType, out: &mut Answer<'a>) {
        let name = Name::from_ascii(name).unwrap();
        let question = Question::new(&name, qtype);
        let zone = index.find_zone(&question.key).unwrap();
        let mut rng = SmallRng::seed_from_u64(5);
        answer::answer(index, zone, &question, 1232, &mut rng, out);
    }

    fn ip(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 + i)
    }

    /// Over UDP at most 1232 bytes go out and a record takes at least 12 of them, so an answer
    /// over 10,000 entries builds at most 1232 / 12 + 1 records, however many exist.
    #[test]
    fn a_udp_srv_answer_over_ten_thousand_entries_builds_at_most_the_cap() {
        let index = mirror_index((0..10_000u32).map(|i| {
            (
                format!("/skydns/test/etcd/big/_tcp/_http/i{i}"),
                format!(r#"{{"host":"{}","port":8080,"weight":{}}}"#, ip(i), i % 5),
            )
        }));
        let mut out = Answer::with_buffers(Default::default());
        ask(
            &index,
            "_http._tcp.big.etcd.test.",
            RecordType::SRV,
            &mut out,
        );
        let cap = 1232 / 12 + 1;
        assert!(
            out.answers.len() <= cap,
            "{} SRV records built for a 1232-byte answer (cap {cap})",
            out.answers.len()
        );
        assert!(out.additional.len() <= cap, "{} glue", out.additional.len());
    }

    /// Ten names, each with its own address and one key per other name (host = that name): one
    /// A question resolves each name once, not once per path through the web.
    #[test]
    fn a_cname_web_of_ten_names_visits_each_name_once() {
        let names = 10u32;
        let mut entries = Vec::new();
        for i in 0..names {
            entries.push((
                format!("/skydns/test/etcd/web/n{i}/self"),
                format!(r#"{{"host":"{}"}}"#, ip(i)),
            ));
            for j in (0..names).filter(|j| *j != i) {
                entries.push((
                    format!("/skydns/test/etcd/web/n{i}/to{j}"),
                    format!(r#"{{"host":"n{j}.web.etcd.test"}}"#),
                ));
            }
        }
        let index = mirror_index(entries);
        limit_lookups(1_000);
        let mut out = Answer::with_buffers(Default::default());
        ask(&index, "n0.web.etcd.test.", RecordType::A, &mut out);
        assert!(lookups() <= names as usize + 1, "{} lookups", lookups());
        let mut addresses: Vec<Ipv4Addr> = out
            .answers
            .iter()
            .filter_map(|rr| match rr.record.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        addresses.sort();
        assert_eq!(addresses, (0..names).map(ip).collect::<Vec<_>>());
        // Every CNAME appears at most once, and each points at a name whose records are there.
        let mut cnames: Vec<String> = out
            .answers
            .iter()
            .filter(|rr| rr.record.record_type() == RecordType::CNAME)
            .map(|rr| format!("{} {}", rr.record.name, rr.record.data))
            .collect();
        let total = cnames.len();
        cnames.sort();
        cnames.dedup();
        assert_eq!(cnames.len(), total, "a CNAME repeated");
    }
}
