//! The QuestDB sink task: creates the tables before the first write, then writes with questdb-rs
//! over ILP/HTTP, flushing by size and by interval.
//!
//! Where a row is (see `docs/reliability.md`):
//! - in the channel or in memory (`pending`): not durable yet; its ticket is unresolved;
//! - acknowledged by QuestDB, or fsynced to the spool, or (refused) fsynced to the dead-letter file:
//!   durable, its ticket resolves.
//!
//! While QuestDB is unreachable, rows go to the disk spool at the next tick; once QuestDB answers,
//! the spool is replayed oldest first, then memory, so a newer version of a row is always written
//! after an older one. Tables have DEDUP UPSERT KEYS, so a replay never double-counts.
//!
//! A row QuestDB refuses (its answer names the line) never blocks the others: the batch is bisected
//! until the refused rows are alone, and those go to the dead-letter file with QuestDB's reason.
//! At shutdown everything still in memory is written or spooled, past the spool's soft cap into its
//! reserve if need be.

use chrono::Utc;
use questdb::ingress::{Buffer, Sender, TimestampMicros};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::encode::{conf_string, encode};
use super::sql::SqlClient;
use super::{Batch, Settled, SinkError, SinkHandle, SinkHealth};
use crate::base::Secret;
use crate::config::QuestDbConfig;
use crate::records::Record;
use crate::sinks::dead_letter::{DeadLetter, Entry};
use crate::sinks::spool::{Cap, Spool, SpoolError};
use crate::telemetry::Telemetry;

const SINK: &str = "questdb";

/// What the sink could not save at shutdown (0 when nothing was lost).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Rows neither written, nor spooled, nor dead-lettered: lost unless their source re-reads them.
    pub unsaved_rows: usize,
    /// Rows left in the spool for the next run.
    pub spooled_rows: usize,
}

/// A row QuestDB or the encoder refused.
struct Refused {
    row: Record,
    /// Position of the row in the write it came from (to settle its ticket).
    index: usize,
    class: &'static str,
    reason: String,
}

/// What one write attempt did with its rows.
#[derive(Default)]
struct Outcome {
    written: Vec<Record>,
    refused: Vec<Refused>,
    /// Rows not written because QuestDB could not be reached (in their order).
    unwritten: Vec<Record>,
    error: Option<SinkError>,
}

/// True when QuestDB refused the rows themselves (HTTP 400 naming a line), as opposed to being
/// unreachable, unauthenticated or failing internally: only then does bisecting help.
fn is_row_rejection(e: &questdb::Error) -> bool {
    if e.code() != questdb::ErrorCode::ServerFlushError {
        return false;
    }
    let m = e.msg();
    m.contains("code: invalid")
        || m.contains("error in line")
        || m.contains("failed to parse")
        || m.contains("cast error")
}

/// A short, bounded class of a refusal for the `reason` label.
fn classify(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.contains("decimal") || m.contains("overflow") || m.contains("precision") {
        "out_of_range"
    } else if m.contains("timestamp") {
        "timestamp"
    } else if m.contains("cast") || m.contains("type") {
        "type"
    } else {
        "invalid"
    }
}

/// Write `rows` with one ILP request, bisecting around refused rows (blocking I/O: run it off the
/// async runtime).
fn write_blocking(
    writer: Option<(Sender, Buffer)>,
    conf: &str,
    url: &str,
    rows: Vec<Record>,
) -> (Option<(Sender, Buffer)>, Outcome) {
    let mut out = Outcome::default();
    let (mut sender, mut buf) = match writer {
        Some(w) => w,
        None => match Sender::from_conf(conf) {
            Ok(s) => {
                let b = s.new_buffer();
                (s, b)
            }
            Err(e) => {
                out.unwritten = rows;
                out.error = Some(SinkError::Unreachable {
                    url: url.to_string(),
                    reason: e.msg().to_string(),
                });
                return (None, out);
            }
        },
    };
    let now = TimestampMicros::new(Utc::now().timestamp_micros());
    let n = rows.len();
    // per row: None = not yet done, Some(true) = written, Some(false) = refused
    let mut done: Vec<Option<bool>> = vec![None; n];
    let mut reasons: BTreeMap<usize, (&'static str, String)> = BTreeMap::new();
    // ranges, processed left to right (the stack's top is the leftmost)
    let mut stack = vec![(0usize, n)];
    let mut failed_at: Option<usize> = None;
    while let Some((lo, hi)) = stack.pop() {
        buf.clear();
        let mut encoded = 0;
        for (i, row) in rows.iter().enumerate().take(hi).skip(lo) {
            if done[i].is_some() {
                continue;
            }
            let ok = buf.set_marker().is_ok() && {
                match encode(&mut buf, row, now) {
                    Ok(()) => true,
                    Err(e) => {
                        let _ = buf.rewind_to_marker();
                        done[i] = Some(false);
                        reasons.insert(i, ("encode", e.to_string()));
                        false
                    }
                }
            };
            buf.clear_marker();
            if ok {
                encoded += 1;
            }
        }
        if encoded == 0 {
            continue;
        }
        match sender.flush(&mut buf) {
            Ok(()) => {
                for d in done.iter_mut().take(hi).skip(lo) {
                    if d.is_none() {
                        *d = Some(true);
                    }
                }
            }
            Err(e) if is_row_rejection(&e) => {
                let open: Vec<usize> = (lo..hi).filter(|&i| done[i].is_none()).collect();
                if open.len() == 1 {
                    done[open[0]] = Some(false);
                    reasons.insert(open[0], (classify(e.msg()), e.msg().to_string()));
                } else {
                    let mid = open[open.len() / 2];
                    stack.push((mid, hi));
                    stack.push((lo, mid));
                }
            }
            Err(e) => {
                out.error = Some(match e.code() {
                    questdb::ErrorCode::SocketError | questdb::ErrorCode::CouldNotResolveAddr => {
                        SinkError::Unreachable {
                            url: url.to_string(),
                            reason: e.msg().to_string(),
                        }
                    }
                    _ => SinkError::Rejected {
                        what: format!("{} rows", hi - lo),
                        reason: e.msg().to_string(),
                    },
                });
                failed_at = Some(lo);
                break;
            }
        }
    }
    buf.clear();
    // rows the encoder refused in or after the range that failed are retried with the unwritten
    // ones, so what goes back to memory is exactly the suffix from `failed_at` (the tickets count
    // rows by their position)
    if let Some(f) = failed_at {
        for (i, d) in done.iter_mut().enumerate().skip(f) {
            if *d == Some(false) {
                *d = None;
                reasons.remove(&i);
            }
        }
    }
    for (i, row) in rows.into_iter().enumerate() {
        match done[i] {
            Some(true) => out.written.push(row),
            Some(false) => {
                let (class, reason) = reasons.remove(&i).unwrap_or(("invalid", String::new()));
                out.refused.push(Refused {
                    row,
                    index: i,
                    class,
                    reason,
                });
            }
            None => {
                debug_assert!(failed_at.is_some_and(|f| i >= f));
                out.unwritten.push(row);
            }
        }
    }
    let keep = if out.error.is_none() && !sender.must_close() {
        Some((sender, buf))
    } else {
        None
    };
    (keep, out)
}

/// One unresolved ticket: its rows are numbers `start..end` in the order received, and what has
/// become of them so far.
struct Waiter {
    start: u64,
    end: u64,
    settled: Settled,
    tx: oneshot::Sender<Settled>,
}

/// Where rows that left memory went, for their tickets.
#[derive(Clone, Copy)]
enum Went {
    Spooled,
    DeadLettered,
}

/// The sink task.
pub struct QuestDbSink {
    cfg: QuestDbConfig,
    conf: String,
    sql: SqlClient,
    rx: mpsc::Receiver<Batch>,
    pending: VecDeque<Record>,
    /// Rows received since start; with `pending.len()` it gives the durable watermark.
    received: u64,
    /// Tickets, oldest first.
    waiters: VecDeque<Waiter>,
    spool: Spool,
    dead: DeadLetter,
    telemetry: Arc<Telemetry>,
    health: Arc<SinkHealth>,
    writer: Option<(Sender, Buffer)>,
    schema_ready: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    spool_full: bool,
    /// Cancelled when shutdown begins: back-pressure is lifted (the spool may use its reserve), so
    /// sources blocked on a send can finish and stop.
    draining: Option<CancellationToken>,
}

impl QuestDbSink {
    /// Build the sink and the handle sources send to. Fails on a spool folder it cannot use, or a
    /// password the client cannot take.
    pub fn build(
        cfg: QuestDbConfig,
        password: Option<Secret>,
        telemetry: Arc<Telemetry>,
    ) -> Result<(Self, SinkHandle), SinkError> {
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes, cfg.spool_reserve_bytes)?;
        if !spool.is_empty() {
            info!(rows = spool.rows(), dir = %cfg.spool_dir.display(), "spooled rows from an earlier run will be replayed");
        }
        // A short queue of batches: the bound on memory is `max_buffered_rows` (enforced below)
        // plus these few in-flight batches, which sources keep small.
        let (tx, rx) = mpsc::channel(4);
        let health = Arc::new(SinkHealth::default());
        let conf = conf_string(&cfg, password.as_ref())?;
        let sql = SqlClient::new(&cfg, password);
        telemetry.sink_up.with_label_values(&[SINK]).set(0);
        let sink = Self {
            backoff: Duration::from_millis(cfg.retry_initial_ms),
            conf,
            sql,
            rx,
            pending: VecDeque::new(),
            received: 0,
            waiters: VecDeque::new(),
            dead: DeadLetter::new(&cfg.spool_dir),
            spool,
            telemetry,
            health: health.clone(),
            writer: None,
            schema_ready: false,
            retry_at: None,
            spool_full: false,
            draining: None,
            cfg,
        };
        sink.update_gauges();
        Ok((sink, SinkHandle { tx, health }))
    }

    /// Lift back-pressure once `token` is cancelled (shutdown has begun), so that every source can
    /// hand over its last rows; they are spooled past the soft cap if need be.
    pub fn drain_on(mut self, token: CancellationToken) -> Self {
        self.draining = Some(token);
        self
    }

    fn is_draining(&self) -> bool {
        self.draining.as_ref().is_some_and(|t| t.is_cancelled())
    }

    fn update_gauges(&self) {
        let t = &self.telemetry;
        t.sink_buffered
            .with_label_values(&[SINK])
            .set(self.pending.len() as i64);
        t.sink_spooled
            .with_label_values(&[SINK])
            .set(self.spool.rows() as i64);
        t.sink_spool_bytes
            .with_label_values(&[SINK])
            .set(self.spool.bytes() as i64);
        t.sink_backpressure
            .with_label_values(&[SINK])
            .set(i64::from(self.spool_full));
        self.health
            .spool_full
            .store(self.spool_full, Ordering::Relaxed);
    }

    /// Resolve the tickets of every batch whose rows have all left memory (each row that left
    /// memory is acknowledged, spooled or dead-lettered: rows leave `pending` from the front only).
    fn resolve(&mut self) {
        let durable = self.received - self.pending.len() as u64;
        while self.waiters.front().is_some_and(|w| w.end <= durable) {
            if let Some(w) = self.waiters.pop_front() {
                // the sender may have stopped waiting: nothing to tell then
                let _ = w.tx.send(w.settled);
            }
        }
    }

    /// Number of the row at the front of memory.
    fn front_seq(&self) -> u64 {
        self.received - self.pending.len() as u64
    }

    /// Rows `first..first + n` went to the spool or the dead-letter file: tell their tickets.
    fn note(&mut self, first: u64, n: u64, went: Went) {
        let last = first + n;
        for w in self.waiters.iter_mut() {
            if w.start >= last {
                break;
            }
            let overlap = w.end.min(last).saturating_sub(w.start.max(first)) as usize;
            match went {
                Went::Spooled => w.settled.spooled += overlap,
                Went::DeadLettered => w.settled.dead_lettered += overlap,
            }
        }
    }

    fn accept(&mut self, b: Batch) {
        let start = self.received;
        self.received += b.rows.len() as u64;
        self.waiters.push_back(Waiter {
            start,
            end: self.received,
            settled: Settled {
                rows: b.rows.len(),
                ..Settled::default()
            },
            tx: b.done,
        });
        self.pending.extend(b.rows);
    }

    fn mark_down(&mut self, err: &SinkError) {
        if self.health.is_up() || self.health.last_error().is_none() {
            warn!(sink = SINK, error = %err, "QuestDB write failed; rows are kept and retried");
        }
        self.health.set(false, Some(err.to_string()));
        self.telemetry.sink_up.with_label_values(&[SINK]).set(0);
        self.telemetry
            .sink_write_failures
            .with_label_values(&[SINK])
            .inc();
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_millis(self.cfg.retry_max_ms));
        // a failed connection may be half-open: start afresh next time
        self.writer = None;
    }

    fn mark_up(&mut self) {
        if !self.health.is_up() {
            info!(sink = SINK, "QuestDB is accepting rows");
        }
        self.health.set(true, None);
        self.telemetry.sink_up.with_label_values(&[SINK]).set(1);
        self.telemetry
            .sink_last_success
            .with_label_values(&[SINK])
            .set(crate::telemetry::unix_now());
        self.backoff = Duration::from_millis(self.cfg.retry_initial_ms);
        self.retry_at = None;
    }

    /// Put refused rows in the dead-letter file (fsynced) and count them. On an I/O error the rows
    /// are handed back: they must not be dropped.
    fn dead_letter(
        &mut self,
        refused: Vec<Refused>,
        first_seq: Option<u64>,
    ) -> Result<(), (SinkError, Vec<Record>)> {
        if refused.is_empty() {
            return Ok(());
        }
        let entries: Vec<Entry<'_>> = refused
            .iter()
            .map(|r| Entry::Rejected {
                table: r.row.table(),
                class: r.class,
                reason: &r.reason,
                record: &r.row,
            })
            .collect();
        if let Err(e) = self.dead.append(&entries) {
            error!(sink = SINK, error = %e, "cannot write the dead-letter file; refused rows are kept");
            let err = SinkError::Spool(SpoolError::Io {
                path: e.path,
                source: e.source,
            });
            return Err((err, refused.into_iter().map(|r| r.row).collect()));
        }
        for r in &refused {
            warn!(sink = SINK, table = r.row.table(), reason = %r.reason, file = %self.dead.path().display(), "QuestDB refused a row; it is in the dead-letter file");
            self.telemetry
                .sink_rows_rejected
                .with_label_values(&[r.row.table(), r.class])
                .inc();
            self.health.rejected(1, &r.reason);
            if let Some(first) = first_seq {
                self.note(first + r.index as u64, 1, Went::DeadLettered);
            }
        }
        Ok(())
    }

    /// Write rows: acknowledged rows are counted, refused rows dead-lettered; returns the rows not
    /// written (QuestDB unreachable), in order, with the error. `first_seq` numbers rows taken
    /// from memory (their tickets learn which were refused); spool replays have none.
    async fn write(
        &mut self,
        rows: Vec<Record>,
        first_seq: Option<u64>,
    ) -> Result<(), (SinkError, Vec<Record>)> {
        let conf = self.conf.clone();
        let url = self.cfg.http_url.clone();
        let writer = self.writer.take();
        let started = Instant::now();
        let n = rows.len();
        let joined =
            tokio::task::spawn_blocking(move || write_blocking(writer, &conf, &url, rows)).await;
        let (writer, out) = match joined {
            Ok(x) => x,
            Err(e) => {
                // the rows were moved into the task that failed: this cannot be recovered here,
                // and is counted as lost at shutdown by the caller's bookkeeping
                error!(sink = SINK, rows = n, error = %e, "writer task failed");
                return Err((
                    SinkError::Rejected {
                        what: "flush".into(),
                        reason: format!("writer task failed: {e}"),
                    },
                    Vec::new(),
                ));
            }
        };
        self.writer = writer;
        self.telemetry
            .sink_flush_duration
            .with_label_values(&[SINK])
            .observe(started.elapsed().as_secs_f64());
        let mut per_table: BTreeMap<&'static str, u64> = BTreeMap::new();
        for r in &out.written {
            *per_table.entry(r.table()).or_default() += 1;
        }
        for (t, n) in per_table {
            self.telemetry
                .sink_rows_written
                .with_label_values(&[SINK, t])
                .inc_by(n);
        }
        let mut unwritten = out.unwritten;
        if let Err((e, mut back)) = self.dead_letter(out.refused, first_seq) {
            back.append(&mut unwritten);
            return Err((e, back));
        }
        match out.error {
            None => Ok(()),
            Some(e) => Err((e, unwritten)),
        }
    }

    /// Append every row in memory to the spool (up to `cap`) and let them go from memory: how
    /// many. On an error they stay in memory.
    fn spool_pending(&mut self, cap: Cap) -> Result<usize, crate::sinks::spool::SpoolError> {
        // written from where they are (not a copy: memory is at its fullest here)
        let n = self.pending.len();
        self.spool.push(self.pending.make_contiguous(), cap)?;
        self.note(self.front_seq(), n as u64, Went::Spooled);
        self.pending.clear();
        self.release_pending();
        if cap == Cap::Reserve && self.spool.in_reserve() {
            warn!(
                sink = SINK,
                rows = n,
                bytes = self.spool.bytes(),
                max = self.cfg.spool_max_bytes,
                "spool past its soft cap: shutdown wrote into the reserve (questdb.spool_reserve_bytes)"
            );
        }
        Ok(n)
    }

    /// Give back what memory's queue grew to beyond a few writes' worth once it has drained: a
    /// `VecDeque` keeps its largest size, and 200,000 rows of [`Record`] once queued (QuestDB
    /// down, or a large send) would otherwise stay allocated for good (131 MiB at 10,000
    /// campaigns before sends were split).
    fn release_pending(&mut self) {
        let keep = self.cfg.flush_rows.saturating_mul(2);
        if self.pending.len() <= self.cfg.flush_rows && self.pending.capacity() > 2 * keep {
            self.pending.shrink_to(keep);
        }
    }

    /// Move every row in memory to the spool (QuestDB is down: rows become durable now rather than
    /// when it comes back). With the spool full, rows stay in memory and back-pressure starts.
    fn spill(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let cap = if self.is_draining() {
            Cap::Reserve
        } else {
            Cap::Soft
        };
        match self.spool_pending(cap) {
            Ok(_) => self.spool_full = false,
            Err(e) => {
                if !self.spool_full {
                    error!(sink = SINK, error = %e, rows = self.pending.len(), "back-pressure: rows stay in memory and sources wait until QuestDB takes rows");
                }
                self.spool_full = true;
            }
        }
        self.resolve();
        self.update_gauges();
    }

    /// Unreadable spool lines to the dead-letter file, counted. False if that file cannot be
    /// written (the segment is then kept).
    fn dead_letter_lines(&mut self, bad: &[crate::sinks::spool::BadLine]) -> bool {
        if bad.is_empty() {
            return true;
        }
        let entries: Vec<Entry<'_>> = bad
            .iter()
            .map(|b| Entry::Unreadable {
                origin: &b.origin,
                reason: &b.reason,
                line: &b.text,
            })
            .collect();
        if let Err(e) = self.dead.append(&entries) {
            error!(sink = SINK, error = %e, "cannot write the dead-letter file; the spool segment is kept");
            return false;
        }
        for b in bad {
            error!(sink = SINK, origin = %b.origin, reason = %b.reason, file = %self.dead.path().display(), "unreadable spool line moved to the dead-letter file");
        }
        self.telemetry
            .sink_spool_unreadable
            .with_label_values(&[SINK])
            .inc_by(bad.len() as u64);
        true
    }

    /// One attempt to drain: schema, then spool (oldest first), then memory in `flush_rows` chunks.
    /// When QuestDB is down, memory goes to the spool instead.
    async fn drain(&mut self) {
        if let Some(at) = self.retry_at
            && Instant::now() < at
        {
            self.spill();
            return;
        }
        if !self.schema_ready {
            match self.sql.ensure_schema().await {
                Ok(()) => {
                    self.schema_ready = true;
                    info!(sink = SINK, "QuestDB tables ready");
                }
                Err(e) => {
                    self.mark_down(&e);
                    self.spill();
                    return;
                }
            }
        }
        loop {
            // Shutdown has begun: the spool is durable and the next run replays it; replaying
            // a backlog now (1.3 M model rows at 1,000 campaigns) held SIGINT for 14 s. Memory
            // waits too, so it follows the spool's rows rather than overtaking them.
            if self.is_draining() && !self.spool.is_empty() {
                return;
            }
            let peeked = match self.spool.peek() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    error!(sink = SINK, error = %e, "cannot read the spool; retried later");
                    self.retry_at = Some(Instant::now() + self.backoff);
                    return;
                }
            };
            if !self.dead_letter_lines(&peeked.bad) {
                return;
            }
            // in chunks, so that a shutdown beginning during a long segment stops it at the
            // next chunk (the segment stays; what was written of it is upserted again)
            let mut rows = peeked.rows;
            let mut written = Ok(());
            while rows.len() > self.cfg.flush_rows {
                if self.is_draining() {
                    return;
                }
                let rest = rows.split_off(self.cfg.flush_rows);
                written = self.write(rows, None).await;
                rows = rest;
                if written.is_err() {
                    break;
                }
            }
            if written.is_ok() {
                written = self.write(rows, None).await;
            }
            match written {
                Ok(()) => {
                    if let Err(e) = self.spool.pop() {
                        error!(sink = SINK, error = %e, "cannot delete a replayed spool segment; it will be replayed again (harmless: rows are upserted)");
                        return;
                    }
                    self.spool_full = false;
                    self.mark_up();
                    self.update_gauges();
                }
                Err((e, _)) => {
                    // the segment stays; what was written of it is upserted again next time
                    self.mark_down(&e);
                    self.spill();
                    return;
                }
            }
        }
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.cfg.flush_rows);
            let first = self.front_seq();
            let rows: Vec<Record> = self.pending.drain(..n).collect();
            match self.write(rows, Some(first)).await {
                Ok(()) => {
                    self.mark_up();
                    self.resolve();
                }
                Err((e, rows)) => {
                    // put them back, in order, in front
                    for r in rows.into_iter().rev() {
                        self.pending.push_front(r);
                    }
                    self.mark_down(&e);
                    self.spill();
                    break;
                }
            }
        }
        self.release_pending();
        self.resolve();
        self.update_gauges();
    }

    /// Move the oldest rows beyond the memory bound to the spool.
    fn overflow(&mut self) {
        let max = self.cfg.max_buffered_rows;
        if self.pending.len() <= max {
            return;
        }
        let n = self.pending.len() - max;
        let cap = if self.is_draining() {
            Cap::Reserve
        } else {
            Cap::Soft
        };
        // written from where they are, not copied first
        match self.spool.push(&self.pending.make_contiguous()[..n], cap) {
            Ok(()) => {
                self.note(self.front_seq(), n as u64, Went::Spooled);
                self.pending.drain(..n);
                self.spool_full = false;
            }
            Err(e) => {
                if !self.spool_full {
                    error!(sink = SINK, error = %e, "back-pressure: sources wait until QuestDB takes rows");
                }
                self.spool_full = true;
            }
        }
        self.resolve();
        self.update_gauges();
    }

    /// Run until `shutdown`; then take what is still queued, one last attempt to write, and
    /// whatever remains goes to the spool (into its reserve if need be).
    pub async fn run(mut self, shutdown: CancellationToken) -> ShutdownReport {
        let interval = Duration::from_millis(self.cfg.flush_interval_ms);
        let mut last_flush = Instant::now();
        let draining = self.draining.clone().unwrap_or_default();
        let mut drain_woken = false;
        // first contact (creates the tables even before any row arrives)
        self.drain().await;
        loop {
            let accept = !self.spool_full || self.is_draining();
            let wake = if self.pending.is_empty() && self.spool.is_empty() && self.schema_ready {
                interval.max(Duration::from_secs(5))
            } else {
                interval
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // shutdown began: wake up (once) to lift back-pressure
                _ = draining.cancelled(), if self.spool_full && !drain_woken => {
                    drain_woken = true;
                    self.spill();
                }
                batch = self.rx.recv(), if accept => {
                    match batch {
                        Some(b) => {
                            self.accept(b);
                            if self.pending.len() >= self.cfg.flush_rows {
                                self.drain().await;
                                last_flush = Instant::now();
                            }
                            self.overflow();
                            self.update_gauges();
                        }
                        None => break,
                    }
                }
                _ = tokio::time::sleep(wake) => {}
            }
            if last_flush.elapsed() >= interval {
                self.drain().await;
                self.overflow();
                last_flush = Instant::now();
            }
        }
        // no new sends from here on (a sender gets `SinkClosed`); take everything already queued
        self.rx.close();
        while let Some(b) = self.rx.recv().await {
            self.accept(b);
        }
        self.retry_at = None;
        // One last write of what memory holds, when nothing older waits in the spool and it is
        // no more than a normal buffer (bounded time); otherwise all of it goes to the spool
        // below, behind the older rows, for the next run.
        if self.spool.is_empty() && self.pending.len() <= self.cfg.max_buffered_rows {
            self.drain().await;
        }
        let mut report = ShutdownReport::default();
        if !self.pending.is_empty() {
            match self.spool_pending(Cap::Reserve) {
                Ok(rows) => info!(sink = SINK, rows, "unsent rows spooled for the next run"),
                Err(e) => {
                    error!(sink = SINK, rows = self.pending.len(), error = %e, "unsent rows could not be spooled at shutdown: they are lost unless their sources read them again");
                    report.unsaved_rows = self.pending.len();
                }
            }
        }
        self.resolve();
        report.spooled_rows = self.spool.rows();
        self.update_gauges();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified_for_a_bounded_label() {
        assert_eq!(
            classify("cast error from protocol type: DECIMAL to column type: DECIMAL(18,6)"),
            "out_of_range"
        );
        assert_eq!(
            classify("timestamp before 1970-01-01 is not allowed"),
            "timestamp"
        );
        assert_eq!(classify("cast error for line protocol type STRING"), "type");
        assert_eq!(classify("something else"), "invalid");
    }
}
