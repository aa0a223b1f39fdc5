//! HTTP API: `/metrics`, `/healthz`, `/readyz`, and the actions API under `/api/v1` (see
//! `actions`). `router(state)` is tested in-process.

pub mod actions;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus::{Encoder, TextEncoder};
use std::sync::Arc;

use crate::sinks::questdb::SinkHealth;
use crate::telemetry::Telemetry;

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub telemetry: Arc<Telemetry>,
    /// `None` when the QuestDB sink is disabled.
    pub sink_health: Option<Arc<SinkHealth>>,
    /// `None` when actions are disabled (the `/api/v1` routes answer 503).
    pub actions: Option<Arc<crate::actions::ActionEngine>>,
    /// The KPI and model families, rendered once per snapshot (`None`: self-metrics only).
    pub exposition: Option<Arc<crate::sinks::metrics::Exposition>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(actions::openapi))
        .route("/api/v1/recommendations", get(actions::list))
        .route(
            "/api/v1/recommendations/{id}/approve",
            post(actions::approve),
        )
        .route("/api/v1/recommendations/{id}/reject", post(actions::reject))
        .route("/api/v1/reallocation", get(actions::reallocation))
        .route("/api/v1/kill-switch", post(actions::kill_switch))
        .route("/api/v1/alerts/webhook", post(actions::alert_webhook))
        .with_state(state)
}

/// The cached KPI/model body (rendered once per snapshot) followed by the self-metrics, which
/// are small and gathered fresh; gzip when the scraper asks for it.
async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let rendered = match st.exposition.clone() {
        // rendering is CPU work (tens of ms at 10,000 campaigns): keep it off the async workers
        Some(e) => match tokio::task::spawn_blocking(move || e.current()).await {
            Ok(r) => Some(r),
            Err(error) => {
                tracing::error!(%error, "cannot render /metrics");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            }
        },
        None => None,
    };
    let mut own = Vec::with_capacity(16 * 1024);
    if let Err(error) = TextEncoder::new().encode(&st.telemetry.registry.gather(), &mut own) {
        tracing::error!(%error, "cannot encode /metrics");
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::sinks::metrics::accepts_gzip);
    let content_type = (
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    );
    let vary = (header::VARY, "accept-encoding");
    // two chunks, the cached one shared rather than copied (20 scrapers must not hold 20 copies)
    let two = |a: bytes::Bytes, b: bytes::Bytes| {
        axum::body::Body::from_stream(futures_util::stream::iter([
            Ok::<_, std::convert::Infallible>(a),
            Ok(b),
        ]))
    };
    match (rendered, gzip) {
        (Some(r), true) => {
            let [head, rest] = r.gzip_with(&own);
            (
                [content_type, vary, (header::CONTENT_ENCODING, "gzip")],
                two(head, rest),
            )
                .into_response()
        }
        (Some(r), false) => ([content_type, vary], two(r.text.clone(), own.into())).into_response(),
        (None, _) => ([content_type, vary], own).into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<AppState>) -> Response {
    match &st.sink_health {
        Some(h) if !h.is_up() => {
            let body = serde_json::json!({
                "ready": false,
                "questdb": "down",
                "reason": h.last_error().unwrap_or_else(|| "no successful write yet".into()),
                "spool_full": h.spool_full(),
            });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
        _ => axum::Json(serde_json::json!({"ready": true, "questdb": if st.sink_health.is_some() {"up"} else {"disabled"}})).into_response(),
    }
}
