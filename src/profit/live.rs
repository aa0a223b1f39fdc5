//! The profit KPIs live: the order lines the collector has seen (upserted by the `order_lines`
//! table's key, so a line re-read with its refund replaces the old one), rolled up per reporting
//! day and last-click campaign, set against the campaigns' spend, and written to `/metrics`.
//!
//! Every figure comes from [`ProfitTotals`] (`kpi.rs`): the same definitions as the SQL of
//! `docs/schema.md` (query 9) and the Profit dashboards, so the three agree. Windows are reporting
//! days: `today`, and `7d` (the last 7 days, today included).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use super::ProfitConfig;
use super::kpi::{ProfitTotals, blended_cac};
use crate::base::{push_label_value, push_sample_value};
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

/// The order lines of the kept history, by `(order_id, line_id)`, and their sums per reporting
/// day and per (day, last-click campaign), kept as lines arrive, are replaced and are pruned
/// (a snapshot reads the sums; it never regroups the lines).
#[derive(Debug, Clone, Default)]
pub struct ProfitLedger {
    cfg: ProfitConfig,
    lines: HashMap<(String, String), LineLite>,
    /// Every line of a day, tagged or not.
    days: BTreeMap<NaiveDate, DayGroup>,
    /// Lines with `utm_campaign` set, by campaign id then day.
    campaigns: HashMap<String, BTreeMap<NaiveDate, Group>>,
    /// Lines without a known unit cost, per SKU.
    missing_cost: BTreeMap<String, u64>,
}

/// Sums of one (day, campaign) group, with its orders counted once (each order id with the
/// number of the group's lines it has, so that a line can leave the group again).
#[derive(Debug, Clone, Default, PartialEq)]
struct Group {
    lines: u64,
    net_sales: Decimal,
    returns: Decimal,
    cogs: Decimal,
    orders: BTreeMap<String, u32>,
    new_orders: BTreeMap<String, u32>,
    new_customer_sales: Decimal,
}

/// One reporting day: all its lines, and the new orders of its campaign groups summed over the
/// groups (an order tagged with two campaigns counts in both, as the groups count it).
#[derive(Debug, Clone, Default, PartialEq)]
struct DayGroup {
    all: Group,
    paid_new: u64,
}

/// Count `id` once more (`up`) or once less in a multiset of order ids.
fn count(m: &mut BTreeMap<String, u32>, id: &str, up: bool) {
    if up {
        *m.entry(id.to_string()).or_default() += 1;
    } else if let Some(n) = m.get_mut(id) {
        *n -= 1;
        if *n == 0 {
            m.remove(id);
        }
    }
}

impl Group {
    /// Add the line (`up`) or take it back out; decimal sums are exact, so a line taken out
    /// leaves the sums as they were before it came.
    fn apply(&mut self, l: &LineLite, up: bool) {
        let sales = l.net_sales + l.shipping_charged;
        // units returned go back to stock; a missing cost adds nothing (reported per SKU)
        let cogs = l.unit_cost.map(|c| {
            let kept = i64::from(l.quantity) - i64::from(l.refunded_quantity);
            c * Decimal::from(kept.max(0))
        });
        if up {
            self.lines += 1;
            self.net_sales += sales;
            self.returns += l.refunded_amount;
            if let Some(c) = cogs {
                self.cogs += c;
            }
            if l.new_customer {
                self.new_customer_sales += sales;
            }
        } else {
            self.lines -= 1;
            self.net_sales -= sales;
            self.returns -= l.refunded_amount;
            if let Some(c) = cogs {
                self.cogs -= c;
            }
            if l.new_customer {
                self.new_customer_sales -= sales;
            }
        }
        count(&mut self.orders, &l.order_id, up);
        if l.new_customer {
            count(&mut self.new_orders, &l.order_id, up);
        }
    }

    fn totals(&self, cfg: &ProfitConfig, ad_spend: Decimal) -> ProfitTotals {
        sums_totals(
            cfg,
            ad_spend,
            [
                self.net_sales,
                self.returns,
                self.cogs,
                self.new_customer_sales,
            ],
            self.orders.len() as u64,
            self.new_orders.len() as u64,
        )
    }
}

/// Totals from sums (`net_sales`, `returns`, `cogs`, `new_customer_sales`) and order counts.
fn sums_totals(
    cfg: &ProfitConfig,
    ad_spend: Decimal,
    [net_sales, returns, cogs, new_customer_sales]: [Decimal; 4],
    orders: u64,
    new_customers: u64,
) -> ProfitTotals {
    ProfitTotals {
        net_sales,
        returns,
        cogs,
        shipping_cost: cfg.shipping_cost_per_order * Decimal::from(orders),
        payment_fees: cfg.payment_fees.on(net_sales, orders),
        ad_spend,
        orders,
        new_customers,
        new_customer_sales,
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
    /// [`Self::window`] for each of [`PROFIT_WINDOWS`] as of the view's day, summed once per
    /// snapshot (the render reads them; it sums nothing).
    pub windows: [ProfitTotals; PROFIT_WINDOWS.len()],
}

impl CampaignProfit {
    /// Sum over the last `days` reporting days up to `today` (included).
    pub fn window(&self, today: NaiveDate, days: u32) -> ProfitTotals {
        window_of(&self.days, today, days)
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
            ..Self::default()
        }
    }

    /// Add a line to the sums (`up`) or take it out of them.
    fn account(&mut self, l: &LineLite, up: bool) {
        let day = self.days.entry(l.day).or_default();
        day.all.apply(l, up);
        if let Some(camp) = &l.utm_campaign {
            let per_day = self.campaigns.entry(camp.clone()).or_default();
            let g = per_day.entry(l.day).or_default();
            let before = g.new_orders.len() as u64;
            g.apply(l, up);
            let after = g.new_orders.len() as u64;
            day.paid_new = day.paid_new + after - before;
            if g.lines == 0 {
                per_day.remove(&l.day);
                if per_day.is_empty() {
                    self.campaigns.remove(camp);
                }
            }
        }
        if day.all.lines == 0 {
            self.days.remove(&l.day);
        }
        if l.unit_cost.is_none() {
            if up {
                *self.missing_cost.entry(l.sku.clone()).or_default() += 1;
            } else if let Some(n) = self.missing_cost.get_mut(&l.sku) {
                *n -= 1;
                if *n == 0 {
                    self.missing_cost.remove(&l.sku);
                }
            }
        }
    }

    /// Upsert one line (a re-read line, e.g. with its refund, replaces the old one).
    pub fn ingest(&mut self, l: &OrderLine) {
        let lite = LineLite {
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
        };
        self.account(&lite, true);
        if let Some(old) = self
            .lines
            .insert((l.order_id.clone(), l.line_id.clone()), lite)
        {
            self.account(&old, false);
        }
    }

    /// Forget lines of days before `oldest` (the kept history).
    pub fn prune(&mut self, oldest: NaiveDate) {
        if self
            .days
            .first_key_value()
            .is_none_or(|(d, _)| *d >= oldest)
        {
            return;
        }
        let mut gone = Vec::new();
        self.lines.retain(|_, l| {
            let keep = l.day >= oldest;
            if !keep {
                gone.push(l.clone());
            }
            keep
        });
        for l in &gone {
            self.account(l, false);
        }
    }

    /// The view as of reporting day `today`, with the campaigns' daily spend (each campaign's
    /// key and its per-day totals, as the store's campaign views hold them).
    pub fn view(&self, today: NaiveDate, campaigns: &[CampaignDays<'_>]) -> ProfitView {
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
                let mut sums = [Decimal::ZERO; 4];
                let mut orders: HashSet<&str> = HashSet::new();
                let mut new_orders: HashSet<&str> = HashSet::new();
                let mut paid_new = 0u64;
                for (_, g) in self.days.range(from..=today) {
                    let a = &g.all;
                    for (s, v) in
                        sums.iter_mut()
                            .zip([a.net_sales, a.returns, a.cogs, a.new_customer_sales])
                    {
                        *s += v;
                    }
                    orders.extend(a.orders.keys().map(String::as_str));
                    new_orders.extend(a.new_orders.keys().map(String::as_str));
                    paid_new += g.paid_new;
                }
                let spend: Decimal = spend_by_day.range(from..=today).map(|(_, s)| *s).sum();
                WindowProfit {
                    label,
                    days,
                    totals: sums_totals(
                        &self.cfg,
                        spend,
                        sums,
                        orders.len() as u64,
                        new_orders.len() as u64,
                    ),
                    paid_new_customers: paid_new,
                }
            })
            .collect();
        let empty = BTreeMap::new();
        let campaigns = campaigns
            .iter()
            .map(|(key, days)| {
                let groups = self
                    .campaigns
                    .get(key.campaign_id.as_str())
                    .unwrap_or(&empty);
                let days: Vec<(NaiveDate, ProfitTotals)> = days
                    .iter()
                    .map(|(d, t)| {
                        let totals = match groups.get(d) {
                            Some(g) => g.totals(&self.cfg, t.spend),
                            None => ProfitTotals {
                                ad_spend: t.spend,
                                ..ProfitTotals::default()
                            },
                        };
                        (*d, totals)
                    })
                    .collect();
                let windows = PROFIT_WINDOWS.map(|(_, n)| window_of(&days, today, n));
                CampaignProfit {
                    key: (*key).clone(),
                    days,
                    windows,
                }
            })
            .collect();
        ProfitView {
            today: Some(today),
            windows,
            campaigns,
            missing_cost: self.missing_cost.clone(),
        }
    }
}

/// Sum of `days` over the last `n` reporting days up to `today` (included).
fn window_of(days: &[(NaiveDate, ProfitTotals)], today: NaiveDate, n: u32) -> ProfitTotals {
    let from = today - chrono::Duration::days(i64::from(n.max(1)) - 1);
    let mut t = ProfitTotals::default();
    for (d, day) in days {
        if *d >= from && *d <= today {
            t += *day;
        }
    }
    t
}

/// Prometheus text of one gauge family (skipped when it has no sample).
fn family(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let samples: Vec<&(String, f64)> = samples.iter().filter(|(_, v)| v.is_finite()).collect();
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in samples {
        out.push_str(name);
        out.push('{');
        out.push_str(labels);
        out.push_str("} ");
        push_sample_value(out, *v);
    }
}

fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    push_label_value(&mut s, v);
    s
}

/// Write the profit families (see docs/metrics.md, "Profit"). A KPI with a zero denominator is
/// not written (missing, never 0).
pub fn render(v: &ProfitView, currency: &str, out: &mut String) {
    render_kept(v, currency, None, out);
}

/// [`render`] under the cardinality control (`[metrics] campaign_series_top_n`): with `keep`,
/// only those campaigns get their own label sets; the others are summed per platform as
/// `account="other",campaign_id="other"` (margins and spends add up; POAS and CAC are
/// recomputed from the sums), as the KPI families fold them.
pub fn render_kept<O: crate::base::TextOut>(
    v: &ProfitView,
    currency: &str,
    keep: Option<&HashSet<CampaignKey>>,
    sink: &mut O,
) {
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
        family(sink.text(), name, help, &samples);
        sink.boundary();
    }
    if v.today.is_none() {
        return;
    }
    // each campaign's labels, escaped once: `account="…",campaign_id="…",platform="…"`
    let mut rows: Vec<(String, [ProfitTotals; PROFIT_WINDOWS.len()])> = Vec::new();
    let mut other: BTreeMap<&str, [ProfitTotals; PROFIT_WINDOWS.len()]> = BTreeMap::new();
    let labels = |account: &str, id: &str, platform: &str| {
        let mut l = String::with_capacity(64);
        for (k, v) in [
            ("account", account),
            ("campaign_id", id),
            ("platform", platform),
        ] {
            if !l.is_empty() {
                l.push(',');
            }
            l.push_str(k);
            l.push_str("=\"");
            push_label_value(&mut l, v);
            l.push('"');
        }
        l
    };
    for c in &v.campaigns {
        if keep.is_none_or(|k| k.contains(&c.key)) {
            rows.push((
                labels(&c.key.account, &c.key.campaign_id, &c.key.platform),
                c.windows,
            ));
        } else {
            let o = other.entry(c.key.platform.as_str()).or_default();
            for (a, b) in o.iter_mut().zip(&c.windows) {
                *a += *b;
            }
        }
    }
    for (platform, w) in other {
        rows.push((labels("other", "other", platform), w));
    }
    let windows: Vec<(String, String)> = PROFIT_WINDOWS
        .iter()
        .map(|(label, _)| {
            (
                format!(",window=\"{label}\"}} "),
                format!(",currency=\"{cur}\",window=\"{label}\"}} "),
            )
        })
        .collect();
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
        let start = sink.text().len();
        let _ = writeln!(sink.text(), "# HELP {name} {help}\n# TYPE {name} gauge");
        // past its first sample the family's header stays, and the body may be flushed
        let mut wrote = false;
        for (l, ws) in &rows {
            let out = sink.text();
            for (t, (plain, with_cur)) in ws.iter().zip(&windows) {
                let Some(x) = pick(t).filter(|x| x.is_finite()) else {
                    continue;
                };
                out.push_str(name);
                out.push('{');
                out.push_str(l);
                out.push_str(if money { with_cur } else { plain });
                push_sample_value(out, x);
                wrote = true;
            }
            if wrote {
                sink.boundary();
            }
        }
        if !wrote {
            sink.text().truncate(start);
        }
        sink.boundary();
    }
    let missing: Vec<(String, f64)> = v
        .missing_cost
        .iter()
        .map(|(sku, n)| (format!("sku=\"{}\"", esc(sku)), *n as f64))
        .collect();
    family(
        sink.text(),
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
    use std::collections::BTreeSet;

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
        let key = CampaignKey {
            platform: "meta".into(),
            account: "act_1".into(),
            campaign_id: id.into(),
        };
        let days = days
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
            .collect();
        crate::actions::rules::test_view(key, id.into(), days)
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

    /// The view of the sums kept line by line equals one regrouped from the kept lines (the
    /// previous per-snapshot computation, written again here), after upserts that move a line
    /// to another day, campaign or customer kind, refunds, missing costs and prunes.
    mod drift {
        use super::*;
        use proptest::prelude::*;

        /// Regroup every kept line per (day, campaign), as the ledger did on every snapshot.
        fn recompute(
            l: &ProfitLedger,
            today: NaiveDate,
            campaigns: &[CampaignDays<'_>],
        ) -> ProfitView {
            #[derive(Default)]
            struct G {
                net_sales: Decimal,
                returns: Decimal,
                cogs: Decimal,
                orders: BTreeSet<String>,
                new_orders: BTreeSet<String>,
                new_customer_sales: Decimal,
            }
            let cfg = &l.cfg;
            let totals = |g: &G, spend: Decimal| {
                let orders = g.orders.len() as u64;
                ProfitTotals {
                    net_sales: g.net_sales,
                    returns: g.returns,
                    cogs: g.cogs,
                    shipping_cost: cfg.shipping_cost_per_order * Decimal::from(orders),
                    payment_fees: cfg.payment_fees.on(g.net_sales, orders),
                    ad_spend: spend,
                    orders,
                    new_customers: g.new_orders.len() as u64,
                    new_customer_sales: g.new_customer_sales,
                }
            };
            let mut groups: BTreeMap<(NaiveDate, Option<&str>), G> = BTreeMap::new();
            let mut missing_cost: BTreeMap<String, u64> = BTreeMap::new();
            for x in l.lines.values() {
                let g = groups
                    .entry((x.day, x.utm_campaign.as_deref()))
                    .or_default();
                let sales = x.net_sales + x.shipping_charged;
                g.net_sales += sales;
                g.returns += x.refunded_amount;
                if let Some(c) = x.unit_cost {
                    let kept = i64::from(x.quantity) - i64::from(x.refunded_quantity);
                    g.cogs += c * Decimal::from(kept.max(0));
                } else {
                    *missing_cost.entry(x.sku.clone()).or_default() += 1;
                }
                g.orders.insert(x.order_id.clone());
                if x.new_customer {
                    g.new_orders.insert(x.order_id.clone());
                    g.new_customer_sales += sales;
                }
            }
            let windows = PROFIT_WINDOWS
                .iter()
                .map(|&(label, days)| {
                    let from = today - chrono::Duration::days(i64::from(days) - 1);
                    let mut all = G::default();
                    let mut paid_new = 0u64;
                    for ((d, camp), g) in &groups {
                        if *d < from || *d > today {
                            continue;
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
                    let spend: Decimal = campaigns
                        .iter()
                        .flat_map(|(_, days)| days.iter())
                        .filter(|(d, _)| *d >= from && *d <= today)
                        .map(|(_, t)| t.spend)
                        .sum();
                    WindowProfit {
                        label,
                        days,
                        totals: totals(&all, spend),
                        paid_new_customers: paid_new,
                    }
                })
                .collect();
            let empty = G::default();
            let campaigns = campaigns
                .iter()
                .map(|(key, days)| {
                    let days: Vec<(NaiveDate, ProfitTotals)> = days
                        .iter()
                        .map(|(d, t)| {
                            let g = groups
                                .get(&(*d, Some(key.campaign_id.as_str())))
                                .unwrap_or(&empty);
                            (*d, totals(g, t.spend))
                        })
                        .collect();
                    let windows = PROFIT_WINDOWS.map(|(_, n)| {
                        let from = today - chrono::Duration::days(i64::from(n) - 1);
                        let mut t = ProfitTotals::default();
                        for (_, day) in days.iter().filter(|(d, _)| *d >= from && *d <= today) {
                            t += *day;
                        }
                        t
                    });
                    CampaignProfit {
                        key: (*key).clone(),
                        days,
                        windows,
                    }
                })
                .collect();
            ProfitView {
                today: Some(today),
                windows,
                campaigns,
                missing_cost,
            }
        }

        /// One line upserted: (order, line, day, campaign or organic, new customer, quantity,
        /// refunded units, net sales in paise, unit cost in paise or missing).
        type LineOp = (u8, u8, u8, u8, bool, u32, u32, i64, Option<i64>);

        /// Upserts, and prunes before a day (`Err`).
        fn ops() -> impl Strategy<Value = Vec<Result<LineOp, u8>>> {
            prop::collection::vec(
                prop_oneof![
                    9 => (0u8..8, 0u8..3, 0u8..10, 0u8..4, any::<bool>(), 1u32..4, 0u32..3,
                          0i64..500_000, prop::option::of(0i64..100_000)).prop_map(Ok),
                    1 => (0u8..10).prop_map(Err),
                ],
                1..80,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn kept_sums_equal_a_regrouping_of_the_kept_lines(ops in ops()) {
                let base = d("2026-11-10");
                let today = base + chrono::Duration::days(9);
                let cfg = ProfitConfig {
                    shipping_cost_per_order: dec!(45),
                    payment_fees: crate::profit::kpi::PaymentFees {
                        percent_of_revenue: dec!(0.02),
                        fixed_per_order: dec!(3),
                    },
                };
                let camps: Vec<CampaignView> = (0..3)
                    .map(|c| {
                        let days: Vec<(String, Decimal)> = (0..10)
                            .map(|k| {
                                ((base + chrono::Duration::days(k)).to_string(),
                                 Decimal::new(100_000 + 1_337 * k + 7 * c, 2))
                            })
                            .collect();
                        let r: Vec<(&str, Decimal)> =
                            days.iter().map(|(d, s)| (d.as_str(), *s)).collect();
                        campaign(&format!("c{c}"), &r)
                    })
                    .collect();
                let mut l = ProfitLedger::new(cfg);
                for op in ops {
                    match op {
                        Ok((o, n, day, camp, new, qty, refunded, paise, cost)) => {
                            let mut x = line(
                                &format!("o{o}"),
                                &n.to_string(),
                                &(base + chrono::Duration::days(i64::from(day))).to_string(),
                                (camp < 3).then(|| format!("c{camp}")).as_deref(),
                                new,
                            );
                            x.sku = format!("S{}", o % 3);
                            x.quantity = qty;
                            x.refunded_quantity = refunded.min(qty);
                            // refunds are in paise, as the shop reports them
                            x.refunded_amount = Decimal::new(
                                paise * i64::from(x.refunded_quantity) / i64::from(qty),
                                2,
                            );
                            x.net_sales = Decimal::new(paise, 2);
                            x.shipping_charged = Decimal::new(paise % 977, 2);
                            match cost {
                                Some(c) => x.unit_cost = Some(Decimal::new(c, 2)),
                                None => {
                                    x.unit_cost = None;
                                    x.cost_source = CostSource::Missing;
                                }
                            }
                            l.ingest(&x);
                        }
                        Err(day) => l.prune(base + chrono::Duration::days(i64::from(day))),
                    }
                    let days = days_of(&camps);
                    prop_assert_eq!(l.view(today, &days), recompute(&l, today, &days));
                }
            }
        }
    }
}
