//! The Numenta Anomaly Benchmark (NAB) on every development file, with one parameter set.
//!
//! [`evaluate`] reads `windows-all.json` (keys are NAB's `category/file.csv`), runs a fresh
//! [`Detector`] with [`DetectorConfig::for_step`] (the step inferred from each file) over every
//! row in file order, and scores the detector's *alerts* (the first anomalous row of an episode)
//! against the labelled windows. It reports, per file, per category and overall: the normalised
//! NAB standard score, windows detected, false-positive alerts per 1,000 rows and the detection
//! delay. Then leave-one-category-out: the one free parameter, the alert threshold
//! `alert_log10_p`, is chosen on a grid by the overall score of the other categories and the
//! held-out category is scored with it. Nothing is ever tuned per file or per category.
//!
//! The NAB score is computed as NAB's `sweeper.py` does for one threshold: rows in the
//! probationary period (the first `min(floor(0.15 n), 750)` rows) are ignored; every detection
//! inside a window earns the scaled sigmoid of its relative position (`2 sigmoid(-5 x) - 1`,
//! divided by its value at the window's left edge) and only the best one per window counts; a
//! window with no detection costs `fn_weight`; every detection outside windows costs `fp_weight`
//! times the scaled sigmoid of its distance past the previous window (-1 before any window).
//! A set of files is normalised as `100 (raw - null) / (perfect - null)` with the sums of the
//! null detector's (no detection) and the perfect detector's (every window hit at its first
//! scorable row) raw scores over the same files. A set without windows
//! (artificialNoAnomaly) has no normalised score: its false-positive alerts are the figure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::EvalError;
use crate::models::anomaly::{self, Detector, DetectorConfig, PointState, Scored};
use crate::models::series::{self, Point};

/// NAB cost matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostProfile {
    /// Reward of a true positive at the window's left edge.
    pub tp_weight: f64,
    /// Cost of a false positive well after any window.
    pub fp_weight: f64,
    /// Cost of a missed window.
    pub fn_weight: f64,
}

/// NAB's "standard" profile.
pub const STANDARD: CostProfile = CostProfile {
    tp_weight: 1.0,
    fp_weight: 0.11,
    fn_weight: 1.0,
};

/// The thresholds (`alert_log10_p`) the leave-one-category-out run chooses from.
pub const THRESHOLD_GRID: [f64; 7] = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0];

fn scaled_sigmoid(x: f64) -> f64 {
    if x >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// NAB raw score of one file for boolean detections, as `sweeper.py` computes it.
/// `windows` are row-index ranges `[left, right]` (inclusive), sorted.
pub fn nab_score(detections: &[bool], windows: &[(usize, usize)], profile: CostProfile) -> f64 {
    let n = detections.len();
    let probation = ((0.15 * n as f64).floor()).min(0.15 * 5000.0) as usize;
    let max_tp = scaled_sigmoid(-1.0);
    // Score parts keyed by window: start at -fn for windows that have scorable rows.
    let mut window_part: Vec<Option<f64>> = vec![None; windows.len()];
    let mut fp_part = 0.0;
    let mut prev: Option<(usize, f64)> = None; // (right index, width) of the previous window
    let mut wi = 0;
    for (i, &detected) in detections.iter().enumerate() {
        while wi < windows.len() && windows[wi].1 < i {
            let (l, r) = windows[wi];
            prev = Some((r, (r - l + 1) as f64));
            wi += 1;
        }
        let in_window = wi < windows.len() && windows[wi].0 <= i;
        if i < probation {
            continue;
        }
        if in_window {
            let (l, r) = windows[wi];
            let width = (r - l + 1) as f64;
            let entry = window_part[wi].get_or_insert(-profile.fn_weight);
            if detected {
                let pos = -((r as f64 - i as f64 + 1.0) / width);
                let s = scaled_sigmoid(pos) * profile.tp_weight / max_tp;
                *entry = entry.max(s);
            }
        } else if detected {
            let past = match prev {
                None => 3.0,
                Some((r, w)) => (i as f64 - r as f64).abs() / (w - 1.0).max(1.0),
            };
            fp_part += scaled_sigmoid(past) * profile.fp_weight;
        }
    }
    fp_part + window_part.iter().flatten().sum::<f64>()
}

fn parse_window_ts(file: &str, s: &str) -> Result<i64, EvalError> {
    series::parse_timestamp(s)
        .map(|(t, _)| t)
        .ok_or_else(|| EvalError::BadWindow {
            file: file.to_string(),
            value: s.to_string(),
        })
}

/// Reads a NAB windows file: key (`category/file.csv`) -> sorted (start, end) epoch seconds.
pub fn read_windows(path: &Path) -> Result<BTreeMap<String, Vec<(i64, i64)>>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).map_err(|e| EvalError::Labels {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut out = BTreeMap::new();
    for (key, wins) in raw {
        let mut v = Vec::new();
        for w in wins {
            let [a, b] = w.as_slice() else {
                return Err(EvalError::Labels {
                    path: path.to_path_buf(),
                    message: format!("{key}: a window must be [start, end], got {w:?}"),
                });
            };
            v.push((parse_window_ts(&key, a)?, parse_window_ts(&key, b)?));
        }
        v.sort_unstable();
        out.insert(key, v);
    }
    Ok(out)
}

/// One labelled series of the corpus.
#[derive(Debug, Clone)]
pub struct NabFile {
    /// NAB category (`realTraffic`, ...).
    pub category: String,
    /// File name without the folder.
    pub name: String,
    /// Rows with a finite value, in file order (NAB files are sorted and unique).
    pub points: Vec<Point>,
    /// Labelled windows (epoch seconds, inclusive).
    pub windows: Vec<(i64, i64)>,
    /// The step inferred from the timestamps, in seconds.
    pub step_secs: i64,
}

/// Loads every file named in `dir/windows-all.json`, looking for it at `dir/<key>` and then at
/// `dir/<file name>` (the ad-exchange files sit at the top of the folder).
pub fn load_corpus(dir: &Path) -> Result<Vec<NabFile>, EvalError> {
    let labels_path = dir.join("windows-all.json");
    let labels = read_windows(&labels_path)?;
    let mut out = Vec::with_capacity(labels.len());
    for (key, windows) in labels {
        let (category, name) = key.rsplit_once('/').unwrap_or(("uncategorised", &key));
        let candidates: [PathBuf; 2] = [dir.join(&key), dir.join(name)];
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            return Err(EvalError::MissingFile {
                tried: candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                key,
            });
        };
        let (mut points, style) = series::read_csv_path(path)?;
        points.retain(|p| p.value.is_finite());
        if points.is_empty() {
            return Err(EvalError::NoRows(key));
        }
        let step_secs = series::clean(&points, style)?.step_secs;
        out.push(NabFile {
            category: category.to_string(),
            name: name.to_string(),
            points,
            windows,
            step_secs,
        });
    }
    Ok(out)
}

/// Runs a fresh detector over the file's rows; `tweak` may change the per-step defaults.
pub fn score_file(file: &NabFile, tweak: &dyn Fn(&mut DetectorConfig)) -> Vec<Scored> {
    let mut cfg = DetectorConfig::for_step(file.step_secs);
    tweak(&mut cfg);
    let mut det = Detector::new(cfg);
    file.points
        .iter()
        .map(|p| det.update(p.ts, p.value))
        .collect()
}

/// Detection figures of one labelled window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// Window start (epoch seconds).
    pub start: i64,
    /// Window end (epoch seconds).
    pub end: i64,
    /// First alert inside the window.
    pub first_alert: Option<i64>,
    /// Hours from the window start to the first alert.
    pub delay_hours: Option<f64>,
}

/// Figures of one file at one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct FileResult {
    /// NAB category.
    pub category: String,
    /// File name.
    pub file: String,
    /// Rows scored.
    pub rows: usize,
    /// Step inferred from the timestamps (seconds).
    pub step_secs: i64,
    /// Alerts raised.
    pub alerts: usize,
    /// Alerts outside every window.
    pub fp_alerts: usize,
    /// NAB raw score (standard profile).
    pub raw: f64,
    /// Raw score of the null detector on this file.
    pub null: f64,
    /// Raw score of the perfect detector on this file.
    pub perfect: f64,
    /// Per-window results.
    pub windows: Vec<WindowResult>,
}

/// Row ranges `[l, r]` of the windows that hold at least one row.
fn window_rows(points: &[Point], windows: &[(i64, i64)]) -> Vec<Option<(usize, usize)>> {
    windows
        .iter()
        .map(|(a, b)| {
            let l = points.partition_point(|p| p.ts < *a);
            let r = points.partition_point(|p| p.ts <= *b);
            (r > l).then(|| (l, r - 1))
        })
        .collect()
}

/// Scores one file's alerts (one bool per row) against its windows.
pub fn evaluate_alerts(file: &NabFile, alerts: &[bool]) -> FileResult {
    let rows = window_rows(&file.points, &file.windows);
    let idx: Vec<(usize, usize)> = rows.iter().flatten().copied().collect();
    let in_window = |i: usize| idx.iter().any(|(l, r)| (*l..=*r).contains(&i));
    let n = alerts.len();
    let probation = probation(n);
    let mut perfect_flags = vec![false; n];
    for (l, r) in &idx {
        if let Some(first) = (*l.max(&probation)..=*r).next() {
            perfect_flags[first] = true;
        }
    }
    let windows = file
        .windows
        .iter()
        .zip(&rows)
        .map(|((a, b), r)| {
            let first = r.and_then(|(l, r)| (l..=r).find(|i| alerts[*i]));
            WindowResult {
                start: *a,
                end: *b,
                first_alert: first.map(|i| file.points[i].ts),
                delay_hours: first.map(|i| (file.points[i].ts - a) as f64 / 3600.0),
            }
        })
        .collect();
    FileResult {
        category: file.category.clone(),
        file: file.name.clone(),
        rows: n,
        step_secs: file.step_secs,
        alerts: alerts.iter().filter(|a| **a).count(),
        fp_alerts: (0..n).filter(|i| alerts[*i] && !in_window(*i)).count(),
        raw: nab_score(alerts, &idx, STANDARD),
        null: nab_score(&vec![false; n], &idx, STANDARD),
        perfect: nab_score(&perfect_flags, &idx, STANDARD),
        windows,
    }
}

fn probation(n: usize) -> usize {
    ((0.15 * n as f64).floor()).min(0.15 * 5000.0) as usize
}

/// Figures of a set of files (a category, or all of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Name of the set.
    pub name: String,
    /// Files in the set.
    pub files: usize,
    /// Rows scored.
    pub rows: usize,
    /// Labelled windows.
    pub windows: usize,
    /// Windows with at least one alert.
    pub detected: usize,
    /// Alerts outside windows.
    pub fp_alerts: usize,
    /// Largest number of false-positive alerts in one file.
    pub max_fp_per_file: usize,
    /// False-positive alerts per 1,000 rows.
    pub fp_per_1000: f64,
    /// Sum of raw NAB scores.
    pub raw: f64,
    /// Normalised NAB standard score; `None` when the set has no window.
    pub normalized: Option<f64>,
    /// Mean hours from window start to the first alert, over detected windows.
    pub mean_delay_hours: Option<f64>,
}

/// Sums a set of file results.
pub fn summarize(name: &str, files: &[&FileResult]) -> Summary {
    let raw: f64 = files.iter().map(|f| f.raw).sum();
    let null: f64 = files.iter().map(|f| f.null).sum();
    let perfect: f64 = files.iter().map(|f| f.perfect).sum();
    let rows: usize = files.iter().map(|f| f.rows).sum();
    let fp_alerts: usize = files.iter().map(|f| f.fp_alerts).sum();
    let delays: Vec<f64> = files
        .iter()
        .flat_map(|f| &f.windows)
        .filter_map(|w| w.delay_hours)
        .collect();
    Summary {
        name: name.to_string(),
        files: files.len(),
        rows,
        windows: files.iter().map(|f| f.windows.len()).sum(),
        detected: files
            .iter()
            .flat_map(|f| &f.windows)
            .filter(|w| w.first_alert.is_some())
            .count(),
        fp_alerts,
        max_fp_per_file: files.iter().map(|f| f.fp_alerts).max().unwrap_or(0),
        fp_per_1000: if rows > 0 {
            1000.0 * fp_alerts as f64 / rows as f64
        } else {
            0.0
        },
        raw,
        normalized: (perfect > null).then(|| 100.0 * (raw - null) / (perfect - null)),
        mean_delay_hours: (!delays.is_empty())
            .then(|| delays.iter().sum::<f64>() / delays.len() as f64),
    }
}

/// Leave-one-category-out result of one category.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// The held-out category's figures at the chosen threshold.
    pub summary: Summary,
    /// The threshold chosen on the other categories.
    pub alert_log10_p: f64,
    /// The other categories' overall normalised score at that threshold.
    pub tuned_score: f64,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct NabEval {
    /// The threshold of the one parameter set.
    pub alert_log10_p: f64,
    /// Per file, in category then file order.
    pub files: Vec<FileResult>,
    /// Per category.
    pub categories: Vec<Summary>,
    /// All files.
    pub overall: Summary,
    /// Leave-one-category-out, per category.
    pub held_out: Vec<HeldOut>,
    /// Overall figures at each threshold of [`THRESHOLD_GRID`].
    pub sweep: Vec<(f64, Summary)>,
}

fn results_at(corpus: &[NabFile], scored: &[Vec<Scored>], thr: f64) -> Vec<FileResult> {
    corpus
        .iter()
        .zip(scored)
        .map(|(f, s)| {
            let cfg = DetectorConfig::for_step(f.step_secs);
            let alerts =
                anomaly::alerts_at(s, &cfg, thr, cfg.min_z, cfg.knn_margin, cfg.refractory);
            evaluate_alerts(f, &alerts)
        })
        .collect()
}

/// Files' results with other post-hoc alert settings (threshold, `min_z`, refractory as a
/// fraction of the default), for exploring the parameter set on the whole corpus.
pub fn results_with(
    corpus: &[NabFile],
    scored: &[Vec<Scored>],
    thr: f64,
    min_z: f64,
    refractory_frac: f64,
) -> Vec<FileResult> {
    corpus
        .iter()
        .zip(scored)
        .map(|(f, s)| {
            let cfg = DetectorConfig::for_step(f.step_secs);
            let r = (cfg.refractory as f64 * refractory_frac).round() as usize;
            evaluate_alerts(
                f,
                &anomaly::alerts_at(s, &cfg, thr, min_z, cfg.knn_margin, r),
            )
        })
        .collect()
}

fn categories_of(results: &[FileResult]) -> Vec<String> {
    let mut c: Vec<String> = results.iter().map(|r| r.category.clone()).collect();
    c.dedup();
    c.sort();
    c.dedup();
    c
}

/// Runs the evaluation on the NAB folder `dir` with the default parameter set.
pub fn evaluate(dir: &Path) -> Result<NabEval, EvalError> {
    let corpus = load_corpus(dir)?;
    Ok(evaluate_corpus(&corpus))
}

/// Runs the evaluation on a loaded corpus with the default parameter set.
pub fn evaluate_corpus(corpus: &[NabFile]) -> NabEval {
    let scored: Vec<Vec<Scored>> = corpus.iter().map(|f| score_file(f, &|_| {})).collect();
    let thr = DetectorConfig::default().alert_log10_p;
    let files = results_at(corpus, &scored, thr);
    // The detector's own alerts and the re-thresholded ones are the same rule.
    debug_assert!(corpus.iter().zip(&scored).all(|(f, s)| {
        let cfg = DetectorConfig::for_step(f.step_secs);
        let again = anomaly::alerts_at(s, &cfg, thr, cfg.min_z, cfg.knn_margin, cfg.refractory);
        s.iter()
            .zip(again)
            .all(|(p, a)| (p.state == PointState::Alert) == a)
    }));
    let cats = categories_of(&files);
    let categories = cats
        .iter()
        .map(|c| {
            let sel: Vec<&FileResult> = files.iter().filter(|f| &f.category == c).collect();
            summarize(c, &sel)
        })
        .collect();
    let overall = summarize("overall", &files.iter().collect::<Vec<_>>());
    let by_thr: Vec<(f64, Vec<FileResult>)> = THRESHOLD_GRID
        .iter()
        .map(|t| (*t, results_at(corpus, &scored, *t)))
        .collect();
    let held_out = cats
        .iter()
        .map(|c| {
            let mut best: Option<(f64, f64, &Vec<FileResult>)> = None;
            for (t, res) in &by_thr {
                let others: Vec<&FileResult> = res.iter().filter(|f| &f.category != c).collect();
                let score = summarize("others", &others)
                    .normalized
                    .unwrap_or(f64::NEG_INFINITY);
                if best.is_none_or(|(_, s, _)| score > s) {
                    best = Some((*t, score, res));
                }
            }
            let (t, s, res) = best.unwrap_or((thr, f64::NAN, &files));
            let sel: Vec<&FileResult> = res.iter().filter(|f| &f.category == c).collect();
            HeldOut {
                summary: summarize(c, &sel),
                alert_log10_p: t,
                tuned_score: s,
            }
        })
        .collect();
    let sweep = by_thr
        .iter()
        .map(|(t, res)| (*t, summarize("overall", &res.iter().collect::<Vec<_>>())))
        .collect();
    NabEval {
        alert_log10_p: thr,
        files,
        categories,
        overall,
        held_out,
        sweep,
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("n/a".to_string(), |v| format!("{v:.digits$}"))
}

fn summary_row(s: &Summary) -> String {
    format!(
        "| {} | {} | {} | {} | {:.1} | {}/{} | {} | {} | {:.3} | {} |",
        s.name,
        opt(s.normalized, 1),
        s.files,
        s.rows,
        s.raw,
        s.detected,
        s.windows,
        s.fp_alerts,
        s.max_fp_per_file,
        s.fp_per_1000,
        opt(s.mean_delay_hours, 1),
    )
}

/// Renders the evaluation as Markdown tables.
pub fn render(e: &NabEval) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "One parameter set for every file: `DetectorConfig::for_step(step)`, alert at tail probability <= 1e-{}.",
        e.alert_log10_p
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| set | NAB standard (normalised) | files | rows | raw | windows detected | FP alerts | max FP / file | FP / 1,000 rows | mean delay from window start (h) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in e.categories.iter().chain(std::iter::once(&e.overall)) {
        let _ = writeln!(s, "{}", summary_row(c));
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Leave-one-category-out: the threshold is chosen on the other categories (grid {:?}), then the held-out category is scored with it.",
        THRESHOLD_GRID
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| held-out category | chosen threshold (-log10 p) | others' score | held-out NAB standard | windows detected | FP alerts | FP / 1,000 rows |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for h in &e.held_out {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {} | {}/{} | {} | {:.3} |",
            h.summary.name,
            h.alert_log10_p,
            h.tuned_score,
            opt(h.summary.normalized, 1),
            h.summary.detected,
            h.summary.windows,
            h.summary.fp_alerts,
            h.summary.fp_per_1000
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Threshold sweep (same threshold for every file):");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| -log10 p | overall NAB standard | windows detected | FP alerts | FP / 1,000 rows |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
    for (t, o) in &e.sweep {
        let _ = writeln!(
            s,
            "| {t} | {} | {}/{} | {} | {:.3} |",
            opt(o.normalized, 1),
            o.detected,
            o.windows,
            o.fp_alerts,
            o.fp_per_1000
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| category | file | rows | step (s) | raw | windows detected | alerts | FP alerts | first alert per window (delay h) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---|");
    for f in &e.files {
        let wins: Vec<String> = f
            .windows
            .iter()
            .map(|w| match (w.first_alert, w.delay_hours) {
                (Some(t), Some(d)) => {
                    format!("{} ({d:.1})", series::TimestampStyle::Naive.format(t))
                }
                _ => "missed".to_string(),
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {}/{} | {} | {} | {} |",
            f.category,
            f.file,
            f.rows,
            f.step_secs,
            f.raw,
            f.windows.iter().filter(|w| w.first_alert.is_some()).count(),
            f.windows.len(),
            f.alerts,
            f.fp_alerts,
            if wins.is_empty() {
                "-".to_string()
            } else {
                wins.join("; ")
            }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_matches_nab() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614).abs() < 1e-6);
        assert!((scaled_sigmoid(-0.5) - 0.848_283).abs() < 1e-6);
        assert!(scaled_sigmoid(0.0).abs() < 1e-12);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn nab_scoring_rules() {
        // 100 rows: probation is the first 15.
        let windows = [(40, 49)];
        let mut det = vec![false; 100];
        // Null detector: -1 per window.
        assert!((nab_score(&det, &windows, STANDARD) + 1.0).abs() < 1e-12);
        // Detection at the left edge: +1 exactly (normalised by max_tp).
        det[40] = true;
        assert!((nab_score(&det, &windows, STANDARD) - 1.0).abs() < 1e-9);
        // A second, later detection in the same window adds nothing.
        det[45] = true;
        assert!((nab_score(&det, &windows, STANDARD) - 1.0).abs() < 1e-9);
        // A false positive before any window costs the full fp weight.
        det[20] = true;
        assert!((nab_score(&det, &windows, STANDARD) - 0.89).abs() < 1e-9);
        // Detections in probation are ignored.
        det[5] = true;
        assert!((nab_score(&det, &windows, STANDARD) - 0.89).abs() < 1e-9);
        // A false positive right after the window is cheap, far after it costs more.
        let mut a = vec![false; 100];
        a[50] = true;
        let mut b = vec![false; 100];
        b[90] = true;
        let near = nab_score(&a, &windows, STANDARD) + 1.0;
        let far = nab_score(&b, &windows, STANDARD) + 1.0;
        assert!(near < 0.0 && far < near, "near {near} far {far}");
        assert!((far + 0.11).abs() < 1e-9);
        // Detection late in the window earns less than early.
        let mut late = vec![false; 100];
        late[49] = true;
        let s = nab_score(&late, &windows, STANDARD);
        assert!(s > -1.0 && s < 0.5, "{s}");
    }
}
