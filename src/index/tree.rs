//! The records of one zone file, by owner name, in a map ordered by [`name_key`](super::name_key).
//!
//! Zone files keep standard authoritative semantics, so the tree answers three questions: the node
//! at an exact name, whether a name is an empty non-terminal (it has descendants but no records,
//! RFC 8020), and the closest encloser for RFC 4592 wildcard synthesis. All three are lookups by
//! key prefix and allocate nothing.

use std::collections::BTreeMap;
use std::ops::Bound;

use hickory_proto::rr::{Name, Record, RecordType};

use super::name_key::{LookupKey, owned_key, wildcard_buffer, wildcard_child};

/// The records at one owner name, grouped into RRsets ordered by type code.
#[derive(Debug)]
pub struct Node {
    /// The owner name as written in the zone file.
    pub name: Name,
    /// One entry per record type present at this name.
    pub rrsets: Vec<RrSet>,
}

/// All records of one type at one name.
#[derive(Debug)]
pub struct RrSet {
    /// The type shared by every record.
    pub rtype: RecordType,
    /// The records, in zone-file order.
    pub records: Vec<Record>,
}

impl Node {
    /// The RRset of `rtype`, if the name has one.
    pub fn rrset(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|set| set.rtype == rtype)
    }
}

/// What a name is in a zone tree.
#[derive(Debug)]
pub enum Found<'a> {
    /// The name owns records.
    Exact(&'a Node),
    /// The name does not exist, but `*.<closest encloser>` does (RFC 4592 §3.3.1).
    Wildcard(&'a Node),
    /// The name owns no records but has descendants (RFC 8020: NODATA, not NXDOMAIN).
    EmptyNonTerminal,
    /// The name does not exist.
    NxDomain,
}

/// The records of one zone file.
#[derive(Debug, Default)]
pub struct ZoneTree {
    nodes: BTreeMap<Box<[u8]>, Node>,
    record_count: usize,
}

impl ZoneTree {
    /// Builds the tree from records already validated to lie inside the zone, in file order.
    ///
    /// As an RRset is a set (RFC 2181 §5), a record whose data repeats an earlier one at the same
    /// name replaces it (its TTL wins), and a later CNAME replaces an earlier one. Every record at
    /// a name takes the spelling of that name's first record, so that an RRset has one owner.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Self {
        let mut tree = Self::default();
        for mut record in records {
            let node = tree
                .nodes
                .entry(owned_key(&record.name))
                .or_insert_with(|| Node {
                    name: record.name.clone(),
                    rrsets: Vec::new(),
                });
            if !node.name.eq_case(&record.name) {
                record.name.clone_from(&node.name);
            }
            let rtype = record.record_type();
            match node.rrsets.iter_mut().find(|set| set.rtype == rtype) {
                Some(set) => {
                    let same = if rtype == RecordType::CNAME {
                        Some(0)
                    } else {
                        set.records.iter().position(|r| r.data == record.data)
                    };
                    match same {
                        Some(at) => set.records[at] = record,
                        None => set.records.push(record),
                    }
                }
                None => {
                    node.rrsets.push(RrSet {
                        rtype,
                        records: vec![record],
                    });
                    node.rrsets.sort_by_key(|set| u16::from(set.rtype));
                }
            }
        }
        tree.record_count = tree
            .nodes
            .values()
            .flat_map(|node| &node.rrsets)
            .map(|set| set.records.len())
            .sum();
        tree
    }

    /// Number of records in the tree.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// The node at exactly this key.
    pub fn node(&self, key: &[u8]) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// Whether any name strictly below `key` owns records.
    pub fn has_descendants(&self, key: &[u8]) -> bool {
        self.nodes
            .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(key))
    }

    /// Whether the name exists in the RFC 4592 sense: it owns records or has descendants.
    fn exists(&self, key: &[u8]) -> bool {
        self.nodes.contains_key(key) || self.has_descendants(key)
    }

    /// Classifies `name` within a zone whose apex has `apex_labels` labels.
    pub fn find(&self, name: &LookupKey, apex_labels: usize) -> Found<'_> {
        if let Some(node) = self.node(name.as_bytes()) {
            return Found::Exact(node);
        }
        if self.has_descendants(name.as_bytes()) {
            return Found::EmptyNonTerminal;
        }
        // Closest encloser: the longest existing ancestor. The apex always exists (it owns the SOA).
        let mut labels = name.label_count();
        while labels > apex_labels {
            labels -= 1;
            let ancestor = name.ancestor(labels);
            if labels == apex_labels || self.exists(ancestor) {
                let mut buf = wildcard_buffer();
                return match wildcard_child(ancestor, &mut buf).and_then(|k| self.node(k)) {
                    Some(node) => Found::Wildcard(node),
                    None => Found::NxDomain,
                };
            }
        }
        Found::NxDomain
    }

    /// Every node, in key order (used at load time for validation and statistics).
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_record_replaces_the_earlier_and_a_name_keeps_its_first_spelling() {
        let text = "$TTL 60\n@ SOA ns h 1 2 3 4 5\nWww A 192.0.2.1\nwww 30 A 192.0.2.1\n\
                    WWW A 192.0.2.2\nc CNAME a\nc CNAME b\n";
        let zone = crate::zonefile::parse(text, "z.test.", "t.zone", None).unwrap();
        let tree = ZoneTree::from_records(zone.records);
        assert_eq!(tree.record_count(), 4);
        let at = |name: &str, rtype: RecordType| -> Vec<String> {
            let key = owned_key(&Name::from_ascii(name).unwrap());
            tree.node(&key)
                .unwrap()
                .rrset(rtype)
                .unwrap()
                .records
                .iter()
                .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
                .collect()
        };
        assert_eq!(
            at("www.z.test.", RecordType::A),
            ["Www.z.test. 30 192.0.2.1", "Www.z.test. 60 192.0.2.2"]
        );
        assert_eq!(
            at("c.z.test.", RecordType::CNAME),
            ["c.z.test. 60 b.z.test."]
        );
    }
}
