//! The client library: RFC 2782 service resolution for programs, in the spirit of Go's
//! `net.LookupSRV`, connections by service name for `std::net` and tokio, and DNS-SD browsing
//! (RFC 6763: [`SrvResolver::browse`], [`SrvResolver::service_types`]).
//!
//! ```no_run
//! use std::net::TcpStream;
//! use srvd::client::SrvName;
//!
//! // Tries the instances in RFC 2782 order: priority first, weighted-random within a priority.
//! let stream = TcpStream::connect(SrvName::new("_http._tcp.backend.service.local"))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Lookups run on hickory-resolver, which caches answers for their TTL; there is no second cache
//! here, and the order is drawn afresh on every call (resolvers such as unbound rotate RRsets, so
//! the server's order cannot be relied on). The ordering is `dnssd::srv_order`, shared with the
//! server.
//!
//! hickory-resolver is async only. Every lookup, async or blocking, runs on one shared background
//! thread that owns its own tokio runtime (started on first use): the async API awaits the task
//! from any executor, the blocking API waits on a channel. So the blocking API works outside
//! tokio and never panics inside it (no runtime is created or dropped on the caller's thread),
//! and both share one resolver and one cache.
//!
//! Invariant: this module depends on neither the server nor etcd (`--features client` alone
//! builds without protoc).

mod browse;
mod connect;
mod error;
mod txt;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::runtime::Handle;

pub use self::browse::{
    ServiceInstance, browse, browse_blocking, service_types, service_types_blocking,
};
pub use self::connect::{SrvName, connect};
pub use self::error::LookupError;
pub use self::txt::TxtRecord;
use crate::dnssd::srv_order::order_by_priority_weight;

/// Environment variable naming one DNS server (`127.0.0.1:1053`) for [`SrvResolver::from_env`],
/// which the free functions and [`SrvName::new`] use; without it, `/etc/resolv.conf`.
pub const RESOLVER_ENV: &str = "SRVD_RESOLVER";

/// One SRV record with its target's addresses, in the order a client should try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// Lower is tried first.
    pub priority: u16,
    /// Share of first picks within the priority.
    pub weight: u16,
    /// The port to connect to.
    pub port: u16,
    /// The target host, absolute (`inst0._http._tcp.web.service.local.`).
    pub target: String,
    /// The target's addresses: from the answer's additional section, else looked up.
    pub addrs: Vec<IpAddr>,
}

impl SrvTarget {
    /// The target's socket addresses (each address with the SRV port).
    pub fn socket_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addrs.iter().map(|ip| SocketAddr::new(*ip, self.port))
    }
}

/// The result of [`SrvResolver::lookup_srv`]: Go's `(cname, []*SRV)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvLookup {
    /// The canonical name the SRV records are at (after any CNAME).
    pub cname: String,
    /// The records in RFC 2782 order, re-drawn on every lookup.
    pub targets: Vec<SrvTarget>,
}

impl SrvLookup {
    /// Every socket address in the order to try them.
    pub fn socket_addrs(&self) -> Vec<SocketAddr> {
        self.targets
            .iter()
            .flat_map(SrvTarget::socket_addrs)
            .collect()
    }
}

/// The shared background runtime: one thread, alive for the rest of the process.
fn background() -> Result<&'static Handle, LookupError> {
    static HANDLE: OnceLock<Result<Handle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("srvd-resolver".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => {
                            let _ = tx.send(Ok(runtime.handle().clone()));
                            // The runtime lives (and is dropped) on this thread only.
                            runtime.block_on(std::future::pending::<()>());
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            rx.recv().map_err(|e| e.to_string())?
        })
        .as_ref()
        .map_err(|e| LookupError::Config(format!("cannot start the resolver thread: {e}")))
}

/// Runs `future` on the background runtime and waits for it on this thread (any thread).
fn block_on_background<T: Send + 'static>(
    future: impl Future<Output = Result<T, LookupError>> + Send + 'static,
) -> Result<T, LookupError> {
    let (tx, rx) = mpsc::channel();
    background()?.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| LookupError::Config("the resolver thread stopped".into()))?
}

/// Runs `future` on the background runtime and awaits it from any executor.
async fn on_background<T: Send + 'static>(
    future: impl Future<Output = Result<T, LookupError>> + Send + 'static,
) -> Result<T, LookupError> {
    background()?
        .spawn(future)
        .await
        .map_err(|e| LookupError::Config(format!("resolver task failed: {e}")))?
}

/// A resolver handle: `/etc/resolv.conf`, or one server such as srvd on `127.0.0.1:1053`
/// (needed where `.local` belongs to mDNS, and in tests). Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct SrvResolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for SrvResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrvResolver").finish_non_exhaustive()
    }
}

/// Options for [`SrvResolver::builder`].
#[derive(Debug, Clone)]
pub struct SrvResolverBuilder {
    server: Option<SocketAddr>,
    timeout: Option<Duration>,
    attempts: Option<usize>,
}

impl SrvResolverBuilder {
    /// Send every question to this server (UDP, falling back to TCP on truncation).
    pub fn server(mut self, addr: SocketAddr) -> Self {
        self.server = Some(addr);
        self
    }

    /// Time to wait for one answer (hickory's default: 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Attempts per question (hickory's default: 2).
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = Some(attempts);
        self
    }

    /// Builds the resolver (on the background runtime, where it will run).
    ///
    /// # Errors
    /// [`LookupError::Config`] when `/etc/resolv.conf` cannot be read.
    pub fn build(self) -> Result<SrvResolver, LookupError> {
        block_on_background(async move {
            let mut builder = match self.server {
                Some(addr) => {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut ns.connections {
                        connection.port = addr.port();
                    }
                    Resolver::builder_with_config(
                        ResolverConfig::from_name_servers(vec![ns]),
                        TokioRuntimeProvider::default(),
                    )
                }
                None => TokioResolver::builder_tokio()
                    .map_err(|e| LookupError::Config(format!("/etc/resolv.conf: {e}")))?,
            };
            if let Some(timeout) = self.timeout {
                builder.options_mut().timeout = timeout;
            }
            if let Some(attempts) = self.attempts {
                builder.options_mut().attempts = attempts;
            }
            let inner = builder
                .build()
                .map_err(|e| LookupError::Config(e.to_string()))?;
            Ok(SrvResolver { inner })
        })
    }
}

impl SrvResolver {
    /// Options: server, timeout, attempts.
    pub fn builder() -> SrvResolverBuilder {
        SrvResolverBuilder {
            server: None,
            timeout: None,
            attempts: None,
        }
    }

    /// A resolver using `/etc/resolv.conf`.
    ///
    /// # Errors
    /// [`LookupError::Config`] when it cannot be read.
    pub fn system() -> Result<Self, LookupError> {
        Self::builder().build()
    }

    /// A resolver asking only `addr` (e.g. srvd on `127.0.0.1:1053`).
    ///
    /// # Errors
    /// [`LookupError::Config`] if the background runtime cannot start.
    pub fn with_server(addr: SocketAddr) -> Result<Self, LookupError> {
        Self::builder().server(addr).build()
    }

    /// The process-wide default: the server in `SRVD_RESOLVER` if set, else `/etc/resolv.conf`.
    /// Built once and shared (one cache).
    ///
    /// # Errors
    /// An unparsable `SRVD_RESOLVER` or an unreadable `/etc/resolv.conf`.
    pub fn from_env() -> Result<Self, LookupError> {
        static DEFAULT: OnceLock<Result<SrvResolver, String>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let built = match std::env::var(RESOLVER_ENV) {
                    Ok(addr) => addr
                        .parse::<SocketAddr>()
                        .map_err(|e| LookupError::Config(format!("{RESOLVER_ENV}={addr:?}: {e}")))
                        .and_then(Self::with_server),
                    Err(_) => Self::system(),
                };
                built.map_err(|e| e.to_string())
            })
            .clone()
            .map_err(LookupError::Config)
    }

    /// Go's `net.LookupSRV`: queries `_service._proto.name` (or `name` itself when both are
    /// empty) and returns the records in the order to try them, each with its addresses.
    ///
    /// # Errors
    /// See [`LookupError`]: NXDOMAIN, NODATA, a lone `.` target, an unreachable resolver.
    pub async fn lookup_srv(
        &self,
        service: &str,
        proto: &str,
        name: &str,
    ) -> Result<SrvLookup, LookupError> {
        let query = service_name(service, proto, name);
        let resolver = self.inner.clone();
        let mut lookup = on_background(resolve(resolver, query)).await?;
        reorder(&mut lookup);
        Ok(lookup)
    }

    /// [`lookup_srv`](Self::lookup_srv) for synchronous code; safe inside a tokio runtime too
    /// (it blocks the calling thread, as any blocking call does).
    ///
    /// # Errors
    /// As [`lookup_srv`](Self::lookup_srv).
    pub fn lookup_srv_blocking(
        &self,
        service: &str,
        proto: &str,
        name: &str,
    ) -> Result<SrvLookup, LookupError> {
        let query = service_name(service, proto, name);
        let resolver = self.inner.clone();
        let mut lookup = block_on_background(resolve(resolver, query))?;
        reorder(&mut lookup);
        Ok(lookup)
    }
}

/// `_service._proto.name`, or `name` when service and proto are both empty (Go's rule).
fn service_name(service: &str, proto: &str, name: &str) -> String {
    if service.is_empty() && proto.is_empty() {
        name.to_string()
    } else {
        format!("_{service}._{proto}.{name}")
    }
}

/// A fresh RFC 2782 order for every call (the cached answer is the same set every time).
fn reorder(lookup: &mut SrvLookup) {
    reorder_targets(&mut lookup.targets);
}

/// [`reorder`] for any list of SRV targets (an instance's, when browsing).
fn reorder_targets(targets: &mut [SrvTarget]) {
    use rand::SeedableRng;
    thread_local! {
        static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_os_rng());
    }
    RNG.with_borrow_mut(|rng| {
        order_by_priority_weight(targets, rng, |t| (t.priority, t.weight));
    });
}

fn absolute(service: &str) -> Result<Name, LookupError> {
    let mut name = Name::from_utf8(service).map_err(|e| LookupError::InvalidName {
        service: service.to_string(),
        reason: e.to_string(),
    })?;
    // Absolute: no search-list expansion for a service name.
    name.set_fqdn(true);
    Ok(name)
}

fn classify(service: &str, error: NetError) -> LookupError {
    let service = service.to_string();
    match error {
        NetError::Dns(DnsError::NoRecordsFound(no))
            if no.response_code == ResponseCode::NXDomain =>
        {
            LookupError::NoSuchName { service }
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => LookupError::NoRecords { service },
        NetError::Dns(DnsError::ResponseCode(rcode)) => LookupError::ServerFailure {
            service,
            rcode: rcode.to_string(),
        },
        other => LookupError::Unreachable {
            service,
            reason: other.to_string(),
        },
    }
}

/// The lookup itself, run on the background runtime.
async fn resolve(resolver: TokioResolver, service: String) -> Result<SrvLookup, LookupError> {
    let name = absolute(&service)?;
    let lookup = resolver
        .srv_lookup(name.clone())
        .await
        .map_err(|e| classify(&service, e))?;
    let mut cname = name.clone();
    let mut targets = Vec::new();
    for record in lookup.answers() {
        if let RData::SRV(srv) = &record.data {
            cname = record.name.clone();
            targets.push(SrvTarget {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: srv.target.to_ascii(),
                addrs: Vec::new(),
            });
        }
    }
    if targets.is_empty() {
        return Err(LookupError::NoRecords { service });
    }
    if targets.len() == 1 && targets[0].target == "." {
        return Err(LookupError::ServiceUnavailable { service });
    }
    fill_addresses(&resolver, &mut targets, lookup.additionals()).await;
    Ok(SrvLookup {
        cname: cname.to_ascii(),
        targets,
    })
}

/// Gives each target its addresses: from `additionals` (the records the server sent along), else
/// looked up (a failed look-up leaves the target without addresses, as Go's resolver does).
async fn fill_addresses(
    resolver: &TokioResolver,
    targets: &mut [SrvTarget],
    additionals: &[Record],
) {
    for target in targets {
        let Ok(target_name) = Name::from_ascii(&target.target) else {
            continue;
        };
        target.addrs = additionals
            .iter()
            .filter(|r| r.name == target_name)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        if target.addrs.is_empty()
            && let Ok(ips) = resolver.lookup_ip(target_name).await
        {
            target.addrs = ips.iter().collect();
        }
    }
}

/// [`SrvResolver::lookup_srv`] on the default resolver ([`SrvResolver::from_env`]).
///
/// # Errors
/// As [`SrvResolver::lookup_srv`].
pub async fn lookup_srv(service: &str, proto: &str, name: &str) -> Result<SrvLookup, LookupError> {
    SrvResolver::from_env()?
        .lookup_srv(service, proto, name)
        .await
}

/// [`SrvResolver::lookup_srv_blocking`] on the default resolver.
///
/// # Errors
/// As [`SrvResolver::lookup_srv`].
pub fn lookup_srv_blocking(
    service: &str,
    proto: &str,
    name: &str,
) -> Result<SrvLookup, LookupError> {
    SrvResolver::from_env()?.lookup_srv_blocking(service, proto, name)
}
