//! Current state: the recent history the collector keeps in memory (retention_days of hourly
//! buckets per campaign, orders and funnel counts, upserted by the same keys as QuestDB), and the
//! KPI [`Snapshot`] computed from it for `/metrics`.
//!
//! The whole-business rolling windows reach further back than the per-campaign history (the
//! seed's 10-day view, 30 days): hour buckets older than `retention_days` are folded into one
//! business total per hour (720 cells for 30 days, whatever the number of campaigns) instead of
//! being kept per campaign, and orders are kept as long as the longest window.

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

use crate::kpi::{CAMPAIGN_WINDOWS, Margin, TOTAL_WINDOWS, Totals, Window, loss_rate_per_hour};
use crate::normalize::hour_floor;
use crate::records::{AdRef, Bucket, CampaignKey, FUNNEL_STAGES, OrderKind, Record};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Cell {
    spend: Decimal,
    conversion_value: Decimal,
    impressions: u64,
    clicks: u64,
    conversions: f64,
}

impl Cell {
    fn totals(&self) -> Totals {
        Totals {
            spend: self.spend,
            conversion_value: self.conversion_value,
            revenue: Decimal::ZERO,
            impressions: self.impressions,
            clicks: self.clicks,
            conversions: self.conversions,
        }
    }
}

#[derive(Debug, Default)]
struct CampaignHistory {
    name: String,
    /// Hour buckets by start (unix seconds).
    hours: BTreeMap<i64, Cell>,
    /// Day buckets, for sources that only report days.
    days: BTreeMap<NaiveDate, Cell>,
}

/// One ad's recent buckets (ad-level sources), for rules that judge ads (`ctr_below`).
#[derive(Debug)]
struct AdHistory {
    ad: AdRef,
    /// The ad's buckets; its `name` is unused (the ad's names are in `ad`).
    cells: CampaignHistory,
}

/// Ads of one campaign by (ad set / ad group id, ad id).
type CampaignAds = BTreeMap<(String, String), AdHistory>;

#[derive(Debug, Clone)]
struct OrderLite {
    day: NaiveDate,
    kind: OrderKind,
    amount: Decimal,
    utm_campaign: Option<String>,
}

/// Settings the snapshot needs.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    pub tz: Tz,
    pub currency: String,
    pub margin: Margin,
    pub loss_rate_window_hours: u32,
    pub tracking_window_hours: u32,
    pub roi_target: Option<f64>,
}

/// Same key as the `funnel` table's DEDUP key: (bucket start, bucket, stage, traffic source, source).
type FunnelKey = (i64, Bucket, String, String, String);

/// In-memory recent history.
#[derive(Debug)]
pub struct Store {
    campaigns: HashMap<CampaignKey, CampaignHistory>,
    orders: BTreeMap<(DateTime<Utc>, String), OrderLite>,
    funnel: HashMap<FunnelKey, (NaiveDate, u64)>,
    /// Per-campaign history kept (`general.retention_days`).
    retention: Duration,
    /// History the whole-business windows need: the longest of [`TOTAL_WINDOWS`] plus the
    /// current partial hour, or nothing when `retention` is zero (a throwaway store).
    window_retention: Duration,
    /// Business totals (all campaigns) per hour bucket older than `hour_cutoff`.
    window_hours: BTreeMap<i64, Cell>,
    /// Which (campaign, hour) a `window_hours` cell already holds: per campaign, per
    /// `hour.div_euclid(86_400)`, one bit per hour of that UTC day. A row repeated for such an
    /// hour (a backfill replayed) is then not counted twice.
    archived: HashMap<CampaignKey, BTreeMap<i64, u32>>,
    /// The last prune's per-campaign cutoff (unix seconds): the business windows read
    /// `window_hours` before it and the campaigns' hours from it on, so that no hour counts
    /// twice whatever arrived since. It follows the clock (the demo's clock starts in the past).
    hour_cutoff: i64,
    /// Restated hour rows for hours already folded into `window_hours`: their old value stays
    /// (the per-campaign cell is gone), so the 10d/30d windows can lag QuestDB by these.
    stale_restatements: u64,
    /// Ad-level buckets per campaign (issue 10), kept like the campaigns' history.
    ads: HashMap<CampaignKey, CampaignAds>,
    /// Order lines for the profit KPIs (issue 16), kept like the campaigns' history.
    profit: crate::profit::live::ProfitLedger,
}

impl Store {
    pub fn new(retention_days: u32) -> Self {
        let retention = Duration::days(i64::from(retention_days));
        let longest = TOTAL_WINDOWS.iter().map(|w| w.hours).max().unwrap_or(0);
        let window_retention = if retention_days == 0 {
            Duration::zero()
        } else {
            retention.max(Duration::hours(i64::from(longest) + 1))
        };
        Self {
            campaigns: HashMap::new(),
            orders: BTreeMap::new(),
            funnel: HashMap::new(),
            retention,
            window_retention,
            window_hours: BTreeMap::new(),
            archived: HashMap::new(),
            hour_cutoff: i64::MIN,
            stale_restatements: 0,
            ads: HashMap::new(),
            profit: Default::default(),
        }
    }

    /// The profit KPIs' costs (`[profit]`).
    pub fn with_profit(mut self, cfg: crate::profit::ProfitConfig) -> Self {
        self.profit = crate::profit::live::ProfitLedger::new(cfg);
        self
    }

    /// Hour rows that restated an hour already folded into the business totals (older than
    /// `retention_days`) and so were not applied; see docs/metrics.md.
    pub fn stale_restatements(&self) -> u64 {
        self.stale_restatements
    }

    /// Fold one campaign's hour cell into the business totals, once per (campaign, hour).
    fn archive_hour(&mut self, key: &CampaignKey, t: i64, cell: Cell) {
        let (day, bit) = (t.div_euclid(86_400), (t.rem_euclid(86_400) / 3600) as u32);
        let mask = self
            .archived
            .entry(key.clone())
            .or_default()
            .entry(day)
            .or_default();
        if *mask & (1 << bit) != 0 {
            self.stale_restatements += 1;
            return;
        }
        *mask |= 1 << bit;
        let e = self.window_hours.entry(t).or_default();
        e.spend += cell.spend;
        e.conversion_value += cell.conversion_value;
        e.impressions += cell.impressions;
        e.clicks += cell.clicks;
        e.conversions += cell.conversions;
    }

    pub fn campaign_count(&self) -> usize {
        self.campaigns.len()
    }

    /// Upsert records (same keys as the QuestDB tables: a restated bucket replaces the old one).
    pub fn ingest(&mut self, records: &[Record]) {
        for r in records {
            match r {
                Record::CampaignStats(c) => {
                    let cell = Cell {
                        spend: c.spend,
                        conversion_value: c.conversion_value,
                        impressions: c.impressions,
                        clicks: c.clicks,
                        conversions: c.conversions,
                    };
                    // an hour older than the per-campaign history lands here too, and moves to
                    // the business totals at the next prune (once per campaign and hour)
                    let t = c.ts.timestamp();
                    let h = self.campaigns.entry(c.key.clone()).or_default();
                    if h.name != c.campaign_name {
                        h.name.clone_from(&c.campaign_name);
                    }
                    match c.bucket {
                        Bucket::Hour => {
                            h.hours.insert(t, cell);
                        }
                        Bucket::Day => {
                            h.days.insert(c.day, cell);
                        }
                    }
                }
                Record::Orders(o) => {
                    self.orders.insert(
                        (o.ts, o.event_id.clone()),
                        OrderLite {
                            day: o.day,
                            kind: o.kind,
                            amount: o.amount,
                            utm_campaign: o.utm_campaign.clone(),
                        },
                    );
                }
                // model outputs and the audit trail are written to QuestDB only
                Record::Forecasts(_) | Record::Anomalies(_) | Record::Actions(_) => {}
                // order depth and attribution feed QuestDB and the dashboards; the live
                // snapshot reads orders
                Record::OrderLines(l) => self.profit.ingest(l),
                Record::Touchpoints(_) | Record::Attribution(_) => {}
                // the campaign rows carry the ads' sums (the KPIs); the ads' own buckets are
                // kept for the rules that judge ads, for the same recent history
                Record::AdStats(a) => {
                    let c = &a.stat;
                    let t = c.ts.timestamp();
                    if c.bucket == Bucket::Hour && t < self.hour_cutoff {
                        continue;
                    }
                    let cell = Cell {
                        spend: c.spend,
                        conversion_value: c.conversion_value,
                        impressions: c.impressions,
                        clicks: c.clicks,
                        conversions: c.conversions,
                    };
                    let h = self
                        .ads
                        .entry(c.key.clone())
                        .or_default()
                        .entry((a.ad.adset_id.clone(), a.ad.ad_id.clone()))
                        .or_insert_with(|| AdHistory {
                            ad: a.ad.clone(),
                            cells: CampaignHistory::default(),
                        });
                    if h.ad != a.ad {
                        h.ad.clone_from(&a.ad);
                    }
                    match c.bucket {
                        Bucket::Hour => {
                            h.cells.hours.insert(t, cell);
                        }
                        Bucket::Day => {
                            h.cells.days.insert(c.day, cell);
                        }
                    }
                }
                Record::Funnel(f) => {
                    self.funnel.insert(
                        (
                            f.ts.timestamp(),
                            f.bucket,
                            f.stage.clone(),
                            f.traffic_source.clone(),
                            f.source.clone(),
                        ),
                        (f.day, f.count),
                    );
                }
            }
        }
    }

    /// Visit every campaign's hour buckets starting at or after `from` (unix seconds), in time
    /// order per campaign. `revenue` is not set (see [`Store::hourly_totals`]).
    pub fn visit_campaign_hours(
        &self,
        from: i64,
        mut f: impl FnMut(&CampaignKey, &str, i64, &Totals),
    ) {
        for (key, h) in &self.campaigns {
            for (&t, c) in h.hours.range(from..) {
                f(key, &h.name, t, &c.totals());
            }
        }
    }

    /// Totals over all campaigns per hour bucket in `[from, to)`, with shop revenue (all orders,
    /// net of refunds) in the hour bucket they fall into.
    pub fn hourly_totals(&self, from: i64, to: i64, tz: Tz) -> BTreeMap<i64, Totals> {
        let mut out: BTreeMap<i64, Totals> = BTreeMap::new();
        for h in self.campaigns.values() {
            for (&t, c) in h.hours.range(from..to) {
                *out.entry(t).or_default() += c.totals();
            }
        }
        let lo = DateTime::<Utc>::from_timestamp(from, 0).unwrap_or_default();
        for ((ts, _), o) in self.orders.range((lo, String::new())..) {
            let b = hour_floor(*ts, tz).timestamp();
            if b >= to {
                break;
            }
            if b >= from {
                out.entry(b).or_default().revenue += o.amount;
            }
        }
        out
    }

    /// Shop orders (not refunds) per (UTM campaign, hour bucket start) for hours in
    /// `[from, to)`: the shop's own count of what each campaign sold, for comparing with the
    /// platform's conversions (the tracking-break test). The UTM value is as the shop recorded
    /// it (a campaign id or name; the caller matches it).
    pub fn attributed_orders_by_hour(
        &self,
        from: i64,
        to: i64,
        tz: Tz,
    ) -> HashMap<(String, i64), u64> {
        let mut out: HashMap<(String, i64), u64> = HashMap::new();
        let lo = DateTime::<Utc>::from_timestamp(from, 0).unwrap_or_default();
        for ((ts, _), o) in self.orders.range((lo, String::new())..) {
            let b = hour_floor(*ts, tz).timestamp();
            if b >= to {
                break;
            }
            if b >= from
                && o.kind == OrderKind::Order
                && let Some(u) = &o.utm_campaign
            {
                *out.entry((u.clone(), b)).or_default() += 1;
            }
        }
        out
    }

    /// True when any shop order or refund is kept (a shop is connected).
    pub fn has_orders(&self) -> bool {
        !self.orders.is_empty()
    }

    /// Shop revenue per reporting day (all orders kept in memory).
    pub fn daily_revenue(&self) -> BTreeMap<NaiveDate, Decimal> {
        let mut out: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
        for o in self.orders.values() {
            *out.entry(o.day).or_default() += o.amount;
        }
        out
    }

    /// Drop what is older than the retention before `now`; hour buckets older than
    /// `retention_days` but inside the longest window move into the business totals.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let cutoff = now - self.retention;
        let cut_s = cutoff.timestamp();
        let cut_day = cutoff.date_naive();
        let window_cutoff = now - self.window_retention;
        let window_s = window_cutoff.timestamp();
        let mut folded: Vec<(CampaignKey, i64, Cell)> = Vec::new();
        self.campaigns.retain(|key, h| {
            let keep = h.hours.split_off(&cut_s);
            let old = std::mem::replace(&mut h.hours, keep);
            folded.extend(
                old.into_iter()
                    .filter(|(t, _)| *t >= window_s)
                    .map(|(t, c)| (key.clone(), t, c)),
            );
            h.days = h.days.split_off(&cut_day);
            !(h.hours.is_empty() && h.days.is_empty())
        });
        let stale_before = self.stale_restatements;
        for (key, t, c) in folded {
            self.archive_hour(&key, t, c);
        }
        if self.stale_restatements > stale_before {
            // said once per prune, not per row: a replayed backfill repeats thousands
            tracing::warn!(
                rows = self.stale_restatements - stale_before,
                retention_days = self.retention.num_days(),
                "hour rows restated past the per-campaign history: the 10d/30d windows keep the \
                 earlier values (QuestDB has the new ones)"
            );
        }
        self.hour_cutoff = cut_s;
        self.window_hours = self.window_hours.split_off(&window_s);
        let window_day = window_s.div_euclid(86_400);
        self.archived.retain(|_, days| {
            *days = days.split_off(&window_day);
            !days.is_empty()
        });
        self.orders = self.orders.split_off(&(window_cutoff, String::new()));
        self.funnel.retain(|k, _| k.0 >= cut_s);
        self.profit.prune(cut_day);
        self.ads.retain(|_, ads| {
            ads.retain(|_, a| {
                a.cells.hours = a.cells.hours.split_off(&cut_s);
                a.cells.days = a.cells.days.split_off(&cut_day);
                !(a.cells.hours.is_empty() && a.cells.days.is_empty())
            });
            !ads.is_empty()
        });
    }

    /// KPIs as of `now`.
    pub fn snapshot(&self, now: DateTime<Utc>, s: &SnapshotSettings) -> Snapshot {
        let today = now.with_timezone(&s.tz).date_naive();
        let cur_hour = hour_floor(now, s.tz).timestamp();
        let loss_from = cur_hour - 3600 * i64::from(s.loss_rate_window_hours);
        let track_from = cur_hour - 3600 * i64::from(s.tracking_window_hours);
        let last_hour = cur_hour - 3600;
        let today_start = crate::normalize::day_start(today, s.tz).timestamp();
        let tomorrow_start =
            crate::normalize::day_start(today + chrono::Days::new(1), s.tz).timestamp();
        // Rolling windows the kept history covers (a longer one would be missing data).
        let total_windows: Vec<Window> = TOTAL_WINDOWS
            .into_iter()
            .filter(|w| self.window_retention >= Duration::hours(i64::from(w.hours)))
            .collect();
        let camp_windows: Vec<Window> = CAMPAIGN_WINDOWS
            .into_iter()
            .filter(|w| self.retention >= Duration::hours(i64::from(w.hours)))
            .collect();
        let oldest_window = total_windows
            .iter()
            .map(|w| w.start(cur_hour))
            .min()
            .unwrap_or(cur_hour);
        let mut total_rolling: Vec<Rolling> = total_windows
            .iter()
            .map(|&window| Rolling {
                window,
                totals: Totals::default(),
                orders: 0,
            })
            .collect();
        // per UTM campaign: (revenue, orders) per campaign window
        let mut rev_rolling: HashMap<&str, [(Decimal, u64); CAMPAIGN_WINDOWS.len()]> =
            HashMap::new();

        // Shop revenue: today, by UTM campaign; and in the windows.
        let mut total = TotalView::default();
        let mut rev_today: HashMap<&str, Decimal> = HashMap::new();
        let mut rev_loss_window: HashMap<&str, Decimal> = HashMap::new();
        let mut orders_track_window: HashMap<&str, u64> = HashMap::new();
        let mut total_rev_loss_window = Decimal::ZERO;
        // Revenue per (UTM campaign, day) over everything kept, for the per-day history.
        let mut rev_by_day: HashMap<(&str, NaiveDate), Decimal> = HashMap::new();
        for o in self.orders.values() {
            if let Some(u) = &o.utm_campaign {
                *rev_by_day.entry((u.as_str(), o.day)).or_default() += o.amount;
            }
        }
        for ((ts, _), o) in self.orders.range(
            (
                DateTime::<Utc>::from_timestamp(track_from.min(loss_from).min(oldest_window), 0)
                    .unwrap_or(now)
                    - Duration::days(1),
                String::new(),
            )..,
        ) {
            let t = ts.timestamp();
            let is_order = o.kind == OrderKind::Order;
            for r in total_rolling.iter_mut() {
                if t >= r.window.start(cur_hour) && *ts <= now {
                    r.totals.revenue += o.amount;
                    r.orders += u64::from(is_order);
                }
            }
            if let Some(u) = &o.utm_campaign {
                for (i, w) in camp_windows.iter().enumerate() {
                    if t >= w.start(cur_hour) && *ts <= now {
                        let e = &mut rev_rolling.entry(u.as_str()).or_default()[i];
                        e.0 += o.amount;
                        e.1 += u64::from(is_order);
                    }
                }
            }
            if o.day == today {
                total.today.revenue += o.amount;
                match o.kind {
                    OrderKind::Order => total.orders += 1,
                    _ => total.refunds -= o.amount,
                }
                if let Some(u) = &o.utm_campaign {
                    *rev_today.entry(u.as_str()).or_default() += o.amount;
                }
            }
            if t >= loss_from && t < cur_hour {
                total_rev_loss_window += o.amount;
                if let Some(u) = &o.utm_campaign {
                    *rev_loss_window.entry(u.as_str()).or_default() += o.amount;
                }
            }
            if t >= track_from
                && o.kind == OrderKind::Order
                && let Some(u) = &o.utm_campaign
            {
                *orders_track_window.entry(u.as_str()).or_default() += 1;
            }
        }
        let attributed = |m: &HashMap<&str, Decimal>, key: &CampaignKey, name: &str| -> Decimal {
            m.get(key.campaign_id.as_str())
                .or_else(|| m.get(name))
                .copied()
                .unwrap_or_default()
        };

        let mut campaigns = Vec::with_capacity(self.campaigns.len());
        let mut platforms: BTreeMap<String, PlatformView> = BTreeMap::new();
        let mut total_loss_window = Totals::default();
        for (key, h) in &self.campaigns {
            let mut today_t = Totals::default();
            let mut any_hour_today = false;
            let mut loss_w = Totals::default();
            let mut track_w = Totals::default();
            let mut spend_last_hour = Decimal::ZERO;
            let day_start_guess = cur_hour - 26 * 3600;
            let mut rolling: Vec<Rolling> = camp_windows
                .iter()
                .map(|&window| Rolling {
                    window,
                    totals: Totals::default(),
                    orders: 0,
                })
                .collect();
            let lo = day_start_guess
                .min(loss_from)
                .min(track_from)
                .min(oldest_window);
            for (&t, c) in h.hours.range(lo..) {
                let cell = c.totals();
                if t <= cur_hour {
                    for r in rolling.iter_mut() {
                        if t >= r.window.start(cur_hour) {
                            r.totals += cell;
                        }
                    }
                    if t >= self.hour_cutoff {
                        for r in total_rolling.iter_mut() {
                            if t >= r.window.start(cur_hour) {
                                r.totals += cell;
                            }
                        }
                    }
                }
                if t >= today_start && t < tomorrow_start {
                    today_t += c.totals();
                    any_hour_today = true;
                }
                if t >= loss_from && t < cur_hour {
                    loss_w += c.totals();
                }
                if t >= track_from {
                    track_w += c.totals();
                }
                if t == last_hour {
                    spend_last_hour = c.spend;
                }
            }
            if !any_hour_today && let Some(c) = h.days.get(&today) {
                today_t = c.totals();
            }
            let days = daily_history(h, s.tz, |day| {
                rev_by_day
                    .get(&(key.campaign_id.as_str(), day))
                    .or_else(|| rev_by_day.get(&(h.name.as_str(), day)))
                    .copied()
                    .unwrap_or_default()
            });
            today_t.revenue = attributed(&rev_today, key, &h.name);
            if let Some(rv) = rev_rolling
                .get(key.campaign_id.as_str())
                .or_else(|| rev_rolling.get(h.name.as_str()))
            {
                for (r, (rev, n)) in rolling.iter_mut().zip(rv) {
                    r.totals.revenue = *rev;
                    r.orders = *n;
                }
            }
            loss_w.revenue = attributed(&rev_loss_window, key, &h.name);
            let window_orders = orders_track_window
                .get(key.campaign_id.as_str())
                .or_else(|| orders_track_window.get(h.name.as_str()))
                .copied()
                .unwrap_or(0);
            // Baseline: median spend of the same hour on the previous 7 days.
            let mut same_hour: Vec<Decimal> = (1..=7)
                .filter_map(|d| h.hours.get(&(last_hour - d * 86_400)).map(|c| c.spend))
                .collect();
            let spend_baseline = if same_hour.len() >= 3 {
                same_hour.sort();
                Some(same_hour[same_hour.len() / 2])
            } else {
                None
            };
            let p = platforms.entry(key.platform.clone()).or_default();
            p.today += today_t;
            p.loss_window += loss_w;
            total.today.spend += today_t.spend;
            total.today.conversion_value += today_t.conversion_value;
            total.today.impressions += today_t.impressions;
            total.today.clicks += today_t.clicks;
            total.today.conversions += today_t.conversions;
            total_loss_window.spend += loss_w.spend;
            campaigns.push(CampaignView {
                key: key.clone(),
                name: h.name.clone(),
                today: today_t,
                loss_rate_per_hour: loss_rate_per_hour(&loss_w, s.loss_rate_window_hours, s.margin),
                window_clicks: track_w.clicks,
                window_conversions: track_w.conversions,
                window_orders,
                spend_last_hour,
                spend_baseline,
                days,
                rolling,
            });
        }
        campaigns.sort_by(|a, b| a.key.cmp(&b.key));
        for p in platforms.values_mut() {
            p.loss_rate_per_hour =
                loss_rate_per_hour(&p.loss_window, s.loss_rate_window_hours, s.margin);
        }
        // hours older than the per-campaign history, from the business totals
        let archive_end = self.hour_cutoff.min(cur_hour + 1);
        for (&t, c) in self
            .window_hours
            .range(oldest_window..archive_end.max(oldest_window))
        {
            for r in total_rolling.iter_mut() {
                if t >= r.window.start(cur_hour) {
                    r.totals += c.totals();
                }
            }
        }
        total_loss_window.revenue = total_rev_loss_window;
        total.loss_rate_per_hour =
            loss_rate_per_hour(&total_loss_window, s.loss_rate_window_hours, s.margin);
        total.rolling = total_rolling;

        let mut funnel_counts: BTreeMap<&str, u64> = BTreeMap::new();
        for ((_, bucket, stage, _, _), (day, count)) in &self.funnel {
            if *day == today && *bucket == Bucket::Hour {
                *funnel_counts.entry(stage.as_str()).or_default() += count;
            }
        }
        let funnel = FUNNEL_STAGES
            .iter()
            .map(|st| (st.to_string(), funnel_counts.get(st).copied().unwrap_or(0)))
            .collect();

        let profit = self.profit.view(today, &campaigns);
        Snapshot {
            profit,
            at: now,
            day: today,
            hour_of_day: now.with_timezone(&s.tz).hour(),
            currency: s.currency.clone(),
            margin: s.margin,
            campaigns,
            platforms,
            total,
            funnel,
            roi_target: s.roi_target,
            ads: self
                .ads
                .iter()
                .map(|(key, ads)| {
                    let views = ads
                        .values()
                        .map(|a| AdView {
                            ad: a.ad.clone(),
                            days: daily_history(&a.cells, s.tz, |_| Decimal::ZERO),
                        })
                        .collect();
                    (key.clone(), views)
                })
                .collect(),
        }
    }
}

/// Per reporting day totals of one campaign, oldest first: hour buckets summed by local day, a
/// day bucket where no hour bucket exists for that day, revenue attributed by UTM.
fn daily_history(
    h: &CampaignHistory,
    tz: Tz,
    revenue: impl Fn(NaiveDate) -> Decimal,
) -> Vec<(NaiveDate, Totals)> {
    let mut by_day: BTreeMap<NaiveDate, Totals> = BTreeMap::new();
    // Hours come in time order: convert to the local day once per day, not once per hour (the
    // timezone lookup dominated the snapshot with thousands of campaigns).
    let mut current: Option<(NaiveDate, i64)> = None; // (local day, start of the next one)
    for (&t, c) in &h.hours {
        if current.is_none_or(|(_, next)| t >= next) {
            let Some(d) = DateTime::<Utc>::from_timestamp(t, 0) else {
                continue;
            };
            let day = d.with_timezone(&tz).date_naive();
            let next = crate::normalize::day_start(day + chrono::Days::new(1), tz).timestamp();
            current = Some((day, next));
        }
        if let Some((day, _)) = current {
            *by_day.entry(day).or_default() += c.totals();
        }
    }
    for (day, c) in &h.days {
        by_day.entry(*day).or_insert_with(|| c.totals());
    }
    by_day
        .into_iter()
        .map(|(day, mut t)| {
            t.revenue = revenue(day);
            (day, t)
        })
        .collect()
}

/// KPIs of one campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignView {
    pub key: CampaignKey,
    pub name: String,
    /// Today's totals; `revenue` is shop revenue attributed by UTM.
    pub today: Totals,
    pub loss_rate_per_hour: Option<Decimal>,
    pub window_clicks: u64,
    pub window_conversions: f64,
    pub window_orders: u64,
    pub spend_last_hour: Decimal,
    pub spend_baseline: Option<Decimal>,
    /// Totals per reporting day over the kept history (`retention_days`), oldest first, today
    /// last when it has data; `revenue` is shop revenue attributed by UTM. For rules that look
    /// at several days.
    pub days: Vec<(NaiveDate, Totals)>,
    /// Trailing windows of [`CAMPAIGN_WINDOWS`] the kept history covers; `revenue` and `orders`
    /// attributed by UTM.
    pub rolling: Vec<Rolling>,
}

/// Totals over one trailing [`Window`], with the shop orders (refunds not counted) in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rolling {
    pub window: Window,
    pub totals: Totals,
    pub orders: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlatformView {
    pub today: Totals,
    loss_window: Totals,
    pub loss_rate_per_hour: Option<Decimal>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TotalView {
    /// Today's totals; `revenue` is all shop revenue, net of refunds.
    pub today: Totals,
    pub loss_rate_per_hour: Option<Decimal>,
    pub orders: u64,
    pub refunds: Decimal,
    /// Trailing windows of [`TOTAL_WINDOWS`] the kept history covers; `revenue` is all shop
    /// revenue, net of refunds.
    pub rolling: Vec<Rolling>,
}

/// Everything `/metrics` shows, computed at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    pub day: NaiveDate,
    pub hour_of_day: u32,
    pub currency: String,
    pub margin: Margin,
    pub campaigns: Vec<CampaignView>,
    pub platforms: BTreeMap<String, PlatformView>,
    pub total: TotalView,
    pub funnel: Vec<(String, u64)>,
    pub roi_target: Option<f64>,
    /// Per campaign, its ads' daily totals (ad-level sources only; empty for the others).
    pub ads: BTreeMap<CampaignKey, Vec<AdView>>,
    /// Profit KPIs from the order lines (issue 16).
    pub profit: crate::profit::live::ProfitView,
}

/// One ad's totals per reporting day, oldest first (hour buckets summed by local day, as for
/// campaigns); `revenue` is not attributed to ads (0).
#[derive(Debug, Clone, PartialEq)]
pub struct AdView {
    pub ad: AdRef,
    pub days: Vec<(NaiveDate, Totals)>,
}

impl Snapshot {
    pub fn empty(currency: &str) -> Self {
        Snapshot {
            at: Utc::now(),
            day: Utc::now().date_naive(),
            hour_of_day: 0,
            currency: currency.into(),
            margin: Margin::default(),
            campaigns: vec![],
            platforms: BTreeMap::new(),
            total: TotalView::default(),
            funnel: vec![],
            roi_target: None,
            ads: BTreeMap::new(),
            profit: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn daily_history_splits_hours_at_local_midnight() {
        let tz = chrono_tz::Asia::Kolkata;
        let mut h = CampaignHistory::default();
        // 48 hourly buckets from 17:30 UTC (23:00 in India) on the 18th: the first belongs to
        // the 18th, the next 24 to the 19th, the remaining 23 to the 20th
        let start = "2026-11-18T17:30:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp();
        for k in 0..48 {
            h.hours.insert(
                start + 3600 * k,
                Cell {
                    spend: dec!(1.5),
                    clicks: 1,
                    ..Default::default()
                },
            );
        }
        let days = daily_history(&h, tz, |_| Decimal::ZERO);
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let got: Vec<(NaiveDate, u64, Decimal)> = days
            .iter()
            .map(|(day, t)| (*day, t.clicks, t.spend))
            .collect();
        assert_eq!(
            got,
            vec![
                (d("2026-11-18"), 1, dec!(1.5)),
                (d("2026-11-19"), 24, dec!(36.0)),
                (d("2026-11-20"), 23, dec!(34.5)),
            ]
        );
    }

    #[test]
    fn ad_rows_are_upserted_per_ad_and_reach_the_snapshot_by_day() {
        use crate::records::{AdStat, CampaignStat};
        let key = CampaignKey {
            platform: "meta".into(),
            account: "act_1".into(),
            campaign_id: "c1".into(),
        };
        let row = |ts: &str, ad_id: &str, clicks: u64| {
            let ts: DateTime<Utc> = ts.parse().unwrap();
            Record::AdStats(AdStat {
                stat: CampaignStat {
                    ts,
                    bucket: Bucket::Hour,
                    day: ts.with_timezone(&chrono_tz::Asia::Kolkata).date_naive(),
                    key: key.clone(),
                    campaign_name: "C1".into(),
                    source: "meta".into(),
                    spend: dec!(1),
                    conversion_value: dec!(0),
                    spend_account: dec!(1),
                    conversion_value_account: dec!(0),
                    account_currency: "INR".into(),
                    currency: "INR".into(),
                    impressions: 100,
                    clicks,
                    conversions: 0.0,
                },
                ad: AdRef {
                    adset_id: "s1".into(),
                    adset_name: "S1".into(),
                    ad_id: ad_id.into(),
                    ad_name: format!("Ad {ad_id}"),
                },
            })
        };
        let mut store = Store::new(8);
        store.ingest(&[
            row("2026-11-20T04:30:00Z", "a1", 3),
            row("2026-11-20T05:30:00Z", "a1", 4),
            row("2026-11-20T05:30:00Z", "a2", 9),
        ]);
        // a restated hour replaces the old value (the ad_stats DEDUP key), it is not added
        store.ingest(&[row("2026-11-20T05:30:00Z", "a1", 5)]);
        let settings = SnapshotSettings {
            tz: chrono_tz::Asia::Kolkata,
            currency: "INR".into(),
            margin: Margin::default(),
            loss_rate_window_hours: 3,
            tracking_window_hours: 24,
            roi_target: None,
        };
        let snap = store.snapshot("2026-11-20T12:00:00Z".parse().unwrap(), &settings);
        let ads = &snap.ads[&key];
        let got: Vec<(&str, Vec<(NaiveDate, u64)>)> = ads
            .iter()
            .map(|a| {
                (
                    a.ad.ad_id.as_str(),
                    a.days.iter().map(|(d, t)| (*d, t.clicks)).collect(),
                )
            })
            .collect();
        let d = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        assert_eq!(got, vec![("a1", vec![(d, 3 + 5)]), ("a2", vec![(d, 9)])]);
        assert_eq!(ads[0].ad.ad_name, "Ad a1");
        // past the history kept, the ads go with the campaigns' hours
        store.prune("2026-12-01T00:00:00Z".parse().unwrap());
        let snap = store.snapshot("2026-12-01T00:00:00Z".parse().unwrap(), &settings);
        assert!(snap.ads.is_empty());
    }
}
