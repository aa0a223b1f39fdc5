//! The one polling loop every HTTP source shares (vector's `http_client` pattern): each source
//! only says how to build its requests and parse its responses ([`PollSource`]); this module owns
//! the schedule, the restatement look-back window, throttling waits, retries of transient
//! failures, self-metrics and hand-over to the pipeline.

use backon::{ExponentialBuilder, Retryable};
use chrono::{Duration as CDuration, NaiveDate, Utc};
use chrono_tz::Tz;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::normalize::Observation;
use crate::sources::SourceContext;

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("authentication failed: {0} (check the token; nothing is retried until it changes)")]
    Auth(String),
    #[error("throttled by the API; it asks to wait {wait:?}: {message}")]
    Throttled { wait: Duration, message: String },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("transport error: {0}")]
    Transport(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl SourceError {
    /// Worth retrying at once (with backoff) inside one poll.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Transport(_) => true,
            SourceError::Http { status, .. } => *status >= 500,
            _ => false,
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
    crate::init_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs))
        .build()
        .map_err(|e| SourceError::Config(e.to_string()))
}

/// A configured timezone, or a config error naming the key.
pub fn timezone(key: &str, value: &str) -> Result<Tz, SourceError> {
    value
        .parse()
        .map_err(|_| SourceError::Config(format!("{key} {value:?} is not an IANA timezone")))
}

/// A secret from its file (when configured; trailing whitespace trimmed) or else from the
/// environment variable `env`. The error names where it looked, never the value.
pub fn read_secret(
    file: Option<&std::path::Path>,
    env: &str,
) -> Result<crate::base::Secret, SourceError> {
    if let Some(f) = file {
        return std::fs::read_to_string(f)
            .map(|t| crate::base::Secret::new(t.trim()))
            .map_err(|e| SourceError::Config(format!("{}: {e}", f.display())));
    }
    std::env::var(env)
        .map(crate::base::Secret::new)
        .map_err(|_| SourceError::Config(format!("${env} is not set (or use the *_file setting)")))
}

/// A header value holding a secret, marked sensitive so it is never printed.
pub fn secret_header(value: &str) -> Result<reqwest::header::HeaderValue, SourceError> {
    let mut h = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        SourceError::Config("a token has characters not allowed in a header".into())
    })?;
    h.set_sensitive(true);
    Ok(h)
}

/// Longest gap the polling loop fills by itself after an outage, in days.
pub const MAX_GAP_DAYS: i64 = 90;

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub interval: Duration,
    pub lookback_days: u32,
    /// Longest wait honoured for a throttle; longer waits are capped (and logged).
    pub max_throttle_wait: Duration,
}

/// Poll forever: the look-back window each time (restatements are upserted downstream).
pub async fn run_polling<S: PollSource>(
    mut source: S,
    settings: LoopSettings,
    ctx: SourceContext,
    kind: &str,
) {
    let stats = ctx.pipeline.telemetry().source(&ctx.name, kind);
    loop {
        let today = Utc::now()
            .with_timezone(&source.account_timezone())
            .date_naive();
        let window = Window::lookback(today, settings.lookback_days);
        let started = Instant::now();
        let mut wait = settings.interval;
        match source.poll(window).await {
            Ok(obs) => {
                let n = obs.len();
                // the cursor moves only once the rows are durable (QuestDB acked or spool fsynced)
                match ctx.pipeline.emit_durable(&ctx.name, obs, None).await {
                    Ok(_) => {
                        stats.poll_ok(started.elapsed(), n, Some(Utc::now()));
                        if let Err(error) = ctx
                            .cursors
                            .update(&ctx.name, |c| c.synced_until = Some(window.until))
                        {
                            warn!(source = %ctx.name, %error, "sync cursor not saved");
                        }
                        info!(source = %ctx.name, rows = n, since = %window.since, until = %window.until, "poll ok");
                    }
                    Err(error) => {
                        stats.poll_failed(started.elapsed());
                        warn!(source = %ctx.name, %error, "poll result not delivered");
                    }
                }
            }
            Err(error) => {
                // logged before the metric moves, so whoever sees the metric finds the reason
                warn!(source = %ctx.name, %error, "poll failed");
                stats.poll_failed(started.elapsed());
                if let SourceError::Throttled { wait: w, .. } = &error {
                    wait = (*w)
                        .min(settings.max_throttle_wait)
                        .max(Duration::from_secs(1));
                }
            }
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
}
