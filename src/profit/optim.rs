//! Nelder-Mead simplex minimiser for the small (3-4 parameter), smooth likelihoods of the CLV
//! models. Derivative-free on purpose: the BG/NBD and Gamma-Gamma likelihoods are fitted on log
//! parameters (so every point is admissible) and their gradients are not worth hand-deriving for
//! four dimensions. Restarts from the best vertex until a restart no longer improves, the usual
//! guard against the simplex collapsing early (Nelder and Mead 1965; Lagarias et al. 1998).

/// Result of a minimisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    /// Function evaluations used.
    pub evaluations: usize,
    /// False when the evaluation budget ran out before the simplex converged.
    pub converged: bool,
}

/// Minimise `f` from `x0`. `step` is the initial simplex edge, `tol` the spread of function values
/// at which the simplex is considered converged, `max_evals` the total budget.
pub fn nelder_mead(
    mut f: impl FnMut(&[f64]) -> f64,
    x0: &[f64],
    step: f64,
    tol: f64,
    max_evals: usize,
) -> Minimum {
    let mut evals = 0usize;
    let mut best = x0.to_vec();
    let mut best_val = f(&best);
    evals += 1;
    let mut converged = false;
    // Restarts: a collapsed simplex can stall short of the optimum; a fresh one around the best
    // point either confirms it (no improvement) or moves on.
    for _ in 0..10 {
        let (x, v, used, conv) =
            simplex_run(&mut f, &best, step, tol, max_evals - evals.min(max_evals));
        evals += used;
        let improved = v < best_val - tol;
        if v < best_val {
            best = x;
            best_val = v;
        }
        converged = conv;
        if !improved || evals >= max_evals {
            break;
        }
    }
    Minimum {
        x: best,
        value: best_val,
        evaluations: evals,
        converged,
    }
}

fn simplex_run(
    f: &mut impl FnMut(&[f64]) -> f64,
    x0: &[f64],
    step: f64,
    tol: f64,
    budget: usize,
) -> (Vec<f64>, f64, usize, bool) {
    let n = x0.len();
    let mut evals = 0usize;
    let mut eval = |x: &[f64], evals: &mut usize| {
        *evals += 1;
        let v = f(x);
        // A non-finite value (overflow at an extreme point) counts as "very bad", never as a
        // minimum.
        if v.is_finite() { v } else { f64::MAX }
    };
    let mut pts: Vec<Vec<f64>> = vec![x0.to_vec()];
    for i in 0..n {
        let mut p = x0.to_vec();
        p[i] += step;
        pts.push(p);
    }
    let mut vals: Vec<f64> = pts.iter().map(|p| eval(p, &mut evals)).collect();
    let (alpha, gamma, rho, sigma) = (1.0, 2.0, 0.5, 0.5);
    loop {
        // order vertices best to worst
        let mut idx: Vec<usize> = (0..=n).collect();
        idx.sort_by(|&a, &b| vals[a].total_cmp(&vals[b]));
        pts = idx.iter().map(|&i| pts[i].clone()).collect();
        vals = idx.iter().map(|&i| vals[i]).collect();
        if (vals[n] - vals[0]).abs() <= tol {
            return (pts[0].clone(), vals[0], evals, true);
        }
        if evals >= budget {
            return (pts[0].clone(), vals[0], evals, false);
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| pts[..n].iter().map(|p| p[j]).sum::<f64>() / n as f64)
            .collect();
        let along = |c: f64| -> Vec<f64> {
            (0..n)
                .map(|j| centroid[j] + c * (pts[n][j] - centroid[j]))
                .collect()
        };
        let xr = along(-alpha);
        let fr = eval(&xr, &mut evals);
        if fr < vals[0] {
            let xe = along(-gamma);
            let fe = eval(&xe, &mut evals);
            if fe < fr {
                pts[n] = xe;
                vals[n] = fe;
            } else {
                pts[n] = xr;
                vals[n] = fr;
            }
        } else if fr < vals[n - 1] {
            pts[n] = xr;
            vals[n] = fr;
        } else {
            // contraction: outside when the reflection beat the worst point, inside otherwise
            let (xc, fc) = if fr < vals[n] {
                let xc = along(-rho);
                let fc = eval(&xc, &mut evals);
                (xc, fc)
            } else {
                let xc = along(rho);
                let fc = eval(&xc, &mut evals);
                (xc, fc)
            };
            if fc < vals[n].min(fr) {
                pts[n] = xc;
                vals[n] = fc;
            } else {
                // shrink towards the best vertex
                for i in 1..=n {
                    let p: Vec<f64> = (0..n)
                        .map(|j| pts[0][j] + sigma * (pts[i][j] - pts[0][j]))
                        .collect();
                    vals[i] = eval(&p, &mut evals);
                    pts[i] = p;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rosenbrock's valley from its classic start: minimum 0 at (1, 1), a standard hard case for
    /// simplex methods, within `budget` evaluations.
    fn rosenbrock(budget: usize) -> Minimum {
        nelder_mead(
            |x| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2),
            &[-1.2, 1.0],
            0.5,
            1e-14,
            budget,
        )
    }

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let m = rosenbrock(20_000);
        assert!((m.x[0] - 1.0).abs() < 1e-4, "{m:?}");
        assert!((m.x[1] - 1.0).abs() < 1e-4, "{m:?}");
        assert!(m.converged);
    }

    #[test]
    fn reports_an_exhausted_budget() {
        let m = rosenbrock(20);
        assert!(!m.converged);
    }
}
