//! HTTP API: `/metrics`, `/healthz`, `/readyz`, and the actions API under `/api/v1` (see
//! `actions`), rate-limited per address (a `tower_governor` layer), so a flood of requests with
//! a wrong token is answered 429 before it costs anything. The action center (`crate::web`) is
//! merged in at `/` when configured. `router(state)` is tested in-process.

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
    /// The action center; `None`: not served.
    pub web: Option<crate::web::WebState>,
    /// The KPI and model families, rendered once per snapshot (`None`: self-metrics only).
    pub exposition: Option<Arc<crate::sinks::metrics::Exposition>>,
}

pub fn router(state: AppState) -> Router {
    let limits = state
        .actions
        .as_ref()
        .map(|e| e.config().auth.clone())
        .unwrap_or_default();
    let api = Router::new()
        .route("/api/v1/openapi.json", get(actions::openapi))
        .route("/api/v1/recommendations", get(actions::list))
        // `{verdict}`: approve or reject
        .route(
            "/api/v1/recommendations/{id}/{verdict}",
            post(actions::decide),
        )
        .route("/api/v1/reallocation", get(actions::reallocation))
        .route("/api/v1/kill-switch", post(actions::kill_switch))
        .route("/api/v1/alerts/webhook", post(actions::alert_webhook))
        .layer(api_limit(&limits));
    let web = state.web.clone();
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .with_state(state);
    if let Some(w) = web {
        app = app.merge(crate::web::router(w));
    }
    app
}

/// Requests per address to `/api/v1`: a burst, then one per `api_refill_ms`.
fn api_limit(
    a: &crate::actions::config::AuthConfig,
) -> tower_governor::GovernorLayer<
    crate::web::PeerIp,
    governor::middleware::NoOpMiddleware,
    axum::body::Body,
> {
    let conf = tower_governor::governor::GovernorConfigBuilder::default()
        .per_millisecond(a.api_refill_ms.max(1))
        .burst_size(a.api_burst.max(1))
        .key_extractor(crate::web::PeerIp)
        .finish()
        .expect("API rate limit: period and burst are at least 1");
    tower_governor::GovernorLayer::new(conf)
}

/// The cached KPI/model body (rendered once per snapshot) followed by the self-metrics, which
/// are small and gathered fresh; gzip when the scraper asks for it.
async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::sinks::metrics::accepts_gzip);
    if gzip && let Some(e) = &st.exposition {
        e.want_gzip();
    }
    // the body the refresher rendered (or the previous one while it renders the next)
    let served = st.exposition.as_ref().and_then(|e| e.serve_or_refresh());
    let rendered = match (served, st.exposition.clone()) {
        (Some(r), _) => Some(r),
        // rendering is CPU work (tens of ms at 10,000 campaigns): keep it off the async workers
        (None, Some(e)) => match tokio::task::spawn_blocking(move || e.current()).await {
            Ok(r) => Some(r),
            Err(error) => {
                tracing::error!(%error, "cannot render /metrics");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            }
        },
        (None, None) => None,
    };
    let mut own = Vec::with_capacity(16 * 1024);
    if let Err(error) = TextEncoder::new().encode(&st.telemetry.registry.gather(), &mut own) {
        tracing::error!(%error, "cannot encode /metrics");
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
    }
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
            // the refresher compresses each body once gzip has been asked for; only the first
            // gzip scrape (or one racing it) compresses here, off the async workers
            let zipped = if r.is_deflated() {
                Ok(r.gzip_with(&own))
            } else {
                tokio::task::spawn_blocking(move || r.gzip_with(&own)).await
            };
            let Ok([head, rest]) = zipped else {
                tracing::error!("cannot compress /metrics");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            };
            (
                [content_type, vary, (header::CONTENT_ENCODING, "gzip")],
                two(head, rest),
            )
                .into_response()
        }
        (Some(r), false) => {
            // the text as kept, or inflated a chunk at a time from the kept deflate
            let body = futures_util::stream::iter(
                r.plain_chunks()
                    .chain(std::iter::once(own.into()))
                    .map(Ok::<_, std::convert::Infallible>),
            );
            ([content_type, vary], axum::body::Body::from_stream(body)).into_response()
        }
        (None, _) => ([content_type, vary], own).into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when QuestDB takes rows. Rows QuestDB refused are reported apart (`rejected_rows`, with
/// the newest reason): they are in the dead-letter file, and do not make adpulse unready, since
/// every other row is still written.
async fn readyz(State(st): State<AppState>) -> Response {
    match &st.sink_health {
        Some(h) if !h.is_up() => {
            let body = serde_json::json!({
                "ready": false,
                "questdb": "down",
                "reason": h.last_error().unwrap_or_else(|| "no successful write yet".into()),
                "spool_full": h.spool_full(),
                "rejected_rows": h.rejected_rows(),
                "last_rejection": h.last_rejection(),
            });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
        Some(h) => axum::Json(serde_json::json!({
            "ready": true,
            "questdb": "up",
            "rejected_rows": h.rejected_rows(),
            "last_rejection": h.last_rejection(),
        }))
        .into_response(),
        None => {
            axum::Json(serde_json::json!({"ready": true, "questdb": "disabled"})).into_response()
        }
    }
}
