//! The Google Ads source against a local server replaying the documented REST formats: OAuth
//! refresh-token flow, developer-token and login-customer-id headers, a RESOURCE_EXHAUSTED quota
//! error whose retryDelay is honoured, then searchStream batches; the totals in a real QuestDB
//! equal the fixture's to the paisa.

mod common;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

async fn serve(seen: Seen) -> String {
    let s2 = seen.clone();
    let app = Router::new()
        .route(
            "/token",
            post(|body: String| async move {
                if body.contains("refresh_token=rt-secret") && body.contains("grant_type=refresh_token") {
                    axum::Json(serde_json::json!({"access_token": "ya29.access", "expires_in": 3599, "token_type": "Bearer"})).into_response()
                } else {
                    (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "invalid_grant"}))).into_response()
                }
            }),
        )
        .route(
            "/v21/customers/1234567890/googleAds:searchStream",
            post(move |headers: HeaderMap, body: String| {
                let seen = s2.clone();
                async move {
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.push((headers, body));
                        s.len()
                    };
                    let resp: Response = if n == 1 {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure","errors":[{"errorCode":{"quotaError":"RESOURCE_EXHAUSTED"},"message":"Too many requests.","details":{"quotaErrorDetails":{"rateScope":"ACCOUNT","rateName":"Number of operations for basic access","retryDelay":"2s"}}}]}]}}"#,
                        )
                            .into_response()
                    } else {
                        // the ad query (FROM ad_group_ad) and the campaign query (FROM campaign)
                        let file = if seen.lock().unwrap()[n - 1].1.contains("FROM ad_group_ad") {
                            "search_stream_ads.json"
                        } else {
                            "search_stream.json"
                        };
                        let body = std::fs::read_to_string(repo().join("tests/fixtures/google_ads").join(file)).unwrap();
                        ([("content-type", "application/json")], body).into_response()
                    };
                    resp
                }
            }),
        );
    serve_fake(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_wait_then_exact_totals_in_questdb() {
    let q = QuestDb::start().await;
    let seen: Seen = Arc::default();
    let base = serve(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let oauth = google_oauth_toml(
        dir.path(),
        &base,
        ("client-123.apps", "client-secret", "rt-secret"),
    );
    let keys = format!(
        r#"customer_id = "123-456-7890"
login_customer_id = "999-000-1111"
{oauth}developer_token_file = "{dt}"
account_timezone = "Asia/Kolkata"
interval_secs = 600
hourly_days = 0
min_throttle_wait_secs = 1
"#,
        dt = secret_file(dir.path(), "dt", "dev-token-abc"),
    );
    let running = start_source(dir.path(), &q, ("google_ads", "google"), &base, &keys).await;
    q.wait_for_count("SELECT count() FROM campaign_stats", 3.0)
        .await;
    let rows = q
        .rows("SELECT sum(spend), sum(conversion_value), sum(clicks), sum(conversions) FROM campaign_stats")
        .await;
    assert_eq!(rows[0][0], "19764.240000", "8036.12 + 3625.57 + 8102.55");
    assert_eq!(rows[0][1], "1212.500000");
    assert_eq!(rows[0][2], 2963);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        3,
        "one quota error, the ad query retried, the campaign query"
    );
    assert!(seen[1].1.contains("FROM ad_group_ad"), "{}", seen[1].1);
    assert!(
        seen[1].1.contains("ad_group.id") && seen[1].1.contains("ad_group_ad.ad.id"),
        "{}",
        seen[1].1
    );
    assert!(seen[2].1.contains("FROM campaign "), "{}", seen[2].1);
    // ad level: the ad rows, and the campaign that has ads is their exact sum (computed here
    // from the fixture body), while Performance Max (no ad rows) keeps its campaign rows
    let body: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/google_ads/search_stream_ads.json"))
            .unwrap(),
    )
    .unwrap();
    let mut micros = 0i64;
    let mut ads = 0;
    for b in body.as_array().unwrap() {
        for r in b["results"].as_array().unwrap() {
            micros += r["metrics"]["costMicros"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap();
            ads += 1;
        }
    }
    let want = rust_decimal::Decimal::new(micros, 6);
    q.wait_for_count("SELECT count() FROM ad_stats", f64::from(ads))
        .await;
    let ads_sum = q
        .rows("SELECT sum(spend) FROM ad_stats WHERE campaign_id = '21000000002'")
        .await;
    let campaign = q
        .rows("SELECT spend FROM campaign_stats WHERE campaign_id = '21000000002'")
        .await;
    let d = |v: &serde_json::Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    assert_eq!(campaign.len(), 1);
    assert_eq!((d(&ads_sum[0][0]), d(&campaign[0][0])), (want, want));
    let groups = q
        .rows("SELECT adset_id, count() FROM ad_stats ORDER BY adset_id")
        .await;
    assert_eq!(
        groups,
        vec![
            vec![serde_json::json!("31000000021"), serde_json::json!(2)],
            vec![serde_json::json!("31000000022"), serde_json::json!(1)]
        ]
    );
    // the retryDelay itself is asserted as a computed wait (platforms::google::tests,
    // sources::http::loop_tests), not with the wall clock
    let h = &seen[1].0;
    assert_eq!(h["authorization"], "Bearer ya29.access");
    assert_eq!(h["developer-token"], "dev-token-abc");
    assert_eq!(h["login-customer-id"], "9990001111");
    assert!(seen[1].1.contains("segments.date BETWEEN"), "{}", seen[1].1);
    let (_, m) = get(&format!("http://{}/metrics", running.addr)).await;
    for secret in ["client-secret", "rt-secret", "dev-token-abc", "ya29.access"] {
        assert!(!m.contains(secret));
    }
    running.stop().await;
}
