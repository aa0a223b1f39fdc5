//! Normalized records: what every source produces after `normalize`, and what every sink consumes.
//!
//! Money is `rust_decimal::Decimal` end to end (exact, never binary floating point). Amounts without
//! a suffix are in the reporting currency; `*_account` / `*_shop` keep what the platform reported.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Serde for `f64` fields that keeps NaN and the infinities: finite values are JSON numbers,
/// the others the strings `"NaN"`, `"inf"` and `"-inf"` (JSON has no literal for them, and
/// `serde_json` writes them as `null`, which cannot be read back as a number). The disk spool
/// relies on this to give back every row it took.
pub mod lossless_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr<'a> {
        Number(f64),
        Text(std::borrow::Cow<'a, str>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) => match t.as_ref() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "{other:?} is not a number (expected a number, \"NaN\", \"inf\" or \"-inf\")"
                ))),
            },
        }
    }
}

/// Width of a stats bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// Identity of a campaign across the whole system (the QuestDB DEDUP key minus time and bucket).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CampaignKey {
    pub platform: String,
    pub account: String,
    pub campaign_id: String,
}

/// Delivery and conversion figures of one campaign in one bucket (`campaign_stats` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignStat {
    /// Bucket start (UTC instant).
    pub ts: DateTime<Utc>,
    pub bucket: Bucket,
    /// Reporting-timezone date of the bucket start.
    pub day: NaiveDate,
    pub key: CampaignKey,
    pub campaign_name: String,
    /// Name of the adpulse source instance that produced the row.
    pub source: String,
    /// Spend in the reporting currency.
    pub spend: Decimal,
    /// Platform-attributed conversion value in the reporting currency.
    pub conversion_value: Decimal,
    pub spend_account: Decimal,
    pub conversion_value_account: Decimal,
    pub account_currency: String,
    /// Reporting currency.
    pub currency: String,
    pub impressions: u64,
    pub clicks: u64,
    /// Purchases as the platform reports them (fractional for data-driven attribution).
    #[serde(with = "lossless_f64")]
    pub conversions: f64,
}

/// Which ad a row belongs to: the ad set (Meta) or ad group (Google Ads) and the ad.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AdRef {
    /// Meta ad set id, or Google Ads ad group id.
    pub adset_id: String,
    pub adset_name: String,
    pub ad_id: String,
    pub ad_name: String,
}

/// Delivery and conversion figures of one ad in one bucket (`ad_stats` table). `stat` holds the
/// campaign the ad belongs to and the ad's own figures; the campaign's `campaign_stats` row of the
/// same bucket is the exact sum of its ads' rows of one answer (derived from them, never read by
/// a second request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdStat {
    pub stat: CampaignStat,
    pub ad: AdRef,
}

/// What happened to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    Order,
    Refund,
    Cancellation,
}

impl OrderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Order => "order",
            OrderKind::Refund => "refund",
            OrderKind::Cancellation => "cancellation",
        }
    }
}

/// An order, refund or cancellation (`orders` table). Refunds and cancellations carry a negative
/// amount and land on the day they happen, not on the order's day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub ts: DateTime<Utc>,
    pub day: NaiveDate,
    /// Unique per event: the order id for orders, the refund id for refunds.
    pub event_id: String,
    pub order_id: String,
    pub kind: OrderKind,
    /// Reporting currency; negative for refunds and cancellations.
    pub amount: Decimal,
    pub amount_shop: Decimal,
    pub shop_currency: String,
    pub currency: String,
    pub customer_id: Option<String>,
    pub city: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub items: u32,
    pub source: String,
}

/// Funnel stages in order (GA4 event names).
pub const FUNNEL_STAGES: [&str; 5] = [
    "session_start",
    "view_item",
    "add_to_cart",
    "begin_checkout",
    "purchase",
];

/// Count of one funnel event in one bucket for one traffic source (`funnel` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelStep {
    pub ts: DateTime<Utc>,
    pub bucket: Bucket,
    pub day: NaiveDate,
    pub stage: String,
    /// `source / medium`, as GA4 reports it.
    pub traffic_source: String,
    pub source: String,
    pub count: u64,
}

/// One step of a forecast run (`forecasts` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastRow {
    /// The time the forecast is for (bucket start).
    pub ts: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub model: String,
    /// `spend_hourly`, `conversions_hourly`, `conversion_value_hourly`, `revenue_daily`,
    /// `loss_daily`.
    pub series: String,
    pub horizon_hours: i64,
    #[serde(with = "lossless_f64")]
    pub yhat: f64,
    #[serde(with = "lossless_f64")]
    pub yhat_lower_80: f64,
    #[serde(with = "lossless_f64")]
    pub yhat_upper_80: f64,
    #[serde(with = "lossless_f64")]
    pub yhat_lower_95: f64,
    #[serde(with = "lossless_f64")]
    pub yhat_upper_95: f64,
}

/// One scored point of an anomaly detector (`anomalies` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyRow {
    pub ts: DateTime<Utc>,
    /// spend, cpc, cpm, ctr, cr, conversions, revenue.
    pub series: String,
    pub platform: String,
    pub campaign_id: String,
    #[serde(with = "lossless_f64")]
    pub value: f64,
    #[serde(with = "lossless_f64")]
    pub expected: f64,
    #[serde(with = "lossless_f64")]
    pub lower: f64,
    #[serde(with = "lossless_f64")]
    pub upper: f64,
    #[serde(with = "lossless_f64")]
    pub score: f64,
    pub is_anomaly: bool,
    /// `robust_seasonal` or `tracking_break`.
    pub detector: String,
}

/// One event of the action audit trail (`actions` table): who did what to which campaign, why
/// (rule and the figures it saw), the state before and after, and the result. Refused API calls
/// are recorded too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRow {
    pub ts: DateTime<Utc>,
    /// Recommendation id, or the request's id for kill switches and refusals.
    pub action_id: String,
    /// recommended, approved, rejected, executed, failed, dry_run, duplicate, expired, refused,
    /// alert.
    pub event: String,
    /// `rules`, `auto`, `read_token`, `write_token[:name]`, `anonymous`, `alertmanager`.
    pub actor: String,
    pub mode: String,
    pub dry_run: bool,
    pub rule: String,
    /// pause, enable, raise_budget, expand_audience, rotate_creatives, or the refused call.
    pub kind: String,
    pub platform: String,
    pub account: String,
    pub campaign_id: String,
    pub campaign_name: String,
    pub reason: String,
    /// The figures the rule looked at, as JSON.
    pub rule_values: String,
    /// Campaign state before and after, as JSON (empty when not read).
    pub state_before: String,
    pub state_after: String,
    /// ok, failed, refused, unauthenticated, forbidden, skipped.
    pub result: String,
    pub detail: String,
    pub idempotency_key: String,
}

/// Where a line's unit cost came from (issue 16: missing costs are reported, never invented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The inventory item's cost as the shop reports it.
    InventoryItem,
    /// The configured fallback margin of the product type or collection.
    FallbackMargin,
    /// No cost known: COGS is left empty and the SKU is reported.
    Missing,
}

impl CostSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::InventoryItem => "inventory_item",
            CostSource::FallbackMargin => "fallback_margin",
            CostSource::Missing => "missing",
        }
    }
}

/// One line item of an order (`order_lines` table): what was sold, at what price and cost, and
/// what was refunded of it. Money in the reporting currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The order's time.
    pub ts: DateTime<Utc>,
    pub day: NaiveDate,
    pub order_id: String,
    pub line_id: String,
    pub sku: String,
    pub product: String,
    pub variant: String,
    pub product_type: String,
    pub quantity: u32,
    /// Unit price before discounts.
    pub unit_price: Decimal,
    /// Discounts allocated to this line.
    pub discount: Decimal,
    /// quantity × unit_price − discount.
    pub net_sales: Decimal,
    pub tax: Decimal,
    /// Shipping charged to the customer, allocated to this line.
    pub shipping_charged: Decimal,
    /// Unit cost (`None` when `cost_source` is `missing`).
    pub unit_cost: Option<Decimal>,
    pub cost_source: CostSource,
    pub refunded_quantity: u32,
    pub refunded_amount: Decimal,
    pub customer_id: Option<String>,
    /// The customer's order index is 1.
    pub new_customer: bool,
    pub city: Option<String>,
    pub province: Option<String>,
    pub country: Option<String>,
    pub utm_campaign: Option<String>,
    pub currency: String,
    pub source: String,
}

/// One touch of a customer journey (`touchpoints` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TouchpointRow {
    pub ts: DateTime<Utc>,
    /// The order id for a converting journey, the visitor id otherwise.
    pub journey_id: String,
    pub order_id: Option<String>,
    /// 1-based position in the journey.
    pub position: u32,
    /// `platform:campaign_id` for paid touches, `organic:<source>` or `direct` otherwise.
    pub channel: String,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub referrer: Option<String>,
    pub landing_page: Option<String>,
    pub source: String,
}

/// Attributed conversions and revenue of one channel under one model and window for one day
/// (`attribution` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionRow {
    /// Start of the reporting day (UTC instant).
    pub ts: DateTime<Utc>,
    pub day: NaiveDate,
    pub model: String,
    /// `1d`, `7d`, `14d`, `28d`, `lifetime`.
    pub window: String,
    pub channel: String,
    pub conversions: f64,
    pub revenue: Decimal,
    pub spend: Decimal,
    /// Attributed revenue / spend (`None` without spend: unpaid channels).
    pub roas: Option<f64>,
    /// What the platform itself reported for the channel that day (`None` for unpaid channels).
    pub platform_conversions: Option<f64>,
    pub currency: String,
}

/// Spend and delivery of one campaign in one region and bucket (`region_stats` table): a platform's
/// region breakdown (Meta `breakdowns=region`; the demo's split of its campaigns' days). `stat`
/// holds the campaign and the region's figures; platforms report no purchases by region (Meta
/// drops off-Meta actions with this breakdown), so `conversions` and `conversion_value` are 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionStat {
    pub stat: CampaignStat,
    /// The region's name as the platform reports it (an Indian state for MOI).
    pub region: String,
}

/// One customer's lifetime value as of a day (`customer_value` table, issue 16): the BG/NBD and
/// Gamma-Gamma models fitted on the whole order history, applied to the customer's own history.
/// Model estimates are rounded to the paisa (they are predictions, not amounts anyone paid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerValueRow {
    /// Start of the as-of day (UTC instant).
    pub ts: DateTime<Utc>,
    /// As-of day: the reporting day of the newest order in the history (the end of calibration).
    pub day: NaiveDate,
    pub customer_id: String,
    /// First touch of the journey of the customer's first order (`platform:campaign_id`,
    /// `organic:<source>`, `direct`), `unattributed` when that order has no touch.
    pub acquisition_channel: String,
    pub first_order_day: NaiveDate,
    /// Purchase days in the history (same-day orders are one purchase, as in the models).
    pub orders: u32,
    /// BG/NBD `x`: purchase days after the first.
    pub repeat_purchases: u32,
    /// BG/NBD `t_x`: last purchase day minus the first, in periods (`[clv] period_days`).
    #[serde(with = "lossless_f64")]
    pub recency_periods: f64,
    /// BG/NBD `T`: as-of day minus the first purchase day, in periods.
    #[serde(with = "lossless_f64")]
    pub age_periods: f64,
    /// What the customer's orders came to (exact sum of their amounts).
    pub revenue: Decimal,
    /// Probability the customer is still alive at the as-of day.
    #[serde(with = "lossless_f64")]
    pub p_alive: f64,
    #[serde(with = "lossless_f64")]
    pub expected_purchases_6m: f64,
    #[serde(with = "lossless_f64")]
    pub expected_purchases_12m: f64,
    /// Gamma-Gamma expected value of one future order.
    pub expected_order_value: Decimal,
    /// Expected value of the next 6 and 12 months (× `[clv] margin_ratio`, discounted).
    pub clv_6m: Decimal,
    pub clv_12m: Decimal,
    pub currency: String,
}

/// The customers an acquisition channel brought (first touch) and what they are worth, against
/// what the channel cost (`campaign_value` table, issue 16).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignValueRow {
    /// Start of the as-of day (UTC instant), as in `customer_value`.
    pub ts: DateTime<Utc>,
    pub day: NaiveDate,
    /// Acquisition channel, as `customer_value.acquisition_channel`.
    pub channel: String,
    /// Customers whose first order's first touch is the channel.
    pub customers: u32,
    /// Exact sums of those customers' `clv_6m` and `clv_12m`.
    pub clv_6m_total: Decimal,
    pub clv_12m_total: Decimal,
    /// The totals / customers, to the paisa (`None` without customers).
    pub clv_6m_mean: Option<Decimal>,
    pub clv_12m_mean: Option<Decimal>,
    /// The campaign's spend over the whole history (`campaign_stats` day rows); 0 unpaid.
    pub spend: Decimal,
    /// New customers of the campaign as the profit KPIs count them (first orders whose last click,
    /// `utm_campaign`, is the campaign).
    pub new_customers: u32,
    /// New-customer CAC (`profit::kpi::ProfitTotals::cac`): spend / new_customers.
    pub cac: Option<Decimal>,
    /// clv_6m_mean / cac and clv_12m_mean / cac.
    pub ltv_cac_6m: Option<f64>,
    pub ltv_cac_12m: Option<f64>,
    pub currency: String,
}

/// One normalized record, routed to its table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "table", rename_all = "snake_case")]
pub enum Record {
    CampaignStats(CampaignStat),
    Orders(OrderEvent),
    Funnel(FunnelStep),
    Forecasts(ForecastRow),
    Anomalies(AnomalyRow),
    Actions(ActionRow),
    OrderLines(OrderLine),
    Touchpoints(TouchpointRow),
    Attribution(AttributionRow),
    AdStats(AdStat),
    CustomerValue(CustomerValueRow),
    CampaignValue(CampaignValueRow),
    RegionStats(RegionStat),
}

/// Every table adpulse writes, in the order of `Record`'s variants (a leaf list, so `telemetry` and
/// the sinks share it without importing each other).
pub const TABLE_NAMES: [&str; 13] = [
    "campaign_stats",
    "orders",
    "funnel",
    "forecasts",
    "anomalies",
    "actions",
    "order_lines",
    "touchpoints",
    "attribution",
    "ad_stats",
    "customer_value",
    "campaign_value",
    "region_stats",
];

impl Record {
    pub fn table(&self) -> &'static str {
        match self {
            Record::CampaignStats(_) => "campaign_stats",
            Record::Orders(_) => "orders",
            Record::Funnel(_) => "funnel",
            Record::Forecasts(_) => "forecasts",
            Record::Anomalies(_) => "anomalies",
            Record::Actions(_) => "actions",
            Record::OrderLines(_) => "order_lines",
            Record::Touchpoints(_) => "touchpoints",
            Record::Attribution(_) => "attribution",
            Record::AdStats(_) => "ad_stats",
            Record::CustomerValue(_) => "customer_value",
            Record::CampaignValue(_) => "campaign_value",
            Record::RegionStats(_) => "region_stats",
        }
    }

    pub fn ts(&self) -> DateTime<Utc> {
        match self {
            Record::CampaignStats(r) => r.ts,
            Record::Orders(r) => r.ts,
            Record::Funnel(r) => r.ts,
            Record::Forecasts(r) => r.ts,
            Record::Anomalies(r) => r.ts,
            Record::Actions(r) => r.ts,
            Record::OrderLines(r) => r.ts,
            Record::Touchpoints(r) => r.ts,
            Record::Attribution(r) => r.ts,
            Record::AdStats(r) => r.stat.ts,
            Record::CustomerValue(r) => r.ts,
            Record::CampaignValue(r) => r.ts,
            Record::RegionStats(r) => r.stat.ts,
        }
    }
}

/// `n` synthetic campaign-hour rows with distinct keys over `campaigns` campaigns, starting at
/// `base` (INR, non-integral money): the benchmarks' and the writer tests' data.
pub fn synthetic_campaign_hours(n: usize, campaigns: usize, base: DateTime<Utc>) -> Vec<Record> {
    let campaigns = campaigns.max(1);
    (0..n)
        .map(|i| {
            let ts = base + chrono::Duration::hours((i / campaigns) as i64);
            let c = i % campaigns;
            Record::CampaignStats(CampaignStat {
                ts,
                bucket: Bucket::Hour,
                day: ts.with_timezone(&chrono_tz::Asia::Kolkata).date_naive(),
                key: CampaignKey {
                    platform: if c.is_multiple_of(2) {
                        "meta"
                    } else {
                        "google_ads"
                    }
                    .into(),
                    account: "act_1".into(),
                    campaign_id: format!("c{c:05}"),
                },
                campaign_name: format!("Campaign {c}"),
                source: "bench".into(),
                spend: Decimal::new(123_456 + (i % 1000) as i64, 2),
                conversion_value: Decimal::new(98_765, 2),
                spend_account: Decimal::new(123_456 + (i % 1000) as i64, 2),
                conversion_value_account: Decimal::new(98_765, 2),
                account_currency: "INR".into(),
                currency: "INR".into(),
                impressions: 10_000 + (i % 777) as u64,
                clicks: 120 + (i % 50) as u64,
                conversions: (i % 3) as f64,
            })
        })
        .collect()
}
