//! The profit KPIs live: the order lines the collector has seen (upserted by the `order_lines`
//! table's key, so a line re-read with its refund replaces the old one), rolled up per reporting
//! day and last-click campaign, set against the campaigns' spend, and written to `/metrics`.
//!
//! Every figure comes from [`ProfitTotals`] (`kpi.rs`): the same definitions as the SQL of
//! `docs/schema.md` (query 9) and the Profit dashboards, so the three agree. Windows are reporting
//! days: `today`, and `7d` (the last 7 days, today included).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use super::ProfitConfig;
use super::kpi::{ProfitTotals, blended_cac};
use crate::kpi::to_f64;
use crate::records::{CampaignKey, CostSource, OrderLine};

/// A campaign as the profit view reads it: its key and its totals per reporting day.
pub type CampaignDays<'a> = (&'a CampaignKey, &'a [(NaiveDate, crate::kpi::Totals)]);
/// The reporting-day windows of `/metrics` (label, days with today).
pub const PROFIT_WINDOWS: [(&str, u32); 2] = [("today", 1), ("7d", 7)];

/// What the roll-up keeps of a line.
#[derive(Debug, Clone, PartialEq)]
struct LineLite {
    day: NaiveDate,
    order_id: String,
    sku: String,
    utm_campaign: Option<String>,
    quantity: u32,
    net_sales: Decimal,
    shipping_charged: Decimal,
    unit_cost: Option<Decimal>,
    refunded_quantity: u32,
    refunded_amount: Decimal,
    new_customer: bool,
}

/// The order lines of the kept history, by `(order_id, line_id)`.
#[derive(Debug, Clone, Default)]
pub struct ProfitLedger {
    cfg: ProfitConfig,
    lines: HashMap<(String, String), LineLite>,
}

/// Sums of one (day, campaign) group, with its orders counted once.
#[derive(Debug, Clone, Default)]
struct Group {
    net_sales: Decimal,
    returns: Decimal,
    cogs: Decimal,
    orders: BTreeSet<String>,
    new_orders: BTreeSet<String>,
    new_customer_sales: Decimal,
}

impl Group {
    fn add(&mut self, l: &LineLite) {
        let sales = l.net_sales + l.shipping_charged;
        self.net_sales += sales;
        self.returns += l.refunded_amount;
        // units returned go back to stock; a missing cost adds nothing (reported per SKU)
        if let Some(c) = l.unit_cost {
            let kept = i64::from(l.quantity) - i64::from(l.refunded_quantity);
            self.cogs += c * Decimal::from(kept.max(0));
        }
        self.orders.insert(l.order_id.clone());
        if l.new_customer {
            self.new_orders.insert(l.order_id.clone());
            self.new_customer_sales += sales;
        }
    }

    fn totals(&self, cfg: &ProfitConfig, ad_spend: Decimal) -> ProfitTotals {
        let orders = self.orders.len() as u64;
        ProfitTotals {
            net_sales: self.net_sales,
            returns: self.returns,
            cogs: self.cogs,
            shipping_cost: cfg.shipping_cost_per_order * Decimal::from(orders),
            payment_fees: cfg.payment_fees.on(self.net_sales, orders),
            ad_spend,
            orders,
            new_customers: self.new_orders.len() as u64,
            new_customer_sales: self.new_customer_sales,
        }
    }
}

/// The shop's profit over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowProfit {
    pub label: &'static str,
    pub days: u32,
    /// All orders against all ad spend.
    pub totals: ProfitTotals,
    /// New customers whose order came through a tagged campaign (`utm_campaign` set, last click).
    pub paid_new_customers: u64,
}

impl WindowProfit {
    /// New-customer CAC = ad spend / new customers acquired by the campaigns.
    pub fn new_customer_cac(&self) -> Option<Decimal> {
        blended_cac(self.totals.ad_spend, self.paid_new_customers)
    }

    /// Blended CAC = ad spend / every new customer, paid or not.
    pub fn blended_cac(&self) -> Option<Decimal> {
        blended_cac(self.totals.ad_spend, self.totals.new_customers)
    }
}

/// One campaign's profit per reporting day (orders by last click, `utm_campaign` = campaign id).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignProfit {
    pub key: CampaignKey,
    pub days: Vec<(NaiveDate, ProfitTotals)>,
}

impl CampaignProfit {
    /// Sum over the last `days` reporting days up to `today` (included).
    pub fn window(&self, today: NaiveDate, days: u32) -> ProfitTotals {
        let from = today - chrono::Duration::days(i64::from(days.max(1)) - 1);
        let mut t = ProfitTotals::default();
        for (d, day) in &self.days {
            if *d >= from && *d <= today {
                t += *day;
            }
        }
        t
    }
}

/// Everything `/metrics` shows of profit, computed with the snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfitView {
    pub today: Option<NaiveDate>,
    pub windows: Vec<WindowProfit>,
    pub campaigns: Vec<CampaignProfit>,
    /// Lines without a known unit cost, per SKU (their COGS is left out, never guessed).
    pub missing_cost: BTreeMap<String, u64>,
}

impl ProfitLedger {
    pub fn new(cfg: ProfitConfig) -> Self {
        Self {
            cfg,
            lines: HashMap::new(),
        }
    }

    /// Upsert one line (a re-read line, e.g. with its refund, replaces the old one).
    pub fn ingest(&mut self, l: &OrderLine) {
        self.lines.insert(
            (l.order_id.clone(), l.line_id.clone()),
            LineLite {
                day: l.day,
                order_id: l.order_id.clone(),
                sku: l.sku.clone(),
                utm_campaign: l.utm_campaign.clone(),
                quantity: l.quantity,
                net_sales: l.net_sales,
                shipping_charged: l.shipping_charged,
                unit_cost: match l.cost_source {
                    CostSource::Missing => None,
                    _ => l.unit_cost,
                },
                refunded_quantity: l.refunded_quantity,
                refunded_amount: l.refunded_amount,
                new_customer: l.new_customer,
            },
        );
    }

    /// Forget lines of days before `oldest` (the kept history).
    pub fn prune(&mut self, oldest: NaiveDate) {
        self.lines.retain(|_, l| l.day >= oldest);
    }

    /// The view as of reporting day `today`, with the campaigns' daily spend (each campaign's
    /// key and its per-day totals, as the store's campaign views hold them).
    pub fn view(&self, today: NaiveDate, campaigns: &[CampaignDays<'_>]) -> ProfitView {
        let mut groups: BTreeMap<(NaiveDate, Option<&str>), Group> = BTreeMap::new();
        let mut missing_cost: BTreeMap<String, u64> = BTreeMap::new();
        for l in self.lines.values() {
            groups
                .entry((l.day, l.utm_campaign.as_deref()))
                .or_default()
                .add(l);
            if l.unit_cost.is_none() {
                *missing_cost.entry(l.sku.clone()).or_default() += 1;
            }
        }
        let mut spend_by_day: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
        for (_, days) in campaigns {
            for (d, t) in *days {
                *spend_by_day.entry(*d).or_default() += t.spend;
            }
        }
        let windows = PROFIT_WINDOWS
            .iter()
            .map(|&(label, days)| {
                let from = today - chrono::Duration::days(i64::from(days) - 1);
                let mut all = Group::default();
                let mut paid_new = 0u64;
                for ((d, camp), g) in groups.range((from, None)..) {
                    if *d > today {
                        break;
                    }
                    all.net_sales += g.net_sales;
                    all.returns += g.returns;
                    all.cogs += g.cogs;
                    all.orders.extend(g.orders.iter().cloned());
                    all.new_orders.extend(g.new_orders.iter().cloned());
                    all.new_customer_sales += g.new_customer_sales;
                    if camp.is_some() {
                        paid_new += g.new_orders.len() as u64;
                    }
                }
                let spend: Decimal = spend_by_day.range(from..=today).map(|(_, s)| *s).sum();
                WindowProfit {
                    label,
                    days,
                    totals: all.totals(&self.cfg, spend),
                    paid_new_customers: paid_new,
                }
            })
            .collect();
        let empty = Group::default();
        let campaigns = campaigns
            .iter()
            .map(|(key, days)| CampaignProfit {
                key: (*key).clone(),
                days: days
                    .iter()
                    .map(|(d, t)| {
                        let g = groups
                            .get(&(*d, Some(key.campaign_id.as_str())))
                            .unwrap_or(&empty);
                        (*d, g.totals(&self.cfg, t.spend))
                    })
                    .collect(),
            })
            .collect();
        ProfitView {
            today: Some(today),
            windows,
            campaigns,
            missing_cost,
        }
    }
}

/// Prometheus text of one gauge family (skipped when it has no sample).
fn family(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let samples: Vec<&(String, f64)> = samples.iter().filter(|(_, v)| v.is_finite()).collect();
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

/// Write the profit families (see docs/metrics.md, "Profit"). A KPI with a zero denominator is
/// not written (missing, never 0).
pub fn render(v: &ProfitView, currency: &str, out: &mut String) {
    let cur = esc(currency);
    type Pick = fn(&WindowProfit) -> Option<f64>;
    let shop: [(&str, &str, bool, Pick); 13] = [
        (
            "adpulse_profit_contribution_margin",
            "Net sales - COGS - shipping cost - payment fees - returns, reporting days",
            true,
            |w| Some(to_f64(w.totals.contribution_margin())),
        ),
        (
            "adpulse_profit_poas",
            "Contribution margin / ad spend (1 = the ads paid for themselves)",
            false,
            |w| w.totals.poas(),
        ),
        (
            "adpulse_profit_mer",
            "Net revenue / all ad spend",
            false,
            |w| w.totals.mer(),
        ),
        (
            "adpulse_profit_new_customer_roas",
            "Net sales of first orders / ad spend",
            false,
            |w| w.totals.new_customer_roas(),
        ),
        (
            "adpulse_profit_new_customer_cac",
            "Ad spend / new customers acquired by the campaigns (last click)",
            true,
            |w| w.new_customer_cac().map(to_f64),
        ),
        (
            "adpulse_profit_blended_cac",
            "Ad spend / every new customer, paid or organic",
            true,
            |w| w.blended_cac().map(to_f64),
        ),
        ("adpulse_profit_aov", "Net sales / orders", true, |w| {
            w.totals.aov().map(to_f64)
        }),
        (
            "adpulse_profit_net_sales",
            "Merchandise and shipping charged after discounts, before tax and refunds",
            true,
            |w| Some(to_f64(w.totals.net_sales)),
        ),
        (
            "adpulse_profit_returns",
            "Refunded merchandise of the window's orders",
            true,
            |w| Some(to_f64(w.totals.returns)),
        ),
        (
            "adpulse_profit_cogs",
            "Cost of the goods kept (lines with a known cost)",
            true,
            |w| Some(to_f64(w.totals.cogs)),
        ),
        (
            "adpulse_profit_ad_spend",
            "All ad spend of the window",
            true,
            |w| Some(to_f64(w.totals.ad_spend)),
        ),
        (
            "adpulse_profit_orders",
            "Orders with lines in the window",
            false,
            |w| Some(w.totals.orders as f64),
        ),
        (
            "adpulse_profit_new_customers",
            "First orders (customer order index 1)",
            false,
            |w| Some(w.totals.new_customers as f64),
        ),
    ];
    for (name, help, money, pick) in shop {
        let samples: Vec<(String, f64)> = v
            .windows
            .iter()
            .filter_map(|w| {
                let labels = if money {
                    format!("currency=\"{cur}\",window=\"{}\"", w.label)
                } else {
                    format!("window=\"{}\"", w.label)
                };
                pick(w).map(|x| (labels, x))
            })
            .collect();
        family(out, name, help, &samples);
    }
    let Some(today) = v.today else { return };
    type CampPick = fn(&ProfitTotals) -> Option<f64>;
    let per_campaign: [(&str, &str, bool, CampPick); 3] = [
        (
            "adpulse_campaign_contribution_margin",
            "Contribution margin of the campaign's last-click orders",
            true,
            |t| Some(to_f64(t.contribution_margin())),
        ),
        (
            "adpulse_campaign_poas",
            "Contribution margin of its last-click orders / the campaign's spend",
            false,
            |t| t.poas(),
        ),
        (
            "adpulse_campaign_new_customer_cac",
            "The campaign's spend / its last-click new customers",
            true,
            |t| t.cac().map(to_f64),
        ),
    ];
    for (name, help, money, pick) in per_campaign {
        let mut samples = Vec::new();
        for c in &v.campaigns {
            for (label, days) in PROFIT_WINDOWS {
                let t = c.window(today, days);
                let base = format!(
                    "account=\"{}\",campaign_id=\"{}\",platform=\"{}\"",
                    esc(&c.key.account),
                    esc(&c.key.campaign_id),
                    esc(&c.key.platform)
                );
                let labels = if money {
                    format!("{base},currency=\"{cur}\",window=\"{label}\"")
                } else {
                    format!("{base},window=\"{label}\"")
                };
                if let Some(x) = pick(&t) {
                    samples.push((labels, x));
                }
            }
        }
        family(out, name, help, &samples);
    }
    let missing: Vec<(String, f64)> = v
        .missing_cost
        .iter()
        .map(|(sku, n)| (format!("sku=\"{}\"", esc(sku)), *n as f64))
        .collect();
    family(
        out,
        "adpulse_profit_lines_missing_cost",
        "Order lines in the kept history with no unit cost (COGS left out), per SKU",
        &missing,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::Totals;
    use crate::state::CampaignView;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn line(order: &str, line: &str, day: &str, camp: Option<&str>, new: bool) -> OrderLine {
        OrderLine {
            ts: format!("{day}T10:00:00Z").parse().unwrap(),
            day: d(day),
            order_id: order.into(),
            line_id: line.into(),
            sku: "MOI-RG-001".into(),
            product: "Ring".into(),
            variant: "12".into(),
            product_type: "Rings".into(),
            quantity: 2,
            unit_price: dec!(1500),
            discount: dec!(100),
            net_sales: dec!(2900),
            tax: dec!(87),
            shipping_charged: dec!(100),
            unit_cost: Some(dec!(800)),
            cost_source: CostSource::InventoryItem,
            refunded_quantity: 0,
            refunded_amount: dec!(0),
            customer_id: Some("c1".into()),
            new_customer: new,
            city: None,
            province: None,
            country: None,
            utm_campaign: camp.map(str::to_string),
            currency: "INR".into(),
            source: "shop".into(),
        }
    }

    fn days_of(c: &[CampaignView]) -> Vec<CampaignDays<'_>> {
        c.iter().map(|c| (&c.key, c.days.as_slice())).collect()
    }

    fn campaign(id: &str, days: &[(&str, Decimal)]) -> CampaignView {
        CampaignView {
            key: CampaignKey {
                platform: "meta".into(),
                account: "act_1".into(),
                campaign_id: id.into(),
            },
            name: id.into(),
            today: Totals::default(),
            loss_rate_per_hour: None,
            window_clicks: 0,
            window_conversions: 0.0,
            window_orders: 0,
            spend_last_hour: Decimal::ZERO,
            spend_baseline: None,
            days: days
                .iter()
                .map(|(day, s)| {
                    (
                        d(day),
                        Totals {
                            spend: *s,
                            ..Totals::default()
                        },
                    )
                })
                .collect(),
            rolling: vec![],
        }
    }

    #[test]
    fn poas_rule_needs_seven_days_below_one() {
        use crate::actions::config::PoasBelow;
        let r = PoasBelow::default();
        let today = d("2026-11-21");
        let days: Vec<(String, Decimal)> = (1..=7)
            .map(|b| ((today - chrono::Duration::days(b)).to_string(), dec!(1000)))
            .collect();
        let days_ref: Vec<(&str, Decimal)> = days.iter().map(|(d, s)| (d.as_str(), *s)).collect();
        let camp = campaign("c1", &days_ref);
        // one order on the 18th: CM = 3,000 − 1,600 − 60 = 1,340 against 7,000 of spend
        let mut l = ProfitLedger::new(ProfitConfig::default());
        l.ingest(&line("o1", "1", "2026-11-18", Some("c1"), true));
        let v = l.view(today, &days_of(std::slice::from_ref(&camp)));
        let p =
            crate::actions::rules::poas_below(&r, &camp, &v, today, "INR").expect("POAS 0.19 < 1");
        assert!((p.values["poas"] - 1340.0 / 7000.0).abs() < 1e-12);
        assert_eq!(p.kind, crate::actions::rules::ActionKind::Pause);
        // enough margin: 6 such orders give 8,040 > 7,000
        for i in 2..=6 {
            l.ingest(&line(
                &format!("o{i}"),
                "1",
                "2026-11-19",
                Some("c1"),
                false,
            ));
        }
        let v = l.view(today, &days_of(std::slice::from_ref(&camp)));
        assert!(crate::actions::rules::poas_below(&r, &camp, &v, today, "INR").is_none());
        // six days of history only: no judgement
        let short = campaign("c1", &days_ref[..6]);
        let v = ProfitLedger::new(ProfitConfig::default())
            .view(today, &days_of(std::slice::from_ref(&short)));
        assert!(crate::actions::rules::poas_below(&r, &short, &v, today, "INR").is_none());
    }

    #[test]
    fn windows_by_hand_with_an_upserted_refund_and_a_missing_cost() {
        let mut l = ProfitLedger::new(ProfitConfig::default());
        l.ingest(&line("o1", "1", "2026-11-20", Some("c1"), true));
        // the same line re-read with one unit refunded (1,450) replaces the first
        let mut r = line("o1", "1", "2026-11-20", Some("c1"), true);
        r.refunded_quantity = 1;
        r.refunded_amount = dec!(1450);
        l.ingest(&r);
        // an organic repeat order whose cost is unknown
        let mut m = line("o2", "1", "2026-11-21", None, false);
        m.sku = "MOI-ER-009".into();
        m.unit_cost = None;
        m.cost_source = CostSource::Missing;
        l.ingest(&m);
        // outside the 7-day window
        l.ingest(&line("o0", "1", "2026-11-10", Some("c1"), true));
        let camps = [campaign(
            "c1",
            &[("2026-11-20", dec!(2000)), ("2026-11-21", dec!(1000))],
        )];
        let v = l.view(d("2026-11-21"), &days_of(&camps));
        let w7 = &v.windows[1];
        assert_eq!(w7.label, "7d");
        // net sales: 2 × (2,900 + 100) = 6,000; returns 1,450; COGS: o1 keeps 1 unit × 800 = 800,
        // o2 unknown; fees 2% of 6,000 = 120; CM = 6,000 − 800 − 0 − 120 − 1,450 = 3,630
        assert_eq!(w7.totals.net_sales, dec!(6000));
        assert_eq!(w7.totals.cogs, dec!(800));
        assert_eq!(w7.totals.contribution_margin(), dec!(3630));
        assert_eq!(w7.totals.ad_spend, dec!(3000));
        assert_eq!(w7.totals.poas(), Some(1.21));
        assert_eq!(w7.totals.orders, 2);
        assert_eq!(w7.paid_new_customers, 1);
        assert_eq!(w7.new_customer_cac(), Some(dec!(3000)));
        // today (the 21st): only o2, not new: no CAC, spend 1,000
        let w1 = &v.windows[0];
        assert_eq!(w1.totals.orders, 1);
        assert_eq!(w1.blended_cac(), None);
        assert_eq!(v.missing_cost.get("MOI-ER-009"), Some(&1));
        // the campaign: o1 on the 20th against its 2,000 spend
        let c = v.campaigns[0].window(d("2026-11-21"), 7);
        assert_eq!(
            c.contribution_margin(),
            dec!(3000) - dec!(800) - dec!(60) - dec!(1450)
        );
        let mut text = String::new();
        render(&v, "INR", &mut text);
        assert!(
            text.contains(
                "adpulse_profit_contribution_margin{currency=\"INR\",window=\"7d\"} 3630\n"
            ),
            "{text}"
        );
        assert!(text.contains("adpulse_profit_lines_missing_cost{sku=\"MOI-ER-009\"} 1\n"));
        assert!(!text.contains("adpulse_profit_blended_cac{currency=\"INR\",window=\"today\"}"));
    }
}
