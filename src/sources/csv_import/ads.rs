//! One row of a Meta Ads Manager or Google Ads export: summary and total rows skipped, the day
//! (or a range, rejected or spread), amounts with their currency, counts that fit, and Meta's
//! "Results" counted as conversions only when they are purchases.

use chrono::Days;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::cells::{self, Amount};
use super::headers::Field;
use super::{Ctx, ImportFormat, ImportOptions, Item, Rejected, Skipped, cell, resolve_currency};
use crate::normalize::{Observation, RawCampaignStat};
use crate::records::{Bucket, CampaignKey};

/// Labels the exports put in the first cells of their total rows ("Total: Account",
/// "Total: Campaigns", Meta's "Total"), in the five languages of `headers.toml`.
fn is_total_label(s: &str) -> bool {
    let s = s.trim().to_lowercase();
    let word = s.split([':', ' ']).next().unwrap_or("");
    let totals = [
        "total",
        "totals",
        "totales",
        "totaux",
        "gesamt",
        "gesamtergebnis",
        "summe",
        "totais",
    ];
    (totals.contains(&word) && (s == word || s[word.len()..].trim_start().starts_with(':')))
        || s.starts_with("results from")
        || s.starts_with("resultados de")
        || s.starts_with("résultats de")
        || s.starts_with("ergebnisse von")
}

/// Words that mark a Meta result type as a purchase ("actions:offsite_conversion.fb_pixel_purchase",
/// "Website purchases", "Compras en el sitio web", "Achats", "Käufe").
fn is_purchase_result(s: &str) -> bool {
    let s = s.to_lowercase();
    ["purchase", "compra", "achat", "kauf", "käufe"]
        .iter()
        .any(|w| s.contains(w))
}

pub(super) fn row(
    format: ImportFormat,
    ctx: &Ctx,
    opts: &ImportOptions,
    line: u64,
    f: &[String],
) -> Item {
    let cols = &ctx.cols;
    let reject = |i: Option<usize>, reason: String| {
        Item::Rejected(Rejected {
            line,
            column: cols.name(i),
            reason,
        })
    };
    if f.iter().take(2).any(|c| is_total_label(c)) {
        return Item::Skipped(Skipped {
            line,
            reason: format!(
                "a total row ({:?})",
                f.iter()
                    .find(|c| is_total_label(c))
                    .map_or("", |c| c.trim())
            ),
        });
    }
    let c_name = cols.get(Field::CampaignName);
    let c_id = cols.get(Field::CampaignId);
    let name = cell(f, c_name);
    let id = cell(f, c_id);
    if name.is_empty() {
        let identity = [Field::CampaignId, Field::AdSetName, Field::AdName];
        if identity.iter().all(|&k| cell(f, cols.get(k)).is_empty()) {
            // Meta writes the report's totals as a first row with no names at all
            return Item::Skipped(Skipped {
                line,
                reason: "a summary row (no campaign name or id)".into(),
            });
        }
        return reject(c_name, "campaign name is empty".into());
    }

    // the day, or the days a row covers
    let (first_day, n_days) = if let Some(c) = cols.get(Field::Day) {
        match cells::parse_date(cell(f, Some(c)), opts.day_first).and_then(|d| opts.days.check(d)) {
            Ok(d) => (d, 1u32),
            Err(e) => return reject(Some(c), e.to_string()),
        }
    } else {
        let c_start = cols.get(Field::ReportingStarts);
        let c_end = cols.get(Field::ReportingEnds);
        let start = match cells::parse_date(cell(f, c_start), opts.day_first)
            .and_then(|d| opts.days.check(d))
        {
            Ok(d) => d,
            Err(e) => return reject(c_start, e.to_string()),
        };
        let end = if c_end.is_some() && !cell(f, c_end).is_empty() {
            match cells::parse_date(cell(f, c_end), opts.day_first).and_then(|d| opts.days.check(d))
            {
                Ok(d) => d,
                Err(e) => return reject(c_end, e.to_string()),
            }
        } else {
            start
        };
        if end < start {
            return reject(c_end, format!("ends ({end}) before it starts ({start})"));
        }
        let n = (end - start).num_days() + 1;
        if n > 1 && !opts.allow_ranges {
            return reject(
                c_start,
                format!(
                    "the row covers {n} days ({start}..={end}): export with a daily breakdown (Ads Manager: Breakdown > By time > Day), or pass --allow-ranges to spread it evenly over the days (approximate)"
                ),
            );
        }
        if n > i64::from(opts.max_range_days) {
            return reject(
                c_start,
                format!(
                    "the row covers {n} days, more than the {} --allow-ranges spreads",
                    opts.max_range_days
                ),
            );
        }
        (start, u32::try_from(n).unwrap_or(1))
    };

    // amounts and counts
    let amount = |k: Field| -> Result<(Amount, Option<usize>), Item> {
        let c = cols.get(k);
        cells::parse_amount(cell(f, c), ctx.style)
            .map(|a| (a, c))
            .map_err(|e| reject(c, e.to_string()))
    };
    let money = |k: Field| -> Result<(Amount, Option<usize>), Item> {
        let (a, c) = amount(k)?;
        if a.value.is_sign_negative() && !a.value.is_zero() {
            return Err(reject(c, format!("{} is negative", a.value)));
        }
        cells::check_money(a.value).map_err(|e| reject(c, e.to_string()))?;
        Ok((a, c))
    };
    let count = |k: Field| -> Result<u64, Item> {
        let (a, c) = amount(k)?;
        cells::to_count(a.value).map_err(|e| reject(c, e.to_string()))
    };
    let conversions = |k: Field| -> Result<Decimal, Item> {
        let (a, c) = amount(k)?;
        if a.value.is_sign_negative() && !a.value.is_zero() {
            return Err(reject(c, format!("{} is negative", a.value)));
        }
        Ok(a.value)
    };
    let parsed = (|| -> Result<_, Item> {
        let spend = money(Field::Spend)?;
        let impressions = count(Field::Impressions)?;
        let clicks = count(Field::Clicks)?;
        let conv = if format == ImportFormat::GoogleAds {
            conversions(Field::Conversions)?
        } else if cols.has(Field::Purchases) {
            conversions(Field::Purchases)?
        } else if cols.has(Field::ResultIndicator)
            && is_purchase_result(cell(f, cols.get(Field::ResultIndicator)))
        {
            conversions(Field::Results)?
        } else {
            Decimal::ZERO
        };
        let value = money(Field::ConversionValue)?;
        Ok((spend, impressions, clicks, conv, value))
    })();
    let ((spend, c_spend), impressions, clicks, conv, (value, c_value)) = match parsed {
        Ok(p) => p,
        Err(item) => return item,
    };
    let currency = match resolve_currency(
        cols.get(Field::Currency).map(|i| cell(f, Some(i))),
        &[(&spend, cols.name(c_spend)), (&value, cols.name(c_value))],
        ctx.header_currency.as_deref(),
        opts.currency.as_deref(),
    ) {
        Ok(c) => c,
        Err((column, reason)) => {
            return Item::Rejected(Rejected {
                line,
                column: if column.is_empty() {
                    cols.name(cols.get(Field::Currency))
                } else {
                    column
                },
                reason,
            });
        }
    };
    let account = match cell(f, cols.get(Field::AccountId)) {
        "" => opts.account.clone(),
        a => a.to_string(),
    };
    let key = CampaignKey {
        platform: format.as_str().into(),
        account,
        campaign_id: if id.is_empty() { name } else { id }.to_string(),
    };
    let spends = cells::split_money(spend.value, n_days);
    let values = cells::split_money(value.value, n_days);
    let imps = cells::split_count(impressions, n_days);
    let clks = cells::split_count(clicks, n_days);
    let convs = cells::split_money(conv, n_days);
    let observations = (0..n_days as usize)
        .map(|i| {
            let day = first_day + Days::new(i as u64);
            Observation::Campaign(RawCampaignStat {
                ts: crate::normalize::day_start(day, opts.timezone),
                bucket: Bucket::Day,
                key: key.clone(),
                campaign_name: name.to_string(),
                // one day keeps the cell as written; a spread keeps the exact parts
                spend: if n_days == 1 { spend.value } else { spends[i] },
                conversion_value: if n_days == 1 { value.value } else { values[i] },
                account_currency: currency.clone(),
                impressions: imps[i],
                clicks: clks[i],
                conversions: if n_days == 1 { conv } else { convs[i] }
                    .to_f64()
                    .unwrap_or(0.0),
            })
        })
        .collect();
    Item::Good { line, observations }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_labels() {
        for t in [
            "Total: Account",
            "Total: Campaigns",
            "Total",
            "Gesamt: Konto",
            "Total : compte",
            "Totales: cuenta",
        ] {
            assert!(is_total_label(t), "{t}");
        }
        for n in ["Total Jewellery", "Totally Gold", "Diwali", ""] {
            assert!(!is_total_label(n), "{n}");
        }
    }
}
