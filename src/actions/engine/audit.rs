//! The audit trail. Every event is first appended to a local log, `actions-audit.jsonl` (one
//! JSON row a line, fsynced before the call returns), then forwarded to QuestDB's `actions`
//! table by a background task that remembers how far it got (`actions-audit.offset`). So an
//! approval or a kill switch never waits on QuestDB or a full spool, and no row is lost: a row
//! not yet forwarded when the process stops is forwarded by the next run (at least once; the
//! table's DEDUP keys make a repeat harmless).
//!
//! Refused requests (no token, wrong token, a viewer trying to act) are counted per minute and
//! reason and written as one row per pair, so a flood of bad requests cannot flood the table
//! or the log. Strings that come from requests are logged with `?` (escaped), so an id holding
//! a newline cannot forge a log line.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ActionEngine, Recommendation, json, lock};
use crate::records::{ActionRow, Record};
use crate::sinks::questdb::SinkHandle;

/// Events named in a summarized audit log line (the rest are counted).
const SUMMARY_EXAMPLES: usize = 3;

/// Most rows forwarded to QuestDB in one batch.
const FORWARD_BATCH: usize = 500;
/// How long the last forwarding pass at shutdown waits for the sink to take a batch before it
/// leaves the rest in the local log (durable there) for the next run.
const LAST_PASS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The local audit log, shared by the engine and its forwarder.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: rows are kept in memory only (tests).
    path: Option<PathBuf>,
    file: std::sync::Mutex<Option<std::fs::File>>,
    memory: std::sync::Mutex<Vec<ActionRow>>,
    sink: Option<SinkHandle>,
    appended: tokio::sync::Notify,
    /// How far the log was handed to the sink (`None` until read from `actions-audit.offset`);
    /// locked for a whole forwarding pass.
    forwarded: tokio::sync::Mutex<Option<u64>>,
}

/// What the audit trail page asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Exact campaign id.
    pub campaign_id: Option<String>,
    /// Actor, or its prefix before `:` (e.g. `user` matches `user:asha`).
    pub actor: Option<String>,
    /// Action id (a recommendation's history).
    pub action_id: Option<String>,
    /// Newest rows kept, at most.
    pub limit: usize,
}

impl AuditFilter {
    fn matches(&self, r: &ActionRow) -> bool {
        self.from.is_none_or(|f| r.ts >= f)
            && self.to.is_none_or(|t| r.ts < t)
            && self
                .campaign_id
                .as_ref()
                .is_none_or(|c| c.is_empty() || &r.campaign_id == c)
            && self.action_id.as_ref().is_none_or(|a| &r.action_id == a)
            && self.actor.as_ref().is_none_or(|a| {
                a.is_empty()
                    || r.actor == *a
                    || r.actor.split(':').next() == Some(a.as_str())
                    || r.actor.rsplit(':').next() == Some(a.as_str())
            })
    }
}

impl AuditLog {
    pub fn in_memory(sink: Option<SinkHandle>) -> Self {
        AuditLog {
            inner: Arc::new(Inner {
                path: None,
                file: std::sync::Mutex::new(None),
                memory: std::sync::Mutex::new(Vec::new()),
                sink,
                appended: tokio::sync::Notify::new(),
                forwarded: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Open (or create) `<dir>/actions-audit.jsonl` for appending.
    pub fn open(dir: &Path, sink: Option<SinkHandle>) -> std::io::Result<Self> {
        let path = dir.join("actions-audit.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                path: Some(path),
                file: std::sync::Mutex::new(Some(file)),
                memory: std::sync::Mutex::new(Vec::new()),
                sink,
                appended: tokio::sync::Notify::new(),
                forwarded: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Append rows durably (fsync) before returning. Never waits on QuestDB.
    pub fn append(&self, rows: &[ActionRow]) -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match &self.inner.path {
            None => lock(&self.inner.memory).extend_from_slice(rows),
            Some(_) => {
                let mut buf = Vec::new();
                for r in rows {
                    serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
                    buf.push(b'\n');
                }
                let mut f = lock(&self.inner.file);
                let f = f
                    .as_mut()
                    .ok_or_else(|| std::io::Error::other("audit log closed"))?;
                f.write_all(&buf)?;
                f.sync_data()?;
            }
        }
        self.inner.appended.notify_one();
        Ok(())
    }

    /// Every row from byte (or, in memory, row) `from` on, and where the next read starts. A
    /// line that does not parse (a torn write at a crash) is skipped with a warning.
    fn read_from(&self, from: u64) -> std::io::Result<(Vec<ActionRow>, u64)> {
        let Some(path) = &self.inner.path else {
            let m = lock(&self.inner.memory);
            let start = usize::try_from(from).unwrap_or(usize::MAX).min(m.len());
            return Ok((m[start..].to_vec(), m.len() as u64));
        };
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        // only complete lines: a line being written now is read next time
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut rows = Vec::new();
        for (n, line) in buf[..end].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<ActionRow>(line) {
                Ok(r) => rows.push(r),
                Err(error) => warn!(
                    file = %path.display(),
                    line_after_offset = n + 1,
                    %error,
                    "audit log line unreadable: skipped"
                ),
            }
        }
        Ok((rows, from + end as u64))
    }

    /// Rows matching `filter`, newest first.
    pub fn query(&self, filter: &AuditFilter) -> std::io::Result<Vec<ActionRow>> {
        let (rows, _) = self.read_from(0)?;
        let mut v: Vec<ActionRow> = rows.into_iter().filter(|r| filter.matches(r)).collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.ts));
        if filter.limit > 0 {
            v.truncate(filter.limit);
        }
        Ok(v)
    }

    fn offset_path(&self) -> Option<PathBuf> {
        self.inner.path.as_ref().map(|p| p.with_extension("offset"))
    }

    fn load_offset(&self) -> u64 {
        self.offset_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn store_offset(&self, offset: u64) {
        if let Some(p) = self.offset_path() {
            // not fsynced: losing it only forwards some rows again, which the dedup keys absorb
            if let Err(error) = std::fs::write(&p, offset.to_string()) {
                warn!(file = %p.display(), %error, "cannot record the audit forwarding offset");
            }
        }
    }

    /// Forward the log to QuestDB until `stop`; then one last pass, so rows appended at shutdown
    /// (the refusals of the last minute) reach the sink before it closes, not only on the next
    /// run. Waiting on the sink (QuestDB down, spool full) happens here, never in a request.
    pub async fn forward_loop(self, stop: CancellationToken) {
        let Some(sink) = self.inner.sink.clone() else {
            return;
        };
        loop {
            let last_pass = stop.is_cancelled();
            let pass = self.pass(&sink, (!last_pass).then_some(&stop)).await;
            if last_pass {
                return;
            }
            match pass {
                Pass::Sent => {}
                // interrupted: the last pass re-sends from the stored offset (dedup keys absorb
                // a repeat)
                Pass::Interrupted => {}
                Pass::SinkGone => return,
                Pass::Idle | Pass::Unreadable => {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = self.inner.appended.notified() => {}
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    }
                }
            }
        }
    }

    /// One last forwarding pass, for the shutdown: what the log holds past the stored offset is
    /// handed to the sink (each batch waiting at most `LAST_PASS_WAIT`). It runs after the
    /// engine's task has stopped or was left behind at the grace deadline, so rows appended by
    /// then (the refusals of the last minute) never depend on that task having finished.
    pub async fn finish(&self) {
        if let Some(sink) = &self.inner.sink {
            self.pass(sink, None).await;
        }
    }

    /// Send the rows past the stored offset to `sink`, then store the new offset. Passes never
    /// overlap (the offset's lock is held throughout), so the forwarder and the shutdown's
    /// [`AuditLog::finish`] cannot both send a row or move the offset back. With `stop`, a
    /// cancellation interrupts the pass (the offset stays); without it (the last pass), a sink
    /// that takes nothing within `LAST_PASS_WAIT` ends it, the rest staying in the local log.
    async fn pass(&self, sink: &SinkHandle, stop: Option<&CancellationToken>) -> Pass {
        let mut stored = self.inner.forwarded.lock().await;
        let offset = *stored.get_or_insert_with(|| self.load_offset());
        let (rows, next) = match self.read_from(offset) {
            Ok(x) => x,
            Err(error) => {
                warn!(%error, "cannot read the audit log; retrying");
                return Pass::Unreadable;
            }
        };
        if rows.is_empty() {
            *stored = Some(next);
            return Pass::Idle;
        }
        for chunk in rows.chunks(FORWARD_BATCH) {
            let batch = chunk.iter().cloned().map(Record::Actions).collect();
            let sent = match stop {
                // unsent rows stay in the log: the last pass sends them
                Some(stop) => tokio::select! {
                    _ = stop.cancelled() => return Pass::Interrupted,
                    r = sink.send(batch) => r.is_ok(),
                },
                // at shutdown the sink lifts its back-pressure, so the last pass's sends
                // finish; a sink that still takes nothing (stalled, or never started) must not
                // hang the shutdown: the rows are durable in the local log, the next run sends
                // them
                None => match tokio::time::timeout(LAST_PASS_WAIT, sink.send(batch)).await {
                    Ok(r) => r.is_ok(),
                    Err(_) => {
                        warn!(
                            wait_secs = LAST_PASS_WAIT.as_secs(),
                            "the QuestDB sink took no audit rows at shutdown: they stay in the local log for the next run"
                        );
                        return Pass::SinkGone;
                    }
                },
            };
            if !sent {
                warn!("QuestDB sink stopped: audit rows stay in the local log for the next run");
                return Pass::SinkGone;
            }
        }
        if stop.is_some_and(|s| s.is_cancelled()) {
            return Pass::Interrupted;
        }
        *stored = Some(next);
        self.store_offset(next);
        Pass::Sent
    }
}

/// How a forwarding pass ended.
enum Pass {
    /// Nothing past the offset.
    Idle,
    /// Everything past the offset was handed to the sink; the offset moved.
    Sent,
    /// Shutdown began mid-pass; the offset stayed.
    Interrupted,
    /// The sink took no more; the offset stayed.
    SinkGone,
    /// The log could not be read.
    Unreadable,
}

/// Count, calls seen and first actor of one refusal reason in a minute.
type Tally = (u64, std::collections::BTreeSet<String>, String);

/// Refusals counted in the current minute, by reason.
#[derive(Default)]
pub(super) struct Refusals {
    minute: i64,
    /// reason -> (count, calls seen, first actor)
    by_reason: BTreeMap<String, Tally>,
}

impl ActionEngine {
    pub(super) fn row(&self, action_id: &str, event: &str, actor: &str) -> ActionRow {
        let cfg = self.cfg.load();
        ActionRow {
            ts: self.next_ts(),
            action_id: action_id.into(),
            event: event.into(),
            actor: actor.into(),
            mode: cfg.mode.as_str().into(),
            dry_run: cfg.dry_run,
            rule: String::new(),
            kind: String::new(),
            platform: String::new(),
            account: String::new(),
            campaign_id: String::new(),
            campaign_name: String::new(),
            reason: String::new(),
            rule_values: String::new(),
            state_before: String::new(),
            state_after: String::new(),
            result: "ok".into(),
            detail: String::new(),
            idempotency_key: String::new(),
        }
    }

    pub(super) fn rec_row(&self, rec: &Recommendation, event: &str, actor: &str) -> ActionRow {
        let mut r = self.row(&rec.id, event, actor);
        r.rule.clone_from(&rec.rule);
        r.kind = rec.kind.as_str().into();
        r.platform.clone_from(&rec.platform);
        r.account.clone_from(&rec.account);
        r.campaign_id.clone_from(&rec.campaign_id);
        r.campaign_name.clone_from(&rec.campaign_name);
        r.reason.clone_from(&rec.reason);
        r.rule_values = json(&rec.values);
        r.idempotency_key = rec.id.clone();
        r
    }

    /// Write audit events: durable locally at once, forwarded to QuestDB in the background.
    /// Logged one line each up to `audit_log_lines_per_pass`, else as one summary line.
    pub(super) fn audit_all(&self, rows: Vec<ActionRow>) {
        if rows.is_empty() {
            return;
        }
        let most = self.cfg.load().audit_log_lines_per_pass;
        if rows.len() <= most {
            for row in &rows {
                info!(
                    action_id = ?row.action_id,
                    event = %row.event,
                    actor = ?row.actor,
                    rule = %row.rule,
                    kind = %row.kind,
                    campaign_id = ?row.campaign_id,
                    result = %row.result,
                    detail = ?row.detail,
                    "action audit"
                );
            }
        } else {
            let mut by_event: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &rows {
                *by_event.entry(r.event.as_str()).or_default() += 1;
            }
            // the first few, so the line says what the pass was about; every row is in the
            // audit log and the action center
            let first: Vec<String> = rows
                .iter()
                .take(SUMMARY_EXAMPLES)
                .map(|r| format!("{} {} {} {}", r.event, r.rule, r.platform, r.campaign_id))
                .collect();
            info!(
                rows = rows.len(),
                events = ?by_event,
                first = ?first,
                "action audit (summarized)"
            );
        }
        if let Err(error) = self.audit.append(&rows) {
            // the forwarder reads only the local log: this log line is the rows' last record
            tracing::error!(%error, rows = ?json(&rows), "audit rows could not be made durable");
        }
    }

    pub(super) fn audit(&self, row: ActionRow) {
        self.audit_all(vec![row]);
    }

    /// Count a refused API or web call (no or wrong token, read-only caller trying to act).
    /// One row per minute and reason is written when the minute is over.
    pub fn audit_refusal(&self, actor: &str, result: &str, call: &str) {
        self.metrics.total.with_label_values(&["refused"]).inc();
        let minute = Utc::now().timestamp() / 60;
        let mut flush = Vec::new();
        {
            let mut r = lock(&self.refusals);
            if r.minute != minute {
                flush = std::mem::take(&mut r.by_reason).into_iter().collect();
                flush.insert(
                    0,
                    (
                        String::new(),
                        (r.minute as u64, Default::default(), String::new()),
                    ),
                );
                r.minute = minute;
            }
            let e = r
                .by_reason
                .entry(result.to_string())
                .or_insert_with(|| (0, Default::default(), actor.to_string()));
            e.0 += 1;
            if e.1.len() < 10 {
                e.1.insert(call.to_string());
            }
        }
        self.write_refusals(flush);
    }

    fn write_refusals(&self, flush: Vec<(String, Tally)>) {
        let mut it = flush.into_iter();
        let Some((_, (minute, _, _))) = it.next() else {
            return;
        };
        let rows: Vec<ActionRow> = it
            .map(|(reason, (count, calls, actor))| {
                let mut row = self.row(&format!("refused-{minute}-{reason}"), "refused", &actor);
                row.result = reason;
                row.kind = calls.iter().next().cloned().unwrap_or_default();
                row.detail = format!(
                    "{count} refused: {}",
                    calls.into_iter().collect::<Vec<_>>().join(",")
                );
                row
            })
            .collect();
        self.audit_all(rows);
    }

    /// Write the refusals of minutes that are over (all of them with `all`, at shutdown).
    pub(super) fn flush_refusals(&self, all: bool) {
        let minute = Utc::now().timestamp() / 60;
        let flush = {
            let mut r = lock(&self.refusals);
            if r.by_reason.is_empty() || (!all && r.minute == minute) {
                return;
            }
            let mut f: Vec<_> = std::mem::take(&mut r.by_reason).into_iter().collect();
            f.insert(
                0,
                (
                    String::new(),
                    (r.minute as u64, Default::default(), String::new()),
                ),
            );
            f
        };
        self.write_refusals(flush);
    }

    /// Record an Alertmanager notification that triggered an evaluation.
    pub fn audit_alert(&self, actor: &str, summary: &str) {
        let mut r = self.row(&self.new_id("alert-"), "alert", actor);
        r.kind = "evaluate".into();
        r.detail = summary.chars().take(500).collect();
        self.audit(r);
    }
}

/// The audit rows as CSV (the audit trail's export), columns as in the QuestDB table.
pub fn to_csv(rows: &[ActionRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, ts: &str, actor: &str, campaign: &str) -> ActionRow {
        ActionRow {
            ts: ts.parse().unwrap(),
            action_id: id.into(),
            event: "approved".into(),
            actor: actor.into(),
            mode: "approve".into(),
            dry_run: true,
            rule: "cpa_above".into(),
            kind: "pause".into(),
            platform: "meta".into(),
            account: "act_1".into(),
            campaign_id: campaign.into(),
            campaign_name: "a, \"quoted\"\nname".into(),
            reason: String::new(),
            rule_values: "{}".into(),
            state_before: String::new(),
            state_after: String::new(),
            result: "ok".into(),
            detail: String::new(),
            idempotency_key: String::new(),
        }
    }

    #[test]
    fn log_survives_reopen_filters_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), None).unwrap();
        log.append(&[
            row("r1", "2026-12-01T10:00:00Z", "user:asha", "c1"),
            row("r2", "2026-12-01T11:00:00Z", "write_token", "c2"),
        ])
        .unwrap();
        drop(log);
        // a crash mid-write leaves half a line
        let p = dir.path().join("actions-audit.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"ts\":\"2026-12-01T12:").unwrap();
        f.write_all(b"\n").unwrap();
        let log = AuditLog::open(dir.path(), None).unwrap();
        log.append(&[row("r3", "2026-12-01T12:30:00Z", "user:ravi", "c1")])
            .unwrap();
        let all = log.query(&AuditFilter::default()).unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.action_id.as_str()).collect();
        assert_eq!(ids, ["r3", "r2", "r1"], "newest first, torn line skipped");
        let f = AuditFilter {
            campaign_id: Some("c1".into()),
            actor: Some("asha".into()),
            ..Default::default()
        };
        let got = log.query(&f).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action_id, "r1");
        let f = AuditFilter {
            from: Some("2026-12-01T10:30:00Z".parse().unwrap()),
            to: Some("2026-12-01T12:00:00Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(log.query(&f).unwrap()[0].action_id, "r2");
    }

    #[test]
    fn csv_export_quotes_commas_quotes_and_newlines() {
        let rows = [row("r1", "2026-12-01T10:00:00Z", "user:asha", "c1")];
        let bytes = to_csv(&rows).unwrap();
        let mut rd = csv::Reader::from_reader(bytes.as_slice());
        let header = rd.headers().unwrap().clone();
        assert_eq!(&header[0], "ts");
        assert_eq!(header.len(), 19);
        let rec = rd.records().next().unwrap().unwrap();
        let name = header.iter().position(|h| h == "campaign_name").unwrap();
        assert_eq!(&rec[name], "a, \"quoted\"\nname");
    }
}
