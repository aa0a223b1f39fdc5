//! The CLI-facing functions on small fixtures: CSV in, CSV out, clear errors.

use std::path::{Path, PathBuf};

use adpulse::models::cli;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

fn run_forecast(name: &str, horizon: usize) -> Result<String, String> {
    let mut out = Vec::new();
    cli::forecast_csv(&fixture(name), horizon, &mut out).map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn run_detect(name: &str) -> Result<String, String> {
    let mut out = Vec::new();
    cli::detect_csv(&fixture(name), &mut out).map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn fields(line: &str) -> Vec<&str> {
    line.split(',').collect()
}

fn parse(x: &str) -> f64 {
    x.parse().unwrap_or(f64::NAN)
}

#[test]
fn forecast_writes_bands_after_the_last_row() {
    let text = run_forecast("hourly.csv", 48).expect("forecast");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,yhat,yhat_lower_80,yhat_upper_80,yhat_lower_95,yhat_upper_95")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 48);
    assert!(rows[0].starts_with("2025-10-11 00:00:00,"), "{}", rows[0]);
    assert!(rows[47].starts_with("2025-10-12 23:00:00,"), "{}", rows[47]);
    for r in &rows {
        let f: Vec<f64> = fields(r)[1..].iter().map(|x| parse(x)).collect();
        let (y, l80, u80, l95, u95) = (f[0], f[1], f[2], f[3], f[4]);
        assert!(l95 <= l80 && l80 <= y && y <= u80 && u80 <= u95, "{r}");
        // The fixture's cycle runs between 50 and 150.
        assert!((40.0..160.0).contains(&y), "{r}");
    }
    // The daily cycle survives: 06:00 is the peak, 18:00 the trough.
    let at = |h: usize| parse(fields(rows[h])[1]);
    assert!(at(6) > 1.5 * at(18), "{} vs {}", at(6), at(18));
}

#[test]
fn detect_scores_every_row_and_flags_the_spike_only() {
    let text = run_detect("hourly.csv").expect("detect");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,value,expected,lower,upper,score,is_anomaly")
    );
    let rows: Vec<Vec<&str>> = lines.map(fields).collect();
    assert_eq!(rows.len(), 240);
    let flagged: Vec<&str> = rows
        .iter()
        .filter(|r| r[6] == "true")
        .map(|r| r[0])
        .collect();
    assert_eq!(flagged, vec!["2025-10-09 06:00:00"]);
    for r in &rows {
        let score = parse(r[5]);
        assert!((0.0..=1.0).contains(&score), "{r:?}");
    }
    // Warm-up rows have no band; later rows do.
    assert_eq!(rows[0][3], "");
    assert!(parse(rows[100][3]) < parse(rows[100][2]));
}

#[test]
fn messy_input_is_sorted_deduplicated_and_nan_free() {
    let text = run_detect("messy.csv").expect("detect");
    let ts: Vec<&str> = text.lines().skip(1).map(|l| fields(l)[0]).collect();
    assert_eq!(
        ts,
        vec![
            "2025-10-01T00:00:00Z",
            "2025-10-01T01:00:00Z",
            "2025-10-01T02:00:00Z",
            "2025-10-01T03:00:00Z",
            "2025-10-01T06:00:00Z",
            "2025-10-01T08:00:00Z",
            "2025-10-01T09:00:00Z",
            "2025-10-01T10:00:00Z",
        ]
    );
    // The later duplicate of 00:00 wins.
    assert!(text.contains("2025-10-01T00:00:00Z,1.5,"), "{text}");
    // Gaps are interpolated for forecasting.
    let f = run_forecast("messy.csv", 3).expect("forecast");
    assert_eq!(f.lines().count(), 4);
    assert!(f.contains("2025-10-01T11:00:00Z,"), "{f}");
}

#[test]
fn bad_input_gives_clear_messages() {
    let e = run_forecast("short.csv", 5).expect_err("short");
    assert!(
        e.contains("3 usable points") && e.contains("needs at least 8"),
        "{e}"
    );
    let e = run_forecast("bad_timestamp.csv", 5).expect_err("bad timestamp");
    assert!(
        e.contains("line 3") && e.contains("01/10/2025 01:00"),
        "{e}"
    );
    let e = run_forecast("does_not_exist.csv", 5).expect_err("missing");
    assert!(
        e.contains("cannot read") && e.contains("does_not_exist.csv"),
        "{e}"
    );
    let e = run_forecast("hourly.csv", 0).expect_err("horizon 0");
    assert!(e.contains("horizon"), "{e}");
    // A short series can still be scored (it stays in warm-up).
    let d = run_detect("short.csv").expect("detect short");
    assert_eq!(d.lines().count(), 4);
    assert!(!d.contains(",true"));
}

#[test]
fn constant_series_gets_a_flat_forecast() {
    let text = run_forecast("constant.csv", 4).expect("forecast");
    for l in text.lines().skip(1) {
        assert_eq!(&fields(l)[1..], &["42", "42", "42", "42", "42"], "{l}");
    }
}

#[test]
fn eval_reports_fail_loudly_without_data() {
    let mut out = Vec::new();
    let e = cli::nab_report(Path::new("/nonexistent/nab"), &mut out).expect_err("no data");
    assert!(
        e.to_string().contains("cannot read") && e.to_string().contains("windows-all.json"),
        "{e}"
    );
    let e = cli::backtest_report(Path::new("/nonexistent/nab"), &mut out).expect_err("no data");
    assert!(e.to_string().contains("/nonexistent/nab"), "{e}");
}
