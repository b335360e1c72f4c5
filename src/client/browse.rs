//! DNS-SD browsing over unicast DNS (RFC 6763): which instances a service type has (§4, resolved
//! as §5 says), and which service types a domain offers (§9).
//!
//! A browse is one PTR question when the server sends each instance's SRV, TXT and addresses in
//! the additional section (RFC 6763 §12.1; srvd does). Whatever the server left out is asked for,
//! one instance after another, so a server without §12.1 costs a few more round trips, never a
//! wrong answer. It runs on the same background runtime, resolver and cache as `lookup_srv`.

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::{
    LookupError, SrvResolver, SrvTarget, TxtRecord, absolute, block_on_background, classify,
    fill_addresses, on_background, reorder_targets,
};

/// The name every DNS-SD domain lists its service types at (RFC 6763 §9).
const SERVICE_TYPES: &str = "_services._dns-sd._udp";

/// One instance of a service type, resolved: what a program needs to show it and connect to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    /// The full instance name, absolute, in presentation form (special characters escaped):
    /// `inst0._http._tcp.web.service.local.`. The name to ask for this instance's SRV and TXT.
    pub name: String,
    /// The instance's own label (`<Instance>` in RFC 6763 §4.1), unescaped: free UTF-8 text meant
    /// for people, which may hold spaces and dots.
    pub label: String,
    /// The instance's SRV records in RFC 2782 order (re-drawn on every browse), each with its
    /// addresses. Usually one.
    pub targets: Vec<SrvTarget>,
    /// The instance's attributes (RFC 6763 §6).
    pub txt: TxtRecord,
}

impl ServiceInstance {
    /// Every socket address of the instance in the order to try them.
    pub fn socket_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.targets
            .iter()
            .flat_map(SrvTarget::socket_addrs)
            .collect()
    }
}

impl SrvResolver {
    /// Browses `service_type` (`_http._tcp`) in `domain` (`web.service.local`), or the full name
    /// `service_type` when `domain` is empty: every instance with its SRV targets (addresses
    /// included) and TXT attributes, ordered by instance name (DNS canonical order, so the same
    /// set always lists the same way).
    ///
    /// A service type that exists without instances gives an empty list. Instances whose SRV
    /// record is missing or a lone `.` are left out: a PTR can outlive its instance, and such an
    /// instance cannot be reached.
    ///
    /// # Errors
    /// [`LookupError::NoSuchName`] when the service type does not exist (NXDOMAIN), and the
    /// resolver's errors (unreachable, server failure), for the PTR question or any follow-up.
    pub async fn browse(
        &self,
        service_type: &str,
        domain: &str,
    ) -> Result<Vec<ServiceInstance>, LookupError> {
        let query = join(service_type, domain);
        let mut instances = on_background(browse_on(self.inner.clone(), query)).await?;
        reorder_instances(&mut instances);
        Ok(instances)
    }

    /// [`browse`](Self::browse) for synchronous code; safe inside a tokio runtime too.
    ///
    /// # Errors
    /// As [`browse`](Self::browse).
    pub fn browse_blocking(
        &self,
        service_type: &str,
        domain: &str,
    ) -> Result<Vec<ServiceInstance>, LookupError> {
        let query = join(service_type, domain);
        let mut instances = block_on_background(browse_on(self.inner.clone(), query))?;
        reorder_instances(&mut instances);
        Ok(instances)
    }

    /// The service types `domain` offers (RFC 6763 §9: the PTRs at
    /// `_services._dns-sd._udp.<domain>`), as absolute names ready for
    /// [`browse`](Self::browse) (`_http._tcp.web.service.local.`), in DNS canonical order.
    ///
    /// # Errors
    /// [`LookupError::NoSuchName`] when the domain lists none (NXDOMAIN), and the resolver's
    /// errors.
    pub async fn service_types(&self, domain: &str) -> Result<Vec<String>, LookupError> {
        on_background(service_types_on(
            self.inner.clone(),
            join(SERVICE_TYPES, domain),
        ))
        .await
    }

    /// [`service_types`](Self::service_types) for synchronous code; safe inside tokio too.
    ///
    /// # Errors
    /// As [`service_types`](Self::service_types).
    pub fn service_types_blocking(&self, domain: &str) -> Result<Vec<String>, LookupError> {
        block_on_background(service_types_on(
            self.inner.clone(),
            join(SERVICE_TYPES, domain),
        ))
    }
}

/// `first.second`, or `first` alone when `second` is empty (`lookup_srv`'s rule for empty parts).
fn join(first: &str, second: &str) -> String {
    let first = first.trim_end_matches('.');
    if second.is_empty() {
        first.to_string()
    } else {
        format!("{first}.{second}")
    }
}

fn reorder_instances(instances: &mut [ServiceInstance]) {
    for instance in instances {
        reorder_targets(&mut instance.targets);
    }
}

/// The PTR question at `query`: its lookup (for the additional section) and its targets, sorted
/// and without repeats. NODATA is an empty list: the name exists and lists nothing.
async fn ptr_targets(
    resolver: &TokioResolver,
    query: &str,
) -> Result<(Vec<Record>, Vec<Name>), LookupError> {
    let name = absolute(query)?;
    let lookup = match resolver.lookup(name, RecordType::PTR).await {
        Ok(lookup) => lookup,
        Err(error) => {
            return match classify(query, error) {
                LookupError::NoRecords { .. } => Ok((Vec::new(), Vec::new())),
                other => Err(other),
            };
        }
    };
    let mut targets: Vec<Name> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(ptr) => Some(ptr.0.clone()),
            _ => None,
        })
        .collect();
    targets.sort();
    targets.dedup();
    Ok((lookup.additionals().to_vec(), targets))
}

async fn service_types_on(
    resolver: TokioResolver,
    query: String,
) -> Result<Vec<String>, LookupError> {
    let (_, types) = ptr_targets(&resolver, &query).await?;
    Ok(types.iter().map(Name::to_ascii).collect())
}

async fn browse_on(
    resolver: TokioResolver,
    query: String,
) -> Result<Vec<ServiceInstance>, LookupError> {
    let (mut additionals, names) = ptr_targets(&resolver, &query).await?;
    let mut instances = Vec::with_capacity(names.len());
    for name in names {
        if let Some(instance) = resolve_instance(&resolver, name, &mut additionals).await? {
            instances.push(instance);
        }
    }
    Ok(instances)
}

/// The records of `rtype` at `name`: from `known` when the server sent them along, else asked
/// for (their own additional records join `known`). `None` when the name has none.
async fn records_at(
    resolver: &TokioResolver,
    name: &Name,
    rtype: RecordType,
    known: &mut Vec<Record>,
) -> Result<Option<Vec<RData>>, LookupError> {
    let of_name = |records: &[Record]| -> Vec<RData> {
        records
            .iter()
            .filter(|r| r.record_type() == rtype && r.name == *name)
            .map(|r| r.data.clone())
            .collect()
    };
    let sent = of_name(known);
    if !sent.is_empty() {
        return Ok(Some(sent));
    }
    match resolver.lookup(name.clone(), rtype).await {
        Ok(lookup) => {
            let found = of_name(lookup.answers());
            known.extend(lookup.additionals().iter().cloned());
            Ok((!found.is_empty()).then_some(found))
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(None),
        Err(error) => Err(classify(&name.to_ascii(), error)),
    }
}

/// One instance's SRV, TXT and addresses (RFC 6763 §5); `None` when it has no usable SRV.
async fn resolve_instance(
    resolver: &TokioResolver,
    name: Name,
    known: &mut Vec<Record>,
) -> Result<Option<ServiceInstance>, LookupError> {
    let Some(srvs) = records_at(resolver, &name, RecordType::SRV, known).await? else {
        tracing::debug!(instance = %name, "browse: skipping an instance without SRV records");
        return Ok(None);
    };
    let mut targets: Vec<SrvTarget> = srvs
        .iter()
        .filter_map(|data| match data {
            RData::SRV(srv) => Some(SrvTarget {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: srv.target.to_ascii(),
                addrs: Vec::new(),
            }),
            _ => None,
        })
        .collect();
    if targets.len() == 1 && targets[0].target == "." {
        tracing::debug!(instance = %name, "browse: skipping a decidedly unavailable instance");
        return Ok(None);
    }
    let txt = records_at(resolver, &name, RecordType::TXT, known)
        .await?
        .unwrap_or_default();
    // Several TXT records at one name are not DNS-SD (§6.8 asks for one); read them in turn.
    let txt = TxtRecord::from_strings(txt.iter().flat_map(|data| {
        match data {
            RData::TXT(txt) => txt
                .txt_data
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<&[u8]>>(),
            _ => Vec::new(),
        }
    }));
    fill_addresses(resolver, &mut targets, known).await;
    let label = name
        .iter()
        .next()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default();
    Ok(Some(ServiceInstance {
        name: name.to_ascii(),
        label,
        targets,
        txt,
    }))
}

/// [`SrvResolver::browse`] on the default resolver ([`SrvResolver::from_env`]).
///
/// # Errors
/// As [`SrvResolver::browse`].
pub async fn browse(service_type: &str, domain: &str) -> Result<Vec<ServiceInstance>, LookupError> {
    SrvResolver::from_env()?.browse(service_type, domain).await
}

/// [`SrvResolver::browse_blocking`] on the default resolver.
///
/// # Errors
/// As [`SrvResolver::browse`].
pub fn browse_blocking(
    service_type: &str,
    domain: &str,
) -> Result<Vec<ServiceInstance>, LookupError> {
    SrvResolver::from_env()?.browse_blocking(service_type, domain)
}

/// [`SrvResolver::service_types`] on the default resolver.
///
/// # Errors
/// As [`SrvResolver::service_types`].
pub async fn service_types(domain: &str) -> Result<Vec<String>, LookupError> {
    SrvResolver::from_env()?.service_types(domain).await
}

/// [`SrvResolver::service_types_blocking`] on the default resolver.
///
/// # Errors
/// As [`SrvResolver::service_types`].
pub fn service_types_blocking(domain: &str) -> Result<Vec<String>, LookupError> {
    SrvResolver::from_env()?.service_types_blocking(domain)
}
