//! Maps and sets for per-question bookkeeping (duplicate checks, weight sums) that cost little at
//! both ends: a linear scan while few keys are held (a usual answer has a handful of records, and
//! hashing a `Name` costs more than comparing a few), a hash map beyond, so a name with 10,000
//! records stays linear, never quadratic.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Keys held in a plain vector before switching to a hash map.
const LINEAR: usize = 16;

/// A map that is a vector while small.
#[derive(Debug)]
pub(crate) enum SmallMap<K, V> {
    Few(Vec<(K, V)>),
    Many(HashMap<K, V>),
}

impl<K: Eq + Hash, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<K: Eq + Hash, V> SmallMap<K, V> {
    /// The value at `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            Self::Few(items) => items
                .iter()
                .find(|(k, _)| k.borrow() == key)
                .map(|(_, v)| v),
            Self::Many(map) => map.get(key),
        }
    }

    /// The value at `key`, inserted with `make` if absent; and whether it was inserted.
    pub(crate) fn get_or_insert_with(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        // Where the key is (or goes) is decided with a shared borrow first, so that the one
        // mutable borrow below is returned on every path.
        let found = match self {
            Self::Few(items) => items.iter().position(|(k, _)| *k == key),
            Self::Many(_) => None,
        };
        if let Self::Few(items) = self
            && found.is_none()
            && items.len() >= LINEAR
        {
            let map: HashMap<K, V> = items.drain(..).collect();
            *self = Self::Many(map);
        }
        match (self, found) {
            (Self::Few(items), Some(i)) => (&mut items[i].1, false),
            (Self::Few(items), None) => {
                items.push((key, make()));
                let last = items.len() - 1;
                (&mut items[last].1, true)
            }
            (Self::Many(map), _) => {
                let mut inserted = false;
                let value = map.entry(key).or_insert_with(|| {
                    inserted = true;
                    make()
                });
                (value, inserted)
            }
        }
    }
}

/// A set that is a vector while small.
#[derive(Debug)]
pub(crate) struct SmallSet<K>(SmallMap<K, ()>);

impl<K: Eq + Hash> Default for SmallSet<K> {
    fn default() -> Self {
        Self(SmallMap::default())
    }
}

impl<K: Eq + Hash> SmallSet<K> {
    /// Adds `key`; returns whether it was new.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        self.0.get_or_insert_with(key, || ()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_answers_the_same_before_and_after_it_grows_into_a_hash_set() {
        let mut set = SmallSet::default();
        for round in 0..2 {
            for i in 0..100u32 {
                assert_eq!(set.insert(i), round == 0, "{i} in round {round}");
            }
        }
        assert!(matches!(set.0, SmallMap::Many(_)));
    }

    #[test]
    fn a_map_keeps_its_values_across_the_switch() {
        let mut sums: SmallMap<i64, i64> = SmallMap::default();
        for i in 0..40i64 {
            *sums.get_or_insert_with(i % 20, || 0).0 += i;
        }
        assert_eq!(sums.get(&3), Some(&(3 + 23)));
        assert_eq!(sums.get(&19), Some(&(19 + 39)));
        assert_eq!(sums.get(&20), None);
    }
}
