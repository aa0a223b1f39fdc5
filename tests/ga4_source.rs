//! The GA4 source against a local server replaying `runReport`: one request per day, offset
//! pagination over pages, the property quota read from every answer and polling paused before
//! it runs out; funnel rows land in a real QuestDB.

mod common;

use axum::Router;
use axum::routing::post;
use common::*;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

fn row(date_hour: &str, sm: &str, ev: &str, n: u64) -> serde_json::Value {
    serde_json::json!({"dimensionValues": [{"value": date_hour}, {"value": sm}, {"value": ev}], "metricValues": [{"value": n.to_string()}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_per_day_and_pauses_before_the_quota_is_gone() {
    let q = QuestDb::start().await;
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let app = Router::new()
        .route(
            "/token",
            post(|| async { axum::Json(serde_json::json!({"access_token": "ga-access", "expires_in": 3600})) }),
        )
        .route(
            "/v1beta/properties/314159265:runReport",
            post(move |body: axum::Json<serde_json::Value>| {
                let seen = s2.clone();
                async move {
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.push(body.0.clone());
                        s.len()
                    };
                    let day = body.0["dateRanges"][0]["startDate"].as_str().unwrap().replace('-', "");
                    let offset: u64 = body.0["offset"].as_str().unwrap().parse().unwrap();
                    let h = |hh: &str| format!("{day}{hh}");
                    let (rows, remaining) = match (n, offset) {
                        (1, 0) => (vec![
                            row(&h("10"), "google / cpc", "session_start", 120),
                            row(&h("10"), "google / cpc", "view_item", 66),
                            row(&h("10"), "google / cpc", "add_to_cart", 2),
                        ], 4000),
                        (_, 3) => (vec![
                            row(&h("11"), "facebook / paid_social", "session_start", 90),
                            row(&h("11"), "facebook / paid_social", "purchase", 1),
                        ], 3900),
                        // the second day: one page, and the hourly quota is nearly gone
                        _ => (vec![row(&h("09"), "(direct) / (none)", "session_start", 40)], 150),
                    };
                    let count = if n <= 2 { 5 } else { 1 };
                    axum::Json(serde_json::json!({
                        "dimensionHeaders": [{"name": "dateHour"}, {"name": "sessionSourceMedium"}, {"name": "eventName"}],
                        "metricHeaders": [{"name": "eventCount", "type": "TYPE_INTEGER"}],
                        "rows": rows,
                        "rowCount": count,
                        "metadata": {"currencyCode": "INR", "timeZone": "Asia/Kolkata"},
                        "propertyQuota": {
                            "tokensPerDay": {"consumed": 12, "remaining": 199000},
                            "tokensPerHour": {"consumed": 12, "remaining": remaining}
                        },
                        "kind": "analyticsData#runReport"
                    }))
                }
            }),
        );
    let base = serve_fake(app).await;

    let dir = tempfile::tempdir().unwrap();
    let oauth = google_oauth_toml(dir.path(), &base, ("cid-value", "cs-value", "rt-value"));
    let keys =
        format!("property_id = \"314159265\"\n{oauth}lookback_days = 2\ninterval_secs = 1\n");
    let running = start_source(dir.path(), &q, ("ga4", "ga4"), &base, &keys).await;
    q.wait_for_count("SELECT count() FROM funnel", 6.0).await;
    // the next poll is held back: the source reports the throttle instead of calling again
    wait_metrics(running.addr, "the quota pause", |m| {
        (metric(
            m,
            "adpulse_source_polls_total{result=\"error\",source=\"ga4\"}",
        )? >= 1.0)
            .then_some(())
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        3,
        "day 1 in two pages, day 2 in one, then paused"
    );
    assert_eq!(seen[0]["offset"], "0");
    assert_eq!(seen[1]["offset"], "3");
    assert_eq!(seen[0]["returnPropertyQuota"], true);
    for s in &seen {
        assert_eq!(
            s["dateRanges"][0]["startDate"], s["dateRanges"][0]["endDate"],
            "one day per request"
        );
    }
    let rows = q
        .rows("SELECT stage, traffic_source, count, bucket FROM funnel WHERE stage = 'purchase'")
        .await;
    assert_eq!(rows[0][1], "facebook / paid_social");
    assert_eq!(rows[0][2], 1);
    assert_eq!(rows[0][3], "hour");
    let ts = q.rows("SELECT ts FROM funnel WHERE count = 120").await;
    assert!(
        ts[0][0].as_str().unwrap().ends_with("04:30:00.000000Z"),
        "10:00 in India is 04:30 UTC: {:?}",
        ts[0][0]
    );
    running.stop().await;
}
