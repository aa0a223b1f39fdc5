//! `adpulse backfill --source S --from D --to D`: re-reads a date range from one API source in
//! chunks, with a progress bar, honouring the API's throttling waits, and resumable: the last
//! chunk QuestDB acknowledged is persisted, and a re-run of the same range starts after it.

use chrono::{Days, NaiveDate};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::normalize::Normalizer;
use crate::pipeline::Pipeline;
use crate::sinks::questdb::{QuestDbSink, SqlClient};
use crate::sources::AnyPoller;
use crate::sources::cursor::{BackfillProgress, CursorStore};
use crate::sources::http::{PollSource, SourceError, Window};
use crate::state::Store;
use crate::telemetry::Telemetry;

/// What a backfill did.
#[derive(Debug, Default, PartialEq)]
pub struct BackfillSummary {
    pub days: u64,
    pub resumed_from: Option<NaiveDate>,
    pub rows: u64,
    pub throttle_waits: u32,
}

pub async fn backfill(
    config: &Config,
    source_name: &str,
    from: NaiveDate,
    to: NaiveDate,
    chunk_days: u32,
    show_progress: bool,
) -> Result<BackfillSummary, String> {
    if to < from {
        return Err(format!("--to {to} is before --from {from}"));
    }
    let source = config
        .sources
        .iter()
        .find(|s| s.name() == source_name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.sources.iter().map(|s| s.name()).collect();
            format!("no source named {source_name:?} in the configuration (have: {names:?})")
        })?;
    let mut poller = match AnyPoller::from_config(source) {
        None => {
            return Err(format!(
                "{source_name:?} is a {} source: it backfills with its own `backfill_days` setting",
                source.kind()
            ));
        }
        Some(p) => p.map_err(|e| e.to_string())?,
    };
    let cursors = CursorStore::new(&config.general.state_dir);
    let mut start = from;
    let mut summary = BackfillSummary::default();
    let saved = cursors.get(source_name).map_err(|e| e.to_string())?;
    if let Some(b) = &saved.backfill
        && b.from == from
        && b.to == to
        && let Some(done) = b.done_until
    {
        if done >= to {
            return Ok(summary);
        }
        start = done + Days::new(1);
        summary.resumed_from = Some(start);
    } else {
        cursors
            .update(source_name, |c| {
                c.backfill = Some(BackfillProgress {
                    from,
                    to,
                    done_until: None,
                })
            })
            .map_err(|e| e.to_string())?;
    }

    // QuestDB must answer before anything is fetched: a backfill that cannot be stored is only
    // API quota spent.
    let password = config.questdb_password().map_err(|e| e.to_string())?;
    SqlClient::new(&config.questdb, password.clone())
        .ensure_schema()
        .await
        .map_err(|e| format!("{e}: nothing was fetched"))?;
    let telemetry = Arc::new(Telemetry::new());
    let (sink, handle) = QuestDbSink::build(config.questdb.clone(), password, telemetry.clone())
        .map_err(|e| e.to_string())?;
    let stop = tokio_util::sync::CancellationToken::new();
    let sink_task = tokio::spawn(sink.run(stop.clone()));
    let pipeline = Pipeline::new(
        Normalizer::new(
            config.timezone(),
            config.general.reporting_currency.clone(),
            config.fx.clone(),
        ),
        Store::new(1),
        Some(handle),
        telemetry.clone(),
    );
    let written = || telemetry.rows_written("questdb");

    let total_days = (to - from).num_days() as u64 + 1;
    let pb = if show_progress {
        ProgressBar::new(total_days)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} days {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(source_name.to_string());
    pb.set_position((start - from).num_days() as u64);

    let mut sent: u64 = 0;
    let mut chunk_start = start;
    let result: Result<(), String> = async {
        while chunk_start <= to {
            let chunk_end = (chunk_start + Days::new(u64::from(chunk_days.max(1)) - 1)).min(to);
            let window = Window {
                since: chunk_start,
                until: chunk_end,
            };
            let obs = loop {
                match poller.poll(window).await {
                    Ok(obs) => break obs,
                    Err(SourceError::Throttled { wait, message }) => {
                        summary.throttle_waits += 1;
                        pb.set_message(format!("throttled, waiting {}s: {message}", wait.as_secs()));
                        tokio::time::sleep(wait).await;
                        pb.set_message("");
                    }
                    Err(e) => {
                        return Err(format!(
                            "{source_name} {}..{}: {e}; progress up to {} is saved, re-run the same command to resume",
                            window.since,
                            window.until,
                            chunk_start - Days::new(1)
                        ));
                    }
                }
            };
            let n = pipeline
                .emit(source_name, obs, None)
                .await
                .map_err(|e| e.to_string())? as u64;
            sent += n;
            // the chunk counts as done only once QuestDB acknowledged it
            let mut waited = Duration::ZERO;
            while written() < sent {
                if waited > Duration::from_secs(120) {
                    return Err(format!(
                        "QuestDB stopped acknowledging rows at {}; progress up to {} is saved",
                        chunk_start,
                        chunk_start - Days::new(1)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                waited += Duration::from_millis(20);
            }
            cursors
                .update(source_name, |c| {
                    if let Some(b) = c.backfill.as_mut() {
                        b.done_until = Some(chunk_end);
                    }
                })
                .map_err(|e| e.to_string())?;
            summary.rows += n;
            summary.days += (chunk_end - chunk_start).num_days() as u64 + 1;
            pb.set_position((chunk_end - from).num_days() as u64 + 1);
            chunk_start = chunk_end + Days::new(1);
        }
        Ok(())
    }
    .await;
    stop.cancel();
    let _ = sink_task.await;
    pb.finish_and_clear();
    result.map(|_| summary)
}
