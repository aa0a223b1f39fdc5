//! Sharding on an existing engine: two adpulse instances with disjoint ad accounts (the shop owned
//! by one of them) write to one real QuestDB. Their totals must equal a single instance's over all
//! accounts, and no account may be written by both shards.

mod common;

use adpulse::config::{Config, QuestDbConfig};
use adpulse::normalize::Normalizer;
use adpulse::sources::SourceConfig;
use adpulse::sources::demo::{DemoConfig, DemoSource};
use chrono::{DateTime, Utc};
use common::*;

const META: &str = "act_1029384756";
const GOOGLE: &str = "123-456-7890";

fn config(q: &QuestDb, spool: &std::path::Path, demo: DemoConfig) -> Config {
    let mut cfg = Config::from_toml_str(adpulse::config::DEFAULT_CONFIG).unwrap();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.general.refresh_interval_secs = 1;
    cfg.models.enabled = false;
    cfg.questdb = QuestDbConfig {
        http_url: q.url(),
        flush_interval_ms: 50,
        retry_initial_ms: 50,
        retry_max_ms: 500,
        spool_dir: spool.to_path_buf(),
        ..QuestDbConfig::default()
    };
    cfg.sources = vec![SourceConfig::Demo(demo)];
    cfg
}

fn demo(name: &str, accounts: &[&str], shop: bool) -> DemoConfig {
    let start: DateTime<Utc> = "2026-11-20T12:40:00Z".parse().unwrap();
    let mut d = DemoConfig::new(name);
    d.start = Some(start);
    d.backfill_days = 3;
    d.backfill_only = true;
    d.accounts = accounts.iter().map(|a| a.to_string()).collect();
    d.shop = shop;
    d
}

/// Distinct campaign rows and orders a demo config produces (computed from the generator, not
/// from adpulse's pipeline).
fn rows_of(d: &DemoConfig) -> (f64, f64) {
    let tz = chrono_tz::Asia::Kolkata;
    let n = Normalizer::new(tz, "INR", Default::default());
    let mut src = DemoSource::new(d.clone(), tz);
    let start = src.start();
    let (mut c, mut o) = (0.0, 0.0);
    for ob in src.observations(src.epoch(), start, start) {
        match n.normalize("x", ob).unwrap() {
            adpulse::records::Record::CampaignStats(_) => c += 1.0,
            adpulse::records::Record::Orders(_) => o += 1.0,
            _ => {}
        }
    }
    (c, o)
}

/// Totals per account and the shop's, as QuestDB answers them.
async fn totals(q: &QuestDb) -> (Vec<Vec<serde_json::Value>>, Vec<Vec<serde_json::Value>>) {
    let per_account = q
        .rows(
            "SELECT platform, account, bucket, sum(spend) spend, sum(conversion_value) cv, \
             sum(clicks) clicks, sum(impressions) imp, round(sum(conversions), 6) conv, count() n \
             FROM campaign_stats GROUP BY platform, account, bucket \
             ORDER BY platform, account, bucket",
        )
        .await;
    let shop = q
        .rows("SELECT kind, sum(amount) amount, count() n FROM orders GROUP BY kind ORDER BY kind")
        .await;
    (per_account, shop)
}

async fn run_until_landed(cfgs: Vec<Config>, q: &QuestDb, rows: f64, orders: f64) {
    let mut running = Vec::new();
    for c in cfgs {
        running.push(adpulse::app::start(c).await.unwrap());
    }
    q.wait_for_count("SELECT count() FROM campaign_stats", rows)
        .await;
    q.wait_for_count("SELECT count() FROM orders", orders).await;
    for r in running {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_total_what_one_instance_totals_and_share_no_key() {
    let q = QuestDb::start().await;
    let spool = tempfile::tempdir().unwrap();
    let single = demo("single", &[], true);
    let (rows, orders) = rows_of(&single);
    let a = demo("shard-a", &[META], true);
    let b = demo("shard-b", &[GOOGLE], false);
    let (ra, oa) = rows_of(&a);
    let (rb, ob) = rows_of(&b);
    assert!(
        ra > 0.0 && rb > 0.0 && oa > 0.0,
        "both shards must have data"
    );
    assert_eq!((ra + rb, oa + ob), (rows, orders), "shards must cover all");

    // one instance over every account
    run_until_landed(
        vec![config(&q, &spool.path().join("single"), single)],
        &q,
        rows,
        orders,
    )
    .await;
    let one = totals(&q).await;
    assert!(one.0.len() >= 4, "{:?}", one.0);
    for t in ["campaign_stats", "orders", "funnel"] {
        q.sql(&format!("TRUNCATE TABLE {t}")).await;
    }
    q.wait_for_count("SELECT count() FROM campaign_stats", 0.0)
        .await;

    // two shards at once, into the same QuestDB
    run_until_landed(
        vec![
            config(&q, &spool.path().join("a"), a),
            config(&q, &spool.path().join("b"), b),
        ],
        &q,
        rows,
        orders,
    )
    .await;
    let two = totals(&q).await;
    assert_eq!(two, one, "two shards' totals differ from one instance's");

    // every account written by exactly one shard, the one that owns it; the shop by shard-a only
    let owners = q
        .rows(
            "SELECT account, source, count() FROM campaign_stats \
             GROUP BY account, source ORDER BY account",
        )
        .await;
    let owners: Vec<(String, String)> = owners
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        owners,
        vec![
            (GOOGLE.to_string(), "shard-b".to_string()),
            (META.to_string(), "shard-a".to_string())
        ]
    );
    let shop_sources = q
        .rows("SELECT DISTINCT source FROM orders ORDER BY source")
        .await;
    assert_eq!(shop_sources, vec![vec![serde_json::json!("shard-a")]]);
    eprintln!("single instance: {one:?}\ntwo shards:      {two:?}");
}
