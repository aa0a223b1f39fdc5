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
        // the collector's clock (the demo's simulated time), so a simulated day is not capped
        // at the real clock
        if let Some(until) = newest_data(&records, self.now()) {
            self.telemetry.data_seen(source, until);
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

/// End of the newest data in `records` (a bucket's end, an order's time), never after `now`: a
/// day bucket of today holds data up to now at most. `None` without source data (e.g. only
/// model rows).
fn newest_data(records: &[Record], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use crate::records::Bucket;
    let end = |ts: DateTime<Utc>, b: Bucket| match b {
        Bucket::Hour => ts + chrono::Duration::hours(1),
        Bucket::Day => ts + chrono::Duration::days(1),
    };
    records
        .iter()
        .filter_map(|r| match r {
            Record::CampaignStats(c) => Some(end(c.ts, c.bucket)),
            Record::Orders(o) => Some(o.ts),
            Record::Funnel(f) => Some(end(f.ts, f.bucket)),
            _ => None,
        })
        .max()
        .map(|t| t.min(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Bucket, FunnelStep};

    fn step(ts: &str, bucket: Bucket) -> Record {
        let ts: DateTime<Utc> = ts.parse().unwrap();
        Record::Funnel(FunnelStep {
            ts,
            bucket,
            day: ts.date_naive(),
            stage: "purchase".into(),
            traffic_source: "google / cpc".into(),
            source: "ga4".into(),
            count: 1,
        })
    }

    #[test]
    fn newest_data_is_the_end_of_the_newest_bucket_never_after_now() {
        let now: DateTime<Utc> = "2026-11-20T10:40:00Z".parse().unwrap();
        // two hour buckets, the newer one started at 08:00: data until 09:00 (not the poll time)
        let hours = [
            step("2026-11-20T07:00:00Z", Bucket::Hour),
            step("2026-11-20T08:00:00Z", Bucket::Hour),
        ];
        assert_eq!(
            newest_data(&hours, now),
            Some("2026-11-20T09:00:00Z".parse().unwrap())
        );
        // today's day bucket holds data until now at most
        let day = [step("2026-11-19T18:30:00Z", Bucket::Day)];
        assert_eq!(newest_data(&day, now), Some(now));
        assert_eq!(newest_data(&[], now), None);
    }

    #[test]
    fn the_freshness_gauge_only_moves_forward() {
        let t = Telemetry::new();
        t.data_seen("meta", "2026-11-20T09:00:00Z".parse().unwrap());
        // a restatement look-back re-reads older days: the data is not older for it
        t.data_seen("meta", "2026-11-18T00:00:00Z".parse().unwrap());
        let body = String::from_utf8(
            prometheus::TextEncoder::new()
                .encode_to_string(&t.registry.gather())
                .unwrap()
                .into_bytes(),
        )
        .unwrap();
        let want = "2026-11-20T09:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp();
        assert!(
            body.contains(&format!(
                "adpulse_source_data_timestamp_seconds{{source=\"meta\"}} {want}"
            )),
            "{body}"
        );
    }
}
