//! What the ad platform report sources (Meta, Google Ads, GA4) share beyond the polling loop in
//! `sources::http`: one authorised request and its answer read as text, the stamp of a platform's
//! day or hour, the two reads of a poll (days, then the recent days by hour), and a report row
//! turned into its ad and campaign observations. Each source keeps only its own request shape
//! and body format.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::base::Secret;
use crate::normalize::{Observation, RawAdStat, RawCampaignStat, day_start};
use crate::records::{AdRef, Bucket};
use crate::sources::http::{SourceError, Window, secret_header};

/// An HTTP answer, read whole.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

/// Send `req` with `token` as its bearer token (a sensitive header, never printed) and read the
/// whole answer. Only transport failures are errors here: the caller classifies the status.
pub async fn send_bearer(
    req: reqwest::RequestBuilder,
    token: &Secret,
) -> Result<Answer, SourceError> {
    let auth = secret_header(&format!("Bearer {}", token.expose()))?;
    let resp = req
        .header(reqwest::header::AUTHORIZATION, auth)
        .send()
        .await
        .map_err(SourceError::transport)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.map_err(SourceError::transport)?;
    Ok(Answer {
        status,
        headers,
        text,
    })
}

/// The two reads of one poll: the whole window by day, then its last `hourly_days` days by hour
/// (none when `hourly_days` is 0).
pub fn days_then_recent_hours(window: Window, hourly_days: u32) -> Vec<(Window, bool)> {
    std::iter::once((window, false))
        .chain(window.last_days(hourly_days).map(|w| (w, true)))
        .collect()
}

/// Where a report row goes in time. A daily row keeps the account's own date (what the
/// platform's UI shows) and is stamped at midnight of that date in `reporting_tz`, so its
/// reporting day is the account's date; an hourly row is the instant hour `hour` of `day` began
/// in the account's timezone `account_tz` (the earlier instant of an hour a DST change repeats;
/// the day's start for one it skips).
pub fn stamp(
    day: NaiveDate,
    hour: Option<u32>,
    account_tz: Tz,
    reporting_tz: Tz,
) -> (DateTime<Utc>, Bucket) {
    match hour {
        None => (day_start(day, reporting_tz), Bucket::Day),
        Some(h) => {
            let local = day.and_hms_opt(h, 0, 0).unwrap_or_default();
            let ts = chrono::TimeZone::from_local_datetime(&account_tz, &local)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| day_start(day, account_tz));
            (ts, Bucket::Hour)
        }
    }
}

/// The observations of one report row: the ad's own row when the row names an ad, and always the
/// campaign's share of it (summed with its other ads' shares downstream, so a campaign row is the
/// exact sum of its ads of the same answer).
pub fn push_row(out: &mut Vec<Observation>, stat: RawCampaignStat, ad: Option<AdRef>) {
    if let Some(ad) = ad {
        out.push(Observation::Ad(RawAdStat {
            stat: stat.clone(),
            ad,
        }));
    }
    out.push(Observation::Campaign(stat));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_reporting_midnights_and_hours_are_account_instants() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 18).unwrap();
        let (ts, b) = stamp(
            day,
            None,
            chrono_tz::America::Los_Angeles,
            chrono_tz::Asia::Kolkata,
        );
        // Indian midnight of the account's date, by hand: 18:30 UTC the evening before
        assert_eq!(
            (ts.to_rfc3339(), b),
            ("2026-11-17T18:30:00+00:00".into(), Bucket::Day)
        );
        let (ts, b) = stamp(
            day,
            Some(13),
            chrono_tz::America::Los_Angeles,
            chrono_tz::Asia::Kolkata,
        );
        // 13:00 PST is 21:00 UTC
        assert_eq!(
            (ts.to_rfc3339(), b),
            ("2026-11-18T21:00:00+00:00".into(), Bucket::Hour)
        );
    }

    #[test]
    fn a_poll_reads_days_then_the_recent_days_by_hour() {
        let d = |n| NaiveDate::from_ymd_opt(2026, 11, n).unwrap();
        let w = Window {
            since: d(1),
            until: d(14),
        };
        let reads = days_then_recent_hours(w, 2);
        let recent = Window {
            since: d(13),
            until: d(14),
        };
        assert_eq!(reads, vec![(w, false), (recent, true)]);
        assert_eq!(days_then_recent_hours(w, 0), vec![(w, false)]);
    }
}
