//! One client layer per ad platform, shared by the sources (reading reports) and the actions
//! (pausing campaigns, setting budgets): the pinned API version, the one error classifier, the
//! one retry-delay parser and, for Google, the OAuth refresh shared by Google Ads, GA4 and the
//! Google actions. This module also owns the crate's one secret loader and the throttle-wait
//! policy (a floor and a cap on every wait, jittered exponential backoff when the API names no
//! wait).
//!
//! It imports nothing of ours but the leaf types in `base`, so sources and actions both depend on
//! it without a cycle.

pub mod google;
pub mod meta;

use std::path::Path;
use std::time::Duration;

use backon::BackoffBuilder;

use crate::base::Secret;

/// What a platform's error answer means for whoever sent the request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Rate limit or quota: wait (`retry_after` when the platform says how long), then retry.
    Throttled,
    /// A transient failure (5xx, `is_transient`, INTERNAL): retry soon with backoff.
    Transient,
    /// The credentials are refused: nothing helps until they change.
    Auth,
    /// Refused for good (bad request, permission, invalid value).
    Rejected,
}

/// A classified error answer of a platform API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiFault {
    pub kind: FaultKind,
    /// The platform's own message with its code, cut to 300 characters (never a token).
    pub message: String,
    /// The wait the platform asked for, when it named one.
    pub retry_after: Option<Duration>,
}

impl ApiFault {
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self {
            kind,
            message: message.chars().take(300).collect(),
            retry_after: None,
        }
    }
}

/// A secret that could not be loaded. Names where it looked, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    EmptyFile(std::path::PathBuf),
    #[error("${0} is not set (or use the *_file setting)")]
    Unset(String),
}

/// The one secret loader: from `file` when configured, else from the environment variable `env`.
/// Surrounding whitespace (a trailing newline from `echo`, a stray space) is trimmed in both cases,
/// because no token of any platform starts or ends with whitespace. `Ok(None)` when neither holds
/// a value, so callers decide whether the secret is optional.
pub fn load_secret(file: Option<&Path>, env: &str) -> Result<Option<Secret>, SecretError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(SecretError::EmptyFile(path.to_path_buf()));
        }
        return Ok(Some(Secret::new(t)));
    }
    Ok(std::env::var(env)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .map(Secret::new))
}

/// [`load_secret`] for a secret that must be there.
pub fn require_secret(file: Option<&Path>, env: &str) -> Result<Secret, SecretError> {
    load_secret(file, env)?.ok_or_else(|| SecretError::Unset(env.to_string()))
}

/// Bounds on throttle waits: every wait is at least `floor` (a usage header that says "0 minutes"
/// must not become a hot loop) and at most `cap` (`max_throttle_wait_secs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitPolicy {
    pub floor: Duration,
    pub cap: Duration,
}

/// One decided throttle wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// How long to sleep.
    pub wait: Duration,
    /// What the API asked for (`None`: it named no wait; backoff chose).
    pub asked: Option<Duration>,
    /// The API asked for more than the cap: sleeping `wait` will not be enough, and the caller
    /// must give up on this request (leave the days incomplete) rather than retry early.
    pub exceeds_cap: bool,
}

impl WaitPolicy {
    pub fn new(floor_secs: u64, cap_secs: u64) -> Self {
        let floor = Duration::from_secs(floor_secs.max(1));
        Self {
            floor,
            cap: Duration::from_secs(cap_secs).max(floor),
        }
    }

    /// A backoff for consecutive throttles that name no wait: exponential from the floor, doubled
    /// each time, jittered from a randomly seeded generator (backon's `std` feature), capped.
    pub fn backoff(&self) -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.floor)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// The wait for one throttle: what the API asked for, else the next backoff step; never below
    /// the floor, never above the cap.
    pub fn decide(
        &self,
        asked: Option<Duration>,
        backoff: &mut backon::ExponentialBackoff,
    ) -> Wait {
        let raw = asked.unwrap_or_else(|| backoff.next().unwrap_or(self.cap));
        Wait {
            wait: raw.clamp(self.floor, self.cap),
            asked,
            exceeds_cap: asked.is_some_and(|a| a > self.cap),
        }
    }
}

/// Parse a protobuf `Duration` in its JSON form (`"30s"`, `"1.5s"`, `"40591s"`).
pub fn parse_proto_duration(s: &str) -> Option<Duration> {
    s.trim()
        .strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
}

/// True for an absolute `http://` or `https://` URL (every configured API base URL must be one).
pub fn is_http_url(u: &str) -> bool {
    reqwest::Url::parse(u).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https")
}

/// The problem of a configured URL `key` that is not an absolute http(s) URL, if it is not.
pub fn url_problem(key: &str, url: &str) -> Option<crate::base::Problem> {
    (!is_http_url(url)).then(|| crate::base::Problem {
        key: key.into(),
        message: format!("{url:?} is not an http(s) URL"),
    })
}

/// An HTTP client for a platform API (TLS provider installed, request timeout set).
pub fn http_client(timeout_secs: u64) -> Result<reqwest::Client, reqwest::Error> {
    crate::init_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs.max(1)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_have_a_floor_and_a_cap() {
        let p = WaitPolicy::new(30, 3600);
        let mut b = p.backoff();
        // "0 minutes" from a usage header is not a hot loop
        let w = p.decide(Some(Duration::ZERO), &mut b);
        assert_eq!(w.wait, Duration::from_secs(30));
        assert!(!w.exceeds_cap);
        // Google's documented 40591s is capped and flagged, not slept for 11 hours
        let w = p.decide(Some(Duration::from_secs(40591)), &mut b);
        assert_eq!(w.wait, Duration::from_secs(3600));
        assert!(w.exceeds_cap);
    }

    #[test]
    fn unnamed_waits_grow_exponentially_with_jitter() {
        let p = WaitPolicy::new(2, 600);
        let mut b = p.backoff();
        let waits: Vec<Duration> = (0..6).map(|_| p.decide(None, &mut b).wait).collect();
        // step n is in [2 * 2^n, 2 * 2 * 2^n) before the cap (jitter adds up to one step)
        for (n, w) in waits.iter().enumerate() {
            let base = 2u64 << n;
            assert!(
                *w >= Duration::from_secs(base.min(600))
                    && *w <= Duration::from_secs((2 * base).min(600)),
                "step {n}: {w:?}"
            );
        }
        // two backoffs do not draw the same jitter (a fixed seed would)
        let a: Vec<Duration> = (0..4).map(|_| p.decide(None, &mut b).wait).collect();
        let mut b2 = p.backoff();
        let mut b3 = p.backoff();
        let x: Vec<Duration> = (0..4).map(|_| p.decide(None, &mut b2).wait).collect();
        let y: Vec<Duration> = (0..4).map(|_| p.decide(None, &mut b3).wait).collect();
        assert_ne!(
            x, y,
            "jitter must come from a randomly seeded generator: {a:?}"
        );
    }

    #[test]
    fn the_secret_loader_trims_the_same_way_for_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "  tok-1\n").unwrap();
        assert_eq!(
            load_secret(Some(&f), "UNUSED").unwrap().unwrap().expose(),
            "tok-1"
        );
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            load_secret(Some(&f), "UNUSED"),
            Err(SecretError::EmptyFile(_))
        ));
        let e = require_secret(None, "ADPULSE_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(
            e.to_string().contains("ADPULSE_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
    }

    #[test]
    fn proto_durations() {
        assert_eq!(parse_proto_duration("37s"), Some(Duration::from_secs(37)));
        assert_eq!(
            parse_proto_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_proto_duration("-1s"), None);
        assert_eq!(parse_proto_duration("soon"), None);
    }
}
