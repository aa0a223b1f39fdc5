//! The Shopify source against a local GraphQL server replaying the documented formats: 3 cursor
//! pages, a THROTTLED response waited out by the cost bucket's restore rate and an HTTP 429 with
//! `Retry-After`, both resumed from the same page cursor; refunds and cancellations on their own
//! days; net revenue in a real QuestDB equal to the fixtures' to the paisa; a second poll
//! (restatement), once QuestDB acknowledged its rows, adds nothing.

mod common;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::post;
use common::*;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/shopify").join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_throttle_refunds_and_exact_net_revenue() {
    let q = QuestDb::start().await;
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let app = Router::new().route(
        "/admin/api/2025-10/graphql.json",
        post(
            move |headers: HeaderMap, body: axum::Json<serde_json::Value>| {
                let seen = s2.clone();
                async move {
                    let token = header(&headers, "x-shopify-access-token");
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.push((token, body.0.clone()));
                        s.len()
                    };
                    let after = body.0["variables"]["after"].as_str().map(str::to_string);
                    if n == 4 {
                        // HTTP 429 on page 3: the poll must resume from page 3's cursor
                        return (
                            axum::http::StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1.0")],
                            String::new(),
                        )
                            .into_response();
                    }
                    let file = match (n, after.as_deref()) {
                        (2, _) => "throttled.json",
                        (_, None) => "orders_page1.json",
                        (_, Some("eyJsYXN0X2lkIjo1MDAyfQ==")) => "orders_page2.json",
                        (_, Some(_)) => "orders_page3.json",
                    };
                    ([("content-type", "application/json")], fixture(file)).into_response()
                }
            },
        ),
    );
    let base = serve_fake(app).await;

    let dir = tempfile::tempdir().unwrap();
    let token = secret_file(dir.path(), "token", "shpat_secret_123\n");
    let keys = format!(
        "shop_domain = \"moi-jewellery.myshopify.com\"\naccess_token_file = \"{token}\"\n\
         interval_secs = 1\n"
    );
    let running = start_source(dir.path(), &q, ("shopify", "shop"), &base, &keys).await;
    // 4 orders + 1 refund + 1 cancellation
    q.wait_for_count("SELECT count() FROM orders", 6.0).await;
    // let a second poll (the restatement look-back) land: QuestDB acknowledged its 6 rows too
    // (12 written in all), and the table still holds 6
    wait_metrics(running.addr, "the second poll's rows acknowledged", |m| {
        let polls = polls(m, "shop", "ok")?;
        let written = metric(
            m,
            "adpulse_sink_rows_written_total{sink=\"questdb\",table=\"orders\"}",
        )?;
        (polls >= 2.0 && written >= 12.0).then_some(())
    })
    .await;
    assert_eq!(q.number("SELECT count() FROM orders").await, Some(6.0));
    let net = q.rows("SELECT sum(amount) FROM orders").await;
    assert_eq!(net[0][0], "7297.790000");
    // the refund lands on its own day, with the UTM of the order's landing page
    let refund = "SELECT day, amount, utm_campaign FROM orders WHERE kind = 'refund'";
    assert_eq!(
        q.rows(refund).await[0],
        ["2026-11-21", "-749.700000", "21000000001"]
    );
    let cancel = "SELECT day, amount FROM orders WHERE kind = 'cancellation'";
    assert_eq!(q.rows(cancel).await[0], ["2026-11-20", "-1299.000000"]);
    // 18:40 UTC is past midnight in India
    let late = "SELECT day FROM orders WHERE order_id = '#1004'";
    assert_eq!(q.rows(late).await[0], ["2026-11-21"]);

    let seen = seen.lock().unwrap().clone();
    // the throttled page is asked again with the same cursor (the wait is a computed one:
    // shopify::tests), and the search has both bounds
    assert_eq!(
        seen[2].1["variables"]["after"],
        seen[1].1["variables"]["after"]
    );
    assert!(seen[3].1["variables"]["after"].is_string());
    assert_eq!(
        seen[4].1["variables"]["after"], seen[3].1["variables"]["after"],
        "after an HTTP 429 on page 3 the poll goes on from page 3, not from page 1"
    );
    assert_eq!(seen[0].0, "shpat_secret_123");
    let query = seen[0].1["variables"]["query"].as_str().unwrap();
    assert!(
        query.starts_with("updated_at:>=") && query.contains(" AND updated_at:<"),
        "{query}"
    );
    let (_, m) = get(&format!("http://{}/metrics", running.addr)).await;
    assert!(!m.contains("shpat_secret_123"));
    running.stop().await;
}
