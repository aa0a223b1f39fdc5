//! `adpulse backfill` and `adpulse import` report what was durably stored, counted from the
//! pipeline's durability tickets, not what was handed to the sink (issue 9). QuestDB refuses a
//! row that normalize accepts here because its table was created by hand with a narrower column
//! (`clicks SHORT`: QuestDB answers "value 40000 is out bounds of column type: SHORT" for that
//! line only). The refused row goes to the dead-letter file; the command says it was not stored,
//! exits non-zero, and a backfill leaves its day incomplete so a re-run fetches it again.

mod common;

use adpulse::commands::import::import_file;
use adpulse::config::{Config, QuestDbConfig};
use adpulse::sources::csv_import::{ImportFormat, ImportOptions};
use axum::Router;
use axum::extract::Query;
use axum::routing::get as route_get;
use chrono::NaiveDate;
use common::*;
use std::collections::HashMap;

/// `campaign_stats` as adpulse creates it, but with `clicks SHORT` (max 32,767).
async fn narrow_clicks(q: &QuestDb) {
    let ddl = adpulse::sinks::questdb::TABLES
        .iter()
        .find(|(t, _)| *t == "campaign_stats")
        .unwrap()
        .1;
    assert!(ddl.contains("clicks LONG"), "{ddl}");
    q.sql(&ddl.replace("clicks LONG", "clicks SHORT")).await;
}

fn dead_letters(spool: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(spool.join("dead-letter.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

const CSV: &str = "Campaign name,Campaign ID,Day,Amount spent (INR),Impressions,Link clicks\n\
A,101,2026-11-18,10.00,1000,12\n\
B,102,2026-11-18,20.00,90000,40000\n\
C,103,2026-11-18,30.00,500,7\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_counts_a_row_questdb_refused_as_not_stored_and_fails() {
    let q = QuestDb::start().await;
    narrow_clicks(&q).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let file = dir.path().join("meta.csv");
    std::fs::write(&file, CSV).unwrap();
    let mut cfg = Config::from_toml_str(adpulse::config::DEFAULT_CONFIG).unwrap();
    cfg.questdb = QuestDbConfig {
        http_url: q.url(),
        spool_dir: spool.clone(),
        flush_interval_ms: 50,
        ..QuestDbConfig::default()
    };
    let opts = ImportOptions::new(
        "act_1",
        chrono_tz::Asia::Kolkata,
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
    );
    let s = import_file(&cfg, ImportFormat::Meta, &file, &opts, false)
        .await
        .unwrap();
    assert!(s.rejected.is_empty(), "{:?}", s.rejected);
    assert_eq!(s.rows, 3, "three good rows read");
    assert_eq!(
        (s.stored, s.dead_lettered, s.spooled),
        (2, 1, 0),
        "QuestDB holds 2 of the 3 records"
    );
    q.wait_for_count("SELECT count() FROM campaign_stats", 2.0)
        .await;
    let dead = dead_letters(&spool);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("\"102\""), "{dead:?}");

    // the command itself exits non-zero and names the dead-letter file
    let conf = dir.path().join("adpulse.toml");
    std::fs::write(
        &conf,
        format!(
            "[questdb]\nhttp_url = \"{}\"\nspool_dir = \"{}\"\nflush_interval_ms = 50\n",
            q.url(),
            spool.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adpulse"))
        .arg("--config")
        .arg(&conf)
        .args(["import", "--format", "meta", "--account", "act_1"])
        .arg(&file)
        .env_remove("ADPULSE_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 records stored"), "{stdout}");
    assert!(
        stderr.contains("1 records refused by QuestDB, not stored"),
        "{stderr}"
    );
    assert!(stderr.contains("dead-letter.jsonl"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_whose_row_was_dead_lettered_fails_and_leaves_its_day_incomplete() {
    let q = QuestDb::start().await;
    narrow_clicks(&q).await;
    // a Graph API insights edge (documented page shape); on 2026-10-02 campaign 2 has 40,000
    // clicks, which the hand-made table cannot hold
    let app = Router::new().route(
        "/v25.0/act_42/insights",
        route_get(|Query(p): Query<HashMap<String, String>>| async move {
            let tr: serde_json::Value = serde_json::from_str(&p["time_range"]).unwrap();
            let day = |k: &str| NaiveDate::parse_from_str(tr[k].as_str().unwrap(), "%Y-%m-%d").unwrap();
            let mut data = Vec::new();
            for d in day("since").iter_days().take_while(|d| *d <= day("until")) {
                for c in ["1", "2"] {
                    let clicks = if c == "2" && d.to_string() == "2026-10-02" { "40000" } else { "3" };
                    data.push(serde_json::json!({"account_currency": "INR", "campaign_id": c,
                        "campaign_name": format!("C{c}"), "date_start": d.to_string(),
                        "date_stop": d.to_string(), "spend": "10.01", "impressions": "100000",
                        "clicks": clicks}));
                }
            }
            axum::Json(serde_json::json!({"data": data, "paging": {"cursors": {"before": "a", "after": "b"}}}))
        }),
    );
    let (dir, cfg) = meta_backfill(
        app,
        &q.url(),
        "",
        "act_42",
        "account_timezone = \"Asia/Kolkata\"",
    )
    .await;
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let (complete, incomplete, err) =
        incomplete_backfill(&cfg, "meta", d("2026-10-01"), d("2026-10-03")).await;
    assert_eq!(complete, 2, "{err}");
    assert_eq!(incomplete.len(), 1, "{err}");
    assert_eq!(incomplete[0].0, d("2026-10-02"));
    assert!(
        incomplete[0].1.contains("1 of 2 rows refused by QuestDB"),
        "{err}"
    );
    // the ledger keeps the day open: a re-run (after the table is fixed) fetches it again
    let ledger = adpulse::sources::ledger::Ledger::new(&cfg.general.state_dir);
    let open: Vec<NaiveDate> = ledger
        .incomplete("meta")
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(open, vec![d("2026-10-02")]);
    q.wait_for_count("SELECT count() FROM campaign_stats", 5.0)
        .await;
    assert_eq!(dead_letters(&dir.path().join("spool")).len(), 1);
}
