//! Issue 14 item 6, on **one core** (no threads): scoring the newest hour of 10,000 campaigns x
//! 6 series with warmed streaming detectors, and fitting + forecasting (48 h, calibrated
//! intervals) 1,000 hourly series of 90 days. Plain timing with `Instant`, each task repeated
//! and the fastest and median runs printed, because criterion's minimum of 10 samples of a
//! half-minute task is too long on the shared machine.
//!
//! `nice -n 10 cargo bench --bench models_speed`

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

fn summary(name: &str, runs: &mut [Duration]) {
    runs.sort();
    println!(
        "{name}: min {:.3} s, median {:.3} s over {} runs",
        runs[0].as_secs_f64(),
        runs[runs.len() / 2].as_secs_f64(),
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
        let t0 = Instant::now();
        for (i, d) in detectors.iter_mut().enumerate() {
            let s = &series[i % TEMPLATES];
            black_box(d.update(s.ts(hour), s.values[hour]));
        }
        runs.push(t0.elapsed());
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
        let t0 = Instant::now();
        for s in &series {
            black_box(forecast::forecast(s, 48, &cfg).is_ok());
        }
        runs.push(t0.elapsed());
    }
    summary(
        "fit + forecast 48 h with calibrated intervals, 1,000 hourly series of 90 days",
        &mut runs,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    score_newest_hour();
    fit_and_forecast();
}
