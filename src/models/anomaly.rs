//! Streaming anomaly scoring.
//!
//! [`Detector`] scores each new point against a robust, seasonal expectation built only from
//! the past: the level is the median of the last full cycle, the seasonal offset of the current
//! phase is the median, over the previous cycles, of that phase's deviation from its own
//! centred cycle median, and the spread is the MAD of the detector's own recent residuals.
//! Non-negative series (costs, counts, rates) are scored on a log scale, because their noise
//! grows with their level and their spikes are multiplicative.
//!
//! The robust z-score is then **calibrated into a tail probability** on the series' own history,
//! so that a noisy or spiky series does not alert more often than a quiet one (the peaks-over-
//! threshold idea of Siffer et al., "Anomaly detection in streams with extreme value theory",
//! KDD 2017, in its exponential-tail form): the detector keeps decayed counts of how often
//! `|z|` exceeds [`DetectorConfig::tail_z`] and by how much on average (the mean excess `beta`),
//! and the tail probability of a new point is `P(|Z| >= |z|) = rate * exp(-(|z| - tail_z) / beta)`.
//! A series with recurring daily spikes learns a high rate and a long tail, so its spikes stop
//! alerting; a clean series keeps a thin tail, so a real break stands out. A point is
//! *anomalous* when that probability is at most `10^-alert_log10_p`.
//!
//! A second detector of another kind runs beside it, the **contextual** one (`anomaly/knn.rs`): the
//! window of the last [`DetectorConfig::knn_window`] values is compared with the past windows
//! of the history ring (k nearest neighbours, conformal calibration against the record of
//! earlier non-conformities). It sees what no single point shows: a shape or a level the series
//! has not had before while every point stays inside the z band (NAB's
//! `elb_request_count_8c0756` and `ec2_cpu_utilization_5f5533` windows). The two are an
//! ensemble: a point is anomalous when either calls it so, and it raises an *alert* only when
//! no anomalous point was seen in the last [`DetectorConfig::refractory`] points (one alert per
//! episode, however long).
//!
//! One [`DetectorConfig`] (from [`DetectorConfig::for_step`]) serves every series: the NAB
//! evaluation in [`super::eval::nab`] runs it on all development files. The service shares one
//! copy among all its detectors ([`Detector::shared`]) instead of one each.
//!
//! [`TrackingBreak`] is the dedicated test for broken conversion tracking at low volume.

use std::sync::Arc;

use super::stats;

mod knn;

/// Element type of the kept residuals and raw values: `f32`, as their rounding (6e-8
/// relative) is far below the spread they estimate. Each value is rounded once, on the way in
/// ([`kept`]), and the detector works on the rounded value throughout, so a constant series
/// stays constant against its own past (rounding only the history gave NAB's flat lines
/// non-zero residuals, and alerts). Half the history's bytes: 49 MiB of the service's 60,000
/// detectors at 10,000 campaigns (docs/benchmarks.md).
type Kept = f32;

/// `v` rounded to [`Kept`], saturating beyond its range (NaN stays NaN): how a detector keeps
/// a value, and how a [`Past`] may hold one (its value read back is then the one kept).
pub fn narrow(v: f64) -> Kept {
    v.clamp(-f64::from(Kept::MAX), f64::from(Kept::MAX)) as Kept
}

/// A value as the detector keeps it: [`narrow`]ed when finite; non-finite values stay as
/// they are (they are `Missing`, not the largest number).
fn kept(v: f64) -> f64 {
    if v.is_finite() {
        f64::from(narrow(v))
    } else {
        v
    }
}

/// Settings of the streaming detector. The defaults are the one parameter set evaluated on NAB.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Expected spacing of points in seconds (3600 for hourly series).
    pub step_secs: i64,
    /// Seasonal period in steps (a day of steps for sub-daily data, 7 for daily data), or `None`.
    pub season_len: Option<usize>,
    /// How many past cycles the seasonal offset is estimated from.
    pub seasons_back: usize,
    /// Points in the trailing window whose median is the level (one full cycle by default).
    pub level_window: usize,
    /// Residuals kept to estimate the spread (MAD).
    pub scale_window: usize,
    /// Points seen before any point may be flagged (rows before carry the `warmup` state).
    pub warmup: usize,
    /// `|z|` above which a point counts as a tail exceedance for the calibration.
    pub tail_z: f64,
    /// Points over which the tail counts decay (the calibration's memory).
    pub tail_memory: f64,
    /// Prior exceedance rate, worth `tail_prior_points` points of history.
    pub tail_prior_rate: f64,
    /// Weight of the prior rate, in points.
    pub tail_prior_points: f64,
    /// Prior mean excess over `tail_z` (in z units), worth `tail_prior_exceedances` exceedances.
    pub tail_prior_excess: f64,
    /// Weight of the prior mean excess, in exceedances.
    pub tail_prior_exceedances: f64,
    /// A point is anomalous when its tail probability is at most `10^-alert_log10_p`.
    pub alert_log10_p: f64,
    /// ... and its robust `|z|` is at least this (no alert on a tiny move of a flat series).
    pub min_z: f64,
    /// Points in a row with nothing anomalous before an anomalous point raises a new alert (one
    /// alert per episode).
    pub refractory: usize,
    /// Span (points) of the exponentially weighted mean of z that detects sustained shifts.
    pub shift_span: f64,
    /// Log-transform non-negative series (decided on the warm-up points).
    pub log_transform: bool,
    /// The log transform is `ln(x + c)` with `c` this fraction of the warm-up median: it keeps
    /// zeros finite and stops near-zero dips from dominating.
    pub log_offset_frac: f64,
    /// Values in the contextual detector's window (its context), 0 = no contextual detector.
    pub knn_window: usize,
    /// Nearest reference windows whose mean distance is a context's non-conformity.
    pub knn_k: usize,
    /// Most recent past windows searched for the nearest ones (the reference set).
    pub knn_reference: usize,
    /// Memory of the record non-conformity in points: the record decays by `1 - 1/memory`
    /// per point, so one old anomaly does not silence the contextual detector for ever.
    pub knn_memory: f64,
    /// Non-conformities seen before the contextual detector may call a point anomalous.
    pub knn_min_calibration: usize,
    /// A context is anomalous when its non-conformity is at least this multiple of the
    /// (decayed) record of all earlier ones.
    pub knn_margin: f64,
    /// Cycles back (before the quiet time of the current episode) searched for an earlier
    /// point as extreme as a flagged one; 0 = no recurrence test. A recurring extreme (a spike
    /// that comes back every day, or spikes that became the norm) is not news.
    pub recur_cycles: u32,
    /// An earlier point *recurs* a flagged one when it deviates from the current expectation
    /// in the same direction by at least this fraction of the flagged point's deviation.
    pub recur_frac: f32,
    /// A recurring extreme may still alert through the shift statistic, when `|shift_z|` is at
    /// least this multiple of `min_z` (a sustained run of recurring extremes is a change).
    pub recur_shift_factor: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self::for_step(3600)
    }
}

/// Cycle length in points for a step: one day of points for steps that divide a day (at most
/// 288 points, i.e. 5-minute data), a week for daily data, none otherwise.
pub fn detector_season(step_secs: i64) -> Option<usize> {
    match step_secs {
        86_400 => Some(7),
        s if (300..=3600).contains(&s) && 86_400 % s == 0 => Some((86_400 / s) as usize),
        _ => None,
    }
}

/// Longest warm-up in points (the NAB probation of a 2,000-row file).
const WARMUP_CAP: usize = 300;

impl DetectorConfig {
    /// The one parameter set, for a series with the given step.
    pub fn for_step(step_secs: i64) -> Self {
        let season_len = detector_season(step_secs);
        let cycle = season_len.unwrap_or(24);
        DetectorConfig {
            step_secs,
            season_len,
            seasons_back: 7,
            level_window: cycle,
            scale_window: (7 * cycle).min(1000),
            warmup: (3 * cycle).clamp(48, WARMUP_CAP),
            tail_z: 3.0,
            tail_memory: 2000.0,
            tail_prior_rate: 0.005,
            tail_prior_points: 200.0,
            tail_prior_excess: 0.5,
            tail_prior_exceedances: 3.0,
            alert_log10_p: 1.5,
            min_z: 7.0,
            refractory: cycle / 4,
            shift_span: 12.0,
            log_transform: true,
            log_offset_frac: 0.1,
            knn_window: 4,
            knn_k: 3,
            knn_reference: 300,
            knn_memory: 10_000.0,
            knn_min_calibration: 50,
            knn_margin: 1.3,
            recur_cycles: 3,
            recur_frac: 0.7,
            recur_shift_factor: 2.0,
        }
    }
}

/// What one scored row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointState {
    /// Not enough history yet: no band, never flagged.
    Warmup,
    /// The value is missing or not finite: not scored, not learned.
    Missing,
    /// Inside the calibrated band.
    Normal,
    /// Outside the band and the start of a new episode: an alert.
    Alert,
    /// Outside the band within `refractory` points of the previous alert (same episode).
    Anomalous,
}

impl PointState {
    /// Lower-case name for CSV and QuestDB.
    pub fn name(self) -> &'static str {
        match self {
            PointState::Warmup => "warmup",
            PointState::Missing => "missing",
            PointState::Normal => "normal",
            PointState::Alert => "alert",
            PointState::Anomalous => "anomalous",
        }
    }
}

/// The result of scoring one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Anomaly score in [0, 1): `L / (L + alert_log10_p)` with `L = -log10(tail probability)`,
    /// so 0.5 at the alert threshold. 0 while warming up and for missing input.
    pub score: f64,
    /// `-log10` of the calibrated tail probability (0 when not scored).
    pub neg_log10_p: f64,
    /// Robust z-score of the residual (0 when not scored).
    pub z: f64,
    /// The sustained-shift statistic: the weighted mean of recent z, standardised (0 when not
    /// scored).
    pub shift_z: f64,
    /// Expected value (original units).
    pub expected: f64,
    /// Lower band edge (original units): where the tail probability reaches the threshold.
    pub lower: f64,
    /// Upper band edge (original units).
    pub upper: f64,
    /// True when either detector calls the point anomalous after warm-up (state `Alert` or
    /// `Anomalous`): outside the band, or a context unlike any before it.
    pub is_anomaly: bool,
    /// What the row is.
    pub state: PointState,
    /// The contextual non-conformity of the row's window divided by the decayed record of the
    /// earlier ones (0 until calibrated): above 1 the context is farther from its nearest past
    /// windows than any before it, i.e. its conformal p-value is the smallest possible.
    pub knn_ratio: f64,
    /// The contextual non-conformity of the row's window (NaN when not scored).
    pub knn_alpha: f64,
    /// The point is out in the tail (`|z| >= tail_z`) and an earlier point of the last
    /// [`DetectorConfig::recur_cycles`] cycles was as extreme in the same direction: the
    /// point test does not count it (the shift test only beyond `recur_shift_factor` x
    /// `min_z`).
    pub recurrent: bool,
}

/// Where a detector reads its past raw values when it keeps none of its own
/// ([`Detector::reading`]): the service's store already holds every campaign's hours, and a
/// ring per campaign series was a second copy of them (824 bytes each, 49 MiB of 60,000
/// detectors at 10,000 campaigns).
pub trait Past {
    /// The value the detector was given for the point at `ts` (epoch seconds), `None` when
    /// there is none. Only the points the detector learned are asked for: from the oldest it
    /// can read ([`Detector::history_slots`] steps back from its newest) to its newest,
    /// which is the point of the update once it is learned.
    fn at(&self, ts: i64) -> Option<f64>;
}

/// The history as one update reads it: the slots `start..=last`, from the detector's own ring
/// (slot `s` at `s mod len`, NaN when missing: the slot is implied by the position, 4 bytes a
/// point) or from the caller's [`Past`].
struct Hist<'a> {
    /// Oldest slot held (`i64::MAX` while empty).
    start: i64,
    /// Newest slot held (`i64::MIN` while empty).
    last: i64,
    src: Src<'a>,
}

enum Src<'a> {
    Ring(&'a [Kept]),
    Past {
        past: &'a dyn Past,
        origin: i64,
        step: i64,
    },
    /// A reading detector updated without a [`Past`]: no history.
    Empty,
}

impl Hist<'_> {
    /// Raw value at `slot`, if held and not missing.
    fn get(&self, slot: i64) -> Option<f64> {
        if slot < self.start || slot > self.last {
            return None;
        }
        match self.src {
            Src::Ring(vals) => {
                let v = vals[slot.rem_euclid(vals.len() as i64) as usize];
                (!v.is_nan()).then_some(f64::from(v))
            }
            // kept as the ring keeps it (`kept` of a kept value is itself)
            Src::Past { past, origin, step } => past
                .at(origin + slot * step)
                .filter(|v| v.is_finite())
                .map(kept),
            Src::Empty => None,
        }
    }

    /// Held values with slot in `[from, to)`, oldest first.
    fn range(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
        let lo = from.max(self.start);
        let hi = to.min(self.last.saturating_add(1));
        (lo..hi).filter_map(move |s| self.get(s).map(|v| (s, v)))
    }

    fn iter(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.range(i64::MIN, i64::MAX)
    }

    /// Appends the values of the slots `[from, to)` that the history can hold to `out`, NaN
    /// for missing slots, so that positions stay contiguous.
    fn fill(&self, from: i64, to: i64, out: &mut Vec<f64>) {
        if self.last == i64::MIN {
            return;
        }
        let lo = from.max(self.start);
        for s in lo..to {
            out.push(self.get(s).unwrap_or(f64::NAN));
        }
    }
}

/// Stores `value` at `slot` (after `*last`) in a ring of `cap` slots, clearing the slots
/// skipped (at most one lap); then moves the bounds: slots older than `slot - cap + 1` are
/// forgotten. Without a ring only the bounds move.
fn push_slot(
    ring: Option<&mut [Kept]>,
    cap: i64,
    start: &mut i64,
    last: &mut i64,
    slot: i64,
    value: f64,
) {
    if let Some(vals) = ring {
        let idx = |s: i64| s.rem_euclid(cap) as usize;
        if *last != i64::MIN {
            let from = last.saturating_add(1).max(slot - cap + 1);
            for s in from..slot {
                vals[idx(s)] = Kept::NAN;
            }
        }
        // rounded already (see `kept`): the conversion is exact
        vals[idx(slot)] = value as Kept;
    }
    if *last == i64::MIN {
        *start = slot;
    }
    *last = slot;
    *start = (*start).max(slot - cap + 1);
}

/// A residual as a [`ResidualRing`] keeps it: a bfloat16 (`f32`'s range, 8 bits of
/// mantissa), so the spread estimated from them is within 0.2 % of the spread of the exact
/// residuals, at 2 bytes a residual instead of 4 (22 MiB at 10,000 campaigns).
type Residual = half::bf16;

/// `r` as a [`Residual`], rounded to nearest and saturating beyond its range (NaN stays NaN).
fn residual(r: f64) -> Residual {
    let max = Residual::MAX.to_f64();
    Residual::from_f64(r.clamp(-max, max))
}

/// The last `cap` residuals, oldest overwritten first.
#[derive(Debug, Clone)]
struct ResidualRing {
    vals: Box<[Residual]>,
    /// Residuals held (at most `vals.len()`).
    len: usize,
    /// Where the next one goes.
    next: usize,
}

impl ResidualRing {
    fn new(cap: usize) -> Self {
        ResidualRing {
            vals: vec![Residual::ZERO; cap.max(1)].into_boxed_slice(),
            len: 0,
            next: 0,
        }
    }

    fn push(&mut self, r: f64) {
        // beyond bf16's range a residual saturates instead of becoming infinite
        self.vals[self.next] = residual(r);
        self.next = (self.next + 1) % self.vals.len();
        self.len = (self.len + 1).min(self.vals.len());
    }

    fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
    }

    /// The held residuals, oldest first.
    fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        let (old, new) = if self.len < self.vals.len() {
            (&self.vals[..0], &self.vals[..self.len])
        } else {
            (&self.vals[self.next..], &self.vals[..self.next])
        };
        old.iter().chain(new).map(|v| v.to_f64())
    }
}

/// Decayed peaks-over-threshold counts of `|z|`.
#[derive(Debug, Clone, Copy, Default)]
struct Tail {
    points: f64,
    exceedances: f64,
    excess: f64,
}

/// Streaming robust seasonal detector. Feed points in time order with [`Detector::update`].
#[derive(Debug, Clone)]
pub struct Detector {
    /// The settings, shared: the service keeps 60,000 detectors of one configuration, and a
    /// copy each was 208 of a detector's 400 inline bytes.
    cfg: Arc<DetectorConfig>,
    /// Timestamp of the first point (`i64::MIN` before any; a sentinel rather than an
    /// `Option` keeps the detector at its size).
    origin: i64,
    last_slot: i64,
    /// Points learned (saturating: only compared with the warm-up length).
    seen: u32,
    /// Oldest slot of the history (`i64::MAX` while empty); the newest is `last_slot`.
    start: i64,
    /// Raw values of the last cycles, by slot (`slot mod len`, NaN when missing), when the
    /// detector keeps its own ([`Detector::new`], [`Detector::shared`]); `None` for one that
    /// reads them from a [`Past`] ([`Detector::reading`]).
    ring: Option<Box<[Kept]>>,
    /// The detector's last `scale_window` residuals (transformed scale).
    residuals: ResidualRing,
    /// `Some(c)` once the log transform `ln(x + c)` is chosen; decided at the end of warm-up.
    log_offset: Option<f64>,
    transform_decided: bool,
    tail: Tail,
    /// Tail of the shift statistic.
    shift_tail: Tail,
    /// Exponentially weighted mean of clipped z.
    shift: f64,
    /// Points scored since the last anomalous point (`u32::MAX` before any; saturating, and
    /// read as `usize::MAX` there, see [`Detector::since_alert`]).
    since_alert: u32,
    /// Decayed record of the contextual non-conformities (its calibration).
    knn_record: f64,
    /// Contextual non-conformities seen (saturating: only compared with
    /// `knn_min_calibration`).
    knn_seen: u32,
}

thread_local! {
    /// Scratch space of [`Detector::update`], one per thread rather than one per detector: the
    /// service keeps a detector per campaign and series (60,000 at 10,000 campaigns).
    static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Detector {
    /// A detector with the given settings.
    pub fn new(cfg: DetectorConfig) -> Self {
        Self::shared(Arc::new(cfg))
    }

    /// A detector with settings shared with others (what the service does for its detector per
    /// campaign and series); scores exactly as [`Detector::new`] with the same settings.
    pub fn shared(cfg: Arc<DetectorConfig>) -> Self {
        // sized once to what it holds at most: the slots back to `slot - keep`
        let ring = vec![Kept::NAN; Self::keep_slots(&cfg) + 1].into_boxed_slice();
        Detector {
            ring: Some(ring),
            ..Self::reading(cfg)
        }
    }

    /// A detector that keeps no raw values of its own: each [`Detector::update_from`] reads
    /// them from the caller's [`Past`] (the service's, from the hours its store holds). It
    /// scores exactly as [`Detector::shared`] fed the same points while the past answers with
    /// the values the detector was given.
    pub fn reading(cfg: Arc<DetectorConfig>) -> Self {
        Detector {
            origin: i64::MIN,
            last_slot: i64::MIN,
            seen: 0,
            start: i64::MAX,
            ring: None,
            residuals: ResidualRing::new(cfg.scale_window),
            cfg,
            log_offset: None,
            transform_decided: false,
            tail: Tail::default(),
            shift_tail: Tail::default(),
            shift: 0.0,
            since_alert: u32::MAX,
            knn_record: 0.0,
            knn_seen: 0,
        }
    }

    /// Points scored since the last anomalous point, `usize::MAX` before any (and from
    /// `u32::MAX` points on, which no refractory setting reaches).
    fn since_alert(&self) -> usize {
        if self.since_alert == u32::MAX {
            usize::MAX
        } else {
            self.since_alert as usize
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Slots of history the expectation reads: the past cycles with half a cycle around each,
    /// the level window, or the warm-up, whichever is longest.
    fn keep_slots(cfg: &DetectorConfig) -> usize {
        let p = cfg.season_len.unwrap_or(0);
        (cfg.seasons_back * p + p / 2 + cfg.level_window + 1).max(cfg.warmup)
    }

    /// Points a detector with `cfg` reads at most, its newest included: a [`Past`] must answer
    /// for the points of the `history_slots(cfg) - 1` steps before the newest (206 hours for
    /// hourly series).
    pub fn history_slots(cfg: &DetectorConfig) -> usize {
        Self::keep_slots(cfg) + 1
    }

    /// The history as an update reads it, from `ring` (the detector's own, taken out for the
    /// update) or `past`.
    fn hist<'a>(&self, ring: Option<&'a [Kept]>, past: Option<&'a dyn Past>) -> Hist<'a> {
        let src = match (ring, past) {
            (Some(r), _) => Src::Ring(r),
            (None, Some(past)) => Src::Past {
                past,
                origin: self.origin,
                step: self.cfg.step_secs.max(1),
            },
            (None, None) => Src::Empty,
        };
        Hist {
            start: self.start,
            last: self.last_slot,
            src,
        }
    }

    /// Contextual score of `value` at `slot`: the non-conformity of the window ending at it
    /// and its ratio to the decayed record of the earlier ones (0 until calibrated).
    fn contextual(
        &self,
        h: &Hist,
        slot: i64,
        value: f64,
        buf: &mut Vec<f64>,
    ) -> (Option<f64>, f64) {
        let c = &self.cfg;
        let len = c.knn_window;
        if len == 0 || !value.is_finite() {
            return (None, 0.0);
        }
        buf.clear();
        let span = (c.knn_reference + 2 * len) as i64;
        h.fill(slot - span, slot, buf);
        buf.push(value);
        let Some(alpha) = knn::ncm(buf, len, c.knn_k, c.knn_reference) else {
            return (None, 0.0);
        };
        if (self.knn_seen as usize) < c.knn_min_calibration.max(1) || self.knn_record <= 0.0 {
            return (Some(alpha), 0.0);
        }
        (Some(alpha), alpha / self.knn_record)
    }

    /// True when a raw value of the last `recur_cycles` cycles, before the quiet time of an
    /// episode (`refractory` points), deviates from the expectation `e` (transformed scale) in
    /// the direction of `r` by at least `recur_frac` of `|r|`: the extreme has been seen lately.
    fn recurs(&self, h: &Hist, slot: i64, e: f64, r: f64) -> bool {
        let c = &self.cfg;
        let cycle = c.season_len.unwrap_or(24) as i64;
        if c.recur_cycles == 0 || r == 0.0 {
            return false;
        }
        let from = slot - i64::from(c.recur_cycles) * cycle;
        let to = slot - c.refractory as i64;
        let bar = f64::from(c.recur_frac) * r.abs();
        h.range(from, to).any(|(_, x)| {
            let d = self.fwd(x) - e;
            d * r > 0.0 && d.abs() >= bar
        })
    }

    /// Bytes this detector holds on the heap (its history ring, if it keeps one, and its
    /// residual ring); add `size_of::<Detector>()` for the whole.
    pub fn heap_bytes(&self) -> usize {
        self.ring.as_deref().map_or(0, std::mem::size_of_val)
            + std::mem::size_of_val(&*self.residuals.vals)
    }

    fn fwd(&self, x: f64) -> f64 {
        match self.log_offset {
            Some(c) => (x + c).max(c * 1e-3).ln(),
            None => x,
        }
    }

    fn inv(&self, y: f64) -> f64 {
        match self.log_offset {
            Some(c) => y.exp() - c,
            None => y,
        }
    }

    fn decide_transform(&mut self, h: &Hist) {
        self.transform_decided = true;
        if !self.cfg.log_transform {
            return;
        }
        let raws: Vec<f64> = h.iter().map(|(_, v)| v).collect();
        if raws.iter().any(|x| *x < 0.0) {
            return;
        }
        // ln(x + c): c keeps zeros finite; a tenth of the typical level keeps small values from
        // dominating while leaving the multiplicative shape of the bulk intact.
        let med = stats::median(&raws);
        let frac = self.cfg.log_offset_frac.max(1e-6);
        let c = if med > 0.0 {
            frac * med
        } else {
            let m = stats::mean(&raws);
            if m > 0.0 { frac * m } else { 1.0 }
        };
        self.log_offset = Some(c);
    }

    /// Transformed values of the history whose slot lies in `[from, to)`.
    fn window(&self, h: &Hist, from: i64, to: i64, out: &mut Vec<f64>) {
        out.clear();
        out.extend(h.range(from, to).map(|(_, v)| self.fwd(v)));
    }

    fn value_at(&self, h: &Hist, slot: i64) -> Option<f64> {
        h.get(slot).map(|v| self.fwd(v))
    }

    /// Level and seasonal offset for `slot` from the history before it (transformed scale).
    fn expectation(&self, h: &Hist, slot: i64, buf: &mut Vec<f64>) -> Option<f64> {
        self.window(h, slot - self.cfg.level_window as i64, slot, buf);
        if buf.len() * 2 < self.cfg.level_window {
            // Too little recent history (after a long gap): fall back to the whole history.
            self.window(h, i64::MIN, slot, buf);
        }
        let level = stats::median_in_place(buf);
        if !level.is_finite() {
            return None;
        }
        let Some(p) = self.cfg.season_len.filter(|p| *p >= 2) else {
            return Some(level);
        };
        let p = p as i64;
        let half = p / 2;
        let mut devs = Vec::with_capacity(self.cfg.seasons_back);
        for k in 1..=self.cfg.seasons_back as i64 {
            let s = slot - k * p;
            let Some(v) = self.value_at(h, s) else {
                continue;
            };
            // Centred cycle around the past point; it ends before `slot` because half < p.
            self.window(h, s - half, s - half + p, buf);
            if buf.len() * 2 < p as usize {
                continue;
            }
            devs.push(v - stats::median_in_place(buf));
        }
        // With a single past cycle the offset is too noisy to trust.
        let seasonal = if devs.len() >= 2 {
            stats::median_in_place(&mut devs)
        } else {
            0.0
        };
        Some(level + seasonal)
    }

    /// Robust spread of recent residuals: 1.4826 * MAD, or 1.2533 * mean absolute deviation when
    /// more than half the residuals are equal (count data), with a tiny floor so a constant
    /// series flags any change instead of dividing by zero.
    fn scale(&self, buf: &mut Vec<f64>) -> f64 {
        buf.clear();
        buf.extend(self.residuals.iter().filter(|x| x.is_finite()));
        let med = stats::median_in_place(buf);
        for x in buf.iter_mut() {
            *x = (*x - med).abs();
        }
        let mean_abs = stats::mean(buf);
        let mut s = 1.4826 * stats::median_in_place(buf);
        if s <= 0.0 || !s.is_finite() {
            s = 1.2533 * mean_abs;
        }
        if !s.is_finite() {
            s = 0.0;
        }
        s.max(1e-9)
    }

    /// Calibrated exceedance rate and mean excess of `|z|` over `tail_z`.
    fn tail_params(&self, tail: &Tail) -> (f64, f64) {
        let c = &self.cfg;
        let rate = (tail.exceedances + c.tail_prior_rate * c.tail_prior_points)
            / (tail.points + c.tail_prior_points);
        let beta = (tail.excess + c.tail_prior_excess * c.tail_prior_exceedances)
            / (tail.exceedances + c.tail_prior_exceedances);
        (rate.clamp(1e-12, 1.0), beta.max(1e-6))
    }

    /// `-log10 P(|Z| >= |z|)` under the calibrated tail.
    fn neg_log10_p(&self, tail: &Tail, z: f64) -> f64 {
        let a = z.abs();
        if a <= self.cfg.tail_z {
            return 0.0;
        }
        let (rate, beta) = self.tail_params(tail);
        ((a - self.cfg.tail_z) / beta - rate.ln()) / std::f64::consts::LN_10
    }

    /// The `|z|` at which the tail probability reaches the alert threshold (band half-width).
    fn z_threshold(&self) -> f64 {
        let (rate, beta) = self.tail_params(&self.tail);
        let ln_p = -self.cfg.alert_log10_p * std::f64::consts::LN_10;
        (self.cfg.tail_z + beta * (rate.ln() - ln_p).max(0.0)).max(self.cfg.min_z)
    }

    fn learn_tail(cfg: &DetectorConfig, t: &mut Tail, z: f64) {
        let keep = 1.0 - 1.0 / cfg.tail_memory.max(1.0);
        t.points = keep * t.points + 1.0;
        t.exceedances *= keep;
        t.excess *= keep;
        let a = z.abs();
        if a > cfg.tail_z {
            t.exceedances += 1.0;
            // One enormous point must not make the tail infinitely long.
            t.excess += (a - cfg.tail_z).min(50.0);
        }
    }

    /// Scores `value` observed at `ts` (epoch seconds), then learns from it.
    ///
    /// Points must come in time order; a point whose slot is not after the last one (a
    /// duplicate timestamp, or a row out of order) is scored against the same expectation but
    /// not learned. A non-finite value is `Missing`: not scored, not learned.
    pub fn update(&mut self, ts: i64, value: f64) -> Scored {
        self.step(ts, value, None)
    }

    /// [`Detector::update`] for a detector that reads its history from `past` (see
    /// [`Detector::reading`]); a detector with a ring of its own reads that instead.
    pub fn update_from(&mut self, ts: i64, value: f64, past: &dyn Past) -> Scored {
        self.step(ts, value, Some(past))
    }

    fn step(&mut self, ts: i64, value: f64, past: Option<&dyn Past>) -> Scored {
        let value = kept(value);
        if self.origin == i64::MIN {
            self.origin = ts;
        }
        let origin = self.origin;
        let step = self.cfg.step_secs.max(1);
        let slot = ((ts - origin) as f64 / step as f64).round() as i64;
        let ready = self.seen as usize >= self.cfg.warmup && self.transform_decided;
        let mut buf = SCRATCH.with(|b| std::mem::take(&mut *b.borrow_mut()));
        // taken out for the update (the history is read while the detector learns)
        let mut ring = self.ring.take();
        let h = self.hist(ring.as_deref(), past);
        let (knn_alpha, knn_ratio) = self.contextual(&h, slot, value, &mut buf);
        let expected_t = if ready {
            self.expectation(&h, slot, &mut buf)
        } else {
            None
        };
        let fresh = slot > self.last_slot;
        let scored = match expected_t {
            Some(e) => {
                let scale = self.scale(&mut buf);
                let zt = self.z_threshold();
                let mut out = Scored {
                    score: 0.0,
                    neg_log10_p: 0.0,
                    z: 0.0,
                    shift_z: 0.0,
                    expected: self.inv(e),
                    lower: self.inv(e - zt * scale),
                    upper: self.inv(e + zt * scale),
                    is_anomaly: false,
                    state: PointState::Missing,
                    knn_ratio,
                    knn_alpha: knn_alpha.unwrap_or(f64::NAN),
                    recurrent: false,
                };
                if value.is_finite() {
                    let r = self.fwd(value) - e;
                    let z = r / scale;
                    // A sustained shift: the weighted mean of recent z (clipped, so one spike
                    // does not count as a shift), standardised to unit variance under noise.
                    let a = 2.0 / (self.cfg.shift_span.max(1.0) + 1.0);
                    let shift = (1.0 - a) * self.shift + a * z.clamp(-10.0, 10.0);
                    let shift_z = shift / (a / (2.0 - a)).sqrt();
                    // Two tests: the smaller p-value, Bonferroni-corrected.
                    let l = (self
                        .neg_log10_p(&self.tail, z)
                        .max(self.neg_log10_p(&self.shift_tail, shift_z))
                        - std::f64::consts::LOG10_2)
                        .max(0.0);
                    // Only for points out in the tail (the scan is over the history ring).
                    let recurrent = z.abs() >= self.cfg.tail_z.min(self.cfg.min_z)
                        && self.recurs(&h, slot, e, r);
                    let c = &self.cfg;
                    // The ensemble: the seasonal point/shift test or the contextual test.
                    let anomalous =
                        z_anomalous(l, z, shift_z, recurrent, c.alert_log10_p, c.min_z, c)
                            || context_anomalous(knn_ratio, c.knn_margin, self.since_alert(), c);
                    out.recurrent = recurrent;
                    out.z = z;
                    out.shift_z = shift_z;
                    out.neg_log10_p = l;
                    let knn_excess = (knn_ratio - 1.0).max(0.0);
                    out.score = (l / (l + c.alert_log10_p.max(1e-9)))
                        .max(knn_excess / (knn_excess + (c.knn_margin - 1.0).max(1e-9)));
                    out.is_anomaly = anomalous;
                    // One alert per episode: a new alert only after `refractory` points in a
                    // row with nothing anomalous, however long the anomalous stretch.
                    out.state = if !anomalous {
                        PointState::Normal
                    } else if self.since_alert() >= c.refractory {
                        PointState::Alert
                    } else {
                        PointState::Anomalous
                    };
                    self.since_alert = if anomalous {
                        0
                    } else {
                        self.since_alert.saturating_add(1)
                    };
                    if fresh {
                        self.residuals.push(r);
                        self.shift = shift;
                        Self::learn_tail(&self.cfg, &mut self.tail, z);
                        Self::learn_tail(&self.cfg, &mut self.shift_tail, shift_z);
                    }
                }
                out
            }
            None => {
                // Warming up: the running median, no band yet.
                buf.clear();
                buf.extend(h.iter().map(|(_, v)| v));
                let m = stats::median_in_place(&mut buf);
                let m = if m.is_finite() { m } else { value };
                Scored {
                    score: 0.0,
                    neg_log10_p: 0.0,
                    z: 0.0,
                    shift_z: 0.0,
                    expected: m,
                    lower: f64::NAN,
                    upper: f64::NAN,
                    is_anomaly: false,
                    state: if value.is_finite() {
                        PointState::Warmup
                    } else {
                        PointState::Missing
                    },
                    knn_ratio: 0.0,
                    knn_alpha: knn_alpha.unwrap_or(f64::NAN),
                    recurrent: false,
                }
            }
        };
        SCRATCH.with(|b| *b.borrow_mut() = buf);
        if let (Some(a), true) = (knn_alpha, fresh) {
            let keep = 1.0 - 1.0 / self.cfg.knn_memory.max(1.0);
            self.knn_record = a.max(self.knn_record * keep);
            self.knn_seen = self.knn_seen.saturating_add(1);
        }
        if value.is_finite() && fresh {
            self.seen = self.seen.saturating_add(1);
            let cap = Self::history_slots(&self.cfg) as i64;
            push_slot(
                ring.as_deref_mut(),
                cap,
                &mut self.start,
                &mut self.last_slot,
                slot,
                value,
            );
            if !self.transform_decided && self.seen as usize >= self.cfg.warmup {
                let h = self.hist(ring.as_deref(), past);
                self.decide_transform(&h);
                // Seed the spread from the warm-up so the first scored points have a scale.
                self.seed_residuals(&h);
            }
        }
        self.ring = ring;
        scored
    }

    fn seed_residuals(&mut self, h: &Hist) {
        let slots: Vec<i64> = h.iter().map(|(s, _)| s).collect();
        let mut res = Vec::new();
        let mut buf = Vec::new();
        for s in slots {
            if let (Some(e), Some(v)) = (self.expectation(h, s, &mut buf), self.value_at(h, s)) {
                res.push(v - e);
            }
        }
        self.residuals.clear();
        let skip = res.len().saturating_sub(self.cfg.scale_window);
        for r in res.into_iter().skip(skip) {
            self.residuals.push(r);
        }
        // Calibrate the tails on the warm-up too, so a spiky series starts with its own tail
        // instead of the prior's.
        let scale = self.scale(&mut buf);
        let a = 2.0 / (self.cfg.shift_span.max(1.0) + 1.0);
        let zs: Vec<f64> = self.residuals.iter().map(|r| r / scale).collect();
        for z in zs {
            self.shift = (1.0 - a) * self.shift + a * z.clamp(-10.0, 10.0);
            let shift_z = self.shift / (a / (2.0 - a)).sqrt();
            Self::learn_tail(&self.cfg, &mut self.tail, z);
            Self::learn_tail(&self.cfg, &mut self.shift_tail, shift_z);
        }
    }
}

/// Alerts from a sequence of scores for another threshold, with the same episode rule as the
/// detector (used by the evaluation to sweep the threshold without re-running the detector).
pub fn alerts_at(
    scored: &[Scored],
    cfg: &DetectorConfig,
    alert_log10_p: f64,
    min_z: f64,
    knn_margin: f64,
    refractory: usize,
) -> Vec<bool> {
    let mut since = usize::MAX;
    scored
        .iter()
        .map(|s| {
            let scorable = matches!(
                s.state,
                PointState::Normal | PointState::Alert | PointState::Anomalous
            );
            if !scorable {
                return false;
            }
            let anomalous = z_anomalous(
                s.neg_log10_p,
                s.z,
                s.shift_z,
                s.recurrent,
                alert_log10_p,
                min_z,
                cfg,
            ) || context_anomalous(s.knn_ratio, knn_margin, since, cfg);
            let alert = anomalous && since >= refractory;
            since = if anomalous {
                0
            } else {
                since.saturating_add(1)
            };
            alert
        })
        .collect()
}

/// The contextual detector's rule: the context beats the record by the margin, and holds no
/// point that was already anomalous (`since_anomalous` points ago): the contexts that follow a
/// spike are unusual only because of it, and the spike was judged already.
fn context_anomalous(
    ratio: f64,
    margin: f64,
    since_anomalous: usize,
    cfg: &DetectorConfig,
) -> bool {
    ratio >= margin && since_anomalous >= cfg.knn_window.saturating_sub(1)
}

/// The seasonal detector's rule: tail probability at most `10^-alert_log10_p` and a robust
/// `|z|` (of the point or of the shift statistic) of at least `min_z`; a recurrent extreme
/// counts only through a shift of at least `recur_shift_factor` x `min_z`.
fn z_anomalous(
    l: f64,
    z: f64,
    shift_z: f64,
    recurrent: bool,
    alert_log10_p: f64,
    min_z: f64,
    cfg: &DetectorConfig,
) -> bool {
    let strong = if recurrent && z.abs() >= min_z {
        shift_z.abs() >= f64::from(cfg.recur_shift_factor) * min_z
    } else {
        z.abs().max(shift_z.abs()) >= min_z
    };
    l >= alert_log10_p && strong
}

/// Settings of the tracking-break test.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingBreakConfig {
    /// Consecutive hours with zero conversions (and clicks) before the test may fire.
    pub zero_hours: usize,
    /// Clicks over those hours must be at least this fraction of the baseline clicks for the same
    /// number of hours (0.5 = 50%): a traffic drop is not a tracking break.
    pub min_click_ratio: f64,
    /// Hours of history (before the zero run) that form the baseline.
    pub baseline_hours: usize,
    /// The test fires when the probability of what was seen, if tracking worked, is at most this.
    pub max_p: f64,
    /// ... or, when the shop recorded orders from the campaign during the zero run, when the
    /// joint probability of the run (no conversion over its clicks, and every one of those
    /// orders missed) is at most this. A missed attributed order is direct evidence, so the
    /// bar is lower than for silence alone (see `docs/models.md` for what it costs).
    pub max_p_orders: f64,
}

impl Default for TrackingBreakConfig {
    fn default() -> Self {
        TrackingBreakConfig {
            zero_hours: 6,
            min_click_ratio: 0.5,
            baseline_hours: 10 * 24,
            max_p: 0.01,
            max_p_orders: 0.05,
        }
    }
}

/// Why the tracking-break test fired (or would fire first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingReason {
    /// Not flagged.
    None,
    /// Zero conversions over the run's clicks is too unlikely at the campaign's own rate.
    ZeroConversions,
    /// The shop recorded orders attributed to the campaign that the platform did not count.
    UnmatchedOrders,
}

impl TrackingReason {
    /// Lower-case name for QuestDB and logs.
    pub fn name(self) -> &'static str {
        match self {
            TrackingReason::None => "none",
            TrackingReason::ZeroConversions => "zero_conversions",
            TrackingReason::UnmatchedOrders => "unmatched_shop_orders",
        }
    }
}

/// State of the tracking-break test after one hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackingStatus {
    /// Hours in a row with zero conversions (and clicks).
    pub zero_hours: usize,
    /// Clicks in the zero run divided by baseline clicks for as many hours (NaN without baseline).
    pub click_ratio: f64,
    /// Conversions the baseline rate predicts for the zero run's clicks.
    pub expected_conversions: f64,
    /// Probability of zero conversions in the run if tracking worked: the negative-binomial
    /// predictive `(C / (C + c))^K` of a Poisson rate per click with the baseline's K conversions
    /// over C clicks (Gamma posterior), so a campaign with 3 conversions is judged on its own
    /// uncertain rate instead of being skipped.
    pub p_zero: f64,
    /// Shop orders attributed to the campaign during the run (platform counted none).
    pub unmatched_orders: f64,
    /// Probability of the run if tracking worked: no conversion over its clicks (`p_zero`) and
    /// the platform missing all `S` attributed orders, `p_zero * (1 - q)^S`, with `q` the share
    /// of attributed shop orders the platform counted over the baseline, of this campaign and of
    /// the business's other campaigns (the pool; Beta(1, 1) prior). 1 without orders.
    pub p_orders: f64,
    /// Why it fired.
    pub reason: TrackingReason,
    /// True when the test fires.
    pub broken: bool,
}

/// The hours a [`TrackingBreak`] keeps: the last `cap` of its baseline followed by the current
/// zero-conversion run, each (clicks, platform conversions, attributed shop orders), oldest
/// overwritten first. Stored in the narrowest of three forms that holds every value pushed
/// exactly: quarters in a `u16` (`Quarters`: counts up to 16,383.75 in steps of 0.25, which
/// are what most campaigns' hours hold), `f32` (hourly counts below 2^24), else `f64`. The
/// whole ring is converted, exactly, at the first value its form does not hold: 6 bytes an hour
/// (12 as `f32`, 24 as `f64`), and what is read back is bit for bit what was pushed, so the
/// sums that subtract it stay exact.
#[derive(Debug, Clone)]
enum HourRing {
    Quarters(Box<[[u16; 3]]>),
    Narrow(Box<[[f32; 3]]>),
    Wide(Box<[[f64; 3]]>),
}

/// `x` in quarters as a `u16`, when that reads back as `x` bit for bit (so not `-0.0`).
fn quarters(x: f64) -> Option<u16> {
    let q = x * 4.0;
    if !(0.0..=f64::from(u16::MAX)).contains(&q) || q.fract() != 0.0 {
        return None;
    }
    let n = q as u16;
    (unquarter(n).to_bits() == x.to_bits()).then_some(n)
}

fn unquarter(n: u16) -> f64 {
    f64::from(n) / 4.0
}

impl HourRing {
    fn slots(&self) -> usize {
        match self {
            HourRing::Quarters(v) => v.len(),
            HourRing::Narrow(v) => v.len(),
            HourRing::Wide(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> (f64, f64, f64) {
        match self {
            HourRing::Quarters(v) => {
                let [a, b, c] = v[i];
                (unquarter(a), unquarter(b), unquarter(c))
            }
            HourRing::Narrow(v) => {
                let [a, b, c] = v[i];
                (f64::from(a), f64::from(b), f64::from(c))
            }
            HourRing::Wide(v) => {
                let [a, b, c] = v[i];
                (a, b, c)
            }
        }
    }

    fn set(&mut self, i: usize, row: (f64, f64, f64)) {
        let narrow = |x: f64| {
            let n = x as f32;
            (f64::from(n).to_bits() == x.to_bits()).then_some(n)
        };
        if let HourRing::Quarters(v) = self {
            if let (Some(a), Some(b), Some(c)) = (quarters(row.0), quarters(row.1), quarters(row.2))
            {
                v[i] = [a, b, c];
                return;
            }
            // a quarter below 16,384 is an f32 exactly
            let f: Box<[[f32; 3]]> = v
                .iter()
                .map(|r| r.map(|n| f32::from(n) / 4.0))
                .collect::<Vec<_>>()
                .into_boxed_slice();
            *self = HourRing::Narrow(f);
        }
        if let HourRing::Narrow(v) = self {
            if let (Some(a), Some(b), Some(c)) = (narrow(row.0), narrow(row.1), narrow(row.2)) {
                v[i] = [a, b, c];
                return;
            }
            let wide: Box<[[f64; 3]]> = v
                .iter()
                .map(|r| r.map(f64::from))
                .collect::<Vec<_>>()
                .into_boxed_slice();
            *self = HourRing::Wide(wide);
        }
        if let HourRing::Wide(v) = self {
            v[i] = [row.0, row.1, row.2];
        }
    }

    fn bytes(&self) -> usize {
        match self {
            HourRing::Quarters(v) => std::mem::size_of_val(&**v),
            HourRing::Narrow(v) => std::mem::size_of_val(&**v),
            HourRing::Wide(v) => std::mem::size_of_val(&**v),
        }
    }
}

/// Streaming test for broken conversion tracking at low volume. Feed one hour at a time.
///
/// Its memory is bounded whatever the history: the baseline's hours and the current run's are
/// kept in one ring of `baseline_hours` slots (the run's hours are what the baseline receives
/// when the run ends, so they enter the ring as they come, and the sums the baseline will have
/// then are kept beside the frozen ones the test reads), and of the run only its length and
/// sums. A campaign that never converts no longer grows a run vector by an hour each hour.
#[derive(Debug, Clone)]
pub struct TrackingBreak {
    cfg: TrackingBreakConfig,
    /// The last `cfg.baseline_hours` hours of the baseline followed by the run (allocated at the
    /// first hour kept).
    ring: Option<HourRing>,
    /// Hours in the ring, and where the oldest is.
    len: usize,
    head: usize,
    /// Hours of the baseline as the test reads it (before the run), at most `len`.
    baseline_len: usize,
    /// Sums of the baseline (clicks, conversions, orders), kept up to date; frozen during a run.
    sums: (f64, f64, f64),
    /// What `sums` become when the run ends: the run's hours added and the hours they push out
    /// subtracted, in the order the baseline would add and drop them.
    pending: (f64, f64, f64),
    /// Hours in the current zero-conversion run, and their clicks and shop orders summed in
    /// order (what summing the run's hours gives).
    run_hours: usize,
    run_clicks: f64,
    run_orders: f64,
}

/// What summing no value gives (`Sum for f64`'s neutral element), where a run's sums start.
fn empty_sum() -> f64 {
    std::iter::empty::<f64>().sum()
}

impl TrackingBreak {
    /// A new test.
    pub fn new(cfg: TrackingBreakConfig) -> Self {
        TrackingBreak {
            cfg,
            ring: None,
            len: 0,
            head: 0,
            baseline_len: 0,
            sums: (0.0, 0.0, 0.0),
            pending: (0.0, 0.0, 0.0),
            run_hours: 0,
            run_clicks: empty_sum(),
            run_orders: empty_sum(),
        }
    }

    /// Feeds one hour of clicks and platform conversions (no shop attribution known).
    pub fn update(&mut self, clicks: f64, conversions: f64) -> TrackingStatus {
        self.update_with_orders(clicks, conversions, None, (0.0, 0.0))
    }

    /// Platform conversions and attributed shop orders over the baseline (for the pool of the
    /// business's other campaigns).
    pub fn baseline_matches(&self) -> (f64, f64) {
        (self.sums.1, self.sums.2)
    }

    /// Bytes this test holds on the heap (its ring of hours); add `size_of::<TrackingBreak>()`
    /// for the whole.
    pub fn heap_bytes(&self) -> usize {
        self.ring.as_ref().map_or(0, HourRing::bytes)
    }

    /// Appends `row` to the ring and to the `pending` sums (added first, then the hour it
    /// pushes out subtracted, as the baseline did).
    fn push_hour(&mut self, row: (f64, f64, f64)) {
        let s = self.pending;
        self.pending = (s.0 + row.0, s.1 + row.1, s.2 + row.2);
        let cap = self.cfg.baseline_hours;
        if cap == 0 {
            // the baseline holds nothing: the hour is added and dropped at once
            let s = self.pending;
            self.pending = (s.0 - row.0, s.1 - row.1, s.2 - row.2);
            return;
        }
        let ring = self
            .ring
            .get_or_insert_with(|| HourRing::Quarters(vec![[0; 3]; cap].into_boxed_slice()));
        debug_assert_eq!(ring.slots(), cap);
        if self.len == cap {
            let o = ring.get(self.head);
            let s = self.pending;
            self.pending = (s.0 - o.0, s.1 - o.1, s.2 - o.2);
            ring.set(self.head, row);
            self.head = (self.head + 1) % cap;
        } else {
            ring.set((self.head + self.len) % cap, row);
            self.len += 1;
        }
    }

    /// Feeds one hour of clicks, platform conversions and, when known, shop orders attributed
    /// to the campaign, with `pool` = (platform conversions, attributed shop orders) of the
    /// business's other campaigns over their baselines (what the platforms usually count of
    /// the shop's orders). Non-finite or negative inputs count as missing and leave the state
    /// unchanged.
    pub fn update_with_orders(
        &mut self,
        clicks: f64,
        conversions: f64,
        shop_orders: Option<f64>,
        pool: (f64, f64),
    ) -> TrackingStatus {
        let orders = shop_orders.filter(|o| o.is_finite() && *o >= 0.0);
        let valid =
            clicks.is_finite() && conversions.is_finite() && clicks >= 0.0 && conversions >= 0.0;
        if valid {
            let o = orders.unwrap_or(0.0);
            if conversions == 0.0 && clicks > 0.0 {
                // A run hour: the baseline receives it as (clicks, 0, orders) when the run ends.
                self.push_hour((clicks, 0.0, o));
                self.run_hours += 1;
                self.run_clicks += clicks;
                self.run_orders += o;
            } else {
                // The run ends: its hours (already in the ring) join the baseline.
                self.push_hour((clicks, conversions, o));
                self.sums = self.pending;
                self.baseline_len = self.len;
                self.run_hours = 0;
                self.run_clicks = empty_sum();
                self.run_orders = empty_sum();
            }
        }
        self.status(pool)
    }

    fn status(&self, pool: (f64, f64)) -> TrackingStatus {
        let n = self.run_hours;
        let (b_clicks, b_conv, b_orders) = self.sums;
        let b_hours = self.baseline_len as f64;
        let run_clicks = self.run_clicks;
        let run_orders = self.run_orders;
        let click_ratio = if b_hours > 0.0 && b_clicks > 0.0 {
            run_clicks / (b_clicks / b_hours * n as f64)
        } else {
            f64::NAN
        };
        let expected = if b_clicks > 0.0 {
            b_conv / b_clicks * run_clicks
        } else {
            0.0
        };
        // A campaign that never converted carries no evidence of tracking.
        let p_zero = if b_conv > 0.0 && b_clicks > 0.0 {
            (b_clicks / (b_clicks + run_clicks)).powf(b_conv)
        } else {
            1.0
        };
        // Share of attributed orders the platform counts when tracking works: this campaign's
        // baseline plus the other campaigns' (more conversions than orders count as all matched).
        let matched = b_conv.min(b_orders) + pool.0.min(pool.1);
        let attributed = b_orders + pool.1;
        let q = ((matched + 1.0) / (attributed + 2.0)).clamp(0.0, 1.0);
        let p_orders = if b_conv > 0.0 && run_orders > 0.0 {
            p_zero * (1.0 - q).powf(run_orders)
        } else {
            1.0
        };
        let eligible = n >= self.cfg.zero_hours && click_ratio >= self.cfg.min_click_ratio;
        let reason = if !eligible {
            TrackingReason::None
        } else if p_orders <= self.cfg.max_p_orders && p_orders <= p_zero {
            TrackingReason::UnmatchedOrders
        } else if p_zero <= self.cfg.max_p {
            TrackingReason::ZeroConversions
        } else {
            TrackingReason::None
        };
        TrackingStatus {
            zero_hours: n,
            click_ratio,
            expected_conversions: expected,
            p_zero,
            unmatched_orders: run_orders,
            p_orders,
            reason,
            broken: reason != TrackingReason::None,
        }
    }

    /// The smaller of the two probabilities (the evidence against working tracking).
    pub fn p_value(status: &TrackingStatus) -> f64 {
        status.p_zero.min(status.p_orders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn hourly(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|t| {
                let daily = 1.0 + 0.5 * (2.0 * std::f64::consts::PI * (t % 24) as f64 / 24.0).sin();
                100.0 * daily * (1.0 + 0.05 * (rng.random::<f64>() - 0.5))
            })
            .collect()
    }

    /// A [`Past`] over given points by timestamp (what the service's store answers).
    struct ByTs(std::collections::BTreeMap<i64, f64>);

    impl Past for ByTs {
        fn at(&self, ts: i64) -> Option<f64> {
            self.0.get(&ts).copied()
        }
    }

    #[test]
    fn a_detector_reading_its_past_scores_as_one_keeping_its_own() {
        // Six weeks of a daily cycle with gaps (a day missing, then single hours), NaNs, a
        // repeated timestamp, a spike, a level shift and a zero run: every branch that reads
        // the history (warm-up, transform, seeding, expectation, spread, contextual, recurrence).
        let mut xs = hourly(24 * 42, 21);
        for (i, x) in xs.iter_mut().enumerate() {
            match i {
                300 | 700 => *x *= 6.0,
                800..=860 => *x *= 2.5,
                900..=910 => *x = 0.0,
                _ if i % 97 == 5 => *x = f64::NAN,
                _ => {}
            }
        }
        let mut points: Vec<(i64, f64)> = xs
            .iter()
            .enumerate()
            .filter(|(i, _)| !(400..424).contains(i) && i % 53 != 7)
            .map(|(i, x)| (i as i64 * 3600 + 1_700_000_000, *x))
            .collect();
        points.insert(500, points[499]);
        let cfg = std::sync::Arc::new(DetectorConfig::for_step(3600));
        let mut own = Detector::shared(cfg.clone());
        let mut reading = Detector::reading(cfg);
        // the past as a store holds it: every point given so far (the detector asks for the
        // ones it learned only)
        let mut past = ByTs(Default::default());
        let mut alerts = 0;
        for (i, (ts, x)) in points.iter().enumerate() {
            past.0.insert(*ts, *x);
            let a = own.update(*ts, *x);
            let b = reading.update_from(*ts, *x, &past);
            // bit for bit (NaN bands of the warm-up compare by their bits too)
            let bits = |s: &Scored| {
                [
                    s.score,
                    s.neg_log10_p,
                    s.z,
                    s.shift_z,
                    s.expected,
                    s.lower,
                    s.upper,
                    s.knn_ratio,
                    s.knn_alpha,
                ]
                .map(f64::to_bits)
            };
            assert_eq!(bits(&a), bits(&b), "point {i} at {ts}");
            assert_eq!(
                (a.state, a.is_anomaly, a.recurrent),
                (b.state, b.is_anomaly, b.recurrent)
            );
            alerts += usize::from(a.state == PointState::Alert);
        }
        // the series exercised the scoring, not only the warm-up
        assert!(alerts >= 2, "{alerts} alerts");
        // without a past a reading detector has no history: it never leaves the warm-up
        let mut blind = Detector::reading(std::sync::Arc::new(DetectorConfig::for_step(3600)));
        let last = points
            .iter()
            .map(|(ts, x)| blind.update(*ts, *x))
            .last()
            .unwrap();
        assert_eq!(last.state, PointState::Warmup);
    }

    #[test]
    fn bytes_per_hourly_detector() {
        // What the service keeps per campaign series: an hourly detector after weeks of data.
        let mut d = Detector::new(DetectorConfig::for_step(3600));
        for (i, x) in hourly(24 * 30, 9).iter().enumerate() {
            d.update(i as i64 * 3600, *x);
        }
        let total = d.heap_bytes() + std::mem::size_of::<Detector>();
        println!(
            "hourly detector: {} heap + {} inline = {total} bytes",
            d.heap_bytes(),
            std::mem::size_of::<Detector>()
        );
        // By hand: history = 7 past cycles x 24 + half a cycle (12) + the level window (24)
        // + 1 = 205 slots back, so 206 f32 slots = 824 bytes (f64: 1,648); residuals = 7 x 24
        // = 168 bf16 = 336 bytes. (Two VecDeques of (slot, f64) and f64 held 3,836 bytes.)
        assert_eq!(d.heap_bytes(), 206 * 4 + 168 * 2);
        // Inline, by hand: the shared settings' pointer 8; origin, first and last slot
        // 8 + 8 + 8; seen, since-alert and contextual count (u32) 12 and the transform flag 1,
        // padded to 16; the history ring (an optional boxed slice) 16; the residual ring
        // (boxed slice 16, length and next 16) 32; the log offset (Option<f64>) 16; two tails
        // of 3 f64 48; shift and the contextual record 16: 176 bytes. (A copy of the 208-byte
        // settings in each and usize counters made 400.)
        assert_eq!(std::mem::size_of::<Detector>(), 176);
        // One that reads its history from the caller's store holds the residuals only.
        let mut r = Detector::reading(std::sync::Arc::new(DetectorConfig::for_step(3600)));
        let xs = hourly(24 * 30, 9);
        let past = ByTs(
            xs.iter()
                .enumerate()
                .map(|(i, x)| (i as i64 * 3600, *x))
                .collect(),
        );
        for (i, x) in xs.iter().enumerate() {
            r.update_from(i as i64 * 3600, *x, &past);
        }
        assert_eq!(r.heap_bytes(), 168 * 2);
        // The settings are not copied into a shared detector.
        let cfg = std::sync::Arc::new(DetectorConfig::for_step(3600));
        let shared: Vec<Detector> = (0..3).map(|_| Detector::shared(cfg.clone())).collect();
        assert_eq!(std::sync::Arc::strong_count(&cfg), 4);
        assert!(shared.iter().all(|d| std::ptr::eq(d.config(), &*cfg)));
    }

    #[test]
    fn bytes_per_tracking_test() {
        // Ten days of hours, then a month without a conversion (the run): the ring stays at
        // the baseline's 240 hours of three quarter counts (6 bytes) = 1,440 bytes. (A VecDeque
        // of (f64, f64, f64) grown to 256 and a run vector of (f64, f64) grown to 1,024 held
        // 6,144 + 16,384 bytes.)
        let mut tb = TrackingBreak::new(TrackingBreakConfig::default());
        for h in 0..240 {
            tb.update_with_orders(30.0, f64::from(h % 7 == 0), Some(1.0), (0.0, 0.0));
        }
        for _ in 0..24 * 30 {
            tb.update_with_orders(30.0, 0.0, Some(0.0), (0.0, 0.0));
        }
        assert_eq!(tb.heap_bytes(), 240 * 6);
        // Half a conversion is a quarter count too; 16,384 clicks in an hour are not, but are
        // an f32: the ring goes to f32 (12 bytes).
        tb.update(30.0, 0.5);
        assert_eq!(tb.heap_bytes(), 240 * 6);
        tb.update(16_384.0, 0.0);
        assert_eq!(tb.heap_bytes(), 240 * 12);
        // A fractional conversion count is not an f32: the ring widens to f64 (24 bytes).
        tb.update(30.0, 0.1);
        assert_eq!(tb.heap_bytes(), 240 * 24);
        // Inline, by hand: the settings 40 (two usize, three f64), the ring 24 (a tag and a
        // boxed slice; `None` is a niche), length, head and baseline length 24, the sums and
        // the pending sums 48, the run's length and sums 24: 160 bytes (the queue and vector
        // made 120, besides their heap).
        assert_eq!(std::mem::size_of::<TrackingBreak>(), 160);
    }

    /// The tracking-break test as it was before its bounded ring (a queue of the baseline's
    /// hours and a vector of the run's), kept to check the ring against.
    struct Reference {
        cfg: TrackingBreakConfig,
        baseline: std::collections::VecDeque<(f64, f64, f64)>,
        sums: (f64, f64, f64),
        run: Vec<(f64, f64)>,
    }

    impl Reference {
        fn push_baseline(&mut self, row: (f64, f64, f64)) {
            self.sums = (
                self.sums.0 + row.0,
                self.sums.1 + row.1,
                self.sums.2 + row.2,
            );
            self.baseline.push_back(row);
            while self.baseline.len() > self.cfg.baseline_hours {
                if let Some(o) = self.baseline.pop_front() {
                    self.sums = (self.sums.0 - o.0, self.sums.1 - o.1, self.sums.2 - o.2);
                }
            }
        }

        /// (baseline sums, baseline hours, run hours, run clicks, run orders).
        fn update(
            &mut self,
            clicks: f64,
            conversions: f64,
            shop_orders: Option<f64>,
        ) -> ((f64, f64, f64), usize, usize, f64, f64) {
            let orders = shop_orders.filter(|o| o.is_finite() && *o >= 0.0);
            let valid = clicks.is_finite()
                && conversions.is_finite()
                && clicks >= 0.0
                && conversions >= 0.0;
            if valid {
                if conversions == 0.0 && clicks > 0.0 {
                    self.run.push((clicks, orders.unwrap_or(0.0)));
                } else {
                    let run: Vec<(f64, f64)> = self.run.drain(..).collect();
                    for (c, o) in run {
                        self.push_baseline((c, 0.0, o));
                    }
                    self.push_baseline((clicks, conversions, orders.unwrap_or(0.0)));
                }
            }
            (
                self.sums,
                self.baseline.len(),
                self.run.len(),
                self.run.iter().map(|r| r.0).sum(),
                self.run.iter().map(|r| r.1).sum(),
            )
        }
    }

    #[test]
    fn the_bounded_tracking_ring_keeps_the_sums_bit_for_bit() {
        // Against the queue-and-vector version on random hours: long and short zero runs,
        // fractional clicks and conversions (which widen the ring), missing and negative
        // inputs, and baselines of 0, 1, 5 and 240 hours; every sum must be the same bits.
        // Seed 6 takes the ring through its three forms mid-stream: quarter counts for 1,000
        // hours, then eighths (an f32, not a quarter), then any fraction.
        for (seed, baseline_hours) in [(1u64, 240usize), (2, 5), (3, 1), (4, 0), (5, 240), (6, 240)]
        {
            let cfg = TrackingBreakConfig {
                baseline_hours,
                ..TrackingBreakConfig::default()
            };
            let mut tb = TrackingBreak::new(cfg.clone());
            let mut old = Reference {
                cfg,
                baseline: Default::default(),
                sums: (0.0, 0.0, 0.0),
                run: Vec::new(),
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let fractional = (3..6).contains(&seed);
            for h in 0..3_000 {
                // runs of zero conversions up to 400 hours long
                let quiet = (h / 400) % 2 == 1 && rng.random::<f64>() < 0.99;
                let mut clicks = f64::from(rng.random_range(0..60u32));
                let mut conv = if quiet {
                    0.0
                } else {
                    f64::from(rng.random_range(0..3u32))
                };
                if fractional {
                    clicks += rng.random::<f64>();
                    if conv > 0.0 {
                        conv /= 3.0;
                    }
                }
                if seed == 6 {
                    let (step, every) = match h / 1000 {
                        0 => (0.25, 4.0),
                        1 => (0.125, 8.0),
                        _ => (rng.random::<f64>(), 1.0),
                    };
                    clicks += step * f64::from(rng.random_range(0..8u32)).min(every);
                    if conv > 0.0 {
                        conv -= step;
                    }
                }
                if rng.random::<f64>() < 0.01 {
                    clicks = if h % 2 == 0 { f64::NAN } else { -1.0 };
                }
                let orders = match rng.random_range(0..4u32) {
                    0 => None,
                    1 => Some(f64::NAN),
                    n => Some(f64::from(n - 2) * if fractional { 0.7 } else { 1.0 }),
                };
                let got = tb.update_with_orders(clicks, conv, orders, (3.0, 5.0));
                let (sums, b_len, n, rc, ro) = old.update(clicks, conv, orders);
                if seed == 6 && matches!(h, 999 | 1999 | 2999) {
                    let form = [6, 12, 24][h / 1000];
                    assert_eq!(
                        tb.heap_bytes(),
                        240 * form,
                        "hour {h}: {form} bytes an hour"
                    );
                }
                let bits = |t: (f64, f64, f64)| (t.0.to_bits(), t.1.to_bits(), t.2.to_bits());
                assert_eq!(bits(tb.sums), bits(sums), "seed {seed}, hour {h}");
                assert_eq!(tb.baseline_len, b_len, "seed {seed}, hour {h}");
                assert_eq!(got.zero_hours, n, "seed {seed}, hour {h}");
                assert_eq!(
                    tb.run_clicks.to_bits(),
                    rc.to_bits(),
                    "seed {seed}, hour {h}"
                );
                assert_eq!(got.unmatched_orders.to_bits(), ro.to_bits());
            }
            assert!(old.run.len() <= 400 + 1);
        }
    }

    #[test]
    fn flags_a_spike_but_not_the_daily_cycle() {
        let mut xs = hourly(24 * 20, 1);
        xs[24 * 15 + 5] *= 3.0;
        let mut d = Detector::new(DetectorConfig::default());
        let flags: Vec<usize> = xs
            .iter()
            .enumerate()
            .filter_map(|(i, x)| d.update(i as i64 * 3600, *x).is_anomaly.then_some(i))
            .collect();
        assert_eq!(flags, vec![24 * 15 + 5]);
    }

    #[test]
    fn a_recurring_extreme_alerts_once() {
        // The same x4 spike at three different hours of three days in a row (so the seasonal
        // offset cannot absorb it): the first is news, the next two recur within 3 cycles.
        let spikes = [24 * 10 + 7, 24 * 11 + 15, 24 * 12 + 3];
        let mut xs = hourly(24 * 16, 4);
        for i in spikes {
            xs[i] *= 4.0;
        }
        let alerts = |cfg: DetectorConfig| -> Vec<usize> {
            let mut d = Detector::new(cfg);
            xs.iter()
                .enumerate()
                .filter_map(|(i, x)| {
                    (d.update(i as i64 * 3600, *x).state == PointState::Alert).then_some(i)
                })
                .collect()
        };
        assert_eq!(alerts(DetectorConfig::default()), vec![spikes[0]]);
        // Without the recurrence test each spike alerts.
        let off = DetectorConfig {
            recur_cycles: 0,
            ..DetectorConfig::default()
        };
        assert_eq!(alerts(off), spikes.to_vec());
    }

    #[test]
    fn band_follows_the_season() {
        let xs = hourly(24 * 14, 2);
        let mut d = Detector::new(DetectorConfig::default());
        let mut last = Vec::new();
        for (i, x) in xs.iter().enumerate() {
            let s = d.update(i as i64 * 3600, *x);
            if i >= 24 * 13 {
                last.push((s, *x));
            }
        }
        for (s, x) in last {
            assert!(s.lower < x && x < s.upper, "{x} outside {s:?}");
            assert!((s.expected - x).abs() / x < 0.1, "{x} vs {s:?}");
            assert!((0.0..0.5).contains(&s.score));
        }
    }

    #[test]
    fn warm_up_nan_gaps_and_constant_series() {
        let mut d = Detector::new(DetectorConfig::default());
        let first = d.update(0, 5.0);
        assert_eq!(first.score, 0.0);
        assert!(!first.is_anomaly);
        let mut t = 0;
        for _ in 0..200 {
            t += 3600;
            let s = d.update(t, 5.0);
            assert!(!s.is_anomaly && s.score == 0.0);
        }
        let nan = d.update(t + 3600, f64::NAN);
        assert!(!nan.is_anomaly && nan.score == 0.0);
        // A 10-hour gap, then a change on a constant series is flagged.
        let s = d.update(t + 10 * 3600, 6.0);
        assert!(s.is_anomaly && s.score > 0.99, "{s:?}");
        assert!(s.expected.is_finite() && (s.expected - 5.0).abs() < 1e-9);
    }

    #[test]
    fn negative_series_use_the_linear_scale() {
        let mut d = Detector::new(DetectorConfig::default());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for i in 0..300 {
            let s = d.update(i * 3600, rng.random::<f64>() - 0.5);
            assert!(!s.is_anomaly || i < 72, "flag at {i}");
        }
        let s = d.update(300 * 3600, -20.0);
        assert!(s.is_anomaly);
        assert!(s.lower < s.expected && s.expected < s.upper);
    }

    #[test]
    fn tracking_break_fires_only_when_clicks_continue() {
        let cfg = TrackingBreakConfig::default();
        // Ten days of 100 clicks and 2 conversions per hour: zero conversions over 6 hours of
        // 90 clicks is (24000 / 24540)^480 = 2.3e-5 by hand.
        let mut tb = TrackingBreak::new(cfg.clone());
        for _ in 0..240 {
            assert!(!tb.update(100.0, 2.0).broken);
        }
        for h in 1..=8 {
            let s = tb.update(90.0, 0.0);
            assert_eq!(s.zero_hours, h);
            assert_eq!(s.broken, h >= cfg.zero_hours, "hour {h}: {s:?}");
            if h == 6 {
                assert!((s.p_zero - 2.3e-5).abs() < 0.2e-5, "{s:?}");
                assert_eq!(s.reason, TrackingReason::ZeroConversions);
            }
        }
        // Conversions come back: the run ends.
        assert!(!tb.update(100.0, 1.0).broken);

        // Clicks collapse together with conversions: a traffic drop, not a tracking break.
        let mut tb = TrackingBreak::new(cfg.clone());
        for _ in 0..240 {
            tb.update(100.0, 2.0);
        }
        for _ in 0..10 {
            assert!(!tb.update(10.0, 0.0).broken);
        }

        // A campaign that never converted is never flagged.
        let mut tb = TrackingBreak::new(cfg.clone());
        for _ in 0..300 {
            assert!(!tb.update(100.0, 0.0).broken);
        }
        assert!(tb.update(f64::NAN, 0.0).p_zero > 0.0);
    }

    #[test]
    fn low_volume_break_is_caught_by_unmatched_shop_orders() {
        let cfg = TrackingBreakConfig::default();
        // 3 conversions in 10 days, each matching a shop order.
        let mut tb = TrackingBreak::new(cfg.clone());
        for h in 0..240 {
            let conv = if h % 80 == 40 { 1.0 } else { 0.0 };
            tb.update_with_orders(30.0, conv, Some(conv), (0.0, 0.0));
        }
        // Tracking breaks: the shop keeps recording orders the platform does not count.
        // By hand: baseline C = 201 h x 30 clicks with K = 3 conversions, all matched, so
        // q = (3 + 1) / (3 + 2) = 0.8; the run holds 39 quiet hours before the break. One
        // unmatched order 20 h in: (201 / 260)^3 x 0.2 = 0.092 > 0.05; two, 40 h in:
        // (201 / 280)^3 x 0.2^2 = 0.0148 <= 0.05.
        let mut flagged_at = None;
        for h in 1..=72 {
            let orders = if h % 20 == 0 { 1.0 } else { 0.0 };
            let s = tb.update_with_orders(30.0, 0.0, Some(orders), (0.0, 0.0));
            if s.broken && flagged_at.is_none() {
                flagged_at = Some(h);
                assert_eq!(s.reason, TrackingReason::UnmatchedOrders, "{s:?}");
                let want = (201.0f64 / 280.0).powi(3) * 0.04;
                assert!((s.p_orders - want).abs() < 1e-9, "{s:?} vs {want}");
            }
        }
        assert_eq!(flagged_at, Some(40));
        // Zero conversions alone over the 111-hour run (39 quiet hours before the break, 72
        // after) is weak evidence at this volume: (201 h of clicks / 312 h)^3 = 0.27.
        let mut tb = TrackingBreak::new(cfg);
        for h in 0..240 {
            tb.update(30.0, if h % 80 == 40 { 1.0 } else { 0.0 });
        }
        let mut last = None;
        for _ in 0..72 {
            last = Some(tb.update(30.0, 0.0));
        }
        let last = last.expect("status");
        assert!(
            !last.broken && (last.p_zero - (201.0f64 / 312.0).powi(3)).abs() < 1e-9,
            "{last:?}"
        );
    }
}
