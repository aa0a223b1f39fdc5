//! QuestDB sink. Split by responsibility:
//! - `schema`: the tables (DDL, partitioning, retention);
//! - `encode`: one record as one ILP row, and the ILP client's configuration;
//! - `sql`: SQL over QuestDB's HTTP `/exec` (DDL here; queries in the models, tests and tools);
//! - `sink`: the task that writes, retries, spools, dead-letters and acknowledges durability.
//!
//! This file holds what the pipeline and the API see of the sink: the handle rows are sent through,
//! the durability ticket each send returns, the shared health `/readyz` reads, and the errors.
//! The delivery guarantee is written down in `docs/reliability.md`.

mod encode;
mod schema;
mod sink;
mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

use crate::base::lock;
use crate::records::Record;
use crate::sinks::spool::SpoolError;

pub use encode::{conf_string, encode};
pub use schema::{TABLES, retention_statements};
pub use sink::{QuestDbSink, ShutdownReport};
pub use sql::SqlClient;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("QuestDB at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("QuestDB rejected {what}: {reason}")]
    Rejected { what: String, reason: String },
    #[error("cannot encode row for table {table}: {reason}")]
    Encode { table: &'static str, reason: String },
    #[error("QuestDB password: {0}")]
    Password(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Shared health of the sink, read by `/readyz`: whether QuestDB takes rows, whether the spool is
/// full, and (apart from both) how many rows QuestDB refused, so a refused row is never mistaken for
/// an unreachable database.
#[derive(Debug, Default)]
pub struct SinkHealth {
    up: AtomicBool,
    spool_full: AtomicBool,
    rejected_rows: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
    last_rejection: std::sync::Mutex<Option<String>>,
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
        lock(&self.last_error).clone()
    }
    /// Rows QuestDB (or the encoder) refused since start; each is in the dead-letter file.
    pub fn rejected_rows(&self) -> u64 {
        self.rejected_rows.load(Ordering::Relaxed)
    }
    /// Reason of the newest refused row.
    pub fn last_rejection(&self) -> Option<String> {
        lock(&self.last_rejection).clone()
    }
    fn set(&self, up: bool, err: Option<String>) {
        self.up.store(up, Ordering::Relaxed);
        *lock(&self.last_error) = err;
    }
    fn rejected(&self, n: u64, reason: &str) {
        self.rejected_rows.fetch_add(n, Ordering::Relaxed);
        *lock(&self.last_rejection) = Some(reason.to_string());
    }
}

/// The sink has stopped: the rows were not taken.
#[derive(Debug, thiserror::Error)]
#[error("the QuestDB sink has stopped; {rows} rows were not taken")]
pub struct SinkClosed {
    pub rows: usize,
}

/// The sink stopped before the rows of a ticket were durable (they were neither acknowledged by
/// QuestDB, nor fsynced to the spool or the dead-letter file).
#[derive(Debug, thiserror::Error)]
#[error("the QuestDB sink stopped before these rows were durable")]
pub struct NotDurable;

/// What became of the rows of one send, once every one of them is durable. Only
/// `rows - dead_lettered` are stored: a caller that reports what it stored (a backfill, an
/// import, a source's completeness ledger) counts from here, not from what it handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Rows of the send.
    pub rows: usize,
    /// Of them, fsynced to the spool because QuestDB was unreachable: a later replay writes them.
    pub spooled: usize,
    /// Of them, refused by QuestDB (or its encoder) and fsynced to the dead-letter file: kept,
    /// but not in QuestDB.
    pub dead_lettered: usize,
}

impl Settled {
    /// Rows durably stored: acknowledged by QuestDB or held in the spool.
    pub fn stored(&self) -> usize {
        self.rows.saturating_sub(self.dead_lettered)
    }
    /// Rows QuestDB acknowledged.
    pub fn written(&self) -> usize {
        self.stored().saturating_sub(self.spooled)
    }
}

/// Durability ticket of one send: resolves once every row of it is acknowledged by QuestDB, or
/// fsynced to the spool, or (refused by QuestDB) fsynced to the dead-letter file, and tells which.
#[derive(Debug)]
pub struct Durable(Option<oneshot::Receiver<Settled>>);

impl Durable {
    /// A ticket with nothing to wait for (no rows, or no QuestDB configured).
    pub fn now() -> Self {
        Durable(None)
    }

    /// Wait until the rows are durable; what became of them. A ticket with nothing to wait for
    /// settles as empty.
    pub async fn wait(self) -> Result<Settled, NotDurable> {
        match self.0 {
            None => Ok(Settled::default()),
            Some(rx) => rx.await.map_err(|_| NotDurable),
        }
    }
}

/// One send: the rows and the ticket's other end.
pub(crate) struct Batch {
    rows: Vec<Record>,
    done: oneshot::Sender<Settled>,
}

#[cfg(test)]
impl Batch {
    /// Rows of the send.
    pub(crate) fn rows(&self) -> &[Record] {
        &self.rows
    }
    /// Resolve the ticket, as the sink does once the rows are durable.
    pub(crate) fn settle(self, s: Settled) {
        let _ = self.done.send(s);
    }
}

#[cfg(test)]
impl SinkHandle {
    /// A handle whose far end is the test instead of a sink task: it receives every send and
    /// decides when (and whether) each becomes durable.
    pub(crate) fn for_test(capacity: usize) -> (SinkHandle, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            SinkHandle {
                tx,
                health: Arc::default(),
            },
            rx,
        )
    }
}

/// Where sources hand records to the sink.
#[derive(Clone)]
pub struct SinkHandle {
    tx: mpsc::Sender<Batch>,
    pub health: Arc<SinkHealth>,
}

impl SinkHandle {
    /// Hand rows over; waits while the sink applies back-pressure (spool full). The returned
    /// ticket resolves once the rows are durable; dropping it is fine for rows that can be
    /// produced again (models, demo).
    pub async fn send(&self, records: Vec<Record>) -> Result<Durable, SinkClosed> {
        if records.is_empty() {
            return Ok(Durable::now());
        }
        let rows = records.len();
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Batch {
                rows: records,
                done,
            })
            .await
            .map_err(|_| SinkClosed { rows })?;
        Ok(Durable(Some(rx)))
    }
}
