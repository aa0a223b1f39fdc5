//! Rows that share a key are summed, never overwritten: an ad-level Meta export has one row per
//! ad of a campaign and day, a segmented Google Ads export one per device or network, and
//! QuestDB upserts by (campaign, day), so storing them one by one would keep only the last.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;

use super::{ImportError, ImportFormat, ImportOptions, Item, Reader, Rejected, Skipped};
use crate::normalize::Observation;
use crate::records::{Bucket, CampaignKey};

/// The identity a row is upserted by (the QuestDB DEDUP key, less the source).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Campaign(CampaignKey, DateTime<Utc>, Bucket),
    Order(String, DateTime<Utc>),
    Funnel(DateTime<Utc>, Bucket, String, String),
    Ad(CampaignKey, String, String, DateTime<Utc>, Bucket),
    /// Order lines and journey touches: their table's DEDUP key.
    Line(String, String, DateTime<Utc>),
    Touch(String, u32, DateTime<Utc>),
    Region(CampaignKey, String, DateTime<Utc>, Bucket),
}

pub fn key_of(obs: &Observation) -> Key {
    match obs {
        Observation::Campaign(c) => Key::Campaign(c.key.clone(), c.ts, c.bucket),
        Observation::Order(o) => Key::Order(o.event_id.clone(), o.ts),
        Observation::Ad(a) => Key::Ad(
            a.stat.key.clone(),
            a.ad.adset_id.clone(),
            a.ad.ad_id.clone(),
            a.stat.ts,
            a.stat.bucket,
        ),
        Observation::Funnel(f) => {
            Key::Funnel(f.ts, f.bucket, f.stage.clone(), f.traffic_source.clone())
        }
        Observation::Line(l) => Key::Line(l.order_id.clone(), l.line_id.clone(), l.ts),
        Observation::Touch(t) => Key::Touch(t.journey_id.clone(), t.position, t.ts),
        Observation::Region(r) => Key::Region(
            r.stat.key.clone(),
            r.region.clone(),
            r.stat.ts,
            r.stat.bucket,
        ),
    }
}

/// A 64-bit digest of a key, for remembering which keys were seen without keeping them.
pub fn key_hash(k: &Key) -> u64 {
    let mut h = DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}

/// Why two rows of one key could not be summed; the message is the later row's rejection reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MergeError {
    #[error("is in {later} while an earlier row of the same {what} is in {earlier}")]
    Currency {
        what: &'static str,
        later: String,
        earlier: String,
    },
    /// A sum past what its column holds; the text names the field.
    #[error("{0}")]
    Overflow(&'static str),
    #[error("rows of different kinds share a key")]
    DifferentKinds,
}

/// `a + b`, or `what` when the sum is past what the money columns hold.
fn add_money(
    a: rust_decimal::Decimal,
    b: rust_decimal::Decimal,
    what: &'static str,
) -> Result<rust_decimal::Decimal, MergeError> {
    a.checked_add(b)
        .filter(|s| *s <= super::cells::max_money())
        .ok_or(MergeError::Overflow(what))
}

/// Rows of one key (`what`) must share their currency: the later row's `later` against the
/// earlier's.
fn same_currency(what: &'static str, earlier: &str, later: &str) -> Result<(), MergeError> {
    if earlier == later {
        return Ok(());
    }
    Err(MergeError::Currency {
        what,
        later: later.to_string(),
        earlier: earlier.to_string(),
    })
}

/// Add `b` into `a` (same key). Fails, leaving `a` unchanged, when the sum does not fit or the
/// rows disagree on their currency.
pub fn merge(a: &mut Observation, b: &Observation) -> Result<(), MergeError> {
    match (a, b) {
        (Observation::Campaign(a), Observation::Campaign(b)) => {
            same_currency("campaign and day", &a.account_currency, &b.account_currency)?;
            let impressions =
                a.impressions
                    .checked_add(b.impressions)
                    .ok_or(MergeError::Overflow(
                        "impressions of the campaign-day add up past the largest count stored",
                    ))?;
            let clicks = a.clicks.checked_add(b.clicks).ok_or(MergeError::Overflow(
                "clicks of the campaign-day add up past the largest count stored",
            ))?;
            let spend = add_money(
                a.spend,
                b.spend,
                "spend of the campaign-day adds up past what the money columns hold",
            )?;
            let value = add_money(
                a.conversion_value,
                b.conversion_value,
                "conversion value of the campaign-day adds up past what the money columns hold",
            )?;
            a.impressions = impressions;
            a.clicks = clicks;
            a.spend = spend;
            a.conversion_value = value;
            a.conversions += b.conversions;
            Ok(())
        }
        (Observation::Order(a), Observation::Order(b)) => {
            same_currency("order", &a.currency, &b.currency)?;
            let items = a.items.checked_add(b.items).ok_or(MergeError::Overflow(
                "the order's items add up past the largest item count stored",
            ))?;
            a.amount = a.amount.checked_add(b.amount).ok_or(MergeError::Overflow(
                "the order's amounts add up past what the money columns hold",
            ))?;
            a.items = items;
            Ok(())
        }
        (Observation::Funnel(a), Observation::Funnel(b)) => {
            a.count = a
                .count
                .checked_add(b.count)
                .ok_or(MergeError::Overflow("funnel count overflows"))?;
            Ok(())
        }
        _ => Err(MergeError::DifferentKinds),
    }
}

/// A whole file parsed in memory, rows sharing a key summed (for tests, the fuzz harness and
/// `--dry-run` on small files; `adpulse import` streams instead).
#[derive(Debug, Default)]
pub struct Parsed {
    /// What would be stored, each with the first line it came from, in first-seen order.
    pub observations: Vec<(u64, Observation)>,
    pub rejected: Vec<Rejected>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    /// Good rows read (before summing).
    pub rows: u64,
    /// Observations added into an earlier one with the same key.
    pub summed: u64,
    pub encoding: &'static str,
    pub latin1_rows: u64,
}

pub fn parse<R: Read + 'static>(
    format: ImportFormat,
    reader: R,
    opts: &ImportOptions,
) -> Result<Parsed, ImportError> {
    let mut r = Reader::new(format, reader, opts)?;
    let mut out = Parsed::default();
    let mut index: HashMap<Key, usize> = HashMap::new();
    for item in r.by_ref() {
        match item? {
            Item::Good { line, observations } => {
                out.rows += 1;
                for obs in observations {
                    let k = key_of(&obs);
                    match index.get(&k) {
                        Some(&i) => match merge(&mut out.observations[i].1, &obs) {
                            Ok(()) => out.summed += 1,
                            Err(e) => out.rejected.push(Rejected {
                                line,
                                column: String::new(),
                                reason: e.to_string(),
                            }),
                        },
                        None => {
                            index.insert(k, out.observations.len());
                            out.observations.push((line, obs));
                        }
                    }
                }
            }
            Item::Rejected(r) => out.rejected.push(r),
            Item::Skipped(s) => out.skipped.push(s),
        }
    }
    out.warnings = std::mem::take(&mut r.warnings);
    out.encoding = r.encoding();
    out.latin1_rows = r.latin1_rows;
    out.rejected.sort_by_key(|r| r.line);
    Ok(out)
}
