//! Incremental attribution: after its first run the job reads only the orders and touchpoints
//! stored since its previous run (counted by `adpulse_attribution_rows_read_total`), keeps the
//! journeys it has read, and still writes the table a full run over every stored row would. The
//! "full run" is computed here from the rows QuestDB holds (the test's own reads), through the
//! job's pure functions.

#[path = "support/attribution.rs"]
mod attribution_support;
mod common;

use adpulse::attribution::job::{Inputs, OrderRow, SpendRow, TouchRow, assemble, build_rows};
use adpulse::attribution::{Model, Window};
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use common::*;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;

const START: &str = "2026-11-20T16:40:00Z";

fn day(v: &Value) -> NaiveDate {
    NaiveDate::parse_from_str(v.as_str().expect("day"), "%Y-%m-%d").expect("day")
}

fn text(v: &Value) -> String {
    v.as_str().expect("text").to_string()
}

async fn rows_read(addr: std::net::SocketAddr) -> (f64, f64) {
    let body = get(&format!("http://{addr}/metrics")).await.1;
    let n = |t: &str| {
        metric(
            &body,
            &format!("adpulse_attribution_rows_read_total{{table=\"{t}\"}}"),
        )
        .unwrap_or(0.0)
    };
    (n("orders"), n("touchpoints"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_runs_read_only_new_rows_and_write_what_a_full_run_would() {
    let now: DateTime<Utc> = START.parse().unwrap();
    let demo = demo_backfill_at(now);
    let obs = demo_observations(&demo, now);
    let DemoCounts {
        orders: n_orders,
        touches: n_touches,
        ..
    } = demo_counts(&obs);

    let q = QuestDb::start().await;
    let (running, _spool) = start_demo_with(&q, demo, |c| {
        c.attribution.interval_secs = 1;
        // one writer, whose rows become visible in the order it stamps them: nothing to re-read
        c.attribution.reread_overlap_secs = 0;
        c.clv.enabled = false;
    })
    .await;
    wait_for_demo_rows(&q, &obs).await;
    attribution_support::two_more_attribution_runs(running.addr).await;
    // nothing of the demo left in the sink (a batch still pending could be sent again, with a
    // new ingested_at), then runs that read everything it wrote
    wait_metrics(running.addr, "the sink to hold nothing", |m| {
        let idle = metric(m, "adpulse_sink_buffered_rows{sink=\"questdb\"}") == Some(0.0)
            && metric(m, "adpulse_sink_spooled_rows{sink=\"questdb\"}") == Some(0.0);
        idle.then_some(())
    })
    .await;
    attribution_support::two_more_attribution_runs(running.addr).await;

    // 1. with nothing new stored, further runs read nothing
    let (o0, t0) = rows_read(running.addr).await;
    // every row at least once (a write the sink retried after a lost acknowledgement is stored
    // again with a new ingested_at, and read again)
    assert!(
        o0 >= n_orders as f64 && t0 >= n_touches as f64,
        "the first runs read every row: {o0} of {n_orders} orders, {t0} of {n_touches} touches"
    );
    attribution_support::two_more_attribution_runs(running.addr).await;
    assert_eq!(
        rows_read(running.addr).await,
        (o0, t0),
        "runs with nothing new"
    );

    // 2. a late order with a two-touch journey: the next runs read those three rows only
    let at = now - ChronoDuration::hours(3);
    let iso = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let local_day = at.with_timezone(&chrono_tz::Asia::Kolkata).date_naive();
    q.sql(&format!(
        "INSERT INTO orders (ts, day, event_id, order_id, kind, amount, currency, customer_id, \
         ingested_at) VALUES ('{}', '{local_day}', 'late-1', 'late-1', 'order', 12345.67m, 'INR', \
         'cust-late', now())",
        iso(at)
    ))
    .await;
    for (pos, hours, channel) in [
        (1, 30, "meta:120210000000001"),
        (2, 1, "google_ads:21000000001"),
    ] {
        q.sql(&format!(
            "INSERT INTO touchpoints (ts, journey_id, order_id, position, channel, ingested_at) \
             VALUES ('{}', 'late-1', 'late-1', {pos}, '{channel}', now())",
            iso(at - ChronoDuration::hours(hours))
        ))
        .await;
    }
    q.wait_for_count(
        "SELECT count() FROM orders WHERE kind = 'order'",
        (n_orders + 1) as f64,
    )
    .await;
    q.wait_for_count("SELECT count() FROM touchpoints", (n_touches + 2) as f64)
        .await;
    attribution_support::two_more_attribution_runs(running.addr).await;
    assert_eq!(
        rows_read(running.addr).await,
        (o0 + 1.0, t0 + 2.0),
        "the runs after the late order read its 3 rows and nothing else"
    );
    q.wait_for_wal_applied().await;

    // 3. the table is what a full run over every stored row gives
    let orders: Vec<OrderRow> = q
        .rows_map(
            "SELECT order_id, ts, day, amount FROM orders WHERE kind = 'order'",
            |r| OrderRow {
                order_id: text(&r[0]),
                ts: cell_ts(&r[1]),
                day: day(&r[2]),
                revenue: cell_decimal(&r[3]),
            },
        )
        .await;
    let touches: Vec<TouchRow> = q
        .rows_map(
            "SELECT journey_id, order_id, ts, position, channel FROM touchpoints",
            |r| TouchRow {
                journey_id: text(&r[0]),
                order_id: r[1].as_str().map(str::to_string),
                ts: cell_ts(&r[2]),
                position: r[3].as_i64().unwrap(),
                channel: text(&r[4]),
            },
        )
        .await;
    let spend: Vec<SpendRow> = q
        .rows_map(
            "SELECT day, platform, campaign_id, sum(spend), sum(conversions) FROM campaign_stats \
             WHERE bucket = 'day' GROUP BY day, platform, campaign_id",
            |r| SpendRow {
                day: day(&r[0]),
                channel: format!("{}:{}", text(&r[1]), text(&r[2])),
                spend: cell_decimal(&r[3]),
                platform_conversions: r[4].as_f64().unwrap_or(0.0),
            },
        )
        .await;
    assert!(orders.iter().any(|o| o.order_id == "late-1"));
    let inputs = Inputs {
        orders,
        touches,
        spend,
    };
    let full = build_rows(
        &assemble(&inputs),
        &inputs.spend,
        &Model::all(168.0),
        &Window::ALL,
        chrono_tz::Asia::Kolkata,
        "INR",
    );
    let mut table: BTreeMap<(String, String, String, String), (Decimal, f64)> = BTreeMap::new();
    for r in q
        .rows("SELECT day, model, \"window\", channel, revenue, conversions FROM attribution")
        .await
    {
        table.insert(
            (text(&r[0]), text(&r[1]), text(&r[2]), text(&r[3])),
            (cell_decimal(&r[4]), r[5].as_f64().unwrap()),
        );
    }
    let mut late_credit = Decimal::ZERO;
    for f in &full {
        let key = (
            f.day.to_string(),
            f.model.clone(),
            f.window.clone(),
            f.channel.clone(),
        );
        let (revenue, conversions) = table
            .remove(&key)
            .unwrap_or_else(|| panic!("{key:?} missing from the table"));
        assert_eq!(revenue, f.revenue, "{key:?} revenue");
        assert!(
            (conversions - f.conversions).abs() < 1e-9,
            "{key:?} conversions"
        );
        if f.day == local_day && f.model == "first_click" && f.window == "lifetime" {
            late_credit += f.revenue;
        }
    }
    // what a full run does not produce is only zeros (keys that lost their credit)
    for (key, (revenue, conversions)) in &table {
        assert!(
            revenue.is_zero() && *conversions == 0.0,
            "{key:?} is in the table but not in a full run"
        );
    }
    assert!(late_credit >= Decimal::from_str("12345.67").unwrap());
    running.stop().await;
}
