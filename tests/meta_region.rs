//! The Meta region report (`region_report = true`) against a local Graph API replaying the
//! documented insights format (`level=campaign`, `time_increment=1`, `breakdowns=region`), into a
//! real QuestDB: a rate-limit answer (HTTP 429, code 4) then three cursor pages, one of them with
//! a row whose `spend` is not a number. Expected figures come from the fixture JSON
//! (`tests/fixtures/meta/region_*.json`), summed here, not from the parser under test.

mod common;
#[path = "support/regions.rs"]
mod regions;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::*;
use regions::*;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const ACCOUNT: &str = "act_2233445566";
/// The unreadable row of page 3 (campaign 120230000000202, Gujarat, the second fixture day).
const BAD_SPEND: &str = "\"4,87.65\"";
const FIXED_SPEND: &str = "\"500.00\"";

#[derive(Clone)]
struct Fake {
    /// The fixture days, moved to the two days before today (India), so they are in the window.
    days: (String, String),
    /// Once set, page 3 carries the corrected row.
    fixed: Arc<AtomicBool>,
    region_calls: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Fake {
    fn fixture(&self, name: &str) -> String {
        let text = std::fs::read_to_string(repo().join("tests/fixtures/meta").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = text
            .replace("2026-11-18", &self.days.0)
            .replace("2026-11-19", &self.days.1);
        if self.fixed.load(Ordering::SeqCst) {
            text.replace(BAD_SPEND, FIXED_SPEND)
        } else {
            text
        }
    }
}

async fn insights(State(f): State<Fake>, Query(q): Query<HashMap<String, String>>) -> Response {
    f.log.lock().unwrap().push(q.clone());
    let json = |name: &str| json_ok(f.fixture(name));
    match (
        q.get("level").map(String::as_str),
        q.get("breakdowns").map(String::as_str),
    ) {
        // the main report asks for ads; campaign-level rows (no ad_id) are campaign rows only,
        // so its campaign days are the totals' figures
        (Some("ad"), None) | (Some("campaign"), None) => json("region_totals.json"),
        (Some("campaign"), Some("region")) => {
            if f.region_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    r#"{"error":{"message":"(#4) Application request limit reached","type":"OAuthException","is_transient":true,"code":4,"fbtrace_id":"AbC"}}"#,
                )
                    .into_response();
            }
            match q.get("after").map(String::as_str) {
                None => json("region_page1.json"),
                Some("QVFIUmRE") => json("region_page2.json"),
                Some("QVFIUmRF") => json("region_page3.json"),
                Some(other) => {
                    (StatusCode::BAD_REQUEST, format!("unknown cursor {other}")).into_response()
                }
            }
        }
        other => (StatusCode::BAD_REQUEST, format!("unexpected {other:?}")).into_response(),
    }
}

fn dec(v: &serde_json::Value) -> Decimal {
    Decimal::from_str(v.as_str().expect("a number as a string")).expect("a decimal")
}

/// (campaign, account day, region) -> (spend, omni_purchase value, impressions, clicks), summed
/// from the fixture pages as the test reads them, leaving out rows whose spend is no number.
fn fixture_figures(f: &Fake, names: &[&str], region: Option<&str>) -> Figures {
    let mut out = Figures::new();
    for name in names {
        let page: serde_json::Value = serde_json::from_str(&f.fixture(name)).unwrap();
        for r in page["data"].as_array().unwrap() {
            let Some(spend) = r["spend"].as_str().and_then(|s| Decimal::from_str(s).ok()) else {
                continue;
            };
            let value = r["action_values"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["action_type"] == "omni_purchase")
                .map_or(Decimal::ZERO, |a| dec(&a["value"]));
            let whole = |k: &str| r[k].as_str().unwrap().parse::<u64>().unwrap();
            let key = (
                r["campaign_id"].as_str().unwrap().to_string(),
                r["date_start"].as_str().unwrap().to_string(),
                region
                    .map(str::to_string)
                    .unwrap_or_else(|| r["region"].as_str().unwrap().to_string()),
            );
            let e = out.entry(key).or_default();
            e.0 += spend;
            e.1 += value;
            e.2 += whole("impressions");
            e.3 += whole("clicks");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_report_pages_through_a_429_keeps_good_rows_and_adds_up_to_the_campaign_days() {
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive();
    let day = |n: u64| (today - chrono::Days::new(n)).to_string();
    let (d1, d2) = (day(2), day(1));
    let f = Fake {
        days: (d1.clone(), d2.clone()),
        fixed: Arc::default(),
        region_calls: Arc::default(),
        log: Arc::default(),
    };
    let app = axum::Router::new()
        .route(
            &format!("/v25.0/{ACCOUNT}/insights"),
            axum::routing::get(insights),
        )
        .with_state(f.clone());
    let base = serve_fake(app).await;
    let q = QuestDb::start().await;
    let dir = tempfile::tempdir().unwrap();
    let entry = meta_source_toml(
        dir.path(),
        ACCOUNT,
        &base,
        "account_timezone = \"Asia/Kolkata\"\nregion_report = true\nlookback_days = 3\n\
         interval_secs = 600\nmin_throttle_wait_secs = 1\n",
    );
    let cfg = || source_test_config(dir.path(), Some(&q.url()), &entry);
    let running = adpulse::app::start(cfg()).await.unwrap();

    // the 429 and then the unreadable row: two failed polls of the region report. After the
    // second, the days from the unreadable row's (the second fixture day) to today stay
    // incomplete; the first fixture day is complete. The main report is held back by neither.
    wait_metrics(
        running.addr,
        "two failed region polls and the main poll",
        |m| {
            let errors = metric(
                m,
                "adpulse_source_polls_total{result=\"error\",source=\"meta.regions\"}",
            )?;
            let incomplete = metric(m, "adpulse_source_incomplete_days{source=\"meta.regions\"}")?;
            let main = metric(m, "adpulse_source_incomplete_days{source=\"meta\"}")?;
            (errors == 2.0 && incomplete == 2.0 && main == 0.0).then_some(())
        },
    )
    .await;

    // 11 readable region rows, each its own (campaign, day, region), plus a remainder for each of
    // the 3 campaign days without an unreadable row
    let regions = fixture_figures(
        &f,
        &[
            "region_page1.json",
            "region_page2.json",
            "region_page3.json",
        ],
        None,
    );
    assert_eq!(regions.len(), 11);
    let totals = fixture_figures(&f, &["region_totals.json"], Some("unreported"));
    let bad_day = ("120230000000202".to_string(), d2.clone());
    let count = format!("SELECT count() FROM region_stats WHERE account = '{ACCOUNT}'");
    q.wait_for_count(&count, (regions.len() + 3) as f64).await;
    q.wait_for_count(
        &format!("SELECT count() FROM campaign_stats WHERE account = '{ACCOUNT}'"),
        4.0,
    )
    .await;

    let stored = stored_regions(&q, Some(ACCOUNT)).await;
    for (k, want) in &regions {
        assert_eq!(stored.get(k), Some(want), "{k:?}");
    }
    for ((c, d, _), t) in &totals {
        let key = (c.clone(), d.clone(), "unreported".to_string());
        if (c.clone(), d.clone()) == bad_day {
            assert_eq!(
                stored.get(&key),
                None,
                "no remainder beside an unreadable row"
            );
            continue;
        }
        // the remainder, by hand from the fixture: the total less its reported regions
        let placed = regions
            .iter()
            .filter(|((rc, rd, _), _)| rc == c && rd == d)
            .fold((Decimal::ZERO, Decimal::ZERO, 0, 0), |a, (_, v)| {
                (a.0 + v.0, a.1 + v.1, a.2 + v.2, a.3 + v.3)
            });
        let want = (
            t.0 - placed.0,
            t.1 - placed.1,
            t.2 - placed.2,
            t.3 - placed.3,
        );
        assert_eq!(stored.get(&key), Some(&want), "{key:?}");
    }
    // Meta's own "Unknown" is a region like the others; the second day's 79.32 it left out is
    // the remainder (3,999.99 - 2,100.00 - 1,500.50 - 320.17)
    let a2 = (
        "120230000000101".to_string(),
        d2.clone(),
        "unreported".to_string(),
    );
    assert_eq!(stored[&a2].0, Decimal::new(7932, 2));

    // the invariant, in SQL: every complete campaign day's regions add up to its campaign row
    let sums = sums_against_campaign_rows(&q, Some(ACCOUNT)).await;
    assert_eq!(sums.len(), 4);
    for (k, (regions_sum, campaign_row)) in &sums {
        if *k == bad_day {
            assert_ne!(
                regions_sum, campaign_row,
                "the unreadable row's day is short"
            );
        } else {
            assert_eq!(regions_sum, campaign_row, "{k:?}");
        }
    }

    // the ledger names the row and leaves its day to be read again
    let incomplete = ledger_incomplete(dir.path(), "meta.regions");
    let (first, reason) = incomplete.first().expect("an incomplete region day");
    assert_eq!(*first, d2);
    for part in [
        "page 3 row 2",
        "120230000000202",
        "Gujarat",
        "spend",
        "4,87.65",
    ] {
        assert!(reason.contains(part), "{part:?} not in {reason:?}");
    }
    assert!(ledger_incomplete(dir.path(), "meta").is_empty());

    // the request: campaign level, daily, by region, with the purchase values and currency
    let log = f.log.lock().unwrap().clone();
    let region_reqs: Vec<_> = log
        .iter()
        .filter(|r| r.get("breakdowns").map(String::as_str) == Some("region"))
        .collect();
    assert_eq!(region_reqs.len(), 1 + 3, "the 429, then 3 pages");
    let r = region_reqs[1];
    assert_eq!(r["time_increment"], "1");
    assert!(r["fields"].contains("action_values") && r["fields"].contains("account_currency"));
    assert_eq!(
        region_reqs[2].get("after").map(String::as_str),
        Some("QVFIUmRE")
    );
    assert_eq!(
        region_reqs[3].get("after").map(String::as_str),
        Some("QVFIUmRF")
    );
    running.stop().await;

    // restarted after the platform serves the row readably: the incomplete day is read again
    f.fixed.store(true, Ordering::SeqCst);
    let running = adpulse::app::start(cfg()).await.unwrap();
    wait_days_complete(dir.path(), "meta.regions").await;
    let gujarat = (bad_day.0.clone(), bad_day.1.clone(), "Gujarat".to_string());
    q.wait_for_count(&count, (regions.len() + 1 + 4) as f64)
        .await;
    let stored = stored_regions(&q, Some(ACCOUNT)).await;
    assert_eq!(stored[&gujarat].0, Decimal::new(50000, 2));
    let sums = sums_against_campaign_rows(&q, Some(ACCOUNT)).await;
    for (k, (regions_sum, campaign_row)) in &sums {
        assert_eq!(regions_sum, campaign_row, "{k:?}");
    }
    let since = f
        .log
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r.get("breakdowns").map(String::as_str) == Some("region"))
        .map(|r| r["time_range"].clone())
        .unwrap();
    assert!(since.contains(&format!("\"since\":\"{d1}\"")), "{since}");
    running.stop().await;
}
