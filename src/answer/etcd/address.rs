//! A, AAAA and TXT from etcd, with CNAME chains (CoreDNS `A`, `AAAA`, `TXT`, `checkForApex`).
//!
//! A name host becomes `CNAME qname → host.`, skipped when the host is the question name or
//! below it (a loop through the subtree read), when more than ten CNAMEs already precede it
//! (HEAD's `maxCnameChainLength`), or when an earlier CNAME of the chain has the same target. A
//! target in the zone is resolved again for the same type, and the CNAME is kept only if that
//! yields records; a target outside the zone gives the bare CNAME (as a running CoreDNS does).

use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

use super::lookup::NotFound;
use super::{Ctx, record};
use crate::answer::{Owner, Rr};
use crate::backend::{HostKind, ServiceEntry};

/// More CNAMEs than this already in the chain stop it (CoreDNS HEAD, 1.12.1+).
const MAX_PREVIOUS_CNAMES: usize = 10;

/// The entries for A/AAAA at `name`: at the zone apex, `apex.dns.<zone>` first (contract §1).
fn address_services<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    qtype: RecordType,
) -> Result<Vec<&'a ServiceEntry>, NotFound> {
    if name == ctx.zone.origin()
        && let Some(apex) = ctx.special("apex")
        && let Ok(found) = ctx.services(&apex, qtype, false)
    {
        return Ok(found);
    }
    ctx.services(name, qtype, false)
}

/// A or AAAA records for `name` (records go out under `owner`; `chain` holds the CNAME targets
/// already followed).
pub(super) fn addresses<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    owner: Owner<'a>,
    qtype: RecordType,
    chain: &mut Vec<Name>,
    out: &mut Vec<Rr<'a>>,
) -> Result<(), NotFound> {
    let services = address_services(ctx, name, qtype)?;
    let mut seen_hosts: Vec<&str> = Vec::new();
    for entry in services {
        let ttl = ctx.ttl(entry);
        match (&entry.kind, qtype) {
            (HostKind::Name(host), _) => {
                follow(
                    ctx,
                    name,
                    owner,
                    entry,
                    host,
                    chain,
                    out,
                    |ctx, host, chain, next| {
                        addresses(ctx, host, Owner::Record, qtype, chain, next)
                    },
                );
            }
            (HostKind::A(ip), RecordType::A) if !seen_hosts.contains(&entry.host.as_str()) => {
                seen_hosts.push(&entry.host);
                out.push(Rr::owned(owner, record(name, ttl, RData::A(A(*ip)))));
            }
            (HostKind::Aaaa(ip), RecordType::AAAA)
                if !seen_hosts.contains(&entry.host.as_str()) =>
            {
                seen_hosts.push(&entry.host);
                out.push(Rr::owned(owner, record(name, ttl, RData::AAAA(AAAA(*ip)))));
            }
            _ => {}
        }
    }
    Ok(())
}

/// TXT records for `name`: one per distinct text, split into 255-byte strings; name hosts
/// without text are followed like A's CNAMEs.
pub(super) fn txt<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    owner: Owner<'a>,
    chain: &mut Vec<Name>,
    out: &mut Vec<Rr<'a>>,
) -> Result<(), NotFound> {
    let services = ctx.services(name, RecordType::TXT, false)?;
    let mut seen_texts: Vec<&str> = Vec::new();
    for entry in services {
        match &entry.kind {
            HostKind::Name(host) => {
                follow(
                    ctx,
                    name,
                    owner,
                    entry,
                    host,
                    chain,
                    out,
                    |ctx, host, chain, next| txt(ctx, host, Owner::Record, chain, next),
                );
            }
            HostKind::Txt if !seen_texts.contains(&entry.text.as_str()) => {
                seen_texts.push(&entry.text);
                let data = TXT::from_bytes(split255(entry.text.as_bytes()));
                out.push(Rr::owned(
                    owner,
                    record(name, ctx.ttl(entry), RData::TXT(data)),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `split255`: 255-byte character-strings; a text of exactly 255·k bytes ends with an empty one.
pub(super) fn split255(text: &[u8]) -> Vec<&[u8]> {
    if text.len() < 255 {
        return vec![text];
    }
    let mut parts: Vec<&[u8]> = text.chunks(255).collect();
    if text.len() % 255 == 0 {
        parts.push(&[]);
    }
    parts
}

/// The CNAME step shared by A, AAAA and TXT.
#[allow(clippy::too_many_arguments)]
fn follow<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    owner: Owner<'a>,
    entry: &ServiceEntry,
    host: &Name,
    chain: &mut Vec<Name>,
    out: &mut Vec<Rr<'a>>,
    resolve: impl Fn(&Ctx<'a>, &Name, &mut Vec<Name>, &mut Vec<Rr<'a>>) -> Result<(), NotFound>,
) {
    if name.zone_of(host) || chain.len() > MAX_PREVIOUS_CNAMES || chain.contains(host) {
        return;
    }
    let cname = Rr::owned(
        owner,
        record(name, ctx.ttl(entry), RData::CNAME(CNAME(host.clone()))),
    );
    if !ctx.in_zone(host) {
        out.push(cname);
        return;
    }
    let mut next = Vec::new();
    chain.push(host.clone());
    let resolved = resolve(ctx, host, chain, &mut next);
    chain.pop();
    if resolved.is_ok() && !next.is_empty() {
        out.push(cname);
        out.extend(next);
    }
}

#[cfg(test)]
mod tests {
    use super::split255;

    #[test]
    fn split255_adds_an_empty_string_at_exact_multiples() {
        assert_eq!(split255(b"abc"), vec![b"abc" as &[u8]]);
        let a = [b'a'; 255];
        assert_eq!(split255(&a), vec![&a[..], &[][..]]);
        let b = [b'b'; 300];
        assert_eq!(split255(&b), vec![&b[..255], &b[255..]]);
    }
}
