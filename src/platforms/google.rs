//! Google APIs (Google Ads and the GA4 Data API): pinned versions, the one error classifier (an
//! error object, the array form `[{"error": ...}]` that streaming methods answer with, and an
//! error element at the end of an HTTP 200 `searchStream`), the one retry-delay parser, GA4's
//! `propertyQuota`, and the OAuth refresh-token flow shared by the Google Ads source, the GA4
//! source and the Google Ads actions.
//!
//! Documented shapes: `{"error": {"code", "message", "status", "details": [...]}}`; the delay is a
//! protobuf Duration string (`"37s"`) either in a `google.rpc.RetryInfo` detail (`retryDelay`) or,
//! for Google Ads, in `GoogleAdsFailure.errors[].details.quotaErrorDetails.retryDelay`.

use chrono::{DateTime, Duration as CDuration, Timelike, Utc};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::{ApiFault, FaultKind, SecretError, parse_proto_duration, require_secret};
use crate::base::{Problem, Secret};

/// The one Google Ads API version adpulse speaks (sources and actions).
pub const ADS_API_VERSION: &str = "v21";
/// Default Google Ads REST base URL.
pub const ADS_BASE_URL: &str = "https://googleads.googleapis.com";
/// The one GA4 Data API version.
pub const GA4_API_VERSION: &str = "v1beta";
/// Default GA4 Data API base URL.
pub const GA4_BASE_URL: &str = "https://analyticsdata.googleapis.com";
/// Google's OAuth 2.0 token endpoint.
pub const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The `error` object of an answer in either documented form, if it has one.
pub fn error_object(v: &serde_json::Value) -> Option<&serde_json::Value> {
    match v {
        serde_json::Value::Object(o) => o.get("error"),
        // streaming methods answer errors as an array; an error can also be the last element of
        // an otherwise good stream
        serde_json::Value::Array(items) => items.iter().find_map(|i| i.get("error")),
        _ => None,
    }
}

/// The longest delay any detail asks for.
pub fn retry_delay(err: &serde_json::Value) -> Option<Duration> {
    let details = err["details"].as_array()?;
    let rpc = details
        .iter()
        .filter_map(|d| d["retryDelay"].as_str())
        .filter_map(parse_proto_duration);
    let ads = details
        .iter()
        .flat_map(|d| d["errors"].as_array().into_iter().flatten())
        .filter_map(|e| e["details"]["quotaErrorDetails"]["retryDelay"].as_str())
        .filter_map(parse_proto_duration);
    rpc.chain(ads).max()
}

/// The one Google error classifier, on a raw body (object or array form, or not JSON).
pub fn classify(status: u16, body: &str) -> ApiFault {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match error_object(&v) {
        Some(err) => classify_value(status, err),
        None => {
            let snippet: String = body.chars().take(200).collect();
            let kind = if status == 429 {
                FaultKind::Throttled
            } else if status >= 500 {
                FaultKind::Transient
            } else if status == 401 {
                FaultKind::Auth
            } else {
                FaultKind::Rejected
            };
            ApiFault::new(kind, format!("HTTP {status}: {snippet}"))
        }
    }
}

/// [`classify`] for a decoded `error` object.
pub fn classify_value(status: u16, err: &serde_json::Value) -> ApiFault {
    let st = err["status"].as_str().unwrap_or("");
    let mut message = format!(
        "HTTP {status} {st}: {}",
        err["message"].as_str().unwrap_or("no message")
    );
    // Google Ads puts the useful text in its failure details
    if let Some(first) = err["details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["errors"].as_array().into_iter().flatten())
        .find_map(|e| e["message"].as_str())
    {
        message.push_str(&format!(" ({first})"));
    }
    let kind = match st {
        "RESOURCE_EXHAUSTED" => FaultKind::Throttled,
        "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "ABORTED" => FaultKind::Transient,
        "UNAUTHENTICATED" => FaultKind::Auth,
        "PERMISSION_DENIED" => FaultKind::Auth,
        _ if status == 429 => FaultKind::Throttled,
        _ if status >= 500 => FaultKind::Transient,
        _ if status == 401 => FaultKind::Auth,
        _ => FaultKind::Rejected,
    };
    let mut f = ApiFault::new(kind, message);
    f.retry_after = retry_delay(err);
    f
}

/// One GA4 quota, as named in `propertyQuota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ga4Quota {
    TokensPerDay,
    TokensPerHour,
    TokensPerProjectPerHour,
    ConcurrentRequests,
    ServerErrorsPerProjectPerHour,
    PotentiallyThresholdedRequestsPerHour,
}

impl Ga4Quota {
    pub const ALL: [Ga4Quota; 6] = [
        Ga4Quota::TokensPerDay,
        Ga4Quota::TokensPerHour,
        Ga4Quota::TokensPerProjectPerHour,
        Ga4Quota::ConcurrentRequests,
        Ga4Quota::ServerErrorsPerProjectPerHour,
        Ga4Quota::PotentiallyThresholdedRequestsPerHour,
    ];

    /// Its field name in `propertyQuota`.
    pub fn field(self) -> &'static str {
        match self {
            Ga4Quota::TokensPerDay => "tokensPerDay",
            Ga4Quota::TokensPerHour => "tokensPerHour",
            Ga4Quota::TokensPerProjectPerHour => "tokensPerProjectPerHour",
            Ga4Quota::ConcurrentRequests => "concurrentRequests",
            Ga4Quota::ServerErrorsPerProjectPerHour => "serverErrorsPerProjectPerHour",
            Ga4Quota::PotentiallyThresholdedRequestsPerHour => {
                "potentiallyThresholdedRequestsPerHour"
            }
        }
    }

    /// How the quota reads in an error message ("Exhausted property tokens per hour quota").
    fn phrase(self) -> &'static str {
        match self {
            Ga4Quota::TokensPerDay => "tokens per day",
            Ga4Quota::TokensPerHour => "tokens per hour",
            Ga4Quota::TokensPerProjectPerHour => "tokens per project per hour",
            Ga4Quota::ConcurrentRequests => "concurrent requests",
            Ga4Quota::ServerErrorsPerProjectPerHour => "server errors",
            Ga4Quota::PotentiallyThresholdedRequestsPerHour => "thresholded requests",
        }
    }

    /// Which quota a 429 message names (the most specific phrase first: "per project per hour"
    /// also contains "per hour"); `None` when the message names none.
    pub fn from_message(message: &str) -> Option<Ga4Quota> {
        let m = message.to_ascii_lowercase();
        [
            Ga4Quota::TokensPerProjectPerHour,
            Ga4Quota::TokensPerDay,
            Ga4Quota::TokensPerHour,
            Ga4Quota::ConcurrentRequests,
            Ga4Quota::ServerErrorsPerProjectPerHour,
            Ga4Quota::PotentiallyThresholdedRequestsPerHour,
        ]
        .into_iter()
        .find(|q| m.contains(q.phrase()))
    }

    /// When this quota refills, seen from `now`: hourly quotas at the next full hour, the daily
    /// one at the next midnight Pacific time (GA4 resets daily quotas then), concurrent requests
    /// as soon as a request ends (`None`: the caller's floor and backoff decide).
    pub fn refill_wait(self, now: DateTime<Utc>) -> Option<Duration> {
        let to = |t: DateTime<Utc>| (t - now).to_std().ok();
        match self {
            Ga4Quota::ConcurrentRequests => None,
            Ga4Quota::TokensPerDay => {
                let pt = now.with_timezone(&chrono_tz::America::Los_Angeles);
                let next = (pt.date_naive() + CDuration::days(1)).and_hms_opt(0, 0, 0)?;
                let next =
                    chrono::TimeZone::from_local_datetime(&chrono_tz::America::Los_Angeles, &next)
                        .earliest()?;
                to(next.with_timezone(&Utc))
            }
            _ => {
                let hour = now
                    .with_minute(0)
                    .and_then(|t| t.with_second(0))
                    .and_then(|t| t.with_nanosecond(0))?;
                to(hour + CDuration::hours(1))
            }
        }
    }
}

/// `remaining` of every quota in a `propertyQuota` object (absent ones are left out).
pub fn ga4_quotas(property_quota: &serde_json::Value) -> Vec<(Ga4Quota, u64)> {
    Ga4Quota::ALL
        .into_iter()
        .filter_map(|q| {
            property_quota[q.field()]["remaining"]
                .as_u64()
                .map(|r| (q, r))
        })
        .collect()
}

/// Where and as whom adpulse speaks to the Google Ads API: the one Google Ads account/credentials
/// config, flattened into the Google Ads source's `[[sources]]` entry and into
/// `[actions.google_ads]` (next to a [`GoogleOAuthConfig`]), so both pin the same version and send
/// the same headers. Its keys stay top-level keys of those tables (no TOML change for users).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleAdsApiConfig {
    /// Google Ads REST base URL (a local server in tests).
    pub base_url: String,
    /// Pinned Google Ads API version.
    pub api_version: String,
    /// Environment variable holding the developer token.
    pub developer_token_env: String,
    /// File holding the developer token (takes precedence over the variable).
    pub developer_token_file: Option<PathBuf>,
    /// Manager account id sent as `login-customer-id` when access goes through one (dashes
    /// allowed).
    pub login_customer_id: Option<String>,
    /// Currency of the customer's accounts (Google Ads rows carry none; budgets are set in it).
    pub account_currency: String,
    /// Timeout of one request, in seconds.
    pub timeout_secs: u64,
}

impl Default for GoogleAdsApiConfig {
    fn default() -> Self {
        Self {
            base_url: ADS_BASE_URL.into(),
            api_version: ADS_API_VERSION.into(),
            developer_token_env: "ADPULSE_GOOGLE_ADS_DEVELOPER_TOKEN".into(),
            developer_token_file: None,
            login_customer_id: None,
            account_currency: "INR".into(),
            timeout_secs: 60,
        }
    }
}

impl GoogleAdsApiConfig {
    /// `{base_url}/{api_version}`, the prefix of every Google Ads REST path.
    pub fn versioned_base(&self) -> String {
        format!(
            "{}/{}",
            self.base_url.trim_end_matches('/'),
            self.api_version
        )
    }

    /// `login_customer_id` as the header wants it: digits only.
    pub fn login_header(&self) -> Option<String> {
        self.login_customer_id.as_ref().map(|l| l.replace('-', ""))
    }

    /// Problems, with keys relative to the table this config is flattened into.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p: Vec<Problem> = super::url_problem("base_url", &self.base_url)
            .into_iter()
            .collect();
        if let Some(l) = &self.login_customer_id
            && !is_customer_id(l)
        {
            p.push(Problem {
                key: "login_customer_id".into(),
                message: format!("{l:?} is not a customer id like 123-456-7890"),
            });
        }
        p
    }
}

/// A Google Ads customer id: digits, dashes allowed (`123-456-7890`).
pub fn is_customer_id(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit()) && s.chars().all(|c| c == '-' || c.is_ascii_digit())
}

/// Where the OAuth client and refresh token come from: the one OAuth config, flattened into the
/// Google Ads source, the GA4 source and `[actions.google_ads]`. A variable left unset defaults to
/// `<prefix>_CLIENT_ID`, `<prefix>_CLIENT_SECRET`, `<prefix>_REFRESH_TOKEN`, the prefix being
/// `ADPULSE_GOOGLE_ADS` (source and actions alike) or `ADPULSE_GA4`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleOAuthConfig {
    /// The OAuth 2.0 token endpoint (a local server in tests).
    pub token_url: String,
    /// Environment variable holding the OAuth client id (default `<prefix>_CLIENT_ID`).
    pub client_id_env: Option<String>,
    /// File holding the OAuth client id (takes precedence over the variable).
    pub client_id_file: Option<PathBuf>,
    /// Environment variable holding the OAuth client secret (default `<prefix>_CLIENT_SECRET`).
    pub client_secret_env: Option<String>,
    /// File holding the OAuth client secret (takes precedence over the variable).
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the refresh token (default `<prefix>_REFRESH_TOKEN`).
    pub refresh_token_env: Option<String>,
    /// File holding the refresh token (takes precedence over the variable).
    pub refresh_token_file: Option<PathBuf>,
}

impl Default for GoogleOAuthConfig {
    fn default() -> Self {
        Self {
            token_url: TOKEN_URL.into(),
            client_id_env: None,
            client_id_file: None,
            client_secret_env: None,
            client_secret_file: None,
            refresh_token_env: None,
            refresh_token_file: None,
        }
    }
}

/// Variable prefix of the Google Ads credentials (source and actions share them).
pub const ADS_ENV_PREFIX: &str = "ADPULSE_GOOGLE_ADS";
/// Variable prefix of the GA4 credentials.
pub const GA4_ENV_PREFIX: &str = "ADPULSE_GA4";

impl GoogleOAuthConfig {
    /// Problems, with keys relative to the table this config is flattened into.
    pub fn problems(&self) -> Vec<Problem> {
        super::url_problem("token_url", &self.token_url)
            .into_iter()
            .collect()
    }
}

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("token refresh refused: {0} (check the client and refresh token)")]
    Refused(String),
    #[error("token endpoint unavailable: {0}")]
    Unavailable(String),
    #[error("token endpoint answer without access_token")]
    Malformed,
}

/// The refresh-token flow: an access token is fetched and reused until a minute before it
/// expires. Transport errors and 5xx answers of the token endpoint are retried with backoff.
#[derive(Debug, Clone)]
pub struct GoogleOAuth {
    pub config: GoogleOAuthConfig,
    /// Prefix of the default variable names ([`ADS_ENV_PREFIX`], [`GA4_ENV_PREFIX`]).
    env_prefix: &'static str,
    access: Option<(Secret, tokio::time::Instant)>,
}

impl GoogleOAuth {
    pub fn new(config: GoogleOAuthConfig, env_prefix: &'static str) -> Self {
        Self {
            config,
            env_prefix,
            access: None,
        }
    }

    /// One secret of the flow: its file, else its variable (configured, or `<prefix>_<suffix>`).
    fn secret(
        &self,
        file: &Option<PathBuf>,
        env: &Option<String>,
        suffix: &str,
    ) -> Result<Secret, SecretError> {
        let env = env
            .clone()
            .unwrap_or_else(|| format!("{}_{suffix}", self.env_prefix));
        require_secret(file.as_deref(), &env)
    }

    /// Forget the cached token (after a 401: it was revoked or expired early).
    pub fn invalidate(&mut self) {
        self.access = None;
    }

    pub async fn access_token(&mut self, http: &reqwest::Client) -> Result<Secret, OAuthError> {
        use backon::Retryable;
        if let Some((t, until)) = &self.access
            && tokio::time::Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let s = &self.config;
        let client_id = self.secret(&s.client_id_file, &s.client_id_env, "CLIENT_ID")?;
        let client_secret =
            self.secret(&s.client_secret_file, &s.client_secret_env, "CLIENT_SECRET")?;
        let refresh = self.secret(&s.refresh_token_file, &s.refresh_token_env, "REFRESH_TOKEN")?;
        let once = || async {
            let resp = http
                .post(&s.token_url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.expose()),
                    ("client_secret", client_secret.expose()),
                    ("refresh_token", refresh.expose()),
                ])
                .send()
                .await
                .map_err(|e| OAuthError::Unavailable(e.without_url().to_string()))?;
            let status = resp.status().as_u16();
            let text = resp
                .text()
                .await
                .map_err(|e| OAuthError::Unavailable(e.without_url().to_string()))?;
            if status >= 500 || status == 429 {
                return Err(OAuthError::Unavailable(format!("HTTP {status}")));
            }
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if status >= 400 {
                // {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                return Err(OAuthError::Refused(format!(
                    "HTTP {status} {}: {}",
                    v["error"].as_str().unwrap_or("unknown error"),
                    v["error_description"].as_str().unwrap_or("")
                )));
            }
            let token = v["access_token"].as_str().ok_or(OAuthError::Malformed)?;
            let ttl = v["expires_in"].as_u64().unwrap_or(3600).saturating_sub(60);
            Ok((Secret::new(token), ttl))
        };
        let (token, ttl) = once
            .retry(
                backon::ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(4)
                    .with_jitter(),
            )
            .when(|e| matches!(e, OAuthError::Unavailable(_)))
            .notify(
                |e, d| tracing::warn!(error = %e, retry_in = ?d, "token endpoint failed, retrying"),
            )
            .await?;
        self.access = Some((
            token.clone(),
            tokio::time::Instant::now() + Duration::from_secs(ttl),
        ));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Google's documented quota error for Google Ads (GoogleAdsFailure with quotaErrorDetails).
    const ADS_QUOTA: &str = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure","errors":[{"errorCode":{"quotaError":"RESOURCE_EXHAUSTED"},"message":"Too many requests. Retry in 40591 seconds.","details":{"quotaErrorDetails":{"rateScope":"DEVELOPER","rateName":"Number of operations for basic access","retryDelay":"40591s"}}}],"requestId":"r1"}]}}"#;

    #[test]
    fn retry_delay_from_both_documented_places() {
        let f = classify(429, ADS_QUOTA);
        assert_eq!(f.kind, FaultKind::Throttled);
        assert_eq!(f.retry_after, Some(Duration::from_secs(40591)));
        assert!(f.message.contains("Too many requests"), "{}", f.message);
        // google.rpc.RetryInfo, as GA4 and other Google APIs send it
        let rpc = r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12.5s"}]}}"#;
        assert_eq!(
            classify(429, rpc).retry_after,
            Some(Duration::from_millis(12500))
        );
    }

    #[test]
    fn array_form_errors_keep_message_and_delay() {
        let arr = format!("[{ADS_QUOTA}]");
        let f = classify(429, &arr);
        assert_eq!(f.kind, FaultKind::Throttled);
        assert_eq!(f.retry_after, Some(Duration::from_secs(40591)));
        assert!(
            f.message.contains("Resource has been exhausted"),
            "{}",
            f.message
        );
        // an error element after good batches of a 200 stream
        let stream = r#"[{"results":[{"campaign":{"id":"1"}}]},{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}]"#;
        let v: serde_json::Value = serde_json::from_str(stream).unwrap();
        let e = error_object(&v).expect("error element found");
        assert_eq!(classify_value(200, e).kind, FaultKind::Transient);
        let auth = r#"[{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}]"#;
        assert_eq!(classify(401, auth).kind, FaultKind::Auth);
        assert_eq!(
            classify(503, "Service Unavailable").kind,
            FaultKind::Transient
        );
    }

    #[test]
    fn ga4_quotas_each_one_and_their_refill() {
        let pq: serde_json::Value = serde_json::from_str(
            r#"{"tokensPerDay":{"consumed":10,"remaining":199990},"tokensPerHour":{"consumed":10,"remaining":39990},"concurrentRequests":{"consumed":0,"remaining":10},"serverErrorsPerProjectPerHour":{"consumed":0,"remaining":10},"potentiallyThresholdedRequestsPerHour":{"consumed":0,"remaining":120},"tokensPerProjectPerHour":{"consumed":10,"remaining":13990}}"#,
        )
        .unwrap();
        let q = ga4_quotas(&pq);
        assert_eq!(q.len(), 6);
        assert!(q.contains(&(Ga4Quota::TokensPerProjectPerHour, 13990)));
        assert_eq!(
            Ga4Quota::from_message("Exhausted property tokens per project per hour quota."),
            Some(Ga4Quota::TokensPerProjectPerHour)
        );
        assert_eq!(
            Ga4Quota::from_message("Exhausted concurrent requests quota."),
            Some(Ga4Quota::ConcurrentRequests)
        );
        let now: DateTime<Utc> = "2026-11-20T10:47:00Z".parse().unwrap();
        assert_eq!(
            Ga4Quota::TokensPerHour.refill_wait(now),
            Some(Duration::from_secs(13 * 60))
        );
        // 10:47 UTC is 02:47 in Los Angeles: 21h13m to Pacific midnight
        assert_eq!(
            Ga4Quota::TokensPerDay.refill_wait(now),
            Some(Duration::from_secs(21 * 3600 + 13 * 60))
        );
        assert_eq!(Ga4Quota::ConcurrentRequests.refill_wait(now), None);
    }
}
