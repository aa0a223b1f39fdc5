//! The contextual detector of [`super::Detector`]: a conformal k-nearest-neighbour score of the
//! latest window of values, in the spirit of KNN-CAD (Burnaev and Ishimtsev, "Conformalized
//! density- and distance-based anomaly detection in time-series data", 2016), written from that
//! description.
//!
//! The *context* of a point is the window of the last `len` values ending at it. Its
//! non-conformity is the mean Euclidean distance to its `k` nearest neighbours among the past
//! windows (the reference set: windows that end before the context starts, so a window never
//! matches a shifted copy of itself). The conformal p-value of a new context is the share of the
//! earlier non-conformities that are at least as large as its own; a context farther from its
//! neighbours than every earlier one has the smallest p-value there is, `1 / (n + 1)`. The
//! detector keeps only that record (decayed, so an old anomaly does not silence it for ever)
//! and calls a context anomalous when it beats the record by a margin
//! ([`super::DetectorConfig::knn_margin`]): a shape or a level the series has not shown before,
//! even when no single point leaves the robust z band of the seasonal detector.
//!
//! The reference set is read from the detector's own history ring (no copy is kept), and the
//! calibration is two numbers, so the service's 60,000 detectors do not grow.

/// Non-conformity of the window of the last `len` values of `vals` (oldest first; NaN =
/// missing): the mean distance to its `k` nearest reference windows, among the at most
/// `max_ref` most recent windows that end at least `len` values before the last one.
/// `None` when the context holds a missing value or fewer than `k` reference windows exist.
pub(super) fn ncm(vals: &[f64], len: usize, k: usize, max_ref: usize) -> Option<f64> {
    let n = vals.len();
    if len == 0 || k == 0 || n < 2 * len + k - 1 {
        return None;
    }
    let ctx = &vals[n - len..];
    if ctx.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // Reference windows end at index e, with e + len <= n - len (no overlap with the context).
    let last_end = n - 1 - len;
    let first_end = (len - 1).max((last_end + 1).saturating_sub(max_ref));
    // The k smallest squared distances, ascending (k is small: insertion is cheapest).
    let mut best: [f64; MAX_K] = [f64::INFINITY; MAX_K];
    let k = k.min(MAX_K);
    let mut found = 0usize;
    for e in first_end..=last_end {
        let w = &vals[e + 1 - len..=e];
        if w.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let mut d = 0.0;
        for (a, b) in ctx.iter().zip(w) {
            let x = a - b;
            d += x * x;
            if d >= best[k - 1] {
                break;
            }
        }
        found += 1;
        if d < best[k - 1] {
            let mut i = k - 1;
            while i > 0 && best[i - 1] > d {
                best[i] = best[i - 1];
                i -= 1;
            }
            best[i] = d;
        }
    }
    if found < k {
        return None;
    }
    Some(best[..k].iter().map(|d| d.sqrt()).sum::<f64>() / k as f64)
}

/// Largest `k` the search supports.
pub(super) const MAX_K: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ncm_by_hand() {
        // Windows of 2: context [5, 5] (indices 5, 6); reference windows end at 1..=4:
        // [0,1], [1,2], [2,3], [3,4], at distances sqrt(41), sqrt(25), sqrt(13), sqrt(5);
        // the k = 2 nearest: (sqrt(13) + sqrt(5)) / 2.
        let v = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0];
        let got = ncm(&v, 2, 2, 100).expect("ncm");
        let want = (13f64.sqrt() + 5f64.sqrt()) / 2.0;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Only the most recent reference window: k = 1, max_ref = 1 -> [3, 4].
        let got = ncm(&v, 2, 1, 1).expect("ncm");
        assert!((got - 5f64.sqrt()).abs() < 1e-12, "{got}");
        // Reference windows with a missing value are skipped: [1, NaN] and [NaN, 3] drop out,
        // [0, 1] and [3, 4] are left, so k = 3 finds too few.
        let gap = [0.0, 1.0, f64::NAN, 3.0, 4.0, 5.0, 5.0];
        assert!(ncm(&gap, 2, 3, 100).is_none());
        let got = ncm(&gap, 2, 2, 100).expect("ncm");
        assert!(
            (got - (41f64.sqrt() + 5f64.sqrt()) / 2.0).abs() < 1e-12,
            "{got}"
        );
        // Too short, or a missing value in the context.
        assert!(ncm(&v[..4], 2, 2, 100).is_none());
        assert!(ncm(&[0.0, 1.0, 2.0, 3.0, 4.0, f64::NAN, 5.0], 2, 2, 100).is_none());
    }
}
