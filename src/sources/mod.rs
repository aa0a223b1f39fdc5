//! Sources: where data comes from. Every component is listed in [`SourceConfig`] (no registration by
//! side effect), so `grep SourceConfig::` finds each one.

pub mod csv_import;
pub mod cursor;
pub mod demo;
pub mod ga4;
pub mod google_ads;
pub mod http;
pub mod ledger;
pub mod meta;
pub mod polling;
pub mod report;
pub mod shopify;
pub mod utm;

use serde::Deserialize;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::base::Problem;
use crate::pipeline::Pipeline;

/// One configured source, tagged by `type` in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The built-in simulator of MOI's crisis (the embedded default).
    Demo(demo::DemoConfig),
    /// Meta Marketing API insights of one ad account.
    Meta(meta::MetaConfig),
    /// Google Ads API campaign report of one customer.
    GoogleAds(google_ads::GoogleAdsConfig),
    /// Shopify Admin API (GraphQL) orders: the revenue source of truth.
    Shopify(shopify::ShopifyConfig),
    /// GA4 Data API funnel events.
    Ga4(ga4::Ga4Config),
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Demo(c) => &c.name,
            SourceConfig::Meta(c) => &c.name,
            SourceConfig::GoogleAds(c) => &c.name,
            SourceConfig::Shopify(c) => &c.name,
            SourceConfig::Ga4(c) => &c.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Demo(_) => "demo",
            SourceConfig::Meta(_) => "meta",
            SourceConfig::GoogleAds(_) => "google_ads",
            SourceConfig::Shopify(_) => "shopify",
            SourceConfig::Ga4(_) => "ga4",
        }
    }

    /// Problems in this source's settings; keys are relative to the source.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            SourceConfig::Demo(c) => c.problems(),
            SourceConfig::Meta(c) => c.problems(),
            SourceConfig::GoogleAds(c) => c.problems(),
            SourceConfig::Shopify(c) => c.problems(),
            SourceConfig::Ga4(c) => c.problems(),
        }
    }

    /// Run until `shutdown` fires (or, for a finite source, until done).
    pub async fn run(self, ctx: SourceContext) {
        match self {
            SourceConfig::Demo(c) => {
                demo::DemoSource::new(c, ctx.pipeline.timezone())
                    .run(ctx)
                    .await
            }
            SourceConfig::Meta(c) => meta::run(c, ctx).await,
            SourceConfig::GoogleAds(c) => google_ads::run(c, ctx).await,
            SourceConfig::Shopify(c) => shopify::run(c, ctx).await,
            SourceConfig::Ga4(c) => ga4::run(c, ctx).await,
        }
    }
}

/// What a running source gets: where to send data, and when to stop.
#[derive(Clone)]
pub struct SourceContext {
    pub name: String,
    pub pipeline: Arc<Pipeline>,
    pub shutdown: CancellationToken,
    /// Persisted sync state (cursors, backfill progress).
    pub cursors: Arc<cursor::CursorStore>,
}

#[cfg(test)]
impl SourceContext {
    /// A test context of source `name`: a pipeline into `sink` (UTC days, INR, a store keeping
    /// `retention_days`), the cursors given, a shutdown token of its own.
    pub(crate) fn test(
        name: &str,
        retention_days: u32,
        sink: Option<crate::sinks::questdb::SinkHandle>,
        cursors: Arc<cursor::CursorStore>,
    ) -> Self {
        let pipeline = Pipeline::new(
            crate::normalize::Normalizer::new(chrono_tz::UTC, "INR", Default::default()),
            crate::state::Store::new(retention_days),
            sink,
            Arc::new(crate::telemetry::Telemetry::new()),
        );
        SourceContext {
            name: name.into(),
            pipeline: Arc::new(pipeline),
            shutdown: CancellationToken::new(),
            cursors,
        }
    }
}

/// Any HTTP source, for commands that drive one directly (`adpulse backfill`).
pub enum AnyPoller {
    Meta(meta::MetaSource),
    GoogleAds(google_ads::GoogleAdsSource),
    Shopify(shopify::ShopifySource),
    Ga4(ga4::Ga4Source),
}

impl AnyPoller {
    /// The poller of a configured source (daily rows stamped in `reporting_tz`); `None` for
    /// sources that are not HTTP APIs (the demo).
    pub fn from_config(
        c: &SourceConfig,
        reporting_tz: chrono_tz::Tz,
    ) -> Option<Result<Self, http::SourceError>> {
        Some(match c {
            SourceConfig::Demo(_) => return None,
            SourceConfig::Meta(c) => {
                meta::MetaSource::new(c.clone(), reporting_tz).map(AnyPoller::Meta)
            }
            SourceConfig::GoogleAds(c) => {
                google_ads::GoogleAdsSource::new(c.clone(), reporting_tz).map(AnyPoller::GoogleAds)
            }
            SourceConfig::Shopify(c) => {
                shopify::ShopifySource::new(c.clone()).map(AnyPoller::Shopify)
            }
            SourceConfig::Ga4(c) => {
                ga4::Ga4Source::new(c.clone(), reporting_tz).map(AnyPoller::Ga4)
            }
        })
    }

    /// Floor and cap of throttle waits from the source's settings.
    pub fn wait_policy(c: &SourceConfig) -> crate::platforms::WaitPolicy {
        match c {
            SourceConfig::Demo(_) => crate::platforms::WaitPolicy::new(1, 1),
            SourceConfig::Meta(c) => c.polling.wait_policy(),
            SourceConfig::GoogleAds(c) => c.polling.wait_policy(),
            SourceConfig::Shopify(c) => c.polling.wait_policy(),
            SourceConfig::Ga4(c) => c.polling.wait_policy(),
        }
    }
}

impl http::PollSource for AnyPoller {
    fn account_timezone(&self) -> chrono_tz::Tz {
        match self {
            AnyPoller::Meta(s) => s.account_timezone(),
            AnyPoller::GoogleAds(s) => s.account_timezone(),
            AnyPoller::Shopify(s) => s.account_timezone(),
            AnyPoller::Ga4(s) => s.account_timezone(),
        }
    }

    async fn poll(
        &mut self,
        window: http::Window,
    ) -> Result<Vec<crate::normalize::Observation>, http::SourceError> {
        match self {
            AnyPoller::Meta(s) => s.poll(window).await,
            AnyPoller::GoogleAds(s) => s.poll(window).await,
            AnyPoller::Shopify(s) => s.poll(window).await,
            AnyPoller::Ga4(s) => s.poll(window).await,
        }
    }
}
