//! Wires a [`Config`] to running tasks: load zones, build the index, bind, serve; owns shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Config, DEFAULT_ZONES_DIR, ZoneSource};
use crate::index::{Index, IndexHandle, Zone};
use crate::server::{self, Listeners, handler::Handler};
use crate::zonefile::{self, ZoneFile, ZoneFileError};

/// Why `srvd serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A zone file (or the zones directory) failed to load.
    #[error(transparent)]
    Zone(#[from] ZoneFileError),
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
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Starts a graceful shutdown: stop accepting, finish in-flight TCP answers.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every listener and connection has finished.
    pub async fn wait(self) {
        // A panicked listener task has already been reported by tokio; nothing more to do.
        let _ = self.task.await;
    }
}

/// Loads the zones named by `source`.
///
/// # Errors
/// The first zone file that fails, naming file and line.
pub fn load_zones(source: &ZoneSource) -> Result<Vec<ZoneFile>, ZoneFileError> {
    match source {
        ZoneSource::Dir(dir) => {
            if !dir.is_dir() {
                return Err(ZoneFileError {
                    file: dir.display().to_string(),
                    line: None,
                    message: "the zones directory does not exist".into(),
                });
            }
            zonefile::load_dir(dir)
        }
        ZoneSource::DefaultDirOrEmbedded => {
            let dir = Path::new(DEFAULT_ZONES_DIR);
            if dir.is_dir() {
                zonefile::load_dir(dir)
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

/// Builds the index from loaded zone files.
///
/// # Errors
/// A zone without an apex SOA (already caught by the loader) or two files for one zone.
pub fn build_index(files: Vec<ZoneFile>) -> Result<Index, ZoneFileError> {
    let mut zones: Vec<Zone> = Vec::with_capacity(files.len());
    for file in files {
        if zones.iter().any(|z| *z.origin() == file.origin) {
            return Err(ZoneFileError {
                file: file.source,
                line: None,
                message: format!("a second file for the zone {}", file.origin),
            });
        }
        let zone = Zone::new(file.origin, file.records).map_err(|message| ZoneFileError {
            file: file.source,
            line: None,
            message: message.into(),
        })?;
        zones.push(zone);
    }
    Ok(Index::new(zones))
}

/// Loads zones, binds every listen address and starts serving.
///
/// # Errors
/// See [`StartError`]; nothing is left running on error.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let index = build_index(load_zones(&config.zones)?)?;
    let zones_summary = index
        .zones()
        .iter()
        .map(|z| format!("{} ({} records)", z.origin(), z.tree().record_count()))
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

    let listen_summary = addrs
        .iter()
        .map(|a| format!("udp+tcp {a}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The test harness and operators read this line: keep its shape stable.
    info!(listen = %listen_summary, zones = %zones_summary, "srvd serving");

    let handler = Handler::new(Arc::new(IndexHandle::new(index)));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::run(
        listeners,
        handler,
        config.tcp,
        shutdown.clone(),
    ));
    Ok(Running {
        addrs,
        shutdown,
        task,
    })
}
