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
use crate::platforms::google::{
    GA4_ENV_PREFIX, Ga4Quota, GoogleOAuth, GoogleOAuthConfig, ga4_quotas,
};
use crate::records::{Bucket, FUNNEL_STAGES};
use crate::sources::SourceContext;
use crate::sources::http::{PollSource, SourceError, Window, send_with_retry};
use crate::sources::polling::{
    PollingConfig, PollingDefaults, one_to, required, run_or_report, timezone,
};
use crate::sources::report::{Answer, send_bearer};

/// Time dimension of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Dimension `date`.
    Day,
    /// Dimension `dateHour`.
    Hour,
}

/// Settings of one GA4 property. Every key but `name` and `property_id` has a default; the
/// OAuth and polling settings are the shared [`GoogleOAuthConfig`] and [`PollingConfig`],
/// flattened, so their keys stay top-level keys of the `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ga4Config {
    /// Name of this source instance (required).
    pub name: String,
    /// GA4 property id, digits (required).
    pub property_id: String,
    /// API version, pinned.
    pub api_version: String,
    /// API base URL (a local server in tests).
    pub base_url: String,
    /// Request timeout, in seconds.
    pub timeout_secs: u64,
    /// Token endpoint, OAuth client and refresh token (variables default to `ADPULSE_GA4_*`).
    #[serde(flatten)]
    pub oauth: GoogleOAuthConfig,
    /// The property's reporting timezone.
    pub property_timezone: String,
    /// `day` (dimension `date`) or `hour` (dimension `dateHour`).
    pub granularity: Granularity,
    /// Rows per page.
    pub page_limit: u32,
    /// Stop a poll when fewer tokens than this remain in any token quota (per day, per hour,
    /// per project per hour).
    pub min_tokens_remaining: u64,
    /// Interval, look-back and throttle waits.
    #[serde(flatten)]
    pub polling: PollingConfig<Ga4Polling>,
}

/// GA4's polling defaults: a short look-back (GA4 settles within days), a 5 s throttle floor.
pub struct Ga4Polling;

impl PollingDefaults for Ga4Polling {
    const LOOKBACK_DAYS: u32 = 3;
    // GA4 standard properties keep event data up to 14 months
    const MAX_LOOKBACK_DAYS: u32 = 14 * 31;
    const MIN_THROTTLE_WAIT_SECS: u64 = 5;
}

impl Default for Ga4Config {
    fn default() -> Self {
        Self {
            name: String::new(),
            property_id: String::new(),
            api_version: crate::platforms::google::GA4_API_VERSION.into(),
            base_url: crate::platforms::google::GA4_BASE_URL.into(),
            timeout_secs: 60,
            oauth: GoogleOAuthConfig::default(),
            property_timezone: "Asia/Kolkata".into(),
            granularity: Granularity::Hour,
            page_limit: 10_000,
            min_tokens_remaining: 200,
            polling: PollingConfig::default(),
        }
    }
}

impl Ga4Config {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p: Vec<Problem> = required("name", &self.name).into_iter().collect();
        if self.property_id.is_empty() || !self.property_id.chars().all(|c| c.is_ascii_digit()) {
            p.push(Problem::new(
                "property_id",
                format!("{:?} is not a GA4 property id (digits)", self.property_id),
            ));
        }
        p.extend(timezone("property_timezone", &self.property_timezone));
        p.extend(one_to("page_limit", self.page_limit, 250_000));
        p.extend(self.oauth.problems());
        p.extend(self.polling.problems());
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
        let oauth = GoogleOAuth::new(cfg.oauth.clone(), GA4_ENV_PREFIX);
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
        let policy = self.cfg.polling.wait_policy();
        let mut backoff = policy.backoff();
        for _ in 0..5 {
            let http = &self.http;
            let answer = send_with_retry("ga4 runReport", || async {
                let Answer { status, text, .. } =
                    send_bearer(http.post(url).json(body), token).await?;
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
    let settings = cfg.polling.loop_settings();
    run_or_report(
        Ga4Source::new(cfg, ctx.pipeline.timezone()),
        settings,
        ctx,
        "ga4",
    )
    .await
}
