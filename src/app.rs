//! `run`: wires sources -> pipeline -> sinks and the HTTP server, and stops them all on one
//! shutdown signal.

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{AppState, router};
use crate::attribution::job::AttributionJob;
use crate::config::Config;
use crate::kpi::Margin;
use crate::models::live::{ModelOutputs, ModelRunner};
use crate::normalize::Normalizer;
use crate::pipeline::Pipeline;
use crate::profit::value::ValueJob;
use crate::sinks::metrics::Exposition;
use crate::sinks::questdb::{QuestDbSink, ShutdownReport, SinkHandle, SqlClient};
use crate::sources::SourceContext;
use crate::state::{Snapshot, SnapshotSettings, Store};
use crate::telemetry::Telemetry;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Sink(#[from] crate::sinks::questdb::SinkError),
    #[error("cannot register a job's metrics (attribution, CLV): {0}")]
    Metrics(prometheus::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "{0} rows could not be written or spooled at shutdown (spool reserve exhausted or disk full): see the log"
    )]
    Unsaved(usize),
}

/// How long shutdown waits for the audit log's last rows to be handed to the sink.
const AUDIT_FINISH_WAIT: Duration = Duration::from_secs(10);

/// What shutdown saved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Rows neither written nor spooled (0 unless the spool's reserve or the disk ran out).
    pub unsaved_rows: usize,
    /// Rows left in the spool for the next run.
    pub spooled_rows: usize,
}

/// A running adpulse: its address and the token that stops it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub shutdown: CancellationToken,
    pub pipeline: Arc<Pipeline>,
    pub sink: Option<SinkHandle>,
    /// Every task but the sink's, named for the shutdown log.
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    /// How long shutdown waits for them (`general.shutdown_grace_secs`).
    grace: Duration,
    sink_task: Option<tokio::task::JoinHandle<ShutdownReport>>,
    sink_stop: CancellationToken,
    /// The action engine, whose audit rows are handed to the sink after the tasks stop.
    actions: Option<Arc<crate::actions::ActionEngine>>,
}

impl Running {
    /// Stop sources, models, actions and the server first (the sink lifts its back-pressure the
    /// moment `shutdown` is cancelled, so a source blocked on a full spool can hand over its last
    /// rows and stop); then the sink takes what is queued and writes or spools all of it.
    ///
    /// Sources, models and actions get `general.shutdown_grace_secs` to finish the step they
    /// are in; one still busy then (the models' pass over 10,000 campaigns, a scrape of a slow
    /// client) is left behind: what it has not handed to the sink yet is not acknowledged to
    /// anyone (a source's cursor only moves once its rows are durable, model rows are computed
    /// again by the next run's first pass, audit rows are already in the local fsynced log), so
    /// nothing acknowledged is lost, and shutdown does not wait on a computation.
    pub async fn stop(self) -> StopReport {
        let started = std::time::Instant::now();
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + self.grace;
        let mut left = Vec::new();
        for (name, mut t) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
                left.push(name);
            }
        }
        if !left.is_empty() {
            warn!(
                tasks = ?left,
                grace_secs = self.grace.as_secs_f64(),
                "still busy at shutdown: stopped without waiting (their unsent work is redone by the next run)"
            );
        }
        // the audit rows of the last moments (refusals of the last minute, an action the
        // evaluation was executing) go to the sink before it closes, even when the actions task
        // was left behind above
        if let Some(engine) = &self.actions
            && tokio::time::timeout(AUDIT_FINISH_WAIT, engine.finish_audit())
                .await
                .is_err()
        {
            warn!(
                wait_secs = AUDIT_FINISH_WAIT.as_secs(),
                "audit rows not handed to the sink at shutdown: they stay in the local log for the next run"
            );
        }
        let tasks_secs = started.elapsed().as_secs_f64();
        self.sink_stop.cancel();
        let mut report = StopReport::default();
        if let Some(t) = self.sink_task {
            match t.await {
                Ok(r) => {
                    report.unsaved_rows = r.unsaved_rows;
                    report.spooled_rows = r.spooled_rows;
                }
                Err(error) => error!(%error, "the QuestDB sink task failed at shutdown"),
            }
        }
        info!(
            tasks_secs,
            sink_secs = started.elapsed().as_secs_f64() - tasks_secs,
            "shutdown: tasks stopped, then the sink wrote or spooled what it held"
        );
        report
    }
}

/// Start everything; returns once the HTTP server listens.
pub async fn start(config: Config) -> Result<Running, RunError> {
    config.validate()?;
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = CancellationToken::new();
    let tz = config.timezone();
    let mut sink_task = None;
    // the sink outlives the sources: it gets its own token, cancelled once they have stopped
    let sink_stop = CancellationToken::new();
    let sink = if config.questdb.enabled {
        let password = config.questdb_password()?;
        let (sink, handle) =
            QuestDbSink::build(config.questdb.clone(), password, telemetry.clone())?;
        let sink = sink.drain_on(shutdown.clone());
        sink_task = Some(tokio::spawn(sink.run(sink_stop.clone())));
        Some(handle)
    } else {
        None
    };

    let normalizer = Normalizer::new(
        tz,
        config.general.reporting_currency.clone(),
        config.fx.clone(),
    );
    let pipeline = Arc::new(Pipeline::new(
        normalizer,
        // per-day totals kept in the reporting timezone as rows arrive (the refresher's)
        // the campaign detectors read their history from the store (models/live.rs)
        Store::new(if config.models.enabled {
            config
                .general
                .retention_days
                .max(crate::models::live::store_days())
        } else {
            config.general.retention_days
        })
        .with_timezone(tz)
        .with_profit(config.profit.clone()),
        sink.clone(),
        telemetry.clone(),
    ));

    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::empty(
        &config.general.reporting_currency,
    )));
    let mut tasks = Vec::new();
    let mut model_outputs = None;
    // One QuestDB SQL client (one connection pool) for the models and the attribution job.
    let sql = if config.questdb.enabled {
        Some(SqlClient::new(&config.questdb, config.questdb_password()?))
    } else {
        None
    };
    if config.models.enabled {
        let outputs = Arc::new(ArcSwap::from_pointee(ModelOutputs::default()));
        model_outputs = Some(outputs.clone());
        let runner = ModelRunner::new(
            &config,
            pipeline.clone(),
            sql.clone(),
            sink.clone(),
            outputs,
        );
        tasks.push(("models".into(), tokio::spawn(runner.run(shutdown.clone()))));
    }
    // The attribution and CLV jobs read the journeys and orders back from QuestDB and write
    // through the sink.
    if let (Some(sink), Some(sql)) = (&sink, &sql) {
        let ctx = crate::jobs::JobContext {
            sql: sql.clone(),
            sink: sink.clone(),
            tz,
            currency: config.general.reporting_currency.clone(),
        };
        let reg = &telemetry.registry;
        if config.attribution.enabled {
            let job = AttributionJob::new(config.attribution.clone(), ctx.clone(), reg);
            let job = job.map_err(RunError::Metrics)?;
            tasks.push((
                "attribution".into(),
                tokio::spawn(job.run(shutdown.clone())),
            ));
        }
        if config.clv.enabled {
            let job = ValueJob::new(config.clv.clone(), ctx, reg).map_err(RunError::Metrics)?;
            tasks.push(("clv".into(), tokio::spawn(job.run(shutdown.clone()))));
        }
    } else {
        for (job, on, reads) in [
            ("attribution", config.attribution.enabled, "the journeys"),
            ("CLV", config.clv.enabled, "the orders"),
        ] {
            if on {
                info!("{job} job off: it reads {reads} from QuestDB (questdb.enabled = false)");
            }
        }
    }
    // The KPI and model families: rendered once per snapshot, served to every scraper.
    let mut exposition = Exposition::new(snapshot.clone(), model_outputs, &config.metrics);
    if config.questdb.enabled {
        exposition = exposition.with_spool_limit("questdb", config.questdb.spool_max_bytes);
    }
    let exposition = Arc::new(exposition);
    // KPI refresher
    {
        let exposition = exposition.clone();
        let pipeline = pipeline.clone();
        let snapshot = snapshot.clone();
        let token = shutdown.clone();
        let every = Duration::from_secs(config.general.refresh_interval_secs);
        let config = config.clone();
        let telemetry = telemetry.clone();
        let settings_for = move |now: chrono::DateTime<chrono::Utc>| SnapshotSettings {
            tz,
            currency: config.general.reporting_currency.clone(),
            margin: Margin(config.general.gross_margin_ratio),
            loss_rate_window_hours: config.general.loss_rate_window_hours,
            tracking_window_hours: config.general.tracking_window_hours,
            roi_target: config.roi_target(now.with_timezone(&tz).date_naive()),
        };
        tasks.push((
            "kpi refresher".into(),
            tokio::spawn(async move {
                loop {
                    let now = pipeline.now();
                    let s = settings_for(now);
                    // the snapshot (hundreds of ms at 10,000 campaigns) and the render run off
                    // the async workers: scrapes and sources keep their threads meanwhile
                    let (p, tel, e, snap) = (
                        pipeline.clone(),
                        telemetry.clone(),
                        exposition.clone(),
                        snapshot.clone(),
                    );
                    let step = tokio::task::spawn_blocking(move || {
                        let next = p.with_store(|st| {
                            st.prune(now);
                            let t = std::time::Instant::now();
                            let next = st.snapshot(now, &s);
                            tel.snapshot_duration.set(t.elapsed().as_secs_f64());
                            next
                        });
                        snap.store(Arc::new(next));
                        // render (and compress) now, so scrapes find the body ready
                        let t = std::time::Instant::now();
                        let body = e.current();
                        tel.render_duration.set(t.elapsed().as_secs_f64());
                        e.compress_if_wanted(&body);
                        // the previous snapshot and body are gone now: give their pages back
                        drop(body);
                        crate::base::release_free_memory();
                    })
                    .await;
                    if let Err(error) = step {
                        tracing::error!(%error, "KPI refresh failed");
                    }
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            }),
        ));
    }

    let listener = TcpListener::bind(&config.server.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.server.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: config.server.listen.clone(),
        source,
    })?;
    let actions = if config.actions.enabled {
        let engine = Arc::new(crate::actions::ActionEngine::from_config(
            &config,
            snapshot.clone(),
            sink.clone(),
            &telemetry.registry,
        )?);
        tasks.push((
            "actions".into(),
            tokio::spawn(engine.clone().run_loop(shutdown.clone())),
        ));
        Some(engine)
    } else {
        None
    };
    let web = actions
        .as_ref()
        .filter(|_| config.actions.web.enabled)
        .map(|e| {
            crate::web::WebState::new(
                e.clone(),
                telemetry.clone(),
                config.actions.web.clone(),
                config.targets.iter().map(|t| (t.from, t.roi)).collect(),
            )
        });
    let actions_engine = actions.clone();
    let app = router(AppState {
        telemetry: telemetry.clone(),
        sink_health: sink.as_ref().map(|s| s.health.clone()),
        actions,
        web,
        exposition: Some(exposition),
    });
    {
        let token = shutdown.clone();
        tasks.push((
            "http server".into(),
            tokio::spawn(async move {
                // the peer address keys the login and API rate limits
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                let r = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await;
                if let Err(error) = r {
                    error!(%error, "HTTP server stopped");
                }
            }),
        ));
    }
    info!(%addr, "serving /metrics, /healthz, /readyz");

    let cursors = Arc::new(crate::sources::cursor::CursorStore::new(
        &config.general.state_dir,
    ));
    for source in config.sources.clone() {
        let ctx = SourceContext {
            name: source.name().to_string(),
            pipeline: pipeline.clone(),
            shutdown: shutdown.clone(),
            cursors: cursors.clone(),
        };
        info!(source = %ctx.name, kind = source.kind(), "source starting");
        let task = format!("source {}", ctx.name);
        tasks.push((task, tokio::spawn(source.run(ctx))));
    }

    Ok(Running {
        addr,
        shutdown,
        pipeline,
        sink,
        tasks,
        grace: Duration::from_secs(config.general.shutdown_grace_secs),
        sink_task,
        sink_stop,
        actions: actions_engine,
    })
}

/// Run until ctrl-c or SIGTERM.
pub async fn run(config: Config) -> Result<(), RunError> {
    let running = start(config).await?;
    shutdown_signal().await;
    info!("shutting down");
    let report = running.stop().await;
    if report.unsaved_rows > 0 {
        return Err(RunError::Unsaved(report.unsaved_rows));
    }
    info!(
        spooled_rows = report.spooled_rows,
        "stopped; every row is in QuestDB or in the spool"
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
