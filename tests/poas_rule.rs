//! The "pause when POAS < 1 for 7 days" rule as users configure it: a `type = "poas_below"`
//! entry under `[[actions.rules]]` parsed from TOML, run by `actions::rules::evaluate` on the
//! snapshot of the demo's 10 days. The campaigns it must pause, and their POAS, are computed here
//! from the demo's own rows with the definitions of docs/profit.md written out (each campaign's
//! last-click order lines over the 7 complete reporting days, 2% payment fees, no shipping cost:
//! the `[profit]` defaults), with none of the store's or the rule's code.

mod common;

use adpulse::config::Config;
use adpulse::normalize::{Normalizer, Observation};
use adpulse::records::{Bucket, CostSource, Record};
use adpulse::sources::demo::{DemoConfig, DemoSource};
use adpulse::state::Store;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::collections::BTreeMap;

const START: &str = "2026-11-20T16:40:00Z";

fn config(threshold: f64) -> Config {
    let text = format!(
        "{}\n[[actions.rules]]\ntype = \"poas_below\"\nthreshold = {threshold:?}\ndays = 7\n",
        adpulse::config::DEFAULT_CONFIG
    );
    let cfg = Config::from_toml_str(&text).expect("the rule parses");
    cfg.validate().expect("and validates");
    cfg
}

/// (campaign id -> POAS over the 7 complete days before today), from the demo's rows.
fn expected(obs: &[Observation], today: chrono::NaiveDate) -> BTreeMap<String, f64> {
    let ist = chrono_tz::Asia::Kolkata;
    let first = today - Duration::days(7);
    let in_range = |ts: DateTime<Utc>| {
        let d = ts.with_timezone(&ist).date_naive();
        d >= first && d < today
    };
    // the last version of each line (a refund restates it)
    let mut lines = BTreeMap::new();
    let mut spend: BTreeMap<String, Decimal> = BTreeMap::new();
    for o in obs {
        match o {
            Observation::Line(l) => {
                lines.insert((l.order_id.clone(), l.line_id.clone()), l.clone());
            }
            Observation::Campaign(c) if c.bucket == Bucket::Day && in_range(c.ts) => {
                *spend.entry(c.key.campaign_id.clone()).or_default() += c.spend;
            }
            _ => {}
        }
    }
    let mut margin: BTreeMap<String, Decimal> = BTreeMap::new();
    for l in lines.values().filter(|l| in_range(l.ts)) {
        let Some(c) = &l.utm_campaign else { continue };
        let sales = l.net_sales + l.shipping_charged;
        let cogs = match (l.cost_source, l.unit_cost) {
            (CostSource::Missing, _) | (_, None) => Decimal::ZERO,
            (_, Some(u)) => u * Decimal::from(l.quantity - l.refunded_quantity),
        };
        let fees = sales * Decimal::new(2, 2);
        *margin.entry(c.clone()).or_default() += sales - cogs - fees - l.refunded_amount;
    }
    spend
        .into_iter()
        .filter(|(_, s)| !s.is_zero())
        .map(|(c, s)| {
            let cm = margin.get(&c).copied().unwrap_or_default();
            (c, (cm / s).to_f64().unwrap())
        })
        .collect()
}

/// The poas_below proposals of `evaluate` on the demo's snapshot: campaign id -> POAS.
fn proposals(cfg: &Config, records: &[Record], now: DateTime<Utc>) -> BTreeMap<String, f64> {
    let mut store = Store::new(cfg.general.retention_days)
        .with_timezone(cfg.timezone())
        .with_profit(cfg.profit.clone());
    store.ingest(records);
    store.prune(now);
    let snap = store.snapshot(now, &common::india_settings());
    adpulse::actions::rules::evaluate(&snap, &cfg.actions)
        .into_iter()
        .filter(|p| p.rule == "poas_below")
        .map(|p| {
            assert_eq!(p.kind, adpulse::actions::rules::ActionKind::Pause);
            (p.key.campaign_id.clone(), p.values["poas"])
        })
        .collect()
}

#[test]
fn poas_below_from_toml_pauses_the_campaigns_below_break_even() {
    let now: DateTime<Utc> = START.parse().unwrap();
    let tz = chrono_tz::Asia::Kolkata;
    let mut demo = DemoConfig::new("demo");
    demo.start = Some(now);
    let mut src = DemoSource::new(demo, tz);
    let obs = src.observations(src.epoch(), now, now);
    let want = expected(&obs, now.with_timezone(&tz).date_naive());
    let n = Normalizer::new(tz, "INR", Default::default());
    let records: Vec<Record> = obs
        .into_iter()
        .map(|o| n.normalize("demo", o).unwrap())
        .collect();

    let below: BTreeMap<&String, &f64> = want.iter().filter(|(_, p)| **p < 1.0).collect();
    assert!(
        !below.is_empty(),
        "the crisis: some campaign below POAS 1: {want:?}"
    );
    let got = proposals(&config(1.0), &records, now);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        below.keys().copied().collect::<Vec<_>>(),
        "paused {got:?}, the rows give {want:?}"
    );
    for (c, poas) in &got {
        assert!(
            (poas - want[c]).abs() < 1e-9,
            "{c}: POAS {poas} vs {}",
            want[c]
        );
    }
    // a threshold below every campaign's POAS pauses nothing
    let lowest = want.values().copied().fold(f64::INFINITY, f64::min);
    let got = proposals(&config(lowest - 0.01), &records, now);
    assert!(got.is_empty(), "{got:?}");
}
