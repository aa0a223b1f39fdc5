//! SQL over QuestDB's HTTP `/exec` endpoint: the DDL of `schema`, and the queries of the models,
//! the tests and the tools.

use std::time::Duration;

use super::SinkError;
use super::schema::{TABLES, retention_statements};
use crate::base::Secret;
use crate::config::QuestDbConfig;

/// SQL over QuestDB's HTTP `/exec` endpoint (DDL here; queries in tests and tools).
#[derive(Clone)]
pub struct SqlClient {
    http: reqwest::Client,
    base: String,
    username: Option<String>,
    password: Option<Secret>,
    retention: Vec<String>,
}

impl SqlClient {
    pub fn new(cfg: &QuestDbConfig, password: Option<Secret>) -> Self {
        crate::init_tls();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.request_timeout_secs))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: cfg.http_url.trim_end_matches('/').to_string(),
            username: cfg.username.clone(),
            password,
            retention: retention_statements(cfg),
        }
    }

    /// Run one statement; returns QuestDB's JSON answer.
    pub async fn exec(&self, sql: &str) -> Result<serde_json::Value, SinkError> {
        let mut req = self
            .http
            .get(format!("{}/exec", self.base))
            .query(&[("query", sql)]);
        if let Some(u) = &self.username {
            req = req.basic_auth(u, self.password.as_ref().map(|p| p.expose()));
        }
        let resp = req.send().await.map_err(|e| SinkError::Unreachable {
            url: self.base.clone(),
            reason: e.without_url().to_string(),
        })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.map_err(|e| SinkError::Rejected {
            what: "a query".into(),
            reason: format!("HTTP {status}, unreadable body: {e}"),
        })?;
        if let Some(err) = body.get("error") {
            return Err(SinkError::Rejected {
                what: format!("SQL `{}`", sql.chars().take(80).collect::<String>()),
                reason: err.as_str().unwrap_or("unknown error").to_string(),
            });
        }
        Ok(body)
    }

    /// Create every table (idempotent) and apply the configured retention.
    pub async fn ensure_schema(&self) -> Result<(), SinkError> {
        for (_, ddl) in TABLES {
            self.exec(ddl).await?;
        }
        for stmt in &self.retention {
            self.exec(stmt).await?;
        }
        Ok(())
    }
}
