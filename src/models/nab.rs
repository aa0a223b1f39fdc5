//! Evaluation of the streaming detector on the Numenta Anomaly Benchmark (NAB) ad-exchange files.
//!
//! Two kinds of figures:
//! - alert-level ones from the issue: a window is detected when at least one flag falls inside
//!   it; an *alert* is a run of consecutive flagged rows, and it is a false positive when none of
//!   its rows is inside a window; delay is from the window start to the first flag;
//! - the NAB score, computed as NAB's `sweeper.py` does for one threshold (here: the detector's
//!   own flag, `score >= 0.5`; NAB would also optimise the threshold over the corpus, which we
//!   deliberately do not do). Rows in the probationary period (the first
//!   `min(floor(0.15 n), 750)` rows) are ignored; every detection inside a window earns the
//!   scaled sigmoid of its relative position (`2 sigmoid(-5 x) - 1`, divided by its value at the
//!   window's left edge), and only the best one per window counts; a window with no detection
//!   costs `fn_weight`; every detected row outside windows costs `fp_weight` times the scaled
//!   sigmoid of its distance past the previous window (-1 before any window). The normalised
//!   score is `100 (raw - null) / (perfect - null)` with the null detector (no detection at all)
//!   and the perfect one (every window hit at its first row).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::ModelError;
use super::anomaly::{Detector, DetectorConfig};
use super::series::{self, Point};

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

/// Detection figures of one labelled window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// File name.
    pub file: String,
    /// Window start (epoch seconds).
    pub start: i64,
    /// Window end (epoch seconds).
    pub end: i64,
    /// Rows in the window.
    pub rows: usize,
    /// First flagged row's timestamp inside the window.
    pub first_flag: Option<i64>,
    /// Hours from the window start to the first flag.
    pub delay_hours: Option<f64>,
    /// Flagged rows inside the window.
    pub flagged_rows: usize,
}

/// Figures of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileResult {
    /// File name.
    pub file: String,
    /// Rows scored.
    pub rows: usize,
    /// Rows flagged.
    pub flagged_rows: usize,
    /// Alerts (runs of consecutive flags) entirely outside windows.
    pub fp_alerts: usize,
    /// Alerts touching a window.
    pub tp_alerts: usize,
    /// NAB raw score with the given profile.
    pub nab_raw: f64,
    /// Per-window results.
    pub windows: Vec<WindowResult>,
}

/// Figures of the whole corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct NabResult {
    /// Per-file results, in file-name order.
    pub files: Vec<FileResult>,
    /// Windows detected.
    pub detected: usize,
    /// Windows in total.
    pub windows: usize,
    /// Rows scored in total.
    pub rows: usize,
    /// False-positive alerts in total.
    pub fp_alerts: usize,
    /// False-positive alerts per 1,000 rows.
    pub fp_per_1000: f64,
    /// Sum of the files' raw NAB scores.
    pub nab_raw: f64,
    /// Normalised NAB score (0 = null detector, 100 = perfect).
    pub nab_normalized: f64,
    /// Mean detection delay over detected windows (hours).
    pub mean_delay_hours: f64,
}

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

fn parse_window_ts(s: &str) -> Result<i64, ModelError> {
    series::parse_timestamp(s)
        .map(|(t, _)| t)
        .ok_or_else(|| ModelError::EvalData(format!("bad window timestamp {s:?}")))
}

/// Reads `windows.json`: file name (without folder) -> list of (start, end) epoch seconds.
pub fn read_windows(path: &Path) -> Result<BTreeMap<String, Vec<(i64, i64)>>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: BTreeMap<String, Vec<Vec<String>>> = serde_json::from_str(&text)
        .map_err(|e| ModelError::EvalData(format!("{}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for (key, wins) in raw {
        let name = key.rsplit('/').next().unwrap_or(&key).to_string();
        let mut v = Vec::new();
        for w in wins {
            let [a, b] = w.as_slice() else {
                return Err(ModelError::EvalData(format!(
                    "{key}: a window must be [start, end], got {w:?}"
                )));
            };
            v.push((parse_window_ts(a)?, parse_window_ts(b)?));
        }
        v.sort_unstable();
        out.insert(name, v);
    }
    Ok(out)
}

/// Sorted, de-duplicated finite points of a file, on their own timestamps (NAB windows refer to
/// the original rows, so no regridding here).
fn load_points(path: &Path) -> Result<Vec<Point>, ModelError> {
    let (mut pts, _) = series::read_csv_path(path)?;
    pts.retain(|p| p.value.is_finite());
    pts.sort_by_key(|p| p.ts);
    pts.dedup_by_key(|p| p.ts);
    Ok(pts)
}

/// Scores one file with a fresh detector and compares flags to the windows.
pub fn evaluate_file(
    name: &str,
    points: &[Point],
    windows: &[(i64, i64)],
    cfg: &DetectorConfig,
    profile: CostProfile,
) -> FileResult {
    let mut det = Detector::new(cfg.clone());
    let flags: Vec<bool> = points
        .iter()
        .map(|p| det.update(p.ts, p.value).is_anomaly)
        .collect();
    let idx: Vec<(usize, usize)> = windows
        .iter()
        .filter_map(|(a, b)| {
            let l = points.partition_point(|p| p.ts < *a);
            let r = points.partition_point(|p| p.ts <= *b);
            (r > l).then(|| (l, r - 1))
        })
        .collect();
    let in_window = |i: usize| idx.iter().any(|(l, r)| (*l..=*r).contains(&i));
    let (mut fp_alerts, mut tp_alerts) = (0, 0);
    let mut i = 0;
    while i < flags.len() {
        if !flags[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < flags.len() && flags[i] {
            i += 1;
        }
        if (start..i).any(in_window) {
            tp_alerts += 1;
        } else {
            fp_alerts += 1;
        }
    }
    let windows_out = windows
        .iter()
        .zip(&idx)
        .map(|((a, b), (l, r))| {
            let first = (*l..=*r).find(|i| flags[*i]);
            WindowResult {
                file: name.to_string(),
                start: *a,
                end: *b,
                rows: r - l + 1,
                first_flag: first.map(|i| points[i].ts),
                delay_hours: first.map(|i| (points[i].ts - a) as f64 / 3600.0),
                flagged_rows: (*l..=*r).filter(|i| flags[*i]).count(),
            }
        })
        .collect();
    FileResult {
        file: name.to_string(),
        rows: points.len(),
        flagged_rows: flags.iter().filter(|f| **f).count(),
        fp_alerts,
        tp_alerts,
        nab_raw: nab_score(&flags, &idx, profile),
        windows: windows_out,
    }
}

/// Runs the evaluation on every file listed in `dir/windows.json`, with one detector
/// configuration for all of them (the hourly defaults unless `cfg` is given).
pub fn evaluate_dir(dir: &Path, cfg: Option<&DetectorConfig>) -> Result<NabResult, ModelError> {
    let windows_path = dir.join("windows.json");
    if !windows_path.is_file() {
        return Err(ModelError::EvalData(format!(
            "{} not found: the NAB evaluation needs the NAB data (the repository carries it in datasets/nab)",
            windows_path.display()
        )));
    }
    let labels = read_windows(&windows_path)?;
    let default_cfg = DetectorConfig::default();
    let cfg = cfg.unwrap_or(&default_cfg);
    let mut files = Vec::new();
    for (name, wins) in &labels {
        let pts = load_points(&dir.join(name))?;
        if pts.is_empty() {
            return Err(ModelError::EvalData(format!("{name}: no data rows")));
        }
        files.push(evaluate_file(name, &pts, wins, cfg, STANDARD));
    }
    let windows: usize = files.iter().map(|f| f.windows.len()).sum();
    let detected = files
        .iter()
        .flat_map(|f| &f.windows)
        .filter(|w| w.first_flag.is_some())
        .count();
    let rows: usize = files.iter().map(|f| f.rows).sum();
    let fp_alerts: usize = files.iter().map(|f| f.fp_alerts).sum();
    let nab_raw: f64 = files.iter().map(|f| f.nab_raw).sum();
    let null = -STANDARD.fn_weight * windows as f64;
    let perfect = STANDARD.tp_weight * windows as f64;
    let delays: Vec<f64> = files
        .iter()
        .flat_map(|f| &f.windows)
        .filter_map(|w| w.delay_hours)
        .collect();
    Ok(NabResult {
        detected,
        windows,
        rows,
        fp_alerts,
        fp_per_1000: if rows > 0 {
            1000.0 * fp_alerts as f64 / rows as f64
        } else {
            0.0
        },
        nab_raw,
        nab_normalized: if perfect > null {
            100.0 * (nab_raw - null) / (perfect - null)
        } else {
            0.0
        },
        mean_delay_hours: super::stats::mean(&delays),
        files,
    })
}

/// Renders the evaluation as Markdown tables.
pub fn render(result: &NabResult) -> String {
    let fmt_ts = |t: i64| series::TimestampStyle::Naive.format(t);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| file | window start | window end | rows | detected | first flag | delay (h) | flagged rows |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---|---|---:|---:|");
    for w in result.files.iter().flat_map(|f| &f.windows) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            w.file,
            fmt_ts(w.start),
            fmt_ts(w.end),
            w.rows,
            if w.first_flag.is_some() { "yes" } else { "no" },
            w.first_flag.map_or("-".to_string(), fmt_ts),
            w.delay_hours.map_or("-".to_string(), |d| format!("{d:.0}")),
            w.flagged_rows
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| file | rows | flagged rows | alerts in windows | false-positive alerts | FP / 1000 rows | NAB raw (standard) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for f in &result.files {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2} | {:.3} |",
            f.file,
            f.rows,
            f.flagged_rows,
            f.tp_alerts,
            f.fp_alerts,
            1000.0 * f.fp_alerts as f64 / f.rows.max(1) as f64,
            f.nab_raw
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "windows detected: {}/{}; false-positive alerts: {} in {} rows = {:.2} per 1000; mean delay {:.1} h; NAB standard raw {:.3}, normalised {:.1}",
        result.detected,
        result.windows,
        result.fp_alerts,
        result.rows,
        result.fp_per_1000,
        result.mean_delay_hours,
        result.nab_raw,
        result.nab_normalized
    );
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
