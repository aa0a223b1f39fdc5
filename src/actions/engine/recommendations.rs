//! The recommendation state machine and its persistence. A rule's finding on a campaign becomes
//! one open recommendation (updated while the condition holds, expired when it goes away); a
//! person approves or rejects it; an approval executes it once. Decisions, outcomes and the
//! runtime settings (mode, dry run, caps changed from the action center) are written to
//! `actions-state.json` (atomically, through [`crate::persist`]) before the call returns,
//! so after a restart a rejection stays rejected and an approval is not executed twice.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{
    ActionEngine, ActionError, EvalSummary, ExecResult, Job, Outcome, RecStatus, Recommendation,
    json, lock, today,
};
use crate::actions::config::{CapsConfig, Mode};
use crate::actions::rules::{self, Proposal, Reallocation};
use crate::persist::JsonFile;
use crate::records::CampaignKey;

/// What a person changed at run time, applied over the configuration file's `[actions]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub mode: Option<Mode>,
    pub dry_run: Option<bool>,
    pub caps: Option<CapsConfig>,
}

#[derive(Default)]
pub(super) struct Recs {
    pub(super) by_id: BTreeMap<String, Recommendation>,
    pub(super) open: HashMap<(String, CampaignKey), String>,
    /// Closed (executed, rejected) on this day: not reopened before the next one.
    pub(super) closed_on: HashMap<(String, CampaignKey), NaiveDate>,
    pub(super) auto_day: Option<NaiveDate>,
    pub(super) auto_count: u32,
    /// Outcomes by idempotency key of executions that changed (or found) the platform state.
    pub(super) executed: HashMap<String, Outcome>,
    pub(super) settings: Settings,
}

/// The state file's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Persisted {
    version: u32,
    settings: Settings,
    recommendations: Vec<Recommendation>,
    closed_on: Vec<(String, CampaignKey, NaiveDate)>,
    executed: BTreeMap<String, Outcome>,
    auto_day: Option<NaiveDate>,
    auto_count: u32,
}

/// Where a daily cap applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapScope {
    /// Every campaign without its own cap.
    EveryCampaign,
    Campaign(String),
    Account(String),
}

impl ActionEngine {
    pub(super) fn load_state(&mut self, path: &Path) -> std::io::Result<()> {
        // a file that cannot be read or parsed refuses the start rather than forget decisions
        let Some(p) = JsonFile::<Persisted>::new(path)
            .load()
            .map_err(std::io::Error::other)?
        else {
            return Ok(());
        };
        let mut recs = lock(&self.recs);
        for r in p.recommendations {
            if r.status == RecStatus::Open {
                recs.open.insert((r.rule.clone(), r.key()), r.id.clone());
            }
            recs.by_id.insert(r.id.clone(), r);
        }
        recs.closed_on = p
            .closed_on
            .into_iter()
            .map(|(rule, k, d)| ((rule, k), d))
            .collect();
        recs.executed = p.executed.into_iter().collect();
        recs.auto_day = p.auto_day;
        recs.auto_count = p.auto_count;
        recs.settings = p.settings;
        let cfg = apply(&self.cfg.load(), &recs.settings);
        self.cfg.store(std::sync::Arc::new(cfg));
        self.update_open_gauge(&recs);
        Ok(())
    }

    /// Write the decisions durably; the caller's change stands only if this succeeds.
    pub(super) fn persist(&self) -> Result<(), ActionError> {
        let Some(path) = &self.state_path else {
            return Ok(());
        };
        // taken before the content is read, so writes land in the order of their content
        let _g = lock(&self.persist_lock);
        let data = {
            let recs = lock(&self.recs);
            let mut closed: Vec<_> = recs
                .closed_on
                .iter()
                .map(|((rule, k), d)| (rule.clone(), k.clone(), *d))
                .collect();
            closed.sort();
            serde_json::to_vec_pretty(&Persisted {
                version: 1,
                settings: recs.settings.clone(),
                recommendations: recs.by_id.values().cloned().collect(),
                closed_on: closed,
                executed: recs
                    .executed
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                auto_day: recs.auto_day,
                auto_count: recs.auto_count,
            })
            .map_err(|e| ActionError::Persist(e.to_string()))?
        };
        crate::persist::write_atomic(path, &data).map_err(|e| {
            tracing::error!(file = %path.display(), error = %e, "cannot persist action decisions");
            ActionError::Persist(format!("{}: {e}", path.display()))
        })
    }

    pub(super) fn update_open_gauge(&self, recs: &Recs) {
        self.metrics.open.set(recs.open.len() as i64);
    }

    /// Evaluate the rules on the current snapshot: new recommendations, updates of open ones,
    /// expiry of those whose condition went away, and in `auto` mode execution within limits.
    pub async fn evaluate(&self, actor: &str) -> EvalSummary {
        let snap = self.snapshot.load_full();
        let cfg = self.cfg.load_full();
        let mut summary = EvalSummary::default();
        if snap.campaigns.is_empty() {
            return summary;
        }
        let proposals = rules::evaluate(&snap, &cfg);
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
                    r.values = finite(p.values);
                    r.reason = p.reason;
                    r.budget_increase_ratio = p.budget_increase_ratio;
                    r.updated_at = now;
                    continue;
                }
                if recs.closed_on.get(&k) == Some(&snap.day) {
                    continue;
                }
                let mut rec = self.recommendation(p, now);
                rows.push(self.rec_row(&rec, "recommended", actor));
                summary.new += 1;
                let auto_ok = cfg.mode == Mode::Auto
                    && rec.executable
                    && cfg.auto.rules.contains(&rec.rule)
                    && recs.auto_count < cfg.auto.max_actions_per_day;
                if auto_ok {
                    recs.auto_count += 1;
                    rec.status = RecStatus::Approved;
                    rec.decided_by = Some("auto".into());
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
        if !rows.is_empty()
            && let Err(error) = self.persist()
        {
            // the recommendations stand in memory; the next evaluation tries to persist again
            tracing::warn!(%error, "recommendations not persisted");
        }
        self.audit_all(rows);
        for job in jobs {
            let id = job.action_id.clone();
            let out = self.execute(job, "auto").await;
            if out.result != ExecResult::Failed {
                summary.auto_executed += 1;
            }
            self.finish(&id, out, today(&snap));
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
            values: finite(p.values),
            budget_increase_ratio: p.budget_increase_ratio,
            status: RecStatus::Open,
            created_at: now,
            updated_at: now,
            outcome: None,
            decided_by: None,
            note: None,
        }
    }

    pub(super) fn job(&self, rec: &Recommendation, auto: bool) -> Job {
        Job {
            action_id: rec.id.clone(),
            idem_key: format!("{}:{}", rec.id, rec.kind.as_str()),
            rule: rec.rule.clone(),
            kind: rec.kind,
            key: rec.key(),
            campaign_name: rec.campaign_name.clone(),
            ratio: rec.budget_increase_ratio,
            reason: rec.reason.clone(),
            values: json(&rec.values),
            auto,
        }
    }

    fn finish(&self, id: &str, out: Outcome, day: NaiveDate) {
        {
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
                let k = (r.rule.clone(), r.key());
                recs.open.remove(&k);
                recs.closed_on.insert(k, day);
            }
            self.update_open_gauge(recs);
        }
        if let Err(error) = self.persist() {
            // the outcome is in the audit log and the executed key in memory: it is not lost
            // for this run, and the platform state (read before each call) guards the next
            tracing::warn!(%error, "outcome not persisted");
        }
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

    pub fn recommendation_by_id(&self, id: &str) -> Option<Recommendation> {
        lock(&self.recs).by_id.get(id).cloned()
    }

    pub fn reallocation(&self) -> Reallocation {
        rules::reallocate(&self.snapshot.load(), &self.cfg.load())
    }

    /// Approve one recommendation: executes it (once, however often it is approved; a repeat
    /// answers with the recorded outcome and `duplicate: true`).
    pub async fn approve(
        &self,
        id: &str,
        actor: &str,
        note: &str,
    ) -> Result<Recommendation, ActionError> {
        let (job, day, row) = {
            let mut recs = lock(&self.recs);
            let rec = recs
                .by_id
                .get_mut(id)
                .ok_or_else(|| ActionError::NotFound(id.into()))?;
            if self.cfg.load().mode == Mode::Recommend {
                return Err(ActionError::Conflict(
                    "actions.mode is \"recommend\": recommendations are not executed; an admin can set it to \"approve\"".into(),
                ));
            }
            if !rec.executable {
                return Err(ActionError::Conflict(format!(
                    "{} is a recommendation for a person; adpulse cannot carry it out",
                    rec.kind.as_str()
                )));
            }
            if matches!(rec.status, RecStatus::Rejected | RecStatus::Expired) {
                return Err(ActionError::Conflict(format!(
                    "recommendation {id} is {}",
                    rec.status.as_str()
                )));
            }
            // Open, Failed (try again), DryRun (try again, perhaps for real), Approved or
            // Executed (the idempotency key answers with the recorded outcome)
            if matches!(
                rec.status,
                RecStatus::Open | RecStatus::Failed | RecStatus::DryRun
            ) {
                rec.status = RecStatus::Approved;
                rec.decided_by = Some(actor.to_string());
                rec.note = (!note.is_empty()).then(|| note.chars().take(500).collect());
                rec.updated_at = Utc::now();
            }
            let rec = rec.clone();
            let day = self.snapshot.load().day;
            let mut row = self.rec_row(&rec, "approved", actor);
            row.detail = note.chars().take(500).collect();
            (self.job(&rec, false), day, row)
        };
        self.persist()?;
        self.audit(row);
        let out = self.execute(job, actor).await;
        let duplicate = out.duplicate;
        if !duplicate {
            self.finish(id, out, day);
        }
        let mut rec = self
            .recommendation_by_id(id)
            .ok_or_else(|| ActionError::NotFound(id.into()))?;
        if duplicate && let Some(o) = rec.outcome.as_mut() {
            o.duplicate = true;
        }
        Ok(rec)
    }

    pub async fn reject(
        &self,
        id: &str,
        actor: &str,
        note: &str,
    ) -> Result<Recommendation, ActionError> {
        let rec = {
            let mut recs = lock(&self.recs);
            let recs = &mut *recs;
            let rec = recs
                .by_id
                .get_mut(id)
                .ok_or_else(|| ActionError::NotFound(id.into()))?;
            if rec.status != RecStatus::Open {
                return Err(ActionError::Conflict(format!(
                    "recommendation {id} is not open ({})",
                    rec.status.as_str()
                )));
            }
            rec.status = RecStatus::Rejected;
            rec.updated_at = Utc::now();
            rec.decided_by = Some(actor.to_string());
            rec.note = (!note.is_empty()).then(|| note.chars().take(500).collect());
            let rec = rec.clone();
            let day = self.snapshot.load().day;
            let k = (rec.rule.clone(), rec.key());
            recs.open.remove(&k);
            recs.closed_on.insert(k, day);
            self.update_open_gauge(recs);
            rec
        };
        self.persist()?;
        self.metrics.total.with_label_values(&["rejected"]).inc();
        let mut row = self.rec_row(&rec, "rejected", actor);
        row.detail = note.chars().take(500).collect();
        self.audit(row);
        Ok(rec)
    }

    /// Change the mode and dry run at run time (admins only: the caller checks). Persisted and
    /// audited.
    pub fn set_mode(&self, mode: Mode, dry_run: bool, actor: &str) -> Result<(), ActionError> {
        let before = self.cfg.load_full();
        {
            let mut recs = lock(&self.recs);
            recs.settings.mode = Some(mode);
            recs.settings.dry_run = Some(dry_run);
            self.cfg
                .store(std::sync::Arc::new(apply(&before, &recs.settings)));
        }
        self.persist()?;
        let mut row = self.row(&self.new_id("mode-"), "mode_changed", actor);
        row.detail = format!(
            "mode {} -> {}, dry_run {} -> {}",
            before.mode.as_str(),
            mode.as_str(),
            before.dry_run,
            dry_run
        );
        self.audit(row);
        Ok(())
    }

    /// Set (or with `None` remove) a daily cap, in the reporting currency. Persisted and
    /// audited.
    pub fn set_cap(
        &self,
        scope: &CapScope,
        amount: Option<Decimal>,
        actor: &str,
    ) -> Result<(), ActionError> {
        if let Some(a) = amount
            && a <= Decimal::ZERO
        {
            return Err(ActionError::Invalid(format!(
                "a daily cap must be above 0, not {a}"
            )));
        }
        let before = self.cfg.load_full();
        let mut caps = before.caps.clone();
        let (what, old) = match scope {
            CapScope::EveryCampaign => {
                let old = caps.campaign_daily;
                caps.campaign_daily = amount;
                ("every campaign".to_string(), old)
            }
            CapScope::Campaign(id) => (
                format!("campaign {id}"),
                set_or_clear(&mut caps.campaigns, id, amount),
            ),
            CapScope::Account(id) => (
                format!("account {id}"),
                set_or_clear(&mut caps.accounts, id, amount),
            ),
        };
        {
            let mut recs = lock(&self.recs);
            recs.settings.caps = Some(caps);
            self.cfg
                .store(std::sync::Arc::new(apply(&before, &recs.settings)));
        }
        self.persist()?;
        let show = |d: Option<Decimal>| d.map_or("none".to_string(), |d| d.to_string());
        let mut row = self.row(&self.new_id("cap-"), "cap_changed", actor);
        row.kind = "daily_cap".into();
        if let CapScope::Campaign(id) = scope {
            row.campaign_id.clone_from(id);
        }
        if let CapScope::Account(id) = scope {
            row.account.clone_from(id);
        }
        row.detail = format!(
            "daily cap of {what}: {} -> {} {}",
            show(old),
            show(amount),
            self.reporting_currency
        );
        self.audit(row);
        Ok(())
    }
}

/// The configuration with the runtime settings applied.
fn apply(cfg: &crate::actions::ActionsConfig, s: &Settings) -> crate::actions::ActionsConfig {
    let mut c = cfg.clone();
    if let Some(m) = s.mode {
        c.mode = m;
    }
    if let Some(d) = s.dry_run {
        c.dry_run = d;
    }
    if let Some(caps) = &s.caps {
        c.caps = caps.clone();
    }
    c
}

/// JSON has no NaN or infinity: a figure that is not finite is left out (a missing value).
/// Set `id`'s cap to `amount`, or clear it when `None`; the cap it had.
fn set_or_clear(
    caps: &mut BTreeMap<String, Decimal>,
    id: &str,
    amount: Option<Decimal>,
) -> Option<Decimal> {
    match amount {
        Some(a) => caps.insert(id.to_string(), a),
        None => caps.remove(id),
    }
}

fn finite(v: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    v.into_iter().filter(|(_, x)| x.is_finite()).collect()
}
