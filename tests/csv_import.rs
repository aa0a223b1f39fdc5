//! CSV imports of the exports people download: header variants in five languages, Indian and
//! European digit grouping, currency symbols, title lines, totals and summary rows, UTF-16 and
//! Latin-1; every good row kept and every bad one named; rows sharing a key summed; money exact
//! in QuestDB to the paisa; re-importing changes nothing. Expected totals are computed here from
//! the fixture files with the `csv` crate, not by the importer. Ends with a bounded fuzz run.

mod common;

use adpulse::commands::import::import_file;
use adpulse::config::{Config, QuestDbConfig};
use adpulse::normalize::Observation;
use adpulse::sources::csv_import::{DecimalStyle, ImportFormat, ImportOptions, Parsed, parse};
use chrono::NaiveDate;
use common::*;
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

fn fixture(name: &str) -> std::path::PathBuf {
    repo().join("tests/fixtures/csv").join(name)
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
}

fn opts() -> ImportOptions {
    ImportOptions::new("act_1029384756", chrono_tz::Asia::Kolkata, today())
}

fn parse_bytes(format: ImportFormat, bytes: Vec<u8>, o: &ImportOptions) -> Parsed {
    parse(format, std::io::Cursor::new(bytes), o).unwrap()
}

fn parse_file(format: ImportFormat, name: &str, o: &ImportOptions) -> Parsed {
    parse_bytes(format, std::fs::read(fixture(name)).unwrap(), o)
}

fn campaigns(p: &Parsed) -> Vec<adpulse::normalize::RawCampaignStat> {
    let obs = p.observations.iter().map(|(_, o)| o);
    obs.filter_map(Observation::as_campaign).cloned().collect()
}

fn orders(p: &Parsed) -> Vec<adpulse::normalize::RawOrder> {
    let obs = p.observations.iter().map(|(_, o)| o);
    obs.filter_map(Observation::as_order).cloned().collect()
}

/// The rejection of file line `line`.
fn rejected_line(p: &Parsed, line: u64) -> &adpulse::sources::csv_import::Rejected {
    let found = p.rejected.iter().find(|r| r.line == line);
    found.unwrap_or_else(|| panic!("line {line} rejected: {:?}", p.rejected))
}

fn spend_of(p: &Parsed) -> Decimal {
    campaigns(p).iter().map(|c| c.spend).sum()
}

/// Independent reading of a fixture: the sum of column `col` over rows where `keep` holds,
/// with the grouping commas taken out by hand.
fn column_sum(
    name: &str,
    skip_lines: usize,
    col: &str,
    keep: impl Fn(&csv::StringRecord) -> bool,
) -> Decimal {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let body: String = text.lines().skip(skip_lines).collect::<Vec<_>>().join("\n");
    let mut r = csv::Reader::from_reader(body.as_bytes());
    let h = r.headers().unwrap().clone();
    let i = h.iter().position(|x| x == col).unwrap();
    r.records()
        .map(Result::unwrap)
        .filter(|rec| keep(rec))
        .map(|rec| Decimal::from_str(&rec[i].replace([',', '₹'], "")).unwrap())
        .sum()
}

#[test]
fn meta_export_keeps_good_rows_and_names_bad_ones() {
    let p = parse_file(ImportFormat::Meta, "meta_ads_manager.csv", &opts());
    assert_eq!(p.observations.len(), 4, "{:?}", p.rejected);
    assert_eq!(spend_of(&p), dec!(26474.92));
    let bad: Vec<String> = p.rejected.iter().map(|r| r.to_string()).collect();
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(
        bad[0].starts_with("line 6, column \"Amount spent (INR)\""),
        "{bad:?}"
    );
    assert!(
        bad[1].starts_with("line 7, column \"Campaign name\""),
        "{bad:?}"
    );
    assert!(bad[2].starts_with("line 8, column \"Day\""), "{bad:?}");
    assert_eq!(p.skipped.len(), 1, "the trailing Total row");
    assert_eq!(p.skipped[0].line, 9);
    let c = campaigns(&p);
    assert_eq!(c[1].impressions, 901_004);
    assert_eq!(c[1].conversion_value, dec!(2120.00));
    assert_eq!(c[1].account_currency, "INR");
    assert_eq!(c[2].campaign_name, "Bridal Lookalike, 2%");
}

#[test]
fn google_ads_report_skips_title_lines_and_keeps_currency() {
    let p = parse_file(ImportFormat::GoogleAds, "google_ads_report.csv", &opts());
    assert_eq!(p.observations.len(), 3);
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].line, 7);
    assert_eq!(p.rejected[0].column, "Cost");
    assert_eq!(
        p.skipped.len(),
        1,
        "Total: Account is skipped, not an error"
    );
    let c = campaigns(&p);
    assert_eq!(c[2].account_currency, "USD");
    assert_eq!(c[2].conversions, 1.0);
    assert_eq!(c[2].key.platform, "google_ads");
}

#[test]
fn shopify_orders_merge_line_items_and_book_refunds() {
    let p = parse_file(ImportFormat::Shopify, "shopify_orders.csv", &opts());
    let o = orders(&p);
    assert_eq!(o.len(), 5, "3 orders + a refund + a cancellation");
    assert_eq!(o[1].items, 2, "the continuation row adds its item");
    assert_eq!(o[0].origin.utm_campaign.as_deref(), Some("120210000000003"));
    assert_eq!(o[2].amount, dec!(-749.70));
    let net: Decimal = o.iter().map(|o| o.amount).sum();
    assert_eq!(net, dec!(2499.00) + dec!(3798.00) - dec!(749.70));
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].column, "Created at");
}

// #9 item 7: one Latin-1 row rejected the whole file.
#[test]
fn a_latin1_row_is_read_and_the_file_kept() {
    let p = parse_file(ImportFormat::Meta, "meta_latin1_row.csv", &opts());
    assert_eq!(p.latin1_rows, 1);
    let c = campaigns(&p);
    assert_eq!(c.len(), 5, "{:?}", p.rejected);
    assert!(
        c.iter()
            .any(|c| c.campaign_name == "Campaña Otoño" && c.spend == dec!(100.50))
    );
    assert_eq!(p.rejected.len(), 3, "the same three bad rows as without it");
}

// #9 item 7: impressions above u64 were dropped silently with exit 0.
#[test]
fn impressions_above_u64_are_a_named_row_error() {
    let text = "Campaign name,Campaign ID,Day,Amount spent (INR),Impressions,Link clicks\n\
        Big,1,2026-11-18,10.00,18446744073709551616,5\n\
        Huge,2,2026-11-18,10.00,99999999999999999999999999999999,5\n\
        Max,3,2026-11-18,10.00,18446744073709551615,5\n";
    let p = parse_bytes(ImportFormat::Meta, text.into(), &opts());
    assert_eq!(campaigns(&p).len(), 1);
    assert_eq!(campaigns(&p)[0].impressions, u64::MAX);
    assert_eq!(p.rejected.len(), 2, "{:?}", p.rejected);
    for (r, line) in p.rejected.iter().zip([2, 3]) {
        assert_eq!((r.line, r.column.as_str()), (line, "Impressions"), "{r}");
    }
}

// #9 item 7: a negative Shopify refund was booked as positive revenue; item counts wrapped.
#[test]
fn refunds_are_negative_whatever_their_sign_and_item_counts_never_wrap() {
    let p = parse_file(ImportFormat::Shopify, "shopify_refunds.csv", &opts());
    let o = orders(&p);
    let refunds: Vec<_> = o
        .iter()
        .filter(|o| o.kind != adpulse::records::OrderKind::Order)
        .collect();
    assert_eq!(refunds.len(), 2);
    assert_eq!(
        refunds[0].amount,
        dec!(-749.70),
        "written -749.70 in the export"
    );
    assert_eq!(
        refunds[1].amount,
        dec!(-999.00),
        "written 999.00 in the export"
    );
    let first = o.iter().find(|o| o.event_id == "#2001").unwrap();
    assert_eq!(first.items, 3, "2.00 + 1 items (not a mantissa of 200)");
    // #2002: 4294967295 items plus one more does not fit u32: named, not wrapped to 0
    let wrap = rejected_line(&p, 5);
    assert_eq!(wrap.column, "Lineitem quantity");
    let kept = o.iter().find(|o| o.event_id == "#2002").unwrap();
    assert_eq!(kept.items, u32::MAX, "the order keeps the items that fit");
    // #2003 is dated 9999-12-31
    let date = rejected_line(&p, 6);
    assert_eq!(date.column, "Created at");
    assert!(date.reason.contains("outside"), "{date}");
    let net: Decimal = o.iter().map(|o| o.amount).sum();
    assert_eq!(
        net,
        dec!(2499.00) - dec!(749.70) + dec!(1000.00) + dec!(999.00) - dec!(999.00)
    );
}

// #9 item 7: a 50 MB field and the date 9999-12-31 were accepted.
#[test]
fn a_50_mb_field_and_an_absurd_date_are_row_errors() {
    let mut text = String::from("Campaign name,Campaign ID,Day,Amount spent (INR),Impressions\n");
    text.push_str("Good,1,2026-11-18,10.00,100\n");
    text.push_str(&format!(
        "{},2,2026-11-18,10.00,100\n",
        "x".repeat(50 * 1024 * 1024)
    ));
    text.push_str("Future,3,9999-12-31,10.00,100\n");
    text.push_str("Good too,4,2026-11-19,11.00,100\n");
    let p = parse_bytes(ImportFormat::Meta, text.into_bytes(), &opts());
    assert_eq!(spend_of(&p), dec!(21.00));
    assert_eq!(p.rejected.len(), 2, "{:?}", p.rejected);
    assert_eq!(
        (p.rejected[0].line, p.rejected[0].column.as_str()),
        (3, "Campaign name")
    );
    assert!(p.rejected[0].reason.contains("longer than"));
    assert_eq!(
        (p.rejected[1].line, p.rejected[1].column.as_str()),
        (4, "Day")
    );
}

// #10 "What we saw" 1 (CSV case): rows sharing a campaign-day key overwrote each other.
#[test]
fn rows_sharing_a_key_are_summed_not_overwritten() {
    let p = parse_file(ImportFormat::Meta, "meta_ad_level.csv", &opts());
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    assert_eq!(p.skipped.len(), 1, "Meta's blank-name summary row");
    let mut got: BTreeMap<(String, NaiveDate), Decimal> = BTreeMap::new();
    for c in campaigns(&p) {
        let day = c.ts.with_timezone(&chrono_tz::Asia::Kolkata).date_naive();
        *got.entry((c.key.campaign_id, day)).or_default() += c.spend;
    }
    assert_eq!(got.len(), 4, "two campaigns on two days");
    let gold_18 = column_sum("meta_ad_level.csv", 0, "Amount spent (USD)", |r| {
        &r[1] == "120210000000011" && &r[4] == "2026-11-18"
    });
    assert_eq!(gold_18, dec!(334.95));
    assert_eq!(
        got[&(
            "120210000000011".into(),
            NaiveDate::from_ymd_opt(2026, 11, 18).unwrap()
        )],
        gold_18
    );
    let all = column_sum("meta_ad_level.csv", 0, "Amount spent (USD)", |r| {
        !r[0].is_empty()
    });
    assert_eq!(spend_of(&p), all);
    assert_eq!(p.rows, 7);
    assert_eq!(p.summed, 3);

    let g = parse_file(ImportFormat::GoogleAds, "google_ads_segmented.csv", &opts());
    assert!(g.rejected.is_empty(), "{:?}", g.rejected);
    assert_eq!(g.skipped.len(), 2, "Total: Account and Total: Campaigns");
    let cost = column_sum("google_ads_segmented.csv", 2, "Cost", |r| {
        r[0].starts_with("2026")
    });
    assert_eq!(spend_of(&g), cost);
    let brand = column_sum("google_ads_segmented.csv", 2, "Cost", |r| {
        &r[2] == "21000000004"
    });
    assert_eq!(brand, dec!(125576.00));
    let c = campaigns(&g);
    assert_eq!(c.len(), 3);
    assert_eq!(
        c.iter()
            .find(|c| c.key.campaign_id == "21000000004")
            .unwrap()
            .spend,
        brand
    );
    let impr: u64 = c.iter().map(|c| c.impressions).sum();
    assert_eq!(
        impr,
        720_112 + 210_300 + 74_088 + 741_000 + 270_000 + 910_000 + 200_500
    );
}

// #10 "What we saw" 7: `$412.30` with no currency column was booked as INR.
#[test]
fn a_bare_dollar_without_a_currency_is_a_row_error_naming_the_fix() {
    let p = parse_file(ImportFormat::Meta, "meta_no_currency.csv", &opts());
    assert!(
        p.observations.is_empty(),
        "never a silent default: {:?}",
        p.observations
    );
    assert_eq!(p.rejected.len(), 2);
    assert!(
        p.rejected[0].reason.contains("--currency"),
        "{}",
        p.rejected[0]
    );
    assert!(p.rejected[0].reason.contains('$'), "{}", p.rejected[0]);
    let mut o = opts();
    o.currency = Some("USD".into());
    let p = parse_file(ImportFormat::Meta, "meta_no_currency.csv", &o);
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    assert!(campaigns(&p).iter().all(|c| c.account_currency == "USD"));
    assert_eq!(spend_of(&p), dec!(412.30) + dec!(398.10));
    // a symbol that contradicts the currency is named too
    o.currency = Some("INR".into());
    let p = parse_bytes(
        ImportFormat::Meta,
        "Campaign name,Day,Amount spent,Impressions\nA,2026-11-18,€5.00,1\n".into(),
        &o,
    );
    assert_eq!(p.rejected.len(), 1);
    assert!(p.rejected[0].reason.contains("EUR"), "{}", p.rejected[0]);
}

// #10 "What we saw" 7: rows covering several days were booked on their first day.
#[test]
fn multi_day_rows_are_errors_unless_spread_exactly() {
    let p = parse_file(ImportFormat::Meta, "meta_weekly.csv", &opts());
    assert_eq!(campaigns(&p).len(), 1, "the one-day row");
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].line, 2);
    assert!(
        p.rejected[0].reason.contains("daily breakdown"),
        "{}",
        p.rejected[0]
    );
    assert!(p.rejected[0].reason.contains("--allow-ranges"));
    let mut o = opts();
    o.allow_ranges = true;
    let p = parse_file(ImportFormat::Meta, "meta_weekly.csv", &o);
    assert!(p.rejected.is_empty());
    let week: Vec<_> = campaigns(&p)
        .into_iter()
        .filter(|c| c.key.campaign_id == "120210000000001")
        .collect();
    assert_eq!(week.len(), 7);
    let total = column_sum("meta_weekly.csv", 0, "Amount spent (INR)", |r| {
        &r[1] == "120210000000001"
    });
    assert_eq!(
        week.iter().map(|c| c.spend).sum::<Decimal>(),
        total,
        "money split exactly"
    );
    assert_eq!(week.iter().map(|c| c.impressions).sum::<u64>(), 700_003);
    assert_eq!(week.iter().map(|c| c.clicks).sum::<u64>(), 1001);
    // 10,000.03 / 7 = 1428.57 rem 4 paisa: the first four days carry one more
    assert_eq!(week[0].spend, dec!(1428.58));
    assert_eq!(week[6].spend, dec!(1428.57));
}

// #10 "What we saw" 7: Meta's "Results" became conversions whatever the result type.
#[test]
fn meta_results_are_conversions_only_for_purchases() {
    let p = parse_file(ImportFormat::Meta, "meta_results.csv", &opts());
    let c = campaigns(&p);
    let conv = |id: &str| {
        c.iter()
            .find(|c| c.key.campaign_id == id)
            .unwrap()
            .conversions
    };
    assert_eq!(conv("120210000000031"), 4.0, "purchase results");
    assert_eq!(conv("120210000000032"), 0.0, "leads are not purchases");
    assert_eq!(
        conv("120210000000033"),
        0.0,
        "link clicks are not purchases"
    );
}

// #10 "What we saw" 7: Google's "CSV (Excel)" export (UTF-16, tab-separated) was rejected.
#[test]
fn google_csv_excel_export_in_utf16_with_tabs() {
    let p = parse_file(
        ImportFormat::GoogleAds,
        "google_ads_excel_utf16.csv",
        &opts(),
    );
    assert_eq!(p.encoding, "UTF-16LE");
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    let cost = column_sum("google_ads_segmented.csv", 2, "Cost", |r| {
        r[0].starts_with("2026")
    });
    assert_eq!(spend_of(&p), cost);
    assert_eq!(p.skipped.len(), 2);
    // the same file in UTF-16BE without a BOM
    let le = std::fs::read(fixture("google_ads_excel_utf16.csv")).unwrap();
    let units: Vec<u16> = le[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let be: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
    let p = parse_bytes(ImportFormat::GoogleAds, be, &opts());
    assert_eq!(p.encoding, "UTF-16BE");
    assert!(p.rejected.is_empty(), "{:?}", p.rejected);
    assert_eq!(spend_of(&p), cost);
}

// #10 "What we saw" 7: exports with Spanish or French headers were rejected.
#[test]
fn headers_in_spanish_french_german_and_portuguese() {
    let expect = dec!(1234.56) + dec!(1100.40);
    for (format, name) in [
        (ImportFormat::Meta, "meta_es.csv"),
        (ImportFormat::Meta, "meta_fr.csv"),
        (ImportFormat::Meta, "meta_de.csv"),
        (ImportFormat::Meta, "meta_pt.csv"),
        (ImportFormat::GoogleAds, "google_ads_es.csv"),
        (ImportFormat::GoogleAds, "google_ads_fr.csv"),
        (ImportFormat::GoogleAds, "google_ads_de.csv"),
        (ImportFormat::GoogleAds, "google_ads_pt.csv"),
    ] {
        let p = parse_file(format, name, &opts());
        assert!(p.rejected.is_empty(), "{name}: {:?}", p.rejected);
        let c = campaigns(&p);
        assert_eq!(c.len(), 2, "{name}");
        assert_eq!(spend_of(&p), expect, "{name}");
        assert_eq!(
            c.iter().map(|c| c.impressions).sum::<u64>(),
            167_000,
            "{name}"
        );
        assert_eq!(c.iter().map(|c| c.conversions).sum::<f64>(), 5.0, "{name}");
        assert_eq!(
            c.iter().map(|c| c.conversion_value).sum::<Decimal>(),
            dec!(900.50),
            "{name}"
        );
        assert!(
            c.iter().all(|c| c.account_currency != "INR"),
            "{name}: currency from the file"
        );
    }
    // Spanish "1.234" is a thousand in Spain and 1.234 in Mexico: the row says so
    let p = parse_bytes(
        ImportFormat::Meta,
        "Nombre de la campaña,Día,Importe gastado (MXN),Impresiones\nA,2026-11-18,1.234,10\n"
            .into(),
        &opts(),
    );
    assert!(
        p.rejected[0].reason.contains("--decimal"),
        "{:?}",
        p.rejected
    );
    let mut o = opts();
    o.decimal = DecimalStyle::Point;
    let p = parse_bytes(
        ImportFormat::Meta,
        "Nombre de la campaña,Día,Importe gastado (MXN),Impresiones\nA,2026-11-18,1.234,10\n"
            .into(),
        &o,
    );
    assert_eq!(spend_of(&p), dec!(1.234));
}

fn adpulse_import(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_adpulse"))
        .arg("import")
        .args(args)
        .env_remove("ADPULSE_CONFIG")
        .output()
        .unwrap()
}

// #10 "What we saw" 7: Meta's blank-name summary row made the file exit 2; #9: a u64 overflow
// exited 0.
#[test]
fn exit_codes_skipped_rows_are_not_errors_bad_rows_are() {
    let out = adpulse_import(&[
        "--format",
        "meta",
        "--dry-run",
        fixture("meta_ad_level.csv").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("line 2: skipped, a summary row"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("7 rows read"), "{stdout}");
    assert!(stdout.contains("4 records validated"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("overflow.csv");
    std::fs::write(
        &f,
        "Campaign name,Day,Amount spent (INR),Impressions\nA,2026-11-18,1.00,18446744073709551616\nB,2026-11-18,2.00,5\n",
    )
    .unwrap();
    let out = adpulse_import(&["--format", "meta", "--dry-run", f.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2, column \"Impressions\""),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 records validated"));
}

/// Wait until every WAL table has applied all it was sent, so a count is final.
async fn wal_settled(q: &QuestDb) {
    eventually(
        "WAL tables to apply every transaction",
        std::time::Duration::from_secs(60),
        || async {
            let v = q
                .try_sql("SELECT count() FROM wal_tables() WHERE writerTxn < sequencerTxn")
                .await
                .ok()?;
            (v["dataset"][0][0].as_f64()? == 0.0).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_lands_in_questdb_exactly_and_twice_changes_nothing() {
    let q = QuestDb::start().await;
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml_str(adpulse::config::DEFAULT_CONFIG).unwrap();
    cfg.questdb = QuestDbConfig {
        http_url: q.url(),
        spool_dir: spool.path().to_path_buf(),
        flush_interval_ms: 50,
        // small batches, so summed keys and single keys cross batch boundaries
        flush_rows: 2,
        ..QuestDbConfig::default()
    };
    let mut counts = Vec::new();
    for _ in 0..2 {
        let s = import_file(
            &cfg,
            ImportFormat::Meta,
            &fixture("meta_ads_manager.csv"),
            &opts(),
            false,
        )
        .await
        .unwrap();
        assert_eq!(s.stored, 4);
        assert_eq!(s.rejected.len(), 3);
        let g = import_file(
            &cfg,
            ImportFormat::GoogleAds,
            &fixture("google_ads_segmented.csv"),
            &opts(),
            false,
        )
        .await
        .unwrap();
        assert_eq!((g.rows, g.stored, g.summed), (7, 3, 4));
        let a = import_file(
            &cfg,
            ImportFormat::Meta,
            &fixture("meta_ad_level.csv"),
            &opts(),
            false,
        )
        .await
        .unwrap();
        assert_eq!((a.rows, a.stored), (7, 4));
        // import_file returns once QuestDB acknowledged: after WAL apply the count is final
        wal_settled(&q).await;
        counts.push(q.number("SELECT count() FROM campaign_stats").await);
    }
    assert_eq!(
        counts,
        vec![Some(11.0), Some(11.0)],
        "4 + 3 + 4 rows, and the second import changed nothing"
    );
    let rows = q
        .rows("SELECT sum(spend) FROM campaign_stats WHERE platform = 'meta' AND account_currency = 'INR'")
        .await;
    assert_eq!(rows[0][0], "26474.920000");
    // the segmented export: every device's cost, summed in the test from the file
    let cost = column_sum("google_ads_segmented.csv", 2, "Cost", |r| {
        r[0].starts_with("2026")
    });
    let rows = q
        .rows("SELECT sum(spend) FROM campaign_stats WHERE platform = 'google_ads'")
        .await;
    assert_eq!(
        Decimal::from_str(rows[0][0].as_str().unwrap()).unwrap(),
        cost
    );
    // the ad-level export in USD: two ads of one campaign-day are 8.53 + 14.35 + 312.07 USD
    let usd = q
        .rows("SELECT spend_account, spend FROM campaign_stats WHERE campaign_id = '120210000000011' AND day = '2026-11-18'")
        .await;
    assert_eq!(usd.len(), 1);
    assert_eq!(usd[0][0], "334.950000");
    assert_eq!(usd[0][1], "27968.325000", "334.95 USD at 83.50");
}

/// Cells that break parsers: numbers at and past their limits, symbols, codes, dates, quotes,
/// separators, control bytes and invalid UTF-8.
fn tricky_cell() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"".to_vec()),
        Just(b"--".to_vec()),
        Just(b"1,23,456.78".to_vec()),
        Just(b"1.234,56".to_vec()),
        Just(b"\xe2\x82\xb91,000".to_vec()),
        Just(b"$412.30".to_vec()),
        Just(b"INR 0.07".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"99999999999999999999999999999999".to_vec()),
        Just(b"-749.70".to_vec()),
        Just(b"(12.50)".to_vec()),
        Just(b"2026-11-18".to_vec()),
        Just(b"9999-12-31".to_vec()),
        Just(b"2026-11-18 20:15:04 +0530".to_vec()),
        Just(b"Total: Account".to_vec()),
        Just(b"\"quoted, with comma\"".to_vec()),
        Just(b"\"unterminated".to_vec()),
        Just(b"S\xe3o Paulo".to_vec()),
        Just(b"\xff\xfe\x00".to_vec()),
        Just(b"4294967295".to_vec()),
        Just(b"actions:offsite_conversion.fb_pixel_purchase".to_vec()),
        "[0-9.,]{1,30}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..12),
    ]
}

fn header(format: ImportFormat) -> &'static str {
    match format {
        ImportFormat::Meta => {
            "Campaign name,Campaign ID,Day,Amount spent,Impressions,Link clicks,Results,Result indicator,Purchases conversion value,Currency,Reporting starts,Reporting ends"
        }
        ImportFormat::GoogleAds => {
            "Day,Campaign,Campaign ID,Currency code,Cost,Impr.,Clicks,Conversions,Conv. value"
        }
        ImportFormat::Shopify => {
            "Name,Financial Status,Created at,Currency,Total,Refunded Amount,Lineitem quantity,Landing Site"
        }
    }
}

static EXECUTIONS: AtomicU64 = AtomicU64::new(0);

fn check_invariants(format: ImportFormat, bytes: Vec<u8>, allow_ranges: bool) {
    EXECUTIONS.fetch_add(1, Ordering::Relaxed);
    let mut o = opts();
    o.allow_ranges = allow_ranges;
    o.currency = Some("INR".into());
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    if let Ok(p) = parse(format, std::io::Cursor::new(bytes), &o) {
        for r in &p.rejected {
            assert!(r.line >= 1 && r.line <= lines, "{r}");
            assert!(!r.reason.is_empty());
        }
        for (_, obs) in &p.observations {
            match obs {
                Observation::Campaign(c) => {
                    assert!(!c.spend.is_sign_negative() || c.spend.is_zero());
                    assert!(c.conversions.is_finite() && c.conversions >= 0.0);
                }
                Observation::Order(x) if x.kind != adpulse::records::OrderKind::Order => {
                    assert!(x.amount <= Decimal::ZERO, "refunds are never positive")
                }
                _ => {}
            }
        }
    }
}

fn format_of(i: usize) -> ImportFormat {
    [
        ImportFormat::Meta,
        ImportFormat::GoogleAds,
        ImportFormat::Shopify,
    ][i]
}

fn run_fuzz<S: Strategy>(name: &str, cases: u32, strategy: S, f: impl Fn(S::Value)) -> u64
where
    S::Value: std::fmt::Debug,
{
    let before = EXECUTIONS.load(Ordering::Relaxed);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        // a fixed seed: the normal test run is reproducible; FUZZ_CASES raises the count
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &[7; 32],
        ),
    );
    let result = runner.run(&strategy, |v| {
        f(v);
        Ok(())
    });
    // a panic inside `f` is caught by proptest and reported here with the shrunk input
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    EXECUTIONS.load(Ordering::Relaxed) - before
}

/// Bounded fuzzing of the three CSV importers (issue #9 item 10), part of the normal test run:
/// arbitrary bytes after a header (UTF-8 and UTF-16), rows of tricky cells with any delimiter,
/// and arbitrary input with no header. Fails on any panic; prints the executions.
#[test]
fn fuzz_csv_importers() {
    let cases: u32 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(700);
    let mut total = 0;
    total += run_fuzz(
        "arbitrary bytes after a header",
        cases,
        (
            0usize..3,
            proptest::collection::vec(any::<u8>(), 0..600),
            any::<bool>(),
        ),
        |(fmt, tail, utf16)| {
            let format = format_of(fmt);
            let mut bytes = format!("{}\n", header(format)).into_bytes();
            bytes.extend(tail);
            if utf16 {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                bytes = [0xFF, 0xFE]
                    .into_iter()
                    .chain(s.encode_utf16().flat_map(u16::to_le_bytes))
                    .collect();
            }
            check_invariants(format, bytes, false);
        },
    );
    total += run_fuzz(
        "rows of tricky cells",
        cases,
        (
            0usize..3,
            prop_oneof![Just(b','), Just(b'\t'), Just(b';')],
            proptest::collection::vec(proptest::collection::vec(tricky_cell(), 0..13), 0..12),
            any::<bool>(),
        ),
        |(fmt, delim, rows, allow_ranges)| {
            let format = format_of(fmt);
            let mut bytes = header(format)
                .replace(',', &char::from(delim).to_string())
                .into_bytes();
            bytes.push(b'\n');
            for r in rows {
                for (i, c) in r.iter().enumerate() {
                    if i > 0 {
                        bytes.push(delim);
                    }
                    bytes.extend_from_slice(c);
                }
                bytes.push(b'\n');
            }
            check_invariants(format, bytes, allow_ranges);
        },
    );
    total += run_fuzz(
        "arbitrary input",
        cases,
        (0usize..3, proptest::collection::vec(any::<u8>(), 0..2000)),
        |(fmt, bytes)| check_invariants(format_of(fmt), bytes, true),
    );
    eprintln!(
        "csv fuzz: {total} executions, 0 panics (a panic fails this test), 0 aborts (an abort kills it)"
    );
    assert_eq!(total, u64::from(cases) * 3);
}
