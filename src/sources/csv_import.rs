//! CSV import of the files people actually export: Meta Ads Manager, Google Ads reports and
//! Shopify orders. Header names vary (case, units in parentheses, "Impr." vs "Impressions"),
//! numbers carry currency symbols and Indian digit grouping (1,23,456.78), dates come in several
//! formats. Every good row is kept; every bad row is reported with its line, column and reason.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;

use crate::normalize::{Observation, RawCampaignStat, RawOrder};
use crate::records::{Bucket, CampaignKey, OrderKind};

/// Which export a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// Meta Ads Manager report export (one row per campaign and day).
    Meta,
    /// Google Ads campaign report (one row per campaign and day).
    GoogleAds,
    /// Shopify orders export (one row per line item; the first row of an order has the totals).
    Shopify,
}

/// What the importer needs to know that the file may not say.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Account id when the file has no account column.
    pub account: String,
    /// Currency when the file has no currency column or header unit.
    pub currency: String,
    /// Timezone of the account or shop: its days become instants in it.
    pub timezone: Tz,
    /// Read `03/04/2026` as 3 April (Indian and European exports) rather than 4 March.
    pub day_first: bool,
}

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// 1-based line in the file (the header is line 1 unless title lines precede it).
    pub line: u64,
    pub column: String,
    pub reason: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {:?}: {}",
            self.line, self.column, self.reason
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("no header row with {0} found in the first 10 lines: is this a {1} export?")]
    NoHeader(String, &'static str),
}

/// The result of parsing one file.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Good rows with their line in the file.
    pub observations: Vec<(u64, Observation)>,
    pub rejected: Vec<Rejected>,
}

/// A header name reduced to compare variants: lower case, units in parentheses dropped,
/// punctuation folded. Returns (key, unit inside parentheses).
fn header_key(h: &str) -> (String, Option<String>) {
    let h = h.trim().trim_start_matches('\u{feff}');
    let (name, unit) = match (h.find('('), h.rfind(')')) {
        (Some(a), Some(b)) if b > a => (
            format!("{}{}", &h[..a], &h[b + 1..]),
            Some(h[a + 1..b].trim().to_string()),
        ),
        _ => (h.to_string(), None),
    };
    let key: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (key, unit)
}

/// Parse a money or count cell: currency symbols and codes, spaces, Western (1,234,567.89) or
/// Indian (12,34,567.89) grouping; empty, `-` and `--` are zero (how the exports write "none").
pub fn parse_number(cell: &str) -> Result<Decimal, String> {
    let mut s = cell.trim().to_string();
    for sym in [
        "₹", "Rs.", "Rs", "INR", "USD", "US$", "$", "€", "EUR", "£", "GBP",
    ] {
        s = s.replace(sym, "");
    }
    let s = s.trim().replace([' ', '\u{a0}'], "");
    if s.is_empty() || s == "-" || s == "--" {
        return Ok(Decimal::ZERO);
    }
    let (neg, body) = if let Some(inner) = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        (true, inner.to_string())
    } else if let Some(rest) = s.strip_prefix('-') {
        (true, rest.to_string())
    } else {
        (false, s.clone())
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body.as_str(), None),
    };
    if int.contains(',') {
        let groups: Vec<&str> = int.split(',').collect();
        let first_ok = !groups[0].is_empty() && groups[0].len() <= 3;
        let last_ok = groups.last().is_some_and(|g| g.len() == 3);
        let middle = &groups[1..groups.len() - 1];
        let western = middle.iter().all(|g| g.len() == 3);
        let indian = middle.iter().all(|g| g.len() == 2);
        if !(first_ok && last_ok && (western || indian)) {
            return Err(format!(
                "{cell:?} is not a number (unexpected digit grouping)"
            ));
        }
    }
    let plain = format!(
        "{}{}{}",
        if neg { "-" } else { "" },
        int.replace(',', ""),
        frac.map(|f| format!(".{f}")).unwrap_or_default()
    );
    Decimal::from_str(&plain).map_err(|_| format!("{cell:?} is not a number"))
}

/// Parse a date in the formats the exports use.
pub fn parse_date(cell: &str, day_first: bool) -> Result<NaiveDate, String> {
    let s = cell.trim();
    // timestamps: keep the date part
    let s = s
        .split(['T', ' '])
        .next()
        .filter(|d| d.len() >= 8 && !d.contains(','))
        .unwrap_or(s);
    let numeric = if day_first {
        ["%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"]
    } else {
        ["%m/%d/%Y", "%m-%d-%Y", "%m.%d.%Y"]
    };
    for f in ["%Y-%m-%d", "%Y/%m/%d"]
        .iter()
        .chain(numeric.iter())
        .chain(["%d-%b-%Y", "%d %b %Y", "%b %d, %Y", "%B %d, %Y", "%d %B %Y"].iter())
    {
        if let Ok(d) =
            NaiveDate::parse_from_str(cell.trim(), f).or_else(|_| NaiveDate::parse_from_str(s, f))
        {
            return Ok(d);
        }
    }
    Err(format!(
        "{cell:?} is not a date (expected e.g. 2026-11-20 or 20/11/2026)"
    ))
}

fn day_ts(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    crate::normalize::day_start(day, tz)
}

/// Column lookup by any of several header variants.
struct Columns {
    index: HashMap<String, usize>,
    units: HashMap<usize, String>,
    names: Vec<String>,
}

impl Columns {
    fn new(header: &csv::StringRecord) -> Self {
        let mut index = HashMap::new();
        let mut units = HashMap::new();
        for (i, h) in header.iter().enumerate() {
            let (k, u) = header_key(h);
            index.entry(k).or_insert(i);
            if let Some(u) = u {
                units.insert(i, u);
            }
        }
        Self {
            index,
            units,
            names: header.iter().map(str::to_string).collect(),
        }
    }
    fn find(&self, variants: &[&str]) -> Option<usize> {
        variants.iter().find_map(|v| self.index.get(*v).copied())
    }
}

fn looks_like_header(r: &csv::StringRecord, required: &[&[&str]]) -> bool {
    let keys: Vec<String> = r.iter().map(|h| header_key(h).0).collect();
    required
        .iter()
        .all(|variants| variants.iter().any(|v| keys.iter().any(|k| k == v)))
}

const CAMPAIGN_NAME: &[&str] = &["campaign name", "campaign"];
const CAMPAIGN_ID: &[&str] = &["campaign id"];
const DAY: &[&str] = &["day", "date", "reporting starts", "reporting start"];
const SPEND: &[&str] = &["amount spent", "cost", "spend", "amount spent inr"];
const IMPRESSIONS: &[&str] = &["impressions", "impr"];
const CLICKS: &[&str] = &["link clicks", "clicks", "clicks all"];
const CONVERSIONS: &[&str] = &["purchases", "website purchases", "conversions", "results"];
const CONV_VALUE: &[&str] = &[
    "purchases conversion value",
    "website purchases conversion value",
    "conv value",
    "conversion value",
    "total conv value",
];
const CURRENCY: &[&str] = &["currency", "currency code"];
const ACCOUNT: &[&str] = &["account id", "customer id", "account"];

/// Parse one export.
pub fn parse<R: Read>(
    format: ImportFormat,
    reader: R,
    opts: &ImportOptions,
) -> Result<Parsed, ImportError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut records = rdr.records();
    let (required, what): (&[&[&str]], &'static str) = match format {
        ImportFormat::Meta | ImportFormat::GoogleAds => (
            &[CAMPAIGN_NAME, DAY, SPEND],
            if format == ImportFormat::Meta {
                "Meta Ads Manager"
            } else {
                "Google Ads"
            },
        ),
        ImportFormat::Shopify => (&[&["name"], &["created at"], &["total"]], "Shopify orders"),
    };
    // Google Ads exports start with title lines ("Campaign report", a date range): skip them.
    let mut header = None;
    for _ in 0..10 {
        match records.next() {
            Some(r) => {
                let r = r?;
                if looks_like_header(&r, required) {
                    header = Some(r);
                    break;
                }
            }
            None => break,
        }
    }
    let header = header.ok_or_else(|| {
        ImportError::NoHeader(
            required
                .iter()
                .map(|v| format!("{:?}", v[0]))
                .collect::<Vec<_>>()
                .join(", "),
            what,
        )
    })?;
    let cols = Columns::new(&header);
    let mut out = Parsed::default();
    match format {
        ImportFormat::Meta | ImportFormat::GoogleAds => {
            parse_campaigns(format, &cols, records, opts, &mut out)?
        }
        ImportFormat::Shopify => parse_orders(&cols, records, opts, &mut out)?,
    }
    Ok(out)
}

fn parse_campaigns<R: Read>(
    format: ImportFormat,
    cols: &Columns,
    records: csv::StringRecordsIter<'_, R>,
    opts: &ImportOptions,
    out: &mut Parsed,
) -> Result<(), ImportError> {
    let c_name = cols.find(CAMPAIGN_NAME);
    let c_id = cols.find(CAMPAIGN_ID);
    let c_day = cols.find(DAY);
    let c_spend = cols.find(SPEND);
    let c_impr = cols.find(IMPRESSIONS);
    let c_clicks = cols.find(CLICKS);
    let c_conv = cols.find(CONVERSIONS);
    let c_value = cols.find(CONV_VALUE);
    let c_cur = cols.find(CURRENCY);
    let c_acct = cols.find(ACCOUNT);
    let header_currency = c_spend.and_then(|i| cols.units.get(&i)).cloned();
    let platform = match format {
        ImportFormat::Meta => "meta",
        _ => "google_ads",
    };
    for rec in records {
        let rec = rec?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let first = rec.get(0).unwrap_or("").trim().to_lowercase();
        // totals rows that the exports append
        if first.starts_with("total") || first.starts_with("results from") {
            continue;
        }
        let cell = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("").trim();
        let col = |i: Option<usize>| i.map(|i| cols.names[i].clone()).unwrap_or_default();
        let mut reject = |i: Option<usize>, reason: String| {
            out.rejected.push(Rejected {
                line,
                column: col(i),
                reason,
            })
        };
        let name = cell(c_name);
        if name.is_empty() {
            reject(c_name, "campaign name is empty".into());
            continue;
        }
        let day = match parse_date(cell(c_day), opts.day_first) {
            Ok(d) => d,
            Err(e) => {
                reject(c_day, e);
                continue;
            }
        };
        let mut nums = [Decimal::ZERO; 5];
        let mut bad = false;
        for (k, c) in [c_spend, c_impr, c_clicks, c_conv, c_value]
            .into_iter()
            .enumerate()
        {
            match parse_number(cell(c)) {
                Ok(v) if v.is_sign_negative() && !v.is_zero() => {
                    reject(c, format!("{v} is negative"));
                    bad = true;
                    break;
                }
                Ok(v) => nums[k] = v,
                Err(e) => {
                    reject(c, e);
                    bad = true;
                    break;
                }
            }
        }
        if bad {
            continue;
        }
        let whole = |d: Decimal, c: Option<usize>, out: &mut Parsed| -> Option<u64> {
            if d.fract().is_zero() {
                rust_decimal::prelude::ToPrimitive::to_u64(&d)
            } else {
                out.rejected.push(Rejected {
                    line,
                    column: col(c),
                    reason: format!("{d} is not a whole number"),
                });
                None
            }
        };
        let Some(impressions) = whole(nums[1], c_impr, out) else {
            continue;
        };
        let Some(clicks) = whole(nums[2], c_clicks, out) else {
            continue;
        };
        let currency = c_cur
            .map(|_| cell(c_cur).to_string())
            .filter(|c| !c.is_empty())
            .or_else(|| header_currency.clone())
            .unwrap_or_else(|| opts.currency.clone());
        let id = if cell(c_id).is_empty() {
            name.to_string()
        } else {
            cell(c_id).to_string()
        };
        let account = if cell(c_acct).is_empty() {
            opts.account.clone()
        } else {
            cell(c_acct).to_string()
        };
        out.observations.push((
            line,
            Observation::Campaign(RawCampaignStat {
                ts: day_ts(day, opts.timezone),
                bucket: Bucket::Day,
                key: CampaignKey {
                    platform: platform.into(),
                    account,
                    campaign_id: id,
                },
                campaign_name: name.to_string(),
                spend: nums[0],
                conversion_value: nums[4],
                account_currency: currency,
                impressions,
                clicks,
                conversions: rust_decimal::prelude::ToPrimitive::to_f64(&nums[3]).unwrap_or(0.0),
            }),
        ));
    }
    Ok(())
}

fn parse_orders<R: Read>(
    cols: &Columns,
    records: csv::StringRecordsIter<'_, R>,
    opts: &ImportOptions,
    out: &mut Parsed,
) -> Result<(), ImportError> {
    let c_name = cols.find(&["name"]);
    let c_created = cols.find(&["created at"]);
    let c_total = cols.find(&["total"]);
    let c_refunded = cols.find(&["refunded amount"]);
    let c_cur = cols.find(&["currency"]);
    let c_email = cols.find(&["email", "customer id"]);
    let c_city = cols.find(&["billing city", "shipping city"]);
    let c_qty = cols.find(&["lineitem quantity"]);
    let c_status = cols.find(&["financial status"]);
    let c_landing = cols.find(&["landing site"]);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for rec in records {
        let rec = rec?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let cell = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("").trim();
        let col = |i: Option<usize>| i.map(|i| cols.names[i].clone()).unwrap_or_default();
        let name = cell(c_name).to_string();
        if name.is_empty() {
            out.rejected.push(Rejected {
                line,
                column: col(c_name),
                reason: "order name is empty".into(),
            });
            continue;
        }
        let qty = parse_number(cell(c_qty)).unwrap_or(Decimal::ONE);
        // continuation rows (further line items) only add items
        if let Some(&idx) = seen.get(&name) {
            if let Some((_, Observation::Order(o))) = out.observations.get_mut(idx) {
                o.items += u32::try_from(qty.trunc().mantissa()).unwrap_or(1);
            }
            continue;
        }
        let created = cell(c_created);
        let ts = match DateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S %z")
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| DateTime::parse_from_rfc3339(created).map(|d| d.with_timezone(&Utc)))
        {
            Ok(t) => t,
            Err(_) => match parse_date(created, opts.day_first) {
                Ok(d) => day_ts(d, opts.timezone),
                Err(e) => {
                    out.rejected.push(Rejected {
                        line,
                        column: col(c_created),
                        reason: e,
                    });
                    continue;
                }
            },
        };
        let total = match parse_number(cell(c_total)) {
            Ok(v) => v,
            Err(e) => {
                out.rejected.push(Rejected {
                    line,
                    column: col(c_total),
                    reason: e,
                });
                continue;
            }
        };
        let refunded = match parse_number(cell(c_refunded)) {
            Ok(v) => v,
            Err(e) => {
                out.rejected.push(Rejected {
                    line,
                    column: col(c_refunded),
                    reason: e,
                });
                continue;
            }
        };
        let currency = Some(cell(c_cur).to_string())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| opts.currency.clone());
        let (utm_source, utm_medium, utm_campaign) = utm(cell(c_landing));
        let status = cell(c_status).to_lowercase();
        let base = RawOrder {
            ts,
            event_id: name.clone(),
            order_id: name.clone(),
            kind: OrderKind::Order,
            amount: total,
            currency,
            customer_id: Some(cell(c_email).to_string()).filter(|c| !c.is_empty()),
            city: Some(cell(c_city).to_string()).filter(|c| !c.is_empty()),
            utm_source,
            utm_medium,
            utm_campaign,
            items: u32::try_from(qty.trunc().mantissa()).unwrap_or(1),
        };
        seen.insert(name.clone(), out.observations.len());
        out.observations
            .push((line, Observation::Order(base.clone())));
        // The export has no refund date: the refund is booked on the order's time (documented).
        if !refunded.is_zero() || status == "voided" {
            let amount = if status == "voided" { total } else { refunded };
            out.observations.push((
                line,
                Observation::Order(RawOrder {
                    event_id: format!("{name}-refund"),
                    kind: if status == "voided" {
                        OrderKind::Cancellation
                    } else {
                        OrderKind::Refund
                    },
                    amount: -amount,
                    ..base
                }),
            ));
        }
    }
    Ok(())
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub imported: usize,
    pub rejected: Vec<Rejected>,
}

/// Parse `path`, normalize into the reporting currency and timezone, and write every good row to
/// QuestDB (upserted: importing the same file twice changes nothing). Bad rows are reported, never
/// silently dropped; with `dry_run` nothing is written.
pub async fn import_file(
    config: &crate::config::Config,
    format: ImportFormat,
    path: &std::path::Path,
    opts: &ImportOptions,
    dry_run: bool,
) -> Result<ImportSummary, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parsed = parse(format, file, opts).map_err(|e| format!("{}: {e}", path.display()))?;
    let normalizer = crate::normalize::Normalizer::new(
        config.timezone(),
        config.general.reporting_currency.clone(),
        config.fx.clone(),
    );
    let mut summary = ImportSummary {
        rejected: parsed.rejected,
        ..Default::default()
    };
    let source = format!(
        "csv_{}",
        match format {
            ImportFormat::Meta => "meta",
            ImportFormat::GoogleAds => "google_ads",
            ImportFormat::Shopify => "shopify",
        }
    );
    let mut records = Vec::new();
    for (line, obs) in parsed.observations {
        match normalizer.normalize(&source, obs) {
            Ok(r) => records.push(r),
            Err(e) => summary.rejected.push(Rejected {
                line,
                column: String::new(),
                reason: e.to_string(),
            }),
        }
    }
    summary.rejected.sort_by_key(|r| r.line);
    summary.imported = records.len();
    if dry_run || records.is_empty() {
        return Ok(summary);
    }
    let sql = crate::sinks::questdb::SqlClient::new(
        &config.questdb,
        config.questdb_password().map_err(|e| e.to_string())?,
    );
    sql.ensure_schema()
        .await
        .map_err(|e| format!("{e}: nothing was imported"))?;
    let telemetry = std::sync::Arc::new(crate::telemetry::Telemetry::new());
    let (sink, handle) = crate::sinks::questdb::QuestDbSink::build(
        config.questdb.clone(),
        config.questdb_password().map_err(|e| e.to_string())?,
        telemetry.clone(),
    )
    .map_err(|e| e.to_string())?;
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(sink.run(stop.clone()));
    let n = records.len() as u64;
    for chunk in records.chunks(config.questdb.flush_rows) {
        handle
            .send(chunk.to_vec())
            .await
            .map_err(|e| e.to_string())?;
    }
    let written = || telemetry.rows_written("questdb");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while written() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = task.await;
    if written() < n {
        return Err(format!(
            "QuestDB took {} of {n} rows; the rest are in the spool ({}) and are written by the next adpulse run",
            written(),
            config.questdb.spool_dir.display()
        ));
    }
    Ok(summary)
}

/// UTM parameters from a landing-site URL or path (`/?utm_source=...`).
pub fn utm(landing: &str) -> (Option<String>, Option<String>, Option<String>) {
    let query = landing.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut m: HashMap<&str, String> = HashMap::new();
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            let v = v.replace('+', " ");
            m.insert(k, v);
        }
    }
    (
        m.remove("utm_source"),
        m.remove("utm_medium"),
        m.remove("utm_campaign"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn numbers_with_symbols_and_indian_grouping_are_exact() {
        assert_eq!(parse_number("₹1,23,456.78").unwrap(), dec!(123456.78));
        assert_eq!(parse_number("1,234,567.89").unwrap(), dec!(1234567.89));
        assert_eq!(parse_number("Rs. 2,499").unwrap(), dec!(2499));
        assert_eq!(parse_number("INR 0.07").unwrap(), dec!(0.07));
        assert_eq!(parse_number("--").unwrap(), dec!(0));
        assert_eq!(parse_number("").unwrap(), dec!(0));
        assert_eq!(parse_number("(12.50)").unwrap(), dec!(-12.50));
        assert!(parse_number("1,2,3").is_err());
        assert!(parse_number("12,34").is_err());
        assert!(parse_number("abc").is_err());
    }

    #[test]
    fn dates_in_export_formats() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        for s in [
            "2026-11-03",
            "03/11/2026",
            "03-Nov-2026",
            "Nov 3, 2026",
            "2026-11-03 10:15:00",
        ] {
            assert_eq!(parse_date(s, true).unwrap(), d, "{s}");
        }
        assert_eq!(parse_date("11/03/2026", false).unwrap(), d);
        assert!(parse_date("yesterday", true).is_err());
    }

    #[test]
    fn header_variants_fold_to_one_key() {
        assert_eq!(
            header_key("Amount spent (INR)"),
            ("amount spent".into(), Some("INR".into()))
        );
        assert_eq!(header_key("Impr.").0, "impr");
        assert_eq!(header_key("\u{feff}Campaign name").0, "campaign name");
    }

    #[test]
    fn utm_from_landing_site() {
        assert_eq!(
            utm(
                "/products/ring?utm_source=facebook&utm_medium=paid_social&utm_campaign=120210000000001"
            ),
            (
                Some("facebook".into()),
                Some("paid_social".into()),
                Some("120210000000001".into())
            )
        );
        assert_eq!(utm(""), (None, None, None));
    }
}
