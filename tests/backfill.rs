//! `adpulse backfill` on the Meta source against a local Graph API: it works from the
//! completeness ledger. A run interrupted by a rejected row (no FX rate) and by a throttle asking
//! for longer than `max_throttle_wait_secs` fails naming each incomplete day; after the causes are
//! fixed, a re-run fetches exactly those days (the request log shows nothing else is re-read), and
//! a usage header saying "0 minutes" waits the configured floor instead of looping.

mod common;

use adpulse::commands::backfill::backfill;
use adpulse::config::Config;
use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get as route_get;
use chrono::NaiveDate;
use common::*;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The rows the fake Graph API serves for one day: two campaigns; on 2026-10-03 the second
/// campaign is booked in USD (another ad account currency), which needs an FX rate.
fn rows_of(d: NaiveDate) -> Vec<(String, &'static str, &'static str)> {
    let usd = d.to_string() == "2026-10-03";
    vec![
        ("1".to_string(), "INR", "10.01"),
        (
            "2".to_string(),
            if usd { "USD" } else { "INR" },
            if usd { "2.00" } else { "10.01" },
        ),
    ]
}

/// The Meta source of `act_42` in India on the fake at `base`, with throttle waits of 1 s to 1 h,
/// and `fx` (an `[fx]` table, or nothing).
fn meta_config(dir: &std::path::Path, qdb: &str, base: &str, fx: &str) -> Config {
    let meta = meta_source_toml(
        dir,
        "act_42",
        base,
        "account_timezone = \"Asia/Kolkata\"\nmin_throttle_wait_secs = 1\nmax_throttle_wait_secs = 3600",
    );
    backfill_config(dir, qdb, &format!("{fx}\n{meta}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_fixing_the_causes_fetches_exactly_the_incomplete_days() {
    let q = QuestDb::start().await;
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    // 1: the second chunk asks for 677 minutes (Meta counts in minutes), beyond the cap
    // 2: the third chunk says "0 minutes" once
    let phase = Arc::new(AtomicU32::new(1));
    let zero_once = Arc::new(AtomicU32::new(1));
    let (l2, p2, z2) = (log.clone(), phase.clone(), zero_once.clone());
    let app = meta_insights_fake("act_42", move |p| {
        let (log, phase, zero) = (l2.clone(), p2.clone(), z2.clone());
        async move {
            let tr: serde_json::Value = serde_json::from_str(&p["time_range"]).unwrap();
            let since =
                NaiveDate::parse_from_str(tr["since"].as_str().unwrap(), "%Y-%m-%d").unwrap();
            let until =
                NaiveDate::parse_from_str(tr["until"].as_str().unwrap(), "%Y-%m-%d").unwrap();
            log.lock().unwrap().push(format!("{since}..{until}"));
            let throttle = |minutes: u32| {
                (
                        StatusCode::BAD_REQUEST,
                        [("x-business-use-case-usage", format!(r#"{{"42":[{{"type":"ads_insights","call_count":100,"total_cputime":30,"total_time":40,"estimated_time_to_regain_access":{minutes}}}]}}"#))],
                        r#"{"error":{"message":"(#80000) There have been too many calls from this ad-account. Wait a bit and try again.","type":"OAuthException","code":80000,"error_subcode":2446079,"fbtrace_id":"x"}}"#,
                    )
                        .into_response()
            };
            if since.to_string() == "2026-10-08" && phase.load(Ordering::SeqCst) == 1 {
                return throttle(677);
            }
            if since.to_string() == "2026-10-15" && zero.swap(0, Ordering::SeqCst) == 1 {
                return throttle(0);
            }
            let mut data = Vec::new();
            let mut d = since;
            while d <= until {
                for (c, cur, spend) in rows_of(d) {
                    data.push(serde_json::json!({"account_currency": cur, "campaign_id": c, "campaign_name": format!("C{c}"),
                            "date_start": d.to_string(), "date_stop": d.to_string(), "spend": spend, "impressions": "100", "clicks": "3"}));
                }
                d = d.succ_opt().unwrap();
            }
            axum::Json(serde_json::json!({"data": data, "paging": {"cursors": {"before": "a", "after": "b"}}})).into_response()
        }
    });
    let base = serve_fake(app).await;
    let dir = tempfile::tempdir().unwrap();
    let from = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();

    // run 1: no USD rate, and a throttle beyond the cap
    let cfg = meta_config(dir.path(), &q.url(), &base, "");
    let (complete, incomplete, text) = incomplete_backfill(&cfg, "meta", from, to).await;
    assert!(
        text.starts_with("6 days complete, 14 incomplete: 2026-10-03: "),
        "{text}"
    );
    assert!(text.contains("no exchange rate for USD"), "{text}");
    assert!(text.contains("2026-10-08..2026-10-20: throttled: the API asks to wait 40620s, more than max_throttle_wait_secs (3600s)"), "{text}");
    assert_eq!((complete, incomplete.len()), (6, 14));
    println!("run 1: {text}\nrun 1 requests: {:?}", log.lock().unwrap());
    assert_eq!(
        log.lock().unwrap().clone(),
        vec!["2026-10-01..2026-10-07", "2026-10-08..2026-10-14"],
        "the throttle beyond the cap stops the run at once: no sleep, no request for the last chunk"
    );
    // 13 rows: the USD row was rejected, the rest of 2026-10-01..07 stored
    q.wait_for_count("SELECT count() FROM campaign_stats", 13.0)
        .await;

    // run 2: the rate is added and the throttle is over
    phase.store(2, Ordering::SeqCst);
    log.lock().unwrap().clear();
    let cfg = meta_config(dir.path(), &q.url(), &base, "[fx]\nUSD = \"83.5\"");
    let s = backfill(&cfg, "meta", from, to, 7, false).await.unwrap();
    println!(
        "run 2: {} days fetched, {} already complete, waits {:?}; requests: {:?}",
        s.days,
        s.already_complete,
        s.waits,
        log.lock().unwrap()
    );
    assert_eq!(s.days, 14);
    assert_eq!(s.already_complete, 6);
    assert_eq!(s.resumed_from, NaiveDate::from_ymd_opt(2026, 10, 3));
    assert_eq!(
        log.lock().unwrap().clone(),
        vec![
            "2026-10-03..2026-10-03",
            "2026-10-08..2026-10-14",
            "2026-10-15..2026-10-20",
            "2026-10-15..2026-10-20"
        ],
        "exactly the incomplete days are fetched again; the \"0 minutes\" throttle is retried once"
    );
    // "0 minutes" waited the 1 s floor, once: at most one request per floor period
    assert_eq!(s.waits, vec![Duration::from_secs(1)]);
    q.wait_for_count("SELECT count() FROM campaign_stats", 40.0)
        .await;
    // the independent total: every served row, converted at the configured rate
    let rate = Decimal::from_str("83.5").unwrap();
    let mut want = Decimal::ZERO;
    for d in from.iter_days().take_while(|d| *d <= to) {
        for (_, cur, spend) in rows_of(d) {
            let v = Decimal::from_str(spend).unwrap();
            want += if cur == "USD" { v * rate } else { v };
        }
    }
    let total = q.rows("SELECT sum(spend) FROM campaign_stats").await;
    assert_eq!(
        Decimal::from_str(total[0][0].as_str().unwrap()).unwrap(),
        want
    );
    // done: a third run has nothing to do and asks nothing
    log.lock().unwrap().clear();
    let s = backfill(&cfg, "meta", from, to, 7, false).await.unwrap();
    println!(
        "run 3: {} days fetched, {} already complete; requests: {:?}",
        s.days,
        s.already_complete,
        log.lock().unwrap()
    );
    assert_eq!((s.days, s.already_complete), (0, 20));
    assert!(log.lock().unwrap().is_empty());
    let bad = backfill(&cfg, "nope", from, to, 7, false)
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("no source named"), "{bad}");
}

/// Large ranges go through Meta's async report runs: a job that fails is retried as two halves,
/// whose jobs are polled until complete and read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_range_uses_async_report_runs_and_splits_a_failed_job() {
    use axum::extract::Path;
    #[derive(Default)]
    struct Jobs {
        windows: Vec<(NaiveDate, NaiveDate)>,
        polls: HashMap<usize, u32>,
        log: Vec<String>,
    }
    let q = QuestDb::start().await;
    let jobs: Arc<Mutex<Jobs>> = Arc::default();
    let (j1, j2, j3) = (jobs.clone(), jobs.clone(), jobs.clone());
    let app = Router::new()
        .route(
            "/v25.0/{id}/insights",
            axum::routing::post(move |Path(id): Path<String>, Query(p): Query<HashMap<String, String>>| {
                let jobs = j1.clone();
                async move {
                    assert_eq!(id, "act_77");
                    let tr: serde_json::Value = serde_json::from_str(&p["time_range"]).unwrap();
                    let d = |k: &str| NaiveDate::parse_from_str(tr[k].as_str().unwrap(), "%Y-%m-%d").unwrap();
                    let mut j = jobs.lock().unwrap();
                    j.windows.push((d("since"), d("until")));
                    let n = j.windows.len();
                    j.log.push(format!("start {}..{}", d("since"), d("until")));
                    axum::Json(serde_json::json!({"report_run_id": format!("run{n}")}))
                }
            })
            .get(move |Path(id): Path<String>| {
                let jobs = j2.clone();
                async move {
                    let n: usize = id.trim_start_matches("run").parse().unwrap();
                    let (since, until) = jobs.lock().unwrap().windows[n - 1];
                    jobs.lock().unwrap().log.push(format!("read run{n}"));
                    let mut data = Vec::new();
                    let mut d = since;
                    while d <= until {
                        data.push(serde_json::json!({"account_currency": "INR", "campaign_id": "9", "campaign_name": "C9",
                            "date_start": d.to_string(), "date_stop": d.to_string(), "spend": "1.10", "impressions": "10", "clicks": "1"}));
                        d = d.succ_opt().unwrap();
                    }
                    axum::Json(serde_json::json!({"data": data, "paging": {"cursors": {"before": "a", "after": "b"}}}))
                }
            }),
        )
        .route(
            "/v25.0/{id}",
            route_get(move |Path(id): Path<String>| {
                let jobs = j3.clone();
                async move {
                    let n: usize = id.trim_start_matches("run").parse().unwrap();
                    let mut j = jobs.lock().unwrap();
                    let polls = {
                        let e = j.polls.entry(n).or_default();
                        *e += 1;
                        *e
                    };
                    let status = match (n, polls) {
                        (1, _) => "Job Failed",
                        (_, 1) => "Job Running",
                        _ => "Job Completed",
                    };
                    axum::Json(serde_json::json!({"id": id, "async_status": status, "async_percent_completion": if status == "Job Completed" {100} else {40}}))
                }
            }),
        );
    let (_dir, cfg) = meta_backfill(
        app,
        &q.url(),
        "",
        "act_77",
        "async_threshold_days = 15\nasync_poll_ms = 10",
    )
    .await;
    let from = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2026, 10, 10).unwrap();
    let s = backfill(&cfg, "meta", from, to, 40, false).await.unwrap();
    assert_eq!(s.days, 40);
    q.wait_for_count("SELECT count() FROM campaign_stats", 40.0)
        .await;
    let total = q.rows("SELECT sum(spend) FROM campaign_stats").await;
    assert_eq!(total[0][0], "44.000000");
    let log = jobs.lock().unwrap().log.clone();
    assert_eq!(
        log,
        vec![
            "start 2026-09-01..2026-10-10",
            "start 2026-09-01..2026-09-20",
            "read run2",
            "start 2026-09-21..2026-10-10",
            "read run3",
        ],
        "the failed 40-day job is split in two 20-day jobs, each polled until complete"
    );
}
