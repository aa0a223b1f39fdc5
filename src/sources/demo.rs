//! demo: a simulator of MOI's crisis, calibrated to the seed's baseline (ROI about -91%, CPA about
//! 27,899 INR, CR about 0.024%, revenue about 2,750 INR a day) with the faults SPEC lists:
//! money-losing campaigns, a campaign whose conversion tracking breaks, a spend spike, and one
//! profitable campaign.
//!
//! Determinism: every hour's figures come from an RNG seeded by (seed, campaign, hour index), and
//! orders are placed by thresholding the cumulative expected conversions, so the same `seed` and
//! `start` give the same rows whatever the tick timing, and totals track the calibration closely
//! even though individual orders are rare (about one a day).

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration as StdDuration;
use tracing::{info, warn};

use crate::base::Problem;
use crate::normalize::{Observation, RawCampaignStat, RawFunnel, RawOrder, hour_floor};
use crate::records::{Bucket, CampaignKey, OrderKind};
use crate::sources::SourceContext;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Name of this source instance (label `source` in metrics and tables).
    pub name: String,
    /// RNG seed: the same seed and start give the same data.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Days of history written at start-up before going live.
    #[serde(default = "default_backfill_days")]
    pub backfill_days: u32,
    /// Simulated seconds per real second in live mode (60: an hour a minute).
    #[serde(default = "default_speedup")]
    pub speedup: f64,
    /// Real seconds between live updates.
    #[serde(default = "default_tick_secs")]
    pub tick_secs: f64,
    /// Simulated "now" at start-up (default: the real clock). Fix it for reproducible runs.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// Copies of the scenario's campaigns, for load tests (1,667 gives 10,002 campaigns).
    #[serde(default = "default_scale")]
    pub scale: u32,
    /// Stop after the backfill instead of going live.
    #[serde(default)]
    pub backfill_only: bool,
    /// Shard by account: emit only these ad accounts' campaigns (empty: every account).
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Emit the shop's orders and funnel (false on every shard but the one that owns the shop).
    #[serde(default = "default_shop")]
    pub shop: bool,
    /// Hours before `start` at which the Performance Max campaign's conversion tracking breaks.
    #[serde(default = "default_break_hours")]
    pub tracking_break_hours_ago: u32,
    /// Hours before `start` at which the Display campaign's spend spike begins.
    #[serde(default = "default_spike_hours")]
    pub spike_hours_ago: u32,
    /// Length of the spend spike, in hours.
    #[serde(default = "default_spike_duration")]
    pub spike_duration_hours: u32,
    /// Spend multiplier during the spike.
    #[serde(default = "default_spike_factor")]
    pub spike_factor: f64,
}

fn default_seed() -> u64 {
    42
}
fn default_backfill_days() -> u32 {
    10
}
fn default_speedup() -> f64 {
    60.0
}
fn default_tick_secs() -> f64 {
    1.0
}
fn default_scale() -> u32 {
    1
}
fn default_shop() -> bool {
    true
}
fn default_break_hours() -> u32 {
    72
}
fn default_spike_hours() -> u32 {
    2
}
fn default_spike_duration() -> u32 {
    6
}
fn default_spike_factor() -> f64 {
    6.0
}

impl DemoConfig {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            seed: default_seed(),
            backfill_days: default_backfill_days(),
            speedup: default_speedup(),
            tick_secs: default_tick_secs(),
            start: None,
            scale: default_scale(),
            backfill_only: false,
            accounts: Vec::new(),
            shop: default_shop(),
            tracking_break_hours_ago: default_break_hours(),
            spike_hours_ago: default_spike_hours(),
            spike_duration_hours: default_spike_duration(),
            spike_factor: default_spike_factor(),
        }
    }

    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut add = |k: &str, m: &str| {
            p.push(Problem {
                key: k.into(),
                message: m.into(),
            })
        };
        if self.name.trim().is_empty() {
            add("name", "must not be empty");
        }
        if self.backfill_days > 400 {
            add("backfill_days", "must be at most 400");
        }
        if !(self.speedup.is_finite() && self.speedup > 0.0 && self.speedup <= 1_000_000.0) {
            add("speedup", "must be a number in (0, 1000000]");
        }
        if !(self.tick_secs.is_finite() && self.tick_secs >= 0.01 && self.tick_secs <= 3600.0) {
            add("tick_secs", "must be between 0.01 and 3600");
        }
        if self.scale == 0 || self.scale > 10_000 {
            add("scale", "must be between 1 and 10000");
        }
        if !(self.spike_factor.is_finite() && self.spike_factor >= 1.0) {
            add("spike_factor", "must be at least 1");
        }
        p
    }
}

/// What kind of trouble a campaign is in (the injected faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Losing,
    Profitable,
    TrackingBreak,
    SpendSpike,
}

/// A simulated campaign, with its calibrated daily means.
#[derive(Debug, Clone)]
pub struct DemoCampaign {
    pub platform: &'static str,
    pub account: &'static str,
    pub id: String,
    pub name: String,
    pub role: Role,
    pub spend_per_day: f64,
    pub cpc: f64,
    pub ctr: f64,
    /// Shop orders per day.
    pub orders_per_day: f64,
    pub aov: f64,
    pub utm_source: &'static str,
    pub utm_medium: &'static str,
}

/// The scenario's campaigns. Daily means: spend about 30,500 INR, clicks about 4,500, about 1.1
/// tracked conversions and 2,750 INR of revenue net of refunds (checked over 10 days for many seeds
/// by `tests/demo_calibration.rs`). The retargeting campaign is the only profitable one.
pub fn campaigns() -> Vec<DemoCampaign> {
    let meta = |id: &str, name: &str, role, spend, cpc, ctr, orders, aov| DemoCampaign {
        platform: "meta",
        account: "act_1029384756",
        id: id.into(),
        name: name.into(),
        role,
        spend_per_day: spend,
        cpc,
        ctr,
        orders_per_day: orders,
        aov,
        utm_source: "facebook",
        utm_medium: "paid_social",
    };
    let google = |id: &str, name: &str, role, spend, cpc, ctr, orders, aov| DemoCampaign {
        platform: "google_ads",
        account: "123-456-7890",
        id: id.into(),
        name: name.into(),
        role,
        spend_per_day: spend,
        cpc,
        ctr,
        orders_per_day: orders,
        aov,
        utm_source: "google",
        utm_medium: "cpc",
    };
    vec![
        meta(
            "120210000000001",
            "Diwali Prospecting - Broad",
            Role::Losing,
            9_604.0,
            6.83,
            0.011,
            0.075,
            1_960.0,
        ),
        meta(
            "120210000000002",
            "Bridal Lookalike 2%",
            Role::Losing,
            6_272.0,
            7.85,
            0.009,
            0.065,
            1_960.0,
        ),
        meta(
            "120210000000003",
            "Retargeting - Catalogue",
            Role::Profitable,
            686.0,
            10.50,
            0.021,
            0.44,
            2_500.0,
        ),
        google(
            "21000000001",
            "Performance Max - Jewellery",
            Role::TrackingBreak,
            8_036.0,
            6.43,
            0.008,
            0.59,
            1_960.0,
        ),
        google(
            "21000000002",
            "Search - Generic Gold",
            Role::Losing,
            3_626.0,
            9.28,
            0.034,
            0.055,
            1_960.0,
        ),
        google(
            "21000000003",
            "Display - Remarketing",
            Role::SpendSpike,
            1_721.0,
            3.47,
            0.004,
            0.05,
            1_960.0,
        ),
    ]
}

/// Share of a day's activity in each local hour (mean 1.0): quiet nights, an evening peak.
fn diurnal(local_hour: u32) -> f64 {
    const W: [f64; 24] = [
        0.45, 0.30, 0.22, 0.18, 0.18, 0.25, 0.45, 0.70, 0.90, 1.05, 1.15, 1.20, 1.25, 1.20, 1.15,
        1.15, 1.20, 1.30, 1.45, 1.60, 1.70, 1.65, 1.30, 0.82,
    ];
    // normalised so that a day sums to exactly 24 hour-shares
    W[(local_hour % 24) as usize] * 24.0 / W.iter().sum::<f64>()
}

/// Full-hour figures of one campaign.
#[derive(Debug, Clone, Default, PartialEq)]
struct HourFigures {
    spend: f64,
    impressions: u64,
    clicks: u64,
    expected_orders: f64,
}

/// Orders are placed per pool, each pool's total being its cumulative expected count rounded:
/// pool 0 holds every order the platforms track, pool 1 those lost to the tracking break. So the
/// platform conversions of any window are one rounding away from the calibration.
const POOLS: usize = 2;

/// An order placed by the simulator.
#[derive(Debug, Clone)]
struct SimOrder {
    ts: DateTime<Utc>,
    campaign: usize,
    amount: Decimal,
    seq: u64,
    refund_at: Option<DateTime<Utc>>,
}

/// The generator: sequential over hours from an epoch, deterministic for (seed, start).
pub struct DemoSource {
    cfg: DemoConfig,
    tz: Tz,
    campaigns: Vec<DemoCampaign>,
    start: DateTime<Utc>,
    epoch: DateTime<Utc>,
    /// Next hour (index from epoch) whose orders have not been generated.
    next_hour: i64,
    /// Cumulative expected orders per pool.
    cum_expected: Vec<f64>,
    /// Cumulative expected and placed orders per campaign.
    campaign_expected: Vec<f64>,
    assigned: Vec<f64>,
    next_threshold: Vec<f64>,
    threshold_rng: Vec<ChaCha8Rng>,
    orders: Vec<SimOrder>,
    /// Indexes into `orders` by hour (from epoch) of the order and of its refund.
    orders_by_hour: HashMap<i64, Vec<usize>>,
    refunds_by_hour: HashMap<i64, Vec<usize>>,
    order_seq: u64,
}

const CITIES: [&str; 8] = [
    "Mumbai",
    "Delhi",
    "Bengaluru",
    "Hyderabad",
    "Chennai",
    "Pune",
    "Kolkata",
    "Ahmedabad",
];

impl DemoSource {
    pub fn new(cfg: DemoConfig, tz: Tz) -> Self {
        let start = cfg.start.unwrap_or_else(Utc::now);
        let epoch = hour_floor(start, tz) - Duration::days(i64::from(cfg.backfill_days));
        let base = campaigns();
        let mut campaigns = base.clone();
        for k in 1..cfg.scale.max(1) {
            campaigns.extend(base.iter().map(|c| DemoCampaign {
                id: format!("{}{k:05}", c.id),
                name: format!("{} #{k}", c.name),
                ..c.clone()
            }));
        }
        let threshold_rng: Vec<ChaCha8Rng> = (0..POOLS)
            .map(|i| ChaCha8Rng::seed_from_u64(mix(cfg.seed, i as u64, u64::MAX)))
            .collect();
        Self {
            next_threshold: vec![0.5; POOLS],
            cum_expected: vec![0.0; POOLS],
            campaign_expected: vec![0.0; campaigns.len()],
            assigned: vec![0.0; campaigns.len()],
            threshold_rng,
            cfg,
            tz,
            campaigns,
            start,
            epoch,
            next_hour: 0,
            orders: Vec::new(),
            orders_by_hour: HashMap::new(),
            refunds_by_hour: HashMap::new(),
            order_seq: 0,
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn epoch(&self) -> DateTime<Utc> {
        self.epoch
    }

    fn hour_start(&self, h: i64) -> DateTime<Utc> {
        self.epoch + Duration::hours(h)
    }

    fn hour_index(&self, t: DateTime<Utc>) -> i64 {
        (t - self.epoch).num_seconds().div_euclid(3600)
    }

    fn figures(&self, c: usize, h: i64) -> HourFigures {
        let camp = &self.campaigns[c];
        let hs = self.hour_start(h);
        let local = hs.with_timezone(&self.tz);
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, c as u64, h as u64));
        let noise = lognormal(&mut rng, 0.18);
        let weekday = chrono::Datelike::weekday(&local).num_days_from_monday();
        let weekly = if weekday >= 5 { 1.08 } else { 0.97 };
        let mut spend =
            camp.spend_per_day / 24.0 * diurnal(chrono::Timelike::hour(&local)) * noise * weekly;
        if camp.role == Role::SpendSpike {
            let spike_start = hour_floor(self.start, self.tz)
                - Duration::hours(i64::from(self.cfg.spike_hours_ago));
            let spike_end = spike_start + Duration::hours(i64::from(self.cfg.spike_duration_hours));
            if hs >= spike_start && hs < spike_end {
                spend *= self.cfg.spike_factor;
            }
        }
        let cpc = camp.cpc * lognormal(&mut rng, 0.08);
        let clicks = (spend / cpc).round().max(0.0) as u64;
        let ctr = camp.ctr * lognormal(&mut rng, 0.05);
        let impressions = ((clicks as f64) / ctr).round() as u64;
        // Orders follow clicks, but a spike of junk traffic converts no better than usual days.
        let base_clicks =
            camp.spend_per_day / 24.0 * diurnal(chrono::Timelike::hour(&local)) / camp.cpc * weekly;
        let order_clicks = (clicks as f64).min(base_clicks * 1.5);
        let expected_orders = camp.orders_per_day / (camp.spend_per_day / camp.cpc) * order_clicks;
        HourFigures {
            spend: (spend * 100.0).round() / 100.0,
            impressions,
            clicks,
            expected_orders,
        }
    }

    fn tracking_broken_at(&self, c: usize, t: DateTime<Utc>) -> bool {
        self.campaigns[c].role == Role::TrackingBreak
            && t >= self.start - Duration::hours(i64::from(self.cfg.tracking_break_hours_ago))
    }

    /// Generate orders for every hour before `until_hour` (exclusive).
    fn generate_orders_until(&mut self, until_hour: i64) {
        while self.next_hour < until_hour {
            let h = self.next_hour;
            let hs = self.hour_start(h);
            let expected: Vec<f64> = (0..self.campaigns.len())
                .map(|c| self.figures(c, h).expected_orders)
                .collect();
            for (c, e) in expected.iter().enumerate() {
                self.campaign_expected[c] += e;
            }
            for pool in 0..POOLS {
                let members: Vec<usize> = (0..self.campaigns.len())
                    .filter(|&c| self.pool_of(c, hs) == pool)
                    .collect();
                let hour_expected: f64 = members.iter().map(|&c| expected[c]).sum();
                let before = self.cum_expected[pool];
                self.cum_expected[pool] += hour_expected;
                while self.cum_expected[pool] >= self.next_threshold[pool] && !members.is_empty() {
                    // place the order where the cumulative curve crosses the threshold
                    let frac = if hour_expected > 0.0 {
                        ((self.next_threshold[pool] - before) / hour_expected).clamp(0.0, 0.999)
                    } else {
                        0.5
                    };
                    let ts = hs + Duration::seconds((frac * 3600.0) as i64);
                    // which campaign: the one furthest behind its expected count (largest
                    // remainder), so every campaign's orders track its calibration too
                    let c = members
                        .iter()
                        .copied()
                        .max_by(|&a, &b| {
                            let owed = |x: usize| self.campaign_expected[x] - self.assigned[x];
                            owed(a).total_cmp(&owed(b))
                        })
                        .unwrap_or(members[0]);
                    self.assigned[c] += 1.0;
                    let rng = &mut self.threshold_rng[pool];
                    let amount = (self.campaigns[c].aov * lognormal(rng, 0.08)).round();
                    // one order in ten gets a partial refund (one item returned) one to three days later
                    let refund_at = if rng.random_bool(0.10) {
                        Some(ts + Duration::hours(rng.random_range(24..72)))
                    } else {
                        None
                    };
                    self.order_seq += 1;
                    let idx = self.orders.len();
                    self.orders_by_hour.entry(h).or_default().push(idx);
                    if let Some(r) = refund_at {
                        let rh = self.hour_index(r);
                        self.refunds_by_hour.entry(rh).or_default().push(idx);
                    }
                    self.orders.push(SimOrder {
                        ts,
                        campaign: c,
                        amount: Decimal::from_f64(amount).unwrap_or_default(),
                        seq: self.order_seq,
                        refund_at,
                    });
                    self.next_threshold[pool] += 1.0;
                }
            }
            self.next_hour += 1;
        }
    }

    /// Orders the platforms see (pool 0) and orders they miss because tracking broke (pool 1).
    fn pool_of(&self, c: usize, t: DateTime<Utc>) -> usize {
        usize::from(self.tracking_broken_at(c, t))
    }

    /// All observations for buckets in `[from, to)`, as of simulated time `now` (partial hours are
    /// scaled to the elapsed fraction and re-sent later, which the sink upserts).
    pub fn observations(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<Observation> {
        let h0 = self.hour_index(from).max(0);
        let h1 = self.hour_index(to - Duration::seconds(1)).max(h0);
        self.generate_orders_until(h1 + 1);
        let mut out = Vec::new();
        for h in h0..=h1 {
            let hs = self.hour_start(h);
            if hs > now {
                break;
            }
            let mut platform_clicks: std::collections::BTreeMap<(&str, &str), (u64, u64)> =
                Default::default();
            for c in 0..self.campaigns.len() {
                let (stat, hour_orders) = self.hour_stat(c, h, now);
                let camp = &self.campaigns[c];
                let clicks = stat.clicks;
                out.push(Observation::Campaign(stat));
                let e = platform_clicks
                    .entry((camp.utm_source, camp.utm_medium))
                    .or_default();
                e.0 += clicks;
                e.1 += hour_orders.len() as u64;
                for i in hour_orders {
                    out.push(self.order_observation(&self.orders[i]));
                }
            }
            // Refunds that happen in this hour.
            for &i in self
                .refunds_by_hour
                .get(&h)
                .map(|v| v.as_slice())
                .unwrap_or_default()
            {
                let o = &self.orders[i];
                if let Some(r) = o.refund_at
                    && r <= now
                {
                    out.push(self.refund_observation(o, r));
                }
            }
            // GA4-like funnel per traffic source.
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, 1_000, h as u64));
            for ((src, med), (clicks, purchases)) in platform_clicks {
                let sessions = (clicks as f64 * 1.22).round() as u64;
                let view = (sessions as f64 * 0.55 * lognormal(&mut rng, 0.05)).round() as u64;
                let atc = (view as f64 * 0.012 * lognormal(&mut rng, 0.2)).round() as u64;
                let checkout = ((atc as f64) * 0.45).round() as u64;
                let checkout = checkout.max(purchases);
                let atc = atc.max(checkout);
                for (stage, count) in [
                    ("session_start", sessions),
                    ("view_item", view),
                    ("add_to_cart", atc),
                    ("begin_checkout", checkout),
                    ("purchase", purchases),
                ] {
                    out.push(Observation::Funnel(RawFunnel {
                        ts: hs,
                        bucket: Bucket::Hour,
                        stage: stage.into(),
                        traffic_source: format!("{src} / {med}"),
                        count,
                    }));
                }
            }
        }
        out.extend(self.day_rollups(h0, h1, now));
        if !self.cfg.accounts.is_empty() || !self.cfg.shop {
            // a shard keeps its own accounts, and the shop only where it is owned
            out.retain(|o| match o {
                Observation::Campaign(c) => {
                    self.cfg.accounts.is_empty() || self.cfg.accounts.contains(&c.key.account)
                }
                _ => self.cfg.shop,
            });
        }
        out
    }

    /// One campaign-hour as of `now` (a partial hour scaled to its elapsed part), and the indexes
    /// of the shop orders placed in it so far.
    fn hour_stat(&self, c: usize, h: i64, now: DateTime<Utc>) -> (RawCampaignStat, Vec<usize>) {
        let hs = self.hour_start(h);
        let elapsed = ((now - hs).num_seconds() as f64 / 3600.0).clamp(0.0, 1.0);
        let f = self.figures(c, h);
        let camp = &self.campaigns[c];
        let hour_orders: Vec<usize> = self
            .orders_by_hour
            .get(&h)
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|&i| self.orders[i].campaign == c && self.orders[i].ts <= now)
            .collect();
        let tracked: Vec<&SimOrder> = hour_orders
            .iter()
            .map(|&i| &self.orders[i])
            .filter(|o| !self.tracking_broken_at(c, o.ts))
            .collect();
        let stat = RawCampaignStat {
            ts: hs,
            bucket: Bucket::Hour,
            key: CampaignKey {
                platform: camp.platform.into(),
                account: camp.account.into(),
                campaign_id: camp.id.clone(),
            },
            campaign_name: camp.name.clone(),
            spend: Decimal::from_f64(f.spend * elapsed)
                .unwrap_or_default()
                .round_dp(2),
            conversion_value: tracked.iter().map(|o| o.amount).sum(),
            account_currency: "INR".into(),
            impressions: (f.impressions as f64 * elapsed).floor() as u64,
            clicks: (f.clicks as f64 * elapsed).floor() as u64,
            conversions: tracked.len() as f64,
        };
        (stat, hour_orders)
    }

    /// Day rows (the sum of the day's hours so far) for every reporting day that hours
    /// `h0..=h1` touch, as the ad platforms report days beside hours.
    fn day_rollups(&self, h0: i64, h1: i64, now: DateTime<Utc>) -> Vec<Observation> {
        let mut days: Vec<chrono::NaiveDate> = (h0..=h1)
            .map(|h| self.hour_start(h))
            .filter(|hs| *hs <= now)
            .map(|hs| hs.with_timezone(&self.tz).date_naive())
            .collect();
        days.dedup();
        let mut out = Vec::new();
        // At scale (backfill batches shorter than a day) a day row is sent once, by the batch
        // holding the day's last hour or reaching `now`, not again by each of its batches.
        let once = self.batch_hours() < 24;
        for day in days {
            let start = crate::normalize::day_start(day, self.tz);
            let end = crate::normalize::day_start(day + chrono::Days::new(1), self.tz);
            let (a, b) = (self.hour_index(start).max(0), self.hour_index(end) - 1);
            if once && b > h1 && self.hour_start(h1 + 1) < now {
                continue;
            }
            for c in 0..self.campaigns.len() {
                let mut total: Option<RawCampaignStat> = None;
                for h in a..=b {
                    if self.hour_start(h) > now || h >= self.next_hour {
                        break;
                    }
                    let (s, _) = self.hour_stat(c, h, now);
                    match total.as_mut() {
                        None => total = Some(s),
                        Some(t) => {
                            t.spend += s.spend;
                            t.conversion_value += s.conversion_value;
                            t.impressions += s.impressions;
                            t.clicks += s.clicks;
                            t.conversions += s.conversions;
                        }
                    }
                }
                if let Some(mut t) = total {
                    t.ts = start;
                    t.bucket = Bucket::Day;
                    out.push(Observation::Campaign(t));
                }
            }
        }
        out
    }

    fn order_observation(&self, o: &SimOrder) -> Observation {
        let camp = &self.campaigns[o.campaign];
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, 2_000, o.seq));
        Observation::Order(RawOrder {
            ts: o.ts,
            event_id: format!("demo-{}", 100_000 + o.seq),
            order_id: format!("demo-{}", 100_000 + o.seq),
            kind: OrderKind::Order,
            amount: o.amount,
            currency: "INR".into(),
            customer_id: Some(format!("cust-{}", rng.random_range(1..400))),
            city: Some(CITIES[rng.random_range(0..CITIES.len())].into()),
            utm_source: Some(camp.utm_source.into()),
            utm_medium: Some(camp.utm_medium.into()),
            utm_campaign: Some(camp.id.clone()),
            items: rng.random_range(1..3),
        })
    }

    fn refund_observation(&self, o: &SimOrder, at: DateTime<Utc>) -> Observation {
        let Observation::Order(mut r) = self.order_observation(o) else {
            unreachable!("order_observation returns an order")
        };
        r.ts = at;
        r.event_id = format!("{}-refund-1", r.order_id);
        r.kind = OrderKind::Refund;
        r.amount = -(o.amount * Decimal::new(3, 1)).round();
        Observation::Order(r)
    }

    /// Hours per backfill batch: about 2,000 campaign rows, at most a day.
    fn batch_hours(&self) -> i64 {
        (2_000 / self.campaigns.len().max(1)).clamp(1, 24) as i64
    }

    /// The backfill's batches: about 2,000 campaign rows each (a day for the scenario's 6
    /// campaigns, an hour for 10,000), so a large backfill streams through the sink instead of
    /// piling up in memory. A day row is re-sent (upserted) by every day-long batch that touches
    /// its day; with hour-long batches (at scale) only by the last one.
    pub fn backfill_windows(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let hours_per_batch = self.batch_hours();
        let mut out = Vec::new();
        let mut from = self.epoch;
        while from < self.start {
            let to = (from + Duration::hours(hours_per_batch)).min(self.start);
            out.push((from, to));
            from = to;
        }
        out
    }

    /// Backfill, then (unless `backfill_only`) go live until shutdown.
    pub async fn run(mut self, ctx: SourceContext) {
        let name = ctx.name.clone();
        let stats = ctx.pipeline.telemetry().source(&name, "demo");
        let start = self.start;
        info!(source = %name, backfill_days = self.cfg.backfill_days, start = %start, "demo backfill");
        for (from, to) in self.backfill_windows() {
            if ctx.shutdown.is_cancelled() {
                return;
            }
            let poll = std::time::Instant::now();
            let obs = self.observations(from, to, start);
            let n = obs.len();
            match ctx.pipeline.emit(&name, obs, Some(start)).await {
                Ok(_) => stats.poll_ok(poll.elapsed(), n, Some(to)),
                Err(e) => {
                    warn!(source = %name, error = %e, "demo backfill batch not delivered");
                    stats.poll_failed(poll.elapsed());
                    return;
                }
            }
        }
        if self.cfg.backfill_only {
            info!(source = %name, "demo backfill done (backfill_only)");
            return;
        }
        let real0 = std::time::Instant::now();
        let mut last = start;
        let tick = StdDuration::from_secs_f64(self.cfg.tick_secs);
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let sim_now = start
                + Duration::milliseconds(
                    (real0.elapsed().as_secs_f64() * self.cfg.speedup * 1000.0) as i64,
                );
            // re-send the hour that was in progress at `last` (restated) up to now
            let from = hour_floor(last, self.tz);
            let poll = std::time::Instant::now();
            let obs = self.observations(from, sim_now + Duration::seconds(1), sim_now);
            let n = obs.len();
            match ctx.pipeline.emit(&name, obs, Some(sim_now)).await {
                Ok(_) => stats.poll_ok(poll.elapsed(), n, Some(sim_now)),
                Err(e) => {
                    warn!(source = %name, error = %e, "demo batch not delivered");
                    stats.poll_failed(poll.elapsed());
                }
            }
            last = sim_now;
        }
    }
}

/// SplitMix-style mixing of three integers into one seed.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A mean-one lognormal multiplier with log-standard deviation `sigma`.
fn lognormal(rng: &mut ChaCha8Rng, sigma: f64) -> f64 {
    // Box-Muller
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (sigma * z - sigma * sigma / 2.0).exp()
}
