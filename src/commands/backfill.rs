//! `adpulse backfill --source S --from D --to D`: fetches the days of a range that the
//! completeness ledger does not hold as complete, from one API source, in chunks, with a progress
//! bar. Throttle waits have a floor and honour `max_throttle_wait_secs`; each is logged (and shown
//! on the progress bar) with its reason and the time work resumes. A day becomes complete only
//! when every page was read and every row was acknowledged by QuestDB (the pipeline's durability
//! tickets say so: a row refused by normalize or dead-lettered by QuestDB, or only spooled, leaves
//! it incomplete with the reason), and the command fails with `N days complete, M incomplete: ...`.
//! Re-running the same command after the cause is fixed fetches exactly the incomplete days.

use chrono::{Days, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::normalize::{Normalizer, Observation};
use crate::pipeline::Pipeline;
use crate::sinks::questdb::{QuestDbSink, SqlClient};
use crate::sources::AnyPoller;
use crate::sources::http::{
    PollSource, SourceError, Window, day_of, day_states, deliver, log_wait, merge_duplicates,
};
use crate::sources::ledger::{DayState, Ledger, LedgerError, each_day};
use crate::state::Store;
use crate::telemetry::Telemetry;

/// What a backfill did.
#[derive(Debug, Default, PartialEq)]
pub struct BackfillSummary {
    /// Days fetched and now complete.
    pub days: u64,
    /// Days of the range the ledger already held as complete (not fetched again).
    pub already_complete: u64,
    /// First day fetched, when earlier days of the range were already complete.
    pub resumed_from: Option<NaiveDate>,
    /// Rows QuestDB acknowledged (from the durability tickets, not the rows handed over).
    pub rows: u64,
    /// Rows QuestDB refused, put in the dead-letter file: their days stay incomplete.
    pub dead_lettered: u64,
    /// Every throttle wait, as decided (floor and cap applied).
    pub waits: Vec<Duration>,
}

/// Why a backfill failed.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("--to {to} is before --from {from}")]
    Range { from: NaiveDate, to: NaiveDate },
    #[error("no source named {name:?} in the configuration (have: {have:?})")]
    NoSource { name: String, have: Vec<String> },
    #[error("{0:?} is a {1} source: it backfills with its own `backfill_days` setting")]
    NotAnApi(String, &'static str),
    #[error("source {0}: {1}")]
    Source(String, SourceError),
    #[error("QuestDB: {0}: nothing was fetched")]
    QuestDb(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Some days are still incomplete; each reason names what to fix. Re-run after fixing it.
    #[error("{complete} days complete, {} incomplete: {}; fix the cause and re-run the same command: only these days are fetched", incomplete.len(), describe(incomplete))]
    Incomplete {
        complete: usize,
        incomplete: Vec<(NaiveDate, String)>,
    },
}

/// Incomplete days, consecutive days with the same reason as one range.
fn describe(days: &[(NaiveDate, String)]) -> String {
    let mut runs: Vec<(NaiveDate, NaiveDate, &str)> = Vec::new();
    for (d, r) in days {
        match runs.last_mut() {
            Some((_, until, reason)) if *reason == r && *until + Days::new(1) == *d => *until = *d,
            _ => runs.push((*d, *d, r)),
        }
    }
    runs.iter()
        .map(|(a, b, r)| {
            if a == b {
                format!("{a}: {r}")
            } else {
                format!("{a}..{b}: {r}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Contiguous runs of `days` (sorted), each cut into windows of at most `chunk_days`.
fn chunks(days: &[NaiveDate], chunk_days: u32) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let max = i64::from(chunk_days.max(1));
    for d in days {
        match out.last_mut() {
            Some(w) if w.until + Days::new(1) == *d && (*d - w.since).num_days() < max => {
                w.until = *d
            }
            _ => out.push(Window {
                since: *d,
                until: *d,
            }),
        }
    }
    out
}

/// Why rows of each day would be rejected (the pipeline only counts them).
fn rejections(
    normalizer: &Normalizer,
    source: &str,
    obs: &[Observation],
    tz: chrono_tz::Tz,
    reporting: chrono_tz::Tz,
) -> BTreeMap<NaiveDate, BTreeSet<String>> {
    let mut out: BTreeMap<NaiveDate, BTreeSet<String>> = BTreeMap::new();
    for o in obs {
        if let Err(e) = normalizer.normalize(source, o.clone()) {
            out.entry(day_of(o, tz, reporting))
                .or_default()
                .insert(e.to_string());
        }
    }
    out
}

pub async fn backfill(
    config: &Config,
    source_name: &str,
    from: NaiveDate,
    to: NaiveDate,
    chunk_days: u32,
    show_progress: bool,
) -> Result<BackfillSummary, BackfillError> {
    if to < from {
        return Err(BackfillError::Range { from, to });
    }
    let source = config
        .sources
        .iter()
        .find(|s| s.name() == source_name)
        .ok_or_else(|| BackfillError::NoSource {
            name: source_name.to_string(),
            have: config
                .sources
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
        })?;
    let reporting = config.timezone();
    let mut poller = match AnyPoller::from_config(source, reporting) {
        None => {
            return Err(BackfillError::NotAnApi(
                source_name.to_string(),
                source.kind(),
            ));
        }
        Some(p) => p.map_err(|e| BackfillError::Source(source_name.to_string(), e))?,
    };
    let tz = poller.account_timezone();
    let policy = AnyPoller::wait_policy(source);
    let ledger = Ledger::new(&config.general.state_dir);
    let known = ledger.days(source_name)?;
    let complete = |d: &NaiveDate| matches!(known.get(d), Some(DayState::Complete));
    let todo: Vec<NaiveDate> = each_day(from, to).filter(|d| !complete(d)).collect();
    let mut summary = BackfillSummary {
        already_complete: each_day(from, to).filter(complete).count() as u64,
        ..Default::default()
    };
    if todo.is_empty() {
        return Ok(summary);
    }
    if summary.already_complete > 0 {
        summary.resumed_from = todo.first().copied();
    }

    // QuestDB must answer before anything is fetched: a backfill that cannot be stored is only
    // API quota spent.
    let password = config
        .questdb_password()
        .map_err(|e| BackfillError::QuestDb(e.to_string()))?;
    SqlClient::new(&config.questdb, password.clone())
        .ensure_schema()
        .await
        .map_err(|e| BackfillError::QuestDb(e.to_string()))?;
    let telemetry = Arc::new(Telemetry::new());
    let (sink, handle) = QuestDbSink::build(config.questdb.clone(), password, telemetry.clone())
        .map_err(|e| BackfillError::QuestDb(e.to_string()))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let sink_task = tokio::spawn(sink.run(stop.clone()));
    let normalizer = Normalizer::new(
        reporting,
        config.general.reporting_currency.clone(),
        config.fx.clone(),
    );
    let pipeline = Pipeline::new(
        normalizer.clone(),
        Store::new(1),
        Some(handle),
        telemetry.clone(),
    );

    let pb = if show_progress {
        ProgressBar::new(todo.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} days {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(source_name.to_string());

    let incomplete = |days: &mut dyn Iterator<Item = NaiveDate>, reason: &str| {
        days.map(|d| {
            (
                d,
                DayState::Incomplete {
                    reason: reason.to_string(),
                },
            )
        })
        .collect::<Vec<_>>()
    };
    // a reason that makes every later chunk fail too (credentials, a wait beyond the cap)
    let mut stop_reason: Option<String> = None;
    for chunk in chunks(&todo, chunk_days) {
        if let Some(r) = &stop_reason {
            ledger.record(source_name, incomplete(&mut chunk.days(), r))?;
            continue;
        }
        let mut window = chunk;
        let mut backoff = policy.backoff();
        let mut throttles = 0u32;
        loop {
            let (obs, done_until, failure) = window.outcome(poller.poll(window).await);
            if done_until >= window.since {
                let obs = merge_duplicates(obs);
                let why = rejections(&normalizer, source_name, &obs, tz, reporting);
                let by_day = match deliver(&pipeline, source_name, obs, tz).await {
                    Ok(b) => b,
                    Err(e) => {
                        let r = e.to_string();
                        ledger.record(source_name, incomplete(&mut chunk.days(), &r))?;
                        stop_reason = Some(r);
                        break;
                    }
                };
                // counted from the durability tickets: what QuestDB acknowledged, not what was
                // handed over
                let n: u64 = by_day.values().map(|d| (d.stored - d.spooled) as u64).sum();
                let spooled: usize = by_day.values().map(|d| d.spooled).sum();
                summary.rows += n;
                summary.dead_lettered +=
                    by_day.values().map(|d| d.dead_lettered as u64).sum::<u64>();
                // the days count as complete only once QuestDB acknowledged their rows
                if spooled > 0 {
                    let r = format!(
                        "QuestDB stopped acknowledging rows: {spooled} rows are held in the spool ({}) and written by the next run; re-run to confirm these days",
                        config.questdb.spool_dir.display()
                    );
                    ledger.record(source_name, incomplete(&mut chunk.days(), &r))?;
                    stop_reason = Some(r);
                    break;
                }
                let states: Vec<_> = day_states(each_day(window.since, done_until), &by_day)
                    .into_iter()
                    .map(|(d, s)| match (s, why.get(&d)) {
                        (DayState::Incomplete { reason }, Some(w)) => (
                            d,
                            DayState::Incomplete {
                                reason: format!(
                                    "{reason}: {}",
                                    w.iter().cloned().collect::<Vec<_>>().join(", ")
                                ),
                            },
                        ),
                        (s, _) => (d, s),
                    })
                    .collect();
                summary.days += states
                    .iter()
                    .filter(|(_, s)| *s == DayState::Complete)
                    .count() as u64;
                ledger.record(source_name, states)?;
                pb.inc((done_until - window.since).num_days() as u64 + 1);
            }
            let Some(error) = failure else { break };
            window.since = done_until + Days::new(1);
            match error {
                SourceError::Throttled { wait, message } if throttles < 10 => {
                    let w = policy.decide(wait, &mut backoff);
                    if w.exceeds_cap {
                        let resume = Utc::now()
                            + chrono::Duration::from_std(w.asked.unwrap_or(w.wait))
                                .unwrap_or_default();
                        let r = format!(
                            "throttled: the API asks to wait {}s, more than max_throttle_wait_secs ({}s); re-run after {resume}: {message}",
                            w.asked.unwrap_or_default().as_secs(),
                            policy.cap.as_secs()
                        );
                        tracing::warn!(source = %source_name, reason = %r, "backfill stops");
                        ledger.record(source_name, incomplete(&mut window.days(), &r))?;
                        stop_reason = Some(r);
                        break;
                    }
                    throttles += 1;
                    summary.waits.push(w.wait);
                    log_wait(source_name, &message, &w);
                    let resume =
                        Utc::now() + chrono::Duration::from_std(w.wait).unwrap_or_default();
                    pb.set_message(format!(
                        "throttled ({message}): waiting {}s, resumes at {}",
                        w.wait.as_secs(),
                        resume.format("%H:%M:%S UTC")
                    ));
                    tokio::time::sleep(w.wait).await;
                    pb.set_message("");
                }
                e @ (SourceError::Auth(_) | SourceError::Config(_)) => {
                    let r = e.to_string();
                    ledger.record(source_name, incomplete(&mut window.days(), &r))?;
                    stop_reason = Some(r);
                    break;
                }
                e => {
                    let r = e.to_string();
                    tracing::warn!(source = %source_name, since = %window.since, until = %window.until, error = %r, "backfill chunk failed; its days stay incomplete");
                    ledger.record(source_name, incomplete(&mut window.days(), &r))?;
                    break;
                }
            }
        }
    }
    stop.cancel();
    let _ = sink_task.await;
    pb.finish_and_clear();
    let now = ledger.days(source_name)?;
    let mut complete_days = 0;
    let mut left = Vec::new();
    for d in each_day(from, to) {
        match now.get(&d) {
            Some(DayState::Complete) => complete_days += 1,
            Some(DayState::Incomplete { reason }) => left.push((d, reason.clone())),
            None => left.push((d, "not fetched".to_string())),
        }
    }
    if left.is_empty() {
        Ok(summary)
    } else {
        Err(BackfillError::Incomplete {
            complete: complete_days,
            incomplete: left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn chunks_follow_the_missing_days() {
        let days: Vec<NaiveDate> = [
            "2026-10-01",
            "2026-10-02",
            "2026-10-03",
            "2026-10-08",
            "2026-10-09",
        ]
        .iter()
        .map(|s| d(s))
        .collect();
        let c = chunks(&days, 2);
        assert_eq!(
            c,
            vec![
                Window {
                    since: d("2026-10-01"),
                    until: d("2026-10-02")
                },
                Window {
                    since: d("2026-10-03"),
                    until: d("2026-10-03")
                },
                Window {
                    since: d("2026-10-08"),
                    until: d("2026-10-09")
                },
            ]
        );
    }

    #[test]
    fn incomplete_days_are_listed_with_their_reasons() {
        let e = BackfillError::Incomplete {
            complete: 5,
            incomplete: vec![
                (d("2026-10-08"), "no FX".into()),
                (d("2026-10-09"), "no FX".into()),
                (d("2026-10-11"), "quota".into()),
            ],
        };
        let s = e.to_string();
        assert!(
            s.starts_with(
                "5 days complete, 3 incomplete: 2026-10-08..2026-10-09: no FX; 2026-10-11: quota"
            ),
            "{s}"
        );
    }
}
