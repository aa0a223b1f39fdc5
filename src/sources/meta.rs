//! Meta Marketing API: ad-level daily (and hourly) `/act_{id}/insights` (`level=ad`), cursor
//! pagination, throttling (error codes 4, 17, 32, 613, 80000-80014 and the usage headers' waits),
//! through the shared polling loop in `sources::http`; and the budgets of campaigns and ad sets
//! (`read_budgets`), so budget actions change the object that holds the budget.
//!
//! What the API does that matters here: numbers arrive as strings; every row carries
//! `account_currency`; `date_start` is a day in the ad account's timezone; purchases appear under
//! several overlapping action types (`purchase`, `omni_purchase`,
//! `offsite_conversion.fb_pixel_purchase`, each counting the same purchase again), so exactly one
//! configured type counts (`purchase_action_type`, `omni_purchase` by default), never their sum.
//!
//! Ad level: each row names its ad set and ad (`adset_id`, `adset_name`, `ad_id`, `ad_name`). It
//! becomes an `ad_stats` row and also a campaign observation; the rows of one answer sharing a
//! key are summed (`sources::http::merge_duplicates`), so the campaign's `campaign_stats` row is
//! the exact sum of its ads from the same answer, never a second request that may disagree. A row
//! without `ad_id` (an answer at campaign level) is a campaign row only.

use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;

use crate::normalize::{Observation, RawCampaignStat, RawRegionStat};
use crate::platforms::meta::MetaApiConfig;
use crate::records::{AdRef, CampaignKey};
use crate::sources::SourceContext;
use crate::sources::http::{PollSource, SourceError, Window, send_with_retry};
use crate::sources::polling::{PollingConfig, PollingDefaults, required, timezone};
use crate::sources::report::{
    BadRegionRow, complete_regions, days_then_recent_hours, push_row, region_outcome,
    run_with_regions, send_bearer, stamp,
};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetaError {
    #[error("Meta insights body is not the documented JSON: {0}")]
    Malformed(String),
    #[error("Meta insights row {row} ({campaign}): field {field} = {value:?} is not a number")]
    BadNumber {
        row: usize,
        campaign: String,
        field: &'static str,
        value: String,
    },
    #[error("Meta insights row {row} ({campaign}): date_start {value:?} is not YYYY-MM-DD")]
    BadDate {
        row: usize,
        campaign: String,
        value: String,
    },
}

#[derive(Debug, Deserialize)]
struct ActionValue {
    action_type: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct Row {
    campaign_id: String,
    #[serde(default)]
    campaign_name: String,
    /// Present at `level=ad` (and `adset`).
    #[serde(default)]
    adset_id: Option<String>,
    #[serde(default)]
    adset_name: String,
    #[serde(default)]
    ad_id: Option<String>,
    #[serde(default)]
    ad_name: String,
    account_currency: String,
    date_start: String,
    #[serde(default)]
    spend: Option<String>,
    #[serde(default)]
    impressions: Option<String>,
    #[serde(default)]
    clicks: Option<String>,
    #[serde(default)]
    actions: Vec<ActionValue>,
    #[serde(default)]
    action_values: Vec<ActionValue>,
    /// With `breakdowns=hourly_stats_aggregated_by_advertiser_time_zone`: "13:00:00 - 13:59:59".
    #[serde(default)]
    hourly_stats_aggregated_by_advertiser_time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Cursors {
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    cursors: Option<Cursors>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<Row>,
    paging: Option<Paging>,
}

/// One parsed page.
#[derive(Debug)]
pub struct InsightsPage {
    pub observations: Vec<Observation>,
    /// Cursor of the next page, when `paging.next` says there is one.
    pub next_after: Option<String>,
}

/// Parse a page of daily campaign insights for account `account` (as `act_...`), whose days are
/// in `account_tz`, counting purchases of `purchase_action_type` only. A daily row keeps the
/// account's own date (what Ads Manager shows): it is stamped at midnight of that date in
/// `reporting_tz`, so its reporting `day` is the account's date. Hourly rows are true instants.
pub fn parse_insights(
    body: &str,
    account: &str,
    account_tz: Tz,
    reporting_tz: Tz,
    purchase_action_type: &str,
) -> Result<InsightsPage, MetaError> {
    let page: Page = serde_json::from_str(body).map_err(|e| MetaError::Malformed(e.to_string()))?;
    let mut observations = Vec::with_capacity(page.data.len());
    for (i, r) in page.data.into_iter().enumerate() {
        let (stat, ad) = row_stat(
            i,
            r,
            account,
            account_tz,
            reporting_tz,
            purchase_action_type,
        )?;
        push_row(&mut observations, stat, ad);
    }
    let next_after = page
        .paging
        .filter(|p| p.next.is_some())
        .and_then(|p| p.cursors)
        .and_then(|c| c.after);
    Ok(InsightsPage {
        observations,
        next_after,
    })
}

/// One insights row read: its campaign figures, and the ad it names (at `level=ad`).
fn row_stat(
    i: usize,
    r: Row,
    account: &str,
    account_tz: Tz,
    reporting_tz: Tz,
    purchase_action_type: &str,
) -> Result<(RawCampaignStat, Option<AdRef>), MetaError> {
    let num = |field: &'static str, v: &Option<String>| -> Result<Decimal, MetaError> {
        match v.as_deref() {
            None | Some("") => Ok(Decimal::ZERO),
            Some(s) => Decimal::from_str(s).map_err(|_| MetaError::BadNumber {
                row: i,
                campaign: r.campaign_id.clone(),
                field,
                value: s.to_string(),
            }),
        }
    };
    let spend = num("spend", &r.spend)?;
    let impressions = num("impressions", &r.impressions)?;
    let clicks = num("clicks", &r.clicks)?;
    let pick = |list: &[ActionValue], field: &'static str| -> Result<Decimal, MetaError> {
        list.iter()
            .find(|a| a.action_type == purchase_action_type)
            .map(|a| num(field, &Some(a.value.clone())))
            .unwrap_or(Ok(Decimal::ZERO))
    };
    let conversions = pick(&r.actions, "actions")?;
    let value = pick(&r.action_values, "action_values")?;
    let day =
        NaiveDate::parse_from_str(&r.date_start, "%Y-%m-%d").map_err(|_| MetaError::BadDate {
            row: i,
            campaign: r.campaign_id.clone(),
            value: r.date_start.clone(),
        })?;
    let whole = |d: Decimal| rust_decimal::prelude::ToPrimitive::to_u64(&d.trunc()).unwrap_or(0);
    let hour = match &r.hourly_stats_aggregated_by_advertiser_time_zone {
        None => None,
        Some(range) => Some(
            range
                .get(0..2)
                .and_then(|h| h.parse::<u32>().ok())
                .filter(|h| *h < 24)
                .ok_or_else(|| MetaError::BadDate {
                    row: i,
                    campaign: r.campaign_id.clone(),
                    value: range.clone(),
                })?,
        ),
    };
    let (ts, bucket) = stamp(day, hour, account_tz, reporting_tz);
    let stat = RawCampaignStat {
        ts,
        bucket,
        key: CampaignKey {
            platform: "meta".into(),
            account: account.to_string(),
            campaign_id: r.campaign_id,
        },
        campaign_name: r.campaign_name,
        spend,
        conversion_value: value,
        account_currency: r.account_currency,
        impressions: whole(impressions),
        clicks: whole(clicks),
        conversions: rust_decimal::prelude::ToPrimitive::to_f64(&conversions).unwrap_or(0.0),
    };
    let ad = r.ad_id.map(|ad_id| AdRef {
        adset_id: r.adset_id.unwrap_or_default(),
        adset_name: r.adset_name,
        ad_id,
        ad_name: r.ad_name,
    });
    Ok((stat, ad))
}

/// One page of the region report (`level=campaign`, `breakdowns=region`, daily): each row a
/// campaign day in one region (`region`: Meta's English name, "Maharashtra"), or, when a row
/// cannot be read, where it was and why (the page's other rows are kept). `page` is the page's
/// number in the read (from 1), for the message. A body that is not the documented JSON at all
/// is an error.
pub fn parse_region_insights(
    body: &str,
    page: usize,
    account: &str,
    account_tz: Tz,
    reporting_tz: Tz,
    purchase_action_type: &str,
) -> Result<RegionPage, MetaError> {
    #[derive(Deserialize)]
    struct Rows {
        data: Vec<serde_json::Value>,
        paging: Option<Paging>,
    }
    let p: Rows = serde_json::from_str(body).map_err(|e| MetaError::Malformed(e.to_string()))?;
    let mut rows = Vec::with_capacity(p.data.len());
    for (i, v) in p.data.into_iter().enumerate() {
        let campaign_id = v["campaign_id"].as_str().unwrap_or_default().to_string();
        let region = v["region"].as_str().unwrap_or_default().to_string();
        let day = v["date_start"]
            .as_str()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let read = if region.trim().is_empty() {
            Err(format!("no region (got {:?})", v.get("region")))
        } else {
            serde_json::from_value::<Row>(v)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    row_stat(
                        i,
                        r,
                        account,
                        account_tz,
                        reporting_tz,
                        purchase_action_type,
                    )
                    .map_err(|e| e.to_string())
                })
        };
        rows.push(BadRegionRow::or_row(
            read,
            || format!("Meta region report page {page} row {i}"),
            (campaign_id, region, day),
        ));
    }
    let next_after = p
        .paging
        .filter(|p| p.next.is_some())
        .and_then(|p| p.cursors)
        .and_then(|c| c.after);
    Ok(RegionPage { rows, next_after })
}

/// One parsed page of the region report.
#[derive(Debug)]
pub struct RegionPage {
    pub rows: Vec<Result<RawRegionStat, BadRegionRow>>,
    /// Cursor of the next page, when `paging.next` says there is one.
    pub next_after: Option<String>,
}

/// Settings of a Meta ad account source. Every key but `name` and `account_id` has a default
/// (one [`Default`] impl below); the Graph API settings are the platform's shared
/// [`MetaApiConfig`] and the polling settings the sources' shared [`PollingConfig`], both
/// flattened, so their keys stay top-level keys of the `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaConfig {
    /// Name of this source instance (required).
    pub name: String,
    /// Ad account id, `act_<digits>` (required).
    pub account_id: String,
    /// Base URL, pinned version, access token, request timeout.
    #[serde(flatten)]
    pub api: MetaApiConfig,
    /// The ad account's timezone (its `date_start` days).
    pub account_timezone: String,
    /// The one action type counted as a purchase (they overlap: never summed).
    pub purchase_action_type: String,
    /// Rows per page.
    pub page_limit: u32,
    /// Ranges longer than this many days are read as async report runs.
    pub async_threshold_days: u32,
    /// Milliseconds between async job status checks.
    pub async_poll_ms: u64,
    /// Seconds an async job may run before it is retried as two halves.
    pub async_timeout_secs: u64,
    /// Also read hourly rows (`hourly_stats_aggregated_by_advertiser_time_zone`) for this many
    /// most recent days (0: daily only).
    pub hourly_days: u32,
    /// Also read the region report (`breakdowns=region`, daily, campaign level) into
    /// `region_stats`, as its own poll (`<name>.regions`). Off by default: it is two more
    /// paginated reads of the window per poll against the account's rate limit.
    pub region_report: bool,
    /// Interval, look-back (Meta restates insights for up to 28 days) and throttle waits.
    #[serde(flatten)]
    pub polling: PollingConfig<MetaPolling>,
}

/// Meta's polling defaults: its usage headers count in minutes, so "0 minutes" still means "not
/// right now" (a one-minute floor); insights are kept for 37 months.
pub struct MetaPolling;

impl PollingDefaults for MetaPolling {
    const LOOKBACK_DAYS: u32 = 28;
    const MAX_LOOKBACK_DAYS: u32 = 37 * 31;
    const MIN_THROTTLE_WAIT_SECS: u64 = 60;
    const MIN_INTERVAL_SECS: u64 = 60;
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            account_id: String::new(),
            api: MetaApiConfig::default(),
            account_timezone: "Asia/Kolkata".into(),
            purchase_action_type: "omni_purchase".into(),
            page_limit: 500,
            async_threshold_days: 31,
            async_poll_ms: 2_000,
            async_timeout_secs: 600,
            hourly_days: 2,
            region_report: false,
            polling: PollingConfig::default(),
        }
    }
}

impl MetaConfig {
    pub fn problems(&self) -> Vec<crate::base::Problem> {
        let mut p: Vec<crate::base::Problem> = required("name", &self.name).into_iter().collect();
        if !(self.account_id.starts_with("act_")
            && self.account_id[4..].chars().all(|c| c.is_ascii_digit())
            && self.account_id.len() > 4)
        {
            p.push(crate::base::Problem::new(
                "account_id",
                format!("{:?} is not like act_1234567890", self.account_id),
            ));
        }
        p.extend(timezone("account_timezone", &self.account_timezone));
        p.extend(self.api.problems());
        p.extend(self.polling.problems());
        p
    }

    fn token(&self) -> Result<crate::base::Secret, SourceError> {
        crate::sources::http::read_secret(
            self.api.access_token_file.as_deref(),
            &self.api.access_token_env,
        )
    }
}

/// Classify an error answer through the one Meta classifier ([`crate::platforms::meta`]).
pub fn classify_error(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> SourceError {
    crate::platforms::meta::classify(status, headers, body).into()
}

/// The fields of the main report (one row per ad, day or hour).
const AD_FIELDS: &str = "campaign_id,campaign_name,adset_id,adset_name,ad_id,ad_name,spend,impressions,clicks,actions,action_values,account_currency";
/// The fields of the region report (one row per campaign, day and region).
const CAMPAIGN_FIELDS: &str =
    "campaign_id,campaign_name,spend,impressions,clicks,actions,action_values,account_currency";

/// A running Meta source.
pub struct MetaSource {
    cfg: MetaConfig,
    tz: Tz,
    reporting_tz: Tz,
    http: reqwest::Client,
}

impl MetaSource {
    pub fn new(cfg: MetaConfig, reporting_tz: Tz) -> Result<Self, SourceError> {
        let tz = crate::sources::http::timezone("account_timezone", &cfg.account_timezone)?;
        let http = crate::sources::http::client(cfg.api.timeout_secs)?;
        Ok(Self {
            cfg,
            tz,
            reporting_tz,
            http,
        })
    }

    fn insights_query(&self, window: Window, hourly: bool) -> Vec<(String, String)> {
        let breakdown = hourly.then_some("hourly_stats_aggregated_by_advertiser_time_zone");
        self.report_query("ad", AD_FIELDS, window, breakdown)
    }

    /// The campaign-level daily read of the region report: by region (`breakdowns=region`), or
    /// without it (the same campaign days' totals, which the regions must add up to).
    fn region_query(&self, window: Window, by_region: bool) -> Vec<(String, String)> {
        let breakdown = by_region.then_some("region");
        self.report_query("campaign", CAMPAIGN_FIELDS, window, breakdown)
    }

    /// A daily insights read at `level` of `fields` over `window`, with an optional breakdown.
    fn report_query(
        &self,
        level: &str,
        fields: &str,
        window: Window,
        breakdown: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut q = vec![
            ("level".to_string(), level.to_string()),
            ("time_increment".into(), "1".into()),
            ("fields".into(), fields.into()),
            // one entry per action type (the documented default, asked for explicitly: the
            // parser picks the configured purchase type out of this list)
            ("action_breakdowns".into(), "action_type".into()),
            (
                "time_range".into(),
                format!(
                    r#"{{"since":"{}","until":"{}"}}"#,
                    window.since, window.until
                ),
            ),
            ("limit".into(), self.cfg.page_limit.to_string()),
        ];
        q.extend(breakdown.map(|b| ("breakdowns".to_string(), b.to_string())));
        q
    }

    /// One Graph API call (GET or POST) with transient failures retried.
    async fn call(
        &self,
        post: bool,
        path: &str,
        query: &[(String, String)],
    ) -> Result<String, SourceError> {
        let token = self.cfg.token()?;
        let url = format!("{}/{path}", self.cfg.api.versioned_base());
        let what = format!("meta {path}");
        send_with_retry(&what, || async {
            let req = if post {
                self.http.post(&url)
            } else {
                self.http.get(&url)
            };
            let a = send_bearer(req.query(query), &token).await?;
            if a.status >= 400 {
                return Err(classify_error(a.status, &a.headers, &a.text));
            }
            Ok(a.text)
        })
        .await
    }

    fn parse(&self, body: &str) -> Result<InsightsPage, SourceError> {
        parse_insights(
            body,
            &self.cfg.account_id,
            self.tz,
            self.reporting_tz,
            &self.cfg.purchase_action_type,
        )
        .map_err(|e| SourceError::Malformed(e.to_string()))
    }

    /// Every page of `path` (an insights edge), following `paging.cursors.after`.
    async fn pages(
        &self,
        path: &str,
        query: Vec<(String, String)>,
    ) -> Result<Vec<Observation>, SourceError> {
        self.pages_with(path, query, |body, _| {
            self.parse(body).map(|p| (p.observations, p.next_after))
        })
        .await
    }

    /// Every page of `path`, each read by `read(body, page number from 1)` into its items and
    /// the next page's cursor.
    async fn pages_with<T>(
        &self,
        path: &str,
        mut query: Vec<(String, String)>,
        read: impl Fn(&str, usize) -> Result<(Vec<T>, Option<String>), SourceError>,
    ) -> Result<Vec<T>, SourceError> {
        let mut out = Vec::new();
        // bounded: a cursor loop that never ends is a server bug, not a reason to hang
        for n in 1..=10_000 {
            let (items, next_after) = read(&self.call(false, path, &query).await?, n)?;
            out.extend(items);
            match next_after {
                Some(a) => {
                    query.retain(|(k, _)| k != "after");
                    query.push(("after".into(), a));
                }
                None => return Ok(out),
            }
        }
        Err(SourceError::Malformed(
            "more than 10,000 pages: cursor does not advance".into(),
        ))
    }

    /// A large range as an async report run: start the job, poll it, read its result; a job that
    /// fails, is skipped or times out is retried as two halves (down to single days, which are
    /// read synchronously).
    fn run_async(
        &self,
        window: Window,
        hourly: bool,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<Observation>, SourceError>> + Send + '_>,
    > {
        Box::pin(async move {
            let edge = format!("{}/insights", self.cfg.account_id);
            let days = (window.until - window.since).num_days() + 1;
            if days <= 1 {
                return self.pages(&edge, self.insights_query(window, hourly)).await;
            }
            let started: serde_json::Value = serde_json::from_str(
                &self
                    .call(true, &edge, &self.insights_query(window, hourly))
                    .await?,
            )
            .map_err(|e| SourceError::Malformed(format!("async report start: {e}")))?;
            let id = started["report_run_id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| {
                    SourceError::Malformed("async report start without report_run_id".into())
                })?;
            let deadline = std::time::Instant::now()
                + std::time::Duration::from_secs(self.cfg.async_timeout_secs);
            let status = loop {
                let v: serde_json::Value = serde_json::from_str(
                    &self
                        .call(
                            false,
                            &id,
                            &[(
                                "fields".into(),
                                "async_status,async_percent_completion".into(),
                            )],
                        )
                        .await?,
                )
                .map_err(|e| SourceError::Malformed(format!("async report {id}: {e}")))?;
                let st = v["async_status"].as_str().unwrap_or("").to_string();
                if st == "Job Completed" || st == "Job Failed" || st == "Job Skipped" {
                    break st;
                }
                if std::time::Instant::now() > deadline {
                    break "timed out".to_string();
                }
                tokio::time::sleep(std::time::Duration::from_millis(self.cfg.async_poll_ms)).await;
            };
            if status == "Job Completed" {
                let q = vec![("limit".to_string(), self.cfg.page_limit.to_string())];
                return self.pages(&format!("{id}/insights"), q).await;
            }
            let mid = window.since + chrono::Days::new(((days - 1) / 2) as u64);
            tracing::warn!(account = %self.cfg.account_id, report = %id, %status, since = %window.since, until = %window.until, "async report did not complete; retrying as two halves");
            let mut out = self
                .run_async(
                    Window {
                        since: window.since,
                        until: mid,
                    },
                    hourly,
                )
                .await?;
            out.extend(
                self.run_async(
                    Window {
                        since: mid + chrono::Days::new(1),
                        until: window.until,
                    },
                    hourly,
                )
                .await?,
            );
            Ok(out)
        })
    }
}

impl PollSource for MetaSource {
    fn account_timezone(&self) -> Tz {
        self.tz
    }

    /// Days, then the recent days by hour; a long range as an async report run.
    async fn poll(&mut self, window: Window) -> Result<Vec<Observation>, SourceError> {
        let edge = format!("{}/insights", self.cfg.account_id);
        let mut out = Vec::new();
        for (w, hourly) in days_then_recent_hours(window, self.cfg.hourly_days) {
            let days = (w.until - w.since).num_days() + 1;
            out.extend(if days > i64::from(self.cfg.async_threshold_days) {
                self.run_async(w, hourly).await?
            } else {
                self.pages(&edge, self.insights_query(w, hourly)).await?
            });
        }
        Ok(out)
    }
}

/// The region report of a Meta ad account, polled as its own source (`<name>.regions`) with the
/// shared loop: its days have their own ledger entries, so a failed region read leaves only the
/// region days incomplete (retried by the next poll) and never holds back the main report.
/// Each poll reads the window's campaign days by region and, in the same poll, without the
/// breakdown; the difference is stored as the [`UNREPORTED_REGION`](crate::sources::report::UNREPORTED_REGION)
/// row ([`complete_regions`]). Synchronous reads only (no async report runs): a region read is
/// campaign level, a few dozen rows per campaign day.
pub struct MetaRegionSource(MetaSource);

impl MetaRegionSource {
    pub fn new(cfg: MetaConfig, reporting_tz: Tz) -> Result<Self, SourceError> {
        MetaSource::new(cfg, reporting_tz).map(Self)
    }
}

impl PollSource for MetaRegionSource {
    fn account_timezone(&self) -> Tz {
        self.0.tz
    }

    async fn poll(&mut self, window: Window) -> Result<Vec<Observation>, SourceError> {
        let s = &self.0;
        let edge = format!("{}/insights", s.cfg.account_id);
        let read = s
            .pages_with(&edge, s.region_query(window, true), |body, n| {
                parse_region_insights(
                    body,
                    n,
                    &s.cfg.account_id,
                    s.tz,
                    s.reporting_tz,
                    &s.cfg.purchase_action_type,
                )
                .map(|p| (p.rows, p.next_after))
                .map_err(|e| SourceError::Malformed(format!("Meta region report page {n}: {e}")))
            })
            .await?;
        let totals = s.pages(&edge, s.region_query(window, false)).await?;
        let (rows, bad): (Vec<_>, Vec<_>) = read.into_iter().partition(Result::is_ok);
        let rows: Vec<RawRegionStat> = rows.into_iter().filter_map(Result::ok).collect();
        let bad: Vec<BadRegionRow> = bad.into_iter().filter_map(Result::err).collect();
        region_outcome(
            window,
            complete_regions(&totals, rows, &bad, s.reporting_tz),
            bad,
        )
    }
}

/// Run the source with the shared loop, and its region report beside it when `region_report`.
pub async fn run(cfg: MetaConfig, ctx: SourceContext) {
    let settings = cfg.polling.loop_settings();
    let tz = ctx.pipeline.timezone();
    let regions = cfg
        .region_report
        .then(|| (MetaRegionSource::new(cfg.clone(), tz), "meta_region"));
    let main = (MetaSource::new(cfg, tz), "meta");
    run_with_regions(main, regions, settings, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{RawAdStat, day_start};
    use crate::records::Bucket;
    use rust_decimal_macros::dec;

    fn fixture() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/meta/insights_page1.json"),
        )
        .unwrap()
    }

    #[test]
    fn parses_strings_currency_and_one_purchase_type() {
        let p = parse_insights(
            &fixture(),
            "act_1029384756",
            chrono_tz::America::Los_Angeles,
            chrono_tz::Asia::Kolkata,
            "omni_purchase",
        )
        .unwrap();
        assert_eq!(p.observations.len(), 2);
        assert_eq!(p.next_after.as_deref(), Some("MQZDZD"));
        let c = p.observations[0].as_campaign().expect("a campaign row");
        assert_eq!(c.spend, dec!(115.02));
        assert_eq!(
            c.conversions, 1.0,
            "overlapping purchase types are not summed"
        );
        assert_eq!(c.conversion_value, dec!(25.39));
        assert_eq!(c.account_currency, "USD");
        assert_eq!(c.impressions, 873_112);
        // the account's own date (2026-11-18 in Los Angeles) is the row's reporting day: it is
        // stamped at Indian midnight of that date, not at Los Angeles midnight (which is
        // 13:30 on 2026-11-18 in India, and would be fine, but 2026-11-17 for a Tokyo account)
        assert_eq!(
            c.ts,
            "2026-11-17T18:30:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        let Observation::Campaign(r) = &p.observations[1] else {
            panic!()
        };
        assert_eq!(r.conversions, 0.0);
        assert_eq!(r.conversion_value, dec!(0));
    }

    #[test]
    fn hourly_breakdown_rows_are_hour_buckets_in_the_account_timezone() {
        let body = fixture().replace(
            "\"date_stop\": \"2026-11-18\",",
            "\"date_stop\": \"2026-11-18\", \"hourly_stats_aggregated_by_advertiser_time_zone\": \"13:00:00 - 13:59:59\",",
        );
        let p = parse_insights(
            &body,
            "act_1",
            chrono_tz::Asia::Kolkata,
            chrono_tz::Asia::Kolkata,
            "omni_purchase",
        )
        .unwrap();
        let c = p.observations[0].as_campaign().expect("a campaign row");
        assert_eq!(c.bucket, Bucket::Hour);
        // 13:00 in India is 07:30 UTC
        assert_eq!(
            c.ts,
            "2026-11-18T07:30:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        let bad = fixture().replace(
            "\"date_stop\": \"2026-11-18\",",
            "\"date_stop\": \"2026-11-18\", \"hourly_stats_aggregated_by_advertiser_time_zone\": \"late evening\",",
        );
        assert!(parse_insights(&bad, "act_1", chrono_tz::UTC, chrono_tz::UTC, "purchase").is_err());
    }

    fn ad_fixture(page: u32) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "tests/fixtures/meta/insights_ad_level_page{page}.json"
            )),
        )
        .unwrap()
    }

    #[test]
    fn ad_rows_sum_into_their_campaign_and_shared_ad_keys_add_up() {
        let mut obs = Vec::new();
        for page in [1, 2] {
            let p = parse_insights(
                &ad_fixture(page),
                "act_1029384756",
                chrono_tz::America::Los_Angeles,
                chrono_tz::Asia::Kolkata,
                "omni_purchase",
            )
            .unwrap();
            assert_eq!(p.next_after.is_some(), page == 1);
            obs.extend(p.observations);
        }
        // 6 rows: each an ad observation and the campaign's share
        assert_eq!(obs.len(), 12);
        let merged = crate::sources::http::merge_duplicates(obs);
        let campaign = |id: &str, day: &str| {
            let ts = day_start(day.parse().unwrap(), chrono_tz::Asia::Kolkata);
            merged
                .iter()
                .find_map(|o| match o {
                    Observation::Campaign(c) if c.key.campaign_id == id && c.ts == ts => {
                        Some(c.clone())
                    }
                    _ => None,
                })
                .unwrap()
        };
        let ads: Vec<&RawAdStat> = merged.iter().filter_map(Observation::as_ad).collect();
        // ads of 2026-11-18: 1001, 1002, 1003, 3001 (its two product rows summed); 1001 on 11-19
        assert_eq!(ads.len(), 5);
        assert_eq!(merged.len(), 5 + 3);
        // by hand: 8.53 + 14.35 + 3.10 (the third ad is on page 2)
        let a = campaign("120210000000001", "2026-11-18");
        assert_eq!(a.spend, dec!(25.98));
        assert_eq!(
            (a.impressions, a.clicks),
            (61_234 + 98_001 + 20_500, 402 + 517 + 88)
        );
        // omni_purchase only: 1 + 2 (never purchase + omni + pixel, which would be 9)
        assert_eq!(a.conversions, 3.0);
        assert_eq!(a.conversion_value, dec!(86.59));
        assert_eq!(campaign("120210000000001", "2026-11-19").spend, dec!(5.00));
        let b = campaign("120210000000003", "2026-11-18");
        assert_eq!((b.spend, b.clicks, b.conversions), (dec!(3.33), 42, 1.0));
        let dpa = ads
            .iter()
            .find(|a| a.ad.ad_id == "120210000003001")
            .unwrap();
        assert_eq!((dpa.stat.spend, dpa.stat.impressions), (dec!(3.33), 11_334));
        assert_eq!(dpa.ad.adset_id, "120210000000301");
        assert_eq!(dpa.ad.ad_name, "Catalogue DPA");
        // a campaign-level row (no ad_id) stays a campaign row only
        let p = parse_insights(
            &fixture(),
            "act_1",
            chrono_tz::UTC,
            chrono_tz::UTC,
            "omni_purchase",
        )
        .unwrap();
        assert!(
            p.observations
                .iter()
                .all(|o| matches!(o, Observation::Campaign(_)))
        );
    }

    #[test]
    fn malformed_and_bad_numbers_are_named() {
        let e = parse_insights(
            "{\"data\": [",
            "act_1",
            chrono_tz::UTC,
            chrono_tz::UTC,
            "purchase",
        )
        .unwrap_err();
        assert!(matches!(e, MetaError::Malformed(_)));
        let bad = fixture().replace("\"115.02\"", "\"1,15.02\"");
        let e =
            parse_insights(&bad, "act_1", chrono_tz::UTC, chrono_tz::UTC, "purchase").unwrap_err();
        assert!(e.to_string().contains("spend"), "{e}");
        assert!(e.to_string().contains("120210000000001"), "{e}");
    }

    #[test]
    fn region_rows_are_read_one_by_one_and_an_unreadable_one_is_named() {
        let body = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/meta/region_page3.json"),
        )
        .unwrap();
        let kolkata = chrono_tz::Asia::Kolkata;
        let p = parse_region_insights(
            &body,
            3,
            "act_2233445566",
            kolkata,
            kolkata,
            "omni_purchase",
        )
        .unwrap();
        assert_eq!(p.next_after, None, "the last page");
        let good: Vec<&RawRegionStat> = p.rows.iter().filter_map(|r| r.as_ref().ok()).collect();
        let bad: Vec<&BadRegionRow> = p.rows.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!((good.len(), bad.len()), (3, 1));
        assert_eq!(
            (good[2].region.as_str(), good[2].stat.spend),
            ("Telangana", dec!(87.65))
        );
        assert_eq!(bad[0].campaign_id, "120230000000202");
        assert_eq!(bad[0].day, "2026-11-19".parse().ok());
        for part in ["page 3 row 2", "Gujarat", "spend", "4,87.65"] {
            assert!(bad[0].message.contains(part), "{part}: {}", bad[0].message);
        }
        // purchase values as the main report reads them (one action type, never summed)
        let p1 = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/meta/region_page1.json"),
        )
        .unwrap();
        let p = parse_region_insights(&p1, 1, "act_1", kolkata, kolkata, "omni_purchase").unwrap();
        let first = p.rows[0].as_ref().unwrap();
        assert_eq!(
            (
                first.region.as_str(),
                first.stat.conversion_value,
                first.stat.conversions
            ),
            ("Maharashtra", dec!(2499.00), 1.0)
        );
        assert_eq!(p.next_after.as_deref(), Some("QVFIUmRE"));
    }
}
