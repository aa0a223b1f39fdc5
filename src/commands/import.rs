//! `adpulse import`: a CSV export as a source. The file is streamed twice, so memory is bounded by
//! the batch size and not by the file:
//!
//! 1. the first pass remembers a 64-bit digest of each row's key (8 bytes per distinct
//!    campaign-day or order), and which digests occur more than once;
//! 2. the second pass emits rows whose key occurs once in batches of `questdb.flush_rows`, and
//!    sums rows whose key repeats (ad-level or segmented exports) in a map that holds only those
//!    keys, emitted at the end. A digest collision only sends a row through the summing map.
//!
//! Everything goes through [`Pipeline::emit`] like every other source: the normalizer's
//! validation, the in-memory state, the QuestDB sink with its spool and delivery guarantee. Each
//! row is first normalized on its own, so a row the pipeline would refuse is named with its line;
//! the command returns once QuestDB has acknowledged every row it emitted.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::normalize::{Normalizer, Observation};
use crate::pipeline::{EmitError, Pipeline};
use crate::sinks::questdb::{QuestDbSink, SinkError, SqlClient};
use crate::sources::csv_import::aggregate::{Key, key_hash, key_of, merge};
use crate::sources::csv_import::{
    ImportError, ImportFormat, ImportOptions, Item, Reader, Rejected, Skipped,
};
use crate::state::Store;
use crate::telemetry::Telemetry;

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportSummary {
    /// Good rows read.
    pub rows: u64,
    /// Records stored (after summing rows that share a key): what QuestDB holds for this file.
    pub stored: u64,
    /// Rows (or days of spread rows) added into another with the same key.
    pub summed: u64,
    pub rejected: Vec<Rejected>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    pub encoding: &'static str,
    pub latin1_rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportCommandError {
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: ImportError },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}: nothing was imported")]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error(
        "QuestDB acknowledged {written} of {sent} rows and then made no progress for {}s; the rest are in the spool ({}) and are written by the next adpulse run",
        stall.as_secs(), spool.display()
    )]
    NotDurable {
        written: u64,
        sent: u64,
        stall: Duration,
        spool: PathBuf,
    },
}

/// How long QuestDB may make no progress before the import gives up waiting (its rows stay in
/// the spool).
const STALL: Duration = Duration::from_secs(120);

fn open(
    path: &Path,
    format: ImportFormat,
    opts: &ImportOptions,
) -> Result<Reader, ImportCommandError> {
    let file = std::fs::File::open(path).map_err(|source| ImportCommandError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Reader::new(format, std::io::BufReader::new(file), opts).map_err(|source| {
        ImportCommandError::Parse {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Import `path`: every good row stored (upserted: importing the same file twice changes
/// nothing), every bad row named, summary rows skipped. With `dry_run` the rows still go through
/// the pipeline's validation, but no sink is attached.
pub async fn import_file(
    config: &Config,
    format: ImportFormat,
    path: &Path,
    opts: &ImportOptions,
    dry_run: bool,
) -> Result<ImportSummary, ImportCommandError> {
    let perr = |source| ImportCommandError::Parse {
        path: path.to_path_buf(),
        source,
    };
    // pass 1: which keys repeat
    let mut seen: HashSet<u64> = HashSet::new();
    let mut repeated: HashSet<u64> = HashSet::new();
    for item in open(path, format, opts)? {
        if let Item::Good { observations, .. } = item.map_err(perr)? {
            for o in &observations {
                let h = key_hash(&key_of(o));
                if !seen.insert(h) {
                    repeated.insert(h);
                }
            }
        }
    }
    drop(seen);

    let normalizer = Normalizer::new(
        config.timezone(),
        config.general.reporting_currency.clone(),
        config.fx.clone(),
    );
    let telemetry = Arc::new(Telemetry::new());
    let mut sink_task = None;
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = if dry_run {
        None
    } else {
        let password = config.questdb_password()?;
        SqlClient::new(&config.questdb, password.clone())
            .ensure_schema()
            .await?;
        let (sink, handle) =
            QuestDbSink::build(config.questdb.clone(), password, telemetry.clone())?;
        sink_task = Some(tokio::spawn(sink.run(stop.clone())));
        Some(handle)
    };
    // The import's state is thrown away after each batch (retention 0): it only exists because
    // the pipeline keeps one for /metrics.
    let pipeline = Pipeline::new(normalizer.clone(), Store::new(0), handle, telemetry.clone());
    let source = format!("csv_{}", format.as_str());
    let batch_rows = config.questdb.flush_rows.max(1);

    let mut summary = ImportSummary::default();
    let mut reader = open(path, format, opts)?;
    let mut batch: Vec<Observation> = Vec::with_capacity(batch_rows);
    let mut summing: HashMap<Key, (u64, Observation)> = HashMap::new();
    let mut emitted: u64 = 0;
    let result: Result<(), ImportCommandError> = async {
        for item in reader.by_ref() {
            match item.map_err(perr)? {
                Item::Rejected(r) => summary.rejected.push(r),
                Item::Skipped(s) => summary.skipped.push(s),
                Item::Good { line, observations } => {
                    summary.rows += 1;
                    // a row the pipeline would refuse is named here, with its line
                    if let Some(error) = observations
                        .iter()
                        .find_map(|o| normalizer.normalize(&source, o.clone()).err())
                    {
                        summary.rejected.push(Rejected {
                            line,
                            column: String::new(),
                            reason: error.to_string(),
                        });
                        continue;
                    }
                    for obs in observations {
                        let key = key_of(&obs);
                        if !repeated.contains(&key_hash(&key)) {
                            batch.push(obs);
                            continue;
                        }
                        match summing.get_mut(&key) {
                            Some((_, acc)) => match merge(acc, &obs) {
                                Ok(()) => summary.summed += 1,
                                Err(reason) => summary.rejected.push(Rejected {
                                    line,
                                    column: String::new(),
                                    reason,
                                }),
                            },
                            None => {
                                summing.insert(key, (line, obs));
                            }
                        }
                    }
                    if batch.len() >= batch_rows {
                        emitted += emit(&pipeline, &source, &mut batch).await?;
                    }
                }
            }
        }
        // the summed keys, in key order so that two runs emit alike
        let mut sums: Vec<(Key, (u64, Observation))> = summing.drain().collect();
        sums.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, (line, obs)) in sums {
            if let Err(error) = normalizer.normalize(&source, obs.clone()) {
                summary.rejected.push(Rejected {
                    line,
                    column: String::new(),
                    reason: format!("the sum of the rows sharing this row's key: {error}"),
                });
                continue;
            }
            batch.push(obs);
            if batch.len() >= batch_rows {
                emitted += emit(&pipeline, &source, &mut batch).await?;
            }
        }
        emitted += emit(&pipeline, &source, &mut batch).await?;
        if !dry_run {
            wait_durable(&telemetry, emitted, config).await?;
        }
        Ok(())
    }
    .await;
    stop.cancel();
    if let Some(t) = sink_task {
        let _ = t.await;
    }
    result?;
    summary.stored = emitted;
    summary.warnings = std::mem::take(&mut reader.warnings);
    summary.encoding = reader.encoding();
    summary.latin1_rows = reader.latin1_rows;
    summary.rejected.sort_by_key(|r| r.line);
    Ok(summary)
}

async fn emit(
    pipeline: &Pipeline,
    source: &str,
    batch: &mut Vec<Observation>,
) -> Result<u64, ImportCommandError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let n = pipeline.emit(source, std::mem::take(batch), None).await?;
    // nothing of an import is needed in memory once handed over
    pipeline.with_store(|s| s.prune(chrono::Utc::now() + chrono::Duration::days(2)));
    Ok(n as u64)
}

/// Wait until QuestDB has acknowledged `sent` rows, giving up only when it makes no progress for
/// [`STALL`] (the rows then stay in the spool, and the error says so).
async fn wait_durable(
    telemetry: &Telemetry,
    sent: u64,
    config: &Config,
) -> Result<(), ImportCommandError> {
    let mut last = telemetry.rows_written("questdb");
    let mut still = Duration::ZERO;
    let step = Duration::from_millis(50);
    while last < sent {
        tokio::time::sleep(step).await;
        let now = telemetry.rows_written("questdb");
        if now > last {
            last = now;
            still = Duration::ZERO;
        } else {
            still += step;
            if still >= STALL {
                return Err(ImportCommandError::NotDurable {
                    written: now,
                    sent,
                    stall: STALL,
                    spool: config.questdb.spool_dir.clone(),
                });
            }
        }
    }
    Ok(())
}
