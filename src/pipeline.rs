//! The pipeline every source emits into: normalize (which validates), update the in-memory state,
//! hand the records to the QuestDB sink (waiting when it applies back-pressure). A bad record is
//! logged with its source and reason and counted; the good records of the same batch go on.
//!
//! Delivery: `emit` returns once the sink has taken the rows; `deliver(..).await?.durable().await`
//! (or `emit_durable`) returns only once they are durable (acknowledged by QuestDB, or fsynced to
//! the spool or the dead-letter file), with the number actually stored (`settled()` tells written,
//! spooled and dead-lettered apart). A source that keeps a sync cursor advances it only after
//! that (see `docs/reliability.md`).
//!
//! Memory: a batch is normalized, stored and handed to the sink [`SEND_ROWS`] records at a time,
//! so a source's large batch (a demo day's region rows at 10,000 campaigns: 130,000 rows) is never
//! held whole as records beside its observations, nor as one block in the sink's memory.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use tracing::warn;

use crate::normalize::{Normalizer, Observation};
use crate::records::Record;
use crate::sinks::questdb::{Durable, Settled, SinkHandle};
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

/// Records normalized, stored and handed to the sink at a time (one send each).
pub const SEND_ROWS: usize = 5_000;

/// Rows the sink has taken, with their durability tickets (one per send of [`SEND_ROWS`]).
#[derive(Debug)]
pub struct Delivery {
    /// Records handed to the sink (after normalize).
    pub records: usize,
    tickets: Vec<Durable>,
}

impl Delivery {
    /// Wait until the records are durable; returns how many are stored (acknowledged by QuestDB
    /// or spooled): records QuestDB refused (dead-lettered) are not counted.
    pub async fn durable(self) -> Result<usize, EmitError> {
        Ok(self.settled().await?.stored())
    }

    /// Wait until the records are durable; what became of them (written, spooled, dead-lettered).
    /// Without a sink (metrics only) every record counts as stored.
    pub async fn settled(self) -> Result<Settled, EmitError> {
        let n = self.records;
        let mut all = Settled {
            rows: n,
            ..Settled::default()
        };
        for ticket in self.tickets {
            let s = ticket.wait().await.map_err(|_| EmitError::NotDurable(n))?;
            all.spooled += s.spooled;
            all.dead_lettered += s.dead_lettered;
        }
        Ok(all)
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
        f(&mut crate::base::lock(&self.store))
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
        let mut rejected = 0u64;
        let mut delivery = Delivery {
            records: 0,
            tickets: Vec::new(),
        };
        let total = batch.len();
        let mut taken = 0;
        let mut batch = batch.into_iter();
        while taken < total {
            let mut records: Vec<Record> = Vec::with_capacity(SEND_ROWS.min(total - taken));
            for obs in batch.by_ref().take(SEND_ROWS) {
                taken += 1;
                match self.normalizer.normalize_at(source, obs, now) {
                    Ok(r) => records.push(r),
                    Err(error) => {
                        rejected += 1;
                        warn!(source = %source, %error, "record rejected");
                    }
                }
            }
            // the collector's clock (the demo's simulated time), so a simulated day is not
            // capped at the real clock
            if let Some(until) = newest_data(&records, self.now()) {
                self.telemetry.data_seen(source, until);
            }
            if rejected > 0 {
                self.telemetry.rejected(source, rejected);
                rejected = 0;
            }
            self.with_store(|s| s.ingest(&records));
            let n = records.len();
            if let Some(sink) = &self.sink {
                let ticket = sink.send(records).await.map_err(|_| {
                    // this send and what follows it were not handed over
                    EmitError::SinkClosed(n + total - taken)
                })?;
                delivery.tickets.push(ticket);
            }
            // metrics only: nothing is stored, nothing to wait for
            delivery.records += n;
        }
        Ok(delivery)
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

    /// A batch larger than [`SEND_ROWS`] reaches the sink as several sends, in order, each
    /// with its own ticket, and the delivery settles as their sum.
    #[tokio::test]
    async fn a_large_batch_is_handed_over_in_sends_of_send_rows_in_order() {
        let (handle, mut rx) = crate::sinks::questdb::SinkHandle::for_test(8);
        let pipeline = Pipeline::new(
            Normalizer::new(chrono_tz::UTC, "INR", Default::default()),
            Store::new(8),
            Some(handle),
            Arc::new(Telemetry::new()),
        );
        // in the past, so that none is refused as from the future
        let t0: DateTime<Utc> = "2025-01-01T00:00:00Z".parse().unwrap();
        // 10,001 funnel hours, one observation each (count = its position)
        let n = 2 * SEND_ROWS + 1;
        let batch: Vec<Observation> = (0..n)
            .map(|i| {
                Observation::Funnel(crate::normalize::RawFunnel {
                    ts: t0 + chrono::Duration::hours(i as i64),
                    bucket: Bucket::Hour,
                    stage: "purchase".into(),
                    traffic_source: "google / cpc".into(),
                    count: i as u64,
                })
            })
            .collect();
        let delivery = pipeline.deliver("ga4", batch, None).await.unwrap();
        assert_eq!(delivery.records, n);
        // every send is in the channel (room for 8): take what is there
        let mut sends = Vec::new();
        while let Ok(b) = rx.try_recv() {
            sends.push(b);
        }
        // by hand: 10,001 = 5,000 + 5,000 + 1
        let sizes: Vec<usize> = sends.iter().map(|b| b.rows().len()).collect();
        assert_eq!(sizes, vec![5_000, 5_000, 1]);
        let counts: Vec<u64> = sends
            .iter()
            .flat_map(|b| b.rows())
            .map(|r| match r {
                Record::Funnel(f) => f.count,
                _ => unreachable!("funnel rows"),
            })
            .collect();
        assert_eq!(counts, (0..n as u64).collect::<Vec<_>>(), "in order");
        // the first send spooled whole, the second had one row refused, the third written
        let mut sends = sends.into_iter();
        let outcome = [(5_000, 0), (0, 1), (0, 0)];
        for (b, (spooled, dead_lettered)) in sends.by_ref().zip(outcome) {
            let rows = b.rows().len();
            b.settle(crate::sinks::questdb::Settled {
                rows,
                spooled,
                dead_lettered,
            });
        }
        let s = delivery.settled().await.unwrap();
        assert_eq!((s.rows, s.spooled, s.dead_lettered), (n, 5_000, 1));
        assert_eq!(s.stored(), n - 1);
        assert_eq!(s.written(), n - 1 - 5_000);
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

/// The cursor waits for durability: an API source's sync cursor moves only once the sink says its
/// rows are durable, never on hand-over (issue 9: it used to advance when the rows were handed to
/// the buffer, and a SIGKILL then lost them for good).
#[cfg(test)]
mod cursor_tests {
    use super::*;
    use crate::sinks::questdb::Settled;
    use crate::sources::SourceContext;
    use crate::sources::cursor::CursorStore;
    use crate::sources::http::{LoopSettings, PollSource, SourceError, Window, run_polling};
    use crate::sources::ledger::{DayState, Ledger};
    use chrono::{Duration as CDuration, NaiveDate};
    use std::time::Duration;

    /// One order per day of the window.
    struct OrdersEachDay;

    impl PollSource for OrdersEachDay {
        fn account_timezone(&self) -> Tz {
            chrono_tz::UTC
        }
        async fn poll(&mut self, w: Window) -> Result<Vec<Observation>, SourceError> {
            Ok(crate::sources::http::gap_tests::one_order_per_day(w))
        }
    }

    /// Let the polling task run as far as it can (it is waiting on something, or done).
    async fn settle_down() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn start(
        dir: &std::path::Path,
        synced: NaiveDate,
    ) -> (
        Arc<CursorStore>,
        tokio::sync::mpsc::Receiver<crate::sinks::questdb::Batch>,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let cursors = Arc::new(CursorStore::new(dir));
        cursors
            .update("shop", |c| c.synced_until = Some(synced))
            .unwrap();
        let (handle, rx) = SinkHandle::for_test(64);
        let ctx = SourceContext::test("shop", 40, Some(handle), cursors.clone());
        let stop = ctx.shutdown.clone();
        let settings = LoopSettings {
            interval: Duration::from_secs(3600),
            lookback_days: 1,
            wait: crate::platforms::WaitPolicy::new(1, 10),
        };
        let task = tokio::spawn(run_polling(OrdersEachDay, settings, ctx, "shopify"));
        (cursors, rx, stop, task)
    }

    /// [`start`] with the cursor `days` days back, and the batches of the first poll (it covers
    /// the days since the cursor: one batch a day) held as the sink took them: the cursors, the
    /// cursor's day, the batches, the stop token and the task.
    async fn start_holding(
        dir: &std::path::Path,
        days: usize,
    ) -> (
        Arc<CursorStore>,
        NaiveDate,
        Vec<crate::sinks::questdb::Batch>,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let before = Utc::now().date_naive() - CDuration::days(days as i64);
        let (cursors, mut rx, stop, task) = start(dir, before);
        let mut held = Vec::new();
        while held.len() < days {
            held.push(rx.recv().await.expect("a batch"));
        }
        (cursors, before, held, stop, task)
    }

    #[tokio::test]
    async fn the_cursor_moves_only_once_the_sink_made_the_rows_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (cursors, before, held, stop, task) = start_holding(dir.path(), 5).await;
        let today = before + CDuration::days(5);
        settle_down().await;
        assert_eq!(
            cursors.get("shop").unwrap().synced_until,
            Some(before),
            "handed over but not durable: the cursor stays"
        );
        assert!(
            Ledger::new(dir.path()).days("shop").unwrap().is_empty(),
            "no day is recorded complete before its rows are durable"
        );
        // the sink makes them durable (QuestDB acknowledged): now the cursor moves
        for b in held {
            let rows = b.rows().len();
            b.settle(Settled {
                rows,
                ..Settled::default()
            });
        }
        while cursors.get("shop").unwrap().synced_until != Some(today) {
            settle_down().await;
        }
        let days = Ledger::new(dir.path()).days("shop").unwrap();
        assert_eq!(days.len(), 5);
        assert!(days.values().all(|s| *s == DayState::Complete), "{days:?}");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn rows_the_sink_never_made_durable_leave_the_cursor_and_the_days_open() {
        let dir = tempfile::tempdir().unwrap();
        let (cursors, before, held, stop, task) = start_holding(dir.path(), 3).await;
        // the sink stops (e.g. SIGKILL-like loss of its memory): the tickets are dropped unresolved
        drop(held);
        settle_down().await;
        assert_eq!(cursors.get("shop").unwrap().synced_until, Some(before));
        let days = Ledger::new(dir.path()).days("shop").unwrap();
        assert_eq!(days.len(), 3, "{days:?}");
        assert!(
            days.values()
                .all(|s| matches!(s, DayState::Incomplete { .. })),
            "{days:?}"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_day_whose_rows_questdb_refused_stays_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let today = Utc::now().date_naive();
        let (_cursors, mut rx, stop, task) = start(dir.path(), today - CDuration::days(2));
        let first = rx.recv().await.expect("a batch");
        let second = rx.recv().await.expect("a batch");
        let day_of = |b: &crate::sinks::questdb::Batch| match &b.rows()[0] {
            Record::Orders(o) => o.day,
            _ => unreachable!("orders"),
        };
        let (refused_day, ok_day) = (day_of(&first), day_of(&second));
        first.settle(Settled {
            rows: 1,
            spooled: 0,
            dead_lettered: 1,
        });
        second.settle(Settled {
            rows: 1,
            spooled: 1,
            dead_lettered: 0,
        });
        let ledger = Ledger::new(dir.path());
        while ledger.days("shop").unwrap().len() < 2 {
            settle_down().await;
        }
        let days = ledger.days("shop").unwrap();
        assert!(
            matches!(&days[&refused_day], DayState::Incomplete { reason } if reason.contains("refused by QuestDB")),
            "{days:?}"
        );
        assert_eq!(days[&ok_day], DayState::Complete, "spooled is durable");
        stop.cancel();
        task.await.unwrap();
    }
}
