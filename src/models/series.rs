//! Input cleaning for a univariate `timestamp,value` series.
//!
//! What [`clean`] does, in order, and what it reports in [`CleanReport`]:
//! - drops rows whose value is not finite (`NaN`, `inf`, empty): counted in `nan_dropped`;
//! - sorts by timestamp (a file with unsorted rows is accepted, `was_unsorted` is set);
//! - for duplicate timestamps keeps the **last** row of the file, because exports append
//!   restatements after the original row: counted in `duplicates_dropped`;
//! - infers the step as the median spacing between consecutive timestamps;
//! - puts every point on the grid `start + k * step` (nearest slot; points that collide in a slot
//!   keep the later one, counted in `off_grid`), and marks missing slots as `NaN` (`gaps`,
//!   `missing`).
//!
//! Models that need a complete series call [`RegularSeries::filled`]: short gaps are interpolated
//! linearly; if a gap is longer than `max_gap` slots, only the data after the last such gap is
//! kept (documented fallback: old history separated by a long outage is more misleading than
//! useful).

use std::io::Read;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

use super::ModelError;
use super::stats;

/// One observation as read from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the Unix epoch (UTC; naive timestamps are taken as UTC).
    pub ts: i64,
    /// The value; may be NaN before cleaning.
    pub value: f64,
}

/// What the cleaning changed, so callers can warn instead of failing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Rows read.
    pub input_rows: usize,
    /// Rows dropped because the value was NaN, infinite or empty.
    pub nan_dropped: usize,
    /// Rows dropped because a later row had the same timestamp.
    pub duplicates_dropped: usize,
    /// True when rows were not in timestamp order.
    pub was_unsorted: bool,
    /// Points that were not exactly on the step grid and were moved to the nearest slot
    /// (or replaced by a later point in the same slot).
    pub off_grid: usize,
    /// Number of missing slots on the grid.
    pub gaps: usize,
    /// Longest run of missing slots.
    pub longest_gap: usize,
    /// Slots dropped at the start by [`RegularSeries::filled`] because of a long gap.
    pub truncated_before_gap: usize,
}

/// Whether the input timestamps carried a timezone; output follows the input's style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampStyle {
    /// `YYYY-MM-DD HH:MM:SS` (taken as UTC).
    #[default]
    Naive,
    /// RFC3339 with an offset; written back as UTC `...Z`.
    Rfc3339,
}

impl TimestampStyle {
    /// Formats epoch seconds in this style.
    pub fn format(self, ts: i64) -> String {
        let dt = Utc.timestamp_opt(ts, 0).single().unwrap_or_default();
        match self {
            TimestampStyle::Naive => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
            TimestampStyle::Rfc3339 => dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }
}

/// A series on a regular grid: `values[k]` is the value at `start + k * step_secs`, NaN if
/// missing.
#[derive(Debug, Clone, PartialEq)]
pub struct RegularSeries {
    /// Epoch seconds of the first slot.
    pub start: i64,
    /// Grid step in seconds.
    pub step_secs: i64,
    /// One value per slot, NaN where the input had no point.
    pub values: Vec<f64>,
    /// Timestamp style of the input.
    pub style: TimestampStyle,
    /// What cleaning changed.
    pub report: CleanReport,
}

impl RegularSeries {
    /// Epoch seconds of slot `k`.
    pub fn ts(&self, k: usize) -> i64 {
        self.start + self.step_secs * k as i64
    }

    /// Number of slots that hold a value.
    pub fn observed(&self) -> usize {
        self.values.iter().filter(|v| v.is_finite()).count()
    }

    /// The natural seasonal period in slots: 24 for hourly data (daily cycle), 7 for daily data
    /// (weekly cycle), none otherwise.
    pub fn season_len(&self) -> Option<usize> {
        season_len_for_step(self.step_secs)
    }

    /// A gap-free copy for models that need one. Gaps of at most `max_gap` slots are linearly
    /// interpolated; if a longer gap exists, the slots up to its end are dropped (reported in
    /// `report.truncated_before_gap`). Leading and trailing NaN are trimmed.
    pub fn filled(&self, max_gap: usize) -> RegularSeries {
        let vals = &self.values;
        // Find the end of the last gap longer than max_gap.
        let mut cut = 0usize;
        let mut run = 0usize;
        for (k, v) in vals.iter().enumerate() {
            if v.is_finite() {
                if run > max_gap {
                    cut = k;
                }
                run = 0;
            } else {
                run += 1;
            }
        }
        let first = vals[cut..]
            .iter()
            .position(|v| v.is_finite())
            .map_or(vals.len(), |p| p + cut);
        let last = vals
            .iter()
            .rposition(|v| v.is_finite())
            .map_or(first, |p| p + 1);
        let mut out: Vec<f64> = vals.get(first..last).unwrap_or(&[]).to_vec();
        let mut k = 0;
        while k < out.len() {
            if out[k].is_finite() {
                k += 1;
                continue;
            }
            let gap_start = k;
            while k < out.len() && !out[k].is_finite() {
                k += 1;
            }
            // gap_start > 0 and k < len because the ends were trimmed to finite values.
            let a = out[gap_start - 1];
            let b = out[k];
            let n = (k - gap_start + 1) as f64;
            for (j, slot) in out[gap_start..k].iter_mut().enumerate() {
                *slot = a + (b - a) * (j + 1) as f64 / n;
            }
        }
        let mut report = self.report.clone();
        report.truncated_before_gap = first;
        RegularSeries {
            start: self.ts(first),
            step_secs: self.step_secs,
            values: out,
            style: self.style,
            report,
        }
    }
}

/// Seasonal period in slots for a step: hourly -> 24, daily -> 7, otherwise none.
pub fn season_len_for_step(step_secs: i64) -> Option<usize> {
    match step_secs {
        3600 => Some(24),
        86_400 => Some(7),
        _ => None,
    }
}

/// Parses a timestamp: RFC3339, `YYYY-MM-DD HH:MM:SS[.fff]`, `YYYY-MM-DDTHH:MM:SS`, or a bare date.
pub fn parse_timestamp(s: &str) -> Option<(i64, TimestampStyle)> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some((dt.with_timezone(&Utc).timestamp(), TimestampStyle::Rfc3339));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some((dt.and_utc().timestamp(), TimestampStyle::Naive));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| (dt.and_utc().timestamp(), TimestampStyle::Naive))
}

/// Reads `timestamp,value` rows from a CSV file (header optional). See [`read_csv`].
pub fn read_csv_path(path: &Path) -> Result<(Vec<Point>, TimestampStyle), ModelError> {
    let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_csv(file)
}

/// Reads `timestamp,value` rows (header optional: a first row whose timestamp does not parse
/// is taken as a header). Extra columns are ignored. Values that are empty, `NaN` or infinite
/// are kept as NaN so that [`clean`] can count them; anything else unparsable is an error with
/// its line number.
pub fn read_csv<R: Read>(reader: R) -> Result<(Vec<Point>, TimestampStyle), ModelError> {
    let (rows, style) = read_csv_rows(reader)?;
    Ok((rows.into_iter().map(|r| r.point).collect(), style))
}

/// One data row as read, with its timestamp text kept verbatim (so output can repeat it).
#[derive(Debug, Clone, PartialEq)]
pub struct InputRow {
    /// The parsed row (value NaN when empty, `NaN` or infinite).
    pub point: Point,
    /// The timestamp field exactly as in the input (trimmed).
    pub ts_text: String,
}

/// Like [`read_csv`], keeping every data row in file order with its timestamp text.
pub fn read_csv_rows<R: Read>(reader: R) -> Result<(Vec<InputRow>, TimestampStyle), ModelError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(reader);
    let mut points = Vec::new();
    let mut style = TimestampStyle::Naive;
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| ModelError::Csv {
            line: e.position().map_or(i as u64 + 1, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = rec.position().map_or(i as u64 + 1, |p| p.line());
        let ts_field = rec.get(0).unwrap_or("");
        if ts_field.is_empty() && rec.len() <= 1 {
            continue; // blank line
        }
        let Some((ts, st)) = parse_timestamp(ts_field) else {
            if i == 0 {
                continue; // header
            }
            return Err(ModelError::BadTimestamp {
                line,
                value: ts_field.to_string(),
            });
        };
        style = st;
        let raw = rec.get(1).ok_or_else(|| ModelError::Csv {
            line,
            message: "expected two fields: timestamp,value".to_string(),
        })?;
        let value = parse_value(raw).ok_or_else(|| ModelError::BadValue {
            line,
            value: raw.to_string(),
        })?;
        points.push(InputRow {
            point: Point { ts, value },
            ts_text: ts_field.to_string(),
        });
    }
    Ok((points, style))
}

fn parse_value(raw: &str) -> Option<f64> {
    let r = raw.trim();
    if r.is_empty() || r.eq_ignore_ascii_case("nan") || r.eq_ignore_ascii_case("null") {
        return Some(f64::NAN);
    }
    r.parse::<f64>()
        .ok()
        .map(|v| if v.is_finite() { v } else { f64::NAN })
}

/// Longest regular grid [`clean`] builds: 1,000,000 slots (114 years of hourly data, 9.5 years
/// of 5-minute data). Documented in `docs/models.md`.
pub const MAX_GRID_SLOTS: usize = 1_000_000;

/// Cleans raw points into a [`RegularSeries`]. Fails on an empty series and when no step can be
/// inferred (fewer than two distinct timestamps).
pub fn clean(points: &[Point], style: TimestampStyle) -> Result<RegularSeries, ModelError> {
    let mut report = CleanReport {
        input_rows: points.len(),
        ..CleanReport::default()
    };
    // Keep the file order index so "last row wins" survives the sort.
    let mut pts: Vec<(usize, Point)> = points
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, p)| {
            let ok = p.value.is_finite();
            if !ok {
                report.nan_dropped += 1;
            }
            ok
        })
        .collect();
    if pts.is_empty() {
        return Err(ModelError::Empty);
    }
    report.was_unsorted = pts.windows(2).any(|w| w[1].1.ts < w[0].1.ts);
    pts.sort_by_key(|(i, p)| (p.ts, *i));
    let mut dedup: Vec<Point> = Vec::with_capacity(pts.len());
    for (_, p) in pts {
        match dedup.last_mut() {
            Some(last) if last.ts == p.ts => {
                *last = p;
                report.duplicates_dropped += 1;
            }
            _ => dedup.push(p),
        }
    }
    if dedup.len() < 2 {
        return Err(ModelError::TooShort {
            got: dedup.len(),
            needed: 2,
            what: "inferring the time step",
        });
    }
    let step = infer_step(&dedup);
    if step <= 0 {
        return Err(ModelError::NoStep(format!("median spacing is {step} s")));
    }
    let start = dedup[0].ts;
    let last_slot = ((dedup[dedup.len() - 1].ts - start) as f64 / step as f64).round() as usize;
    if last_slot >= MAX_GRID_SLOTS {
        // A few rows spread over centuries would otherwise allocate gigabytes.
        return Err(ModelError::TooLarge {
            what: "the regridded series (slots between the first and last timestamp)",
            got: last_slot.saturating_add(1),
            limit: MAX_GRID_SLOTS,
            hint: "check the timestamps, or split the series",
        });
    }
    let mut values = vec![f64::NAN; last_slot + 1];
    for p in &dedup {
        let offset = p.ts - start;
        let slot = (offset as f64 / step as f64).round() as usize;
        if offset % step != 0 || values[slot].is_finite() {
            report.off_grid += 1;
        }
        values[slot] = p.value;
    }
    let mut run = 0usize;
    for v in &values {
        if v.is_finite() {
            run = 0;
        } else {
            report.gaps += 1;
            run += 1;
            report.longest_gap = report.longest_gap.max(run);
        }
    }
    Ok(RegularSeries {
        start,
        step_secs: step,
        values,
        style,
        report,
    })
}

/// The most frequent spacing between consecutive points (ties go to the smaller one), so gaps
/// do not inflate the step; when no spacing covers at least 10% of the pairs (jittered
/// timestamps), the median spacing instead.
fn infer_step(points: &[Point]) -> i64 {
    let mut diffs: Vec<i64> = points.windows(2).map(|w| w[1].ts - w[0].ts).collect();
    diffs.sort_unstable();
    let (mut best, mut best_n) = (0i64, 0usize);
    let mut i = 0;
    while i < diffs.len() {
        let j = diffs[i..].iter().take_while(|d| **d == diffs[i]).count();
        if j > best_n {
            best = diffs[i];
            best_n = j;
        }
        i += j;
    }
    if best_n * 10 >= diffs.len() {
        best
    } else {
        let as_f: Vec<f64> = diffs.iter().map(|d| *d as f64).collect();
        stats::median(&as_f).round() as i64
    }
}

/// Reads and cleans a CSV file in one call.
pub fn load_csv(path: &Path) -> Result<RegularSeries, ModelError> {
    let (points, style) = read_csv_path(path)?;
    clean(&points, style)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(csv: &str) -> Result<RegularSeries, ModelError> {
        let (p, s) = read_csv(csv.as_bytes())?;
        clean(&p, s)
    }

    #[test]
    fn header_optional_and_both_timestamp_styles() {
        let a = series("timestamp,value\n2011-07-01 00:00:01,1\n2011-07-01 01:00:01,2\n");
        let b = series("2011-07-01T00:00:01Z,1\n2011-07-01T01:00:01+00:00,2\n");
        let (a, b) = (a.expect("naive"), b.expect("rfc3339"));
        assert_eq!(a.values, vec![1.0, 2.0]);
        assert_eq!(a.step_secs, 3600);
        assert_eq!(a.start, b.start);
        assert_eq!(b.style, TimestampStyle::Rfc3339);
        assert_eq!(a.style.format(a.start), "2011-07-01 00:00:01");
    }

    #[test]
    fn unsorted_duplicates_nan_and_gaps() {
        let s = series(
            "ts,v\n2020-01-01 03:00:00,4\n2020-01-01 00:00:00,1\n2020-01-01 01:00:00,NaN\n\
             2020-01-01 01:00:00,2\n2020-01-01 00:00:00,9\n2020-01-01 04:00:00,5\n\
             2020-01-01 05:00:00,6\n2020-01-01 06:00:00,\n2020-01-01 07:00:00,8\n",
        )
        .expect("clean");
        assert!(s.report.was_unsorted);
        assert_eq!(s.report.nan_dropped, 2);
        assert_eq!(s.report.duplicates_dropped, 1);
        // The later row of the file wins for 00:00.
        assert_eq!(s.values[0], 9.0);
        assert_eq!(s.values[1], 2.0);
        assert!(s.values[2].is_nan());
        assert_eq!(s.report.gaps, 2);
        assert_eq!(s.report.longest_gap, 1);
        let f = s.filled(3);
        assert_eq!(f.values.len(), 8);
        assert!((f.values[2] - 3.0).abs() < 1e-12);
        assert!(f.values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn long_gap_truncates_history() {
        let mut csv = String::new();
        for h in [0, 1, 2, 10, 11, 12] {
            csv.push_str(&format!("2020-01-01 {h:02}:00:00,{h}\n"));
        }
        let s = series(&csv).expect("clean");
        let f = s.filled(3);
        assert_eq!(f.values, vec![10.0, 11.0, 12.0]);
        assert_eq!(f.report.truncated_before_gap, 10);
        assert_eq!(f.start, s.ts(10));
    }

    #[test]
    fn clear_errors() {
        let e = series("ts,v\n").expect_err("empty");
        assert!(matches!(e, ModelError::Empty), "{e}");
        let e = series("2020-01-01,1\n").expect_err("one point");
        assert!(e.to_string().contains("at least 2"), "{e}");
        let e = series("2020-01-01,1\nyesterday,2\n").expect_err("bad ts");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = series("2020-01-01,1\n2020-01-02,abc\n").expect_err("bad value");
        assert!(e.to_string().contains("\"abc\""), "{e}");
        let e = series("2020-01-01,1\n2020-01-01,2\n").expect_err("single timestamp");
        assert!(matches!(e, ModelError::TooShort { .. }), "{e}");
        let e = series("2020-01-01,nan\n2020-01-02,inf\n").expect_err("all nan");
        assert!(matches!(e, ModelError::Empty), "{e}");
    }

    #[test]
    fn daily_step_and_season() {
        let s = series("2024-01-01,1\n2024-01-02,2\n2024-01-04,4\n").expect("clean");
        assert_eq!(s.step_secs, 86_400);
        assert_eq!(s.season_len(), Some(7));
        assert_eq!(s.values.len(), 4);
    }

    #[test]
    fn reads_the_nab_layout() {
        let s = series(
            "timestamp,value\n2011-07-01 00:15:01,0.1\n2011-07-01 01:15:01,0.2\n2011-07-01 02:15:01,0.3\n",
        )
        .expect("clean");
        assert_eq!(s.season_len(), Some(24));
        assert_eq!(s.report.off_grid, 0);
    }
}
