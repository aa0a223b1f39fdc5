//! What the ad platform report sources (Meta, Google Ads, GA4) share beyond the polling loop in
//! `sources::http`: one authorised request and its answer read as text, the stamp of a platform's
//! day or hour, the two reads of a poll (days, then the recent days by hour), and a report row
//! turned into its ad and campaign observations, and the region reports' bookkeeping (a campaign
//! day's regions completed with what the platform did not place, unreadable rows kept out and
//! their days left incomplete). Each source keeps only its own request shape and body format.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::base::Secret;
use crate::normalize::{Observation, RawAdStat, RawCampaignStat, RawRegionStat, day_start};
use crate::records::{AdRef, Bucket};
use crate::sources::SourceContext;
use crate::sources::http::{LoopSettings, PollSource, SourceError, Window, secret_header};
use crate::sources::polling::run_or_report;

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

/// The region of a campaign day's spend that the platform's region report did not place (Meta
/// leaves out what it cannot place; Google Ads leaves out clicks without a known location): the
/// campaign day's total, from the same poll, less the sum of its reported regions.
pub const UNREPORTED_REGION: &str = "unreported";

/// The name a source's region report runs under (its own ledger days, cursor, poll metrics and
/// `source` column): `<source>.regions`.
pub fn region_source_name(source: &str) -> String {
    format!("{source}.regions")
}

/// Run a platform's main report with the shared loop, and its region report beside it (as
/// source `<name>.regions`, with its own ledger, cursor and metrics) when there is one.
pub async fn run_with_regions<M: PollSource, R: PollSource>(
    main: (Result<M, SourceError>, &'static str),
    regions: Option<(Result<R, SourceError>, &'static str)>,
    settings: LoopSettings,
    ctx: SourceContext,
) {
    let regions = regions.map(|(source, kind)| {
        let rctx = SourceContext {
            name: region_source_name(&ctx.name),
            ..ctx.clone()
        };
        run_or_report(source, settings.clone(), rctx, kind)
    });
    let main = run_or_report(main.0, settings, ctx, main.1);
    match regions {
        Some(r) => {
            tokio::join!(main, r);
        }
        None => main.await,
    }
}

/// A region report row that could not be read: where it was and why, and the campaign day it
/// belonged to as far as it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRegionRow {
    pub campaign_id: String,
    /// The account date of the row, when `date_start` / `segments.date` could be read.
    pub day: Option<NaiveDate>,
    pub message: String,
}

impl BadRegionRow {
    /// A region row read as `read` (its stat, or why it could not be read) as an observation of
    /// its region, or as a bad row named by `at` (where it stood in the report, e.g. "Meta region
    /// report page 2 row 5") with its (campaign, region, day) as far as they could be read.
    pub fn or_row<T, E: std::fmt::Display>(
        read: Result<(RawCampaignStat, T), E>,
        at: impl FnOnce() -> String,
        (campaign_id, region, day): (String, String, Option<NaiveDate>),
    ) -> Result<RawRegionStat, BadRegionRow> {
        match read {
            Ok((stat, _)) => Ok(RawRegionStat { stat, region }),
            Err(why) => Err(BadRegionRow {
                message: format!(
                    "{} (campaign {campaign_id:?}, region {region:?}, day {}): {why}",
                    at(),
                    day.map(|d| d.to_string()).unwrap_or_default()
                ),
                campaign_id,
                day,
            }),
        }
    }
}

/// The `region_stats` observations of one region read: the region rows, rows sharing a
/// (campaign, day, region) summed, and for every daily campaign row of `totals` (the same
/// campaigns and days without the region breakdown, read in the same poll) one
/// [`UNREPORTED_REGION`] row holding the total less the sum of its regions, even when that is
/// zero (a restated day then overwrites an earlier remainder). So a campaign day's regions add up
/// to its total exactly. A campaign day with an unreadable row (`bad`) gets no remainder: its
/// figures are not known, and its day is left incomplete (see [`region_outcome`]).
pub fn complete_regions(
    totals: &[Observation],
    regions: Vec<RawRegionStat>,
    bad: &[BadRegionRow],
    reporting_tz: Tz,
) -> Vec<Observation> {
    use std::collections::BTreeMap;
    type Day = (String, i64);
    let mut out: Vec<RawRegionStat> = Vec::with_capacity(regions.len() + totals.len());
    let mut at: BTreeMap<(Day, String), usize> = BTreeMap::new();
    let mut sums: BTreeMap<Day, RawCampaignStat> = BTreeMap::new();
    for r in regions {
        let day = (r.stat.key.campaign_id.clone(), r.stat.ts.timestamp());
        match sums.get_mut(&day) {
            Some(s) => add_stat(s, &r.stat),
            None => {
                sums.insert(day.clone(), r.stat.clone());
            }
        }
        match at.get(&(day.clone(), r.region.clone())) {
            Some(&i) => add_stat(&mut out[i].stat, &r.stat),
            None => {
                at.insert((day, r.region.clone()), out.len());
                out.push(r);
            }
        }
    }
    let unsure = |c: &RawCampaignStat| {
        bad.iter().any(|b| {
            (b.campaign_id.is_empty() || b.campaign_id == c.key.campaign_id)
                && b.day.is_none_or(|d| day_start(d, reporting_tz) == c.ts)
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    for c in totals.iter().filter_map(Observation::as_campaign) {
        if c.bucket != Bucket::Day || unsure(c) {
            continue;
        }
        let day = (c.key.campaign_id.clone(), c.ts.timestamp());
        let placed = sums.get(&day);
        let mut rest = c.clone();
        if let Some(p) = placed {
            rest.spend -= p.spend;
            rest.conversion_value -= p.conversion_value;
            rest.conversions -= p.conversions;
            if p.impressions > c.impressions
                || p.clicks > c.clicks
                || p.conversions > c.conversions
                || p.spend > c.spend
            {
                tracing::warn!(campaign = %c.key.campaign_id, ts = %c.ts, total = %c.spend, regions = %p.spend,
                    "the regions of a campaign day exceed its total: the remainder's counts stop at zero; a negative spend or value remainder is refused by normalize and the day stays incomplete until the figures agree");
            }
            // counts stop at zero: a negative one is rejected by normalize, which would leave
            // the day without its remainder (and incomplete) on every poll
            rest.conversions = rest.conversions.max(0.0);
            rest.impressions = c.impressions.saturating_sub(p.impressions);
            rest.clicks = c.clicks.saturating_sub(p.clicks);
        }
        seen.insert(day);
        out.push(RawRegionStat {
            stat: rest,
            region: UNREPORTED_REGION.to_string(),
        });
    }
    for (day, s) in &sums {
        if !seen.contains(day) && !bad.iter().any(|b| b.campaign_id == day.0) {
            tracing::warn!(campaign = %day.0, ts = %s.ts, spend = %s.spend,
                "a campaign day of the region report is not in its totals; its regions are kept without a remainder");
        }
    }
    out.into_iter().map(Observation::Region).collect()
}

fn add_stat(into: &mut RawCampaignStat, s: &RawCampaignStat) {
    into.spend += s.spend;
    into.conversion_value += s.conversion_value;
    into.impressions += s.impressions;
    into.clicks += s.clicks;
    into.conversions += s.conversions;
}

/// What a region read hands to the polling loop. Without unreadable rows, every observation.
/// With some, a [`SourceError::Partial`]: every readable row is still handed over (stored), the
/// days from the earliest unreadable row's day on (the whole window when its day is unknown)
/// are recorded incomplete in the ledger with the rows named, and the next poll reads them again.
pub fn region_outcome(
    window: Window,
    observations: Vec<Observation>,
    bad: Vec<BadRegionRow>,
) -> Result<Vec<Observation>, SourceError> {
    if bad.is_empty() {
        return Ok(observations);
    }
    let from = bad
        .iter()
        .map(|b| b.day.unwrap_or(window.since))
        .min()
        .unwrap_or(window.since)
        .clamp(window.since, window.until);
    let shown: Vec<&str> = bad.iter().take(5).map(|b| b.message.as_str()).collect();
    let more = bad.len().saturating_sub(shown.len());
    let cause = SourceError::Malformed(format!(
        "{} unreadable region row(s), the others kept: {}{}",
        bad.len(),
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    ));
    Err(SourceError::Partial {
        observations,
        incomplete_from: from,
        cause: Box::new(cause),
    })
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

    fn region(id: &str, ts: &str, region: &str, spend: rust_decimal::Decimal) -> RawRegionStat {
        RawRegionStat {
            stat: RawCampaignStat {
                key: crate::records::CampaignKey {
                    campaign_id: id.into(),
                    ..RawCampaignStat::test_meta_c1(ts, Bucket::Day, spend, "INR").key
                },
                ..RawCampaignStat::test_meta_c1(ts, Bucket::Day, spend, "INR")
            },
            region: region.into(),
        }
    }

    #[test]
    fn regions_complete_to_their_campaign_day_and_unreadable_days_stay_short() {
        use rust_decimal_macros::dec;
        let utc = chrono_tz::UTC;
        let (d1, d2) = ("2026-11-18T00:00:00Z", "2026-11-19T00:00:00Z");
        let total =
            |id: &str, ts: &str, spend| Observation::Campaign(region(id, ts, "", spend).stat);
        let totals = vec![
            total("a", d1, dec!(100.00)),
            total("a", d2, dec!(50.00)),
            total("b", d2, dec!(10.00)),
        ];
        let regions = vec![
            region("a", d1, "Goa", dec!(60.10)),
            region("a", d1, "Goa", dec!(9.90)),
            region("a", d1, "Delhi", dec!(20.00)),
            region("a", d2, "Delhi", dec!(50.00)),
            region("b", d2, "Goa", dec!(4.00)),
        ];
        let bad = vec![BadRegionRow {
            campaign_id: "b".into(),
            day: "2026-11-19".parse().ok(),
            message: "row 7: spend".into(),
        }];
        let out = complete_regions(&totals, regions, &bad, utc);
        let figures: Vec<(String, String, String)> = out
            .iter()
            .map(|o| match o {
                Observation::Region(r) => (
                    r.stat.key.campaign_id.clone(),
                    r.region.clone(),
                    r.stat.spend.to_string(),
                ),
                _ => panic!(),
            })
            .collect();
        let row = |c: &str, r: &str, s: &str| (c.to_string(), r.to_string(), s.to_string());
        // Goa's two rows summed; 100 - 70 - 20 = 10 unreported; a's second day fully placed;
        // b's day has an unreadable row: no remainder
        assert_eq!(
            figures,
            vec![
                row("a", "Goa", "70.00"),
                row("a", "Delhi", "20.00"),
                row("a", "Delhi", "50.00"),
                row("b", "Goa", "4.00"),
                row("a", UNREPORTED_REGION, "10.00"),
                row("a", UNREPORTED_REGION, "0.00"),
            ]
        );
        let w = Window {
            since: "2026-11-17".parse().unwrap(),
            until: "2026-11-20".parse().unwrap(),
        };
        match region_outcome(w, out.clone(), bad) {
            Err(SourceError::Partial {
                observations,
                incomplete_from,
                cause,
            }) => {
                assert_eq!(observations.len(), 6, "the readable rows are kept");
                assert_eq!(incomplete_from, "2026-11-19".parse::<NaiveDate>().unwrap());
                assert!(cause.to_string().contains("row 7: spend"), "{cause}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(region_outcome(w, out, vec![]).unwrap().len(), 6);
    }
}
