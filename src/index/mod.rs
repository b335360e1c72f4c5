//! The index: every zone srvd answers for, as one immutable snapshot.
//!
//! Readers take one `Arc<Index>` per query ([`IndexHandle::load`]) and never block on a writer; a
//! writer builds the next `Index` and [`IndexHandle::publish`]es it atomically. Zone files are
//! loaded once at start; the etcd mirror will publish through the same handle, so every answer
//! reflects exactly one snapshot.
//!
//! Invariant: nothing in this module does I/O or needs a runtime.

pub mod name_key;
pub mod tree;

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use hickory_proto::rr::{Name, Record, RecordType, rdata::SOA};

use self::name_key::{LookupKey, owned_key};
use self::tree::ZoneTree;

/// One zone: its apex, its SOA and its records.
#[derive(Debug)]
pub struct Zone {
    origin: Name,
    key: Box<[u8]>,
    apex_labels: usize,
    soa: Record,
    tree: ZoneTree,
}

impl Zone {
    /// Builds a zone from a validated record list that contains exactly one SOA, at `origin`.
    ///
    /// # Errors
    /// Returns the records' problem when no SOA sits at the apex.
    pub fn new(origin: Name, records: Vec<Record>) -> Result<Self, &'static str> {
        let soa = records
            .iter()
            .find(|r| r.record_type() == RecordType::SOA && r.name == origin)
            .cloned()
            .ok_or("the zone has no SOA record at its apex")?;
        Ok(Self {
            key: owned_key(&origin),
            apex_labels: usize::from(origin.num_labels()),
            origin,
            soa,
            tree: ZoneTree::from_records(records),
        })
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

    /// The records of the zone file.
    pub fn tree(&self) -> &ZoneTree {
        &self.tree
    }
}

/// An immutable snapshot of every zone.
#[derive(Debug, Default)]
pub struct Index {
    /// Sorted by key length, longest first, so the first match is the closest enclosing zone.
    zones: Vec<Zone>,
}

impl Index {
    /// Builds an index over `zones`.
    pub fn new(mut zones: Vec<Zone>) -> Self {
        zones.sort_by_key(|zone| std::cmp::Reverse(zone.key.len()));
        Self { zones }
    }

    /// The most specific zone containing `name`, if srvd is authoritative for it.
    pub fn find_zone(&self, name: &LookupKey) -> Option<&Zone> {
        self.zones.iter().find(|zone| name.is_within(&zone.key))
    }

    /// Every zone, most specific first.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
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

    /// Replaces the snapshot; queries already running keep the one they loaded.
    pub fn publish(&self, index: Index) {
        self.current.store(Arc::new(index));
    }
}
