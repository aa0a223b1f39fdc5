//! Secrets never leak: the QuestDB password and an ad-platform token given through the environment
//! appear in no log line and no metric, even while their services fail and errors are logged.

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questdb_password_stays_out_of_logs_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("adpulse.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[general]
state_dir = "{state}"
[server]
listen = "127.0.0.1:{port}"
[questdb]
http_url = "http://127.0.0.1:{qdb}"
username = "adpulse"
spool_dir = "{spool}"
retry_initial_ms = 50
retry_max_ms = 200
[[sources]]
type = "demo"
name = "demo"
backfill_days = 1
[[sources]]
type = "meta"
name = "meta"
account_id = "act_1"
base_url = "http://127.0.0.1:{meta}"
access_token_env = "ADPULSE_TEST_META_TOKEN"
interval_secs = 60
"#,
            meta = free_port(),
            state = dir.path().join("state").display(),
            qdb = free_port(),
            spool = dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let secret = "pw-9f8e7d6c5b4a-do-not-print";
    let token = "EAAB-meta-token-do-not-print";
    let mut child = Command::new(env!("CARGO_BIN_EXE_adpulse"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("ADPULSE_QUESTDB_PASSWORD", secret)
        .env("ADPULSE_TEST_META_TOKEN", token)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = eventually(
        "adpulse to report the sink down",
        Duration::from_secs(60),
        || async {
            let (s, b) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
            (s == 200
                && metric(&b, "adpulse_sink_write_failures_total{sink=\"questdb\"}").unwrap_or(0.0)
                    >= 3.0
                && metric(
                    &b,
                    "adpulse_source_polls_total{result=\"error\",source=\"meta\"}",
                )
                .unwrap_or(0.0)
                    >= 1.0)
                .then_some(b)
        },
    )
    .await;
    let (_, ready) = get(&format!("http://127.0.0.1:{port}/readyz")).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("QuestDB"), "the failure is logged: {logs}");
    assert!(
        logs.contains("poll failed"),
        "the Meta failure is logged: {logs}"
    );
    for (what, text) in [("logs", &logs), ("/metrics", &body), ("/readyz", &ready)] {
        assert!(!text.contains(secret), "the password appears in {what}");
        assert!(!text.contains(token), "the Meta token appears in {what}");
    }
}
