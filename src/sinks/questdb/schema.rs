//! The tables adpulse writes: idempotent DDL (`CREATE TABLE IF NOT EXISTS`), each table with DEDUP
//! UPSERT KEYS (a replay never double-counts) and partitioning fitted to its volume; the retention
//! (TTL) of the model tables comes from config.
//!
//! Partitioning (see `docs/schema.md` and the disk figures in `docs/benchmarks.md`):
//! - `campaign_stats`: one row per campaign and hour, restated for up to 28 days: DAY partitions keep
//!   the out-of-order rewrite of a restated day small at agency scale.
//! - `orders`, `funnel`: tens to thousands of rows a day: MONTH.
//! - `forecasts`, `anomalies`: regenerated continuously, read for recent weeks: DAY, with a TTL
//!   (`questdb.forecasts_retention_days`, `questdb.anomalies_retention_days`).
//! - `ad_stats`: one row per ad and hour or day, several ads per campaign (ten times
//!   `campaign_stats` and more), restated like it: DAY, with a TTL
//!   (`questdb.ad_stats_retention_days`, 400 by default: a year and a month of drill-down, while
//!   the campaign totals in `campaign_stats` are kept).
//! - `actions` (the audit trail, kept forever): a few rows a day: YEAR, so a sparse trail does not
//!   hold one set of column files per day.

use crate::config::QuestDbConfig;

/// The DDL of every table adpulse writes (see `docs/schema.md`).
pub const TABLES: &[(&str, &str)] = &[
    (
        "campaign_stats",
        "CREATE TABLE IF NOT EXISTS campaign_stats (ts TIMESTAMP, bucket SYMBOL, day SYMBOL, \
         platform SYMBOL, account SYMBOL, campaign_id SYMBOL, campaign_name VARCHAR, source SYMBOL, \
         spend DECIMAL(18,6), conversion_value DECIMAL(18,6), spend_account DECIMAL(18,6), \
         conversion_value_account DECIMAL(18,6), account_currency SYMBOL, currency SYMBOL, \
         impressions LONG, clicks LONG, conversions DOUBLE, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, bucket, platform, account, campaign_id)",
    ),
    (
        "orders",
        "CREATE TABLE IF NOT EXISTS orders (ts TIMESTAMP, day SYMBOL, event_id VARCHAR, \
         order_id VARCHAR, kind SYMBOL, amount DECIMAL(18,6), amount_shop DECIMAL(18,6), \
         shop_currency SYMBOL, currency SYMBOL, customer_id VARCHAR, city SYMBOL, \
         utm_source SYMBOL, utm_medium SYMBOL, utm_campaign SYMBOL, items LONG, source SYMBOL, \
         ingested_at TIMESTAMP) TIMESTAMP(ts) PARTITION BY MONTH WAL \
         DEDUP UPSERT KEYS(ts, event_id)",
    ),
    (
        "funnel",
        "CREATE TABLE IF NOT EXISTS funnel (ts TIMESTAMP, bucket SYMBOL, day SYMBOL, stage SYMBOL, \
         traffic_source SYMBOL, source SYMBOL, count LONG, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY MONTH WAL \
         DEDUP UPSERT KEYS(ts, bucket, stage, traffic_source, source)",
    ),
    (
        "forecasts",
        "CREATE TABLE IF NOT EXISTS forecasts (ts TIMESTAMP, generated_at TIMESTAMP, model SYMBOL, \
         series SYMBOL, horizon_hours LONG, yhat DOUBLE, yhat_lower_80 DOUBLE, yhat_upper_80 DOUBLE, \
         yhat_lower_95 DOUBLE, yhat_upper_95 DOUBLE) TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, generated_at, model, series)",
    ),
    (
        "anomalies",
        "CREATE TABLE IF NOT EXISTS anomalies (ts TIMESTAMP, series SYMBOL, platform SYMBOL, \
         campaign_id SYMBOL, value DOUBLE, expected DOUBLE, lower DOUBLE, upper DOUBLE, score DOUBLE, \
         is_anomaly BOOLEAN, detector SYMBOL) TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, series, platform, campaign_id, detector)",
    ),
    (
        "actions",
        "CREATE TABLE IF NOT EXISTS actions (ts TIMESTAMP, action_id SYMBOL, event SYMBOL, \
         actor SYMBOL, mode SYMBOL, dry_run BOOLEAN, rule SYMBOL, kind SYMBOL, platform SYMBOL, \
         account SYMBOL, campaign_id SYMBOL, campaign_name VARCHAR, reason VARCHAR, \
         rule_values VARCHAR, state_before VARCHAR, state_after VARCHAR, result SYMBOL, \
         detail VARCHAR, idempotency_key VARCHAR) TIMESTAMP(ts) PARTITION BY YEAR WAL \
         DEDUP UPSERT KEYS(ts, action_id, event)",
    ),
    // Issue 16 (true profit): order lines with costs, journey touchpoints and attribution per
    // model, window and channel. Order-sized volumes: MONTH.
    (
        "order_lines",
        "CREATE TABLE IF NOT EXISTS order_lines (ts TIMESTAMP, day SYMBOL, order_id VARCHAR, \
         line_id VARCHAR, sku SYMBOL, product SYMBOL, variant SYMBOL, product_type SYMBOL, \
         quantity LONG, unit_price DECIMAL(18,6), discount DECIMAL(18,6), net_sales DECIMAL(18,6), \
         tax DECIMAL(18,6), shipping_charged DECIMAL(18,6), unit_cost DECIMAL(18,6), \
         cost_source SYMBOL, refunded_quantity LONG, refunded_amount DECIMAL(18,6), \
         customer_id VARCHAR, new_customer BOOLEAN, city SYMBOL, province SYMBOL, country SYMBOL, \
         utm_campaign SYMBOL, currency SYMBOL, source SYMBOL, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY MONTH WAL \
         DEDUP UPSERT KEYS(ts, order_id, line_id)",
    ),
    (
        "touchpoints",
        "CREATE TABLE IF NOT EXISTS touchpoints (ts TIMESTAMP, journey_id VARCHAR, \
         order_id VARCHAR, position LONG, channel SYMBOL, utm_source SYMBOL, utm_medium SYMBOL, \
         utm_campaign SYMBOL, referrer VARCHAR, landing_page VARCHAR, source SYMBOL, \
         ingested_at TIMESTAMP) TIMESTAMP(ts) PARTITION BY MONTH WAL \
         DEDUP UPSERT KEYS(ts, journey_id, position)",
    ),
    (
        "attribution",
        "CREATE TABLE IF NOT EXISTS attribution (ts TIMESTAMP, day SYMBOL, model SYMBOL, \
         window SYMBOL, channel SYMBOL, conversions DOUBLE, revenue DECIMAL(18,6), \
         spend DECIMAL(18,6), platform_conversions DOUBLE, roas DOUBLE, currency SYMBOL, \
         ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY MONTH WAL \
         DEDUP UPSERT KEYS(ts, model, window, channel)",
    ),
    // Issue 10: ad-level rows (Meta level=ad, Google Ads ad_group_ad). The ad set / ad group is
    // part of the key: a Google ad id is unique only within its ad group.
    (
        "ad_stats",
        "CREATE TABLE IF NOT EXISTS ad_stats (ts TIMESTAMP, bucket SYMBOL, day SYMBOL, \
         platform SYMBOL, account SYMBOL, campaign_id SYMBOL, campaign_name VARCHAR, \
         adset_id SYMBOL, adset_name VARCHAR, ad_id SYMBOL, ad_name VARCHAR, source SYMBOL, \
         spend DECIMAL(18,6), conversion_value DECIMAL(18,6), spend_account DECIMAL(18,6), \
         conversion_value_account DECIMAL(18,6), account_currency SYMBOL, currency SYMBOL, \
         impressions LONG, clicks LONG, conversions DOUBLE, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY DAY WAL \
         DEDUP UPSERT KEYS(ts, bucket, platform, account, campaign_id, adset_id, ad_id)",
    ),
    // Issue 16 (CLV): one row per customer and per acquisition channel for each as-of day (the
    // newest order's day); a re-run the same day overwrites. A row per customer a day: MONTH.
    (
        "customer_value",
        "CREATE TABLE IF NOT EXISTS customer_value (ts TIMESTAMP, day SYMBOL, \
         customer_id VARCHAR, acquisition_channel SYMBOL, first_order_day VARCHAR, orders LONG, \
         repeat_purchases LONG, recency_periods DOUBLE, age_periods DOUBLE, \
         revenue DECIMAL(18,6), p_alive DOUBLE, expected_purchases_6m DOUBLE, \
         expected_purchases_12m DOUBLE, expected_order_value DECIMAL(18,6), \
         clv_6m DECIMAL(18,6), clv_12m DECIMAL(18,6), currency SYMBOL, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY MONTH WAL \
         DEDUP UPSERT KEYS(ts, customer_id)",
    ),
    (
        "campaign_value",
        "CREATE TABLE IF NOT EXISTS campaign_value (ts TIMESTAMP, day SYMBOL, channel SYMBOL, \
         customers LONG, clv_6m_total DECIMAL(18,6), clv_12m_total DECIMAL(18,6), \
         clv_6m_mean DECIMAL(18,6), clv_12m_mean DECIMAL(18,6), spend DECIMAL(18,6), \
         new_customers LONG, cac DECIMAL(18,6), ltv_cac_6m DOUBLE, ltv_cac_12m DOUBLE, \
         currency SYMBOL, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY MONTH WAL \
         DEDUP UPSERT KEYS(ts, channel)",
    ),
    // Issue 16 (regions): a campaign's day per region, restated like campaign_stats; a few
    // dozen regions per campaign and day: MONTH.
    (
        "region_stats",
        "CREATE TABLE IF NOT EXISTS region_stats (ts TIMESTAMP, bucket SYMBOL, day SYMBOL, \
         platform SYMBOL, account SYMBOL, campaign_id SYMBOL, campaign_name VARCHAR, \
         region SYMBOL, source SYMBOL, spend DECIMAL(18,6), conversion_value DECIMAL(18,6), \
         spend_account DECIMAL(18,6), conversion_value_account DECIMAL(18,6), \
         account_currency SYMBOL, currency SYMBOL, impressions LONG, clicks LONG, \
         conversions DOUBLE, ingested_at TIMESTAMP) \
         TIMESTAMP(ts) PARTITION BY MONTH WAL \
         DEDUP UPSERT KEYS(ts, bucket, platform, account, campaign_id, region)",
    ),
];

/// `ALTER TABLE .. SET TTL` for the model tables (applied after the DDL, so an existing table
/// follows a changed setting too). A retention of 0 days keeps everything.
pub fn retention_statements(cfg: &QuestDbConfig) -> Vec<String> {
    [
        ("forecasts", cfg.forecasts_retention_days),
        ("anomalies", cfg.anomalies_retention_days),
        ("ad_stats", cfg.ad_stats_retention_days),
    ]
    .into_iter()
    .map(|(table, days)| format!("ALTER TABLE {table} SET TTL {days} DAYS"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_dedup_keys_wal_and_a_fitted_partitioning() {
        for (name, ddl) in TABLES {
            assert!(ddl.contains(&format!("IF NOT EXISTS {name} (")), "{name}");
            assert!(ddl.contains("WAL"), "{name}");
            assert!(ddl.contains("DEDUP UPSERT KEYS(ts"), "{name}");
        }
        let by = |t: &str| {
            let ddl = TABLES.iter().find(|(n, _)| *n == t).unwrap().1;
            ddl.split("PARTITION BY ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        };
        assert_eq!(by("actions"), "YEAR");
        assert_eq!(by("orders"), "MONTH");
        assert_eq!(by("campaign_stats"), "DAY");
        assert_eq!(by("ad_stats"), "DAY");
        let ad = TABLES.iter().find(|(n, _)| *n == "ad_stats").unwrap().1;
        assert!(
            ad.contains(
                "DEDUP UPSERT KEYS(ts, bucket, platform, account, campaign_id, adset_id, ad_id)"
            ),
            "{ad}"
        );
    }

    #[test]
    fn every_record_table_has_ddl() {
        let names: Vec<&str> = TABLES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::records::TABLE_NAMES);
    }
}
