//! Data-driven attribution by the first-order Markov-chain removal effect (Anderl, Becker, von
//! Wangenheim and Schumann 2016, "Mapping the customer journey"). States are `start`, one per
//! channel, `conversion` and `null`; transition probabilities are counted from the journeys; a
//! channel's removal effect is the share of conversion probability lost when journeys reaching it
//! go to `null` instead.
//!
//! The conversion probabilities are solved exactly (absorbing-chain linear system), where the
//! reference implementation (ChannelAttribution) simulates paths; its output on the same paths is
//! the validation (tests/attribution_reference.rs).
//!
//! One sparse solve serves every channel (`chain.rs`): removing channel k loses exactly the
//! journeys that reach k and would have converted from there, so
//! P(conversion without k) = P(conversion) − P(reach k)·P(conversion | at k), and the removal
//! effect is P(reach k)·P(conversion | at k) / P(conversion). Memory grows with the transitions
//! seen (and their fill), not with channels², and is capped (`fit_with`). The dense solver it
//! replaces (one Gaussian elimination of the whole chain per channel) is kept in the tests as
//! the reference.

use std::collections::BTreeMap;

use super::chain;

/// Distinct path with its outcome counts (ChannelAttribution's input shape).
#[derive(Debug, Clone, PartialEq)]
pub struct PathCount {
    pub path: Vec<String>,
    pub conversions: f64,
    pub nulls: f64,
    /// Conversion value on this path.
    pub value: f64,
}

/// A fitted Markov model.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkovModel {
    pub channels: Vec<String>,
    /// P(conversion) from `start`.
    pub conversion_probability: f64,
    /// Removal effect per channel: 1 − P(conversion without it) / P(conversion).
    pub removal_effects: BTreeMap<String, f64>,
    /// Total conversions (and value) attributed per channel: the totals split by removal effect.
    pub conversions: BTreeMap<String, f64>,
    pub value: BTreeMap<String, f64>,
    /// Why the chain was not solved (more fill than allowed), in which case the maps are empty.
    pub unsolved: Option<chain::TooLarge>,
}

/// Entries the sparse elimination may hold by default (about 40 bytes each, so about 80 MiB):
/// the demo's journeys over 10,000 campaigns need a small fraction of it (docs/profit.md).
pub const DEFAULT_MAX_ENTRIES: usize = 2_000_000;

/// Fit the model and attribute the paths' total conversions and value by removal effect, with
/// the default bound on the solver's memory.
pub fn fit(paths: &[PathCount]) -> MarkovModel {
    fit_with(paths, DEFAULT_MAX_ENTRIES)
}

/// [`fit`] with at most `max_entries` entries held by the solver. A chain that needs more is not
/// solved: the model says so in `unsolved` (and the log), with no removal effect, never an
/// approximation.
pub fn fit_with(paths: &[PathCount], max_entries: usize) -> MarkovModel {
    let solved = solve_paths(
        paths,
        |p| (p.path.as_slice(), p.conversions, p.nulls, p.value),
        max_entries,
    );
    let channels: Vec<String> = solved.channels.iter().map(|c| c.to_string()).collect();
    let Some(removal) = solved.removal else {
        return MarkovModel {
            channels,
            conversion_probability: f64::NAN,
            removal_effects: BTreeMap::new(),
            conversions: BTreeMap::new(),
            value: BTreeMap::new(),
            unsolved: solved.unsolved,
        };
    };
    let removal_effects: BTreeMap<String, f64> = channels.iter().cloned().zip(removal).collect();
    let total_re: f64 = removal_effects.values().sum();
    let share = |re: f64| if total_re > 0.0 { re / total_re } else { 0.0 };
    MarkovModel {
        channels,
        conversion_probability: solved.base,
        conversions: removal_effects
            .iter()
            .map(|(c, re)| (c.clone(), share(*re) * solved.total_conv))
            .collect(),
        value: removal_effects
            .iter()
            .map(|(c, re)| (c.clone(), share(*re) * solved.total_value))
            .collect(),
        removal_effects,
        unsolved: None,
    }
}

/// What [`solve_paths`] found.
pub(crate) struct Solved<'a, K> {
    /// The channels of the paths, sorted and distinct: the chain's states, in order.
    pub channels: Vec<&'a K>,
    /// P(conversion) from the start (NaN when unsolved).
    pub base: f64,
    /// Removal effect of each channel (same order as `channels`); `None` when unsolved.
    pub removal: Option<Vec<f64>>,
    /// Conversions and value of the non-empty paths.
    pub total_conv: f64,
    pub total_value: f64,
    pub unsolved: Option<chain::TooLarge>,
}

/// The chain of `paths` (each path's channels and its conversions, nulls and value, as `parts`
/// reads them) solved, and every channel's removal effect: [`fit_with`]'s arithmetic for any
/// channel key whose order is the channels' name order (the names, or their ranks among the
/// sorted names), so the states, and every sum, come in the same order either way.
pub(crate) fn solve_paths<'a, T, K: Ord>(
    paths: &'a [T],
    parts: impl Fn(&'a T) -> (&'a [K], f64, f64, f64),
    max_entries: usize,
) -> Solved<'a, K> {
    let mut names: Vec<&K> = paths.iter().flat_map(|p| parts(p).0.iter()).collect();
    names.sort_unstable();
    names.dedup();
    let index = |c: &K| names.binary_search(&c).map_or(0, |i| i as u32);
    // states 0..n are the channels; the start is the distribution of first touches
    let mut states = vec![chain::State::default(); names.len()];
    let mut start: Vec<(u32, f64)> = Vec::new();
    for p in paths {
        let (path, conversions, nulls, _) = parts(p);
        let total = conversions + nulls;
        if path.is_empty() || total <= 0.0 {
            continue;
        }
        let mut from: Option<u32> = None;
        for ch in path {
            let to = index(ch);
            match from {
                None => start.push((to, total)),
                Some(f) => states[f as usize].to.push((to, total)),
            }
            from = Some(to);
        }
        if let Some(last) = from {
            states[last as usize].conv += conversions;
            states[last as usize].null += nulls;
        }
    }
    let solution = chain::solve(&states, &start, max_entries);
    drop(states);
    let (mut total_conv, mut total_value) = (0.0, 0.0);
    for p in paths {
        let (path, conversions, _, value) = parts(p);
        if !path.is_empty() {
            total_conv += conversions;
            total_value += value;
        }
    }
    let sol = match solution {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "Markov attribution not solved");
            return Solved {
                channels: names,
                base: f64::NAN,
                removal: None,
                total_conv,
                total_value,
                unsolved: Some(e),
            };
        }
    };
    let norm: f64 = start.iter().map(|s| s.1).sum();
    // P(conversion) from the start: the first touches' conversion probabilities, weighted
    let base = if norm > 0.0 {
        start
            .iter()
            .map(|&(j, w)| w * sol.conversion[j as usize])
            .sum::<f64>()
            / norm
    } else {
        0.0
    };
    // P(conversion without k) = base − P(reach k)·P(conversion | at k) (strong Markov property)
    let removal = (0..names.len())
        .map(|k| {
            let re = if base > 0.0 {
                sol.reach[k] * sol.conversion[k] / base
            } else {
                0.0
            };
            re.max(0.0)
        })
        .collect();
    Solved {
        channels: names,
        base,
        removal: Some(removal),
        total_conv,
        total_value,
        unsolved: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dense solver adpulse used before (every channel removed in turn, the whole chain
    /// solved by Gaussian elimination each time): the reference of the sparse one.
    mod dense {
        use super::super::PathCount;
        use std::collections::BTreeMap;

        /// Transition weights between states: index 0 = start, 1..=n channels, n+1 conversion, n+2 null.
        struct Chain {
            n: usize,
            /// Row-normalised transition probabilities, (n+3)².
            p: Vec<f64>,
        }

        impl Chain {
            fn from_paths(paths: &[PathCount], index: &BTreeMap<&str, usize>) -> Chain {
                let n = index.len();
                let s = n + 3;
                let (conv, null) = (n + 1, n + 2);
                let mut w = vec![0.0; s * s];
                for pc in paths {
                    let total = pc.conversions + pc.nulls;
                    if pc.path.is_empty() || total <= 0.0 {
                        continue;
                    }
                    let mut from = 0;
                    for ch in &pc.path {
                        let to = index[ch.as_str()];
                        w[from * s + to] += total;
                        from = to;
                    }
                    w[from * s + conv] += pc.conversions;
                    w[from * s + null] += pc.nulls;
                }
                for row in 0..s {
                    let sum: f64 = w[row * s..(row + 1) * s].iter().sum();
                    if sum > 0.0 {
                        for v in &mut w[row * s..(row + 1) * s] {
                            *v /= sum;
                        }
                    }
                }
                Chain { n, p: w }
            }

            /// P(reaching conversion from start), with channel `removed` (1-based) sent to null.
            fn conversion_probability(&self, removed: Option<usize>) -> f64 {
                // Unknowns x_0..x_n (start and channels): x_i = Σ_j P(i,j) x_j + P(i, conv).
                let n = self.n + 1;
                let s = self.n + 3;
                let conv = self.n + 1;
                let mut a = vec![0.0; n * (n + 1)];
                for i in 0..n {
                    let row = &mut a[i * (n + 1)..(i + 1) * (n + 1)];
                    row[i] = 1.0;
                    if Some(i) == removed {
                        // x_removed = 0: reaching the removed channel ends the journey without a sale
                        continue;
                    }
                    for (j, r) in row.iter_mut().enumerate().take(n) {
                        if Some(j) != removed {
                            *r -= self.p[i * s + j];
                        }
                    }
                    row[n] = self.p[i * s + conv];
                }
                solve(&mut a, n).map(|x| x[0]).unwrap_or(0.0)
            }
        }

        /// Gaussian elimination with partial pivoting on an n×(n+1) augmented matrix.
        fn solve(a: &mut [f64], n: usize) -> Option<Vec<f64>> {
            let w = n + 1;
            for col in 0..n {
                let piv = (col..n)
                    .max_by(|&x, &y| a[x * w + col].abs().total_cmp(&a[y * w + col].abs()))?;
                if a[piv * w + col].abs() < 1e-300 {
                    return None;
                }
                if piv != col {
                    for k in 0..w {
                        a.swap(piv * w + k, col * w + k);
                    }
                }
                for r in 0..n {
                    if r != col {
                        let f = a[r * w + col] / a[col * w + col];
                        if f != 0.0 {
                            for k in col..w {
                                a[r * w + k] -= f * a[col * w + k];
                            }
                        }
                    }
                }
            }
            Some((0..n).map(|i| a[i * w + n] / a[i * w + i]).collect())
        }

        /// P(conversion) and the removal effects, as `fit` computed them before.
        pub fn removal_effects(paths: &[PathCount]) -> (f64, BTreeMap<String, f64>) {
            let mut names: Vec<&str> = paths
                .iter()
                .flat_map(|p| p.path.iter().map(String::as_str))
                .collect();
            names.sort_unstable();
            names.dedup();
            let index: BTreeMap<&str, usize> =
                names.iter().enumerate().map(|(i, c)| (*c, i + 1)).collect();
            let chain = Chain::from_paths(paths, &index);
            let base = chain.conversion_probability(None);
            let re = index
                .iter()
                .map(|(c, &i)| {
                    let without = chain.conversion_probability(Some(i));
                    let re = if base > 0.0 {
                        1.0 - without / base
                    } else {
                        0.0
                    };
                    (c.to_string(), re.max(0.0))
                })
                .collect();
            (base, re)
        }
    }

    fn pc(path: &str, conversions: f64, nulls: f64) -> PathCount {
        PathCount {
            path: path.split('>').map(str::to_string).collect(),
            conversions,
            nulls,
            value: conversions,
        }
    }

    #[test]
    fn analyzecore_worked_example() {
        // Bryl's worked example of Anderl et al.'s method: C1>C2>C3 converts, C1 and C2>C3 do not.
        // By hand: P(conv) = P(s→C1)·P(C1→C2)·1·P(C3→conv) + P(s→C2)·1·P(C3→conv)
        //                  = 2/3 · 1/2 · 1/2 + 1/3 · 1/2 = 1/3; removing any channel leaves 0 or
        // halves it: C1 → 1/6 (RE 0.5), C2 → 0 (RE 1), C3 → 0 (RE 1).
        let m = fit(&[
            pc("C1>C2>C3", 1.0, 0.0),
            pc("C1", 0.0, 1.0),
            pc("C2>C3", 0.0, 1.0),
        ]);
        assert!((m.conversion_probability - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.removal_effects["C1"] - 0.5).abs() < 1e-12);
        assert!((m.removal_effects["C2"] - 1.0).abs() < 1e-12);
        assert!((m.removal_effects["C3"] - 1.0).abs() < 1e-12);
        assert!((m.conversions["C1"] - 0.2).abs() < 1e-12);
        assert!((m.conversions["C2"] - 0.4).abs() < 1e-12);
    }

    #[test]
    fn loops_are_solved_exactly() {
        // pychattr's README example (three converting paths with loops): A's removal kills every
        // conversion, B's halves P(conv) from A (3/8 ÷ (1 − 2/8) = 1/2): A 2, B 1 of 3; the
        // simulated reference printed 1.991 and 1.009.
        let m = fit(&[
            pc("A>B>A>B>B>A", 1.0, 0.0),
            pc("A>B>B>A>A", 1.0, 0.0),
            pc("A>A", 1.0, 0.0),
        ]);
        assert!((m.conversions["A"] - 2.0).abs() < 1e-9, "{m:?}");
        assert!((m.conversions["B"] - 1.0).abs() < 1e-9);
    }

    /// Random paths over a few channels, with repeats and loops (A>B>A, A>A).
    fn random_paths() -> impl proptest::strategy::Strategy<Value = Vec<PathCount>> {
        use proptest::prelude::*;
        let path = proptest::collection::vec(0u8..6, 1..7);
        proptest::collection::vec((path, 0u8..4, 0u8..4, 0u32..500), 1..25).prop_map(|rows| {
            rows.into_iter()
                .map(|(p, c, n, v)| PathCount {
                    path: p.iter().map(|i| format!("c{i}")).collect(),
                    conversions: f64::from(c),
                    nulls: f64::from(n),
                    value: f64::from(v),
                })
                .collect()
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn sparse_equals_the_dense_solver(paths in random_paths()) {
            let m = fit(&paths);
            let (base, re) = dense::removal_effects(&paths);
            proptest::prop_assert!(m.unsolved.is_none());
            proptest::prop_assert!((m.conversion_probability - base).abs() < 1e-9,
                "P(conv) {} vs dense {}", m.conversion_probability, base);
            proptest::prop_assert_eq!(m.removal_effects.len(), re.len());
            for (c, want) in &re {
                let got = m.removal_effects[c];
                proptest::prop_assert!((got - want).abs() < 1e-9, "{}: {} vs dense {}", c, got, want);
            }
        }
    }

    #[test]
    fn a_chain_past_the_entry_cap_is_reported_not_approximated() {
        // c0..c9 all lead to one another: the elimination needs more than 10 entries
        let paths: Vec<PathCount> = (0..10)
            .flat_map(|i| (0..10).map(move |j| pc(&format!("c{i}>c{j}"), 1.0, 1.0)))
            .collect();
        let m = fit_with(&paths, 10);
        let e = m.unsolved.expect("too large");
        assert_eq!((e.states, e.limit), (10, 10));
        assert!(m.removal_effects.is_empty() && m.conversions.is_empty());
        // with the default cap the same chain is solved, and agrees with the dense solver
        let m = fit(&paths);
        let (_, re) = dense::removal_effects(&paths);
        for (c, want) in re {
            assert!((m.removal_effects[&c] - want).abs() < 1e-12);
        }
    }
}
