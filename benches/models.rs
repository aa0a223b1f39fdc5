//! Fit + forecast and streaming scoring for 1,000 hourly series of 90 days (2,160 points each),
//! spread over the machine's cores with scoped threads, as the collector would run them.
//!
//! `CARGO_TARGET_DIR=... cargo bench --bench models`

use std::hint::black_box;
use std::time::Duration;

use adpulse::models::anomaly::{Detector, DetectorConfig};
use adpulse::models::eval::backtest::demo_hourly_spend;
use adpulse::models::forecast::{self, ForecastConfig};
use adpulse::models::series::RegularSeries;
use criterion::{Criterion, criterion_group, criterion_main};

const SERIES: usize = 1_000;

fn corpus() -> Vec<RegularSeries> {
    (0..SERIES as u64)
        .map(|s| demo_hourly_spend(90, s))
        .collect()
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn par_for_each<F: Fn(&RegularSeries) + Sync>(series: &[RegularSeries], f: F) {
    let chunk = series.len().div_ceil(threads());
    std::thread::scope(|s| {
        for part in series.chunks(chunk) {
            let f = &f;
            s.spawn(move || part.iter().for_each(f));
        }
    });
}

fn bench(c: &mut Criterion) {
    let series = corpus();
    let cfg = ForecastConfig::default();
    let mut g = c.benchmark_group("models_1000_series_90d_hourly");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(60));
    g.bench_function("fit_and_forecast_48h", |b| {
        b.iter(|| {
            par_for_each(&series, |s| {
                let f = forecast::forecast(s, 48, &cfg);
                black_box(f.is_ok());
            })
        })
    });
    g.bench_function("stream_score_all_points", |b| {
        b.iter(|| {
            par_for_each(&series, |s| {
                let mut d = Detector::new(DetectorConfig::for_step(s.step_secs));
                for (k, v) in s.values.iter().enumerate() {
                    black_box(d.update(s.ts(k), *v));
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
