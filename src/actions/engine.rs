//! The action engine: keeps recommendations (one open per rule and campaign), executes approved,
//! automatic and kill-switch actions through the ad platforms, and audits every event.
//!
//! Exactly once: executions are serialized, and each carries an idempotency key (the
//! recommendation id, or the kill-switch request id); a key that already succeeded returns its
//! recorded outcome without another call. Every platform call is an absolute "set" and the
//! current state is read first, so a retried or repeated call changes nothing twice; after a
//! retryable failure the state is read again before re-sending, because the failed call may
//! have been applied.

use arc_swap::ArcSwap;
use chrono::{DateTime, NaiveDate, Utc};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tracing::{info, warn};

use super::config::{ActionsConfig, Mode, load_secret};
use super::platform::{
    AdPlatform, CampaignState, CampaignStatus, GoogleAds, MetaAds, PlatformError,
};
use super::rules::{self, ActionKind, Proposal, Reallocation};
use crate::base::Secret;
use crate::config::{Config, ConfigError};
use crate::records::{ActionRow, CampaignKey, Record};
use crate::sinks::questdb::SinkHandle;
use crate::state::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Result of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub result: ExecResult,
    pub before: Option<CampaignState>,
    pub after: Option<CampaignState>,
    pub detail: String,
    /// Platform mutations sent (retries included).
    pub attempts: u32,
    /// True when this answer repeats an earlier execution of the same idempotency key.
    pub duplicate: bool,
}

/// A recommendation as the API lists it.
#[derive(Debug, Clone, Serialize)]
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
    #[serde(skip)]
    key: CampaignKey,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no recommendation {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

/// Who may do what through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
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

#[derive(Default)]
struct Recs {
    by_id: BTreeMap<String, Recommendation>,
    open: HashMap<(String, CampaignKey), String>,
    /// Closed (executed, rejected, expired) on this day: not reopened before the next one.
    closed_on: HashMap<(String, CampaignKey), NaiveDate>,
    auto_day: Option<NaiveDate>,
    auto_count: u32,
}

struct Metrics {
    open: IntGauge,
    total: IntCounterVec,
}

/// See the module documentation.
pub struct ActionEngine {
    cfg: ActionsConfig,
    reporting_currency: String,
    fx: BTreeMap<String, Decimal>,
    platforms: BTreeMap<&'static str, Arc<dyn AdPlatform>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    sink: Option<SinkHandle>,
    read_token: Option<Secret>,
    write_token: Option<Secret>,
    recs: std::sync::Mutex<Recs>,
    executed: tokio::sync::Mutex<HashMap<String, Outcome>>,
    metrics: Metrics,
    last_ts: AtomicI64,
    seq: AtomicU64,
    trigger: tokio::sync::Notify,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl ActionEngine {
    /// Build from the whole configuration: tokens and platform credentials from their files or
    /// variables, metrics on `registry`.
    pub fn from_config(
        config: &Config,
        snapshot: Arc<ArcSwap<Snapshot>>,
        sink: Option<SinkHandle>,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        let a = &config.actions;
        let mut platforms: Vec<Arc<dyn AdPlatform>> = Vec::new();
        if let Some(m) = &a.meta {
            match load_secret(m.access_token_file.as_ref(), &m.access_token_env)? {
                Some(t) => platforms.push(Arc::new(MetaAds::new(m, t))),
                None => warn!(
                    variable = %m.access_token_env,
                    "actions.meta is configured without an access token: Meta actions will fail"
                ),
            }
        }
        if let Some(g) = &a.google_ads {
            let access = load_secret(g.access_token_file.as_ref(), &g.access_token_env)?;
            let dev = load_secret(g.developer_token_file.as_ref(), &g.developer_token_env)?;
            match (access, dev) {
                (Some(t), Some(d)) => platforms.push(Arc::new(GoogleAds::new(g, t, d))),
                _ => warn!(
                    "actions.google_ads is configured without its access or developer token: Google Ads actions will fail"
                ),
            }
        }
        let mut e = Self::new(
            a.clone(),
            &config.general.reporting_currency,
            config.fx.clone(),
            snapshot,
            sink,
            registry,
            platforms,
        );
        e.read_token = load_secret(a.auth.read_token_file.as_ref(), &a.auth.read_token_env)?;
        e.write_token = load_secret(a.auth.write_token_file.as_ref(), &a.auth.write_token_env)?;
        if e.write_token.is_none() {
            info!("no API write token configured: approvals and the kill switch are refused");
        }
        Ok(e)
    }

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
            cfg,
            reporting_currency: reporting_currency.to_string(),
            fx,
            platforms: platforms.into_iter().map(|p| (p.platform(), p)).collect(),
            snapshot,
            sink,
            read_token: None,
            write_token: None,
            recs: std::sync::Mutex::new(Recs::default()),
            executed: tokio::sync::Mutex::new(HashMap::new()),
            metrics: Metrics { open, total },
            last_ts: AtomicI64::new(0),
            seq: AtomicU64::new(0),
            trigger: tokio::sync::Notify::new(),
        }
    }

    /// Set the API tokens (tests, or callers that load them otherwise).
    pub fn with_tokens(mut self, read: Option<Secret>, write: Option<Secret>) -> Self {
        self.read_token = read;
        self.write_token = write;
        self
    }

    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    pub fn dry_run(&self) -> bool {
        self.cfg.dry_run
    }

    /// The actor a bearer token stands for, if it grants `need`.
    pub fn check_token(
        &self,
        bearer: Option<&str>,
        need: Access,
    ) -> Result<&'static str, &'static str> {
        let Some(t) = bearer else {
            return Err("unauthenticated");
        };
        if self
            .write_token
            .as_ref()
            .is_some_and(|w| same(w.expose(), t))
        {
            return Ok("write_token");
        }
        if self
            .read_token
            .as_ref()
            .is_some_and(|r| same(r.expose(), t))
        {
            return match need {
                Access::Read => Ok("read_token"),
                Access::Write => Err("forbidden"),
            };
        }
        Err("unauthenticated")
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

    fn row(&self, action_id: &str, event: &str, actor: &str) -> ActionRow {
        ActionRow {
            ts: self.next_ts(),
            action_id: action_id.into(),
            event: event.into(),
            actor: actor.into(),
            mode: self.cfg.mode.as_str().into(),
            dry_run: self.cfg.dry_run,
            rule: String::new(),
            kind: String::new(),
            platform: String::new(),
            account: String::new(),
            campaign_id: String::new(),
            campaign_name: String::new(),
            reason: String::new(),
            rule_values: String::new(),
            state_before: String::new(),
            state_after: String::new(),
            result: "ok".into(),
            detail: String::new(),
            idempotency_key: String::new(),
        }
    }

    /// Write one audit event (and log it; nothing secret is in a row).
    async fn audit(&self, row: ActionRow) {
        info!(
            action_id = %row.action_id,
            event = %row.event,
            actor = %row.actor,
            rule = %row.rule,
            kind = %row.kind,
            campaign_id = %row.campaign_id,
            result = %row.result,
            detail = %row.detail,
            "action audit"
        );
        if let Some(s) = &self.sink
            && s.send(vec![Record::Actions(row)]).await.is_err()
        {
            warn!("QuestDB sink stopped: audit event only in the log");
        }
    }

    /// Record a refused API call (no or wrong token, read token on a write call).
    pub async fn audit_refusal(&self, actor: &str, result: &str, call: &str, target: &str) {
        self.metrics.total.with_label_values(&["refused"]).inc();
        let mut r = self.row(&self.new_id("req-"), "refused", actor);
        r.kind = call.into();
        r.result = result.into();
        r.detail = format!("{call} {target}");
        self.audit(r).await;
    }

    /// Record an Alertmanager notification that triggered an evaluation.
    pub async fn audit_alert(&self, actor: &str, summary: &str) {
        let mut r = self.row(&self.new_id("alert-"), "alert", actor);
        r.kind = "evaluate".into();
        r.detail = summary.chars().take(500).collect();
        self.audit(r).await;
    }

    fn rec_row(&self, rec: &Recommendation, event: &str, actor: &str) -> ActionRow {
        let mut r = self.row(&rec.id, event, actor);
        r.rule.clone_from(&rec.rule);
        r.kind = rec.kind.as_str().into();
        r.platform.clone_from(&rec.key.platform);
        r.account.clone_from(&rec.key.account);
        r.campaign_id.clone_from(&rec.key.campaign_id);
        r.campaign_name.clone_from(&rec.campaign_name);
        r.reason.clone_from(&rec.reason);
        r.rule_values = json(&rec.values);
        r.idempotency_key = rec.id.clone();
        r
    }

    fn update_open_gauge(&self, recs: &Recs) {
        self.metrics.open.set(recs.open.len() as i64);
    }

    /// Ask the evaluation loop for an evaluation now.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }

    /// Evaluate the rules on the current snapshot: new recommendations, updates of open ones,
    /// expiry of those whose condition went away, and in `auto` mode execution within limits.
    pub async fn evaluate(&self, actor: &str) -> EvalSummary {
        let snap = self.snapshot.load_full();
        let mut summary = EvalSummary::default();
        if snap.campaigns.is_empty() {
            return summary;
        }
        let proposals = rules::evaluate(&snap, &self.cfg);
        let now = Utc::now();
        let mut rows = Vec::new();
        let mut jobs = Vec::new();
        {
            let mut recs = lock(&self.recs);
            let recs = &mut *recs;
            if recs.auto_day != Some(snap.day) {
                recs.auto_day = Some(snap.day);
                recs.auto_count = 0;
            }
            let mut current = std::collections::HashSet::new();
            for p in proposals {
                let k = (p.rule.clone(), p.key.clone());
                current.insert(k.clone());
                if let Some(id) = recs.open.get(&k)
                    && let Some(r) = recs.by_id.get_mut(id)
                {
                    r.values = p.values;
                    r.reason = p.reason;
                    r.budget_increase_ratio = p.budget_increase_ratio;
                    r.updated_at = now;
                    continue;
                }
                if recs.closed_on.get(&k) == Some(&snap.day) {
                    continue;
                }
                let rec = self.recommendation(p, now);
                rows.push(self.rec_row(&rec, "recommended", actor));
                summary.new += 1;
                let auto_ok = self.cfg.mode == Mode::Auto
                    && rec.executable
                    && self.cfg.auto.rules.contains(&rec.rule)
                    && recs.auto_count < self.cfg.auto.max_actions_per_day;
                let mut rec = rec;
                if auto_ok {
                    recs.auto_count += 1;
                    rec.status = RecStatus::Approved;
                    jobs.push(self.job(&rec, true));
                    rows.push(self.rec_row(&rec, "approved", "auto"));
                } else {
                    recs.open.insert(k, rec.id.clone());
                }
                recs.by_id.insert(rec.id.clone(), rec);
            }
            let gone: Vec<(String, CampaignKey)> = recs
                .open
                .keys()
                .filter(|k| !current.contains(*k))
                .cloned()
                .collect();
            for k in gone {
                if let Some(id) = recs.open.remove(&k)
                    && let Some(r) = recs.by_id.get_mut(&id)
                {
                    r.status = RecStatus::Expired;
                    r.updated_at = now;
                    summary.expired += 1;
                    let rr = r.clone();
                    rows.push(self.rec_row(&rr, "expired", actor));
                    // not remembered in closed_on: if the condition comes back, so does the
                    // recommendation
                }
            }
            summary.open = recs.open.len();
            self.update_open_gauge(recs);
        }
        for r in rows {
            self.audit(r).await;
        }
        for job in jobs {
            let id = job.action_id.clone();
            let out = self.execute(job, "auto").await;
            if out.result != ExecResult::Failed {
                summary.auto_executed += 1;
            }
            self.finish(&id, out, snap.day);
        }
        summary
    }

    fn recommendation(&self, p: Proposal, now: DateTime<Utc>) -> Recommendation {
        Recommendation {
            id: self.new_id("rec-"),
            executable: p.kind.executable(),
            rule: p.rule,
            kind: p.kind,
            platform: p.key.platform.clone(),
            account: p.key.account.clone(),
            campaign_id: p.key.campaign_id.clone(),
            campaign_name: p.campaign_name,
            reason: p.reason,
            values: p.values,
            budget_increase_ratio: p.budget_increase_ratio,
            status: RecStatus::Open,
            created_at: now,
            updated_at: now,
            outcome: None,
            key: p.key,
        }
    }

    fn job(&self, rec: &Recommendation, auto: bool) -> Job {
        Job {
            action_id: rec.id.clone(),
            idem_key: format!("{}:{}", rec.id, rec.kind.as_str()),
            rule: rec.rule.clone(),
            kind: rec.kind,
            key: rec.key.clone(),
            campaign_name: rec.campaign_name.clone(),
            ratio: rec.budget_increase_ratio,
            reason: rec.reason.clone(),
            values: json(&rec.values),
            auto,
        }
    }

    fn finish(&self, id: &str, out: Outcome, day: NaiveDate) {
        let mut recs = lock(&self.recs);
        let recs = &mut *recs;
        if let Some(r) = recs.by_id.get_mut(id) {
            r.status = match out.result {
                ExecResult::Executed | ExecResult::AlreadyDone => RecStatus::Executed,
                ExecResult::DryRun => RecStatus::DryRun,
                ExecResult::Failed => RecStatus::Failed,
            };
            r.updated_at = Utc::now();
            r.outcome = Some(out);
            let k = (r.rule.clone(), r.key.clone());
            recs.open.remove(&k);
            recs.closed_on.insert(k, day);
        }
        self.update_open_gauge(recs);
    }

    /// Every recommendation, newest first; only open ones with `open_only`.
    pub fn recommendations(&self, open_only: bool) -> Vec<Recommendation> {
        let recs = lock(&self.recs);
        let mut v: Vec<Recommendation> = recs
            .by_id
            .values()
            .filter(|r| !open_only || r.status == RecStatus::Open)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        v
    }

    pub fn reallocation(&self) -> Reallocation {
        rules::reallocate(&self.snapshot.load(), &self.cfg)
    }

    /// Approve one recommendation: executes it (once, however often it is approved).
    pub async fn approve(&self, id: &str, actor: &str) -> Result<Recommendation, ActionError> {
        let (job, day, row) = {
            let mut recs = lock(&self.recs);
            let rec = recs
                .by_id
                .get_mut(id)
                .ok_or_else(|| ActionError::NotFound(id.into()))?;
            if self.cfg.mode == Mode::Recommend {
                return Err(ActionError::Conflict(
                    "actions.mode is \"recommend\": recommendations are not executed; set it to \"approve\" to act through the API".into(),
                ));
            }
            if !rec.executable {
                return Err(ActionError::Conflict(format!(
                    "{} is a recommendation for a person; adpulse cannot carry it out",
                    rec.kind.as_str()
                )));
            }
            match rec.status {
                RecStatus::Rejected | RecStatus::Expired => {
                    return Err(ActionError::Conflict(format!(
                        "recommendation {id} is {}",
                        if rec.status == RecStatus::Rejected {
                            "rejected"
                        } else {
                            "expired"
                        }
                    )));
                }
                // Open, Failed (try again), Approved/Executed/DryRun (the idempotency key
                // answers with the recorded outcome)
                _ => {}
            }
            if matches!(rec.status, RecStatus::Open | RecStatus::Failed) {
                rec.status = RecStatus::Approved;
            }
            let rec = rec.clone();
            let day = self.snapshot.load().day;
            (
                self.job(&rec, false),
                day,
                self.rec_row(&rec, "approved", actor),
            )
        };
        self.audit(row).await;
        let out = self.execute(job, actor).await;
        if !out.duplicate {
            self.finish(id, out, day);
        }
        lock(&self.recs)
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| ActionError::NotFound(id.into()))
    }

    pub async fn reject(
        &self,
        id: &str,
        actor: &str,
        note: &str,
    ) -> Result<Recommendation, ActionError> {
        let (rec, day) = {
            let mut recs = lock(&self.recs);
            let recs = &mut *recs;
            let rec = recs
                .by_id
                .get_mut(id)
                .ok_or_else(|| ActionError::NotFound(id.into()))?;
            if rec.status != RecStatus::Open {
                return Err(ActionError::Conflict(format!(
                    "recommendation {id} is not open ({:?})",
                    rec.status
                )));
            }
            rec.status = RecStatus::Rejected;
            rec.updated_at = Utc::now();
            let rec = rec.clone();
            let day = self.snapshot.load().day;
            let k = (rec.rule.clone(), rec.key.clone());
            recs.open.remove(&k);
            recs.closed_on.insert(k, day);
            self.update_open_gauge(recs);
            (rec, day)
        };
        let _ = day;
        self.metrics.total.with_label_values(&["rejected"]).inc();
        let mut row = self.rec_row(&rec, "rejected", actor);
        row.detail = note.chars().take(500).collect();
        self.audit(row).await;
        Ok(rec)
    }

    /// Pause one campaign or every campaign of an account (those in the current snapshot).
    /// `request_id` makes a repeated request (same id) execute once.
    pub async fn kill_switch(
        &self,
        target: &KillTarget,
        actor: &str,
        reason: &str,
        request_id: &str,
    ) -> Result<Vec<(CampaignKey, Outcome)>, ActionError> {
        let snap = self.snapshot.load_full();
        let targets: Vec<(CampaignKey, String)> = match &target.campaign_id {
            Some(id) => {
                let key = CampaignKey {
                    platform: target.platform.clone(),
                    account: target.account.clone(),
                    campaign_id: id.clone(),
                };
                let name = snap
                    .campaigns
                    .iter()
                    .find(|c| c.key == key)
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                vec![(key, name)]
            }
            None => snap
                .campaigns
                .iter()
                .filter(|c| c.key.platform == target.platform && c.key.account == target.account)
                .map(|c| (c.key.clone(), c.name.clone()))
                .collect(),
        };
        if targets.is_empty() {
            return Err(ActionError::Invalid(format!(
                "no campaign of account {} on {} is known",
                target.account, target.platform
            )));
        }
        let mut out = Vec::new();
        for (key, name) in targets {
            let action_id = format!("kill-{request_id}");
            let job = Job {
                idem_key: format!(
                    "{action_id}:{}:{}:{}",
                    key.platform, key.account, key.campaign_id
                ),
                action_id,
                rule: "kill_switch".into(),
                kind: ActionKind::Pause,
                key: key.clone(),
                campaign_name: name,
                ratio: None,
                reason: reason.chars().take(500).collect(),
                values: String::new(),
                auto: false,
            };
            out.push((key, self.execute(job, actor).await));
        }
        Ok(out)
    }

    fn to_reporting_currency(&self, amount: Decimal, currency: &str) -> Option<Decimal> {
        if currency == self.reporting_currency {
            Some(amount)
        } else {
            self.fx.get(currency).map(|r| amount * r)
        }
    }

    fn reporting_to(&self, amount: Decimal, currency: &str) -> Option<Decimal> {
        if currency == self.reporting_currency {
            Some(amount)
        } else {
            self.fx
                .get(currency)
                .filter(|r| !r.is_zero())
                .map(|r| amount / r)
        }
    }

    async fn read(
        &self,
        p: &dyn AdPlatform,
        key: &CampaignKey,
    ) -> Result<CampaignState, PlatformError> {
        let mut wait = Duration::from_millis(self.cfg.retry.initial_ms);
        let max = Duration::from_millis(self.cfg.retry.max_ms);
        let mut attempt = 1;
        loop {
            match p.get_campaign(key).await {
                Ok(s) => return Ok(s),
                Err(e) if e.is_retryable() && attempt < self.cfg.retry.attempts => {
                    let d = e.retry_after().unwrap_or(wait);
                    if d > max {
                        return Err(e);
                    }
                    tokio::time::sleep(d).await;
                    wait = (wait * 2).min(max);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Execute one job exactly once per idempotency key; audits and counts the outcome.
    async fn execute(&self, job: Job, actor: &str) -> Outcome {
        let mut executed = self.executed.lock().await;
        let mut row = self.row(&job.action_id, "", actor);
        row.rule.clone_from(&job.rule);
        row.kind = job.kind.as_str().into();
        row.platform.clone_from(&job.key.platform);
        row.account.clone_from(&job.key.account);
        row.campaign_id.clone_from(&job.key.campaign_id);
        row.campaign_name.clone_from(&job.campaign_name);
        row.reason.clone_from(&job.reason);
        row.rule_values.clone_from(&job.values);
        row.idempotency_key.clone_from(&job.idem_key);
        if let Some(prev) = executed.get(&job.idem_key) {
            let mut out = prev.clone();
            out.duplicate = true;
            row.event = "duplicate".into();
            row.result = "skipped".into();
            row.detail = format!("already {}: not executed again", prev.result.as_str());
            drop(executed);
            self.audit(row).await;
            return out;
        }
        let out = self.run(&job).await;
        if out.result != ExecResult::Failed {
            // failures are not remembered: approving again tries again
            executed.insert(job.idem_key.clone(), out.clone());
        }
        drop(executed);
        self.metrics
            .total
            .with_label_values(&[out.result.as_str()])
            .inc();
        row.event = out.result.as_str().into();
        row.result = if out.result == ExecResult::Failed {
            "failed"
        } else {
            "ok"
        }
        .into();
        row.state_before = out.before.as_ref().map(json).unwrap_or_default();
        row.state_after = out.after.as_ref().map(json).unwrap_or_default();
        row.detail.clone_from(&out.detail);
        if out.result == ExecResult::Failed {
            warn!(action_id = %job.action_id, detail = %out.detail, "action failed");
        }
        self.audit(row).await;
        out
    }

    async fn run(&self, job: &Job) -> Outcome {
        let fail = |detail: String, before: Option<CampaignState>, attempts| Outcome {
            result: ExecResult::Failed,
            before,
            after: None,
            detail,
            attempts,
            duplicate: false,
        };
        let platform = self.platforms.get(job.key.platform.as_str()).cloned();
        let Some(p) = platform else {
            if self.cfg.dry_run {
                return Outcome {
                    result: ExecResult::DryRun,
                    before: None,
                    after: None,
                    detail: format!(
                        "dry run: would {} (no {} client configured to read the current state)",
                        job.kind.as_str(),
                        job.key.platform
                    ),
                    attempts: 0,
                    duplicate: false,
                };
            }
            return fail(
                PlatformError::NotConfigured(job.key.platform.clone()).to_string(),
                None,
                0,
            );
        };
        let before = match self.read(p.as_ref(), &job.key).await {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot read the campaign: {e}"), None, 0),
        };
        enum Target {
            Status(CampaignStatus),
            Budget(Decimal),
        }
        let target = match job.kind {
            ActionKind::Pause => Target::Status(CampaignStatus::Paused),
            ActionKind::Enable => Target::Status(CampaignStatus::Active),
            ActionKind::RaiseBudget => {
                let cur = p.account_currency().to_string();
                let current = before
                    .daily_budget
                    .and_then(|b| self.to_reporting_currency(b, &cur));
                // other campaigns of the account, for the account cap
                let mut others = Decimal::ZERO;
                if self.cfg.caps.accounts.contains_key(&job.key.account) {
                    let snap = self.snapshot.load_full();
                    for c in snap.campaigns.iter().filter(|c| {
                        c.key.account == job.key.account
                            && c.key.platform == job.key.platform
                            && c.key != job.key
                    }) {
                        match self.read(p.as_ref(), &c.key).await {
                            Ok(s) => {
                                if s.status == CampaignStatus::Active {
                                    others += s
                                        .daily_budget
                                        .and_then(|b| self.to_reporting_currency(b, &cur))
                                        .unwrap_or_default();
                                }
                            }
                            Err(e) => {
                                return fail(
                                    format!(
                                        "cannot read campaign {} for the account cap: {e}",
                                        c.key.campaign_id
                                    ),
                                    Some(before),
                                    0,
                                );
                            }
                        }
                    }
                }
                let auto = job.auto.then_some(&self.cfg.auto);
                match rules::raise_budget(
                    &job.key,
                    current,
                    job.ratio.unwrap_or_default(),
                    others,
                    &self.cfg.caps,
                    auto,
                ) {
                    Ok(t) => match self.reporting_to(t, &cur) {
                        Some(a) => Target::Budget(
                            a.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero),
                        ),
                        None => return fail(format!("no fx rate for {cur}"), Some(before), 0),
                    },
                    Err(r) => return fail(format!("refused by the caps: {r}"), Some(before), 0),
                }
            }
            ActionKind::ExpandAudience | ActionKind::RotateCreatives => {
                return fail(
                    "a recommendation for a person: nothing to execute".into(),
                    Some(before),
                    0,
                );
            }
        };
        let reached = |s: &CampaignState| match &target {
            Target::Status(st) => s.status == *st,
            Target::Budget(b) => s.daily_budget == Some(*b),
        };
        let after_of = |s: &CampaignState| {
            let mut a = s.clone();
            match &target {
                Target::Status(st) => a.status = *st,
                Target::Budget(b) => a.daily_budget = Some(*b),
            }
            a
        };
        if reached(&before) {
            return Outcome {
                result: ExecResult::AlreadyDone,
                after: Some(before.clone()),
                before: Some(before),
                detail: "already in that state: nothing sent".into(),
                attempts: 0,
                duplicate: false,
            };
        }
        if self.cfg.dry_run {
            return Outcome {
                result: ExecResult::DryRun,
                after: Some(after_of(&before)),
                before: Some(before),
                detail: "dry run: nothing sent".into(),
                attempts: 0,
                duplicate: false,
            };
        }
        let mut wait = Duration::from_millis(self.cfg.retry.initial_ms);
        let max = Duration::from_millis(self.cfg.retry.max_ms);
        let mut attempts = 0;
        let mut state = before.clone();
        loop {
            attempts += 1;
            let r = match &target {
                Target::Status(st) => p.set_status(&job.key, *st).await,
                Target::Budget(b) => p.set_daily_budget(&job.key, &state, *b).await,
            };
            match r {
                Ok(()) => {
                    return Outcome {
                        result: ExecResult::Executed,
                        after: Some(after_of(&before)),
                        before: Some(before),
                        detail: if attempts > 1 {
                            format!("succeeded on attempt {attempts}")
                        } else {
                            String::new()
                        },
                        attempts,
                        duplicate: false,
                    };
                }
                Err(e) if e.is_retryable() && attempts < self.cfg.retry.attempts => {
                    let d = e.retry_after().unwrap_or(wait);
                    if d > max {
                        return fail(
                            format!("{e} (asks to wait {}s: approve again later)", d.as_secs()),
                            Some(before),
                            attempts,
                        );
                    }
                    warn!(action_id = %job.action_id, error = %e, attempt = attempts, "retryable failure; retrying");
                    tokio::time::sleep(d).await;
                    wait = (wait * 2).min(max);
                    // the failed call may have been applied: look before sending it again
                    match self.read(p.as_ref(), &job.key).await {
                        Ok(s) if reached(&s) => {
                            return Outcome {
                                result: ExecResult::Executed,
                                after: Some(s),
                                before: Some(before),
                                detail: format!("applied by attempt {attempts} despite its error"),
                                attempts,
                                duplicate: false,
                            };
                        }
                        Ok(s) => state = s,
                        Err(_) => {}
                    }
                }
                Err(e) => return fail(e.to_string(), Some(before), attempts),
            }
        }
    }

    /// Evaluate every `evaluate_interval_secs`, or at once when triggered, until shutdown.
    pub async fn run_loop(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let every = Duration::from_secs(self.cfg.evaluate_interval_secs.max(1));
        loop {
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
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
                _ = self.trigger.notified() => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use crate::kpi::Totals;
    use crate::state::CampaignView;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;
    use std::sync::Mutex;

    /// An in-memory platform that checks every budget it is given against the caps.
    struct Mem {
        state: Mutex<HashMap<CampaignKey, CampaignState>>,
        cap: Decimal,
        max_ratio: Decimal,
        violations: Mutex<Vec<String>>,
        mutations: Mutex<HashMap<NaiveDate, u32>>,
        day: Mutex<Option<NaiveDate>>,
    }

    impl Mem {
        fn count(&self) {
            if let Some(d) = *self.day.lock().unwrap() {
                *self.mutations.lock().unwrap().entry(d).or_default() += 1;
            }
        }
    }

    impl AdPlatform for Mem {
        fn platform(&self) -> &'static str {
            "meta"
        }
        fn account_currency(&self) -> &str {
            "INR"
        }
        fn get_campaign<'a>(&'a self, key: &'a CampaignKey) -> BoxFutState<'a> {
            Box::pin(async move {
                self.state
                    .lock()
                    .unwrap()
                    .get(key)
                    .cloned()
                    .ok_or(PlatformError::Rejected {
                        platform: "meta",
                        message: "unknown".into(),
                    })
            })
        }
        fn set_status<'a>(
            &'a self,
            key: &'a CampaignKey,
            status: CampaignStatus,
        ) -> super::super::platform::BoxFut<'a, Result<(), PlatformError>> {
            Box::pin(async move {
                self.count();
                if let Some(s) = self.state.lock().unwrap().get_mut(key) {
                    s.status = status;
                }
                Ok(())
            })
        }
        fn set_daily_budget<'a>(
            &'a self,
            key: &'a CampaignKey,
            _state: &'a CampaignState,
            amount: Decimal,
        ) -> super::super::platform::BoxFut<'a, Result<(), PlatformError>> {
            Box::pin(async move {
                self.count();
                let mut st = self.state.lock().unwrap();
                if let Some(s) = st.get_mut(key) {
                    let old = s.daily_budget.unwrap_or_default();
                    if amount > self.cap {
                        self.violations
                            .lock()
                            .unwrap()
                            .push(format!("{amount} above cap {}", self.cap));
                    }
                    if amount > old * (Decimal::ONE + self.max_ratio) {
                        self.violations
                            .lock()
                            .unwrap()
                            .push(format!("{old} -> {amount} above +{}", self.max_ratio));
                    }
                    s.daily_budget = Some(amount);
                }
                Ok(())
            })
        }
    }

    type BoxFutState<'a> = super::super::platform::BoxFut<'a, Result<CampaignState, PlatformError>>;

    fn key(i: usize) -> CampaignKey {
        CampaignKey {
            platform: "meta".into(),
            account: "act_1".into(),
            campaign_id: format!("c{i}"),
        }
    }

    /// (spend, conversions, conversion value, impressions, clicks) of one campaign-day.
    type Day = (u32, u32, u32, u64, u64);

    fn snapshot(history: &[Vec<Day>], upto: usize, base: NaiveDate) -> Snapshot {
        let mut s = Snapshot::empty("INR");
        s.day = base + chrono::Duration::days(upto as i64);
        s.campaigns = (0..history[0].len())
            .map(|i| {
                let days: Vec<(NaiveDate, Totals)> = (0..=upto)
                    .map(|d| {
                        let (spend, conv, value, imp, clicks) = history[d][i];
                        (
                            base + chrono::Duration::days(d as i64),
                            Totals {
                                spend: Decimal::from(spend),
                                conversion_value: Decimal::from(value),
                                revenue: Decimal::from(value),
                                impressions: imp.max(clicks),
                                clicks,
                                conversions: f64::from(conv),
                            },
                        )
                    })
                    .collect();
                CampaignView {
                    key: key(i),
                    name: format!("c{i}"),
                    today: days.last().map(|d| d.1).unwrap_or_default(),
                    loss_rate_per_hour: None,
                    window_clicks: 0,
                    window_conversions: 0.0,
                    window_orders: 0,
                    spend_last_hour: Decimal::ZERO,
                    spend_baseline: None,
                    days,
                    rolling: vec![],
                }
            })
            .collect();
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Auto mode over random KPI sequences: no budget above its campaign cap, active budgets
        /// of the account never above the account cap, no raise above the auto limit, and no
        /// more platform changes a day than `max_actions_per_day`.
        #[test]
        fn auto_mode_never_exceeds_caps(
            history in prop::collection::vec(
                prop::collection::vec((0u32..15_000, 0u32..4, 0u32..60_000, 0u64..300_000, 0u64..6_000), 4),
                1..7,
            ),
            budgets in prop::collection::vec(100u32..5_000, 4),
            cap in 1_000u32..6_000,
            account_cap in 3_000u32..16_000,
            max_actions in 0u32..5,
        ) {
            let cap = Decimal::from(cap);
            let account_cap = Decimal::from(account_cap);
            let mut cfg = ActionsConfig::default();
            cfg.mode = Mode::Auto;
            cfg.dry_run = false;
            cfg.auto.rules = vec!["cpa_above".into(), "budget_cap".into(), "roas_above".into()];
            cfg.auto.max_actions_per_day = max_actions;
            cfg.auto.max_budget_increase_ratio = dec!(0.2);
            cfg.caps.campaign_daily = Some(cap);
            cfg.caps.accounts.insert("act_1".into(), account_cap);
            // start within the caps: budgets clipped to the campaign cap, then scaled into the account's
            let mut start: Vec<Decimal> = budgets.iter().map(|b| Decimal::from(*b).min(cap)).collect();
            let sum: Decimal = start.iter().sum();
            if sum > account_cap {
                start = start.iter().map(|b| (b * account_cap / sum).round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero)).collect();
            }
            let mem = Arc::new(Mem {
                state: Mutex::new(start.iter().enumerate().map(|(i, b)| (key(i), CampaignState {
                    status: CampaignStatus::Active,
                    daily_budget: Some(*b),
                    budget_ref: None,
                })).collect()),
                cap,
                max_ratio: dec!(0.2),
                violations: Mutex::new(Vec::new()),
                mutations: Mutex::new(HashMap::new()),
                day: Mutex::new(None),
            });
            let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
            let snap = Arc::new(ArcSwap::from_pointee(snapshot(&history, 0, base)));
            let engine = ActionEngine::new(cfg, "INR", BTreeMap::new(), snap.clone(), None, &Registry::new(), vec![mem.clone()]);
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            for upto in 0..history.len() {
                let s = snapshot(&history, upto, base);
                *mem.day.lock().unwrap() = Some(s.day);
                snap.store(Arc::new(s));
                // several cycles a day, as in the service
                for _ in 0..3 {
                    rt.block_on(engine.evaluate("rules"));
                }
                let st = mem.state.lock().unwrap();
                let active: Decimal = st.values()
                    .filter(|s| s.status == CampaignStatus::Active)
                    .filter_map(|s| s.daily_budget)
                    .sum();
                prop_assert!(active <= account_cap, "active budgets {active} above account cap {account_cap}");
                for s in st.values() {
                    prop_assert!(s.daily_budget.unwrap_or_default() <= cap);
                }
            }
            let v = mem.violations.lock().unwrap();
            prop_assert!(v.is_empty(), "{v:?}");
            for (day, n) in mem.mutations.lock().unwrap().iter() {
                prop_assert!(*n <= max_actions, "{n} changes on {day}, limit {max_actions}");
            }
        }
    }

    /// The property above is not vacuous: the same setup does raise a budget, to the cap.
    #[tokio::test]
    async fn auto_mode_raises_a_winning_budget_up_to_the_cap_once() {
        let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let win: Day = (1_000, 1, 4_000, 100_000, 2_000);
        let history = vec![vec![win], vec![win], vec![win], vec![win]];
        let mut cfg = ActionsConfig::default();
        cfg.mode = Mode::Auto;
        cfg.dry_run = false;
        cfg.auto.rules = vec!["roas_above".into()];
        cfg.caps.campaign_daily = Some(dec!(1100));
        let mem = Arc::new(Mem {
            state: Mutex::new(HashMap::from([(
                key(0),
                CampaignState {
                    status: CampaignStatus::Active,
                    daily_budget: Some(dec!(1000)),
                    budget_ref: None,
                },
            )])),
            cap: dec!(1100),
            max_ratio: dec!(0.25),
            violations: Mutex::new(Vec::new()),
            mutations: Mutex::new(HashMap::new()),
            day: Mutex::new(Some(base)),
        });
        let snap = Arc::new(ArcSwap::from_pointee(snapshot(&history, 3, base)));
        let e = ActionEngine::new(
            cfg,
            "INR",
            BTreeMap::new(),
            snap,
            None,
            &Registry::new(),
            vec![mem.clone()],
        );
        let s = e.evaluate("rules").await;
        assert_eq!(s.auto_executed, 1);
        assert_eq!(e.evaluate("rules").await.auto_executed, 0, "once a day");
        assert_eq!(
            mem.state.lock().unwrap()[&key(0)].daily_budget,
            Some(dec!(1100)),
            "+25% would be 1,250: capped"
        );
        assert!(mem.violations.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn recommend_mode_dedups_and_refuses_approval() {
        let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        // c0 loses money (pause), the others are quiet
        let history = vec![vec![
            (6_000, 0, 0, 100_000, 2_000),
            (10, 1, 100, 100, 5),
            (10, 1, 100, 100, 5),
        ]];
        let snap = Arc::new(ArcSwap::from_pointee(snapshot(&history, 0, base)));
        let registry = Registry::new();
        let e = ActionEngine::new(
            ActionsConfig::default(),
            "INR",
            BTreeMap::new(),
            snap,
            None,
            &registry,
            vec![],
        );
        let a = e.evaluate("rules").await;
        let b = e.evaluate("rules").await;
        assert_eq!((a.new, a.open), (1, 1));
        assert_eq!(
            (b.new, b.open),
            (0, 1),
            "the same rule on the same campaign stays one recommendation"
        );
        let recs = e.recommendations(true);
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (recs[0].rule.as_str(), recs[0].kind),
            ("cpa_above", ActionKind::Pause)
        );
        let err = e.approve(&recs[0].id, "write_token").await.unwrap_err();
        assert!(matches!(err, ActionError::Conflict(_)), "{err}");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("adpulse_actions_open_recommendations 1"),
            "{text}"
        );
        e.reject(&recs[0].id, "write_token", "seasonal")
            .await
            .unwrap();
        assert_eq!(
            e.evaluate("rules").await.new,
            0,
            "a rejected recommendation is not reopened the same day"
        );
        assert!(e.recommendations(true).is_empty());
    }

    #[test]
    fn tokens_separate_read_and_write() {
        let snap = Arc::new(ArcSwap::from_pointee(Snapshot::empty("INR")));
        let e = ActionEngine::new(
            ActionsConfig::default(),
            "INR",
            BTreeMap::new(),
            snap,
            None,
            &Registry::new(),
            vec![],
        )
        .with_tokens(Some(Secret::new("r")), Some(Secret::new("w")));
        assert_eq!(e.check_token(None, Access::Read), Err("unauthenticated"));
        assert_eq!(
            e.check_token(Some("x"), Access::Read),
            Err("unauthenticated")
        );
        assert_eq!(e.check_token(Some("r"), Access::Read), Ok("read_token"));
        assert_eq!(e.check_token(Some("r"), Access::Write), Err("forbidden"));
        assert_eq!(e.check_token(Some("w"), Access::Write), Ok("write_token"));
        assert_eq!(e.check_token(Some("w"), Access::Read), Ok("write_token"));
    }
}
