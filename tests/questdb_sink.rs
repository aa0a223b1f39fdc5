//! The QuestDB sink against a real QuestDB: exact values, restatements upserted, and QuestDB down
//! at start (memory, spool, back-pressure) with every row written exactly once afterwards.

mod common;

use adpulse::config::{Config, QuestDbConfig};
use adpulse::normalize::Normalizer;
use adpulse::records::{CampaignStat, OrderEvent, OrderKind, Record};
use adpulse::sinks::questdb::QuestDbSink;
use adpulse::sources::SourceConfig;
use adpulse::sources::demo::{DemoConfig, DemoSource};
use adpulse::telemetry::Telemetry;
use chrono::{DateTime, Utc};
use common::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn stat(ts: &str, spend: Decimal, conversions: f64) -> Record {
    Record::CampaignStats(CampaignStat {
        campaign_name: "Bridal, \"Lookalike\" 2%".into(),
        conversion_value: dec!(2499.00),
        conversion_value_account: dec!(2499.00),
        impressions: 120_000,
        clicks: 1_450,
        conversions,
        ..common::inr_meta_hour("c-1", ts.parse().unwrap(), spend)
    })
}

fn order(id: &str, kind: OrderKind, amount: Decimal, ts: &str) -> Record {
    let ts: DateTime<Utc> = ts.parse().unwrap();
    Record::Orders(OrderEvent {
        ts,
        day: ts.with_timezone(&chrono_tz::Asia::Kolkata).date_naive(),
        event_id: id.into(),
        order_id: "1001".into(),
        kind,
        amount,
        amount_shop: amount,
        shop_currency: "INR".into(),
        currency: "INR".into(),
        customer_id: Some("cust-9".into()),
        city: Some("Mumbai".into()),
        utm_source: Some("facebook".into()),
        utm_medium: Some("paid_social".into()),
        utm_campaign: Some("c-1".into()),
        items: 2,
        source: "test".into(),
    })
}

fn sink_config(url: String, spool: &std::path::Path) -> QuestDbConfig {
    QuestDbConfig {
        http_url: url,
        flush_interval_ms: 50,
        retry_initial_ms: 50,
        retry_max_ms: 500,
        spool_dir: spool.to_path_buf(),
        ..QuestDbConfig::default()
    }
}

/// A sink of [`sink_config`] on `url` running in its own task, with its own telemetry:
/// (its handle, the telemetry, the token that stops it, the task).
fn spawn_sink(
    url: String,
    spool: &std::path::Path,
) -> (
    adpulse::sinks::questdb::SinkHandle,
    Arc<Telemetry>,
    CancellationToken,
    tokio::task::JoinHandle<adpulse::sinks::questdb::ShutdownReport>,
) {
    let telemetry = Arc::new(Telemetry::new());
    let (sink, handle) =
        QuestDbSink::build(sink_config(url, spool), None, telemetry.clone()).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(sink.run(stop.clone()));
    (handle, telemetry, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_exactly_and_restated_rows_replace_the_old_ones() {
    let q = QuestDb::start().await;
    let spool = tempfile::tempdir().unwrap();
    let (handle, telemetry, stop, task) = spawn_sink(q.url(), spool.path());

    handle
        .send(vec![
            stat("2026-11-20T18:30:00Z", dec!(1234.56), 1.0),
            stat("2026-11-20T19:30:00Z", dec!(0.07), 0.5),
            order(
                "1001",
                OrderKind::Order,
                dec!(2499.00),
                "2026-11-20T19:45:00Z",
            ),
            order(
                "1001-r1",
                OrderKind::Refund,
                dec!(-749.70),
                "2026-11-22T08:00:00Z",
            ),
        ])
        .await
        .unwrap();
    q.wait_for_count("SELECT count() FROM campaign_stats", 2.0)
        .await;
    q.wait_for_count("SELECT count() FROM orders", 2.0).await;

    let rows = q
        .rows("SELECT ts, bucket, day, platform, account, campaign_id, campaign_name, spend, conversions, clicks, impressions, currency FROM campaign_stats ORDER BY ts")
        .await;
    assert_eq!(rows[0][0], "2026-11-20T18:30:00.000000Z");
    assert_eq!(rows[0][1], "hour");
    // 18:30 UTC is midnight in India: the row belongs to the 21st there
    assert_eq!(rows[0][2], "2026-11-21");
    assert_eq!(rows[0][6], "Bridal, \"Lookalike\" 2%");
    assert_eq!(rows[0][7], "1234.560000");
    assert_eq!(rows[1][7], "0.070000");
    assert_eq!(rows[1][8], 0.5);
    assert_eq!(rows[0][9], 1450);
    assert_eq!(rows[0][10], 120000);
    assert_eq!(rows[0][11], "INR");
    let totals = q.rows("SELECT sum(amount), count() FROM orders").await;
    assert_eq!(totals[0][0], "1749.300000");
    let refund = q
        .rows("SELECT day, kind, amount FROM orders WHERE kind = 'refund'")
        .await;
    assert_eq!(
        refund[0],
        vec!["2026-11-22".into(), "refund".into(), "-749.700000".into()] as Vec<serde_json::Value>
    );

    // The platform restates the first hour (late conversions) and re-sends the second unchanged.
    handle
        .send(vec![
            stat("2026-11-20T18:30:00Z", dec!(1300.00), 2.0),
            stat("2026-11-20T19:30:00Z", dec!(0.07), 0.5),
        ])
        .await
        .unwrap();
    q.wait_for_count(
        "SELECT count() FROM campaign_stats WHERE conversions = 2.0",
        1.0,
    )
    .await;
    let after = q
        .rows("SELECT count(), sum(spend), sum(conversions) FROM campaign_stats")
        .await;
    assert_eq!(after[0][0], 2, "a restated row must replace, not add");
    assert_eq!(after[0][1], "1300.070000");
    assert_eq!(after[0][2], 2.5);

    stop.cancel();
    task.await.unwrap();
    let gathered = prometheus::TextEncoder::new()
        .encode_to_string(&telemetry.registry.gather())
        .unwrap();
    assert_eq!(
        metric(
            &gathered,
            "adpulse_sink_rows_written_total{sink=\"questdb\",table=\"campaign_stats\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        metric(&gathered, "adpulse_sink_up{sink=\"questdb\"}"),
        Some(1.0)
    );
}

fn demo_config(port: u16, spool: &std::path::Path, start: DateTime<Utc>, days: u32) -> Config {
    let mut cfg = Config::from_toml_str(adpulse::config::DEFAULT_CONFIG).unwrap();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.general.refresh_interval_secs = 1;
    // these tests count the demo's rows exactly; the models' rows are tested in stack_e2e
    cfg.models.enabled = false;
    cfg.questdb = QuestDbConfig {
        flush_rows: 200,
        max_buffered_rows: 300,
        ..sink_config(format!("http://127.0.0.1:{port}"), spool)
    };
    let mut demo = DemoConfig::new("demo");
    demo.start = Some(start);
    demo.backfill_days = days;
    demo.backfill_only = true;
    cfg.sources = vec![SourceConfig::Demo(demo)];
    cfg
}

/// What the demo produces for `cfg`: distinct (campaign rows, orders, funnel rows, total hourly
/// spend), the number of rows its backfill batches send, and its order lines and touchpoints (day rows are re-sent, upserted, by
/// each batch that touches their day).
fn expected(cfg: &Config) -> (usize, usize, usize, Decimal, usize, Shop) {
    let SourceConfig::Demo(d) = &cfg.sources[0] else {
        unreachable!("demo_config builds a demo source")
    };
    let n = Normalizer::new(cfg.timezone(), "INR", cfg.fx.clone());
    let mut src = DemoSource::new(d.clone(), cfg.timezone());
    let start = src.start();
    let mut sent = 0;
    for (from, to) in src.backfill_windows() {
        sent += src.observations(from, to, start).len();
    }
    let mut src = DemoSource::new(d.clone(), cfg.timezone());
    let obs = src.observations(src.epoch(), start, start);
    let (mut c, mut o, mut f, mut spend) = (0, 0, 0, Decimal::ZERO);
    let (mut lines, mut touches, mut regions) = (0, 0, 0);
    for ob in obs {
        match n.normalize("demo", ob).unwrap() {
            Record::CampaignStats(r) => {
                c += 1;
                if r.bucket == adpulse::records::Bucket::Hour {
                    spend += r.spend;
                }
            }
            Record::Orders(_) => o += 1,
            Record::Funnel(_) => f += 1,
            Record::OrderLines(_) => lines += 1,
            Record::Touchpoints(_) => touches += 1,
            Record::RegionStats(_) => regions += 1,
            Record::Forecasts(_)
            | Record::Anomalies(_)
            | Record::Actions(_)
            | Record::Attribution(_)
            | Record::CustomerValue(_)
            | Record::CampaignValue(_)
            | Record::AdStats(_) => {
                unreachable!("normalize never yields model rows")
            }
        }
    }
    let shop = Shop {
        lines,
        touches,
        regions,
    };
    (c, o, f, spend, sent, shop)
}

/// The demo's order lines and journey touchpoints, which must land as completely as its orders.
#[derive(Clone, Copy)]
struct Shop {
    lines: usize,
    touches: usize,
    /// The demo's region split of its campaigns' days (`region_stats`).
    regions: usize,
}

async fn metrics_of(addr: std::net::SocketAddr) -> String {
    get(&format!("http://{addr}/metrics")).await.1
}

async fn assert_all_rows_landed_once(q: &QuestDb, cfg: &Config) {
    let (c, o, f, spend, _, shop) = expected(cfg);
    q.wait_for_count("SELECT count() FROM campaign_stats", c as f64)
        .await;
    q.wait_for_count("SELECT count() FROM order_lines", shop.lines as f64)
        .await;
    q.wait_for_count("SELECT count() FROM touchpoints", shop.touches as f64)
        .await;
    q.wait_for_count("SELECT count() FROM region_stats", shop.regions as f64)
        .await;
    q.wait_for_count("SELECT count() FROM orders", o as f64)
        .await;
    q.wait_for_count("SELECT count() FROM funnel", f as f64)
        .await;
    let s = q
        .rows("SELECT sum(spend) FROM campaign_stats WHERE bucket = 'hour'")
        .await;
    let got: Decimal = s[0][0].as_str().unwrap().parse().unwrap();
    assert_eq!(
        got, spend,
        "spend in QuestDB must equal the demo's to the paisa"
    );
    // one row per key: counting distinct keys gives the same number
    let distinct = q
        .rows("SELECT count() FROM (SELECT DISTINCT ts, bucket, platform, account, campaign_id FROM campaign_stats)")
        .await;
    assert_eq!(distinct[0][0], c as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questdb_down_at_start_then_buffered_and_spooled_rows_land_exactly_once() {
    let port = free_port();
    let spool = tempfile::tempdir().unwrap();
    let start: DateTime<Utc> = "2026-11-20T09:10:00Z".parse().unwrap();
    let cfg = demo_config(port, spool.path(), start, 2);
    let (_, _, _, _, sent, _) = expected(&cfg);
    let total = sent as f64;

    let running = adpulse::app::start(cfg.clone()).await.unwrap();
    let addr = running.addr;
    // adpulse serves /metrics and says the sink is unhealthy while QuestDB is not there
    let body = eventually(
        "rows to wait in memory and spool",
        Duration::from_secs(60),
        || async {
            let m = metrics_of(addr).await;
            let buffered = metric(&m, "adpulse_sink_buffered_rows{sink=\"questdb\"}")?;
            let spooled = metric(&m, "adpulse_sink_spooled_rows{sink=\"questdb\"}")?;
            (buffered + spooled == total && spooled > 0.0).then_some(m)
        },
    )
    .await;
    assert_eq!(
        metric(&body, "adpulse_sink_up{sink=\"questdb\"}"),
        Some(0.0)
    );
    assert!(metric(&body, "adpulse_sink_write_failures_total{sink=\"questdb\"}").unwrap() >= 1.0);
    eventually(
        "KPIs served without QuestDB",
        Duration::from_secs(30),
        || async { metric(&metrics_of(addr).await, "adpulse_total_roi") },
    )
    .await;
    let (status, ready) = get(&format!("http://{addr}/readyz")).await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("unreachable"), "{ready}");
    assert_eq!(get(&format!("http://{addr}/healthz")).await.0, 200);
    let segments = std::fs::read_dir(spool.path()).unwrap().count();
    assert!(segments > 0);

    // QuestDB comes up on the port adpulse was configured with
    let q = QuestDb::start_on(port).await;
    assert_all_rows_landed_once(&q, &cfg).await;
    let m = eventually(
        "spool and memory to drain",
        Duration::from_secs(60),
        || async {
            let m = metrics_of(addr).await;
            (metric(&m, "adpulse_sink_spooled_rows{sink=\"questdb\"}")? == 0.0
                && metric(&m, "adpulse_sink_buffered_rows{sink=\"questdb\"}")? == 0.0)
                .then_some(m)
        },
    )
    .await;
    assert_eq!(metric(&m, "adpulse_sink_up{sink=\"questdb\"}"), Some(1.0));
    assert_eq!(get(&format!("http://{addr}/readyz")).await.0, 200);
    let written: f64 = [
        "campaign_stats",
        "orders",
        "funnel",
        "order_lines",
        "touchpoints",
        "region_stats",
    ]
    .iter()
    .filter_map(|t| {
        metric(
            &m,
            &format!("adpulse_sink_rows_written_total{{sink=\"questdb\",table=\"{t}\"}}"),
        )
    })
    .sum();
    assert_eq!(
        written, total,
        "every row sent is written once (no replay duplicates)"
    );
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "spool emptied"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_pauses_the_source_and_loses_nothing() {
    let port = free_port();
    let spool = tempfile::tempdir().unwrap();
    let start: DateTime<Utc> = "2026-11-18T15:40:00Z".parse().unwrap();
    let mut cfg = demo_config(port, spool.path(), start, 3);
    cfg.questdb.spool_max_bytes = 200_000;
    let (_, _, _, _, sent, _) = expected(&cfg);
    let total = sent as f64;

    let running = adpulse::app::start(cfg.clone()).await.unwrap();
    let addr = running.addr;
    let m = eventually("back-pressure", Duration::from_secs(60), || async {
        let m = metrics_of(addr).await;
        (metric(&m, "adpulse_sink_backpressure{sink=\"questdb\"}")? == 1.0).then_some(m)
    })
    .await;
    let held = metric(&m, "adpulse_sink_buffered_rows{sink=\"questdb\"}").unwrap()
        + metric(&m, "adpulse_sink_spooled_rows{sink=\"questdb\"}").unwrap();
    assert!(
        held < total,
        "the source is held back: {held} of {total} rows produced"
    );
    assert!(metric(&m, "adpulse_sink_spool_bytes{sink=\"questdb\"}").unwrap() <= 200_000.0);
    let (status, ready) = get(&format!("http://{addr}/readyz")).await;
    assert_eq!(status, 503);
    assert!(ready.contains("\"spool_full\":true"), "{ready}");

    let q = QuestDb::start_on(port).await;
    assert_all_rows_landed_once(&q, &cfg).await;
    running.stop().await;
}

fn anomaly(ts: &str, expected: f64) -> Record {
    Record::Anomalies(adpulse::records::AnomalyRow {
        ts: ts.parse().unwrap(),
        series: "spend".into(),
        platform: "meta".into(),
        campaign_id: "c-1".into(),
        value: 12.5,
        expected,
        lower: f64::NAN,
        upper: f64::INFINITY,
        score: 0.0,
        is_anomaly: false,
        detector: "robust_seasonal".into(),
    })
}

/// Hourly campaign rows `0..n`, distinct keys, spend `i.01`.
fn hours(n: usize) -> Vec<Record> {
    let t0: DateTime<Utc> = "2026-11-01T00:30:00Z".parse().unwrap();
    (0..n)
        .map(|i| {
            let ts = t0 + chrono::Duration::hours(i as i64);
            stat(
                &ts.to_rfc3339(),
                Decimal::new(i as i64 * 100 + 1, 2),
                i as f64,
            )
        })
        .collect()
}

fn dead_letter_lines(spool: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(spool.join("dead-letter.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Issue 9.2: one row QuestDB refuses used to stop every write forever. Now it is bisected out,
/// put in the dead-letter file with QuestDB's reason and counted; every good row lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_is_dead_lettered_and_never_blocks_the_others() {
    let q = QuestDb::start().await;
    let spool = tempfile::tempdir().unwrap();
    let (handle, telemetry, stop, task) = spawn_sink(q.url(), spool.path());
    let health = handle.health.clone();

    let mut rows = hours(200);
    // spend above DECIMAL(18,6): the sink is handed it directly (normalize would refuse it)
    let poison_ts = "2026-10-01T00:30:00Z";
    rows.insert(
        117,
        stat(poison_ts, "12345678901234.5".parse().unwrap(), 1.0),
    );
    let ticket = handle.send(rows).await.unwrap();
    ticket.wait().await.unwrap();
    q.wait_for_count("SELECT count() FROM campaign_stats", 200.0)
        .await;
    // every good row, exactly (hand sum: sum_{i<200} (i + 0.01) = 19900 + 2)
    let s = q
        .rows("SELECT sum(spend), min(ts) FROM campaign_stats")
        .await;
    assert_eq!(s[0][0], "19902.000000");
    assert_eq!(s[0][1], "2026-11-01T00:30:00.000000Z");
    let dead = dead_letter_lines(spool.path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["kind"], "rejected");
    assert_eq!(dead[0]["table"], "campaign_stats");
    assert_eq!(dead[0]["record"]["spend"], "12345678901234.5");
    assert!(!dead[0]["reason"].as_str().unwrap().is_empty());
    assert_eq!(health.rejected_rows(), 1);
    assert!(
        health.is_up(),
        "a refused row is not an unreachable QuestDB"
    );
    stop.cancel();
    let report = task.await.unwrap();
    assert_eq!(report.unsaved_rows, 0);
    let m = prometheus::TextEncoder::new()
        .encode_to_string(&telemetry.registry.gather())
        .unwrap();
    let rejected: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("adpulse_sink_rows_rejected_total{")
                && l.contains("table=\"campaign_stats\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(rejected, 1.0, "{m}");
}

/// Issue 9.1: warm-up anomaly rows with NaN bands made the spool unreadable, and the whole segment
/// (with campaign and order rows) was set aside. Now every row of the segment lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_model_rows_spooled_during_an_outage_land_with_their_neighbours() {
    let port = free_port();
    let spool = tempfile::tempdir().unwrap();
    let (handle, _, stop, task) = spawn_sink(format!("http://127.0.0.1:{port}"), spool.path());
    let mut rows = hours(50);
    rows.push(anomaly("2026-11-01T03:30:00Z", f64::NAN));
    rows.push(anomaly("2026-11-01T04:30:00Z", 3.25));
    rows.push(order(
        "1001",
        OrderKind::Order,
        dec!(2499.00),
        "2026-11-01T05:45:00Z",
    ));
    // QuestDB is down: the ticket resolves once the rows are fsynced to the spool
    handle.send(rows).await.unwrap().wait().await.unwrap();
    let spooled = adpulse::sinks::spool::Spool::open(spool.path(), u64::MAX, 0).unwrap();
    assert_eq!(spooled.rows(), 53, "durable means on disk");
    drop(spooled);
    let q = QuestDb::start_on(port).await;
    q.wait_for_count("SELECT count() FROM campaign_stats", 50.0)
        .await;
    q.wait_for_count("SELECT count() FROM orders", 1.0).await;
    q.wait_for_count("SELECT count() FROM anomalies", 2.0).await;
    let a = q
        .rows("SELECT expected, lower, upper FROM anomalies ORDER BY ts")
        .await;
    // QuestDB stores NaN and infinity as its DOUBLE null
    assert_eq!(a[0][0], serde_json::Value::Null);
    assert_eq!(a[1][0], 3.25);
    assert!(dead_letter_lines(spool.path()).is_empty());
    stop.cancel();
    task.await.unwrap();
}

/// Issue 9.4: SIGTERM with a full spool logged "unsent rows could not be spooled" and dropped
/// them. Now shutdown writes past the soft cap into the reserve and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_full_spool_writes_into_the_reserve_and_drops_nothing() {
    let port = free_port();
    let spool = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::new());
    let cfg = QuestDbConfig {
        spool_max_bytes: 20_000,
        spool_reserve_bytes: 10 << 20,
        max_buffered_rows: 100_000,
        ..sink_config(format!("http://127.0.0.1:{port}"), spool.path())
    };
    let (sink, handle) = QuestDbSink::build(cfg, None, telemetry.clone()).unwrap();
    let draining = CancellationToken::new();
    let sink = sink.drain_on(draining.clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn(sink.run(stop.clone()));
    let all = hours(3000);
    let mut tickets = Vec::new();
    // the spool fills; the sink then stops taking batches (back-pressure): send from a task
    // (`full_spool_pauses_the_source_and_loses_nothing` shows the source being held back)
    let h = handle.clone();
    let chunks: Vec<Vec<Record>> = all.chunks(100).map(|c| c.to_vec()).collect();
    let sender = tokio::spawn(async move {
        for c in chunks {
            tickets.push(h.send(c).await.unwrap());
        }
        tickets
    });
    eventually("back-pressure", Duration::from_secs(60), || async {
        handle.health.spool_full().then_some(())
    })
    .await;
    // SIGTERM: sources are told to stop, back-pressure lifts, their last rows are taken
    draining.cancel();
    let tickets = sender.await.unwrap();
    stop.cancel();
    let report = task.await.unwrap();
    assert_eq!(report.unsaved_rows, 0);
    assert_eq!(report.spooled_rows, 3000);
    for t in tickets {
        t.wait().await.expect("every batch is durable");
    }
    let s = adpulse::sinks::spool::Spool::open(spool.path(), 20_000, 0).unwrap();
    assert_eq!(s.rows(), 3000);
    assert!(s.bytes() > 20_000, "past the soft cap, into the reserve");
}

/// Issue 9.5: a password with `;` cut the ILP configuration string. QuestDB with HTTP basic auth
/// and such a password takes rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_with_semicolons_authenticates() {
    let password = "pa;ss;;word=1;request_timeout=1";
    let q = QuestDb::start_with_env(&[
        ("QDB_HTTP_USER", "adpulse"),
        ("QDB_HTTP_PASSWORD", password),
    ])
    .await;
    let spool = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::new());
    let cfg = QuestDbConfig {
        username: Some("adpulse".into()),
        ..sink_config(q.url(), spool.path())
    };
    let (sink, handle) = QuestDbSink::build(
        cfg,
        Some(adpulse::base::Secret::new(password)),
        telemetry.clone(),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(sink.run(stop.clone()));
    handle.send(hours(3)).await.unwrap().wait().await.unwrap();
    assert!(handle.health.is_up(), "{:?}", handle.health.last_error());
    assert_eq!(telemetry.rows_written("questdb"), 3);
    stop.cancel();
    task.await.unwrap();
}
