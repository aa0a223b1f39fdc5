//! The profit KPIs live: the order lines the collector has seen (upserted by the `order_lines`
//! table's key, so a line re-read with its refund replaces the old one), rolled up per reporting
//! day and last-click campaign, set against the campaigns' spend, and written to `/metrics`.
//!
//! Every figure comes from [`ProfitTotals`] (`kpi.rs`): the same definitions as the SQL of
//! `docs/schema.md` (query 9) and the Profit dashboards, so the three agree. Windows are reporting
//! days: `today`, and `7d` (the last 7 days, today included).
//!
//! Memory (issue 15): order ids, campaign ids and the SKUs of lines without a cost are interned
//! to `u32` (each id counted by the lines referring to it and forgotten with the last one), a
//! line keeps its sums precomputed, a group counts its orders in a sorted `Vec` of ids, and the
//! view keeps, per campaign, only the days with last-click lines (their sums and counts; the
//! spend of a day is the campaign's own, [`ProfitView::campaign_day`]).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::ProfitConfig;
use super::kpi::{ProfitTotals, blended_cac};
use crate::base::{push_label_value, push_sample_value};
use crate::kpi::to_f64;
use crate::records::{CampaignKey, CostSource, OrderLine};

/// A campaign as the profit view reads it: its key and its totals per reporting day.
pub type CampaignDays<'a> = (&'a CampaignKey, &'a [(NaiveDate, crate::kpi::Totals)]);
/// The reporting-day windows of `/metrics` (label, days with today).
pub const PROFIT_WINDOWS: [(&str, u32); 2] = [("today", 1), ("7d", 7)];

/// No id: a line without a campaign, or whose unit cost is known (no SKU kept).
const NONE: u32 = u32::MAX;

/// Strings of one kind (order ids, campaign ids, SKUs of lines without a cost) as `u32` ids,
/// each counted by the lines referring to it and forgotten once none does (its id is reused), so
/// it holds the kept history's strings only.
#[derive(Debug, Clone, Default)]
struct Interner {
    ids: HashMap<Arc<str>, u32>,
    /// By id (`None`: free).
    names: Vec<Option<Arc<str>>>,
    /// Lines referring to each id.
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl Interner {
    /// The id of `s`, counted once more.
    fn acquire(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            self.refs[id as usize] += 1;
            return id;
        }
        let name: Arc<str> = Arc::from(s);
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = Some(name.clone());
                self.refs[id as usize] = 1;
                id
            }
            None => {
                let id = u32::try_from(self.names.len())
                    .ok()
                    .filter(|id| *id != NONE)
                    .expect("fewer than 2^32 - 1 names");
                self.names.push(Some(name.clone()));
                self.refs.push(1);
                id
            }
        };
        self.ids.insert(name, id);
        id
    }

    /// Count `id` once less, forgetting it at zero.
    fn release(&mut self, id: u32) {
        let r = &mut self.refs[id as usize];
        *r -= 1;
        if *r == 0 {
            if let Some(name) = self.names[id as usize].take() {
                self.ids.remove(&*name);
            }
            self.free.push(id);
        }
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// The names in use with the number of lines referring to each.
    fn counted(&self) -> impl Iterator<Item = (&str, u32)> {
        self.names
            .iter()
            .zip(&self.refs)
            .filter_map(|(n, r)| n.as_deref().map(|n| (n, *r)))
    }
}

/// What the roll-up keeps of a line: its sums, computed once, and interned ids.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LineLite {
    /// Net sales + shipping charged.
    sales: Decimal,
    refunded_amount: Decimal,
    /// Unit cost × units kept (units returned go back to stock); zero without a cost (`sku`).
    cogs: Decimal,
    day: NaiveDate,
    order: u32,
    /// `NONE` when untagged.
    campaign: u32,
    /// Set only when the unit cost is missing (the line then adds no COGS, reported per SKU).
    sku: u32,
    new_customer: bool,
}

/// The order lines of the kept history, by `(order_id, line_id)`, and their sums per reporting
/// day and per (day, last-click campaign), kept as lines arrive, are replaced and are pruned
/// (a snapshot reads the sums; it never regroups the lines).
#[derive(Debug, Clone, Default)]
pub struct ProfitLedger {
    cfg: ProfitConfig,
    /// By (interned order id, line id).
    lines: HashMap<(u32, Box<str>), LineLite>,
    /// Every line of a day, tagged or not.
    days: BTreeMap<NaiveDate, DayGroup>,
    /// Lines with `utm_campaign` set, by (interned campaign id, day).
    campaigns: HashMap<(u32, NaiveDate), Group>,
    orders: Interner,
    campaign_ids: Interner,
    /// SKUs of the lines without a known unit cost, each counted by its lines (the
    /// `missing_cost` of the view).
    missing_cost: Interner,
}

/// One order of a group: its id, the group's lines of it, and those of a new customer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderCount {
    id: u32,
    lines: u32,
    new: u32,
}

/// Sums of one (day, campaign) group, with its orders counted once (each order id with the
/// number of the group's lines it has, so that a line can leave the group again).
#[derive(Debug, Clone, Default, PartialEq)]
struct Group {
    net_sales: Decimal,
    returns: Decimal,
    cogs: Decimal,
    new_customer_sales: Decimal,
    /// Sorted by id; the group is empty (and dropped) when no order is left.
    orders: Vec<OrderCount>,
    /// Orders with a new customer's line (`new > 0`).
    new_orders: u32,
}

/// One reporting day: all its lines, and the new orders of its campaign groups summed over the
/// groups (an order tagged with two campaigns counts in both, as the groups count it).
#[derive(Debug, Clone, Default, PartialEq)]
struct DayGroup {
    all: Group,
    paid_new: u64,
}

impl Group {
    /// Add the line (`up`) or take it back out; decimal sums are exact, so a line taken out
    /// leaves the sums as they were before it came.
    fn apply(&mut self, l: &LineLite, up: bool) {
        let has_cost = l.sku == NONE;
        if up {
            self.net_sales += l.sales;
            self.returns += l.refunded_amount;
            if has_cost {
                self.cogs += l.cogs;
            }
            if l.new_customer {
                self.new_customer_sales += l.sales;
            }
        } else {
            self.net_sales -= l.sales;
            self.returns -= l.refunded_amount;
            if has_cost {
                self.cogs -= l.cogs;
            }
            if l.new_customer {
                self.new_customer_sales -= l.sales;
            }
        }
        let at = self.orders.binary_search_by_key(&l.order, |o| o.id);
        if up {
            let i = at.unwrap_or_else(|i| {
                // small groups (most campaign days) grow one order at a time, large ones by half
                if self.orders.len() == self.orders.capacity() {
                    self.orders.reserve_exact((self.orders.len() / 2).max(1));
                }
                let o = OrderCount {
                    id: l.order,
                    lines: 0,
                    new: 0,
                };
                self.orders.insert(i, o);
                i
            });
            let o = &mut self.orders[i];
            o.lines += 1;
            if l.new_customer {
                if o.new == 0 {
                    self.new_orders += 1;
                }
                o.new += 1;
            }
        } else if let Ok(i) = at {
            let o = &mut self.orders[i];
            o.lines -= 1;
            if l.new_customer && o.new > 0 {
                o.new -= 1;
                if o.new == 0 {
                    self.new_orders -= 1;
                }
            }
            if o.lines == 0 {
                self.orders.remove(i);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    fn sums(&self, day: NaiveDate) -> DaySums {
        DaySums {
            day,
            net_sales: self.net_sales,
            returns: self.returns,
            cogs: self.cogs,
            new_customer_sales: self.new_customer_sales,
            orders: u32::try_from(self.orders.len()).unwrap_or(u32::MAX),
            new_customers: self.new_orders,
        }
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

/// The sums of a campaign's last-click lines on one reporting day (the day's spend is the
/// campaign's: [`ProfitView::campaign_day`] makes the day's [`ProfitTotals`] of both).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DaySums {
    pub day: NaiveDate,
    pub net_sales: Decimal,
    pub returns: Decimal,
    pub cogs: Decimal,
    pub new_customer_sales: Decimal,
    pub orders: u32,
    pub new_customers: u32,
}

/// One campaign's profit (orders by last click, `utm_campaign` = campaign id).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignProfit {
    pub key: CampaignKey,
    /// The campaign's days (those the view was given) with last-click lines, in the given
    /// order; a day without lines has only its spend ([`ProfitView::campaign_day`]).
    pub days: Vec<DaySums>,
    /// [`ProfitView::campaign_window`] for each of [`PROFIT_WINDOWS`] as of the view's day,
    /// summed once per snapshot (the render reads them; it sums nothing).
    pub windows: [ProfitTotals; PROFIT_WINDOWS.len()],
}

/// Everything `/metrics` shows of profit, computed with the snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfitView {
    pub today: Option<NaiveDate>,
    pub windows: Vec<WindowProfit>,
    /// In the order of the campaigns the view was given (the snapshot's: sorted by key).
    pub campaigns: Vec<CampaignProfit>,
    /// Lines without a known unit cost, per SKU (their COGS is left out, never guessed).
    pub missing_cost: BTreeMap<String, u64>,
    /// The costs the view's totals were computed with.
    pub cfg: ProfitConfig,
}

impl ProfitView {
    /// The campaign `key`: a binary search when the campaigns are sorted by key (as the
    /// snapshot gives them), a scan otherwise.
    pub fn campaign(&self, key: &CampaignKey) -> Option<&CampaignProfit> {
        match self.campaigns.binary_search_by(|p| p.key.cmp(key)) {
            Ok(i) => Some(&self.campaigns[i]),
            Err(_) => self.campaigns.iter().find(|p| p.key == *key),
        }
    }

    /// The totals of campaign `p` on day `d` with that day's `spend` (a day of the campaign
    /// the view was given): its lines' sums and costs, or only the spend without lines.
    pub fn campaign_day(&self, p: &CampaignProfit, d: NaiveDate, spend: Decimal) -> ProfitTotals {
        match p.days.iter().find(|s| s.day == d) {
            Some(s) => day_totals(&self.cfg, s, spend),
            None => ProfitTotals {
                ad_spend: spend,
                ..ProfitTotals::default()
            },
        }
    }

    /// Sum of campaign `p` over its last `n` reporting days up to `today` (included), with its
    /// `days` (those the view was given).
    pub fn campaign_window(
        &self,
        p: &CampaignProfit,
        days: &[(NaiveDate, crate::kpi::Totals)],
        today: NaiveDate,
        n: u32,
    ) -> ProfitTotals {
        let from = window_from(today, n);
        let mut t = ProfitTotals::default();
        for (d, day) in days {
            if *d >= from && *d <= today {
                t += self.campaign_day(p, *d, day.spend);
            }
        }
        t
    }
}

fn day_totals(cfg: &ProfitConfig, s: &DaySums, spend: Decimal) -> ProfitTotals {
    sums_totals(
        cfg,
        spend,
        [s.net_sales, s.returns, s.cogs, s.new_customer_sales],
        u64::from(s.orders),
        u64::from(s.new_customers),
    )
}

/// The first day of the window of `n` reporting days up to `today`.
fn window_from(today: NaiveDate, n: u32) -> NaiveDate {
    today - chrono::Duration::days(i64::from(n.max(1)) - 1)
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
        if l.campaign != NONE {
            let g = self.campaigns.entry((l.campaign, l.day)).or_default();
            let before = u64::from(g.new_orders);
            g.apply(l, up);
            let after = u64::from(g.new_orders);
            day.paid_new = day.paid_new + after - before;
            if g.is_empty() {
                self.campaigns.remove(&(l.campaign, l.day));
            }
        }
        if day.all.is_empty() {
            self.days.remove(&l.day);
        }
    }

    /// Drop a line's references to its interned ids (after it left the sums).
    fn release(&mut self, l: &LineLite) {
        self.orders.release(l.order);
        if l.campaign != NONE {
            self.campaign_ids.release(l.campaign);
        }
        if l.sku != NONE {
            self.missing_cost.release(l.sku);
        }
    }

    /// Upsert one line (a re-read line, e.g. with its refund, replaces the old one).
    pub fn ingest(&mut self, l: &OrderLine) {
        let unit_cost = match l.cost_source {
            CostSource::Missing => None,
            _ => l.unit_cost,
        };
        let kept = i64::from(l.quantity) - i64::from(l.refunded_quantity);
        let order = self.orders.acquire(&l.order_id);
        let lite = LineLite {
            sales: l.net_sales + l.shipping_charged,
            refunded_amount: l.refunded_amount,
            cogs: unit_cost.map_or(Decimal::ZERO, |c| c * Decimal::from(kept.max(0))),
            day: l.day,
            order,
            campaign: l
                .utm_campaign
                .as_deref()
                .map_or(NONE, |c| self.campaign_ids.acquire(c)),
            sku: match unit_cost {
                None => self.missing_cost.acquire(&l.sku),
                Some(_) => NONE,
            },
            new_customer: l.new_customer,
        };
        self.account(&lite, true);
        if let Some(old) = self
            .lines
            .insert((order, Box::from(l.line_id.as_str())), lite)
        {
            self.account(&old, false);
            self.release(&old);
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
                gone.push(*l);
            }
            keep
        });
        for l in &gone {
            self.account(l, false);
            self.release(l);
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
                let mut orders: HashSet<u32> = HashSet::new();
                let mut new_orders: HashSet<u32> = HashSet::new();
                let mut paid_new = 0u64;
                for (_, g) in self.days.range(from..=today) {
                    let a = &g.all;
                    for (s, v) in
                        sums.iter_mut()
                            .zip([a.net_sales, a.returns, a.cogs, a.new_customer_sales])
                    {
                        *s += v;
                    }
                    orders.extend(a.orders.iter().map(|o| o.id));
                    new_orders.extend(a.orders.iter().filter(|o| o.new > 0).map(|o| o.id));
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
        let froms = PROFIT_WINDOWS.map(|(_, n)| window_from(today, n));
        let campaigns = campaigns
            .iter()
            .map(|(key, days)| {
                let id = self.campaign_ids.get(&key.campaign_id);
                let mut lined: Vec<DaySums> = Vec::new();
                let mut windows = [ProfitTotals::default(); PROFIT_WINDOWS.len()];
                for (d, t) in *days {
                    let totals = match id.and_then(|id| self.campaigns.get(&(id, *d))) {
                        Some(g) => {
                            let s = g.sums(*d);
                            lined.push(s);
                            day_totals(&self.cfg, &s, t.spend)
                        }
                        None => ProfitTotals {
                            ad_spend: t.spend,
                            ..ProfitTotals::default()
                        },
                    };
                    for (w, from) in windows.iter_mut().zip(froms) {
                        if *d >= from && *d <= today {
                            *w += totals;
                        }
                    }
                }
                lined.shrink_to_fit();
                CampaignProfit {
                    key: (*key).clone(),
                    days: lined,
                    windows,
                }
            })
            .collect();
        ProfitView {
            today: Some(today),
            windows,
            campaigns,
            missing_cost: self
                .missing_cost
                .counted()
                .map(|(sku, n)| (sku.to_string(), u64::from(n)))
                .collect(),
            cfg: self.cfg.clone(),
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
        let c = v.campaign_window(&v.campaigns[0], &camps[0].days, d("2026-11-21"), 7);
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

    /// The compact ledger's view equals, bit for bit (decimal values and scales), the view of
    /// the String-keyed roll-up it replaced (copied here as `reference`), and in value one
    /// regrouped from the kept lines, after upserts that move a line to another day, campaign
    /// or customer kind, refunds, missing costs, prunes and mixed decimal scales.
    mod drift {
        use super::*;
        use proptest::prelude::*;

        /// A campaign with its totals per day and its windows.
        type FlatCampaign = (
            CampaignKey,
            Vec<(NaiveDate, ProfitTotals)>,
            [ProfitTotals; 2],
        );

        /// A view in the shape it had before issue 15: every campaign with its totals per day.
        #[derive(Debug, PartialEq)]
        struct Flat {
            today: Option<NaiveDate>,
            windows: Vec<WindowProfit>,
            campaigns: Vec<FlatCampaign>,
            missing_cost: BTreeMap<String, u64>,
        }

        /// The compact view spelt out per day through its public API (what `poas_below` and
        /// the render read), checking the lookups on the way.
        fn flat(v: &ProfitView, campaigns: &[CampaignDays<'_>]) -> Flat {
            assert_eq!(v.campaigns.len(), campaigns.len());
            let today = v.today.unwrap();
            let campaigns = campaigns
                .iter()
                .zip(&v.campaigns)
                .map(|((key, days), p)| {
                    assert_eq!(&p.key, *key);
                    assert_eq!(v.campaign(key), Some(p));
                    let per_day = days
                        .iter()
                        .map(|(d, t)| (*d, v.campaign_day(p, *d, t.spend)))
                        .collect();
                    for (w, (_, n)) in p.windows.iter().zip(PROFIT_WINDOWS) {
                        let again = v.campaign_window(p, days, today, n);
                        assert_eq!(format!("{w:?}"), format!("{again:?}"));
                    }
                    ((*key).clone(), per_day, p.windows)
                })
                .collect();
            Flat {
                today: v.today,
                windows: v.windows.clone(),
                campaigns,
                missing_cost: v.missing_cost.clone(),
            }
        }

        /// Every decimal of a view as its 16 bytes (value, scale and sign).
        fn bits(f: &Flat) -> Vec<[u8; 16]> {
            let mut out = Vec::new();
            let mut push = |t: &ProfitTotals| {
                for x in [
                    t.net_sales,
                    t.returns,
                    t.cogs,
                    t.shipping_cost,
                    t.payment_fees,
                    t.ad_spend,
                    t.new_customer_sales,
                ] {
                    out.push(x.serialize());
                }
            };
            for w in &f.windows {
                push(&w.totals);
            }
            for (_, days, windows) in &f.campaigns {
                for (_, t) in days {
                    push(t);
                }
                for t in windows {
                    push(t);
                }
            }
            out
        }

        /// The String-keyed roll-up before issue 15, as it was.
        mod reference {
            use super::*;

            #[derive(Debug, Clone, PartialEq)]
            pub struct LineLite {
                pub day: NaiveDate,
                pub order_id: String,
                pub sku: String,
                pub utm_campaign: Option<String>,
                pub quantity: u32,
                pub net_sales: Decimal,
                pub shipping_charged: Decimal,
                pub unit_cost: Option<Decimal>,
                pub refunded_quantity: u32,
                pub refunded_amount: Decimal,
                pub new_customer: bool,
            }

            #[derive(Debug, Clone, Default)]
            pub struct Ledger {
                pub cfg: ProfitConfig,
                pub lines: HashMap<(String, String), LineLite>,
                days: BTreeMap<NaiveDate, DayGroup>,
                campaigns: HashMap<String, BTreeMap<NaiveDate, Group>>,
                missing_cost: BTreeMap<String, u64>,
            }

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

            #[derive(Debug, Clone, Default, PartialEq)]
            struct DayGroup {
                all: Group,
                paid_new: u64,
            }

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
                fn apply(&mut self, l: &LineLite, up: bool) {
                    let sales = l.net_sales + l.shipping_charged;
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

            fn window_of(
                days: &[(NaiveDate, ProfitTotals)],
                today: NaiveDate,
                n: u32,
            ) -> ProfitTotals {
                let from = today - chrono::Duration::days(i64::from(n.max(1)) - 1);
                let mut t = ProfitTotals::default();
                for (d, day) in days {
                    if *d >= from && *d <= today {
                        t += *day;
                    }
                }
                t
            }

            impl Ledger {
                pub fn new(cfg: ProfitConfig) -> Self {
                    Self {
                        cfg,
                        ..Self::default()
                    }
                }

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

                pub fn view(&self, today: NaiveDate, campaigns: &[CampaignDays<'_>]) -> Flat {
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
                                for (s, v) in sums.iter_mut().zip([
                                    a.net_sales,
                                    a.returns,
                                    a.cogs,
                                    a.new_customer_sales,
                                ]) {
                                    *s += v;
                                }
                                orders.extend(a.orders.keys().map(String::as_str));
                                new_orders.extend(a.new_orders.keys().map(String::as_str));
                                paid_new += g.paid_new;
                            }
                            let spend: Decimal =
                                spend_by_day.range(from..=today).map(|(_, s)| *s).sum();
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
                            ((*key).clone(), days, windows)
                        })
                        .collect();
                    Flat {
                        today: Some(today),
                        windows,
                        campaigns,
                        missing_cost: self.missing_cost.clone(),
                    }
                }
            }
        }

        /// Regroup every kept line of the reference per (day, campaign), as the ledger did on
        /// every snapshot before it kept sums.
        fn recompute(
            l: &reference::Ledger,
            today: NaiveDate,
            campaigns: &[CampaignDays<'_>],
        ) -> Flat {
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
                    ((*key).clone(), days, windows)
                })
                .collect();
            Flat {
                today: Some(today),
                windows,
                campaigns,
                missing_cost,
            }
        }

        /// One line upserted: (order, line, day, campaign or organic, new customer, quantity,
        /// refunded units, net sales in the currency's smallest units, decimal scale, unit
        /// cost or missing).
        type LineOp = (u8, u8, u8, u8, bool, u32, u32, i64, u32, Option<i64>);

        /// Upserts, and prunes before a day (`Err`).
        fn ops() -> impl Strategy<Value = Vec<Result<LineOp, u8>>> {
            prop::collection::vec(
                prop_oneof![
                    12 => (0u8..12, 0u8..3, 0u8..10, 0u8..7, any::<bool>(), 1u32..4, 0u32..3,
                          0i64..500_000, 0u32..4, prop::option::of(0i64..100_000)).prop_map(Ok),
                    1 => (0u8..11).prop_map(Err),
                ],
                1..160,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]
            #[test]
            fn kept_sums_equal_the_string_keyed_roll_up_and_a_regrouping(ops in ops()) {
                let base = d("2026-11-10");
                let today = base + chrono::Duration::days(9);
                let cfg = ProfitConfig {
                    shipping_cost_per_order: dec!(45),
                    payment_fees: crate::profit::kpi::PaymentFees {
                        percent_of_revenue: dec!(0.02),
                        fixed_per_order: dec!(3),
                    },
                };
                // c0..c3 have spend (c3 in the view on its odd days only); c4 has lines but
                // no spend; camp 5 and 6 are organic
                let camps: Vec<CampaignView> = (0..4)
                    .map(|c| {
                        let days: Vec<(String, Decimal)> = (0..10)
                            .filter(|k| c < 3 || k % 2 == 1)
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
                let mut l = ProfitLedger::new(cfg.clone());
                let mut r = reference::Ledger::new(cfg);
                let days = days_of(&camps);
                for op in ops.into_iter().map(Some).chain([None]) {
                    match op {
                        Some(Ok((o, n, day, camp, new, qty, refunded, units, scale, cost))) => {
                            let mut x = line(
                                &format!("o{o}"),
                                &n.to_string(),
                                &(base + chrono::Duration::days(i64::from(day))).to_string(),
                                (camp < 5).then(|| format!("c{camp}")).as_deref(),
                                new,
                            );
                            x.sku = format!("S{}", o % 3);
                            x.quantity = qty;
                            x.refunded_quantity = refunded.min(qty);
                            // a re-read line with its refund restates the first one
                            x.refunded_amount = Decimal::new(
                                units * i64::from(x.refunded_quantity) / i64::from(qty),
                                2,
                            );
                            x.net_sales = Decimal::new(units, scale);
                            x.shipping_charged = Decimal::new(units % 977, 2);
                            match cost {
                                Some(c) => x.unit_cost = Some(Decimal::new(c, scale % 3)),
                                None => {
                                    x.unit_cost = None;
                                    x.cost_source = CostSource::Missing;
                                }
                            }
                            l.ingest(&x);
                            r.ingest(&x);
                        }
                        Some(Err(day)) => {
                            let oldest = base + chrono::Duration::days(i64::from(day));
                            l.prune(oldest);
                            r.prune(oldest);
                        }
                        // at the end everything is pruned: nothing may be left behind
                        None => {
                            let past = base + chrono::Duration::days(100);
                            l.prune(past);
                            r.prune(past);
                            prop_assert!(l.lines.is_empty() && l.days.is_empty());
                            prop_assert!(l.campaigns.is_empty());
                            for i in [&l.orders, &l.campaign_ids, &l.missing_cost] {
                                prop_assert!(i.ids.is_empty());
                                prop_assert!(i.names.iter().all(Option::is_none));
                                prop_assert_eq!(i.free.len(), i.names.len());
                            }
                        }
                    }
                    let got = flat(&l.view(today, &days), &days);
                    let want = r.view(today, &days);
                    prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
                    prop_assert_eq!(bits(&got), bits(&want));
                    prop_assert_eq!(&got, &recompute(&r, today, &days));
                    // the interned ids are those of the kept lines
                    prop_assert_eq!(l.orders.ids.len(),
                        r.lines.keys().map(|k| &k.0).collect::<HashSet<_>>().len());
                    prop_assert_eq!(l.campaign_ids.ids.len(), r.lines.values()
                        .filter_map(|x| x.utm_campaign.as_ref()).collect::<HashSet<_>>().len());
                }
            }
        }

        /// The lookup by key is right whether the view's campaigns are sorted or not.
        #[test]
        fn campaign_lookup_sorted_or_not() {
            let mut l = ProfitLedger::new(ProfitConfig::default());
            l.ingest(&line("o1", "1", "2026-11-20", Some("c2"), true));
            let camps: Vec<CampaignView> = ["c3", "c1", "c2", "c0"]
                .iter()
                .map(|c| campaign(c, &[("2026-11-20", dec!(10))]))
                .collect();
            let mut sorted = camps.clone();
            sorted.sort_by(|a, b| a.key.cmp(&b.key));
            for cs in [camps, sorted] {
                let days = days_of(&cs);
                let v = l.view(d("2026-11-20"), &days);
                for c in &cs {
                    let p = v.campaign(&c.key).expect("in the view");
                    assert_eq!(p.key, c.key);
                    assert_eq!(p.days.len(), usize::from(c.key.campaign_id == "c2"));
                }
                let mut other = cs[0].key.clone();
                other.campaign_id = "c9".into();
                assert!(v.campaign(&other).is_none());
            }
        }
    }

    /// Memory of the compact ledger and view, by capacity arithmetic (`size_of` × capacity;
    /// what the allocator is asked for), under a bound derived by hand for a fixed load:
    /// 10,000 lines (5,000 orders of 2 lines, 1% without a cost) over 1,000 campaigns and 5 days.
    mod memory {
        use super::*;
        use std::mem::size_of;

        /// A std (hashbrown) table's allocation: buckets of entries and a control byte each,
        /// plus a group of control bytes.
        fn table<K, V>(m: &HashMap<K, V>) -> usize {
            let cap = m.capacity();
            if cap == 0 {
                return 0;
            }
            let buckets = if cap < 8 {
                cap + 1
            } else {
                (cap * 8 / 7).next_power_of_two()
            };
            buckets * (size_of::<(K, V)>() + 1) + 16
        }

        /// The same for `n` entries inserted one by one: the table doubles its buckets when
        /// 7/8 of them are full, so it has the power of two above n × 8/7 (at least 4).
        fn table_bound(n: usize, entry: usize) -> usize {
            let buckets = (n * 8).div_ceil(7).next_power_of_two().max(4);
            buckets * (entry + 1) + 16
        }

        fn interner(i: &Interner) -> usize {
            table(&i.ids)
                + i.names.capacity() * size_of::<Option<Arc<str>>>()
                + i.refs.capacity() * size_of::<u32>()
                + i.free.capacity() * size_of::<u32>()
                + i.counted()
                    .map(|(n, _)| (2 * size_of::<usize>() + n.len()).next_multiple_of(8))
                    .sum::<usize>()
        }

        fn group(g: &Group) -> usize {
            g.orders.capacity() * size_of::<OrderCount>()
        }

        pub(super) fn ledger(l: &ProfitLedger) -> usize {
            // a B-tree leaf holds 11 entries and is at least half full past the root
            let node = 16 + 11 * size_of::<(NaiveDate, DayGroup)>() + 12 * size_of::<usize>();
            table(&l.lines)
                + l.lines.keys().map(|k| k.1.len()).sum::<usize>()
                + table(&l.campaigns)
                + l.campaigns.values().map(group).sum::<usize>()
                + l.days.len().div_ceil(5).max(1) * node
                + l.days.values().map(|g| group(&g.all)).sum::<usize>()
                + interner(&l.orders)
                + interner(&l.campaign_ids)
                + interner(&l.missing_cost)
        }

        pub(super) fn view(v: &ProfitView) -> usize {
            v.windows.capacity() * size_of::<WindowProfit>()
                + v.campaigns.capacity() * size_of::<CampaignProfit>()
                + v.campaigns
                    .iter()
                    .map(|c| {
                        c.days.capacity() * size_of::<DaySums>()
                            + c.key.platform.capacity()
                            + c.key.account.capacity()
                            + c.key.campaign_id.capacity()
                    })
                    .sum::<usize>()
        }

        #[test]
        fn compact_ledger_and_view_stay_under_their_hand_derived_bound() {
            const CAMPAIGNS: usize = 1_000;
            const DAYS: usize = 5;
            const ORDERS: usize = 5_000;
            let base = d("2026-11-10");
            let camps: Vec<CampaignView> = (0..CAMPAIGNS)
                .map(|c| {
                    let days: Vec<(String, Decimal)> = (0..DAYS as i64)
                        .map(|k| ((base + chrono::Duration::days(k)).to_string(), dec!(100)))
                        .collect();
                    let r: Vec<(&str, Decimal)> =
                        days.iter().map(|(d, s)| (d.as_str(), *s)).collect();
                    campaign(&format!("{}", 120_000_000 + c), &r)
                })
                .collect();
            let mut l = ProfitLedger::new(ProfitConfig::default());
            for o in 0..ORDERS {
                let order = format!("demo-{}", 100_000 + o);
                let day = (base + chrono::Duration::days((o / (ORDERS / DAYS)) as i64)).to_string();
                let camp = camps[o * 7 % CAMPAIGNS].key.campaign_id.clone();
                for i in 1..=2 {
                    let mut x = line(
                        &order,
                        &format!("{order}/{i}"),
                        &day,
                        Some(&camp),
                        o % 3 == 0,
                    );
                    if o % 100 == 0 {
                        x.sku = format!("MOI-{:03}", o % 7);
                        x.unit_cost = None;
                        x.cost_source = CostSource::Missing;
                    }
                    l.ingest(&x);
                }
            }
            let lines = 2 * ORDERS;
            // each campaign has one order a day: 5,000 (campaign, day) groups of one order
            let groups = CAMPAIGNS * DAYS;
            assert_eq!(l.lines.len(), lines);
            assert_eq!(l.campaigns.len(), groups);
            let got = ledger(&l);
            // by hand: the line table (a line id "demo-1xxxxx/i" is 13 bytes); a group per
            // campaign day with its one order (`reserve_exact`: capacity 1); a day group per day
            // with its 1,000 orders (grown by halves: at most 1.5 × 1,000); the B-tree leaf of
            // the days; the interners (a table entry, a name slot and a count, and the shared
            // name: 16 bytes of counts + its length, 11 bytes at most here)
            let order = size_of::<OrderCount>();
            let name = |n: usize, len: usize| {
                // the name slots and counts grow by doubling (from 4); nothing is freed here
                table_bound(n, size_of::<(Arc<str>, u32)>())
                    + n.next_power_of_two().max(4) * (size_of::<Option<Arc<str>>>() + 4)
                    + n * (16 + len).next_multiple_of(8)
            };
            let bound = table_bound(lines, size_of::<((u32, Box<str>), LineLite)>())
                + lines * 13
                + table_bound(groups, size_of::<((u32, NaiveDate), Group)>())
                + groups * order
                + 16
                + 11 * size_of::<(NaiveDate, DayGroup)>()
                + 12 * size_of::<usize>()
                + DAYS * (ORDERS / DAYS) * 3 / 2 * order
                + name(ORDERS, 11)
                + name(CAMPAIGNS, 9)
                + name(7, 7);
            let days = days_of(&camps);
            let v = l.view(base + chrono::Duration::days(DAYS as i64 - 1), &days);
            let got_view = view(&v);
            // the view: a campaign with its 5 days of sums and its key's strings ("meta",
            // "act_1", 9 digits), and the two windows
            let bound_view = CAMPAIGNS
                * (size_of::<CampaignProfit>() + DAYS * size_of::<DaySums>() + 4 + 5 + 9)
                + PROFIT_WINDOWS.len() * size_of::<WindowProfit>();
            println!(
                "ledger {got} bytes (bound {bound}), view {got_view} bytes (bound {bound_view}); \
                 line entry {} B, group entry {} B, day sums {} B, campaign profit {} B",
                size_of::<((u32, Box<str>), LineLite)>(),
                size_of::<((u32, NaiveDate), Group)>(),
                size_of::<DaySums>(),
                size_of::<CampaignProfit>(),
            );
            assert!(got <= bound, "ledger {got} > {bound}");
            assert!(got_view <= bound_view, "view {got_view} > {bound_view}");
        }
    }
}
