//! The replay suite: every API source (Meta insights, Google Ads `searchStream`, GA4 `runReport`,
//! Shopify Admin GraphQL orders) runs for real — `adpulse backfill`, through normalize, the
//! pipeline and the QuestDB sink into a real QuestDB, with the completeness ledger — against one
//! local HTTP server that replays the bodies in `tests/fixtures/replay/<source>/` (written from
//! the platforms' documented formats, see the README there), with their pagination, throttles and
//! error elements. Each case compares QuestDB's totals per day with sums this file computes on its
//! own from the same bodies (serde_json + rust_decimal), to the paisa; a partial answer must leave
//! its days incomplete in the ledger and make the backfill fail naming them.
//!
//! Run `cargo test --test replay -- --nocapture` to see the per-source table of cases that
//! `docs/replay.md` reproduces.

mod common;

use adpulse::commands::backfill::backfill;
use adpulse::config::Config;
use adpulse::sources::ledger::Ledger;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use common::*;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const IST: Tz = chrono_tz::Asia::Kolkata;

fn fixture(path: &str) -> Value {
    let p = repo().join("tests/fixtures/replay").join(path);
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// The pages of a Meta insights edge (`act_x_daily_p1.json`, `_p2`, ...), in order.
fn meta_pages(act: &str, kind: &str) -> Vec<Value> {
    (1..)
        .map(|i| format!("meta/{act}_{kind}_p{i}.json"))
        .take_while(|p| repo().join("tests/fixtures/replay").join(p).is_file())
        .map(|p| fixture(&p))
        .collect()
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => Decimal::from_str(s).unwrap_or_else(|e| panic!("{s:?}: {e}")),
        Value::Number(n) => Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .unwrap_or_else(|e| panic!("{n}: {e}")),
        Value::Null => Decimal::ZERO,
        other => panic!("not a number: {other}"),
    }
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

// ---------------------------------------------------------------------------------------------
// The fake platforms

/// Switches of the fake server (what it does the next time) and the log of what it was asked.
#[derive(Clone, Default)]
struct Fake {
    log: Arc<Mutex<Vec<String>>>,
    /// Meta act_1001's next call answers a throttle (usage 100%, "0 minutes").
    meta_throttle: Arc<AtomicBool>,
    /// Every Meta act_1001 call answers that throttle, until cleared.
    meta_throttle_all: Arc<AtomicBool>,
    /// Google Ads answers HTTP 200 with an error object as the stream's last element.
    google_broken: Arc<AtomicBool>,
    /// GA4's last page of 2026-11-16 says tokensPerProjectPerHour is nearly gone.
    ga4_low_quota: Arc<AtomicBool>,
    /// Shopify's next request for page 2 answers THROTTLED.
    shopify_throttle: Arc<AtomicBool>,
    /// Shopify's next request for page 3 answers HTTP 429 with `Retry-After: 1`.
    shopify_429: Arc<AtomicBool>,
    /// Google Ads' next call answers HTTP 429 with the array-form quota error (`retryDelay` 3s).
    google_quota: Arc<AtomicBool>,
}

impl Fake {
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// `GET /v25.0/{act}/insights`: the fixture pages, rows filtered to `time_range`, `after` cursor
/// pagination; usage headers on every answer.
async fn meta_insights(
    State(f): State<Fake>,
    Path(act): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let kind = if q.get("breakdowns").map(String::as_str)
        == Some("hourly_stats_aggregated_by_advertiser_time_zone")
    {
        "hourly"
    } else {
        "daily"
    };
    let after = q.get("after").cloned();
    f.note(format!(
        "meta {act} {kind} after={}",
        after.as_deref().unwrap_or("-")
    ));
    if act == "act_1001"
        && (f.meta_throttle.swap(false, Ordering::SeqCst)
            || f.meta_throttle_all.load(Ordering::SeqCst))
    {
        // code 80000 with the business-use-case header at 100% and "0 minutes" to regain access
        return (
            StatusCode::BAD_REQUEST,
            [(
                "x-business-use-case-usage",
                r#"{"1001":[{"type":"ads_insights","call_count":100,"total_cputime":44,"total_time":61,"estimated_time_to_regain_access":0}]}"#,
            )],
            r#"{"error":{"message":"(#80000) There have been too many calls from this ad-account. Wait a bit and try again.","type":"OAuthException","code":80000,"error_subcode":2446079,"fbtrace_id":"ARePlay1"}}"#,
        )
            .into_response();
    }
    let tr: Value = serde_json::from_str(&q["time_range"]).unwrap();
    let (since, until) = (
        day(tr["since"].as_str().unwrap()),
        day(tr["until"].as_str().unwrap()),
    );
    let pages = meta_pages(&act, kind);
    let i = match &after {
        None => 0,
        Some(a) => {
            pages
                .iter()
                .position(|p| p["paging"]["cursors"]["after"] == a.as_str())
                .expect("unknown cursor")
                + 1
        }
    };
    let mut page = pages[i].clone();
    let rows: Vec<Value> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| (since..=until).contains(&day(r["date_start"].as_str().unwrap())))
        .cloned()
        .collect();
    page["data"] = Value::Array(rows);
    (
        [
            (
                "x-business-use-case-usage",
                r#"{"1001":[{"type":"ads_insights","call_count":0,"total_cputime":0,"total_time":0,"estimated_time_to_regain_access":0}]}"#,
            ),
            (
                "x-ad-account-usage",
                r#"{"acc_id_util_pct":0,"reset_time_duration":0,"ads_api_access_tier":"standard_access"}"#,
            ),
        ],
        axum::Json(page),
    )
        .into_response()
}

/// `POST /v21/customers/{id}/googleAds:searchStream`: the customer's stream, its hourly stream
/// when the query selects `segments.hour`.
async fn google_stream(
    State(f): State<Fake>,
    Path(customer): Path<String>,
    body: String,
) -> Response {
    let v: Value = serde_json::from_str(&body).unwrap();
    let q = v["query"].as_str().unwrap_or_default();
    let range = q.split("BETWEEN").nth(1).unwrap_or_default().trim();
    f.note(format!("google {range}"));
    if f.google_quota.swap(false, Ordering::SeqCst) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(fixture("google_ads/quota_exhausted_array.json")),
        )
            .into_response();
    }
    let file = if customer == "5550001111" && f.google_broken.load(Ordering::SeqCst) {
        format!("google_ads/{customer}_stream_error_last.json")
    } else if q.contains("FROM campaign ")
        && repo()
            .join(format!(
                "tests/fixtures/replay/google_ads/{customer}_stream_campaigns.json"
            ))
            .is_file()
    {
        format!("google_ads/{customer}_stream_campaigns.json")
    } else if q.contains("segments.hour") {
        format!("google_ads/{customer}_stream_hourly.json")
    } else {
        format!("google_ads/{customer}_stream.json")
    };
    axum::Json(fixture(&file)).into_response()
}

/// `POST /v1beta/properties/{id}:runReport`: the day's fixture (`_date` for the `date`
/// dimension), `offset`/`limit` pagination.
async fn ga4_report(
    State(f): State<Fake>,
    Path(prop): Path<String>,
    axum::Json(b): axum::Json<Value>,
) -> Response {
    let prop = prop.strip_suffix(":runReport").expect("a runReport call");
    let d = b["dateRanges"][0]["startDate"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        b["dateRanges"][0]["endDate"], d,
        "one day per runReport request"
    );
    let offset: usize = b["offset"].as_str().unwrap().parse().unwrap();
    let limit: usize = b["limit"].as_str().unwrap().parse().unwrap();
    f.note(format!("ga4 {d} offset={offset}"));
    let by_date = if b["dimensions"][0]["name"] == "date" {
        "_date"
    } else {
        ""
    };
    let mut body = fixture(&format!("ga4/{prop}_{d}{by_date}.json"));
    let rows = body["rows"].as_array().unwrap().clone();
    let end = (offset + limit).min(rows.len());
    body["rows"] = Value::Array(rows[offset.min(end)..end].to_vec());
    if d == "2026-11-16" && end == rows.len() && f.ga4_low_quota.load(Ordering::SeqCst) {
        body["propertyQuota"] = fixture("ga4/quota_project_low.json");
    }
    axum::Json(body).into_response()
}

/// `POST /admin/api/{version}/graphql.json`: the orders pages by `variables.after`.
async fn shopify_graphql(State(f): State<Fake>, axum::Json(b): axum::Json<Value>) -> Response {
    let pages: Vec<Value> = (1..=3)
        .map(|i| fixture(&format!("shopify/orders_p{i}.json")))
        .collect();
    let after = b["variables"]["after"].as_str().map(str::to_string);
    f.note(format!("shopify after={}", after.as_deref().unwrap_or("-")));
    let i = match &after {
        None => 0,
        Some(a) => {
            pages
                .iter()
                .position(|p| p["data"]["orders"]["pageInfo"]["endCursor"] == a.as_str())
                .expect("unknown cursor")
                + 1
        }
    };
    if i == 1 && f.shopify_throttle.swap(false, Ordering::SeqCst) {
        return axum::Json(fixture("shopify/throttled.json")).into_response();
    }
    if i == 2 && f.shopify_429.swap(false, Ordering::SeqCst) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1.0")],
            r#"{"errors":"Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}"#,
        )
            .into_response();
    }
    axum::Json(pages[i].clone()).into_response()
}

async fn serve(f: Fake) -> String {
    let app = Router::new()
        .route(
            "/token",
            post(|| async {
                axum::Json(serde_json::json!({"access_token": "ya29.replay", "expires_in": 3599, "token_type": "Bearer"}))
            }),
        )
        .route("/v25.0/{act}/insights", get(meta_insights))
        .route(
            "/v21/customers/{customer}/googleAds:searchStream",
            post(google_stream),
        )
        .route("/v1beta/properties/{prop}", post(ga4_report))
        .route("/admin/api/{version}/graphql.json", post(shopify_graphql))
        .with_state(f);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// The OAuth client id of the Google sources (they read it from a variable only).
fn set_client_id() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, first thing in the tests that start Google sources, before they read it.
    ONCE.call_once(|| unsafe {
        std::env::set_var("ADPULSE_TEST_REPLAY_CLIENT_ID", "replay-client.apps")
    });
}

const RATES: [(&str, &str); 3] = [("USD", "83.50"), ("EUR", "90.25"), ("JPY", "0.5575")];

fn rate(currency: &str) -> Decimal {
    if currency == "INR" {
        return Decimal::ONE;
    }
    RATES
        .iter()
        .find(|(c, _)| *c == currency)
        .map(|(_, r)| Decimal::from_str(r).unwrap())
        .unwrap_or_else(|| panic!("no test rate for {currency}"))
}

fn config(dir: &std::path::Path, qdb: &str, base: &str) -> Config {
    let secret = |name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{name}-replay-secret")).unwrap();
        p.display().to_string()
    };
    let meta = |name: &str, act: &str, tz: &str, hourly: u32| {
        format!(
            r#"
[[sources]]
type = "meta"
name = "{name}"
account_id = "{act}"
base_url = "{base}"
access_token_file = "{token}"
account_timezone = "{tz}"
hourly_days = {hourly}
min_throttle_wait_secs = 1
max_throttle_wait_secs = 60
"#,
            token = secret("meta_token")
        )
    };
    let fx: String = RATES
        .iter()
        .map(|(c, r)| format!("{c} = \"{r}\"\n"))
        .collect();
    // the OAuth keys every Google source (Ads and GA4) of the replay shares
    let google = format!(
        "base_url = \"{base}\"\ntoken_url = \"{base}/token\"\n\
         client_id_env = \"ADPULSE_TEST_REPLAY_CLIENT_ID\"\nclient_secret_file = \"{cs}\"\n\
         refresh_token_file = \"{rt}\"",
        cs = secret("client_secret"),
        rt = secret("refresh_token"),
    );
    let text = format!(
        r#"
[general]
state_dir = "{state}"
[questdb]
http_url = "{qdb}"
spool_dir = "{spool}"
flush_interval_ms = 50
[fx]
{fx}
{m1}{m2}{m3}{m4}
[[sources]]
type = "google_ads"
name = "gads_eur_berlin"
customer_id = "555-000-1111"
{google}
developer_token_file = "{dt}"
account_timezone = "Europe/Berlin"
account_currency = "EUR"
hourly_days = 0
min_throttle_wait_secs = 1
max_throttle_wait_secs = 60

[[sources]]
type = "ga4"
name = "ga4_kolkata"
property_id = "271828"
{google}
property_timezone = "Asia/Kolkata"
page_limit = 4
min_throttle_wait_secs = 1
max_throttle_wait_secs = 1

[[sources]]
type = "google_ads"
name = "gads_jpy_tokyo"
customer_id = "555-000-2222"
{google}
developer_token_file = "{dt}"
account_timezone = "Asia/Tokyo"
account_currency = "JPY"
hourly_days = 1

[[sources]]
type = "ga4"
name = "ga4_la_daily"
property_id = "314000"
{google}
property_timezone = "America/Los_Angeles"
granularity = "day"

[[sources]]
type = "ga4"
name = "ga4_la_hourly"
property_id = "314000"
{google}
property_timezone = "America/Los_Angeles"
granularity = "hour"

[[sources]]
type = "shopify"
name = "shop_usd_ny"
shop_domain = "replay-us.myshopify.com"
base_url = "{base}"
access_token_file = "{st}"
shop_timezone = "America/New_York"
page_size = 3
min_throttle_wait_secs = 1
max_throttle_wait_secs = 60
"#,
        state = dir.join("state").display(),
        spool = dir.join("spool").display(),
        m1 = meta("meta_usd_la_products", "act_1001", "America/Los_Angeles", 0),
        m2 = meta("meta_jpy_tokyo", "act_2002", "Asia/Tokyo", 1),
        m3 = meta("meta_inr_kolkata", "act_3003", "Asia/Kolkata", 1),
        m4 = meta("meta_usd_la", "act_4004", "America/Los_Angeles", 1),
        dt = secret("developer_token"),
        st = secret("shop_token"),
    );
    let cfg = Config::from_toml_str(&text).unwrap();
    assert_eq!(cfg.problems(), vec![]);
    cfg
}

// ---------------------------------------------------------------------------------------------
// Independent totals, from the bodies

/// What the bodies say about one day.
#[derive(Debug, Default, Clone, PartialEq)]
struct DayTotal {
    /// Rows (or events) in the answer.
    rows: usize,
    /// Distinct keys among them: what the store should hold after summing shared keys.
    keys: usize,
    /// Money in the account (or shop) currency, or an event count for GA4.
    amount: Decimal,
    /// The same in INR.
    amount_inr: Decimal,
    /// Purchase value (Meta: the configured action type only; Google: conversionsValue).
    value: Decimal,
}

impl DayTotal {
    /// One row of its own key: `amount` in a currency worth `inr_rate` INR (1 for event counts).
    fn add_row(&mut self, amount: Decimal, inr_rate: Decimal) {
        self.rows += 1;
        self.keys += 1;
        self.amount += amount;
        self.amount_inr += amount * inr_rate;
    }
}

/// Daily rows of a Meta account from the fixture pages, per `date_start`; purchases of
/// `omni_purchase` only (the source's default), never summed with the overlapping types.
fn meta_daily(act: &str) -> BTreeMap<String, DayTotal> {
    let mut out: BTreeMap<String, DayTotal> = BTreeMap::new();
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for page in meta_pages(act, "daily") {
        for r in page["data"].as_array().unwrap() {
            let d = r["date_start"].as_str().unwrap().to_string();
            let spend = dec(&r["spend"]);
            let value = r["action_values"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["action_type"] == "omni_purchase")
                .map(|a| dec(&a["value"]))
                .unwrap_or_default();
            let cur = r["account_currency"].as_str().unwrap();
            let t = out.entry(d.clone()).or_default();
            t.rows += 1;
            t.amount += spend;
            t.amount_inr += spend * rate(cur);
            t.value += value;
            keys.entry(d)
                .or_default()
                .insert(r["campaign_id"].as_str().unwrap().to_string());
        }
    }
    for (d, k) in keys {
        out.get_mut(&d).unwrap().keys = k.len();
    }
    out
}

/// Hourly rows of a Meta account: (account date, hour, campaign, spend in account currency).
fn meta_hours(act: &str) -> Vec<(NaiveDate, u32, String, Decimal, String)> {
    meta_pages(act, "hourly")
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().clone())
        .map(|r| {
            let h = r["hourly_stats_aggregated_by_advertiser_time_zone"]
                .as_str()
                .unwrap();
            (
                day(r["date_start"].as_str().unwrap()),
                h[0..2].parse().unwrap(),
                r["campaign_id"].as_str().unwrap().to_string(),
                dec(&r["spend"]),
                r["account_currency"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Hourly rows per Indian date of the hour's start (the account's local hour in `tz`).
fn meta_hourly_by_ist_day(act: &str, tz: Tz) -> BTreeMap<String, DayTotal> {
    let mut out: BTreeMap<String, DayTotal> = BTreeMap::new();
    for (d, h, _, spend, cur) in meta_hours(act) {
        let start = tz
            .from_local_datetime(&d.and_hms_opt(h, 0, 0).unwrap())
            .earliest()
            .unwrap();
        let t = out
            .entry(start.with_timezone(&IST).date_naive().to_string())
            .or_default();
        t.add_row(spend, rate(&cur));
    }
    out
}

/// Google Ads rows per `segments.date`; keys are campaign-days (ad-group rows share them).
/// The `FROM campaign` answer counts only for campaigns the `FROM ad_group_ad` answer lacks.
fn google_daily() -> BTreeMap<String, DayTotal> {
    let mut out: BTreeMap<String, DayTotal> = BTreeMap::new();
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let rows = |file: &str| -> Vec<Value> {
        fixture(file)
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["results"].as_array().unwrap().clone())
            .collect()
    };
    // the ads answer, plus the campaign answer's campaigns that have no ads (Performance Max)
    let ads = rows("google_ads/5550001111_stream.json");
    let id = |r: &Value| r["campaign"]["id"].as_str().unwrap().to_string();
    let with_ads: BTreeSet<String> = ads.iter().map(id).collect();
    let others: Vec<Value> = rows("google_ads/5550001111_stream_campaigns.json")
        .into_iter()
        .filter(|r| !with_ads.contains(&id(r)))
        .collect();
    assert!(!others.is_empty(), "the case has a campaign without ads");
    for r in ads.iter().chain(&others) {
        let d = r["segments"]["date"].as_str().unwrap().to_string();
        // costMicros is an int64 in a string: micros / 10^6, exactly
        let micros: i64 = r["metrics"]["costMicros"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let spend = Decimal::new(micros, 6);
        let t = out.entry(d.clone()).or_default();
        t.rows += 1;
        t.amount += spend;
        t.amount_inr += spend * rate("EUR");
        t.value += dec(&r["metrics"]["conversionsValue"]);
        keys.entry(d)
            .or_default()
            .insert(r["campaign"]["id"].as_str().unwrap().to_string());
    }
    for (d, k) in keys {
        out.get_mut(&d).unwrap().keys = k.len();
    }
    out
}

/// GA4 event counts per day (a Kolkata property: its dates are Indian dates).
fn ga4_daily(days: &[&str]) -> BTreeMap<String, DayTotal> {
    let mut out = BTreeMap::new();
    for d in days {
        let body = fixture(&format!("ga4/271828_{d}.json"));
        let mut t = DayTotal::default();
        for r in body["rows"].as_array().unwrap() {
            t.rows += 1;
            t.keys += 1;
            t.amount += dec(&r["metricValues"][0]["value"]);
        }
        t.amount_inr = t.amount;
        out.insert(d.to_string(), t);
    }
    out
}

/// Shopify revenue events per Indian date: each order at `createdAt` (+totalPriceSet), each
/// refund at its `createdAt` (−), a cancellation at `cancelledAt` (− what was not refunded).
fn shopify_daily() -> BTreeMap<String, DayTotal> {
    let mut out: BTreeMap<String, DayTotal> = BTreeMap::new();
    let mut add = |ts: &str, amount: Decimal, cur: &str| {
        let t: chrono::DateTime<chrono::Utc> = ts.parse().unwrap();
        let e = out
            .entry(t.with_timezone(&IST).date_naive().to_string())
            .or_default();
        e.add_row(amount, rate(cur));
    };
    for i in 1..=3 {
        let page = fixture(&format!("shopify/orders_p{i}.json"));
        for o in page["data"]["orders"]["nodes"].as_array().unwrap() {
            let money = &o["totalPriceSet"]["shopMoney"];
            let cur = money["currencyCode"].as_str().unwrap();
            let total = dec(&money["amount"]);
            add(o["createdAt"].as_str().unwrap(), total, cur);
            let mut refunded = Decimal::ZERO;
            for r in o["refunds"].as_array().unwrap() {
                let a = dec(&r["totalRefundedSet"]["shopMoney"]["amount"]);
                refunded += a;
                add(r["createdAt"].as_str().unwrap(), -a, cur);
            }
            if let Some(c) = o["cancelledAt"].as_str() {
                add(c, refunded - total, cur);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What QuestDB holds

/// Per `day`: (rows, sum in account currency, sum in INR, purchase value in account currency).
async fn stored(q: &QuestDb, sql: &str) -> BTreeMap<String, (usize, Decimal, Decimal, Decimal)> {
    q.rows(sql)
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                (
                    r[1].as_u64().unwrap() as usize,
                    dec(&r[2]),
                    dec(&r[3]),
                    r.get(4).map(dec).unwrap_or_default(),
                ),
            )
        })
        .collect()
}

async fn campaign_days(
    q: &QuestDb,
    source: &str,
    bucket: &str,
) -> BTreeMap<String, (usize, Decimal, Decimal, Decimal)> {
    stored(q, &format!(
        "SELECT day, count(), sum(spend_account), sum(spend), sum(conversion_value_account) FROM campaign_stats \
         WHERE source = '{source}' AND bucket = '{bucket}' GROUP BY day ORDER BY day"
    ))
    .await
}

/// One line of the table in docs/replay.md.
struct Line {
    source: &'static str,
    case: &'static str,
    day: String,
    rows_in_answer: usize,
    rows_stored: usize,
    stored_total: Decimal,
    independent_total: Decimal,
    unit: &'static str,
    /// The same two totals in INR (the reporting currency).
    stored_inr: Decimal,
    independent_inr: Decimal,
}

fn print_table(lines: &[Line]) {
    println!(
        "\n| source | case | day | rows in the answer | rows stored | QuestDB total | independent total | QuestDB INR | independent INR | equal |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---|");
    for l in lines {
        // GA4 counts events: no money, no INR column
        let inr = |v: Decimal| {
            if l.unit == "events" {
                "-".to_string()
            } else {
                v.normalize().to_string()
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} {} | {} {} | {} | {} | {} |",
            l.source,
            l.case,
            l.day,
            l.rows_in_answer,
            l.rows_stored,
            l.stored_total.normalize(),
            l.unit,
            l.independent_total.normalize(),
            l.unit,
            inr(l.stored_inr),
            inr(l.independent_inr),
            if l.stored_total == l.independent_total && l.stored_inr == l.independent_inr {
                "yes"
            } else {
                "NO"
            }
        );
    }
}

/// Compare stored days with the independent ones (every field) and add the lines to the table.
#[allow(clippy::too_many_arguments)]
fn compare(
    lines: &mut Vec<Line>,
    source: &'static str,
    case: &'static str,
    unit: &'static str,
    got: &BTreeMap<String, (usize, Decimal, Decimal, Decimal)>,
    want: &BTreeMap<String, DayTotal>,
    check_value: bool,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{source}/{case}: the days QuestDB holds"
    );
    for (d, w) in want {
        let (n, amount, inr, value) = &got[d];
        assert_eq!(*n, w.keys, "{source}/{case} {d}: rows stored");
        assert_eq!(
            *amount, w.amount,
            "{source}/{case} {d}: total in the account currency"
        );
        assert_eq!(*inr, w.amount_inr, "{source}/{case} {d}: total in INR");
        if check_value {
            assert_eq!(*value, w.value, "{source}/{case} {d}: purchase value");
        }
        lines.push(Line {
            source,
            case,
            day: d.clone(),
            rows_in_answer: w.rows,
            rows_stored: *n,
            stored_total: *amount,
            independent_total: w.amount,
            unit,
            stored_inr: *inr,
            independent_inr: w.amount_inr,
        });
    }
}

/// Wait until `table` holds the days of `want` from `source`, then compare QuestDB's day totals
/// (`count()` and the two sums `sums`) with `want` (values not checked).
async fn compare_table(
    q: &QuestDb,
    lines: &mut Vec<Line>,
    (table, source, sums): (&str, &str, &str),
    (name, case, unit): (&'static str, &'static str, &'static str),
    want: &BTreeMap<String, DayTotal>,
) {
    wait_rows(q, table, source, keys(want)).await;
    let sql = format!(
        "SELECT day, count(), {sums} FROM {table} WHERE source = '{source}' GROUP BY day ORDER BY day"
    );
    compare(lines, name, case, unit, &stored(q, &sql).await, want, false);
}

/// Wait until `campaign_stats` holds the days of `want` from `source`, then compare its daily
/// rows' day totals ([`campaign_days`]) with `want`, values included.
async fn compare_campaign_days(
    q: &QuestDb,
    lines: &mut Vec<Line>,
    source: &str,
    (name, case, unit): (&'static str, &'static str, &'static str),
    want: &BTreeMap<String, DayTotal>,
) {
    wait_rows(q, "campaign_stats", source, keys(want)).await;
    let got = campaign_days(q, source, "day").await;
    compare(lines, name, case, unit, &got, want, true);
}

async fn wait_rows(q: &QuestDb, table: &str, source: &str, n: usize) {
    q.wait_for_count(
        &format!("SELECT count() FROM {table} WHERE source = '{source}'"),
        n as f64,
    )
    .await;
}

fn keys(t: &BTreeMap<String, DayTotal>) -> usize {
    t.values().map(|d| d.keys).sum()
}

// ---------------------------------------------------------------------------------------------

/// QuestDB, the fakes, and the [`config`] of every source on them with its state in a temporary
/// folder (keep it): what the replay tests start from.
async fn start() -> (QuestDb, Fake, tempfile::TempDir, Config) {
    set_client_id();
    let q = QuestDb::start().await;
    let fake = Fake::default();
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &q.url(), &base);
    (q, fake, dir, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_stores_what_its_bodies_say_to_the_paisa() {
    let (q, fake, _dir, cfg) = start().await;
    let ledger = Ledger::new(&cfg.general.state_dir);
    let (from, to) = (day("2026-11-16"), day("2026-11-18"));
    let mut lines = Vec::new();

    // Meta, USD account in Los Angeles: ad-by-product rows (2 ads x 2 products per campaign
    // day), four overlapping purchase types, 3 pages; the first call is throttled at 100% usage
    // with "0 minutes" to wait, which waits the 1 s floor instead of looping
    fake.meta_throttle.store(true, Ordering::SeqCst);
    let s = backfill(&cfg, "meta_usd_la_products", from, to, 7, false)
        .await
        .unwrap();
    assert_eq!((s.days, s.waits.clone()), (3, vec![Duration::from_secs(1)]));
    let log = fake.take_log();
    println!(
        "requests: meta act_1001: {} (1 throttled at 100% usage with \"0 minutes\", waited {:?}, then 3 pages)",
        log.len(),
        s.waits
    );
    assert_eq!(log.len(), 4, "throttled call, then 3 pages: {log:?}");
    assert_eq!(log[0], log[1], "the throttled page is asked again");
    let want = meta_daily("act_1001");
    compare_campaign_days(
        &q,
        &mut lines,
        "meta_usd_la_products",
        (
            "meta",
            "USD, Los Angeles, ad x product rows, 4 purchase types, usage 100% then 0%",
            "USD",
        ),
        &want,
    )
    .await;
    assert!(
        want.values().all(|d| d.rows > d.keys),
        "the case has rows sharing a key"
    );

    // the same answer at ad level: one `ad_stats` row per ad and day, the sum of that ad's
    // product rows; the campaign rows are the exact sums of their ads
    let mut ads: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for page in meta_pages("act_1001", "daily") {
        for r in page["data"].as_array().unwrap() {
            let k = (
                r["date_start"].as_str().unwrap().to_string(),
                r["ad_id"].as_str().unwrap().to_string(),
            );
            *ads.entry(k).or_default() += dec(&r["spend"]);
        }
    }
    q.wait_for_count(
        "SELECT count() FROM ad_stats WHERE source = 'meta_usd_la_products'",
        ads.len() as f64,
    )
    .await;
    let got_ads: BTreeMap<(String, String), Decimal> = q
        .rows("SELECT day, ad_id, sum(spend_account) FROM ad_stats WHERE source = 'meta_usd_la_products' AND bucket = 'day' GROUP BY day, ad_id ORDER BY day, ad_id")
        .await
        .into_iter()
        .map(|r| {
            (
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_str().unwrap().to_string(),
                ),
                dec(&r[2]),
            )
        })
        .collect();
    assert_eq!(
        got_ads, ads,
        "ad_stats: each ad-day is the sum of its product rows"
    );
    let mut want_ads: BTreeMap<String, DayTotal> = BTreeMap::new();
    for ((d, _), spend) in &ads {
        want_ads
            .entry(d.clone())
            .or_default()
            .add_row(*spend, rate("USD"));
    }
    for (d, t) in want_ads.iter_mut() {
        t.rows = want[d].rows;
    }
    let got = stored(&q, "SELECT day, count(), sum(spend_account), sum(spend) FROM ad_stats WHERE source = 'meta_usd_la_products' AND bucket = 'day' GROUP BY day ORDER BY day").await;
    compare(
        &mut lines,
        "meta",
        "the same answer in ad_stats (one row per ad and day)",
        "USD",
        &got,
        &want_ads,
        false,
    );
    let unequal = q
        .rows("WITH a AS (SELECT day, campaign_id, sum(spend_account) s FROM ad_stats WHERE source = 'meta_usd_la_products' GROUP BY day, campaign_id), c AS (SELECT day, campaign_id, sum(spend_account) s FROM campaign_stats WHERE source = 'meta_usd_la_products' GROUP BY day, campaign_id) SELECT count() FROM a JOIN c ON a.day = c.day AND a.campaign_id = c.campaign_id WHERE a.s != c.s")
        .await;
    assert_eq!(
        unequal[0][0], 0,
        "campaign figures are the exact sums of their ads"
    );

    // Meta, JPY account in Tokyo (no minor units), daily rows and the last day's hours
    let s = backfill(&cfg, "meta_jpy_tokyo", day("2026-11-17"), to, 7, false)
        .await
        .unwrap();
    assert_eq!(s.days, 2);
    let want = meta_daily("act_2002");
    let want_h = meta_hourly_by_ist_day("act_2002", chrono_tz::Asia::Tokyo);
    wait_rows(
        &q,
        "campaign_stats",
        "meta_jpy_tokyo",
        keys(&want) + keys(&want_h),
    )
    .await;
    let got = campaign_days(&q, "meta_jpy_tokyo", "day").await;
    compare(
        &mut lines,
        "meta",
        "JPY, Tokyo, daily rows",
        "JPY",
        &got,
        &want,
        true,
    );
    let got = campaign_days(&q, "meta_jpy_tokyo", "hour").await;
    compare(
        &mut lines,
        "meta",
        "JPY, Tokyo, hourly rows (Indian days)",
        "JPY",
        &got,
        &want_h,
        false,
    );
    fake.take_log();

    // Google Ads, EUR customer in Berlin: a 200 whose stream ends in an error element is partial:
    // nothing is stored, every day stays incomplete and the backfill fails naming them
    fake.google_broken.store(true, Ordering::SeqCst);
    let (complete, incomplete, err) = incomplete_backfill(&cfg, "gads_eur_berlin", from, to).await;
    assert_eq!((complete, incomplete.len()), (0, 3), "{err}");
    assert!(
        err.contains("unavailable"),
        "the reason names the error element: {err}"
    );
    assert_eq!(
        ledger
            .incomplete("gads_eur_berlin")
            .unwrap()
            .iter()
            .map(|(d, _)| d.to_string())
            .collect::<Vec<_>>(),
        ["2026-11-16", "2026-11-17", "2026-11-18"]
    );
    let broken_requests = fake.take_log().len();
    println!(
        "requests: google_ads, stream ending in an error element: {broken_requests} (the transient error element retried), 0 rows stored, 3 days incomplete"
    );
    assert!(
        broken_requests > 1,
        "a transient error element is retried before giving up"
    );
    assert!(
        q.rows("SELECT count() FROM campaign_stats WHERE source = 'gads_eur_berlin'")
            .await[0][0]
            == 0,
        "no partial rows stored"
    );
    // the stream is whole again: the re-run fills the three days
    // and its first call is refused for quota in the array form, asking for 3s
    fake.google_broken.store(false, Ordering::SeqCst);
    fake.google_quota.store(true, Ordering::SeqCst);
    let s = backfill(&cfg, "gads_eur_berlin", from, to, 7, false)
        .await
        .unwrap();
    assert_eq!((s.days, s.waits.clone()), (3, vec![Duration::from_secs(3)]));
    assert_eq!(
        fake.take_log(),
        ["google '2026-11-16' AND '2026-11-18'"; 3],
        "the quota error's retryDelay waited, then one searchStream call for the ads (FROM ad_group_ad) and one for the campaigns without ads"
    );
    let want = google_daily();
    compare_campaign_days(
        &q,
        &mut lines,
        "gads_eur_berlin",
        ("google_ads", "EUR, Berlin, ad-group rows in 2 stream batches + a campaign without ads; after a 200 ending in an error element and a 429 (array form, retryDelay 3s)", "EUR"),
        &want,
    )
    .await;

    // GA4, Kolkata property, 4 rows a page: the last page of the first day says the project's
    // hourly tokens are nearly gone: that day is complete, the two others stay incomplete
    fake.ga4_low_quota.store(true, Ordering::SeqCst);
    let (complete, incomplete, err) = incomplete_backfill(&cfg, "ga4_kolkata", from, to).await;
    assert_eq!((complete, incomplete.len()), (1, 2), "{err}");
    assert_eq!(incomplete[0].0, day("2026-11-17"));
    assert!(err.to_string().contains("tokensPerProjectPerHour"), "{err}");
    let first = fake.take_log();
    assert!(
        first.iter().all(|l| l.starts_with("ga4 2026-11-16 ")),
        "nothing after the quota ran low: {first:?}"
    );
    let ga4_days = ["2026-11-16", "2026-11-17", "2026-11-18"];
    let want_all = ga4_daily(&ga4_days);
    wait_rows(&q, "funnel", "ga4_kolkata", want_all["2026-11-16"].keys).await;
    // the quota is back: the re-run reads exactly the two missing days
    fake.ga4_low_quota.store(false, Ordering::SeqCst);
    let s = backfill(&cfg, "ga4_kolkata", from, to, 7, false)
        .await
        .unwrap();
    assert_eq!(
        (s.days, s.already_complete, s.resumed_from),
        (2, 1, Some(day("2026-11-17")))
    );
    let second = fake.take_log();
    assert!(
        second.iter().all(|l| !l.starts_with("ga4 2026-11-16 ")),
        "the complete day is not read again: {second:?}"
    );
    let pages = |d: &str| want_all[d].rows.div_ceil(4);
    assert_eq!(
        (first.len(), second.len()),
        (
            pages("2026-11-16"),
            pages("2026-11-17") + pages("2026-11-18")
        )
    );
    println!(
        "requests: ga4, run 1 (quota low after 2026-11-16): {}; run 2 (quota back): {} (2026-11-17 and 2026-11-18 only)",
        first.len(),
        second.len()
    );
    compare_table(
        &q,
        &mut lines,
        ("funnel", "ga4_kolkata", "sum(count), sum(count)"),
        (
            "ga4",
            "Kolkata property, dateHour rows, 4 a page; re-run after a low tokensPerProjectPerHour",
            "events",
        ),
        &want_all,
    )
    .await;

    // Shopify, USD shop in New York: page 2 is THROTTLED once (cost 252, 152 available, 100/s:
    // 1 s), the same page cursor is asked again; refunds and cancellations on their own days
    fake.shopify_throttle.store(true, Ordering::SeqCst);
    fake.shopify_429.store(true, Ordering::SeqCst);
    let s = backfill(&cfg, "shop_usd_ny", from, to, 7, false)
        .await
        .unwrap();
    assert_eq!(s.days, 3);
    let log = fake.take_log();
    println!(
        "requests: shopify: {} (3 pages; page 2 THROTTLED once, page 3 HTTP 429 once, each asked again with its cursor)",
        log.len()
    );
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(
        (&log[1], &log[3]),
        (&log[2], &log[4]),
        "a throttled page is asked again with its cursor, not from page 1"
    );
    assert_ne!(log[2], "shopify after=-");
    assert_ne!(log[2], log[4]);
    let want = shopify_daily();
    compare_table(
        &q,
        &mut lines,
        ("orders", "shop_usd_ny", "sum(amount_shop), sum(amount)"),
        (
            "shopify",
            "USD shop, New York, 3 pages, THROTTLED on page 2, 429 on page 3, refunds and cancellations",
            "USD",
        ),
        &want,
    )
    .await;

    // CSV import: a Meta Ads Manager export (ad rows of two campaigns, EUR in the spend header,
    // the blank-name summary row first), through the same pipeline into QuestDB
    let path = repo().join("tests/fixtures/replay/csv/meta_ads_manager_eur.csv");
    let opts = adpulse::sources::csv_import::ImportOptions::new(
        "act_5005",
        chrono_tz::Europe::Berlin,
        day("2026-12-01"),
    );
    let summary = adpulse::commands::import::import_file(
        &cfg,
        adpulse::sources::csv_import::ImportFormat::Meta,
        &path,
        &opts,
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        (summary.skipped.len(), summary.rejected.len()),
        (1, 0),
        "the summary row is skipped, reported, not stored: {summary:?}"
    );
    let mut want: BTreeMap<String, DayTotal> = BTreeMap::new();
    let mut campaigns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (c_id, c_day, c_spend, c_value) = (
        col("Campaign ID"),
        col("Day"),
        col("Amount spent (EUR)"),
        col("Purchases conversion value"),
    );
    for r in reader.records() {
        let r = r.unwrap();
        if r[c_id].is_empty() {
            continue; // Ads Manager's summary row
        }
        let t = want.entry(r[c_day].to_string()).or_default();
        t.rows += 1;
        let spend = Decimal::from_str(&r[c_spend]).unwrap();
        t.amount += spend;
        t.amount_inr += spend * rate("EUR");
        t.value += Decimal::from_str(&r[c_value]).unwrap();
        campaigns
            .entry(r[c_day].to_string())
            .or_default()
            .insert(r[c_id].to_string());
    }
    for (d, c) in campaigns {
        want.get_mut(&d).unwrap().keys = c.len();
    }
    q.wait_for_count(
        "SELECT count() FROM campaign_stats WHERE account = 'act_5005'",
        keys(&want) as f64,
    )
    .await;
    let got = stored(&q, "SELECT day, count(), sum(spend_account), sum(spend), sum(conversion_value_account) FROM campaign_stats \
         WHERE account = 'act_5005' AND bucket = 'day' GROUP BY day ORDER BY day").await;
    compare(
        &mut lines,
        "csv import",
        "Meta Ads Manager export, EUR, ad rows of 2 campaigns, summary row skipped",
        "EUR",
        &got,
        &want,
        true,
    );
    print_table(&lines);
}

/// Where a GA4 `date` / `dateHour` value lands, placed by hand.
type Place = fn(&str) -> &'static str;

/// The account's hours (of one date) that start on each Indian date.
type IstHours = &'static [(&'static str, &'static [u32])];

/// Days as the platform reports them, against QuestDB: accounts west of India (Los Angeles), in
/// India and east of it (Tokyo). A daily row's `day` is the account's own date (what Ads Manager
/// shows); an hourly row's `day` is the Indian date of the hour's start. The Indian days of the
/// hours are computed by hand here (IST = UTC+5:30, JST = UTC+9, PST = UTC-8 in November).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_are_the_accounts_own_dates_and_hours_fall_on_indian_days() {
    let (q, _fake, _dir, cfg) = start().await;
    let (from, to) = (day("2026-11-17"), day("2026-11-18"));
    // (source, account, currency, the account's hours of 2026-11-18 on each Indian date)
    let cases: [(&str, &str, &str, IstHours); 3] = [
        // 00:00 JST = 20:30 IST the day before; 02:00 -> 22:30; 05:00 -> 01:30 ...
        (
            "meta_jpy_tokyo",
            "act_2002",
            "JPY",
            &[("2026-11-17", &[0, 2]), ("2026-11-18", &[5, 6, 13, 23])],
        ),
        (
            "meta_inr_kolkata",
            "act_3003",
            "INR",
            &[("2026-11-18", &[0, 5, 18, 23])],
        ),
        // 00:00 PST = 13:30 IST the same date; 10:00 -> 23:30; 13:00 -> 02:30 the next date
        (
            "meta_usd_la",
            "act_4004",
            "USD",
            &[("2026-11-18", &[0, 10]), ("2026-11-19", &[13, 14, 23])],
        ),
    ];
    let mut lines = Vec::new();
    for (source, act, cur, ist_hours) in cases {
        backfill(&cfg, source, from, to, 7, false).await.unwrap();
        let hours = meta_hours(act);
        let daily = meta_daily(act);
        wait_rows(&q, "campaign_stats", source, keys(&daily) + hours.len()).await;
        // daily rows: the account's dates, whatever its offset from India
        let got = campaign_days(&q, source, "day").await;
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            ["2026-11-17", "2026-11-18"],
            "{source}: daily rows keep the account's own date"
        );
        for (d, want) in &daily {
            assert_eq!(got[d].1, want.amount, "{source} {d}");
        }
        // hourly rows: the hand-computed Indian date of each hour
        let got = campaign_days(&q, source, "hour").await;
        let mut want_h: BTreeMap<String, DayTotal> = BTreeMap::new();
        for (ist_day, hs) in ist_hours {
            let t = want_h.entry(ist_day.to_string()).or_default();
            for (_, _, _, spend, _) in hours.iter().filter(|x| hs.contains(&x.1)) {
                t.add_row(*spend, rate(cur));
            }
        }
        assert_eq!(
            want_h.values().map(|t| t.rows).sum::<usize>(),
            hours.len(),
            "{source}: every fixture hour is placed by hand"
        );
        compare(
            &mut lines,
            "meta",
            match source {
                "meta_jpy_tokyo" => "Asia/Tokyo hourly rows",
                "meta_inr_kolkata" => "Asia/Kolkata hourly rows",
                _ => "America/Los_Angeles hourly rows",
            },
            cur,
            &got,
            &want_h,
            false,
        );
        // the hours of one account date add up to its daily row (the platform's own sums)
        let hour_sum: Decimal = hours.iter().map(|x| x.3).sum();
        let day_18: Decimal = meta_pages(act, "daily")
            .iter()
            .flat_map(|p| p["data"].as_array().unwrap().clone())
            .filter(|r| r["date_start"] == "2026-11-18")
            .map(|r| dec(&r["spend"]))
            .sum();
        assert_eq!(
            hour_sum, day_18,
            "{source}: the fixture's hours sum to its day"
        );
    }

    // Google Ads, a JPY customer in Tokyo: daily rows and `segments.hour` rows of 2026-11-18
    set_client_id();
    backfill(&cfg, "gads_jpy_tokyo", from, to, 7, false)
        .await
        .unwrap();
    let rows = |file: &str| -> Vec<(String, Option<u64>, Decimal)> {
        fixture(file)
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["results"].as_array().unwrap().clone())
            .map(|r| {
                let micros: i64 = r["metrics"]["costMicros"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                (
                    r["segments"]["date"].as_str().unwrap().to_string(),
                    r["segments"]["hour"].as_u64(),
                    Decimal::new(micros, 6),
                )
            })
            .collect()
    };
    let (gd, gh) = (
        rows("google_ads/5550002222_stream.json"),
        rows("google_ads/5550002222_stream_hourly.json"),
    );
    wait_rows(&q, "campaign_stats", "gads_jpy_tokyo", gd.len() + gh.len()).await;
    let mut want: BTreeMap<String, DayTotal> = BTreeMap::new();
    for (d, _, spend) in &gd {
        let t = want.entry(d.clone()).or_default();
        t.add_row(*spend, rate("JPY"));
    }
    let got = campaign_days(&q, "gads_jpy_tokyo", "day").await;
    compare(
        &mut lines,
        "google_ads",
        "Asia/Tokyo daily rows (account dates)",
        "JPY",
        &got,
        &want,
        false,
    );
    // by hand: 00:00 and 02:00 JST fall on the Indian 2026-11-17, 05:00 and 23:00 on 2026-11-18
    let mut want: BTreeMap<String, DayTotal> = BTreeMap::new();
    for (ist_day, hs) in [("2026-11-17", [0, 2]), ("2026-11-18", [5, 23])] {
        let t = want.entry(ist_day.to_string()).or_default();
        for (_, _, spend) in gh.iter().filter(|x| x.1.is_some_and(|h| hs.contains(&h))) {
            t.add_row(*spend, rate("JPY"));
        }
    }
    assert_eq!(want.values().map(|t| t.rows).sum::<usize>(), gh.len());
    let got = campaign_days(&q, "gads_jpy_tokyo", "hour").await;
    compare(
        &mut lines,
        "google_ads",
        "Asia/Tokyo hourly rows (Indian days)",
        "JPY",
        &got,
        &want,
        false,
    );

    // GA4, a property in Los Angeles: `date` rows keep the property's dates; `dateHour` rows fall
    // on the Indian date of their hour (00:00 and 10:00 PST: the same date, 13:00 and 23:00: the
    // next one)
    let events = |file: &str| -> Vec<(String, Decimal)> {
        fixture(file)["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["dimensionValues"][0]["value"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    dec(&r["metricValues"][0]["value"]),
                )
            })
            .collect()
    };
    let funnel_sql = |source: &str| {
        format!(
            "SELECT day, count(), sum(count), sum(count) FROM funnel WHERE source = '{source}' GROUP BY day ORDER BY day"
        )
    };
    // the date rows' dates must be the property's own; each dateHour placed by hand
    let property_date: Place = |when| match when {
        "20261117" => "2026-11-17",
        "20261118" => "2026-11-18",
        other => panic!("date {other} is not a property date of the window"),
    };
    let indian_date: Place = |date_hour| match date_hour {
        "2026111700" | "2026111710" => "2026-11-17",
        "2026111713" | "2026111723" | "2026111800" | "2026111810" => "2026-11-18",
        "2026111813" | "2026111823" => "2026-11-19",
        other => panic!("hour {other} not placed by hand"),
    };
    let ga4_cases: [(&str, &str, &str, Place); 2] = [
        (
            "ga4_la_daily",
            "_date",
            "America/Los_Angeles `date` rows (property dates)",
            property_date,
        ),
        (
            "ga4_la_hourly",
            "",
            "America/Los_Angeles `dateHour` rows (Indian days)",
            indian_date,
        ),
    ];
    for (source, suffix, case, place) in ga4_cases {
        backfill(&cfg, source, from, to, 7, false).await.unwrap();
        let mut want: BTreeMap<String, DayTotal> = BTreeMap::new();
        let mut n = 0;
        for d in ["2026-11-17", "2026-11-18"] {
            for (when, count) in events(&format!("ga4/314000_{d}{suffix}.json")) {
                let t = want.entry(place(&when).to_string()).or_default();
                t.add_row(count, Decimal::ONE);
                n += 1;
            }
        }
        wait_rows(&q, "funnel", source, n).await;
        let got = stored(&q, &funnel_sql(source)).await;
        compare(&mut lines, "ga4", case, "events", &got, &want, false);
    }
    print_table(&lines);
}

/// The alert on incomplete days, end to end: the live poll of a Meta account that stays throttled
/// leaves its look-back days incomplete in the ledger; `/metrics` says how many; a real Prometheus
/// with the shipped rule (its `for:` shortened) fires `AdpulseSourceIncompleteDays` for that
/// source; once the throttle is over, the next poll fills the days and the alert resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_days_reach_metrics_and_fire_the_alert_until_filled() {
    let fake = Fake::default();
    fake.meta_throttle_all.store(true, Ordering::SeqCst);
    let base = serve(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("meta_token");
    std::fs::write(&token, "EAAB-replay-token").unwrap();
    let mut cfg = Config::from_toml_str(&format!(
        r#"
[general]
state_dir = "{state}"
[server]
listen = "127.0.0.1:0"
[questdb]
enabled = false
[models]
enabled = false
[fx]
USD = "83.50"
[[sources]]
type = "meta"
name = "meta_live"
account_id = "act_1001"
base_url = "{base}"
access_token_file = "{token}"
account_timezone = "America/Los_Angeles"
lookback_days = 3
hourly_days = 0
interval_secs = 600
min_throttle_wait_secs = 1
max_throttle_wait_secs = 60
"#,
        state = dir.path().join("state").display(),
        token = token.display(),
    ))
    .unwrap();
    cfg.general.refresh_interval_secs = 1;
    assert_eq!(cfg.problems(), vec![]);
    let running = adpulse::app::start(cfg).await.unwrap();
    let addr = running.addr;
    let gauge = "adpulse_source_incomplete_days{source=\"meta_live\"}";
    eventually(
        "3 incomplete days on /metrics",
        Duration::from_secs(30),
        || async {
            let (_, m) = common::get(&format!("http://{addr}/metrics")).await;
            (metric(&m, gauge)? == 3.0).then_some(())
        },
    )
    .await;
    let prom = Prometheus::with_shipped_rules(&[("adpulse", addr.to_string())], "2s", None).await;
    let firing = "ALERTS{alertname=\"AdpulseSourceIncompleteDays\",alertstate=\"firing\"}";
    let labels = eventually("the alert to fire", Duration::from_secs(60), || async {
        prom.query(firing).await.into_iter().next().map(|(l, _)| l)
    })
    .await;
    assert_eq!(labels["source"], "meta_live");
    assert_eq!(labels["team"], "engineering");
    assert_eq!(labels["severity"], "warning");
    // the throttle is over: the next poll (1 s floor) fills the three days
    fake.meta_throttle_all.store(false, Ordering::SeqCst);
    eventually("the days filled", Duration::from_secs(30), || async {
        let (_, m) = common::get(&format!("http://{addr}/metrics")).await;
        (metric(&m, gauge)? == 0.0).then_some(())
    })
    .await;
    eventually("the alert to resolve", Duration::from_secs(60), || async {
        prom.query(firing).await.is_empty().then_some(())
    })
    .await;
    let ledger = Ledger::new(&dir.path().join("state"));
    assert!(ledger.incomplete("meta_live").unwrap().is_empty());
    assert_eq!(ledger.days("meta_live").unwrap().len(), 3);
    running.stop().await;
}
