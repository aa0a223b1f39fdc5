//! demo: a simulator of MOI's crisis, calibrated to the seed's baseline (ROI about -91%, CPA about
//! 27,899 INR, CR about 0.024%, revenue about 2,750 INR a day) with the faults SPEC lists:
//! money-losing campaigns, a campaign whose conversion tracking breaks, a spend spike, and one
//! profitable campaign.
//!
//! Determinism: every hour's figures come from an RNG seeded by (seed, campaign, hour index), and
//! orders are placed by thresholding the cumulative expected conversions, so the same `seed` and
//! `start` give the same rows whatever the tick timing, and totals track the calibration closely
//! even though individual orders are rare (about one a day).
//!
//! Order depth (issue 16): each order is split into lines of MOI's catalogue ([`CATALOGUE`]: 30
//! demi-fine jewellery SKUs with list prices before GST and unit costs in INR), with GST at 3% and
//! the discount that brings the list prices to the order's total, so the lines add up to the
//! order exactly and the seed's revenue stays what it is. Customers live in Indian metro and
//! tier-2 cities; about one order in four is a returning customer's. Each order has a journey of
//! one to four touches across Meta, Google and organic channels ending with the campaign that
//! sold it, and journeys that did not convert are emitted beside them (for the Markov model).
//! These draws use their own RNG streams, so the calibrated figures do not move.

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
use crate::normalize::{
    Observation, OrderOrigin, RawCampaignStat, RawFunnel, RawOrder, RawRegionStat, hour_floor,
};
use crate::records::{Bucket, CampaignKey, CostSource, OrderKind, OrderLine, TouchpointRow};
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
    /// Emit each campaign's day split over MOI's states (`region_stats`), as a platform's region
    /// report would: spend to the paisa, adding up to the campaign's day exactly.
    #[serde(default = "default_region_report")]
    pub region_report: bool,
}

fn default_region_report() -> bool {
    true
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
            region_report: default_region_report(),
        }
    }

    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut add = |k: &str, m: &str| p.push(Problem::new(k, m));
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
    // a campaign of one platform's demo account: [platform, account, utm_source, utm_medium]
    let of = |[platform, account, utm_source, utm_medium]: [&'static str; 4]| {
        move |id: &str, name: &str, role, spend, cpc, ctr, orders, aov| DemoCampaign {
            platform,
            account,
            id: id.into(),
            name: name.into(),
            role,
            spend_per_day: spend,
            cpc,
            ctr,
            orders_per_day: orders,
            aov,
            utm_source,
            utm_medium,
        }
    };
    let meta = of(["meta", "act_1029384756", "facebook", "paid_social"]);
    let google = of(["google_ads", "123-456-7890", "google", "cpc"]);
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
    /// Customer number and the position of this order in the customer's history (1: new).
    customer: u64,
    customer_order_index: u32,
}

/// One SKU of MOI's catalogue: list price before GST and unit cost, INR (`None`: the cost was
/// never entered, so the demo shows a SKU reported with a missing cost).
#[derive(Debug, Clone, Copy)]
pub struct Sku {
    pub sku: &'static str,
    pub product: &'static str,
    pub product_type: &'static str,
    pub list_price: i64,
    pub unit_cost: Option<i64>,
}

const fn sku(
    sku: &'static str,
    product: &'static str,
    product_type: &'static str,
    list_price: i64,
    unit_cost: Option<i64>,
) -> Sku {
    Sku {
        sku,
        product,
        product_type,
        list_price,
        unit_cost,
    }
}

/// MOI's catalogue: demi-fine jewellery (9KT gold, lab-grown diamonds, 925 silver, kundan) whose
/// prices fit the seed's order values (about 1,960 INR); costs are metal, stones and making.
pub const CATALOGUE: [Sku; 30] = [
    sku(
        "MOI-RG-001",
        "Solitaire Lab Diamond Ring 9KT",
        "Rings",
        2_890,
        Some(1_620),
    ),
    sku(
        "MOI-RG-002",
        "Twisted Band Ring 9KT Gold",
        "Rings",
        2_190,
        Some(1_310),
    ),
    sku(
        "MOI-RG-003",
        "Stackable Ring Gold Vermeil",
        "Rings",
        1_290,
        Some(610),
    ),
    sku(
        "MOI-RG-004",
        "Emerald Cocktail Ring Silver",
        "Rings",
        2_490,
        Some(1_180),
    ),
    sku(
        "MOI-RG-005",
        "Kundan Adjustable Ring",
        "Rings",
        1_090,
        Some(470),
    ),
    sku(
        "MOI-RG-006",
        "Couple Band Set Silver",
        "Rings",
        3_290,
        Some(1_560),
    ),
    sku(
        "MOI-ER-001",
        "Lab Diamond Stud Earrings 9KT",
        "Earrings",
        2_690,
        Some(1_590),
    ),
    sku(
        "MOI-ER-002",
        "Oxidised Silver Jhumkas",
        "Earrings",
        1_490,
        Some(640),
    ),
    sku(
        "MOI-ER-003",
        "Pearl Drop Earrings",
        "Earrings",
        1_790,
        Some(820),
    ),
    sku(
        "MOI-ER-004",
        "Gold Hoop Earrings 9KT",
        "Earrings",
        2_390,
        Some(1_450),
    ),
    sku(
        "MOI-ER-005",
        "Kundan Chandbali Earrings",
        "Earrings",
        1_990,
        Some(880),
    ),
    sku(
        "MOI-ER-006",
        "Silver Huggie Earrings",
        "Earrings",
        990,
        Some(420),
    ),
    sku(
        "MOI-NK-001",
        "Mangalsutra Pendant 9KT",
        "Necklaces",
        2_990,
        Some(1_780),
    ),
    sku(
        "MOI-NK-002",
        "Lab Diamond Solitaire Pendant",
        "Necklaces",
        2_790,
        Some(1_640),
    ),
    sku(
        "MOI-NK-003",
        "Layered Silver Chain Necklace",
        "Necklaces",
        1_890,
        Some(860),
    ),
    sku(
        "MOI-NK-004",
        "Temple Coin Necklace",
        "Necklaces",
        3_490,
        Some(1_720),
    ),
    sku(
        "MOI-NK-005",
        "Evil Eye Pendant",
        "Necklaces",
        1_190,
        Some(520),
    ),
    sku(
        "MOI-NK-006",
        "Initial Letter Pendant 9KT",
        "Necklaces",
        1_690,
        Some(990),
    ),
    sku(
        "MOI-BG-001",
        "Silver Kada Bangle",
        "Bangles",
        2_590,
        Some(1_240),
    ),
    sku(
        "MOI-BG-002",
        "CZ Tennis Bracelet",
        "Bangles",
        2_990,
        Some(1_380),
    ),
    sku(
        "MOI-BG-003",
        "Silver Charm Bracelet",
        "Bangles",
        1_590,
        Some(720),
    ),
    sku(
        "MOI-BG-004",
        "Nazariya Baby Bangles",
        "Bangles",
        1_390,
        Some(610),
    ),
    sku(
        "MOI-BG-005",
        "Kundan Bangle Pair",
        "Bangles",
        3_190,
        Some(1_490),
    ),
    sku(
        "MOI-NP-001",
        "Lab Diamond Nose Pin 9KT",
        "Nose Pins",
        1_490,
        Some(880),
    ),
    sku(
        "MOI-NP-002",
        "Silver Nose Ring",
        "Nose Pins",
        690,
        Some(290),
    ),
    sku(
        "MOI-AK-001",
        "Silver Anklet Pair",
        "Anklets",
        1_290,
        Some(590),
    ),
    sku("MOI-AK-002", "Ghungroo Anklet", "Anklets", 990, Some(430)),
    sku(
        "MOI-TR-001",
        "Silver Toe Ring Pair",
        "Anklets",
        590,
        Some(240),
    ),
    sku(
        "MOI-MT-001",
        "Kundan Maang Tikka",
        "Hair Jewellery",
        1_690,
        Some(740),
    ),
    sku("MOI-BR-001", "Pearl Saree Brooch", "Brooches", 790, None),
];

/// GST on jewellery, 3%: list prices are before it, order totals include it.
const GST_PERCENT: i64 = 3;

/// (city, state, weight): metros first, then tier-2 cities.
const CITY_WEIGHTS: [(&str, &str, u32); 16] = [
    ("Mumbai", "Maharashtra", 16),
    ("Delhi", "Delhi", 15),
    ("Bengaluru", "Karnataka", 13),
    ("Hyderabad", "Telangana", 9),
    ("Chennai", "Tamil Nadu", 8),
    ("Kolkata", "West Bengal", 6),
    ("Pune", "Maharashtra", 6),
    ("Ahmedabad", "Gujarat", 5),
    ("Jaipur", "Rajasthan", 4),
    ("Lucknow", "Uttar Pradesh", 3),
    ("Surat", "Gujarat", 3),
    ("Indore", "Madhya Pradesh", 3),
    ("Kochi", "Kerala", 3),
    ("Chandigarh", "Chandigarh", 2),
    ("Coimbatore", "Tamil Nadu", 2),
    ("Nagpur", "Maharashtra", 2),
];

/// A campaign's day split over the states of [`CITY_WEIGHTS`] by their weights: spend to the
/// paisa (rounded down) and impressions and clicks in whole units (rounded down), the last state
/// taking what is left, so the regions add up to the day exactly and none is negative. No
/// conversions: the platforms report none by region (Meta drops off-Meta actions with
/// `breakdowns=region`).
fn region_split(day: &RawCampaignStat) -> Vec<Observation> {
    let mut states: Vec<(&str, u32)> = Vec::new();
    for (_, state, w) in CITY_WEIGHTS {
        match states.iter_mut().find(|s| s.0 == state) {
            Some(s) => s.1 += w,
            None => states.push((state, w)),
        }
    }
    let total: u32 = states.iter().map(|s| s.1).sum();
    let (mut spend, mut impressions, mut clicks) = (day.spend, day.impressions, day.clicks);
    let n = states.len();
    states
        .into_iter()
        .enumerate()
        .map(|(i, (state, w))| {
            let (s, imp, clk) = if i + 1 == n {
                (spend, impressions, clicks)
            } else {
                let share = Decimal::from(w) / Decimal::from(total);
                (
                    (day.spend * share)
                        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero),
                    day.impressions * u64::from(w) / u64::from(total),
                    day.clicks * u64::from(w) / u64::from(total),
                )
            };
            spend -= s;
            impressions -= imp;
            clicks -= clk;
            Observation::Region(RawRegionStat {
                stat: RawCampaignStat {
                    spend: s,
                    impressions: imp,
                    clicks: clk,
                    conversion_value: Decimal::ZERO,
                    conversions: 0.0,
                    ..day.clone()
                },
                region: state.to_string(),
            })
        })
        .collect()
}

/// Share of orders placed by a returning customer.
const RETURNING_SHARE: f64 = 0.25;

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
    /// Orders so far per customer number (returning customers are drawn from these).
    customers: Vec<u32>,
}

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
            customers: Vec::new(),
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
                    // who: its own stream, so the calibrated draws above stay as they were
                    let mut crng =
                        ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, 3_000, self.order_seq));
                    let customer =
                        if !self.customers.is_empty() && crng.random_bool(RETURNING_SHARE) {
                            crng.random_range(0..self.customers.len())
                        } else {
                            self.customers.push(0);
                            self.customers.len() - 1
                        };
                    self.customers[customer] += 1;
                    let customer_order_index = self.customers[customer];
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
                        customer: customer as u64,
                        customer_order_index,
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
        let (h0, h1) = self.span(from, to);
        let mut out = self.hour_observations(h0, h1, now);
        out.extend(self.day_rollups(h0, h1, now, 0..self.campaigns.len()));
        self.keep_own(&mut out);
        out
    }

    /// Hour indexes of the buckets in `[from, to)`.
    fn span(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> (i64, i64) {
        let h0 = self.hour_index(from).max(0);
        (h0, self.hour_index(to - Duration::seconds(1)).max(h0))
    }

    /// A shard keeps its own accounts, and the shop only where it is owned.
    fn keep_own(&self, out: &mut Vec<Observation>) {
        if !self.cfg.accounts.is_empty() || !self.cfg.shop {
            out.retain(|o| match o {
                Observation::Campaign(c) => {
                    self.cfg.accounts.is_empty() || self.cfg.accounts.contains(&c.key.account)
                }
                _ => self.cfg.shop,
            });
        }
    }

    /// The hour rows of hours `h0..=h1` (campaigns, orders, their lines and journeys, refunds,
    /// funnel), without the day rows.
    fn hour_observations(&mut self, h0: i64, h1: i64, now: DateTime<Utc>) -> Vec<Observation> {
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
                    let o = &self.orders[i];
                    out.push(self.order_observation(o));
                    out.extend(self.order_lines(o, now).into_iter().map(Observation::Line));
                    out.extend(self.journey(o).into_iter().map(Observation::Touch));
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
                    // the lines again, with the refund (upserted by their key)
                    out.extend(self.order_lines(o, now).into_iter().map(Observation::Line));
                }
            }
            if self.cfg.shop {
                out.extend(
                    self.unconverted_journeys(h, now)
                        .into_iter()
                        .map(Observation::Touch),
                );
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

    /// Day rows (the sum of the day's hours so far) of `campaigns` for every reporting day that
    /// hours `h0..=h1` touch, as the ad platforms report days beside hours (with their regions).
    fn day_rollups(
        &self,
        h0: i64,
        h1: i64,
        now: DateTime<Utc>,
        campaigns: std::ops::Range<usize>,
    ) -> Vec<Observation> {
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
            for c in campaigns.clone() {
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
                    if self.cfg.region_report {
                        out.extend(region_split(&t));
                    }
                    out.push(Observation::Campaign(t));
                }
            }
        }
        out
    }

    fn order_observation(&self, o: &SimOrder) -> Observation {
        let camp = &self.campaigns[o.campaign];
        let (city, _) = self.city_of(o.customer);
        Observation::Order(RawOrder {
            ts: o.ts,
            event_id: format!("demo-{}", 100_000 + o.seq),
            order_id: format!("demo-{}", 100_000 + o.seq),
            kind: OrderKind::Order,
            amount: o.amount,
            currency: "INR".into(),
            origin: OrderOrigin {
                customer_id: Some(format!("cust-{}", 1 + o.customer)),
                city: Some(city.into()),
                utm_source: Some(camp.utm_source.into()),
                utm_medium: Some(camp.utm_medium.into()),
                utm_campaign: Some(camp.id.clone()),
            },
            items: self.basket(o).iter().map(|(_, q, _)| *q).sum(),
        })
    }

    /// A customer's city and state (fixed per customer, weighted towards the metros).
    fn city_of(&self, customer: u64) -> (&'static str, &'static str) {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, 5_000, customer));
        let total: u32 = CITY_WEIGHTS.iter().map(|c| c.2).sum();
        let mut pick = rng.random_range(0..total);
        for (city, state, w) in CITY_WEIGHTS {
            if pick < w {
                return (city, state);
            }
            pick -= w;
        }
        (CITY_WEIGHTS[0].0, CITY_WEIGHTS[0].1)
    }

    /// The SKUs of an order, their quantities and the order's price before GST: one or two
    /// catalogue items whose list prices reach the order's value (the difference is the
    /// discount), so the lines add up to the seed's order total.
    fn basket(&self, o: &SimOrder) -> Vec<(&'static Sku, u32, Decimal)> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, 4_000, o.seq));
        // net of GST: amount × 100 / 103, to the paisa
        let net = (o.amount * Decimal::from(100) / Decimal::from(100 + GST_PERCENT)).round_dp(2);
        let price = |s: &Sku| Decimal::from(s.list_price);
        // a SKU priced in [lo, lo × 1.3], else the cheapest above lo, else the dearest
        let pick = |rng: &mut ChaCha8Rng, lo: Decimal| -> (&'static Sku, u32) {
            let near: Vec<&'static Sku> = CATALOGUE
                .iter()
                .filter(|s| price(s) >= lo && price(s) <= lo * Decimal::new(13, 1))
                .collect();
            if !near.is_empty() {
                return (near[rng.random_range(0..near.len())], 1);
            }
            if let Some(s) = CATALOGUE
                .iter()
                .filter(|s| price(s) >= lo)
                .min_by_key(|s| s.list_price)
            {
                return (s, 1);
            }
            let dear = CATALOGUE
                .iter()
                .max_by_key(|s| s.list_price)
                .unwrap_or(&CATALOGUE[0]);
            let q = (lo / price(dear)).ceil();
            (
                dear,
                rust_decimal::prelude::ToPrimitive::to_u32(&q).unwrap_or(1),
            )
        };
        let mut items = Vec::new();
        if rng.random_bool(0.35) {
            // two items: a smaller piece first, then one that reaches the rest
            let small: Vec<&'static Sku> = CATALOGUE
                .iter()
                .filter(|s| {
                    price(s) >= net * Decimal::new(3, 1) && price(s) <= net * Decimal::new(6, 1)
                })
                .collect();
            if !small.is_empty() {
                let first = small[rng.random_range(0..small.len())];
                items.push((first, 1));
                items.push(pick(&mut rng, net - price(first)));
            }
        }
        if items.is_empty() {
            items.push(pick(&mut rng, net));
        }
        items.into_iter().map(|(s, q)| (s, q, net)).collect()
    }

    /// The order's lines (as of `now`: with the refund once it happened). Money adds up exactly:
    /// Σ (net sales + GST) = the order's amount; the discount is the list prices' excess over
    /// the order's net price, split by list value, to the paisa.
    fn order_lines(&self, o: &SimOrder, now: DateTime<Utc>) -> Vec<OrderLine> {
        let camp = &self.campaigns[o.campaign];
        let basket = self.basket(o);
        let Some(&(_, _, net)) = basket.first() else {
            return Vec::new();
        };
        let tax = o.amount - net;
        let list: Vec<Decimal> = basket
            .iter()
            .map(|(s, q, _)| Decimal::from(s.list_price) * Decimal::from(*q))
            .collect();
        let total_list: Decimal = list.iter().copied().sum();
        let weights: Vec<f64> = list
            .iter()
            .map(|l| rust_decimal::prelude::ToPrimitive::to_f64(&(l / total_list)).unwrap_or(0.0))
            .collect();
        let discounts = crate::attribution::split_revenue(total_list - net, &weights);
        let nets: Vec<Decimal> = list.iter().zip(&discounts).map(|(l, d)| l - d).collect();
        let net_weights: Vec<f64> = nets
            .iter()
            .map(|n| rust_decimal::prelude::ToPrimitive::to_f64(&(n / net)).unwrap_or(0.0))
            .collect();
        let taxes = crate::attribution::split_revenue(tax, &net_weights);
        // the refund (30% of the order, GST included) is a price adjustment on the first line:
        // nothing goes back to stock
        let refunded = o.refund_at.filter(|r| *r <= now).map(|_| {
            ((o.amount * Decimal::new(3, 1)).round() * Decimal::from(100)
                / Decimal::from(100 + GST_PERCENT))
            .round_dp(2)
        });
        let (city, state) = self.city_of(o.customer);
        let order_id = format!("demo-{}", 100_000 + o.seq);
        basket
            .iter()
            .enumerate()
            .map(|(i, (s, q, _))| OrderLine {
                ts: o.ts,
                day: o.ts.date_naive(),
                order_id: order_id.clone(),
                line_id: format!("{order_id}/{}", i + 1),
                sku: s.sku.into(),
                product: s.product.into(),
                variant: String::new(),
                product_type: s.product_type.into(),
                quantity: *q,
                unit_price: Decimal::from(s.list_price),
                discount: discounts[i],
                net_sales: nets[i],
                tax: taxes[i],
                shipping_charged: Decimal::ZERO,
                unit_cost: s.unit_cost.map(Decimal::from),
                cost_source: if s.unit_cost.is_some() {
                    CostSource::InventoryItem
                } else {
                    CostSource::Missing
                },
                refunded_quantity: 0,
                refunded_amount: if i == 0 {
                    refunded.unwrap_or_default()
                } else {
                    Decimal::ZERO
                },
                customer_id: Some(format!("cust-{}", 1 + o.customer)),
                new_customer: o.customer_order_index == 1,
                city: Some(city.into()),
                province: Some(state.into()),
                country: Some("India".into()),
                utm_campaign: Some(camp.id.clone()),
                currency: "INR".into(),
                source: String::new(),
            })
            .collect()
    }

    /// Channel, UTM source and medium of a campaign's touches.
    fn campaign_touch(&self, c: usize) -> (String, &'static str, &'static str, String) {
        let camp = &self.campaigns[c];
        (
            crate::attribution::channel_of(
                Some(camp.utm_source),
                Some(camp.utm_medium),
                Some(&camp.id),
                None,
            ),
            camp.utm_source,
            camp.utm_medium,
            camp.id.clone(),
        )
    }

    /// A journey's touches: up to three earlier touches (other campaigns, organic search and
    /// social, direct) over the two weeks before `end`, then `last` (a campaign index) or none.
    fn touches(
        &self,
        rng: &mut ChaCha8Rng,
        journey: &str,
        order: Option<&str>,
        end: DateTime<Utc>,
        last: Option<usize>,
    ) -> Vec<TouchpointRow> {
        let earlier = rng.random_range(0..4usize);
        let mut ts: Vec<DateTime<Utc>> = (0..earlier)
            .map(|_| end - Duration::minutes(rng.random_range(30..(14 * 24 * 60))))
            .collect();
        ts.sort();
        let mut out = Vec::new();
        let mut push = |ts: DateTime<Utc>,
                        channel: String,
                        src: Option<&str>,
                        med: Option<&str>,
                        camp: Option<String>,
                        referrer: Option<&str>| {
            out.push(TouchpointRow {
                ts,
                journey_id: journey.to_string(),
                order_id: order.map(str::to_string),
                position: out.len() as u32 + 1,
                channel,
                utm_source: src.map(str::to_string),
                utm_medium: med.map(str::to_string),
                utm_campaign: camp,
                referrer: referrer.map(str::to_string),
                landing_page: Some("/collections/all".into()),
                source: String::new(),
            });
        };
        for t in ts {
            match rng.random_range(0..10u32) {
                0..=4 => {
                    let c = rng.random_range(0..self.campaigns.len());
                    let (ch, src, med, camp) = self.campaign_touch(c);
                    push(t, ch, Some(src), Some(med), Some(camp), None);
                }
                5 | 6 => push(
                    t,
                    "organic:google.com".into(),
                    None,
                    None,
                    None,
                    Some("https://www.google.com/"),
                ),
                7 | 8 => push(
                    t,
                    "organic:instagram.com".into(),
                    None,
                    None,
                    None,
                    Some("https://www.instagram.com/"),
                ),
                _ => push(t, "direct".into(), None, None, None, None),
            }
        }
        if let Some(c) = last {
            let (ch, src, med, camp) = self.campaign_touch(c);
            push(
                end - Duration::minutes(rng.random_range(1..30)),
                ch,
                Some(src),
                Some(med),
                Some(camp),
                None,
            );
        }
        out
    }

    /// The journey that ended in order `o`: its last touch is the campaign that sold it.
    fn journey(&self, o: &SimOrder) -> Vec<TouchpointRow> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, 6_000, o.seq));
        let id = format!("demo-{}", 100_000 + o.seq);
        self.touches(&mut rng, &id, Some(&id), o.ts, Some(o.campaign))
    }

    /// Journeys of hour `h` that ended without an order (none to two an hour), as of `now`.
    fn unconverted_journeys(&self, h: i64, now: DateTime<Utc>) -> Vec<TouchpointRow> {
        let hs = self.hour_start(h);
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, 7_000, h as u64));
        let n = rng.random_range(0..3u32);
        let mut out = Vec::new();
        for k in 0..n {
            let end = hs + Duration::minutes(rng.random_range(0..60));
            let c = rng.random_range(0..self.campaigns.len());
            let id = format!("visit-{}-{k}", hs.format("%Y%m%d%H"));
            let touches = self.touches(&mut rng, &id, None, end, Some(c));
            out.extend(touches.into_iter().filter(|t| t.ts <= now));
        }
        out
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

    /// Whether a live tick covering `(last, now]` re-sends the day rows (with their regions).
    /// With a few campaigns, every tick does, so the day row follows its hours minute by
    /// minute. At scale (hour-long backfill batches, more than 83 campaigns) only the first
    /// tick and the tick that completes an hour do: a platform's daily report is polled less
    /// often than its hourly one, and at 10,002 campaigns re-sending every day and region row
    /// each second was 130,000 rows a second for figures that change by a minute's spend. The
    /// completed hour's day is sent with that hour's final figures, the day that ends with
    /// it included, so no day row is left short.
    fn day_rows_due(&self, first: bool, last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        first || self.batch_hours() >= 24 || hour_floor(last, self.tz) != hour_floor(now, self.tz)
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
            if !self
                .deliver(&ctx, &stats, (from, to, start), to, true)
                .await
            {
                return;
            }
        }
        if self.cfg.backfill_only {
            info!(source = %name, "demo backfill done (backfill_only)");
            return;
        }
        let real0 = std::time::Instant::now();
        let mut last = start;
        let mut first = true;
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
            let days = self.day_rows_due(first, last, sim_now);
            self.deliver(
                &ctx,
                &stats,
                (from, sim_now + Duration::seconds(1), sim_now),
                sim_now,
                days,
            )
            .await;
            last = sim_now;
            first = false;
        }
    }
}

/// Campaigns whose day rows (each with its 12 regions: 13 rows a campaign and day) are built and
/// handed over at a time: 4,992 rows a day, within one send (`pipeline::SEND_ROWS`). At 10,002
/// campaigns a day's rows are 130,000, which built at once were the collector's peak (146 MiB of
/// observations, heaptrack).
const ROLLUP_CAMPAIGNS: usize = 384;

impl DemoSource {
    /// One poll: the observations of `[from, to)` as of `now` (also the collector's clock)
    /// handed to the pipeline, the hour rows first and then the day rows [`ROLLUP_CAMPAIGNS`]
    /// campaigns at a time, and the poll counted: its rows, synced up to `until`, or its
    /// failure (logged). Without `days`, the hour rows only (see [`Self::day_rows_due`]).
    /// Whether it was delivered.
    async fn deliver(
        &mut self,
        ctx: &SourceContext,
        stats: &crate::telemetry::SourceStats,
        (from, to, now): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>),
        until: DateTime<Utc>,
        days: bool,
    ) -> bool {
        let poll = std::time::Instant::now();
        let (h0, h1) = self.span(from, to);
        let mut part = self.hour_observations(h0, h1, now);
        let mut n = 0;
        let mut next = 0;
        loop {
            self.keep_own(&mut part);
            n += part.len();
            if let Err(e) = ctx.pipeline.emit(&ctx.name, part, Some(now)).await {
                warn!(source = %ctx.name, error = %e, "demo batch not delivered");
                stats.poll_failed(poll.elapsed());
                return false;
            }
            if !days || next >= self.campaigns.len() {
                break;
            }
            let end = (next + ROLLUP_CAMPAIGNS).min(self.campaigns.len());
            part = self.day_rollups(h0, h1, now, next..end);
            next = end;
        }
        stats.poll_ok(poll.elapsed(), n, Some(until));
        true
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Normalizer;
    use crate::records::Record;
    use std::sync::Arc;

    fn source(scale: u32) -> DemoSource {
        let mut cfg = DemoConfig::new("demo");
        cfg.scale = scale;
        cfg.backfill_days = 1;
        cfg.start = Some("2026-11-20T08:10:00Z".parse().unwrap());
        DemoSource::new(cfg, chrono_tz::UTC)
    }

    /// A source context whose pipeline hands its sends to the returned receiver (queue of
    /// `capacity` sends), its cursors in the returned folder.
    fn sink_context(
        capacity: usize,
    ) -> (
        SourceContext,
        tokio::sync::mpsc::Receiver<crate::sinks::questdb::Batch>,
        tempfile::TempDir,
    ) {
        let (handle, rx) = crate::sinks::questdb::SinkHandle::for_test(capacity);
        let dir = tempfile::tempdir().unwrap();
        let ctx = SourceContext::test(
            "demo",
            8,
            Some(handle),
            Arc::new(crate::sources::cursor::CursorStore::new(dir.path())),
        );
        (ctx, rx, dir)
    }

    /// Day rows built a few hundred campaigns at a time are the rows built at once, in order.
    #[test]
    fn day_rows_in_campaign_chunks_are_the_day_rows_of_every_campaign() {
        let mut src = source(100);
        let now = src.start();
        let (h0, h1) = src.span(src.epoch(), now);
        src.generate_orders_until(h1 + 1);
        let n = src.campaigns.len();
        assert_eq!(n, 600);
        let whole = src.day_rollups(h0, h1, now, 0..n);
        let mut chunks = Vec::new();
        for a in (0..n).step_by(ROLLUP_CAMPAIGNS) {
            chunks.extend(src.day_rollups(h0, h1, now, a..(a + ROLLUP_CAMPAIGNS).min(n)));
        }
        // the window touches two UTC days (from 08:00 the day before to 08:10): each campaign's
        // two day rows with 12 regions each
        assert_eq!(whole.len(), 600 * 2 * 13);
        let dbg = |v: &[Observation]| v.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>();
        let (mut a, mut b) = (dbg(&whole), dbg(&chunks));
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    /// A poll hands over what `observations` returns, none of it in a send larger than
    /// `SEND_ROWS`, and the day rows apart from the hour rows.
    #[tokio::test]
    async fn a_poll_hands_over_its_rows_in_bounded_sends() {
        let (ctx, mut rx, _dir) = sink_context(1024);
        let stats = ctx.pipeline.telemetry().source("demo", "demo");
        let mut src = source(100);
        let (from, now) = (src.epoch(), src.start());
        assert!(src.deliver(&ctx, &stats, (from, now, now), now, true).await);
        drop(ctx);
        let mut sends = Vec::new();
        while let Ok(b) = rx.try_recv() {
            sends.push(b);
        }
        assert!(
            sends
                .iter()
                .all(|b| b.rows().len() <= crate::pipeline::SEND_ROWS)
        );
        let got: Vec<String> = sends
            .iter()
            .flat_map(|b| b.rows())
            .map(|r| format!("{r:?}"))
            .collect();
        // the same rows as the whole poll built at once and normalized
        let mut twin = source(100);
        let normalizer = Normalizer::new(chrono_tz::UTC, "INR", Default::default());
        let want: Vec<Record> = twin
            .observations(from, now, now)
            .into_iter()
            .map(|o| normalizer.normalize_at("demo", o, now).unwrap())
            .collect();
        let day_rows = want
            .iter()
            .filter(|r| matches!(r, Record::CampaignStats(c) if c.bucket == Bucket::Day))
            .count();
        assert_eq!(day_rows, 600 * 2);
        let mut want: Vec<String> = want.iter().map(|r| format!("{r:?}")).collect();
        let mut got_sorted = got.clone();
        want.sort();
        got_sorted.sort();
        assert_eq!(got_sorted.len(), want.len());
        assert!(got_sorted == want, "the same rows");
        // 600 campaigns' day rows in chunks of 384 and 216 campaigns: at least two sends hold
        // day rows only
        let day_only = sends
            .iter()
            .filter(|b| {
                b.rows().iter().all(|r| {
                    matches!(r, Record::CampaignStats(c) if c.bucket == Bucket::Day)
                        || matches!(r, Record::RegionStats(_))
                })
            })
            .count();
        assert!(day_only >= 2, "{day_only} sends of day rows");
    }

    /// Live at scale, day rows go out on the first tick and on the tick that completes an
    /// hour, with the figures of the hours as of that tick; the ticks in between send hours
    /// only. With the scenario's 6 campaigns every tick sends them.
    #[tokio::test]
    async fn live_day_rows_at_scale_follow_completed_hours() {
        let (ctx, mut rx, _dir) = sink_context(1 << 16);
        let stats = ctx.pipeline.telemetry().source("demo", "demo");
        let mut src = source(100);
        let start = src.start(); // 08:10 UTC
        let minute = Duration::minutes(1);
        // ticks a simulated minute apart from 08:10 to 09:02: the hour completes at 09:00
        let mut last = start;
        let mut day_rows_by_tick = Vec::new();
        for k in 1..=52 {
            let now = start + minute * k;
            let days = src.day_rows_due(k == 1, last, now);
            let from = hour_floor(last, chrono_tz::UTC);
            assert!(src.deliver(&ctx, &stats, (from, now, now), now, days).await);
            let mut day: Vec<crate::records::CampaignStat> = Vec::new();
            while let Ok(b) = rx.try_recv() {
                for r in b.rows() {
                    if let Record::CampaignStats(c) = r
                        && c.bucket == Bucket::Day
                    {
                        day.push(c.clone());
                    }
                }
            }
            if k == 50 {
                // 09:00: each campaign's day row is the sum of its hour rows of the day as of
                // this tick (the 08:00 hour complete, 09:00's first minute), none left short
                assert_eq!(day.len(), 600);
                let day0: DateTime<Utc> = "2026-11-20T00:00:00Z".parse().unwrap();
                let mut want: HashMap<String, Decimal> = HashMap::new();
                for o in source(100).observations(day0, now + Duration::seconds(1), now) {
                    if let Observation::Campaign(c) = o
                        && c.bucket == Bucket::Hour
                        && c.ts >= day0
                    {
                        *want.entry(c.key.campaign_id.clone()).or_default() += c.spend;
                    }
                }
                for d in &day {
                    assert_eq!(d.ts, day0);
                    assert_eq!(Some(&d.spend), want.get(&d.key.campaign_id), "{:?}", d.key);
                }
            }
            day_rows_by_tick.push(day.len());
            last = now;
        }
        let sent: Vec<usize> = day_rows_by_tick
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(sent, vec![1, 50], "ticks that sent day rows");
        let few = source(1);
        assert!(few.day_rows_due(false, start, start + minute));
    }
}
