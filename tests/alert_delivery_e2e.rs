//! Alerts reach people, out of the box (issue 12, item 5): the Alertmanager configuration that
//! `scripts/stack.sh render-config` writes from `alerting/alertmanager.yml` (routes, templates,
//! secret files, substituted addresses), loaded into a real Alertmanager fed by a real Prometheus
//! evaluating the shipped rules on adpulse's demo, delivers a firing alert
//! - to a local **Slack-compatible** incoming webhook (the URL is the secret file
//!   `secrets/slack_webhook_url`),
//! - to an **SMTP sink** (a minimal SMTP listener in this test; Alertmanager's own email client),
//! - to the **WhatsApp bridge** webhook (bearer token from `secrets/whatsapp_bridge_token`),
//! - to the **dead-man's switch** (the Watchdog), and
//! - to **adpulse's webhook**, which authenticates Alertmanager with the token the stack script
//!   wrote to `secrets/adpulse_webhook_token` (2xx: no failed webhook notification in
//!   Alertmanager's counters, no refused call in adpulse's) and triggers an evaluation (its audit
//!   row `event='alert'`, `actor='alertmanager'` lands in QuestDB's `actions` table).
//!
//! The texts carry the loss in INR, the runbook, the Grafana link under the configured root URL
//! with the time range, and for campaign alerts the action center's campaign page.
//!
//! What differs from production: `for:` durations are 2s (`common::rules_with_short_for`);
//! `group_wait`/`group_interval` are 1s and the IST night mute is removed (the test must not
//! depend on the wall clock). The printed table says which receiver got what, and how many
//! seconds after the rule fired (Prometheus' `activeAt` + the 2s `for:`); it asserts no timing.

mod common;

use axum::body::Bytes;
use axum::extract::{Path as AxPath, State};
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const START: &str = "2026-11-20T16:40:00Z";
const GRAFANA: &str = "https://grafana.example.test";
const WHATSAPP_TOKEN: &str = "wa-bridge-token-for-the-test";

/// One thing a receiver got: (channel, when, authorization header, body).
#[derive(Debug, Clone)]
struct Got {
    channel: String,
    at: DateTime<Utc>,
    auth: Option<String>,
    body: String,
}

type Inbox = Arc<Mutex<Vec<Got>>>;

async fn hook(
    State(inbox): State<Inbox>,
    AxPath(channel): AxPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    inbox.lock().unwrap().push(Got {
        channel,
        at: Utc::now(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    // Slack's incoming webhooks answer 200 "ok"
    "ok"
}

/// The Slack-compatible webhook, the WhatsApp bridge and the dead-man's switch: one HTTP server,
/// the channel is the first path segment. Its base URL.
async fn start_hooks(inbox: Inbox) -> String {
    let app = axum::Router::new()
        .route("/{channel}", post(hook))
        .route(
            "/{channel}/{*rest}",
            post(
                |st: State<Inbox>,
                 AxPath((channel, _rest)): AxPath<(String, String)>,
                 h: HeaderMap,
                 b: Bytes| async move { hook(st, AxPath(channel), h, b).await },
            ),
        )
        .with_state(inbox);
    serve_fake(app).await
}

/// A minimal SMTP server (RFC 5321's happy path: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT;
/// no AUTH or STARTTLS advertised, so Alertmanager sends in the clear as `smtp_require_tls: false`
/// allows). Every message lands in `inbox` as channel `smtp:<recipients>`. Its `host:port`.
async fn start_smtp(inbox: Inbox) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 sink.test ESMTP\r\n").await;
                let mut rcpt: Vec<String> = Vec::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-sink.test\r\n250 8BITMIME\r\n"
                    } else if cmd.starts_with("HELO") || cmd.starts_with("MAIL FROM") {
                        b"250 OK\r\n"
                    } else if cmd.starts_with("RCPT TO") {
                        rcpt.push(line.trim_end()[8..].trim().to_string());
                        b"250 OK\r\n"
                    } else if cmd == "DATA" {
                        let _ = w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" || line == ".\n" {
                                break;
                            }
                            data.push_str(line.strip_prefix('.').unwrap_or(&line));
                        }
                        inbox.lock().unwrap().push(Got {
                            channel: format!("smtp:{}", rcpt.join(",")),
                            at: Utc::now(),
                            auth: None,
                            body: data,
                        });
                        rcpt.clear();
                        b"250 OK queued\r\n"
                    } else if cmd == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else if cmd.starts_with("RSET") || cmd.starts_with("NOOP") {
                        b"250 OK\r\n"
                    } else {
                        b"502 not implemented\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr.to_string()
}

/// adpulse on the demo, as `common::start_demo`, with the API's write token read from `token_file`
/// (the file the stack script wrote for Alertmanager).
async fn start_adpulse(
    q: &QuestDb,
    token_file: &std::path::Path,
) -> (adpulse::app::Running, tempfile::TempDir) {
    let demo = demo_backfill_at(START.parse().unwrap());
    start_demo_with(q, demo, |cfg| {
        cfg.actions.auth.write_token_file = Some(token_file.to_path_buf());
    })
    .await
}

/// `scripts/stack.sh render-config DIR` with this test's addresses; returns the Alertmanager
/// configuration with the test's timers (1s grouping, no night mute).
fn render_stack_config(dir: &std::path::Path, env: &[(&str, String)]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/stack.sh"))
        .arg("render-config")
        .arg(dir)
        .current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash scripts/stack.sh");
    assert!(
        out.status.success(),
        "stack.sh render-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("alertmanager.yml")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("mute_time_intervals:"))
        .map(|l| {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            if t.starts_with("group_wait:") {
                format!("{indent}group_wait: 1s")
            } else if t.starts_with("group_interval:") {
                format!("{indent}group_interval: 1s")
            } else if t.starts_with("- 'templates/") {
                // relative to the rendered file's directory, which Alertmanager::start does not use
                format!("{indent}- '{}/templates/*.tmpl'", dir.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn am_counter(body: &str, name: &str, integration: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("integration=\"{integration}\"")))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_reaches_slack_email_whatsapp_the_deadmans_switch_and_adpulse() {
    let inbox: Inbox = Arc::default();
    let hooks = start_hooks(inbox.clone()).await;
    let smtp = start_smtp(inbox.clone()).await;

    // The stack script renders the configuration and writes the secret files; the tokens are the
    // test's (ADPULSE_API_WRITE_TOKEN seeds the webhook token file, as documented in stack.sh).
    let rendered = tempfile::tempdir().unwrap();
    let q = QuestDb::start_with_metrics().await;
    // adpulse must know its address before the config is rendered: reserve it through a first
    // render after adpulse started. The token file is written by the render.
    let token = "adpulse-webhook-token-for-the-test";
    let pre = render_stack_config(
        rendered.path(),
        &[("ADPULSE_API_WRITE_TOKEN", token.to_string())],
    );
    assert!(pre.contains("credentials_file"), "{pre}");
    let token_file = rendered.path().join("secrets/adpulse_webhook_token");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
    let (running, _spool) = start_adpulse(&q, &token_file).await;
    let adpulse_addr = running.addr.to_string();
    let am_yaml = render_stack_config(
        rendered.path(),
        &[
            ("ADPULSE_ADDR", adpulse_addr.clone()),
            ("GRAFANA_ROOT_URL", GRAFANA.to_string()),
            ("WHATSAPP_BRIDGE_URL", format!("{hooks}/whatsapp")),
            ("DEADMANSSWITCH_URL", format!("{hooks}/deadmansswitch")),
            ("SMTP_SMARTHOST", smtp.clone()),
            ("ALERT_EMAIL_MARKETING", "lead@shop.test".to_string()),
            ("ALERT_EMAIL_ENGINEERING", "oncall@shop.test".to_string()),
        ],
    );
    // the secret files keep what is there: put the receivers' URL and token in them
    std::fs::write(
        rendered.path().join("secrets/slack_webhook_url"),
        format!("{hooks}/slack"),
    )
    .unwrap();
    std::fs::write(
        rendered.path().join("secrets/whatsapp_bridge_token"),
        WHATSAPP_TOKEN,
    )
    .unwrap();
    assert!(
        am_yaml.contains(&format!("http://{adpulse_addr}/api/v1/alerts/webhook")),
        "adpulse's address not substituted"
    );
    assert!(
        !am_yaml.contains("'secrets/"),
        "secret paths must be absolute in the rendered config"
    );

    let am = Alertmanager::start(&am_yaml).await;
    let jobs = [
        ("adpulse", adpulse_addr.clone()),
        ("questdb", q.metrics_addr().unwrap()),
        ("alertmanager", am.addr()),
    ];
    let prom = Prometheus::with_shipped_rules(&jobs, "2s", Some(&am.addr())).await;

    // Wait for every channel, and for adpulse's audit row of the Alertmanager call.
    let lead = "smtp:<lead@shop.test>";
    eventually(
        "Slack, email, WhatsApp, the dead-man's switch and adpulse to be notified",
        Duration::from_secs(180),
        || async {
            let got = inbox.lock().unwrap().clone();
            let has = |c: &str| got.iter().any(|g| g.channel == c);
            let audited = q
                .number(
                    "SELECT count() FROM actions WHERE event = 'alert' AND actor = 'alertmanager'",
                )
                .await
                .unwrap_or(0.0);
            (has("slack")
                && has(lead)
                && has("whatsapp")
                && has("deadmansswitch")
                && audited >= 1.0)
                .then_some(())
        },
    )
    .await;

    let got = inbox.lock().unwrap().clone();
    // When each rule fired: Prometheus' activeAt (pending) + the 2s `for:`.
    let alerts = prom.api("/api/v1/alerts", &[]).await;
    let fired_at = |name: &str| -> Option<DateTime<Utc>> {
        alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .filter_map(|a| a["activeAt"].as_str()?.parse::<DateTime<Utc>>().ok())
            .min()
            .map(|t| t + chrono::Duration::seconds(2))
    };
    let known: Vec<String> = alerts["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    println!(
        "receiver            | alerts in the first message                                | s after the rule fired"
    );
    for channel in ["slack", lead, "whatsapp", "deadmansswitch"] {
        let Some(first) = got.iter().find(|g| g.channel == channel) else {
            continue;
        };
        let names: Vec<&String> = known
            .iter()
            .filter(|n| first.body.contains(n.as_str()))
            .collect();
        let delay = names
            .iter()
            .filter_map(|n| fired_at(n))
            .min()
            .map(|t| format!("{:.1}", (first.at - t).num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| "?".into());
        println!("{channel:<20}| {:<59}| {delay}", format!("{names:?}"));
    }

    // Slack: the marketing channel, the loss in INR, runbook, Grafana link with the time range
    // under the configured root URL, and the recommendation link of a campaign alert.
    let slack: Vec<Value> = got
        .iter()
        .filter(|g| g.channel == "slack")
        .map(|g| serde_json::from_str(&g.body).expect("Slack payload is JSON"))
        .collect();
    let marketing: Vec<&Value> = slack
        .iter()
        .filter(|m| m["channel"] == "#adpulse-alerts")
        .collect();
    assert!(
        !marketing.is_empty(),
        "nothing on #adpulse-alerts: {slack:?}"
    );
    let text: String = marketing
        .iter()
        .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
        .map(|a| format!("{} {}", a["title"], a["text"]))
        .collect();
    for want in [
        "INR ",
        "https://github.com/adpulse/adpulse/blob/main/docs/runbooks.md#",
        &format!("{GRAFANA}/d/adpulse-crisis?orgId=1&from="),
        "&to=now",
        &format!("http://{adpulse_addr}/campaigns/"),
    ] {
        assert!(text.contains(want), "Slack text lacks {want:?}:\n{text}");
    }
    // engineering alerts are on their own channel, never on the marketing one
    assert!(
        !text.contains("AdpulseDataStale") && !text.contains("AdpulseTargetMissing"),
        "engineering alert on #adpulse-alerts:\n{text}"
    );

    // Email to the marketing lead: subject and body with the same content; never an engineering
    // alert.
    let mails: Vec<&Got> = got.iter().filter(|g| g.channel == lead).collect();
    let mail = mails.iter().map(|g| g.body.as_str()).collect::<String>();
    let decoded = mail.replace("=\r\n", "").replace("=3D", "=");
    assert!(decoded.contains("Subject: "), "{mail}");
    for want in ["INR ", "docs/runbooks.md#", &format!("{GRAFANA}/d/")] {
        assert!(decoded.contains(want), "email lacks {want:?}:\n{decoded}");
    }
    for eng in [
        "AdpulseDataStale",
        "AdpulseTargetMissing",
        "AdpulseQuestDBDown",
        "Watchdog",
    ] {
        assert!(
            !decoded.contains(eng),
            "{eng} emailed to the marketing lead"
        );
    }

    // WhatsApp bridge: Alertmanager's webhook payload (version 4) with the bridge's token.
    let wa = got.iter().find(|g| g.channel == "whatsapp").unwrap();
    assert_eq!(
        wa.auth.as_deref(),
        Some(format!("Bearer {WHATSAPP_TOKEN}").as_str())
    );
    let payload: Value = serde_json::from_str(&wa.body).unwrap();
    assert_eq!(payload["version"], "4");
    assert!(
        payload["alerts"][0]["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("INR"))
    );

    // Dead-man's switch: the Watchdog, and only it.
    for g in got.iter().filter(|g| g.channel == "deadmansswitch") {
        let p: Value = serde_json::from_str(&g.body).unwrap();
        assert_eq!(p["groupLabels"]["alertname"], "Watchdog", "{p}");
    }

    // adpulse's webhook: accepted (2xx: Alertmanager counts no failed webhook notification and
    // adpulse refused no call) and it triggered an evaluation (the audit row).
    let (_, am_metrics) = get(&format!("{}/metrics", am.url())).await;
    let sent = am_counter(&am_metrics, "alertmanager_notifications_total", "webhook");
    let failed = am_counter(
        &am_metrics,
        "alertmanager_notifications_failed_total",
        "webhook",
    );
    println!("Alertmanager webhook notifications: {sent} sent, {failed} failed");
    assert!(sent >= 1.0);
    assert_eq!(failed, 0.0, "a webhook notification failed:\n{}", am.log());
    let (_, adpulse_metrics) = get(&format!("http://{adpulse_addr}/metrics")).await;
    assert_eq!(
        metric(
            &adpulse_metrics,
            "adpulse_actions_total{result=\"refused\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "adpulse refused Alertmanager's call"
    );
    let audit = q
        .rows("SELECT kind, detail FROM actions WHERE event = 'alert' AND actor = 'alertmanager' LIMIT 3")
        .await;
    println!("adpulse audit rows of the webhook: {audit:?}");
    assert_eq!(audit[0][0], "evaluate");

    // No failed notification on any integration (Slack, email, the bridge): the config works.
    for integration in ["slack", "email"] {
        assert_eq!(
            am_counter(
                &am_metrics,
                "alertmanager_notifications_failed_total",
                integration
            ),
            0.0,
            "{integration} notifications failed:\n{}",
            am.log()
        );
    }

    running.stop().await;
}
