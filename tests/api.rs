//! The HTTP API in-process (`router` + `oneshot`) and the binary's `check-config`.

mod common;

use adpulse::api::{AppState, router};
use adpulse::records::{CampaignStat, Record};
use adpulse::sinks::metrics::Exposition;
use adpulse::state::Store;
use adpulse::telemetry::Telemetry;
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use common::{india_settings, inr_meta_hour};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::sync::Arc;
use tower::ServiceExt;

fn row(id: &str, ts: DateTime<Utc>, spend: Decimal, clicks: u64, conv: f64) -> Record {
    Record::CampaignStats(CampaignStat {
        impressions: clicks * 100,
        clicks,
        conversions: conv,
        source: "t".into(),
        ..inr_meta_hour(id, ts, spend)
    })
}

async fn body_of(app: axum::Router, uri: &str) -> (StatusCode, String) {
    let r = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn metrics_follow_the_snapshot_and_drop_vanished_campaigns() {
    let telemetry = Arc::new(Telemetry::new());
    let now: DateTime<Utc> = "2026-11-20T12:40:00Z".parse().unwrap();
    let mut store = Store::new(8);
    store.ingest(&[
        row(
            "a",
            "2026-11-20T10:30:00Z".parse().unwrap(),
            dec!(1000),
            200,
            0.0,
        ),
        row(
            "b",
            "2026-11-20T10:30:00Z".parse().unwrap(),
            dec!(500),
            0,
            0.0,
        ),
    ]);
    let snap = Arc::new(ArcSwap::from_pointee(
        store.snapshot(now, &india_settings()),
    ));
    let app = router(AppState {
        telemetry: telemetry.clone(),
        sink_health: None,
        actions: None,
        web: None,
        exposition: Some(Arc::new(Exposition::new(
            snap.clone(),
            None,
            &Default::default(),
        ))),
    });
    let (status, body) = body_of(app.clone(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(
        r#"adpulse_campaign_spend_today{account="act_1",campaign="Campaign a",campaign_id="a",currency="INR",platform="meta"} 1000"#
    ), "{body}");
    assert!(body.contains(r#"adpulse_campaign_roi{account="act_1",campaign="Campaign b",campaign_id="b",platform="meta"} -1"#));
    // b has impressions 0 and clicks 0: CTR and CR are missing, not 0 or NaN
    assert!(!body.contains(r#"adpulse_campaign_ctr_ratio{account="act_1",campaign="Campaign b""#));
    assert!(!body.contains("NaN") && !body.contains("Inf"));
    assert!(body.contains("adpulse_total_spend_today{currency=\"INR\"} 1500"));
    assert!(body.contains("adpulse_roi_target 0"));

    // a week later only campaign a still reports: b's series must disappear
    let later = now + Duration::days(9);
    store.ingest(&[row("a", later - Duration::hours(1), dec!(10), 5, 0.0)]);
    store.prune(later);
    snap.store(Arc::new(store.snapshot(later, &india_settings())));
    // a scrape after the swap may get the previous body while the new one renders in the
    // background (`Exposition::serve_or_refresh`): the scrapes after it get the new one
    let mut body = String::new();
    for _ in 0..300 {
        body = body_of(app.clone(), "/metrics").await.1;
        if !body.contains(r#"campaign_id="b""#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(body.contains(r#"campaign_id="a""#));
    assert!(
        !body.contains(r#"campaign_id="b""#),
        "stale label set for b:\n{body}"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let telemetry = Arc::new(Telemetry::new());
    let app = router(AppState {
        telemetry,
        sink_health: None,
        actions: None,
        web: None,
        exposition: None,
    });
    assert_eq!(body_of(app.clone(), "/healthz").await.0, StatusCode::OK);
    let (s, b) = body_of(app.clone(), "/readyz").await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.contains("disabled"));
    assert_eq!(body_of(app, "/nope").await.0, StatusCode::NOT_FOUND);
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_file(
        dir.path(),
        "bad.toml",
        "[general]\nreporting_timezone = \"Mars/Base\"\n[server]\nlisten = \"nowhere\"\n[[sources]]\ntype = \"demo\"\nname = \"demo\"\nspeedup = -1.0\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adpulse"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "general.reporting_timezone",
        "server.listen",
        "sources[0].speedup",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_adpulse"))
        .arg("check-config")
        .env_remove("ADPULSE_CONFIG")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_adpulse"))
        .args(["check-config", "--config", "/nonexistent/adpulse.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/adpulse.toml"));
}

#[test]
fn bad_env_override_names_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adpulse"))
        .arg("check-config")
        .env("ADPULSE_QUESTDB__FLUSH_ROWS", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flush_rows"), "{err}");
}

#[tokio::test]
async fn openapi_describes_every_actions_route_and_actions_answer_503_when_disabled() {
    let doc: serde_json::Value = serde_json::from_str(adpulse::api::actions::OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/recommendations",
        "/api/v1/recommendations/{id}/approve",
        "/api/v1/recommendations/{id}/reject",
        "/api/v1/reallocation",
        "/api/v1/kill-switch",
        "/api/v1/alerts/webhook",
        "/api/v1/openapi.json",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI description"
        );
    }
    let app = router(AppState {
        telemetry: Arc::new(Telemetry::new()),
        sink_health: None,
        actions: None,
        web: None,
        exposition: None,
    });
    let (s, body) = body_of(app.clone(), "/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        doc
    );
    let (s, body) = body_of(app.clone(), "/api/v1/recommendations").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("disabled"), "{body}");
    // approve and reject share one route: both reach the handler (503 here), another verdict
    // is a route that does not exist
    let post = |uri: &str| Request::post(uri).body(Body::from("{}")).unwrap();
    for (uri, want) in [
        (
            "/api/v1/recommendations/r1/approve",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "/api/v1/recommendations/r1/reject",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        ("/api/v1/recommendations/r1/maybe", StatusCode::NOT_FOUND),
    ] {
        let r = app.clone().oneshot(post(uri)).await.unwrap();
        assert_eq!(r.status(), want, "{uri}");
    }
}

/// Prometheus asks for gzip; once it has, each body is kept only compressed (issue 15). A
/// scraper without gzip still gets the same text, inflated on the fly: its KPI lines are those
/// of a gzip scrape of the same snapshot, and those of the new snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_gzip_scrapes_get_the_same_text_once_only_the_deflate_is_kept() {
    use std::io::Read;
    let at = |t: &str| -> DateTime<Utc> { t.parse().unwrap() };
    let now = at("2026-11-20T12:40:00Z");
    let mut store = Store::new(8);
    store.ingest(&[row("a", at("2026-11-20T10:30:00Z"), dec!(1000), 200, 0.0)]);
    let snap = Arc::new(ArcSwap::from_pointee(
        store.snapshot(now, &india_settings()),
    ));
    let exposition = Arc::new(Exposition::new(snap.clone(), None, &Default::default()));
    let app = router(AppState {
        telemetry: Arc::new(Telemetry::new()),
        sink_health: None,
        actions: None,
        web: None,
        exposition: Some(exposition.clone()),
    });
    let gzip_scrape = |app: axum::Router| async move {
        let r = app
            .oneshot(
                Request::get("/metrics")
                    .header("accept-encoding", "gzip")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip");
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let kpi_lines = |body: &str| -> Vec<String> {
        body.lines()
            .filter(|l| l.starts_with("adpulse_campaign_") || l.starts_with("adpulse_total_"))
            .map(String::from)
            .collect()
    };
    let first = gzip_scrape(app.clone()).await;
    assert!(
        first.contains(r#"campaign_id="a",currency="INR",platform="meta"} 1000"#),
        "{first}"
    );

    // a new snapshot, rendered after gzip was asked for: kept compressed only
    store.ingest(&[row("a", at("2026-11-20T11:30:00Z"), dec!(234), 10, 0.0)]);
    snap.store(Arc::new(store.snapshot(now, &india_settings())));
    let kept = tokio::task::spawn_blocking({
        let e = exposition.clone();
        move || e.current()
    })
    .await
    .unwrap();
    assert!(kept.is_deflated());
    let zipped = gzip_scrape(app.clone()).await;
    let (status, plain) = body_of(app.clone(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        plain.contains(r#"campaign_id="a",currency="INR",platform="meta"} 1234"#),
        "{plain}"
    );
    assert!(!kpi_lines(&plain).is_empty());
    assert_eq!(kpi_lines(&plain), kpi_lines(&zipped));
}
