//! Actions end to end on real processes: the demo backfills a real QuestDB, the engine
//! recommends, and a local fake Meta Marketing API (replaying the Graph API's documented formats:
//! `GET /{campaign_id}?fields=status,daily_budget`, `POST /{campaign_id}` with `status=PAUSED`,
//! `{"success": true}`, error objects with `code` and `is_transient`) fails once with a transient
//! error and then succeeds. Checks: exactly one pause however often it is approved; no token or
//! the read token cannot act; every action and refusal is in the `actions` table; no token in
//! /metrics or the audit.

mod common;

use adpulse::actions::Mode;
use adpulse::actions::config::MetaActionsConfig;
use adpulse::config::{Config, QuestDbConfig};
use adpulse::platforms::meta::MetaApiConfig;
use adpulse::sources::SourceConfig;
use adpulse::sources::demo::DemoConfig;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get as route_get;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const META_TOKEN: &str = "meta-token-Zx81";
const READ: &str = "read-token-Qp42";
const WRITE: &str = "write-token-Lm97";

#[derive(Default)]
struct FakeMeta {
    status: Mutex<HashMap<String, String>>,
    attempts: AtomicU32,
    applied: AtomicU32,
    fail_next: AtomicU32,
    bad_auth: AtomicU32,
}

fn authed(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {META_TOKEN}"))
}

fn auth_error() -> axum::response::Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "fbtrace_id": "AbC"}})),
    )
        .into_response()
}

async fn get_campaign(
    State(f): State<Arc<FakeMeta>>,
    h: HeaderMap,
    Path((_v, id)): Path<(String, String)>,
) -> axum::response::Response {
    if !authed(&h) {
        f.bad_auth.fetch_add(1, Ordering::SeqCst);
        return auth_error();
    }
    let status = f
        .status
        .lock()
        .unwrap()
        .get(&id)
        .cloned()
        .unwrap_or_else(|| "ACTIVE".into());
    axum::Json(json!({"id": id, "status": status, "daily_budget": "960400"})).into_response()
}

async fn post_campaign(
    State(f): State<Arc<FakeMeta>>,
    h: HeaderMap,
    Path((_v, id)): Path<(String, String)>,
    body: String,
) -> axum::response::Response {
    // application/x-www-form-urlencoded, as the Graph API takes it
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !authed(&h) {
        f.bad_auth.fetch_add(1, Ordering::SeqCst);
        return auth_error();
    }
    f.attempts.fetch_add(1, Ordering::SeqCst);
    if f.fail_next.load(Ordering::SeqCst) > 0 {
        f.fail_next.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException", "is_transient": true, "code": 2, "fbtrace_id": "AbD"}})),
        )
            .into_response();
    }
    match form.get("status").map(String::as_str) {
        Some(s @ ("PAUSED" | "ACTIVE")) => {
            f.status.lock().unwrap().insert(id, s.to_string());
            f.applied.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({"success": true})).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}})),
        )
            .into_response(),
    }
}

async fn serve_fake(f: Arc<FakeMeta>) -> String {
    let app = axum::Router::new()
        .route(
            "/{version}/{id}",
            route_get(get_campaign).post(post_campaign),
        )
        .with_state(f);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let c = client();
    let mut r = match method {
        "GET" => c.get(url),
        _ => c.post(url),
    };
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_execute_once_refusals_are_audited_and_tokens_never_leak() {
    let q = QuestDb::start().await;
    // the DDL (the new `actions` table among them) is accepted as written
    for (name, ddl) in adpulse::sinks::questdb::TABLES {
        if let Err(e) = q.try_sql(ddl).await {
            panic!("DDL of {name} rejected: {e}");
        }
    }
    let fake = Arc::new(FakeMeta::default());
    let fake_url = serve_fake(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, v: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{v}\n")).unwrap();
        p
    };

    let mut cfg = Config::from_toml_str(adpulse::config::DEFAULT_CONFIG).unwrap();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.general.refresh_interval_secs = 1;
    cfg.general.state_dir = dir.path().join("state");
    cfg.models.enabled = false;
    cfg.questdb = QuestDbConfig {
        http_url: q.url(),
        flush_interval_ms: 100,
        spool_dir: dir.path().join("spool"),
        ..QuestDbConfig::default()
    };
    let mut demo = DemoConfig::new("demo");
    demo.start = Some("2026-11-23T06:30:00Z".parse().unwrap());
    demo.backfill_only = true;
    cfg.sources = vec![SourceConfig::Demo(demo)];
    cfg.actions.mode = Mode::Approve;
    cfg.actions.dry_run = false;
    cfg.actions.evaluate_interval_secs = 1;
    cfg.actions.retry.initial_ms = 20;
    cfg.actions.auth.read_token_file = Some(file("read", READ));
    cfg.actions.auth.write_token_file = Some(file("write", WRITE));
    cfg.actions.meta = Some(MetaActionsConfig {
        api: MetaApiConfig {
            base_url: fake_url,
            access_token_file: Some(file("meta", META_TOKEN)),
            ..MetaApiConfig::default()
        },
        ..MetaActionsConfig::default()
    });

    let running = adpulse::app::start(cfg).await.unwrap();
    let base = format!("http://{}/api/v1", running.addr);

    // The demo's five losing campaigns, once the whole backfill is in.
    // 10 days x 24 hours x 6 campaigns (the start is on an Indian hour boundary)
    q.wait_for_count(
        "SELECT count() FROM campaign_stats WHERE bucket = 'hour'",
        (240 * 6) as f64,
    )
    .await;
    let recs = eventually(
        "five open recommendations",
        Duration::from_secs(90),
        || async {
            let (s, v) = call("GET", &format!("{base}/recommendations"), Some(READ), None).await;
            assert_eq!(s, 200, "{v}");
            let recs = v["recommendations"].as_array().cloned().unwrap_or_default();
            (recs.len() == 5 && recs.iter().all(|r| r["kind"] == "pause")).then_some(recs)
        },
    )
    .await;
    assert!(
        recs.iter()
            .all(|r| r["campaign_name"] != "Retargeting - Catalogue")
    );
    let diwali = recs
        .iter()
        .find(|r| r["campaign_id"] == "120210000000001")
        .expect("Diwali Prospecting is recommended for pause");
    let id = diwali["id"].as_str().unwrap().to_string();
    let google = recs.iter().find(|r| r["platform"] == "google_ads").unwrap();
    let google_id = google["id"].as_str().unwrap().to_string();

    // Refusals: no token, an unknown token, the read token on write calls.
    let approve = format!("{base}/recommendations/{id}/approve");
    let mut refusals = 0;
    for (method, url, token, want) in [
        ("GET", format!("{base}/recommendations"), None, 401),
        ("POST", approve.clone(), None, 401),
        ("POST", approve.clone(), Some("guess"), 401),
        ("POST", approve.clone(), Some(READ), 403),
        ("POST", format!("{base}/kill-switch"), Some(READ), 403),
        (
            "POST",
            format!("{base}/recommendations/{google_id}/reject"),
            Some(READ),
            403,
        ),
        ("POST", format!("{base}/alerts/webhook"), None, 401),
    ] {
        let (s, v) = call(
            method,
            &url,
            token,
            Some(json!({"platform": "meta", "account": "act_1029384756"})),
        )
        .await;
        assert_eq!(s, want, "{method} {url} with {token:?}: {v}");
        assert!(v["error"].is_string());
        refusals += 1;
    }
    assert_eq!(
        fake.attempts.load(Ordering::SeqCst),
        0,
        "a refused call reached the platform"
    );

    // Exactly once: the fake fails the first mutation with a transient error; the approval is
    // sent twice at the same time, then once more.
    fake.fail_next.store(1, Ordering::SeqCst);
    let body = Some(json!({"by": "priya"}));
    let (a, b) = tokio::join!(
        call("POST", &approve, Some(WRITE), body.clone()),
        call("POST", &approve, Some(WRITE), body.clone()),
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let (c_status, c) = call("POST", &approve, Some(WRITE), None).await;
    assert_eq!(c_status, 200, "{c}");
    assert_eq!(c["status"], "executed");
    assert_eq!(c["outcome"]["result"], "executed");
    assert_eq!(c["outcome"]["before"]["status"], "active");
    assert_eq!(c["outcome"]["after"]["status"], "paused");
    assert_eq!(
        fake.applied.load(Ordering::SeqCst),
        1,
        "the pause was applied exactly once"
    );
    assert_eq!(
        fake.attempts.load(Ordering::SeqCst),
        2,
        "one transient failure, one success"
    );
    assert_eq!(fake.status.lock().unwrap()["120210000000001"], "PAUSED");

    // Reject one; it cannot be approved afterwards.
    let (s, v) = call(
        "POST",
        &format!("{base}/recommendations/{google_id}/reject"),
        Some(WRITE),
        Some(json!({"note": "festive week"})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("rejected")), "{v}");
    let (s, _) = call(
        "POST",
        &format!("{base}/recommendations/{google_id}/approve"),
        Some(WRITE),
        None,
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = call(
        "POST",
        &format!("{base}/recommendations/nope/approve"),
        Some(WRITE),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = call(
        "POST",
        &format!("{base}/kill-switch"),
        Some(WRITE),
        Some(json!({"platform": "meta"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // Kill switch on the whole Meta account: the already paused one is not touched again.
    let (s, v) = call("POST", &format!("{base}/kill-switch"), Some(WRITE), Some(json!({"platform": "meta", "account": "act_1029384756", "by": "priya", "reason": "stop the bleeding"}))).await;
    assert_eq!(s, 200, "{v}");
    let results: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"]["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| **r == "executed").count(),
        2,
        "{v}"
    );
    assert_eq!(
        results.iter().filter(|r| **r == "already_done").count(),
        1,
        "{v}"
    );
    assert_eq!(fake.applied.load(Ordering::SeqCst), 3);

    // The Alertmanager webhook triggers an evaluation.
    let (s, v) = call("POST", &format!("{base}/alerts/webhook"), Some(WRITE), Some(json!({
        "version": "4", "status": "firing", "receiver": "adpulse", "groupKey": "{}:{}",
        "alerts": [{"status": "firing", "labels": {"alertname": "AdpulseLosingMoney"}, "annotations": {}, "startsAt": "2026-11-23T06:00:00Z"}]
    }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = call(
        "POST",
        &format!("{base}/alerts/webhook"),
        Some(WRITE),
        Some(json!({"version": "3"})),
    )
    .await;
    assert_eq!(s, 400);

    // Metrics: counts, and no secret anywhere.
    let (_, metrics) = get(&format!("http://{}/metrics", running.addr)).await;
    assert_eq!(
        metric(&metrics, "adpulse_actions_total{result=\"executed\"}"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "adpulse_actions_total{result=\"refused\"}"),
        Some(refusals as f64)
    );
    assert_eq!(
        metric(&metrics, "adpulse_actions_total{result=\"failed\"}"),
        Some(0.0)
    );
    assert!(metric(&metrics, "adpulse_actions_open_recommendations").is_some());
    for secret in [META_TOKEN, READ, WRITE] {
        assert!(!metrics.contains(secret));
    }

    // The audit: every refusal, the single execution, the duplicates, the rejection.
    q.wait_for_count(
        &format!("SELECT count() FROM actions WHERE action_id = '{id}' AND event = 'executed'"),
        1.0,
    )
    .await;
    q.wait_for_count(
        &format!("SELECT count() FROM actions WHERE action_id = '{id}' AND event = 'duplicate'"),
        2.0,
    )
    .await;
    q.wait_for_count(
        &format!("SELECT count() FROM actions WHERE action_id = '{id}' AND event = 'approved'"),
        3.0,
    )
    .await;
    q.wait_for_count("SELECT count() FROM actions WHERE event = 'executed'", 3.0)
        .await;
    q.wait_for_count(
        "SELECT count() FROM actions WHERE event = 'already_done'",
        1.0,
    )
    .await;
    q.wait_for_count("SELECT count() FROM actions WHERE event = 'rejected'", 1.0)
        .await;
    q.wait_for_count(
        "SELECT count() FROM actions WHERE event = 'recommended' AND rule = 'cpa_above'",
        5.0,
    )
    .await;
    q.wait_for_count("SELECT count() FROM actions WHERE event = 'alert'", 1.0)
        .await;
    let rows = q
        .rows(&format!("SELECT actor, rule, reason, rule_values, state_before, state_after, result FROM actions WHERE action_id = '{id}' AND event = 'executed'"))
        .await;
    let r = &rows[0];
    assert!(r[0].as_str().unwrap().starts_with("write_token"), "{r:?}");
    assert_eq!(r[1], "cpa_above");
    assert!(
        r[2].as_str().unwrap().contains("CPA") || r[2].as_str().unwrap().contains("no conversion"),
        "{r:?}"
    );
    assert!(r[3].as_str().unwrap().contains("\"spend\""), "{r:?}");
    assert!(
        r[4].as_str().unwrap().contains("active") && r[5].as_str().unwrap().contains("paused"),
        "{r:?}"
    );
    assert_eq!(r[6], "ok");
    let all = q.sql("SELECT * FROM actions").await.to_string();
    for secret in [META_TOKEN, READ, WRITE] {
        assert!(!all.contains(secret), "a token leaked into the audit table");
    }
    assert_eq!(fake.bad_auth.load(Ordering::SeqCst), 0);
    running.stop().await;
    // Refusals are aggregated: one row per minute and reason, its count in `detail`, written
    // when the minute is over (here: at shutdown) to the local audit log first.
    let log = adpulse::actions::engine::AuditLog::open(&dir.path().join("state"), None)
        .unwrap()
        .query(&adpulse::actions::engine::AuditFilter::default())
        .unwrap();
    let count = |reason: &str| -> u64 {
        log.iter()
            .filter(|r| r.event == "refused" && r.result == reason)
            .map(|r| {
                r.detail
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no count in {:?}", r.detail))
            })
            .sum()
    };
    assert_eq!(count("forbidden"), 3, "{log:?}");
    assert_eq!(count("unauthenticated"), 4, "{log:?}");
    assert_eq!(count("forbidden") + count("unauthenticated"), refusals);
    assert!(
        log.iter().filter(|r| r.event == "refused").count() <= 4,
        "one row per minute and reason, not one per request"
    );
    let text = std::fs::read_to_string(dir.path().join("state/actions-audit.jsonl")).unwrap();
    for secret in [META_TOKEN, READ, WRITE] {
        assert!(!text.contains(secret), "a token leaked into the audit log");
    }
}
