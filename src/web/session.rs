//! Sign-in, sessions and CSRF. A page handler takes [`Viewer`] (a signed-in person, for GET) or
//! [`Posted`] (a signed-in person whose form carried the session's CSRF token, for POST), so no
//! handler can forget either check. The role is read again from the users file on every request:
//! a removed user or a lowered role takes effect at once.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer};

use super::WebState;
use crate::actions::engine::Role;
use crate::actions::engine::auth::LoginError;

const USER: &str = "user";
const CSRF: &str = "csrf";
const FLASH: &str = "flash";
pub(super) const COOKIE: &str = "adpulse_session";

/// The session layer: an in-memory store (sessions end with the process), cookies HttpOnly and
/// SameSite=Strict, Secure when configured, idle expiry refreshed by every request.
pub(super) fn layer(cfg: &crate::actions::config::WebConfig) -> SessionManagerLayer<MemoryStore> {
    let idle = i64::try_from(cfg.session_idle_secs.max(1)).unwrap_or(i64::MAX);
    SessionManagerLayer::new(MemoryStore::default())
        .with_name(COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(cfg.secure_cookies)
        .with_always_save(true)
        .with_expiry(Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::seconds(idle),
        ))
}

/// The peer address (the API test harness calls the router without one: then loopback).
#[derive(Debug, Clone, Copy)]
pub struct PeerIp;

impl KeyExtractor for PeerIp {
    type Key = IpAddr;
    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<Self::Key, GovernorError> {
        Ok(req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip()))
    }
}

/// Rate limit of sign-in attempts (POST only) per address.
pub(super) fn login_limit(
    cfg: &crate::actions::config::WebConfig,
) -> tower_governor::GovernorLayer<PeerIp, governor::middleware::NoOpMiddleware, axum::body::Body> {
    let conf = GovernorConfigBuilder::default()
        .per_second(cfg.login_refill_secs.max(1))
        .burst_size(cfg.login_burst.max(1))
        .methods(vec![axum::http::Method::POST])
        .key_extractor(PeerIp)
        .finish()
        .expect("login rate limit: period and burst are at least 1");
    tower_governor::GovernorLayer::new(conf)
}

/// A fresh random token (CSRF).
fn token() -> String {
    let b: [u8; 24] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What every page shows around its content.
pub(super) struct Chrome {
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub nav: &'static str,
    pub mode: String,
    pub dry_run: bool,
    pub flash: Option<String>,
    pub can_act: bool,
    pub is_admin: bool,
    /// Links to the Grafana dashboards (empty without `grafana_url`).
    pub dashboards: Vec<super::links::DashboardLink>,
}

/// A signed-in person, on a GET page.
pub(super) struct Viewer {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub session: Session,
}

impl Viewer {
    pub fn actor(&self) -> String {
        format!("user:{}", self.name)
    }

    /// The page chrome; takes the flash message left by the last form.
    pub async fn chrome(&self, st: &WebState, nav: &'static str) -> Chrome {
        let flash = self.session.remove::<String>(FLASH).await.ok().flatten();
        Chrome {
            user: self.name.clone(),
            role: self.role.as_str().into(),
            csrf: self.csrf.clone(),
            nav,
            mode: st.engine.mode().as_str().into(),
            dry_run: st.engine.dry_run(),
            flash,
            can_act: self.role >= Role::Approver,
            is_admin: self.role == Role::Admin,
            dashboards: super::links::header(st.cfg.grafana_url.as_deref()),
        }
    }

    /// Show `msg` on the next page.
    pub async fn flash(&self, msg: impl Into<String>) {
        let _ = self.session.insert(FLASH, msg.into()).await;
    }

    /// Refuse (403) unless the role is at least `need`; the refusal is audited.
    pub fn require(&self, st: &WebState, need: Role, call: &str) -> Result<(), Response> {
        if self.role >= need {
            return Ok(());
        }
        st.engine.audit_refusal(&self.actor(), "forbidden", call);
        Err(error_page(
            StatusCode::FORBIDDEN,
            &format!(
                "Your role ({}) may not do this: it needs {}.",
                self.role.as_str(),
                need.as_str()
            ),
        ))
    }
}

fn had_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.contains(&format!("{COOKIE}=")))
}

async fn viewer_from(parts: &mut Parts, st: &WebState) -> Result<Viewer, Response> {
    let session = Session::from_request_parts(parts, st)
        .await
        .map_err(IntoResponse::into_response)?;
    let name: Option<String> = session.get(USER).await.ok().flatten();
    let role = name.as_deref().and_then(|n| st.users.role_of(n));
    let (Some(name), Some(role)) = (name, role) else {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| p.starts_with('/') && !p.starts_with("//"))
            .unwrap_or_else(|| "/".into());
        let why = if had_cookie(&parts.headers) {
            "expired"
        } else {
            "signin"
        };
        let to = format!("/login?why={why}&next={}", url_encode(&next));
        return Err(Redirect::to(&to).into_response());
    };
    let csrf = match session.get::<String>(CSRF).await.ok().flatten() {
        Some(c) => c,
        None => {
            let c = token();
            let _ = session.insert(CSRF, &c).await;
            c
        }
    };
    Ok(Viewer {
        name,
        role,
        csrf,
        session,
    })
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl FromRequestParts<WebState> for Viewer {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &WebState) -> Result<Self, Response> {
        viewer_from(parts, st).await
    }
}

/// A submitted form's fields, in order (a name may repeat: bulk approval's ids).
pub(super) struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Self {
        FormData(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field's value trimmed, empty as `None`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Constant-time comparison of the CSRF token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Largest form accepted, in bytes (a bulk approval of every recommendation fits).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// A signed-in person's form whose CSRF token matched.
pub(super) struct Posted {
    pub who: Viewer,
    pub form: FormData,
}

impl FromRequest<WebState> for Posted {
    type Rejection = Response;
    async fn from_request(req: Request, st: &WebState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let who = viewer_from(&mut parts, st).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| error_page(StatusCode::PAYLOAD_TOO_LARGE, "This form is too large."))?;
        let form = FormData::parse(&bytes);
        if !form.get(CSRF).is_some_and(|t| same(t, &who.csrf)) {
            st.engine
                .audit_refusal(&who.actor(), "csrf", parts.uri.path());
            return Err(error_page(
                StatusCode::FORBIDDEN,
                "This form did not carry a valid security token (CSRF). Reload the page and try again.",
            ));
        }
        Ok(Posted { who, form })
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

/// A small page for a refusal or an error, with its status.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = ErrorPage {
        status: status.as_u16(),
        message,
    }
    .render()
    .unwrap_or_else(|_| message.to_string());
    (status, Html(body)).into_response()
}

/// Render a template, or a 500 page (logged once, here).
pub(super) fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(b) => Html(b).into_response(),
        Err(error) => {
            tracing::error!(%error, "template failed");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    message: Option<String>,
    no_users: bool,
    users_file: String,
}

#[derive(serde::Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
    why: Option<String>,
}

fn safe_next(n: Option<&str>) -> String {
    // only local paths: never an open redirect
    n.filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or("/")
        .to_string()
}

async fn login_csrf(session: &Session) -> String {
    match session.get::<String>(CSRF).await.ok().flatten() {
        Some(c) => c,
        None => {
            let c = token();
            let _ = session.insert(CSRF, &c).await;
            c
        }
    }
}

pub(super) async fn login_page(
    State(st): State<WebState>,
    session: Session,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let message = match q.why.as_deref() {
        Some("expired") => Some("Your session expired: sign in again.".to_string()),
        Some("out") => Some("Signed out.".to_string()),
        Some("signin") => Some(format!(
            "Sign in to continue (a session ends after {} minutes without activity).",
            st.cfg.session_idle_secs.div_ceil(60)
        )),
        _ => None,
    };
    let no_users = st.users.list().map(|u| u.is_empty()).unwrap_or(false);
    render(&LoginPage {
        csrf: login_csrf(&session).await,
        next: safe_next(q.next.as_deref()),
        message,
        no_users,
        users_file: st.users.path().display().to_string(),
    })
}

pub(super) async fn login(State(st): State<WebState>, session: Session, body: Bytes) -> Response {
    let form = FormData::parse(&body);
    let csrf = login_csrf(&session).await;
    let next = safe_next(form.get("next"));
    let page = |status: StatusCode, message: String, csrf: String| {
        let mut r = render(&LoginPage {
            csrf,
            next: next.clone(),
            message: Some(message),
            no_users: false,
            users_file: st.users.path().display().to_string(),
        });
        *r.status_mut() = status;
        r
    };
    if !form.get(CSRF).is_some_and(|t| same(t, &csrf)) {
        st.engine.audit_refusal("anonymous", "csrf", "login");
        return page(
            StatusCode::FORBIDDEN,
            "The sign-in form expired. Try again.".into(),
            csrf,
        );
    }
    let name = form.text("name").unwrap_or("").to_string();
    let password = form.get("password").unwrap_or("").to_string();
    let users = st.users.clone();
    let who = name.clone();
    let result = tokio::task::spawn_blocking(move || users.verify(&who, &password))
        .await
        .unwrap_or(Err(LoginError::Unavailable));
    match result {
        Ok(user) => {
            // a new session id at sign-in: a planted cookie cannot ride the session
            if session.cycle_id().await.is_err() {
                return page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Cannot start a session.".into(),
                    csrf,
                );
            }
            let _ = session.insert(USER, &user.name).await;
            let _ = session.insert(CSRF, token()).await;
            tracing::info!(user = ?user.name, role = user.role.as_str(), "signed in");
            Redirect::to(&next).into_response()
        }
        Err(e) => {
            st.engine
                .audit_refusal("anonymous", "login_failed", "login");
            tracing::info!(user = ?name, reason = %e, "sign-in refused");
            page(StatusCode::UNAUTHORIZED, e.to_string(), csrf)
        }
    }
}

pub(super) async fn logout(State(_st): State<WebState>, p: Posted) -> Response {
    let _ = p.who.session.flush().await;
    Redirect::to("/login?why=out").into_response()
}
