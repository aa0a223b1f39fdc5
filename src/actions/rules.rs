//! The rules engine: pure functions from a KPI [`Snapshot`] (today and the per-day history of
//! each campaign) to proposals, the budget reallocation proposal, and the budget arithmetic that
//! keeps every change inside the caps. No I/O here: `engine` decides what to do with the result.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use std::collections::BTreeMap;

use super::config::{ActionsConfig, AutoConfig, CapsConfig, RuleConfig};
use crate::kpi::{Margin, Totals, to_f64};
use crate::records::CampaignKey;
use crate::state::{AdView, CampaignView, Snapshot};

/// Rule name of the emergency caps (campaign or account breach).
pub const BUDGET_CAP: &str = "budget_cap";

/// What an action does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Pause,
    Enable,
    /// Multiply the daily budget by `1 + ratio`, within the caps.
    RaiseBudget,
    /// A recommendation for a person: no API call.
    ExpandAudience,
    /// A recommendation for a person: no API call.
    RotateCreatives,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Pause => "pause",
            ActionKind::Enable => "enable",
            ActionKind::RaiseBudget => "raise_budget",
            ActionKind::ExpandAudience => "expand_audience",
            ActionKind::RotateCreatives => "rotate_creatives",
        }
    }

    /// True when adpulse can carry it out through an ad platform API.
    pub fn executable(self) -> bool {
        matches!(
            self,
            ActionKind::Pause | ActionKind::Enable | ActionKind::RaiseBudget
        )
    }
}

/// What a rule found on one campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub rule: String,
    pub key: CampaignKey,
    pub campaign_name: String,
    pub kind: ActionKind,
    /// For `RaiseBudget`: the fraction to add.
    pub budget_increase_ratio: Option<Decimal>,
    /// One sentence for the marketing lead.
    pub reason: String,
    /// The figures the rule looked at.
    pub values: BTreeMap<String, f64>,
}

impl Proposal {
    /// What `rule` proposes for campaign `c`: `kind`, why, and the figures it looked at (no
    /// budget change: a raise sets `budget_increase_ratio` after).
    fn new<'a>(
        rule: &str,
        c: &CampaignView,
        kind: ActionKind,
        reason: String,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Self {
        Proposal {
            rule: rule.into(),
            key: c.key.clone(),
            campaign_name: c.name.clone(),
            kind,
            budget_increase_ratio: None,
            reason,
            values: values
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// Sum of the `days` complete reporting days before today.
fn complete_days(c: &CampaignView, today: chrono::NaiveDate, days: u32) -> Totals {
    let from = today - chrono::Duration::days(i64::from(days.max(1)));
    let mut t = Totals::default();
    for (d, day) in &c.days {
        if *d >= from && *d < today {
            t += *day;
        }
    }
    t
}

/// Sum of the last `days` reporting days up to today (today included).
pub fn window(c: &CampaignView, today: chrono::NaiveDate, days: u32) -> Totals {
    window_of(&c.days, today, days)
}

/// [`window`] over any per-day history (a campaign's or an ad's).
fn window_of(
    history: &[(chrono::NaiveDate, Totals)],
    today: chrono::NaiveDate,
    days: u32,
) -> Totals {
    let from = today - chrono::Duration::days(i64::from(days.max(1)) - 1);
    let mut t = Totals::default();
    for (d, day) in history {
        if *d >= from && *d <= today {
            t += *day;
        }
    }
    t
}

fn money(d: Decimal) -> f64 {
    (to_f64(d) * 100.0).round() / 100.0
}

/// Every proposal for this snapshot. A campaign with a pause proposal gets no other one: there is
/// no point rotating the creatives of a campaign being stopped.
pub fn evaluate(snap: &Snapshot, cfg: &ActionsConfig) -> Vec<Proposal> {
    let mut out: Vec<Proposal> = Vec::new();
    let today = snap.day;
    let cur = &snap.currency;

    // Emergency caps: today's spend per campaign, then per account.
    let mut account_spend: BTreeMap<&str, Decimal> = BTreeMap::new();
    for c in &snap.campaigns {
        *account_spend.entry(c.key.account.as_str()).or_default() += c.today.spend;
    }
    for c in &snap.campaigns {
        let spend = c.today.spend;
        if let Some(cap) = cfg.caps.campaign_cap(&c.key.campaign_id)
            && spend > cap
        {
            let reason = format!(
                "spent {} {cur} today, above its daily cap of {} {cur}",
                money(spend),
                money(cap)
            );
            let values = [("spend_today", money(spend)), ("cap", money(cap))];
            out.push(Proposal::new(
                BUDGET_CAP,
                c,
                ActionKind::Pause,
                reason,
                values,
            ));
            continue;
        }
        if let Some(cap) = cfg.caps.accounts.get(&c.key.account)
            && let Some(total) = account_spend.get(c.key.account.as_str())
            && total > cap
            && spend > Decimal::ZERO
        {
            let reason = format!(
                "account {} spent {} {cur} today, above its daily cap of {} {cur}",
                c.key.account,
                money(*total),
                money(*cap)
            );
            let values = [
                ("account_spend_today", money(*total)),
                ("cap", money(*cap)),
                ("spend_today", money(spend)),
            ];
            out.push(Proposal::new(
                BUDGET_CAP,
                c,
                ActionKind::Pause,
                reason,
                values,
            ));
        }
    }

    for c in &snap.campaigns {
        let mut mine: Vec<Proposal> = Vec::new();
        let ads = snap.ads.get(&c.key).map(Vec::as_slice).unwrap_or_default();
        for rule in &cfg.rules {
            if let RuleConfig::PoasBelow(r) = rule {
                mine.extend(poas_below(r, c, &snap.profit, today, cur));
                continue;
            }
            if let Some(p) = apply(rule, c, ads, today, cur) {
                mine.push(p);
            }
        }
        out.extend(mine);
    }

    // pause supersedes everything else on the same campaign
    let paused: std::collections::HashSet<CampaignKey> = out
        .iter()
        .filter(|p| p.kind == ActionKind::Pause)
        .map(|p| p.key.clone())
        .collect();
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| {
        (p.kind == ActionKind::Pause || !paused.contains(&p.key))
            // one pause per campaign: the cap's (listed first) wins over the CPA rule's
            && (p.kind != ActionKind::Pause || seen.insert(p.key.clone()))
    });
    out
}

fn apply(
    rule: &RuleConfig,
    c: &CampaignView,
    ads: &[AdView],
    today: chrono::NaiveDate,
    cur: &str,
) -> Option<Proposal> {
    let base = |kind, reason: String, values: Vec<(&str, f64)>| {
        Proposal::new(rule.name(), c, kind, reason, values)
    };
    match rule {
        // judged on the profit view (`evaluate`)
        RuleConfig::PoasBelow(_) => None,
        RuleConfig::CpaAbove(r) => {
            let w = window(c, today, r.window_days);
            let above = match w.cpa() {
                Some(cpa) => cpa > r.threshold,
                // no conversion at all: CPA is above any threshold the spend exceeds
                None => w.spend > r.threshold,
            };
            if !above {
                return None;
            }
            let cpa = w.cpa().map(money);
            let reason = match cpa {
                Some(v) => format!(
                    "CPA {v} {cur} over {} days, above {} {cur}",
                    r.window_days,
                    money(r.threshold)
                ),
                None => format!(
                    "spent {} {cur} over {} days with no conversion (CPA above {} {cur})",
                    money(w.spend),
                    r.window_days,
                    money(r.threshold)
                ),
            };
            let mut values = vec![
                ("spend", money(w.spend)),
                ("conversions", w.conversions),
                ("threshold", money(r.threshold)),
            ];
            if let Some(v) = cpa {
                values.push(("cpa", v));
            }
            Some(base(ActionKind::Pause, reason, values))
        }
        RuleConfig::RoasAbove(r) => {
            // each of the last `days` complete days must exist and be above the threshold
            let mut roas = Vec::new();
            for back in 1..=i64::from(r.days) {
                let d = today - chrono::Duration::days(back);
                let t = c.days.iter().find(|(day, _)| *day == d).map(|(_, t)| t)?;
                let v = t.roas()?;
                if v <= r.threshold {
                    return None;
                }
                roas.push(v);
            }
            let min = roas.iter().copied().fold(f64::INFINITY, f64::min);
            let mut p = base(
                ActionKind::RaiseBudget,
                format!(
                    "ROAS above {} on each of the last {} days (lowest {:.2}): budget +{}%",
                    r.threshold,
                    r.days,
                    min,
                    (r.budget_increase_ratio * Decimal::from(100)).normalize()
                ),
                vec![
                    ("roas_min", min),
                    ("threshold", r.threshold),
                    ("days", f64::from(r.days)),
                ],
            );
            p.budget_increase_ratio = Some(r.budget_increase_ratio);
            Some(p)
        }
        RuleConfig::CrAbove(r) => {
            let w = window(c, today, r.window_days);
            let cr = w.cr()?;
            (w.clicks >= r.min_clicks && cr > r.threshold).then(|| {
                base(
                    ActionKind::ExpandAudience,
                    format!(
                        "CR {:.2}% over {} days, above {:.2}%: the audience converts, try a wider one",
                        cr * 100.0,
                        r.window_days,
                        r.threshold * 100.0
                    ),
                    vec![
                        ("cr", cr),
                        ("clicks", w.clicks as f64),
                        ("threshold", r.threshold),
                    ],
                )
            })
        }
        // ad-level sources: the rule judges each ad and names the ones below the threshold
        // (rotating a campaign's creatives means replacing those ads, not the good ones)
        RuleConfig::CtrBelow(r) if !ads.is_empty() => {
            let mut judged = 0usize;
            let mut low: Vec<(&AdView, f64, u64)> = Vec::new();
            for a in ads {
                let w = window_of(&a.days, today, r.window_days);
                let Some(ctr) = w.ctr() else { continue };
                if w.impressions < r.min_impressions {
                    continue;
                }
                judged += 1;
                if ctr < r.threshold {
                    low.push((a, ctr, w.impressions));
                }
            }
            if low.is_empty() {
                return None;
            }
            // lowest CTR first: the first ad to replace
            low.sort_by(|x, y| x.1.total_cmp(&y.1).then_with(|| x.0.ad.cmp(&y.0.ad)));
            let named: Vec<String> = low
                .iter()
                .map(|(a, ctr, _)| {
                    let name = if a.ad.ad_name.is_empty() {
                        format!("ad {}", a.ad.ad_id)
                    } else {
                        format!("\"{}\" ({})", a.ad.ad_name, a.ad.ad_id)
                    };
                    format!("{name} {:.2}%", ctr * 100.0)
                })
                .collect();
            let mut values = vec![
                ("threshold".to_string(), r.threshold),
                ("ads_below".to_string(), low.len() as f64),
                ("ads_judged".to_string(), judged as f64),
            ];
            for (a, ctr, imp) in &low {
                values.push((format!("ctr:{}", a.ad.ad_id), *ctr));
                values.push((format!("impressions:{}", a.ad.ad_id), *imp as f64));
            }
            Some(Proposal {
                values: values.into_iter().collect(),
                ..base(
                    ActionKind::RotateCreatives,
                    format!(
                        "CTR below {:.2}% over {} days on {} of {} ads: {}: rotate their creatives",
                        r.threshold * 100.0,
                        r.window_days,
                        low.len(),
                        judged,
                        named.join(", ")
                    ),
                    vec![],
                )
            })
        }
        RuleConfig::CtrBelow(r) => {
            let w = window(c, today, r.window_days);
            let ctr = w.ctr()?;
            (w.impressions >= r.min_impressions && ctr < r.threshold).then(|| {
                base(
                    ActionKind::RotateCreatives,
                    format!(
                        "CTR {:.2}% over {} days, below {:.2}%: rotate the creatives",
                        ctr * 100.0,
                        r.window_days,
                        r.threshold * 100.0
                    ),
                    vec![
                        ("ctr", ctr),
                        ("impressions", w.impressions as f64),
                        ("threshold", r.threshold),
                    ],
                )
            })
        }
    }
}

/// One move of the reallocation proposal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    pub from: CampaignKey,
    pub from_name: String,
    pub to: CampaignKey,
    pub to_name: String,
    /// Daily amount moved, reporting currency.
    pub amount: Decimal,
}

/// Budget reallocation: stop the losing campaigns' daily spend, give part of it to the winning
/// ones (within caps and `max_increase_ratio`), keep the rest unspent. Measured on complete days
/// (today excluded, so a morning does not look like a cheap day).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reallocation {
    pub currency: String,
    pub window_days: u32,
    pub moves: Vec<Move>,
    /// Daily spend taken from losing campaigns (their average over the window).
    pub freed_per_day: Decimal,
    /// Part of it not given to any winner: simply not spent.
    pub unspent_per_day: Decimal,
    /// Expected change of daily profit, assuming each campaign's return per unit of spend over
    /// the window stays what it was (a linear estimate: optimistic for the winners).
    pub expected_daily_profit_change: Decimal,
    pub assumption: &'static str,
}

/// A campaign's average daily spend over the `days` complete days before today: the base the
/// reallocation's amounts are measured against.
pub fn average_daily_spend(c: &CampaignView, today: chrono::NaiveDate, days: u32) -> Decimal {
    let days = days.max(1);
    (complete_days(c, today, days).spend / Decimal::from(days)).round_dp(2)
}

/// Return per unit of spend (revenue × margin / spend) over the window; `None` without spend.
fn return_ratio(w: &Totals, margin: Margin) -> Option<Decimal> {
    (!w.spend.is_zero()).then(|| w.revenue * margin.0 / w.spend)
}

pub fn reallocate(snap: &Snapshot, cfg: &ActionsConfig) -> Reallocation {
    let days = cfg.reallocation.window_days.max(1);
    let n = Decimal::from(days);
    struct C<'a> {
        v: &'a CampaignView,
        spend_day: Decimal,
        ret: Decimal,
    }
    let mut losers = Vec::new();
    let mut winners = Vec::new();
    for v in &snap.campaigns {
        let w = complete_days(v, snap.day, days);
        let Some(ret) = return_ratio(&w, snap.margin) else {
            continue;
        };
        let c = C {
            v,
            spend_day: (w.spend / n).round_dp(2),
            ret,
        };
        if ret < Decimal::ONE {
            losers.push(c);
        } else if ret > Decimal::ONE {
            winners.push(c);
        }
    }
    // best winners first; deterministic order
    winners.sort_by(|a, b| b.ret.cmp(&a.ret).then(a.v.key.cmp(&b.v.key)));
    losers.sort_by(|a, b| a.ret.cmp(&b.ret).then(a.v.key.cmp(&b.v.key)));
    let mut account_room: BTreeMap<&str, Decimal> = BTreeMap::new();
    for (acc, cap) in &cfg.caps.accounts {
        let used: Decimal = snap
            .campaigns
            .iter()
            .filter(|c| &c.key.account == acc)
            .map(|c| (complete_days(c, snap.day, days).spend / n).round_dp(2))
            .sum();
        account_room.insert(acc.as_str(), (*cap - used).max(Decimal::ZERO));
    }
    let mut room: Vec<Decimal> = winners
        .iter()
        .map(|w| {
            let mut r = w.spend_day * cfg.reallocation.max_increase_ratio;
            if let Some(cap) = cfg.caps.campaign_cap(&w.v.key.campaign_id) {
                r = r.min((cap - w.spend_day).max(Decimal::ZERO));
            }
            r.round_dp(2)
        })
        .collect();
    let mut moves = Vec::new();
    let mut gain = Decimal::ZERO;
    let mut freed = Decimal::ZERO;
    let mut given = Decimal::ZERO;
    for l in &losers {
        freed += l.spend_day;
        gain += (Decimal::ONE - l.ret) * l.spend_day;
        let mut left = l.spend_day;
        for (i, w) in winners.iter().enumerate() {
            if left.is_zero() {
                break;
            }
            let mut r = room[i].min(left);
            if let Some(a) = account_room.get_mut(w.v.key.account.as_str()) {
                r = r.min(*a);
                *a -= r;
            }
            if r <= Decimal::ZERO {
                continue;
            }
            room[i] -= r;
            left -= r;
            given += r;
            gain += (w.ret - Decimal::ONE) * r;
            moves.push(Move {
                from: l.v.key.clone(),
                from_name: l.v.name.clone(),
                to: w.v.key.clone(),
                to_name: w.v.name.clone(),
                amount: r,
            });
        }
    }
    Reallocation {
        currency: snap.currency.clone(),
        window_days: days,
        moves,
        freed_per_day: freed,
        unspent_per_day: freed - given,
        expected_daily_profit_change: gain.round_dp(2),
        assumption: "each campaign keeps its return per unit of spend over the window",
    }
}

/// Why a budget change is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetRefusal {
    #[error("no daily cap is configured for this campaign: budgets are never raised without one")]
    NoCap,
    #[error("the campaign has no daily budget of its own to raise")]
    NoBudget,
    #[error("already at its cap ({0})")]
    AtCap(Decimal),
}

/// New daily budget for a raise of `ratio` (reporting currency), within: the campaign cap (which
/// must exist), the account cap given the other campaigns' budgets, and `auto` limits when
/// `auto` is given. Rounded down to the paisa. Never returns an amount above any cap.
pub fn raise_budget(
    key: &CampaignKey,
    current: Option<Decimal>,
    ratio: Decimal,
    other_budgets_in_account: Decimal,
    caps: &CapsConfig,
    auto: Option<&AutoConfig>,
) -> Result<Decimal, BudgetRefusal> {
    let current = current
        .filter(|c| *c > Decimal::ZERO)
        .ok_or(BudgetRefusal::NoBudget)?;
    let cap = caps
        .campaign_cap(&key.campaign_id)
        .ok_or(BudgetRefusal::NoCap)?;
    let ratio = match auto {
        Some(a) => ratio.min(a.max_budget_increase_ratio),
        None => ratio,
    }
    .max(Decimal::ZERO);
    let mut target = current * (Decimal::ONE + ratio);
    target = target.min(cap);
    if let Some(acc) = caps.accounts.get(&key.account) {
        target = target.min(*acc - other_budgets_in_account);
    }
    let target = target.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero);
    if target <= current {
        return Err(BudgetRefusal::AtCap(current));
    }
    Ok(target)
}

/// Share as f64 for display.
pub fn pct(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0) * 100.0
}

/// A campaign as the rule and engine tests describe it: its days and nothing else (no hourly
/// loss rate, no tracking window, no rolling gauges), today being its last day.
/// The "POAS below" rule on one campaign: each of the `days` complete days before `today` must
/// have a spend row (the history is there), and the POAS summed over them (contribution margin
/// of the campaign's last-click orders / its spend) must be below the threshold. Lines without
/// a cost only raise the margin, so a pause on them is never premature.
pub fn poas_below(
    r: &super::config::PoasBelow,
    c: &CampaignView,
    v: &crate::profit::live::ProfitView,
    today: chrono::NaiveDate,
    cur: &str,
) -> Option<Proposal> {
    // the view was built from the snapshot's campaigns, `c` among them: its days are the view's
    let p = v.campaign(&c.key)?;
    let mut t = crate::profit::kpi::ProfitTotals::default();
    for back in 1..=i64::from(r.days) {
        let d = today - chrono::Duration::days(back);
        let (_, day) = c.days.iter().find(|(day, _)| *day == d)?;
        t += v.campaign_day(p, d, day.spend);
    }
    if t.ad_spend <= r.min_spend {
        return None;
    }
    let poas = t.poas()?;
    if poas >= r.threshold {
        return None;
    }
    let cm = (to_f64(t.contribution_margin()) * 100.0).round() / 100.0;
    let spend = (to_f64(t.ad_spend) * 100.0).round() / 100.0;
    let reason = format!(
        "POAS {poas:.2} over the last {} days, below {}: its orders left {cm} {cur} of \
         contribution margin for {spend} {cur} of spend",
        r.days, r.threshold
    );
    let values = [
        ("poas", poas),
        ("contribution_margin", cm),
        ("spend", spend),
        ("threshold", r.threshold),
        ("days", f64::from(r.days)),
    ];
    Some(Proposal::new(
        "poas_below",
        c,
        ActionKind::Pause,
        reason,
        values,
    ))
}

#[cfg(test)]
pub(crate) fn test_view(
    key: CampaignKey,
    name: String,
    days: Vec<(chrono::NaiveDate, Totals)>,
) -> CampaignView {
    CampaignView {
        today: days.last().map(|d| d.1).unwrap_or_default(),
        days,
        ..CampaignView::empty(key, name)
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use crate::actions::config::{CpaAbove, RoasAbove};
    use chrono::NaiveDate;
    use rust_decimal_macros::dec;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn view(id: &str, days: Vec<(&str, Totals)>) -> CampaignView {
        let key = CampaignKey {
            platform: "meta".into(),
            account: "act_1".into(),
            campaign_id: id.into(),
        };
        let days = days.into_iter().map(|(d, t)| (day(d), t)).collect();
        test_view(key, format!("Campaign {id}"), days)
    }

    /// The snapshot of 2026-11-23 of a table of (campaign, day, totals) rows: one campaign per
    /// id, in the order they first appear, its days in the order given.
    fn snap(rows: &[(&str, &str, Totals)]) -> Snapshot {
        let mut campaigns: Vec<(&str, Vec<(&str, Totals)>)> = Vec::new();
        for &(id, d, t) in rows {
            match campaigns.iter_mut().find(|c| c.0 == id) {
                Some(c) => c.1.push((d, t)),
                None => campaigns.push((id, vec![(d, t)])),
            }
        }
        let mut s = Snapshot::empty("INR");
        s.day = day("2026-11-23");
        s.campaigns = campaigns.into_iter().map(|(id, d)| view(id, d)).collect();
        s
    }

    /// A day's traffic: spend (whole rupees), impressions, clicks and conversions.
    fn traffic(spend: i64, impressions: u64, clicks: u64, conversions: f64) -> Totals {
        Totals {
            spend: spend.into(),
            impressions,
            clicks,
            conversions,
            ..Default::default()
        }
    }

    /// The campaign ids of the proposals of `kind`, in order.
    fn ids_of(p: &[Proposal], kind: ActionKind) -> Vec<&str> {
        p.iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.key.campaign_id.as_str())
            .collect()
    }

    /// A day's totals, in whole rupees: spend, conversions, conversion value, shop revenue.
    fn t(spend: i64, conv: f64, value: i64, revenue: i64) -> Totals {
        Totals {
            spend: spend.into(),
            conversion_value: value.into(),
            revenue: revenue.into(),
            impressions: 100_000,
            clicks: 2_000,
            conversions: conv,
        }
    }

    #[test]
    fn cpa_rule_counts_spend_without_conversions_as_above() {
        let cfg = ActionsConfig::default();
        let s = snap(&[
            // 6,000 spent over the 7-day window with no conversion: pause
            ("a", "2026-11-22", t(3000, 0.0, 0, 0)),
            ("a", "2026-11-23", t(3000, 0.0, 0, 0)),
            // 4,000 spent with no conversion: not (yet) above 5,000
            ("b", "2026-11-23", t(4000, 0.0, 0, 0)),
            // CPA 3,000: fine
            ("c", "2026-11-23", t(6000, 2.0, 9000, 9000)),
            // spent long ago (outside the 7-day window): ignored
            ("d", "2026-11-10", t(9000, 0.0, 0, 0)),
            ("d", "2026-11-23", t(100, 0.0, 0, 0)),
        ]);
        let p = evaluate(&s, &cfg);
        assert_eq!(ids_of(&p, ActionKind::Pause), ["a"]);
        assert_eq!(p[0].values["spend"], 6000.0);
        assert!(p[0].reason.contains("no conversion"), "{}", p[0].reason);
    }

    #[test]
    fn roas_needs_every_one_of_the_last_days_and_pause_supersedes() {
        let cfg = ActionsConfig::default();
        let good = t(1000, 1.0, 3500, 3500);
        let weak = t(1000, 1.0, 2900, 2900);
        let s = snap(&[
            ("up", "2026-11-20", good),
            ("up", "2026-11-21", good),
            ("up", "2026-11-22", good),
            ("up", "2026-11-23", weak),
            ("gap", "2026-11-20", good),
            ("gap", "2026-11-22", good),
            ("dip", "2026-11-20", good),
            ("dip", "2026-11-21", weak),
            ("dip", "2026-11-22", good),
        ]);
        assert_eq!(ids_of(&evaluate(&s, &cfg), ActionKind::RaiseBudget), ["up"]);
        // a campaign over its cap is paused and gets nothing else
        let mut cfg = cfg;
        cfg.caps.campaign_daily = Some(dec!(500));
        let p = evaluate(&s, &cfg);
        let up: Vec<&Proposal> = p.iter().filter(|p| p.key.campaign_id == "up").collect();
        assert_eq!(up.len(), 1);
        assert_eq!(
            (up[0].rule.as_str(), up[0].kind),
            (BUDGET_CAP, ActionKind::Pause)
        );
    }

    #[test]
    fn ctr_and_cr_rules_need_evidence() {
        let cfg = ActionsConfig::default();
        let s = snap(&[
            // CTR 0.5% on 10,000 impressions
            ("low", "2026-11-23", traffic(100, 10_000, 50, 2.0)),
            // too few impressions and clicks to judge either rate
            ("thin", "2026-11-23", traffic(100, 1_000, 5, 0.0)),
            // CR 2.5% on 200 clicks
            ("conv", "2026-11-23", traffic(100, 10_000, 200, 5.0)),
        ]);
        let kinds: Vec<(String, ActionKind)> = evaluate(&s, &cfg)
            .into_iter()
            .map(|p| (p.key.campaign_id, p.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("low".to_string(), ActionKind::RotateCreatives),
                ("conv".to_string(), ActionKind::ExpandAudience)
            ]
        );
    }

    #[test]
    fn ctr_below_judges_each_ad_and_names_the_ones_below() {
        let cfg = ActionsConfig {
            rules: vec![RuleConfig::CtrBelow(Default::default())],
            ..ActionsConfig::default()
        };
        let imp = |impressions: u64, clicks: u64| traffic(10, impressions, clicks, 0.0);
        // the ads of a table of (ad id, ad name, day, totals) rows, in the order they appear
        let ads = |rows: &[(&str, &str, &str, Totals)]| {
            let mut out: Vec<AdView> = Vec::new();
            for &(id, name, d, t) in rows {
                if out.last().is_none_or(|a| a.ad.ad_id != id) {
                    out.push(AdView {
                        ad: crate::records::AdRef {
                            adset_id: "s1".into(),
                            adset_name: "Set 1".into(),
                            ad_id: id.into(),
                            ad_name: name.into(),
                        },
                        days: vec![],
                    });
                }
                out.last_mut().expect("pushed").days.push((day(d), t));
            }
            out
        };
        // the default rule: CTR below 1% over the 3 days up to 2026-11-23, 5,000 impressions
        let earrings = ("a2", "Earrings video", "2026-11-23", imp(10_000, 250));
        let some = ads(&[
            // (20 + 40) / (4,000 + 6,000) = 0.60%; its 5% day of 11-20 is outside the window
            ("a1", "Necklace carousel", "2026-11-20", imp(100_000, 5_000)),
            ("a1", "Necklace carousel", "2026-11-22", imp(4_000, 20)),
            ("a1", "Necklace carousel", "2026-11-23", imp(6_000, 40)),
            // 250 / 10,000 = 2.50%: fine
            earrings,
            // (20 + 25) / (2,500 + 2,500) = 0.90%
            ("a3", "", "2026-11-22", imp(2_500, 20)),
            ("a3", "", "2026-11-23", imp(2_500, 25)),
            // 0 / 3,000: too few impressions to judge
            ("a4", "Bridal set", "2026-11-23", imp(3_000, 0)),
        ]);
        // the campaign as a whole: 355 clicks / 28,000 impressions = 1.27%, above the threshold
        let mut s = snap(&[
            ("c1", "2026-11-20", imp(100_000, 5_000)),
            ("c1", "2026-11-22", imp(6_500, 40)),
            ("c1", "2026-11-23", imp(21_500, 315)),
        ]);
        let key = s.campaigns[0].key.clone();
        assert!(
            evaluate(&s, &cfg).is_empty(),
            "no ad data: judged as a campaign"
        );
        s.ads.insert(key.clone(), some);
        let p = evaluate(&s, &cfg);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].kind, ActionKind::RotateCreatives);
        assert_eq!(
            p[0].reason,
            "CTR below 1.00% over 3 days on 2 of 3 ads: \"Necklace carousel\" (a1) 0.60%, ad a3 0.90%: rotate their creatives"
        );
        assert_eq!(p[0].values["ctr:a1"], 0.006);
        assert_eq!(p[0].values["ctr:a3"], 0.009);
        assert_eq!(p[0].values["impressions:a1"], 10_000.0);
        assert_eq!(
            (p[0].values["ads_below"], p[0].values["ads_judged"]),
            (2.0, 3.0)
        );
        assert!(!p[0].values.contains_key("ctr:a2") && !p[0].values.contains_key("ctr:a4"));
        // every judged ad above the threshold: nothing to rotate
        s.ads.insert(key, ads(&[earrings]));
        assert!(evaluate(&s, &cfg).is_empty());
    }

    #[test]
    fn account_cap_pauses_every_spending_campaign_of_the_account() {
        let mut cfg = ActionsConfig::default();
        cfg.rules = vec![RuleConfig::CpaAbove(CpaAbove::default())];
        cfg.caps.accounts.insert("act_1".into(), dec!(1500));
        let s = snap(&[
            ("a", "2026-11-23", t(1000, 1.0, 0, 0)),
            ("b", "2026-11-23", t(1000, 1.0, 0, 0)),
            ("idle", "2026-11-23", t(0, 0.0, 0, 0)),
        ]);
        let p = evaluate(&s, &cfg);
        assert_eq!(p.len(), 2);
        assert!(
            p.iter()
                .all(|p| p.rule == BUDGET_CAP && p.kind == ActionKind::Pause)
        );
        assert_eq!(p[0].values["account_spend_today"], 2000.0);
    }

    #[test]
    fn reallocation_moves_losers_to_winners_within_caps_with_its_profit_effect() {
        let mut cfg = ActionsConfig::default();
        cfg.rules = vec![RuleConfig::RoasAbove(RoasAbove::default())];
        cfg.reallocation.window_days = 1;
        cfg.caps.campaigns.insert("win".into(), dec!(1100));
        let s = snap(&[
            // loses 900 a day on 1,000 of spend (return 0.1); today does not count
            ("lose", "2026-11-22", t(1000, 0.0, 0, 100)),
            ("lose", "2026-11-23", t(50, 0.0, 0, 0)),
            // returns 2 per unit: +25% would be 250, the cap leaves 100
            ("win", "2026-11-22", t(1000, 1.0, 0, 2000)),
        ]);
        let r = reallocate(&s, &cfg);
        assert_eq!(r.moves.len(), 1);
        assert_eq!(r.moves[0].amount, dec!(100));
        assert_eq!(r.freed_per_day, dec!(1000));
        assert_eq!(r.unspent_per_day, dec!(900));
        // +900 from not losing, +100 from the winner's extra 100
        assert_eq!(r.expected_daily_profit_change, dec!(1000));
    }

    #[test]
    fn budget_raise_respects_every_cap_and_needs_one() {
        let key = CampaignKey {
            platform: "meta".into(),
            account: "act_1".into(),
            campaign_id: "c".into(),
        };
        let mut caps = CapsConfig::default();
        assert_eq!(
            raise_budget(&key, Some(dec!(1000)), dec!(0.25), dec!(0), &caps, None),
            Err(BudgetRefusal::NoCap)
        );
        caps.campaign_daily = Some(dec!(1100));
        assert_eq!(
            raise_budget(&key, Some(dec!(1000)), dec!(0.25), dec!(0), &caps, None),
            Ok(dec!(1100))
        );
        caps.campaign_daily = Some(dec!(5000));
        assert_eq!(
            raise_budget(&key, Some(dec!(1000)), dec!(0.25), dec!(0), &caps, None),
            Ok(dec!(1250))
        );
        let auto = AutoConfig {
            max_budget_increase_ratio: dec!(0.1),
            ..AutoConfig::default()
        };
        assert_eq!(
            raise_budget(
                &key,
                Some(dec!(1000)),
                dec!(0.25),
                dec!(0),
                &caps,
                Some(&auto)
            ),
            Ok(dec!(1100))
        );
        caps.accounts.insert("act_1".into(), dec!(3000));
        assert_eq!(
            raise_budget(&key, Some(dec!(1000)), dec!(0.25), dec!(1900), &caps, None),
            Ok(dec!(1100))
        );
        assert_eq!(
            raise_budget(&key, Some(dec!(1000)), dec!(0.25), dec!(2000), &caps, None),
            Err(BudgetRefusal::AtCap(dec!(1000)))
        );
        assert_eq!(
            raise_budget(&key, None, dec!(0.25), dec!(0), &caps, None),
            Err(BudgetRefusal::NoBudget)
        );
    }
}
