//! Issue 15: the models' memory per campaign. Builds the live runner's state for N campaigns
//! from the demo's history (the demo scaled to N campaigns, 8 days of backfill, the service's
//! default `retention_days`), runs one scoring pass of `ModelRunner::cycle` (no QuestDB, no
//! sink: every campaign-hour is scored and its rows dropped) and reports, with a counting
//! global allocator, the bytes the models hold after it:
//!
//! - `runner`: what dropping the runner frees (detectors, tracking tests, per-campaign maps,
//!   the revenue detector, the forecasts "now");
//! - `outputs`: what dropping the published model outputs then frees (the latest value of every
//!   series, as `/metrics` reads them);
//! - `total` and `per campaign`;
//! - `fingerprint`: a hash of every score of the same hours fed, through the public API, to a
//!   detector per campaign and series and to the tracking tests (every field of every
//!   `Scored` and `TrackingStatus`, bit for bit), so that a change that must not move any
//!   score can be checked to leave it equal.
//!
//! `nice -n 10 cargo bench --bench models_memory -- 10 100 1000 10000` (sizes are rounded up to
//! a multiple of the demo's 6 campaigns).

use std::sync::Arc;

use adpulse::models::anomaly::{Detector, DetectorConfig, Scored, TrackingStatus};
use adpulse::models::live::{self, CAMPAIGN_SERIES, ModelOutputs, ModelRunner, TrackingBank};
use adpulse::normalize::{Normalizer, hour_floor};
use adpulse::pipeline::Pipeline;
use adpulse::sources::demo::{DemoConfig, DemoSource};
use adpulse::state::Store;
use adpulse::telemetry::Telemetry;
use arc_swap::ArcSwap;
use chrono::{Duration, Utc};
use rust_decimal::prelude::ToPrimitive;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

use counting_alloc::live;

/// The demo's history for `scale` x 6 campaigns, `days` days up to the current hour, in a store.
fn demo_store(scale: u32, days: u32, config: &adpulse::config::Config) -> Store {
    let tz = config.timezone();
    let now = Utc::now();
    let mut cfg = DemoConfig::new("demo");
    cfg.scale = scale;
    cfg.backfill_days = days;
    cfg.start = Some(now);
    let mut src = DemoSource::new(cfg, tz);
    let fx = [("USD".to_string(), "83.50".parse().expect("rate"))]
        .into_iter()
        .collect();
    let n = Normalizer::new(tz, config.general.reporting_currency.clone(), fx);
    let mut store = Store::new(config.general.retention_days).with_timezone(tz);
    // a day at a time, so the bench never holds the whole history's observations
    let mut from = src.epoch();
    let end = hour_floor(now, tz);
    while from < end {
        let to = (from + Duration::days(1)).min(end);
        let records: Vec<_> = src
            .observations(from, to, now)
            .into_iter()
            .map(|o| n.normalize("demo", o).expect("demo observation normalizes"))
            .collect();
        store.ingest(&records);
        from = to;
    }
    store
}

/// FNV-1a over 64-bit words.
struct Fnv(u64);

impl Fnv {
    fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn scored(&mut self, s: &Scored) {
        for x in [
            s.score,
            s.neg_log10_p,
            s.z,
            s.shift_z,
            s.expected,
            s.lower,
            s.upper,
            s.knn_ratio,
            s.knn_alpha,
        ] {
            self.word(x.to_bits());
        }
        self.word(u64::from(s.is_anomaly) | u64::from(s.recurrent) << 1);
        self.word(s.state as u64);
    }
    fn tracking(&mut self, t: &TrackingStatus) {
        self.word(t.zero_hours as u64);
        for x in [
            t.click_ratio,
            t.expected_conversions,
            t.p_zero,
            t.unmatched_orders,
            t.p_orders,
        ] {
            self.word(x.to_bits());
        }
        self.word(t.reason as u64 | u64::from(t.broken) << 8);
    }
}

/// The hash of every score of the store's campaign-hours, fed as the runner feeds them.
fn fingerprint(pipeline: &Pipeline, tz: chrono_tz::Tz) -> (u64, usize) {
    let cur = hour_floor(pipeline.now(), tz).timestamp();
    let hours = pipeline.with_store(|s| live::campaign_hours(s, &Default::default(), cur, tz));
    let mut dets: std::collections::HashMap<_, Vec<Option<Detector>>> = Default::default();
    let mut bank = TrackingBank::default();
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let mut n = 0;
    for ch in &hours {
        let row = dets
            .entry(ch.key.clone())
            .or_insert_with(|| (0..CAMPAIGN_SERIES.len()).map(|_| None).collect());
        let t = &ch.totals;
        let values = [
            t.spend.to_f64(),
            t.cpc(),
            t.cpm(),
            t.ctr(),
            t.cr(),
            Some(t.conversions),
        ];
        for (slot, v) in row.iter_mut().zip(values) {
            let Some(v) = v.filter(|v: &f64| v.is_finite()) else {
                continue;
            };
            let d = slot.get_or_insert_with(|| Detector::new(DetectorConfig::for_step(3600)));
            h.scored(&d.update(ch.t, v));
            n += 1;
        }
        h.tracking(&bank.update(&ch.key, ch.t, &ch.totals, ch.shop_orders));
        n += 1;
    }
    (h.0, n)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100, 1000, 10_000]
    } else {
        sizes
    };
    let config = adpulse::config::Config::from_toml_str("").expect("the default config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for n in sizes {
        let scale = n.div_ceil(6).max(1) as u32;
        let campaigns = scale as usize * 6;
        let store = demo_store(scale, 8, &config);
        let pipeline = Arc::new(Pipeline::new(
            Normalizer::new(config.timezone(), "INR", Default::default()),
            store,
            None,
            Arc::new(Telemetry::new()),
        ));
        let outputs = Arc::new(ArcSwap::from_pointee(ModelOutputs::default()));
        let before = live();
        let mut runner = ModelRunner::new(&config, pipeline.clone(), None, None, outputs.clone());
        rt.block_on(runner.cycle());
        let after = live();
        drop(runner);
        let without_runner = live();
        let scored = outputs.load().anomalies.len();
        outputs.store(Arc::new(ModelOutputs::default()));
        let without_outputs = live();
        let total = after.saturating_sub(before);
        let runner_b = after.saturating_sub(without_runner);
        let outputs_b = without_runner.saturating_sub(without_outputs);
        println!(
            "campaigns {campaigns:>6}  series {scored:>6}  runner {:>8.2} MiB  outputs {:>7.2} MiB  total {:>8.2} MiB  per campaign {:>6} bytes",
            mib(runner_b),
            mib(outputs_b),
            mib(total),
            total / campaigns
        );
        let (fp, points) = fingerprint(&pipeline, config.timezone());
        println!("campaigns {campaigns:>6}  fingerprint {fp:016x} over {points} scores");
        drop(pipeline);
    }
}
