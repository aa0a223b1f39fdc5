//! normalize: turns what a source observed (account currency, account timezone) into records in the
//! reporting currency with reporting-timezone days. Conversion is exact decimal arithmetic; the only
//! rounding is to 6 decimals (micro-units) after an FX multiplication, stated here and in
//! `docs/schema.md`.

use chrono::{DateTime, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;

use crate::records::{
    Bucket, CampaignKey, CampaignStat, FunnelStep, OrderEvent, OrderKind, Record,
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
    pub customer_id: Option<String>,
    pub city: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub items: u32,
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

    pub fn normalize(&self, source: &str, obs: Observation) -> Result<Record, NormalizeError> {
        match obs {
            Observation::Campaign(c) => {
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
                Ok(Record::CampaignStats(CampaignStat {
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
                }))
            }
            Observation::Order(o) => Ok(Record::Orders(OrderEvent {
                day: self.day_of(o.ts),
                amount: self.convert(o.amount, &o.currency)?,
                ts: o.ts,
                event_id: o.event_id,
                order_id: o.order_id,
                kind: o.kind,
                amount_shop: o.amount,
                shop_currency: o.currency,
                currency: self.currency.clone(),
                customer_id: o.customer_id,
                city: o.city,
                utm_source: o.utm_source,
                utm_medium: o.utm_medium,
                utm_campaign: o.utm_campaign,
                items: o.items,
                source: source.to_string(),
            })),
            Observation::Funnel(f) => Ok(Record::Funnel(FunnelStep {
                day: self.day_of(f.ts),
                ts: f.ts,
                bucket: f.bucket,
                stage: f.stage,
                traffic_source: f.traffic_source,
                source: source.to_string(),
                count: f.count,
            })),
        }
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
        Observation::Campaign(RawCampaignStat {
            ts: ts.parse().unwrap(),
            bucket: Bucket::Hour,
            key: CampaignKey {
                platform: "meta".into(),
                account: "act_1".into(),
                campaign_id: "c1".into(),
            },
            campaign_name: "C1".into(),
            spend,
            conversion_value: dec!(0),
            account_currency: currency.into(),
            impressions: 10,
            clicks: 1,
            conversions: 0.0,
        })
    }

    #[test]
    fn converts_account_currency_exactly_and_keeps_the_original() {
        let Record::CampaignStats(r) = n()
            .normalize("s", raw("2026-11-20T10:30:00Z", "USD", dec!(12.34)))
            .unwrap()
        else {
            panic!("not a campaign row")
        };
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

    #[test]
    fn days_follow_the_reporting_timezone() {
        // 19:00 UTC is 00:30 the next day in India.
        let Record::CampaignStats(r) = n()
            .normalize("s", raw("2026-11-20T19:00:00Z", "INR", dec!(1)))
            .unwrap()
        else {
            panic!()
        };
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
