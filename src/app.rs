//! `run`: wires sources -> pipeline -> sinks and the HTTP server, and stops them all on one
//! shutdown signal.

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::api::{AppState, router};
use crate::config::Config;
use crate::kpi::Margin;
use crate::models::live::{ModelOutputs, ModelRunner};
use crate::normalize::Normalizer;
use crate::pipeline::Pipeline;
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
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sink_task: Option<tokio::task::JoinHandle<ShutdownReport>>,
    sink_stop: CancellationToken,
}

impl Running {
    /// Stop sources, models, actions and the server first (the sink lifts its back-pressure the
    /// moment `shutdown` is cancelled, so a source blocked on a full spool can hand over its last
    /// rows and stop); then the sink takes what is queued and writes or spools all of it.
    pub async fn stop(self) -> StopReport {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
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
        Store::new(config.general.retention_days)
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
    if config.models.enabled {
        let outputs = Arc::new(ArcSwap::from_pointee(ModelOutputs::default()));
        model_outputs = Some(outputs.clone());
        let sql = if config.questdb.enabled {
            Some(SqlClient::new(&config.questdb, config.questdb_password()?))
        } else {
            None
        };
        let runner = ModelRunner::new(&config, pipeline.clone(), sql, sink.clone(), outputs);
        tasks.push(tokio::spawn(runner.run(shutdown.clone())));
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
        let settings_for = move |now: chrono::DateTime<chrono::Utc>| SnapshotSettings {
            tz,
            currency: config.general.reporting_currency.clone(),
            margin: Margin(config.general.gross_margin_ratio),
            loss_rate_window_hours: config.general.loss_rate_window_hours,
            tracking_window_hours: config.general.tracking_window_hours,
            roi_target: config.roi_target(now.with_timezone(&tz).date_naive()),
        };
        tasks.push(tokio::spawn(async move {
            loop {
                let now = pipeline.now();
                let s = settings_for(now);
                let snap = pipeline.with_store(|st| {
                    st.prune(now);
                    st.snapshot(now, &s)
                });
                snapshot.store(Arc::new(snap));
                // render now, off the async workers, so scrapes find the body ready
                let e = exposition.clone();
                let _ = tokio::task::spawn_blocking(move || e.current()).await;
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        }));
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
        tasks.push(tokio::spawn(engine.clone().run_loop(shutdown.clone())));
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
    let app = router(AppState {
        telemetry: telemetry.clone(),
        sink_health: sink.as_ref().map(|s| s.health.clone()),
        actions,
        web,
        exposition: Some(exposition),
    });
    {
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            // the peer address keys the login and API rate limits
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
            if let Err(error) = r {
                error!(%error, "HTTP server stopped");
            }
        }));
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
        tasks.push(tokio::spawn(source.run(ctx)));
    }

    Ok(Running {
        addr,
        shutdown,
        pipeline,
        sink,
        tasks,
        sink_task,
        sink_stop,
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
