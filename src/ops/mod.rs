//! Operations: `/health`, `/ready` and `/metrics` over HTTP, query metrics, the query log.
//!
//! ```text
//! Config.health / ready / metrics ─► http::bind (one listener per distinct address; paths
//!     of every endpoint sharing it) ─► http::serve ─► Ops (health flag, readiness, registry)
//! server loops ─► Handler::respond ─► LoopCounters (per loop)  ◄── scrape: metrics::Collected
//!                                 └─► querylog (only with a query log: --log-queries, `log`)
//! ```
//! The query path's only cost is `metrics::LoopCounters::record` (plain per-loop counters) and,
//! when on, the log line; everything else runs when an endpoint is asked.

pub mod http;
pub mod metrics;
pub mod querylog;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::sync::SyncStatus;

/// The etcd side as the endpoints see it now; a reload that changes the backend replaces it.
#[derive(Debug, Default, Clone)]
pub struct Backend {
    /// The etcd zones (`etcd: <zone>` in `/ready`), waiting for the sync's first full read.
    pub etcd_zones: Vec<String>,
    /// The sync's progress, when srvd mirrors etcd.
    pub sync: Option<watch::Receiver<SyncStatus>>,
}

/// [`Backend`], shared by `/ready` and the metrics collector.
pub type SharedBackend = Arc<RwLock<Backend>>;

/// Reads a [`SharedBackend`] (a poisoned lock still holds a whole value: it is only replaced).
pub fn read_backend(backend: &SharedBackend) -> Backend {
    backend
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// What the HTTP endpoints report.
#[derive(Debug)]
pub struct Ops {
    /// Set on SIGTERM with a lameduck period: `/health` fails while DNS still answers.
    lameduck: AtomicBool,
    backend: SharedBackend,
    registry: Registry,
}

impl Ops {
    /// State for a server whose etcd zones (if any) are ready once the backend's sync reports a
    /// revision; `registry` is what `/metrics` encodes.
    pub fn new(backend: SharedBackend, registry: Registry) -> Self {
        Self {
            lameduck: AtomicBool::new(false),
            backend,
            registry,
        }
    }

    /// From now on `/health` answers 503 (the process is about to stop).
    pub fn enter_lameduck(&self) {
        self.lameduck.store(true, Ordering::Relaxed);
    }

    /// Whether `/health` answers 200.
    pub fn healthy(&self) -> bool {
        !self.lameduck.load(Ordering::Relaxed)
    }

    /// Switches `/ready` and the sync metrics to `backend` (a reload changed it).
    pub fn set_backend(&self, backend: Backend) {
        *self.backend.write().unwrap_or_else(PoisonError::into_inner) = backend;
    }

    /// What is not ready yet, one name each (`etcd: service.local.`); empty when ready. Zone
    /// files are loaded before anything is served, so only etcd zones can wait.
    pub fn not_ready(&self) -> Vec<String> {
        let backend = read_backend(&self.backend);
        let synced = backend
            .sync
            .as_ref()
            .is_none_or(|s| s.borrow().revision.is_some());
        if synced {
            Vec::new()
        } else {
            backend
                .etcd_zones
                .iter()
                .map(|z| format!("etcd: {z}"))
                .collect()
        }
    }

    /// The `/metrics` body.
    ///
    /// # Errors
    /// Only a formatting error from the encoder.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        metrics::encode(&self.registry)
    }
}
