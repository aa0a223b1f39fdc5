//! Meta Marketing API (Graph API): the pinned version, the one error classifier and the usage
//! headers' waits, used by the insights source and by the actions' Meta client alike.
//!
//! Documented behaviour this relies on: an error answer is `{"error": {"message", "type", "code",
//! "error_subcode", "is_transient", "fbtrace_id"}}`, sometimes with HTTP 400 even when it is
//! transient; rate limits are codes 4, 17, 32, 613 and 80000-80014 (and 341, "application limit
//! reached"); `X-Business-Use-Case-Usage` gives `estimated_time_to_regain_access` in **minutes**
//! per business and use case, `X-Ad-Account-Usage` gives `reset_time_duration` in **seconds**.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::{ApiFault, FaultKind};
use crate::base::Problem;

/// The one Graph API version adpulse speaks, for sources and actions alike.
pub const API_VERSION: &str = "v25.0";

/// Default Graph API base URL.
pub const BASE_URL: &str = "https://graph.facebook.com";

/// Where and as whom adpulse speaks to the Graph API: the one Meta account/credentials config,
/// flattened into the insights source's `[[sources]]` entry and into `[actions.meta]`, so both
/// pin the same version and read the token the same way. Its keys stay top-level keys of those
/// tables (no TOML change for users).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaApiConfig {
    /// Graph API base URL (a local server in tests).
    pub base_url: String,
    /// Pinned Graph API version.
    pub api_version: String,
    /// Environment variable holding the access token (`ads_read` to read, `ads_management` to
    /// act).
    pub access_token_env: String,
    /// File holding the access token (takes precedence over the variable).
    pub access_token_file: Option<PathBuf>,
    /// Timeout of one request, in seconds.
    pub timeout_secs: u64,
}

impl Default for MetaApiConfig {
    fn default() -> Self {
        Self {
            base_url: BASE_URL.into(),
            api_version: API_VERSION.into(),
            access_token_env: "ADPULSE_META_ACCESS_TOKEN".into(),
            access_token_file: None,
            timeout_secs: 60,
        }
    }
}

impl MetaApiConfig {
    /// `{base_url}/{api_version}`, the prefix of every Graph API path.
    pub fn versioned_base(&self) -> String {
        format!(
            "{}/{}",
            self.base_url.trim_end_matches('/'),
            self.api_version
        )
    }

    /// Problems, with keys relative to the table this config is flattened into.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p: Vec<Problem> = super::url_problem("base_url", &self.base_url)
            .into_iter()
            .collect();
        if self.timeout_secs == 0 {
            p.push(Problem {
                key: "timeout_secs".into(),
                message: "must be at least 1".into(),
            });
        }
        p
    }
}

/// What the usage headers of one answer say.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Highest utilisation percentage any header reports (call count, CPU time, total time,
    /// account utilisation).
    pub max_pct: f64,
    /// The longest wait any header names (`Some(0)` when a header says "0 minutes": the caller's
    /// floor decides).
    pub regain: Option<Duration>,
}

fn header_json(headers: &reqwest::header::HeaderMap, name: &str) -> Option<serde_json::Value> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| serde_json::from_str(s).ok())
}

/// Read `X-Business-Use-Case-Usage`, `X-Ad-Account-Usage` and `X-FB-Ads-Insights-Throttle`.
pub fn usage(headers: &reqwest::header::HeaderMap) -> Usage {
    let mut u = Usage::default();
    let mut wait = |d: Duration| u.regain = Some(u.regain.map_or(d, |w| w.max(d)));
    let mut pct = Vec::new();
    if let Some(v) = header_json(headers, "x-business-use-case-usage") {
        // {"<business id>": [{"type": "ads_insights", "call_count": 28, "total_cputime": 25,
        //   "total_time": 25, "estimated_time_to_regain_access": 0}]}
        for entries in v.as_object().into_iter().flat_map(|o| o.values()) {
            for e in entries.as_array().into_iter().flatten() {
                for k in ["call_count", "total_cputime", "total_time"] {
                    if let Some(p) = e[k].as_f64() {
                        pct.push(p);
                    }
                }
                if let Some(m) = e["estimated_time_to_regain_access"].as_u64() {
                    wait(Duration::from_secs(m.saturating_mul(60)));
                }
            }
        }
    }
    if let Some(v) = header_json(headers, "x-ad-account-usage") {
        // {"acc_id_util_pct": 9.67, "reset_time_duration": 0, "ads_api_access_tier": "standard_access"}
        if let Some(p) = v["acc_id_util_pct"].as_f64() {
            pct.push(p);
        }
        if let Some(s) = v["reset_time_duration"].as_u64()
            && s > 0
        {
            wait(Duration::from_secs(s));
        }
    }
    if let Some(v) = header_json(headers, "x-fb-ads-insights-throttle") {
        // {"app_id_util_pct": 100, "acc_id_util_pct": 10, "ads_api_access_tier": "standard_access"}
        for k in ["app_id_util_pct", "acc_id_util_pct"] {
            if let Some(p) = v[k].as_f64() {
                pct.push(p);
            }
        }
    }
    u.max_pct = pct.into_iter().fold(0.0, f64::max);
    u
}

/// Rate-limit codes (Graph API "Rate Limiting" and Marketing API "Rate Limiting" pages).
fn is_rate_limit(code: i64) -> bool {
    matches!(code, 4 | 17 | 32 | 341 | 613) || (80000..=80014).contains(&code)
}

/// The one Meta error classifier. `body` is the raw answer (it may not be JSON at all).
pub fn classify(status: u16, headers: &reqwest::header::HeaderMap, body: &str) -> ApiFault {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    classify_value(status, headers, &v["error"])
}

/// [`classify`] for an already decoded `error` object.
pub fn classify_value(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    err: &serde_json::Value,
) -> ApiFault {
    let code = err["code"].as_i64().unwrap_or(0);
    let sub = err["error_subcode"]
        .as_i64()
        .map(|s| format!("/{s}"))
        .unwrap_or_default();
    let message = format!(
        "HTTP {status}, code {code}{sub}: {}",
        err["message"].as_str().unwrap_or("no error message")
    );
    if is_rate_limit(code) || status == 429 {
        let mut f = ApiFault::new(FaultKind::Throttled, message);
        f.retry_after = usage(headers).regain;
        return f;
    }
    // Meta marks some 400s as transient; codes 1 (unknown) and 2 (service) are documented as
    // temporary too.
    if err["is_transient"].as_bool() == Some(true) || matches!(code, 1 | 2) || status >= 500 {
        return ApiFault::new(FaultKind::Transient, message);
    }
    if code == 190 || code == 102 || status == 401 {
        return ApiFault::new(FaultKind::Auth, message);
    }
    ApiFault::new(FaultKind::Rejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn usage_headers_in_their_documented_units() {
        let h = headers(&[
            (
                "x-business-use-case-usage",
                r#"{"112233":[{"type":"ads_insights","call_count":98,"total_cputime":20,"total_time":35,"estimated_time_to_regain_access":7}]}"#,
            ),
            (
                "x-ad-account-usage",
                r#"{"acc_id_util_pct":9.67,"reset_time_duration":100,"ads_api_access_tier":"standard_access"}"#,
            ),
        ]);
        let u = usage(&h);
        assert_eq!(
            u.regain,
            Some(Duration::from_secs(7 * 60)),
            "minutes, not seconds"
        );
        assert_eq!(u.max_pct, 98.0);
        // "0 minutes" is reported as such; the caller's floor turns it into a real wait
        let zero = headers(&[(
            "x-business-use-case-usage",
            r#"{"1":[{"type":"ads_management","call_count":100,"total_cputime":0,"total_time":0,"estimated_time_to_regain_access":0}]}"#,
        )]);
        assert_eq!(usage(&zero).regain, Some(Duration::ZERO));
        assert_eq!(usage(&HeaderMap::new()), Usage::default());
    }

    #[test]
    fn documented_errors_are_classified() {
        let none = HeaderMap::new();
        // HTTP 400 with is_transient: true is retried
        let t = classify(
            400,
            &none,
            r#"{"error":{"message":"An unexpected error has occurred. Please retry your request later.","type":"OAuthException","is_transient":true,"code":2,"fbtrace_id":"A1"}}"#,
        );
        assert_eq!(t.kind, FaultKind::Transient);
        let t = classify(
            400,
            &none,
            r#"{"error":{"message":"Please reduce the amount of data","type":"OAuthException","is_transient":true,"code":100,"error_subcode":1487534,"fbtrace_id":"A1"}}"#,
        );
        assert_eq!(t.kind, FaultKind::Transient);
        assert!(t.message.contains("100/1487534"), "{}", t.message);
        let th = classify(
            400,
            &headers(&[(
                "x-business-use-case-usage",
                r#"{"42":[{"type":"ads_insights","call_count":100,"total_cputime":30,"total_time":40,"estimated_time_to_regain_access":3}]}"#,
            )]),
            r#"{"error":{"message":"(#80000) There have been too many calls from this ad-account.","type":"OAuthException","code":80000,"error_subcode":2446079,"fbtrace_id":"x"}}"#,
        );
        assert_eq!(th.kind, FaultKind::Throttled);
        assert_eq!(th.retry_after, Some(Duration::from_secs(180)));
        let auth = classify(
            400,
            &none,
            r#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190,"fbtrace_id":"x"}}"#,
        );
        assert_eq!(auth.kind, FaultKind::Auth);
        let bad = classify(
            400,
            &none,
            r#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100,"fbtrace_id":"x"}}"#,
        );
        assert_eq!(bad.kind, FaultKind::Rejected);
        assert_eq!(
            classify(502, &none, "<html>bad gateway</html>").kind,
            FaultKind::Transient
        );
    }
}
