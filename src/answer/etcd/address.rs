//! A, AAAA and TXT from etcd, with CNAME chains (CoreDNS `A`, `AAAA`, `TXT`, `checkForApex`).
//!
//! A name host becomes `CNAME qname → host.`, skipped when the host is the question name or
//! below it (a loop through the subtree read), when more than ten CNAMEs already precede it
//! (HEAD's `maxCnameChainLength`), or when an earlier CNAME of the chain has the same target. A
//! target in the zone is resolved again for the same type, and the CNAME is kept only if that
//! yields records; a target outside the zone gives the bare CNAME (as a running CoreDNS does).
//! Each in-zone target is resolved once per question (see [`follow`]), and answers stop at the
//! question's record cap.

use std::borrow::Cow;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

use super::lookup::NotFound;
use super::{Ctx, Visit, record};
use crate::answer::budget::Sink;
use crate::answer::small::SmallSet;
use crate::answer::{Owner, Rr};
use crate::backend::{HostKind, ServiceEntry};

/// More CNAMEs than this already in the chain stop it (CoreDNS HEAD, 1.12.1+).
const MAX_PREVIOUS_CNAMES: usize = 10;

/// The entries for A/AAAA at `name`: at the zone apex, `apex.dns.<zone>` first (as CoreDNS's etcd plugin does).
/// `own`: the question's own name (read in full), else a budgeted further read.
pub(super) fn address_services<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    qtype: RecordType,
    own: bool,
) -> Result<Vec<&'a ServiceEntry>, NotFound> {
    if name == ctx.zone.origin()
        && let Some(apex) = ctx.special("apex")
        && let Ok(found) = ctx.read(&apex, qtype, own)
    {
        return Ok(found);
    }
    ctx.read(name, qtype, own)
}

/// A or AAAA records for `name` (records go out under `owner`; `chain` holds the CNAME targets
/// already followed). Stops when `out` is full.
pub(super) fn addresses<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    owner: Owner<'a>,
    qtype: RecordType,
    chain: &mut Vec<Name>,
    out: &mut Sink<'_, 'a>,
) -> Result<(), NotFound> {
    let own = matches!(owner, Owner::Question);
    let services = address_services(ctx, name, qtype, own)?;
    let mut seen_hosts: SmallSet<&str> = SmallSet::default();
    for entry in services {
        if out.full() {
            break;
        }
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
            (HostKind::A(ip), RecordType::A) if seen_hosts.insert(&*entry.host) => {
                out.push(Rr::owned(owner, record(name, ttl, RData::A(A(*ip)))));
            }
            (HostKind::Aaaa(ip), RecordType::AAAA) if seen_hosts.insert(&*entry.host) => {
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
    out: &mut Sink<'_, 'a>,
) -> Result<(), NotFound> {
    let own = matches!(owner, Owner::Question);
    let services = ctx.read(name, RecordType::TXT, own)?;
    let mut seen_texts: SmallSet<&str> = SmallSet::default();
    for entry in services {
        if out.full() {
            break;
        }
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
            HostKind::Txt if seen_texts.insert(&*entry.text) => {
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
    if text.len().is_multiple_of(255) {
        parts.push(&[]);
    }
    parts
}

/// The CNAME step shared by A, AAAA and TXT.
///
/// Each target is resolved at most once per question (`Ctx::visit`): a later CNAME to a target
/// that yielded records adds just the CNAME (its records are in the answer already), one to a
/// target that yielded nothing, or is being resolved further up, is dropped. CoreDNS instead
/// re-resolves the target on every path, which grows exponentially in a web of names that alias
/// each other; its loop guard (a target earlier in the chain) and depth limit stay as they are.
#[allow(clippy::too_many_arguments)]
fn follow<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    owner: Owner<'a>,
    entry: &ServiceEntry,
    host: &'a Name,
    chain: &mut Vec<Name>,
    out: &mut Sink<'_, 'a>,
    resolve: impl Fn(&Ctx<'a>, &Name, &mut Vec<Name>, &mut Sink<'_, 'a>) -> Result<(), NotFound>,
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
    match ctx.visit(host) {
        Some(Visit::Yielded) => return out.push(cname),
        Some(Visit::InProgress | Visit::Empty) => return,
        None => {}
    }
    ctx.set_visit(Cow::Borrowed(host), Visit::InProgress);
    let mut next = Vec::new();
    chain.push(host.clone());
    let resolved = resolve(ctx, host, chain, &mut out.nested(&mut next));
    chain.pop();
    let yielded = resolved.is_ok() && !next.is_empty();
    let visit = if yielded {
        Visit::Yielded
    } else {
        Visit::Empty
    };
    ctx.set_visit(Cow::Borrowed(host), visit);
    if yielded {
        out.push(cname);
        out.append(&mut next);
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
