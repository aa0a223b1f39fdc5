//! The actions API under `/api/v1`: recommendations (list, approve, reject), the kill switch, the
//! reallocation proposal, the Alertmanager webhook and the OpenAPI description. Bearer tokens:
//! the read token lists, the write token acts; every refusal is audited. Errors go through
//! [`ApiError`], which returns client mistakes as they are and hides internal detail.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use super::AppState;
use crate::actions::engine::{Access, ActionEngine, ActionError, KillTarget};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown bearer token")]
    Unauthenticated,
    #[error("this token may only read")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("actions are disabled (actions.enabled = false)")]
    Disabled,
    /// Detail is logged here, never sent.
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Disabled => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(detail) => {
                // the one place internal errors are logged
                tracing::error!(%detail, "API internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut resp = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ActionError::Conflict(m) => ApiError::Conflict(m),
            ActionError::Invalid(m) => ApiError::BadRequest(m),
            ActionError::Persist(m) => ApiError::Internal(m),
        }
    }
}

fn engine(st: &AppState) -> Result<Arc<ActionEngine>, ApiError> {
    st.actions.clone().ok_or(ApiError::Disabled)
}

/// What every actions handler does first: the engine (503 when actions are disabled), then the
/// token check for `call` ([`authorize`]); the engine and the token's name.
async fn authorized(
    st: &AppState,
    headers: &HeaderMap,
    need: Access,
    call: &str,
) -> Result<(Arc<ActionEngine>, &'static str), ApiError> {
    let e = engine(st)?;
    let token = authorize(&e, headers, need, call).await?;
    Ok((e, token))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Check the token; a refusal is audited (who, which call) before it is returned.
async fn authorize(
    e: &ActionEngine,
    headers: &HeaderMap,
    need: Access,
    call: &str,
) -> Result<&'static str, ApiError> {
    match e.check_token(bearer(headers), need) {
        Ok(actor) => Ok(actor),
        Err(kind) => {
            let actor = if bearer(headers).is_none() {
                "anonymous"
            } else if kind == "forbidden" {
                "read_token"
            } else {
                "unknown_token"
            };
            // counted, and written as one row per minute and reason: a flood of bad requests
            // costs no I/O per request and never waits on QuestDB
            e.audit_refusal(actor, kind, call);
            Err(if kind == "forbidden" {
                ApiError::Forbidden
            } else {
                ApiError::Unauthenticated
            })
        }
    }
}

/// Optional JSON body of approve/reject/kill: who (a name for the audit) and why.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    by: Option<String>,
    note: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

fn actor_name(token: &str, by: Option<&str>) -> String {
    match by.map(str::trim).filter(|b| !b.is_empty()) {
        Some(b) => format!(
            "{token}:{}",
            b.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        ),
        None => token.to_string(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
}

pub(super) async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (e, _) = authorized(&st, &headers, Access::Read, "list_recommendations").await?;
    let open_only = match q.status.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "status must be open or all, not {other:?}"
            )));
        }
    };
    let recs = e.recommendations(open_only);
    Ok(Json(json!({
        "mode": e.mode(),
        "dry_run": e.dry_run(),
        "recommendations": recs,
    }))
    .into_response())
}

/// What a person decided on one recommendation: the last segment of
/// `/api/v1/recommendations/{id}/{approve|reject}`.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Approve,
    Reject,
}

/// Approve or reject (one route for both): the same write-token check and body, then the
/// engine's call. Another last segment is answered 404, as a route that does not exist.
pub(super) async fn decide(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((id, what)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let verdict = match what.as_str() {
        "approve" => Verdict::Approve,
        "reject" => Verdict::Reject,
        _ => {
            return Err(ApiError::NotFound(format!(
                "no such action {what:?} on a recommendation (approve or reject)"
            )));
        }
    };
    let (e, token) = authorized(&st, &headers, Access::Write, &what).await?;
    let d: Decision = parse(&body)?;
    let actor = actor_name(token, d.by.as_deref());
    let note = d.note.as_deref().unwrap_or("");
    let rec = match verdict {
        Verdict::Approve => e.approve(&id, &actor, note).await?,
        Verdict::Reject => e.reject(&id, &actor, note).await?,
    };
    Ok(Json(rec).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillRequest {
    platform: Option<String>,
    account: Option<String>,
    campaign_id: Option<String>,
    by: Option<String>,
    reason: Option<String>,
}

pub(super) async fn kill_switch(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (e, token) = authorized(&st, &headers, Access::Write, "kill_switch").await?;
    let k: KillRequest = parse(&body)?;
    let (Some(platform), Some(account)) = (k.platform, k.account) else {
        return Err(ApiError::BadRequest("platform and account are required (campaign_id: one campaign; without it: every campaign of the account)".into()));
    };
    // a client retrying the same request sends the same Idempotency-Key: it executes once
    let request_id = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{:x}", chrono::Utc::now().timestamp_micros()));
    let target = KillTarget {
        platform,
        account,
        campaign_id: k.campaign_id,
    };
    let results = e
        .kill_switch(
            &target,
            &actor_name(token, k.by.as_deref()),
            k.reason.as_deref().unwrap_or("kill switch"),
            &request_id,
        )
        .await?;
    let items: Vec<serde_json::Value> = results
        .into_iter()
        .map(|(key, out)| json!({ "platform": key.platform, "account": key.account, "campaign_id": key.campaign_id, "outcome": out }))
        .collect();
    Ok(
        Json(json!({ "request_id": request_id, "dry_run": e.dry_run(), "results": items }))
            .into_response(),
    )
}

pub(super) async fn reallocation(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (e, _) = authorized(&st, &headers, Access::Read, "reallocation").await?;
    Ok(Json(e.reallocation()).into_response())
}

/// Alertmanager webhook payload (version 4); only what we use.
#[derive(Debug, Default, Deserialize)]
struct AlertmanagerPayload {
    version: Option<String>,
    status: Option<String>,
    #[serde(default)]
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    status: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

pub(super) async fn alert_webhook(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (e, _) = authorized(&st, &headers, Access::Write, "alert_webhook").await?;
    let p: AlertmanagerPayload = serde_json::from_slice(&body).map_err(|err| {
        ApiError::BadRequest(format!("not an Alertmanager webhook payload: {err}"))
    })?;
    if p.version.as_deref().is_some_and(|v| v != "4") {
        return Err(ApiError::BadRequest(format!(
            "unsupported webhook version {:?} (4 expected)",
            p.version
        )));
    }
    let names: Vec<String> = p
        .alerts
        .iter()
        .map(|a| {
            format!(
                "{}[{}]",
                a.labels.get("alertname").map(String::as_str).unwrap_or("?"),
                a.status.as_deref().unwrap_or("?")
            )
        })
        .collect();
    e.audit_alert(
        "alertmanager",
        &format!("{} {}", p.status.as_deref().unwrap_or("?"), names.join(" ")),
    );
    let summary = e.evaluate("alertmanager").await;
    Ok(Json(json!({ "alerts": p.alerts.len(), "evaluation": summary })).into_response())
}

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The OpenAPI 3.1 description of `/api/v1` (hand-written; `tests/actions_api.rs` checks it
/// names every route the router serves).
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod fuzz {
    //! Bounded fuzzing of the request parsing (issue 9, item 10): arbitrary bodies, headers and
    //! ids never panic; they parse or answer a client error.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn bodies_parse_or_are_refused_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let b = Bytes::from(body);
            let _ = parse::<Decision>(&b);
            let _ = parse::<KillRequest>(&b);
            let _ = serde_json::from_slice::<AlertmanagerPayload>(&b);
            let _ = crate::web::parse_form_for_fuzz(&b);
        }

        #[test]
        fn bearer_and_actor_names_are_bounded(h in ".{0,300}", by in ".{0,300}") {
            let mut headers = HeaderMap::new();
            if let Ok(v) = header::HeaderValue::from_str(&h) {
                headers.insert(header::AUTHORIZATION, v);
            }
            let _ = bearer(&headers);
            let a = actor_name("write_token", Some(&by));
            prop_assert!(a.chars().count() <= "write_token:".len() + 64);
            prop_assert!(!a.chars().any(char::is_control), "{a:?}");
        }
    }
}
