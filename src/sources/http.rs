//! The one polling loop every HTTP source shares (vector's `http_client` pattern): each source
//! only says how to build its requests and parse its responses ([`PollSource`]); this module owns
//! the schedule, the restatement look-back window, gap filling after an outage (from the sync
//! cursor and the completeness ledger), throttling waits (a floor, a cap, logged with the reason and
//! the time polling resumes), retries of transient failures, self-metrics and hand-over to the
//! pipeline, day by day so that a day whose rows were rejected is recorded as incomplete.

use backon::{ExponentialBuilder, Retryable};
use chrono::{Duration as CDuration, NaiveDate, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::normalize::Observation;
use crate::platforms::{ApiFault, FaultKind, Wait, WaitPolicy};
use crate::sources::SourceContext;
use crate::sources::ledger::{DayState, Ledger, each_day};

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("authentication failed: {0} (check the token; nothing is retried until it changes)")]
    Auth(String),
    /// `wait` is what the API asked for, if it named a wait; the loop applies floor and cap.
    #[error("throttled by the API{}: {message}", wait.map(|w| format!(" (it asks to wait {}s)", w.as_secs())).unwrap_or_default())]
    Throttled {
        wait: Option<Duration>,
        message: String,
    },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("refused by the API: {0}")]
    Rejected(String),
    #[error("temporary API failure: {0}")]
    Transient(String),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("configuration: {0}")]
    Config(String),
    /// Some days were read completely before `cause` stopped the poll: `observations` hold
    /// every row of the days before `incomplete_from`, and nothing of the days from it on.
    #[error("stopped at {incomplete_from}: {cause}")]
    Partial {
        observations: Vec<Observation>,
        incomplete_from: NaiveDate,
        cause: Box<SourceError>,
    },
}

impl SourceError {
    /// A request that got no answer, without its URL (it may carry an account id or a shop
    /// domain, never worth a log line).
    pub fn transport(e: reqwest::Error) -> Self {
        SourceError::Transport(e.without_url().to_string())
    }

    /// Worth retrying at once (with backoff) inside one poll.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Transport(_) | SourceError::Transient(_) => true,
            SourceError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

impl From<ApiFault> for SourceError {
    fn from(f: ApiFault) -> Self {
        match f.kind {
            FaultKind::Throttled => SourceError::Throttled {
                wait: f.retry_after,
                message: f.message,
            },
            FaultKind::Transient => SourceError::Transient(f.message),
            FaultKind::Auth => SourceError::Auth(f.message),
            FaultKind::Rejected => SourceError::Rejected(f.message),
        }
    }
}

impl From<crate::platforms::SecretError> for SourceError {
    fn from(e: crate::platforms::SecretError) -> Self {
        SourceError::Config(e.to_string())
    }
}

impl From<crate::platforms::google::OAuthError> for SourceError {
    fn from(e: crate::platforms::google::OAuthError) -> Self {
        use crate::platforms::google::OAuthError as O;
        match e {
            O::Secret(s) => SourceError::Config(s.to_string()),
            O::Refused(_) => SourceError::Auth(e.to_string()),
            O::Unavailable(_) => SourceError::Transport(e.to_string()),
            O::Malformed => SourceError::Malformed(e.to_string()),
        }
    }
}

/// The days one poll covers: the restatement look-back, inclusive, in the account's timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: NaiveDate,
    pub until: NaiveDate,
}

impl Window {
    pub fn lookback(today: NaiveDate, days: u32) -> Self {
        Window {
            since: today - CDuration::days(i64::from(days.saturating_sub(1))),
            until: today,
        }
    }

    /// The last `days` days of this window (the part also read hour by hour), if any.
    pub fn last_days(self, days: u32) -> Option<Window> {
        (days > 0).then(|| Window {
            since: Window::lookback(self.until, days).since.max(self.since),
            until: self.until,
        })
    }

    pub fn days(self) -> impl Iterator<Item = NaiveDate> {
        each_day(self.since, self.until)
    }

    /// What a poll of this window brought: its observations, the last day it read completely
    /// (the day before `since` when it read none), and why it stopped short, if it did.
    pub fn outcome(
        self,
        polled: Result<Vec<Observation>, SourceError>,
    ) -> (Vec<Observation>, NaiveDate, Option<SourceError>) {
        match polled {
            Ok(obs) => (obs, self.until, None),
            Err(SourceError::Partial {
                observations,
                incomplete_from,
                cause,
            }) => (
                observations,
                incomplete_from - CDuration::days(1),
                Some(*cause),
            ),
            Err(e) => (Vec::new(), self.since - CDuration::days(1), Some(e)),
        }
    }
}

/// What an HTTP source implements.
pub trait PollSource: Send {
    /// Timezone of the account (its "today").
    fn account_timezone(&self) -> Tz;
    /// Fetch every page for the window and parse it.
    fn poll(
        &mut self,
        window: Window,
    ) -> impl Future<Output = Result<Vec<Observation>, SourceError>> + Send;
}

/// Shared HTTP helper: one request with transient failures retried (exponential backoff with
/// jitter); throttling and auth errors are returned to the caller unchanged.
pub async fn send_with_retry<F, Fut, T>(what: &str, mut attempt: F) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SourceError>>,
{
    (|| attempt())
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(4)
                .with_jitter(),
        )
        .when(SourceError::is_transient)
        .notify(
            |e, d| warn!(request = %what, error = %e, retry_in = ?d, "transient failure, retrying"),
        )
        .await
}

/// An HTTP client for an API source (TLS provider installed, request timeout set).
pub fn client(timeout_secs: u64) -> Result<reqwest::Client, SourceError> {
    crate::platforms::http_client(timeout_secs).map_err(|e| SourceError::Config(e.to_string()))
}

/// A configured timezone, or a config error naming the key.
pub fn timezone(key: &str, value: &str) -> Result<Tz, SourceError> {
    value
        .parse()
        .map_err(|_| SourceError::Config(format!("{key} {value:?} is not an IANA timezone")))
}

/// A secret through the crate's one loader ([`crate::platforms::load_secret`]).
pub fn read_secret(
    file: Option<&std::path::Path>,
    env: &str,
) -> Result<crate::base::Secret, SourceError> {
    Ok(crate::platforms::require_secret(file, env)?)
}

/// A header value holding a secret, marked sensitive so it is never printed.
pub fn secret_header(value: &str) -> Result<reqwest::header::HeaderValue, SourceError> {
    let mut h = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        SourceError::Config("a token has characters not allowed in a header".into())
    })?;
    h.set_sensitive(true);
    Ok(h)
}

/// Longest gap the polling loop fills by itself after an outage, in days. Older missing days are
/// recorded as incomplete in the ledger, for `adpulse backfill` to fetch.
pub const MAX_GAP_DAYS: i64 = 90;

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub interval: Duration,
    pub lookback_days: u32,
    /// Floor and cap (`max_throttle_wait_secs`) of every throttle wait.
    pub wait: WaitPolicy,
}

/// Log one throttle wait with its reason and the time work resumes.
pub fn log_wait(source: &str, reason: &str, w: &Wait) {
    let resume_at = Utc::now() + CDuration::from_std(w.wait).unwrap_or_default();
    if w.exceeds_cap {
        warn!(source = %source, %reason, wait_secs = w.wait.as_secs(), asked_secs = w.asked.map(|a| a.as_secs()), %resume_at,
            "throttled: the API asks for longer than max_throttle_wait_secs; waiting the maximum");
    } else {
        warn!(source = %source, %reason, wait_secs = w.wait.as_secs(), asked_secs = w.asked.map(|a| a.as_secs()), %resume_at,
            "throttled: waiting");
    }
}

/// Sum the rows of one batch that share a key (several ads of one campaign, ad-by-product rows,
/// ad-group rows of one campaign day): a sink upserts by key, so storing them one by one would
/// keep only the last. Orders are events with their own ids and are left alone.
pub fn merge_duplicates(batch: Vec<Observation>) -> Vec<Observation> {
    use crate::normalize::{RawCampaignStat, RawFunnel};
    let mut out: Vec<Observation> = Vec::with_capacity(batch.len());
    let mut campaigns: BTreeMap<(String, String, String, i64, crate::records::Bucket), usize> =
        BTreeMap::new();
    let mut funnel: BTreeMap<(String, String, i64, crate::records::Bucket), usize> =
        BTreeMap::new();
    let mut ads: BTreeMap<
        (
            crate::records::CampaignKey,
            String,
            String,
            i64,
            crate::records::Bucket,
        ),
        usize,
    > = BTreeMap::new();
    for o in batch {
        match o {
            Observation::Campaign(c) => {
                let k = (
                    c.key.platform.clone(),
                    c.key.account.clone(),
                    c.key.campaign_id.clone(),
                    c.ts.timestamp(),
                    c.bucket,
                );
                match campaigns.get(&k) {
                    Some(&i) => {
                        if let Observation::Campaign(RawCampaignStat {
                            spend,
                            conversion_value,
                            impressions,
                            clicks,
                            conversions,
                            ..
                        }) = &mut out[i]
                        {
                            *spend += c.spend;
                            *conversion_value += c.conversion_value;
                            *impressions += c.impressions;
                            *clicks += c.clicks;
                            *conversions += c.conversions;
                        }
                    }
                    None => {
                        campaigns.insert(k, out.len());
                        out.push(Observation::Campaign(c));
                    }
                }
            }
            Observation::Funnel(f) => {
                let k = (
                    f.stage.clone(),
                    f.traffic_source.clone(),
                    f.ts.timestamp(),
                    f.bucket,
                );
                match funnel.get(&k) {
                    Some(&i) => {
                        if let Observation::Funnel(RawFunnel { count, .. }) = &mut out[i] {
                            *count += f.count;
                        }
                    }
                    None => {
                        funnel.insert(k, out.len());
                        out.push(Observation::Funnel(f));
                    }
                }
            }
            // ad-by-product rows, or one ad's rows over several pages of one answer
            Observation::Ad(a) => {
                let k = (
                    a.stat.key.clone(),
                    a.ad.adset_id.clone(),
                    a.ad.ad_id.clone(),
                    a.stat.ts.timestamp(),
                    a.stat.bucket,
                );
                match ads.get(&k) {
                    Some(&i) => {
                        if let Observation::Ad(into) = &mut out[i] {
                            into.stat.spend += a.stat.spend;
                            into.stat.conversion_value += a.stat.conversion_value;
                            into.stat.impressions += a.stat.impressions;
                            into.stat.clicks += a.stat.clicks;
                            into.stat.conversions += a.stat.conversions;
                        }
                    }
                    None => {
                        ads.insert(k, out.len());
                        out.push(Observation::Ad(a));
                    }
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The account-timezone day an observation belongs to. Daily rows are stamped at midnight of
/// the account's date in the reporting timezone (`reporting`); every other row is an instant.
pub fn day_of(o: &Observation, tz: Tz, reporting: Tz) -> NaiveDate {
    use crate::records::Bucket;
    let (ts, daily) = match o {
        Observation::Campaign(c) => (c.ts, c.bucket == Bucket::Day),
        Observation::Ad(a) => (a.stat.ts, a.stat.bucket == Bucket::Day),
        Observation::Order(o) => (o.ts, false),
        Observation::Funnel(f) => (f.ts, f.bucket == Bucket::Day),
        Observation::Line(l) => (l.ts, false),
        Observation::Touch(t) => (t.ts, false),
        Observation::Region(r) => (r.stat.ts, r.stat.bucket == Bucket::Day),
    };
    ts.with_timezone(if daily { &reporting } else { &tz })
        .date_naive()
}

/// What happened to one day's rows on their way to the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayDelivery {
    /// Rows after merging duplicates.
    pub rows: usize,
    /// Rows durably stored (acknowledged by QuestDB or spooled): not those normalize rejected,
    /// nor those QuestDB refused.
    pub stored: usize,
    /// Of `rows`, refused by QuestDB and put in the dead-letter file.
    pub dead_lettered: usize,
    /// Of `stored`, held in the spool (QuestDB unreachable), not yet in QuestDB.
    pub spooled: usize,
}

/// Hand a batch to the pipeline one account day at a time, after summing rows that share a key,
/// and wait until every day's rows are durable. Returns per day how many rows there were and how
/// many were stored; a day with fewer stored
/// than rows had rows rejected (the pipeline logs each reason).
pub async fn deliver(
    pipeline: &crate::pipeline::Pipeline,
    source: &str,
    batch: Vec<Observation>,
    tz: Tz,
) -> Result<BTreeMap<NaiveDate, DayDelivery>, crate::pipeline::EmitError> {
    let mut by_day: BTreeMap<NaiveDate, Vec<Observation>> = BTreeMap::new();
    let reporting = pipeline.timezone();
    for o in merge_duplicates(batch) {
        by_day.entry(day_of(&o, tz, reporting)).or_default().push(o);
    }
    let mut tickets = Vec::with_capacity(by_day.len());
    for (day, obs) in by_day {
        let rows = obs.len();
        tickets.push((day, rows, pipeline.deliver(source, obs, None).await?));
    }
    // a day counts only once its rows are durable (QuestDB acknowledged or spool fsynced)
    let mut out = BTreeMap::new();
    for (day, rows, t) in tickets {
        let s = t.settled().await?;
        out.insert(
            day,
            DayDelivery {
                rows,
                stored: s.stored(),
                dead_lettered: s.dead_lettered,
                spooled: s.spooled,
            },
        );
    }
    Ok(out)
}

/// The ledger states of `days` after a delivery: complete when every row was stored.
pub fn day_states(
    days: impl Iterator<Item = NaiveDate>,
    delivered: &BTreeMap<NaiveDate, DayDelivery>,
) -> Vec<(NaiveDate, DayState)> {
    days.map(|d| {
        let s = match delivered.get(&d) {
            Some(x) if x.dead_lettered > 0 => DayState::Incomplete {
                reason: format!(
                    "{} of {} rows refused by QuestDB (in the dead-letter file, see the sink's log)",
                    x.dead_lettered, x.rows
                ),
            },
            Some(x) if x.stored < x.rows => DayState::Incomplete {
                reason: format!(
                    "{} of {} rows rejected by normalize (see the `record rejected` log lines)",
                    x.rows - x.stored,
                    x.rows
                ),
            },
            _ => DayState::Complete,
        };
        (d, s)
    })
    .collect()
}

/// The window of the next poll: the look-back, extended back to the day after the last synced
/// day and to the oldest incomplete day, but not further than [`MAX_GAP_DAYS`]. Missing days older
/// than that are returned separately, to be recorded as incomplete for a backfill.
pub fn next_window(
    today: NaiveDate,
    lookback_days: u32,
    synced_until: Option<NaiveDate>,
    oldest_incomplete: Option<NaiveDate>,
) -> (Window, Option<Window>) {
    let mut w = Window::lookback(today, lookback_days);
    // a look-back longer than the gap limit is the user's explicit choice
    let oldest_allowed = (today - CDuration::days(MAX_GAP_DAYS - 1)).min(w.since);
    let wanted = [
        Some(w.since),
        synced_until.map(|d| d + CDuration::days(1)),
        oldest_incomplete,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(w.since);
    let beyond = (wanted < oldest_allowed).then(|| Window {
        since: wanted,
        until: oldest_allowed - CDuration::days(1),
    });
    w.since = wanted.max(oldest_allowed);
    (w, beyond)
}

/// Poll forever: the look-back window each time (restatements are upserted downstream), extended
/// over any gap since the last successful poll and over the ledger's incomplete days.
pub async fn run_polling<S: PollSource>(
    mut source: S,
    settings: LoopSettings,
    ctx: SourceContext,
    kind: &str,
) {
    let stats = ctx.pipeline.telemetry().source(&ctx.name, kind);
    let ledger = Ledger::new(ctx.cursors.state_dir());
    let tz = source.account_timezone();
    let mut backoff = settings.wait.backoff();
    let record = |days: Vec<(NaiveDate, DayState)>| {
        if let Err(error) = ledger.record(&ctx.name, days) {
            warn!(source = %ctx.name, %error, "completeness ledger not saved");
        }
    };
    loop {
        let today = Utc::now().with_timezone(&tz).date_naive();
        let synced = ctx.cursors.get(&ctx.name).ok().and_then(|c| c.synced_until);
        let known = ledger.days(&ctx.name).unwrap_or_default();
        let oldest_incomplete = known
            .iter()
            .find(|(d, s)| {
                matches!(s, DayState::Incomplete { .. })
                    && **d >= today - CDuration::days(MAX_GAP_DAYS - 1)
            })
            .map(|(d, _)| *d);
        let (window, beyond) =
            next_window(today, settings.lookback_days, synced, oldest_incomplete);
        if let Some(b) = beyond {
            let missing: Vec<_> = b
                .days()
                .filter(|d| !matches!(known.get(d), Some(DayState::Complete)))
                .collect();
            if !missing.is_empty() {
                warn!(source = %ctx.name, since = %b.since, until = %b.until,
                    "gap longer than {MAX_GAP_DAYS} days: recorded as incomplete; run `adpulse backfill` for it");
                record(
                    missing
                        .into_iter()
                        .map(|d| {
                            (
                                d,
                                DayState::Incomplete {
                                    reason: format!("outside the {MAX_GAP_DAYS}-day gap the live poll fills: run adpulse backfill --source {} --from {} --to {}", ctx.name, b.since, b.until),
                                },
                            )
                        })
                        .collect(),
                );
            }
        }
        let started = Instant::now();
        let mut wait = settings.interval;
        let (obs, complete_until, failure) = window.outcome(source.poll(window).await);
        let n = obs.len();
        let mut delivered_ok = true;
        if !obs.is_empty() || failure.is_none() {
            match deliver(&ctx.pipeline, &ctx.name, obs, tz).await {
                Ok(by_day) => {
                    record(day_states(each_day(window.since, complete_until), &by_day));
                }
                Err(error) => {
                    delivered_ok = false;
                    warn!(source = %ctx.name, %error, "poll result not delivered");
                    record(
                        window
                            .days()
                            .map(|d| {
                                (
                                    d,
                                    DayState::Incomplete {
                                        reason: error.to_string(),
                                    },
                                )
                            })
                            .collect(),
                    );
                }
            }
        }
        match failure {
            None if delivered_ok => {
                backoff = settings.wait.backoff();
                // data freshness comes from the records (Pipeline::deliver), not the poll time
                stats.poll_ok(started.elapsed(), n, None);
                if let Err(error) = ctx
                    .cursors
                    .update(&ctx.name, |c| c.synced_until = Some(window.until))
                {
                    warn!(source = %ctx.name, %error, "sync cursor not saved");
                }
                info!(source = %ctx.name, rows = n, since = %window.since, until = %window.until, "poll ok");
            }
            None => stats.poll_failed(started.elapsed()),
            Some(error) => {
                // logged before the metric moves, so whoever sees the metric finds the reason
                warn!(source = %ctx.name, %error, "poll failed");
                stats.poll_failed(started.elapsed());
                let reason = error.to_string();
                // days already known complete stay so: a failed re-read loses no stored row
                record(
                    each_day(complete_until + CDuration::days(1), window.until)
                        .filter(|d| !matches!(known.get(d), Some(DayState::Complete)))
                        .map(|d| {
                            (
                                d,
                                DayState::Incomplete {
                                    reason: reason.clone(),
                                },
                            )
                        })
                        .collect(),
                );
                if let SourceError::Throttled {
                    wait: asked,
                    message,
                } = &error
                {
                    let w = settings.wait.decide(*asked, &mut backoff);
                    log_wait(&ctx.name, message, &w);
                    wait = w.wait;
                }
            }
        }
        if let Ok(inc) = ledger.incomplete(&ctx.name) {
            ctx.pipeline
                .telemetry()
                .incomplete_days(&ctx.name, inc.len());
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_outcome_completes_only_the_days_it_read() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let w = Window {
            since: d("2026-11-10"),
            until: d("2026-11-16"),
        };
        let one = || {
            gap_tests::one_order_per_day(Window {
                since: w.since,
                until: w.since,
            })
        };
        let (obs, until, failure) = w.outcome(Ok(one()));
        assert_eq!(
            (obs.len(), until, failure.is_none()),
            (1, d("2026-11-16"), true)
        );
        // read up to the 12th, stopped on the 13th: the 12th is the last complete day
        let partial = SourceError::Partial {
            observations: one(),
            incomplete_from: d("2026-11-13"),
            cause: Box::new(SourceError::Transport("reset".into())),
        };
        let (obs, until, failure) = w.outcome(Err(partial));
        assert_eq!((obs.len(), until), (1, d("2026-11-12")));
        assert!(matches!(failure, Some(SourceError::Transport(_))));
        // nothing read: the day before the window
        let (obs, until, failure) = w.outcome(Err(SourceError::Auth("expired".into())));
        assert_eq!((obs.len(), until), (0, d("2026-11-09")));
        assert!(matches!(failure, Some(SourceError::Auth(_))));
    }

    #[test]
    fn last_days_stays_inside_the_window() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let w = Window::lookback(d("2026-11-20"), 28);
        assert_eq!(w.since, d("2026-10-24"));
        assert_eq!(
            w.last_days(2),
            Some(Window {
                since: d("2026-11-19"),
                until: d("2026-11-20")
            })
        );
        let short = Window {
            since: d("2026-11-20"),
            until: d("2026-11-20"),
        };
        assert_eq!(short.last_days(2), Some(short));
        assert_eq!(w.last_days(0), None);
    }

    #[test]
    fn the_next_window_fills_gaps_up_to_the_limit() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let today = d("2026-11-20");
        // first start: the look-back only
        let (w, beyond) = next_window(today, 3, None, None);
        assert_eq!((w.since, beyond), (d("2026-11-18"), None));
        // stopped 10 days ago: everything since the last synced day
        let (w, _) = next_window(today, 3, Some(d("2026-11-10")), None);
        assert_eq!(w.since, d("2026-11-11"));
        // an incomplete day older than that wins
        let (w, _) = next_window(today, 3, Some(d("2026-11-10")), Some(d("2026-11-02")));
        assert_eq!(w.since, d("2026-11-02"));
        // stopped 200 days ago: 90 days are filled, the rest is handed to backfill
        let (w, beyond) = next_window(today, 3, Some(d("2026-05-04")), None);
        assert_eq!(w.since, d("2026-08-23"));
        assert_eq!(
            beyond,
            Some(Window {
                since: d("2026-05-05"),
                until: d("2026-08-22")
            })
        );
    }

    #[test]
    fn rows_sharing_a_key_are_summed_not_overwritten() {
        use crate::normalize::RawCampaignStat;
        use crate::records::Bucket;
        use rust_decimal_macros::dec;
        let row = |spend: rust_decimal::Decimal, clicks: u64| {
            Observation::Campaign(RawCampaignStat {
                conversion_value: dec!(1.10),
                clicks,
                conversions: 0.5,
                ..RawCampaignStat::test_meta_c1("2026-11-18T08:00:00Z", Bucket::Day, spend, "USD")
            })
        };
        // two ads of one campaign: 8.53 + 14.35 = 22.88
        let m = merge_duplicates(vec![row(dec!(8.53), 1), row(dec!(14.35), 2)]);
        assert_eq!(m.len(), 1);
        let c = m[0].as_campaign().expect("a campaign row");
        assert_eq!(c.spend, dec!(22.88));
        assert_eq!(c.conversion_value, dec!(2.20));
        assert_eq!((c.impressions, c.clicks, c.conversions), (20, 3, 1.0));
    }
}

/// The live loop's waits, in paused (virtual) time: no wall clock is read by the assertions.
#[cfg(test)]
mod loop_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct AlwaysThrottled {
        calls: Arc<Mutex<Vec<tokio::time::Instant>>>,
        asked: Option<Duration>,
    }

    impl PollSource for AlwaysThrottled {
        fn account_timezone(&self) -> Tz {
            chrono_tz::UTC
        }
        async fn poll(&mut self, _w: Window) -> Result<Vec<Observation>, SourceError> {
            self.calls.lock().unwrap().push(tokio::time::Instant::now());
            Err(SourceError::Throttled {
                wait: self.asked,
                message: "code 80000: too many calls".into(),
            })
        }
    }

    /// Polls made in `minutes` virtual minutes, and the gaps between them.
    async fn run_for(asked: Option<Duration>, minutes: u64) -> Vec<Duration> {
        let dir = tempfile::tempdir().unwrap();
        let calls: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
        let cursors = crate::sources::cursor::CursorStore::new(dir.path());
        let ctx = SourceContext::test("meta", 1, None, Arc::new(cursors));
        let settings = LoopSettings {
            interval: Duration::from_secs(900),
            lookback_days: 1,
            wait: WaitPolicy::new(60, 3600),
        };
        let src = AlwaysThrottled {
            calls: calls.clone(),
            asked,
        };
        let stop = ctx.shutdown.clone();
        let task = tokio::spawn(run_polling(src, settings, ctx, "meta"));
        tokio::time::sleep(Duration::from_secs(minutes * 60) - Duration::from_millis(1)).await;
        stop.cancel();
        task.await.unwrap();
        let c = calls.lock().unwrap().clone();
        c.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn usage_headers_at_zero_wait_the_floor_not_zero() {
        // "0 minutes": one request per 60 s floor, 10 in 10 minutes (was a hot loop)
        let gaps = run_for(Some(Duration::ZERO), 10).await;
        assert_eq!(gaps.len() + 1, 10, "requests in 10 throttled minutes");
        assert!(
            gaps.iter().all(|g| *g == Duration::from_secs(60)),
            "{gaps:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_longer_ask_than_the_cap_waits_the_cap() {
        // Google's documented 40591s: the loop waits max_throttle_wait_secs (3600 s), not 11 h
        let gaps = run_for(Some(Duration::from_secs(40591)), 3 * 60).await;
        assert_eq!(gaps, vec![Duration::from_secs(3600); 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_named_wait_backs_off_exponentially_from_the_floor() {
        let gaps = run_for(None, 60).await;
        // 60 s, then about 120 s, 240 s, 480 s... each at least double the floor's step before
        // jitter, never above the cap
        assert!(gaps.len() >= 3, "{gaps:?}");
        for (n, g) in gaps.iter().enumerate() {
            let base = Duration::from_secs(60 << n).min(Duration::from_secs(3600));
            assert!(
                *g >= base && *g <= (base * 2).min(Duration::from_secs(3600)),
                "step {n}: {g:?}"
            );
        }
    }
}

/// The gap-fill promise: a source stopped for longer than its look-back window reads the whole
/// gap when it starts again, and the ledger then holds every day of it as complete.
#[cfg(test)]
pub(crate) mod gap_tests {
    /// One INR 100 order at noon UTC per day of the window: the observations the test sources of
    /// this module and of `pipeline`'s cursor tests poll.
    pub(crate) fn one_order_per_day(w: Window) -> Vec<Observation> {
        w.days()
            .map(|d| {
                Observation::Order(crate::normalize::RawOrder::test_inr(
                    crate::normalize::day_start(d, chrono_tz::UTC) + CDuration::hours(12),
                    (format!("o{d}"), format!("#{d}")),
                    crate::records::OrderKind::Order,
                    dec!(100),
                ))
            })
            .collect()
    }

    use super::*;
    use rust_decimal_macros::dec;
    use std::sync::{Arc, Mutex};

    struct Recorder {
        windows: Arc<Mutex<Vec<Window>>>,
    }

    impl PollSource for Recorder {
        fn account_timezone(&self) -> Tz {
            chrono_tz::UTC
        }
        async fn poll(&mut self, w: Window) -> Result<Vec<Observation>, SourceError> {
            self.windows.lock().unwrap().push(w);
            Ok(one_order_per_day(w))
        }
    }

    #[tokio::test]
    async fn a_restart_after_an_outage_longer_than_the_lookback_fills_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let cursors = Arc::new(crate::sources::cursor::CursorStore::new(dir.path()));
        let today = Utc::now().date_naive();
        // the source last synced 20 days ago; its look-back is 3 days
        cursors
            .update("shop", |c| {
                c.synced_until = Some(today - CDuration::days(20))
            })
            .unwrap();
        let ctx = SourceContext::test("shop", 40, None, cursors.clone());
        let windows: Arc<Mutex<Vec<Window>>> = Arc::default();
        let stop = ctx.shutdown.clone();
        let settings = LoopSettings {
            interval: Duration::from_secs(3600),
            lookback_days: 3,
            wait: WaitPolicy::new(1, 10),
        };
        let task = tokio::spawn(run_polling(
            Recorder {
                windows: windows.clone(),
            },
            settings,
            ctx,
            "shopify",
        ));
        while windows.lock().unwrap().is_empty()
            || cursors.get("shop").unwrap().synced_until != Some(today)
        {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        task.await.unwrap();
        let first = windows.lock().unwrap()[0];
        assert_eq!(
            first,
            Window {
                since: today - CDuration::days(19),
                until: today
            },
            "the first poll after the restart covers the whole gap, not only the look-back"
        );
        let ledger = Ledger::new(dir.path());
        let days = ledger.days("shop").unwrap();
        for d in each_day(today - CDuration::days(19), today) {
            assert_eq!(days.get(&d), Some(&DayState::Complete), "{d}");
        }
        assert!(ledger.incomplete("shop").unwrap().is_empty());
    }
}
