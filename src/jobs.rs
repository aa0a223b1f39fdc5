//! What the periodic read-back jobs share (the attribution job, `attribution::job`, and the CLV
//! job, `profit::value`): both read what the sources stored back from QuestDB, compute, and write
//! their tables through the sink. One loop runs them (a first run shortly after start, then one
//! every interval) and one set of run metrics says how their last run went.

use chrono_tz::Tz;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Register `m` in `registry`; the handle stays with the job.
pub(crate) fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    m: prometheus::Result<M>,
) -> prometheus::Result<M> {
    let m = m?;
    registry.register(Box::new(m.clone()))?;
    Ok(m)
}

use crate::sinks::questdb::{SinkHandle, SqlClient};

/// Where a read-back job reads, writes, and in which time zone and currency it reports.
#[derive(Clone)]
pub struct JobContext {
    pub sql: SqlClient,
    pub sink: SinkHandle,
    pub tz: Tz,
    pub currency: String,
}

/// Call `run` shortly after start (after `interval_secs`, at most `first_within_secs`: once the
/// sources' first batches are in), then every `interval_secs`, until `shutdown` (a run in
/// progress finishes; the wait between runs ends at once).
pub async fn run_periodically<F, Fut>(
    interval_secs: u64,
    first_within_secs: u64,
    shutdown: CancellationToken,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let every = std::time::Duration::from_secs(interval_secs);
    let first = std::time::Duration::from_secs(interval_secs.min(first_within_secs));
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::time::sleep(first) => {}
    }
    loop {
        run().await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// How a job's runs went: `adpulse_<job>_success`, `_last_success_timestamp_seconds`,
/// `_duration_seconds` and `_runs_total{result}`.
pub struct RunMetrics {
    /// The job's name in its log lines ("attribution", "CLV").
    what: &'static str,
    pub(crate) success: IntGauge,
    pub(crate) last_success: Gauge,
    pub(crate) duration: Gauge,
    pub(crate) runs: IntCounterVec,
}

impl RunMetrics {
    /// The metrics of job `prefix` (`adpulse_<prefix>_…`), named `what` in help texts and logs;
    /// `success_help` says what a successful run is.
    pub fn new(
        registry: &Registry,
        prefix: &str,
        what: &'static str,
        success_help: &str,
    ) -> prometheus::Result<Self> {
        let name = |suffix: &str| format!("adpulse_{prefix}_{suffix}");
        Ok(Self {
            what,
            success: registered(registry, IntGauge::new(name("success"), success_help))?,
            last_success: registered(
                registry,
                Gauge::new(
                    name("last_success_timestamp_seconds"),
                    format!("End of the last successful {what} run (unix seconds)"),
                ),
            )?,
            duration: registered(
                registry,
                Gauge::new(
                    name("duration_seconds"),
                    format!("Time the last {what} run took"),
                ),
            )?,
            runs: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        name("runs_total"),
                        format!("{} runs, by result", capital(what)),
                    ),
                    &["result"],
                ),
            )?,
        })
    }

    /// Await one run and record it: its duration, and on success `ok` (which logs what the run
    /// did); a failed run is logged, and the next run redoes it.
    pub async fn record<T, E: std::fmt::Display>(
        &self,
        run: impl std::future::Future<Output = Result<T, E>>,
        ok: impl FnOnce(&T),
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let r = run.await;
        self.duration.set(started.elapsed().as_secs_f64());
        match &r {
            Ok(s) => {
                self.success.set(1);
                self.last_success.set(chrono::Utc::now().timestamp() as f64);
                self.runs.with_label_values(&["success"]).inc();
                ok(s);
            }
            Err(error) => {
                self.success.set(0);
                self.runs.with_label_values(&["failed"]).inc();
                warn!(%error, "{} run incomplete; the next run redoes it", self.what);
            }
        }
        r
    }
}

/// `what` with its first letter in capitals.
fn capital(what: &str) -> String {
    let mut c = what.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
