//! `/metrics` KPI families, rendered from the latest [`Snapshot`]. The snapshot is swapped
//! atomically (no lock on the scrape path) and every family is rebuilt from it on each scrape, so a
//! campaign that disappears leaves no stale label set behind. A missing KPI (zero denominator) is
//! simply not emitted.

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use rust_decimal::Decimal;
use std::sync::Arc;

use crate::kpi::{Totals, stage_ratio, to_f64};
use crate::records::CampaignKey;
use crate::state::Snapshot;

/// A gauge family under construction.
struct Family {
    name: String,
    help: &'static str,
    metrics: Vec<Metric>,
}

impl Family {
    fn new(name: impl Into<String>, help: &'static str) -> Self {
        Self {
            name: name.into(),
            help,
            metrics: Vec::new(),
        }
    }

    fn push(&mut self, labels: &[(&'static str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        let mut m = Metric::default();
        let mut pairs: Vec<LabelPair> = labels
            .iter()
            .map(|(k, v)| {
                let mut lp = LabelPair::default();
                lp.set_name((*k).to_string());
                lp.set_value((*v).to_string());
                lp
            })
            .collect();
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        m.set_label(pairs);
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
        self.metrics.push(m);
    }

    fn opt(&mut self, labels: &[(&'static str, &str)], value: Option<f64>) {
        if let Some(v) = value {
            self.push(labels, v);
        }
    }

    fn finish(self) -> MetricFamily {
        let mut mf = MetricFamily::default();
        mf.set_name(self.name);
        mf.set_help(self.help.to_string());
        mf.set_field_type(MetricType::GAUGE);
        mf.set_metric(self.metrics);
        mf
    }
}

/// The families emitted for one scope (campaign, platform or total), in one fixed order.
const SCOPE_FAMILIES: &[(&str, &str)] = &[
    ("spend_today", "Spend today, reporting currency"),
    (
        "conversion_value_today",
        "Platform-attributed conversion value today",
    ),
    (
        "revenue_today",
        "Shop revenue today (campaign: attributed by UTM)",
    ),
    ("profit_today", "Revenue x margin - spend, today"),
    ("impressions_today", "Impressions today"),
    ("clicks_today", "Clicks today"),
    (
        "conversions_today",
        "Platform conversions (purchases) today",
    ),
    ("roas", "Conversion value / spend, today"),
    ("roi", "(Revenue x margin - spend) / spend, today"),
    ("cpa", "Spend / conversions, today"),
    ("ctr_ratio", "Clicks / impressions, today"),
    ("conversion_rate_ratio", "Conversions / clicks, today"),
    (
        "loss_rate_per_hour",
        "(Spend - revenue x margin) per hour over the trailing window",
    ),
];

fn scope_values(
    t: &Totals,
    loss_rate: Option<Decimal>,
    margin: crate::kpi::Margin,
) -> [(bool, Option<f64>); 13] {
    // (is money, value)
    [
        (true, Some(to_f64(t.spend))),
        (true, Some(to_f64(t.conversion_value))),
        (true, Some(to_f64(t.revenue))),
        (true, Some(to_f64(t.profit(margin)))),
        (false, Some(t.impressions as f64)),
        (false, Some(t.clicks as f64)),
        (false, Some(t.conversions)),
        (false, t.roas()),
        (false, t.roi(margin)),
        (true, t.cpa().map(to_f64)),
        (false, t.ctr()),
        (false, t.cr()),
        (true, loss_rate.map(to_f64)),
    ]
}

/// The KPI collector registered in the shared registry.
pub struct KpiCollector {
    snapshot: Arc<ArcSwap<Snapshot>>,
    descs: Vec<Desc>,
}

impl KpiCollector {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Self {
        let mut names = Vec::new();
        for scope in ["campaign", "platform", "total"] {
            for (n, _) in SCOPE_FAMILIES {
                names.push(format!("adpulse_{scope}_{n}"));
            }
        }
        for n in [
            "adpulse_campaign_clicks_last_hours",
            "adpulse_campaign_conversions_last_hours",
            "adpulse_campaign_orders_last_hours",
            "adpulse_campaign_spend_last_hour",
            "adpulse_campaign_spend_hourly_baseline",
            "adpulse_total_orders_today",
            "adpulse_total_refunds_today",
            "adpulse_roi_target",
            "adpulse_campaigns",
            "adpulse_funnel_events_today",
            "adpulse_funnel_stage_conversion_ratio",
            "adpulse_funnel_bottleneck",
            "adpulse_snapshot_timestamp_seconds",
        ] {
            names.push(n.to_string());
        }
        for (n, _, _) in TOTAL_ROLLING {
            names.push(rolling_name("total", n));
        }
        for (n, _, _) in CAMPAIGN_ROLLING {
            names.push(rolling_name("campaign", n));
        }
        let descs = names
            .iter()
            .filter_map(|n| {
                Desc::new(n.clone(), "adpulse KPI".into(), vec![], Default::default()).ok()
            })
            .collect();
        Self { snapshot, descs }
    }
}

/// The label set of one campaign.
fn campaign_labels<'a>(key: &'a CampaignKey, name: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("platform", key.platform.as_str()),
        ("account", key.account.as_str()),
        ("campaign_id", key.campaign_id.as_str()),
        ("campaign", name),
    ]
}

/// A campaign's label set for a money family (adds the currency).
fn with_currency<'a>(
    l: [(&'static str, &'a str); 4],
    cur: &'a str,
) -> [(&'static str, &'a str); 5] {
    [l[0], l[1], l[2], l[3], ("currency", cur)]
}

fn scope_names() -> Vec<Vec<String>> {
    ["campaign", "platform", "total"]
        .iter()
        .map(|scope| {
            SCOPE_FAMILIES
                .iter()
                .map(|(n, _)| format!("adpulse_{scope}_{n}"))
                .collect()
        })
        .collect()
}

/// Build every KPI family from a snapshot.
pub fn families(s: &Snapshot) -> Vec<MetricFamily> {
    let names = scope_names();
    let cur = s.currency.as_str();
    let mut out = Vec::new();
    for (scope_idx, scope_names) in names.iter().enumerate() {
        let mut fams: Vec<Family> = scope_names
            .iter()
            .zip(SCOPE_FAMILIES)
            .map(|(n, (_, help))| Family::new(n.as_str(), help))
            .collect();
        match scope_idx {
            0 => {
                for c in &s.campaigns {
                    let base = campaign_labels(&c.key, &c.name);
                    let money = with_currency(base, cur);
                    for (f, (is_money, v)) in
                        fams.iter_mut()
                            .zip(scope_values(&c.today, c.loss_rate_per_hour, s.margin))
                    {
                        f.opt(if is_money { &money } else { &base }, v);
                    }
                }
            }
            1 => {
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
            }
            _ => {
                let money = [("currency", cur)];
                for (f, (is_money, val)) in fams.iter_mut().zip(scope_values(
                    &s.total.today,
                    s.total.loss_rate_per_hour,
                    s.margin,
                )) {
                    f.opt(if is_money { &money } else { &[] }, val);
                }
            }
        }
        out.extend(fams.into_iter().map(Family::finish));
    }

    let mut clicks_w = Family::new(
        "adpulse_campaign_clicks_last_hours",
        "Clicks over the trailing tracking window",
    );
    let mut conv_w = Family::new(
        "adpulse_campaign_conversions_last_hours",
        "Platform conversions over the trailing tracking window",
    );
    let mut orders_w = Family::new(
        "adpulse_campaign_orders_last_hours",
        "Shop orders attributed by UTM over the trailing tracking window",
    );
    let mut spend_h = Family::new(
        "adpulse_campaign_spend_last_hour",
        "Spend in the last complete hour",
    );
    let mut baseline = Family::new(
        "adpulse_campaign_spend_hourly_baseline",
        "Median spend of the same hour over the previous 7 days",
    );
    let mut states = [0u64; 3];
    for c in &s.campaigns {
        let base = campaign_labels(&c.key, &c.name);
        let money = with_currency(base, cur);
        clicks_w.push(&base, c.window_clicks as f64);
        conv_w.push(&base, c.window_conversions);
        orders_w.push(&base, c.window_orders as f64);
        spend_h.push(&money, to_f64(c.spend_last_hour));
        baseline.opt(&money, c.spend_baseline.map(to_f64));
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
    out.extend(rolling_families(s).into_iter().map(Family::finish));
    let mut at = Family::new(
        "adpulse_snapshot_timestamp_seconds",
        "Collector clock of the KPIs shown (the simulated clock in the demo)",
    );
    at.push(&[], s.at.timestamp_millis() as f64 / 1000.0);
    for f in [
        clicks_w, conv_w, orders_w, spend_h, baseline, camps, orders, refunds, target, events,
        ratio, bottleneck, at,
    ] {
        out.push(f.finish());
    }
    out.retain(|f| !f.get_metric().is_empty());
    out
}

/// Whole-business rolling-window families: (name suffix, help, is money).
const TOTAL_ROLLING: &[(&str, &str, bool)] = &[
    ("spend", "Spend over the trailing window", true),
    (
        "revenue",
        "Shop revenue (net of refunds) over the trailing window",
        true,
    ),
    (
        "profit",
        "Revenue x margin - spend over the trailing window",
        true,
    ),
    (
        "conversion_value",
        "Platform-attributed conversion value over the trailing window",
        true,
    ),
    (
        "conversions",
        "Platform conversions over the trailing window",
        false,
    ),
    ("clicks", "Clicks over the trailing window", false),
    ("impressions", "Impressions over the trailing window", false),
    (
        "orders",
        "Shop orders (refunds not counted) over the trailing window",
        false,
    ),
    (
        "roi",
        "(Revenue x margin - spend) / spend over the trailing window",
        false,
    ),
    (
        "roas",
        "Conversion value / spend over the trailing window",
        false,
    ),
    ("cpa", "Spend / conversions over the trailing window", true),
    (
        "conversion_rate",
        "Conversions / clicks over the trailing window",
        false,
    ),
    (
        "loss",
        "Spend - revenue x margin over the trailing window (positive: losing money)",
        true,
    ),
];

/// Per-campaign rolling-window families (money ones carry the currency).
const CAMPAIGN_ROLLING: &[(&str, &str, bool)] = &[
    ("spend", "Spend over the trailing window", true),
    (
        "revenue",
        "Shop revenue attributed by UTM over the trailing window",
        true,
    ),
    (
        "profit",
        "Revenue x margin - spend over the trailing window",
        true,
    ),
    (
        "conversions",
        "Platform conversions over the trailing window",
        false,
    ),
    ("clicks", "Clicks over the trailing window", false),
    (
        "orders",
        "Shop orders attributed by UTM over the trailing window",
        false,
    ),
];

/// Name of a rolling family: `_ratio` stays the last suffix (Prometheus convention).
fn rolling_name(scope: &str, n: &str) -> String {
    if n == "conversion_rate" {
        format!("adpulse_{scope}_{n}_rolling_ratio")
    } else {
        format!("adpulse_{scope}_{n}_rolling")
    }
}

fn rolling_families(s: &Snapshot) -> Vec<Family> {
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
    let mut camp: Vec<Family> = CAMPAIGN_ROLLING
        .iter()
        .map(|(n, help, _)| Family::new(rolling_name("campaign", n), help))
        .collect();
    for c in &s.campaigns {
        let l = campaign_labels(&c.key, &c.name);
        for r in &c.rolling {
            let t = &r.totals;
            let w = r.window.label;
            let vals = [
                to_f64(t.spend),
                to_f64(t.revenue),
                to_f64(t.profit(m)),
                t.conversions,
                t.clicks as f64,
                r.orders as f64,
            ];
            for ((f, (_, _, money)), v) in camp.iter_mut().zip(CAMPAIGN_ROLLING).zip(vals) {
                if *money {
                    f.push(
                        &[l[0], l[1], l[2], l[3], ("window", w), ("currency", cur)],
                        v,
                    );
                } else {
                    f.push(&[l[0], l[1], l[2], l[3], ("window", w)], v);
                }
            }
        }
    }
    total.extend(camp);
    total
}

impl Collector for KpiCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&self.snapshot.load())
    }
}

/// Families of the models' outputs (forecasts "for now" with bands, anomaly bands and scores).
pub fn model_families(m: &crate::models::live::ModelOutputs) -> Vec<MetricFamily> {
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
    let mut level = Family::new(
        "adpulse_anomaly_level",
        "Observed value of the last complete hour",
    );
    let mut expected = Family::new("adpulse_anomaly_expected", "Value the detector expected");
    let mut upper = Family::new(
        "adpulse_anomaly_upper_band",
        "Upper edge of the expected band",
    );
    let mut lower = Family::new(
        "adpulse_anomaly_lower_band",
        "Lower edge of the expected band",
    );
    let mut score = Family::new(
        "adpulse_anomaly_score",
        "Anomaly score, 0..1 (0.5 at the band edge)",
    );
    let mut flag = Family::new(
        "adpulse_anomaly_flag",
        "1 when the last complete hour left the band",
    );
    for a in &m.anomalies {
        let c = campaign_labels(&a.key, &a.campaign);
        let l = [("series", a.series), c[0], c[1], c[2], c[3]];
        level.push(&l, a.level);
        expected.push(&l, a.expected);
        upper.push(&l, a.upper);
        lower.push(&l, a.lower);
        score.push(&l, a.score);
        flag.push(&l, if a.is_anomaly { 1.0 } else { 0.0 });
    }
    let mut tb = Family::new(
        "adpulse_tracking_break",
        "1 when clicks continue while conversions fell to zero (model detector)",
    );
    let mut tbs = Family::new(
        "adpulse_tracking_break_score",
        "1 - probability of the zero-conversion run if tracking worked",
    );
    for t in &m.tracking {
        let l = campaign_labels(&t.key, &t.campaign);
        tb.push(&l, if t.broken { 1.0 } else { 0.0 });
        tbs.push(&l, t.score);
    }
    let mut refit = Family::new(
        "adpulse_models_last_refit_timestamp_seconds",
        "Collector clock of the last forecast refit",
    );
    if let Some(t) = m.last_refit {
        refit.push(&[], t.timestamp_millis() as f64 / 1000.0);
    }
    out.extend([level, expected, upper, lower, score, flag, tb, tbs, refit]);
    let mut fams: Vec<MetricFamily> = out.into_iter().map(Family::finish).collect();
    fams.retain(|f| !f.get_metric().is_empty());
    fams
}

/// Collector for the models' outputs.
pub struct ModelCollector {
    outputs: Arc<ArcSwap<crate::models::live::ModelOutputs>>,
    descs: Vec<Desc>,
}

impl ModelCollector {
    pub fn new(outputs: Arc<ArcSwap<crate::models::live::ModelOutputs>>) -> Self {
        let descs = ["adpulse_anomaly_level", "adpulse_forecast_loss_today"]
            .iter()
            .filter_map(|n| {
                Desc::new(
                    n.to_string(),
                    "adpulse model output".into(),
                    vec![],
                    Default::default(),
                )
                .ok()
            })
            .collect();
        Self { outputs, descs }
    }
}

impl Collector for ModelCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        model_families(&self.outputs.load())
    }
}
