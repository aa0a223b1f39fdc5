//! Shopify Admin API orders, the revenue source of truth, over **GraphQL** (REST has been legacy
//! since 2024-10): cursor pagination (`pageInfo.endCursor`), cost-based throttling (the
//! `extensions.cost.throttleStatus` bucket; a `THROTTLED` error waits until enough points are
//! restored, exponentially longer when no cost is given; an HTTP 429 waits `Retry-After`; either
//! way the poll resumes from the same page cursor). `INTERNAL_SERVER_ERROR` is retried. Each poll
//! re-reads orders *updated* inside the window (both bounds, so backfill chunks do not overlap),
//! so late refunds and cancellations arrive; they are booked as negative revenue on the day they
//! happen.
//!
//! Order depth (issue 16): every order's line items (SKU, quantity, unit price, discounts, taxes,
//! the variant's inventory-item unit cost), shipping charged (allocated to the lines by their net
//! sales, to the paisa), refunds per line, the shipping city, province and country, and the
//! customer journey summary (customer order index: new or returning; the moments, each a visit
//! with its UTM, referrer and landing page) become `order_lines` and `touchpoints` rows. A line
//! whose variant has no unit cost takes the configured fallback margin of its product type, or
//! keeps no cost at all: it is logged per SKU and counted in `/metrics`
//! (`adpulse_profit_lines_missing_cost`), never invented. Nested lists are read in one page each
//! (`line_items_per_order`, `moments_per_order`): an order with more is an error naming it, not
//! a silent cut.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;
use std::time::Duration;

use crate::base::{Problem, Secret};
use crate::normalize::{Observation, OrderOrigin, RawOrder};
use crate::records::{CostSource, OrderKind, OrderLine, TouchpointRow};
use crate::sources::SourceContext;
use crate::sources::http::{PollSource, SourceError, Window, send_with_retry};
use crate::sources::polling::{
    PollingConfig, PollingDefaults, one_to, required, run_or_report, timezone,
};
use std::collections::BTreeMap;

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
    /// Line items read per order (one page; an order with more is an error naming it).
    pub line_items_per_order: u32,
    /// Journey moments read per order (one page; the rest are dropped with a warning: the
    /// journey's first and last visits are kept anyway).
    pub moments_per_order: u32,
    /// Gross margin assumed, per product type, for lines whose variant has no unit cost (0.55:
    /// the cost is 45% of the net unit price). Lines of other product types keep no cost and are
    /// reported per SKU.
    pub fallback_margin_by_product_type: BTreeMap<String, Decimal>,
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
            line_items_per_order: 50,
            moments_per_order: 20,
            fallback_margin_by_product_type: BTreeMap::new(),
            polling: PollingConfig::default(),
        }
    }
}

impl ShopifyConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut p: Vec<Problem> = required("name", &self.name).into_iter().collect();
        if !self.shop_domain.ends_with(".myshopify.com") {
            p.push(Problem::new(
                "shop_domain",
                format!("{:?} is not like <shop>.myshopify.com", self.shop_domain),
            ));
        }
        p.extend(timezone("shop_timezone", &self.shop_timezone));
        p.extend(one_to("page_size", self.page_size, 250));
        p.extend(one_to(
            "line_items_per_order",
            self.line_items_per_order,
            250,
        ));
        p.extend(one_to("moments_per_order", self.moments_per_order, 250));
        for (t, m) in &self.fallback_margin_by_product_type {
            if *m < Decimal::ZERO || *m >= Decimal::ONE {
                p.push(Problem::new(
                    format!("fallback_margin_by_product_type.{t}"),
                    format!("{m} is not a margin in [0, 1)"),
                ));
            }
        }
        p.extend(self.polling.problems());
        p
    }
}

/// The GraphQL query (one page of orders; `$lines` and `$moments` bound the nested lists).
pub const ORDERS_QUERY: &str = "query Orders($first: Int!, $after: String, $query: String, $lines: Int!, $moments: Int!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name createdAt cancelledAt taxesIncluded
      totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
      totalRefundedSet { shopMoney { amount currencyCode } }
      customer { id }
      billingAddress { city }
      shippingAddress { city province country }
      currentSubtotalLineItemsQuantity
      lineItems(first: $lines) {
        pageInfo { hasNextPage }
        nodes {
          id sku title variantTitle quantity
          originalUnitPriceSet { shopMoney { amount currencyCode } }
          discountAllocations { allocatedAmountSet { shopMoney { amount currencyCode } } }
          taxLines { priceSet { shopMoney { amount currencyCode } } }
          product { productType }
          variant { id inventoryItem { unitCost { amount currencyCode } } }
        }
      }
      shippingLines(first: 10) {
        nodes {
          discountedPriceSet { shopMoney { amount currencyCode } }
          taxLines { priceSet { shopMoney { amount currencyCode } } }
        }
      }
      customerJourneySummary {
        customerOrderIndex daysToConversion
        firstVisit { occurredAt landingPage referrerUrl source utmParameters { source medium campaign } }
        lastVisit { occurredAt landingPage referrerUrl source utmParameters { source medium campaign } }
        moments(first: $moments) {
          pageInfo { hasNextPage }
          nodes {
            occurredAt
            ... on CustomerVisit { landingPage referrerUrl source utmParameters { source medium campaign } }
          }
        }
      }
      refunds {
        id createdAt totalRefundedSet { shopMoney { amount currencyCode } }
        refundLineItems(first: $lines) {
          pageInfo { hasNextPage }
          nodes {
            quantity restockType
            lineItem { id }
            subtotalSet { shopMoney { amount currencyCode } }
            totalTaxSet { shopMoney { amount currencyCode } }
          }
        }
        refundShippingLines(first: 10) {
          pageInfo { hasNextPage }
          nodes {
            subtotalAmountSet { shopMoney { amount currencyCode } }
            taxAmountSet { shopMoney { amount currencyCode } }
          }
        }
      }
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
    #[serde(default)]
    province: Option<String>,
    #[serde(default)]
    country: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    #[serde(default)]
    has_next_page: bool,
}

/// A GraphQL connection read as one page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Nodes<T> {
    #[serde(default)]
    page_info: PageInfo,
    nodes: Vec<T>,
}

impl<T> Default for Nodes<T> {
    fn default() -> Self {
        Self {
            page_info: PageInfo::default(),
            nodes: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Allocation {
    allocated_amount_set: MoneyBag,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaxLine {
    price_set: MoneyBag,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Product {
    product_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InventoryItem {
    unit_cost: Option<MoneyV2>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Variant {
    id: Option<String>,
    inventory_item: Option<InventoryItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineItem {
    id: String,
    sku: Option<String>,
    title: String,
    variant_title: Option<String>,
    quantity: u32,
    original_unit_price_set: MoneyBag,
    #[serde(default)]
    discount_allocations: Vec<Allocation>,
    #[serde(default)]
    tax_lines: Vec<TaxLine>,
    product: Option<Product>,
    variant: Option<Variant>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShippingLine {
    discounted_price_set: MoneyBag,
    #[serde(default)]
    tax_lines: Vec<TaxLine>,
}

#[derive(Debug, Deserialize)]
struct LineRef {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefundLineItem {
    quantity: u32,
    line_item: LineRef,
    subtotal_set: MoneyBag,
    total_tax_set: Option<MoneyBag>,
}

/// Shipping given back in a refund (`RefundShippingLine`, 2025-10): its subtotal and tax.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefundShippingLine {
    subtotal_amount_set: MoneyBag,
    tax_amount_set: Option<MoneyBag>,
}

#[derive(Debug, Deserialize, Clone)]
struct Utm {
    source: Option<String>,
    medium: Option<String>,
    campaign: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Visit {
    #[serde(default)]
    occurred_at: Option<DateTime<Utc>>,
    landing_page: Option<String>,
    referrer_url: Option<String>,
    utm_parameters: Option<Utm>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Journey {
    #[serde(default)]
    customer_order_index: Option<u32>,
    #[serde(default)]
    days_to_conversion: Option<u32>,
    #[serde(default)]
    first_visit: Option<Visit>,
    last_visit: Option<Visit>,
    #[serde(default)]
    moments: Option<Nodes<Visit>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Refund {
    id: String,
    created_at: DateTime<Utc>,
    total_refunded_set: MoneyBag,
    #[serde(default)]
    refund_line_items: Nodes<RefundLineItem>,
    #[serde(default)]
    refund_shipping_lines: Nodes<RefundShippingLine>,
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
    #[serde(default)]
    taxes_included: bool,
    #[serde(default)]
    line_items: Nodes<LineItem>,
    #[serde(default)]
    shipping_lines: Nodes<ShippingLine>,
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

/// What the order lines need from the config.
#[derive(Debug, Clone, Default)]
pub struct LineSettings {
    /// See [`ShopifyConfig::fallback_margin_by_product_type`].
    pub fallback_margin_by_product_type: BTreeMap<String, Decimal>,
}

/// Parse a GraphQL response (or classify its errors), with no fallback margins.
pub fn parse_orders(body: &str) -> Result<OrdersPage, SourceError> {
    parse_orders_with(body, &LineSettings::default())
}

fn sum_money<'a>(
    bags: impl IntoIterator<Item = &'a MoneyBag>,
    what: &str,
    order: &str,
) -> Result<Decimal, SourceError> {
    let mut t = Decimal::ZERO;
    for b in bags {
        t += money(&b.shop_money, what, order)?;
    }
    Ok(t)
}

/// The order's lines and journey touches (see the module doc). `base` is the order's own event
/// (its shop money, customer, city and last-click UTM).
fn order_depth(
    o: &Order,
    base: &RawOrder,
    settings: &LineSettings,
) -> Result<Vec<Observation>, SourceError> {
    let name = o.name.as_str();
    if o.line_items.page_info.has_next_page {
        return Err(SourceError::Malformed(format!(
            "order {name} has more line items than line_items_per_order: raise it"
        )));
    }
    let tax_in = o.taxes_included;
    // shipping charged, before tax
    let mut shipping = Decimal::ZERO;
    for sl in &o.shipping_lines.nodes {
        shipping += money(&sl.discounted_price_set.shop_money, "shipping", name)?;
        if tax_in {
            shipping -= sum_money(
                sl.tax_lines.iter().map(|t| &t.price_set),
                "shipping tax",
                name,
            )?;
        }
    }
    // refunds per line: quantity and merchandise before tax; and the shipping refunded, before
    // tax like the shipping charged, which joins the lines' refunded amounts below, split as the
    // shipping charged is
    let mut refunded: BTreeMap<&str, (u32, Decimal)> = BTreeMap::new();
    let mut shipping_refunded = Decimal::ZERO;
    for r in &o.refunds {
        for (more, what) in [
            (
                r.refund_line_items.page_info.has_next_page,
                "more lines than line_items_per_order: raise it",
            ),
            (
                r.refund_shipping_lines.page_info.has_next_page,
                "more than 10 refunded shipping lines",
            ),
        ] {
            if more {
                return Err(SourceError::Malformed(format!(
                    "refund {} of order {name} has {what}",
                    r.id
                )));
            }
        }
        for rl in &r.refund_line_items.nodes {
            let mut amount = money(&rl.subtotal_set.shop_money, "refund line", name)?;
            if tax_in && let Some(t) = &rl.total_tax_set {
                amount -= money(&t.shop_money, "refund line tax", name)?;
            }
            let e = refunded.entry(rl.line_item.id.as_str()).or_default();
            e.0 += rl.quantity;
            e.1 += amount;
        }
        for sl in &r.refund_shipping_lines.nodes {
            shipping_refunded += money(
                &sl.subtotal_amount_set.shop_money,
                "refunded shipping",
                name,
            )?;
            if tax_in && let Some(t) = &sl.tax_amount_set {
                shipping_refunded -= money(&t.shop_money, "refunded shipping tax", name)?;
            }
        }
    }
    let journey = o.customer_journey_summary.as_ref();
    let new_customer = journey.and_then(|j| j.customer_order_index) == Some(1);
    let ship = o.shipping_address.as_ref();
    let mut lines = Vec::with_capacity(o.line_items.nodes.len());
    for li in &o.line_items.nodes {
        let unit_price = money(&li.original_unit_price_set.shop_money, "unit price", name)?;
        let discount = sum_money(
            li.discount_allocations
                .iter()
                .map(|a| &a.allocated_amount_set),
            "discount",
            name,
        )?;
        let tax = sum_money(li.tax_lines.iter().map(|t| &t.price_set), "tax", name)?;
        let mut net = unit_price * Decimal::from(li.quantity) - discount;
        if tax_in {
            net -= tax;
        }
        let product_type = li
            .product
            .as_ref()
            .and_then(|p| p.product_type.clone())
            .unwrap_or_default();
        let sku = li
            .sku
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| li.variant.as_ref().and_then(|v| v.id.clone()))
            .unwrap_or_else(|| li.id.clone());
        let cost = li
            .variant
            .as_ref()
            .and_then(|v| v.inventory_item.as_ref())
            .and_then(|i| i.unit_cost.as_ref());
        let (unit_cost, cost_source) = match cost {
            Some(c) if c.currency_code == base.currency => (
                Some(money(c, "unit cost", name)?),
                CostSource::InventoryItem,
            ),
            other => {
                if let Some(c) = other {
                    tracing::warn!(order = name, sku = %sku, cost_currency = %c.currency_code,
                        shop_currency = %base.currency, "unit cost not in the shop currency: not used");
                }
                match settings.fallback_margin_by_product_type.get(&product_type) {
                    Some(m) if li.quantity > 0 => (
                        Some((net / Decimal::from(li.quantity) * (Decimal::ONE - m)).round_dp(2)),
                        CostSource::FallbackMargin,
                    ),
                    _ => {
                        tracing::warn!(order = name, sku = %sku, product_type = %product_type,
                            "line without a unit cost: COGS left out (set the variant's cost, or \
                             a fallback_margin_by_product_type)");
                        (None, CostSource::Missing)
                    }
                }
            }
        };
        let (refunded_quantity, refunded_amount) =
            refunded.get(li.id.as_str()).copied().unwrap_or_default();
        lines.push(OrderLine {
            ts: o.created_at,
            day: o.created_at.date_naive(),
            order_id: name.to_string(),
            line_id: li.id.clone(),
            sku,
            product: li.title.clone(),
            variant: li.variant_title.clone().unwrap_or_default(),
            product_type,
            quantity: li.quantity,
            unit_price,
            discount,
            net_sales: net,
            tax,
            shipping_charged: Decimal::ZERO,
            unit_cost,
            cost_source,
            refunded_quantity,
            refunded_amount,
            customer_id: base.origin.customer_id.clone(),
            new_customer,
            city: ship
                .and_then(|a| a.city.clone())
                .or_else(|| base.origin.city.clone()),
            province: ship.and_then(|a| a.province.clone()),
            country: ship.and_then(|a| a.country.clone()),
            utm_campaign: base.origin.utm_campaign.clone(),
            currency: base.currency.clone(),
            source: String::new(),
        });
    }
    // shipping charged and refunded, split by net sales to the paisa (the last line takes the
    // remainder)
    if !lines.is_empty() && (!shipping.is_zero() || !shipping_refunded.is_zero()) {
        let total: Decimal = lines.iter().map(|l| l.net_sales).sum();
        let weights: Vec<f64> = lines
            .iter()
            .map(|l| {
                if total.is_zero() {
                    1.0 / lines.len() as f64
                } else {
                    rust_decimal::prelude::ToPrimitive::to_f64(&(l.net_sales / total))
                        .unwrap_or(0.0)
                }
            })
            .collect();
        let charged = crate::attribution::split_revenue(shipping, &weights);
        let refunded = crate::attribution::split_revenue(shipping_refunded, &weights);
        for ((l, s), r) in lines.iter_mut().zip(charged).zip(refunded) {
            l.shipping_charged = s;
            l.refunded_amount += r;
        }
    }
    let mut out: Vec<Observation> = lines.into_iter().map(Observation::Line).collect();
    // the journey: its moments (visits) in time order, else its first and last visits
    if let Some(j) = journey {
        let mut visits: Vec<Visit> = j
            .moments
            .as_ref()
            .map(|m| m.nodes.clone())
            .unwrap_or_default();
        if j.moments
            .as_ref()
            .is_some_and(|m| m.page_info.has_next_page)
        {
            tracing::warn!(
                order = name,
                "more journey moments than moments_per_order: the rest are not read"
            );
        }
        if visits.is_empty() {
            visits.extend(j.first_visit.clone());
            if let Some(l) = &j.last_visit
                && j.first_visit.as_ref().map(|f| f.occurred_at) != Some(l.occurred_at)
            {
                visits.push(l.clone());
            }
        }
        let mut visits: Vec<(DateTime<Utc>, Visit)> = visits
            .into_iter()
            .filter_map(|v| v.occurred_at.map(|t| (t, v)))
            .collect();
        visits.sort_by_key(|(t, _)| *t);
        tracing::debug!(order = name, days_to_conversion = ?j.days_to_conversion,
            touches = visits.len(), "journey");
        for (i, (ts, v)) in visits.into_iter().enumerate() {
            let (mut src, mut med, mut camp) = v
                .utm_parameters
                .as_ref()
                .map(|u| (u.source.clone(), u.medium.clone(), u.campaign.clone()))
                .unwrap_or_default();
            if src.is_none()
                && let Some(lp) = &v.landing_page
            {
                (src, med, camp) = crate::sources::utm::utm(lp);
            }
            out.push(Observation::Touch(TouchpointRow {
                ts,
                journey_id: name.to_string(),
                order_id: Some(name.to_string()),
                position: i as u32 + 1,
                channel: crate::attribution::channel_of(
                    src.as_deref(),
                    med.as_deref(),
                    camp.as_deref(),
                    v.referrer_url.as_deref(),
                ),
                utm_source: src,
                utm_medium: med,
                utm_campaign: camp,
                referrer: v.referrer_url,
                landing_page: v.landing_page,
                source: String::new(),
            }));
        }
    }
    Ok(out)
}

/// Parse a GraphQL response (or classify its errors).
pub fn parse_orders_with(body: &str, settings: &LineSettings) -> Result<OrdersPage, SourceError> {
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
        let visit = o
            .customer_journey_summary
            .as_ref()
            .and_then(|j| j.last_visit.clone());
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
            origin: OrderOrigin {
                customer_id: o
                    .customer
                    .as_ref()
                    .and_then(|c| c["id"].as_str())
                    .map(str::to_string),
                city: o
                    .billing_address
                    .as_ref()
                    .and_then(|a| a.city.clone())
                    .or_else(|| o.shipping_address.as_ref().and_then(|a| a.city.clone())),
                utm_source: src,
                utm_medium: med,
                utm_campaign: camp,
            },
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
        out.extend(order_depth(&o, &base, settings)?);
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
    lines: LineSettings,
}

impl ShopifySource {
    pub fn new(cfg: ShopifyConfig) -> Result<Self, SourceError> {
        let tz = crate::sources::http::timezone("shop_timezone", &cfg.shop_timezone)?;
        let http = crate::sources::http::client(cfg.timeout_secs)?;
        let lines = LineSettings {
            fallback_margin_by_product_type: cfg.fallback_margin_by_product_type.clone(),
        };
        Ok(Self {
            cfg,
            tz,
            http,
            lines,
        })
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
                .map_err(SourceError::transport)?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0);
            let text = resp.text().await.map_err(SourceError::transport)?;
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
                _ => parse_orders_with(&text, &self.lines),
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
                "variables": {"first": self.cfg.page_size, "after": after, "query": filter,
                    "lines": self.cfg.line_items_per_order, "moments": self.cfg.moments_per_order},
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
