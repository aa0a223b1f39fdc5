//! A local fake of the Meta Marketing API (Graph API) calls adpulse's actions make, replaying
//! their documented formats: `GET /{version}/{campaign_id}?fields=status,daily_budget` answers
//! `{"id", "status", "daily_budget"}` (minor units, as a string); `POST /{version}/{campaign_id}`
//! takes `application/x-www-form-urlencoded` `status=PAUSED|ACTIVE` or `daily_budget=<minor
//! units>` and answers `{"success": true}`; a bad token gets error 190 (`OAuthException`), an
//! unknown parameter error 100, and `fail_next` makes the next mutations fail with the
//! transient error 2 (`is_transient: true`). Shared by the action tests (included with
//! `#[path]`, as `tests/common` is shared by every test and owned elsewhere).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Form fields of one mutation, in the order sent.
pub type Form = Vec<(String, String)>;

pub struct FakeMeta {
    token: String,
    /// Daily budget (minor units) of a campaign the test did not set.
    default_budget: String,
    pub status: Mutex<HashMap<String, String>>,
    /// Daily budgets in minor units, as the Graph API writes them.
    pub budgets: Mutex<HashMap<String, String>>,
    /// (campaign id, form fields) of every mutation applied, in order.
    pub posts: Mutex<Vec<(String, Form)>>,
    /// Authenticated mutations tried, failed ones included.
    pub attempts: AtomicU32,
    pub applied: AtomicU32,
    pub gets: AtomicU32,
    pub fail_next: AtomicU32,
    pub bad_auth: AtomicU32,
}

impl FakeMeta {
    pub fn new(token: &str, default_budget_minor: &str) -> Arc<Self> {
        Arc::new(FakeMeta {
            token: token.into(),
            default_budget: default_budget_minor.into(),
            status: Mutex::default(),
            budgets: Mutex::default(),
            posts: Mutex::default(),
            attempts: AtomicU32::new(0),
            applied: AtomicU32::new(0),
            gets: AtomicU32::new(0),
            fail_next: AtomicU32::new(0),
            bad_auth: AtomicU32::new(0),
        })
    }

    /// The mutations applied as (campaign id, "field=value").
    pub fn mutations(&self) -> Vec<(String, String)> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .map(|(id, form)| {
                let kv: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (id.clone(), kv.join("&"))
            })
            .collect()
    }

    fn authed(&self, h: &HeaderMap) -> bool {
        let ok = h.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {}", self.token));
        if !ok {
            self.bad_auth.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }

    /// Serve on a free loopback port; the base URL.
    pub async fn serve(self: &Arc<Self>) -> String {
        let app = axum::Router::new()
            .route(
                "/{version}/{id}",
                axum::routing::get(get_campaign).post(post_campaign),
            )
            .with_state(self.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        format!("http://{addr}")
    }
}

fn graph_error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(json!({ "error": body }))).into_response()
}

fn auth_error() -> Response {
    graph_error(
        StatusCode::UNAUTHORIZED,
        json!({"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190, "fbtrace_id": "AbC"}),
    )
}

async fn get_campaign(
    State(f): State<Arc<FakeMeta>>,
    h: HeaderMap,
    Path((_v, id)): Path<(String, String)>,
) -> Response {
    if !f.authed(&h) {
        return auth_error();
    }
    f.gets.fetch_add(1, Ordering::SeqCst);
    let status = f.status.lock().unwrap().get(&id).cloned();
    let budget = f.budgets.lock().unwrap().get(&id).cloned();
    axum::Json(json!({
        "id": id,
        "status": status.unwrap_or_else(|| "ACTIVE".into()),
        "daily_budget": budget.unwrap_or_else(|| f.default_budget.clone()),
    }))
    .into_response()
}

async fn post_campaign(
    State(f): State<Arc<FakeMeta>>,
    h: HeaderMap,
    Path((_v, id)): Path<(String, String)>,
    body: String,
) -> Response {
    if !f.authed(&h) {
        return auth_error();
    }
    let form: Form = form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    f.attempts.fetch_add(1, Ordering::SeqCst);
    if f.fail_next.load(Ordering::SeqCst) > 0 {
        f.fail_next.fetch_sub(1, Ordering::SeqCst);
        return graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException", "is_transient": true, "code": 2, "fbtrace_id": "AbD"}),
        );
    }
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match (field("status"), field("daily_budget")) {
        (Some(s), None) if s == "PAUSED" || s == "ACTIVE" => {
            f.status.lock().unwrap().insert(id.clone(), s);
        }
        (None, Some(b)) if b.parse::<u64>().is_ok() => {
            f.budgets.lock().unwrap().insert(id.clone(), b);
        }
        _ => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                json!({"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}),
            );
        }
    }
    f.applied.fetch_add(1, Ordering::SeqCst);
    f.posts.lock().unwrap().push((id, form));
    axum::Json(json!({"success": true})).into_response()
}
