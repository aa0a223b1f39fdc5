//! The polling settings every HTTP source shares ([`PollingConfig`]): how often it polls, how many
//! days it re-reads, and the floor and cap of its throttle waits. One struct, flattened into each
//! source's `[[sources]]` entry (its keys stay top-level keys, so users' TOML is unchanged), with
//! each source's own defaults supplied by a marker type ([`PollingDefaults`]) rather than one
//! `fn default_*` per field and source.

use serde::Deserialize;
use std::marker::PhantomData;
use std::time::Duration;

use crate::base::Problem;
use crate::platforms::WaitPolicy;
use crate::sources::SourceContext;
use crate::sources::http::{LoopSettings, PollSource, SourceError, run_polling};

/// One source's polling defaults and limits. The ad platforms share two of them (their reports
/// refresh about every 15 minutes; an hour is the longest wait worth sleeping through), so a
/// source states only where it differs.
pub trait PollingDefaults {
    /// Default seconds between polls.
    const INTERVAL_SECS: u64 = 900;
    /// Default days re-read every poll.
    const LOOKBACK_DAYS: u32;
    /// Most days a poll may re-read (how far back the API keeps or restates data).
    const MAX_LOOKBACK_DAYS: u32;
    /// Default shortest throttle wait, in seconds.
    const MIN_THROTTLE_WAIT_SECS: u64;
    /// Default longest throttle wait, in seconds.
    const MAX_THROTTLE_WAIT_SECS: u64 = 3600;
    /// Shortest interval allowed, in seconds (the API's rate limits).
    const MIN_INTERVAL_SECS: u64 = 1;
}

/// Polling settings of one source; `D` supplies that source's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct PollingConfig<D: PollingDefaults> {
    /// Seconds between polls.
    pub interval_secs: u64,
    /// Days re-read every poll (platforms restate recent days: conversions, refunds).
    pub lookback_days: u32,
    /// Shortest throttle wait, in seconds, whatever the API says (it may say 0).
    pub min_throttle_wait_secs: u64,
    /// Longest throttle wait honoured, in seconds; a longer wait asked by the API leaves the days
    /// incomplete (retried later) instead of sleeping for hours.
    pub max_throttle_wait_secs: u64,
    #[serde(skip)]
    defaults: PhantomData<fn() -> D>,
}

impl<D: PollingDefaults> Default for PollingConfig<D> {
    fn default() -> Self {
        Self {
            interval_secs: D::INTERVAL_SECS,
            lookback_days: D::LOOKBACK_DAYS,
            min_throttle_wait_secs: D::MIN_THROTTLE_WAIT_SECS,
            max_throttle_wait_secs: D::MAX_THROTTLE_WAIT_SECS,
            defaults: PhantomData,
        }
    }
}

// by hand: a derive would ask `D: Clone + Debug` of the marker types
impl<D: PollingDefaults> Clone for PollingConfig<D> {
    fn clone(&self) -> Self {
        Self { ..*self }
    }
}

impl<D: PollingDefaults> std::fmt::Debug for PollingConfig<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollingConfig")
            .field("interval_secs", &self.interval_secs)
            .field("lookback_days", &self.lookback_days)
            .field("min_throttle_wait_secs", &self.min_throttle_wait_secs)
            .field("max_throttle_wait_secs", &self.max_throttle_wait_secs)
            .finish()
    }
}

impl<D: PollingDefaults> PollingConfig<D> {
    /// The floor and cap of every throttle wait.
    pub fn wait_policy(&self) -> WaitPolicy {
        WaitPolicy::new(self.min_throttle_wait_secs, self.max_throttle_wait_secs)
    }

    /// The shared loop's settings.
    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            interval: Duration::from_secs(self.interval_secs),
            lookback_days: self.lookback_days,
            wait: self.wait_policy(),
        }
    }

    /// Problems, with keys relative to the source.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.interval_secs < D::MIN_INTERVAL_SECS {
            p.push(Problem::new(
                "interval_secs",
                format!(
                    "must be at least {} (the API's rate limits)",
                    D::MIN_INTERVAL_SECS
                ),
            ));
        }
        if self.lookback_days == 0 || self.lookback_days > D::MAX_LOOKBACK_DAYS {
            p.push(Problem::new(
                "lookback_days",
                format!("must be between 1 and {}", D::MAX_LOOKBACK_DAYS),
            ));
        }
        if self.min_throttle_wait_secs > self.max_throttle_wait_secs {
            p.push(Problem::new(
                "min_throttle_wait_secs",
                "must not be above max_throttle_wait_secs",
            ));
        }
        p
    }
}

/// Run a source with the shared loop ([`run_polling`]), or, when it could not be built from its
/// config, count one failed poll and log why, so the failure shows on `/metrics` and in the log.
pub async fn run_or_report<S: PollSource>(
    source: Result<S, SourceError>,
    settings: LoopSettings,
    ctx: SourceContext,
    kind: &'static str,
) {
    match source {
        Ok(s) => run_polling(s, settings, ctx, kind).await,
        Err(error) => {
            ctx.pipeline
                .telemetry()
                .source(&ctx.name, kind)
                .poll_failed(Duration::ZERO);
            tracing::error!(source = %ctx.name, kind, %error, "source not started");
        }
    }
}

/// A required text setting left empty (the source configs default every field so that one
/// `Default` impl holds them; the keys a source cannot work without are checked here).
pub fn required(key: &str, value: &str) -> Option<Problem> {
    value
        .trim()
        .is_empty()
        .then(|| Problem::new(key, "is required"))
}

/// A timezone setting that is not an IANA name.
pub fn timezone(key: &str, value: &str) -> Option<Problem> {
    value
        .parse::<chrono_tz::Tz>()
        .is_err()
        .then(|| Problem::new(key, format!("{value:?} is not an IANA timezone")))
}

/// A count setting (a page size, the bound of a nested list) outside `1..=max`.
pub fn one_to(key: &str, value: u32, max: u32) -> Option<Problem> {
    (value == 0 || value > max).then(|| Problem::new(key, format!("must be between 1 and {max}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    // a real source's defaults: Google Ads states its look-back, limits and floors, and takes
    // the trait's interval and longest wait
    use crate::sources::google_ads::GoogleAdsPolling as Ads;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        #[serde(flatten)]
        polling: PollingConfig<Ads>,
    }

    #[test]
    fn flattened_keys_take_the_sources_defaults_and_unknown_keys_fail() {
        let o: Outer = toml::from_str("name = \"a\"\nlookback_days = 7").unwrap();
        assert_eq!(o.name, "a");
        assert_eq!(o.polling.lookback_days, 7);
        assert_eq!(o.polling.interval_secs, 900, "the trait's default");
        assert_eq!(o.polling.min_throttle_wait_secs, 5, "the marker's default");
        assert_eq!(o.polling.max_throttle_wait_secs, 3600);
        let e = toml::from_str::<Outer>("name = \"a\"\nlookback_dayz = 7").unwrap_err();
        assert!(e.to_string().contains("lookback_dayz"), "{e}");
    }

    #[test]
    fn timezone_and_count_checks_name_their_key() {
        assert_eq!(timezone("tz", "Asia/Kolkata"), None);
        assert_eq!(
            timezone("tz", "Mars/Base"),
            Some(Problem::new("tz", "\"Mars/Base\" is not an IANA timezone"))
        );
        assert_eq!(one_to("page_size", 1, 250), None);
        assert_eq!(one_to("page_size", 250, 250), None);
        for bad in [0, 251] {
            assert_eq!(
                one_to("page_size", bad, 250),
                Some(Problem::new("page_size", "must be between 1 and 250"))
            );
        }
        // as a source's config reports them
        let shop = crate::sources::shopify::ShopifyConfig {
            name: "shop".into(),
            shop_domain: "moi.myshopify.com".into(),
            shop_timezone: "Mars/Base".into(),
            moments_per_order: 0,
            ..Default::default()
        };
        let keys: Vec<String> = shop.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["shop_timezone", "moments_per_order"]);
    }

    #[test]
    fn problems_use_the_sources_limits() {
        let o: Outer =
            toml::from_str("name = \"a\"\ninterval_secs = 59\nlookback_days = 91").unwrap();
        let keys: Vec<String> = o.polling.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["interval_secs", "lookback_days"]);
        assert!(PollingConfig::<Ads>::default().problems().is_empty());
        let o: Outer =
            toml::from_str("name = \"a\"\ninterval_secs = 60\nlookback_days = 90").unwrap();
        assert!(
            o.polling.problems().is_empty(),
            "the limits themselves are allowed"
        );
    }
}
