//! `adpulse import`: a CSV export as a source. The file is streamed twice, so memory is bounded by
//! the batch size and not by the file:
//!
//! 1. the first pass counts the rows of each key by a 64-bit digest of it (about 16 bytes per
//!    distinct campaign-day or order), and keeps the counts of the digests that repeat;
//! 2. the second pass emits rows whose key occurs once in batches of `questdb.flush_rows`, and
//!    sums rows whose key repeats (ad-level or segmented exports) in a map that holds a key only
//!    until its last row has been read, then emits the sum. Exports list a campaign-day's rows
//!    near each other, so that map stays small. A digest collision only delays a sum.
//!
//! Everything goes through [`Pipeline::emit`] like every other source: the normalizer's
//! validation, the in-memory state, the QuestDB sink with its spool and delivery guarantee. Each
//! row is first normalized on its own, so a row the pipeline would refuse is named with its line;
//! the command returns once every row it emitted is durable (acknowledged by QuestDB, or fsynced
//! to the spool or dead-letter file: the pipeline's delivery tickets), and its summary counts
//! what the tickets say was stored: a record QuestDB refused is counted as dead-lettered, not
//! stored, and makes the command fail.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::normalize::{Normalizer, Observation};
use crate::pipeline::{Delivery, EmitError, Pipeline};
use crate::sinks::questdb::{QuestDbSink, Settled, SinkError, SqlClient};
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
    /// Records durably stored (after summing rows that share a key), counted from the delivery
    /// tickets: acknowledged by QuestDB or held in the spool; never the records QuestDB refused.
    pub stored: u64,
    /// Of `stored`, held in the spool (QuestDB went down): the next run writes them.
    pub spooled: u64,
    /// Records QuestDB refused, in the dead-letter file: not stored. The command fails on them.
    pub dead_lettered: u64,
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
}

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
    // pass 1: how many rows each key has
    let mut remaining: HashMap<u64, u32> = HashMap::new();
    for item in open(path, format, opts)? {
        if let Item::Good { observations, .. } = item.map_err(perr)? {
            for o in &observations {
                let n = remaining.entry(key_hash(&key_of(o))).or_default();
                *n = n.saturating_add(1);
            }
        }
    }
    remaining.retain(|_, n| *n > 1);
    remaining.shrink_to_fit();

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
    // repeating keys being summed, by digest (a collision puts two keys under one digest)
    let mut summing: HashMap<u64, Vec<(Key, u64, Observation)>> = HashMap::new();
    let mut landed = Settled::default();
    let mut inflight: VecDeque<Delivery> = VecDeque::new();
    let result: Result<(), ImportCommandError> = async {
        for item in reader.by_ref() {
            match item.map_err(perr)? {
                Item::Rejected(r) => summary.rejected.push(r),
                Item::Skipped(s) => summary.skipped.push(s),
                Item::Good { line, observations } => {
                    summary.rows += 1;
                    // a row the pipeline would refuse is named here, with its line
                    let refused = observations
                        .iter()
                        .find_map(|o| normalizer.normalize(&source, o.clone()).err());
                    for obs in observations {
                        let key = key_of(&obs);
                        let h = key_hash(&key);
                        let Some(left) = remaining.get_mut(&h) else {
                            if refused.is_none() {
                                batch.push(obs);
                            }
                            continue;
                        };
                        *left -= 1;
                        let last = *left == 0;
                        if refused.is_none() {
                            let group = summing.entry(h).or_default();
                            match group.iter_mut().find(|(k, _, _)| *k == key) {
                                Some((_, _, acc)) => match merge(acc, &obs) {
                                    Ok(()) => summary.summed += 1,
                                    Err(e) => summary.rejected.push(Rejected {
                                        line,
                                        column: String::new(),
                                        reason: e.to_string(),
                                    }),
                                },
                                None => group.push((key, line, obs)),
                            }
                        }
                        if last {
                            remaining.remove(&h);
                            for (_, first_line, sum) in summing.remove(&h).unwrap_or_default() {
                                push_sum(
                                    &normalizer,
                                    &source,
                                    first_line,
                                    sum,
                                    &mut batch,
                                    &mut summary,
                                );
                            }
                        }
                    }
                    if let Some(error) = refused {
                        summary.rejected.push(Rejected {
                            line,
                            column: String::new(),
                            reason: error.to_string(),
                        });
                    }
                    if batch.len() >= batch_rows {
                        emit(&pipeline, &source, &mut batch, &mut inflight, &mut landed).await?;
                    }
                }
            }
        }
        // sums still open (only when pass 2 saw fewer rows than pass 1: the file changed
        // between the passes), in key order so that two runs emit alike
        let mut sums: Vec<(Key, u64, Observation)> = summing.drain().flat_map(|(_, v)| v).collect();
        sums.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, line, obs) in sums {
            push_sum(&normalizer, &source, line, obs, &mut batch, &mut summary);
        }
        emit(&pipeline, &source, &mut batch, &mut inflight, &mut landed).await?;
        for d in inflight.drain(..) {
            add(&mut landed, d.settled().await?);
        }
        Ok(())
    }
    .await;
    stop.cancel();
    if let Some(t) = sink_task {
        let _ = t.await;
    }
    result?;
    summary.stored = landed.stored() as u64;
    summary.spooled = landed.spooled as u64;
    summary.dead_lettered = landed.dead_lettered as u64;
    summary.warnings = std::mem::take(&mut reader.warnings);
    summary.encoding = reader.encoding();
    summary.latin1_rows = reader.latin1_rows;
    summary.rejected.sort_by_key(|r| r.line);
    Ok(summary)
}

/// A finished sum goes into the batch, unless the sum itself is refused.
fn push_sum(
    normalizer: &Normalizer,
    source: &str,
    line: u64,
    obs: Observation,
    batch: &mut Vec<Observation>,
    summary: &mut ImportSummary,
) {
    match normalizer.normalize(source, obs.clone()) {
        Ok(_) => batch.push(obs),
        Err(error) => summary.rejected.push(Rejected {
            line,
            column: String::new(),
            reason: format!("the sum of the rows sharing this row's key: {error}"),
        }),
    }
}

/// Batches handed to the sink and not yet durable: past this many, the import waits for the
/// oldest (the sink's own channel bounds memory too; this bounds the tickets).
const INFLIGHT_BATCHES: usize = 8;

/// Add one settled ticket to the running total.
fn add(total: &mut Settled, s: Settled) {
    total.rows += s.rows;
    total.spooled += s.spooled;
    total.dead_lettered += s.dead_lettered;
}

/// Hand `batch` to the pipeline; its durability ticket joins `inflight`; tickets that settle are
/// added to `landed`.
async fn emit(
    pipeline: &Pipeline,
    source: &str,
    batch: &mut Vec<Observation>,
    inflight: &mut VecDeque<Delivery>,
    landed: &mut Settled,
) -> Result<(), ImportCommandError> {
    if batch.is_empty() {
        return Ok(());
    }
    let d = pipeline
        .deliver(source, std::mem::take(batch), None)
        .await?;
    inflight.push_back(d);
    while inflight.len() > INFLIGHT_BATCHES {
        if let Some(oldest) = inflight.pop_front() {
            add(landed, oldest.settled().await?);
        }
    }
    // nothing of an import is needed in memory once handed over
    pipeline.with_store(|s| s.prune(chrono::Utc::now() + chrono::Duration::days(2)));
    Ok(())
}
