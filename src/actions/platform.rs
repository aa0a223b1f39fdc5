//! The ad platform interface actions run through ([`AdPlatform`]: read a campaign, pause or enable
//! it, set its daily budget), with REST clients for the Meta Marketing API and the Google Ads API.
//! Every call is an absolute "set", so repeating it is harmless; errors say whether a retry may
//! help. Tokens are [`Secret`]s: sent in headers, never in URLs or logs.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::config::{GoogleAdsActionsConfig, MetaActionsConfig};
use crate::base::Secret;
use crate::platforms::google::{ADS_ENV_PREFIX, GoogleOAuth, OAuthError};
use crate::records::CampaignKey;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Active,
    Paused,
    /// Archived, removed or anything adpulse does not change.
    Other,
}

/// What a platform says about a campaign right now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignState {
    pub status: CampaignStatus,
    /// Daily budget in the account currency (major units); `None` when the budget lives elsewhere
    /// (e.g. on Meta ad sets).
    pub daily_budget: Option<Decimal>,
    /// Platform handle of the budget (Google Ads `campaignBudgets` resource name).
    #[serde(skip)]
    pub budget_ref: Option<String>,
    /// Meta campaigns without a budget of their own (no campaign budget optimization): their ad
    /// sets, which hold the budgets; `daily_budget` is then the sum of the active ones'. Empty
    /// when the campaign holds the budget (CBO) and on other platforms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adsets: Vec<AdSetBudget>,
}

/// The budget of one Meta ad set (account currency, major units).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdSetBudget {
    pub id: String,
    pub name: String,
    pub status: CampaignStatus,
    pub daily_budget: Option<Decimal>,
    pub lifetime_budget: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlatformError {
    /// Throttled, or a transient failure: the same call may succeed later.
    #[error("{platform}: temporarily unavailable: {message}")]
    Retryable {
        platform: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Refused for good (bad token, permission, invalid value): retrying cannot help.
    #[error("{platform}: refused: {message}")]
    Rejected {
        platform: &'static str,
        message: String,
    },
    /// An answer that does not follow the documented format.
    #[error("{platform}: unexpected answer: {message}")]
    Malformed {
        platform: &'static str,
        message: String,
    },
    #[error("no {0} client configured ([actions.{0}] and its token)")]
    NotConfigured(String),
}

impl PlatformError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PlatformError::Retryable { .. })
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PlatformError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An ad platform adpulse can act on.
pub trait AdPlatform: Send + Sync {
    /// `CampaignKey::platform` value this client serves.
    fn platform(&self) -> &'static str;
    /// Currency budgets are expressed in.
    fn account_currency(&self) -> &str;
    fn get_campaign<'a>(
        &'a self,
        key: &'a CampaignKey,
    ) -> BoxFut<'a, Result<CampaignState, PlatformError>>;
    fn set_status<'a>(
        &'a self,
        key: &'a CampaignKey,
        status: CampaignStatus,
    ) -> BoxFut<'a, Result<(), PlatformError>>;
    /// Set the daily budget (account currency, major units). `state` is a fresh read.
    fn set_daily_budget<'a>(
        &'a self,
        key: &'a CampaignKey,
        state: &'a CampaignState,
        amount: Decimal,
    ) -> BoxFut<'a, Result<(), PlatformError>>;
}

fn http_client(timeout_secs: u64) -> reqwest::Client {
    crate::init_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs.max(1)))
        .build()
        .unwrap_or_default()
}

/// Minor units per major unit (Meta budgets are in the currency's smallest unit).
fn minor_units(currency: &str) -> Decimal {
    // ISO 4217 zero-decimal currencies Meta lists as offset 1
    const ZERO: [&str; 12] = [
        "JPY", "KRW", "CLP", "COP", "CRC", "HUF", "ISK", "IDR", "PYG", "TWD", "VND", "UGX",
    ];
    if ZERO.contains(&currency) {
        Decimal::ONE
    } else {
        Decimal::from(100)
    }
}

fn transport(platform: &'static str, e: reqwest::Error) -> PlatformError {
    // without_url: a URL can carry identifiers we do not want in logs
    let message = e.without_url().to_string();
    PlatformError::Retryable {
        platform,
        message,
        retry_after: None,
    }
}

/// Decode a platform's JSON answer. A body that cannot be read is retryable when `retryable`
/// says so for its status, malformed otherwise; an `error` object is classified by `api_error`;
/// a non-2xx answer without one is malformed.
async fn decode(
    platform: &'static str,
    resp: reqwest::Response,
    retryable: fn(reqwest::StatusCode) -> bool,
    api_error: fn(u16, &serde_json::Value) -> PlatformError,
) -> Result<serde_json::Value, PlatformError> {
    let status = resp.status();
    let body: serde_json::Value = match resp.json().await {
        Ok(b) => b,
        Err(e) => {
            let message = format!("HTTP {status}: {}", e.without_url());
            return Err(if retryable(status) {
                PlatformError::Retryable {
                    platform,
                    message,
                    retry_after: None,
                }
            } else {
                PlatformError::Malformed { platform, message }
            });
        }
    };
    // an error object, or Google's array form `[{"error": ...}]`
    if let Some(err) = crate::platforms::google::error_object(&body) {
        return Err(api_error(status.as_u16(), err));
    }
    if !status.is_success() {
        return Err(PlatformError::Malformed {
            platform,
            message: format!("HTTP {status} without an error object"),
        });
    }
    Ok(body)
}

/// Meta Marketing API (Graph API): `GET /{campaign_id}?fields=status,daily_budget,lifetime_budget`,
/// `POST /{campaign_id}` with `status=PAUSED|ACTIVE` or `daily_budget=<minor units>`.
///
/// Budgets live on the campaign (campaign budget optimization, CBO) or, when the campaign has
/// none, on its ad sets (`GET /{campaign_id}/adsets?fields=id,name,status,daily_budget,
/// lifetime_budget`, cursor-paged). A budget change then goes to the object that holds the
/// budget: the campaign's `daily_budget` for CBO; otherwise the active ad sets' daily budgets,
/// scaled proportionally so that they keep their shares and add up exactly to the new total
/// (see [`split_proportionally`]). Lifetime budgets are read and shown, never changed.
pub struct MetaAds {
    http: reqwest::Client,
    base: String,
    token: Secret,
    currency: String,
}

const META: &str = "meta";

impl MetaAds {
    pub fn new(cfg: &MetaActionsConfig, token: Secret) -> Self {
        Self {
            http: http_client(cfg.api.timeout_secs),
            base: cfg.api.versioned_base(),
            token,
            currency: cfg.account_currency.clone(),
        }
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<serde_json::Value, PlatformError> {
        let resp = req
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| transport(META, e))?;
        decode(META, resp, |s| s.is_server_error(), meta_error).await
    }

    async fn post(&self, id: &str, form: &[(&str, String)]) -> Result<(), PlatformError> {
        let body = self
            .call(
                self.http
                    .post(format!("{}/{id}", self.base))
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form_encode(form)),
            )
            .await?;
        if body.get("success").and_then(|s| s.as_bool()) == Some(true) {
            Ok(())
        } else {
            Err(PlatformError::Malformed {
                platform: META,
                message: "no \"success\": true in the answer".into(),
            })
        }
    }
}

impl MetaAds {
    /// A budget field of a campaign or ad set (a string of minor units), in major units.
    fn budget(
        &self,
        body: &serde_json::Value,
        field: &str,
    ) -> Result<Option<Decimal>, PlatformError> {
        match body.get(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => {
                let s = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                let minor: Decimal = s.parse().map_err(|_| PlatformError::Malformed {
                    platform: META,
                    message: format!("{field} {s:?} is not a number"),
                })?;
                // Meta sends "0" for an ad set whose budget is set elsewhere
                Ok((!minor.is_zero()).then(|| minor / minor_units(&self.currency)))
            }
        }
    }

    /// Every ad set of a campaign with its budgets, following `paging.next`.
    async fn adsets(&self, campaign_id: &str) -> Result<Vec<AdSetBudget>, PlatformError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        // bounded: a cursor that never ends is a server bug, not a reason to hang
        for _ in 0..1_000 {
            let mut q = vec![
                (
                    "fields",
                    "id,name,status,daily_budget,lifetime_budget".to_string(),
                ),
                ("limit", "200".to_string()),
            ];
            if let Some(a) = &after {
                q.push(("after", a.clone()));
            }
            let body = self
                .call(
                    self.http
                        .get(format!("{}/{campaign_id}/adsets", self.base))
                        .query(&q),
                )
                .await?;
            let data = body.get("data").and_then(|d| d.as_array()).ok_or_else(|| {
                PlatformError::Malformed {
                    platform: META,
                    message: "ad sets answer without a data array".into(),
                }
            })?;
            for a in data {
                let id = a.get("id").and_then(|v| v.as_str()).ok_or_else(|| {
                    PlatformError::Malformed {
                        platform: META,
                        message: "ad set without id".into(),
                    }
                })?;
                out.push(AdSetBudget {
                    id: id.to_string(),
                    name: a
                        .get("name")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    // an ad set without a status is one adpulse leaves alone
                    status: read_status(META, a.get("status").and_then(|s| s.as_str()), "ACTIVE")
                        .unwrap_or(CampaignStatus::Other),
                    daily_budget: self.budget(a, "daily_budget")?,
                    lifetime_budget: self.budget(a, "lifetime_budget")?,
                });
            }
            after = body
                .pointer("/paging/next")
                .and(body.pointer("/paging/cursors/after"))
                .and_then(|v| v.as_str())
                .map(str::to_string);
            if after.is_none() {
                return Ok(out);
            }
        }
        Err(PlatformError::Malformed {
            platform: META,
            message: "more than 1,000 pages of ad sets: the cursor does not advance".into(),
        })
    }
}

/// Split a new total (`target`, minor units) over budgets (`current`, minor units) in
/// proportion to them: each gets `floor(target * its / sum)`, and the minor units left by the
/// rounding go to the largest budget (the first of equal ones), so the parts add up exactly to
/// `target`. `None` when there is nothing to split over.
pub fn split_proportionally<'a>(
    current: &[(&'a str, i64)],
    target: i64,
) -> Option<Vec<(&'a str, i64)>> {
    let sum: i128 = current.iter().map(|(_, m)| i128::from(*m)).sum();
    if sum <= 0 {
        return None;
    }
    let mut out: Vec<(&str, i64)> = current
        .iter()
        .map(|(id, m)| {
            let part = i128::from(target) * i128::from(*m) / sum;
            (*id, i64::try_from(part).unwrap_or(i64::MAX))
        })
        .collect();
    let given: i64 = out.iter().map(|(_, m)| *m).sum();
    let largest =
        (0..current.len()).max_by(|a, b| current[*a].1.cmp(&current[*b].1).then(b.cmp(a)))?;
    out[largest].1 += target - given;
    Some(out)
}

/// `application/x-www-form-urlencoded` (reqwest is built without its `form` feature).
fn form_encode(form: &[(&str, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Meta error object -> error, through the one Meta classifier shared with the insights source
/// ([`crate::platforms::meta::classify_value`]): `is_transient`, codes 1 and 2, the rate-limit
/// codes and any 5xx are retryable.
fn meta_error(status: u16, err: &serde_json::Value) -> PlatformError {
    from_fault(
        META,
        crate::platforms::meta::classify_value(status, &reqwest::header::HeaderMap::new(), err),
    )
}

/// A classified platform fault as the actions see it: retry later, or refused for good.
fn from_fault(platform: &'static str, f: crate::platforms::ApiFault) -> PlatformError {
    use crate::platforms::FaultKind;
    match f.kind {
        FaultKind::Throttled | FaultKind::Transient => PlatformError::Retryable {
            platform,
            message: f.message,
            retry_after: f.retry_after,
        },
        FaultKind::Auth | FaultKind::Rejected => PlatformError::Rejected {
            platform,
            message: f.message,
        },
    }
}

/// A campaign's status word (`active` is the platform's word for running: Meta `ACTIVE`, Google
/// `ENABLED`); anything else known is [`CampaignStatus::Other`], none at all is malformed.
fn read_status(
    platform: &'static str,
    word: Option<&str>,
    active: &str,
) -> Result<CampaignStatus, PlatformError> {
    match word {
        Some(w) if w == active => Ok(CampaignStatus::Active),
        Some("PAUSED") => Ok(CampaignStatus::Paused),
        Some(_) => Ok(CampaignStatus::Other),
        None => Err(PlatformError::Malformed {
            platform,
            message: "campaign without status".into(),
        }),
    }
}

/// The platform's word for `status` (`active` as in [`read_status`]): adpulse only pauses or
/// runs campaigns, never archives or removes them.
fn status_word<'w>(
    platform: &'static str,
    status: CampaignStatus,
    active: &'w str,
) -> Result<&'w str, PlatformError> {
    match status {
        CampaignStatus::Active => Ok(active),
        CampaignStatus::Paused => Ok("PAUSED"),
        CampaignStatus::Other => Err(PlatformError::Rejected {
            platform,
            message: format!("adpulse only pauses or sets {active}"),
        }),
    }
}

/// A budget in whole platform units (`per_major` of them to a major unit: minor units for Meta,
/// micros for Google), cut, never rounded up past what was decided.
fn whole_units(
    platform: &'static str,
    amount: Decimal,
    per_major: Decimal,
) -> Result<i64, PlatformError> {
    (amount * per_major)
        .trunc()
        .to_i64()
        .ok_or_else(|| PlatformError::Rejected {
            platform,
            message: format!("budget {amount} out of range"),
        })
}

/// The [`AdPlatform`] impl of a client whose inherent `async fn`s `read_campaign`,
/// `write_status` (given the platform's status word; `$active` is its word for running) and
/// `write_budget` do the work: they are boxed here, once, so that the trait stays usable as
/// `dyn AdPlatform`.
macro_rules! ad_platform {
    ($client:ty, $platform:expr, $active:expr) => {
        impl AdPlatform for $client {
            fn platform(&self) -> &'static str {
                $platform
            }
            fn account_currency(&self) -> &str {
                &self.currency
            }
            fn get_campaign<'a>(
                &'a self,
                key: &'a CampaignKey,
            ) -> BoxFut<'a, Result<CampaignState, PlatformError>> {
                Box::pin(self.read_campaign(key))
            }
            fn set_status<'a>(
                &'a self,
                key: &'a CampaignKey,
                status: CampaignStatus,
            ) -> BoxFut<'a, Result<(), PlatformError>> {
                Box::pin(async move {
                    let word = status_word($platform, status, $active)?;
                    self.write_status(key, word).await
                })
            }
            fn set_daily_budget<'a>(
                &'a self,
                key: &'a CampaignKey,
                state: &'a CampaignState,
                amount: Decimal,
            ) -> BoxFut<'a, Result<(), PlatformError>> {
                Box::pin(self.write_budget(key, state, amount))
            }
        }
    };
}

ad_platform!(MetaAds, META, "ACTIVE");
ad_platform!(GoogleAds, GOOGLE, "ENABLED");

impl MetaAds {
    async fn read_campaign(&self, key: &CampaignKey) -> Result<CampaignState, PlatformError> {
        let body = self
            .call(
                self.http
                    .get(format!("{}/{}", self.base, key.campaign_id))
                    .query(&[("fields", "status,daily_budget,lifetime_budget")]),
            )
            .await?;
        let status = read_status(META, body.get("status").and_then(|s| s.as_str()), "ACTIVE")?;
        let daily_budget = self.budget(&body, "daily_budget")?;
        let lifetime = self.budget(&body, "lifetime_budget")?;
        if daily_budget.is_some() || lifetime.is_some() {
            // CBO: the campaign holds the budget
            return Ok(CampaignState {
                status,
                daily_budget,
                budget_ref: None,
                adsets: Vec::new(),
            });
        }
        let adsets = self.adsets(&key.campaign_id).await?;
        let active: Vec<Decimal> = adsets
            .iter()
            .filter(|a| a.status == CampaignStatus::Active)
            .filter_map(|a| a.daily_budget)
            .collect();
        Ok(CampaignState {
            status,
            daily_budget: (!active.is_empty()).then(|| active.iter().sum()),
            budget_ref: None,
            adsets,
        })
    }

    async fn write_status(&self, key: &CampaignKey, word: &str) -> Result<(), PlatformError> {
        self.post(&key.campaign_id, &[("status", word.to_string())])
            .await
    }

    async fn write_budget(
        &self,
        key: &CampaignKey,
        state: &CampaignState,
        amount: Decimal,
    ) -> Result<(), PlatformError> {
        let unit = minor_units(&self.currency);
        let minor = whole_units(META, amount, unit)?;
        if state.adsets.is_empty() {
            return self
                .post(&key.campaign_id, &[("daily_budget", minor.to_string())])
                .await;
        }
        // ad-set budgets: the active ad sets with a daily budget share the new total
        let current: Vec<(&str, i64)> = state
            .adsets
            .iter()
            .filter(|a| a.status == CampaignStatus::Active)
            .filter_map(|a| {
                let m = (a.daily_budget? * unit).trunc().to_i64()?;
                Some((a.id.as_str(), m))
            })
            .collect();
        let split =
            split_proportionally(&current, minor).ok_or_else(|| PlatformError::Rejected {
                platform: META,
                message: "the campaign has no budget and none of its active ad sets has a \
                          daily budget (lifetime budgets are not changed)"
                    .into(),
            })?;
        for (id, m) in split {
            self.post(id, &[("daily_budget", m.to_string())]).await?;
        }
        Ok(())
    }
}

/// Google Ads API over REST: `googleAds:search` (GAQL) to read, `campaigns:mutate` for the
/// status and `campaignBudgets:mutate` for the amount, with the developer-token and
/// login-customer-id headers. The access token comes from the one OAuth flow
/// ([`GoogleOAuth`], shared with the sources): refreshed a minute before it expires, and once more
/// when the API answers 401 (revoked or expired early); the token endpoint's 5xx are retried.
pub struct GoogleAds {
    http: reqwest::Client,
    base: String,
    /// Behind a lock so that concurrent calls wait for one refresh instead of each starting one.
    oauth: tokio::sync::Mutex<GoogleOAuth>,
    developer_token: Secret,
    login_customer_id: Option<String>,
    currency: String,
}

const GOOGLE: &str = "google_ads";

/// A token that could not be had: the endpoint being down may pass, a refused refresh token or
/// a missing secret will not.
fn oauth_error(e: OAuthError) -> PlatformError {
    match e {
        OAuthError::Unavailable(_) => PlatformError::Retryable {
            platform: GOOGLE,
            message: e.to_string(),
            retry_after: None,
        },
        _ => PlatformError::Rejected {
            platform: GOOGLE,
            message: e.to_string(),
        },
    }
}

impl GoogleAds {
    pub fn new(cfg: &GoogleAdsActionsConfig, developer_token: Secret) -> Self {
        Self {
            http: http_client(cfg.api.timeout_secs),
            base: cfg.api.versioned_base(),
            oauth: tokio::sync::Mutex::new(GoogleOAuth::new(cfg.oauth.clone(), ADS_ENV_PREFIX)),
            developer_token,
            login_customer_id: cfg.api.login_header(),
            currency: cfg.api.account_currency.clone(),
        }
    }

    fn customer(key: &CampaignKey) -> String {
        key.account.chars().filter(char::is_ascii_digit).collect()
    }

    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, PlatformError> {
        let mut refreshed = false;
        loop {
            let token = {
                let mut oauth = self.oauth.lock().await;
                oauth.access_token(&self.http).await.map_err(oauth_error)?
            };
            let mut req = self
                .http
                .post(format!("{}/{path}", self.base))
                .bearer_auth(token.expose())
                .header("developer-token", self.developer_token.expose())
                .json(&body);
            if let Some(l) = &self.login_customer_id {
                req = req.header("login-customer-id", l);
            }
            let resp = req.send().await.map_err(|e| transport(GOOGLE, e))?;
            // every call is an absolute "set", so sending it again with a fresh token is safe
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.oauth.lock().await.invalidate();
                continue;
            }
            return decode(
                GOOGLE,
                resp,
                |s| s.is_server_error() || s.as_u16() == 429,
                google_error,
            )
            .await;
        }
    }
}

/// Google RPC status -> error, through the one Google classifier shared with the sources
/// ([`crate::platforms::google::classify_value`]): the delay comes from `google.rpc.RetryInfo` or
/// from Google Ads' `quotaErrorDetails.retryDelay`, whichever the answer carries.
fn google_error(http: u16, err: &serde_json::Value) -> PlatformError {
    from_fault(GOOGLE, crate::platforms::google::classify_value(http, err))
}

fn micros(s: &serde_json::Value) -> Option<Decimal> {
    // int64 arrive as strings in JSON
    let d: Decimal = match s {
        serde_json::Value::String(s) => s.parse().ok()?,
        serde_json::Value::Number(n) => n.to_string().parse().ok()?,
        _ => return None,
    };
    Some(d / Decimal::from(1_000_000))
}

impl GoogleAds {
    async fn read_campaign(&self, key: &CampaignKey) -> Result<CampaignState, PlatformError> {
        let id: String = key
            .campaign_id
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if id.is_empty() {
            return Err(PlatformError::Rejected {
                platform: GOOGLE,
                message: "campaign id is not numeric".into(),
            });
        }
        let query = format!(
            "SELECT campaign.id, campaign.status, campaign_budget.resource_name, \
             campaign_budget.amount_micros FROM campaign WHERE campaign.id = {id}"
        );
        let body = self
            .post(
                &format!("customers/{}/googleAds:search", Self::customer(key)),
                serde_json::json!({ "query": query }),
            )
            .await?;
        let row = body
            .get("results")
            .and_then(|r| r.as_array())
            .and_then(|r| r.first())
            .ok_or_else(|| PlatformError::Rejected {
                platform: GOOGLE,
                message: format!("campaign {id} not found"),
            })?;
        let status = read_status(
            GOOGLE,
            row.pointer("/campaign/status").and_then(|s| s.as_str()),
            "ENABLED",
        )?;
        Ok(CampaignState {
            status,
            daily_budget: row.pointer("/campaignBudget/amountMicros").and_then(micros),
            budget_ref: row
                .pointer("/campaignBudget/resourceName")
                .and_then(|s| s.as_str())
                .map(str::to_string),
            adsets: Vec::new(),
        })
    }

    async fn write_status(&self, key: &CampaignKey, word: &str) -> Result<(), PlatformError> {
        let cid = Self::customer(key);
        let body = serde_json::json!({
            "operations": [{
                "update": {
                    "resourceName": format!("customers/{cid}/campaigns/{}", key.campaign_id),
                    "status": word,
                },
                "updateMask": "status",
            }]
        });
        self.post(&format!("customers/{cid}/campaigns:mutate"), body)
            .await
            .map(|_| ())
    }

    async fn write_budget(
        &self,
        key: &CampaignKey,
        state: &CampaignState,
        amount: Decimal,
    ) -> Result<(), PlatformError> {
        let budget = state
            .budget_ref
            .as_deref()
            .ok_or_else(|| PlatformError::Rejected {
                platform: GOOGLE,
                message: "campaign has no campaign budget".into(),
            })?;
        let micros = whole_units(GOOGLE, amount, Decimal::from(1_000_000))?;
        let cid = Self::customer(key);
        let body = serde_json::json!({
            "operations": [{
                "update": { "resourceName": budget, "amountMicros": micros.to_string() },
                "updateMask": "amountMicros",
            }]
        });
        self.post(&format!("customers/{cid}/campaignBudgets:mutate"), body)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proportional_split_keeps_shares_and_adds_up_exactly() {
        // by hand: 3000 and 1000 of 4000 -> 3/4 and 1/4 of 5000
        assert_eq!(
            split_proportionally(&[("a", 300_000), ("b", 100_000)], 500_000),
            Some(vec![("a", 375_000), ("b", 125_000)])
        );
        // 400,001 x 3/4 = 300,000.75 and x 1/4 = 100,000.25: floors 300,000 + 100,000, the
        // minor unit left goes to the largest
        assert_eq!(
            split_proportionally(&[("a", 300_000), ("b", 100_000)], 400_001),
            Some(vec![("a", 300_001), ("b", 100_000)])
        );
        // equal budgets: 33 each, the unit left to the first
        assert_eq!(
            split_proportionally(&[("x", 100), ("y", 100), ("z", 100)], 100),
            Some(vec![("x", 34), ("y", 33), ("z", 33)])
        );
        assert_eq!(split_proportionally(&[], 100), None);
        assert_eq!(split_proportionally(&[("a", 0)], 100), None);
    }

    /// A Graph API fake: campaign `cbo` has its own daily budget, campaign `abo` none (its four
    /// ad sets over two pages: two active with daily budgets, one paused, one with a lifetime
    /// budget only). Every request is logged as `METHOD path [fields|form]`.
    async fn fake_meta() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::extract::{Path, Query, State};
        use std::collections::HashMap;
        type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;
        let log: Log = Default::default();
        async fn object(
            State(log): State<Log>,
            Path((v, id)): Path<(String, String)>,
            Query(q): Query<HashMap<String, String>>,
        ) -> axum::Json<serde_json::Value> {
            log.lock()
                .unwrap()
                .push(format!("GET /{v}/{id} {}", q["fields"]));
            axum::Json(match id.as_str() {
                "cbo" => json!({"id": "cbo", "status": "ACTIVE", "daily_budget": "500000"}),
                _ => json!({"id": id, "status": "ACTIVE"}),
            })
        }
        async fn adsets(
            State(log): State<Log>,
            Path((v, id)): Path<(String, String)>,
            Query(q): Query<HashMap<String, String>>,
        ) -> axum::Json<serde_json::Value> {
            let after = q.get("after").cloned();
            log.lock().unwrap().push(format!(
                "GET /{v}/{id}/adsets {} after={}",
                q["fields"],
                after.as_deref().unwrap_or("-")
            ));
            axum::Json(match after.as_deref() {
                None => json!({
                    "data": [
                        {"id": "as_a", "name": "Broad", "status": "ACTIVE", "daily_budget": "300000"},
                        {"id": "as_b", "name": "Lookalike", "status": "ACTIVE", "daily_budget": "100000"}
                    ],
                    "paging": {"cursors": {"before": "x", "after": "p2"}, "next": "https://graph/next"}
                }),
                _ => json!({
                    "data": [
                        {"id": "as_c", "name": "Old", "status": "PAUSED", "daily_budget": "50000"},
                        {"id": "as_d", "name": "Launch", "status": "ACTIVE", "lifetime_budget": "2000000"}
                    ],
                    "paging": {"cursors": {"before": "p2", "after": "p3"}}
                }),
            })
        }
        async fn update(
            State(log): State<Log>,
            Path((v, id)): Path<(String, String)>,
            body: String,
        ) -> axum::Json<serde_json::Value> {
            log.lock().unwrap().push(format!("POST /{v}/{id} {body}"));
            axum::Json(json!({"success": true}))
        }
        let app = axum::Router::new()
            .route("/{v}/{id}", axum::routing::get(object).post(update))
            .route("/{v}/{id}/adsets", axum::routing::get(adsets))
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), log)
    }

    #[tokio::test]
    async fn meta_budgets_change_the_object_that_holds_them() {
        use rust_decimal_macros::dec;
        let (base, log) = fake_meta().await;
        let cfg = MetaActionsConfig {
            account_currency: "INR".into(),
            ..MetaActionsConfig::at(base, None)
        };
        assert_eq!(
            cfg.api.api_version, "v25.0",
            "the fake serves the pinned version"
        );
        let meta = MetaAds::new(&cfg, Secret::new("tok"));
        let key = |id: &str| CampaignKey {
            platform: "meta".into(),
            account: "act_1".into(),
            campaign_id: id.into(),
        };
        // CBO: the campaign's own budget, and the change goes to the campaign
        let cbo = meta.get_campaign(&key("cbo")).await.unwrap();
        assert_eq!((cbo.daily_budget, cbo.adsets.len()), (Some(dec!(5000)), 0));
        meta.set_daily_budget(&key("cbo"), &cbo, dec!(6000))
            .await
            .unwrap();
        // ad-set budgets: the campaign's daily budget is the sum of its active ad sets' daily
        // budgets (3000 + 1000; the paused one and the lifetime-only one are not in it)
        let abo = meta.get_campaign(&key("abo")).await.unwrap();
        assert_eq!(abo.daily_budget, Some(dec!(4000)));
        let ids: Vec<(&str, CampaignStatus, Option<Decimal>, Option<Decimal>)> = abo
            .adsets
            .iter()
            .map(|a| (a.id.as_str(), a.status, a.daily_budget, a.lifetime_budget))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("as_a", CampaignStatus::Active, Some(dec!(3000)), None),
                ("as_b", CampaignStatus::Active, Some(dec!(1000)), None),
                ("as_c", CampaignStatus::Paused, Some(dec!(500)), None),
                ("as_d", CampaignStatus::Active, None, Some(dec!(20000))),
            ]
        );
        // +25%: 5000 split 3:1 over the two active ad sets with a daily budget
        meta.set_daily_budget(&key("abo"), &abo, dec!(5000))
            .await
            .unwrap();
        assert_eq!(
            log.lock().unwrap().clone(),
            vec![
                "GET /v25.0/cbo status,daily_budget,lifetime_budget",
                "POST /v25.0/cbo daily_budget=600000",
                "GET /v25.0/abo status,daily_budget,lifetime_budget",
                "GET /v25.0/abo/adsets id,name,status,daily_budget,lifetime_budget after=-",
                "GET /v25.0/abo/adsets id,name,status,daily_budget,lifetime_budget after=p2",
                "POST /v25.0/as_a daily_budget=375000",
                "POST /v25.0/as_b daily_budget=125000",
            ]
        );
        // nothing to split over: refused, and nothing sent
        let mut lifetime_only = abo.clone();
        lifetime_only.adsets.retain(|a| a.id == "as_d");
        let e = meta
            .set_daily_budget(&key("abo"), &lifetime_only, dec!(5000))
            .await
            .unwrap_err();
        assert!(matches!(e, PlatformError::Rejected { .. }), "{e}");
        assert_eq!(log.lock().unwrap().len(), 7);
    }

    #[test]
    fn meta_errors_are_classified_by_code_and_transience() {
        let e = meta_error(
            400,
            &json!({"message": "User request limit reached", "code": 17}),
        );
        assert!(e.is_retryable());
        let e = meta_error(400, &json!({"message": "x", "code": 80004}));
        assert!(e.is_retryable());
        let e = meta_error(
            400,
            &json!({"message": "x", "code": 100, "is_transient": true}),
        );
        assert!(e.is_retryable());
        let e = meta_error(
            401,
            &json!({"message": "Invalid OAuth access token", "code": 190}),
        );
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("code 190"));
    }

    #[test]
    fn google_errors_carry_their_retry_delay() {
        let e = google_error(
            429,
            &json!({"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota",
                    "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]}),
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        // the documented Google Ads quota error: the delay sits in quotaErrorDetails
        let e = google_error(
            429,
            &json!({"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Resource has been exhausted (e.g. check quota).",
                    "details": [{"@type": "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure",
                                 "errors": [{"errorCode": {"quotaError": "RESOURCE_EXHAUSTED"}, "message": "Too many requests.",
                                             "details": {"quotaErrorDetails": {"rateScope": "ACCOUNT", "retryDelay": "37s"}}}]}]}),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(37)));
        let e = google_error(
            403,
            &json!({"code": 403, "status": "PERMISSION_DENIED", "message": "no"}),
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn money_units() {
        assert_eq!(minor_units("INR"), Decimal::from(100));
        assert_eq!(minor_units("JPY"), Decimal::ONE);
        assert_eq!(micros(&json!("5000000000")), Some(Decimal::from(5000)));
        assert_eq!(micros(&json!("x")), None);
    }
}
