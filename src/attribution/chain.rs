//! Sparse absorbing Markov chains: the conversion probability of every state, and the probability
//! of ever reaching each state from the start, without a dense matrix. Owns the numerics of the
//! Markov removal effect (`markov.rs` builds the chain from paths and reads the answer).
//!
//! States `0..n` are transient (the journey goes on); each has raw transition weights to other
//! transient states and to the two absorbing states, `conversion` and `null`. With
//! `Ã = diag(W) − w` (W a state's total weight, w the weights between transient states; the
//! row-normalised `I − Q` scaled by W), and `Z = Ã⁻¹`:
//! - `x = Z·conv` is P(conversion | at state i);
//! - `y = πᵀZ` for the start distribution π, and `h_k = y_k / Z_kk` is P(ever visiting k) (the
//!   expected visits to k, divided by the expected visits to k once there: the strong Markov
//!   property), so P(conversion avoiding k) = x_π − h_k·x_k.
//!
//! Method: Gaussian elimination of the states in minimum-degree order (sparse LDU of Ã), in the
//! Grassmann–Taksar–Heyman form (a pivot is the state's weight to the states still present plus
//! its absorption, never `1 − q_kk`: nothing is subtracted, every quantity stays non-negative),
//! then the diagonal of Z by Takahashi's equations on the filled pattern (Erisman and Tinney
//! 1975). States on no loop eliminate without fill, so an acyclic chain costs O(edges); a
//! strongly connected part costs what its fill costs. The fill is capped: past `max_entries`
//! the solve stops with [`TooLarge`] (its memory stays bounded by the cap), never an approximate
//! answer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A chain whose elimination needed more than the allowed entries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "Markov chain of {states} states needs more than {limit} entries to solve exactly \
     (stopped after eliminating {eliminated}); raise `[attribution] markov_max_entries`"
)]
pub struct TooLarge {
    pub states: usize,
    pub eliminated: usize,
    pub limit: usize,
}

/// A transient state's outgoing weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// To other transient states (self-loops are ignored: they do not change where the journey
    /// ends, only how long it stays).
    pub to: Vec<(u32, f64)>,
    /// To conversion.
    pub conv: f64,
    /// To null.
    pub null: f64,
}

/// The answer for every transient state.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// P(conversion | at state i).
    pub conversion: Vec<f64>,
    /// P(the journey ever visits state i), starting from the start distribution.
    pub reach: Vec<f64>,
    /// Entries the elimination held at most (the memory it needed).
    pub peak_entries: usize,
}

/// One eliminated state: its pivot and its neighbours still present then, with the weights
/// `(to it, from it)` at that moment and, after the back pass, Z at those positions.
struct Eliminated {
    state: u32,
    pivot: f64,
    /// Neighbour (sorted by state), w(state → neighbour), w(neighbour → state).
    nb: Vec<(u32, f64, f64)>,
    /// Z[state][nb], Z[nb][state].
    z: Vec<(f64, f64)>,
    z_diag: f64,
}

/// Solve the chain: `states` with their weights, `start` the weights of the first touches (the
/// start distribution, unnormalised). `max_entries` caps the pattern entries held at once.
pub fn solve(
    states: &[State],
    start: &[(u32, f64)],
    max_entries: usize,
) -> Result<Solution, TooLarge> {
    let n = states.len();
    let too_large = |eliminated| TooLarge {
        states: n,
        eliminated,
        limit: max_entries,
    };
    // symmetric pattern: adj[i][j] = (w_ij, w_ji), held in adj[i] and (mirrored) in adj[j]
    let mut adj: Vec<HashMap<u32, (f64, f64)>> = vec![HashMap::new(); n];
    let mut exit: Vec<f64> = states.iter().map(|s| s.conv + s.null).collect();
    let mut conv: Vec<f64> = states.iter().map(|s| s.conv).collect();
    let mut entries = 0usize;
    for (i, s) in states.iter().enumerate() {
        for &(j, w) in &s.to {
            if j as usize == i || w == 0.0 {
                continue;
            }
            add(&mut adj, &mut entries, i as u32, j, w, 0.0);
        }
        if entries > max_entries {
            return Err(too_large(0));
        }
    }
    let mut peak = entries;
    let mut held = 0usize; // entries of the eliminated states' records
    let mut done = vec![false; n];
    let mut heap: BinaryHeap<Reverse<(usize, u32)>> =
        (0..n).map(|i| Reverse((adj[i].len(), i as u32))).collect();
    let mut order: Vec<Eliminated> = Vec::with_capacity(n);
    while let Some(Reverse((deg, k))) = heap.pop() {
        let ku = k as usize;
        if done[ku] || adj[ku].len() != deg {
            continue; // a stale degree: the state is queued again with its current one
        }
        done[ku] = true;
        let mut nb: Vec<(u32, f64, f64)> = std::mem::take(&mut adj[ku])
            .into_iter()
            .map(|(j, (out, inw))| (j, out, inw))
            .collect();
        nb.sort_unstable_by_key(|e| e.0);
        for &(i, _, _) in &nb {
            adj[i as usize].remove(&k);
        }
        entries -= 2 * nb.len();
        held += nb.len();
        // GTH pivot: k's weight to the states still present plus its absorption
        let pivot = exit[ku] + nb.iter().map(|e| e.1).sum::<f64>();
        if pivot > 0.0 {
            // a journey at i that went to k now goes where k would have sent it
            for &(i, _, w_ik) in &nb {
                let f = w_ik / pivot;
                exit[i as usize] += f * exit[ku];
                conv[i as usize] += f * conv[ku];
            }
            for a in 0..nb.len() {
                let (i, w_ki, w_ik) = nb[a];
                for &(j, w_kj, w_jk) in &nb[a + 1..] {
                    add(
                        &mut adj,
                        &mut entries,
                        i,
                        j,
                        w_ik * w_kj / pivot,
                        w_jk * w_ki / pivot,
                    );
                }
                if entries + held > max_entries {
                    return Err(too_large(order.len()));
                }
            }
        }
        peak = peak.max(entries + held);
        for &(i, _, _) in &nb {
            heap.push(Reverse((adj[i as usize].len(), i)));
        }
        let z = Vec::with_capacity(nb.len());
        order.push(Eliminated {
            state: k,
            pivot,
            nb,
            z,
            z_diag: 0.0,
        });
    }
    drop(adj);
    let mut pos = vec![0usize; n];
    for (p, e) in order.iter().enumerate() {
        pos[e.state as usize] = p;
    }
    // x = Z·conv: back substitution through U
    let x = back_substitute(&order, &conv, |&(j, w_kj, _)| (j, w_kj));
    // y = πᵀZ: Ãᵀy = π with Ãᵀ = UᵀDLᵀ, forward in elimination order, then back
    let total: f64 = start.iter().map(|s| s.1).sum();
    let mut s = vec![0.0; n];
    if total > 0.0 {
        for &(j, w) in start {
            s[j as usize] += w / total;
        }
    }
    for e in &order {
        let k = e.state as usize;
        if e.pivot > 0.0 && s[k] != 0.0 {
            let sk = s[k] / e.pivot;
            for &(j, w_kj, _) in &e.nb {
                s[j as usize] += w_kj * sk;
            }
        }
    }
    let y = back_substitute(&order, &s, |&(i, _, w_ik)| (i, w_ik));
    // diag(Z) by Takahashi's equations, the last eliminated first. Every pair of k's neighbours
    // is in the filled pattern (eliminating k joined them), held by whichever of the two was
    // eliminated first, so each Z needed is known by the time it is needed.
    for p in (0..order.len()).rev() {
        if order[p].pivot <= 0.0 {
            continue;
        }
        let e = &order[p];
        let mut z = Vec::with_capacity(e.nb.len());
        for &(j, _, _) in &e.nb {
            let (mut z_jk, mut z_kj) = (0.0, 0.0);
            for &(l, w_kl, w_lk) in &e.nb {
                let (z_jl, z_lj) = later_z(&order, &pos, j, l);
                z_jk += z_jl * w_lk;
                z_kj += w_kl * z_lj;
            }
            z.push((z_kj / e.pivot, z_jk / e.pivot));
        }
        let sum: f64 = e.nb.iter().zip(&z).map(|(nb, z)| nb.1 * z.1).sum();
        let z_diag = (1.0 + sum) / e.pivot;
        let e = &mut order[p];
        e.z = z;
        e.z_diag = z_diag;
    }
    let mut reach = vec![0.0; n];
    for e in &order {
        if e.z_diag > 0.0 {
            reach[e.state as usize] = y[e.state as usize] / e.z_diag;
        }
    }
    Ok(Solution {
        conversion: x,
        reach,
        peak_entries: peak,
    })
}

/// Add weights `w_ij` and `w_ji` to the pair (i, j) of the symmetric pattern.
fn add(
    adj: &mut [HashMap<u32, (f64, f64)>],
    entries: &mut usize,
    i: u32,
    j: u32,
    w_ij: f64,
    w_ji: f64,
) {
    let e = adj[i as usize].entry(j).or_insert_with(|| {
        *entries += 2;
        (0.0, 0.0)
    });
    e.0 += w_ij;
    e.1 += w_ji;
    let e = adj[j as usize].entry(i).or_default();
    e.0 += w_ji;
    e.1 += w_ij;
}

/// (Z[j][l], Z[l][j]) for two states eliminated later than the one being processed.
/// Back substitution, the last eliminated state first: `x[k] = (rhs[k] + Σ w·x[j]) / pivot[k]`
/// over k's neighbours j, `weight` picking (j, w) from a neighbour entry (U's row or Lᵀ's).
/// States with no pivot (absorbing) stay 0.
fn back_substitute(
    order: &[Eliminated],
    rhs: &[f64],
    weight: impl Fn(&(u32, f64, f64)) -> (u32, f64),
) -> Vec<f64> {
    let mut x = vec![0.0; rhs.len()];
    for e in order.iter().rev() {
        if e.pivot > 0.0 {
            let k = e.state as usize;
            let sum: f64 =
                e.nb.iter()
                    .map(|entry| {
                        let (j, w) = weight(entry);
                        w * x[j as usize]
                    })
                    .sum();
            x[k] = (rhs[k] + sum) / e.pivot;
        }
    }
    x
}

fn later_z(order: &[Eliminated], pos: &[usize], j: u32, l: u32) -> (f64, f64) {
    if j == l {
        let d = order[pos[j as usize]].z_diag;
        return (d, d);
    }
    let (first, other, flip) = if pos[j as usize] < pos[l as usize] {
        (j, l, false)
    } else {
        (l, j, true)
    };
    let e = &order[pos[first as usize]];
    // `nb` is sorted by state; the other state is there (the clique property)
    let (a, b) = match e.nb.binary_search_by_key(&other, |x| x.0) {
        Ok(c) => e.z.get(c).copied().unwrap_or_default(),
        Err(_) => (0.0, 0.0),
    };
    if flip { (b, a) } else { (a, b) }
}
