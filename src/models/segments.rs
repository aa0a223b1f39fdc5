//! Customer segments (RFM + smartcore KMeans) and CLV from an order history, with a held-out
//! evaluation on the last months.
//!
//! Orders are `InvoiceNo,InvoiceDate,CustomerID,TotalPrice` rows (the shape of Shopify orders
//! rolled up per order). The history is split at `cutoff = last day - holdout_days`:
//! - features (recency, frequency, monetary, average order value) are computed on orders before
//!   the cutoff; KMeans (k = 6, seeded) runs on their standardised logarithms, and each cluster
//!   is named from its centroid (champions, loyal, promising new, at risk, needs attention, lost);
//! - CLV is the revenue a customer brings in the next `holdout_days`: a smartcore random forest is
//!   trained on the same features computed one period earlier (labels = the period before the
//!   cutoff), then predicts the held-out period, and is compared with the naive "same spend rate
//!   as so far" estimate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::NaiveDate;
use smartcore::cluster::kmeans::{KMeans, KMeansParameters};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use super::ModelError;
use super::stats;

/// One order.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Customer identifier.
    pub customer: String,
    /// Order day.
    pub date: NaiveDate,
    /// Order value (negative for credit notes / refunds).
    pub amount: f64,
}

/// Reads `InvoiceNo,InvoiceDate,CustomerID,TotalPrice` (header required; rows without a
/// customer are guest orders and are skipped).
pub fn read_orders(path: &Path) -> Result<Vec<Order>, ModelError> {
    let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| ModelError::Csv {
            line,
            message: e.to_string(),
        })?;
        let customer = rec.get(2).unwrap_or("").trim();
        if customer.is_empty() {
            continue;
        }
        let date_raw = rec.get(1).unwrap_or("");
        let date = super::series::parse_timestamp(date_raw)
            .and_then(|(ts, _)| chrono::DateTime::from_timestamp(ts, 0))
            .map(|d| d.date_naive())
            .ok_or_else(|| ModelError::BadTimestamp {
                line,
                value: date_raw.to_string(),
            })?;
        let raw = rec.get(3).unwrap_or("");
        let amount: f64 = raw.parse().map_err(|_| ModelError::BadValue {
            line,
            value: raw.to_string(),
        })?;
        if amount.is_finite() {
            out.push(Order {
                customer: customer.trim_end_matches(".0").to_string(),
                date,
                amount,
            });
        }
    }
    Ok(out)
}

/// RFM features of one customer at a cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Rfm {
    /// Customer identifier.
    pub customer: String,
    /// Days from the last order to the cutoff.
    pub recency_days: f64,
    /// Orders (positive amounts) before the cutoff.
    pub frequency: f64,
    /// Net revenue before the cutoff.
    pub monetary: f64,
    /// Days from the first order to the cutoff.
    pub tenure_days: f64,
}

/// RFM of every customer with at least one positive order in `[from, cutoff)`.
pub fn rfm(orders: &[Order], from: NaiveDate, cutoff: NaiveDate) -> Vec<Rfm> {
    let mut by: HashMap<&str, (NaiveDate, NaiveDate, f64, f64)> = HashMap::new();
    for o in orders.iter().filter(|o| o.date >= from && o.date < cutoff) {
        let e = by
            .entry(o.customer.as_str())
            .or_insert((o.date, o.date, 0.0, 0.0));
        e.0 = e.0.min(o.date);
        e.1 = e.1.max(o.date);
        e.3 += o.amount;
        if o.amount > 0.0 {
            e.2 += 1.0;
        }
    }
    let mut out: Vec<Rfm> = by
        .into_iter()
        .filter(|(_, v)| v.2 > 0.0)
        .map(|(c, (first, last, f, m))| Rfm {
            customer: c.to_string(),
            recency_days: (cutoff - last).num_days() as f64,
            frequency: f,
            monetary: m,
            tenure_days: (cutoff - first).num_days() as f64,
        })
        .collect();
    out.sort_by(|a, b| a.customer.cmp(&b.customer));
    out
}

/// Revenue per customer in `[from, to)`.
pub fn revenue_between(orders: &[Order], from: NaiveDate, to: NaiveDate) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    for o in orders.iter().filter(|o| o.date >= from && o.date < to) {
        *m.entry(o.customer.clone()).or_insert(0.0) += o.amount;
    }
    m
}

fn features(r: &Rfm) -> Vec<f64> {
    vec![
        (1.0 + r.recency_days).ln(),
        r.frequency.ln_1p(),
        r.monetary.max(0.0).ln_1p(),
        (1.0 + r.tenure_days).ln(),
    ]
}

fn standardise(rows: &[Vec<f64>]) -> (Vec<Vec<f64>>, Vec<(f64, f64)>) {
    let d = rows.first().map_or(0, Vec::len);
    let params: Vec<(f64, f64)> = (0..d)
        .map(|j| {
            let col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            let m = stats::mean(&col);
            let sd =
                (col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / col.len().max(1) as f64).sqrt();
            (m, if sd > 0.0 { sd } else { 1.0 })
        })
        .collect();
    let out = rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&params)
                .map(|(x, (m, s))| (x - m) / s)
                .collect()
        })
        .collect();
    (out, params)
}

fn matrix(rows: &[Vec<f64>]) -> Result<DenseMatrix<f64>, ModelError> {
    DenseMatrix::from_2d_vec(&rows.to_vec()).map_err(|e| ModelError::Fit(e.to_string()))
}

/// Segment names, assigned greedily from the centroids (see [`name_clusters`]).
pub const SEGMENT_NAMES: [&str; 6] = [
    "champions",
    "lost",
    "at risk",
    "promising new",
    "loyal",
    "needs attention",
];

/// Names clusters from standardised centroids `[recency, frequency, monetary, tenure]`: the best
/// `F + M - R` cluster is "champions", the worst is "lost", the highest `R + F + M` of the rest
/// (valuable but gone quiet) "at risk", the lowest `R + T` (recent and new) "promising new", the
/// highest `F - R` "loyal", and any other "needs attention".
pub fn name_clusters(centroids: &[Vec<f64>]) -> Vec<&'static str> {
    let mut names: Vec<Option<&'static str>> = vec![None; centroids.len()];
    type Rule = (&'static str, fn(&[f64]) -> f64);
    let rules: [Rule; 5] = [
        ("champions", |c| c[1] + c[2] - c[0]),
        ("lost", |c| c[0] - c[1] - c[2]),
        ("at risk", |c| c[0] + c[1] + c[2]),
        ("promising new", |c| -c[0] - c[3]),
        ("loyal", |c| c[1] - c[0]),
    ];
    for (name, score) in rules {
        let best = (0..centroids.len())
            .filter(|i| names[*i].is_none())
            .max_by(|a, b| score(&centroids[*a]).total_cmp(&score(&centroids[*b])));
        if let Some(i) = best {
            names[i] = Some(name);
        }
    }
    names
        .into_iter()
        .map(|n| n.unwrap_or("needs attention"))
        .collect()
}

/// Segment figures in the held-out period.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    /// Segment name.
    pub name: &'static str,
    /// Customers.
    pub customers: usize,
    /// Mean recency (days) at the cutoff.
    pub recency_days: f64,
    /// Mean frequency at the cutoff.
    pub frequency: f64,
    /// Mean monetary at the cutoff.
    pub monetary: f64,
    /// Share of customers who ordered in the held-out period.
    pub holdout_active: f64,
    /// Mean held-out revenue per customer.
    pub holdout_revenue: f64,
}

/// CLV evaluation on the held-out period.
#[derive(Debug, Clone, PartialEq)]
pub struct ClvEval {
    /// Customers scored.
    pub customers: usize,
    /// Mean absolute error of the random forest (currency units per customer).
    pub mae_model: f64,
    /// Mean absolute error of the naive run-rate estimate.
    pub mae_naive: f64,
    /// Share of held-out revenue from the top 20% customers ranked by the model.
    pub top20_share_model: f64,
    /// Same, ranked by the naive estimate.
    pub top20_share_naive: f64,
    /// Same, ranked by the actual held-out revenue (the ceiling).
    pub top20_share_oracle: f64,
}

/// Result of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentsEval {
    /// Cutoff day.
    pub cutoff: NaiveDate,
    /// Held-out days.
    pub holdout_days: i64,
    /// Segments, by decreasing held-out revenue per customer.
    pub segments: Vec<SegmentRow>,
    /// CLV figures.
    pub clv: ClvEval,
}

fn top20_share(pred: &[f64], actual: &[f64]) -> f64 {
    let mut idx: Vec<usize> = (0..pred.len()).collect();
    idx.sort_by(|a, b| pred[*b].total_cmp(&pred[*a]));
    let k = (pred.len() as f64 * 0.2).ceil() as usize;
    let total: f64 = actual.iter().map(|a| a.max(0.0)).sum();
    let top: f64 = idx.iter().take(k).map(|i| actual[*i].max(0.0)).sum();
    if total > 0.0 { top / total } else { 0.0 }
}

/// Segments and CLV with the last `holdout_days` held out.
pub fn evaluate(orders: &[Order], holdout_days: i64) -> Result<SegmentsEval, ModelError> {
    let (Some(first), Some(last)) = (
        orders.iter().map(|o| o.date).min(),
        orders.iter().map(|o| o.date).max(),
    ) else {
        return Err(ModelError::Empty);
    };
    let end = last + chrono::Duration::days(1);
    let cutoff = end - chrono::Duration::days(holdout_days);
    let prev_cutoff = cutoff - chrono::Duration::days(holdout_days);
    if prev_cutoff <= first {
        return Err(ModelError::InvalidParameter(format!(
            "the history ({first} to {last}) is shorter than two hold-out periods of {holdout_days} days"
        )));
    }
    let now = rfm(orders, first, cutoff);
    if now.len() < 50 {
        return Err(ModelError::TooShort {
            got: now.len(),
            needed: 50,
            what: "customer segmentation (customers)",
        });
    }
    let holdout = revenue_between(orders, cutoff, end);
    let raw: Vec<Vec<f64>> = now.iter().map(features).collect();
    let (z, params) = standardise(&raw);
    let x = matrix(&z)?;
    let km: KMeans<f64, usize, DenseMatrix<f64>, Vec<usize>> = KMeans::fit(
        &x,
        KMeansParameters {
            k: 6,
            max_iter: 100,
            seed: Some(42),
        },
    )
    .map_err(|e| ModelError::Fit(e.to_string()))?;
    let labels: Vec<usize> = km.predict(&x).map_err(|e| ModelError::Fit(e.to_string()))?;
    let k = labels.iter().copied().max().map_or(0, |m| m + 1);
    let centroids: Vec<Vec<f64>> = (0..k)
        .map(|c| {
            let members: Vec<&Vec<f64>> = z
                .iter()
                .zip(&labels)
                .filter(|(_, l)| **l == c)
                .map(|(r, _)| r)
                .collect();
            (0..params.len())
                .map(|j| stats::mean(&members.iter().map(|r| r[j]).collect::<Vec<_>>()))
                .collect()
        })
        .collect();
    let names = name_clusters(&centroids);
    let mut segments: Vec<SegmentRow> = (0..k)
        .map(|c| {
            let members: Vec<&Rfm> = now
                .iter()
                .zip(&labels)
                .filter(|(_, l)| **l == c)
                .map(|(r, _)| r)
                .collect();
            let h: Vec<f64> = members
                .iter()
                .map(|r| holdout.get(&r.customer).copied().unwrap_or(0.0))
                .collect();
            SegmentRow {
                name: names[c],
                customers: members.len(),
                recency_days: stats::mean(
                    &members.iter().map(|r| r.recency_days).collect::<Vec<_>>(),
                ),
                frequency: stats::mean(&members.iter().map(|r| r.frequency).collect::<Vec<_>>()),
                monetary: stats::mean(&members.iter().map(|r| r.monetary).collect::<Vec<_>>()),
                holdout_active: h.iter().filter(|v| **v > 0.0).count() as f64
                    / h.len().max(1) as f64,
                holdout_revenue: stats::mean(&h),
            }
        })
        .filter(|s| s.customers > 0)
        .collect();
    segments.sort_by(|a, b| b.holdout_revenue.total_cmp(&a.holdout_revenue));

    // CLV: train on the previous period, evaluate on the held-out one.
    let before = rfm(orders, first, prev_cutoff);
    let label_prev = revenue_between(orders, prev_cutoff, cutoff);
    let xt: Vec<Vec<f64>> = before.iter().map(features).collect();
    let yt: Vec<f64> = before
        .iter()
        .map(|r| {
            label_prev
                .get(&r.customer)
                .copied()
                .unwrap_or(0.0)
                .max(0.0)
                .ln_1p()
        })
        .collect();
    let rf = RandomForestRegressor::fit(
        &matrix(&xt)?,
        &yt,
        RandomForestRegressorParameters::default()
            .with_n_trees(60)
            .with_max_depth(8)
            .with_min_samples_leaf(5)
            .with_seed(7),
    )
    .map_err(|e| ModelError::Fit(e.to_string()))?;
    let pred_log: Vec<f64> = rf
        .predict(&matrix(&raw)?)
        .map_err(|e| ModelError::Fit(e.to_string()))?;
    // The forest predicts log1p(revenue), a median-like target; expm1 gives a typical value.
    let pred: Vec<f64> = pred_log.iter().map(|p| p.exp_m1().max(0.0)).collect();
    let naive: Vec<f64> = now
        .iter()
        .map(|r| r.monetary.max(0.0) / r.tenure_days.max(1.0) * holdout_days as f64)
        .collect();
    let actual: Vec<f64> = now
        .iter()
        .map(|r| holdout.get(&r.customer).copied().unwrap_or(0.0))
        .collect();
    let mae = |p: &[f64]| {
        stats::mean(
            &p.iter()
                .zip(&actual)
                .map(|(a, b)| (a - b).abs())
                .collect::<Vec<_>>(),
        )
    };
    let clv = ClvEval {
        customers: now.len(),
        mae_model: mae(&pred),
        mae_naive: mae(&naive),
        top20_share_model: top20_share(&pred, &actual),
        top20_share_naive: top20_share(&naive, &actual),
        top20_share_oracle: top20_share(&actual, &actual),
    };
    Ok(SegmentsEval {
        cutoff,
        holdout_days,
        segments,
        clv,
    })
}

/// Markdown tables of [`evaluate`].
pub fn render(e: &SegmentsEval) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cutoff {}; features from orders before it; the next {} days held out",
        e.cutoff, e.holdout_days
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| segment | customers | recency (d) | orders | revenue | active in hold-out | hold-out revenue / customer |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in &e.segments {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.1} | {:.0} | {:.1}% | {:.1} |",
            r.name,
            r.customers,
            r.recency_days,
            r.frequency,
            r.monetary,
            100.0 * r.holdout_active,
            r.holdout_revenue
        );
    }
    let c = &e.clv;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| CLV ({} days, {} customers) | MAE per customer | hold-out revenue from the top 20% |",
        e.holdout_days, c.customers
    );
    let _ = writeln!(s, "|---|---:|---:|");
    let _ = writeln!(
        s,
        "| random forest (smartcore) | {:.1} | {:.1}% |",
        c.mae_model,
        100.0 * c.top20_share_model
    );
    let _ = writeln!(
        s,
        "| naive run rate | {:.1} | {:.1}% |",
        c.mae_naive,
        100.0 * c.top20_share_naive
    );
    let _ = writeln!(
        s,
        "| oracle (actual ranking) | 0 | {:.1}% |",
        100.0 * c.top20_share_oracle
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_is_distinct_and_follows_centroids() {
        // [recency, frequency, monetary, tenure], standardised.
        let c = vec![
            vec![-1.0, 2.0, 2.0, 1.0],    // champions
            vec![2.0, -1.0, -1.0, 0.5],   // lost
            vec![1.0, 1.0, 1.0, 1.0],     // at risk
            vec![-1.5, -1.0, -0.5, -2.0], // promising new
            vec![-0.5, 0.8, 0.2, 0.5],    // loyal
            vec![0.0, 0.0, 0.0, 0.0],     // needs attention
        ];
        assert_eq!(name_clusters(&c), SEGMENT_NAMES.to_vec());
    }

    #[test]
    fn rfm_counts_positive_orders_and_nets_refunds() {
        let d = |m, day| NaiveDate::from_ymd_opt(2024, m, day).expect("date");
        let o = |c: &str, date, amount| Order {
            customer: c.into(),
            date,
            amount,
        };
        let orders = vec![
            o("a", d(1, 1), 100.0),
            o("a", d(1, 10), 50.0),
            o("a", d(1, 11), -20.0),
            o("b", d(1, 5), -5.0),
            o("c", d(2, 5), 10.0),
        ];
        let r = rfm(&orders, d(1, 1), d(2, 1));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].customer, "a");
        assert_eq!(r[0].frequency, 2.0);
        assert_eq!(r[0].monetary, 130.0);
        assert_eq!(r[0].recency_days, 21.0);
        assert_eq!(r[0].tenure_days, 31.0);
    }
}
