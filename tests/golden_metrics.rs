//! The KPI exposition, diffed end to end against a golden file (node_exporter style): the demo's
//! first two days at a fixed start, rendered as Prometheus text. Regenerate after an intended
//! change with `UPDATE_GOLDEN=1 cargo test --test golden_metrics` and review the diff.

use adpulse::kpi::Margin;
use adpulse::normalize::Normalizer;
use adpulse::sinks::metrics::families;
use adpulse::sources::demo::{DemoConfig, DemoSource};
use adpulse::state::{SnapshotSettings, Store};
use chrono::{DateTime, Utc};
use prometheus::Encoder;

#[test]
fn kpi_exposition_matches_the_golden_file() {
    let start: DateTime<Utc> = "2026-11-20T12:40:00Z".parse().unwrap();
    let mut cfg = DemoConfig::new("demo");
    cfg.start = Some(start);
    cfg.backfill_days = 2;
    let tz = chrono_tz::Asia::Kolkata;
    let mut src = DemoSource::new(cfg, tz);
    let obs = src.observations(src.epoch(), start, start);
    let n = Normalizer::new(tz, "INR", Default::default());
    let records: Vec<_> = obs
        .into_iter()
        .map(|o| n.normalize("demo", o).unwrap())
        .collect();
    let mut store = Store::new(8);
    store.ingest(&records);
    let snap = store.snapshot(
        start,
        &SnapshotSettings {
            tz,
            currency: "INR".into(),
            margin: Margin::default(),
            loss_rate_window_hours: 3,
            tracking_window_hours: 24,
            roi_target: Some(0.0),
        },
    );
    let mut text = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&families(&snap), &mut text)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/golden.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .expect("tests/fixtures/metrics/golden.prom missing: run with UPDATE_GOLDEN=1");
    if golden != text {
        let diff: Vec<String> = golden
            .lines()
            .zip(text.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "/metrics differs from the golden file ({} vs {} lines):\n{}",
            golden.lines().count(),
            text.lines().count(),
            diff.join("\n")
        );
    }
}
