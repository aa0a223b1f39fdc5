//! The attribution job end to end: 30 days of the demo into a real QuestDB, adpulse's job reading
//! the orders, touchpoints and spend back and writing the `attribution` table through the sink.
//! Every expectation is computed here from the rows QuestDB holds (the test's own SQL), with the
//! models' definitions written out by hand for one campaign.

#[path = "support/attribution.rs"]
mod attribution_support;
mod common;

use adpulse::attribution::{Journey, Model, Touch, Window, order_shares};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;

const START: &str = "2026-11-20T16:40:00Z";
/// Performance Max - Jewellery: the demo's biggest Google campaign.
const CAMPAIGN: &str = "google_ads:21000000001";

struct Order {
    day: String,
    at: DateTime<Utc>,
    amount: Decimal,
    /// In time order.
    touches: Vec<(DateTime<Utc>, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_job_writes_every_model_and_window_to_the_paisa() {
    // a month of history: every window up to 28 days has journeys inside it, and what the demo
    // emits, to know when QuestDB has all of it
    let (demo, obs) = demo_history(START, Some(30));
    let DemoCounts {
        orders: n_orders, ..
    } = demo_counts(&obs);
    assert!(n_orders > 20, "the demo has orders: {n_orders}");

    let q = QuestDb::start().await;
    let (running, _spool) = start_demo_with(&q, demo, |c| c.attribution.interval_secs = 1).await;
    wait_for_demo_rows(&q, &obs).await;
    // two runs that started after every row was in QuestDB, then their rows applied
    attribution_support::two_more_attribution_runs(running.addr).await;
    let url = format!("http://{}/metrics", running.addr);
    let body = get(&url).await.1;
    assert_eq!(metric(&body, "adpulse_attribution_success"), Some(1.0));
    assert_eq!(
        metric(&body, "adpulse_attribution_orders"),
        Some(n_orders as f64)
    );
    q.wait_for_wal_applied().await;

    // the orders and their journeys, as QuestDB holds them
    let mut orders: BTreeMap<String, Order> = BTreeMap::new();
    for r in q
        .rows("SELECT order_id, day, ts, amount FROM orders WHERE kind = 'order'")
        .await
    {
        let id = r[0].as_str().unwrap().to_string();
        orders.insert(
            id,
            Order {
                day: r[1].as_str().unwrap().to_string(),
                at: cell_ts(&r[2]),
                amount: cell_decimal(&r[3]),
                touches: Vec::new(),
            },
        );
    }
    assert_eq!(orders.len(), n_orders);
    let mut unconverted: BTreeMap<String, Vec<(DateTime<Utc>, String)>> = BTreeMap::new();
    for r in q
        .rows(
            "SELECT order_id, journey_id, ts, channel FROM touchpoints \
             ORDER BY journey_id, ts, position",
        )
        .await
    {
        let t = (cell_ts(&r[2]), r[3].as_str().unwrap().to_string());
        match r[0].as_str() {
            Some(o) => orders
                .get_mut(o)
                .expect("touch of a known order")
                .touches
                .push(t),
            None => unconverted
                .entry(r[1].as_str().unwrap().to_string())
                .or_default()
                .push(t),
        }
    }

    // the attribution table
    let mut got: BTreeMap<(String, String, String), (Decimal, f64, Decimal)> = BTreeMap::new();
    let mut by_day: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    let rows = q
        .rows(
            "SELECT model, \"window\", channel, day, revenue, conversions, spend, roas \
             FROM attribution",
        )
        .await;
    assert!(!rows.is_empty(), "the attribution table is empty");
    for r in &rows {
        let key = |i: usize| r[i].as_str().unwrap().to_string();
        let (revenue, spend) = (cell_decimal(&r[4]), cell_decimal(&r[6]));
        if !spend.is_zero() {
            let roas = r[7].as_f64().expect("ROAS where there is spend");
            let want = f64::from_str(&(revenue / spend).to_string()).unwrap();
            assert!((roas - want).abs() < 1e-9, "ROAS {roas} vs {want}");
        }
        let e = got.entry((key(0), key(1), key(2))).or_default();
        e.0 += revenue;
        e.1 += r[5].as_f64().unwrap();
        e.2 += spend;
        *by_day.entry((key(0), key(1), key(3))).or_default() += revenue;
    }

    // 1. every model's revenue per window, and per day, is the orders' revenue exactly
    let total: Decimal = orders.values().map(|o| o.amount).sum();
    let mut day_total: BTreeMap<String, Decimal> = BTreeMap::new();
    for o in orders.values() {
        *day_total.entry(o.day.clone()).or_default() += o.amount;
    }
    let models = [
        "first_click",
        "last_click",
        "linear",
        "time_decay",
        "position_based",
        "markov",
        "shapley",
    ];
    let windows = ["1d", "7d", "14d", "28d", "lifetime"];
    for m in models {
        for w in windows {
            let sum: Decimal = got
                .iter()
                .filter(|((gm, gw, _), _)| gm == m && gw == w)
                .map(|(_, v)| v.0)
                .sum();
            assert_eq!(sum, total, "{m} {w}: attributed revenue vs the orders'");
            let conv: f64 = got
                .iter()
                .filter(|((gm, gw, _), _)| gm == m && gw == w)
                .map(|(_, v)| v.1)
                .sum();
            assert!(
                (conv - n_orders as f64).abs() < 1e-6,
                "{m} {w}: {conv} conversions for {n_orders} orders"
            );
            for (day, want) in &day_total {
                let key = (m.to_string(), w.to_string(), day.clone());
                assert_eq!(by_day.get(&key), Some(want), "{m} {w} on {day}");
            }
        }
    }

    // 2. per order, under every model and window, the shares add up to the order to the paisa
    let mut journeys: Vec<Journey> = orders
        .iter()
        .map(|(id, o)| Journey {
            id: id.clone(),
            touches: o
                .touches
                .iter()
                .map(|(ts, ch)| Touch {
                    ts: *ts,
                    channel: ch.clone(),
                })
                .collect(),
            converted_at: Some(o.at),
            revenue: o.amount,
        })
        .collect();
    journeys.extend(unconverted.into_iter().map(|(id, t)| {
        Journey {
            id,
            touches: t
                .into_iter()
                .map(|(ts, channel)| Touch { ts, channel })
                .collect(),
            converted_at: None,
            revenue: Decimal::ZERO,
        }
    }));
    for m in Model::all(168.0) {
        for w in Window::ALL {
            let fitted = adpulse::attribution::Fitted::fit(&journeys, m, w);
            for j in journeys.iter().filter(|j| j.converted_at.is_some()) {
                let shares = order_shares(j, m, w, &fitted).expect("a converted journey");
                if shares.is_empty() {
                    continue; // unattributed: the whole order, checked by the totals above
                }
                let sum: Decimal = shares.iter().map(|s| s.revenue).sum();
                assert_eq!(sum, j.revenue, "{} {} order {}", m.label(), w.label(), j.id);
            }
        }
    }

    // 3. one campaign by hand, 7-day window: first click, last click, linear (each share but
    // the last is revenue / n to the paisa, banker's rounding; the last touch takes the rest)
    let week = ChronoDuration::days(7);
    let (mut first, mut last, mut linear) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    let (mut first_n, mut last_n, mut linear_n) = (0.0, 0.0, 0.0);
    for o in orders.values() {
        let inside: Vec<&String> = o
            .touches
            .iter()
            .filter(|(t, _)| *t <= o.at && o.at - *t <= week)
            .map(|(_, c)| c)
            .collect();
        let n = inside.len();
        if n == 0 {
            continue;
        }
        if inside[0] == CAMPAIGN {
            first += o.amount;
            first_n += 1.0;
        }
        if inside[n - 1] == CAMPAIGN {
            last += o.amount;
            last_n += 1.0;
        }
        let each = (o.amount / Decimal::from(n as u64)).round_dp(2);
        for (i, c) in inside.iter().enumerate() {
            if *c == CAMPAIGN {
                linear += if i + 1 == n {
                    o.amount - each * Decimal::from(n as u64 - 1)
                } else {
                    each
                };
                linear_n += 1.0 / n as f64;
            }
        }
    }
    assert!(
        first_n > 0.0 && last_n > 0.0,
        "the campaign sold in the demo"
    );
    for (m, rev, n) in [
        ("first_click", first, first_n),
        ("last_click", last, last_n),
        ("linear", linear, linear_n),
    ] {
        let (r, c, _) = got[&(m.to_string(), "7d".to_string(), CAMPAIGN.to_string())];
        assert_eq!(r, rev, "{m} 7d revenue of {CAMPAIGN}");
        assert!(
            (c - n).abs() < 1e-9,
            "{m} 7d conversions of {CAMPAIGN}: {c} vs {n}"
        );
    }

    // 4. its spend and platform-reported conversions beside the attributed ones, from its day rows
    let (id_platform, id_campaign) = CAMPAIGN.split_once(':').unwrap();
    let spend = cell_decimal(
        &q.rows(&format!(
            "SELECT sum(spend) FROM campaign_stats WHERE bucket = 'day' \
             AND platform = '{id_platform}' AND campaign_id = '{id_campaign}'"
        ))
        .await[0][0],
    );
    for m in models {
        for w in windows {
            let key = (m.to_string(), w.to_string(), CAMPAIGN.to_string());
            assert_eq!(got[&key].2, spend, "{m} {w}: spend of {CAMPAIGN}");
        }
    }
    let claimed = q
        .number(&format!(
            "SELECT sum(conversions) FROM campaign_stats WHERE bucket = 'day' \
             AND platform = '{id_platform}' AND campaign_id = '{id_campaign}'"
        ))
        .await
        .unwrap();
    let row_claims = q
        .number(&format!(
            "SELECT sum(platform_conversions) FROM attribution WHERE model = 'linear' \
             AND \"window\" = '7d' AND channel = '{CAMPAIGN}'"
        ))
        .await
        .unwrap();
    assert!(
        (claimed - row_claims).abs() < 1e-6,
        "{claimed} vs {row_claims}"
    );

    // 5. a re-run overwrites: the row count stays what one run writes
    let count = q.number("SELECT count() FROM attribution").await.unwrap();
    assert_eq!(count as usize, rows.len());
    eprintln!(
        "attribution: {n_orders} orders, {} rows, last run {:?} s; {CAMPAIGN} 7d first {first} \
         last {last} linear {linear} against spend {spend}",
        rows.len(),
        metric(&get(&url).await.1, "adpulse_attribution_duration_seconds")
    );
    running.stop().await;
}
