//! Data-driven attribution by the Shapley value (Shapley 1953; for advertising Dalessandro et al.
//! 2012, Zhao et al. 2018). The players are the channels of a converting path; the worth of a
//! coalition S is the conversion rate of the journeys whose set of channels is exactly S
//! (conversions ÷ journeys, converting or not), 0 for a set no journey had. A channel's value is
//! its marginal worth averaged over every order of joining:
//!
//! φᵢ = Σ_{S ⊆ N∖{i}} |S|! (|N| − |S| − 1)! / |N|! · (v(S ∪ {i}) − v(S)).
//!
//! Exact, per distinct channel set of the converting paths, over a bitmask table of its 2^|N|
//! subsets: a path set is small (a journey rarely has more than a handful of distinct channels),
//! so the cost is the number of distinct sets × 2^|N| × |N|, not 2^(all channels). A set larger
//! than [`MAX_EXACT_CHANNELS`] falls back to an equal split between its channels, which is the
//! Shapley value of the "simplified" game of Zhao et al. (conversions counted, not rates).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Largest channel set solved exactly (2^16 subsets × 16 channels per set, a few ms).
pub const MAX_EXACT_CHANNELS: usize = 16;

/// Journeys and conversions of one exact channel set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SetCount {
    pub journeys: f64,
    pub conversions: f64,
}

/// The coalition table: every channel set seen, with its journeys and conversions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShapleyModel {
    sets: Coalitions<String>,
}

/// The distinct channels of a path, sorted: the key of its coalition.
pub fn channel_set<'a>(path: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut set: Vec<String> = path.into_iter().map(str::to_string).collect();
    set.sort_unstable();
    set.dedup();
    set
}

impl ShapleyModel {
    /// Count one journey (its channels, in any order and with repeats) and whether it converted.
    pub fn add<'a>(&mut self, path: impl IntoIterator<Item = &'a str>, converted: bool) {
        self.sets.add(channel_set(path), converted);
    }

    /// The Shapley value of each channel of `set` (sorted, distinct), in the order of `set`.
    pub fn values(&self, set: &[String]) -> Vec<f64> {
        self.sets.values(set)
    }

    /// The values of every channel set of the converting journeys, solved once per set.
    pub fn values_by_set(&self) -> BTreeMap<Vec<String>, Vec<f64>> {
        self.sets.values_by_set()
    }
}

/// The coalition table over any channel key whose order is the channels' name order (the names
/// themselves, or their ranks among the sorted names): [`ShapleyModel`]'s arithmetic, shared
/// with the job's interned channels so both give the same values to the bit.
#[derive(Debug, Clone)]
pub(crate) struct Coalitions<K> {
    sets: HashMap<Vec<K>, SetCount>,
}

impl<K: Eq + Hash> PartialEq for Coalitions<K> {
    fn eq(&self, other: &Self) -> bool {
        self.sets == other.sets
    }
}

impl<K> Default for Coalitions<K> {
    fn default() -> Self {
        Self {
            sets: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Coalitions<K> {
    /// Count one journey by its channel set (sorted, distinct) and whether it converted.
    pub(crate) fn add(&mut self, set: Vec<K>, converted: bool) {
        if set.is_empty() {
            return;
        }
        let c = self.sets.entry(set).or_default();
        c.journeys += 1.0;
        if converted {
            c.conversions += 1.0;
        }
    }

    /// v(S): the conversion rate of the journeys whose channel set is exactly `set` (sorted).
    fn worth(&self, set: &[K]) -> f64 {
        self.sets
            .get(set)
            .filter(|c| c.journeys > 0.0)
            .map_or(0.0, |c| c.conversions / c.journeys)
    }

    /// The Shapley value of each channel of `set` (sorted, distinct), in the order of `set`.
    pub(crate) fn values(&self, set: &[K]) -> Vec<f64> {
        let n = set.len();
        if n == 0 {
            return Vec::new();
        }
        if n > MAX_EXACT_CHANNELS {
            return vec![self.worth(set) / n as f64; n];
        }
        // worth of every subset, indexed by its bitmask over `set`
        let mut members: Vec<K> = Vec::with_capacity(n);
        let worth: Vec<f64> = (0u32..1 << n)
            .map(|mask| {
                members.clear();
                members.extend(
                    (0..n)
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| set[i].clone()),
                );
                self.worth(&members)
            })
            .collect();
        // |S|! (n − |S| − 1)! / n!, by the size of S
        let fact = |k: usize| (1..=k).map(|x| x as f64).product::<f64>();
        let weight: Vec<f64> = (0..n)
            .map(|s| fact(s) * fact(n - s - 1) / fact(n))
            .collect();
        (0..n)
            .map(|i| {
                let bit = 1u32 << i;
                (0u32..1 << n)
                    .filter(|mask| mask & bit == 0)
                    .map(|mask| {
                        weight[mask.count_ones() as usize]
                            * (worth[(mask | bit) as usize] - worth[mask as usize])
                    })
                    .sum()
            })
            .collect()
    }

    /// The values of every channel set of the converting journeys, solved once per set.
    pub(crate) fn values_by_set(&self) -> BTreeMap<Vec<K>, Vec<f64>> {
        self.sets
            .iter()
            .filter(|(_, c)| c.conversions > 0.0)
            .map(|(set, _)| (set.clone(), self.values(set)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(rows: &[(&str, u32, u32)]) -> ShapleyModel {
        let mut m = ShapleyModel::default();
        for (path, journeys, conversions) in rows {
            for k in 0..*journeys {
                m.add(path.split('>'), k < *conversions);
            }
        }
        m
    }

    #[test]
    fn two_channels_by_hand() {
        // A alone: 10 journeys, 2 convert (v = 0.2); B alone: 10, 1 (0.1); A and B: 10, 5 (0.5).
        // φ_A = ½(v(A) − v(∅)) + ½(v(AB) − v(B)) = ½·0.2 + ½·0.4 = 0.3
        // φ_B = ½(v(B) − v(∅)) + ½(v(AB) − v(A)) = ½·0.1 + ½·0.3 = 0.2; φ_A + φ_B = v(AB).
        let m = model(&[("A", 10, 2), ("B", 10, 1), ("A>B", 6, 3), ("B>A", 4, 2)]);
        let v = m.values(&channel_set(["A", "B"]));
        assert!((v[0] - 0.3).abs() < 1e-12, "{v:?}");
        assert!((v[1] - 0.2).abs() < 1e-12, "{v:?}");
    }

    #[test]
    fn three_channels_by_hand() {
        // v(A) = 0.2, v(B) = 0, v(C) = 0.4, v(AB) = 0.3, v(AC) = 0.5, v(BC) = 0.4, v(ABC) = 0.9
        // (each set 10 journeys). By the 6 orders of joining (each 1/6):
        //   A: ABC, ACB → v(A) = 0.2 twice; BAC → v(AB) − v(B) = 0.3; BCA → v(ABC) − v(BC) = 0.5;
        //      CAB → v(AC) − v(C) = 0.1; CBA → 0.5. φ_A = (0.2 + 0.2 + 0.3 + 0.5 + 0.1 + 0.5)/6 = 0.3
        //   B: ABC → 0.1; ACB → 0.4; BAC, BCA → 0; CAB → 0.4; CBA → 0. φ_B = 0.9/6 = 0.15
        //   C: 0.9 − 0.3 − 0.15 = 0.45 (efficiency: the values add up to v(ABC)).
        let m = model(&[
            ("A", 10, 2),
            ("B", 10, 0),
            ("C", 10, 4),
            ("A>B", 10, 3),
            ("C>A", 10, 5),
            ("B>C", 10, 4),
            ("A>B>C>A", 10, 9),
        ]);
        let v = m.values(&channel_set(["A", "B", "C"]));
        assert!((v[0] - 0.3).abs() < 1e-12, "{v:?}");
        assert!((v[1] - 0.15).abs() < 1e-12, "{v:?}");
        assert!((v[2] - 0.45).abs() < 1e-12, "{v:?}");
    }

    #[test]
    fn a_set_beyond_the_exact_limit_is_split_equally() {
        let names: Vec<String> = (0..=MAX_EXACT_CHANNELS)
            .map(|i| format!("c{i:02}"))
            .collect();
        let mut m = ShapleyModel::default();
        m.add(names.iter().map(String::as_str), true);
        m.add(names.iter().map(String::as_str), false);
        let v = m.values(&channel_set(names.iter().map(String::as_str)));
        let each = 0.5 / names.len() as f64;
        assert!(v.iter().all(|x| (x - each).abs() < 1e-15));
    }
}
