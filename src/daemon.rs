//! Wires a [`Config`] to running tasks: load zones, build the index, bind, serve; owns shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::skydns::key;
use crate::config::{Config, DEFAULT_ZONES_DIR, EncryptedListen, EtcdConfig, ZoneSource};
use crate::index::leases::LeaseTable;
use crate::index::{BaseIndex, EtcdData, EtcdZone, Index, IndexHandle, RegistryZone, Zone};
use crate::ops::{self, Ops, metrics};
use crate::server::{self, HandlerSlot, Server, Sockets, handler::Handler};
use crate::sync::{self, SyncSetup, SyncStatus, etcd::Etcd};
use crate::zonefile::{self, ZoneFile, ZoneFileError};

/// Why `srvd serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A zone file (or the zones directory) failed to load.
    #[error(transparent)]
    Zone(#[from] ZoneFileError),
    /// The etcd client could not be set up.
    #[error("etcd: {0}")]
    // Not `#[from]`: the text already holds the whole chain, and as a `source` it would be
    // printed twice by anyhow's `{:#}`.
    Etcd(crate::sync::etcd::SyncError),
    /// etcd refused srvd in a way retrying cannot cure (TLS, password).
    #[error("etcd at {endpoints}: {what}: {chain}")]
    EtcdRefused {
        /// The endpoints tried.
        endpoints: String,
        /// What failed, for an operator.
        what: &'static str,
        /// The whole error chain.
        chain: String,
    },
    /// Two watched etcd prefixes overlap: a key would be mirrored twice, in two layouts.
    #[error("{0}")]
    OverlappingPrefixes(String),
    /// Nothing to serve.
    #[error("no zones to serve: give --zones-dir with zone files, or --etcd with --zone")]
    NoZones,
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A DNS over TLS or HTTPS certificate or key file is unreadable or invalid (names the
    /// file).
    #[error("TLS certificate or key {0}")]
    Tls(server::tls::TlsFileError),
}

// Not `#[from]`: that would also make the file error the source, and `main` prints the chain,
// so its text would appear twice.
impl From<server::tls::TlsFileError> for StartError {
    fn from(error: server::tls::TlsFileError) -> Self {
        Self::Tls(error)
    }
}

impl From<crate::sync::etcd::SyncError> for StartError {
    fn from(error: crate::sync::etcd::SyncError) -> Self {
        Self::Etcd(error)
    }
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The bound addresses (UDP and TCP share each one), in `Config::listen` order.
    pub addrs: Vec<SocketAddr>,
    /// The bound HTTP addresses of `/health`, `/ready` and `/metrics` (in that order, each
    /// when configured; endpoints sharing an address appear once).
    pub http_addrs: Vec<SocketAddr>,
    /// The bound DNS over TLS and HTTPS addresses, in `Config::encrypted` order.
    pub encrypted_addrs: Vec<SocketAddr>,
    /// The DNS over TLS and HTTPS listeners and the handlers they answer with.
    encrypted: Vec<EncryptedListening>,
    ops: Arc<Ops>,
    shutdown: CancellationToken,
    server: Server,
    /// Per listen address, its sockets and the loops serving them now.
    listening: Vec<Listening>,
    /// Per HTTP address, its listener and the task serving it now.
    http: Vec<HttpListening>,
    dns_metrics: Arc<metrics::DnsMetrics>,
    sync_task: Option<JoinHandle<()>>,
    sync_status: Option<tokio::sync::watch::Receiver<SyncStatus>>,
    leases: Option<Arc<LeaseTable>>,
    index: Arc<IndexHandle>,
    /// The zones every snapshot is built on (a reload replaces them).
    base: Arc<BaseIndex>,
    /// The configuration being served.
    config: Config,
    /// Stops the sync task alone (a reload that changes the etcd backend).
    sync_shutdown: CancellationToken,
    sync_metrics: Arc<metrics::SyncMetrics>,
}

/// One listen address: the sockets (kept while the address stays configured) and its loops.
#[derive(Debug)]
struct Listening {
    /// As configured (port 0 stays 0: a reload keeps the port it got).
    configured: SocketAddr,
    /// The bound address. The loops own the sockets (so that a shutdown closes them at once
    /// and a reload keeps them while the address stays).
    addr: SocketAddr,
    /// What its handler was built from: a reload gives the loops a new one only when this
    /// changes.
    settings: HandlerSettings,
    /// The handler its loops answer with.
    handler: Arc<HandlerSlot>,
    /// Stops the loops serving the sockets now.
    stop: CancellationToken,
}

/// What one address's handler depends on in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HandlerSettings {
    zones: Option<Vec<hickory_proto::rr::Name>>,
    metrics: bool,
    log_queries: Option<crate::config::QueryLog>,
    answer_cache_bytes: usize,
}

impl HandlerSettings {
    fn of(config: &Config, addr: SocketAddr) -> Self {
        Self {
            zones: config
                .zones_by_listen
                .iter()
                .find(|(a, _)| *a == addr)
                .map(|(_, zones)| zones.clone()),
            metrics: config.metrics.is_some(),
            log_queries: config.log_queries.clone(),
            answer_cache_bytes: config.answer_cache_bytes,
        }
    }
}

/// One DNS over TLS or HTTPS listener: its accept loop owns the socket.
#[derive(Debug)]
struct EncryptedListening {
    label: String,
    settings: HandlerSettings,
    handler: Arc<HandlerSlot>,
}

impl HandlerSettings {
    fn of_encrypted(config: &Config, listen: &EncryptedListen) -> Self {
        Self {
            zones: listen.zones.clone(),
            ..Self::of(config, listen.addr)
        }
    }
}

/// Reads every certificate and binds every DNS over TLS and HTTPS address: a bad file or a
/// taken port stops the start before anything serves.
fn bind_encrypted(
    config: &Config,
) -> Result<Vec<(tokio::net::TcpListener, Arc<rustls::ServerConfig>)>, StartError> {
    let mut out = Vec::new();
    for listen in &config.encrypted {
        let tls = server::tls::server_config(listen.transport, &listen.cert, &listen.key)?;
        let listener = server::bind_tcp(listen.addr).map_err(|source| StartError::Bind {
            addr: listen.addr,
            source,
        })?;
        out.push((listener, tls));
    }
    Ok(out)
}

/// One HTTP address: its listener (kept while the address stays) and the task serving it.
#[derive(Debug)]
struct HttpListening {
    configured: SocketAddr,
    /// Kept open by the task serving it (so that a shutdown closes it at once).
    listener: std::sync::Weak<tokio::net::TcpListener>,
    bound: SocketAddr,
    paths: ops::http::Paths,
    stop: CancellationToken,
}

/// The `server` label of a listen address, as CoreDNS writes it: `dns://IP:PORT`, or
/// `dns://:PORT` for every interface (a block without `bind`, configured as `[::]`, even where
/// the host has no IPv6 and `0.0.0.0` was bound).
fn server_label(configured: SocketAddr, bound: SocketAddr) -> String {
    if configured.ip() == std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
        format!("dns://:{}", bound.port())
    } else {
        format!("dns://{bound}")
    }
}

/// Zones loaded and indexed from a configuration, not yet served.
struct Prepared {
    index: Index,
    zone_paths: Vec<String>,
}

fn prepare(config: &Config, metrics: &metrics::DnsMetrics) -> Result<Prepared, StartError> {
    let mut files = load_zones(&config.zones, config.etcd.is_some())?;
    for spec in &config.zone_files {
        files.push(zonefile::load_file_for(&spec.path, &spec.origin)?);
    }
    let (mut index, zone_paths) = build_index(files, config.etcd.as_ref())?;
    if index.zones().is_empty() {
        return Err(StartError::NoZones);
    }
    index.set_metrics_slots(|origin| metrics.zone_slot(&origin.to_string()));
    Ok(Prepared { index, zone_paths })
}

/// A one-line summary of the zones and where each is answered from.
fn zones_summary(index: &Index) -> String {
    index
        .zones()
        .iter()
        .map(|z| {
            let source = match (z.file(), z.etcd()) {
                (Some(_), None) => format!("{} ({} records)", z.origin(), z.file_record_count()),
                (Some(_), Some(_)) => {
                    format!("{} ({} records + etcd)", z.origin(), z.file_record_count())
                }
                _ => format!("{} (etcd)", z.origin()),
            };
            if z.registry().is_some() {
                format!("{source} + registry")
            } else {
                source
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The etcd zones of `index`, as `/ready` names them.
fn etcd_zone_names(index: &Index) -> Vec<String> {
    index
        .zones()
        .iter()
        .filter(|z| z.etcd().is_some())
        .map(|z| z.origin().to_string())
        .collect()
}

/// Binds the DNS addresses of `config` not in `keep` (matched by configured address).
fn bind_dns(config: &Config, keep: &[Listening]) -> Result<Vec<(SocketAddr, Sockets)>, StartError> {
    let mut bound = Vec::new();
    for addr in &config.listen {
        if keep.iter().any(|l| l.configured == *addr) {
            continue;
        }
        let sockets = server::bind(*addr).map_err(|source| StartError::Bind {
            addr: *addr,
            source,
        })?;
        bound.push((*addr, sockets));
    }
    Ok(bound)
}

/// Binds the HTTP addresses of `config` not in `keep`; returns every group with its listener
/// and bound address when it was bound now.
#[allow(clippy::type_complexity)]
fn bind_http(
    config: &Config,
    keep: &[HttpListening],
) -> Result<
    Vec<(
        SocketAddr,
        ops::http::Paths,
        Option<(Arc<tokio::net::TcpListener>, SocketAddr)>,
    )>,
    StartError,
> {
    let mut out = Vec::new();
    for (addr, paths) in
        ops::http::group(config.health.map(|h| h.addr), config.ready, config.metrics)
    {
        let kept = addr.port() != 0 && keep.iter().any(|h| h.configured == addr);
        let listener = if kept {
            None
        } else {
            let bind = |source| StartError::Bind { addr, source };
            let listener = server::bind_tcp(addr).map_err(bind)?;
            let bound = listener.local_addr().map_err(bind)?;
            Some((Arc::new(listener), bound))
        };
        out.push((addr, paths, listener));
    }
    Ok(out)
}

impl Running {
    /// Switches to `new` without stopping. Zone files are read again. The etcd backend is kept
    /// (no re-read) when its settings did not change and restarted otherwise (the running
    /// snapshot serves until its first read). A listen or HTTP address that stays keeps its
    /// sockets; new ones are bound before anything changes, and removed ones are closed after
    /// their answers in flight. An address whose zones, metrics or log setting changed keeps its
    /// loops, which answer with the new handler from their next query on.
    ///
    /// # Errors
    /// Why `new` was not applied (the running configuration keeps serving, unchanged).
    pub async fn reload(&mut self, new: &Config) -> Result<(), String> {
        if self.config.tcp != new.tcp || self.config.shutdown_grace != new.shutdown_grace {
            return Err("TCP limits or the shutdown grace changed: restart srvd to apply".into());
        }
        if self.config.encrypted != new.encrypted {
            return Err(
                "DNS over TLS or HTTPS listeners or their certificates changed: restart srvd to apply"
                    .into(),
            );
        }
        // Everything that can fail comes first: on error nothing has changed.
        let prepared = prepare(new, &self.dns_metrics).map_err(|e| e.to_string())?;
        let etcd_changed = self.config.etcd != new.etcd;
        let client = match (&new.etcd, etcd_changed) {
            (Some(etcd), true) => Some(connect_sync(etcd).await.map_err(|e| e.to_string())?),
            _ => None,
        };
        let new_dns = bind_dns(new, &self.listening).map_err(|e| e.to_string())?;
        let new_http = bind_http(new, &self.http).map_err(|e| e.to_string())?;

        let etcd_zones = etcd_zone_names(&prepared.index);
        let summary = zones_summary(&prepared.index);
        if !etcd_changed {
            self.base.replace(&self.index, prepared.index, true);
        } else {
            // Stop the old backend before the new one publishes: one writer at a time.
            self.sync_shutdown.cancel();
            if let Some(task) = self.sync_task.take() {
                let _ = task.await;
            }
            self.sync_shutdown = self.shutdown.child_token();
            match (&new.etcd, client) {
                (Some(etcd), Some(client)) => {
                    self.base.set(prepared.index);
                    let (_, task, status, leases) = spawn_sync(
                        etcd,
                        client,
                        self.base.clone(),
                        prepared.zone_paths,
                        self.sync_metrics.clone(),
                        self.sync_shutdown.clone(),
                        Some(self.index.clone()),
                    );
                    self.sync_task = Some(task);
                    self.sync_status = Some(status);
                    self.leases = Some(leases);
                }
                _ => {
                    self.base.replace(&self.index, prepared.index, false);
                    self.sync_status = None;
                    self.leases = None;
                }
            }
        }
        self.ops.set_backend(ops::Backend {
            etcd_zones,
            sync: self.sync_status.clone(),
        });

        let mut listening = Vec::with_capacity(new.listen.len());
        let mut new_dns = new_dns.into_iter();
        for addr in &new.listen {
            let settings = HandlerSettings::of(new, *addr);
            let kept = self
                .listening
                .iter()
                .position(|l| l.configured == *addr)
                .map(|i| self.listening.swap_remove(i));
            let entry = match kept {
                Some(old) if old.settings == settings => old,
                Some(old) => {
                    // The same loops, on the same sockets, from their next query on.
                    old.handler.set(self.handler(*addr, &settings, old.addr));
                    Listening { settings, ..old }
                }
                None => {
                    let Some((configured, sockets)) = new_dns.next() else {
                        continue;
                    };
                    self.serve_dns(configured, &sockets, settings)
                }
            };
            listening.push(entry);
        }
        for removed in std::mem::replace(&mut self.listening, listening) {
            info!(addr = %removed.addr, "reload: no longer listening");
            removed.stop.cancel();
        }
        self.addrs = self.listening.iter().map(|l| l.addr).collect();
        for (entry, listen) in self.encrypted.iter_mut().zip(&new.encrypted) {
            let settings = HandlerSettings::of_encrypted(new, listen);
            if entry.settings != settings {
                let handler =
                    Self::handler_for(&self.index, &self.dns_metrics, &entry.label, &settings);
                entry.handler.set(handler);
                entry.settings = settings;
            }
        }

        let mut http = Vec::new();
        for (addr, paths, listener) in new_http {
            if let Some((listener, bound)) = listener {
                http.push(self.serve_http(addr, listener, bound, paths));
                continue;
            }
            let Some(old) = self
                .http
                .iter()
                .position(|h| h.configured == addr)
                .map(|i| self.http.swap_remove(i))
            else {
                continue;
            };
            if old.paths == paths {
                http.push(old);
                continue;
            }
            // The serving task holds the listener until shutdown.
            let Some(listener) = old.listener.upgrade() else {
                continue;
            };
            old.stop.cancel();
            http.push(self.serve_http(addr, listener, old.bound, paths));
        }
        for removed in std::mem::replace(&mut self.http, http) {
            removed.stop.cancel();
        }
        self.http_addrs = self.http.iter().map(|h| h.bound).collect();
        self.set_plugins_enabled(new);
        info!(zones = %summary, "reload: serving");
        self.config = new.clone();
        Ok(())
    }

    /// The handler for one listen address.
    fn handler(
        &self,
        configured: SocketAddr,
        settings: &HandlerSettings,
        bound: SocketAddr,
    ) -> Handler {
        Self::handler_for(
            &self.index,
            &self.dns_metrics,
            &server_label(configured, bound),
            settings,
        )
    }

    /// The handler for the address whose metrics `server` label is `label`.
    fn handler_for(
        index: &Arc<IndexHandle>,
        metrics: &Arc<metrics::DnsMetrics>,
        label: &str,
        settings: &HandlerSettings,
    ) -> Handler {
        let slot = metrics.server_slot(label);
        Handler::new(index.clone())
            .with_prepared_bytes(settings.answer_cache_bytes)
            .with_zones(settings.zones.as_deref())
            .with_ops(
                settings.metrics.then(|| metrics.clone()),
                slot,
                settings.log_queries.clone(),
            )
    }

    /// Starts the loops of a newly bound listen address.
    fn serve_dns(
        &self,
        configured: SocketAddr,
        sockets: &Sockets,
        settings: HandlerSettings,
    ) -> Listening {
        let handler = Arc::new(HandlerSlot::new(self.handler(
            configured,
            &settings,
            sockets.addr,
        )));
        let stop = self.server.serve(sockets, &handler);
        Listening {
            configured,
            addr: sockets.addr,
            settings,
            handler,
            stop,
        }
    }

    fn serve_http(
        &self,
        configured: SocketAddr,
        listener: Arc<tokio::net::TcpListener>,
        bound: SocketAddr,
        paths: ops::http::Paths,
    ) -> HttpListening {
        let stop = self.shutdown.child_token();
        // The test harness reads this line: keep its shape stable.
        info!(addr = %bound, health = paths.health, ready = paths.ready, metrics = paths.metrics, "serving http");
        tokio::spawn(ops::http::serve(
            listener.clone(),
            paths,
            self.ops.clone(),
            stop.clone(),
        ));
        HttpListening {
            configured,
            listener: Arc::downgrade(&listener),
            bound,
            paths,
            stop,
        }
    }

    /// `coredns_plugin_enabled`: per listen address, the plugins of each zone it serves.
    fn set_plugins_enabled(&self, config: &Config) {
        let index = self.index.load_full();
        let mut enabled = Vec::new();
        let plain = self.listening.iter().map(|l| {
            (
                server_label(l.configured, l.addr),
                HandlerSettings::of(config, l.configured),
            )
        });
        let encrypted = self
            .encrypted
            .iter()
            .map(|e| (e.label.clone(), e.settings.clone()));
        for (label, settings) in plain.chain(encrypted) {
            let server = self.dns_metrics.server_slot(&label);
            for zone in index.zones() {
                if settings
                    .zones
                    .as_ref()
                    .is_some_and(|zones| !zones.contains(zone.origin()))
                {
                    continue;
                }
                let mut plugins = Vec::new();
                if zone.file().is_some() {
                    plugins.push("file");
                }
                if zone.etcd().is_some() {
                    plugins.push("etcd");
                }
                enabled.push((server, zone.metrics_slot(), plugins));
            }
        }
        self.dns_metrics.set_enabled(enabled);
    }

    /// The configuration being served (the last one a reload applied).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts a graceful shutdown: stop accepting, finish in-flight TCP answers.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// `/health` fails from now on while DNS keeps answering (lameduck, before `shutdown`).
    pub fn enter_lameduck(&self) {
        self.ops.enter_lameduck();
    }

    /// Waits until every listener and connection has finished.
    pub async fn wait(self) {
        self.server.wait().await;
        // A panicked task has already been reported by tokio; nothing more to do.
        if let Some(sync) = self.sync_task {
            let _ = sync.await;
        }
    }

    /// The etcd mirror's progress (`None` without etcd).
    pub fn sync_status(&self) -> Option<SyncStatus> {
        self.sync_status.as_ref().map(|s| s.borrow().clone())
    }

    /// How many leases have a known deadline now (`None` without etcd): the leases that keys in
    /// the mirror use, once each has been looked up.
    pub fn known_leases(&self) -> Option<u64> {
        self.leases.as_ref().map(|leases| leases.known())
    }

    /// The snapshot queries are answered from now (for tests and diagnostics: e.g. the registry
    /// mirror, which no answer reads yet).
    pub fn snapshot(&self) -> Arc<Index> {
        self.index.load_full()
    }

    /// The handle every snapshot is published through (a reload publishes through the same
    /// one): what answers outside srvd's own listeners read, one `load` per question, so they
    /// follow etcd and reloads as srvd's listeners do (`hickory::SrvdZone`).
    pub fn index_handle(&self) -> Arc<IndexHandle> {
        self.index.clone()
    }

    /// Waits (up to `limit`) until the mirror reflects at least `revision`; returns whether it does.
    pub async fn wait_for_revision(&self, revision: i64, limit: std::time::Duration) -> bool {
        let Some(mut status) = self.sync_status.clone() else {
            return false;
        };
        tokio::time::timeout(
            limit,
            status.wait_for(|s| s.revision.is_some_and(|r| r >= revision)),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }
}

/// Loads the zones named by `source`.
///
/// # Errors
/// The first zone file that fails, naming file and line.
pub fn load_zones(source: &ZoneSource, with_etcd: bool) -> Result<Vec<ZoneFile>, ZoneFileError> {
    match source {
        ZoneSource::None => Ok(Vec::new()),
        ZoneSource::Dir(dir) => {
            if !dir.is_dir() {
                return Err(ZoneFileError {
                    file: dir.display().to_string(),
                    line: None,
                    message: "the zones directory does not exist".into(),
                });
            }
            // With etcd, a directory with no zone file yet is an empty source, not an error:
            // etcd still serves its zones (zone files are often added later).
            if with_etcd && !holds_zone_file(dir) {
                info!(dir = %dir.display(), "no zone file in the zones directory; serving etcd alone");
                return Ok(Vec::new());
            }
            zonefile::load_dir(dir)
        }
        ZoneSource::DefaultDirOrEmbedded => {
            let dir = Path::new(DEFAULT_ZONES_DIR);
            if dir.is_dir() {
                zonefile::load_dir(dir)
            } else if with_etcd {
                // With etcd, the example zone would shadow real data: serve etcd alone.
                Ok(Vec::new())
            } else {
                info!(
                    "no ./{DEFAULT_ZONES_DIR} directory; serving the embedded example zone {}",
                    zonefile::EMBEDDED_ORIGIN
                );
                Ok(vec![zonefile::embedded()?])
            }
        }
    }
}

/// Whether `dir` holds a `*.zone` file (what `zonefile::load_dir` loads); unreadable counts as
/// holding one, so that `load_dir` reports the read error.
fn holds_zone_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |entries| {
        entries.filter_map(Result::ok).any(|entry| {
            let path = entry.path();
            path.extension().is_some_and(|ext| ext == "zone") && path.is_file()
        })
    })
}

/// Builds the index from loaded zone files, plus the etcd zones (a zone with a file and etcd
/// data is one zone with both). Returns the zones' etcd key paths in slot order.
///
/// # Errors
/// Two files for one zone.
pub fn build_index(
    files: Vec<ZoneFile>,
    etcd: Option<&EtcdConfig>,
) -> Result<(Index, Vec<String>), ZoneFileError> {
    let mut zones: Vec<Zone> = Vec::with_capacity(files.len());
    for file in files {
        if zones.iter().any(|z| *z.origin() == file.origin) {
            return Err(ZoneFileError {
                file: file.source,
                line: None,
                message: format!("a second file for the zone {}", file.origin),
            });
        }
        let zone = Zone::from_file(file.origin, file.records).map_err(|message| ZoneFileError {
            file: file.source,
            line: None,
            message: message.into(),
        })?;
        zones.push(zone);
    }
    let mut paths = Vec::new();
    if let Some(etcd) = etcd {
        let root = key::root_path(&etcd.prefix);
        let registry_zone = etcd.registry_zone();
        for (slot, origin) in etcd.etcd_zones().iter().enumerate() {
            let etcd_zone = EtcdZone {
                path: key::path(origin, &root),
                slot,
            };
            paths.push(etcd_zone.path.clone());
            let i = match zones.iter().position(|z| z.origin() == origin) {
                Some(i) => {
                    zones[i].add_etcd(etcd_zone);
                    i
                }
                None => {
                    zones.push(Zone::from_etcd(origin.clone(), etcd_zone));
                    zones.len() - 1
                }
            };
            if registry_zone == Some(origin) {
                zones[i].add_registry(RegistryZone {
                    ttl: etcd.registry_ttl,
                });
            }
        }
    }
    Ok((Index::new(zones), paths))
}

/// Loads zones, binds every listen address and starts serving at once: zone files answer as
/// soon as the sockets are bound, and etcd zones answer SERVFAIL (never NXDOMAIN) until the
/// sync task publishes its first full read. Nothing here waits for etcd.
///
/// # Errors
/// See [`StartError`]; nothing is left running on error.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let dns_metrics = Arc::new(metrics::DnsMetrics::new());
    let prepared = prepare(config, &dns_metrics)?;
    let client = match &config.etcd {
        Some(etcd) => Some(connect_sync(etcd).await?),
        None => None,
    };
    let dns = bind_dns(config, &[])?;
    let http = bind_http(config, &[])?;
    let encrypted = bind_encrypted(config)?;

    let summary = zones_summary(&prepared.index);
    let etcd_zones = etcd_zone_names(&prepared.index);
    let sync_metrics = Arc::new(metrics::SyncMetrics::default());
    let shutdown = CancellationToken::new();
    let sync_shutdown = shutdown.child_token();
    let base = Arc::new(BaseIndex::new(prepared.index));
    let (index, sync_task, sync_status, leases) = match (&config.etcd, client) {
        (Some(etcd), Some(client)) => {
            let (handle, task, status, leases) = spawn_sync(
                etcd,
                client,
                base.clone(),
                prepared.zone_paths,
                sync_metrics.clone(),
                sync_shutdown.clone(),
                None,
            );
            (handle, Some(task), Some(status), Some(leases))
        }
        _ => (
            Arc::new(IndexHandle::new(base.snapshot(None))),
            None,
            None,
            None,
        ),
    };
    let backend = Arc::new(std::sync::RwLock::new(ops::Backend {
        etcd_zones,
        sync: sync_status.clone(),
    }));
    let registry = metrics::registry(metrics::Collected {
        dns: dns_metrics.clone(),
        backend: backend.clone(),
        sync: sync_metrics.clone(),
    });
    crate::server::raise_open_files_limit(config.tcp.max_connections);
    let mut running = Running {
        addrs: Vec::new(),
        http_addrs: Vec::new(),
        encrypted_addrs: Vec::new(),
        encrypted: Vec::new(),
        ops: Arc::new(Ops::new(backend, registry)),
        server: Server::new(config.tcp, shutdown.clone()),
        shutdown,
        listening: Vec::new(),
        http: Vec::new(),
        dns_metrics,
        sync_task,
        sync_status,
        leases,
        index,
        base,
        config: config.clone(),
        sync_shutdown,
        sync_metrics,
    };
    for (configured, paths, listener) in http {
        if let Some((listener, bound)) = listener {
            let entry = running.serve_http(configured, listener, bound, paths);
            running.http.push(entry);
        }
    }
    running.http_addrs = running.http.iter().map(|h| h.bound).collect();
    for (configured, sockets) in dns {
        let settings = HandlerSettings::of(config, configured);
        let entry = running.serve_dns(configured, &sockets, settings);
        running.listening.push(entry);
    }
    running.addrs = running.listening.iter().map(|l| l.addr).collect();
    for ((listener, tls), listen) in encrypted.into_iter().zip(&config.encrypted) {
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen.addr,
            source,
        })?;
        // As CoreDNS labels its servers: `tls://IP:PORT`, `https://IP:PORT`.
        let label = format!("{}://{bound}", listen.transport.scheme());
        let settings = HandlerSettings::of_encrypted(config, listen);
        let handler = Arc::new(HandlerSlot::new(Running::handler_for(
            &running.index,
            &running.dns_metrics,
            &label,
            &settings,
        )));
        running
            .server
            .serve_encrypted(Arc::new(listener), &handler, listen.transport, tls);
        running.encrypted_addrs.push(bound);
        running.encrypted.push(EncryptedListening {
            label,
            settings,
            handler,
        });
    }
    running.set_plugins_enabled(config);

    let listen_summary = running
        .addrs
        .iter()
        .map(|a| format!("udp+tcp {a}"))
        .chain(
            config
                .encrypted
                .iter()
                .zip(&running.encrypted_addrs)
                .map(|(l, a)| format!("{} {a}", l.transport.scheme())),
        )
        .collect::<Vec<_>>()
        .join(", ");
    // The test harness and operators read this line: keep its shape stable.
    info!(listen = %listen_summary, zones = %summary, "srvd serving");
    Ok(running)
}

type SyncParts = (
    Arc<IndexHandle>,
    JoinHandle<()>,
    tokio::sync::watch::Receiver<SyncStatus>,
    Arc<LeaseTable>,
);

/// Checks the backend's prefixes and sets up its etcd client (which connects lazily: an
/// unreachable etcd is the sync task's to retry, not a start error).
///
/// With TLS or a user, etcd is asked once first: a wrong CA, a refused client certificate or a
/// wrong password cannot be cured by retrying, so they stop the start with one error naming
/// the endpoint and what failed. An unreachable etcd is still an outage: logged, retried.
async fn connect_sync(etcd: &EtcdConfig) -> Result<Etcd, StartError> {
    crate::config::check_prefixes(etcd).map_err(StartError::OverlappingPrefixes)?;
    let watch_prefix = key::subtree_prefix(&key::root_path(&etcd.prefix));
    let mut client = Etcd::connect(
        &etcd.endpoints,
        &watch_prefix,
        etcd.max_response_bytes,
        &etcd.security,
    )
    .await?
    .with_watch_silence(etcd.watch_silence);
    if etcd.security != crate::config::EtcdSecurity::default() {
        match client.probe().await {
            Ok(()) => {}
            Err(crate::sync::etcd::SyncError::Etcd(error))
                if let Some(refusal) = crate::sync::access::refusal(&error) =>
            {
                return Err(StartError::EtcdRefused {
                    endpoints: etcd.endpoints.join(","),
                    what: refusal.describe(),
                    chain: crate::sync::access::chain(&error),
                });
            }
            Err(error) => {
                // A TLS refusal that tonic reports as a closed connection: ask TLS itself.
                for endpoint in &etcd.endpoints {
                    if let Some(tls) =
                        crate::sync::access::diagnose_tls(endpoint, &etcd.security).await
                    {
                        let what = crate::sync::access::refusal_of_text(&tls)
                            .unwrap_or(crate::sync::access::Refusal::Tls);
                        return Err(StartError::EtcdRefused {
                            endpoints: endpoint.clone(),
                            what: what.describe(),
                            chain: format!("{tls} (the client saw: {error})"),
                        });
                    }
                }
                warn!(
                    endpoints = %etcd.endpoints.join(","),
                    %error,
                    "etcd unreachable at start; serving without its data until it answers"
                );
            }
        }
    }
    Ok(client)
}

/// Publishes the not-yet-synced index (unless `handle` already serves one) and spawns the sync
/// task.
fn spawn_sync(
    etcd: &EtcdConfig,
    client: Etcd,
    base: Arc<BaseIndex>,
    zone_paths: Vec<String>,
    metrics: Arc<metrics::SyncMetrics>,
    shutdown: CancellationToken,
    handle: Option<Arc<IndexHandle>>,
) -> SyncParts {
    let root: Arc<str> = key::root_path(&etcd.prefix).into();
    let registry_roots: Vec<String> = etcd
        .registry_prefixes
        .iter()
        .map(|p| key::root_path(p))
        .collect();
    let (expired_tx, expired_rx) = tokio::sync::mpsc::unbounded_channel();
    let leases = Arc::new(LeaseTable::new(etcd.lease_bounds, move |id| {
        let _ = expired_tx.send(id);
    }));
    // A reload keeps serving the running snapshot until this backend's first read publishes.
    let handle = handle.unwrap_or_else(|| {
        Arc::new(IndexHandle::new(base.snapshot(Some(EtcdData {
            mirror: None,
            root: root.clone(),
            leases: leases.clone(),
        }))))
    });
    let (status_tx, status_rx) = tokio::sync::watch::channel(SyncStatus::default());
    let setup = SyncSetup {
        etcd: client,
        root,
        zone_paths,
        base,
        handle: handle.clone(),
        leases: leases.clone(),
        expired_leases: expired_rx,
        registry_roots,
        registry_zone: etcd
            .registry_zone()
            .cloned()
            .unwrap_or_else(hickory_proto::rr::Name::root),
        metrics,
    };
    let task = tokio::spawn(sync::run(setup, status_tx, shutdown));
    (handle, task, status_rx, leases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_labels_are_written_as_coredns_writes_them() {
        let label = |configured: &str, bound: &str| {
            server_label(configured.parse().unwrap(), bound.parse().unwrap())
        };
        assert_eq!(
            label("[::]:53", "[::]:53"),
            "dns://:53",
            "every interface (no `bind`)"
        );
        assert_eq!(
            label("[::]:0", "0.0.0.0:1053"),
            "dns://:1053",
            "the IPv4-only fallback"
        );
        assert_eq!(
            label("0.0.0.0:53", "0.0.0.0:53"),
            "dns://0.0.0.0:53",
            "`bind 0.0.0.0`"
        );
        assert_eq!(
            label("127.0.0.1:0", "127.0.0.1:1053"),
            "dns://127.0.0.1:1053"
        );
        assert_eq!(label("[::1]:53", "[::1]:53"), "dns://[::1]:53");
    }
}
