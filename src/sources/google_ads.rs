//! Google Ads API (REST): `customers/{id}/googleAds:searchStream` with GAQL, ads
//! (`FROM ad_group_ad`: `ad_group.id/name`, `ad_group_ad.ad.id/name`) and campaigns by
//! `segments.date`, through the shared polling loop.
//!
//! Ad level: every `ad_group_ad` row becomes an `ad_stats` row (ad group as `adset_id`) and the
//! campaign's share of it; rows sharing a key are summed downstream, so a campaign-day that has
//! ads is the exact sum of its ads of that answer. Campaigns without `ad_group_ad` rows
//! (Performance Max reports by asset group, not by ad) come from the `FROM campaign` query, which
//! is used only for the campaign-days the ad query did not cover: nothing is counted twice and no
//! spend is dropped. Where both cover a campaign-day and disagree, the ads' sum is stored and the
//! difference is logged. Access tokens come from the OAuth
//! refresh-token flow; every request carries the `developer-token` (and `login-customer-id` for a
//! manager account) header. `costMicros` (an int64 sent as a string) becomes money exactly;
//! quota errors carry a `retryDelay` that is honoured.

use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;
use std::time::Duration;

use crate::base::Problem;
use crate::normalize::{Observation, RawAdStat, RawCampaignStat, day_start};
use crate::platforms::google::{GoogleOAuth, OAuthSettings};
use crate::records::{AdRef, Bucket, CampaignKey};
use crate::sources::SourceContext;
use crate::sources::http::{
    LoopSettings, PollSource, SourceError, Window, read_secret, run_polling, send_with_retry,
};

/// Settings of one Google Ads customer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAdsConfig {
    /// Name of this source instance.
    pub name: String,
    /// Customer id, digits (dashes allowed: 123-456-7890).
    pub customer_id: String,
    /// Manager account id for the `login-customer-id` header, if access goes through one.
    #[serde(default)]
    pub login_customer_id: Option<String>,
    /// API version, pinned.
    #[serde(default = "default_version")]
    pub api_version: String,
    /// API base URL (a local server in tests).
    #[serde(default = "default_base")]
    pub base_url: String,
    /// OAuth token endpoint.
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// Environment variable holding the developer token.
    #[serde(default = "default_dev_env")]
    pub developer_token_env: String,
    /// File holding the developer token (takes precedence over the variable).
    #[serde(default)]
    pub developer_token_file: Option<std::path::PathBuf>,
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
    /// The customer's timezone (its `segments.date` days).
    #[serde(default = "default_tz")]
    pub account_timezone: String,
    /// The customer's currency.
    #[serde(default = "default_currency")]
    pub account_currency: String,
    /// Days re-read every poll (conversions keep changing for the conversion window).
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Also read hourly rows (`segments.hour`) for this many most recent days (0: daily only).
    #[serde(default = "default_hourly_days")]
    pub hourly_days: u32,
    /// Longest throttle wait honoured, in seconds; a longer `retryDelay` leaves the days
    /// incomplete (retried later) instead of sleeping for hours.
    #[serde(default = "default_max_wait")]
    pub max_throttle_wait_secs: u64,
    /// Shortest throttle wait, in seconds (a `retryDelay` of "0s" is not a reason to hammer).
    #[serde(default = "default_min_wait")]
    pub min_throttle_wait_secs: u64,
    /// Request timeout, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_version() -> String {
    crate::platforms::google::ADS_API_VERSION.into()
}
fn default_base() -> String {
    crate::platforms::google::ADS_BASE_URL.into()
}
fn default_token_url() -> String {
    crate::platforms::google::TOKEN_URL.into()
}
fn default_min_wait() -> u64 {
    5
}
fn default_dev_env() -> String {
    "ADPULSE_GOOGLE_ADS_DEVELOPER_TOKEN".into()
}
fn default_client_id_env() -> String {
    "ADPULSE_GOOGLE_ADS_CLIENT_ID".into()
}
fn default_client_secret_env() -> String {
    "ADPULSE_GOOGLE_ADS_CLIENT_SECRET".into()
}
fn default_refresh_env() -> String {
    "ADPULSE_GOOGLE_ADS_REFRESH_TOKEN".into()
}
fn default_tz() -> String {
    "Asia/Kolkata".into()
}
fn default_currency() -> String {
    "INR".into()
}
fn default_lookback() -> u32 {
    14
}
fn default_interval() -> u64 {
    900
}
fn default_hourly_days() -> u32 {
    2
}
fn default_max_wait() -> u64 {
    3600
}
fn default_timeout() -> u64 {
    60
}

impl GoogleAdsConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let digits =
            |s: &str| s.chars().filter(|c| *c != '-').all(|c| c.is_ascii_digit()) && !s.is_empty();
        if !digits(&self.customer_id) {
            p.push(Problem {
                key: "customer_id".into(),
                message: format!(
                    "{:?} is not a customer id like 123-456-7890",
                    self.customer_id
                ),
            });
        }
        if let Some(l) = &self.login_customer_id
            && !digits(l)
        {
            p.push(Problem {
                key: "login_customer_id".into(),
                message: format!("{l:?} is not a customer id"),
            });
        }
        if self.account_timezone.parse::<Tz>().is_err() {
            p.push(Problem {
                key: "account_timezone".into(),
                message: format!("{:?} is not an IANA timezone", self.account_timezone),
            });
        }
        if self.lookback_days == 0 || self.lookback_days > 90 {
            p.push(Problem {
                key: "lookback_days".into(),
                message: "must be between 1 and 90".into(),
            });
        }
        if self.interval_secs < 60 {
            p.push(Problem {
                key: "interval_secs".into(),
                message: "must be at least 60".into(),
            });
        }
        p
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Batch {
    #[serde(default)]
    results: Vec<ResultRow>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultRow {
    campaign: Campaign,
    /// Present in `FROM ad_group_ad` answers.
    #[serde(default)]
    ad_group: Option<Named>,
    #[serde(default)]
    ad_group_ad: Option<AdGroupAd>,
    #[serde(default)]
    metrics: Metrics,
    segments: Segments,
}

#[derive(Debug, Deserialize)]
struct Campaign {
    id: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct AdGroupAd {
    ad: Named,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    #[serde(default)]
    cost_micros: Option<String>,
    #[serde(default)]
    impressions: Option<String>,
    #[serde(default)]
    clicks: Option<String>,
    #[serde(default)]
    conversions: Option<serde_json::Number>,
    #[serde(default)]
    conversions_value: Option<serde_json::Number>,
}

#[derive(Debug, Deserialize)]
struct Segments {
    date: String,
    /// Present when the query selects `segments.hour` (0-23, account timezone).
    #[serde(default)]
    hour: Option<u32>,
}

/// Parse a `searchStream` body (a JSON array of batches) into campaign observations. An error
/// element anywhere in the stream (Google sends one as the last element of an HTTP 200 when the
/// stream breaks) makes the whole answer an error: its rows are partial. Daily rows keep the
/// customer's own date, stamped at midnight of it in `reporting_tz`; hourly rows are instants.
pub fn parse_search_stream(
    body: &str,
    customer: &str,
    tz: Tz,
    reporting_tz: Tz,
    currency: &str,
) -> Result<Vec<Observation>, SourceError> {
    let raw: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| SourceError::Malformed(format!("searchStream: {e}")))?;
    if let Some(err) = crate::platforms::google::error_object(&raw) {
        return Err(crate::platforms::google::classify_value(200, err).into());
    }
    let batches: Vec<Batch> = serde_json::from_value(raw)
        .map_err(|e| SourceError::Malformed(format!("searchStream: {e}")))?;
    let mut out = Vec::new();
    for (i, r) in batches.into_iter().flat_map(|b| b.results).enumerate() {
        let bad = |field: &str, v: &str| {
            SourceError::Malformed(format!(
                "result {i} (campaign {}): {field} = {v:?}",
                r.campaign.id
            ))
        };
        let int = |field: &str, v: &Option<String>| -> Result<i64, SourceError> {
            v.as_deref()
                .map_or(Ok(0), |s| s.parse::<i64>().map_err(|_| bad(field, s)))
        };
        let micros = int("metrics.costMicros", &r.metrics.cost_micros)?;
        // JSON numbers keep their decimal text: no binary rounding of money
        let dec = |field: &str, n: &Option<serde_json::Number>| -> Result<Decimal, SourceError> {
            n.as_ref().map_or(Ok(Decimal::ZERO), |n| {
                Decimal::from_str(&n.to_string())
                    .or_else(|_| Decimal::from_scientific(&n.to_string()))
                    .map_err(|_| bad(field, &n.to_string()))
            })
        };
        let conversions = dec("metrics.conversions", &r.metrics.conversions)?;
        let value = dec("metrics.conversionsValue", &r.metrics.conversions_value)?;
        let day = NaiveDate::parse_from_str(&r.segments.date, "%Y-%m-%d")
            .map_err(|_| bad("segments.date", &r.segments.date))?;
        let (ts, bucket) = match r.segments.hour {
            None => (day_start(day, reporting_tz), Bucket::Day),
            Some(h) if h < 24 => {
                let local = day.and_hms_opt(h, 0, 0).unwrap_or_default();
                let ts = chrono::TimeZone::from_local_datetime(&tz, &local)
                    .earliest()
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or_else(|| day_start(day, tz));
                (ts, Bucket::Hour)
            }
            Some(h) => return Err(bad("segments.hour", &h.to_string())),
        };
        let stat = RawCampaignStat {
            ts,
            bucket,
            key: CampaignKey {
                platform: "google_ads".into(),
                account: customer.to_string(),
                campaign_id: r.campaign.id.clone(),
            },
            campaign_name: r.campaign.name.clone(),
            spend: Decimal::new(micros, 6),
            conversion_value: value,
            account_currency: currency.to_string(),
            impressions: u64::try_from(int("metrics.impressions", &r.metrics.impressions)?)
                .unwrap_or(0),
            clicks: u64::try_from(int("metrics.clicks", &r.metrics.clicks)?).unwrap_or(0),
            conversions: rust_decimal::prelude::ToPrimitive::to_f64(&conversions).unwrap_or(0.0),
        };
        match (r.ad_group, r.ad_group_ad) {
            (Some(group), Some(aga)) => out.push(Observation::Ad(RawAdStat {
                stat: stat.clone(),
                ad: AdRef {
                    adset_id: group.id,
                    adset_name: group.name,
                    ad_id: aga.ad.id,
                    ad_name: aga.ad.name,
                },
            })),
            // an ad group row (`FROM ad_group`) carries no ad: the campaign's share only
            (_, None) => {}
            (None, Some(_)) => {
                return Err(SourceError::Malformed(format!(
                    "result {i} (campaign {}): adGroupAd without its adGroup",
                    r.campaign.id
                )));
            }
        }
        // the campaign's share of an ad row (summed downstream), or a campaign row
        out.push(Observation::Campaign(stat));
    }
    Ok(out)
}

/// One poll's answer from the ad query (`ads`: ad rows and their campaign shares) and the
/// campaign query (`campaigns`): a campaign-day covered by ad rows keeps the ads' sum; the
/// campaign query fills only the campaign-days without ads (Performance Max and other campaigns
/// that report no `ad_group_ad` rows).
pub fn combine(ads: Vec<Observation>, campaigns: Vec<Observation>) -> Vec<Observation> {
    use std::collections::BTreeMap;
    type Key = (String, i64, Bucket);
    let mut covered: BTreeMap<Key, Decimal> = BTreeMap::new();
    for o in &ads {
        if let Observation::Campaign(c) = o {
            *covered
                .entry((c.key.campaign_id.clone(), c.ts.timestamp(), c.bucket))
                .or_default() += c.spend;
        }
    }
    let mut out = ads;
    for o in campaigns {
        match &o {
            Observation::Campaign(c) => {
                let k = (c.key.campaign_id.clone(), c.ts.timestamp(), c.bucket);
                match covered.get(&k) {
                    None => out.push(o),
                    Some(sum) if *sum != c.spend => {
                        tracing::warn!(campaign = %c.key.campaign_id, ts = %c.ts, ads_sum = %sum, campaign_total = %c.spend,
                            "Google Ads campaign total differs from the sum of its ads; the ads' sum is stored");
                    }
                    Some(_) => {}
                }
            }
            _ => out.push(o),
        }
    }
    out
}

/// Classify a Google Ads error answer (object or array form) with the one Google classifier.
pub fn classify_error(status: u16, body: &str) -> SourceError {
    crate::platforms::google::classify(status, body).into()
}

/// A running Google Ads source.
pub struct GoogleAdsSource {
    cfg: GoogleAdsConfig,
    tz: Tz,
    reporting_tz: Tz,
    http: reqwest::Client,
    oauth: GoogleOAuth,
}

impl GoogleAdsSource {
    pub fn new(cfg: GoogleAdsConfig, reporting_tz: Tz) -> Result<Self, SourceError> {
        let tz = crate::sources::http::timezone("account_timezone", &cfg.account_timezone)?;
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
        })
    }
}

impl PollSource for GoogleAdsSource {
    fn account_timezone(&self) -> Tz {
        self.tz
    }

    async fn poll(&mut self, window: Window) -> Result<Vec<Observation>, SourceError> {
        let mut out = self.search(window, false).await?;
        if let Some(recent) = window.last_days(self.cfg.hourly_days) {
            out.extend(self.search(recent, true).await?);
        }
        Ok(out)
    }
}

impl GoogleAdsSource {
    /// Ads and campaigns of `window` (see [`combine`]).
    async fn search(
        &mut self,
        window: Window,
        hourly: bool,
    ) -> Result<Vec<Observation>, SourceError> {
        let hour = if hourly { ", segments.hour" } else { "" };
        let metrics = "metrics.cost_micros, metrics.impressions, metrics.clicks, \
                       metrics.conversions, metrics.conversions_value";
        let during = format!(
            "WHERE segments.date BETWEEN '{}' AND '{}'",
            window.since, window.until
        );
        let ads = self
            .stream(format!(
                "SELECT campaign.id, campaign.name, ad_group.id, ad_group.name, \
                 ad_group_ad.ad.id, ad_group_ad.ad.name, segments.date{hour}, {metrics} \
                 FROM ad_group_ad {during}"
            ))
            .await?;
        let campaigns = self
            .stream(format!(
                "SELECT campaign.id, campaign.name, segments.date{hour}, {metrics} \
                 FROM campaign {during}"
            ))
            .await?;
        Ok(combine(ads, campaigns))
    }

    /// One `searchStream` call with `query`, parsed.
    async fn stream(&mut self, query: String) -> Result<Vec<Observation>, SourceError> {
        let token = self.oauth.access_token(&self.http).await?;
        let dev = read_secret(
            self.cfg.developer_token_file.as_deref(),
            &self.cfg.developer_token_env,
        )?;
        let customer: String = self.cfg.customer_id.chars().filter(|c| *c != '-').collect();
        let url = format!(
            "{}/{}/customers/{customer}/googleAds:searchStream",
            self.cfg.base_url.trim_end_matches('/'),
            self.cfg.api_version
        );
        let login = self
            .cfg
            .login_customer_id
            .as_ref()
            .map(|l| l.replace('-', ""));
        let http = &self.http;
        let body = send_with_retry("google ads searchStream", || async {
            let auth = crate::sources::http::secret_header(&format!("Bearer {}", token.expose()))?;
            let mut devh = reqwest::header::HeaderValue::from_str(dev.expose()).map_err(|_| {
                SourceError::Config("developer token has invalid characters".into())
            })?;
            devh.set_sensitive(true);
            let mut req = http
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, auth)
                .header("developer-token", devh)
                .json(&serde_json::json!({ "query": query }));
            if let Some(l) = &login {
                req = req.header("login-customer-id", l.as_str());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
            let status = resp.status().as_u16();
            let text = resp
                .text()
                .await
                .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
            if status >= 400 {
                if status == 401 {
                    // the cached token was revoked or expired early: refresh on the next poll
                    return Err(SourceError::Auth(classify_error(status, &text).to_string()));
                }
                return Err(classify_error(status, &text));
            }
            // a 200 whose stream ends in an error element: transient ones are retried here
            parse_search_stream(
                &text,
                &self.cfg.customer_id,
                self.tz,
                self.reporting_tz,
                &self.cfg.account_currency,
            )
        })
        .await;
        if matches!(body, Err(SourceError::Auth(_))) {
            self.oauth.invalidate();
        }
        body
    }
}

/// Run the source with the shared loop.
pub async fn run(cfg: GoogleAdsConfig, ctx: SourceContext) {
    let settings = LoopSettings {
        interval: Duration::from_secs(cfg.interval_secs),
        lookback_days: cfg.lookback_days,
        wait: crate::platforms::WaitPolicy::new(
            cfg.min_throttle_wait_secs,
            cfg.max_throttle_wait_secs,
        ),
    };
    match GoogleAdsSource::new(cfg, ctx.pipeline.timezone()) {
        Ok(s) => run_polling(s, settings, ctx, "google_ads").await,
        Err(error) => {
            ctx.pipeline
                .telemetry()
                .source(&ctx.name, "google_ads")
                .poll_failed(Duration::ZERO);
            tracing::error!(source = %ctx.name, %error, "google ads source not started");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn search_stream_batches_parse_exactly() {
        let body = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/google_ads/search_stream.json"),
        )
        .unwrap();
        let obs = parse_search_stream(
            &body,
            "123-456-7890",
            chrono_tz::Asia::Kolkata,
            chrono_tz::Asia::Kolkata,
            "INR",
        )
        .unwrap();
        assert_eq!(obs.len(), 3, "two batches");
        let Observation::Campaign(c) = &obs[0] else {
            panic!()
        };
        assert_eq!(c.spend, dec!(8036.120000));
        assert_eq!(c.conversions, 0.6);
        assert_eq!(c.conversion_value, dec!(1212.5));
        assert_eq!(c.clicks, 1275);
        let e = parse_search_stream(
            "[{\"results\": [{\"campaign\": {}}]}]",
            "1",
            chrono_tz::UTC,
            chrono_tz::UTC,
            "INR",
        )
        .unwrap_err();
        assert!(matches!(e, SourceError::Malformed(_)), "{e}");
    }

    #[test]
    fn hourly_segments_are_hour_buckets_in_the_account_timezone() {
        let body = r#"[{"results": [{"campaign": {"id": "7", "name": "C"}, "metrics": {"costMicros": "1500000"}, "segments": {"date": "2026-11-18", "hour": 13}}]}]"#;
        let obs = parse_search_stream(
            body,
            "1",
            chrono_tz::America::Los_Angeles,
            chrono_tz::Asia::Kolkata,
            "USD",
        )
        .unwrap();
        let Observation::Campaign(c) = &obs[0] else {
            panic!()
        };
        assert_eq!(c.bucket, Bucket::Hour);
        assert_eq!(c.spend, dec!(1.5));
        // 13:00 in Los Angeles (PST) is 21:00 UTC
        assert_eq!(
            c.ts,
            "2026-11-18T21:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        let bad = body.replace("\"hour\": 13", "\"hour\": 25");
        assert!(parse_search_stream(&bad, "1", chrono_tz::UTC, chrono_tz::UTC, "USD").is_err());
    }

    #[test]
    fn quota_errors_carry_their_retry_delay() {
        let body = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure","errors":[{"errorCode":{"quotaError":"RESOURCE_EXHAUSTED"},"message":"Too many requests.","details":{"quotaErrorDetails":{"rateScope":"ACCOUNT","rateName":"Number of operations for basic access","retryDelay":"37s"}}}]}]}}"#;
        match classify_error(429, body) {
            SourceError::Throttled { wait, .. } => assert_eq!(wait, Some(Duration::from_secs(37))),
            other => panic!("{other}"),
        }
        let auth = r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
        assert!(matches!(classify_error(401, auth), SourceError::Auth(_)));
    }

    #[test]
    fn an_error_element_at_the_end_of_a_200_stream_is_an_error() {
        let body = r#"[{"results": [{"campaign": {"id": "7", "name": "C"}, "metrics": {"costMicros": "1500000"}, "segments": {"date": "2026-11-18"}}]},
            {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED",
              "details": [{"@type": "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure", "errors": [{"errorCode": {"quotaError": "RESOURCE_EXHAUSTED"}, "message": "Too many requests.", "details": {"quotaErrorDetails": {"rateScope": "ACCOUNT", "retryDelay": "30s"}}}]}]}}]"#;
        match parse_search_stream(body, "1", chrono_tz::UTC, chrono_tz::UTC, "USD") {
            Err(SourceError::Throttled { wait, .. }) => {
                assert_eq!(wait, Some(Duration::from_secs(30)))
            }
            other => panic!("partial stream accepted: {other:?}"),
        }
    }

    #[test]
    fn ad_rows_make_their_campaign_day_and_campaigns_without_ads_are_kept() {
        let read = |f: &str| {
            std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/google_ads")
                    .join(f),
            )
            .unwrap()
        };
        let parse = |f: &str| {
            parse_search_stream(
                &read(f),
                "1234567890",
                chrono_tz::Asia::Kolkata,
                chrono_tz::Asia::Kolkata,
                "INR",
            )
            .unwrap()
        };
        let ads = parse("search_stream_ads.json");
        // 3 ad rows, each an ad and the campaign's share
        assert_eq!(ads.len(), 6);
        let merged =
            crate::sources::http::merge_duplicates(combine(ads, parse("search_stream.json")));
        let spend = |id: &str| -> Vec<Decimal> {
            merged
                .iter()
                .filter_map(|o| match o {
                    Observation::Campaign(c) if c.key.campaign_id == id => Some(c.spend),
                    _ => None,
                })
                .collect()
        };
        // by hand: 1200.00 + 1425.57 + 1000.00, stored once (not also the campaign query's row)
        assert_eq!(spend("21000000002"), vec![dec!(3625.57)]);
        // Performance Max has no ad rows: both of its days come from the campaign query
        assert_eq!(spend("21000000001"), vec![dec!(8036.12), dec!(8102.55)]);
        let ads: Vec<&RawAdStat> = merged
            .iter()
            .filter_map(|o| match o {
                Observation::Ad(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(ads.len(), 3);
        assert_eq!(ads[2].ad.adset_id, "31000000022");
        assert_eq!(ads[2].ad.ad_name, "RSA bangles");
        assert_eq!(ads[1].ad.ad_name, "");
        let c = merged
            .iter()
            .find_map(|o| match o {
                Observation::Campaign(c) if c.key.campaign_id == "21000000002" => Some(c),
                _ => None,
            })
            .unwrap();
        assert_eq!((c.clicks, c.impressions, c.conversions), (398, 11_700, 1.0));
        // an ad without its ad group cannot be keyed: a malformed answer, not a guess
        let half = read("search_stream_ads.json").replacen("\"adGroup\"", "\"adGroupX\"", 1);
        assert!(parse_search_stream(&half, "1", chrono_tz::UTC, chrono_tz::UTC, "INR").is_err());
    }
}
