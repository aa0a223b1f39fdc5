//! Data-driven attribution by the first-order Markov-chain removal effect (Anderl, Becker, von
//! Wangenheim and Schumann 2016, "Mapping the customer journey"). States are `start`, one per
//! channel, `conversion` and `null`; transition probabilities are counted from the journeys; a
//! channel's removal effect is the share of conversion probability lost when journeys reaching it
//! go to `null` instead.
//!
//! The conversion probabilities are solved exactly (absorbing-chain linear system), where the
//! reference implementation (ChannelAttribution) simulates paths; its output on the same paths is
//! the validation (tests/attribution_reference.rs).

use std::collections::BTreeMap;

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
}

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
        let piv =
            (col..n).max_by(|&x, &y| a[x * w + col].abs().total_cmp(&a[y * w + col].abs()))?;
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

/// Fit the model and attribute the paths' total conversions and value by removal effect.
pub fn fit(paths: &[PathCount]) -> MarkovModel {
    let mut names: Vec<&str> = paths
        .iter()
        .flat_map(|p| p.path.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, c)| (*c, i + 1)).collect();
    let chain = Chain::from_paths(paths, &index);
    let base = chain.conversion_probability(None);
    let mut removal_effects = BTreeMap::new();
    for (c, &i) in &index {
        let without = chain.conversion_probability(Some(i));
        let re = if base > 0.0 {
            1.0 - without / base
        } else {
            0.0
        };
        removal_effects.insert(c.to_string(), re.max(0.0));
    }
    let total_re: f64 = removal_effects.values().sum();
    let total_conv: f64 = paths
        .iter()
        .filter(|p| !p.path.is_empty())
        .map(|p| p.conversions)
        .sum();
    let total_value: f64 = paths
        .iter()
        .filter(|p| !p.path.is_empty())
        .map(|p| p.value)
        .sum();
    let share = |re: f64| if total_re > 0.0 { re / total_re } else { 0.0 };
    MarkovModel {
        channels: names.iter().map(|c| c.to_string()).collect(),
        conversion_probability: base,
        conversions: removal_effects
            .iter()
            .map(|(c, re)| (c.clone(), share(*re) * total_conv))
            .collect(),
        value: removal_effects
            .iter()
            .map(|(c, re)| (c.clone(), share(*re) * total_value))
            .collect(),
        removal_effects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
