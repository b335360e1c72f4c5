//! Wires a [`Config`] to running tasks: load zones, build the index, bind, serve; owns shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::backend::skydns::key;
use crate::config::{Config, DEFAULT_ZONES_DIR, EtcdConfig, ZoneSource};
use crate::index::leases::LeaseTable;
use crate::index::{BaseIndex, EtcdData, EtcdZone, Index, IndexHandle, RegistryZone, Zone};
use crate::ops::{self, Ops, metrics};
use crate::server::{self, Listeners, handler::Handler};
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
    Etcd(#[from] crate::sync::etcd::SyncError),
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
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The bound addresses (UDP and TCP share each one).
    pub addrs: Vec<SocketAddr>,
    /// The bound HTTP addresses of `/health`, `/ready` and `/metrics` (in that order, each
    /// when configured; endpoints sharing an address appear once).
    pub http_addrs: Vec<SocketAddr>,
    ops: Arc<Ops>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
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

impl Running {
    /// Switches to `new` without stopping: zone files are read again, the etcd backend is kept
    /// (no re-read) when its settings did not change and restarted otherwise (the running
    /// snapshot serves until its first read), and the sockets stay. Settings that would need other
    /// sockets or endpoints are not switched.
    ///
    /// # Errors
    /// Why `new` was not applied (the running configuration keeps serving).
    pub async fn reload(&mut self, new: &Config) -> Result<(), String> {
        let old = &self.config;
        let fixed: Vec<&str> = [
            ("listen addresses", old.listen != new.listen),
            (
                "zones per address",
                old.zones_by_listen != new.zones_by_listen,
            ),
            ("health", old.health != new.health),
            ("ready", old.ready != new.ready),
            ("prometheus", old.metrics != new.metrics),
            ("log", old.log_queries != new.log_queries),
        ]
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(what, _)| *what)
        .collect();
        if !fixed.is_empty() {
            return Err(format!(
                "{} changed: not supported by reload yet; restart srvd to apply",
                fixed.join(", ")
            ));
        }
        let mut files = load_zones(&new.zones, new.etcd.is_some()).map_err(|e| e.to_string())?;
        for spec in &new.zone_files {
            files.push(
                zonefile::load_file_for(&spec.path, &spec.origin).map_err(|e| e.to_string())?,
            );
        }
        let (base, zone_paths) =
            build_index(files, new.etcd.as_ref()).map_err(|e| e.to_string())?;
        if base.zones().is_empty() {
            return Err(StartError::NoZones.to_string());
        }
        if old.etcd == new.etcd {
            self.base.replace(&self.index, base, true);
        } else {
            self.sync_shutdown.cancel();
            if let Some(task) = self.sync_task.take() {
                let _ = task.await;
            }
            self.sync_shutdown = self.shutdown.child_token();
            match &new.etcd {
                None => {
                    self.base.replace(&self.index, base, false);
                    self.sync_status = None;
                    self.leases = None;
                }
                Some(etcd) => {
                    self.base.set(base);
                    let (_, task, status, leases) = start_sync(
                        etcd,
                        self.base.clone(),
                        zone_paths,
                        self.sync_metrics.clone(),
                        self.sync_shutdown.clone(),
                        Some(self.index.clone()),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    self.sync_task = Some(task);
                    self.sync_status = Some(status);
                    self.leases = Some(leases);
                }
            }
        }
        self.config = new.clone();
        Ok(())
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
        // A panicked task has already been reported by tokio; nothing more to do.
        let _ = self.task.await;
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
    let mut files = load_zones(&config.zones, config.etcd.is_some())?;
    for spec in &config.zone_files {
        files.push(zonefile::load_file_for(&spec.path, &spec.origin)?);
    }
    let (base, zone_paths) = build_index(files, config.etcd.as_ref())?;
    if base.zones().is_empty() {
        return Err(StartError::NoZones);
    }
    let zones_summary = base
        .zones()
        .iter()
        .map(|z| match (z.file(), z.etcd()) {
            (Some(_), None) => format!("{} ({} records)", z.origin(), z.file_record_count()),
            (Some(_), Some(_)) => {
                format!("{} ({} records + etcd)", z.origin(), z.file_record_count())
            }
            _ => format!("{} (etcd)", z.origin()),
        })
        .zip(base.zones().iter().map(|z| z.registry().is_some()))
        .map(|(summary, registry)| {
            if registry {
                format!("{summary} + registry")
            } else {
                summary
            }
        })
        .collect::<Vec<_>>()
        .join(", ");

    let mut listeners = Listeners::default();
    let mut addrs = Vec::new();
    for addr in &config.listen {
        let (udp, tcp) = server::bind(*addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: *addr,
                source,
            })?;
        let bound = tcp.local_addr().map_err(|source| StartError::Bind {
            addr: *addr,
            source,
        })?;
        addrs.push(bound);
        listeners.udp.push(udp);
        listeners.tcp.push(tcp);
    }
    let mut http = Vec::new();
    for (addr, paths) in
        ops::http::group(config.health.map(|h| h.addr), config.ready, config.metrics)
    {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        http.push((listener, bound, paths));
    }
    let dns_metrics = config.metrics.map(|_| {
        Arc::new(metrics::DnsMetrics::new(
            &addrs,
            base.zones()
                .iter()
                .map(|z| {
                    let mut plugins = Vec::new();
                    if z.file().is_some() {
                        plugins.push("file");
                    }
                    if z.etcd().is_some() {
                        plugins.push("etcd");
                    }
                    (z.origin().to_string(), plugins)
                })
                .collect(),
        ))
    });
    let etcd_zones: Vec<String> = base
        .zones()
        .iter()
        .filter(|z| z.etcd().is_some())
        .map(|z| z.origin().to_string())
        .collect();
    let sync_metrics = Arc::new(metrics::SyncMetrics::default());

    let shutdown = CancellationToken::new();
    let sync_shutdown = shutdown.child_token();
    let base = Arc::new(BaseIndex::new(base));
    let (handle, sync_task, sync_status, leases) = match &config.etcd {
        None => (
            Arc::new(IndexHandle::new(base.snapshot(None))),
            None,
            None,
            None,
        ),
        Some(etcd) => {
            let (handle, task, status, leases) = start_sync(
                etcd,
                base.clone(),
                zone_paths,
                sync_metrics.clone(),
                sync_shutdown.clone(),
                None,
            )
            .await?;
            (handle, Some(task), Some(status), Some(leases))
        }
    };
    let registry = dns_metrics.clone().map(|dns| {
        metrics::registry(metrics::Collected {
            dns,
            sync: sync_status.clone().map(|s| (s, sync_metrics.clone())),
        })
    });
    let ops = Arc::new(Ops::new(etcd_zones, sync_status.clone(), registry));
    let http_addrs = http.iter().map(|(_, bound, _)| *bound).collect();
    for (listener, bound, paths) in http {
        // The test harness reads this line: keep its shape stable.
        info!(addr = %bound, health = paths.health, ready = paths.ready, metrics = paths.metrics, "serving http");
        tokio::spawn(ops::http::serve(
            listener,
            paths,
            ops.clone(),
            shutdown.clone(),
        ));
    }

    let listen_summary = addrs
        .iter()
        .map(|a| format!("udp+tcp {a}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The test harness and operators read this line: keep its shape stable.
    info!(listen = %listen_summary, zones = %zones_summary, "srvd serving");

    let listen_zones = config
        .listen
        .iter()
        .map(|addr| {
            config
                .zones_by_listen
                .iter()
                .find(|(a, _)| a == addr)
                .map(|(_, zones)| zones.clone())
        })
        .collect();
    let handler = Handler::new(handle.clone())
        .with_ops(dns_metrics, config.log_queries.clone())
        .with_listen_zones(listen_zones);
    let task = tokio::spawn(server::run(
        listeners,
        handler,
        config.tcp,
        shutdown.clone(),
    ));
    Ok(Running {
        addrs,
        http_addrs,
        ops,
        shutdown,
        task,
        sync_task,
        sync_status,
        leases,
        index: handle,
        base,
        config: config.clone(),
        sync_shutdown,
        sync_metrics,
    })
}

type SyncParts = (
    Arc<IndexHandle>,
    JoinHandle<()>,
    tokio::sync::watch::Receiver<SyncStatus>,
    Arc<LeaseTable>,
);

/// Publishes the not-yet-synced index and spawns the sync task.
async fn start_sync(
    etcd: &EtcdConfig,
    base: Arc<BaseIndex>,
    zone_paths: Vec<String>,
    metrics: Arc<metrics::SyncMetrics>,
    shutdown: CancellationToken,
    handle: Option<Arc<IndexHandle>>,
) -> Result<SyncParts, StartError> {
    let root: Arc<str> = key::root_path(&etcd.prefix).into();
    let watch_prefix = key::subtree_prefix(&root);
    let registry_roots: Vec<String> = etcd
        .registry_prefixes
        .iter()
        .map(|p| key::root_path(p))
        .collect();
    crate::config::check_prefixes(etcd).map_err(StartError::OverlappingPrefixes)?;
    let client = Etcd::connect(&etcd.endpoints, &watch_prefix, etcd.max_response_bytes).await?;
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
    Ok((handle, task, status_rx, leases))
}
