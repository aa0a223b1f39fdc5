//! normalize: turns what a source observed (account currency, account timezone) into records in the
//! reporting currency with reporting-timezone days. Conversion is exact decimal arithmetic; the only
//! rounding is to 6 decimals (micro-units) after an FX multiplication, stated here and in
//! `docs/schema.md`.
//!
//! It also validates, so that a row QuestDB would refuse is named here, with its source and reason,
//! and never reaches the sink (documented in `docs/reliability.md`):
//! - money fits the columns' `DECIMAL(18,6)`: below 10^12 in magnitude, at most 6 decimals (more
//!   would be rounded: refused instead); orders are non-negative, refunds and cancellations
//!   non-positive;
//! - timestamps lie in `[2000-01-01T00:00Z, now + 2 days]` (`MIN_TS`, `MAX_FUTURE`): no ad platform
//!   or shop reports earlier, and "now" is the newest clock a source reported (the demo's simulated
//!   time) or the real one, with two days for timezones and clock skew;
//! - counts fit QuestDB's `LONG` (at most 2^63 - 1); conversions are finite and non-negative;
//! - text fields are at most `MAX_TEXT_BYTES` long.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;

use crate::records::{
    AdRef, AdStat, Bucket, CampaignKey, CampaignStat, FunnelStep, OrderEvent, OrderKind, OrderLine,
    Record, TouchpointRow,
};

/// Campaign figures as a platform reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCampaignStat {
    pub ts: DateTime<Utc>,
    pub bucket: Bucket,
    pub key: CampaignKey,
    pub campaign_name: String,
    pub spend: Decimal,
    pub conversion_value: Decimal,
    pub account_currency: String,
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: f64,
}

#[cfg(test)]
impl RawCampaignStat {
    /// A test row of Meta campaign `c1` ("C1") of ad account `act_1` at `ts` (RFC 3339): `spend`
    /// in `currency`, 10 impressions, 1 click, nothing converted; tests set what they check.
    pub(crate) fn test_meta_c1(ts: &str, bucket: Bucket, spend: Decimal, currency: &str) -> Self {
        RawCampaignStat {
            ts: ts.parse().expect("an RFC 3339 time"),
            bucket,
            key: CampaignKey {
                platform: "meta".into(),
                account: "act_1".into(),
                campaign_id: "c1".into(),
            },
            campaign_name: "C1".into(),
            spend,
            conversion_value: Decimal::ZERO,
            account_currency: currency.into(),
            impressions: 10,
            clicks: 1,
            conversions: 0.0,
        }
    }
}

#[cfg(test)]
impl RawOrder {
    /// A test order event `id` of order `order_id` at `ts`: `amount` INR, one item, no customer,
    /// city or UTM.
    pub(crate) fn test_inr(
        ts: DateTime<Utc>,
        (id, order_id): (String, String),
        kind: OrderKind,
        amount: Decimal,
    ) -> Self {
        RawOrder {
            ts,
            event_id: id,
            order_id,
            kind,
            amount,
            currency: "INR".into(),
            origin: OrderOrigin::default(),
            items: 1,
        }
    }
}

/// One ad's figures as a platform reports them (Meta `level=ad`, Google Ads `ad_group_ad`).
/// `stat` carries the ad's campaign and the ad's own figures; a source emits each ad row also as
/// a campaign observation, and the rows of one batch sharing a key are summed, so the campaign
/// row is the exact sum of its ads.
#[derive(Debug, Clone, PartialEq)]
pub struct RawAdStat {
    pub stat: RawCampaignStat,
    pub ad: AdRef,
}

/// An order event as the shop reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOrder {
    pub ts: DateTime<Utc>,
    pub event_id: String,
    pub order_id: String,
    pub kind: OrderKind,
    /// Shop currency; negative for refunds and cancellations.
    pub amount: Decimal,
    pub currency: String,
    pub origin: OrderOrigin,
    pub items: u32,
}

/// Who placed an order and how they arrived, as far as the shop knows: the customer, the city
/// and the last click's UTM tags (each `None` where the shop has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderOrigin {
    pub customer_id: Option<String>,
    pub city: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
}

/// A funnel count as the analytics source reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawFunnel {
    pub ts: DateTime<Utc>,
    pub bucket: Bucket,
    pub stage: String,
    pub traffic_source: String,
    pub count: u64,
}

/// What a source hands to the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Campaign(RawCampaignStat),
    Order(RawOrder),
    Funnel(RawFunnel),
    Ad(RawAdStat),
    /// An order line (issue 16): money in the shop currency named by `currency`; normalize
    /// converts it and sets `currency` and `source`.
    Line(OrderLine),
    /// A journey touch (issue 16); normalize sets `source`.
    Touch(TouchpointRow),
    /// A campaign's figures in one region (issue 16): converted like a campaign row.
    Region(RawRegionStat),
}

/// A campaign's figures in one region as the platform reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRegionStat {
    pub stat: RawCampaignStat,
    pub region: String,
}

impl Observation {
    /// The campaign figures, when this is one.
    pub fn as_campaign(&self) -> Option<&RawCampaignStat> {
        match self {
            Observation::Campaign(c) => Some(c),
            _ => None,
        }
    }

    /// The order event, when this is one.
    pub fn as_order(&self) -> Option<&RawOrder> {
        match self {
            Observation::Order(o) => Some(o),
            _ => None,
        }
    }

    /// The ad figures, when this is one.
    pub fn as_ad(&self) -> Option<&RawAdStat> {
        match self {
            Observation::Ad(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NormalizeError {
    #[error(
        "no exchange rate for {currency} -> {reporting}: add `{currency} = \"<rate>\"` under [fx]"
    )]
    MissingFx { currency: String, reporting: String },
    #[error("negative {field} ({value}) for campaign {campaign_id}")]
    Negative {
        field: &'static str,
        value: String,
        campaign_id: String,
    },
    #[error("conversions must be a finite non-negative number, got {0} for campaign {1}")]
    BadConversions(f64, String),
    #[error("{field} = {value} for {id} does not fit DECIMAL(18,6): {why}")]
    Money {
        field: &'static str,
        value: String,
        id: String,
        why: &'static str,
    },
    #[error("timestamp {ts} for {id} is outside [{min}, {max}] (see docs/reliability.md)")]
    Timestamp {
        ts: DateTime<Utc>,
        min: DateTime<Utc>,
        max: DateTime<Utc>,
        id: String,
    },
    #[error("{field} = {value} for {id} is larger than QuestDB's LONG (2^63 - 1)")]
    Count {
        field: &'static str,
        value: u64,
        id: String,
    },
    #[error("{field} for {id} is {len} bytes long, more than the {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
        id: String,
    },
    #[error("{kind} {id} has amount {value}: orders are >= 0, refunds and cancellations <= 0")]
    Sign {
        kind: &'static str,
        value: String,
        id: String,
    },
}

/// Earliest timestamp accepted (no ad platform or shop data predates it).
pub const MIN_TS: &str = "2000-01-01T00:00:00Z";
/// How far past "now" a timestamp may lie (timezones ahead of UTC, clock skew).
pub const MAX_FUTURE: Duration = Duration::days(2);
/// Longest text field accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Largest magnitude of a `DECIMAL(18,6)` value: 12 integer digits.
const MONEY_LIMIT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0); // 10^12

fn check_money(field: &'static str, v: Decimal, id: &str) -> Result<(), NormalizeError> {
    let why = if v.abs() >= MONEY_LIMIT {
        Some("its magnitude must be below 10^12")
    } else if v.normalize().scale() > 6 {
        Some("it has more than 6 decimals, which would be rounded")
    } else {
        None
    };
    match why {
        Some(why) => Err(NormalizeError::Money {
            field,
            value: v.to_string(),
            id: id.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

fn check_ts(ts: DateTime<Utc>, now: DateTime<Utc>, id: &str) -> Result<(), NormalizeError> {
    let min: DateTime<Utc> = MIN_TS.parse().unwrap_or(DateTime::<Utc>::MIN_UTC);
    let max = now + MAX_FUTURE;
    if ts < min || ts > max {
        return Err(NormalizeError::Timestamp {
            ts,
            min,
            max,
            id: id.to_string(),
        });
    }
    Ok(())
}

fn check_count(field: &'static str, v: u64, id: &str) -> Result<(), NormalizeError> {
    if v > i64::MAX as u64 {
        return Err(NormalizeError::Count {
            field,
            value: v,
            id: id.to_string(),
        });
    }
    Ok(())
}

fn check_text<'a>(
    id: &str,
    fields: impl IntoIterator<Item = (&'static str, Option<&'a str>)>,
) -> Result<(), NormalizeError> {
    for (field, v) in fields {
        if let Some(v) = v
            && v.len() > MAX_TEXT_BYTES
        {
            return Err(NormalizeError::TooLong {
                field,
                len: v.len(),
                max: MAX_TEXT_BYTES,
                id: id.to_string(),
            });
        }
    }
    Ok(())
}

/// Converts observations into records for one adpulse instance.
#[derive(Debug, Clone)]
pub struct Normalizer {
    pub tz: Tz,
    pub currency: String,
    /// Reporting-currency units per unit of each other currency.
    pub fx: BTreeMap<String, Decimal>,
}

impl Normalizer {
    pub fn new(tz: Tz, currency: impl Into<String>, fx: BTreeMap<String, Decimal>) -> Self {
        Self {
            tz,
            currency: currency.into(),
            fx,
        }
    }

    /// Reporting-timezone date of an instant.
    pub fn day_of(&self, ts: DateTime<Utc>) -> NaiveDate {
        ts.with_timezone(&self.tz).date_naive()
    }

    fn convert(&self, amount: Decimal, currency: &str) -> Result<Decimal, NormalizeError> {
        if currency == self.currency {
            return Ok(amount);
        }
        let rate = self
            .fx
            .get(currency)
            .ok_or_else(|| NormalizeError::MissingFx {
                currency: currency.to_string(),
                reporting: self.currency.clone(),
            })?;
        Ok((amount * rate).round_dp_with_strategy(6, RoundingStrategy::MidpointNearestEven))
    }

    /// Normalize and validate against the real clock.
    pub fn normalize(&self, source: &str, obs: Observation) -> Result<Record, NormalizeError> {
        self.normalize_at(source, obs, Utc::now())
    }

    /// Normalize and validate; `now` bounds the timestamps from above (plus `MAX_FUTURE`).
    pub fn normalize_at(
        &self,
        source: &str,
        obs: Observation,
        now: DateTime<Utc>,
    ) -> Result<Record, NormalizeError> {
        let record = self.convert_observation(source, obs)?;
        validate(&record, now)?;
        Ok(record)
    }

    fn convert_campaign(
        &self,
        source: &str,
        c: RawCampaignStat,
    ) -> Result<CampaignStat, NormalizeError> {
        for (field, v) in [("spend", c.spend), ("conversion_value", c.conversion_value)] {
            if v.is_sign_negative() && !v.is_zero() {
                return Err(NormalizeError::Negative {
                    field,
                    value: v.to_string(),
                    campaign_id: c.key.campaign_id.clone(),
                });
            }
        }
        if !c.conversions.is_finite() || c.conversions < 0.0 {
            return Err(NormalizeError::BadConversions(
                c.conversions,
                c.key.campaign_id.clone(),
            ));
        }
        Ok(CampaignStat {
            day: self.day_of(c.ts),
            spend: self.convert(c.spend, &c.account_currency)?,
            conversion_value: self.convert(c.conversion_value, &c.account_currency)?,
            ts: c.ts,
            bucket: c.bucket,
            key: c.key,
            campaign_name: c.campaign_name,
            source: source.to_string(),
            spend_account: c.spend,
            conversion_value_account: c.conversion_value,
            account_currency: c.account_currency,
            currency: self.currency.clone(),
            impressions: c.impressions,
            clicks: c.clicks,
            conversions: c.conversions,
        })
    }

    fn convert_observation(
        &self,
        source: &str,
        obs: Observation,
    ) -> Result<Record, NormalizeError> {
        match obs {
            Observation::Campaign(c) => {
                Ok(Record::CampaignStats(self.convert_campaign(source, c)?))
            }
            Observation::Ad(a) => Ok(Record::AdStats(AdStat {
                stat: self.convert_campaign(source, a.stat)?,
                ad: a.ad,
            })),
            Observation::Order(o) => {
                let OrderOrigin {
                    customer_id,
                    city,
                    utm_source,
                    utm_medium,
                    utm_campaign,
                } = o.origin;
                Ok(Record::Orders(OrderEvent {
                    day: self.day_of(o.ts),
                    amount: self.convert(o.amount, &o.currency)?,
                    ts: o.ts,
                    event_id: o.event_id,
                    order_id: o.order_id,
                    kind: o.kind,
                    amount_shop: o.amount,
                    shop_currency: o.currency,
                    currency: self.currency.clone(),
                    customer_id,
                    city,
                    utm_source,
                    utm_medium,
                    utm_campaign,
                    items: o.items,
                    source: source.to_string(),
                }))
            }
            Observation::Funnel(f) => Ok(Record::Funnel(FunnelStep {
                day: self.day_of(f.ts),
                ts: f.ts,
                bucket: f.bucket,
                stage: f.stage,
                traffic_source: f.traffic_source,
                source: source.to_string(),
                count: f.count,
            })),
            Observation::Line(mut l) => {
                let shop = std::mem::take(&mut l.currency);
                for v in [
                    &mut l.unit_price,
                    &mut l.discount,
                    &mut l.net_sales,
                    &mut l.tax,
                    &mut l.shipping_charged,
                    &mut l.refunded_amount,
                ] {
                    *v = self.convert(*v, &shop)?;
                }
                if let Some(c) = l.unit_cost.as_mut() {
                    *c = self.convert(*c, &shop)?;
                }
                l.day = self.day_of(l.ts);
                l.currency = self.currency.clone();
                l.source = source.to_string();
                Ok(Record::OrderLines(l))
            }
            Observation::Touch(mut t) => {
                t.source = source.to_string();
                Ok(Record::Touchpoints(t))
            }
            Observation::Region(r) => Ok(Record::RegionStats(crate::records::RegionStat {
                stat: self.convert_campaign(source, r.stat)?,
                region: r.region,
            })),
        }
    }
}

fn validate_campaign(c: &CampaignStat, now: DateTime<Utc>) -> Result<(), NormalizeError> {
    let id = &c.key.campaign_id;
    check_ts(c.ts, now, id)?;
    check_money("spend", c.spend, id)?;
    check_money("conversion_value", c.conversion_value, id)?;
    check_money("spend (account currency)", c.spend_account, id)?;
    check_money(
        "conversion_value (account currency)",
        c.conversion_value_account,
        id,
    )?;
    check_count("impressions", c.impressions, id)?;
    check_count("clicks", c.clicks, id)?;
    check_text(
        id,
        [
            ("platform", Some(c.key.platform.as_str())),
            ("account", Some(c.key.account.as_str())),
            ("campaign_id", Some(c.key.campaign_id.as_str())),
            ("campaign_name", Some(c.campaign_name.as_str())),
        ],
    )
}

/// The checks of the module doc, on a normalized record (account and reporting amounts both).
pub fn validate(r: &Record, now: DateTime<Utc>) -> Result<(), NormalizeError> {
    match r {
        Record::CampaignStats(c) => validate_campaign(c, now),
        Record::RegionStats(r) => {
            validate_campaign(&r.stat, now)?;
            let id = format!("{} / {}", r.stat.key.campaign_id, r.region);
            check_text(&id, [("region", Some(r.region.as_str()))])
        }
        Record::AdStats(a) => {
            validate_campaign(&a.stat, now)?;
            let id = format!("{} / {}", a.stat.key.campaign_id, a.ad.ad_id);
            check_text(
                &id,
                [
                    ("adset_id", Some(a.ad.adset_id.as_str())),
                    ("adset_name", Some(a.ad.adset_name.as_str())),
                    ("ad_id", Some(a.ad.ad_id.as_str())),
                    ("ad_name", Some(a.ad.ad_name.as_str())),
                ],
            )
        }
        Record::Orders(o) => {
            let id = &o.event_id;
            check_ts(o.ts, now, id)?;
            check_money("amount", o.amount, id)?;
            check_money("amount (shop currency)", o.amount_shop, id)?;
            let wrong_sign = match o.kind {
                OrderKind::Order => o.amount.is_sign_negative() && !o.amount.is_zero(),
                OrderKind::Refund | OrderKind::Cancellation => {
                    o.amount.is_sign_positive() && !o.amount.is_zero()
                }
            };
            if wrong_sign {
                return Err(NormalizeError::Sign {
                    kind: o.kind.as_str(),
                    value: o.amount.to_string(),
                    id: id.clone(),
                });
            }
            check_text(
                id,
                [
                    ("event_id", Some(o.event_id.as_str())),
                    ("order_id", Some(o.order_id.as_str())),
                    ("customer_id", o.customer_id.as_deref()),
                    ("city", o.city.as_deref()),
                    ("utm_source", o.utm_source.as_deref()),
                    ("utm_medium", o.utm_medium.as_deref()),
                    ("utm_campaign", o.utm_campaign.as_deref()),
                ],
            )
        }
        Record::Funnel(f) => {
            let id = format!("{} / {}", f.stage, f.traffic_source);
            check_ts(f.ts, now, &id)?;
            check_count("count", f.count, &id)?;
            check_text(
                &id,
                [
                    ("stage", Some(f.stage.as_str())),
                    ("traffic_source", Some(f.traffic_source.as_str())),
                ],
            )
        }
        // model and audit rows are made by adpulse itself, not read from outside
        Record::Forecasts(_) | Record::Anomalies(_) | Record::Actions(_) => Ok(()),
        // order depth: the same checks as orders, so a bad line is dead-lettered with its id
        Record::OrderLines(l) => {
            let id = format!("{} / {}", l.order_id, l.line_id);
            check_ts(l.ts, now, &id)?;
            for (field, v) in [
                ("unit_price", l.unit_price),
                ("discount", l.discount),
                ("net_sales", l.net_sales),
                ("tax", l.tax),
                ("shipping_charged", l.shipping_charged),
                ("refunded_amount", l.refunded_amount),
            ] {
                check_money(field, v, &id)?;
            }
            if let Some(c) = l.unit_cost {
                check_money("unit_cost", c, &id)?;
            }
            check_text(
                &id,
                [
                    ("order_id", Some(l.order_id.as_str())),
                    ("line_id", Some(l.line_id.as_str())),
                    ("sku", Some(l.sku.as_str())),
                    ("product", Some(l.product.as_str())),
                    ("variant", Some(l.variant.as_str())),
                    ("city", l.city.as_deref()),
                ],
            )
        }
        Record::Touchpoints(t) => {
            let id = format!("{} #{}", t.journey_id, t.position);
            check_ts(t.ts, now, &id)?;
            check_text(
                &id,
                [
                    ("journey_id", Some(t.journey_id.as_str())),
                    ("channel", Some(t.channel.as_str())),
                    ("referrer", t.referrer.as_deref()),
                    ("landing_page", t.landing_page.as_deref()),
                ],
            )
        }
        // computed by adpulse from records already checked
        Record::Attribution(_) | Record::CustomerValue(_) | Record::CampaignValue(_) => Ok(()),
    }
}

/// Start of the reporting-timezone hour containing `ts` (for Asia/Kolkata: hh:30 UTC).
pub fn hour_floor(ts: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = ts.with_timezone(&tz);
    let floored = local.naive_local().date().and_hms_opt(local.hour(), 0, 0);
    floored
        .and_then(|n| tz.from_local_datetime(&n).earliest())
        .map(|d| d.with_timezone(&Utc))
        // A local hour that does not exist (DST gap) starts at the UTC hour instead.
        .unwrap_or_else(|| {
            ts.with_minute(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(ts)
        })
}

/// Start (UTC) of the reporting-timezone day `day`.
pub fn day_start(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&midnight)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn n() -> Normalizer {
        let mut fx = BTreeMap::new();
        fx.insert("USD".to_string(), dec!(83.50));
        Normalizer::new(chrono_tz::Asia::Kolkata, "INR", fx)
    }

    fn raw(ts: &str, currency: &str, spend: Decimal) -> Observation {
        Observation::Campaign(RawCampaignStat::test_meta_c1(
            ts,
            Bucket::Hour,
            spend,
            currency,
        ))
    }

    #[test]
    fn converts_account_currency_exactly_and_keeps_the_original() {
        let r = campaign_row(raw("2026-11-20T10:30:00Z", "USD", dec!(12.34)));
        assert_eq!(r.spend, dec!(1030.39));
        assert_eq!(r.spend_account, dec!(12.34));
        assert_eq!(r.account_currency, "USD");
        assert_eq!(r.currency, "INR");
    }

    #[test]
    fn unknown_currency_is_an_error_naming_it() {
        let e = n()
            .normalize("s", raw("2026-11-20T10:30:00Z", "EUR", dec!(1)))
            .unwrap_err();
        assert!(e.to_string().contains("EUR"), "{e}");
    }

    #[test]
    fn negative_spend_is_rejected() {
        let e = n()
            .normalize("s", raw("2026-11-20T10:30:00Z", "INR", dec!(-1)))
            .unwrap_err();
        assert!(matches!(e, NormalizeError::Negative { .. }));
    }

    fn now() -> DateTime<Utc> {
        "2026-11-21T00:00:00Z".parse().unwrap()
    }

    /// The campaign row [`n`] makes of `o`.
    fn campaign_row(o: Observation) -> CampaignStat {
        match n().normalize("s", o) {
            Ok(Record::CampaignStats(r)) => r,
            other => panic!("not a campaign row: {other:?}"),
        }
    }

    /// `o` normalized by `n` for source `s` at [`now`].
    fn check(n: &Normalizer, o: Observation) -> Result<Record, NormalizeError> {
        n.normalize_at("s", o, now())
    }

    #[test]
    fn money_outside_decimal_18_6_is_refused_naming_the_campaign() {
        let n = n();
        // 10^12 - 10^-6 is the largest DECIMAL(18,6) value: accepted
        assert!(
            check(
                &n,
                raw("2026-11-20T10:30:00Z", "INR", dec!(999999999999.999999))
            )
            .is_ok()
        );
        let e = check(&n, raw("2026-11-20T10:30:00Z", "INR", dec!(1000000000000))).unwrap_err();
        assert!(
            matches!(e, NormalizeError::Money { field: "spend", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("c1"), "{e}");
        // more than 6 decimals would be rounded by QuestDB: refused, never rounded silently
        let e = check(&n, raw("2026-11-20T10:30:00Z", "INR", dec!(1.0000001))).unwrap_err();
        assert!(e.to_string().contains("6 decimals"), "{e}");
        // trailing zeros are not extra precision
        assert!(check(&n, raw("2026-11-20T10:30:00Z", "INR", dec!(1.100000000))).is_ok());
        // a converted amount that overflows is refused too (USD 20bn at 83.50)
        let e = check(&n, raw("2026-11-20T10:30:00Z", "USD", dec!(20000000000))).unwrap_err();
        assert!(matches!(e, NormalizeError::Money { .. }), "{e}");
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let n = n();
        for ts in [
            "1969-12-31T23:00:00Z",
            "1999-12-31T23:59:59Z",
            "2026-11-23T00:00:01Z",
        ] {
            let e = check(&n, raw(ts, "INR", dec!(1))).unwrap_err();
            assert!(matches!(e, NormalizeError::Timestamp { .. }), "{ts}: {e}");
        }
        for ts in ["2000-01-01T00:00:00Z", "2026-11-23T00:00:00Z"] {
            assert!(check(&n, raw(ts, "INR", dec!(1))).is_ok(), "{ts}");
        }
    }

    #[test]
    fn counts_beyond_long_and_huge_text_are_refused() {
        let Observation::Campaign(mut c) = raw("2026-11-20T10:30:00Z", "INR", dec!(1)) else {
            unreachable!()
        };
        c.impressions = i64::MAX as u64 + 1;
        let e = check(&n(), Observation::Campaign(c.clone())).unwrap_err();
        assert!(
            matches!(
                e,
                NormalizeError::Count {
                    field: "impressions",
                    ..
                }
            ),
            "{e}"
        );
        c.impressions = i64::MAX as u64;
        assert!(check(&n(), Observation::Campaign(c.clone())).is_ok());
        c.campaign_name = "x".repeat(MAX_TEXT_BYTES + 1);
        let e = check(&n(), Observation::Campaign(c)).unwrap_err();
        assert!(
            matches!(
                e,
                NormalizeError::TooLong {
                    field: "campaign_name",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn refunds_carry_a_negative_amount() {
        let order = |kind, amount| {
            Observation::Order(RawOrder::test_inr(
                "2026-11-20T10:30:00Z".parse().unwrap(),
                ("r1".into(), "1".into()),
                kind,
                amount,
            ))
        };
        assert!(check(&n(), order(OrderKind::Refund, dec!(-5))).is_ok());
        let e = check(&n(), order(OrderKind::Refund, dec!(5))).unwrap_err();
        assert!(matches!(e, NormalizeError::Sign { .. }), "{e}");
        let e = check(&n(), order(OrderKind::Order, dec!(-5))).unwrap_err();
        assert!(matches!(e, NormalizeError::Sign { .. }), "{e}");
    }

    #[test]
    fn days_follow_the_reporting_timezone() {
        // 19:00 UTC is 00:30 the next day in India.
        let r = campaign_row(raw("2026-11-20T19:00:00Z", "INR", dec!(1)));
        assert_eq!(r.day, NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
        // a Los Angeles account's evening hour lands on the next Indian day
        let la: DateTime<Utc> = chrono_tz::America::Los_Angeles
            .with_ymd_and_hms(2026, 11, 20, 17, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            n().day_of(la),
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
        );
    }

    #[test]
    fn hours_align_to_the_reporting_timezone() {
        let t: DateTime<Utc> = "2026-11-20T10:47:12Z".parse().unwrap();
        assert_eq!(
            hour_floor(t, chrono_tz::Asia::Kolkata),
            "2026-11-20T10:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let t: DateTime<Utc> = "2026-11-20T10:17:00Z".parse().unwrap();
        assert_eq!(
            hour_floor(t, chrono_tz::Asia::Kolkata),
            "2026-11-20T09:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            day_start(
                NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
                chrono_tz::Asia::Kolkata
            ),
            "2026-11-20T18:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
