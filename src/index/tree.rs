//! The records of one zone file, by owner name, in a map ordered by [`name_key`](super::name_key).
//!
//! Zone files keep standard authoritative semantics, so the tree answers three questions: the node
//! at an exact name, whether a name is an empty non-terminal (it has descendants but no records,
//! RFC 8020), and the closest encloser for RFC 4592 wildcard synthesis. All three are lookups by
//! key prefix and allocate nothing.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;

use hickory_proto::rr::{Name, Record, RecordType};

use super::name_key::{LookupKey, wildcard_buffer, wildcard_child};

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
    ///
    /// The records are ordered by key once (keys in one buffer) and each RRset is allocated at its
    /// final size: a large zone is built without an allocation per record, which is most of its
    /// load time.
    pub fn from_records(records: Vec<Record>) -> Self {
        let mut arena: Vec<u8> = Vec::with_capacity(records.len().saturating_mul(32));
        let mut spans: Vec<(usize, usize, u16)> = Vec::with_capacity(records.len());
        for record in &records {
            let start = arena.len();
            arena.extend_from_slice(LookupKey::from_name(&record.name).as_bytes());
            spans.push((start, arena.len(), u16::from(record.record_type())));
        }
        let key = |i: usize| &arena[spans[i].0..spans[i].1];
        let mut order: Vec<usize> = (0..records.len()).collect();
        // Stable: records of one RRset stay in file order.
        order.sort_by(|&a, &b| key(a).cmp(key(b)).then(spans[a].2.cmp(&spans[b].2)));

        let mut slots: Vec<Option<Record>> = records.into_iter().map(Some).collect();
        let mut nodes = Vec::new();
        let mut record_count = 0;
        let mut rest = &order[..];
        while let Some(&first) = rest.first() {
            let name_len = rest.iter().take_while(|&&i| key(i) == key(first)).count();
            let (at_name, after) = rest.split_at(name_len);
            rest = after;
            let Some(spelling) = at_name.iter().min().and_then(|&i| slots[i].as_ref()) else {
                continue;
            };
            let name = spelling.name.clone();
            let mut rrsets = Vec::new();
            let mut sets = at_name;
            while let Some(&head) = sets.first() {
                let set_len = sets
                    .iter()
                    .take_while(|&&i| spans[i].2 == spans[head].2)
                    .count();
                let (in_set, others) = sets.split_at(set_len);
                sets = others;
                let set = rrset(
                    in_set.iter().filter_map(|&i| slots[i].take()),
                    set_len,
                    &name,
                );
                record_count += set.records.len();
                rrsets.push(set);
            }
            nodes.push((Box::<[u8]>::from(key(first)), Node { name, rrsets }));
        }
        Self {
            nodes: nodes.into_iter().collect(),
            record_count,
        }
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

/// One RRset from its records in file order (`len` of them), each renamed to `name`'s spelling.
fn rrset(records: impl Iterator<Item = Record>, len: usize, name: &Name) -> RrSet {
    /// Above this size, repeated data is found by hash rather than by scanning the set.
    const SCAN_LIMIT: usize = 16;
    let mut out: Vec<Record> = Vec::with_capacity(len);
    // Positions in `out` by the hash of their data (only above SCAN_LIMIT).
    let hasher = RandomState::new();
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut rtype = RecordType::Unknown(0);
    for mut record in records {
        if !record.name.eq_case(name) {
            record.name.clone_from(name);
        }
        rtype = record.record_type();
        let same = if rtype == RecordType::CNAME {
            out.first().map(|_| 0)
        } else if len <= SCAN_LIMIT {
            out.iter().position(|r| r.data == record.data)
        } else {
            by_hash
                .get(&hasher.hash_one(&record.data))
                .and_then(|at| at.iter().copied().find(|&i| out[i].data == record.data))
        };
        match same {
            Some(at) => out[at] = record,
            None => {
                if len > SCAN_LIMIT {
                    let hash = hasher.hash_one(&record.data);
                    by_hash.entry(hash).or_default().push(out.len());
                }
                out.push(record);
            }
        }
    }
    RrSet {
        rtype,
        records: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::name_key::owned_key;

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

    #[test]
    fn a_large_rrset_finds_repeated_data_too() {
        let mut text = String::from("$TTL 60\n@ SOA ns h 1 2 3 4 5\n");
        for i in 0..40 {
            text.push_str(&format!("big A 192.0.2.{i}\n"));
        }
        text.push_str("big 5 A 192.0.2.3\n");
        let zone = crate::zonefile::parse(&text, "z.test.", "t.zone", None).unwrap();
        let tree = ZoneTree::from_records(zone.records);
        let key = owned_key(&Name::from_ascii("big.z.test.").unwrap());
        let set = tree.node(&key).unwrap().rrset(RecordType::A).unwrap();
        assert_eq!(set.records.len(), 40);
        assert_eq!(set.records[3].ttl, 5);
        assert_eq!(set.records[4].ttl, 60);
    }
}
