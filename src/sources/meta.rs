//! Meta Marketing API insights: parsing of the campaign-level `/act_{id}/insights` response into
//! observations (the HTTP polling loop that drives it is issue #5's next step).
//!
//! What the API does that matters here: numbers arrive as strings; every row carries
//! `account_currency`; `date_start` is a day in the ad account's timezone; purchases appear under
//! several overlapping action types, so exactly one configured type counts (never their sum).

use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::str::FromStr;

use crate::normalize::{Observation, RawCampaignStat, day_start};
use crate::records::{Bucket, CampaignKey};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetaError {
    #[error("Meta insights body is not the documented JSON: {0}")]
    Malformed(String),
    #[error("Meta insights row {row} ({campaign}): field {field} = {value:?} is not a number")]
    BadNumber {
        row: usize,
        campaign: String,
        field: &'static str,
        value: String,
    },
    #[error("Meta insights row {row} ({campaign}): date_start {value:?} is not YYYY-MM-DD")]
    BadDate {
        row: usize,
        campaign: String,
        value: String,
    },
}

#[derive(Debug, Deserialize)]
struct ActionValue {
    action_type: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct Row {
    campaign_id: String,
    #[serde(default)]
    campaign_name: String,
    account_currency: String,
    date_start: String,
    #[serde(default)]
    spend: Option<String>,
    #[serde(default)]
    impressions: Option<String>,
    #[serde(default)]
    clicks: Option<String>,
    #[serde(default)]
    actions: Vec<ActionValue>,
    #[serde(default)]
    action_values: Vec<ActionValue>,
}

#[derive(Debug, Deserialize)]
struct Cursors {
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    cursors: Option<Cursors>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<Row>,
    paging: Option<Paging>,
}

/// One parsed page.
#[derive(Debug)]
pub struct InsightsPage {
    pub observations: Vec<Observation>,
    /// Cursor of the next page, when `paging.next` says there is one.
    pub next_after: Option<String>,
}

/// Parse a page of daily campaign insights for account `account` (as `act_...`), whose days are
/// in `account_tz`, counting purchases of `purchase_action_type` only.
pub fn parse_insights(
    body: &str,
    account: &str,
    account_tz: Tz,
    purchase_action_type: &str,
) -> Result<InsightsPage, MetaError> {
    let page: Page = serde_json::from_str(body).map_err(|e| MetaError::Malformed(e.to_string()))?;
    let mut observations = Vec::with_capacity(page.data.len());
    for (i, r) in page.data.into_iter().enumerate() {
        let num = |field: &'static str, v: &Option<String>| -> Result<Decimal, MetaError> {
            match v.as_deref() {
                None | Some("") => Ok(Decimal::ZERO),
                Some(s) => Decimal::from_str(s).map_err(|_| MetaError::BadNumber {
                    row: i,
                    campaign: r.campaign_id.clone(),
                    field,
                    value: s.to_string(),
                }),
            }
        };
        let spend = num("spend", &r.spend)?;
        let impressions = num("impressions", &r.impressions)?;
        let clicks = num("clicks", &r.clicks)?;
        let pick = |list: &[ActionValue], field: &'static str| -> Result<Decimal, MetaError> {
            list.iter()
                .find(|a| a.action_type == purchase_action_type)
                .map(|a| num(field, &Some(a.value.clone())))
                .unwrap_or(Ok(Decimal::ZERO))
        };
        let conversions = pick(&r.actions, "actions")?;
        let value = pick(&r.action_values, "action_values")?;
        let day = NaiveDate::parse_from_str(&r.date_start, "%Y-%m-%d").map_err(|_| {
            MetaError::BadDate {
                row: i,
                campaign: r.campaign_id.clone(),
                value: r.date_start.clone(),
            }
        })?;
        let whole =
            |d: Decimal| rust_decimal::prelude::ToPrimitive::to_u64(&d.trunc()).unwrap_or(0);
        observations.push(Observation::Campaign(RawCampaignStat {
            ts: day_start(day, account_tz),
            bucket: Bucket::Day,
            key: CampaignKey {
                platform: "meta".into(),
                account: account.to_string(),
                campaign_id: r.campaign_id,
            },
            campaign_name: r.campaign_name,
            spend,
            conversion_value: value,
            account_currency: r.account_currency,
            impressions: whole(impressions),
            clicks: whole(clicks),
            conversions: rust_decimal::prelude::ToPrimitive::to_f64(&conversions).unwrap_or(0.0),
        }));
    }
    let next_after = page
        .paging
        .filter(|p| p.next.is_some())
        .and_then(|p| p.cursors)
        .and_then(|c| c.after);
    Ok(InsightsPage {
        observations,
        next_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn fixture() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/meta/insights_page1.json"),
        )
        .unwrap()
    }

    #[test]
    fn parses_strings_currency_and_one_purchase_type() {
        let p = parse_insights(
            &fixture(),
            "act_1029384756",
            chrono_tz::America::Los_Angeles,
            "omni_purchase",
        )
        .unwrap();
        assert_eq!(p.observations.len(), 2);
        assert_eq!(p.next_after.as_deref(), Some("MQZDZD"));
        let Observation::Campaign(c) = &p.observations[0] else {
            panic!()
        };
        assert_eq!(c.spend, dec!(115.02));
        assert_eq!(
            c.conversions, 1.0,
            "overlapping purchase types are not summed"
        );
        assert_eq!(c.conversion_value, dec!(25.39));
        assert_eq!(c.account_currency, "USD");
        assert_eq!(c.impressions, 873_112);
        // the account's day starts at midnight Los Angeles time (08:00 UTC in November)
        assert_eq!(
            c.ts,
            "2026-11-18T08:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        let Observation::Campaign(r) = &p.observations[1] else {
            panic!()
        };
        assert_eq!(r.conversions, 0.0);
        assert_eq!(r.conversion_value, dec!(0));
    }

    #[test]
    fn malformed_and_bad_numbers_are_named() {
        let e = parse_insights("{\"data\": [", "act_1", chrono_tz::UTC, "purchase").unwrap_err();
        assert!(matches!(e, MetaError::Malformed(_)));
        let bad = fixture().replace("\"115.02\"", "\"1,15.02\"");
        let e = parse_insights(&bad, "act_1", chrono_tz::UTC, "purchase").unwrap_err();
        assert!(e.to_string().contains("spend"), "{e}");
        assert!(e.to_string().contains("120210000000001"), "{e}");
    }
}
