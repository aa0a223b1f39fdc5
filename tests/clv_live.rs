//! The live CLV job end to end: 60 days of the demo into a real QuestDB, adpulse's CLV job reading
//! the order history back, fitting BG/NBD and Gamma-Gamma and writing `customer_value` and
//! `campaign_value` through the sink. Every expectation is computed here from the rows QuestDB
//! holds (the test's own SQL): each customer's frequency, recency and age, the acquisition
//! channel, the per-campaign sums and means, the new-customer CAC as the profit KPIs define it,
//! and one customer's expected purchases and CLV from the closed-form BG/NBD and Gamma-Gamma
//! expectations written out again here, with the fitted parameters from `/metrics`.

mod common;

use chrono::{DateTime, NaiveDate, Utc};
use common::*;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const START: &str = "2026-11-20T16:40:00Z";

fn day(v: &Value) -> NaiveDate {
    NaiveDate::parse_from_str(v.as_str().expect("day"), "%Y-%m-%d").expect("a day")
}

fn text(v: &Value) -> String {
    v.as_str().expect("text").to_string()
}

/// Gauss 2F1(a, b; c; z) for 0 <= z < 1, by its power series (written again here, not taken
/// from the code under test).
fn f21(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0f64, 1.0f64, 0.0f64);
    while term.abs() > 1e-17 * sum.abs() && k < 1e6 {
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        k += 1.0;
    }
    sum
}

/// E[Y(t) | x, t_x, T] of BG/NBD (Fader, Hardie and Lee 2005, eq. 10).
fn bgnbd_expected(p: [f64; 4], x: f64, t_x: f64, big_t: f64, t: f64) -> f64 {
    let [r, alpha, a, b] = p;
    let num = (a + b + x - 1.0) / (a - 1.0)
        * (1.0
            - ((alpha + big_t) / (alpha + big_t + t)).powf(r + x)
                * f21(r + x, b + x, a + b + x - 1.0, t / (alpha + big_t + t)));
    let den = 1.0
        + if x > 0.0 {
            a / (b + x - 1.0) * ((alpha + big_t) / (alpha + t_x)).powf(r + x)
        } else {
            0.0
        };
    num / den
}

/// Wait until adpulse at `addr` has finished two more successful CLV runs than now: the second
/// started after this call, so it read everything QuestDB held at this moment.
async fn two_more_clv_runs(addr: std::net::SocketAddr) {
    let url = format!("http://{addr}/metrics");
    let runs = || async {
        metric(
            &get(&url).await.1,
            "adpulse_clv_runs_total{result=\"success\"}",
        )
        .unwrap_or(0.0)
    };
    let before = runs().await;
    eventually("two CLV runs", Duration::from_secs(180), || async {
        (runs().await >= before + 2.0).then_some(())
    })
    .await;
}

struct Customer {
    /// purchase day -> value (same-day orders are one purchase)
    days: BTreeMap<NaiveDate, Decimal>,
    revenue: Decimal,
    /// (ts, order id) of the first order
    first: (DateTime<Utc>, String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clv_job_values_customers_and_campaigns_from_questdb() {
    // two months: enough returning customers for Gamma-Gamma
    let (demo, obs) = demo_history(START, Some(60));

    let q = QuestDb::start().await;
    let (running, _spool) = start_demo_with(&q, demo, |c| {
        c.clv.interval_secs = 1;
        // not under test here: leave the two cores to the CLV job
        c.attribution.enabled = false;
    })
    .await;
    wait_for_demo_rows(&q, &obs).await;
    two_more_clv_runs(running.addr).await;
    q.wait_for_wal_applied().await;
    let body = get(&format!("http://{}/metrics", running.addr)).await.1;
    assert_eq!(metric(&body, "adpulse_clv_success"), Some(1.0));

    // the order history, as QuestDB holds it
    let mut customers: BTreeMap<String, Customer> = BTreeMap::new();
    let mut as_of = NaiveDate::MIN;
    for r in q
        .rows("SELECT customer_id, order_id, ts, day, amount FROM orders WHERE kind = 'order'")
        .await
    {
        let (d, amount, at) = (day(&r[3]), cell_decimal(&r[4]), cell_ts(&r[2]));
        as_of = as_of.max(d);
        let Some(c) = r[0].as_str() else { continue };
        let c = customers.entry(c.to_string()).or_insert(Customer {
            days: BTreeMap::new(),
            revenue: Decimal::ZERO,
            first: (at, text(&r[1])),
        });
        *c.days.entry(d).or_default() += amount;
        c.revenue += amount;
        c.first = c.first.clone().min((at, text(&r[1])));
    }
    let repeaters = customers.values().filter(|c| c.days.len() > 1).count();
    assert!(
        customers.len() > 20 && repeaters >= 3,
        "the demo has customers coming back: {} customers, {repeaters} repeat",
        customers.len()
    );
    assert_eq!(
        metric(&body, "adpulse_clv_customers"),
        Some(customers.len() as f64)
    );
    // the first touch of every converting journey
    let mut first_touch: BTreeMap<String, (DateTime<Utc>, i64, String)> = BTreeMap::new();
    for r in q
        .rows("SELECT order_id, ts, position, channel FROM touchpoints WHERE order_id IS NOT NULL")
        .await
    {
        let t = (cell_ts(&r[1]), r[2].as_i64().unwrap(), text(&r[3]));
        let e = first_touch.entry(text(&r[0])).or_insert(t.clone());
        if (t.0, t.1) < (e.0, e.1) {
            *e = t;
        }
    }

    // 1. one row per customer, with the customer's own frequency, recency, age and revenue
    let weeks = |from: NaiveDate, to: NaiveDate| (to - from).num_days() as f64 / 7.0;
    let rows = q
        .rows(&format!(
            "SELECT customer_id, acquisition_channel, orders, repeat_purchases, recency_periods, \
             age_periods, revenue, p_alive, expected_purchases_12m, expected_order_value, \
             clv_6m, clv_12m, day FROM customer_value WHERE day = '{as_of}'"
        ))
        .await;
    assert_eq!(rows.len(), customers.len(), "one row per customer");
    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in rows {
        got.insert(text(&r[0]), r);
    }
    for (id, c) in &customers {
        let r = &got[id];
        let first = *c.days.keys().next().unwrap();
        let last = *c.days.keys().last().unwrap();
        let x = c.days.len() as i64 - 1;
        assert_eq!(r[2].as_i64(), Some(x + 1), "{id} orders");
        assert_eq!(r[3].as_i64(), Some(x), "{id} x");
        assert!(
            (r[4].as_f64().unwrap() - weeks(first, last)).abs() < 1e-12,
            "{id} t_x"
        );
        assert!(
            (r[5].as_f64().unwrap() - weeks(first, as_of)).abs() < 1e-12,
            "{id} T"
        );
        assert_eq!(cell_decimal(&r[6]), c.revenue, "{id} revenue");
        let channel = first_touch
            .get(&c.first.1)
            .map(|t| t.2.clone())
            .unwrap_or_else(|| "unattributed".into());
        assert_eq!(text(&r[1]), channel, "{id} acquisition channel");
        assert!(
            cell_decimal(&r[11]) >= cell_decimal(&r[10]),
            "{id}: 12 months are worth at least 6"
        );
    }

    // 2. one customer by hand: BG/NBD's conditional expectation and Gamma-Gamma's expected
    // spend with the fitted parameters, against the row
    let param = |m: &str, p: &str| {
        metric(
            &body,
            &format!("adpulse_clv_parameter{{model=\"{m}\",param=\"{p}\"}}"),
        )
        .unwrap_or_else(|| panic!("{m} {p} in /metrics"))
    };
    let bg = [
        param("bg_nbd", "r"),
        param("bg_nbd", "alpha"),
        param("bg_nbd", "a"),
        param("bg_nbd", "b"),
    ];
    let (p, qq, gamma) = (
        param("gamma_gamma", "p"),
        param("gamma_gamma", "q"),
        param("gamma_gamma", "gamma"),
    );
    let (id, c) = customers
        .iter()
        .max_by_key(|(id, c)| (c.days.len(), id.to_string()))
        .unwrap();
    let first = *c.days.keys().next().unwrap();
    let last = *c.days.keys().last().unwrap();
    let x = (c.days.len() - 1) as f64;
    let (t_x, big_t) = (weeks(first, last), weeks(first, as_of));
    let twelve_months = 365.25 / 7.0;
    let want = bgnbd_expected(bg, x, t_x, big_t, twelve_months);
    let row = &got[id];
    let e12 = row[8].as_f64().unwrap();
    assert!(
        (e12 - want).abs() < 1e-9 * want.max(1.0),
        "{id}: expected purchases in 12 months {e12}, closed form {want}"
    );
    let [r, alpha, a, b] = bg;
    let p_alive = 1.0 / (1.0 + a / (b + x - 1.0) * ((alpha + big_t) / (alpha + t_x)).powf(r + x));
    assert!(
        (row[7].as_f64().unwrap() - p_alive).abs() < 1e-9,
        "{id} P(alive)"
    );
    let repeat_mean = (c.days.values().skip(1).copied().sum::<Decimal>()
        / Decimal::from(c.days.len() - 1))
    .to_f64()
    .unwrap();
    let w = (qq - 1.0) / (p * x + qq - 1.0);
    let spend = w * (p * gamma / (qq - 1.0)) + (1.0 - w) * repeat_mean;
    let order_value = cell_decimal(&row[9]).to_f64().unwrap();
    assert!(
        (order_value - spend).abs() <= 0.005 + 1e-9,
        "{id} expected order value {order_value} vs {spend}"
    );
    // margin 1, no discount: 12-month CLV = E[purchases in 12 months] x expected spend
    let clv12 = cell_decimal(&row[11]).to_f64().unwrap();
    assert!(
        (clv12 - want * spend).abs() <= 0.005 + 1e-6 * clv12,
        "{id}: CLV 12m {clv12} vs {}",
        want * spend
    );

    // 3. per acquisition channel: the exact sums and means of its customers' rows, and LTV:CAC
    // with the profit KPIs' new-customer CAC (spend / first orders whose last click is the
    // campaign), both computed here from the stored rows
    let mut groups: BTreeMap<String, (u32, Decimal, Decimal)> = BTreeMap::new();
    for r in got.values() {
        let g = groups.entry(text(&r[1])).or_default();
        g.0 += 1;
        g.1 += cell_decimal(&r[10]);
        g.2 += cell_decimal(&r[11]);
    }
    let mut spend_of: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in q
        .rows("SELECT platform, campaign_id, spend FROM campaign_stats WHERE bucket = 'day'")
        .await
    {
        *spend_of
            .entry(format!("{}:{}", text(&r[0]), text(&r[1])))
            .or_default() += cell_decimal(&r[2]);
    }
    let mut new_orders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in q
        .rows("SELECT utm_campaign, order_id FROM order_lines WHERE new_customer")
        .await
    {
        if let Some(camp) = r[0].as_str() {
            new_orders
                .entry(camp.to_string())
                .or_default()
                .insert(text(&r[1]));
        }
    }
    let camp_rows = q
        .rows(&format!(
            "SELECT channel, customers, clv_6m_total, clv_12m_total, clv_12m_mean, spend, \
             new_customers, cac, ltv_cac_12m FROM campaign_value WHERE day = '{as_of}'"
        ))
        .await;
    let channels: BTreeSet<String> = groups.keys().chain(spend_of.keys()).cloned().collect();
    let shown: BTreeSet<String> = camp_rows.iter().map(|r| text(&r[0])).collect();
    assert!(shown.is_superset(&channels), "{shown:?} vs {channels:?}");
    let mut with_ratio = 0;
    for r in &camp_rows {
        let ch = text(&r[0]);
        if !channels.contains(&ch) {
            // a channel a run of the same day wrote from a partial history (an order whose
            // touches were not stored yet): written again with zeros, never left stale
            assert_eq!(r[1].as_i64(), Some(0), "{ch}: stale customers");
            assert!(cell_decimal(&r[3]).is_zero(), "{ch}: stale CLV");
            continue;
        }
        let (n, t6, t12) = groups.get(&ch).copied().unwrap_or_default();
        assert_eq!(r[1].as_i64(), Some(i64::from(n)), "{ch} customers");
        assert_eq!(cell_decimal(&r[2]), t6, "{ch} 6-month total");
        assert_eq!(cell_decimal(&r[3]), t12, "{ch} 12-month total");
        let mean = (n > 0).then(|| (t12 / Decimal::from(n)).round_dp(2));
        assert_eq!(
            r[4].as_str().map(|_| cell_decimal(&r[4])),
            mean,
            "{ch} 12-month mean"
        );
        let spend = spend_of.get(&ch).copied().unwrap_or_default();
        assert_eq!(cell_decimal(&r[5]), spend, "{ch} spend");
        let id = ch.split_once(':').map_or(ch.as_str(), |(_, id)| id);
        let new = new_orders.get(id).map_or(0, BTreeSet::len);
        assert_eq!(r[6].as_i64(), Some(new as i64), "{ch} new customers");
        let cac = (spend_of.contains_key(&ch) && new > 0).then(|| spend / Decimal::from(new));
        let got_cac = r[7].as_str().map(|_| cell_decimal(&r[7]));
        match (got_cac, cac) {
            (Some(g), Some(w)) => assert!((g - w).abs() < Decimal::new(1, 6), "{ch} CAC {g} {w}"),
            (g, w) => assert_eq!(g, w, "{ch} CAC"),
        }
        // LTV:CAC with the row's CAC (checked above against spend / new customers; the column
        // keeps 6 decimals of it)
        match (mean, got_cac) {
            (Some(m), Some(c)) if !c.is_zero() => {
                let want = (m / c).to_f64().unwrap();
                let got = r[8].as_f64().expect("LTV:CAC");
                assert!(
                    (got - want).abs() < 1e-9 * want.max(1.0),
                    "{ch} LTV:CAC {got} {want}"
                );
                with_ratio += 1;
            }
            _ => assert!(r[8].is_null(), "{ch}: no LTV:CAC without customers or CAC"),
        }
    }
    assert!(
        with_ratio >= 2,
        "paid campaigns acquired customers: {with_ratio}"
    );
    eprintln!(
        "clv: {} customers ({repeaters} repeat) as of {as_of}; BG/NBD {bg:?}, Gamma-Gamma \
         p {p} q {qq} gamma {gamma}; {id}: E12 {e12:.4}, CLV12 {clv12}",
        customers.len()
    );
    running.stop().await;
}
