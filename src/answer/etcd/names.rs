//! CNAME and PTR from etcd: exact key only (CoreDNS `CNAME`, `PTR`).

use hickory_proto::rr::rdata::{CNAME, PTR};
use hickory_proto::rr::{Name, RData, RecordType};

use super::lookup::NotFound;
use super::{Ctx, record};
use crate::answer::small::SmallSet;
use crate::answer::{Owner, Rr};
use crate::backend::{HostKind, ServiceEntry};

/// A non-address host as an absolute name.
fn host_name(entry: &ServiceEntry) -> Option<Name> {
    match &entry.kind {
        HostKind::Name(name) => Some((**name).clone()),
        HostKind::Txt => {
            let mut name = Name::from_ascii(&entry.host).ok()?;
            name.set_fqdn(true);
            Some(name)
        }
        HostKind::A(_) | HostKind::Aaaa(_) | HostKind::Empty => None,
    }
}

/// CNAME at exactly `name`: the first entry whose host is not an address.
pub(super) fn cname<'a>(ctx: &Ctx<'a>, name: &Name, out: &mut Vec<Rr<'a>>) -> Result<(), NotFound> {
    let services = ctx.services(name, RecordType::CNAME, true)?;
    if let Some(entry) = services.first()
        && let Some(target) = host_name(entry)
    {
        let data = RData::CNAME(CNAME(target));
        out.push(Rr::owned(
            Owner::Question,
            record(name, ctx.ttl(entry), data),
        ));
    }
    Ok(())
}

/// PTR at exactly `name`: one per distinct non-address host, up to the question's record cap.
pub(super) fn ptr<'a>(ctx: &Ctx<'a>, name: &Name, out: &mut Vec<Rr<'a>>) -> Result<(), NotFound> {
    let services = ctx.services(name, RecordType::PTR, true)?;
    let mut seen: SmallSet<&str> = SmallSet::default();
    let mut out = ctx.answers(out);
    for entry in services {
        if out.full() {
            break;
        }
        let Some(target) = host_name(entry) else {
            continue;
        };
        if seen.insert(&*entry.host) {
            out.push(Rr::owned(
                Owner::Question,
                record(name, ctx.ttl(entry), RData::PTR(PTR(target))),
            ));
        }
    }
    Ok(())
}
