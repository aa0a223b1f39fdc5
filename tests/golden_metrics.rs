//! The KPI exposition of the demo's first two days at a fixed start:
//! - its key values (ROI, CPA and loss rate of a campaign today, the whole business's rolling
//!   windows 24h/7d/10d/30d with the default 8 days of per-campaign history) checked against
//!   figures summed in this test straight from the input rows, with none of the store's or the
//!   renderer's code;
//! - diffed end to end against a golden file (node_exporter style) to catch any other change.
//!   Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test --test golden_metrics`
//!   and review the diff.

mod common;

use adpulse::normalize::Normalizer;
use adpulse::records::{Bucket, OrderKind, Record};
use adpulse::sinks::metrics::render_kpis;
use adpulse::sources::demo::{DemoConfig, DemoSource};
use adpulse::state::Store;
use chrono::{DateTime, Duration, Timelike, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

fn demo(start: &str, days: u32) -> (DateTime<Utc>, Vec<Record>) {
    let start: DateTime<Utc> = start.parse().unwrap();
    let mut cfg = DemoConfig::new("demo");
    cfg.start = Some(start);
    cfg.backfill_days = days;
    let tz = chrono_tz::Asia::Kolkata;
    let mut src = DemoSource::new(cfg, tz);
    let obs = src.observations(src.epoch(), start, start);
    let n = Normalizer::new(tz, "INR", Default::default());
    let records = obs
        .into_iter()
        .map(|o| n.normalize("demo", o).unwrap())
        .collect();
    (start, records)
}

fn exposition(start: DateTime<Utc>, records: &[Record]) -> String {
    let mut store = Store::new(8);
    store.ingest(records);
    store.prune(start);
    render(&store, start)
}

fn render(store: &Store, start: DateTime<Utc>) -> String {
    let snap = store.snapshot(start, &common::india_settings());
    let mut text = String::new();
    render_kpis(&snap, None, &mut text);
    text
}

/// The value of the one sample whose line starts with `name{` and contains every `labels` pair.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let hits: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|p| l.contains(p)))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(hits.len() <= 1, "{name} {labels:?} matches {hits:?}");
    hits.first().copied()
}

fn close(got: Option<f64>, want: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what} missing from /metrics"));
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{what}: /metrics shows {got}, the input rows give {want}"
    );
}

#[test]
fn key_values_match_sums_of_the_input_rows() {
    // late in the Indian day, so that campaigns have converted today; 32 days so that the 30-day
    // window is full, with the default 8 days of per-campaign history (general.retention_days)
    let (now, records) = demo("2026-11-21T17:50:00Z", 32);
    let mut store = Store::new(8);
    store.ingest(&records);
    store.prune(now);
    // the service's next refresh after a replayed backfill: nothing may count twice
    store.ingest(&records);
    store.prune(now);
    let text = render(&store, now);
    // Independent figures. India has no DST: local hour buckets start at :30 UTC, the local day
    // at 18:30 UTC the evening before.
    let ist = chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let local = now.with_timezone(&ist);
    let today = local.date_naive();
    let cur_hour = (now - Duration::minutes(i64::from(local.minute())))
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let loss_from = cur_hour - Duration::hours(3);
    let starts = [
        cur_hour - Duration::hours(23),
        cur_hour - Duration::hours(7 * 24 - 1),
        cur_hour - Duration::hours(10 * 24 - 1),
        cur_hour - Duration::hours(30 * 24 - 1),
    ];
    // 24h, 7d, 10d, 30d: spend, revenue, orders
    let mut w = [(Decimal::ZERO, Decimal::ZERO, 0u64); 4];
    // hour rows the replay repeated for hours older than the 8 days kept per campaign
    let per_campaign_from = now - Duration::days(8);
    let mut replayed_old = 0u64;
    // per campaign id: spend, conversions, revenue today; spend, revenue over the loss window
    #[derive(Default)]
    struct C {
        spend: Decimal,
        conv: f64,
        revenue: Decimal,
        loss_spend: Decimal,
        loss_rev: Decimal,
    }
    let mut per: std::collections::BTreeMap<String, C> = Default::default();
    for r in &records {
        match r {
            Record::CampaignStats(c) if c.bucket == Bucket::Hour => {
                if c.ts < per_campaign_from && c.ts >= now - Duration::hours(30 * 24 + 1) {
                    replayed_old += 1;
                }
                for (k, s) in starts.iter().enumerate() {
                    if c.ts >= *s && c.ts <= now {
                        w[k].0 += c.spend;
                    }
                }
                let e = per.entry(c.key.campaign_id.clone()).or_default();
                if c.ts.with_timezone(&ist).date_naive() == today {
                    e.spend += c.spend;
                    e.conv += c.conversions;
                }
                if c.ts >= loss_from && c.ts < cur_hour {
                    e.loss_spend += c.spend;
                }
            }
            Record::Orders(o) => {
                for (k, s) in starts.iter().enumerate() {
                    if o.ts >= *s && o.ts <= now {
                        w[k].1 += o.amount;
                        w[k].2 += u64::from(o.kind == OrderKind::Order);
                    }
                }
                // the demo tags orders with the campaign id
                let Some(id) = &o.utm_campaign else { continue };
                let e = per.entry(id.clone()).or_default();
                if o.ts.with_timezone(&ist).date_naive() == today {
                    e.revenue += o.amount;
                }
                if o.ts >= loss_from && o.ts < cur_hour {
                    e.loss_rev += o.amount;
                }
            }
            _ => {}
        }
    }
    let f = |d: Decimal| d.to_f64().unwrap();
    let mut cpas = 0;
    for (id, c) in &per {
        if c.spend.is_zero() {
            continue;
        }
        let l = format!(r#"campaign_id="{id}""#);
        let l = &[l.as_str()];
        close(
            sample(&text, "adpulse_campaign_spend_today", l),
            f(c.spend),
            "spend today",
        );
        close(
            sample(&text, "adpulse_campaign_roi", l),
            f((c.revenue - c.spend) / c.spend),
            &format!("ROI today of {id}"),
        );
        if c.conv > 0.0 {
            cpas += 1;
            close(
                sample(&text, "adpulse_campaign_cpa", l),
                f(c.spend) / c.conv,
                &format!("CPA today of {id}"),
            );
        } else {
            assert_eq!(
                sample(&text, "adpulse_campaign_cpa", l),
                None,
                "CPA of {id}"
            );
        }
        close(
            sample(&text, "adpulse_campaign_loss_rate_per_hour", l),
            f((c.loss_spend - c.loss_rev) / Decimal::from(3)),
            &format!("loss rate per hour of {id}"),
        );
    }
    assert!(
        per.len() >= 6 && cpas >= 1,
        "the fixture must exercise ROI and CPA"
    );
    assert!(
        replayed_old > 0,
        "the fixture must reach past the per-campaign history"
    );
    assert_eq!(
        store.stale_restatements(),
        replayed_old,
        "every replayed old hour row is recognised, not added twice"
    );
    for (k, label) in ["24h", "7d", "10d", "30d"].iter().enumerate() {
        let l = format!(r#"window="{label}""#);
        let l = &[l.as_str()];
        let (s, rv, n) = w[k];
        close(
            sample(&text, "adpulse_total_spend_rolling", l),
            f(s),
            "spend rolling",
        );
        close(
            sample(&text, "adpulse_total_revenue_rolling", l),
            f(rv),
            "revenue rolling",
        );
        close(
            sample(&text, "adpulse_total_loss_rolling", l),
            f(s - rv),
            "loss rolling",
        );
        close(
            sample(&text, "adpulse_total_orders_rolling", l),
            n as f64,
            "orders rolling",
        );
        close(
            sample(&text, "adpulse_total_roi_rolling", l),
            f((rv - s) / s),
            "ROI rolling",
        );
    }
    // the windows differ, so a window summing the wrong range cannot pass by coincidence
    assert!(w[1].0 < w[2].0 && w[2].0 < w[3].0, "windows {w:?}");
}

#[test]
fn kpi_exposition_matches_the_golden_file() {
    let (start, records) = demo("2026-11-20T12:40:00Z", 2);
    let text = exposition(start, &records);
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
