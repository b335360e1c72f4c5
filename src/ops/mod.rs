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

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::sync::SyncStatus;

/// What the HTTP endpoints report.
#[derive(Debug)]
pub struct Ops {
    /// Set on SIGTERM with a lameduck period: `/health` fails while DNS still answers.
    lameduck: AtomicBool,
    /// The etcd zones (`etcd: <zone>` in `/ready`), waiting for the sync's first full read.
    etcd_zones: Vec<String>,
    sync: Option<watch::Receiver<SyncStatus>>,
    registry: Option<Registry>,
}

impl Ops {
    /// State for a server whose etcd zones (if any) are ready once `sync` reports a revision;
    /// `registry` is what `/metrics` encodes.
    pub fn new(
        etcd_zones: Vec<String>,
        sync: Option<watch::Receiver<SyncStatus>>,
        registry: Option<Registry>,
    ) -> Self {
        Self {
            lameduck: AtomicBool::new(false),
            etcd_zones,
            sync,
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

    /// What is not ready yet, one name each (`etcd: service.local.`); empty when ready. Zone
    /// files are loaded before anything is served, so only etcd zones can wait.
    pub fn not_ready(&self) -> Vec<String> {
        let synced = self
            .sync
            .as_ref()
            .is_none_or(|s| s.borrow().revision.is_some());
        if synced {
            Vec::new()
        } else {
            self.etcd_zones
                .iter()
                .map(|z| format!("etcd: {z}"))
                .collect()
        }
    }

    /// The `/metrics` body, when metrics are on.
    pub fn metrics_text(&self) -> Option<Result<String, std::fmt::Error>> {
        self.registry.as_ref().map(metrics::encode)
    }
}
