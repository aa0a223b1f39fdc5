//! Campaign score (probability that a campaign is profitable next week) and conversion
//! probability, both smartcore logistic regressions.
//!
//! smartcore's `LogisticRegression` has no `predict_proba`, so [`Logit`] keeps the fitted
//! coefficients and intercept and computes `sigmoid(x . w + b)` itself, on features
//! standardised with the training means and deviations.
//!
//! No real campaign or session history is available to this crate yet, so the evaluations run
//! on **synthetic data from a seeded RNG** ([`synth_campaigns`], [`synth_sessions`]), generated
//! from a latent-quality model loosely calibrated on the seed's crisis; the held-out figures
//! show the pipeline works and is calibrated, not how well it will do on MOI's accounts.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use super::ModelError;
use super::stats;

/// A fitted binary logistic model with probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Logit {
    /// Feature names, in column order.
    pub features: Vec<&'static str>,
    /// Coefficients on standardised features.
    pub coefficients: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
    means: Vec<f64>,
    sds: Vec<f64>,
}

impl Logit {
    /// Fits on rows `x` and 0/1 labels `y` with L2 penalty `alpha`.
    pub fn fit(
        features: Vec<&'static str>,
        x: &[Vec<f64>],
        y: &[u8],
        alpha: f64,
    ) -> Result<Self, ModelError> {
        if x.len() != y.len() || x.is_empty() {
            return Err(ModelError::InvalidParameter(format!(
                "{} rows of features for {} labels",
                x.len(),
                y.len()
            )));
        }
        let d = features.len();
        let (mut means, mut sds) = (Vec::with_capacity(d), Vec::with_capacity(d));
        for j in 0..d {
            let col: Vec<f64> = x
                .iter()
                .map(|r| <[f64]>::get(r, j).copied().unwrap_or(0.0))
                .collect();
            let m = stats::mean(&col);
            let sd = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / col.len() as f64).sqrt();
            means.push(m);
            sds.push(if sd > 0.0 { sd } else { 1.0 });
        }
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| {
                (0..d)
                    .map(|j| (<[f64]>::get(r, j).copied().unwrap_or(0.0) - means[j]) / sds[j])
                    .collect()
            })
            .collect();
        let xm = DenseMatrix::from_2d_vec(&z).map_err(|e| ModelError::Fit(e.to_string()))?;
        let yv: Vec<u32> = y.iter().map(|v| u32::from(*v > 0)).collect();
        if yv.iter().all(|v| *v == yv[0]) {
            return Err(ModelError::Fit(
                "all labels are equal: nothing to learn".into(),
            ));
        }
        let lr: LogisticRegression<f64, u32, DenseMatrix<f64>, Vec<u32>> = LogisticRegression::fit(
            &xm,
            &yv,
            LogisticRegressionParameters::default().with_alpha(alpha),
        )
        .map_err(|e| ModelError::Fit(e.to_string()))?;
        let coefficients: Vec<f64> = (0..d).map(|j| *lr.coefficients().get((0, j))).collect();
        let intercept = *lr.intercept().get((0, 0));
        Ok(Logit {
            features,
            coefficients,
            intercept,
            means,
            sds,
        })
    }

    /// Probability of the positive class.
    pub fn predict_proba(&self, row: &[f64]) -> f64 {
        let s: f64 = self
            .coefficients
            .iter()
            .enumerate()
            .map(|(j, w)| {
                w * (<[f64]>::get(row, j).copied().unwrap_or(self.means[j]) - self.means[j])
                    / self.sds[j]
            })
            .sum();
        1.0 / (1.0 + (-(s + self.intercept)).exp())
    }
}

/// Held-out classification figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierEval {
    /// Model name.
    pub name: &'static str,
    /// Training rows.
    pub train_rows: usize,
    /// Held-out rows.
    pub test_rows: usize,
    /// Positive rate in the held-out rows.
    pub base_rate: f64,
    /// Area under the ROC curve.
    pub auc: f64,
    /// Brier score of the model.
    pub brier: f64,
    /// Brier score of always predicting the training base rate.
    pub brier_base: f64,
    /// Log loss of the model.
    pub log_loss: f64,
    /// Largest gap between mean predicted and observed rate over probability deciles.
    pub max_calibration_gap: f64,
}

/// Area under the ROC curve (Mann-Whitney, ties counted half).
pub fn auc(p: &[f64], y: &[u8]) -> f64 {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|a, b| p[*a].total_cmp(&p[*b]));
    let (mut rank_sum, mut npos) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && p[idx[j]] == p[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j + 1) as f64 / 2.0;
        for k in &idx[i..j] {
            if y[*k] > 0 {
                rank_sum += avg_rank;
                npos += 1.0;
            }
        }
        i = j;
    }
    let nneg = p.len() as f64 - npos;
    if npos == 0.0 || nneg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - npos * (npos + 1.0) / 2.0) / (npos * nneg)
}

fn evaluate(
    name: &'static str,
    model: &Logit,
    train_y: &[u8],
    test_x: &[Vec<f64>],
    test_y: &[u8],
) -> ClassifierEval {
    let p: Vec<f64> = test_x.iter().map(|r| model.predict_proba(r)).collect();
    let yf: Vec<f64> = test_y.iter().map(|v| f64::from(*v)).collect();
    let train_rate = stats::mean(&train_y.iter().map(|v| f64::from(*v)).collect::<Vec<_>>());
    let brier = stats::mean(
        &p.iter()
            .zip(&yf)
            .map(|(a, b)| (a - b).powi(2))
            .collect::<Vec<_>>(),
    );
    let brier_base = stats::mean(
        &yf.iter()
            .map(|b| (train_rate - b).powi(2))
            .collect::<Vec<_>>(),
    );
    let log_loss = stats::mean(
        &p.iter()
            .zip(&yf)
            .map(|(a, b)| {
                let a = a.clamp(1e-12, 1.0 - 1e-12);
                -(b * a.ln() + (1.0 - b) * (1.0 - a).ln())
            })
            .collect::<Vec<_>>(),
    );
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|a, b| p[*a].total_cmp(&p[*b]));
    let mut gap: f64 = 0.0;
    for chunk in idx.chunks(idx.len().div_ceil(10).max(1)) {
        let mp = stats::mean(&chunk.iter().map(|i| p[*i]).collect::<Vec<_>>());
        let my = stats::mean(&chunk.iter().map(|i| yf[*i]).collect::<Vec<_>>());
        gap = gap.max((mp - my).abs());
    }
    ClassifierEval {
        name,
        train_rows: train_y.len(),
        test_rows: test_y.len(),
        base_rate: stats::mean(&yf),
        auc: auc(&p, test_y),
        brier,
        brier_base,
        log_loss,
        max_calibration_gap: gap,
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random();
    let v: f64 = rng.random();
    (-2.0 * (1.0 - u).ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Campaign-score features, in column order.
pub const CAMPAIGN_FEATURES: [&str; 6] = [
    "roas_7d",
    "roas_trend",
    "ctr_7d",
    "cr_7d",
    "ln_cpc_7d",
    "ln_spend_7d",
];

/// Synthetic campaign-weeks: each campaign has a latent quality that drifts week to week; the
/// week's KPIs are noisy views of it; the label is whether next week's revenue exceeds its spend.
/// Returns (campaign id, features, label) rows.
pub fn synth_campaigns(campaigns: usize, weeks: usize, seed: u64) -> Vec<(usize, Vec<f64>, u8)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for c in 0..campaigns {
        // Most campaigns lose money (the seed's ROI is -91%); a minority are profitable.
        let mut q = -0.8 + 0.9 * normal(&mut rng);
        let spend = (9.0 + 1.0 * normal(&mut rng)).exp();
        let mut prev_roas = (q + 0.4 * normal(&mut rng)).exp();
        for _ in 0..weeks {
            let roas = (q + 0.4 * normal(&mut rng)).exp();
            let ctr = 0.01 * (0.5 * q + 0.3 * normal(&mut rng)).exp();
            let cr = 0.002 * (0.7 * q + 0.4 * normal(&mut rng)).exp();
            let cpc = 20.0 * (-0.3 * q + 0.3 * normal(&mut rng)).exp();
            let week_spend = spend * (0.2 * normal(&mut rng)).exp();
            let q_next = 0.85 * q + 0.15 * -0.8 + 0.25 * normal(&mut rng);
            let roas_next = (q_next + 0.4 * normal(&mut rng)).exp();
            out.push((
                c,
                vec![roas, roas - prev_roas, ctr, cr, cpc.ln(), week_spend.ln()],
                u8::from(roas_next > 1.0),
            ));
            prev_roas = roas;
            q = q_next;
        }
    }
    out
}

/// Conversion-probability features, in column order.
pub const SESSION_FEATURES: [&str; 6] = [
    "paid_traffic",
    "mobile",
    "returning",
    "ln_pages",
    "added_to_cart",
    "ln_price_viewed",
];

/// Synthetic sessions with a logistic ground truth (about 2% convert: higher than MOI's 0.024%
/// click-to-purchase rate, so a modest sample has enough positives to evaluate).
pub fn synth_sessions(n: usize, seed: u64) -> Vec<(Vec<f64>, u8)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let paid = f64::from(u8::from(rng.random::<f64>() < 0.6));
            let mobile = f64::from(u8::from(rng.random::<f64>() < 0.7));
            let returning = f64::from(u8::from(rng.random::<f64>() < 0.25));
            let pages = (1.0 + 1.0 * normal(&mut rng).abs()).exp().ln();
            let cart = f64::from(u8::from(rng.random::<f64>() < 0.05 + 0.1 * returning));
            let price = (10.0 + 0.8 * normal(&mut rng)).max(6.0);
            let logit =
                -5.2 - 0.4 * paid - 0.5 * mobile + 0.8 * returning + 0.9 * pages + 2.2 * cart
                    - 0.3 * (price - 10.0);
            let p = 1.0 / (1.0 + (-logit).exp());
            let y = u8::from(rng.random::<f64>() < p);
            (vec![paid, mobile, returning, pages, cart, price], y)
        })
        .collect()
}

/// Fits and evaluates both models on synthetic data: campaign score split by campaign (30% of
/// the campaigns held out), conversion probability on a held-out 30% of sessions.
pub fn evaluate_synthetic() -> Result<(Logit, ClassifierEval, Logit, ClassifierEval), ModelError> {
    let rows = synth_campaigns(400, 12, 11);
    let (train, test): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(c, _, _)| c % 10 < 7);
    let tx: Vec<Vec<f64>> = train.iter().map(|r| r.1.clone()).collect();
    let ty: Vec<u8> = train.iter().map(|r| r.2).collect();
    let campaign = Logit::fit(CAMPAIGN_FEATURES.to_vec(), &tx, &ty, 0.1)?;
    let ex: Vec<Vec<f64>> = test.iter().map(|r| r.1.clone()).collect();
    let ey: Vec<u8> = test.iter().map(|r| r.2).collect();
    let campaign_eval = evaluate("campaign profitable next week", &campaign, &ty, &ex, &ey);

    let sessions = synth_sessions(40_000, 12);
    let split = sessions.len() * 7 / 10;
    let (train, test) = sessions.split_at(split);
    let tx: Vec<Vec<f64>> = train.iter().map(|r| r.0.clone()).collect();
    let ty: Vec<u8> = train.iter().map(|r| r.1).collect();
    let conv = Logit::fit(SESSION_FEATURES.to_vec(), &tx, &ty, 0.1)?;
    let ex: Vec<Vec<f64>> = test.iter().map(|r| r.0.clone()).collect();
    let ey: Vec<u8> = test.iter().map(|r| r.1).collect();
    let conv_eval = evaluate("session converts", &conv, &ty, &ex, &ey);
    Ok((campaign, campaign_eval, conv, conv_eval))
}

/// Markdown table of classifier evaluations with the fitted coefficients.
pub fn render(models: &[(&Logit, &ClassifierEval)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "synthetic data from seeded RNGs (no real campaign or session history yet)"
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| model | train | held out | base rate | AUC | Brier | Brier (base rate) | log loss | max decile calibration gap |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (_, e) in models {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1}% | {:.3} | {:.4} | {:.4} | {:.4} | {:.3} |",
            e.name,
            e.train_rows,
            e.test_rows,
            100.0 * e.base_rate,
            e.auc,
            e.brier,
            e.brier_base,
            e.log_loss,
            e.max_calibration_gap
        );
    }
    for (m, e) in models {
        let _ = writeln!(s);
        let coefs: Vec<String> = m
            .features
            .iter()
            .zip(&m.coefficients)
            .map(|(f, c)| format!("{f} {c:+.2}"))
            .collect();
        let _ = writeln!(
            s,
            "{}: intercept {:+.2}; standardised coefficients: {}",
            e.name,
            m.intercept,
            coefs.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_known_values() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[0, 0, 1, 1]), 0.0);
        assert_eq!(auc(&[0.5, 0.5], &[0, 1]), 0.5);
        assert!(auc(&[0.5], &[1]).is_nan());
    }

    #[test]
    fn logit_recovers_a_separable_signal_and_rejects_one_class() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let rows: Vec<(Vec<f64>, u8)> = (0..2000)
            .map(|_| {
                let x: f64 = normal(&mut rng);
                let p = 1.0 / (1.0 + (-(2.0 * x - 1.0)).exp());
                (vec![x], u8::from(rng.random::<f64>() < p))
            })
            .collect();
        let x: Vec<Vec<f64>> = rows.iter().map(|r| r.0.clone()).collect();
        let y: Vec<u8> = rows.iter().map(|r| r.1).collect();
        let m = Logit::fit(vec!["x"], &x, &y, 0.0).expect("fit");
        // True slope 2 per unit of x; the coefficient is per standard deviation (about 1).
        assert!((m.coefficients[0] - 2.0).abs() < 0.4, "{m:?}");
        assert!(m.predict_proba(&[3.0]) > 0.9 && m.predict_proba(&[-2.0]) < 0.05);
        assert!(Logit::fit(vec!["x"], &x, &vec![0; x.len()], 0.0).is_err());
        assert!(Logit::fit(vec!["x"], &x, &y[..10], 0.0).is_err());
    }
}
