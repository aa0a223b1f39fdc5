//! What the action-center tests share: the demo configuration they run adpulse with (backfill
//! only, fixed start, no QuestDB, no models, fast refresh and evaluation, the fake Meta API) and a
//! plain-HTTP visitor of the pages. Included with `#[path]` (tests/common is shared by every test
//! and owned elsewhere).

use adpulse::actions::config::MetaActionsConfig;
use adpulse::config::Config;
use adpulse::sources::SourceConfig;
use adpulse::sources::demo::DemoConfig;
use std::path::{Path, PathBuf};

/// adpulse on the demo, with its state under `dir`, the actions' Meta client on `meta_base` with
/// the token in `meta_token_file`, and the action center's users in `users_file`.
pub fn demo_config(
    dir: &Path,
    meta_base: String,
    meta_token_file: PathBuf,
    users_file: PathBuf,
) -> Config {
    let mut cfg = Config::from_toml_str(adpulse::config::DEFAULT_CONFIG).unwrap();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.general.refresh_interval_secs = 1;
    cfg.general.state_dir = dir.join("state");
    cfg.questdb.enabled = false;
    cfg.models.enabled = false;
    let mut demo = DemoConfig::new("demo");
    demo.start = Some("2026-11-23T06:30:00Z".parse().unwrap());
    demo.backfill_only = true;
    cfg.sources = vec![SourceConfig::Demo(demo)];
    cfg.actions.evaluate_interval_secs = 1;
    cfg.actions.web.users_file = users_file;
    cfg.actions.meta = Some(MetaActionsConfig::at(meta_base, Some(meta_token_file)));
    cfg
}

/// A users file `dir/users.toml` holding one user `name` with `role` and `password`; its path.
pub fn users_file(
    dir: &Path,
    (name, role): (&str, adpulse::actions::engine::Role),
    password: &str,
) -> PathBuf {
    let path = dir.join("users.toml");
    let users = adpulse::actions::engine::Users::new(&path, 5, std::time::Duration::from_secs(60));
    users.add(name, role, password).unwrap();
    path
}

/// A signed-in visitor of the action center over plain HTTP: keeps the session cookie by hand
/// and follows no redirect, so each answer is seen as the server sent it.
pub struct Visitor {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

impl Visitor {
    /// Another visitor with the same session (for concurrent requests and retry closures).
    pub fn fork(&self) -> Visitor {
        Visitor {
            http: self.http.clone(),
            base: self.base.clone(),
            cookie: self.cookie.clone(),
        }
    }

    pub fn new(base: &str) -> Self {
        adpulse::init_tls();
        Visitor {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.into(),
            cookie: None,
        }
    }

    pub fn keep_cookie(&mut self, r: &reqwest::Response) {
        self.keep_cookie_from(r.headers());
    }

    pub fn keep_cookie_from(&mut self, h: &reqwest::header::HeaderMap) {
        if let Some(c) = h
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
        {
            self.cookie = Some(c.to_string());
        }
    }

    /// (status, headers, body)
    pub async fn send(
        &mut self,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let url = format!("{}{path}", self.base);
        let mut req = match form {
            Some(f) => self.http.post(url).form(f),
            None => self.http.get(url),
        };
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        self.keep_cookie(&r);
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.text().await.unwrap())
    }

    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let (s, _, b) = self.send(path, None).await;
        (s, b)
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let (s, _, b) = self.send(path, Some(form)).await;
        (s, b)
    }

    /// Sign in as `name` the way a browser does: the login page for its CSRF token, then the
    /// form; the answer to the form.
    pub async fn sign_in(&mut self, name: &str, password: &str) -> (u16, String) {
        let (_, page) = self.get("/login").await;
        let csrf = hidden(&page, "csrf");
        let form = [
            ("csrf", csrf.as_str()),
            ("name", name),
            ("password", password),
        ];
        self.post("/login", &form).await
    }
}

/// The value of the first `<input ... name="{name}" value="...">` of a page.
pub fn hidden(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} field in {page}"))
        .to_string()
}
