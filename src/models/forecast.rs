//! Forecasts with 80% and 95% intervals.
//!
//! The kept model ([`Method::HoltWinters`]) is a robust double-seasonal Holt-Winters filter
//! (Taylor 2003, with Gelper-Fried-Croux error clipping) fitted on the log scale for
//! non-negative series: a level, an optional damped trend, a daily cycle (24 steps) and a weekly
//! cycle (168 steps) for hourly data, a weekly cycle for daily data. Smoothing weights are chosen
//! on a small grid by in-sample one-step absolute error. Intervals are empirical: the quantiles of
//! the filter's own h-step-ahead errors over the last four weeks of history (a split-conformal
//! style band), so they are as wide as the model has actually been wrong, per horizon.
//!
//! Known events come from a [`FestivalCalendar`]: slots inside an event are forecast as the base
//! model plus the event's learned effect (mean log-uplift over its past occurrences), and they do
//! not update the base state, so a festival does not distort the level and the cycles after it.
//!
//! [`Method::SeasonalNaive`] is the benchmark of the MASE; [`Method::Mstl`] (Grafana's augurs
//! MSTL with an AutoETS trend, behind the `augurs` cargo feature) is the alternative that was
//! measured against Holt-Winters (see `docs/models.md`).

use chrono::{Datelike, NaiveDate, TimeZone, Utc};

use super::ModelError;
use super::series::{RegularSeries, TimestampStyle};
use super::stats;

/// One known event: a festival day or a season, inclusive dates in the reporting timezone.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FestivalEvent {
    /// Event family; occurrences with the same name share one learned effect.
    pub name: String,
    /// First day.
    pub start: NaiveDate,
    /// Last day (inclusive).
    pub end: NaiveDate,
}

/// Known-event calendar.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FestivalCalendar {
    /// Offset of the reporting timezone from UTC in minutes (330 for Asia/Kolkata), used to
    /// map a timestamp to its day.
    pub utc_offset_minutes: i32,
    /// The events.
    pub events: Vec<FestivalEvent>,
}

fn ev(name: &str, start: (i32, u32, u32), end: (i32, u32, u32)) -> Option<FestivalEvent> {
    Some(FestivalEvent {
        name: name.to_string(),
        start: NaiveDate::from_ymd_opt(start.0, start.1, start.2)?,
        end: NaiveDate::from_ymd_opt(end.0, end.1, end.2)?,
    })
}

impl Default for FestivalCalendar {
    /// Indian festival days 2025-2027 that this module is sure of (see `docs/models.md` for the
    /// sources and for the dates deliberately left out); extend it in config.
    fn default() -> Self {
        let events = [
            ev("dhanteras", (2025, 10, 18), (2025, 10, 18)),
            ev("diwali", (2025, 10, 20), (2025, 10, 20)),
            ev("diwali", (2026, 11, 8), (2026, 11, 8)),
            ev("diwali", (2027, 10, 29), (2027, 10, 29)),
            ev("akshaya_tritiya", (2025, 4, 30), (2025, 4, 30)),
            // The peak North-Indian wedding season after Dev Uthani Ekadashi: approximate.
            ev("wedding_season", (2025, 11, 2), (2025, 12, 15)),
        ];
        FestivalCalendar {
            utc_offset_minutes: 330,
            events: events.into_iter().flatten().collect(),
        }
    }
}

impl FestivalCalendar {
    /// Event-family index per slot (`None` outside events) for `n` slots from `start`.
    fn slot_events(&self, names: &[String], start: i64, step: i64, n: usize) -> Vec<Option<usize>> {
        (0..n)
            .map(|k| {
                let ts = start + step * k as i64 + i64::from(self.utc_offset_minutes) * 60;
                let day = Utc.timestamp_opt(ts, 0).single()?.date_naive();
                self.events
                    .iter()
                    .find(|e| e.start <= day && day <= e.end)
                    .and_then(|e| names.iter().position(|n| *n == e.name))
            })
            .collect()
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.events.iter().map(|e| e.name.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Longest horizon in steps: 10,000 (more than a year of hourly steps).
pub const MAX_HORIZON: usize = 10_000;

/// The forecasting method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Robust double-seasonal Holt-Winters (the default).
    HoltWinters,
    /// The last cycle repeated (the MASE benchmark).
    SeasonalNaive,
    /// augurs MSTL + AutoETS trend (needs the `augurs` feature).
    Mstl,
}

impl Method {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Method::HoltWinters => "holt-winters",
            Method::SeasonalNaive => "seasonal-naive",
            Method::Mstl => "augurs-mstl",
        }
    }
}

/// Settings of a forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastConfig {
    /// Method.
    pub method: Method,
    /// Short cycle in steps (24 for hourly, 7 for daily); `None` derives it from the step.
    pub season_len: Option<usize>,
    /// Add a weekly cycle on hourly data when there are at least two weeks of history.
    pub weekly: bool,
    /// Fit on `ln(x + c)` when the series is non-negative.
    pub log_transform: bool,
    /// Known events.
    pub festivals: Option<FestivalCalendar>,
    /// Longest gap (in steps) that is interpolated; history before a longer one is dropped.
    pub max_gap: usize,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            method: Method::HoltWinters,
            season_len: None,
            weekly: true,
            log_transform: true,
            festivals: None,
            max_gap: 24,
        }
    }
}

/// A forecast: `yhat[k]` is for `start + k * step_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Epoch seconds of the first forecast slot.
    pub start: i64,
    /// Step in seconds.
    pub step_secs: i64,
    /// Timestamp style of the input.
    pub style: TimestampStyle,
    /// Point forecast (median on the original scale).
    pub yhat: Vec<f64>,
    /// 80% interval.
    pub lower_80: Vec<f64>,
    /// 80% interval.
    pub upper_80: Vec<f64>,
    /// 95% interval.
    pub lower_95: Vec<f64>,
    /// 95% interval.
    pub upper_95: Vec<f64>,
    /// Which model produced it, with any fallback taken (for logs and tables).
    pub model: String,
}

/// The transform applied before fitting.
#[derive(Debug, Clone, Copy)]
struct Transform {
    offset: Option<f64>,
}

impl Transform {
    fn choose(values: &[f64], enabled: bool) -> Self {
        if !enabled || values.iter().any(|v| *v < 0.0) {
            return Transform { offset: None };
        }
        let med = stats::median(values);
        let c = if med > 0.0 {
            0.1 * med
        } else {
            let m = stats::mean(values);
            if m > 0.0 { 0.1 * m } else { 1.0 }
        };
        Transform { offset: Some(c) }
    }
    fn fwd(self, x: f64) -> f64 {
        match self.offset {
            Some(c) => (x + c).max(c * 1e-3).ln(),
            None => x,
        }
    }
    fn inv(self, y: f64) -> f64 {
        match self.offset {
            // Never below zero for a series that never was; an unknown bound stays unknown.
            Some(_) if y.is_nan() => f64::NAN,
            Some(c) => (y.exp() - c).max(0.0),
            None => y,
        }
    }
}

/// Smoothing weights of the Holt-Winters filter.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HwParams {
    alpha: f64,
    beta: f64,
    phi: f64,
    gamma: f64,
    omega: f64,
}

/// Holt-Winters structure: cycle lengths (0 = absent).
#[derive(Debug, Clone, Copy)]
struct HwShape {
    m1: usize,
    m2: usize,
}

#[derive(Debug, Clone)]
struct HwState {
    level: f64,
    trend: f64,
    s1: Vec<f64>,
    s2: Vec<f64>,
    /// Running robust scale of one-step errors, for clipping.
    sigma: f64,
    t: usize,
    effects: Vec<(f64, usize)>,
}

impl HwState {
    fn init(y: &[f64], shape: HwShape, n_events: usize) -> Self {
        let m1 = shape.m1.max(1);
        let first = &y[..y.len().min((2 * m1).max(shape.m2).max(1))];
        let level = stats::mean(first);
        let mut s1 = vec![0.0; shape.m1];
        if shape.m1 > 0 {
            let cycles = (y.len() / m1).clamp(1, 14);
            for (p, s) in s1.iter_mut().enumerate() {
                let devs: Vec<f64> = (0..cycles)
                    .map(|c| {
                        let base = c * m1;
                        y[base + p] - stats::mean(&y[base..base + m1])
                    })
                    .collect();
                *s = stats::median(&devs);
            }
        }
        let mut s2 = vec![0.0; shape.m2];
        if let Some(weeks) = y.len().checked_div(shape.m2) {
            let weeks = weeks.clamp(1, 4);
            for (p, s) in s2.iter_mut().enumerate() {
                let devs: Vec<f64> = (0..weeks)
                    .map(|w| {
                        let i = w * shape.m2 + p;
                        let day = (i / m1) * m1;
                        y[i] - stats::mean(&y[day..(day + m1).min(y.len())]) - s1[p % m1]
                    })
                    .collect();
                *s = stats::median(&devs);
            }
        }
        let resid: Vec<f64> = y
            .iter()
            .take(m1.max(24) * 2)
            .enumerate()
            .map(|(i, v)| {
                v - level
                    - s1.get(i % m1).copied().unwrap_or(0.0)
                    - s2.get(i % shape.m2.max(1)).copied().unwrap_or(0.0)
            })
            .collect();
        let med = stats::median(&resid);
        let mad: Vec<f64> = resid.iter().map(|r| (r - med).abs()).collect();
        let sigma = (1.4826 * stats::median(&mad)).max(1e-6);
        HwState {
            level,
            trend: 0.0,
            s1,
            s2,
            sigma,
            t: 0,
            effects: vec![(0.0, 0); n_events],
        }
    }

    fn base(&self, h: usize, p: HwParams, shape: HwShape) -> f64 {
        let t = self.t + h - 1;
        // sum_{i=1..h} phi^i in closed form (phi < 1 whenever the trend is on).
        let damp: f64 = if p.beta > 0.0 {
            p.phi * (1.0 - p.phi.powi(h as i32)) / (1.0 - p.phi)
        } else {
            0.0
        };
        let a = if shape.m1 > 0 {
            self.s1[t % shape.m1]
        } else {
            0.0
        };
        let b = if shape.m2 > 0 {
            self.s2[t % shape.m2]
        } else {
            0.0
        };
        self.level + damp * self.trend + a + b
    }

    fn effect(&self, event: Option<usize>) -> f64 {
        event
            .and_then(|e| self.effects.get(e))
            .filter(|(_, n)| *n > 0)
            .map_or(0.0, |(sum, n)| sum / *n as f64)
    }

    /// One-step update with observation `y`; returns the one-step error.
    fn step(&mut self, y: f64, p: HwParams, shape: HwShape, event: Option<usize>) -> f64 {
        let base = self.base(1, p, shape);
        let pred = base + self.effect(event);
        let e = y - pred;
        if let Some(ev) = event {
            // Event slots teach the event effect, not the base state.
            if let Some(slot) = self.effects.get_mut(ev) {
                slot.0 += y - base;
                slot.1 += 1;
            }
            self.t += 1;
            return e;
        }
        // Huber-type clipping keeps one spike from moving the level and the cycles.
        let k = 3.0 * self.sigma;
        let ec = e.clamp(-k, k);
        self.sigma = (0.95 * self.sigma * self.sigma + 0.05 * ec * ec)
            .sqrt()
            .max(1e-9);
        let t = self.t;
        self.level +=
            p.phi.min(1.0) * self.trend * f64::from(u8::from(p.beta > 0.0)) + p.alpha * ec;
        if p.beta > 0.0 {
            self.trend = p.phi * self.trend + p.beta * ec;
        }
        if shape.m1 > 0 {
            self.s1[t % shape.m1] += p.gamma * ec;
        }
        if shape.m2 > 0 {
            self.s2[t % shape.m2] += p.omega * ec;
        }
        self.t += 1;
        e
    }
}

/// Runs the filter over `y`; returns the mean absolute error of the forecasts made from every
/// state after `burn`, at the lead times in `leads` (1 = one step ahead). Judging the weights on
/// several lead times, not only one step ahead, favours the smoother weights that multi-step
/// forecasts need.
///
/// The cost only grows along the series, so the pass stops as soon as it reaches `stop_at`
/// (the best cost so far) and returns infinity: such weights cannot win the grid search, and
/// the search picks exactly the weights it would have picked without stopping.
#[allow(clippy::too_many_arguments)]
fn hw_cost(
    y: &[f64],
    p: HwParams,
    shape: HwShape,
    events: &[Option<usize>],
    n_ev: usize,
    burn: usize,
    leads: &[usize],
    stop_at: f64,
) -> f64 {
    let mut st = HwState::init(y, shape, n_ev);
    let mut cost = 0.0;
    for i in 0..y.len() {
        if i >= burn {
            for &h in leads {
                if i + h <= y.len() {
                    let pred = st.base(h, p, shape) + st.effect(events[i + h - 1]);
                    cost += (y[i + h - 1] - pred).abs();
                }
            }
            if cost >= stop_at {
                return f64::INFINITY;
            }
        }
        st.step(y[i], p, shape, events[i]);
    }
    cost
}

const FIT_LEADS: [usize; 4] = [1, 12, 24, 48];

fn param_grid(shape: HwShape) -> Vec<HwParams> {
    let mut out = Vec::new();
    let gammas: &[f64] = if shape.m1 > 0 {
        &[0.02, 0.08, 0.2]
    } else {
        &[0.0]
    };
    let omegas: &[f64] = if shape.m2 > 0 {
        &[0.0, 0.03, 0.1]
    } else {
        &[0.0]
    };
    for alpha in [0.005, 0.02, 0.05, 0.12, 0.3] {
        for gamma in gammas {
            for omega in omegas {
                for (beta, phi) in [(0.0, 1.0), (0.01, 0.95)] {
                    out.push(HwParams {
                        alpha,
                        beta,
                        phi,
                        gamma: *gamma,
                        omega: *omega,
                    });
                }
            }
        }
    }
    out
}

/// Calibration errors behind each quantile, in steps: the last four weeks of hourly data, the
/// last eight weeks of daily data (a daily history rarely holds more than a year, and half of
/// it must remain to judge the window's levels).
fn calib_window(cycle: usize) -> usize {
    if cycle >= 24 {
        28 * cycle
    } else {
        8 * cycle.max(7)
    }
}
/// Fewest errors in a window before it is used for a quantile.
const MIN_CALIB_ERRORS: usize = 20;

/// Type-7 quantile of an ascending slice at `level` in [0, 1].
fn sorted_quantile(v: &[f64], level: f64) -> f64 {
    let pos = level.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// The rolling-origin calibration of one horizon step `h`: `errs` are the h-step errors in
/// origin order. The forecast made at origin `k` could only have used the errors of origins up
/// to `k - h` (the later ones were not observed yet), so each error is ranked among the
/// `window` errors known before it: its PIT value, the share of those errors below it. If the
/// window's quantiles were honest, the PIT values would be uniform. Returns them and the last
/// `window` errors, sorted (the calibration set of the forecast made now).
fn rolling_pits(errs: &[f64], h: usize, window: usize) -> (Vec<f64>, Vec<f64>) {
    let errs: Vec<f64> = errs.iter().copied().filter(|e| e.is_finite()).collect();
    // With a short history the window shrinks to half of it, so the other half can judge it.
    let window = window.min(errs.len() / 2).max(MIN_CALIB_ERRORS);
    // The window is a multiset of errors; the rank counts of each error among it are kept in a
    // Fenwick tree over the errors' distinct values (O(log n) per insert, removal and count,
    // where a sorted `Vec` paid O(window) per insert: a third of a 90-day fit's time).
    let mut values = errs.clone();
    values.sort_by(f64::total_cmp);
    // `==` merges 0.0 and -0.0, as the `<` comparisons of the counts do.
    values.dedup_by(|a, b| a == b);
    let rank = |e: f64| values.partition_point(|x| *x < e);
    let ranks: Vec<usize> = errs.iter().map(|e| rank(*e)).collect();
    let mut below_tree = Fenwick::new(values.len());
    let mut equal = vec![0u32; values.len()];
    let mut len = 0usize;
    let mut pits = Vec::new();
    let mut next_in = 0usize;
    for k in h..errs.len() {
        while next_in <= k - h {
            below_tree.add(ranks[next_in], 1);
            equal[ranks[next_in]] += 1;
            len += 1;
            if next_in >= window {
                let old = ranks[next_in - window];
                below_tree.add(old, -1);
                equal[old] -= 1;
                len -= 1;
            }
            next_in += 1;
        }
        if len >= window {
            let r = ranks[k];
            let below = below_tree.prefix(r);
            pits.push((below as f64 + 0.5 * f64::from(equal[r])) / len as f64);
        }
    }
    let mut last: Vec<f64> = errs[errs.len().saturating_sub(window)..].to_vec();
    last.sort_by(f64::total_cmp);
    (pits, last)
}

/// Counts per rank with prefix sums in O(log n) (a binary indexed tree).
struct Fenwick {
    tree: Vec<i64>,
}

impl Fenwick {
    fn new(n: usize) -> Self {
        Fenwick {
            tree: vec![0; n + 1],
        }
    }

    fn add(&mut self, i: usize, delta: i64) {
        let mut i = i + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// Sum of the counts of ranks `0..i`.
    fn prefix(&self, i: usize) -> i64 {
        let mut i = i;
        let mut s = 0;
        while i > 0 {
            s += self.tree[i];
            i &= i - 1;
        }
        s
    }
}

/// Interval offsets `[10%, 90%, 2.5%, 97.5%]` per horizon step from the rolling-origin errors
/// (`errors[h - 1]` in origin order), calibrated in two stages: each horizon step's band is a
/// quantile of its own last `window` errors (split conformal), and the quantile *levels* are
/// those that would have covered as promised over the preceding origins: the 10/90/2.5/97.5%
/// quantiles of the PIT values of [`rolling_pits`], pooled over the horizon steps. A window
/// whose quantiles were too narrow on the recent past (errors drift, volatility clusters) gets
/// more extreme levels. Without PIT values the levels stay nominal.
type Quant = [f64; 4];

fn error_quantiles(errors: &[Vec<f64>], horizon: usize, window: usize) -> Vec<Quant> {
    let nominal = [0.10, 0.90, 0.025, 0.975];
    let per_h: Vec<Option<(Vec<f64>, Vec<f64>)>> = errors
        .iter()
        .take(horizon)
        .enumerate()
        .map(|(h0, errs)| {
            (errs.iter().filter(|e| e.is_finite()).count() >= MIN_CALIB_ERRORS)
                .then(|| rolling_pits(errs, h0 + 1, window))
        })
        .collect();
    let pits: Vec<f64> = per_h
        .iter()
        .flatten()
        .flat_map(|(p, _)| p.iter().copied())
        .collect();
    let levels = if pits.len() >= 4 * MIN_CALIB_ERRORS {
        let mut p = pits;
        p.sort_by(f64::total_cmp);
        nominal.map(|q| sorted_quantile(&p, q))
    } else {
        nominal
    };
    let mut out = Vec::with_capacity(horizon);
    let mut last_good: Option<(usize, Quant)> = None;
    for h0 in 0..horizon {
        let h = h0 + 1;
        if let Some(Some((_, last))) = per_h.get(h0) {
            let q = levels.map(|l| sorted_quantile(last, l));
            last_good = Some((h, q));
            out.push(q);
        } else if let Some((hg, q)) = last_good {
            // Beyond the horizons seen in history: widen like a random walk.
            let f = (h as f64 / hg as f64).sqrt();
            out.push(q.map(|x| x * f));
        } else {
            out.push([f64::NAN; 4]);
        }
    }
    if last_good.is_none() {
        // Short history (fewer than 20 errors at every horizon): a documented fallback, normal
        // intervals from the spread of all recorded errors, widened like a random walk.
        let pooled: Vec<f64> = errors
            .iter()
            .flatten()
            .copied()
            .filter(|e| e.is_finite())
            .collect();
        if pooled.len() >= 5 {
            let mean = pooled.iter().sum::<f64>() / pooled.len() as f64;
            let var =
                pooled.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (pooled.len() - 1) as f64;
            let sd = var.sqrt();
            for (h0, q) in out.iter_mut().enumerate() {
                let w = sd * ((h0 + 1) as f64).sqrt();
                *q = [-1.2816 * w, 1.2816 * w, -1.96 * w, 1.96 * w];
            }
        }
    }
    out
}

/// `TooLarge` when `horizon` exceeds [`MAX_HORIZON`]; `what` names the input in the message
/// (the CLI's `--horizon`, the library's "the horizon").
pub(crate) fn check_horizon(what: &'static str, horizon: usize) -> Result<(), ModelError> {
    if horizon > MAX_HORIZON {
        return Err(ModelError::TooLarge {
            what,
            got: horizon,
            limit: MAX_HORIZON,
            hint: "forecast fewer steps, or use a coarser series (daily instead of hourly)",
        });
    }
    Ok(())
}

struct Prepared {
    series: RegularSeries,
    y: Vec<f64>,
    tr: Transform,
    m1: usize,
    m2: usize,
    names: Vec<String>,
    events: Vec<Option<usize>>,
    future_events: Vec<Option<usize>>,
}

fn prepare(
    series: &RegularSeries,
    horizon: usize,
    cfg: &ForecastConfig,
) -> Result<Prepared, ModelError> {
    if horizon == 0 {
        return Err(ModelError::InvalidParameter(
            "horizon must be at least 1".into(),
        ));
    }
    check_horizon("the horizon", horizon)?;
    let s = series.filled(cfg.max_gap);
    let n = s.values.len();
    if n < 8 {
        return Err(ModelError::TooShort {
            got: n,
            needed: 8,
            what: "forecasting",
        });
    }
    let season = cfg.season_len.or_else(|| s.season_len()).unwrap_or(0);
    // A cycle needs two full periods of history to be estimated; otherwise drop it (fallback).
    let m1 = if season >= 2 && n >= 2 * season {
        season
    } else {
        0
    };
    let m2 = if cfg.weekly && m1 == 24 && n >= 2 * 168 {
        168
    } else {
        0
    };
    let tr = Transform::choose(&s.values, cfg.log_transform);
    let y: Vec<f64> = s.values.iter().map(|v| tr.fwd(*v)).collect();
    let (names, events, future_events) = match &cfg.festivals {
        Some(cal) => {
            let names = cal.names();
            let ev = cal.slot_events(&names, s.start, s.step_secs, n);
            let fut = cal.slot_events(&names, s.ts(n), s.step_secs, horizon);
            (names, ev, fut)
        }
        None => (Vec::new(), vec![None; n], vec![None; horizon]),
    };
    Ok(Prepared {
        series: s,
        y,
        tr,
        m1,
        m2,
        names,
        events,
        future_events,
    })
}

/// Forecasts `horizon` steps after the end of `series`.
///
/// Fallbacks (documented, never a panic): gaps up to `cfg.max_gap` are interpolated and older
/// history before a longer gap is dropped; with less than two cycles of history the cycle is
/// left out (non-seasonal model); a constant series gets a flat forecast with zero-width
/// intervals. Fewer than 8 points is an error.
pub fn forecast(
    series: &RegularSeries,
    horizon: usize,
    cfg: &ForecastConfig,
) -> Result<Forecast, ModelError> {
    let prep = prepare(series, horizon, cfg)?;
    let s = &prep.series;
    let n = prep.y.len();
    let start = s.ts(n);
    let finish = |yhat: Vec<f64>, q: Vec<Quant>, model: String| -> Forecast {
        let tr = prep.tr;
        let band = |i: usize, j: usize| tr.inv(yhat[i] + q[i][j]);
        Forecast {
            start,
            step_secs: s.step_secs,
            style: s.style,
            lower_80: (0..horizon).map(|i| band(i, 0)).collect(),
            upper_80: (0..horizon).map(|i| band(i, 1)).collect(),
            lower_95: (0..horizon).map(|i| band(i, 2)).collect(),
            upper_95: (0..horizon).map(|i| band(i, 3)).collect(),
            yhat: yhat.iter().map(|v| tr.inv(*v)).collect(),
            model,
        }
    };
    let (lo, hi) = prep
        .y
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    if hi - lo <= 1e-12 * lo.abs().max(1.0) {
        return Ok(finish(
            vec![prep.y[n - 1]; horizon],
            vec![[0.0; 4]; horizon],
            "constant".into(),
        ));
    }
    match cfg.method {
        Method::HoltWinters => {
            let (yhat, q, name) = holt_winters(&prep, horizon);
            Ok(finish(yhat, q, name))
        }
        Method::SeasonalNaive => {
            let (yhat, q) = seasonal_naive(&prep, horizon);
            Ok(finish(yhat, q, "seasonal-naive".into()))
        }
        Method::Mstl => {
            let (yhat, q) = mstl(&prep, horizon)?;
            Ok(finish(yhat, q, "augurs-mstl+autoets".into()))
        }
    }
}

fn holt_winters(prep: &Prepared, horizon: usize) -> (Vec<f64>, Vec<Quant>, String) {
    let y = &prep.y;
    let n = y.len();
    let shape = HwShape {
        m1: prep.m1,
        m2: prep.m2,
    };
    let n_ev = prep.names.len();
    let burn = (shape.m2.max(shape.m1 * 2)).min(n / 2);
    let leads: Vec<usize> = FIT_LEADS
        .iter()
        .copied()
        .filter(|h| *h <= horizon.max(1))
        .collect();
    let mut best = (f64::INFINITY, param_grid(shape)[0]);
    for p in param_grid(shape) {
        let c = hw_cost(y, p, shape, &prep.events, n_ev, burn, &leads, best.0);
        if c < best.0 {
            best = (c, p);
        }
    }
    let p = best.1;
    // Final pass, recording h-step errors from the calibration origins: a window of four weeks
    // for the quantiles, preceded by two weeks over which the adaptive conformal level is run.
    let cycle = shape.m1.max(1);
    let origins_from = burn.min(n / 2);
    let mut errors: Vec<Vec<f64>> = vec![Vec::new(); horizon];
    let mut st = HwState::init(y, shape, n_ev);
    for i in 0..n {
        if i >= origins_from {
            for h in 1..=horizon.min(n - i) {
                let pred = st.base(h, p, shape) + st.effect(prep.events[i + h - 1]);
                errors[h - 1].push(y[i + h - 1] - pred);
            }
        }
        st.step(y[i], p, shape, prep.events[i]);
    }
    let yhat: Vec<f64> = (1..=horizon)
        .map(|h| st.base(h, p, shape) + st.effect(prep.future_events[h - 1]))
        .collect();
    let q = error_quantiles(&errors, horizon, calib_window(cycle));
    let name = format!(
        "holt-winters(m1={},m2={},alpha={},gamma={},omega={},trend={})",
        shape.m1,
        shape.m2,
        p.alpha,
        p.gamma,
        p.omega,
        p.beta > 0.0
    );
    (yhat, q, name)
}

fn seasonal_naive(prep: &Prepared, horizon: usize) -> (Vec<f64>, Vec<Quant>) {
    let y = &prep.y;
    let n = y.len();
    let m = prep.m1.max(1);
    let yhat: Vec<f64> = (0..horizon).map(|h| y[n - m + (h % m)]).collect();
    let mut errors: Vec<Vec<f64>> = vec![Vec::new(); horizon];
    let origins_from = m;
    for i in origins_from..n {
        for h in 1..=horizon.min(n - i) {
            let pred = y[i - m + ((h - 1) % m)];
            errors[h - 1].push(y[i + h - 1] - pred);
        }
    }
    (yhat, error_quantiles(&errors, horizon, calib_window(m)))
}

#[cfg(feature = "augurs")]
fn mstl(prep: &Prepared, horizon: usize) -> Result<(Vec<f64>, Vec<Quant>), ModelError> {
    use augurs_core::{Fit, Predict};
    let mut periods = Vec::new();
    if prep.m1 > 0 {
        periods.push(prep.m1);
    }
    if prep.m2 > 0 {
        periods.push(prep.m2);
    }
    let trend = augurs_ets::trend::AutoETSTrendModel::from(augurs_ets::AutoETS::non_seasonal());
    let model = augurs_mstl::MSTLModel::new(periods, trend);
    let fit = model
        .fit(&prep.y)
        .map_err(|e| ModelError::Fit(e.to_string()))?;
    let f80 = fit
        .predict(horizon, 0.8)
        .map_err(|e| ModelError::Fit(e.to_string()))?;
    let f95 = fit
        .predict(horizon, 0.95)
        .map_err(|e| ModelError::Fit(e.to_string()))?;
    let (Some(i80), Some(i95)) = (f80.intervals, f95.intervals) else {
        return Err(ModelError::Fit("MSTL returned no intervals".into()));
    };
    let yhat = f80.point;
    let q = (0..horizon)
        .map(|h| {
            [
                i80.lower[h] - yhat[h],
                i80.upper[h] - yhat[h],
                i95.lower[h] - yhat[h],
                i95.upper[h] - yhat[h],
            ]
        })
        .collect();
    Ok((yhat, q))
}

#[cfg(not(feature = "augurs"))]
fn mstl(_prep: &Prepared, _horizon: usize) -> Result<(Vec<f64>, Vec<Quant>), ModelError> {
    Err(ModelError::InvalidParameter(
        "the augurs MSTL comparison needs `cargo build --features augurs`".into(),
    ))
}

/// Day of week (0 = Monday) of a timestamp, for generated test data and reports.
pub fn weekday(ts: i64) -> u32 {
    Utc.timestamp_opt(ts, 0)
        .single()
        .map_or(0, |d| d.weekday().num_days_from_monday())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::series::CleanReport;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn regular(start: i64, step: i64, values: Vec<f64>) -> RegularSeries {
        RegularSeries {
            start,
            step_secs: step,
            values,
            style: TimestampStyle::Naive,
            report: CleanReport::default(),
        }
    }

    #[test]
    fn follows_the_daily_cycle_and_bands_are_ordered() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let v: Vec<f64> = (0..24 * 30)
            .map(|t| {
                let d = 1.0 + 0.6 * (2.0 * std::f64::consts::PI * (t % 24) as f64 / 24.0).sin();
                50.0 * d * (1.0 + 0.1 * (rng.random::<f64>() - 0.5))
            })
            .collect();
        let s = regular(0, 3600, v);
        let f = forecast(&s, 48, &ForecastConfig::default()).expect("forecast");
        assert_eq!(f.yhat.len(), 48);
        assert_eq!(f.start, 24 * 30 * 3600);
        for h in 0..48 {
            let truth =
                50.0 * (1.0 + 0.6 * (2.0 * std::f64::consts::PI * (h % 24) as f64 / 24.0).sin());
            assert!(
                (f.yhat[h] - truth).abs() / truth < 0.1,
                "h={h} {} vs {truth}",
                f.yhat[h]
            );
            assert!(f.lower_95[h] <= f.lower_80[h] && f.lower_80[h] <= f.yhat[h]);
            assert!(f.yhat[h] <= f.upper_80[h] && f.upper_80[h] <= f.upper_95[h]);
            assert!(f.lower_95[h] >= 0.0);
        }
        assert!(
            f.model.starts_with("holt-winters(m1=24,m2=168"),
            "{}",
            f.model
        );
    }

    /// The Fenwick-tree ranks give exactly the PIT values of the plain definition: each error's
    /// share (ties counted half) among the `window` errors known `h` origins before it.
    #[test]
    fn rolling_pits_match_the_plain_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // Rounded values so that ties (and a -0.0) occur.
        let mut errs: Vec<f64> = (0..400)
            .map(|_| (rng.random::<f64>() * 20.0 - 10.0).round())
            .collect();
        errs[7] = -0.0;
        errs[30] = f64::NAN;
        for (h, window) in [(1, 50), (5, 120), (12, 25)] {
            let (pits, last) = rolling_pits(&errs, h, window);
            let finite: Vec<f64> = errs.iter().copied().filter(|e| e.is_finite()).collect();
            let mut want = Vec::new();
            for k in h..finite.len() {
                let known = &finite[..=k - h];
                if known.len() < window {
                    continue;
                }
                let win = &known[known.len() - window..];
                let below = win.iter().filter(|x| **x < finite[k]).count() as f64;
                let equal = win.iter().filter(|x| **x == finite[k]).count() as f64;
                want.push((below + 0.5 * equal) / window as f64);
            }
            assert_eq!(pits, want, "h {h} window {window}");
            let mut tail = finite[finite.len() - window..].to_vec();
            tail.sort_by(f64::total_cmp);
            assert_eq!(last, tail);
        }
    }

    #[test]
    fn fallbacks_short_constant_and_errors() {
        let s = regular(0, 3600, vec![3.0; 30]);
        let f = forecast(&s, 5, &ForecastConfig::default()).expect("constant");
        assert_eq!(f.model, "constant");
        assert!(f.yhat.iter().all(|v| (v - 3.0).abs() < 1e-9));
        assert!(
            f.upper_95
                .iter()
                .zip(&f.lower_95)
                .all(|(u, l)| (u - l).abs() < 1e-9)
        );

        let s = regular(0, 3600, (0..30).map(|i| 10.0 + (i % 3) as f64).collect());
        let f = forecast(&s, 5, &ForecastConfig::default()).expect("short");
        assert!(f.model.contains("m1=0"), "{}", f.model);

        let s = regular(0, 3600, vec![1.0, 2.0, 3.0]);
        let e = forecast(&s, 5, &ForecastConfig::default()).expect_err("too short");
        assert!(e.to_string().contains("needs at least 8"), "{e}");
        let s = regular(0, 3600, vec![1.0; 30]);
        assert!(forecast(&s, 0, &ForecastConfig::default()).is_err());
    }

    #[test]
    fn learns_a_festival_uplift() {
        // Two years of daily revenue with Diwali tripling sales; forecast across Diwali 2026.
        let start = NaiveDate::from_ymd_opt(2024, 11, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp())
            .expect("date");
        let mut cal = FestivalCalendar::default();
        cal.events.push(FestivalEvent {
            name: "diwali".into(),
            start: NaiveDate::from_ymd_opt(2024, 11, 1).expect("date"),
            end: NaiveDate::from_ymd_opt(2024, 11, 1).expect("date"),
        });
        cal.events.retain(|e| e.name == "diwali");
        let names = cal.names();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let n = 730;
        let ev = cal.slot_events(&names, start, 86_400, n + 30);
        let v: Vec<f64> = (0..n)
            .map(|i| {
                let base = 1000.0 * (1.0 + 0.05 * (rng.random::<f64>() - 0.5));
                if ev[i].is_some() { 3.0 * base } else { base }
            })
            .collect();
        // The series ends 2026-10-31; Diwali 2026 is 8 days later.
        let s = regular(start, 86_400, v);
        let cfg = ForecastConfig {
            festivals: Some(cal),
            ..ForecastConfig::default()
        };
        let f = forecast(&s, 30, &cfg).expect("forecast");
        let diwali = (0..30)
            .find(|k| ev[n + k].is_some())
            .expect("Diwali 2026 in the horizon");
        assert!(
            f.yhat[diwali] > 2.5 * f.yhat[0],
            "{} vs {}",
            f.yhat[diwali],
            f.yhat[0]
        );
        let without = forecast(&s, 30, &ForecastConfig::default()).expect("forecast");
        assert!(without.yhat[diwali] < 1.3 * without.yhat[0]);
    }
}
