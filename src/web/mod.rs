//! The action center: server-rendered pages at `/` for the marketing team (Now, Recommendations,
//! Kill switch, Caps, Reallocation, Audit trail, a page per campaign, Settings), calling the same
//! engine functions as `/api/v1`. Templates are compile-time checked (`askama`, in
//! `templates/`); htmx and the stylesheet are embedded in the binary (`assets/`), so there is
//! no client build.
//!
//! People sign in with a name and password from the users file (`session`): cookie sessions
//! (HttpOnly, SameSite=Strict, Secure when configured for TLS) that end after a configured idle
//! time, a CSRF token checked on every form, login attempts rate-limited per address (a
//! `tower_governor` layer) and a lockout per user after failed attempts.

mod format;
pub mod links;
// handlers answer early with a ready page (`Result<_, Response>`), as axum handlers do; boxing
// every refusal would only add noise
#[allow(clippy::result_large_err)]
mod pages;
#[allow(clippy::result_large_err)]
mod session;

pub use format::{inr, ist, pct};
pub use session::PeerIp;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Duration;

use crate::actions::ActionEngine;
use crate::actions::config::WebConfig;
use crate::actions::engine::Users;
use crate::telemetry::Telemetry;

/// What the pages need.
#[derive(Clone)]
pub struct WebState {
    pub engine: Arc<ActionEngine>,
    pub users: Arc<Users>,
    pub telemetry: Arc<Telemetry>,
    pub cfg: WebConfig,
    /// The ROI target trajectory: (first day, target ROI as a fraction).
    pub targets: Vec<(chrono::NaiveDate, f64)>,
}

impl WebState {
    pub fn new(
        engine: Arc<ActionEngine>,
        telemetry: Arc<Telemetry>,
        cfg: WebConfig,
        targets: Vec<(chrono::NaiveDate, f64)>,
    ) -> Self {
        let users = Arc::new(Users::new(
            &cfg.users_file,
            cfg.login_max_failures,
            Duration::from_secs(cfg.lockout_secs),
        ));
        WebState {
            engine,
            users,
            telemetry,
            cfg,
            targets,
        }
    }
}

/// The action center's routes, with their session and login rate-limit layers.
pub fn router(state: WebState) -> Router {
    let login = Router::new()
        .route("/login", get(session::login_page).post(session::login))
        .layer(session::login_limit(&state.cfg));
    Router::new()
        .merge(login)
        .route("/logout", post(session::logout))
        .route("/", get(pages::now))
        .route("/recommendations", get(pages::recommendations))
        .route("/recommendations/bulk-approve", post(pages::bulk_approve))
        .route("/recommendations/{id}/approve", post(pages::approve))
        .route("/recommendations/{id}/reject", post(pages::reject))
        .route("/kill-switch", get(pages::kill_page).post(pages::kill))
        .route("/caps", get(pages::caps_page).post(pages::set_cap))
        .route("/reallocation", get(pages::reallocation_page))
        .route("/reallocation/apply", post(pages::apply_reallocation))
        .route("/audit", get(pages::audit_page))
        .route("/audit.csv", get(pages::audit_csv))
        .route("/campaigns/{campaign_id}", get(pages::campaign_page))
        .route("/settings", get(pages::settings_page).post(pages::set_mode))
        .route("/assets/{file}", get(asset))
        .layer(session::layer(&state.cfg))
        .with_state(state)
}

/// The action center's form parser, for the API fuzz harness: (fields parsed).
#[doc(hidden)]
pub fn parse_form_for_fuzz(body: &[u8]) -> usize {
    session::FormData::parse(body).count()
}

const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("assets/app.css");

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "app.css" => (CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
