//! The `/metrics` writer as it was before the render pass of issue 15 (the two strings per
//! campaign, `write!` for every value), kept only as the tests' reference: the current writer
//! must write the same bytes (`sinks::metrics::tests::the_writer_writes_what_the_previous_one_wrote`).
#![cfg(test)]
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::Write as _;

use super::{
    CAMPAIGN_ROLLING, SCOPE_FAMILIES, TOTAL_ROLLING, fold_campaigns, rolling_name, scope_names,
    scope_values,
};
use crate::base::push_label_value;
use crate::kpi::{stage_ratio, to_f64};
use crate::models::live::ModelOutputs;
use crate::records::CampaignKey;
use crate::state::{CampaignView, Snapshot};
use rust_decimal::Decimal;

/// The sample value as the previous writer wrote it: `{}` of the integer, or of the f64.
fn push_value(out: &mut String, value: f64) {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = writeln!(out, "{}", value as i64);
        if value == 0.0 && value.is_sign_negative() {
            out.truncate(out.len() - 2);
            out.push_str("-0\n");
        }
    } else {
        let _ = writeln!(out, "{value}");
    }
}

struct CampaignLabels {
    /// `account="…",campaign="…",campaign_id="…",`
    head: String,
    /// `platform="…"`
    platform: String,
}

impl CampaignLabels {
    fn new(key: &CampaignKey, name: &str) -> Self {
        let mut head = String::with_capacity(96);
        for (k, v) in [
            ("account", key.account.as_str()),
            ("campaign", name),
            ("campaign_id", key.campaign_id.as_str()),
        ] {
            head.push_str(k);
            head.push_str("=\"");
            push_label_value(&mut head, v);
            head.push_str("\",");
        }
        let mut platform = String::with_capacity(32);
        platform.push_str("platform=\"");
        push_label_value(&mut platform, &key.platform);
        platform.push('"');
        Self { head, platform }
    }
}

/// `currency="…",` (escaped), the label between `campaign_id` and `platform` in name order.
fn currency_part(cur: &str) -> String {
    let mut p = String::from("currency=\"");
    push_label_value(&mut p, cur);
    p.push_str("\",");
    p
}

/// A gauge family under construction, written straight as Prometheus text (building protobuf
/// messages and encoding them took 340 ms for 10,000 campaigns; see docs/benchmarks.md).
struct Family {
    name: String,
    help: &'static str,
    body: String,
}

impl Family {
    fn new(name: impl Into<String>, help: &'static str) -> Self {
        Self {
            name: name.into(),
            help,
            body: String::new(),
        }
    }

    fn push(&mut self, labels: &[(&'static str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        // label names sorted, as the text encoder of the `prometheus` crate wrote them
        let mut ls: [(&str, &str); 8] = [("", ""); 8];
        let n = labels.len().min(8);
        ls[..n].copy_from_slice(&labels[..n]);
        ls[..n].sort_unstable_by_key(|p| p.0);
        self.body.push_str(&self.name);
        for (i, (k, v)) in ls[..n].iter().enumerate() {
            self.body.push(if i == 0 { '{' } else { ',' });
            self.body.push_str(k);
            self.body.push_str("=\"");
            push_label_value(&mut self.body, v);
            self.body.push('"');
        }
        if n > 0 {
            self.body.push('}');
        }
        self.body.push(' ');
        push_value(&mut self.body, value);
    }

    /// [`write_parts`] into this family (the tests compare it with [`Family::push`]).
    #[cfg(test)]
    fn push_parts(&mut self, parts: &[&str], value: f64) {
        write_parts(&mut self.body, &self.name, parts, value);
    }

    fn opt(&mut self, labels: &[(&'static str, &str)], value: Option<f64>) {
        if let Some(v) = value {
            self.push(labels, v);
        }
    }

    /// Append the family to `out`; a family without samples is left out.
    fn write(self, out: &mut String) {
        if self.body.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        out.push_str(&self.body);
    }
}

/// A sample whose label pairs are already escaped and in name order (`parts` joined make the
/// text between the braces): a campaign's labels are written once per snapshot, not once per
/// family. A non-finite value writes nothing.
fn write_parts(out: &mut String, name: &str, parts: &[&str], value: f64) {
    if !value.is_finite() {
        return;
    }
    out.push_str(name);
    out.push('{');
    for p in parts {
        out.push_str(p);
    }
    out.push_str("} ");
    push_value(out, value);
}

/// A gauge family written straight into the body: its header first, then its samples, taken
/// back if it gets none. The per-campaign families use it so that the body is the only copy of
/// their text (a [`Family`] buffer per family doubled the 40 MiB body at 10,000 campaigns
/// while rendering, and copied it once more).
struct Direct<'a> {
    out: &'a mut String,
    name: &'a str,
    /// Where the header starts, and where the samples start.
    start: usize,
    samples: usize,
}

impl<'a> Direct<'a> {
    fn begin(out: &'a mut String, name: &'a str, help: &str) -> Self {
        let start = out.len();
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let samples = out.len();
        Self {
            out,
            name,
            start,
            samples,
        }
    }

    fn push_parts(&mut self, parts: &[&str], value: f64) {
        write_parts(self.out, self.name, parts, value);
    }

    fn opt_parts(&mut self, parts: &[&str], value: Option<f64>) {
        if let Some(v) = value {
            self.push_parts(parts, v);
        }
    }
}

impl Drop for Direct<'_> {
    /// A family without samples is left out, as [`Family::write`] does.
    fn drop(&mut self) {
        if self.out.len() == self.samples {
            self.out.truncate(self.start);
        }
    }
}

/// Write every KPI family of a snapshot as Prometheus text. With `top_n`, only the top N
/// campaigns by 7-day spend get their own label sets (see [`MetricsConfig`]).
pub(super) fn render_kpis(s: &Snapshot, top_n: Option<usize>, text: &mut String) {
    let names = scope_names();
    let cur = s.currency.as_str();
    let folded = top_n.map(|n| fold_campaigns(&s.campaigns, n));
    let shown: &[CampaignView] = folded.as_deref().unwrap_or(&s.campaigns);
    let labels: Vec<CampaignLabels> = shown
        .iter()
        .map(|c| CampaignLabels::new(&c.key, &c.name))
        .collect();
    let currency = currency_part(cur);
    // the campaign scope straight into the body, family by family; each campaign's values are
    // computed once (13 options, 208 bytes a campaign) rather than once per family
    let values: Vec<[(bool, Option<f64>); 13]> = shown
        .iter()
        .map(|c| scope_values(&c.today, c.loss_rate_per_hour, s.margin))
        .collect();
    for (i, (n, (_, help))) in names[0].iter().zip(SCOPE_FAMILIES).enumerate() {
        let mut f = Direct::begin(text, n, help);
        for (v, l) in values.iter().zip(&labels) {
            let (is_money, v) = v[i];
            if is_money {
                f.opt_parts(&[l.head.as_str(), &currency, &l.platform], v);
            } else {
                f.opt_parts(&[l.head.as_str(), &l.platform], v);
            }
        }
    }
    drop(values);
    for (scope_idx, scope_names) in names.iter().enumerate().skip(1) {
        let mut fams: Vec<Family> = scope_names
            .iter()
            .zip(SCOPE_FAMILIES)
            .map(|(n, (_, help))| Family::new(n.as_str(), help))
            .collect();
        if scope_idx == 1 {
            for (p, v) in &s.platforms {
                let base = [("platform", p.as_str())];
                let money = [base[0], ("currency", cur)];
                for (f, (is_money, val)) in
                    fams.iter_mut()
                        .zip(scope_values(&v.today, v.loss_rate_per_hour, s.margin))
                {
                    f.opt(if is_money { &money } else { &base }, val);
                }
            }
        } else {
            let money = [("currency", cur)];
            for (f, (is_money, val)) in fams.iter_mut().zip(scope_values(
                &s.total.today,
                s.total.loss_rate_per_hour,
                s.margin,
            )) {
                f.opt(if is_money { &money } else { &[] }, val);
            }
        }
        for f in fams {
            f.write(text);
        }
    }
    rolling_families(s, shown, &labels, text);

    type Pick = fn(&CampaignView) -> Option<f64>;
    let windowed: [(&str, &str, bool, Pick); 5] = [
        (
            "adpulse_campaign_clicks_last_hours",
            "Clicks over the trailing tracking window",
            false,
            |c| Some(c.window_clicks as f64),
        ),
        (
            "adpulse_campaign_conversions_last_hours",
            "Platform conversions over the trailing tracking window",
            false,
            |c| Some(c.window_conversions),
        ),
        (
            "adpulse_campaign_orders_last_hours",
            "Shop orders attributed by UTM over the trailing tracking window",
            false,
            |c| Some(c.window_orders as f64),
        ),
        (
            "adpulse_campaign_spend_last_hour",
            "Spend in the last complete hour",
            true,
            |c| Some(to_f64(c.spend_last_hour)),
        ),
        (
            "adpulse_campaign_spend_hourly_baseline",
            "Median spend of the same hour over the previous 7 days",
            true,
            |c| c.spend_baseline.map(to_f64),
        ),
    ];
    for (name, help, is_money, pick) in windowed {
        let mut f = Direct::begin(text, name, help);
        for (c, l) in shown.iter().zip(&labels) {
            if is_money {
                f.opt_parts(&[l.head.as_str(), &currency, &l.platform], pick(c));
            } else {
                f.opt_parts(&[l.head.as_str(), &l.platform], pick(c));
            }
        }
    }
    // campaign states count every campaign, folded or not
    let mut states = [0u64; 3];
    for c in &s.campaigns {
        if c.today.spend.is_zero() {
            states[2] += 1;
        } else if c.today.profit(s.margin) >= Decimal::ZERO {
            states[0] += 1;
        } else {
            states[1] += 1;
        }
    }
    let mut camps = Family::new("adpulse_campaigns", "Campaigns by today's profit");
    for (i, st) in ["profitable", "unprofitable", "no_spend"]
        .iter()
        .enumerate()
    {
        camps.push(&[("state", st)], states[i] as f64);
    }
    let mut orders = Family::new("adpulse_total_orders_today", "Shop orders today");
    orders.push(&[], s.total.orders as f64);
    let mut refunds = Family::new(
        "adpulse_total_refunds_today",
        "Refunded amount today (positive)",
    );
    refunds.push(&[("currency", cur)], to_f64(s.total.refunds));
    let mut target = Family::new("adpulse_roi_target", "ROI target in force today");
    target.opt(&[], s.roi_target);

    let mut events = Family::new(
        "adpulse_funnel_events_today",
        "Funnel events today per stage",
    );
    let mut ratio = Family::new(
        "adpulse_funnel_stage_conversion_ratio",
        "Stage count / previous stage count, today",
    );
    let mut bottleneck = Family::new(
        "adpulse_funnel_bottleneck",
        "1 on the stage with the lowest stage conversion today",
    );
    let mut worst: Option<(usize, f64)> = None;
    let ratios: Vec<Option<f64>> = s
        .funnel
        .iter()
        .enumerate()
        .map(|(i, (_, n))| {
            if i == 0 {
                None
            } else {
                stage_ratio(*n, s.funnel[i - 1].1)
            }
        })
        .collect();
    for (i, r) in ratios.iter().enumerate() {
        if let Some(r) = r
            && worst.is_none_or(|(_, w)| *r < w)
        {
            worst = Some((i, *r));
        }
    }
    for (i, (stage, n)) in s.funnel.iter().enumerate() {
        events.push(&[("stage", stage)], *n as f64);
        ratio.opt(&[("stage", stage)], ratios[i]);
        if i > 0 && worst.is_some() {
            bottleneck.push(
                &[("stage", stage)],
                if worst.map(|w| w.0) == Some(i) {
                    1.0
                } else {
                    0.0
                },
            );
        }
    }
    let mut at = Family::new(
        "adpulse_snapshot_timestamp_seconds",
        "Collector clock of the KPIs shown (the simulated clock in the demo)",
    );
    at.push(&[], s.at.timestamp_millis() as f64 / 1000.0);
    for f in [
        camps, orders, refunds, target, events, ratio, bottleneck, at,
    ] {
        f.write(text);
    }
    // the profit families fold the same campaigns as the KPI families
    let keep: Option<HashSet<CampaignKey>> = folded
        .as_ref()
        .map(|f| f.iter().map(|c| c.key.clone()).collect());
    crate::profit::live::render_kept(&s.profit, cur, keep.as_ref(), text);
}

fn rolling_families(
    s: &Snapshot,
    shown: &[CampaignView],
    labels: &[CampaignLabels],
    text: &mut String,
) {
    let cur = s.currency.as_str();
    let m = s.margin;
    let mut total: Vec<Family> = TOTAL_ROLLING
        .iter()
        .map(|(n, help, _)| Family::new(rolling_name("total", n), help))
        .collect();
    for r in &s.total.rolling {
        let t = &r.totals;
        let vals = [
            Some(to_f64(t.spend)),
            Some(to_f64(t.revenue)),
            Some(to_f64(t.profit(m))),
            Some(to_f64(t.conversion_value)),
            Some(t.conversions),
            Some(t.clicks as f64),
            Some(t.impressions as f64),
            Some(r.orders as f64),
            t.roi(m),
            t.roas(),
            t.cpa().map(to_f64),
            t.cr(),
            Some(to_f64(crate::kpi::loss(t, m))),
        ];
        let w = r.window.label;
        for ((f, (_, _, money)), v) in total.iter_mut().zip(TOTAL_ROLLING).zip(vals) {
            if *money {
                f.opt(&[("window", w), ("currency", cur)], v);
            } else {
                f.opt(&[("window", w)], v);
            }
        }
    }
    for f in total {
        f.write(text);
    }
    let currency = currency_part(cur);
    // `,window="24h"` once per window, not once per sample
    let windows: Vec<(&str, String)> = crate::kpi::TOTAL_WINDOWS
        .iter()
        .map(|w| (w.label, format!(",window=\"{}\"", w.label)))
        .collect();
    // family by family straight into the body; each sample's value is computed once, by the
    // family that shows it
    for (i, (n, help, money)) in CAMPAIGN_ROLLING.iter().enumerate() {
        let name = rolling_name("campaign", n);
        let mut f = Direct::begin(text, &name, help);
        for (c, l) in shown.iter().zip(labels) {
            for r in &c.rolling {
                let t = &r.totals;
                let w = r.window.label;
                let wp: std::borrow::Cow<'_, str> =
                    windows.iter().find(|(k, _)| *k == w).map_or_else(
                        || format!(",window=\"{w}\"").into(),
                        |(_, p)| std::borrow::Cow::Borrowed(p.as_str()),
                    );
                let v = match i {
                    0 => to_f64(t.spend),
                    1 => to_f64(t.revenue),
                    2 => to_f64(t.profit(m)),
                    3 => t.conversions,
                    4 => t.clicks as f64,
                    _ => r.orders as f64,
                };
                if *money {
                    f.push_parts(&[&l.head, &currency, &l.platform, &wp], v);
                } else {
                    f.push_parts(&[&l.head, &l.platform, &wp], v);
                }
            }
        }
    }
}

/// Write the models' outputs (forecasts "for now" with bands, anomaly bands and scores). With
/// `keep`, per-campaign series only for those campaigns (the cardinality control).
pub(super) fn render_models(
    m: &ModelOutputs,
    keep: Option<&HashSet<CampaignKey>>,
    text: &mut String,
) {
    let kept = |k: &CampaignKey| keep.is_none_or(|s| s.contains(k));
    let cur = m.currency.as_str();
    let mut out = Vec::new();
    for fc in &m.forecasts {
        let mut fam = Family::new(
            format!("adpulse_forecast_{}", fc.target),
            "Forecast for the current slot, with 80% (yhat_lower/yhat_upper) and 95% bands",
        );
        for (band, v) in [
            ("yhat", fc.yhat),
            ("yhat_lower", fc.lower_80),
            ("yhat_upper", fc.upper_80),
            ("yhat_lower_95", fc.lower_95),
            ("yhat_upper_95", fc.upper_95),
        ] {
            if fc.money {
                fam.push(&[("ml_forecast", band), ("currency", cur)], v);
            } else {
                fam.push(&[("ml_forecast", band)], v);
            }
        }
        out.push(fam);
    }
    for f in out {
        f.write(text);
    }
    // the per-series families straight into the body, family by family (the outputs are
    // sorted by campaign, so a campaign's labels are escaped once per family, not per series)
    type APick = fn(&crate::models::live::AnomalyNow) -> f64;
    let anomaly: [(&str, &str, APick); 6] = [
        (
            "adpulse_anomaly_level",
            "Observed value of the last complete hour",
            |a| a.level,
        ),
        (
            "adpulse_anomaly_expected",
            "Value the detector expected",
            |a| a.expected,
        ),
        (
            "adpulse_anomaly_upper_band",
            "Upper edge of the expected band",
            |a| a.upper,
        ),
        (
            "adpulse_anomaly_lower_band",
            "Lower edge of the expected band",
            |a| a.lower,
        ),
        (
            "adpulse_anomaly_score",
            "Anomaly score, 0..1 (0.5 at the band edge)",
            |a| a.score,
        ),
        (
            "adpulse_anomaly_flag",
            "1 when the last complete hour left the band",
            |a| if a.is_anomaly { 1.0 } else { 0.0 },
        ),
    ];
    let mut series = String::new();
    for (name, help, pick) in anomaly {
        let mut f = Direct::begin(text, name, help);
        let mut last: Option<(&CampaignKey, &str, CampaignLabels)> = None;
        for a in m.anomalies.iter().filter(|a| kept(m.campaign_of(a).0)) {
            let (key, name) = m.campaign_of(a);
            if !last
                .as_ref()
                .is_some_and(|(k, n, _)| *k == key && *n == name)
            {
                last = Some((key, name, CampaignLabels::new(key, name)));
            }
            let Some((_, _, c)) = &last else { continue };
            series.clear();
            series.push_str(",series=\"");
            push_label_value(&mut series, a.series);
            series.push('"');
            f.push_parts(&[c.head.as_str(), &c.platform, &series], pick(a));
        }
    }
    let tracking: Vec<(&crate::models::live::TrackingNow, CampaignLabels)> = m
        .tracking
        .iter()
        .filter(|t| kept(&t.key))
        .map(|t| (t, CampaignLabels::new(&t.key, &t.campaign)))
        .collect();
    type TPick = fn(&crate::models::live::TrackingNow) -> f64;
    let per_campaign: [(&str, &str, TPick); 2] = [
        (
            "adpulse_tracking_break",
            "1 when clicks continue while conversions fell to zero (model detector)",
            |t| if t.broken { 1.0 } else { 0.0 },
        ),
        (
            "adpulse_tracking_break_score",
            "1 - probability of the zero-conversion run if tracking worked",
            |t| t.score,
        ),
    ];
    for (name, help, pick) in per_campaign {
        let mut f = Direct::begin(text, name, help);
        for (t, c) in &tracking {
            f.push_parts(&[c.head.as_str(), &c.platform], pick(t));
        }
    }
    {
        let mut f = Direct::begin(
            text,
            "adpulse_tracking_break_reason",
            "1, labelled with why the tracking-break detector flags the campaign (zero_conversions, unmatched_shop_orders); absent when not flagged",
        );
        for (t, c) in tracking.iter().filter(|(t, _)| t.broken) {
            let mut reason = String::from(",reason=\"");
            push_label_value(&mut reason, t.reason);
            reason.push('"');
            f.push_parts(&[&c.head, &c.platform, &reason], 1.0);
        }
    }
    {
        let mut f = Direct::begin(
            text,
            "adpulse_tracking_break_unmatched_orders",
            "Shop orders attributed to the campaign during its current run without platform conversions",
        );
        for (t, c) in &tracking {
            f.push_parts(&[c.head.as_str(), &c.platform], t.unmatched_orders);
        }
    }
    let mut refit = Family::new(
        "adpulse_models_last_refit_timestamp_seconds",
        "Collector clock of the last forecast refit",
    );
    if let Some(t) = m.last_refit {
        refit.push(&[], t.timestamp_millis() as f64 / 1000.0);
    }
    refit.write(text);
}
