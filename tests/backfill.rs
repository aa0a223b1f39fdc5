//! `adpulse backfill` on the Meta source against a local Graph API: chunked, throttle honoured,
//! and resumable: a failure in the second chunk keeps the first, and the re-run starts after it.

mod common;

use adpulse::config::Config;
use adpulse::sources::backfill::backfill;
use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get as route_get;
use chrono::NaiveDate;
use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_backfill_resumes_after_the_last_stored_chunk() {
    let q = QuestDb::start().await;
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let fail_chunk2 = Arc::new(AtomicBool::new(true));
    let throttle_once = Arc::new(AtomicBool::new(true));
    let (l2, f2, t2) = (log.clone(), fail_chunk2.clone(), throttle_once.clone());
    let app = Router::new().route(
        "/v25.0/act_42/insights",
        route_get(move |Query(p): Query<HashMap<String, String>>| {
            let (log, fail, throttle) = (l2.clone(), f2.clone(), t2.clone());
            async move {
                let tr: serde_json::Value = serde_json::from_str(&p["time_range"]).unwrap();
                let since = NaiveDate::parse_from_str(tr["since"].as_str().unwrap(), "%Y-%m-%d").unwrap();
                let until = NaiveDate::parse_from_str(tr["until"].as_str().unwrap(), "%Y-%m-%d").unwrap();
                log.lock().unwrap().push(since.to_string());
                if since.to_string() == "2026-10-08" && fail.swap(false, Ordering::SeqCst) {
                    return (StatusCode::BAD_REQUEST, r#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100,"fbtrace_id":"x"}}"#).into_response();
                }
                if since.to_string() == "2026-10-15" && throttle.swap(false, Ordering::SeqCst) {
                    return (
                        StatusCode::BAD_REQUEST,
                        [("x-business-use-case-usage", r#"{"42":[{"type":"ads_insights","call_count":100,"total_cputime":30,"total_time":40,"estimated_time_to_regain_access":0}]}"#)],
                        r#"{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17,"fbtrace_id":"x"}}"#,
                    )
                        .into_response();
                }
                let mut data = Vec::new();
                let mut d = since;
                while d <= until {
                    for c in ["1", "2"] {
                        data.push(serde_json::json!({"account_currency": "INR", "campaign_id": c, "campaign_name": format!("C{c}"),
                            "date_start": d.to_string(), "date_stop": d.to_string(), "spend": "10.01", "impressions": "100", "clicks": "3"}));
                    }
                    d = d.succ_opt().unwrap();
                }
                axum::Json(serde_json::json!({"data": data, "paging": {"cursors": {"before": "a", "after": "b"}}})).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("t");
    std::fs::write(&token, "tok").unwrap();
    let cfg = Config::from_toml_str(&format!(
        r#"
[general]
state_dir = "{state}"
[questdb]
http_url = "{qdb}"
spool_dir = "{spool}"
flush_interval_ms = 50
[[sources]]
type = "meta"
name = "meta"
account_id = "act_42"
base_url = "{base}"
access_token_file = "{token}"
account_timezone = "Asia/Kolkata"
hourly_days = 0
"#,
        state = dir.path().join("state").display(),
        qdb = q.url(),
        spool = dir.path().join("spool").display(),
        token = token.display(),
    ))
    .unwrap();
    let from = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();

    let err = backfill(&cfg, "meta", from, to, 7, false)
        .await
        .unwrap_err();
    assert!(err.contains("re-run the same command to resume"), "{err}");
    assert!(err.contains("2026-10-08"), "{err}");
    q.wait_for_count("SELECT count() FROM campaign_stats", 14.0)
        .await;

    let s = backfill(&cfg, "meta", from, to, 7, false).await.unwrap();
    assert_eq!(s.resumed_from, NaiveDate::from_ymd_opt(2026, 10, 8));
    assert_eq!(s.days, 13);
    assert_eq!(s.throttle_waits, 1);
    q.wait_for_count("SELECT count() FROM campaign_stats", 40.0)
        .await;
    let total = q.rows("SELECT sum(spend) FROM campaign_stats").await;
    assert_eq!(total[0][0], "400.400000");
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "2026-10-01",
            "2026-10-08",
            "2026-10-08",
            "2026-10-15",
            "2026-10-15"
        ],
        "chunk 1 is not fetched again on the re-run; the throttled chunk is retried"
    );
    // done: a third run has nothing to do
    let s = backfill(&cfg, "meta", from, to, 7, false).await.unwrap();
    assert_eq!(s.days, 0);
    let bad = backfill(&cfg, "nope", from, to, 7, false)
        .await
        .unwrap_err();
    assert!(bad.contains("no source named"), "{bad}");
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("t");
    std::fs::write(&token, "tok").unwrap();
    let cfg = Config::from_toml_str(&format!(
        r#"
[general]
state_dir = "{state}"
[questdb]
http_url = "{qdb}"
spool_dir = "{spool}"
flush_interval_ms = 50
[[sources]]
type = "meta"
name = "meta"
account_id = "act_77"
base_url = "{base}"
access_token_file = "{token}"
hourly_days = 0
async_threshold_days = 15
async_poll_ms = 10
"#,
        state = dir.path().join("state").display(),
        qdb = q.url(),
        spool = dir.path().join("spool").display(),
        token = token.display(),
    ))
    .unwrap();
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
