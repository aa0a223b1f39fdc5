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

/// Meta Marketing API (Graph API): `GET /{campaign_id}?fields=status,daily_budget`,
/// `POST /{campaign_id}` with `status=PAUSED|ACTIVE` or `daily_budget=<minor units>`.
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

impl AdPlatform for MetaAds {
    fn platform(&self) -> &'static str {
        META
    }
    fn account_currency(&self) -> &str {
        &self.currency
    }
    fn get_campaign<'a>(
        &'a self,
        key: &'a CampaignKey,
    ) -> BoxFut<'a, Result<CampaignState, PlatformError>> {
        Box::pin(async move {
            let body = self
                .call(
                    self.http
                        .get(format!("{}/{}", self.base, key.campaign_id))
                        .query(&[("fields", "status,daily_budget")]),
                )
                .await?;
            let status = match body.get("status").and_then(|s| s.as_str()) {
                Some("ACTIVE") => CampaignStatus::Active,
                Some("PAUSED") => CampaignStatus::Paused,
                Some(_) => CampaignStatus::Other,
                None => {
                    return Err(PlatformError::Malformed {
                        platform: META,
                        message: "campaign without status".into(),
                    });
                }
            };
            // numbers arrive as strings, in minor units
            let daily_budget = match body.get("daily_budget") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => {
                    let s = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    let minor: Decimal = s.parse().map_err(|_| PlatformError::Malformed {
                        platform: META,
                        message: format!("daily_budget {s:?} is not a number"),
                    })?;
                    Some(minor / minor_units(&self.currency))
                }
            };
            Ok(CampaignState {
                status,
                daily_budget,
                budget_ref: None,
            })
        })
    }
    fn set_status<'a>(
        &'a self,
        key: &'a CampaignKey,
        status: CampaignStatus,
    ) -> BoxFut<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            let s = match status {
                CampaignStatus::Active => "ACTIVE",
                CampaignStatus::Paused => "PAUSED",
                CampaignStatus::Other => {
                    return Err(PlatformError::Rejected {
                        platform: META,
                        message: "adpulse only pauses or activates".into(),
                    });
                }
            };
            self.post(&key.campaign_id, &[("status", s.to_string())])
                .await
        })
    }
    fn set_daily_budget<'a>(
        &'a self,
        key: &'a CampaignKey,
        _state: &'a CampaignState,
        amount: Decimal,
    ) -> BoxFut<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            let minor = (amount * minor_units(&self.currency))
                .trunc()
                .to_i64()
                .ok_or_else(|| PlatformError::Rejected {
                    platform: META,
                    message: format!("budget {amount} out of range"),
                })?;
            self.post(&key.campaign_id, &[("daily_budget", minor.to_string())])
                .await
        })
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

impl AdPlatform for GoogleAds {
    fn platform(&self) -> &'static str {
        GOOGLE
    }
    fn account_currency(&self) -> &str {
        &self.currency
    }
    fn get_campaign<'a>(
        &'a self,
        key: &'a CampaignKey,
    ) -> BoxFut<'a, Result<CampaignState, PlatformError>> {
        Box::pin(async move {
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
            let status = match row.pointer("/campaign/status").and_then(|s| s.as_str()) {
                Some("ENABLED") => CampaignStatus::Active,
                Some("PAUSED") => CampaignStatus::Paused,
                Some(_) => CampaignStatus::Other,
                None => {
                    return Err(PlatformError::Malformed {
                        platform: GOOGLE,
                        message: "campaign without status".into(),
                    });
                }
            };
            Ok(CampaignState {
                status,
                daily_budget: row.pointer("/campaignBudget/amountMicros").and_then(micros),
                budget_ref: row
                    .pointer("/campaignBudget/resourceName")
                    .and_then(|s| s.as_str())
                    .map(str::to_string),
            })
        })
    }
    fn set_status<'a>(
        &'a self,
        key: &'a CampaignKey,
        status: CampaignStatus,
    ) -> BoxFut<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            let s = match status {
                CampaignStatus::Active => "ENABLED",
                CampaignStatus::Paused => "PAUSED",
                CampaignStatus::Other => {
                    return Err(PlatformError::Rejected {
                        platform: GOOGLE,
                        message: "adpulse only pauses or enables".into(),
                    });
                }
            };
            let cid = Self::customer(key);
            let body = serde_json::json!({
                "operations": [{
                    "update": {
                        "resourceName": format!("customers/{cid}/campaigns/{}", key.campaign_id),
                        "status": s,
                    },
                    "updateMask": "status",
                }]
            });
            self.post(&format!("customers/{cid}/campaigns:mutate"), body)
                .await
                .map(|_| ())
        })
    }
    fn set_daily_budget<'a>(
        &'a self,
        key: &'a CampaignKey,
        state: &'a CampaignState,
        amount: Decimal,
    ) -> BoxFut<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            let budget = state
                .budget_ref
                .as_deref()
                .ok_or_else(|| PlatformError::Rejected {
                    platform: GOOGLE,
                    message: "campaign has no campaign budget".into(),
                })?;
            let micros = (amount * Decimal::from(1_000_000))
                .trunc()
                .to_i64()
                .ok_or_else(|| PlatformError::Rejected {
                    platform: GOOGLE,
                    message: format!("budget {amount} out of range"),
                })?;
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
