//! GA4 Data API `properties/{id}:runReport`: funnel events (session_start, view_item, add_to_cart,
//! begin_checkout, purchase) by day or hour and by session source/medium. One request per day
//! (GA4 samples long ranges), offset/limit pagination, `returnPropertyQuota` read on every answer
//! so polling backs off *before* the hourly quota is gone.

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use std::time::{Duration, Instant};

use crate::base::Problem;
use crate::normalize::{Observation, RawFunnel};
use crate::records::{Bucket, FUNNEL_STAGES};
use crate::sources::SourceContext;
use crate::sources::google_oauth::GoogleOAuth;
use crate::sources::http::{
    LoopSettings, PollSource, SourceError, Window, run_polling, send_with_retry,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    Hour,
}

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
    #[serde(default = "default_base")]
    pub base_url: String,
    #[serde(default = "default_token_url")]
    pub token_url: String,
    #[serde(default = "default_client_id_env")]
    pub client_id_env: String,
    #[serde(default = "default_client_secret_env")]
    pub client_secret_env: String,
    #[serde(default)]
    pub client_secret_file: Option<std::path::PathBuf>,
    #[serde(default = "default_refresh_env")]
    pub refresh_token_env: String,
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
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Rows per page.
    #[serde(default = "default_limit")]
    pub page_limit: u32,
    /// Stop a poll when fewer hourly quota tokens than this remain.
    #[serde(default = "default_min_tokens")]
    pub min_tokens_remaining: u64,
    #[serde(default = "default_max_wait")]
    pub max_throttle_wait_secs: u64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_version() -> String {
    "v1beta".into()
}
fn default_base() -> String {
    "https://analyticsdata.googleapis.com".into()
}
fn default_token_url() -> String {
    "https://oauth2.googleapis.com/token".into()
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

/// One parsed page: observations, total rows of the report, hourly tokens left.
#[derive(Debug)]
pub struct ReportPage {
    pub observations: Vec<Observation>,
    pub row_count: u64,
    pub rows_in_page: u64,
    pub tokens_per_hour_remaining: Option<u64>,
}

/// Parse a `runReport` response with dimensions (date|dateHour, sessionSourceMedium, eventName)
/// and metric eventCount.
pub fn parse_report(
    body: &str,
    tz: Tz,
    granularity: Granularity,
) -> Result<ReportPage, SourceError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| SourceError::Malformed(format!("runReport: {e}")))?;
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
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
        let ts = tz
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
        tokens_per_hour_remaining: v["propertyQuota"]["tokensPerHour"]["remaining"].as_u64(),
    })
}

pub struct Ga4Source {
    cfg: Ga4Config,
    tz: Tz,
    http: reqwest::Client,
    oauth: GoogleOAuth,
    pause_until: Option<Instant>,
}

impl Ga4Source {
    pub fn new(cfg: Ga4Config) -> Result<Self, SourceError> {
        let tz = crate::sources::http::timezone("property_timezone", &cfg.property_timezone)?;
        let http = crate::sources::http::client(cfg.timeout_secs)?;
        let oauth = GoogleOAuth {
            token_url: cfg.token_url.clone(),
            client_id_env: cfg.client_id_env.clone(),
            client_secret_env: cfg.client_secret_env.clone(),
            client_secret_file: cfg.client_secret_file.clone(),
            refresh_token_env: cfg.refresh_token_env.clone(),
            refresh_token_file: cfg.refresh_token_file.clone(),
            access: None,
        };
        Ok(Self {
            cfg,
            tz,
            http,
            oauth,
            pause_until: None,
        })
    }
}

impl PollSource for Ga4Source {
    fn account_timezone(&self) -> Tz {
        self.tz
    }

    async fn poll(&mut self, window: Window) -> Result<Vec<Observation>, SourceError> {
        if let Some(until) = self.pause_until {
            let now = Instant::now();
            if now < until {
                return Err(SourceError::Throttled {
                    wait: until - now,
                    message: "hourly GA4 quota nearly used; waiting for it to refill".into(),
                });
            }
            self.pause_until = None;
        }
        let token = self.oauth.access_token(&self.http).await?;
        let url = format!(
            "{}/{}/properties/{}:runReport",
            self.cfg.base_url.trim_end_matches('/'),
            self.cfg.api_version,
            self.cfg.property_id
        );
        let time_dim = match self.cfg.granularity {
            Granularity::Day => "date",
            Granularity::Hour => "dateHour",
        };
        let mut out = Vec::new();
        let mut day = window.since;
        // one day per request: GA4 samples long ranges
        while day <= window.until {
            let mut offset: u64 = 0;
            loop {
                let body = serde_json::json!({
                    "dateRanges": [{"startDate": day.to_string(), "endDate": day.to_string()}],
                    "dimensions": [{"name": time_dim}, {"name": "sessionSourceMedium"}, {"name": "eventName"}],
                    "metrics": [{"name": "eventCount"}],
                    "dimensionFilter": {"filter": {"fieldName": "eventName", "inListFilter": {"values": FUNNEL_STAGES}}},
                    "limit": self.cfg.page_limit.to_string(),
                    "offset": offset.to_string(),
                    "returnPropertyQuota": true,
                });
                let text = send_with_retry("ga4 runReport", || async {
                    let mut auth = reqwest::header::HeaderValue::from_str(&format!(
                        "Bearer {}",
                        token.expose()
                    ))
                    .map_err(|_| {
                        SourceError::Config("access token has invalid characters".into())
                    })?;
                    auth.set_sensitive(true);
                    let resp = self
                        .http
                        .post(&url)
                        .header(reqwest::header::AUTHORIZATION, auth)
                        .json(&body)
                        .send()
                        .await
                        .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
                    let status = resp.status().as_u16();
                    let text = resp
                        .text()
                        .await
                        .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
                    if status >= 400 {
                        return Err(
                            match crate::sources::google_ads::classify_error(status, &text) {
                                // GA4 quotas refill hourly; its errors carry no retry delay
                                SourceError::Throttled { message, .. } => SourceError::Throttled {
                                    wait: Duration::from_secs(3600),
                                    message,
                                },
                                other => other,
                            },
                        );
                    }
                    Ok(text)
                })
                .await?;
                let page = parse_report(&text, self.tz, self.cfg.granularity)?;
                out.extend(page.observations);
                offset += page.rows_in_page;
                if let Some(left) = page.tokens_per_hour_remaining
                    && left < self.cfg.min_tokens_remaining
                {
                    tracing::warn!(property = %self.cfg.property_id, tokens_left = left, "GA4 hourly quota nearly used: pausing this source");
                    self.pause_until = Some(Instant::now() + Duration::from_secs(3600));
                    return Ok(out);
                }
                if page.rows_in_page == 0 || offset >= page.row_count {
                    break;
                }
            }
            day = day
                .succ_opt()
                .unwrap_or(window.until + chrono::Days::new(1));
        }
        Ok(out)
    }
}

pub async fn run(cfg: Ga4Config, ctx: SourceContext) {
    let settings = LoopSettings {
        interval: Duration::from_secs(cfg.interval_secs),
        lookback_days: cfg.lookback_days,
        max_throttle_wait: Duration::from_secs(cfg.max_throttle_wait_secs),
    };
    match Ga4Source::new(cfg) {
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
