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

use crate::base::Problem;
use crate::normalize::{Observation, RawCampaignStat, RawRegionStat};
use crate::platforms::google::{
    ADS_ENV_PREFIX, GoogleAdsApiConfig, GoogleOAuth, GoogleOAuthConfig, is_customer_id,
};
use crate::records::{AdRef, Bucket, CampaignKey};
use crate::sources::SourceContext;
use crate::sources::http::{
    PollSource, SourceError, Window, read_secret, secret_header, send_with_retry,
};
use crate::sources::polling::{PollingConfig, PollingDefaults, required, timezone};
use crate::sources::report::{
    Answer, BadRegionRow, complete_regions, days_then_recent_hours, push_row, region_outcome,
    run_with_regions, send_bearer, stamp,
};

/// Settings of one Google Ads customer. Every key but `name` and `customer_id` has a default;
/// the API, OAuth and polling settings are the shared [`GoogleAdsApiConfig`],
/// [`GoogleOAuthConfig`] and [`PollingConfig`], flattened, so their keys stay top-level keys of
/// the `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleAdsConfig {
    /// Name of this source instance (required).
    pub name: String,
    /// Customer id, digits (dashes allowed: 123-456-7890) (required).
    pub customer_id: String,
    /// Base URL, pinned version, developer token, `login-customer-id`, currency, timeout.
    #[serde(flatten)]
    pub api: GoogleAdsApiConfig,
    /// Token endpoint, OAuth client and refresh token (variables default to
    /// `ADPULSE_GOOGLE_ADS_*`).
    #[serde(flatten)]
    pub oauth: GoogleOAuthConfig,
    /// The customer's timezone (its `segments.date` days).
    pub account_timezone: String,
    /// Also read hourly rows (`segments.hour`) for this many most recent days (0: daily only).
    pub hourly_days: u32,
    /// Also read the region report (`FROM user_location_view` by `segments.geo_target_region`,
    /// daily) into `region_stats`, as its own poll (`<name>.regions`). Off by default: two more
    /// queries per poll (three when new regions need their names).
    pub region_report: bool,
    /// Interval, look-back (conversions keep changing for the conversion window) and throttle
    /// waits.
    #[serde(flatten)]
    pub polling: PollingConfig<GoogleAdsPolling>,
}

/// Google Ads' polling defaults: a `retryDelay` of "0s" is not a reason to hammer (5 s floor).
pub struct GoogleAdsPolling;

impl PollingDefaults for GoogleAdsPolling {
    const LOOKBACK_DAYS: u32 = 14;
    const MAX_LOOKBACK_DAYS: u32 = 90;
    const MIN_THROTTLE_WAIT_SECS: u64 = 5;
    const MIN_INTERVAL_SECS: u64 = 60;
}

impl Default for GoogleAdsConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            customer_id: String::new(),
            api: GoogleAdsApiConfig::default(),
            oauth: GoogleOAuthConfig::default(),
            account_timezone: "Asia/Kolkata".into(),
            hourly_days: 2,
            region_report: false,
            polling: PollingConfig::default(),
        }
    }
}

impl GoogleAdsConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p: Vec<Problem> = required("name", &self.name).into_iter().collect();
        if !is_customer_id(&self.customer_id) {
            p.push(Problem::new(
                "customer_id",
                format!(
                    "{:?} is not a customer id like 123-456-7890",
                    self.customer_id
                ),
            ));
        }
        p.extend(timezone("account_timezone", &self.account_timezone));
        p.extend(self.api.problems());
        p.extend(self.oauth.problems());
        p.extend(self.polling.problems());
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
        let (stat, ad) = result_stat(i, r, customer, tz, reporting_tz, currency)?;
        push_row(&mut out, stat, ad);
    }
    Ok(out)
}

/// One `searchStream` result read: its campaign figures, and the ad it names (`FROM ad_group_ad`).
fn result_stat(
    i: usize,
    r: ResultRow,
    customer: &str,
    tz: Tz,
    reporting_tz: Tz,
    currency: &str,
) -> Result<(RawCampaignStat, Option<AdRef>), SourceError> {
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
    if let Some(h) = r.segments.hour.filter(|h| *h >= 24) {
        return Err(bad("segments.hour", &h.to_string()));
    }
    let (ts, bucket) = stamp(day, r.segments.hour, tz, reporting_tz);
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
    let ad = match (r.ad_group, r.ad_group_ad) {
        (Some(group), Some(aga)) => Some(AdRef {
            adset_id: group.id,
            adset_name: group.name,
            ad_id: aga.ad.id,
            ad_name: aga.ad.name,
        }),
        // an ad group row (`FROM ad_group`) carries no ad: the campaign's share only
        (_, None) => None,
        (None, Some(_)) => {
            return Err(SourceError::Malformed(format!(
                "result {i} (campaign {}): adGroupAd without its adGroup",
                r.campaign.id
            )));
        }
    };
    Ok((stat, ad))
}

/// The region report's `searchStream` body (`FROM user_location_view`, by `segments.date` and
/// `segments.geo_target_region`): each result a campaign day in one region, the region still
/// its `geoTargetConstants/{id}` resource name, with the `targeting_location` rows of one region
/// summed downstream ([`complete_regions`]). A result that cannot be read is kept out, named
/// (its index, campaign, region and day) beside the readable ones. A result without
/// `geoTargetRegion` (not placed in a region) is left out: its spend is in the campaign day's
/// [`UNREPORTED_REGION`](crate::sources::report::UNREPORTED_REGION) remainder. An error element
/// makes the whole answer an error, as in [`parse_search_stream`].
pub fn parse_region_stream(
    body: &str,
    customer: &str,
    tz: Tz,
    reporting_tz: Tz,
    currency: &str,
) -> Result<Vec<Result<RawRegionStat, BadRegionRow>>, SourceError> {
    let raw: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| SourceError::Malformed(format!("searchStream: {e}")))?;
    if let Some(err) = crate::platforms::google::error_object(&raw) {
        return Err(crate::platforms::google::classify_value(200, err).into());
    }
    let results = raw
        .as_array()
        .ok_or_else(|| SourceError::Malformed("searchStream: not an array of batches".into()))?
        .iter()
        .flat_map(|b| b["results"].as_array().into_iter().flatten());
    let mut out = Vec::new();
    for (i, v) in results.enumerate() {
        let campaign_id = v["campaign"]["id"].as_str().unwrap_or_default().to_string();
        let Some(region) = v["segments"]["geoTargetRegion"]
            .as_str()
            .map(str::to_string)
        else {
            continue;
        };
        let day = v["segments"]["date"]
            .as_str()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let read = serde_json::from_value::<ResultRow>(v.clone())
            .map_err(|e| SourceError::Malformed(e.to_string()))
            .and_then(|r| result_stat(i, r, customer, tz, reporting_tz, currency));
        out.push(BadRegionRow::or_row(
            read,
            || format!("Google Ads region report result {i}"),
            (campaign_id, region, day),
        ));
    }
    Ok(out)
}

/// The names of a `geo_target_constant` query's answer: (`resourceName`, `name`) pairs.
pub fn parse_geo_names(body: &str) -> Result<Vec<(String, String)>, SourceError> {
    let raw: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| SourceError::Malformed(format!("geo_target_constant: {e}")))?;
    if let Some(err) = crate::platforms::google::error_object(&raw) {
        return Err(crate::platforms::google::classify_value(200, err).into());
    }
    Ok(raw
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["results"].as_array().into_iter().flatten())
        .filter_map(|r| {
            let g = &r["geoTargetConstant"];
            Some((
                g["resourceName"].as_str()?.to_string(),
                g["name"]
                    .as_str()
                    .filter(|n| !n.trim().is_empty())?
                    .to_string(),
            ))
        })
        .collect())
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

/// The metrics every Google Ads report query selects.
const METRICS: &str = "metrics.cost_micros, metrics.impressions, metrics.clicks, \
                       metrics.conversions, metrics.conversions_value";

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
        let http = crate::sources::http::client(cfg.api.timeout_secs)?;
        let oauth = GoogleOAuth::new(cfg.oauth.clone(), ADS_ENV_PREFIX);
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

    /// Days, then the recent days by hour: each read is the ad query and the campaign query of
    /// its window (see [`combine`]).
    async fn poll(&mut self, window: Window) -> Result<Vec<Observation>, SourceError> {
        let metrics = METRICS;
        let mut out = Vec::new();
        for (w, hourly) in days_then_recent_hours(window, self.cfg.hourly_days) {
            let hour = if hourly { ", segments.hour" } else { "" };
            let during = format!(
                "WHERE segments.date BETWEEN '{}' AND '{}'",
                w.since, w.until
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
            out.extend(combine(ads, campaigns));
        }
        Ok(out)
    }
}

impl GoogleAdsSource {
    /// One `searchStream` call with `query`, parsed as a report.
    async fn stream(&mut self, query: String) -> Result<Vec<Observation>, SourceError> {
        let (customer, tz, rtz) = (self.cfg.customer_id.clone(), self.tz, self.reporting_tz);
        let currency = self.cfg.api.account_currency.clone();
        self.stream_with(query, |text| {
            parse_search_stream(text, &customer, tz, rtz, &currency)
        })
        .await
    }

    /// One `searchStream` call with `query`, its answer read by `parse`.
    async fn stream_with<T>(
        &mut self,
        query: String,
        parse: impl Fn(&str) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let token = self.oauth.access_token(&self.http).await?;
        let dev = read_secret(
            self.cfg.api.developer_token_file.as_deref(),
            &self.cfg.api.developer_token_env,
        )?;
        let customer: String = self.cfg.customer_id.chars().filter(|c| *c != '-').collect();
        let url = format!(
            "{}/customers/{customer}/googleAds:searchStream",
            self.cfg.api.versioned_base()
        );
        let login = self.cfg.api.login_header();
        let http = &self.http;
        let body = send_with_retry("google ads searchStream", || async {
            let mut req = http
                .post(&url)
                .header("developer-token", secret_header(dev.expose())?)
                .json(&serde_json::json!({ "query": query }));
            if let Some(l) = &login {
                req = req.header("login-customer-id", l.as_str());
            }
            let Answer { status, text, .. } = send_bearer(req, &token).await?;
            if status >= 400 {
                if status == 401 {
                    // the cached token was revoked or expired early: refresh on the next poll
                    return Err(SourceError::Auth(classify_error(status, &text).to_string()));
                }
                return Err(classify_error(status, &text));
            }
            // a 200 whose stream ends in an error element: transient ones are retried here
            parse(&text)
        })
        .await;
        if matches!(body, Err(SourceError::Auth(_))) {
            self.oauth.invalidate();
        }
        body
    }
}

/// The region report of a Google Ads customer, polled as its own source (`<name>.regions`)
/// with the shared loop, so a failed region read leaves only region days incomplete. Each poll
/// reads the window by region (`user_location_view`: where the user was, rows split by
/// `targeting_location` and summed here) and the campaign days' totals (`FROM campaign`); the
/// difference is the `unreported` row ([`complete_regions`]). Regions come as
/// `geoTargetConstants/{id}`: their names are read with one `geo_target_constant` query per poll
/// for the ids not yet known, and kept for the life of the process.
///
/// A name lookup that fails (the query fails, or does not return an id): the rows are kept under
/// the resource name (never dropped), the failure is logged, the poll counts as failed
/// (`adpulse_source_polls_total{result="error"}`) and the days of those rows stay incomplete in
/// the ledger, so the next poll reads them again. When a later poll of the same process
/// resolves the name, the row stored under the resource name is overwritten with zeros, so the
/// region is not counted twice.
pub struct GoogleAdsRegionSource {
    ads: GoogleAdsSource,
    /// Resource name -> region name.
    names: std::collections::BTreeMap<String, String>,
    /// Rows stored under their resource name: zeroed once the name is known.
    unresolved: std::collections::BTreeMap<(String, i64, String), RawRegionStat>,
}

impl GoogleAdsRegionSource {
    pub fn new(cfg: GoogleAdsConfig, reporting_tz: Tz) -> Result<Self, SourceError> {
        Ok(Self {
            ads: GoogleAdsSource::new(cfg, reporting_tz)?,
            names: Default::default(),
            unresolved: Default::default(),
        })
    }

    /// Look up the names of `ids` not yet known; the error, if the query failed.
    async fn resolve(&mut self, ids: std::collections::BTreeSet<String>) -> Option<String> {
        let wanted: Vec<String> = ids
            .into_iter()
            .filter(|id| !self.names.contains_key(id))
            // a resource name is `geoTargetConstants/<digits>`: nothing else goes into the query
            .filter(|id| {
                id.strip_prefix("geoTargetConstants/")
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
            .map(|id| format!("'{id}'"))
            .collect();
        if wanted.is_empty() {
            return None;
        }
        let query = format!(
            "SELECT geo_target_constant.resource_name, geo_target_constant.name \
             FROM geo_target_constant WHERE geo_target_constant.resource_name IN ({})",
            wanted.join(", ")
        );
        match self.ads.stream_with(query, parse_geo_names).await {
            Ok(found) => {
                self.names.extend(found);
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }
}

impl PollSource for GoogleAdsRegionSource {
    fn account_timezone(&self) -> Tz {
        self.ads.tz
    }

    async fn poll(&mut self, window: Window) -> Result<Vec<Observation>, SourceError> {
        let during = format!(
            "WHERE segments.date BETWEEN '{}' AND '{}'",
            window.since, window.until
        );
        let (customer, tz, rtz) = (
            self.ads.cfg.customer_id.clone(),
            self.ads.tz,
            self.ads.reporting_tz,
        );
        let currency = self.ads.cfg.api.account_currency.clone();
        let read = self
            .ads
            .stream_with(
                format!(
                    "SELECT campaign.id, campaign.name, segments.date, \
                     segments.geo_target_region, {METRICS} FROM user_location_view {during}"
                ),
                |text| parse_region_stream(text, &customer, tz, rtz, &currency),
            )
            .await?;
        let totals = self
            .ads
            .stream(format!(
                "SELECT campaign.id, campaign.name, segments.date, {METRICS} FROM campaign {during}"
            ))
            .await?;
        let ids = read
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r.region.clone())
            .collect();
        let failure = self.resolve(ids).await;
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        let mut not_named = Vec::new();
        for r in read {
            match r {
                Err(b) => bad.push(b),
                Ok(mut r) => {
                    match self.names.get(&r.region) {
                        Some(name) => r.region = name.clone(),
                        None => {
                            self.unresolved.insert(
                                (
                                    r.stat.key.campaign_id.clone(),
                                    r.stat.ts.timestamp(),
                                    r.region.clone(),
                                ),
                                r.clone(),
                            );
                            not_named.push(BadRegionRow {
                                campaign_id: r.stat.key.campaign_id.clone(),
                                day: Some(r.stat.ts.with_timezone(&rtz).date_naive()),
                                message: format!(
                                    "Google Ads region {} of campaign {}: name not found ({}); kept under its resource name",
                                    r.region,
                                    r.stat.key.campaign_id,
                                    failure.as_deref().unwrap_or("not in the geo_target_constant answer")
                                ),
                            });
                        }
                    }
                    rows.push(r);
                }
            }
        }
        if !not_named.is_empty() {
            tracing::warn!(source = %self.ads.cfg.customer_id, rows = not_named.len(), error = failure.as_deref().unwrap_or("names missing from the answer"),
                "Google Ads region names not resolved: rows kept under their geoTargetConstants resource names, their days left incomplete");
        }
        let mut out = complete_regions(&totals, rows, &bad, rtz);
        // rows stored under a resource name whose name is now known: overwritten with zeros
        let named: Vec<_> = self
            .unresolved
            .keys()
            .filter(|k| self.names.contains_key(&k.2))
            .cloned()
            .collect();
        for k in named {
            if let Some(mut r) = self.unresolved.remove(&k) {
                r.stat.spend = Decimal::ZERO;
                r.stat.conversion_value = Decimal::ZERO;
                r.stat.impressions = 0;
                r.stat.clicks = 0;
                r.stat.conversions = 0.0;
                out.push(Observation::Region(r));
            }
        }
        bad.extend(not_named);
        region_outcome(window, out, bad)
    }
}

/// Run the source with the shared loop, and its region report beside it when `region_report`.
pub async fn run(cfg: GoogleAdsConfig, ctx: SourceContext) {
    let settings = cfg.polling.loop_settings();
    let tz = ctx.pipeline.timezone();
    let regions = cfg.region_report.then(|| {
        (
            GoogleAdsRegionSource::new(cfg.clone(), tz),
            "google_ads_region",
        )
    });
    let main = (GoogleAdsSource::new(cfg, tz), "google_ads");
    run_with_regions(main, regions, settings, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::RawAdStat;
    use rust_decimal_macros::dec;
    use std::time::Duration;

    #[test]
    fn search_stream_batches_parse_exactly() {
        let body = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/google_ads/search_stream.json"),
        )
        .unwrap();
        // the fixture's rows for an INR customer in `account_tz`, reported in Indian days
        let parse = |account_tz| {
            parse_search_stream(
                &body,
                "123-456-7890",
                account_tz,
                chrono_tz::Asia::Kolkata,
                "INR",
            )
            .unwrap()
        };
        let obs = parse(chrono_tz::Asia::Kolkata);
        assert_eq!(obs.len(), 3, "two batches");
        let c = obs[0].as_campaign().expect("a campaign row");
        assert_eq!(c.spend, dec!(8036.120000));
        assert_eq!(c.conversions, 0.6);
        assert_eq!(c.conversion_value, dec!(1212.5));
        assert_eq!(c.clicks, 1275);
        // the day start: a daily row keeps the customer's own date (2026-11-18 in Los Angeles)
        // and is stamped at midnight of that date in the reporting timezone (India: 18:30 UTC
        // the evening before), not at Los Angeles midnight (08:00 UTC, 13:30 in India)
        let la = parse(chrono_tz::America::Los_Angeles);
        let c = la[0].as_campaign().expect("a campaign row");
        assert_eq!(c.bucket, Bucket::Day);
        assert_eq!(
            c.ts,
            "2026-11-17T18:30:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
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
        let c = obs[0].as_campaign().expect("a campaign row");
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
        let ads: Vec<&RawAdStat> = merged.iter().filter_map(Observation::as_ad).collect();
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

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/google_ads")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn region_rows_sum_their_targeting_splits_and_complete_to_the_campaign_day() {
        let kolkata = chrono_tz::Asia::Kolkata;
        let read = parse_region_stream(
            &fixture("user_location_view_regions.json"),
            "1234567890",
            kolkata,
            kolkata,
            "INR",
        )
        .unwrap();
        // 8 results, one not placed in a region (left to the remainder)
        assert_eq!(read.len(), 7);
        let rows: Vec<RawRegionStat> = read.into_iter().map(Result::unwrap).collect();
        let totals = parse_search_stream(
            &fixture("search_stream.json"),
            "1234567890",
            kolkata,
            kolkata,
            "INR",
        )
        .unwrap();
        let out = complete_regions(&totals, rows, &[], kolkata);
        let get = |id: &str, day: &str, region: &str| {
            let ts = crate::normalize::day_start(day.parse().unwrap(), kolkata);
            out.iter()
                .find_map(|o| match o {
                    Observation::Region(r)
                        if r.stat.key.campaign_id == id
                            && r.stat.ts == ts
                            && r.region == region =>
                    {
                        Some(r.stat.clone())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{id} {day} {region}"))
        };
        // by hand: 3,120.45 targeted + 180.00 not targeted, micros exact
        let m = get("21000000001", "2026-11-18", "geoTargetConstants/20453");
        assert_eq!((m.spend, m.clicks), (dec!(3300.45), 612 + 31));
        assert_eq!(m.conversion_value, dec!(1212.5));
        // 8,036.12 - 3,300.45 - 2,890.12: the not placed 845.55 and what no row reported
        let rest = get("21000000001", "2026-11-18", "unreported");
        assert_eq!(rest.spend, dec!(1845.55));
        assert_eq!(rest.conversion_value, dec!(0));
        // fully placed days keep a zero remainder (a restated day overwrites an older one)
        assert_eq!(
            get("21000000002", "2026-11-18", "unreported").spend,
            dec!(0)
        );
        assert_eq!(
            get("21000000001", "2026-11-19", "unreported").spend,
            dec!(0)
        );
        // 2 region keys on each of the 3 campaign days, and their 3 remainders
        assert_eq!(out.len(), 9);
    }

    #[test]
    fn an_unreadable_region_result_is_named_and_the_others_kept() {
        let body =
            fixture("user_location_view_regions.json").replacen("\"2890120000\"", "\"2890.12\"", 1);
        let read = parse_region_stream(&body, "1", chrono_tz::UTC, chrono_tz::UTC, "INR").unwrap();
        let bad: Vec<&BadRegionRow> = read.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!((read.len(), bad.len()), (7, 1));
        for part in [
            "result 2",
            "21000000001",
            "geoTargetConstants/20458",
            "2026-11-18",
            "costMicros",
        ] {
            assert!(bad[0].message.contains(part), "{part}: {}", bad[0].message);
        }
        assert_eq!(bad[0].day, "2026-11-18".parse().ok());
        let names = parse_geo_names(&fixture("geo_target_constants.json")).unwrap();
        assert_eq!(names.len(), 4);
        assert!(names.contains(&("geoTargetConstants/20458".into(), "Karnataka".into())));
    }
}
