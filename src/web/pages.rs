//! The action center's pages. Each handler reads the engine and the KPI snapshot, builds a view
//! model of display strings (money in Indian grouping, times in IST) and renders its template;
//! each form calls the same engine function as the matching `/api/v1` route.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::WebState;
use super::format::{inr, inr_paise, ist, ist_secs, pct};
use super::session::{Chrome, Posted, Viewer, error_page, render};
use crate::actions::Mode;
use crate::actions::engine::{
    AuditFilter, CapScope, KillTarget, Outcome, RecStatus, Recommendation, Role,
};
use crate::actions::rules::{self, ActionKind};
use crate::kpi::{Margin, Totals};
use crate::state::{CampaignView, Snapshot};

fn action_error(e: crate::actions::engine::ActionError) -> Response {
    use crate::actions::engine::ActionError as E;
    match e {
        E::NotFound(_) => error_page(StatusCode::NOT_FOUND, &e.to_string()),
        E::Conflict(m) => error_page(StatusCode::CONFLICT, &m),
        E::Invalid(m) => error_page(StatusCode::BAD_REQUEST, &m),
        E::Persist(m) => {
            tracing::error!(detail = %m, "decision not persisted");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The decision could not be saved, so it was not applied. See the log.",
            )
        }
    }
}

// ---------------------------------------------------------------- Now

/// Whole-business figures over a trailing window: the snapshot's rolling window (the same
/// numbers `/metrics` shows as `adpulse_total_*_rolling`), `None` when the kept history is
/// shorter than the window.
struct Window {
    spend: Decimal,
    revenue: Decimal,
    loss: Decimal,
    roi: Option<f64>,
}

fn rolling(snap: &Snapshot, label: &str) -> Option<Window> {
    let r = snap
        .total
        .rolling
        .iter()
        .find(|r| r.window.label == label)?;
    Some(Window {
        spend: r.totals.spend,
        revenue: r.totals.revenue,
        loss: crate::kpi::loss(&r.totals, snap.margin),
        roi: r.totals.roi(snap.margin),
    })
}

/// A campaign's last 7 days: its rolling window, else its daily history.
/// The snapshot's campaigns in the order the pages list them: by name.
fn by_name(snap: &Snapshot) -> impl Iterator<Item = &CampaignView> {
    let mut camps: Vec<&CampaignView> = snap.campaigns.iter().collect();
    camps.sort_by(|a, b| a.name.cmp(&b.name));
    camps.into_iter()
}

fn last_7d(c: &CampaignView, snap: &Snapshot) -> Totals {
    c.rolling
        .iter()
        .find(|r| r.window.label == "7d")
        .map(|r| r.totals)
        .unwrap_or_else(|| rules::window(c, snap.day, 7))
}

struct LosingRow {
    campaign_id: String,
    name: String,
    platform: String,
    loss_per_hour: String,
    loss_7d: String,
    roi_7d: String,
    rec_id: Option<String>,
}

struct TargetRow {
    from: String,
    roi: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "now.html")]
struct NowPage {
    c: Chrome,
    at: String,
    loss_now: String,
    loss_today: String,
    spend_today: String,
    revenue_today: String,
    roi_today: String,
    loss_10d: String,
    spend_10d: String,
    revenue_10d: String,
    roi_10d: String,
    window_source: &'static str,
    target: String,
    gap: String,
    behind: bool,
    targets: Vec<TargetRow>,
    losing: Vec<LosingRow>,
    open_recs: usize,
}

pub(super) async fn now(State(st): State<WebState>, v: Viewer) -> Response {
    let snap = st.engine.snapshot();
    let m = snap.margin;
    let today = &snap.total.today;
    let w = rolling(&snap, "10d");
    let roi_today = today.roi(m);
    let target = snap.roi_target;
    let w_roi = w.as_ref().and_then(|w| w.roi);
    let gap = match (w_roi, target) {
        (Some(r), Some(t)) => Some(r - t),
        _ => None,
    };
    let open = st.engine.recommendations(true);
    let mut losing: Vec<(Decimal, LosingRow)> = snap
        .campaigns
        .iter()
        .filter_map(|c| {
            let w7 = last_7d(c, &snap);
            let loss = crate::kpi::loss(&w7, m);
            (loss > Decimal::ZERO).then(|| {
                (
                    loss,
                    LosingRow {
                        campaign_id: c.key.campaign_id.clone(),
                        name: c.name.clone(),
                        platform: c.key.platform.clone(),
                        loss_per_hour: c.loss_rate_per_hour.map_or("—".into(), inr),
                        loss_7d: inr(loss),
                        roi_7d: pct(w7.roi(m)),
                        rec_id: open
                            .iter()
                            .find(|r| r.key() == c.key && r.executable)
                            .or_else(|| open.iter().find(|r| r.key() == c.key))
                            .map(|r| r.id.clone()),
                    },
                )
            })
        })
        .collect();
    losing.sort_by_key(|b| std::cmp::Reverse(b.0));
    let cur_target = st
        .targets
        .iter()
        .rev()
        .find(|(d, _)| *d <= snap.day)
        .map(|(d, _)| *d);
    let page = NowPage {
        c: v.chrome(&st, "now").await,
        at: ist(snap.at),
        loss_now: snap.total.loss_rate_per_hour.map_or("—".into(), inr),
        loss_today: inr(-today.profit(m)),
        spend_today: inr(today.spend),
        revenue_today: inr(today.revenue),
        roi_today: pct(roi_today),
        loss_10d: w.as_ref().map_or("—".into(), |w| inr(w.loss)),
        spend_10d: w.as_ref().map_or("—".into(), |w| inr(w.spend)),
        revenue_10d: w.as_ref().map_or("—".into(), |w| inr(w.revenue)),
        roi_10d: pct(w_roi),
        window_source: if w.is_some() {
            "whole business: ad spend against all shop revenue, trailing 240 hours"
        } else {
            "not yet: adpulse holds less than 10 days of history"
        },
        target: pct(target),
        gap: gap.map_or("—".into(), |g| pct(Some(g))),
        behind: gap.is_some_and(|g| g < 0.0),
        targets: st
            .targets
            .iter()
            .map(|(d, r)| TargetRow {
                from: d.format("%d %b %Y").to_string(),
                roi: pct(Some(*r)),
                current: Some(*d) == cur_target,
            })
            .collect(),
        losing: losing.into_iter().map(|x| x.1).collect(),
        open_recs: open.len(),
    };
    render(&page)
}

// ---------------------------------------------------------------- Recommendations

struct RecRow {
    id: String,
    rule: String,
    kind: String,
    executable: bool,
    campaign_id: String,
    campaign: String,
    platform: String,
    account: String,
    reason: String,
    values: String,
    effect: String,
    status: String,
    created: String,
    updated: String,
    decided_by: String,
    note: String,
    outcome: String,
}

/// Expected change of daily profit if the recommendation is carried out, from the campaign's
/// last 7 days: pausing removes its daily profit (a gain when it loses money), a budget raise
/// adds `ratio` times it (a linear estimate).
fn effect(r: &Recommendation, snap: &Snapshot) -> String {
    let Some(c) = snap.campaigns.iter().find(|c| c.key == r.key()) else {
        return "—".into();
    };
    let w = last_7d(c, snap);
    let daily = w.profit(snap.margin) / Decimal::from(7);
    let v = match r.kind {
        ActionKind::Pause => -daily,
        ActionKind::RaiseBudget => daily * r.budget_increase_ratio.unwrap_or_default(),
        _ => return "not estimated (a change for a person)".into(),
    };
    let sign = if v > Decimal::ZERO { "+" } else { "" };
    format!("{sign}{} a day", inr(v))
}

fn outcome_text(o: &Option<Outcome>) -> String {
    match o {
        None => String::new(),
        Some(o) => {
            let mut s = o.result.as_str().replace('_', " ");
            if let (Some(b), Some(a)) = (&o.before, &o.after) {
                s.push_str(&format!(": {} → {}", b.status, a.status));
                if b.daily_budget != a.daily_budget
                    && let (Some(x), Some(y)) = (b.daily_budget, a.daily_budget)
                {
                    s.push_str(&format!(", budget {} → {}", inr_paise(x), inr_paise(y)));
                }
            }
            if !o.detail.is_empty() {
                s.push_str(&format!(" ({})", o.detail));
            }
            if o.duplicate {
                s.push_str(" [repeat: not executed again]");
            }
            s
        }
    }
}

fn rec_row(r: &Recommendation, snap: &Snapshot) -> RecRow {
    RecRow {
        id: r.id.clone(),
        rule: r.rule.clone(),
        kind: r.kind.as_str().replace('_', " "),
        executable: r.executable,
        campaign_id: r.campaign_id.clone(),
        campaign: r.campaign_name.clone(),
        platform: r.platform.clone(),
        account: r.account.clone(),
        reason: r.reason.clone(),
        values: r
            .values
            .iter()
            .map(|(k, v)| format!("{k} {}", trim_num(*v)))
            .collect::<Vec<_>>()
            .join(" · "),
        effect: effect(r, snap),
        status: r.status.as_str().replace('_', " "),
        created: ist(r.created_at),
        updated: ist(r.updated_at),
        decided_by: r.decided_by.clone().unwrap_or_default(),
        note: r.note.clone().unwrap_or_default(),
        outcome: outcome_text(&r.outcome),
    }
}

fn trim_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        inr(Decimal::from_f64(v).unwrap_or_default()).replace('₹', "")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[derive(Template)]
#[template(path = "recommendations.html")]
struct RecsPage {
    c: Chrome,
    open: Vec<RecRow>,
    history: Vec<RecRow>,
    recommend_mode: bool,
}

pub(super) async fn recommendations(State(st): State<WebState>, v: Viewer) -> Response {
    let snap = st.engine.snapshot();
    let all = st.engine.recommendations(false);
    let (open, rest): (Vec<_>, Vec<_>) = all.iter().partition(|r| r.status == RecStatus::Open);
    let mut history: Vec<&Recommendation> = rest
        .into_iter()
        .filter(|r| r.status != RecStatus::Expired || r.decided_by.is_some())
        .collect();
    history.sort_by_key(|b| std::cmp::Reverse(b.updated_at));
    history.truncate(200);
    render(&RecsPage {
        c: v.chrome(&st, "recommendations").await,
        open: open.iter().map(|r| rec_row(r, &snap)).collect(),
        history: history.iter().map(|r| rec_row(r, &snap)).collect(),
        recommend_mode: st.engine.mode() == Mode::Recommend,
    })
}

/// A decision on one recommendation.
#[derive(Clone, Copy)]
enum Verdict {
    Approve,
    Reject,
}

pub(super) async fn approve(st: State<WebState>, id: Path<String>, p: Posted) -> Response {
    decide(st, id, p, Verdict::Approve).await
}

pub(super) async fn reject(st: State<WebState>, id: Path<String>, p: Posted) -> Response {
    decide(st, id, p, Verdict::Reject).await
}

/// One decision on a recommendation from its form: the role check, the note, the engine call,
/// a flash saying what happened and back to the list; a refusal as its error page.
async fn decide(
    State(st): State<WebState>,
    Path(id): Path<String>,
    p: Posted,
    verdict: Verdict,
) -> Response {
    let call = match verdict {
        Verdict::Approve => "approve",
        Verdict::Reject => "reject",
    };
    if let Err(r) = p.who.require(&st, Role::Approver, call) {
        return r;
    }
    let (actor, note) = (p.who.actor(), p.form.text("note").unwrap_or(""));
    let done = match verdict {
        Verdict::Approve => st.engine.approve(&id, &actor, note).await,
        Verdict::Reject => st.engine.reject(&id, &actor, note).await,
    };
    let rec = match done {
        Ok(rec) => rec,
        Err(e) => return action_error(e),
    };
    p.who
        .flash(match verdict {
            Verdict::Approve => format!(
                "{} {}: {}",
                rec.kind.as_str().replace('_', " "),
                rec.campaign_name,
                outcome_text(&rec.outcome)
            ),
            Verdict::Reject => format!("Rejected: {} on {}", rec.kind.as_str(), rec.campaign_name),
        })
        .await;
    Redirect::to("/recommendations").into_response()
}

pub(super) async fn bulk_approve(State(st): State<WebState>, p: Posted) -> Response {
    if let Err(r) = p.who.require(&st, Role::Approver, "bulk_approve") {
        return r;
    }
    let ids = p.form.all("id");
    if ids.is_empty() {
        p.who.flash("Nothing selected.").await;
        return Redirect::to("/recommendations").into_response();
    }
    let note = p.form.text("note").unwrap_or("");
    let mut lines = Vec::new();
    for id in ids {
        match st.engine.approve(id, &p.who.actor(), note).await {
            Ok(rec) => lines.push(format!(
                "{}: {}",
                rec.campaign_name,
                outcome_text(&rec.outcome)
            )),
            Err(e) => lines.push(format!("{id}: {e}")),
        }
    }
    p.who.flash(lines.join(" | ")).await;
    Redirect::to("/recommendations").into_response()
}

// ---------------------------------------------------------------- Kill switch

struct AccountOption {
    value: String,
    label: String,
    selected: bool,
}

struct KillRow {
    campaign_id: String,
    name: String,
    spend_per_hour: String,
    loss_per_hour: String,
    spend_today: String,
}

struct KillResult {
    campaign_id: String,
    name: String,
    result: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "kill.html")]
struct KillPage {
    c: Chrome,
    accounts: Vec<AccountOption>,
    campaigns: Vec<AccountOption>,
    plan: Option<KillPlanView>,
    results: Vec<KillResult>,
}

struct KillPlanView {
    target: String,
    platform: String,
    account: String,
    campaign_id: String,
    rows: Vec<KillRow>,
    saves: String,
    confirmation: String,
}

#[derive(Deserialize)]
pub(super) struct KillQuery {
    /// `platform/account`
    account: Option<String>,
    /// `platform/account/campaign_id`
    campaign: Option<String>,
}

fn parse_target(account: Option<&str>, campaign: Option<&str>) -> Option<KillTarget> {
    if let Some(c) = campaign.filter(|c| !c.is_empty()) {
        let mut it = c.splitn(3, '/');
        let (p, a, id) = (it.next()?, it.next()?, it.next()?);
        return Some(KillTarget {
            platform: p.into(),
            account: a.into(),
            campaign_id: Some(id.into()),
        });
    }
    let a = account.filter(|a| !a.is_empty())?;
    let (p, acc) = a.split_once('/')?;
    Some(KillTarget {
        platform: p.into(),
        account: acc.into(),
        campaign_id: None,
    })
}

fn kill_options(
    snap: &Snapshot,
    target: Option<&KillTarget>,
) -> (Vec<AccountOption>, Vec<AccountOption>) {
    let mut accounts: BTreeMap<String, usize> = BTreeMap::new();
    for c in &snap.campaigns {
        *accounts
            .entry(format!("{}/{}", c.key.platform, c.key.account))
            .or_default() += 1;
    }
    let acc_sel = target
        .filter(|t| t.campaign_id.is_none())
        .map(|t| format!("{}/{}", t.platform, t.account));
    let camp_sel = target.and_then(|t| {
        t.campaign_id
            .as_ref()
            .map(|id| format!("{}/{}/{id}", t.platform, t.account))
    });
    let accounts = accounts
        .into_iter()
        .map(|(k, n)| AccountOption {
            selected: acc_sel.as_deref() == Some(k.as_str()),
            label: format!("{k} ({n} campaigns)"),
            value: k,
        })
        .collect();
    let campaigns = by_name(snap)
        .map(|c| {
            let value = format!("{}/{}/{}", c.key.platform, c.key.account, c.key.campaign_id);
            AccountOption {
                selected: camp_sel.as_deref() == Some(value.as_str()),
                label: format!("{} ({}, {})", c.name, c.key.platform, c.key.account),
                value,
            }
        })
        .collect();
    (accounts, campaigns)
}

fn plan_view(st: &WebState, t: &KillTarget) -> Result<KillPlanView, Response> {
    let plan = st.engine.kill_plan(t).map_err(action_error)?;
    Ok(KillPlanView {
        target: plan.target,
        platform: t.platform.clone(),
        account: t.account.clone(),
        campaign_id: t.campaign_id.clone().unwrap_or_default(),
        rows: plan
            .campaigns
            .iter()
            .map(|c| KillRow {
                campaign_id: c.key.campaign_id.clone(),
                name: c.name.clone(),
                spend_per_hour: inr(c.spend_per_hour),
                loss_per_hour: c.loss_per_hour.map_or("—".into(), inr),
                spend_today: inr(c.spend_today),
            })
            .collect(),
        saves: inr(plan.spend_per_hour),
        confirmation: plan.confirmation,
    })
}

pub(super) async fn kill_page(
    State(st): State<WebState>,
    v: Viewer,
    Query(q): Query<KillQuery>,
) -> Response {
    let snap = st.engine.snapshot();
    let target = parse_target(q.account.as_deref(), q.campaign.as_deref());
    let plan = match &target {
        Some(t) => match plan_view(&st, t) {
            Ok(p) => Some(p),
            Err(r) => return r,
        },
        None => None,
    };
    let (accounts, campaigns) = kill_options(&snap, target.as_ref());
    render(&KillPage {
        c: v.chrome(&st, "kill").await,
        accounts,
        campaigns,
        plan,
        results: Vec::new(),
    })
}

pub(super) async fn kill(State(st): State<WebState>, p: Posted) -> Response {
    if let Err(r) = p.who.require(&st, Role::Approver, "kill_switch") {
        return r;
    }
    let f = &p.form;
    let (Some(platform), Some(account)) = (f.text("platform"), f.text("account")) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Choose an account or a campaign first.",
        );
    };
    let target = KillTarget {
        platform: platform.into(),
        account: account.into(),
        campaign_id: f.text("campaign_id").map(String::from),
    };
    let want = target
        .campaign_id
        .clone()
        .unwrap_or_else(|| target.account.clone());
    if f.text("confirm") != Some(want.as_str()) {
        let mut r = error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Not stopped: type {want} exactly to confirm."),
        );
        r.headers_mut().insert(
            "x-adpulse-refused",
            header::HeaderValue::from_static("confirmation"),
        );
        return r;
    }
    let reason = f.text("reason").unwrap_or("kill switch (action center)");
    let request_id = f
        .text("request_id")
        .map(|s| {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{:x}", Utc::now().timestamp_micros()));
    let out = match st
        .engine
        .kill_switch(&target, &p.who.actor(), reason, &request_id)
        .await
    {
        Ok(o) => o,
        Err(e) => return action_error(e),
    };
    let snap = st.engine.snapshot();
    let (accounts, campaigns) = kill_options(&snap, Some(&target));
    render(&KillPage {
        c: p.who.chrome(&st, "kill").await,
        accounts,
        campaigns,
        plan: None,
        results: out
            .into_iter()
            .map(|(k, o)| KillResult {
                name: snap
                    .campaigns
                    .iter()
                    .find(|c| c.key == k)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                campaign_id: k.campaign_id,
                result: o.result.as_str().replace('_', " "),
                detail: outcome_text(&Some(o)),
            })
            .collect(),
    })
}

// ---------------------------------------------------------------- Caps

struct CapRow {
    scope: &'static str,
    id: String,
    label: String,
    cap: String,
    value: String,
    spend_today: String,
}

#[derive(Template)]
#[template(path = "caps.html")]
struct CapsPage {
    c: Chrome,
    default_cap: String,
    default_value: String,
    accounts: Vec<CapRow>,
    campaigns: Vec<CapRow>,
}

pub(super) async fn caps_page(State(st): State<WebState>, v: Viewer) -> Response {
    let snap = st.engine.snapshot();
    let caps = st.engine.config().caps.clone();
    let show = |d: Option<Decimal>| d.map_or("none".to_string(), inr_paise);
    let val = |d: Option<Decimal>| d.map_or(String::new(), |d| d.to_string());
    let mut acc_spend: BTreeMap<String, Decimal> = BTreeMap::new();
    for c in &snap.campaigns {
        *acc_spend.entry(c.key.account.clone()).or_default() += c.today.spend;
    }
    for a in caps.accounts.keys() {
        acc_spend.entry(a.clone()).or_default();
    }
    let accounts = acc_spend
        .into_iter()
        .map(|(a, spend)| CapRow {
            scope: "account",
            cap: show(caps.accounts.get(&a).copied()),
            value: val(caps.accounts.get(&a).copied()),
            label: a.clone(),
            id: a,
            spend_today: inr(spend),
        })
        .collect();
    let campaigns = by_name(&snap)
        .map(|c| {
            let own = caps.campaigns.get(&c.key.campaign_id).copied();
            CapRow {
                scope: "campaign",
                id: c.key.campaign_id.clone(),
                label: format!("{} ({})", c.name, c.key.account),
                cap: match own {
                    Some(x) => inr_paise(x),
                    None => format!("{} (every campaign's)", show(caps.campaign_daily)),
                },
                value: val(own),
                spend_today: inr(c.today.spend),
            }
        })
        .collect();
    render(&CapsPage {
        c: v.chrome(&st, "caps").await,
        default_cap: show(caps.campaign_daily),
        default_value: val(caps.campaign_daily),
        accounts,
        campaigns,
    })
}

pub(super) async fn set_cap(State(st): State<WebState>, p: Posted) -> Response {
    if let Err(r) = p.who.require(&st, Role::Approver, "set_cap") {
        return r;
    }
    let f = &p.form;
    let id = f.text("id").unwrap_or("").to_string();
    let scope = match f.text("scope") {
        Some("default") => CapScope::EveryCampaign,
        Some("campaign") if !id.is_empty() => CapScope::Campaign(id),
        Some("account") if !id.is_empty() => CapScope::Account(id),
        _ => return error_page(StatusCode::BAD_REQUEST, "Unknown cap."),
    };
    let amount = match f.text("amount") {
        None => None,
        Some(a) => match a.replace([',', '₹', ' '], "").parse::<Decimal>() {
            Ok(d) => Some(d),
            Err(_) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("{a:?} is not an amount in rupees (e.g. 25000 or 25000.50)."),
                );
            }
        },
    };
    match st.engine.set_cap(&scope, amount, &p.who.actor()) {
        Ok(()) => {
            p.who
                .flash("Cap saved (and recorded in the audit trail).")
                .await;
            Redirect::to("/caps").into_response()
        }
        Err(e) => action_error(e),
    }
}

// ---------------------------------------------------------------- Reallocation

struct MoveRow {
    from: String,
    from_id: String,
    to: String,
    to_id: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "reallocation.html")]
struct ReallocPage {
    c: Chrome,
    window_days: u32,
    moves: Vec<MoveRow>,
    freed: String,
    unspent: String,
    gain: String,
    assumption: &'static str,
    recommend_mode: bool,
    results: Vec<KillResult>,
    /// [`proposal_id`] of the moves shown: the form posts it back, so what is applied is what
    /// was on the screen, and a repeated submit applies it once.
    proposal: String,
}

/// A stable id of a proposal on a day (FNV-1a over its moves, hex): the engine's request id,
/// so the same proposal applied twice the same day executes once.
fn proposal_id(r: &rules::Reallocation, day: chrono::NaiveDate) -> String {
    let mut text = day.to_string();
    for m in &r.moves {
        text.push_str(&format!(
            "|{}/{}>{}/{}={}",
            m.from.platform, m.from.campaign_id, m.to.platform, m.to.campaign_id, m.amount
        ));
    }
    // FNV-1a, 64 bit: stable across builds (std's hasher is not), enough for a request id
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

fn today_ist() -> chrono::NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive()
}

async fn realloc_page(st: &WebState, v: &Viewer, results: Vec<KillResult>) -> Response {
    let r = st.engine.reallocation();
    render(&ReallocPage {
        proposal: proposal_id(&r, today_ist()),
        c: v.chrome(st, "reallocation").await,
        window_days: r.window_days,
        moves: r
            .moves
            .iter()
            .map(|m| MoveRow {
                from: m.from_name.clone(),
                from_id: m.from.campaign_id.clone(),
                to: m.to_name.clone(),
                to_id: m.to.campaign_id.clone(),
                amount: inr(m.amount),
            })
            .collect(),
        freed: inr(r.freed_per_day),
        unspent: inr(r.unspent_per_day),
        gain: inr(r.expected_daily_profit_change),
        assumption: r.assumption,
        recommend_mode: st.engine.mode() == Mode::Recommend,
        results,
    })
}

pub(super) async fn reallocation_page(State(st): State<WebState>, v: Viewer) -> Response {
    realloc_page(&st, &v, Vec::new()).await
}

pub(super) async fn apply_reallocation(State(st): State<WebState>, p: Posted) -> Response {
    if let Err(r) = p.who.require(&st, Role::Approver, "apply_reallocation") {
        return r;
    }
    let rid = proposal_id(&st.engine.reallocation(), today_ist());
    if p.form.get("proposal") != Some(rid.as_str()) {
        return error_page(
            StatusCode::CONFLICT,
            "The proposal changed since the page was shown: review it again before applying.",
        );
    }
    match st.engine.apply_reallocation(&p.who.actor(), &rid).await {
        Ok(out) => {
            let results = out
                .into_iter()
                .map(|(k, kind, o)| KillResult {
                    name: String::new(),
                    campaign_id: k.campaign_id,
                    result: format!("{}: {}", kind.as_str().replace('_', " "), o.result.as_str()),
                    detail: outcome_text(&Some(o)),
                })
                .collect();
            realloc_page(&st, &p.who, results).await
        }
        Err(e) => action_error(e),
    }
}

// ---------------------------------------------------------------- Audit trail

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    /// First day, IST (YYYY-MM-DD).
    from: Option<String>,
    /// Last day, IST, included.
    to: Option<String>,
    campaign: Option<String>,
    actor: Option<String>,
}

struct AuditRowView {
    ts: String,
    event: String,
    actor: String,
    campaign_id: String,
    campaign: String,
    kind: String,
    result: String,
    detail: String,
    action_id: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    c: Chrome,
    from: String,
    to: String,
    campaign: String,
    actor: String,
    rows: Vec<AuditRowView>,
    csv_query: String,
    shown: usize,
}

fn ist_day_start(day: &str) -> Result<Option<DateTime<Utc>>, Response> {
    if day.trim().is_empty() {
        return Ok(None);
    }
    let d = NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d").map_err(|_| {
        error_page(
            StatusCode::BAD_REQUEST,
            &format!("{day:?} is not a date (YYYY-MM-DD)"),
        )
    })?;
    let t = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    Ok(chrono_tz::Asia::Kolkata
        .from_local_datetime(&t)
        .single()
        .map(|x| x.with_timezone(&Utc)))
}

fn audit_filter(q: &AuditQuery, limit: usize) -> Result<AuditFilter, Response> {
    let from = ist_day_start(q.from.as_deref().unwrap_or(""))?;
    let to = ist_day_start(q.to.as_deref().unwrap_or(""))?.map(|t| t + chrono::Duration::days(1));
    Ok(AuditFilter {
        from,
        to,
        campaign_id: q.campaign.clone().filter(|c| !c.trim().is_empty()),
        actor: q.actor.clone().filter(|c| !c.trim().is_empty()),
        action_id: None,
        limit,
    })
}

fn audit_rows(st: &WebState, f: &AuditFilter) -> Result<Vec<crate::records::ActionRow>, Response> {
    st.engine.audit_log().query(f).map_err(|error| {
        tracing::error!(%error, "cannot read the audit log");
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The audit log cannot be read; see the log.",
        )
    })
}

/// The audit rows the page's query asks for: its filter, then the log (either answers an error
/// page). The audit page and its CSV export share it.
fn queried_audit_rows(
    st: &WebState,
    q: &AuditQuery,
    limit: usize,
) -> Result<Vec<crate::records::ActionRow>, Response> {
    audit_rows(st, &audit_filter(q, limit)?)
}

fn audit_view(r: &crate::records::ActionRow) -> AuditRowView {
    AuditRowView {
        ts: ist_secs(r.ts),
        event: r.event.clone(),
        actor: r.actor.clone(),
        campaign_id: r.campaign_id.clone(),
        campaign: r.campaign_name.clone(),
        kind: r.kind.clone(),
        result: r.result.clone(),
        detail: if r.detail.is_empty() {
            r.reason.clone()
        } else {
            r.detail.clone()
        },
        action_id: r.action_id.clone(),
    }
}

pub(super) async fn audit_page(
    State(st): State<WebState>,
    v: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Response> {
    let rows = queried_audit_rows(&st, &q, 500)?;
    let enc = |s: &Option<String>| -> String {
        form_urlencoded::byte_serialize(s.as_deref().unwrap_or("").as_bytes()).collect()
    };
    Ok(render(&AuditPage {
        c: v.chrome(&st, "audit").await,
        csv_query: format!(
            "from={}&to={}&campaign={}&actor={}",
            enc(&q.from),
            enc(&q.to),
            enc(&q.campaign),
            enc(&q.actor)
        ),
        from: q.from.unwrap_or_default(),
        to: q.to.unwrap_or_default(),
        campaign: q.campaign.unwrap_or_default(),
        actor: q.actor.unwrap_or_default(),
        shown: rows.len(),
        rows: rows.iter().map(audit_view).collect(),
    }))
}

pub(super) async fn audit_csv(
    State(st): State<WebState>,
    _v: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Response> {
    let body =
        crate::actions::engine::audit_csv(&queried_audit_rows(&st, &q, 0)?).map_err(|error| {
            tracing::error!(%error, "audit CSV failed");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })?;
    let disposition = "attachment; filename=\"adpulse-audit.csv\"";
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------- Campaign

struct DayRow {
    day: String,
    spend: String,
    revenue: String,
    profit: String,
    roi: String,
    cpa: String,
    conversions: String,
}

#[derive(Template)]
#[template(path = "campaign.html")]
struct CampaignPage {
    c: Chrome,
    found: bool,
    campaign_id: String,
    name: String,
    platform: String,
    account: String,
    loss_now: String,
    spend_today: String,
    revenue_today: String,
    roi_today: String,
    roi_7d: String,
    loss_7d: String,
    days: Vec<DayRow>,
    recs: Vec<RecRow>,
    audit: Vec<AuditRowView>,
    kill_value: String,
    /// The campaign's drill-downs in Grafana (empty without `grafana_url`).
    grafana: Vec<super::links::DashboardLink>,
}

pub(super) async fn campaign_page(
    State(st): State<WebState>,
    v: Viewer,
    Path(campaign_id): Path<String>,
) -> Response {
    let snap = st.engine.snapshot();
    let m: Margin = snap.margin;
    let c = snap
        .campaigns
        .iter()
        .find(|c| c.key.campaign_id == campaign_id);
    let recs: Vec<RecRow> = st
        .engine
        .recommendations(false)
        .iter()
        .filter(|r| r.campaign_id == campaign_id)
        .take(50)
        .map(|r| rec_row(r, &snap))
        .collect();
    let audit = audit_rows(
        &st,
        &AuditFilter {
            campaign_id: Some(campaign_id.clone()),
            limit: 50,
            ..Default::default()
        },
    )
    .unwrap_or_default();
    let Some(c) = c else {
        let mut r = render(&CampaignPage {
            c: v.chrome(&st, "").await,
            found: false,
            campaign_id: campaign_id.clone(),
            name: String::new(),
            platform: String::new(),
            account: String::new(),
            loss_now: String::new(),
            spend_today: String::new(),
            revenue_today: String::new(),
            roi_today: String::new(),
            roi_7d: String::new(),
            loss_7d: String::new(),
            days: Vec::new(),
            recs,
            audit: audit.iter().map(audit_view).collect(),
            kill_value: String::new(),
            grafana: Vec::new(),
        });
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let w7 = last_7d(c, &snap);
    let days = c
        .days
        .iter()
        .rev()
        .take(10)
        .map(|(d, t)| DayRow {
            day: d.format("%a %d %b").to_string(),
            spend: inr(t.spend),
            revenue: inr(t.revenue),
            profit: inr(t.profit(m)),
            roi: pct(t.roi(m)),
            cpa: t.cpa().map_or("—".into(), inr),
            conversions: trim_num(t.conversions),
        })
        .collect();
    render(&CampaignPage {
        c: v.chrome(&st, "").await,
        found: true,
        campaign_id: campaign_id.clone(),
        name: c.name.clone(),
        platform: c.key.platform.clone(),
        account: c.key.account.clone(),
        loss_now: c.loss_rate_per_hour.map_or("—".into(), inr),
        spend_today: inr(c.today.spend),
        revenue_today: inr(c.today.revenue),
        roi_today: pct(c.today.roi(m)),
        roi_7d: pct(w7.roi(m)),
        loss_7d: inr(crate::kpi::loss(&w7, m)),
        days,
        recs,
        audit: audit.iter().map(audit_view).collect(),
        kill_value: format!("{}/{}/{}", c.key.platform, c.key.account, c.key.campaign_id),
        grafana: super::links::campaign(
            st.cfg.grafana_url.as_deref(),
            &c.key.platform,
            &c.key.account,
            &c.key.campaign_id,
        ),
    })
}

// ---------------------------------------------------------------- Settings

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    c: Chrome,
    mode: String,
    dry_run: bool,
    users_file: String,
}

pub(super) async fn settings_page(State(st): State<WebState>, v: Viewer) -> Response {
    render(&SettingsPage {
        c: v.chrome(&st, "settings").await,
        mode: st.engine.mode().as_str().into(),
        dry_run: st.engine.dry_run(),
        users_file: st.users.path().display().to_string(),
    })
}

pub(super) async fn set_mode(State(st): State<WebState>, p: Posted) -> Response {
    if let Err(r) = p.who.require(&st, Role::Admin, "set_mode") {
        return r;
    }
    let mode = match p.form.text("mode") {
        Some("recommend") => Mode::Recommend,
        Some("approve") => Mode::Approve,
        Some("auto") => Mode::Auto,
        other => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("mode must be recommend, approve or auto, not {other:?}"),
            );
        }
    };
    let dry_run = p.form.get("dry_run") == Some("on");
    match st.engine.set_mode(mode, dry_run, &p.who.actor()) {
        Ok(()) => {
            p.who
                .flash(format!(
                    "Mode is now {}{}.",
                    mode.as_str(),
                    if dry_run { ", dry run" } else { ", live" }
                ))
                .await;
            Redirect::to("/settings").into_response()
        }
        Err(e) => action_error(e),
    }
}
