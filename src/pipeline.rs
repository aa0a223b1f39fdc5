//! The pipeline every source emits into: normalize (which validates), update the in-memory state,
//! hand the records to the QuestDB sink (waiting when it applies back-pressure). A bad record is
//! logged with its source and reason and counted; the good records of the same batch go on.
//!
//! Delivery: `emit` returns once the sink has taken the rows; `deliver(..).await?.durable().await`
//! (or `emit_durable`) returns only once they are durable (acknowledged by QuestDB, or fsynced to
//! the spool or the dead-letter file). A source that keeps a sync cursor advances it only after
//! that (see `docs/reliability.md`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use tracing::warn;

use crate::normalize::{Normalizer, Observation};
use crate::records::Record;
use crate::sinks::questdb::{Durable, SinkHandle};
use crate::state::Store;
use crate::telemetry::Telemetry;

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("the QuestDB sink has stopped; {0} records were not handed over")]
    SinkClosed(usize),
    #[error(
        "the QuestDB sink stopped before {0} records were durable; they are read again next time"
    )]
    NotDurable(usize),
}

/// Rows the sink has taken, with their durability ticket.
#[derive(Debug)]
pub struct Delivery {
    /// Records handed to the sink (after normalize).
    pub records: usize,
    ticket: Durable,
}

impl Delivery {
    /// Wait until the records are durable; returns their number.
    pub async fn durable(self) -> Result<usize, EmitError> {
        let n = self.records;
        self.ticket
            .wait()
            .await
            .map_err(|_| EmitError::NotDurable(n))?;
        Ok(n)
    }
}

pub struct Pipeline {
    normalizer: Normalizer,
    store: Mutex<Store>,
    sink: Option<SinkHandle>,
    telemetry: Arc<Telemetry>,
    /// Latest clock a source reported (the demo's simulated time), unix millis; 0 = real time.
    clock_ms: AtomicI64,
}

impl Pipeline {
    pub fn new(
        normalizer: Normalizer,
        store: Store,
        sink: Option<SinkHandle>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            normalizer,
            store: Mutex::new(store),
            sink,
            telemetry,
            clock_ms: AtomicI64::new(0),
        }
    }

    pub fn timezone(&self) -> Tz {
        self.normalizer.tz
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The collector's "now": the newest clock a source reported, else the real clock.
    pub fn now(&self) -> DateTime<Utc> {
        let ms = self.clock_ms.load(Ordering::Relaxed);
        if ms == 0 {
            Utc::now()
        } else {
            DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
        }
    }

    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut g = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// Normalize and hand over one batch. Returns the number of records the sink took (not yet
    /// necessarily durable: see `deliver`).
    pub async fn emit(
        &self,
        source: &str,
        batch: Vec<Observation>,
        clock: Option<DateTime<Utc>>,
    ) -> Result<usize, EmitError> {
        Ok(self.deliver(source, batch, clock).await?.records)
    }

    /// Like `emit`, and returns only once the records are durable.
    pub async fn emit_durable(
        &self,
        source: &str,
        batch: Vec<Observation>,
        clock: Option<DateTime<Utc>>,
    ) -> Result<usize, EmitError> {
        self.deliver(source, batch, clock).await?.durable().await
    }

    /// Normalize and hand over one batch; the `Delivery` tells when it is durable.
    pub async fn deliver(
        &self,
        source: &str,
        batch: Vec<Observation>,
        clock: Option<DateTime<Utc>>,
    ) -> Result<Delivery, EmitError> {
        if let Some(c) = clock {
            self.clock_ms
                .fetch_max(c.timestamp_millis(), Ordering::Relaxed);
        }
        // the newest clock any source reported (the demo's simulated time), or the real one
        let now = self.now().max(Utc::now());
        let mut records: Vec<Record> = Vec::with_capacity(batch.len());
        let mut rejected = 0u64;
        for obs in batch {
            match self.normalizer.normalize_at(source, obs, now) {
                Ok(r) => records.push(r),
                Err(error) => {
                    rejected += 1;
                    warn!(source = %source, %error, "record rejected");
                }
            }
        }
        if rejected > 0 {
            self.telemetry.rejected(source, rejected);
        }
        self.with_store(|s| s.ingest(&records));
        let n = records.len();
        let ticket = match &self.sink {
            Some(sink) => sink
                .send(records)
                .await
                .map_err(|_| EmitError::SinkClosed(n))?,
            // metrics only: nothing is stored, nothing to wait for
            None => Durable::now(),
        };
        Ok(Delivery { records: n, ticket })
    }
}
