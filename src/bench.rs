//! `adpulse bench`: the measurements behind docs/benchmarks.md, runnable by anyone.
//!
//! - `ingest`: rows/s through adpulse's QuestDB sink (channel, buffering, flushing, metrics)
//!   against a bare questdb-rs loop writing the same rows, alternating, in one run.
//! - `metrics`: KPI snapshot and `/metrics` render time and size for N campaigns.

use chrono::{DateTime, Duration, Utc};
use questdb::ingress::{Sender, TimestampMicros};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::QuestDbConfig;
use crate::records::Record;
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

pub use crate::records::synthetic_campaign_hours as rows;

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
    /// Rendering it as the service does once a scraper has asked for gzip (Prometheus always
    /// does): streamed into its deflate as it is written, the text never held whole.
    pub streamed_ms: f64,
    pub bytes: usize,
    pub gzip_bytes: usize,
    pub series: usize,
}

/// Snapshot and render `/metrics` for `campaigns` live campaigns with 8 days of hourly history.
/// One models pass over a store of `campaigns` campaigns and `days` days of hours.
#[derive(Debug, Clone)]
pub struct ModelsRun {
    pub campaigns: usize,
    pub campaign_hours: usize,
    /// The first pass: every campaign-hour scored by the six detectors and the tracking test,
    /// then the forecasts fitted.
    pub first_pass_secs: f64,
    /// The next pass after one more hour of every campaign (what the live service does each
    /// hour).
    pub hour_pass_secs: f64,
}

/// The models' first pass, as the service runs it after a backfill, and one live hour's pass:
/// campaign-hours of [`rows`] in a store kept as the service keeps it, no sink (scoring only).
pub async fn models(campaigns: usize, days: usize) -> ModelsRun {
    let now = Utc::now();
    let cur = crate::normalize::hour_floor(now, chrono_tz::UTC);
    let store = Store::new(crate::models::live::store_days().max(days as u32 + 1));
    let pipeline = Arc::new(crate::pipeline::Pipeline::new(
        crate::normalize::Normalizer::new(chrono_tz::UTC, "INR", Default::default()),
        store,
        None,
        Arc::new(Telemetry::new()),
    ));
    let hours = days * 24;
    let start = cur - Duration::hours(hours as i64 + 1);
    pipeline.with_store(|s| s.ingest(&rows(campaigns * hours, campaigns, start)));
    let config = crate::config::Config::from_toml_str("")
        .unwrap_or_else(|_| unreachable!("the empty configuration is the defaults"));
    let outputs = Arc::new(arc_swap::ArcSwap::from_pointee(
        crate::models::live::ModelOutputs::default(),
    ));
    let mut runner =
        crate::models::live::ModelRunner::new(&config, pipeline.clone(), None, None, outputs);
    let t = Instant::now();
    runner.cycle().await;
    let first_pass_secs = t.elapsed().as_secs_f64();
    // one more hour of every campaign
    pipeline.with_store(|s| s.ingest(&rows(campaigns, campaigns, cur - Duration::hours(1))));
    let t = Instant::now();
    runner.cycle().await;
    ModelsRun {
        campaigns,
        campaign_hours: campaigns * hours,
        first_pass_secs,
        hour_pass_secs: t.elapsed().as_secs_f64(),
    }
}

pub fn metrics(campaigns: usize, repeats: usize) -> MetricsRun {
    let now: DateTime<Utc> = "2026-11-20T12:40:00Z"
        .parse()
        .unwrap_or_else(|_| Utc::now());
    // as the service keeps it: per-day totals in the reporting timezone
    let mut store = Store::new(8).with_timezone(chrono_tz::Asia::Kolkata);
    let start = now - Duration::days(8);
    store.ingest(&rows(campaigns * 8 * 24, campaigns, start));
    let settings = SnapshotSettings::inr(chrono_tz::Asia::Kolkata, Some(0.0));
    let snap = Arc::new(arc_swap::ArcSwap::from_pointee(
        store.snapshot(now, &settings),
    ));
    let exposition =
        crate::sinks::metrics::Exposition::new(snap.clone(), None, &Default::default());
    let streamed = crate::sinks::metrics::Exposition::new(snap.clone(), None, &Default::default());
    streamed.want_gzip();
    let mut best = MetricsRun {
        campaigns,
        snapshot_ms: f64::MAX,
        render_ms: f64::MAX,
        gzip_ms: f64::MAX,
        streamed_ms: f64::MAX,
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
        let t = Instant::now();
        let streamed_body = streamed.current();
        best.streamed_ms = best.streamed_ms.min(t.elapsed().as_secs_f64() * 1000.0);
        debug_assert_eq!(streamed_body.len(), body.len());
        best.bytes = body.len();
        best.series = body
            .plain()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .count();
    }
    best
}

/// What `adpulse bench scale` runs: the demo at `campaigns`, its backfill, then live with
/// scrapers, then SIGINT. Also the command's arguments (`#[command(flatten)]` in `main.rs`).
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleOptions {
    /// QuestDB HTTP endpoint (a scratch instance: the demo's rows are written to it).
    #[arg(long)]
    pub questdb_url: String,
    /// Campaigns (10, 100, 1000, 10000; rounded up to a multiple of the demo's 6).
    #[arg(long, default_value_t = 10_000)]
    pub campaigns: usize,
    /// Days of backfill before going live.
    #[arg(long, default_value_t = 8)]
    pub backfill_days: u32,
    /// Simulated seconds per real second once live.
    #[arg(long, default_value_t = 60.0)]
    pub speedup: f64,
    /// Real seconds of the live phase before SIGINT (the scrapers run in its second half).
    #[arg(long, default_value_t = 90)]
    pub live_secs: u64,
    /// Concurrent scrapers of `/metrics`.
    #[arg(long, default_value_t = 20)]
    pub scrapers: usize,
    /// Seconds the scrapers run (in the middle of the live phase).
    #[arg(long, default_value_t = 30)]
    pub scrape_secs: u64,
    /// The adpulse binary to run (this one by default).
    #[arg(long, default_value_os_t = this_binary())]
    pub binary: std::path::PathBuf,
    /// Where the run's config, spool, state and log go (removed after a clean run unless
    /// `--keep`; default: a temp folder).
    #[arg(long, default_value_os_t = default_work_dir())]
    pub work_dir: std::path::PathBuf,
    /// Keep the work folder (it is removed after a clean run).
    #[arg(long)]
    pub keep: bool,
    /// QuestDB's root folder, to report its size (optional: the server may be elsewhere).
    #[arg(long)]
    pub questdb_root: Option<std::path::PathBuf>,
    /// Give up when the backfill has not finished after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub backfill_timeout_secs: u64,
    /// Stop the run (kill adpulse) when its resident memory passes this (MiB), so that a leak
    /// cannot take the machine down.
    #[arg(long, default_value_t = 6000.0)]
    pub rss_limit_mib: f64,
}

/// This executable (`bench scale` runs the service it is part of); `adpulse` on the path when
/// the OS cannot tell.
fn this_binary() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| "adpulse".into())
}

fn default_work_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("adpulse-bench-scale-{}", std::process::id()))
}

/// What one `bench scale` run measured.
#[derive(Debug, Clone, Default)]
pub struct ScaleRun {
    pub campaigns: usize,
    pub backfill_secs: f64,
    /// Highest resident memory during the backfill.
    pub rss_backfill_max_mib: f64,
    /// Median resident memory over the live phase.
    pub rss_steady_mib: f64,
    /// Highest resident memory over the live phase.
    pub rss_live_max_mib: f64,
    /// Peak resident memory of the whole run (the kernel's VmHWM).
    pub rss_peak_mib: f64,
    /// The service's own timing of its last KPI snapshot and `/metrics` render.
    pub snapshot_ms: f64,
    pub render_ms: f64,
    pub series: usize,
    pub body_bytes: usize,
    pub scrapes: usize,
    pub scrape_errors: usize,
    pub scrape_p50_ms: f64,
    pub scrape_p99_ms: f64,
    pub scrape_max_ms: f64,
    /// From SIGINT to the process' exit.
    pub shutdown_secs: f64,
    /// The process' exit code (0: every row in QuestDB or the spool).
    pub exit_code: Option<i32>,
    /// QuestDB's folder (KiB) at the end of the backfill, at the end of the live phase, and
    /// after the shutdown of adpulse (QuestDB still running).
    pub questdb_kib: Option<[u64; 3]>,
}

/// Why a scale run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("adpulse exited during the run ({status}); its log: {log}")]
    Exited {
        status: std::process::ExitStatus,
        log: std::path::PathBuf,
    },
    #[error("the backfill did not finish within {secs} s; the log: {log}")]
    BackfillTimeout { secs: u64, log: std::path::PathBuf },
    #[error("the run's HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(
        "adpulse passed the RSS limit ({rss_mib:.0} MiB > {limit_mib:.0} MiB); stopped; its log: {log}"
    )]
    RssLimit {
        rss_mib: f64,
        limit_mib: f64,
        log: std::path::PathBuf,
    },
    #[error("cannot send SIGINT to {pid}: {source}")]
    Signal { pid: u32, source: std::io::Error },
}

/// Kills the child if the run ends early (an error, a panic), so no adpulse is left behind.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// VmRSS and VmHWM of a process, in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Disk use of a folder in KiB (allocated blocks, as `du -sk` counts them).
pub fn du_kib(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            }
            total += m.blocks() * 512;
        }
    }
    total / 1024
}

/// One `/metrics` scrape read line by line: the series count, the body size, and the values of
/// the samples whose line starts with one of `wanted`.
async fn scrape_values(
    client: &reqwest::Client,
    url: &str,
    wanted: &[&str],
) -> Result<(usize, usize, Vec<(String, f64)>), reqwest::Error> {
    let mut resp = client.get(url).send().await?.error_for_status()?;
    let (mut series, mut bytes, mut found) = (0, 0, Vec::new());
    let mut line = Vec::new();
    let mut take = |l: &[u8], found: &mut Vec<(String, f64)>| {
        if l.is_empty() || l[0] == b'#' {
            return;
        }
        series += 1;
        let Ok(l) = std::str::from_utf8(l) else {
            return;
        };
        if wanted.iter().any(|w| l.starts_with(w))
            && let Some((name, v)) = l.rsplit_once(' ')
            && let Ok(v) = v.parse::<f64>()
        {
            found.push((name.to_string(), v));
        }
    };
    while let Some(chunk) = resp.chunk().await? {
        bytes += chunk.len();
        for b in chunk.iter() {
            if *b == b'\n' {
                take(&line, &mut found);
                line.clear();
            } else {
                line.push(*b);
            }
        }
    }
    take(&line, &mut found);
    Ok((series, bytes, found))
}

fn median_and_max(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Run the scenario: start `adpulse run` on a generated config (the demo at `campaigns`,
/// models and actions on, as shipped), wait for the backfill, go live, scrape with
/// `scrapers` concurrent clients as Prometheus does (gzip), then SIGINT and time the exit.
pub async fn scale(o: &ScaleOptions) -> Result<ScaleRun, ScaleError> {
    crate::init_tls();
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ScaleError::Io { path, source }
    };
    let dir = &o.work_dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io(dir))?
        .port();
    let scale = o.campaigns.div_ceil(6).max(1);
    let start = Utc::now();
    let start = start - Duration::nanoseconds(i64::from(start.timestamp_subsec_nanos()));
    let config = format!(
        r#"# generated by `adpulse bench scale`
[general]
state_dir = "{dir}/state"
[server]
listen = "127.0.0.1:{port}"
[questdb]
http_url = "{url}"
spool_dir = "{dir}/spool"
[[sources]]
type = "demo"
name = "demo"
backfill_days = {days}
scale = {scale}
speedup = {speedup}
start = "{start}"
"#,
        dir = dir.display(),
        url = o.questdb_url,
        days = o.backfill_days,
        speedup = o.speedup,
        start = start.to_rfc3339(),
    );
    let config_path = dir.join("adpulse.toml");
    std::fs::write(&config_path, config).map_err(io(&config_path))?;
    let log = dir.join("adpulse.log");
    let log_file = std::fs::File::create(&log).map_err(io(&log))?;
    let log_err = log_file.try_clone().map_err(io(&log))?;
    let child = std::process::Command::new(&o.binary)
        .arg("-c")
        .arg(&config_path)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|source| ScaleError::Spawn {
            binary: o.binary.clone(),
            source,
        })?;
    let pid = child.id();
    let mut child = ChildGuard(child);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let mut run = ScaleRun {
        campaigns: scale * 6,
        ..ScaleRun::default()
    };
    // the resident memory now (MiB), or why the run must stop
    let check = |child: &mut ChildGuard| -> Result<f64, ScaleError> {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(ScaleError::Exited {
                status,
                log: log.clone(),
            });
        }
        let rss = rss_kib(pid).map_or(0.0, |(r, _)| r as f64 / 1024.0);
        if rss > o.rss_limit_mib {
            return Err(ScaleError::RssLimit {
                rss_mib: rss,
                limit_mib: o.rss_limit_mib,
                log: log.clone(),
            });
        }
        Ok(rss)
    };

    // backfill: until the demo's data reaches its start
    let t0 = Instant::now();
    let data_ts = "adpulse_source_data_timestamp_seconds{source=\"demo\"}";
    loop {
        let rss = check(&mut child)?;
        run.rss_backfill_max_mib = run.rss_backfill_max_mib.max(rss);
        if t0.elapsed().as_secs() > o.backfill_timeout_secs {
            return Err(ScaleError::BackfillTimeout {
                secs: o.backfill_timeout_secs,
                log: log.clone(),
            });
        }
        if let Ok((_, _, v)) = scrape_values(&client, &url, &[data_ts]).await
            && v.iter().any(|(_, t)| *t >= start.timestamp() as f64)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    run.backfill_secs = t0.elapsed().as_secs_f64();
    let disk = |r: &Option<std::path::PathBuf>| r.as_deref().map(du_kib);
    let disk_backfill = disk(&o.questdb_root);

    // live: RSS every second; the scrapers in the second half
    let live = Instant::now();
    let stop_at = live + std::time::Duration::from_secs(o.live_secs);
    let scrape_from =
        live + std::time::Duration::from_secs(o.live_secs.saturating_sub(o.scrape_secs) / 2);
    let mut rss = Vec::new();
    while Instant::now() < scrape_from {
        rss.push(check(&mut child)?);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let until = Instant::now() + std::time::Duration::from_secs(o.scrape_secs);
    let mut tasks = Vec::new();
    for _ in 0..o.scrapers {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < until {
                let t = Instant::now();
                let r = async {
                    let mut resp = client
                        .get(&url)
                        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
                        .send()
                        .await?
                        .error_for_status()?;
                    while resp.chunk().await?.is_some() {}
                    Ok::<_, reqwest::Error>(())
                }
                .await;
                match r {
                    Ok(()) => took.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => errors += 1,
                }
            }
            (took, errors)
        }));
    }
    while Instant::now() < until {
        rss.push(check(&mut child)?);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let mut took = Vec::new();
    for t in tasks {
        if let Ok((t, e)) = t.await {
            took.extend(t);
            run.scrape_errors += e;
        }
    }
    took.sort_by(f64::total_cmp);
    run.scrapes = took.len();
    run.scrape_p50_ms = quantile(&took, 0.5);
    run.scrape_p99_ms = quantile(&took, 0.99);
    run.scrape_max_ms = took.last().copied().unwrap_or(0.0);
    while Instant::now() < stop_at {
        rss.push(check(&mut child)?);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    (run.rss_steady_mib, run.rss_live_max_mib) = median_and_max(rss);
    let (series, bytes, values) = scrape_values(
        &client,
        &url,
        &[
            "adpulse_snapshot_duration_seconds",
            "adpulse_metrics_render_duration_seconds",
        ],
    )
    .await?;
    run.series = series;
    run.body_bytes = bytes;
    for (name, v) in values {
        if name.starts_with("adpulse_snapshot_duration_seconds") {
            run.snapshot_ms = v * 1000.0;
        } else {
            run.render_ms = v * 1000.0;
        }
    }
    run.rss_peak_mib = rss_kib(pid).map_or(0.0, |(_, hwm)| hwm as f64 / 1024.0);
    let disk_live = disk(&o.questdb_root);

    // SIGINT, as ctrl-c sends it, and the time to exit
    let t = Instant::now();
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped) and a valid signal.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) } != 0 {
        return Err(ScaleError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(e) => return Err(io(&log)(e)),
        }
    };
    run.shutdown_secs = t.elapsed().as_secs_f64();
    run.exit_code = status.code();
    if let (Some(b), Some(l), Some(root)) = (disk_backfill, disk_live, &o.questdb_root) {
        run.questdb_kib = Some([b, l, du_kib(root)]);
    }
    if !o.keep && status.success() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(run)
}

impl ScaleRun {
    /// One line per figure, as docs/benchmarks.md quotes them.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "campaigns {}\nbackfill {:.1} s (RSS max {:.0} MiB)\nRSS steady {:.0} MiB, live max {:.0} MiB, peak (VmHWM) {:.0} MiB\n\
             snapshot {:.1} ms, render {:.1} ms ({} series, {:.1} MiB)\n\
             scrapes {} ({} failed): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms\n\
             shutdown {:.2} s, exit code {:?}",
            self.campaigns,
            self.backfill_secs,
            self.rss_backfill_max_mib,
            self.rss_steady_mib,
            self.rss_live_max_mib,
            self.rss_peak_mib,
            self.snapshot_ms,
            self.render_ms,
            self.series,
            self.body_bytes as f64 / 1_048_576.0,
            self.scrapes,
            self.scrape_errors,
            self.scrape_p50_ms,
            self.scrape_p99_ms,
            self.scrape_max_ms,
            self.shutdown_secs,
            self.exit_code,
        );
        if let Some([b, l, r]) = self.questdb_kib {
            s.push_str(&format!(
                "\nQuestDB folder: {:.1} MiB after backfill, {:.1} MiB live, {:.1} MiB after adpulse stopped",
                b as f64 / 1024.0,
                l as f64 / 1024.0,
                r as f64 / 1024.0
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
