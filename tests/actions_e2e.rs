//! Actions end to end on real processes: the demo backfills a real QuestDB, the engine
//! recommends, and a local fake Meta Marketing API (replaying the Graph API's documented formats:
//! `GET /{campaign_id}?fields=status,daily_budget`, `POST /{campaign_id}` with `status=PAUSED`,
//! `{"success": true}`, error objects with `code` and `is_transient`) fails once with a transient
//! error and then succeeds. Checks: exactly one pause however often it is approved; no token or
//! the read token cannot act; every action and refusal is in the `actions` table; no token in
//! /metrics or the audit.

#[path = "support/action_center.rs"]
mod action_center;
mod common;
#[path = "support/fake_meta.rs"]
mod fake_meta;

use action_center::{Visitor, demo_config, hidden, users_file};
use adpulse::actions::Mode;
use adpulse::actions::config::MetaActionsConfig;
use adpulse::config::{Config, QuestDbConfig};
use adpulse::platforms::meta::MetaApiConfig;
use adpulse::sources::SourceConfig;
use common::*;
use fake_meta::FakeMeta;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

const META_TOKEN: &str = "meta-token-Zx81";
const READ: &str = "read-token-Qp42";
const WRITE: &str = "write-token-Lm97";

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

/// POST to the actions API at `base` with the write token.
async fn post(base: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call("POST", &format!("{base}{path}"), Some(WRITE), body).await
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
    let fake = FakeMeta::new(META_TOKEN, "960400");
    let fake_url = fake.serve().await;
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
    let demo = demo_backfill_at("2026-11-23T06:30:00Z".parse().unwrap());
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
    let (s, v) = post(
        &base,
        &format!("/recommendations/{google_id}/reject"),
        Some(json!({"note": "festive week"})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("rejected")), "{v}");
    let (s, _) = post(
        &base,
        &format!("/recommendations/{google_id}/approve"),
        None,
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = post(&base, "/recommendations/nope/approve", None).await;
    assert_eq!(s, 404);
    let (s, v) = post(&base, "/kill-switch", Some(json!({"platform": "meta"}))).await;
    assert_eq!(s, 400, "{v}");

    // Kill switch on the whole Meta account: the already paused one is not touched again.
    let (s, v) = post(&base, "/kill-switch", Some(json!({"platform": "meta", "account": "act_1029384756", "by": "priya", "reason": "stop the bleeding"}))).await;
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
    let (s, _) = post(&base, "/alerts/webhook", Some(json!({"version": "3"}))).await;
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

/// An action center on the demo (backfill only, no QuestDB), with the fake Meta API and a users
/// file holding `asha` (approver).
async fn web_app(
    fake_url: String,
    dir: &tempfile::TempDir,
    tune: impl FnOnce(&mut Config),
) -> adpulse::app::Running {
    let asha = ("asha", adpulse::actions::engine::Role::Approver);
    let users_file = users_file(dir.path(), asha, "asha-approver-pass");
    let token = dir.path().join("meta-token");
    std::fs::write(&token, format!("{META_TOKEN}\n")).unwrap();
    let mut cfg = demo_config(dir.path(), fake_url, token, users_file);
    tune(&mut cfg);
    adpulse::app::start(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_per_address_and_works_again_after_the_window() {
    const BURST: u32 = 3;
    let fake = FakeMeta::new(META_TOKEN, "960400");
    let dir = tempfile::tempdir().unwrap();
    let running = web_app(fake.serve().await, &dir, |cfg| {
        cfg.actions.web.login_burst = BURST;
        cfg.actions.web.login_refill_secs = 5;
    })
    .await;
    let mut v = Visitor::new(&format!("http://{}", running.addr));
    let (s, page) = v.get("/login").await;
    assert_eq!(s, 200, "{page}");
    let csrf = hidden(&page, "csrf");
    // BURST + 1 failed sign-ins at once (each a different name, so no per-user lockout plays a
    // part): BURST are answered, one is refused by the limiter before any password check. Sent
    // together, so the limiter's refill (5 s) cannot hand out a token in between, however
    // slow the password checks are.
    let attempts = (0..=BURST).map(|k| {
        let mut w = v.fork();
        let csrf = csrf.clone();
        async move {
            let name = format!("nobody{k}");
            w.send(
                "/login",
                Some(&[("csrf", &csrf), ("name", &name), ("password", "guess")]),
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    statuses.sort();
    let mut want = vec![401; BURST as usize];
    want.push(429);
    assert_eq!(statuses, want, "BURST answered, the one over it limited");
    for (s, _, page) in &answers {
        if *s == 401 {
            assert!(page.contains("wrong name or password"), "{page}");
        }
    }
    let headers = answers
        .iter()
        .find(|a| a.0 == 429)
        .map(|a| a.1.clone())
        .unwrap();
    // the limit is per address: another loopback address still gets an answer
    let mut other = Visitor::new(&v.base);
    other.http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let (s, _) = other.sign_in("nobodyy", "guess").await;
    assert_eq!(s, 401, "another address is not limited");
    let right = [
        ("csrf", csrf.as_str()),
        ("name", "asha"),
        ("password", "asha-approver-pass"),
    ];
    // after the wait the limiter names, the correct sign-in goes through
    let wait: u64 = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse().ok())
        .expect("a 429 says when to retry (retry-after)");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (s, headers, page) = eventually(
        "the sign-in accepted after the window",
        Duration::from_secs(30),
        || {
            let mut w = v.fork();
            async move {
                let r = w.send("/login", Some(&right)).await;
                (r.0 != 429).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(s, 303, "{page}");
    assert_eq!(
        headers.get("location").and_then(|h| h.to_str().ok()),
        Some("/")
    );
    v.keep_cookie_from(&headers);
    let (s, page) = v.get("/").await;
    assert_eq!(s, 200);
    assert!(page.contains("Loss now"), "signed in: {page}");
    running.stop().await;
}

/// The campaign ids a column of the moves table links to (`/campaigns/{id}`), in page order.
fn move_ids(page: &str, column: usize) -> Vec<String> {
    let table = page
        .split("<table id=\"moves\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no moves table: {page}"));
    table
        .split("<tr>")
        .skip(2) // before the header row, the header row
        .filter_map(|row| {
            row.split("href=\"/campaigns/")
                .nth(column + 1)
                .and_then(|s| s.split('"').next())
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reallocation_applied_from_the_page_pauses_and_raises_on_meta_once() {
    // the demo's one profitable campaign (Meta), with its own daily budget of ₹800 on the fake
    // platform and a cap of ₹20,000 in adpulse: the raise ends at the cap, 2000000 paise. The
    // room (up to 30 times its spend, within the cap) takes more than the worst loser (a Google
    // campaign), so Meta losers are paused too.
    const WINNER: &str = "120210000000003";
    let fake = FakeMeta::new(META_TOKEN, "960400");
    fake.budgets
        .lock()
        .unwrap()
        .insert(WINNER.into(), "80000".into());
    let dir = tempfile::tempdir().unwrap();
    let running = web_app(fake.serve().await, &dir, |cfg| {
        cfg.actions.mode = Mode::Approve;
        cfg.actions.dry_run = false;
        cfg.actions
            .caps
            .campaigns
            .insert(WINNER.into(), rust_decimal::Decimal::from(20_000));
        cfg.actions.reallocation.max_increase_ratio = rust_decimal::Decimal::from(30);
    })
    .await;
    let mut v = Visitor::new(&format!("http://{}", running.addr));
    let (s, page) = v.sign_in("asha", "asha-approver-pass").await;
    assert_eq!(s, 303, "{page}");
    // the proposal, once the backfill is in
    let page = eventually(
        "a reallocation proposal with moves",
        Duration::from_secs(60),
        || {
            let mut w = v.fork();
            async move {
                let (s, page) = w.get("/reallocation").await;
                (s == 200 && page.contains("id=\"apply\"")).then_some(page)
            }
        },
    )
    .await;
    let from = move_ids(&page, 0);
    let to = move_ids(&page, 1);
    assert!(!from.is_empty(), "{page}");
    assert!(
        to.iter().all(|t| t == WINNER),
        "only the winner gains: {to:?}"
    );
    let meta_losers: std::collections::BTreeSet<&str> = from
        .iter()
        .map(String::as_str)
        .filter(|id| id.starts_with("12021"))
        .collect();
    assert!(!meta_losers.is_empty(), "a Meta campaign gives: {from:?}");
    let csrf = hidden(&page, "csrf");
    let proposal = hidden(&page, "proposal");
    assert!(
        fake.mutations().is_empty(),
        "nothing is sent before the approval"
    );

    // a form for another proposal than the current one changes nothing
    let (s, out) = v
        .post(
            "/reallocation/apply",
            &[("csrf", &csrf), ("proposal", "0000000000000000")],
        )
        .await;
    assert_eq!(s, 409, "{out}");
    assert!(fake.mutations().is_empty());

    // apply, then submit the same form again (a double click, a reload)
    let form = [("csrf", csrf.as_str()), ("proposal", proposal.as_str())];
    let (s, out) = v.post("/reallocation/apply", &form).await;
    assert_eq!(s, 200, "{out}");
    assert!(out.contains("id=\"results\""), "{out}");
    let mut want: Vec<(String, String)> = meta_losers
        .iter()
        .map(|id| (id.to_string(), "status=PAUSED".to_string()))
        .collect();
    want.push((WINNER.into(), "daily_budget=2000000".into()));
    let mut got = fake.mutations();
    got.sort();
    want.sort();
    assert_eq!(got, want, "exactly these Graph API calls");
    let (s, _) = v.post("/reallocation/apply", &form).await;
    assert!(s == 200 || s == 409, "{s}");
    let mut again = fake.mutations();
    again.sort();
    assert_eq!(again, want, "a repeated submit sends nothing more");

    // the audit: one executed row per call, by the person, under one action id
    running.stop().await;
    let rows: Vec<_> = adpulse::actions::engine::AuditLog::open(&dir.path().join("state"), None)
        .unwrap()
        .query(&adpulse::actions::engine::AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.rule == "reallocation")
        .collect();
    let executed: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r.event == "executed")
        .map(|r| (r.campaign_id.clone(), r.actor.clone()))
        .collect();
    let mut want_rows: Vec<(String, String)> = want
        .iter()
        .map(|(id, _)| (id.clone(), "user:asha".to_string()))
        .collect();
    want_rows.sort();
    let mut executed_sorted = executed.clone();
    executed_sorted.sort();
    assert_eq!(executed_sorted, want_rows, "{rows:?}");
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.action_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one application, not two: {ids:?}");
    let raise = rows
        .iter()
        .find(|r| r.event == "executed" && r.campaign_id == WINNER)
        .unwrap();
    assert!(
        raise.state_before.contains("800") && raise.state_after.contains("20000"),
        "{raise:?}"
    );
}
