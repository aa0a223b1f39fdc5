//! The action engine: keeps recommendations (one open per rule and campaign), executes approved,
//! automatic and kill-switch actions through the ad platforms, and audits every event.
//!
//! The files, by responsibility:
//! - `recommendations`: the recommendation state machine (open → approved → executed/dry run/
//!   failed; open → rejected/expired), its persistence across restarts, and the runtime settings
//!   (mode, dry run, caps) a person changes from the action center;
//! - `execute`: carrying out one action exactly once per idempotency key, and the kill switch;
//! - `audit`: the audit trail, made durable in a local append-only fsynced log before it is
//!   forwarded to QuestDB, so the action path never waits on QuestDB;
//! - `auth`: bearer tokens for machines, and the users file (roles, argon2 hashes, lockout) for
//!   people.
//!
//! Exactly once: executions are serialized, and each carries an idempotency key (the
//! recommendation id, or the kill-switch request id); a key that already succeeded returns its
//! recorded outcome without another call, also after a restart (the outcomes are persisted).
//! Every platform call is an absolute "set" and the current state is read first, so a retried or
//! repeated call changes nothing twice; after a retryable failure the state is read again before
//! re-sending, because the failed call may have been applied.

mod audit;
pub mod auth;
mod execute;
mod recommendations;

pub use audit::{AuditFilter, AuditLog, to_csv as audit_csv};
pub use auth::{Access, Role, User, Users, UsersError};
pub use execute::KillPlan;
pub use recommendations::{CapScope, Settings};

use arc_swap::ArcSwap;
use chrono::{DateTime, NaiveDate, Utc};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tracing::{info, warn};

use super::config::{ActionsConfig, load_secret};
use super::platform::{AdPlatform, CampaignState, CampaignStatus, GoogleAds, MetaAds};
use super::rules::ActionKind;
use crate::base::Secret;
use crate::config::{Config, ConfigError};
use crate::records::CampaignKey;
use crate::sinks::questdb::SinkHandle;
use crate::state::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecStatus {
    Open,
    /// Approved, being executed.
    Approved,
    Executed,
    DryRun,
    Failed,
    Rejected,
    /// The condition went away before anyone acted.
    Expired,
}

impl RecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecStatus::Open => "open",
            RecStatus::Approved => "approved",
            RecStatus::Executed => "executed",
            RecStatus::DryRun => "dry_run",
            RecStatus::Failed => "failed",
            RecStatus::Rejected => "rejected",
            RecStatus::Expired => "expired",
        }
    }
}

/// Result of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecResult {
    /// The platform call succeeded.
    Executed,
    /// The campaign was already in the wanted state: nothing sent.
    AlreadyDone,
    /// Dry run: nothing sent.
    DryRun,
    /// Refused by the caps or the platform, or retries ran out.
    Failed,
}

impl ExecResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecResult::Executed => "executed",
            ExecResult::AlreadyDone => "already_done",
            ExecResult::DryRun => "dry_run",
            ExecResult::Failed => "failed",
        }
    }
}

/// A campaign's state as recorded in an outcome (what the platform said, without its handles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateView {
    /// active, paused or other.
    pub status: String,
    /// Daily budget in the account currency (major units).
    pub daily_budget: Option<Decimal>,
}

impl From<&CampaignState> for StateView {
    fn from(s: &CampaignState) -> Self {
        StateView {
            status: match s.status {
                CampaignStatus::Active => "active",
                CampaignStatus::Paused => "paused",
                CampaignStatus::Other => "other",
            }
            .into(),
            daily_budget: s.daily_budget,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub result: ExecResult,
    pub before: Option<StateView>,
    pub after: Option<StateView>,
    pub detail: String,
    /// Platform mutations sent (retries included).
    pub attempts: u32,
    /// True when this answer repeats an earlier execution of the same idempotency key.
    pub duplicate: bool,
}

/// A recommendation as the API and the action center list it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recommendation {
    pub id: String,
    pub rule: String,
    pub kind: ActionKind,
    /// Whether adpulse can carry it out (pause, enable, budget) or a person must (creatives,
    /// audiences).
    pub executable: bool,
    pub platform: String,
    pub account: String,
    pub campaign_id: String,
    pub campaign_name: String,
    pub reason: String,
    pub values: BTreeMap<String, f64>,
    pub budget_increase_ratio: Option<Decimal>,
    pub status: RecStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub outcome: Option<Outcome>,
    /// Who decided (approved or rejected), and their note.
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

impl Recommendation {
    pub fn key(&self) -> CampaignKey {
        CampaignKey {
            platform: self.platform.clone(),
            account: self.account.clone(),
            campaign_id: self.campaign_id.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no recommendation {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// The decision could not be made durable: it was not applied.
    #[error("cannot persist the decision: {0}")]
    Persist(String),
}

/// What the kill switch stops: one campaign, or every campaign of an account.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillTarget {
    pub platform: String,
    pub account: String,
    /// None: every campaign of the account adpulse knows.
    pub campaign_id: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct EvalSummary {
    pub new: usize,
    pub open: usize,
    pub expired: usize,
    pub auto_executed: usize,
}

struct Job {
    action_id: String,
    idem_key: String,
    rule: String,
    kind: ActionKind,
    key: CampaignKey,
    campaign_name: String,
    ratio: Option<Decimal>,
    reason: String,
    values: String,
    auto: bool,
}

struct Metrics {
    open: IntGauge,
    total: IntCounterVec,
}

/// See the module documentation.
pub struct ActionEngine {
    /// The `[actions]` section with the runtime settings (mode, dry run, caps) applied.
    cfg: ArcSwap<ActionsConfig>,
    reporting_currency: String,
    fx: BTreeMap<String, Decimal>,
    platforms: BTreeMap<&'static str, Arc<dyn AdPlatform>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    sink: Option<SinkHandle>,
    read_token: Option<Secret>,
    write_token: Option<Secret>,
    recs: std::sync::Mutex<recommendations::Recs>,
    /// Where decisions are persisted (`actions-state.json`); `None`: in memory only.
    state_path: Option<PathBuf>,
    /// Serializes writes of the state file.
    persist_lock: std::sync::Mutex<()>,
    audit: AuditLog,
    refusals: std::sync::Mutex<audit::Refusals>,
    /// Serializes executions (the outcomes by idempotency key live in `recs`).
    executed: tokio::sync::Mutex<()>,
    metrics: Metrics,
    last_ts: AtomicI64,
    seq: AtomicU64,
    trigger: tokio::sync::Notify,
}

use crate::base::lock;

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl ActionEngine {
    /// Build from the whole configuration: tokens and platform credentials from their files or
    /// variables, decisions and audit log in `general.state_dir`, metrics on `registry`.
    pub fn from_config(
        config: &Config,
        snapshot: Arc<ArcSwap<Snapshot>>,
        sink: Option<SinkHandle>,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        let a = &config.actions;
        let mut platforms: Vec<Arc<dyn AdPlatform>> = Vec::new();
        if let Some(m) = &a.meta {
            match load_secret(m.api.access_token_file.as_ref(), &m.api.access_token_env)? {
                Some(t) => platforms.push(Arc::new(MetaAds::new(m, t))),
                None => warn!(
                    variable = %m.api.access_token_env,
                    "actions.meta is configured without an access token: Meta actions will fail"
                ),
            }
        }
        if let Some(g) = &a.google_ads {
            // the OAuth secrets are read at each refresh (a rotated file is picked up)
            match load_secret(
                g.api.developer_token_file.as_ref(),
                &g.api.developer_token_env,
            )? {
                Some(d) => platforms.push(Arc::new(GoogleAds::new(g, d))),
                None => warn!(
                    variable = %g.api.developer_token_env,
                    "actions.google_ads is configured without its developer token: Google Ads actions will fail"
                ),
            }
        }
        let e = Self::new(
            a.clone(),
            &config.general.reporting_currency,
            config.fx.clone(),
            snapshot,
            sink,
            registry,
            platforms,
        );
        let mut e = e
            .with_state_dir(&config.general.state_dir)
            .map_err(|source| ConfigError::Read {
                path: config.general.state_dir.clone(),
                source,
            })?;
        e.read_token = load_secret(a.auth.read_token_file.as_ref(), &a.auth.read_token_env)?;
        e.write_token = load_secret(a.auth.write_token_file.as_ref(), &a.auth.write_token_env)?;
        if e.write_token.is_none() {
            info!(
                "no API write token configured: approvals and the kill switch through the API are refused"
            );
        }
        Ok(e)
    }

    /// An engine that keeps its decisions and audit log in memory (tests); see
    /// [`ActionEngine::with_state_dir`] for the durable one.
    pub fn new(
        cfg: ActionsConfig,
        reporting_currency: &str,
        fx: BTreeMap<String, Decimal>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        sink: Option<SinkHandle>,
        registry: &Registry,
        platforms: Vec<Arc<dyn AdPlatform>>,
    ) -> Self {
        let open = IntGauge::new(
            "adpulse_actions_open_recommendations",
            "Recommendations waiting for a decision",
        )
        .expect("static metric definition");
        let total = IntCounterVec::new(
            Opts::new(
                "adpulse_actions_total",
                "Actions by result (executed, already_done, dry_run, failed, rejected, refused)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        for r in [
            "executed",
            "already_done",
            "dry_run",
            "failed",
            "rejected",
            "refused",
        ] {
            total.with_label_values(&[r]);
        }
        if let Err(error) = registry.register(Box::new(open.clone())) {
            warn!(%error, "actions metric not registered");
        }
        if let Err(error) = registry.register(Box::new(total.clone())) {
            warn!(%error, "actions metric not registered");
        }
        Self {
            cfg: ArcSwap::from_pointee(cfg),
            reporting_currency: reporting_currency.to_string(),
            fx,
            platforms: platforms.into_iter().map(|p| (p.platform(), p)).collect(),
            snapshot,
            audit: AuditLog::in_memory(sink.clone()),
            sink,
            read_token: None,
            write_token: None,
            recs: std::sync::Mutex::new(recommendations::Recs::default()),
            state_path: None,
            refusals: std::sync::Mutex::new(audit::Refusals::default()),
            persist_lock: std::sync::Mutex::new(()),
            executed: tokio::sync::Mutex::new(()),
            metrics: Metrics { open, total },
            last_ts: AtomicI64::new(0),
            seq: AtomicU64::new(0),
            trigger: tokio::sync::Notify::new(),
        }
    }

    /// Keep decisions in `<dir>/actions-state.json` and the audit log in
    /// `<dir>/actions-audit.jsonl`, loading what an earlier run left there.
    pub fn with_state_dir(mut self, dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        self.audit = AuditLog::open(dir, self.sink.clone())?;
        let path = dir.join("actions-state.json");
        self.load_state(&path)?;
        self.state_path = Some(path);
        Ok(self)
    }

    /// Set the API tokens (tests, or callers that load them otherwise).
    pub fn with_tokens(mut self, read: Option<Secret>, write: Option<Secret>) -> Self {
        self.read_token = read;
        self.write_token = write;
        self
    }

    /// The configuration with the runtime settings applied.
    pub fn config(&self) -> Arc<ActionsConfig> {
        self.cfg.load_full()
    }

    pub fn mode(&self) -> super::Mode {
        self.cfg.load().mode
    }

    pub fn dry_run(&self) -> bool {
        self.cfg.load().dry_run
    }

    /// The KPI snapshot the rules see.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The audit trail (local, durable).
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    fn next_ts(&self) -> DateTime<Utc> {
        // strictly increasing, so two events of one action never share the dedup key
        let now = Utc::now().timestamp_micros();
        let prev = self.last_ts.fetch_max(now, Ordering::SeqCst);
        let t = if now > prev {
            now
        } else {
            self.last_ts.fetch_add(1, Ordering::SeqCst) + 1
        };
        DateTime::from_timestamp_micros(t).unwrap_or_else(Utc::now)
    }

    fn new_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}{:x}-{}",
            Utc::now().timestamp_millis(),
            self.seq.fetch_add(1, Ordering::Relaxed) + 1
        )
    }

    /// At shutdown, once the engine's task has stopped (or was left behind at the grace
    /// deadline, mid-evaluation): write the refusals still counted and hand every audit row of
    /// the local log to the sink before it closes. Repeats what a finished task already did at
    /// no cost (nothing is past the offset then).
    pub async fn finish_audit(&self) {
        self.flush_refusals(true);
        self.audit.finish().await;
    }

    /// Ask the evaluation loop for an evaluation now.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }

    /// Evaluate every `evaluate_interval_secs`, or at once when triggered, and forward the
    /// audit log to QuestDB, until shutdown.
    pub async fn run_loop(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        // the forwarder stops after the refusals of the last minute are written (below)
        let forward_stop = tokio_util::sync::CancellationToken::new();
        let forwarder = tokio::spawn(self.audit.clone().forward_loop(forward_stop.clone()));
        loop {
            let every = Duration::from_secs(self.cfg.load().evaluate_interval_secs.max(1));
            let s = self.evaluate("rules").await;
            if s.new > 0 || s.expired > 0 {
                info!(
                    new = s.new,
                    open = s.open,
                    expired = s.expired,
                    auto_executed = s.auto_executed,
                    "actions evaluated"
                );
            }
            self.flush_refusals(false);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
                _ = self.trigger.notified() => {}
            }
        }
        self.flush_refusals(true);
        forward_stop.cancel();
        let _ = forwarder.await;
    }
}

/// The day a decision is remembered for (the snapshot's reporting day).
fn today(snap: &Snapshot) -> NaiveDate {
    snap.day
}

#[cfg(test)]
mod tests;
