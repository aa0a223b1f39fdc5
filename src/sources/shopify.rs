//! Shopify Admin API orders, the revenue source of truth, over **GraphQL** (REST has been legacy
//! since 2024-10): cursor pagination (`pageInfo.endCursor`), cost-based throttling (the
//! `extensions.cost.throttleStatus` bucket; a `THROTTLED` error waits until enough points are
//! restored). Each poll re-reads orders *updated* in the look-back window, so late refunds and
//! cancellations arrive; they are booked as negative revenue on the day they happen.

use chrono::{DateTime, Duration as CDuration, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;
use std::time::Duration;

use crate::base::{Problem, Secret};
use crate::normalize::{Observation, RawOrder};
use crate::records::OrderKind;
use crate::sources::SourceContext;
use crate::sources::http::{
    LoopSettings, PollSource, SourceError, Window, run_polling, send_with_retry,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {
    /// Name of this source instance.
    pub name: String,
    /// The shop's domain, `<shop>.myshopify.com`.
    pub shop_domain: String,
    /// Admin API version, pinned.
    #[serde(default = "default_version")]
    pub api_version: String,
    /// Base URL override (a local server in tests); default `https://<shop_domain>`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default = "default_token_env")]
    pub access_token_env: String,
    #[serde(default)]
    pub access_token_file: Option<std::path::PathBuf>,
    /// The shop's timezone.
    #[serde(default = "default_tz")]
    pub shop_timezone: String,
    /// Days of order updates re-read every poll (refunds come after the order).
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Orders per page.
    #[serde(default = "default_page")]
    pub page_size: u32,
    #[serde(default = "default_max_wait")]
    pub max_throttle_wait_secs: u64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_version() -> String {
    "2025-10".into()
}
fn default_token_env() -> String {
    "ADPULSE_SHOPIFY_ACCESS_TOKEN".into()
}
fn default_tz() -> String {
    "Asia/Kolkata".into()
}
fn default_lookback() -> u32 {
    60
}
fn default_interval() -> u64 {
    300
}
fn default_page() -> u32 {
    100
}
fn default_max_wait() -> u64 {
    600
}
fn default_timeout() -> u64 {
    60
}

impl ShopifyConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if !self.shop_domain.ends_with(".myshopify.com") {
            p.push(Problem {
                key: "shop_domain".into(),
                message: format!("{:?} is not like <shop>.myshopify.com", self.shop_domain),
            });
        }
        if self.shop_timezone.parse::<Tz>().is_err() {
            p.push(Problem {
                key: "shop_timezone".into(),
                message: format!("{:?} is not an IANA timezone", self.shop_timezone),
            });
        }
        if self.page_size == 0 || self.page_size > 250 {
            p.push(Problem {
                key: "page_size".into(),
                message: "must be between 1 and 250".into(),
            });
        }
        if self.lookback_days == 0 {
            p.push(Problem {
                key: "lookback_days".into(),
                message: "must be at least 1".into(),
            });
        }
        p
    }
}

/// The GraphQL query (one page).
pub const ORDERS_QUERY: &str = "query Orders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name createdAt cancelledAt
      totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
      totalRefundedSet { shopMoney { amount currencyCode } }
      customer { id }
      billingAddress { city }
      shippingAddress { city }
      currentSubtotalLineItemsQuantity
      customerJourneySummary { lastVisit { landingPage referrerUrl utmParameters { source medium campaign } } }
      refunds { id createdAt totalRefundedSet { shopMoney { amount currencyCode } } }
    }
  }
}";

#[derive(Debug, Deserialize)]
struct MoneyV2 {
    amount: String,
    #[serde(rename = "currencyCode")]
    currency_code: String,
}

#[derive(Debug, Deserialize)]
struct MoneyBag {
    #[serde(rename = "shopMoney")]
    shop_money: MoneyV2,
}

#[derive(Debug, Deserialize)]
struct City {
    city: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Utm {
    source: Option<String>,
    medium: Option<String>,
    campaign: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Visit {
    landing_page: Option<String>,
    referrer_url: Option<String>,
    utm_parameters: Option<Utm>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Journey {
    last_visit: Option<Visit>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Refund {
    id: String,
    created_at: DateTime<Utc>,
    total_refunded_set: MoneyBag,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    id: String,
    name: String,
    created_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
    total_price_set: MoneyBag,
    customer: Option<serde_json::Value>,
    billing_address: Option<City>,
    shipping_address: Option<City>,
    current_subtotal_line_items_quantity: Option<u32>,
    customer_journey_summary: Option<Journey>,
    #[serde(default)]
    refunds: Vec<Refund>,
}

/// One parsed page.
#[derive(Debug)]
pub struct OrdersPage {
    pub observations: Vec<Observation>,
    pub next_cursor: Option<String>,
}

fn money(m: &MoneyV2, what: &str, order: &str) -> Result<Decimal, SourceError> {
    Decimal::from_str(&m.amount)
        .map_err(|_| SourceError::Malformed(format!("order {order}: {what} amount {:?}", m.amount)))
}

/// Parse a GraphQL response (or classify its errors).
pub fn parse_orders(body: &str) -> Result<OrdersPage, SourceError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| SourceError::Malformed(format!("orders: {e}")))?;
    if let Some(errors) = v["errors"].as_array().filter(|e| !e.is_empty()) {
        let throttled = errors
            .iter()
            .any(|e| e["extensions"]["code"] == "THROTTLED");
        let message = errors[0]["message"]
            .as_str()
            .unwrap_or("GraphQL error")
            .to_string();
        if throttled {
            let cost = &v["extensions"]["cost"];
            let requested = cost["requestedQueryCost"].as_f64().unwrap_or(0.0);
            let available = cost["throttleStatus"]["currentlyAvailable"]
                .as_f64()
                .unwrap_or(0.0);
            let restore = cost["throttleStatus"]["restoreRate"]
                .as_f64()
                .unwrap_or(50.0)
                .max(1.0);
            let secs = ((requested - available).max(1.0) / restore).ceil();
            return Err(SourceError::Throttled {
                wait: Duration::from_secs_f64(secs),
                message,
            });
        }
        return Err(SourceError::Malformed(format!("GraphQL: {message}")));
    }
    let orders = &v["data"]["orders"];
    let nodes: Vec<Order> = serde_json::from_value(orders["nodes"].clone())
        .map_err(|e| SourceError::Malformed(format!("orders.nodes: {e}")))?;
    let mut out = Vec::new();
    for o in nodes {
        let total = money(&o.total_price_set.shop_money, "totalPriceSet", &o.name)?;
        let currency = o.total_price_set.shop_money.currency_code.clone();
        let visit = o.customer_journey_summary.and_then(|j| j.last_visit);
        let (mut src, mut med, mut camp) = (None, None, None);
        if let Some(v) = &visit {
            if let Some(u) = &v.utm_parameters {
                (src, med, camp) = (u.source.clone(), u.medium.clone(), u.campaign.clone());
            }
            if src.is_none()
                && let Some(lp) = &v.landing_page
            {
                (src, med, camp) = crate::sources::csv_import::utm(lp);
            }
            if src.is_none()
                && let Some(r) = &v.referrer_url
            {
                // channel from the referrer's host when no UTM was set
                src = reqwest::Url::parse(r)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string));
                med = src.as_ref().map(|_| "referral".to_string());
            }
        }
        let base = RawOrder {
            ts: o.created_at,
            event_id: o.id.clone(),
            order_id: o.name.clone(),
            kind: OrderKind::Order,
            amount: total,
            currency: currency.clone(),
            customer_id: o
                .customer
                .as_ref()
                .and_then(|c| c["id"].as_str())
                .map(str::to_string),
            city: o
                .billing_address
                .and_then(|a| a.city)
                .or_else(|| o.shipping_address.and_then(|a| a.city)),
            utm_source: src,
            utm_medium: med,
            utm_campaign: camp,
            items: o.current_subtotal_line_items_quantity.unwrap_or(0),
        };
        let mut refunded = Decimal::ZERO;
        for r in &o.refunds {
            let amount = money(&r.total_refunded_set.shop_money, "refund", &o.name)?;
            refunded += amount;
            out.push(Observation::Order(RawOrder {
                ts: r.created_at,
                event_id: r.id.clone(),
                kind: OrderKind::Refund,
                amount: -amount,
                ..base.clone()
            }));
        }
        if let Some(at) = o.cancelled_at {
            // what was not already refunded leaves revenue when the order is cancelled
            let rest = total - refunded;
            if !rest.is_zero() {
                out.push(Observation::Order(RawOrder {
                    ts: at,
                    event_id: format!("{}/cancellation", o.id),
                    kind: OrderKind::Cancellation,
                    amount: -rest,
                    ..base.clone()
                }));
            }
        }
        out.push(Observation::Order(base));
    }
    let next_cursor = if orders["pageInfo"]["hasNextPage"].as_bool() == Some(true) {
        orders["pageInfo"]["endCursor"].as_str().map(str::to_string)
    } else {
        None
    };
    Ok(OrdersPage {
        observations: out,
        next_cursor,
    })
}

pub struct ShopifySource {
    cfg: ShopifyConfig,
    tz: Tz,
    http: reqwest::Client,
}

impl ShopifySource {
    pub fn new(cfg: ShopifyConfig) -> Result<Self, SourceError> {
        let tz = crate::sources::http::timezone("shop_timezone", &cfg.shop_timezone)?;
        let http = crate::sources::http::client(cfg.timeout_secs)?;
        Ok(Self { cfg, tz, http })
    }

    fn token(&self) -> Result<Secret, SourceError> {
        crate::sources::http::read_secret(
            self.cfg.access_token_file.as_deref(),
            &self.cfg.access_token_env,
        )
    }
}

impl PollSource for ShopifySource {
    fn account_timezone(&self) -> Tz {
        self.tz
    }

    async fn poll(&mut self, window: Window) -> Result<Vec<Observation>, SourceError> {
        let token = self.token()?;
        let base = self
            .cfg
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.cfg.shop_domain));
        let url = format!(
            "{}/admin/api/{}/graphql.json",
            base.trim_end_matches('/'),
            self.cfg.api_version
        );
        let since = crate::normalize::day_start(window.since, self.tz) - CDuration::zero();
        let filter = format!("updated_at:>='{}'", since.format("%Y-%m-%dT%H:%M:%SZ"));
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..100_000 {
            let body = serde_json::json!({
                "query": ORDERS_QUERY,
                "variables": {"first": self.cfg.page_size, "after": after, "query": filter},
            });
            let text = send_with_retry("shopify orders", || async {
                let mut h =
                    reqwest::header::HeaderValue::from_str(token.expose()).map_err(|_| {
                        SourceError::Config("access token has invalid characters".into())
                    })?;
                h.set_sensitive(true);
                let resp = self
                    .http
                    .post(&url)
                    .header("X-Shopify-Access-Token", h)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok());
                let text = resp
                    .text()
                    .await
                    .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
                match status {
                    401 | 403 => Err(SourceError::Auth(format!(
                        "HTTP {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ))),
                    429 => Err(SourceError::Throttled {
                        wait: Duration::from_secs_f64(retry_after.unwrap_or(2.0)),
                        message: "HTTP 429".into(),
                    }),
                    s if s >= 400 => Err(SourceError::Http {
                        status: s,
                        message: text.chars().take(200).collect(),
                    }),
                    _ => Ok(text),
                }
            })
            .await?;
            let page = match parse_orders(&text) {
                // a throttled page inside a poll: wait what the bucket needs, then the same page
                Err(SourceError::Throttled { wait, .. })
                    if wait <= Duration::from_secs(self.cfg.max_throttle_wait_secs) =>
                {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                other => other?,
            };
            out.extend(page.observations);
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => return Ok(out),
            }
        }
        Err(SourceError::Malformed(
            "too many pages: cursor does not advance".into(),
        ))
    }
}

pub async fn run(cfg: ShopifyConfig, ctx: SourceContext) {
    let settings = LoopSettings {
        interval: Duration::from_secs(cfg.interval_secs),
        lookback_days: cfg.lookback_days,
        max_throttle_wait: Duration::from_secs(cfg.max_throttle_wait_secs),
    };
    match ShopifySource::new(cfg) {
        Ok(s) => run_polling(s, settings, ctx, "shopify").await,
        Err(error) => {
            ctx.pipeline
                .telemetry()
                .source(&ctx.name, "shopify")
                .poll_failed(Duration::ZERO);
            tracing::error!(source = %ctx.name, %error, "shopify source not started");
        }
    }
}
