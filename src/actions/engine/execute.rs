//! Carrying out actions: one job exactly once per idempotency key (read the campaign, refuse
//! what the caps forbid, send an absolute "set", retry what the platform says is retryable,
//! look again before re-sending), the kill switch (one campaign or a whole account, with a
//! preview of what stops), and applying the reallocation proposal.

use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::warn;

use super::{
    ActionEngine, ActionError, ExecResult, Job, KillTarget, Outcome, StateView, json, lock,
};
use crate::actions::config::Mode;
use crate::actions::platform::{AdPlatform, CampaignState, CampaignStatus, PlatformError};
use crate::actions::rules::{self, ActionKind};
use crate::records::CampaignKey;

/// One campaign the kill switch would stop.
#[derive(Debug, Clone, Serialize)]
pub struct KillItem {
    pub key: CampaignKey,
    pub name: String,
    /// Spend in the last hour, reporting currency: what stopping saves per hour.
    pub spend_per_hour: Decimal,
    /// Loss per hour now (spend − revenue × margin over the loss window), when known.
    pub loss_per_hour: Option<Decimal>,
    pub spend_today: Decimal,
}

/// What the kill switch stops, before it is confirmed.
#[derive(Debug, Clone, Serialize)]
pub struct KillPlan {
    pub target: String,
    pub campaigns: Vec<KillItem>,
    pub spend_per_hour: Decimal,
    /// What the person must type to confirm: the account id, or the campaign id.
    pub confirmation: String,
}

impl ActionEngine {
    fn kill_targets(&self, target: &KillTarget) -> Result<Vec<KillItem>, ActionError> {
        let snap = self.snapshot.load_full();
        let item = |c: &crate::state::CampaignView| KillItem {
            key: c.key.clone(),
            name: c.name.clone(),
            spend_per_hour: c.spend_last_hour,
            loss_per_hour: c.loss_rate_per_hour,
            spend_today: c.today.spend,
        };
        let items: Vec<KillItem> = match &target.campaign_id {
            Some(id) => {
                let key = CampaignKey {
                    platform: target.platform.clone(),
                    account: target.account.clone(),
                    campaign_id: id.clone(),
                };
                match snap.campaigns.iter().find(|c| c.key == key) {
                    Some(c) => vec![item(c)],
                    // a campaign adpulse has no figures for can still be stopped
                    None => vec![KillItem {
                        key,
                        name: String::new(),
                        spend_per_hour: Decimal::ZERO,
                        loss_per_hour: None,
                        spend_today: Decimal::ZERO,
                    }],
                }
            }
            None => snap
                .campaigns
                .iter()
                .filter(|c| c.key.platform == target.platform && c.key.account == target.account)
                .map(item)
                .collect(),
        };
        if items.is_empty() {
            return Err(ActionError::Invalid(format!(
                "no campaign of account {:?} on {:?} is known",
                target.account, target.platform
            )));
        }
        Ok(items)
    }

    /// What [`ActionEngine::kill_switch`] would stop, and what that saves per hour.
    pub fn kill_plan(&self, target: &KillTarget) -> Result<KillPlan, ActionError> {
        let campaigns = self.kill_targets(target)?;
        let spend_per_hour = campaigns.iter().map(|c| c.spend_per_hour).sum();
        let (what, confirmation) = match &target.campaign_id {
            Some(id) => (
                format!("campaign {id} of account {}", target.account),
                id.clone(),
            ),
            None => (
                format!(
                    "every campaign of account {} on {}",
                    target.account, target.platform
                ),
                target.account.clone(),
            ),
        };
        Ok(KillPlan {
            target: what,
            campaigns,
            spend_per_hour,
            confirmation,
        })
    }

    /// Pause one campaign or every campaign of an account (those in the current snapshot), in
    /// any mode. `request_id` makes a repeated request (same id) execute once.
    pub async fn kill_switch(
        &self,
        target: &KillTarget,
        actor: &str,
        reason: &str,
        request_id: &str,
    ) -> Result<Vec<(CampaignKey, Outcome)>, ActionError> {
        let targets = self.kill_targets(target)?;
        let mut out = Vec::new();
        for t in targets {
            let action_id = format!("kill-{request_id}");
            let job = Job {
                idem_key: format!(
                    "{action_id}:{}:{}:{}",
                    t.key.platform, t.key.account, t.key.campaign_id
                ),
                action_id,
                rule: "kill_switch".into(),
                kind: ActionKind::Pause,
                key: t.key.clone(),
                campaign_name: t.name,
                ratio: None,
                reason: reason.chars().take(500).collect(),
                values: String::new(),
                auto: false,
            };
            out.push((t.key, self.execute(job, actor).await));
        }
        Ok(out)
    }

    /// Apply the reallocation proposal: pause each campaign money moves from, raise each
    /// campaign it moves to by its share (as a fraction of its average daily spend), within the
    /// caps. Needs mode `approve` or `auto`. `request_id` makes a repeat execute once.
    pub async fn apply_reallocation(
        &self,
        actor: &str,
        request_id: &str,
    ) -> Result<Vec<(CampaignKey, ActionKind, Outcome)>, ActionError> {
        let cfg = self.cfg.load_full();
        if cfg.mode == Mode::Recommend {
            return Err(ActionError::Conflict(
                "actions.mode is \"recommend\": the reallocation is not applied; an admin can set it to \"approve\"".into(),
            ));
        }
        let snap = self.snapshot.load_full();
        let plan = rules::reallocate(&snap, &cfg);
        if plan.moves.is_empty() {
            return Err(ActionError::Conflict(
                "the reallocation proposal has no moves right now".into(),
            ));
        }
        let mut from: BTreeMap<CampaignKey, String> = BTreeMap::new();
        let mut to: BTreeMap<CampaignKey, (String, Decimal)> = BTreeMap::new();
        for m in &plan.moves {
            from.insert(m.from.clone(), m.from_name.clone());
            let e = to
                .entry(m.to.clone())
                .or_insert((m.to_name.clone(), Decimal::ZERO));
            e.1 += m.amount;
        }
        let action_id = format!("realloc-{request_id}");
        let reason = format!(
            "reallocation: expected daily profit change {} {}",
            plan.expected_daily_profit_change, plan.currency
        );
        let mut jobs = Vec::new();
        for (key, name) in from {
            jobs.push(Job {
                idem_key: format!("{action_id}:pause:{}:{}", key.account, key.campaign_id),
                action_id: action_id.clone(),
                rule: "reallocation".into(),
                kind: ActionKind::Pause,
                key,
                campaign_name: name,
                ratio: None,
                reason: reason.clone(),
                values: json(&plan),
                auto: false,
            });
        }
        for (key, (name, amount)) in to {
            let base = snap
                .campaigns
                .iter()
                .find(|c| c.key == key)
                .map(|c| rules::average_daily_spend(c, snap.day, plan.window_days))
                .unwrap_or_default();
            if base.is_zero() {
                continue;
            }
            jobs.push(Job {
                idem_key: format!("{action_id}:raise:{}:{}", key.account, key.campaign_id),
                action_id: action_id.clone(),
                rule: "reallocation".into(),
                kind: ActionKind::RaiseBudget,
                key,
                campaign_name: name,
                ratio: Some((amount / base).round_dp(4)),
                reason: reason.clone(),
                values: json(&plan),
                auto: false,
            });
        }
        let mut out = Vec::new();
        for job in jobs {
            let (key, kind) = (job.key.clone(), job.kind);
            out.push((key, kind, self.execute(job, actor).await));
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
        let retry = self.cfg.load().retry.clone();
        let mut wait = Duration::from_millis(retry.initial_ms);
        let max = Duration::from_millis(retry.max_ms);
        let mut attempt = 1;
        loop {
            match p.get_campaign(key).await {
                Ok(s) => return Ok(s),
                Err(e) if e.is_retryable() && attempt < retry.attempts => {
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
    pub(super) async fn execute(&self, job: Job, actor: &str) -> Outcome {
        let serial = self.executed.lock().await;
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
        let prev = lock(&self.recs).executed.get(&job.idem_key).cloned();
        if let Some(prev) = prev {
            drop(serial);
            let mut out = prev.clone();
            out.duplicate = true;
            row.event = "duplicate".into();
            row.result = "skipped".into();
            row.detail = format!("already {}: not executed again", prev.result.as_str());
            self.audit(row);
            return out;
        }
        let out = self.run(&job).await;
        if matches!(out.result, ExecResult::Executed | ExecResult::AlreadyDone) {
            // failures and dry runs are not remembered: approving again tries again (for real
            // once dry run is off)
            lock(&self.recs)
                .executed
                .insert(job.idem_key.clone(), out.clone());
            if let Err(error) = self.persist() {
                warn!(%error, "executed key not persisted; the platform state guards a repeat");
            }
        }
        drop(serial);
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
            warn!(action_id = ?job.action_id, detail = ?out.detail, "action failed");
        }
        self.audit(row);
        out
    }

    async fn run(&self, job: &Job) -> Outcome {
        let cfg = self.cfg.load_full();
        let fail = |detail: String, before: Option<&CampaignState>, attempts| Outcome {
            result: ExecResult::Failed,
            before: before.map(StateView::from),
            after: None,
            detail,
            attempts,
            duplicate: false,
        };
        let done =
            |result, before: &CampaignState, after: &CampaignState, detail, attempts| Outcome {
                result,
                before: Some(StateView::from(before)),
                after: Some(StateView::from(after)),
                detail,
                attempts,
                duplicate: false,
            };
        let platform = self.platforms.get(job.key.platform.as_str()).cloned();
        let Some(p) = platform else {
            if cfg.dry_run {
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
                if cfg.caps.accounts.contains_key(&job.key.account) {
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
                                    Some(&before),
                                    0,
                                );
                            }
                        }
                    }
                }
                let auto = job.auto.then_some(&cfg.auto);
                match rules::raise_budget(
                    &job.key,
                    current,
                    job.ratio.unwrap_or_default(),
                    others,
                    &cfg.caps,
                    auto,
                ) {
                    Ok(t) => match self.reporting_to(t, &cur) {
                        Some(a) => Target::Budget(
                            a.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero),
                        ),
                        None => return fail(format!("no fx rate for {cur}"), Some(&before), 0),
                    },
                    Err(r) => return fail(format!("refused by the caps: {r}"), Some(&before), 0),
                }
            }
            ActionKind::ExpandAudience | ActionKind::RotateCreatives => {
                return fail(
                    "a recommendation for a person: nothing to execute".into(),
                    Some(&before),
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
            return done(
                ExecResult::AlreadyDone,
                &before,
                &before,
                "already in that state: nothing sent".into(),
                0,
            );
        }
        if cfg.dry_run {
            return done(
                ExecResult::DryRun,
                &before,
                &after_of(&before),
                "dry run: nothing sent".into(),
                0,
            );
        }
        let mut wait = Duration::from_millis(cfg.retry.initial_ms);
        let max = Duration::from_millis(cfg.retry.max_ms);
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
                    let mut notes = Vec::new();
                    if attempts > 1 {
                        notes.push(format!("succeeded on attempt {attempts}"));
                    }
                    // Meta without campaign budget optimization: the ad sets hold the budgets
                    if matches!(target, Target::Budget(_)) && !state.adsets.is_empty() {
                        let n = state
                            .adsets
                            .iter()
                            .filter(|a| {
                                a.status == CampaignStatus::Active && a.daily_budget.is_some()
                            })
                            .count();
                        notes.push(format!(
                            "the campaign has no budget of its own: the new total was split over \
                             its {n} active ad sets in proportion to their daily budgets"
                        ));
                    }
                    let detail = notes.join("; ");
                    return done(
                        ExecResult::Executed,
                        &before,
                        &after_of(&before),
                        detail,
                        attempts,
                    );
                }
                Err(e) if e.is_retryable() && attempts < cfg.retry.attempts => {
                    let d = e.retry_after().unwrap_or(wait);
                    if d > max {
                        return fail(
                            format!("{e} (asks to wait {}s: approve again later)", d.as_secs()),
                            Some(&before),
                            attempts,
                        );
                    }
                    warn!(action_id = ?job.action_id, error = %e, attempt = attempts, "retryable failure; retrying");
                    tokio::time::sleep(d).await;
                    wait = (wait * 2).min(max);
                    // the failed call may have been applied: look before sending it again
                    match self.read(p.as_ref(), &job.key).await {
                        Ok(s) if reached(&s) => {
                            return done(
                                ExecResult::Executed,
                                &before,
                                &s,
                                format!("applied by attempt {attempts} despite its error"),
                                attempts,
                            );
                        }
                        Ok(s) => state = s,
                        Err(_) => {}
                    }
                }
                Err(e) => return fail(e.to_string(), Some(&before), attempts),
            }
        }
    }
}
