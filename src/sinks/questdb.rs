//! QuestDB sink: creates the tables (idempotent DDL over HTTP `/exec`) before the first write, then
//! writes with questdb-rs over ILP/HTTP, flushing by size and by interval. While QuestDB is
//! unreachable, rows wait in memory up to `max_buffered_rows`, then in the disk spool; once QuestDB
//! answers, the spool is replayed oldest first, then memory, so a newer version of a row is always
//! written after an older one. Tables have DEDUP UPSERT KEYS, so a replay never double-counts.

use chrono::Utc;
use questdb::ingress::{Buffer, Sender, TimestampMicros};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::base::Secret;
use crate::config::QuestDbConfig;
use crate::records::Record;
use crate::sinks::spool::{Spool, SpoolError};
use crate::telemetry::Telemetry;

/// The DDL of every table adpulse writes (see `docs/schema.md`).
pub const TABLES: &[(&str, &str)] = &[
    (
        "campaign_stats",
        "CREATE TABLE IF NOT EXISTS campaign_stats (ts TIMESTAMP, bucket SYMBOL, day SYMBOL, \
         platform SYMBOL, account SYMBOL, campaign_id SYMBOL, campaign_name VARCHAR, source SYMBOL, \
         spend DECIMAL(18,6), conversion_value DECIMAL(18,6), spend_account DECIMAL(18,6), \
         conversion_value_account DECIMAL(18,6), account_currency SYMBOL, currency SYMBOL, \
         impressions LONG, clicks LONG, conversions DOUBLE, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, bucket, platform, account, campaign_id)",
    ),
    (
        "orders",
        "CREATE TABLE IF NOT EXISTS orders (ts TIMESTAMP, day SYMBOL, event_id VARCHAR, \
         order_id VARCHAR, kind SYMBOL, amount DECIMAL(18,6), amount_shop DECIMAL(18,6), \
         shop_currency SYMBOL, currency SYMBOL, customer_id VARCHAR, city SYMBOL, \
         utm_source SYMBOL, utm_medium SYMBOL, utm_campaign SYMBOL, items LONG, source SYMBOL, \
         ingested_at TIMESTAMP) TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, event_id)",
    ),
    (
        "funnel",
        "CREATE TABLE IF NOT EXISTS funnel (ts TIMESTAMP, bucket SYMBOL, day SYMBOL, stage SYMBOL, \
         traffic_source SYMBOL, source SYMBOL, count LONG, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, bucket, stage, traffic_source, source)",
    ),
    (
        "forecasts",
        "CREATE TABLE IF NOT EXISTS forecasts (ts TIMESTAMP, generated_at TIMESTAMP, model SYMBOL, \
         series SYMBOL, horizon_hours LONG, yhat DOUBLE, yhat_lower_80 DOUBLE, yhat_upper_80 DOUBLE, \
         yhat_lower_95 DOUBLE, yhat_upper_95 DOUBLE) TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, generated_at, model, series)",
    ),
    (
        "anomalies",
        "CREATE TABLE IF NOT EXISTS anomalies (ts TIMESTAMP, series SYMBOL, platform SYMBOL, \
         campaign_id SYMBOL, value DOUBLE, expected DOUBLE, lower DOUBLE, upper DOUBLE, score DOUBLE, \
         is_anomaly BOOLEAN, detector SYMBOL) TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, series, platform, campaign_id, detector)",
    ),
    (
        "actions",
        "CREATE TABLE IF NOT EXISTS actions (ts TIMESTAMP, action_id SYMBOL, event SYMBOL, \
         actor SYMBOL, mode SYMBOL, dry_run BOOLEAN, rule SYMBOL, kind SYMBOL, platform SYMBOL, \
         account SYMBOL, campaign_id SYMBOL, campaign_name VARCHAR, reason VARCHAR, \
         rule_values VARCHAR, state_before VARCHAR, state_after VARCHAR, result SYMBOL, \
         detail VARCHAR, idempotency_key VARCHAR) TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, action_id, event)",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("QuestDB at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("QuestDB rejected {what}: {reason}")]
    Rejected { what: String, reason: String },
    #[error("cannot encode row for table {table}: {reason}")]
    Encode { table: &'static str, reason: String },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Shared health of the sink, read by `/readyz`.
#[derive(Debug, Default)]
pub struct SinkHealth {
    up: AtomicBool,
    spool_full: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
}

impl SinkHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
    /// True while the spool is full and sources are made to wait.
    pub fn spool_full(&self) -> bool {
        self.spool_full.load(Ordering::Relaxed)
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    fn set(&self, up: bool, err: Option<String>) {
        self.up.store(up, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = err;
    }
}

/// Where sources hand records to the sink.
#[derive(Clone)]
pub struct SinkHandle {
    tx: mpsc::Sender<Vec<Record>>,
    pub health: Arc<SinkHealth>,
}

impl SinkHandle {
    /// Waits while the sink applies back-pressure (spool full).
    pub async fn send(
        &self,
        records: Vec<Record>,
    ) -> Result<(), mpsc::error::SendError<Vec<Record>>> {
        if records.is_empty() {
            return Ok(());
        }
        self.tx.send(records).await
    }
}

/// Encode one record as an ILP row.
pub fn encode(buf: &mut Buffer, r: &Record, ingested_at: TimestampMicros) -> Result<(), SinkError> {
    let enc = |e: questdb::Error| SinkError::Encode {
        table: r.table(),
        reason: e.to_string(),
    };
    let ts = |t: chrono::DateTime<Utc>| TimestampMicros::new(t.timestamp_micros());
    match r {
        Record::CampaignStats(c) => {
            let day = c.day.format("%Y-%m-%d").to_string();
            buf.table("campaign_stats")
                .and_then(|b| b.symbol("bucket", c.bucket.as_str()))
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("platform", &c.key.platform))
                .and_then(|b| b.symbol("account", &c.key.account))
                .and_then(|b| b.symbol("campaign_id", &c.key.campaign_id))
                .and_then(|b| b.symbol("source", &c.source))
                .and_then(|b| b.symbol("account_currency", &c.account_currency))
                .and_then(|b| b.symbol("currency", &c.currency))
                .and_then(|b| b.column_str("campaign_name", &c.campaign_name))
                .and_then(|b| b.column_dec("spend", &c.spend))
                .and_then(|b| b.column_dec("conversion_value", &c.conversion_value))
                .and_then(|b| b.column_dec("spend_account", &c.spend_account))
                .and_then(|b| b.column_dec("conversion_value_account", &c.conversion_value_account))
                .and_then(|b| b.column_i64("impressions", c.impressions as i64))
                .and_then(|b| b.column_i64("clicks", c.clicks as i64))
                .and_then(|b| b.column_f64("conversions", c.conversions))
                .and_then(|b| b.column_ts("ingested_at", ingested_at))
                .and_then(|b| b.at(ts(c.ts)))
                .map_err(enc)
        }
        Record::Orders(o) => {
            let day = o.day.format("%Y-%m-%d").to_string();
            buf.table("orders")
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("kind", o.kind.as_str()))
                .and_then(|b| b.symbol("shop_currency", &o.shop_currency))
                .and_then(|b| b.symbol("currency", &o.currency))
                .and_then(|b| b.symbol_opt("city", o.city.as_deref()))
                .and_then(|b| b.symbol_opt("utm_source", o.utm_source.as_deref()))
                .and_then(|b| b.symbol_opt("utm_medium", o.utm_medium.as_deref()))
                .and_then(|b| b.symbol_opt("utm_campaign", o.utm_campaign.as_deref()))
                .and_then(|b| b.symbol("source", &o.source))
                .and_then(|b| b.column_str("event_id", &o.event_id))
                .and_then(|b| b.column_str("order_id", &o.order_id))
                .and_then(|b| b.column_dec("amount", &o.amount))
                .and_then(|b| b.column_dec("amount_shop", &o.amount_shop))
                .and_then(|b| b.column_str_opt("customer_id", o.customer_id.as_deref()))
                .and_then(|b| b.column_i64("items", i64::from(o.items)))
                .and_then(|b| b.column_ts("ingested_at", ingested_at))
                .and_then(|b| b.at(ts(o.ts)))
                .map_err(enc)
        }
        Record::Forecasts(f) => buf
            .table("forecasts")
            .and_then(|b| b.symbol("model", &f.model))
            .and_then(|b| b.symbol("series", &f.series))
            .and_then(|b| b.column_ts("generated_at", ts(f.generated_at)))
            .and_then(|b| b.column_i64("horizon_hours", f.horizon_hours))
            .and_then(|b| b.column_f64("yhat", f.yhat))
            .and_then(|b| b.column_f64("yhat_lower_80", f.yhat_lower_80))
            .and_then(|b| b.column_f64("yhat_upper_80", f.yhat_upper_80))
            .and_then(|b| b.column_f64("yhat_lower_95", f.yhat_lower_95))
            .and_then(|b| b.column_f64("yhat_upper_95", f.yhat_upper_95))
            .and_then(|b| b.at(ts(f.ts)))
            .map_err(enc),
        Record::Anomalies(a) => buf
            .table("anomalies")
            .and_then(|b| b.symbol("series", &a.series))
            .and_then(|b| b.symbol("platform", &a.platform))
            .and_then(|b| b.symbol("campaign_id", &a.campaign_id))
            .and_then(|b| b.symbol("detector", &a.detector))
            .and_then(|b| b.column_f64("value", a.value))
            .and_then(|b| b.column_f64("expected", a.expected))
            .and_then(|b| b.column_f64("lower", a.lower))
            .and_then(|b| b.column_f64("upper", a.upper))
            .and_then(|b| b.column_f64("score", a.score))
            .and_then(|b| b.column_bool("is_anomaly", a.is_anomaly))
            .and_then(|b| b.at(ts(a.ts)))
            .map_err(enc),
        Record::Actions(a) => buf
            .table("actions")
            .and_then(|b| b.symbol("action_id", &a.action_id))
            .and_then(|b| b.symbol("event", &a.event))
            .and_then(|b| b.symbol("actor", &a.actor))
            .and_then(|b| b.symbol("mode", &a.mode))
            .and_then(|b| b.symbol("rule", &a.rule))
            .and_then(|b| b.symbol("kind", &a.kind))
            .and_then(|b| b.symbol("platform", &a.platform))
            .and_then(|b| b.symbol("account", &a.account))
            .and_then(|b| b.symbol("campaign_id", &a.campaign_id))
            .and_then(|b| b.symbol("result", &a.result))
            .and_then(|b| b.column_bool("dry_run", a.dry_run))
            .and_then(|b| b.column_str("campaign_name", &a.campaign_name))
            .and_then(|b| b.column_str("reason", &a.reason))
            .and_then(|b| b.column_str("rule_values", &a.rule_values))
            .and_then(|b| b.column_str("state_before", &a.state_before))
            .and_then(|b| b.column_str("state_after", &a.state_after))
            .and_then(|b| b.column_str("detail", &a.detail))
            .and_then(|b| b.column_str("idempotency_key", &a.idempotency_key))
            .and_then(|b| b.at(ts(a.ts)))
            .map_err(enc),
        Record::Funnel(f) => {
            let day = f.day.format("%Y-%m-%d").to_string();
            buf.table("funnel")
                .and_then(|b| b.symbol("bucket", f.bucket.as_str()))
                .and_then(|b| b.symbol("day", &day))
                .and_then(|b| b.symbol("stage", &f.stage))
                .and_then(|b| b.symbol("traffic_source", &f.traffic_source))
                .and_then(|b| b.symbol("source", &f.source))
                .and_then(|b| b.column_i64("count", f.count as i64))
                .and_then(|b| b.column_ts("ingested_at", ingested_at))
                .and_then(|b| b.at(ts(f.ts)))
                .map_err(enc)
        }
    }
}

/// ILP/HTTP configuration string (contains the password: never log it).
fn conf_string(cfg: &QuestDbConfig, password: Option<&Secret>) -> Result<String, SinkError> {
    let url = reqwest::Url::parse(&cfg.http_url).map_err(|e| SinkError::Unreachable {
        url: cfg.http_url.clone(),
        reason: e.to_string(),
    })?;
    let scheme = if url.scheme() == "https" {
        "https"
    } else {
        "http"
    };
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port_or_known_default().unwrap_or(9000);
    // retry_timeout=0: this sink owns retries (backoff, spool), the client must not block on them.
    let mut s = format!(
        "{scheme}::addr={host}:{port};request_timeout={};retry_timeout=0;protocol_version=auto;",
        cfg.request_timeout_secs * 1000
    );
    if let Some(u) = &cfg.username {
        s.push_str(&format!("username={u};"));
        if let Some(p) = password {
            s.push_str(&format!("password={};", p.expose()));
        }
    }
    Ok(s)
}

/// SQL over QuestDB's HTTP `/exec` endpoint (DDL here; queries in tests and tools).
#[derive(Clone)]
pub struct SqlClient {
    http: reqwest::Client,
    base: String,
    username: Option<String>,
    password: Option<Secret>,
}

impl SqlClient {
    pub fn new(cfg: &QuestDbConfig, password: Option<Secret>) -> Self {
        crate::init_tls();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.request_timeout_secs))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: cfg.http_url.trim_end_matches('/').to_string(),
            username: cfg.username.clone(),
            password,
        }
    }

    /// Run one statement; returns QuestDB's JSON answer.
    pub async fn exec(&self, sql: &str) -> Result<serde_json::Value, SinkError> {
        let mut req = self
            .http
            .get(format!("{}/exec", self.base))
            .query(&[("query", sql)]);
        if let Some(u) = &self.username {
            req = req.basic_auth(u, self.password.as_ref().map(|p| p.expose()));
        }
        let resp = req.send().await.map_err(|e| SinkError::Unreachable {
            url: self.base.clone(),
            reason: e.without_url().to_string(),
        })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.map_err(|e| SinkError::Rejected {
            what: "a query".into(),
            reason: format!("HTTP {status}, unreadable body: {e}"),
        })?;
        if let Some(err) = body.get("error") {
            return Err(SinkError::Rejected {
                what: format!("SQL `{}`", sql.chars().take(80).collect::<String>()),
                reason: err.as_str().unwrap_or("unknown error").to_string(),
            });
        }
        Ok(body)
    }

    pub async fn ensure_schema(&self) -> Result<(), SinkError> {
        for (_, ddl) in TABLES {
            self.exec(ddl).await?;
        }
        Ok(())
    }
}

/// The sink task.
pub struct QuestDbSink {
    cfg: QuestDbConfig,
    conf: String,
    sql: SqlClient,
    rx: mpsc::Receiver<Vec<Record>>,
    pending: VecDeque<Record>,
    spool: Spool,
    telemetry: Arc<Telemetry>,
    health: Arc<SinkHealth>,
    writer: Option<(Sender, Buffer)>,
    schema_ready: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    spool_full: bool,
}

const SINK: &str = "questdb";

impl QuestDbSink {
    /// Build the sink and the handle sources send to. Fails only on a spool folder it cannot use.
    pub fn build(
        cfg: QuestDbConfig,
        password: Option<Secret>,
        telemetry: Arc<Telemetry>,
    ) -> Result<(Self, SinkHandle), SinkError> {
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
        if !spool.is_empty() {
            info!(rows = spool.rows(), dir = %cfg.spool_dir.display(), "spooled rows from an earlier run will be replayed");
        }
        // A short queue of batches: the bound on memory is `max_buffered_rows` (enforced below)
        // plus these few in-flight batches, which sources keep small.
        let (tx, rx) = mpsc::channel(4);
        let health = Arc::new(SinkHealth::default());
        let conf = conf_string(&cfg, password.as_ref())?;
        let sql = SqlClient::new(&cfg, password);
        telemetry.sink_up.with_label_values(&[SINK]).set(0);
        let sink = Self {
            backoff: Duration::from_millis(cfg.retry_initial_ms),
            conf,
            sql,
            rx,
            pending: VecDeque::new(),
            spool,
            telemetry,
            health: health.clone(),
            writer: None,
            schema_ready: false,
            retry_at: None,
            spool_full: false,
            cfg,
        };
        sink.update_gauges();
        Ok((sink, SinkHandle { tx, health }))
    }

    fn update_gauges(&self) {
        let t = &self.telemetry;
        t.sink_buffered
            .with_label_values(&[SINK])
            .set(self.pending.len() as i64);
        t.sink_spooled
            .with_label_values(&[SINK])
            .set(self.spool.rows() as i64);
        t.sink_spool_bytes
            .with_label_values(&[SINK])
            .set(self.spool.bytes() as i64);
        t.sink_backpressure
            .with_label_values(&[SINK])
            .set(i64::from(self.spool_full));
        self.health
            .spool_full
            .store(self.spool_full, Ordering::Relaxed);
    }

    fn mark_down(&mut self, err: &SinkError) {
        if self.health.is_up() || self.health.last_error().is_none() {
            warn!(sink = SINK, error = %err, "QuestDB write failed; rows are kept and retried");
        }
        self.health.set(false, Some(err.to_string()));
        self.telemetry.sink_up.with_label_values(&[SINK]).set(0);
        self.telemetry
            .sink_write_failures
            .with_label_values(&[SINK])
            .inc();
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_millis(self.cfg.retry_max_ms));
        // a failed connection may be half-open: start afresh next time
        self.writer = None;
    }

    fn mark_up(&mut self) {
        if !self.health.is_up() {
            info!(sink = SINK, "QuestDB is accepting rows");
        }
        self.health.set(true, None);
        self.telemetry.sink_up.with_label_values(&[SINK]).set(1);
        self.telemetry
            .sink_last_success
            .with_label_values(&[SINK])
            .set(crate::telemetry::unix_now());
        self.backoff = Duration::from_millis(self.cfg.retry_initial_ms);
        self.retry_at = None;
    }

    /// Write `rows` in one ILP request (blocking I/O off the async runtime).
    async fn write(&mut self, rows: Vec<Record>) -> Result<Vec<Record>, (SinkError, Vec<Record>)> {
        let conf = self.conf.clone();
        let url = self.cfg.http_url.clone();
        let writer = self.writer.take();
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let (mut sender, mut buf) = match writer {
                Some(w) => w,
                None => match Sender::from_conf(&conf) {
                    Ok(s) => {
                        let b = s.new_buffer();
                        (s, b)
                    }
                    Err(e) => {
                        return (
                            None,
                            Err(SinkError::Unreachable {
                                url,
                                reason: e.msg().to_string(),
                            }),
                            rows,
                        );
                    }
                },
            };
            buf.clear();
            let now = TimestampMicros::new(Utc::now().timestamp_micros());
            for r in &rows {
                if let Err(e) = encode(&mut buf, r, now) {
                    buf.clear();
                    return (Some((sender, buf)), Err(e), rows);
                }
            }
            let res = sender.flush(&mut buf).map_err(|e| match e.code() {
                questdb::ErrorCode::SocketError | questdb::ErrorCode::CouldNotResolveAddr => {
                    SinkError::Unreachable {
                        url,
                        reason: e.msg().to_string(),
                    }
                }
                _ => SinkError::Rejected {
                    what: format!("{} rows", rows.len()),
                    reason: e.msg().to_string(),
                },
            });
            let keep = if res.is_ok() && !sender.must_close() {
                Some((sender, buf))
            } else {
                None
            };
            (keep, res, rows)
        })
        .await;
        let (writer, res, rows) = match joined {
            Ok(x) => x,
            Err(e) => {
                return Err((
                    SinkError::Rejected {
                        what: "flush".into(),
                        reason: format!("writer task failed: {e}"),
                    },
                    Vec::new(),
                ));
            }
        };
        self.writer = writer;
        self.telemetry
            .sink_flush_duration
            .with_label_values(&[SINK])
            .observe(started.elapsed().as_secs_f64());
        match res {
            Ok(()) => {
                let mut per_table: std::collections::BTreeMap<&'static str, u64> =
                    Default::default();
                for r in &rows {
                    *per_table.entry(r.table()).or_default() += 1;
                }
                for (t, n) in per_table {
                    self.telemetry
                        .sink_rows_written
                        .with_label_values(&[SINK, t])
                        .inc_by(n);
                }
                Ok(rows)
            }
            Err(e) => Err((e, rows)),
        }
    }

    /// One attempt to drain: schema, then spool (oldest first), then memory in `flush_rows` chunks.
    async fn drain(&mut self) {
        if let Some(at) = self.retry_at
            && Instant::now() < at
        {
            return;
        }
        if !self.schema_ready {
            match self.sql.ensure_schema().await {
                Ok(()) => {
                    self.schema_ready = true;
                    info!(sink = SINK, "QuestDB tables ready");
                }
                Err(e) => {
                    self.mark_down(&e);
                    return;
                }
            }
        }
        loop {
            match self.spool.peek() {
                Ok(Some(rows)) => match self.write(rows).await {
                    Ok(_) => {
                        if let Err(e) = self.spool.pop() {
                            error!(sink = SINK, error = %e, "cannot delete a replayed spool segment; it will be replayed again (harmless: rows are upserted)");
                            return;
                        }
                        self.spool_full = false;
                        self.mark_up();
                        self.update_gauges();
                    }
                    Err((e, _)) => {
                        self.mark_down(&e);
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    error!(sink = SINK, error = %e, "spool segment unreadable; set aside for inspection");
                    match self.spool.quarantine() {
                        Ok(p) => warn!(sink = SINK, path = %p.display(), "segment quarantined"),
                        Err(e) => {
                            error!(sink = SINK, error = %e, "cannot quarantine spool segment");
                            return;
                        }
                    }
                }
            }
        }
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.cfg.flush_rows);
            let rows: Vec<Record> = self.pending.drain(..n).collect();
            match self.write(rows).await {
                Ok(_) => {
                    self.mark_up();
                }
                Err((e, rows)) => {
                    // put them back, in order, in front
                    for r in rows.into_iter().rev() {
                        self.pending.push_front(r);
                    }
                    self.mark_down(&e);
                    break;
                }
            }
        }
        self.update_gauges();
    }

    /// Move the oldest rows beyond the memory bound to the spool.
    fn overflow(&mut self) {
        let max = self.cfg.max_buffered_rows;
        if self.pending.len() <= max {
            return;
        }
        let n = self.pending.len() - max;
        let rows: Vec<Record> = self.pending.iter().take(n).cloned().collect();
        match self.spool.push(&rows) {
            Ok(()) => {
                self.pending.drain(..n);
                if self.spool_full {
                    self.spool_full = false;
                }
            }
            Err(e) => {
                if !self.spool_full {
                    error!(sink = SINK, error = %e, "back-pressure: sources wait until QuestDB takes rows");
                }
                self.spool_full = true;
            }
        }
        self.update_gauges();
    }

    /// Run until shutdown; then one last attempt to write, and whatever remains goes to the spool.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let interval = Duration::from_millis(self.cfg.flush_interval_ms);
        let mut last_flush = Instant::now();
        // first contact (creates the tables even before any row arrives)
        self.drain().await;
        loop {
            let accept = !self.spool_full;
            let wake = if self.pending.is_empty() && self.spool.is_empty() && self.schema_ready {
                interval.max(Duration::from_secs(5))
            } else {
                interval
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = self.rx.recv(), if accept => {
                    match batch {
                        Some(b) => {
                            self.pending.extend(b);
                            if self.pending.len() >= self.cfg.flush_rows {
                                self.drain().await;
                                last_flush = Instant::now();
                            }
                            self.overflow();
                            self.update_gauges();
                        }
                        None => break,
                    }
                }
                _ = tokio::time::sleep(wake) => {}
            }
            if last_flush.elapsed() >= interval {
                self.drain().await;
                self.overflow();
                last_flush = Instant::now();
            }
        }
        // drain what is queued in the channel too
        while let Ok(b) = self.rx.try_recv() {
            self.pending.extend(b);
        }
        self.retry_at = None;
        self.drain().await;
        if !self.pending.is_empty() {
            let rows: Vec<Record> = self.pending.drain(..).collect();
            match self.spool.push(&rows) {
                Ok(()) => info!(
                    sink = SINK,
                    rows = rows.len(),
                    "unsent rows spooled for the next run"
                ),
                Err(e) => {
                    error!(sink = SINK, rows = rows.len(), error = %e, "unsent rows could not be spooled at shutdown")
                }
            }
        }
        self.update_gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_string_never_contains_password_unless_user_set() {
        let cfg = QuestDbConfig::default();
        let s = conf_string(&cfg, Some(&Secret::new("pw"))).unwrap();
        assert!(!s.contains("pw;"));
        assert!(s.starts_with("http::addr=127.0.0.1:9000;"));
    }

    #[test]
    fn every_table_has_dedup_keys_and_wal() {
        for (name, ddl) in TABLES {
            assert!(ddl.contains(&format!("IF NOT EXISTS {name} (")), "{name}");
            assert!(ddl.contains("WAL"), "{name}");
            assert!(ddl.contains("DEDUP UPSERT KEYS(ts"), "{name}");
            assert!(ddl.contains("PARTITION BY DAY"), "{name}");
        }
    }
}
