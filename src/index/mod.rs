//! The index: every zone srvd answers for, as one immutable snapshot.
//!
//! Readers take one `Arc<Index>` per query ([`IndexHandle::load`]) and never block on a writer; a
//! writer builds the next `Index` and [`IndexHandle::publish`]es it atomically. Zone files are
//! loaded once at start; the etcd sync task publishes a new snapshot per batch of watch events,
//! sharing the zones and all unchanged mirror nodes with the previous one. Every answer reflects
//! exactly one snapshot.
//!
//! Invariant: nothing in this module does I/O or needs a runtime.

pub mod changes;
pub mod leases;
pub mod mirror;
pub mod name_key;
pub mod registry;
pub mod tree;

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use hickory_proto::rr::{Name, Record, RecordType, rdata::SOA};

use self::leases::LeaseTable;
use self::mirror::Mirror;
use self::name_key::{LookupKey, owned_key};
use self::tree::ZoneTree;

/// The records of a zone file.
#[derive(Debug)]
pub struct FileZone {
    soa: Record,
    tree: ZoneTree,
}

impl FileZone {
    /// The apex SOA record.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The SOA RDATA.
    pub fn soa_data(&self) -> Option<&SOA> {
        match &self.soa.data {
            hickory_proto::rr::RData::SOA(soa) => Some(soa),
            _ => None,
        }
    }

    /// The records by owner name.
    pub fn tree(&self) -> &ZoneTree {
        &self.tree
    }
}

/// Where a zone's etcd data lives.
#[derive(Debug, Clone)]
pub struct EtcdZone {
    /// The key of the zone apex (`/skydns/local/service` for `service.local.`).
    pub path: String,
    /// This zone's position among etcd zones (its serial's slot in the mirror).
    pub slot: usize,
}

/// How the service registry is answered in the one zone that serves it (`--registry-zone`).
#[derive(Debug, Clone, Copy)]
pub struct RegistryZone {
    /// `--registry-ttl`: the TTL of registry records, before the lease cap.
    pub ttl: u32,
}

/// One zone: its apex, and its zone file and/or etcd data.
#[derive(Debug)]
pub struct Zone {
    origin: Name,
    key: Box<[u8]>,
    apex_labels: usize,
    file: Option<FileZone>,
    etcd: Option<EtcdZone>,
    registry: Option<RegistryZone>,
    /// The zone's cells in the query counters (`ops::metrics`): stable across reloads, which
    /// may reorder the zones.
    metrics_slot: usize,
}

impl Zone {
    /// A zone from a validated zone file's records, which contain exactly one SOA at `origin`.
    ///
    /// # Errors
    /// When no SOA sits at the apex.
    pub fn from_file(origin: Name, records: Vec<Record>) -> Result<Self, &'static str> {
        let soa = records
            .iter()
            .find(|r| r.record_type() == RecordType::SOA && r.name == origin)
            .cloned()
            .ok_or("the zone has no SOA record at its apex")?;
        Ok(Self {
            key: owned_key(&origin),
            apex_labels: usize::from(origin.num_labels()),
            origin,
            file: Some(FileZone {
                soa,
                tree: ZoneTree::from_records(records),
            }),
            etcd: None,
            registry: None,
            metrics_slot: 0,
        })
    }

    /// A zone answered from etcd only.
    pub fn from_etcd(origin: Name, etcd: EtcdZone) -> Self {
        Self {
            key: owned_key(&origin),
            apex_labels: usize::from(origin.num_labels()),
            origin,
            file: None,
            etcd: Some(etcd),
            registry: None,
            metrics_slot: 0,
        }
    }

    /// Also answers this zone from etcd (names not in the zone file).
    pub fn add_etcd(&mut self, etcd: EtcdZone) {
        self.etcd = Some(etcd);
    }

    /// Also answers the service registry's DNS-SD names in this zone (an etcd zone).
    pub fn add_registry(&mut self, registry: RegistryZone) {
        self.registry = Some(registry);
    }

    /// How the registry is answered here, if this is the registry zone.
    pub fn registry(&self) -> Option<&RegistryZone> {
        self.registry.as_ref()
    }

    /// The zone's apex name.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// Number of labels in the apex name.
    pub fn apex_labels(&self) -> usize {
        self.apex_labels
    }

    /// The zone's key (see [`name_key`]).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The zone file's data, if the zone has one.
    pub fn file(&self) -> Option<&FileZone> {
        self.file.as_ref()
    }

    /// Where the zone's etcd data lives, if it is served from etcd.
    pub fn etcd(&self) -> Option<&EtcdZone> {
        self.etcd.as_ref()
    }

    /// Where this zone is counted in the query metrics.
    pub fn metrics_slot(&self) -> usize {
        self.metrics_slot
    }

    /// Records in the zone file (0 without one).
    pub fn file_record_count(&self) -> usize {
        self.file.as_ref().map_or(0, |f| f.tree.record_count())
    }
}

/// The etcd side of a snapshot.
#[derive(Debug, Clone)]
pub struct EtcdData {
    /// The mirror; `None` until the first full read of the prefix has finished (etcd zones then
    /// answer SERVFAIL rather than a wrong NXDOMAIN).
    pub mirror: Option<Mirror>,
    /// The prefix's root path (`/skydns`).
    pub root: Arc<str>,
    /// Lease deadlines for TTLs of leased keys.
    pub leases: Arc<LeaseTable>,
}

/// An immutable snapshot of every zone.
#[derive(Debug, Default)]
pub struct Index {
    /// Sorted by key length, longest first, so the first match is the closest enclosing zone.
    zones: Arc<Vec<Zone>>,
    etcd: Option<EtcdData>,
    /// Which zones these are: a new one for every set of zones built (start, reload), kept by
    /// snapshots that only bring new etcd data.
    generation: u64,
}

impl Index {
    /// An index over `zones`, without etcd data.
    pub fn new(mut zones: Vec<Zone>) -> Self {
        zones.sort_by_key(|zone| std::cmp::Reverse(zone.key.len()));
        // Slot 0 counts queries that reached no zone; a daemon reassigns these by name.
        for (i, zone) in zones.iter_mut().enumerate() {
            zone.metrics_slot = i + 1;
        }
        static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            zones: Arc::new(zones),
            etcd: None,
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Which set of zones this snapshot serves (see the field).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The same zones with new etcd data (cheap: zones are shared).
    pub fn with_etcd(&self, etcd: EtcdData) -> Self {
        Self {
            zones: self.zones.clone(),
            etcd: Some(etcd),
            generation: self.generation,
        }
    }

    /// The most specific zone containing `name`, if srvd is authoritative for it.
    pub fn find_zone(&self, name: &LookupKey) -> Option<&Zone> {
        self.zones.iter().find(|zone| name.is_within(&zone.key))
    }

    /// Every zone, most specific first.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Gives each zone the metrics slot `slot_of` its origin, so that its counts continue
    /// across reloads that add, drop or reorder zones. Only on an index not yet shared.
    pub fn set_metrics_slots(&mut self, slot_of: impl Fn(&Name) -> usize) {
        if let Some(zones) = Arc::get_mut(&mut self.zones) {
            for zone in zones {
                zone.metrics_slot = slot_of(&zone.origin);
            }
        }
    }

    /// The etcd data, when srvd mirrors etcd.
    pub fn etcd(&self) -> Option<&EtcdData> {
        self.etcd.as_ref()
    }

    /// The same zones with `etcd` (or none).
    fn with(&self, etcd: Option<EtcdData>) -> Self {
        Self {
            zones: self.zones.clone(),
            etcd,
            generation: self.generation,
        }
    }
}

/// The zones without their etcd data (zone files, which zones exist): what every snapshot is
/// built on. Shared by the sync task, which publishes it with each new mirror, and a reload,
/// which replaces it; one lock orders their publishes, so a reload's new zones are never
/// overwritten by a mirror update built on the old ones. Only writers take it: queries read the
/// published snapshot.
#[derive(Debug)]
pub struct BaseIndex {
    base: std::sync::Mutex<Index>,
}

impl BaseIndex {
    /// Shares `base`.
    pub fn new(base: Index) -> Self {
        Self {
            base: std::sync::Mutex::new(base),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.base
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The base with `etcd` (or none), unpublished.
    pub fn snapshot(&self, etcd: Option<EtcdData>) -> Index {
        self.lock().with(etcd)
    }

    /// Sets the base without publishing it: the next [`BaseIndex::publish`] brings it.
    pub fn set(&self, new: Index) {
        *self.lock() = new;
    }

    /// Publishes the base with `etcd` through `handle`.
    pub fn publish(&self, handle: &IndexHandle, etcd: EtcdData) {
        let base = self.lock();
        handle.publish(base.with(Some(etcd)));
    }

    /// Replaces the base and publishes it with `etcd`: the etcd data `handle` serves now when
    /// `keep_etcd` (the backend did not change), else none.
    pub fn replace(&self, handle: &IndexHandle, new: Index, keep_etcd: bool) {
        let mut base = self.lock();
        let etcd = keep_etcd
            .then(|| handle.load_full().etcd().cloned())
            .flatten();
        handle.publish(new.with(etcd));
        *base = new;
    }
}

/// The published snapshot: many readers, one writer, no locks on the read side.
#[derive(Debug)]
pub struct IndexHandle {
    current: ArcSwap<Index>,
}

impl IndexHandle {
    /// A handle serving `index`.
    pub fn new(index: Index) -> Self {
        Self {
            current: ArcSwap::from_pointee(index),
        }
    }

    /// The current snapshot; hold it for exactly one question.
    pub fn load(&self) -> Guard<Arc<Index>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc` (for writers deriving the next one).
    pub fn load_full(&self) -> Arc<Index> {
        self.current.load_full()
    }

    /// Replaces the snapshot; queries already running keep the one they loaded.
    pub fn publish(&self, index: Index) {
        self.current.store(Arc::new(index));
    }
}
