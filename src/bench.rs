//! `adpulse bench`: the measurements behind docs/benchmarks.md, runnable by anyone.
//!
//! - `ingest`: rows/s through adpulse's QuestDB sink (channel, buffering, flushing, metrics)
//!   against a bare questdb-rs loop writing the same rows, alternating, in one run.
//! - `metrics`: KPI snapshot and `/metrics` render time and size for N campaigns.

use chrono::{DateTime, Duration, Utc};
use questdb::ingress::{Sender, TimestampMicros};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::QuestDbConfig;
use crate::kpi::Margin;
use crate::records::{Bucket, CampaignKey, CampaignStat, Record};
use crate::sinks::questdb::{QuestDbSink, SqlClient, encode};
use crate::state::{SnapshotSettings, Store};
use crate::telemetry::Telemetry;

const BATCH: usize = 10_000;

/// Why an ingest benchmark run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bare questdb-rs: {0}")]
    Client(#[from] questdb::Error),
    #[error(transparent)]
    Sink(#[from] crate::sinks::questdb::SinkError),
    #[error(transparent)]
    SinkClosed(#[from] crate::sinks::questdb::SinkClosed),
    #[error("benchmark task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// `rows` campaign-hour rows with distinct keys, starting at `base`.
pub fn rows(n: usize, campaigns: usize, base: DateTime<Utc>) -> Vec<Record> {
    let campaigns = campaigns.max(1);
    (0..n)
        .map(|i| {
            let ts = base + Duration::hours((i / campaigns) as i64);
            let c = i % campaigns;
            Record::CampaignStats(CampaignStat {
                ts,
                bucket: Bucket::Hour,
                day: ts.with_timezone(&chrono_tz::Asia::Kolkata).date_naive(),
                key: CampaignKey {
                    platform: if c.is_multiple_of(2) {
                        "meta"
                    } else {
                        "google_ads"
                    }
                    .into(),
                    account: "act_1".into(),
                    campaign_id: format!("c{c:05}"),
                },
                campaign_name: format!("Campaign {c}"),
                source: "bench".into(),
                spend: Decimal::new(123_456 + (i % 1000) as i64, 2),
                conversion_value: Decimal::new(98_765, 2),
                spend_account: Decimal::new(123_456 + (i % 1000) as i64, 2),
                conversion_value_account: Decimal::new(98_765, 2),
                account_currency: "INR".into(),
                currency: "INR".into(),
                impressions: 10_000 + (i % 777) as u64,
                clicks: 120 + (i % 50) as u64,
                conversions: (i % 3) as f64,
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct IngestRun {
    pub bare_rows_per_sec: f64,
    pub adpulse_rows_per_sec: f64,
}

/// Bare questdb-rs: encode and flush every `BATCH` rows, one thread, no adpulse code but `encode`.
fn bare(conf: &str, rows: &[Record]) -> Result<f64, BenchError> {
    let mut sender = Sender::from_conf(conf)?;
    let mut buf = sender.new_buffer();
    let now = TimestampMicros::new(Utc::now().timestamp_micros());
    let t = Instant::now();
    for chunk in rows.chunks(BATCH) {
        for r in chunk {
            encode(&mut buf, r, now)?;
        }
        sender.flush(&mut buf)?;
    }
    Ok(rows.len() as f64 / t.elapsed().as_secs_f64())
}

/// adpulse: the sink task fed in `BATCH`-row batches, as sources feed it; timed until QuestDB has
/// acknowledged every row.
async fn through_adpulse(cfg: &QuestDbConfig, rows: Vec<Record>) -> Result<f64, BenchError> {
    let telemetry = Arc::new(Telemetry::new());
    let n = rows.len() as u64;
    let spool = std::env::temp_dir().join(format!("adpulse-bench-spool-{}", std::process::id()));
    let cfg = QuestDbConfig {
        flush_rows: BATCH,
        max_buffered_rows: BATCH * 20,
        spool_dir: spool.clone(),
        ..cfg.clone()
    };
    let (sink, handle) = QuestDbSink::build(cfg, None, telemetry.clone())?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(sink.run(stop.clone()));
    let mut batches: Vec<Vec<Record>> = Vec::new();
    let mut it = rows.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(it.by_ref().take(BATCH).collect());
    }
    // one counter handle, read in a tight loop: the wait must not take CPU from the sink it times
    let written = telemetry
        .sink_rows_written
        .with_label_values(&["questdb", "campaign_stats"]);
    let before = written.get();
    let t = Instant::now();
    for b in batches {
        handle.send(b).await?;
    }
    while written.get() - before < n {
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    stop.cancel();
    let _ = task.await;
    let _ = std::fs::remove_dir_all(spool);
    Ok(rate)
}

/// Alternate bare and adpulse `repeats` times on fresh rows (distinct days, so each run inserts).
pub async fn ingest(url: &str, n: usize, repeats: usize) -> Result<Vec<IngestRun>, BenchError> {
    crate::init_tls();
    let cfg = QuestDbConfig {
        http_url: url.to_string(),
        ..QuestDbConfig::default()
    };
    SqlClient::new(&cfg, None).ensure_schema().await?;
    let conf = format!(
        "http::addr={};protocol_version=auto;",
        url.trim_start_matches("http://").trim_end_matches('/')
    );
    let mut out = Vec::new();
    // a fixed base far from today: the rows never collide with live data
    let base = DateTime::<Utc>::from_timestamp(1_577_838_600, 0).unwrap_or_default();
    for r in 0..repeats {
        let day = |k: usize| base + Duration::days((r * 2 + k) as i64 * 400);
        let a = rows(n, 1000, day(0));
        let b = rows(n, 1000, day(1));
        let conf2 = conf.clone();
        let bare_rate = tokio::task::spawn_blocking(move || bare(&conf2, &a)).await??;
        let adpulse_rate = through_adpulse(&cfg, b).await?;
        out.push(IngestRun {
            bare_rows_per_sec: bare_rate,
            adpulse_rows_per_sec: adpulse_rate,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct MetricsRun {
    pub campaigns: usize,
    pub snapshot_ms: f64,
    /// Rendering the KPI families of a new snapshot (once per refresh, not per scrape).
    pub render_ms: f64,
    /// Compressing that body (once per body, on the first scrape that asks for gzip).
    pub gzip_ms: f64,
    pub bytes: usize,
    pub gzip_bytes: usize,
    pub series: usize,
}

/// Snapshot and render `/metrics` for `campaigns` live campaigns with 8 days of hourly history.
pub fn metrics(campaigns: usize, repeats: usize) -> MetricsRun {
    let now: DateTime<Utc> = "2026-11-20T12:40:00Z"
        .parse()
        .unwrap_or_else(|_| Utc::now());
    // as the service keeps it: per-day totals in the reporting timezone
    let mut store = Store::new(8).with_timezone(chrono_tz::Asia::Kolkata);
    let start = now - Duration::days(8);
    store.ingest(&rows(campaigns * 8 * 24, campaigns, start));
    let settings = SnapshotSettings {
        tz: chrono_tz::Asia::Kolkata,
        currency: "INR".into(),
        margin: Margin::default(),
        loss_rate_window_hours: 3,
        tracking_window_hours: 24,
        roi_target: Some(0.0),
    };
    let snap = Arc::new(arc_swap::ArcSwap::from_pointee(
        store.snapshot(now, &settings),
    ));
    let exposition =
        crate::sinks::metrics::Exposition::new(snap.clone(), None, &Default::default());
    let mut best = MetricsRun {
        campaigns,
        snapshot_ms: f64::MAX,
        render_ms: f64::MAX,
        gzip_ms: f64::MAX,
        bytes: 0,
        gzip_bytes: 0,
        series: 0,
    };
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let s = store.snapshot(now, &settings);
        best.snapshot_ms = best.snapshot_ms.min(t.elapsed().as_secs_f64() * 1000.0);
        snap.store(Arc::new(s));
        let t = Instant::now();
        let body = exposition.current();
        best.render_ms = best.render_ms.min(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let gz = body.gzip_with(b"");
        best.gzip_ms = best.gzip_ms.min(t.elapsed().as_secs_f64() * 1000.0);
        best.gzip_bytes = gz.iter().map(|b| b.len()).sum();
        best.bytes = body.text.len();
        best.series = body
            .text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .count();
    }
    best
}
