//! GA4 Data API `properties/{id}:runReport`: funnel events (session_start, view_item, add_to_cart,
//! begin_checkout, purchase) by day or hour and by session source/medium. One request per day
//! (GA4 samples long ranges), offset/limit pagination, `returnPropertyQuota` read on every answer
//! so polling backs off *before* a quota is gone: every quota in `propertyQuota` is watched
//! (tokens per day, per hour and per project per hour, server errors), and a 429 waits for the
//! quota it names. A pause part-way through a window is a [`SourceError::Partial`]: the days read
//! so far are delivered, the rest stay incomplete in the ledger. An answer whose dimension or
//! metric headers are not the ones requested is an error, never "0 rows".

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

use crate::base::Problem;
use crate::normalize::{Observation, RawFunnel};
use crate::platforms::google::{Ga4Quota, GoogleOAuth, OAuthSettings, ga4_quotas};
use crate::records::{Bucket, FUNNEL_STAGES};
use crate::sources::SourceContext;
use crate::sources::http::{
    LoopSettings, PollSource, SourceError, Window, run_polling, send_with_retry,
};

/// Time dimension of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Dimension `date`.
    Day,
    /// Dimension `dateHour`.
    Hour,
}

/// Settings of one GA4 property.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4Config {
    /// Name of this source instance.
    pub name: String,
    /// GA4 property id (digits).
    pub property_id: String,
    /// API version, pinned.
    #[serde(default = "default_version")]
    pub api_version: String,
    /// API base URL (a local server in tests).
    #[serde(default = "default_base")]
    pub base_url: String,
    /// OAuth token endpoint.
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// Environment variable holding the OAuth client id.
    #[serde(default = "default_client_id_env")]
    pub client_id_env: String,
    /// Environment variable holding the OAuth client secret.
    #[serde(default = "default_client_secret_env")]
    pub client_secret_env: String,
    /// File holding the OAuth client secret (takes precedence over the variable).
    #[serde(default)]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Environment variable holding the OAuth refresh token.
    #[serde(default = "default_refresh_env")]
    pub refresh_token_env: String,
    /// File holding the OAuth refresh token (takes precedence over the variable).
    #[serde(default)]
    pub refresh_token_file: Option<std::path::PathBuf>,
    /// The property's reporting timezone.
    #[serde(default = "default_tz")]
    pub property_timezone: String,
    /// `day` (dimension `date`) or `hour` (dimension `dateHour`).
    #[serde(default = "default_granularity")]
    pub granularity: Granularity,
    /// Days re-read every poll.
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Rows per page.
    #[serde(default = "default_limit")]
    pub page_limit: u32,
    /// Stop a poll when fewer tokens than this remain in any token quota (per day, per hour,
    /// per project per hour).
    #[serde(default = "default_min_tokens")]
    pub min_tokens_remaining: u64,
    /// Longest throttle wait honoured, in seconds; a longer wait leaves the days incomplete.
    #[serde(default = "default_max_wait")]
    pub max_throttle_wait_secs: u64,
    /// Shortest throttle wait, in seconds.
    #[serde(default = "default_min_wait")]
    pub min_throttle_wait_secs: u64,
    /// Request timeout, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_version() -> String {
    crate::platforms::google::GA4_API_VERSION.into()
}
fn default_base() -> String {
    crate::platforms::google::GA4_BASE_URL.into()
}
fn default_token_url() -> String {
    crate::platforms::google::TOKEN_URL.into()
}
fn default_min_wait() -> u64 {
    5
}
fn default_client_id_env() -> String {
    "ADPULSE_GA4_CLIENT_ID".into()
}
fn default_client_secret_env() -> String {
    "ADPULSE_GA4_CLIENT_SECRET".into()
}
fn default_refresh_env() -> String {
    "ADPULSE_GA4_REFRESH_TOKEN".into()
}
fn default_tz() -> String {
    "Asia/Kolkata".into()
}
fn default_granularity() -> Granularity {
    Granularity::Hour
}
fn default_lookback() -> u32 {
    3
}
fn default_interval() -> u64 {
    900
}
fn default_limit() -> u32 {
    10_000
}
fn default_min_tokens() -> u64 {
    200
}
fn default_max_wait() -> u64 {
    3600
}
fn default_timeout() -> u64 {
    60
}

impl Ga4Config {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.property_id.is_empty() || !self.property_id.chars().all(|c| c.is_ascii_digit()) {
            p.push(Problem {
                key: "property_id".into(),
                message: format!("{:?} is not a GA4 property id (digits)", self.property_id),
            });
        }
        if self.property_timezone.parse::<Tz>().is_err() {
            p.push(Problem {
                key: "property_timezone".into(),
                message: format!("{:?} is not an IANA timezone", self.property_timezone),
            });
        }
        if self.page_limit == 0 || self.page_limit > 250_000 {
            p.push(Problem {
                key: "page_limit".into(),
                message: "must be between 1 and 250000".into(),
            });
        }
        if self.lookback_days == 0 {
            p.push(Problem {
                key: "lookback_days".into(),
                message: "must be at least 1".into(),
            });
        }
        p
    }
}

/// One parsed page: observations, total rows of the report, what every quota has left.
#[derive(Debug)]
pub struct ReportPage {
    pub observations: Vec<Observation>,
    pub row_count: u64,
    pub rows_in_page: u64,
    /// `remaining` of each quota in `propertyQuota`.
    pub quotas: Vec<(Ga4Quota, u64)>,
}

/// The dimensions every request asks for, in order, after the time dimension.
const DIMENSIONS: [&str; 2] = ["sessionSourceMedium", "eventName"];

fn time_dimension(g: Granularity) -> &'static str {
    match g {
        Granularity::Day => "date",
        Granularity::Hour => "dateHour",
    }
}

/// Parse a `runReport` response with dimensions (date|dateHour, sessionSourceMedium, eventName)
/// and metric eventCount. A daily row keeps the property's date, stamped at midnight of it in
/// `reporting_tz`; an hourly row is the instant the property's hour began.
pub fn parse_report(
    body: &str,
    tz: Tz,
    reporting_tz: Tz,
    granularity: Granularity,
) -> Result<ReportPage, SourceError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| SourceError::Malformed(format!("runReport: {e}")))?;
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    let names = |k: &str| -> Vec<String> {
        v[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["name"].as_str().map(str::to_string))
            .collect()
    };
    let (dims, metrics) = (names("dimensionHeaders"), names("metricHeaders"));
    let want: Vec<&str> = std::iter::once(time_dimension(granularity))
        .chain(DIMENSIONS)
        .collect();
    // GA4 returns the headers even when there are no rows: other headers mean another report
    if (!dims.is_empty() || !rows.is_empty()) && (dims != want || metrics != ["eventCount"]) {
        return Err(SourceError::Malformed(format!(
            "runReport answered dimensions {dims:?} and metrics {metrics:?}; requested {want:?} and [\"eventCount\"]"
        )));
    }
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let dims = r["dimensionValues"].as_array();
        let dim = |k: usize| {
            dims.and_then(|d| d.get(k))
                .and_then(|d| d["value"].as_str())
                .ok_or_else(|| SourceError::Malformed(format!("row {i}: dimension {k} missing")))
        };
        let (when, traffic, event) = (dim(0)?, dim(1)?, dim(2)?);
        let count: u64 = r["metricValues"][0]["value"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                SourceError::Malformed(format!(
                    "row {i}: eventCount {:?}",
                    r["metricValues"][0]["value"]
                ))
            })?;
        let local = match granularity {
            Granularity::Day => NaiveDate::parse_from_str(when, "%Y%m%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default()),
            Granularity::Hour => NaiveDateTime::parse_from_str(&format!("{when}00"), "%Y%m%d%H%M"),
        }
        .map_err(|_| SourceError::Malformed(format!("row {i}: date {when:?}")))?;
        let stamp_tz = match granularity {
            Granularity::Day => reporting_tz,
            Granularity::Hour => tz,
        };
        let ts = stamp_tz
            .from_local_datetime(&local)
            .earliest()
            .map(|d| d.with_timezone(&chrono::Utc))
            .ok_or_else(|| {
                SourceError::Malformed(format!("row {i}: {when:?} does not exist in {tz}"))
            })?;
        if !FUNNEL_STAGES.contains(&event) {
            continue;
        }
        out.push(Observation::Funnel(RawFunnel {
            ts,
            bucket: match granularity {
                Granularity::Day => Bucket::Day,
                Granularity::Hour => Bucket::Hour,
            },
            stage: event.to_string(),
            traffic_source: traffic.to_string(),
            count,
        }));
    }
    Ok(ReportPage {
        rows_in_page: rows.len() as u64,
        observations: out,
        row_count: v["rowCount"].as_u64().unwrap_or(0),
        quotas: ga4_quotas(&v["propertyQuota"]),
    })
}

/// The quota among `quotas` that is too low to go on with, if any.
pub fn exhausted(quotas: &[(Ga4Quota, u64)], min_tokens: u64) -> Option<(Ga4Quota, u64)> {
    quotas.iter().copied().find(|(q, left)| match q {
        Ga4Quota::TokensPerDay | Ga4Quota::TokensPerHour | Ga4Quota::TokensPerProjectPerHour => {
            *left < min_tokens
        }
        Ga4Quota::ServerErrorsPerProjectPerHour => *left == 0,
        // one request at a time here; thresholded requests only lower precision
        Ga4Quota::ConcurrentRequests | Ga4Quota::PotentiallyThresholdedRequestsPerHour => false,
    })
}

pub struct Ga4Source {
    cfg: Ga4Config,
    tz: Tz,
    reporting_tz: Tz,
    http: reqwest::Client,
    oauth: GoogleOAuth,
    /// A quota is used up: no request before this instant, and why.
    pause: Option<(Instant, String)>,
}

impl Ga4Source {
    pub fn new(cfg: Ga4Config, reporting_tz: Tz) -> Result<Self, SourceError> {
        let tz = crate::sources::http::timezone("property_timezone", &cfg.property_timezone)?;
        let http = crate::sources::http::client(cfg.timeout_secs)?;
        let oauth = GoogleOAuth::new(OAuthSettings {
            token_url: cfg.token_url.clone(),
            client_id_env: cfg.client_id_env.clone(),
            client_id_file: None,
            client_secret_env: cfg.client_secret_env.clone(),
            client_secret_file: cfg.client_secret_file.clone(),
            refresh_token_env: cfg.refresh_token_env.clone(),
            refresh_token_file: cfg.refresh_token_file.clone(),
        });
        Ok(Self {
            cfg,
            tz,
            reporting_tz,
            http,
            oauth,
            pause: None,
        })
    }

    /// The throttle error for a used-up quota, and the pause it sets.
    fn quota_pause(
        &mut self,
        quota: Ga4Quota,
        detail: String,
        asked: Option<Duration>,
    ) -> SourceError {
        let wait = quota.refill_wait(chrono::Utc::now()).or(asked);
        let message = format!("GA4 quota {} {detail}", quota.field());
        if let Some(w) = wait {
            self.pause = Some((Instant::now() + w, message.clone()));
        }
        tracing::warn!(property = %self.cfg.property_id, quota = quota.field(), %detail, wait_secs = wait.map(|w| w.as_secs()), "GA4 quota: pausing this source");
        SourceError::Throttled { wait, message }
    }

    /// One `runReport` page. Concurrent-request 429s are retried here after a short backoff.
    async fn page(
        &mut self,
        url: &str,
        token: &crate::base::Secret,
        body: &serde_json::Value,
    ) -> Result<ReportPage, SourceError> {
        let policy = crate::platforms::WaitPolicy::new(
            self.cfg.min_throttle_wait_secs,
            self.cfg.max_throttle_wait_secs,
        );
        let mut backoff = policy.backoff();
        for _ in 0..5 {
            let http = &self.http;
            let answer = send_with_retry("ga4 runReport", || async {
                let auth =
                    crate::sources::http::secret_header(&format!("Bearer {}", token.expose()))?;
                let resp = http
                    .post(url)
                    .header(reqwest::header::AUTHORIZATION, auth)
                    .json(body)
                    .send()
                    .await
                    .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
                let status = resp.status().as_u16();
                let text = resp
                    .text()
                    .await
                    .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
                if status >= 400 {
                    return Err(crate::platforms::google::classify(status, &text).into());
                }
                parse_report(&text, self.tz, self.reporting_tz, self.cfg.granularity)
            })
            .await;
            match answer {
                Ok(p) => return Ok(p),
                Err(SourceError::Throttled { wait, message }) => {
                    match Ga4Quota::from_message(&message) {
                        Some(Ga4Quota::ConcurrentRequests) => {
                            let w = policy.decide(wait, &mut backoff);
                            crate::sources::http::log_wait(&self.cfg.name, &message, &w);
                            tokio::time::sleep(w.wait).await;
                        }
                        Some(q) => return Err(self.quota_pause(q, message, wait)),
                        None => return Err(SourceError::Throttled { wait, message }),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(SourceError::Throttled {
            wait: None,
            message: "GA4 concurrent requests quota: still exhausted after 5 tries".into(),
        })
    }
}

impl PollSource for Ga4Source {
    fn account_timezone(&self) -> Tz {
        self.tz
    }

    async fn poll(&mut self, window: Window) -> Result<Vec<Observation>, SourceError> {
        if let Some((until, why)) = &self.pause {
            let now = Instant::now();
            if now < *until {
                return Err(SourceError::Throttled {
                    wait: Some(*until - now),
                    message: format!("{why}; waiting for it to refill"),
                });
            }
            self.pause = None;
        }
        let token = self.oauth.access_token(&self.http).await?;
        let url = format!(
            "{}/{}/properties/{}:runReport",
            self.cfg.base_url.trim_end_matches('/'),
            self.cfg.api_version,
            self.cfg.property_id
        );
        let time_dim = time_dimension(self.cfg.granularity);
        let mut out = Vec::new();
        // a stop part-way keeps the days already read in full
        let partial = |out: Vec<Observation>, day: NaiveDate, cause: SourceError| {
            if day == window.since {
                cause
            } else {
                SourceError::Partial {
                    observations: out,
                    incomplete_from: day,
                    cause: Box::new(cause),
                }
            }
        };
        // one day per request: GA4 samples long ranges
        for day in window.days() {
            let mut offset: u64 = 0;
            let mut rows_of_day = Vec::new();
            loop {
                let body = serde_json::json!({
                    "dateRanges": [{"startDate": day.to_string(), "endDate": day.to_string()}],
                    "dimensions": [{"name": time_dim}, {"name": DIMENSIONS[0]}, {"name": DIMENSIONS[1]}],
                    "metrics": [{"name": "eventCount"}],
                    "dimensionFilter": {"filter": {"fieldName": "eventName", "inListFilter": {"values": FUNNEL_STAGES}}},
                    "limit": self.cfg.page_limit.to_string(),
                    "offset": offset.to_string(),
                    "returnPropertyQuota": true,
                });
                let page = match self.page(&url, &token, &body).await {
                    Ok(p) => p,
                    Err(e) => return Err(partial(out, day, e)),
                };
                rows_of_day.extend(page.observations);
                offset += page.rows_in_page;
                let done = page.rows_in_page == 0 || offset >= page.row_count;
                if let Some((q, left)) = exhausted(&page.quotas, self.cfg.min_tokens_remaining) {
                    let detail = format!("has {left} left (below the limit)");
                    if done {
                        out.extend(std::mem::take(&mut rows_of_day));
                        let next = day + chrono::Days::new(1);
                        let e = self.quota_pause(q, detail, None);
                        if next > window.until {
                            // everything was read; only the next poll waits
                            return Ok(out);
                        }
                        return Err(partial(out, next, e));
                    }
                    let e = self.quota_pause(q, detail, None);
                    return Err(partial(out, day, e));
                }
                if done {
                    break;
                }
            }
            out.extend(rows_of_day);
        }
        Ok(out)
    }
}

pub async fn run(cfg: Ga4Config, ctx: SourceContext) {
    let settings = LoopSettings {
        interval: Duration::from_secs(cfg.interval_secs),
        lookback_days: cfg.lookback_days,
        wait: crate::platforms::WaitPolicy::new(
            cfg.min_throttle_wait_secs,
            cfg.max_throttle_wait_secs,
        ),
    };
    match Ga4Source::new(cfg, ctx.pipeline.timezone()) {
        Ok(s) => run_polling(s, settings, ctx, "ga4").await,
        Err(error) => {
            ctx.pipeline
                .telemetry()
                .source(&ctx.name, "ga4")
                .poll_failed(Duration::ZERO);
            tracing::error!(source = %ctx.name, %error, "ga4 source not started");
        }
    }
}
