//! The Google Ads region report (`region_report = true`) against a local server replaying the
//! documented REST formats (OAuth refresh-token flow, `searchStream` for `user_location_view`
//! by `segments.geo_target_region`, `campaign` and `geo_target_constant`), into a real QuestDB.
//! Expected figures come from the fixture JSON (`tests/fixtures/google_ads/
//! user_location_view_regions.json`, `search_stream.json`, `geo_target_constants.json`), summed
//! here from `costMicros` and `conversionsValue`, not from the parser under test.

mod common;
#[path = "support/regions.rs"]
mod regions;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use regions::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const QUOTA: &str = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure","errors":[{"errorCode":{"quotaError":"RESOURCE_EXHAUSTED"},"message":"Too many requests.","details":{"quotaErrorDetails":{"rateScope":"ACCOUNT","rateName":"Number of operations for basic access","retryDelay":"2s"}}}]}]}}"#;
const INTERNAL: &str =
    r#"{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}"#;

#[derive(Clone)]
struct Fake {
    /// The fixture days, moved to the two days before today (India), so they are in the window.
    days: (String, String),
    /// While set, every `geo_target_constant` query answers 500.
    lookup_fails: Arc<AtomicBool>,
    region_calls: Arc<AtomicUsize>,
    /// The query of every `searchStream` call.
    log: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn new(lookup_fails: bool) -> Fake {
        let today = chrono::Utc::now()
            .with_timezone(&chrono_tz::Asia::Kolkata)
            .date_naive();
        let day = |n: u64| (today - chrono::Days::new(n)).to_string();
        Fake {
            days: (day(2), day(1)),
            lookup_fails: Arc::new(AtomicBool::new(lookup_fails)),
            region_calls: Arc::default(),
            log: Arc::default(),
        }
    }

    fn fixture(&self, name: &str) -> String {
        std::fs::read_to_string(repo().join("tests/fixtures/google_ads").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .replace("2026-11-18", &self.days.0)
            .replace("2026-11-19", &self.days.1)
    }

    fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.fixture(name)).unwrap()
    }

    fn calls(&self, from: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.contains(from))
            .count()
    }
}

async fn search_stream(State(f): State<Fake>, body: String) -> Response {
    let query = serde_json::from_str::<serde_json::Value>(&body).unwrap()["query"]
        .as_str()
        .unwrap()
        .to_string();
    f.log.lock().unwrap().push(query.clone());
    let json = |name: &str| json_ok(f.fixture(name));
    if query.contains("FROM user_location_view") {
        if f.region_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return (StatusCode::TOO_MANY_REQUESTS, QUOTA).into_response();
        }
        json("user_location_view_regions.json")
    } else if query.contains("FROM geo_target_constant") {
        if f.lookup_fails.load(Ordering::SeqCst) {
            return (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL).into_response();
        }
        json("geo_target_constants.json")
    } else if query.contains("FROM ad_group_ad") {
        json("search_stream_ads.json")
    } else if query.contains("FROM campaign ") {
        json("search_stream.json")
    } else {
        (StatusCode::BAD_REQUEST, format!("unexpected query {query}")).into_response()
    }
}

async fn serve(f: Fake) -> String {
    let app = Router::new()
        .route(
            "/token",
            post(|body: String| async move {
                if body.contains("refresh_token=rt-secret") {
                    axum::Json(serde_json::json!({"access_token": "ya29.access", "expires_in": 3599, "token_type": "Bearer"})).into_response()
                } else {
                    (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "invalid_grant"}))).into_response()
                }
            }),
        )
        .route(
            "/v21/customers/1234567890/googleAds:searchStream",
            post(search_stream),
        )
        .with_state(f);
    serve_fake(app).await
}

async fn start(dir: &std::path::Path, q: &QuestDb, base: &str) -> adpulse::app::Running {
    let oauth = google_oauth_toml(dir, base, ("client-123.apps", "client-secret", "rt-secret"));
    let keys = format!(
        "customer_id = \"123-456-7890\"\n{oauth}developer_token_file = \"{dt}\"\n\
         account_timezone = \"Asia/Kolkata\"\nregion_report = true\nlookback_days = 3\n\
         interval_secs = 60\nhourly_days = 0\nmin_throttle_wait_secs = 1\n",
        dt = secret_file(dir, "dt", "dev-token-abc"),
    );
    start_source(dir, q, ("google_ads", "google"), base, &keys).await
}

/// The fake Google Ads API (its name lookups failing when `lookup_fails`), a QuestDB and adpulse
/// polling the fake into it, with its state folder.
async fn start_with_fake(
    lookup_fails: bool,
) -> (Fake, QuestDb, tempfile::TempDir, adpulse::app::Running) {
    let f = Fake::new(lookup_fails);
    let base = serve(f.clone()).await;
    let q = QuestDb::start().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &q, &base).await;
    (f, q, dir, running)
}

/// (campaign, day, region) -> (spend, conversion value, impressions, clicks).
fn micros(v: &serde_json::Value) -> Decimal {
    Decimal::new(
        v.as_str().expect("costMicros as a string").parse().unwrap(),
        6,
    )
}

/// A JSON number (`conversionsValue`) as written, or zero when absent.
fn value(v: &serde_json::Value) -> Decimal {
    if v.is_null() {
        Decimal::ZERO
    } else {
        Decimal::from_str(&v.to_string()).unwrap()
    }
}

fn whole(v: &serde_json::Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

/// The results of a `searchStream` fixture summed by (campaign, day, key of the result).
fn sum_results(
    body: &serde_json::Value,
    key: impl Fn(&serde_json::Value) -> Option<String>,
) -> Figures {
    let mut out = Figures::new();
    for batch in body.as_array().unwrap() {
        for r in batch["results"].as_array().unwrap() {
            let Some(k) = key(r) else { continue };
            let m = &r["metrics"];
            let e = out
                .entry((
                    r["campaign"]["id"].as_str().unwrap().to_string(),
                    r["segments"]["date"].as_str().unwrap().to_string(),
                    k,
                ))
                .or_default();
            e.0 += micros(&m["costMicros"]);
            e.1 += value(&m["conversionsValue"]);
            e.2 += whole(&m["impressions"]);
            e.3 += whole(&m["clicks"]);
        }
    }
    out
}

/// What the fixtures say `region_stats` holds: each region's rows summed under its name
/// (`names`: resource name -> name; a region missing from it keeps its resource name), and per
/// campaign day the `unreported` remainder, the campaign total less its placed regions.
fn expected(f: &Fake, names: &BTreeMap<String, String>) -> Figures {
    let regions = sum_results(&f.json("user_location_view_regions.json"), |r| {
        r["segments"]["geoTargetRegion"]
            .as_str()
            .map(|g| names.get(g).cloned().unwrap_or_else(|| g.to_string()))
    });
    let totals = sum_results(&f.json("search_stream.json"), |_| Some("unreported".into()));
    let mut out = regions.clone();
    for ((c, d, u), t) in totals {
        let placed = regions
            .iter()
            .filter(|((rc, rd, _), _)| *rc == c && *rd == d)
            .fold((Decimal::ZERO, Decimal::ZERO, 0, 0), |a, (_, v)| {
                (a.0 + v.0, a.1 + v.1, a.2 + v.2, a.3 + v.3)
            });
        out.insert(
            (c, d, u),
            // counts cannot go below zero (PMax's second day: regions 700 + 650 clicks against
            // the campaign's 1,290); money is the exact difference
            (
                t.0 - placed.0,
                t.1 - placed.1,
                t.2.saturating_sub(placed.2),
                t.3.saturating_sub(placed.3),
            ),
        );
    }
    out
}

fn geo_names(f: &Fake) -> BTreeMap<String, String> {
    f.json("geo_target_constants.json")[0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let g = &r["geoTargetConstant"];
            (
                g["resourceName"].as_str().unwrap().to_string(),
                g["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_all_days_add_up(sums: &DaySums, f: &Fake) {
    let totals = sum_results(&f.json("search_stream.json"), |_| Some(String::new()));
    assert_eq!(sums.len(), totals.len(), "every campaign day has regions");
    for (k, (regions_sum, campaign_row)) in sums {
        assert_eq!(regions_sum, campaign_row, "{k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_report_waits_out_the_quota_names_regions_and_adds_up_to_the_campaign_days() {
    let (f, q, dir, running) = start_with_fake(false).await;

    let want = expected(&f, &geo_names(&f));
    // 6 (campaign, day, region) keys from 7 placed results (Maharashtra's first day comes as
    // two targeting_location rows), and 3 campaign days' remainders
    assert_eq!(want.len(), 6 + 3);
    q.wait_for_count("SELECT count() FROM region_stats", want.len() as f64)
        .await;
    q.wait_for_count(
        "SELECT count() FROM campaign_stats WHERE bucket = 'day'",
        3.0,
    )
    .await;
    wait_metrics(running.addr, "one good region poll", |m| {
        let ok = polls(m, "google.regions", "ok")?;
        (ok >= 1.0).then_some(())
    })
    .await;
    let stored = stored_regions(&q, None).await;
    assert_eq!(stored, want);
    // by hand from the fixture: PMax's first day, 8,036.12 less Maharashtra (3,120.45 + 180.00),
    // Karnataka (2,890.12); the 845.55 result without a region is in it
    let d1 = f.days.0.clone();
    let key = |c: &str, r: &str| (c.to_string(), d1.clone(), r.to_string());
    assert_eq!(
        stored[&key("21000000001", "unreported")].0,
        Decimal::new(184555, 2)
    );
    assert_eq!(
        stored[&key("21000000001", "Maharashtra")].0,
        Decimal::new(330045, 2)
    );
    assert_eq!(
        stored[&key("21000000001", "Maharashtra")].1,
        Decimal::new(12125, 1)
    );
    assert!(
        stored
            .keys()
            .all(|k| !k.2.starts_with("geoTargetConstants/"))
    );

    assert_all_days_add_up(&sums_against_campaign_rows(&q, None).await, &f);
    assert!(ledger_incomplete(dir.path(), "google.regions").is_empty());
    let (_, m) = get(&format!("http://{}/metrics", running.addr)).await;
    assert_eq!(
        polls(&m, "google.regions", "error").unwrap_or(0.0),
        1.0,
        "the quota answer fails one poll; the next, after its retryDelay, reads the report"
    );
    for secret in ["client-secret", "rt-secret", "dev-token-abc", "ya29.access"] {
        assert!(!m.contains(secret));
    }

    // the requests: the quota answer then the region query again, daily, by region, in window;
    // one name lookup of the 4 regions
    let log = f.log.lock().unwrap().clone();
    let regions: Vec<_> = log
        .iter()
        .filter(|q| q.contains("FROM user_location_view"))
        .collect();
    assert!(regions.len() >= 2, "the 429, then the report: {regions:?}");
    for part in [
        "segments.geo_target_region",
        "segments.date BETWEEN",
        "metrics.cost_micros",
    ] {
        assert!(regions[1].contains(part), "{part:?} not in {}", regions[1]);
    }
    let lookups: Vec<_> = log
        .iter()
        .filter(|q| q.contains("FROM geo_target_constant"))
        .collect();
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    for id in ["20453", "20458", "20460", "20470"] {
        assert!(lookups[0].contains(&format!("'geoTargetConstants/{id}'")));
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_name_lookup_keeps_rows_under_the_resource_name_until_it_recovers() {
    let (f, q, dir, running) = start_with_fake(true).await;

    // every lookup fails: the rows are stored under their resource names, the poll failed and
    // the days from the first unnamed row's to today stay incomplete
    let unnamed = expected(&f, &BTreeMap::new());
    q.wait_for_count("SELECT count() FROM region_stats", unnamed.len() as f64)
        .await;
    wait_metrics(running.addr, "a failed region poll", |m| {
        let errors = polls(m, "google.regions", "error")?;
        let incomplete = metric(
            m,
            "adpulse_source_incomplete_days{source=\"google.regions\"}",
        )?;
        let main = metric(m, "adpulse_source_incomplete_days{source=\"google\"}")?;
        (errors >= 1.0 && incomplete >= 2.0 && main == 0.0).then_some(())
    })
    .await;
    assert_eq!(stored_regions(&q, None).await, unnamed);
    assert!(
        unnamed.keys().any(|k| k.2 == "geoTargetConstants/20453"),
        "{unnamed:?}"
    );
    // the names are unknown, not the money: the days still add up
    assert_all_days_add_up(&sums_against_campaign_rows(&q, None).await, &f);
    let incomplete = ledger_incomplete(dir.path(), "google.regions");
    let days: Vec<_> = incomplete.iter().map(|(d, _)| d.clone()).collect();
    assert!(
        days.contains(&f.days.0) && days.contains(&f.days.1),
        "{days:?}"
    );
    for part in ["geoTargetConstants/", "name not found"] {
        assert!(
            incomplete[0].1.contains(part),
            "{part:?} not in {:?}",
            incomplete[0].1
        );
    }
    assert!(ledger_incomplete(dir.path(), "google").is_empty());
    let failed_lookups = f.calls("FROM geo_target_constant");
    assert!(failed_lookups >= 1);

    // the lookup recovers: the next poll (the interval later) writes the named regions and
    // zeroes the rows stored under the resource names
    f.lookup_fails.store(false, Ordering::SeqCst);
    let named = expected(&f, &geo_names(&f));
    let mut want = named.clone();
    for (c, d, r) in unnamed.keys() {
        if r.starts_with("geoTargetConstants/") {
            want.insert((c.clone(), d.clone(), r.clone()), Default::default());
        }
    }
    let stored = eventually(
        "the named regions and the zeroed resource-name rows",
        Duration::from_secs(180),
        || async {
            let s = stored_regions(&q, None).await;
            (s == want).then_some(s)
        },
    )
    .await;
    assert_eq!(stored.len(), named.len() + (unnamed.len() - 3));
    wait_days_complete(dir.path(), "google.regions").await;
    assert_all_days_add_up(&sums_against_campaign_rows(&q, None).await, &f);
    assert!(f.calls("FROM geo_target_constant") > failed_lookups);
    running.stop().await;
}
