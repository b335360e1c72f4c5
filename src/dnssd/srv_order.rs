//! RFC 2782 target order: priority ascending, weighted-random within a priority.
//!
//! One function, [`order_by_priority_weight`], is used by the server (a fresh order for every SRV
//! response, so that a client that takes the first record still spreads load by weight) and by the
//! client library (re-ordered on every lookup, because resolvers such as unbound rotate RRsets).
//!
//! The draw has exactly the distribution of Go's unbiased variant of RFC 2782's selection
//! (`net/dnsclient.go`, `shuffleByWeight`: a uniform draw in `[0, sum)` instead of the RFC's
//! `[0, sum]`, which gives the first record an extra share: with weights 1 and 1 it comes first
//! 2 times in 3), computed in O(n log n) instead of O(n²): each positive-weight record gets the
//! key `E / w` (`E` exponential, `-ln U`), and the records sorted by key ascending are a weighted
//! sample without replacement (Efraimidis–Spirakis: the same as sorting `U^(1/w)` descending). The smallest of independent
//! exponentials with rates `w_i` is record `i` with probability `w_i / Σw`, and by memorylessness
//! the rest again, which is exactly the repeated draw. A record of weight 0 comes after every
//! positive-weight record of its priority; records that weigh 0 are shuffled uniformly among
//! themselves (a uniform key), so even an "all weights 0" service spreads load (Go leaves them in
//! sort order).
//!
//! Groups of at most [`SMALL`] records use the repeated draw itself (O(n²) with no allocation,
//! faster there than computing and sorting keys; benches in the commit that added it); larger
//! ones use the keys. Both have the same distribution, and the tests run both.
//!
//! [`select_first_by_priority_weight`] draws the whole order but sorts only its first `k` places
//! (O(n + k log k)): an answer that can carry `k` records gets the first `k` of a fair draw over
//! every candidate.
//!
//! The RNG is injected: tests pass a seeded one, the server a fast per-thread `SmallRng`.

use std::cmp::Ordering;

use rand::Rng;

/// Reorders `items` in place into RFC 2782 order.
///
/// `key` returns `(priority, weight)` for an item; it is called once per item. The result is a
/// permutation of the input in which priorities never decrease and, within a priority, the
/// chance that a record comes first is its share of that priority's total weight.
pub fn order_by_priority_weight<T, R, F>(items: &mut [T], rng: &mut R, key: F)
where
    R: Rng + ?Sized,
    F: Fn(&T) -> (u16, u16),
{
    let all = items.len();
    select_first_by_priority_weight(items, all, rng, key);
}

/// Puts into `items[..k]` the first `k` places of an RFC 2782 order of all of `items`, in order;
/// `items[k..]` holds the rest in no particular order. With `k >= items.len()` this is
/// [`order_by_priority_weight`].
pub fn select_first_by_priority_weight<T, R, F>(items: &mut [T], k: usize, rng: &mut R, key: F)
where
    R: Rng + ?Sized,
    F: Fn(&T) -> (u16, u16),
{
    if items.len() <= SMALL {
        repeated_draw(items, rng, key);
    } else {
        keyed_draw(items, k, rng, key);
    }
}

/// Up to this many records, the repeated draw is faster than sorting Efraimidis–Spirakis keys.
pub const SMALL: usize = 16;

/// Stable sort by priority, then per priority Go's draw: O(n²) key calls, no allocation.
fn repeated_draw<T, R, F>(items: &mut [T], rng: &mut R, key: F)
where
    R: Rng + ?Sized,
    F: Fn(&T) -> (u16, u16),
{
    items.sort_by_key(|item| key(item).0);
    let mut start = 0;
    while start < items.len() {
        let priority = key(&items[start]).0;
        let end = start
            + items[start..]
                .iter()
                .take_while(|item| key(item).0 == priority)
                .count();
        shuffle_by_weight(&mut items[start..end], rng, |item| key(item).1);
        start = end;
    }
}

/// Repeated weighted draws without replacement over the positive weights of one priority, then
/// the zero-weight records in uniformly random order.
fn shuffle_by_weight<T, R, F>(group: &mut [T], rng: &mut R, weight: F)
where
    R: Rng + ?Sized,
    F: Fn(&T) -> u16,
{
    let mut positive = 0;
    for i in 0..group.len() {
        if weight(&group[i]) > 0 {
            group.swap(i, positive);
            positive += 1;
        }
    }
    let mut sum: u64 = group[..positive].iter().map(|r| u64::from(weight(r))).sum();
    let mut front = 0;
    while front + 1 < positive {
        let draw = rng.random_range(0..sum);
        let mut running = 0;
        let mut chosen = positive - 1;
        for (offset, record) in group[front..positive].iter().enumerate() {
            running += u64::from(weight(record));
            if running > draw {
                chosen = front + offset;
                break;
            }
        }
        sum -= u64::from(weight(&group[chosen]));
        group.swap(front, chosen);
        front += 1;
    }
    let zeros = &mut group[positive..];
    for i in (1..zeros.len()).rev() {
        let j = rng.random_range(0..=i);
        zeros.swap(i, j);
    }
}

/// Efraimidis–Spirakis keys, selected and sorted: one key call per record, O(n + k log k).
fn keyed_draw<T, R, F>(items: &mut [T], k: usize, rng: &mut R, key: F)
where
    R: Rng + ?Sized,
    F: Fn(&T) -> (u16, u16),
{
    let n = items.len();
    if n < 2 || k == 0 {
        return;
    }
    let mut keys: Vec<(DrawKey, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let (priority, weight) = key(item);
            (DrawKey::new(priority, weight, rng), i)
        })
        .collect();
    let by_key = |a: &(DrawKey, usize), b: &(DrawKey, usize)| a.0.cmp(&b.0);
    if k < n {
        keys.select_nth_unstable_by(k, by_key);
        keys[..k].sort_unstable_by(by_key);
    } else {
        keys.sort_unstable_by(by_key);
    }
    // Move each item to its place: `target[i]` is where the item now at `i` belongs.
    let mut target = vec![0usize; n];
    for (place, (_, source)) in keys.iter().enumerate() {
        target[*source] = place;
    }
    for i in 0..n {
        while target[i] != i {
            let t = target[i];
            items.swap(i, t);
            target.swap(i, t);
        }
    }
}

/// One record's place in the draw: priority first, then positive weights before zero weights,
/// then the random key (smaller first).
#[derive(Clone, Copy, Debug)]
struct DrawKey {
    priority: u16,
    zero_weight: bool,
    key: f64,
}

impl DrawKey {
    fn new<R: Rng + ?Sized>(priority: u16, weight: u16, rng: &mut R) -> Self {
        // `1 - U` is in (0, 1], so the logarithm is finite and the key is in [0, ∞).
        let uniform = 1.0 - rng.random::<f64>();
        let key = if weight == 0 {
            uniform
        } else {
            -uniform.ln() / f64::from(weight)
        };
        Self {
            priority,
            zero_weight: weight == 0,
            key,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then(self.zero_weight.cmp(&other.zero_weight))
            .then(self.key.total_cmp(&other.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn ordered(mut records: Vec<(u16, u16)>, seed: u64) -> Vec<(u16, u16)> {
        let mut rng = SmallRng::seed_from_u64(seed);
        order_by_priority_weight(&mut records, &mut rng, |r| *r);
        records
    }

    /// Both implementations of the full order, whatever the input size.
    type Order<T> = fn(&mut [T], &mut SmallRng, fn(&T) -> (u16, u16));

    fn both_paths<T>() -> [(&'static str, Order<T>); 2] {
        [
            ("repeated", |items, rng, key| repeated_draw(items, rng, key)),
            ("keyed", |items, rng, key| {
                let n = items.len();
                keyed_draw(items, n, rng, key);
            }),
        ]
    }

    proptest! {
        #[test]
        fn both_paths_give_valid_orders(
            records in proptest::collection::vec((0u16..3, 0u16..3), 0..12),
            seed in any::<u64>(),
        ) {
            for (path, order) in both_paths::<(u16, u16)>() {
                let mut out = records.clone();
                order(&mut out, &mut SmallRng::seed_from_u64(seed), |r| *r);
                let (mut a, mut b) = (out.clone(), records.clone());
                a.sort_unstable();
                b.sort_unstable();
                prop_assert_eq!(a, b, "{}", path);
                for w in out.windows(2) {
                    prop_assert!(w[0].0 <= w[1].0, "{}: {:?}", path, out);
                    if w[0].0 == w[1].0 {
                        prop_assert!(!(w[0].1 == 0 && w[1].1 > 0), "{}: {:?}", path, out);
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn output_is_a_permutation_of_the_input(
            records in proptest::collection::vec((0u16..4, 0u16..5), 0..40),
            seed in any::<u64>(),
        ) {
            let mut out = ordered(records.clone(), seed);
            let mut expected = records;
            out.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn priorities_never_decrease(
            records in proptest::collection::vec((any::<u16>(), any::<u16>()), 0..40),
            seed in any::<u64>(),
        ) {
            let out = ordered(records, seed);
            prop_assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
        }

        #[test]
        fn weight_zero_comes_after_every_positive_weight_of_its_priority(
            records in proptest::collection::vec((0u16..3, 0u16..3), 0..40),
            seed in any::<u64>(),
        ) {
            let out = ordered(records, seed);
            for w in out.windows(2) {
                if w[0].0 == w[1].0 {
                    prop_assert!(!(w[0].1 == 0 && w[1].1 > 0), "zero before positive in {:?}", out);
                }
            }
        }
    }

    /// First-place share over 100,000 orderings with a fixed seed: within one point of the weight
    /// share (the expected deviation is about 0.15 points, and the seed makes it exact anyway).
    #[test]
    fn first_place_frequency_matches_weight_share() {
        for (path, order) in both_paths::<(u16, u16)>() {
            first_place_frequency_matches_weight_share_on(path, order);
        }
    }

    fn first_place_frequency_matches_weight_share_on(path: &str, order: Order<(u16, u16)>) {
        let records = [(10u16, 60u16), (10, 30), (10, 10), (20, 100)];
        let mut rng = SmallRng::seed_from_u64(2782);
        let mut first = [0u32; 3];
        let rounds = 100_000;
        for _ in 0..rounds {
            let mut r = records;
            order(&mut r, &mut rng, |r| *r);
            let idx = records.iter().position(|x| *x == r[0]).unwrap();
            first[idx] += 1;
            assert_eq!(
                r[3],
                (20, 100),
                "the higher priority never comes before a lower one"
            );
        }
        for (idx, expected) in [(0, 60.0), (1, 30.0), (2, 10.0)] {
            let share = f64::from(first[idx]) * 100.0 / f64::from(rounds);
            assert!(
                (share - expected).abs() < 1.0,
                "{path}: record {idx}: {share:.2}% vs {expected}%"
            );
        }
    }

    #[test]
    fn two_equal_weights_split_evenly_without_the_rfc_off_by_one() {
        // RFC 2782's inclusive draw would give 2/3 vs 1/3 here.
        for (path, order) in both_paths::<(u16, u16, char)>() {
            let mut rng = SmallRng::seed_from_u64(7);
            let mut first_a = 0u32;
            for _ in 0..100_000 {
                let mut r = [(0u16, 1u16, 'a'), (0, 1, 'b')];
                order(&mut r, &mut rng, |r| (r.0, r.1));
                first_a += u32::from(r[0].2 == 'a');
            }
            let share = f64::from(first_a) / 1000.0;
            assert!((share - 50.0).abs() < 1.0, "{path}: share {share}");
        }
    }

    #[test]
    fn all_zero_weights_still_spread() {
        for (path, order) in both_paths::<(u16, u16, usize)>() {
            let mut rng = SmallRng::seed_from_u64(1);
            let mut first = [0u32; 3];
            for _ in 0..30_000 {
                let mut r = [(5u16, 0u16, 0usize), (5, 0, 1), (5, 0, 2)];
                order(&mut r, &mut rng, |r| (r.0, r.1));
                first[r[0].2] += 1;
            }
            for count in first {
                assert!(
                    (9_000..11_000).contains(&count),
                    "{path}: uneven spread {first:?}"
                );
            }
        }
    }

    #[test]
    fn single_record_and_empty_input_are_left_alone() {
        assert_eq!(ordered(vec![], 0), vec![]);
        assert_eq!(ordered(vec![(1, 0)], 0), vec![(1, 0)]);
    }

    /// The order costs O(n log n) calls of `key`, not one per record per draw: 10,000 records in
    /// three priorities, counted (the quadratic draw needed about 33 million).
    #[test]
    fn ten_thousand_records_cost_n_log_n_key_calls() {
        let n = 10_000usize;
        let mut records: Vec<(u16, u16)> = (0..n)
            .map(|i| ((i % 3) as u16, (i % 7) as u16 * 10))
            .collect();
        let calls = std::cell::Cell::new(0usize);
        let mut rng = SmallRng::seed_from_u64(11);
        order_by_priority_weight(&mut records, &mut rng, |r| {
            calls.set(calls.get() + 1);
            *r
        });
        let log2 = usize::BITS - n.leading_zeros();
        let bound = 4 * n * log2 as usize;
        assert!(
            calls.get() <= bound,
            "{} key calls for {n} records (bound {bound})",
            calls.get()
        );
        assert!(records.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    proptest! {
        #[test]
        fn the_first_k_selected_are_in_order_and_the_rest_is_the_remainder(
            records in proptest::collection::vec((0u16..3, 0u16..4), 0..60),
            k in 0usize..70,
            seed in any::<u64>(),
        ) {
            let mut selected = records.clone();
            let mut rng = SmallRng::seed_from_u64(seed);
            select_first_by_priority_weight(&mut selected, k, &mut rng, |r| *r);
            let mut all = selected.clone();
            all.sort_unstable();
            let mut expected = records.clone();
            expected.sort_unstable();
            prop_assert_eq!(all, expected);
            let k = k.min(records.len());
            let (head, tail) = selected.split_at(k);
            prop_assert!(head.windows(2).all(|w| w[0].0 <= w[1].0));
            for w in head.windows(2) {
                if w[0].0 == w[1].0 {
                    prop_assert!(!(w[0].1 == 0 && w[1].1 > 0));
                }
            }
            // Nothing left out comes before the last selected record in (priority, zero) order.
            if let Some(last) = head.last() {
                for r in tail {
                    prop_assert!((r.0, r.1 == 0) >= (last.0, last.1 == 0), "{:?} left out after {:?}", r, last);
                }
            }
        }
    }

    /// The first of a top-2 selection out of 1,000 is drawn over all of them: the one record of
    /// weight 500 among 999 of weight 1 comes first a third of the time.
    #[test]
    fn a_selection_draws_over_every_candidate() {
        let mut rng = SmallRng::seed_from_u64(9);
        let mut heavy_first = 0u32;
        let rounds = 2_000;
        for _ in 0..rounds {
            let mut r: Vec<(u16, u16, bool)> = (0..1_000).map(|i| (1, 1, i == 777)).collect();
            r[777].1 = 500;
            select_first_by_priority_weight(&mut r, 2, &mut rng, |r| (r.0, r.1));
            heavy_first += u32::from(r[0].2);
        }
        // 500 / 1,499 = 33.4 %; σ = 1.05 points over 2,000 rounds.
        let share = f64::from(heavy_first) * 100.0 / f64::from(rounds);
        assert!((share - 33.4).abs() < 4.0, "share {share:.2}%");
    }
}
