//! The demo's region report (issue 16): every campaign day is split over MOI's states, and the
//! regions add up to the campaign's day exactly (spend to the paisa, impressions and clicks to the
//! unit), as a platform's region breakdown adds up to its campaign totals. The sums are taken
//! here over the rows the demo emits.

use adpulse::normalize::Observation;
use adpulse::records::{Bucket, CampaignKey};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn regions_add_up_to_each_campaign_day_to_the_paisa() {
    let now: DateTime<Utc> = "2026-11-20T16:40:00Z".parse().unwrap();
    let mut demo = adpulse::sources::demo::DemoConfig::new("demo");
    demo.start = Some(now);
    demo.backfill_only = true;
    let mut src = adpulse::sources::demo::DemoSource::new(demo.clone(), chrono_tz::Asia::Kolkata);
    let obs = src.observations(src.epoch(), now, now);
    type Key = (CampaignKey, DateTime<Utc>);
    let mut days: BTreeMap<Key, (Decimal, u64, u64)> = BTreeMap::new();
    let mut regions: BTreeMap<Key, (Decimal, u64, u64)> = BTreeMap::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for o in &obs {
        match o {
            Observation::Campaign(c) if c.bucket == Bucket::Day => {
                days.insert((c.key.clone(), c.ts), (c.spend, c.impressions, c.clicks));
            }
            Observation::Region(r) => {
                assert_eq!(r.stat.bucket, Bucket::Day, "region rows are days");
                assert!(!r.stat.spend.is_sign_negative(), "{r:?}");
                assert_eq!(r.stat.conversions, 0.0, "no purchases by region");
                names.insert(r.region.clone());
                let e = regions.entry((r.stat.key.clone(), r.stat.ts)).or_default();
                e.0 += r.stat.spend;
                e.1 += r.stat.impressions;
                e.2 += r.stat.clicks;
            }
            _ => {}
        }
    }
    assert!(days.len() >= 60, "6 campaigns over 10 days: {}", days.len());
    assert_eq!(regions, days, "each campaign day = the sum of its regions");
    assert!(
        names.contains("Maharashtra") && names.len() >= 10,
        "{names:?}"
    );

    // off: no region rows at all
    demo.region_report = false;
    let mut src = adpulse::sources::demo::DemoSource::new(demo, chrono_tz::Asia::Kolkata);
    let obs = src.observations(src.epoch(), now, now);
    assert!(!obs.iter().any(|o| matches!(o, Observation::Region(_))));
}
