//! CSV imports of the exports people download: header variants, Indian digit grouping, currency
//! symbols, title lines, totals rows; every good row kept and every bad one named; money exact in
//! QuestDB to the paisa; re-importing changes nothing.

mod common;

use adpulse::config::{Config, QuestDbConfig};
use adpulse::normalize::Observation;
use adpulse::sources::csv_import::{ImportFormat, ImportOptions, import_file, parse};
use common::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

fn fixture(name: &str) -> std::path::PathBuf {
    repo().join("tests/fixtures/csv").join(name)
}

fn opts() -> ImportOptions {
    ImportOptions {
        account: "act_1029384756".into(),
        currency: "INR".into(),
        timezone: chrono_tz::Asia::Kolkata,
        day_first: true,
    }
}

fn spend_of(obs: &[(u64, Observation)]) -> Decimal {
    obs.iter()
        .map(|(_, o)| match o {
            Observation::Campaign(c) => c.spend,
            _ => Decimal::ZERO,
        })
        .sum()
}

#[test]
fn meta_export_keeps_good_rows_and_names_bad_ones() {
    let p = parse(
        ImportFormat::Meta,
        std::fs::File::open(fixture("meta_ads_manager.csv")).unwrap(),
        &opts(),
    )
    .unwrap();
    assert_eq!(p.observations.len(), 4, "{:?}", p.rejected);
    assert_eq!(spend_of(&p.observations), dec!(26474.92));
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
    let Observation::Campaign(c) = &p.observations[1].1 else {
        panic!()
    };
    assert_eq!(c.impressions, 901_004);
    assert_eq!(c.conversion_value, dec!(2120.00));
    assert_eq!(c.account_currency, "INR");
    let Observation::Campaign(q) = &p.observations[2].1 else {
        panic!()
    };
    assert_eq!(q.campaign_name, "Bridal Lookalike, 2%");
}

#[test]
fn google_ads_report_skips_title_lines_and_keeps_currency() {
    let p = parse(
        ImportFormat::GoogleAds,
        std::fs::File::open(fixture("google_ads_report.csv")).unwrap(),
        &opts(),
    )
    .unwrap();
    assert_eq!(p.observations.len(), 3);
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].line, 7);
    assert_eq!(p.rejected[0].column, "Cost");
    let Observation::Campaign(c) = &p.observations[2].1 else {
        panic!()
    };
    assert_eq!(c.account_currency, "USD");
    assert_eq!(c.conversions, 1.0);
    assert_eq!(c.key.platform, "google_ads");
}

#[test]
fn shopify_orders_merge_line_items_and_book_refunds() {
    let p = parse(
        ImportFormat::Shopify,
        std::fs::File::open(fixture("shopify_orders.csv")).unwrap(),
        &opts(),
    )
    .unwrap();
    let orders: Vec<_> = p
        .observations
        .iter()
        .map(|(_, o)| match o {
            Observation::Order(o) => o.clone(),
            _ => panic!("not an order"),
        })
        .collect();
    assert_eq!(orders.len(), 5, "3 orders + a refund + a cancellation");
    assert_eq!(orders[1].items, 2, "the continuation row adds its item");
    assert_eq!(orders[0].utm_campaign.as_deref(), Some("120210000000003"));
    assert_eq!(orders[2].amount, dec!(-749.70));
    let net: Decimal = orders.iter().map(|o| o.amount).sum();
    assert_eq!(net, dec!(2499.00) + dec!(3798.00) - dec!(749.70));
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].column, "Created at");
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
        ..QuestDbConfig::default()
    };
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
        assert_eq!(s.imported, 4);
        assert_eq!(s.rejected.len(), 3);
        let g = import_file(
            &cfg,
            ImportFormat::GoogleAds,
            &fixture("google_ads_report.csv"),
            &opts(),
            false,
        )
        .await
        .unwrap();
        assert_eq!(g.imported, 3);
    }
    q.wait_for_count("SELECT count() FROM campaign_stats", 7.0)
        .await;
    let rows = q
        .rows("SELECT sum(spend), sum(spend_account) FROM campaign_stats WHERE platform = 'meta'")
        .await;
    assert_eq!(rows[0][0], "26474.920000");
    // 43.42 USD at the configured 83.50 INR/USD, exact
    let usd = q
        .rows("SELECT spend, spend_account, account_currency, day, bucket FROM campaign_stats WHERE campaign_id = '21000000002'")
        .await;
    assert_eq!(usd[0][0], "3625.570000");
    assert_eq!(usd[0][1], "43.420000");
    assert_eq!(usd[0][2], "USD");
    assert_eq!(usd[0][3], "2026-11-19");
    assert_eq!(usd[0][4], "day");
}
