//! Current state: the recent history the collector keeps in memory (retention_days of hourly
//! buckets per campaign, orders and funnel counts, upserted by the same keys as QuestDB), and the
//! KPI [`Snapshot`] computed from it for `/metrics`.
//!
//! The whole-business rolling windows reach further back than the per-campaign history (the
//! seed's 10-day view, 30 days): hour buckets older than `retention_days` are folded into one
//! business total per hour (720 cells for 30 days, whatever the number of campaigns) instead of
//! being kept per campaign, and orders are kept as long as the longest window.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet};

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

/// A [`Cell`] as the columns hold it; `None` for a cell that does not fit them.
fn pack(c: &Cell) -> Option<(i64, i64, [u8; 2], u32, u32)> {
    let m = |d: Decimal| {
        i64::try_from(d.mantissa())
            .ok()
            .map(|m| (m, d.scale() as u8))
    };
    let ((spend, s1), (value, s2)) = (m(c.spend)?, m(c.conversion_value)?);
    Some((
        spend,
        value,
        [s1, s2],
        u32::try_from(c.impressions).ok()?,
        u32::try_from(c.clicks).ok()?,
    ))
}

/// Scale byte of a cell kept whole in [`Cells::wide`] (a real scale is at most 28).
const WIDE: u8 = u8::MAX;

/// A value with a narrower form that holds some of its values exactly: `i32` for `i64` (spend
/// in paise or cents, hour keys as offsets), `u16` for `u32` (an hour's impressions and clicks
/// of most campaigns), `f32` for `f64` (whole counts below 2^24, halves and quarters).
trait Narrow: Copy {
    type Wide: Copy;
    /// The narrow value that reads back as `w` bit for bit, if there is one.
    fn narrow(w: Self::Wide) -> Option<Self>;
    fn widen(self) -> Self::Wide;
}

impl Narrow for i32 {
    type Wide = i64;
    fn narrow(w: i64) -> Option<i32> {
        i32::try_from(w).ok()
    }
    fn widen(self) -> i64 {
        i64::from(self)
    }
}

impl Narrow for u16 {
    type Wide = u32;
    fn narrow(w: u32) -> Option<u16> {
        u16::try_from(w).ok()
    }
    fn widen(self) -> u32 {
        u32::from(self)
    }
}

impl Narrow for f32 {
    type Wide = f64;
    fn narrow(w: f64) -> Option<f32> {
        let n = w as f32;
        (f64::from(n).to_bits() == w.to_bits()).then_some(n)
    }
    fn widen(self) -> f64 {
        f64::from(self)
    }
}

/// A column held in its narrow type while every value in it has a narrow form, else in the
/// wide one: the whole column is widened, exactly, at the first value that has none (and is
/// narrow again once emptied). A value read back is the one stored.
#[derive(Debug)]
enum Col<N: Narrow> {
    Narrow(Vec<N>),
    Wide(Vec<N::Wide>),
}

impl<N: Narrow> Default for Col<N> {
    fn default() -> Self {
        Col::Narrow(Vec::new())
    }
}

impl<N: Narrow> Col<N> {
    fn get(&self, i: usize) -> N::Wide {
        match self {
            Col::Narrow(v) => v[i].widen(),
            Col::Wide(v) => v[i],
        }
    }

    /// The narrow form of `x`, or `None` after widening the column (same capacity) when `x`
    /// has none.
    fn fit(&mut self, x: N::Wide) -> Option<N> {
        if let Col::Narrow(v) = self {
            if let Some(n) = N::narrow(x) {
                return Some(n);
            }
            let mut w = Vec::with_capacity(v.capacity());
            w.extend(v.iter().map(|n| n.widen()));
            *self = Col::Wide(w);
        }
        None
    }

    fn set(&mut self, i: usize, x: N::Wide) {
        match (self.fit(x), self) {
            (Some(n), Col::Narrow(v)) => v[i] = n,
            (_, Col::Wide(v)) => v[i] = x,
            (None, Col::Narrow(_)) => unreachable!("fit widens a column a value does not fit"),
        }
    }

    fn insert(&mut self, i: usize, x: N::Wide) {
        match (self.fit(x), self) {
            (Some(n), Col::Narrow(v)) => v.insert(i, n),
            (_, Col::Wide(v)) => v.insert(i, x),
            (None, Col::Narrow(_)) => unreachable!("fit widens a column a value does not fit"),
        }
    }

    fn reserve_exact(&mut self, more: usize) {
        match self {
            Col::Narrow(v) => v.reserve_exact(more),
            Col::Wide(v) => v.reserve_exact(more),
        }
    }

    /// Removes the first `n` values; an emptied column is narrow again.
    fn drain_front(&mut self, n: usize) {
        let empty = match self {
            Col::Narrow(v) => {
                v.drain(..n);
                v.is_empty()
            }
            Col::Wide(v) => {
                v.drain(..n);
                v.is_empty()
            }
        };
        if empty && matches!(self, Col::Wide(_)) {
            *self = Col::default();
        }
    }

    #[cfg(test)]
    fn is_wide(&self) -> bool {
        matches!(self, Col::Wide(_))
    }
}

/// Time-sorted buckets in columns: the compact form of a `BTreeMap<i64, Cell>` (22 bytes a
/// bucket while the columns are narrow, instead of about 90). Keys are offsets from the first
/// key stored (`base`); money is kept exact as each amount's decimal mantissa and scale (the
/// same value `rust_decimal` holds, so sums and their scales are unchanged). A column whose
/// value does not fit its narrow type is widened whole ([`Col`]); a cell whose
/// mantissa does not fit in an `i64` or whose counts do not fit in a `u32` is kept whole in
/// `wide` (counted by [`Store::wide_cells`]), never rounded.
#[derive(Debug, Default)]
struct Cells {
    /// Key offsets from `base`, ascending: hour start (unix seconds) or day number.
    keys: Col<i32>,
    /// The first key stored (keys are held as `key - base`).
    base: i64,
    spend: Col<i32>,
    value: Col<i32>,
    /// Scales of `spend` and `value`; [`WIDE`] when the cell is in `wide`.
    scales: Vec<[u8; 2]>,
    impressions: Col<u16>,
    clicks: Col<u16>,
    conversions: Col<f32>,
    wide: BTreeMap<i64, Cell>,
}

impl Cells {
    fn len(&self) -> usize {
        self.scales.len()
    }

    fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    fn key(&self, i: usize) -> i64 {
        self.base + self.keys.get(i)
    }

    fn cell(&self, i: usize) -> Cell {
        let [s1, s2] = self.scales[i];
        if s1 == WIDE {
            return self.wide.get(&self.key(i)).copied().unwrap_or_default();
        }
        Cell {
            spend: Decimal::new(self.spend.get(i), u32::from(s1)),
            conversion_value: Decimal::new(self.value.get(i), u32::from(s2)),
            impressions: u64::from(self.impressions.get(i)),
            clicks: u64::from(self.clicks.get(i)),
            conversions: self.conversions.get(i),
        }
    }

    /// Where `k` is (`Ok`) or would go (`Err`), as `binary_search` says.
    fn search(&self, k: i64) -> Result<usize, usize> {
        let d = k.saturating_sub(self.base);
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.keys.get(mid).cmp(&d) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    fn get(&self, k: i64) -> Option<Cell> {
        self.search(k).ok().map(|i| self.cell(i))
    }

    fn put(&mut self, i: usize, c: &Cell) {
        let k = self.key(i);
        let (spend, value, scales, impressions, clicks) = match pack(c) {
            Some(p) => {
                self.wide.remove(&k);
                p
            }
            None => {
                self.wide.insert(k, *c);
                (0, 0, [WIDE, WIDE], 0, 0)
            }
        };
        self.spend.set(i, spend);
        self.value.set(i, value);
        self.scales[i] = scales;
        self.impressions.set(i, impressions);
        self.clicks.set(i, clicks);
        self.conversions.set(i, c.conversions);
    }

    /// Upsert: a bucket already present is replaced.
    fn insert(&mut self, k: i64, c: Cell) {
        if self.is_empty() {
            self.base = k;
        }
        let i = match self.search(k) {
            Ok(i) => i,
            Err(i) => {
                if self.scales.len() == self.scales.capacity() {
                    // grow by an eighth (at least 8), not by doubling: a campaign's history
                    // is a few hundred buckets and thousands of campaigns hold one each
                    let more = (self.len() / 8).max(8);
                    self.keys.reserve_exact(more);
                    self.spend.reserve_exact(more);
                    self.value.reserve_exact(more);
                    self.scales.reserve_exact(more);
                    self.impressions.reserve_exact(more);
                    self.clicks.reserve_exact(more);
                    self.conversions.reserve_exact(more);
                }
                self.keys.insert(i, k.saturating_sub(self.base));
                self.spend.insert(i, 0);
                self.value.insert(i, 0);
                self.scales.insert(i, [0, 0]);
                self.impressions.insert(i, 0);
                self.clicks.insert(i, 0);
                self.conversions.insert(i, 0.0);
                i
            }
        };
        self.put(i, &c);
    }

    /// Index of the first bucket at or after `k`.
    fn lower(&self, k: i64) -> usize {
        match self.search(k) {
            Ok(i) | Err(i) => i,
        }
    }

    /// Buckets with keys in `[from, to)`, in order.
    fn range(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, Cell)> + '_ {
        let (a, b) = (self.lower(from), self.lower(to));
        (a..b.max(a)).map(|i| (self.key(i), self.cell(i)))
    }

    fn iter(&self) -> impl Iterator<Item = (i64, Cell)> + '_ {
        (0..self.len()).map(|i| (self.key(i), self.cell(i)))
    }

    /// Columns widened beyond their narrow type (for the tests).
    #[cfg(test)]
    fn widened(&self) -> [bool; 6] {
        [
            self.keys.is_wide(),
            self.spend.is_wide(),
            self.value.is_wide(),
            self.impressions.is_wide(),
            self.clicks.is_wide(),
            self.conversions.is_wide(),
        ]
    }

    /// Remove the buckets before `k`, handing each to `f` (oldest first).
    fn drain_before(&mut self, k: i64, mut f: impl FnMut(i64, Cell)) {
        let n = self.lower(k);
        if n == 0 {
            return;
        }
        for i in 0..n {
            f(self.key(i), self.cell(i));
            if self.scales[i][0] == WIDE {
                let k = self.key(i);
                self.wide.remove(&k);
            }
        }
        self.keys.drain_front(n);
        self.spend.drain_front(n);
        self.value.drain_front(n);
        self.scales.drain(..n);
        self.impressions.drain_front(n);
        self.clicks.drain_front(n);
        self.conversions.drain_front(n);
    }
}

/// Day key of a [`Cells`] of day buckets.
fn day_key(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce())
}

fn key_day(k: i64) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(k).ok()?)
}

#[derive(Debug, Default)]
struct CampaignHistory {
    name: String,
    /// Hour buckets by start (unix seconds).
    hours: Cells,
    /// Day buckets by [`day_key`], for sources that only report days (`None` for the others:
    /// an empty [`Cells`] is 248 bytes).
    days: Option<Box<Cells>>,
    /// Running totals of the hour buckets per local day of the store's timezone (by
    /// [`day_key`], ascending) and how many buckets each holds: updated on every upsert and
    /// prune, so a snapshot reads them instead of re-summing the history (empty without a
    /// timezone, see [`Store::with_timezone`]).
    day_sums: Vec<(i64, Cell, u32)>,
    /// The hour buckets summed over each of [`CAMPAIGN_WINDOWS`] ending at the current hour of
    /// the last prune, kept as buckets are upserted and dropped, so a snapshot at that hour reads
    /// them instead of re-summing a week of buckets (`None` before the first prune, without a
    /// timezone, and for ads).
    trailing: Option<Box<Trailing>>,
}

/// A running sum of hour buckets that buckets are added to and taken back out of as they are
/// upserted and dropped. Money and counts are exact; conversions are summed in fixed point
/// (units of 2^-64, see [`fixed`]) so that taking a bucket back out leaves no floating-point
/// residue however often its hour is restated (an `f64` running sum would drift, and a zero
/// could come back as 1e-17).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Acc {
    spend: Decimal,
    conversion_value: Decimal,
    impressions: u64,
    clicks: u64,
    /// Sum of [`fixed`] of the conversions (wrapping: adding and taking back out cancel exactly).
    conversions: i128,
    /// Buckets summed.
    buckets: u32,
}

/// `x` in units of 2^-64 (exact for every value from 2^-11 to 2^63 with a 53-bit mantissa, so
/// for any conversion count a platform reports; finer bits are truncated the same way each
/// time, so they cancel too). Conversions are finite and non-negative (`normalize`).
fn fixed(x: f64) -> i128 {
    (x * 18_446_744_073_709_551_616.0) as i128
}

impl Acc {
    fn add(&mut self, c: &Cell) {
        self.spend += c.spend;
        self.conversion_value += c.conversion_value;
        self.impressions += c.impressions;
        self.clicks += c.clicks;
        self.conversions = self.conversions.wrapping_add(fixed(c.conversions));
        self.buckets += 1;
    }

    fn sub(&mut self, c: &Cell) {
        self.spend -= c.spend;
        self.conversion_value -= c.conversion_value;
        self.impressions = self.impressions.saturating_sub(c.impressions);
        self.clicks = self.clicks.saturating_sub(c.clicks);
        self.conversions = self.conversions.wrapping_sub(fixed(c.conversions));
        self.buckets = self.buckets.saturating_sub(1);
    }

    fn totals(&self) -> Totals {
        Totals {
            spend: self.spend,
            conversion_value: self.conversion_value,
            revenue: Decimal::ZERO,
            impressions: self.impressions,
            clicks: self.clicks,
            // one rounding, of the exact sum
            conversions: self.conversions as f64 / 18_446_744_073_709_551_616.0,
        }
    }
}

/// One campaign's hour buckets summed over each of [`CAMPAIGN_WINDOWS`] ending at hour `at`.
#[derive(Debug, Clone, PartialEq)]
struct Trailing {
    at: i64,
    sums: [Acc; CAMPAIGN_WINDOWS.len()],
}

impl Trailing {
    /// Sum the windows ending at `at` afresh.
    fn sum(hours: &Cells, at: i64) -> Self {
        let mut t = Trailing {
            at,
            sums: [Acc::default(); CAMPAIGN_WINDOWS.len()],
        };
        let from = CAMPAIGN_WINDOWS
            .iter()
            .map(|w| w.start(at))
            .min()
            .unwrap_or(at);
        for (k, c) in hours.range(from, at.saturating_add(1)) {
            t.apply(k, None, Some(&c));
        }
        t
    }

    /// The bucket of hour `t` went from `old` to `new` (`None`: absent).
    fn apply(&mut self, t: i64, old: Option<&Cell>, new: Option<&Cell>) {
        for (w, sum) in CAMPAIGN_WINDOWS.iter().zip(self.sums.iter_mut()) {
            if t >= w.start(self.at) && t <= self.at {
                if let Some(o) = old {
                    sum.sub(o);
                }
                if let Some(n) = new {
                    sum.add(n);
                }
            }
        }
    }
}

impl Cell {
    fn add(&mut self, o: &Cell) {
        self.spend += o.spend;
        self.conversion_value += o.conversion_value;
        self.impressions += o.impressions;
        self.clicks += o.clicks;
        self.conversions += o.conversions;
    }

    fn sub(&mut self, o: &Cell) {
        self.spend -= o.spend;
        self.conversion_value -= o.conversion_value;
        self.impressions = self.impressions.saturating_sub(o.impressions);
        self.clicks = self.clicks.saturating_sub(o.clicks);
        self.conversions -= o.conversions;
    }
}

/// [`day_key`] of the local day (in `tz`) an hour bucket starting at `t` belongs to.
fn local_day_key(t: i64, tz: Tz) -> i64 {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| day_key(d.with_timezone(&tz).date_naive()))
        .unwrap_or(i64::MIN)
}

impl CampaignHistory {
    /// The day buckets, made at the first.
    fn days_mut(&mut self) -> &mut Cells {
        self.days.get_or_insert_with(Box::default)
    }

    /// Drop the day buckets before day key `cut` (and the day columns once empty).
    fn drop_days_before(&mut self, cut: i64) {
        if let Some(d) = &mut self.days {
            d.drain_before(cut, |_, _| {});
            if d.is_empty() {
                self.days = None;
            }
        }
    }

    fn day_sum(&mut self, t: i64, tz: Tz) -> &mut (i64, Cell, u32) {
        let d = local_day_key(t, tz);
        let i = match self.day_sums.binary_search_by_key(&d, |e| e.0) {
            Ok(i) => i,
            Err(i) => {
                // a day or two more, not double: retention_days + 1 days are kept at most
                if self.day_sums.len() == self.day_sums.capacity() {
                    self.day_sums.reserve_exact(2);
                }
                self.day_sums.insert(i, (d, Cell::default(), 0));
                i
            }
        };
        &mut self.day_sums[i]
    }

    /// Upsert an hour bucket, keeping its day's and its trailing windows' running totals; the
    /// bucket it replaced.
    fn put_hour(&mut self, t: i64, cell: Cell, tz: Option<Tz>) -> Option<Cell> {
        let old = self.hours.get(t);
        self.hours.insert(t, cell);
        if let Some(tr) = &mut self.trailing {
            tr.apply(t, old.as_ref(), Some(&cell));
        }
        if let Some(tz) = tz {
            let e = self.day_sum(t, tz);
            match old {
                Some(o) => e.1.sub(&o),
                None => e.2 += 1,
            }
            e.1.add(&cell);
        }
        old
    }

    /// Drop the hour buckets before `cut`, handing each to `f`, and take them out of their
    /// days' totals (a day left without buckets goes, so no rounding residue of the f64
    /// conversions outlives it).
    fn drop_hours_before(&mut self, cut: i64, tz: Option<Tz>, mut f: impl FnMut(i64, Cell)) {
        let mut dropped = Vec::new();
        let trailing = &mut self.trailing;
        self.hours.drain_before(cut, |t, c| {
            if let Some(tr) = trailing {
                tr.apply(t, Some(&c), None);
            }
            if tz.is_some() {
                dropped.push((t, c));
            }
            f(t, c);
        });
        if let Some(tz) = tz {
            for (t, c) in dropped {
                let e = self.day_sum(t, tz);
                e.1.sub(&c);
                e.2 = e.2.saturating_sub(1);
            }
            self.day_sums.retain(|e| e.2 > 0);
        }
    }

    /// Rebuild the day totals from the hour buckets (the timezone changed).
    fn rebuild_day_sums(&mut self, tz: Option<Tz>) {
        self.day_sums.clear();
        if let Some(tz) = tz {
            let hours: Vec<(i64, Cell)> = self.hours.iter().collect();
            for (t, c) in hours {
                let e = self.day_sum(t, tz);
                e.1.add(&c);
                e.2 += 1;
            }
        }
    }
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

impl SnapshotSettings {
    /// INR in `tz` with the default margin, a 3-hour loss window and a 24-hour tracking window:
    /// the settings of the benchmarks and of most tests (MOI's shop reports in India).
    pub fn inr(tz: Tz, roi_target: Option<f64>) -> Self {
        Self {
            tz,
            currency: "INR".into(),
            margin: Margin::default(),
            loss_rate_window_hours: 3,
            tracking_window_hours: 24,
            roi_target,
        }
    }
}

/// Same key as the `funnel` table's DEDUP key: (bucket start, bucket, stage, traffic source, source).
type FunnelKey = (i64, Bucket, String, String, String);

/// In-memory recent history.
#[derive(Debug)]
pub struct Store {
    campaigns: HashMap<CampaignKey, Box<CampaignHistory>>,
    orders: BTreeMap<(DateTime<Utc>, String), OrderLite>,
    funnel: HashMap<FunnelKey, (NaiveDate, u64)>,
    /// Per-campaign history kept (`general.retention_days`).
    retention: Duration,
    /// History the whole-business windows need: the longest of [`TOTAL_WINDOWS`] plus the
    /// current partial hour, or nothing when `retention` is zero (a throwaway store).
    window_retention: Duration,
    /// Business totals (all campaigns) per hour bucket older than `hour_cutoff`.
    window_hours: BTreeMap<i64, Cell>,
    /// Business totals (all campaigns) per hour bucket the campaigns' history holds, kept as
    /// buckets are upserted and dropped: the whole-business windows read these (at most 720
    /// hours) instead of every campaign's buckets.
    hour_totals: BTreeMap<i64, Acc>,
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
    /// The reporting timezone the per-day totals are kept in (`None`: summed per snapshot).
    tz: Option<Tz>,
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
            hour_totals: BTreeMap::new(),
            archived: HashMap::new(),
            hour_cutoff: i64::MIN,
            stale_restatements: 0,
            ads: HashMap::new(),
            tz: None,
            profit: Default::default(),
        }
    }

    /// The profit KPIs' costs (`[profit]`).
    pub fn with_profit(mut self, cfg: crate::profit::ProfitConfig) -> Self {
        self.profit = crate::profit::live::ProfitLedger::new(cfg);
        self
    }

    /// Keep each campaign's (and ad's) totals per local day of `tz` as rows arrive and go, so
    /// that a snapshot in that timezone reads them instead of re-summing every hour kept.
    pub fn with_timezone(mut self, tz: Tz) -> Self {
        self.tz = Some(tz);
        for h in self.campaigns.values_mut() {
            h.rebuild_day_sums(self.tz);
        }
        for a in self.ads.values_mut().flat_map(|a| a.values_mut()) {
            a.cells.rebuild_day_sums(self.tz);
        }
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

    /// Campaigns with an hour bucket starting at `from` or later (one search of each
    /// campaign's sorted keys, not a visit of its buckets).
    pub fn campaigns_with_hours_from(&self, from: i64) -> HashSet<CampaignKey> {
        self.campaigns
            .iter()
            .filter(|(_, h)| h.hours.range(from, i64::MAX).next().is_some())
            .map(|(k, _)| k.clone())
            .collect()
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
                            let old = h.put_hour(t, cell, self.tz);
                            let e = self.hour_totals.entry(t).or_default();
                            if let Some(o) = old {
                                e.sub(&o);
                            }
                            e.add(&cell);
                        }
                        Bucket::Day => h.days_mut().insert(day_key(c.day), cell),
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
                Record::Touchpoints(_)
                | Record::Attribution(_)
                | Record::CustomerValue(_)
                | Record::CampaignValue(_)
                | Record::RegionStats(_) => {}
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
                            h.cells.put_hour(t, cell, self.tz);
                        }
                        Bucket::Day => h.cells.days_mut().insert(day_key(c.day), cell),
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
    pub fn visit_campaign_hours(&self, from: i64, f: impl FnMut(&CampaignKey, &str, i64, &Totals)) {
        self.visit_campaign_hours_between(from, i64::MAX, f);
    }

    /// Visit every campaign's hour buckets starting in `[from, to)` (unix seconds), in time
    /// order per campaign. `revenue` is not set.
    pub fn visit_campaign_hours_between(
        &self,
        from: i64,
        to: i64,
        mut f: impl FnMut(&CampaignKey, &str, i64, &Totals),
    ) {
        for (key, h) in &self.campaigns {
            for (t, c) in h.hours.range(from, to) {
                f(key, &h.name, t, &c.totals());
            }
        }
    }

    /// One campaign's hour buckets starting in `[from, to)`, oldest first (the history the
    /// models' detectors read).
    pub fn visit_hours_of(
        &self,
        key: &CampaignKey,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, &Totals),
    ) {
        if let Some(h) = self.campaigns.get(key) {
            for (t, c) in h.hours.range(from, to) {
                f(t, &c.totals());
            }
        }
    }

    /// Buckets that did not fit the compact columns and are kept whole (exact, larger).
    pub fn wide_cells(&self) -> usize {
        let of =
            |h: &CampaignHistory| h.hours.wide.len() + h.days.as_ref().map_or(0, |d| d.wide.len());
        self.campaigns.values().map(|h| of(h)).sum::<usize>()
            + self
                .ads
                .values()
                .flat_map(|a| a.values())
                .map(|a| of(&a.cells))
                .sum::<usize>()
    }

    /// Totals over all campaigns per hour bucket in `[from, to)`, with shop revenue (all orders,
    /// net of refunds) in the hour bucket they fall into.
    pub fn hourly_totals(&self, from: i64, to: i64, tz: Tz) -> BTreeMap<i64, Totals> {
        let mut out: BTreeMap<i64, Totals> = BTreeMap::new();
        for h in self.campaigns.values() {
            for (t, c) in h.hours.range(from, to) {
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
        let tz = self.tz;
        // the hour the snapshot after this prune reads its trailing windows at
        let cur_hour = tz.map(|tz| hour_floor(now, tz).timestamp());
        let hour_totals = &mut self.hour_totals;
        self.campaigns.retain(|key, h| {
            h.drop_hours_before(cut_s, tz, |t, c| {
                if let Some(e) = hour_totals.get_mut(&t) {
                    e.sub(&c);
                }
                if t >= window_s {
                    folded.push((key.clone(), t, c));
                }
            });
            h.drop_days_before(day_key(cut_day));
            if let Some(at) = cur_hour
                && h.trailing.as_ref().is_none_or(|tr| tr.at != at)
            {
                // a new hour: summed afresh (a week of buckets, once an hour)
                h.trailing = Some(Box::new(Trailing::sum(&h.hours, at)));
            }
            !(h.hours.is_empty() && h.days.is_none())
        });
        self.hour_totals.retain(|_, e| e.buckets > 0);
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
                a.cells.drop_hours_before(cut_s, tz, |_, _| {});
                a.cells.drop_days_before(day_key(cut_day));
                !(a.cells.hours.is_empty() && a.cells.days.is_none())
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
        let oldest_camp_window = camp_windows
            .iter()
            .map(|w| w.start(cur_hour))
            .min()
            .unwrap_or(cur_hour);
        // where each kept campaign window is in a `Trailing`'s sums
        let camp_index: Vec<usize> = camp_windows
            .iter()
            .filter_map(|w| CAMPAIGN_WINDOWS.iter().position(|c| c == w))
            .collect();
        let mut total_rolling = Rolling::zeroed(&total_windows);
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
            let mut rolling = Rolling::zeroed(&camp_windows);
            // the trailing windows as kept since the last prune, when it was at this hour;
            // otherwise summed here from the buckets
            let kept = h.trailing.as_deref().filter(|tr| tr.at == cur_hour);
            let mut lo = day_start_guess.min(loss_from).min(track_from);
            match kept {
                Some(tr) => {
                    for (r, &i) in rolling.iter_mut().zip(&camp_index) {
                        r.totals = tr.sums[i].totals();
                    }
                }
                None => lo = lo.min(oldest_camp_window),
            }
            for (t, c) in h.hours.range(lo, i64::MAX) {
                if kept.is_none() && t <= cur_hour {
                    let cell = c.totals();
                    for r in rolling.iter_mut() {
                        if t >= r.window.start(cur_hour) {
                            r.totals += cell;
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
            if !any_hour_today && let Some(c) = h.days.as_ref().and_then(|d| d.get(day_key(today)))
            {
                today_t = c.totals();
            }
            let days = daily_history(h, s.tz, self.tz == Some(s.tz), |day| {
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
                .filter_map(|d| h.hours.get(last_hour - d * 86_400).map(|c| c.spend))
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
        // the campaigns' hours, from their business totals per hour
        let live_from = oldest_window.max(self.hour_cutoff);
        if live_from <= cur_hour {
            for (&t, e) in self.hour_totals.range(live_from..=cur_hour) {
                let cell = e.totals();
                for r in total_rolling.iter_mut() {
                    if t >= r.window.start(cur_hour) {
                        r.totals += cell;
                    }
                }
            }
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

        let days: Vec<crate::profit::live::CampaignDays<'_>> = campaigns
            .iter()
            .map(|c| (&c.key, c.days.as_slice()))
            .collect();
        let profit = self.profit.view(today, &days);
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
                            days: daily_history(&a.cells, s.tz, self.tz == Some(s.tz), |_| {
                                Decimal::ZERO
                            }),
                        })
                        .collect();
                    (key.clone(), views)
                })
                .collect(),
        }
    }
}

/// Per reporting day totals of one campaign, oldest first: hour buckets summed by local day
/// (read from the running totals when `kept`, they are in `tz`), a day bucket where no hour
/// bucket exists for that day, revenue attributed by UTM.
fn daily_history(
    h: &CampaignHistory,
    tz: Tz,
    kept: bool,
    revenue: impl Fn(NaiveDate) -> Decimal,
) -> Vec<(NaiveDate, Totals)> {
    let mut by_day: BTreeMap<NaiveDate, Totals> = BTreeMap::new();
    if kept {
        by_day.extend(
            h.day_sums
                .iter()
                .filter_map(|(k, c, _)| Some((key_day(*k)?, c.totals()))),
        );
    } else {
        sum_hours_by_day(h, tz, &mut by_day);
    }
    for (k, c) in h.days.iter().flat_map(|d| d.iter()) {
        if let Some(day) = key_day(k) {
            by_day.entry(day).or_insert_with(|| c.totals());
        }
    }
    by_day
        .into_iter()
        .map(|(day, mut t)| {
            t.revenue = revenue(day);
            (day, t)
        })
        .collect()
}

/// The hour buckets of one history summed by local day of `tz`.
fn sum_hours_by_day(h: &CampaignHistory, tz: Tz, by_day: &mut BTreeMap<NaiveDate, Totals>) {
    // Hours come in time order: convert to the local day once per day, not once per hour (the
    // timezone lookup dominated the snapshot with thousands of campaigns).
    let mut current: Option<(NaiveDate, i64)> = None; // (local day, start of the next one)
    for (t, c) in h.hours.iter() {
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

impl CampaignView {
    /// A campaign with nothing measured: zero totals, no loss rate or baseline, no days and
    /// no trailing windows.
    pub fn empty(key: CampaignKey, name: String) -> Self {
        Self {
            key,
            name,
            today: Totals::default(),
            loss_rate_per_hour: None,
            window_clicks: 0,
            window_conversions: 0.0,
            window_orders: 0,
            spend_last_hour: Decimal::ZERO,
            spend_baseline: None,
            days: vec![],
            rolling: vec![],
        }
    }
}

impl Rolling {
    /// One empty sum per window, in the windows' order.
    pub fn zeroed(windows: &[Window]) -> Vec<Rolling> {
        windows
            .iter()
            .map(|&window| Rolling {
                window,
                totals: Totals::default(),
                orders: 0,
            })
            .collect()
    }
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
        let days = daily_history(&h, tz, false, |_| Decimal::ZERO);
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
        let settings = SnapshotSettings::inr(chrono_tz::Asia::Kolkata, None);
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

    #[test]
    fn cells_keep_amounts_exact_and_keep_what_does_not_fit_whole() {
        use std::str::FromStr;
        let small = Cell {
            spend: dec!(12.345678),
            conversion_value: dec!(0.10),
            impressions: 7,
            clicks: 3,
            conversions: 1.5,
        };
        // a mantissa beyond i64 and a count beyond u32: kept whole, not rounded or truncated
        let huge = Cell {
            spend: Decimal::from_str("12345678901234567890.123").unwrap(),
            conversion_value: dec!(1),
            impressions: u64::from(u32::MAX) + 1,
            clicks: 0,
            conversions: 0.0,
        };
        let mut c = Cells::default();
        c.insert(7200, small);
        c.insert(3600, huge);
        c.insert(10_800, small);
        assert_eq!(
            c.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            vec![3600, 7200, 10_800]
        );
        assert_eq!(c.get(3600), Some(huge));
        assert_eq!(c.wide.len(), 1);
        let got = c.get(7200).unwrap();
        assert_eq!(got, small);
        // the scale too (a Decimal's text shows it)
        assert_eq!(got.conversion_value.to_string(), "0.10");
        assert_eq!(got.spend.to_string(), "12.345678");
        // restated with a value that fits: back in the columns
        c.insert(3600, small);
        assert!(c.wide.is_empty());
        c.insert(10_800, huge);
        let mut dropped = Vec::new();
        c.drain_before(10_800, |t, cell| dropped.push((t, cell)));
        assert_eq!(dropped, vec![(3600, small), (7200, small)]);
        assert_eq!(
            c.range(0, i64::MAX).collect::<Vec<_>>(),
            vec![(10_800, huge)]
        );
        c.drain_before(i64::MAX, |_, _| {});
        assert!(c.is_empty() && c.wide.is_empty());
    }

    /// Values that do not fit a column's narrow type widen that column, exactly; values read
    /// back are the ones stored (decimal text with its scale, conversions bit for bit), and
    /// an emptied column is narrow again. Expected values are the inputs themselves.
    #[test]
    fn cells_widen_a_column_exactly_when_a_value_does_not_fit_it() {
        use std::str::FromStr;
        let cell = |spend: &str, value: &str, conversions: f64| Cell {
            spend: Decimal::from_str(spend).unwrap(),
            conversion_value: Decimal::from_str(value).unwrap(),
            impressions: 1000,
            clicks: 10,
            conversions,
        };
        // the most a u16 holds, and one more
        let (fits, over) = (u64::from(u16::MAX), u64::from(u16::MAX) + 1);
        let mut c = Cells::default();
        let hours: Vec<i64> = (0..5).map(|h| 1_764_000_000 + 3600 * h).collect();
        let a = cell("1234.56", "99.90", 3.0);
        for &h in &hours {
            c.insert(h, a);
        }
        let busy = Cell {
            impressions: fits,
            clicks: fits,
            ..a
        };
        c.insert(hours[1], busy);
        assert_eq!(
            c.widened(),
            [false; 6],
            "paise, whole counts, 65,535 impressions and clicks and hour offsets fit"
        );
        // 21,474,836.48 is i32::MAX + 1 paise: spend widens, the rest stays narrow
        let big = cell("21474836.48", "0.01", 2.0);
        c.insert(hours[2], big);
        assert_eq!(c.widened(), [false, true, false, false, false, false]);
        // 65,536 impressions widen the impressions, not the clicks
        let seen = Cell {
            impressions: over,
            ..a
        };
        c.insert(hours[4], seen);
        assert_eq!(c.widened(), [false, true, false, true, false, false]);
        c.insert(
            hours[1],
            Cell {
                clicks: over,
                ..busy
            },
        );
        assert_eq!(c.widened(), [false, true, false, true, true, false]);
        // a fractional conversion that f32 does not hold exactly (0.1)
        let frac = cell("1.00", "2.00", 0.1);
        c.insert(hours[3], frac);
        assert_eq!(c.widened(), [false, true, false, true, true, true]);
        // a key more than 2^31 s (68 years) after the first
        let far = hours[0] + (1_i64 << 31) + 3600;
        c.insert(far, a);
        assert_eq!(c.widened(), [true, true, false, true, true, true]);
        let got: Vec<(i64, Cell)> = c.iter().collect();
        let want = vec![
            (hours[0], a),
            (
                hours[1],
                Cell {
                    clicks: over,
                    ..busy
                },
            ),
            (hours[2], big),
            (hours[3], frac),
            (hours[4], seen),
            (far, a),
        ];
        assert_eq!(got, want);
        assert_eq!(c.get(hours[2]).unwrap().spend.to_string(), "21474836.48");
        assert_eq!(
            c.get(hours[3]).unwrap().conversions.to_bits(),
            0.1f64.to_bits()
        );
        assert_eq!(
            c.get(hours[3]).unwrap().conversion_value.to_string(),
            "2.00"
        );
        assert_eq!(c.range(hours[1], hours[4]).count(), 3);
        assert_eq!(c.range(hours[4] + 1, far).count(), 0);
        assert_eq!(c.get(far - 3600), None);
        // a restatement below the first key (a negative offset) and before every other
        c.insert(hours[0] - 3600, a);
        assert_eq!(c.iter().next(), Some((hours[0] - 3600, a)));
        c.drain_before(i64::MAX, |_, _| {});
        assert!(c.is_empty());
        assert_eq!(c.widened(), [false; 6], "an emptied column is narrow again");
        // a new first key starts the offsets anew
        c.insert(far, a);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![(far, a)]);
        assert_eq!(c.widened(), [false; 6]);
    }

    mod windows {
        //! The trailing windows kept as buckets come and go (per campaign, and the business
        //! totals per hour) against a brute-force re-sum of the rows' last values.
        use super::super::*;
        use crate::records::CampaignStat;
        use proptest::prelude::*;
        use rust_decimal::Decimal;
        use rust_decimal_macros::dec;
        use std::collections::BTreeMap;

        // an hour boundary in India (UTC+5:30), whose bucket starts are at :30 UTC
        const BASE: i64 = 1_795_000_000 - 1_795_000_000 % 86_400 + 1800;

        fn row(campaign: u8, t: i64, cents: i64, thirds: u32) -> Record {
            let ts = DateTime::<Utc>::from_timestamp(t, 0).unwrap();
            Record::CampaignStats(CampaignStat {
                ts,
                bucket: Bucket::Hour,
                day: ts.date_naive(),
                key: CampaignKey {
                    platform: "google".into(),
                    account: "1".into(),
                    campaign_id: format!("c{campaign}"),
                },
                campaign_name: format!("C{campaign}"),
                source: "google".into(),
                spend: Decimal::new(cents, 2),
                conversion_value: Decimal::new(cents, 3),
                spend_account: Decimal::new(cents, 2),
                conversion_value_account: Decimal::new(cents, 3),
                account_currency: "INR".into(),
                currency: "INR".into(),
                impressions: 7 * u64::from(thirds),
                clicks: u64::from(thirds),
                // data-driven attribution: fractions with no exact binary form
                conversions: f64::from(thirds) / 3.0,
            })
        }

        #[derive(Debug, Clone)]
        enum Op {
            /// Upsert (campaign, hour index, cents, conversions in thirds).
            Put(u8, i64, i64, u32),
            /// Prune and snapshot `hours` after the previous step's clock (0: same hour,
            /// restatements only); `off` more hours between prune and snapshot.
            Tick { hours: i64, off: i64 },
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            let op = prop_oneof![
                6 => (0u8..3, 0i64..20 * 24, 0i64..100_000, 0u32..10)
                    .prop_map(|(c, h, v, k)| Op::Put(c, h, v, k)),
                2 => (0i64..30, prop_oneof![4 => Just(0i64), 1 => -3i64..4])
                    .prop_map(|(hours, off)| Op::Tick { hours, off }),
            ];
            prop::collection::vec(op, 1..120)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn kept_windows_equal_a_re_sum_after_upserts_restatements_and_prunes(ops in ops()) {
                let tz = chrono_tz::Asia::Kolkata;
                let settings = SnapshotSettings::inr(tz, None);
                let retention_days = 8;
                let mut store = Store::new(retention_days).with_timezone(tz);
                // the reference: last (cents, thirds) per (campaign, hour start)
                let mut value: BTreeMap<(u8, i64), (i64, u32)> = BTreeMap::new();
                // the clock: a bucket start plus 20 minutes
                let mut clock = BASE + 3600 * 24 * 9 + 1200;
                for op in ops {
                    match op {
                        Op::Put(c, h, v, k) => {
                            let t = BASE + 3600 * h;
                            store.ingest(&[row(c, t, v, k)]);
                            // below the per-campaign history: folded into the business
                            // totals at the next prune, never part of a campaign's window
                            value.insert((c, t), (v, k));
                        }
                        Op::Tick { hours, off } => {
                            clock += 3600 * hours;
                            let now = DateTime::<Utc>::from_timestamp(clock, 0).unwrap();
                            store.prune(now);
                            let cut = clock - 86_400 * i64::from(retention_days);
                            value.retain(|&(_, t), _| t >= cut);
                            let at_s = clock + 3600 * off;
                            let at = DateTime::<Utc>::from_timestamp(at_s, 0).unwrap();
                            let cur = at_s - (at_s - 1800).rem_euclid(3600);
                            let snap = store.snapshot(at, &settings);
                            let sum = |campaign: Option<u8>, from: i64| {
                                let (mut cents, mut thirds, mut conv) = (0i64, 0u32, 0.0f64);
                                for (&(c, t), &(v, k)) in &value {
                                    if campaign.is_none_or(|x| x == c) && t >= from && t <= cur {
                                        cents += v;
                                        thirds += k;
                                        conv += f64::from(k) / 3.0;
                                    }
                                }
                                (cents, thirds, conv)
                            };
                            let check = |r: &Rolling, (cents, thirds, conv): (i64, u32, f64), what: &str| {
                                prop_assert_eq!(r.totals.spend, Decimal::new(cents, 2), "{} {} spend", what, r.window.label);
                                prop_assert_eq!(r.totals.conversion_value, Decimal::new(cents, 3), "{} {} value", what, r.window.label);
                                prop_assert_eq!(r.totals.clicks, u64::from(thirds), "{} {} clicks", what, r.window.label);
                                prop_assert_eq!(r.totals.impressions, 7 * u64::from(thirds), "{} {} impressions", what, r.window.label);
                                // the exact sum is thirds / 3: within an f64 rounding of it,
                                // and zero exactly when nothing converted
                                let want = f64::from(thirds) / 3.0;
                                prop_assert!((r.totals.conversions - want).abs() <= 1e-12 * want.max(1.0),
                                    "{} {} conversions {} want {} (naive f64 sum {})", what, r.window.label, r.totals.conversions, want, conv);
                                if thirds == 0 {
                                    prop_assert_eq!(r.totals.conversions, 0.0);
                                }
                                Ok(())
                            };
                            // the windows within the per-campaign history (the longer ones
                            // also read the hours folded at each prune: see `drift`)
                            for r in snap.total.rolling.iter().filter(|r| r.window.hours <= 24 * retention_days) {
                                check(r, sum(None, r.window.start(cur)), "total")?;
                            }
                            for c in &snap.campaigns {
                                let id: u8 = c.key.campaign_id[1..].parse().unwrap();
                                prop_assert_eq!(c.rolling.len(), 2);
                                for r in &c.rolling {
                                    check(r, sum(Some(id), r.window.start(cur)), &c.key.campaign_id)?;
                                }
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn a_window_restated_to_zero_conversions_reads_zero_exactly() {
            // 0.1 + 0.2 - 0.1 is 0.20000000000000004 in f64; the kept sums must not drift
            let tz = chrono_tz::Asia::Kolkata;
            let mut store = Store::new(8).with_timezone(tz);
            let t0 = BASE + 3600 * 24 * 9;
            let now = DateTime::<Utc>::from_timestamp(t0 + 3600 * 2 + 600, 0).unwrap();
            let put = |store: &mut Store, h: i64, conv: f64| {
                let Record::CampaignStats(mut r) = row(0, t0 + 3600 * h, 100, 0) else {
                    unreachable!()
                };
                r.conversions = conv;
                store.ingest(&[Record::CampaignStats(r)]);
            };
            put(&mut store, 0, 0.1);
            put(&mut store, 1, 0.2);
            store.prune(now);
            let settings = SnapshotSettings::inr(tz, None);
            let w24 = |store: &Store| store.snapshot(now, &settings).campaigns[0].rolling[0].totals;
            // by hand: 0.1 + 0.2, one rounding (0.30000000000000004 is the nearest double to
            // the exact sum of the two doubles)
            assert_eq!(w24(&store).conversions, 0.1 + 0.2);
            assert_eq!(w24(&store).spend, dec!(2.00));
            // restate each hour many times, then both to zero
            for k in 0..1000u32 {
                put(&mut store, i64::from(k % 2), f64::from(k) / 7.0);
            }
            put(&mut store, 0, 0.0);
            put(&mut store, 1, 0.2);
            assert_eq!(w24(&store).conversions, 0.2);
            put(&mut store, 1, 0.0);
            let t = w24(&store);
            assert_eq!(t.conversions, 0.0);
            assert_eq!(t.spend, dec!(2.00));
            assert_eq!(t.clicks, 0);
            let total = store.snapshot(now, &settings).total.rolling[0].totals;
            assert_eq!(total.conversions, 0.0);
            assert_eq!(total.spend, dec!(2.00));
        }
    }

    mod drift {
        //! The KPIs the store keeps as it goes (the business totals folded at each prune, the
        //! per-campaign history) against a recomputation from the rows alone.
        use super::super::*;
        use crate::records::CampaignStat;
        use proptest::prelude::*;
        use rust_decimal::Decimal;
        use std::collections::{BTreeMap, BTreeSet};

        // an hour boundary in India (UTC+5:30), whose days straddle UTC days (2026-11)
        const BASE: i64 = 1_795_000_000 - 1_795_000_000 % 86_400 + 1800;
        const RETENTION_DAYS: u32 = 8;

        fn row(campaign: u8, t: i64, cents: i64, clicks: u64) -> Record {
            let ts = DateTime::<Utc>::from_timestamp(t, 0).unwrap();
            Record::CampaignStats(CampaignStat {
                ts,
                bucket: Bucket::Hour,
                day: ts.date_naive(),
                key: CampaignKey {
                    platform: "meta".into(),
                    account: "act_1".into(),
                    campaign_id: format!("c{campaign}"),
                },
                campaign_name: format!("C{campaign}"),
                source: "meta".into(),
                spend: Decimal::new(cents, 2),
                conversion_value: Decimal::ZERO,
                spend_account: Decimal::new(cents, 2),
                conversion_value_account: Decimal::ZERO,
                account_currency: "INR".into(),
                currency: "INR".into(),
                impressions: 10 * clicks,
                clicks,
                conversions: 0.0,
            })
        }

        /// Batches of rows (campaign, hour index, cents, clicks), each followed by a prune
        /// and a snapshot one step of time later; hours repeat (restatements) and arrive late.
        fn batches() -> impl Strategy<Value = Vec<Vec<(u8, i64, i64, u64)>>> {
            prop::collection::vec(
                prop::collection::vec((0u8..4, 0i64..40 * 24, 0i64..1_000_000, 0u64..500), 0..60),
                1..12,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn kept_kpis_equal_a_recomputation_after_ingest_restatement_and_prune(
                batches in batches(),
            ) {
                let settings = SnapshotSettings::inr(chrono_tz::Asia::Kolkata, None);
                // summed per snapshot, and kept as rows come and go (the service's)
                let mut stores = [
                    Store::new(RETENTION_DAYS),
                    Store::new(RETENTION_DAYS).with_timezone(chrono_tz::Asia::Kolkata),
                ];
                // the reference: the last value of each (campaign, hour), frozen once a
                // prune moved the hour past the per-campaign history (docs/metrics.md: a
                // later restatement of such an hour is not applied)
                let mut value: BTreeMap<(u8, i64), (i64, u64)> = BTreeMap::new();
                let mut frozen: BTreeSet<(u8, i64)> = BTreeSet::new();
                let step = 40 * 86_400 / batches.len() as i64;
                for (k, batch) in batches.iter().enumerate() {
                    let rows: Vec<Record> = batch
                        .iter()
                        .map(|&(c, h, cents, clicks)| row(c, BASE + 3600 * h, cents, clicks))
                        .collect();
                    for store in &mut stores {
                        store.ingest(&rows);
                    }
                    for &(c, h, cents, clicks) in batch {
                        if !frozen.contains(&(c, h)) {
                            value.insert((c, h), (cents, clicks));
                        }
                    }
                    let now_s = BASE + step * (k as i64 + 1) + 1800;
                    let now = DateTime::<Utc>::from_timestamp(now_s, 0).unwrap();
                    for store in &mut stores {
                        store.prune(now);
                    }
                    let cut = now_s - 86_400 * i64::from(RETENTION_DAYS);
                    for &(c, h) in value.keys() {
                        if BASE + 3600 * h < cut {
                            frozen.insert((c, h));
                        }
                    }
                    for store in &stores {
                    let snap = store.snapshot(now, &settings);
                    let cur = now_s - (now_s - 1800).rem_euclid(3600);
                    for r in &snap.total.rolling {
                        let from = r.window.start(cur);
                        let (mut cents, mut clicks) = (0i64, 0u64);
                        for (&(_, h), &(v, n)) in &value {
                            let t = BASE + 3600 * h;
                            if t >= from && t <= cur {
                                cents += v;
                                clicks += n;
                            }
                        }
                        prop_assert_eq!(r.totals.spend, Decimal::new(cents, 2), "{} spend", r.window.label);
                        prop_assert_eq!(r.totals.clicks, clicks, "{} clicks", r.window.label);
                    }
                    // per campaign: each kept day's totals, and the trailing windows
                    let kept: BTreeSet<String> = value
                        .keys()
                        .filter(|(_, h)| BASE + 3600 * h >= cut)
                        .map(|(c, _)| format!("c{c}"))
                        .collect();
                    let shown: BTreeSet<String> =
                        snap.campaigns.iter().map(|c| c.key.campaign_id.clone()).collect();
                    prop_assert_eq!(shown, kept);
                    for c in &snap.campaigns {
                        let id: u8 = c.key.campaign_id[1..].parse().unwrap();
                        let mut days: BTreeMap<NaiveDate, (i64, u64)> = BTreeMap::new();
                        for (&(cc, h), &(v, n)) in &value {
                            let t = BASE + 3600 * h;
                            if cc == id && t >= cut {
                                let d = DateTime::<Utc>::from_timestamp(t, 0)
                                    .unwrap()
                                    .with_timezone(&chrono_tz::Asia::Kolkata)
                                    .date_naive();
                                let e = days.entry(d).or_default();
                                e.0 += v;
                                e.1 += n;
                            }
                        }
                        let got: Vec<(NaiveDate, Decimal, u64)> =
                            c.days.iter().map(|(d, t)| (*d, t.spend, t.clicks)).collect();
                        let want: Vec<(NaiveDate, Decimal, u64)> = days
                            .into_iter()
                            .map(|(d, (v, n))| (d, Decimal::new(v, 2), n))
                            .collect();
                        prop_assert_eq!(got, want, "days of {}", c.key.campaign_id);
                        for r in &c.rolling {
                            let from = r.window.start(cur);
                            let cents: i64 = value
                                .iter()
                                .filter(|((cc, h), _)| {
                                    let t = BASE + 3600 * h;
                                    *cc == id && t >= from.max(cut) && t <= cur
                                })
                                .map(|(_, (v, _))| v)
                                .sum();
                            prop_assert_eq!(r.totals.spend, Decimal::new(cents, 2), "{} {}", c.key.campaign_id, r.window.label);
                        }
                    }
                    }
                }
            }
        }
    }
}
