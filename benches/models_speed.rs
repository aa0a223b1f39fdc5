//! Issue 14 item 6, on **one core** (no threads): scoring the newest hour of 10,000 campaigns x
//! 6 series with warmed streaming detectors, and fitting + forecasting (48 h, calibrated
//! intervals) 1,000 hourly series of 90 days. Plain timing with `Instant`, each task repeated
//! and the fastest and median runs printed, because criterion's minimum of 10 samples of a
//! half-minute task is too long on the shared machine.
//!
//! `nice -n 10 cargo bench --bench models_speed` (`ADPULSE_BENCH=score` for the scoring task
//! alone)
//!
//! With `ADPULSE_EXPORT_SERIES=<file.csv>` it also writes the 1,000 series (`unique_id,ds,y`)
//! for `scripts/validation/statsforecast_bench.py`, and prints the hold-out MASE of the same
//! split that script uses (last 48 h held out, seasonal naive m = 24 as the scale), so both
//! tools are judged on the same points.

use std::hint::black_box;
use std::time::{Duration, Instant};

use adpulse::models::anomaly::{Detector, DetectorConfig};
use adpulse::models::eval::backtest::demo_hourly_spend;
use adpulse::models::forecast::{self, ForecastConfig};

const CAMPAIGNS: usize = 10_000;
const SERIES_PER_CAMPAIGN: usize = 6;
/// Distinct warmed detectors, cloned to fill the 60,000 (the cost of an update does not depend
/// on which campaign it belongs to; warming 60,000 detectors on two weeks each would take
/// minutes).
const TEMPLATES: usize = 60;
const WARM_HOURS: usize = 14 * 24;

/// CPU time of this (single-threaded) process so far, from Linux's `/proc/self/schedstat`
/// (nanoseconds on CPU): on a shared machine the wall time includes waiting for a core.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

fn summary(name: &str, runs: &mut [(Duration, f64)]) {
    runs.sort_by_key(|a| a.0);
    let mut cpu: Vec<f64> = runs.iter().map(|r| r.1).collect();
    cpu.sort_by(f64::total_cmp);
    println!(
        "{name}: wall min {:.3} s, median {:.3} s; CPU min {:.3} s, median {:.3} s; {} runs",
        runs[0].0.as_secs_f64(),
        runs[runs.len() / 2].0.as_secs_f64(),
        cpu[0],
        cpu[cpu.len() / 2],
        runs.len()
    );
}

fn score_newest_hour() {
    let series: Vec<_> = (0..TEMPLATES as u64)
        .map(|s| demo_hourly_spend(15, 10_000 + s))
        .collect();
    let templates: Vec<Detector> = series
        .iter()
        .map(|s| {
            let mut d = Detector::new(DetectorConfig::for_step(3600));
            for k in 0..WARM_HOURS {
                d.update(s.ts(k), s.values[k]);
            }
            d
        })
        .collect();
    let mut detectors: Vec<Detector> = (0..CAMPAIGNS * SERIES_PER_CAMPAIGN)
        .map(|i| templates[i % TEMPLATES].clone())
        .collect();
    let mut runs = Vec::new();
    // Each run scores the next hour (hours 336..359 of the templates' series).
    for hour in WARM_HOURS..WARM_HOURS + 5 {
        let (t0, c0) = (Instant::now(), cpu_secs());
        for (i, d) in detectors.iter_mut().enumerate() {
            let s = &series[i % TEMPLATES];
            black_box(d.update(s.ts(hour), s.values[hour]));
        }
        runs.push((t0.elapsed(), cpu_secs() - c0));
    }
    summary(
        "score the newest hour of 10,000 campaigns x 6 series (60,000 updates)",
        &mut runs,
    );
}

fn fit_and_forecast() {
    let series: Vec<_> = (0..1_000u64).map(|s| demo_hourly_spend(90, s)).collect();
    let cfg = ForecastConfig::default();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let (t0, c0) = (Instant::now(), cpu_secs());
        for s in &series {
            black_box(forecast::forecast(s, 48, &cfg).is_ok());
        }
        runs.push((t0.elapsed(), cpu_secs() - c0));
    }
    summary(
        "fit + forecast 48 h with calibrated intervals, 1,000 hourly series of 90 days",
        &mut runs,
    );
}

/// Mean hold-out MASE over the 1,000 series: fit on all but the last 48 h, forecast them, scale
/// by the in-sample MAE of the seasonal naive (m = 24) on the fitted part.
fn holdout_mase(series: &[adpulse::models::series::RegularSeries]) -> f64 {
    let cfg = ForecastConfig::default();
    let mut sum = 0.0;
    for s in series {
        let n = s.values.len() - 48;
        let mut train = s.clone();
        train.values.truncate(n);
        let Ok(f) = forecast::forecast(&train, 48, &cfg) else {
            panic!("forecast failed on a bench series");
        };
        let mae: f64 = (0..48)
            .map(|h| (f.yhat[h] - s.values[n + h]).abs())
            .sum::<f64>()
            / 48.0;
        let scale: f64 = (24..n)
            .map(|i| (train.values[i] - train.values[i - 24]).abs())
            .sum::<f64>()
            / (n - 24) as f64;
        sum += mae / scale;
    }
    sum / series.len() as f64
}

fn export_series(path: &str) {
    use std::io::Write as _;
    let series: Vec<_> = (0..1_000u64).map(|s| demo_hourly_spend(90, s)).collect();
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {path}: {e}")),
    );
    let _ = writeln!(out, "unique_id,ds,y");
    for (i, s) in series.iter().enumerate() {
        for (k, v) in s.values.iter().enumerate() {
            let _ = writeln!(out, "s{i},{},{v}", s.ts(k));
        }
    }
    let _ = out.flush();
    let t0 = Instant::now();
    let mase = holdout_mase(&series);
    println!(
        "wrote {path}; adpulse holt-winters hold-out MASE (last 48 h) over 1,000 series: {mase:.4} ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    if let Ok(path) = std::env::var("ADPULSE_EXPORT_SERIES") {
        export_series(&path);
        return;
    }
    // `ADPULSE_BENCH=score` or `=forecast` runs one task alone (the forecast task is the long
    // one; a change to the detector needs only the first).
    let only = std::env::var("ADPULSE_BENCH").unwrap_or_default();
    if only != "forecast" {
        score_newest_hour();
    }
    if only != "score" {
        fit_and_forecast();
    }
}
