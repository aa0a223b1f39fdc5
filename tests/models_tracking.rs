//! Issue 14 item 4: the tracking-break test at low volume, on the demo source (deterministic
//! per seed). The demo's *Performance Max* campaign loses conversion tracking
//! `tracking_break_hours_ago` hours before the demo's start (its config); shop orders keep
//! arriving with its UTM campaign. Over 6 seeds and 10 simulated days the test must flag it
//! within 24 hours of the break's start and never flag a healthy campaign.

use std::collections::HashMap;

use adpulse::models::anomaly::{TrackingBreak, TrackingReason};
use adpulse::models::live::{self, CampaignHour};
use adpulse::normalize::{Normalizer, hour_floor};
use adpulse::sources::demo::{DemoConfig, DemoSource, Role, campaigns};
use adpulse::state::Store;
use chrono::{DateTime, Duration, Utc};

const SEEDS: [u64; 6] = [42, 1, 2, 3, 7, 1234];

/// The demo's campaign-hours over its 10-day backfill, as the live runner sees them.
fn demo_hours(seed: u64, start: DateTime<Utc>) -> (Vec<CampaignHour>, DemoConfig) {
    let tz = chrono_tz::Asia::Kolkata;
    let mut cfg = DemoConfig::new("demo");
    cfg.seed = seed;
    cfg.start = Some(start);
    cfg.backfill_days = 10;
    let mut src = DemoSource::new(cfg.clone(), tz);
    let obs = src.observations(src.epoch(), start, start);
    let fx = [("USD".to_string(), "83.50".parse().expect("rate"))]
        .into_iter()
        .collect();
    let n = Normalizer::new(tz, "INR", fx);
    let records: Vec<_> = obs
        .into_iter()
        .map(|o| n.normalize("demo", o).expect("demo observation normalizes"))
        .collect();
    let mut store = Store::new(12);
    store.ingest(&records);
    let cur_hour = hour_floor(start, tz).timestamp();
    (
        live::campaign_hours(&store, &HashMap::new(), cur_hour, tz),
        cfg,
    )
}

#[test]
fn demo_break_flagged_within_a_day_and_no_healthy_campaign_flagged_over_six_seeds() {
    let broken_id = campaigns()
        .into_iter()
        .find(|c| c.role == Role::TrackingBreak)
        .map(|c| c.id)
        .expect("the demo scenario has a tracking-break campaign");
    let start: DateTime<Utc> = "2026-11-23T06:30:00Z".parse().expect("start");
    let mut report = Vec::new();
    for seed in SEEDS {
        let (hours, cfg) = demo_hours(seed, start);
        // The break's start comes from the demo's config, not from the model.
        let brk = (start - Duration::hours(i64::from(cfg.tracking_break_hours_ago))).timestamp();
        let days = hours.iter().map(|h| h.t).max().unwrap_or(0)
            - hours.iter().map(|h| h.t).min().unwrap_or(0);
        assert!(
            days >= 10 * 86_400 - 3600,
            "seed {seed}: {} h of history",
            days / 3600 + 1
        );
        let mut bank = live::TrackingBank::default();
        let mut first_flag: Option<(i64, TrackingReason, f64)> = None;
        let mut false_flags = Vec::new();
        for h in &hours {
            let st = bank.update(&h.key, h.t, &h.totals, h.shop_orders);
            if !st.broken {
                continue;
            }
            if h.key.campaign_id == broken_id && h.t >= brk {
                if first_flag.is_none() {
                    first_flag = Some((h.t, st.reason, TrackingBreak::p_value(&st)));
                }
            } else {
                false_flags.push((h.name.clone(), (h.t - brk) / 3600));
            }
        }
        assert!(
            false_flags.is_empty(),
            "seed {seed}: flagged while tracking worked: {false_flags:?}"
        );
        let Some((t, reason, p)) = first_flag else {
            panic!("seed {seed}: the break was never flagged");
        };
        let after_h = (t - brk) / 3600;
        report.push(format!(
            "seed {seed}: flagged {after_h} h after the break ({}), p = {p:.4}",
            reason.name()
        ));
        assert!(
            t - brk < 24 * 3600,
            "seed {seed}: flagged {after_h} h after the break"
        );
        assert_eq!(reason, TrackingReason::UnmatchedOrders, "seed {seed}");
    }
    println!("{}", report.join("\n"));
}
