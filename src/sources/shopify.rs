//! Shopify Admin API orders, the revenue source of truth, over **GraphQL** (REST has been legacy
//! since 2024-10): cursor pagination (`pageInfo.endCursor`), cost-based throttling (the
//! `extensions.cost.throttleStatus` bucket; a `THROTTLED` error waits until enough points are
//! restored, exponentially longer when no cost is given; an HTTP 429 waits `Retry-After`; either
//! way the poll resumes from the same page cursor). `INTERNAL_SERVER_ERROR` is retried. Each poll
//! re-reads orders *updated* inside the window (both bounds, so backfill chunks do not overlap),
//! so late refunds and cancellations arrive; they are booked as negative revenue on the day they
//! happen.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;
use std::time::Duration;

use crate::base::{Problem, Secret};
use crate::normalize::{Observation, RawOrder};
use crate::records::OrderKind;
use crate::sources::SourceContext;
use crate::sources::http::{PollSource, SourceError, Window, send_with_retry};
use crate::sources::polling::{PollingConfig, PollingDefaults, required, run_or_report};

/// Settings of one shop. Every key but `name` and `shop_domain` has a default; the polling
/// settings are the sources' shared [`PollingConfig`], flattened, so its keys stay top-level keys
/// of the `[[sources]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShopifyConfig {
    /// Name of this source instance (required).
    pub name: String,
    /// The shop's domain, `<shop>.myshopify.com` (required).
    pub shop_domain: String,
    /// Admin API version, pinned.
    pub api_version: String,
    /// Base URL override (a local server in tests); default `https://<shop_domain>`.
    pub base_url: Option<String>,
    /// Environment variable holding the Admin API access token.
    pub access_token_env: String,
    /// File holding the access token (takes precedence over the variable).
    pub access_token_file: Option<std::path::PathBuf>,
    /// Request timeout, in seconds.
    pub timeout_secs: u64,
    /// The shop's timezone.
    pub shop_timezone: String,
    /// Orders per page.
    pub page_size: u32,
    /// Consecutive throttles of one page before the poll gives up (the days stay incomplete).
    pub max_throttles_per_page: u32,
    /// Interval, look-back (refunds come after the order) and throttle waits (the floor is the
    /// first step of the backoff when no cost is given).
    #[serde(flatten)]
    pub polling: PollingConfig<ShopifyPolling>,
}

/// Shopify's polling defaults: its cost bucket refills every second, so waits are short.
pub struct ShopifyPolling;

impl PollingDefaults for ShopifyPolling {
    const INTERVAL_SECS: u64 = 300;
    const LOOKBACK_DAYS: u32 = 60;
    const MAX_LOOKBACK_DAYS: u32 = 3660;
    const MIN_THROTTLE_WAIT_SECS: u64 = 1;
    const MAX_THROTTLE_WAIT_SECS: u64 = 600;
}

impl Default for ShopifyConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            shop_domain: String::new(),
            api_version: "2025-10".into(),
            base_url: None,
            access_token_env: "ADPULSE_SHOPIFY_ACCESS_TOKEN".into(),
            access_token_file: None,
            timeout_secs: 60,
            shop_timezone: "Asia/Kolkata".into(),
            page_size: 100,
            max_throttles_per_page: 20,
            polling: PollingConfig::default(),
        }
    }
}

impl ShopifyConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p: Vec<Problem> = required("name", &self.name).into_iter().collect();
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
        p.extend(self.polling.problems());
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
        let code = |c: &str| errors.iter().any(|e| e["extensions"]["code"] == c);
        let message = errors[0]["message"]
            .as_str()
            .unwrap_or("GraphQL error")
            .chars()
            .take(300)
            .collect::<String>();
        if code("THROTTLED") {
            let cost = &v["extensions"]["cost"];
            let requested = cost["requestedQueryCost"].as_f64();
            let available = cost["throttleStatus"]["currentlyAvailable"].as_f64();
            let restore = cost["throttleStatus"]["restoreRate"].as_f64();
            // the wait the bucket needs; without cost information the caller backs off
            let wait = match (requested, available, restore) {
                (Some(r), Some(a), Some(rate)) if rate > 0.0 => {
                    Some(Duration::from_secs_f64(((r - a).max(0.0) / rate).ceil()))
                }
                _ => None,
            };
            return Err(SourceError::Throttled { wait, message });
        }
        if code("INTERNAL_SERVER_ERROR") || code("INTERNAL") {
            return Err(SourceError::Transient(format!("GraphQL: {message}")));
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
                (src, med, camp) = crate::sources::utm::utm(lp);
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

impl ShopifySource {
    /// One page, with transient failures (and GraphQL INTERNAL errors) retried.
    async fn page(
        &self,
        url: &str,
        token: &Secret,
        body: &serde_json::Value,
    ) -> Result<OrdersPage, SourceError> {
        send_with_retry("shopify orders", || async {
            let h = crate::sources::http::secret_header(token.expose())?;
            let resp = self
                .http
                .post(url)
                .header("X-Shopify-Access-Token", h)
                .json(body)
                .send()
                .await
                .map_err(|e| SourceError::Transport(e.without_url().to_string()))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0);
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
                    wait: retry_after.map(Duration::from_secs_f64),
                    message: "HTTP 429 Too Many Requests".into(),
                }),
                s if s >= 400 => Err(SourceError::Http {
                    status: s,
                    message: text.chars().take(200).collect(),
                }),
                _ => parse_orders(&text),
            }
        })
        .await
    }
}

/// The order search of a window: updated from the window's first midnight up to (excluding) the
/// midnight after its last day, in the shop's timezone.
pub fn updated_filter(window: Window, tz: Tz) -> String {
    let since = crate::normalize::day_start(window.since, tz);
    let until = crate::normalize::day_start(window.until + chrono::Days::new(1), tz);
    format!(
        "updated_at:>='{}' AND updated_at:<'{}'",
        since.format("%Y-%m-%dT%H:%M:%SZ"),
        until.format("%Y-%m-%dT%H:%M:%SZ")
    )
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
        let filter = updated_filter(window, self.tz);
        let policy = self.cfg.polling.wait_policy();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        let mut backoff = policy.backoff();
        let mut throttles = 0u32;
        for _ in 0..100_000 {
            let body = serde_json::json!({
                "query": ORDERS_QUERY,
                "variables": {"first": self.cfg.page_size, "after": after, "query": filter},
            });
            let page = match self.page(&url, &token, &body).await {
                // a throttled page: wait what the bucket needs (or back off), then the same page
                Err(SourceError::Throttled { wait, message })
                    if throttles < self.cfg.max_throttles_per_page =>
                {
                    let w = policy.decide(wait, &mut backoff);
                    if w.exceeds_cap {
                        return Err(SourceError::Throttled { wait, message });
                    }
                    throttles += 1;
                    crate::sources::http::log_wait(&self.cfg.name, &message, &w);
                    tokio::time::sleep(w.wait).await;
                    continue;
                }
                other => other?,
            };
            throttles = 0;
            backoff = policy.backoff();
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
    let settings = cfg.polling.loop_settings();
    run_or_report(ShopifySource::new(cfg), settings, ctx, "shopify").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_waits_from_the_cost_bucket_or_backoff() {
        // documented: requestedQueryCost 252, currentlyAvailable 2, restoreRate 250 -> 1 s
        let with_cost = r#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED","documentation":"https://shopify.dev/api/usage/rate-limits"}}],"extensions":{"cost":{"requestedQueryCost":252,"actualQueryCost":null,"throttleStatus":{"maximumAvailable":2000.0,"currentlyAvailable":2,"restoreRate":250.0}}}}"#;
        match parse_orders(with_cost) {
            Err(SourceError::Throttled { wait, .. }) => {
                assert_eq!(wait, Some(Duration::from_secs(1)))
            }
            other => panic!("{other:?}"),
        }
        // no cost information: no invented 1 s wait, the caller's exponential backoff decides
        let bare = r#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]}"#;
        match parse_orders(bare) {
            Err(SourceError::Throttled { wait, .. }) => assert_eq!(wait, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn internal_errors_are_transient() {
        let body = r#"{"errors":[{"message":"Internal error. Looks like something went wrong on our end.","extensions":{"code":"INTERNAL_SERVER_ERROR","requestId":"d2f47302-8559-4961-9a5b-3de60172aa29"}}]}"#;
        let e = parse_orders(body).unwrap_err();
        assert!(e.is_transient(), "{e}");
    }

    #[test]
    fn the_search_has_both_bounds_in_the_shop_timezone() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let f = updated_filter(
            Window {
                since: d("2026-10-01"),
                until: d("2026-10-07"),
            },
            chrono_tz::Asia::Kolkata,
        );
        assert_eq!(
            f,
            "updated_at:>='2026-09-30T18:30:00Z' AND updated_at:<'2026-10-07T18:30:00Z'"
        );
    }
}
