//! Self-monitoring: the registry (built once, shared without a lock) and the per-source and
//! per-sink gauges and counters. The KPI families are added by `sinks::metrics`.

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use std::time::Duration;

/// Handles to every self-metric.
pub struct Telemetry {
    pub registry: Registry,
    source_up: IntGaugeVec,
    source_last_success: GaugeVec,
    source_data_ts: GaugeVec,
    source_poll_duration: GaugeVec,
    source_polls: IntCounterVec,
    source_rows: IntCounterVec,
    source_rejected: IntCounterVec,
    /// Days the completeness ledger holds as incomplete, per source.
    source_incomplete_days: IntGaugeVec,
    pub sink_up: IntGaugeVec,
    pub sink_rows_written: IntCounterVec,
    pub sink_write_failures: IntCounterVec,
    pub sink_buffered: IntGaugeVec,
    pub sink_spooled: IntGaugeVec,
    pub sink_spool_bytes: IntGaugeVec,
    pub sink_backpressure: IntGaugeVec,
    pub sink_last_success: GaugeVec,
    pub sink_flush_duration: HistogramVec,
    pub sink_rows_rejected: IntCounterVec,
    pub sink_spool_unreadable: IntCounterVec,
    /// Time the last KPI snapshot took to compute (once per `refresh_interval_secs`).
    pub snapshot_duration: Gauge,
    /// Time the last `/metrics` body took to render (once per snapshot, not per scrape).
    pub render_duration: Gauge,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; an error here is a programming mistake caught by every test.
    r.expect("static metric definition")
}

impl Telemetry {
    pub fn new() -> Self {
        let registry = Registry::new();
        let g = |name: &str, help: &str, labels: &[&str]| {
            let v = must(GaugeVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(v.clone())));
            v
        };
        let ig = |name: &str, help: &str, labels: &[&str]| {
            let v = must(IntGaugeVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(v.clone())));
            v
        };
        let c = |name: &str, help: &str, labels: &[&str]| {
            let v = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(v.clone())));
            v
        };
        let build = must(Gauge::with_opts(
            Opts::new("adpulse_build_info", "adpulse build, always 1")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        ));
        build.set(1.0);
        must(registry.register(Box::new(build)));
        let flush = must(HistogramVec::new(
            HistogramOpts::new(
                "adpulse_sink_flush_duration_seconds",
                "Latency of one flush to the sink",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]),
            &["sink"],
        ));
        must(registry.register(Box::new(flush.clone())));
        let gauge = |name: &str, help: &str| {
            let v = must(Gauge::with_opts(Opts::new(name, help)));
            must(registry.register(Box::new(v.clone())));
            v
        };
        let snapshot_duration = gauge(
            "adpulse_snapshot_duration_seconds",
            "Time the last KPI snapshot took to compute",
        );
        let render_duration = gauge(
            "adpulse_metrics_render_duration_seconds",
            "Time the last /metrics body of the KPI and model families took to render (once per snapshot, shared by every scrape)",
        );
        let incomplete_days = ig(
            "adpulse_source_incomplete_days",
            "Days the completeness ledger holds as incomplete (to be fetched again)",
            &["source"],
        );
        Self {
            source_incomplete_days: incomplete_days,
            source_up: ig(
                "adpulse_source_up",
                "1 if the source's last poll succeeded",
                &["source", "type"],
            ),
            source_last_success: g(
                "adpulse_source_last_success_timestamp_seconds",
                "End of the source's last successful poll",
                &["source"],
            ),
            source_data_ts: g(
                "adpulse_source_data_timestamp_seconds",
                "Newest data time the source delivered",
                &["source"],
            ),
            source_poll_duration: g(
                "adpulse_source_poll_duration_seconds",
                "Duration of the source's last poll",
                &["source"],
            ),
            source_polls: c(
                "adpulse_source_polls_total",
                "Polls by result",
                &["source", "result"],
            ),
            source_rows: c("adpulse_source_rows_total", "Records produced", &["source"]),
            source_rejected: c(
                "adpulse_source_rejected_rows_total",
                "Records rejected by normalize (see the log for each)",
                &["source"],
            ),
            sink_up: ig(
                "adpulse_sink_up",
                "1 if the sink's last write or health check succeeded",
                &["sink"],
            ),
            sink_rows_written: c(
                "adpulse_sink_rows_written_total",
                "Rows acknowledged by the sink",
                &["sink", "table"],
            ),
            sink_write_failures: c(
                "adpulse_sink_write_failures_total",
                "Failed flush attempts",
                &["sink"],
            ),
            sink_buffered: ig(
                "adpulse_sink_buffered_rows",
                "Rows waiting in memory",
                &["sink"],
            ),
            sink_spooled: ig(
                "adpulse_sink_spooled_rows",
                "Rows waiting in the disk spool",
                &["sink"],
            ),
            sink_spool_bytes: ig(
                "adpulse_sink_spool_bytes",
                "Size of the disk spool",
                &["sink"],
            ),
            sink_backpressure: ig(
                "adpulse_sink_backpressure",
                "1 while the spool is full and sources are made to wait",
                &["sink"],
            ),
            sink_last_success: g(
                "adpulse_sink_last_success_timestamp_seconds",
                "Time of the last acknowledged flush",
                &["sink"],
            ),
            sink_flush_duration: flush,
            sink_rows_rejected: c(
                "adpulse_sink_rows_rejected_total",
                "Rows QuestDB (or the ILP encoder) refused, by table and reason class; each is in the dead-letter file",
                &["table", "reason"],
            ),
            sink_spool_unreadable: c(
                "adpulse_sink_spool_unreadable_lines_total",
                "Spool lines that could not be read back; each is in the dead-letter file",
                &["sink"],
            ),
            snapshot_duration,
            render_duration,
            registry,
        }
    }

    /// Handle for one source's metrics.
    pub fn source(&self, name: &str, kind: &str) -> SourceStats {
        SourceStats {
            up: self.source_up.with_label_values(&[name, kind]),
            last_success: self.source_last_success.with_label_values(&[name]),
            data_ts: self.source_data_ts.with_label_values(&[name]),
            poll_duration: self.source_poll_duration.with_label_values(&[name]),
            ok: self.source_polls.with_label_values(&[name, "ok"]),
            err: self.source_polls.with_label_values(&[name, "error"]),
            rows: self.source_rows.with_label_values(&[name]),
        }
    }

    /// Rows `sink` has acknowledged so far, over every table adpulse writes.
    pub fn rows_written(&self, sink: &str) -> u64 {
        crate::records::TABLE_NAMES
            .iter()
            .map(|table| {
                self.sink_rows_written
                    .with_label_values(&[sink, table])
                    .get()
            })
            .sum()
    }

    /// Set the number of incomplete days of `source` (from the completeness ledger).
    pub fn incomplete_days(&self, source: &str, n: usize) {
        self.source_incomplete_days
            .with_label_values(&[source])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Data freshness from the data itself: `until` is the end of the newest bucket (or event
    /// time) of records `source` delivered. The gauge only moves forward, so a poll that
    /// re-reads old days (restatement look-back) does not make the data look older.
    pub fn data_seen(&self, source: &str, until: chrono::DateTime<chrono::Utc>) {
        let g = self.source_data_ts.with_label_values(&[source]);
        let t = until.timestamp_millis() as f64 / 1000.0;
        if t > g.get() {
            g.set(t);
        }
    }

    pub fn rejected(&self, source: &str, n: u64) {
        self.source_rejected.with_label_values(&[source]).inc_by(n);
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// One source's self-metrics.
#[derive(Clone)]
pub struct SourceStats {
    up: prometheus::IntGauge,
    last_success: Gauge,
    data_ts: Gauge,
    poll_duration: Gauge,
    ok: prometheus::IntCounter,
    err: prometheus::IntCounter,
    rows: prometheus::IntCounter,
}

impl SourceStats {
    pub fn poll_ok(
        &self,
        took: Duration,
        rows: usize,
        data_until: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        self.up.set(1);
        self.last_success.set(unix_now());
        self.poll_duration.set(took.as_secs_f64());
        self.ok.inc();
        self.rows.inc_by(rows as u64);
        if let Some(t) = data_until {
            self.data_ts.set(t.timestamp_millis() as f64 / 1000.0);
        }
    }

    pub fn poll_failed(&self, took: Duration) {
        self.up.set(0);
        self.poll_duration.set(took.as_secs_f64());
        self.err.inc();
    }
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
