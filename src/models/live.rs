//! The models inside the running service: scores every new complete hour of every campaign with
//! the streaming anomaly detectors (and the tracking-break rule), refits the forecasts on a
//! schedule, publishes the latest values as Prometheus series and writes every scored point and
//! every forecast step to QuestDB (`anomalies`, `forecasts`).

use arc_swap::ArcSwap;
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ModelsConfig;
use crate::kpi::{Margin, Totals};
use crate::models::anomaly::{
    self, Detector, DetectorConfig, Past, TrackingBreak, TrackingBreakConfig,
};
use crate::models::forecast::{self, FestivalCalendar, Forecast, ForecastConfig};
use crate::models::series::{self, Point, TimestampStyle};
use crate::normalize::{day_start, hour_floor};
use crate::pipeline::Pipeline;
use crate::records::{AnomalyRow, CampaignKey, ForecastRow, Record};
use crate::sinks::questdb::{SinkHandle, SqlClient};

/// The anomaly series scored per campaign.
pub const CAMPAIGN_SERIES: [&str; 6] = ["spend", "cpc", "cpm", "ctr", "cr", "conversions"];

/// Point forecast and bands of one forecast target, for "now".
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastNow {
    /// Metric name suffix: `spend_hourly`, `conversions_hourly`, `conversion_value_hourly`,
    /// `revenue_daily`, `loss_today`.
    pub target: &'static str,
    pub money: bool,
    pub yhat: f64,
    pub lower_80: f64,
    pub upper_80: f64,
    pub lower_95: f64,
    pub upper_95: f64,
}

/// Latest anomaly state of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyNow {
    pub series: &'static str,
    /// Index of the campaign's key and display name in [`ModelOutputs::campaigns`] (held once
    /// per campaign, not once per series: 60,000 copies of both were 27 MiB at 10,000
    /// campaigns, twice over while the next outputs are built).
    pub campaign: u32,
    pub level: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    pub score: f64,
    pub is_anomaly: bool,
}

/// Latest tracking-break state of one campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingNow {
    pub key: CampaignKey,
    pub campaign: String,
    pub score: f64,
    pub broken: bool,
    /// Why it fired (`zero_conversions`, `unmatched_shop_orders`), `none` when it did not.
    pub reason: &'static str,
    /// Shop orders attributed to the campaign during the current zero-conversion run.
    pub unmatched_orders: f64,
}

/// What `/metrics` shows of the models.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOutputs {
    pub currency: String,
    pub forecasts: Vec<ForecastNow>,
    /// Sorted by campaign key, then series name.
    pub anomalies: Vec<AnomalyNow>,
    /// The key and display name of the campaigns [`AnomalyNow::campaign`] points at (the name
    /// is empty for a campaign whose tracking test has no result).
    pub campaigns: Vec<(CampaignKey, String)>,
    pub tracking: Vec<TrackingNow>,
    pub last_refit: Option<DateTime<Utc>>,
}

impl ModelOutputs {
    /// The key and display name of an anomaly's campaign.
    pub fn campaign_of(&self, a: &AnomalyNow) -> (&CampaignKey, &str) {
        let (k, n) = &self.campaigns[a.campaign as usize];
        (k, n)
    }
}

/// One complete campaign-hour as the models score it.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignHour {
    pub key: CampaignKey,
    pub name: String,
    /// Hour bucket start (unix seconds).
    pub t: i64,
    pub totals: Totals,
    /// Shop orders whose UTM campaign is this campaign's id or name, placed in the hour; `None`
    /// when the store holds no shop orders at all (no shop connected: unknown, not zero).
    pub shop_orders: Option<f64>,
}

/// The complete hours (before `cur_hour`) of every campaign not yet scored (after
/// `last_scored`), in (hour, campaign) order, with the shop orders attributed to each hour.
pub fn campaign_hours(
    store: &crate::state::Store,
    last_scored: &HashMap<CampaignKey, i64>,
    cur_hour: i64,
    tz: Tz,
) -> Vec<CampaignHour> {
    campaign_hours_between(store, last_scored, i64::MIN, cur_hour, tz)
}

/// [`campaign_hours_after`] with the last scored hours in a map.
pub fn campaign_hours_between(
    store: &crate::state::Store,
    last_scored: &HashMap<CampaignKey, i64>,
    from: i64,
    to: i64,
    tz: Tz,
) -> Vec<CampaignHour> {
    campaign_hours_after(store, |k| last_scored.get(k).copied(), from, to, tz)
}

/// [`campaign_hours`] for the hour buckets starting in `[from, to)` only, with `last_scored`
/// the last scored hour of a campaign (`None`: none yet): the runner scores the history in such
/// slices, so that at thousands of campaigns it never holds more than one slice's points and
/// rows.
pub fn campaign_hours_after(
    store: &crate::state::Store,
    last_scored: impl Fn(&CampaignKey) -> Option<i64>,
    from: i64,
    to: i64,
    tz: Tz,
) -> Vec<CampaignHour> {
    let mut out: Vec<CampaignHour> = Vec::new();
    let mut lo = i64::MAX;
    store.visit_campaign_hours_between(from, to, |key, name, t, totals| {
        if last_scored(key).is_none_or(|l| t > l) {
            lo = lo.min(t);
            out.push(CampaignHour {
                key: key.clone(),
                name: name.to_string(),
                t,
                totals: *totals,
                shop_orders: None,
            });
        }
    });
    // Time order: the tracking test pools the other campaigns' history as of each hour.
    out.sort_by(|a, b| (a.t, &a.key).cmp(&(b.t, &b.key)));
    if out.is_empty() {
        return out;
    }
    let orders = store.attributed_orders_by_hour(lo, to, tz);
    if store.has_orders() {
        for h in &mut out {
            let by = |u: &str| orders.get(&(u.to_string(), h.t)).copied();
            let n = by(&h.key.campaign_id).or_else(|| by(&h.name)).unwrap_or(0);
            h.shop_orders = Some(n as f64);
        }
    }
    out
}

/// Campaign-hours scored per slice of the scoring pass (about 7 rows each): a slice covers
/// `SLICE_POINTS / campaigns` hours, at least one. With 6 campaigns the whole history is one
/// slice; with 10,000 a slice is one hour, about 70,000 rows, handed to the sink before the
/// next slice is built (the sink's queue is bounded, so a slow QuestDB slows the pass instead
/// of piling rows up in memory).
const SLICE_POINTS: usize = 10_000;

/// Rows handed to the sink per send at most (its queue holds a few sends).
const SEND_ROWS: usize = 5_000;

/// The tracking-break tests of every campaign, sharing the business's match rate: how many of
/// the shop's attributed orders the platforms counted, over the other campaigns' baselines.
#[derive(Debug, Default)]
pub struct TrackingBank {
    tests: HashMap<CampaignKey, TrackingBreak>,
    /// The hour the pool was summed for, and the sums (conversions, orders).
    pool: Option<(i64, (f64, f64))>,
}

impl TrackingBank {
    /// Feeds one complete campaign-hour; hours must arrive in time order (as
    /// [`campaign_hours`] returns them), so the pool never holds a campaign's future.
    pub fn update(
        &mut self,
        key: &CampaignKey,
        t: i64,
        totals: &Totals,
        shop_orders: Option<f64>,
    ) -> crate::models::anomaly::TrackingStatus {
        // Summed once per hour, before any campaign's update for that hour.
        let pool = match self.pool {
            Some((h, p)) if h == t => p,
            _ => {
                let p = self
                    .tests
                    .values()
                    .map(TrackingBreak::baseline_matches)
                    .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
                self.pool = Some((t, p));
                p
            }
        };
        let own = self
            .tests
            .get(key)
            .map_or((0.0, 0.0), TrackingBreak::baseline_matches);
        let others = ((pool.0 - own.0).max(0.0), (pool.1 - own.1).max(0.0));
        self.tests
            .entry(key.clone())
            .or_insert_with(|| TrackingBreak::new(TrackingBreakConfig::default()))
            .update_with_orders(
                totals.clicks as f64,
                totals.conversions,
                shop_orders,
                others,
            )
    }
}

/// The latest scored point of one series (what [`AnomalyNow`] shows).
#[derive(Debug, Clone, Copy)]
struct Latest {
    level: f64,
    expected: f64,
    lower: f64,
    upper: f64,
    score: f64,
    is_anomaly: bool,
}

/// One campaign's detectors, by [`CAMPAIGN_SERIES`] index (`None` until the series has a value).
type CampaignDetectors = [Option<(Detector, Option<Latest>)>; CAMPAIGN_SERIES.len()];

/// The latest tracking-break result of a campaign (what [`TrackingNow`] shows besides the
/// campaign's key and name).
#[derive(Debug, Clone, Copy)]
struct LatestTracking {
    score: f64,
    broken: bool,
    reason: &'static str,
    unmatched_orders: f64,
}

/// What the runner keeps of one campaign, in one entry of one map (the key once, not in a map
/// each for the detectors, the last scored hour and the latest tracking result, and once more
/// inside that result).
#[derive(Debug)]
struct CampaignState {
    /// Last hour scored (kept when the campaign leaves the live set, so that its old hours
    /// are not scored again).
    last_scored: i64,
    /// Display name, as of the last scored hour.
    name: String,
    /// The detectors and their latest points (`None` once the campaign left the live set).
    detectors: Option<Box<CampaignDetectors>>,
    /// The latest tracking-break result (`None` likewise).
    tracking: Option<LatestTracking>,
}

/// The runner task's state.
pub struct ModelRunner {
    cfg: ModelsConfig,
    tz: Tz,
    margin: Margin,
    calendar: FestivalCalendar,
    pipeline: Arc<Pipeline>,
    sql: Option<SqlClient>,
    sink: Option<SinkHandle>,
    outputs: Arc<ArcSwap<ModelOutputs>>,
    /// Per campaign: for each of [`CAMPAIGN_SERIES`] (same index) its detector and its latest
    /// scored point, boxed (a table of 60,000 (key, series) entries holding the detectors
    /// inline was 62 MiB at 10,000 campaigns, its power-of-two capacity about half empty,
    /// besides a key per series: heaptrack, docs/benchmarks.md), its last scored hour and
    /// its latest tracking result.
    campaigns: HashMap<CampaignKey, CampaignState>,
    /// The settings of every campaign series' detector, shared by all of them.
    detector_cfg: Arc<DetectorConfig>,
    tracking: TrackingBank,
    revenue_detector: Detector,
    revenue_scored: i64,
    forecasts: Vec<ForecastNow>,
    last_refit: Option<(Instant, DateTime<Utc>)>,
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// Days of hours the store must keep for the campaign detectors, which read their history from
/// it ([`Detector::reading`]): the 206 hours an hourly detector reads back from the hour it
/// scores, rounded up to whole days, with the hours the scoring pass trails the clock by.
pub fn store_days() -> u32 {
    let hours = Detector::history_slots(&DetectorConfig::for_step(3600)) as u32 + 1;
    hours.div_ceil(24)
}

/// One campaign's [`CAMPAIGN_SERIES`] over the hours its detectors read, copied from the store
/// for each scored point (the detectors keep no history of their own: the store holds every
/// campaign's hours already).
#[derive(Debug, Default)]
struct CampaignPast {
    /// Hour of `vals[0]` (unix seconds).
    from: i64,
    /// Per hour, the value of each series as the detectors keep it ([`anomaly::narrow`]: 24
    /// bytes an hour; NaN: none).
    vals: Vec<[f32; CAMPAIGN_SERIES.len()]>,
}

impl CampaignPast {
    /// `key`'s hours from `from` to `to` (both included), as the store holds them now.
    fn fill(&mut self, store: &crate::state::Store, key: &CampaignKey, from: i64, to: i64) {
        self.from = from;
        self.vals.clear();
        let n = usize::try_from((to - from) / 3600 + 1).unwrap_or(0);
        self.vals.resize(n, [f32::NAN; CAMPAIGN_SERIES.len()]);
        store.visit_hours_of(key, from, to.saturating_add(1), |t, totals| {
            let d = t - from;
            if d % 3600 == 0
                && let Some(row) = self.vals.get_mut((d / 3600) as usize)
            {
                *row = series_values(totals).map(|v| anomaly::narrow(v.unwrap_or(f64::NAN)));
            }
        });
    }
}

/// One series of a [`CampaignPast`], as a detector reads it.
struct SeriesPast<'a>(&'a CampaignPast, usize);

impl Past for SeriesPast<'_> {
    fn at(&self, ts: i64) -> Option<f64> {
        let d = ts.checked_sub(self.0.from)?;
        if d < 0 || d % 3600 != 0 {
            return None;
        }
        let v = self.0.vals.get(usize::try_from(d / 3600).ok()?)?[self.1];
        (!v.is_nan()).then_some(f64::from(v))
    }
}

/// The value of each anomaly series for one campaign-hour (`None`: undefined, e.g. CPC without
/// clicks, and not scored).
///
/// In `f64` from the hour's exact sums, CPC and CPM too (not by decimal division, as the KPIs
/// are: an ulp apart at most): the detectors' history is computed anew from the store's hours
/// for every point ([`CampaignPast`], 206 hours of a campaign), and a decimal division per
/// hour made the first pass at 10,000 campaigns several times slower. The scored value comes
/// from this function too, so a series is compared with a past computed the same way (a
/// constant CPC stays constant against its history).
fn series_values(t: &Totals) -> [Option<f64>; 6] {
    let spend = f(t.spend);
    let per = |num: f64, den: u64| (den != 0 && num.is_finite()).then(|| num / den as f64);
    [
        Some(spend),
        per(spend, t.clicks),
        per(spend * 1000.0, t.impressions),
        t.ctr(),
        t.cr(),
        Some(t.conversions),
    ]
}

/// Campaign-hours whose history is copied from the store under one hold of its lock (5 KiB
/// each): more than a send's points, so one hold per send. A hold per 64 points queued each
/// behind the snapshot's and the backfill's, and the first pass at 10,000 campaigns did not end
/// within the 5 minutes a hold per slice did.
const PAST_GROUP: usize = 1024;

impl ModelRunner {
    pub fn new(
        config: &crate::config::Config,
        pipeline: Arc<Pipeline>,
        sql: Option<SqlClient>,
        sink: Option<SinkHandle>,
        outputs: Arc<ArcSwap<ModelOutputs>>,
    ) -> Self {
        let cfg = config.models.clone();
        let tz = config.timezone();
        let currency = config.general.reporting_currency.clone();
        let margin = Margin(config.general.gross_margin_ratio);
        // the calendar maps timestamps to days by a fixed offset: the reporting timezone's now
        let mut calendar = FestivalCalendar {
            utc_offset_minutes: {
                use chrono::Offset;
                Utc::now()
                    .with_timezone(&tz)
                    .offset()
                    .fix()
                    .local_minus_utc()
                    / 60
            },
            ..FestivalCalendar::default()
        };
        calendar.events.extend(cfg.festivals.iter().cloned());
        outputs.store(Arc::new(ModelOutputs {
            currency,
            ..Default::default()
        }));
        Self {
            cfg,
            tz,
            margin,
            calendar,
            pipeline,
            sql,
            sink,
            outputs,
            campaigns: HashMap::new(),
            detector_cfg: Arc::new(DetectorConfig::for_step(3600)),
            tracking: TrackingBank::default(),
            revenue_detector: Detector::new(DetectorConfig::for_step(3600)),
            revenue_scored: i64::MIN,
            forecasts: Vec::new(),
            last_refit: None,
        }
    }

    /// Score new complete hours, slice by slice, each slice's rows handed to the sink before
    /// the next is built; refit when due.
    pub async fn cycle(&mut self) {
        let now = self.pipeline.now();
        self.score(now).await;
        // refit on schedule, and until a first fit succeeded (data may still be arriving)
        let due = self.forecasts.is_empty()
            || self
                .last_refit
                .is_none_or(|(at, _)| at.elapsed().as_secs() >= self.cfg.refit_interval_secs);
        if due {
            let daily = self.daily_revenue_history(now).await;
            let rows = tokio::task::block_in_place(|| self.refit(now, daily));
            self.write(rows).await;
            self.last_refit = Some((Instant::now(), now));
        }
        let prev = self.outputs.load();
        // campaigns in key order, each with its series in name order (what the writer
        // expects), its key and name held once
        let mut scored: Vec<(&CampaignKey, &CampaignState, &CampaignDetectors)> = self
            .campaigns
            .iter()
            .filter_map(|(key, c)| Some((key, c, &**c.detectors.as_ref()?)))
            .collect();
        scored.sort_by(|a, b| a.0.cmp(b.0));
        let mut by_name: Vec<usize> = (0..CAMPAIGN_SERIES.len()).collect();
        by_name.sort_by_key(|&i| CAMPAIGN_SERIES[i]);
        let mut campaigns = Vec::new();
        let mut anomalies = Vec::new();
        for (key, c, dets) in scored {
            let index = campaigns.len() as u32;
            let before = anomalies.len();
            for &i in &by_name {
                let Some(l) = dets[i].as_ref().and_then(|d| d.1.as_ref()) else {
                    continue;
                };
                anomalies.push(AnomalyNow {
                    series: CAMPAIGN_SERIES[i],
                    campaign: index,
                    level: l.level,
                    expected: l.expected,
                    lower: l.lower,
                    upper: l.upper,
                    score: l.score,
                    is_anomaly: l.is_anomaly,
                });
            }
            if anomalies.len() > before {
                let name = if c.tracking.is_some() {
                    c.name.clone()
                } else {
                    String::new()
                };
                campaigns.push((key.clone(), name));
            }
        }
        let mut tracking: Vec<TrackingNow> = self
            .campaigns
            .iter()
            .filter_map(|(key, c)| {
                let t = c.tracking?;
                Some(TrackingNow {
                    key: key.clone(),
                    campaign: c.name.clone(),
                    score: t.score,
                    broken: t.broken,
                    reason: t.reason,
                    unmatched_orders: t.unmatched_orders,
                })
            })
            .collect();
        tracking.sort_by(|a, b| a.key.cmp(&b.key));
        self.outputs.store(Arc::new(ModelOutputs {
            currency: prev.currency.clone(),
            forecasts: self.forecasts.clone(),
            anomalies,
            campaigns,
            tracking,
            last_refit: self.last_refit.map(|(_, t)| t),
        }));
    }

    /// Hand rows to the sink in sends of at most [`SEND_ROWS`] (waiting while it applies
    /// back-pressure); without a sink they are only published as series.
    async fn write(&self, rows: Vec<Record>) {
        let Some(sink) = &self.sink else {
            return;
        };
        // each send its own exact-sized vector: a queued send must not hold the whole
        // slice's allocation
        if rows.len() <= SEND_ROWS {
            if !rows.is_empty() && sink.send(rows).await.is_err() {
                warn!("model rows not written: the QuestDB sink has stopped");
            }
            return;
        }
        let mut rows = rows.into_iter();
        loop {
            let chunk: Vec<Record> = rows.by_ref().take(SEND_ROWS).collect();
            if chunk.is_empty() {
                return;
            }
            if sink.send(chunk).await.is_err() {
                warn!("model rows not written: the QuestDB sink has stopped");
                return;
            }
        }
    }

    /// Feed every complete hour not yet seen to the detectors, in slices of hours (see
    /// [`SLICE_POINTS`]), writing each slice's rows before building the next.
    async fn score(&mut self, now: DateTime<Utc>) {
        let cur_hour = hour_floor(now, self.tz).timestamp();
        let known = &self.campaigns;
        let last = |k: &CampaignKey| known.get(k).map(|c| c.last_scored);
        let (first, campaigns) = self.pipeline.with_store(|s| {
            let mut first = i64::MAX;
            s.visit_campaign_hours_between(i64::MIN, cur_hour, |key, _, t, _| {
                if last(key).is_none_or(|l| t > l) {
                    first = first.min(t);
                }
            });
            (first, s.campaign_count())
        });
        let step = 3600 * (SLICE_POINTS / campaigns.max(1)).max(1) as i64;
        let started = Instant::now();
        let mut scored = 0usize;
        let mut from = first;
        while from < cur_hour {
            let to = from.saturating_add(step).min(cur_hour);
            let (known, tz) = (&self.campaigns, self.tz);
            let last = |k: &CampaignKey| known.get(k).map(|c| c.last_scored);
            let mut points = self
                .pipeline
                .with_store(|s| campaign_hours_after(s, last, from, to, tz))
                .into_iter();
            // scored and handed over a send at a time: a slice's rows built whole were 32 MiB
            // at 10,000 campaigns (an hour of every campaign, 7 rows each), besides the sends
            loop {
                let chunk: Vec<CampaignHour> = points
                    .by_ref()
                    .take(SEND_ROWS / (CAMPAIGN_SERIES.len() + 1))
                    .collect();
                if chunk.is_empty() {
                    break;
                }
                scored += chunk.len();
                let rows = tokio::task::block_in_place(|| self.score_points(chunk, now));
                self.write(rows).await;
            }
            from = to;
        }
        if scored > 0 {
            // one line a pass, at info for the large ones (a backfill, or an hour of thousands
            // of campaigns)
            let secs = started.elapsed().as_secs_f64();
            if scored >= SLICE_POINTS {
                info!(campaign_hours = scored, secs, "models scored");
            } else {
                tracing::debug!(campaign_hours = scored, secs, "models scored");
            }
        }
        let rows = self.score_revenue(now, cur_hour);
        self.write(rows).await;
        // campaigns with data in the last two days, as the store holds them now that the
        // slices are scored: the others leave no stale series (their last scored hour stays,
        // so that their old hours are not scored again). Taken before the slices, while a
        // backfill was still arriving, the set left out the campaigns whose recent days came
        // during the pass, and their detectors were dropped once it ended: at 10,000 campaigns
        // every one of them, scored again from a cold start by the next cycle.
        let live_from = cur_hour - 2 * 86_400;
        let live = self
            .pipeline
            .with_store(|s| s.campaigns_with_hours_from(live_from));
        for (k, c) in self.campaigns.iter_mut() {
            if !live.contains(k) {
                c.detectors = None;
                c.tracking = None;
            }
        }
        self.tracking.tests.retain(|k, _| live.contains(k));
    }

    /// Score one slice of campaign-hours (in time order); returns its rows.
    fn score_points(&mut self, points: Vec<CampaignHour>, now: DateTime<Utc>) -> Vec<Record> {
        let mut rows = Vec::with_capacity(points.len() * (CAMPAIGN_SERIES.len() + 1));
        let back = (Detector::history_slots(&self.detector_cfg) as i64 - 1) * 3600;
        let mut pasts: Vec<CampaignPast> = Vec::new();
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            let group: Vec<CampaignHour> = points.by_ref().take(PAST_GROUP).collect();
            pasts.resize_with(pasts.len().max(group.len()), Default::default);
            // one hold of the store's lock per group, for the copies only, not for the scoring
            // (a hold per point queued each behind the backfill's batches)
            let pipeline = self.pipeline.clone();
            pipeline.with_store(|s| {
                for (p, past) in group.iter().zip(pasts.iter_mut()) {
                    past.fill(s, &p.key, p.t - back, p.t);
                }
            });
            for (point, past) in group.into_iter().zip(&pasts) {
                self.score_point(point, past, now, &mut rows);
            }
        }
        rows
    }

    /// Score one campaign-hour, its detectors reading `past`, appending its rows to `rows`.
    fn score_point(
        &mut self,
        point: CampaignHour,
        past: &CampaignPast,
        now: DateTime<Utc>,
        rows: &mut Vec<Record>,
    ) {
        let CampaignHour {
            key,
            name,
            t,
            totals,
            shop_orders,
        } = point;
        {
            let ts = Utc.timestamp_opt(t, 0).single().unwrap_or(now);
            let cfg = &self.detector_cfg;
            let state = self
                .campaigns
                .entry(key.clone())
                .or_insert_with(|| CampaignState {
                    last_scored: i64::MIN,
                    name: String::new(),
                    detectors: None,
                    tracking: None,
                });
            let dets = state.detectors.get_or_insert_with(Box::default);
            for (i, ((series, value), slot)) in CAMPAIGN_SERIES
                .iter()
                .zip(series_values(&totals))
                .zip(dets.iter_mut())
                .enumerate()
            {
                let Some(v) = value.filter(|v| v.is_finite()) else {
                    continue;
                };
                let (det, latest) =
                    slot.get_or_insert_with(|| (Detector::reading(cfg.clone()), None));
                let s = det.update_from(t, v, &SeriesPast(past, i));
                *latest = Some(Latest {
                    level: v,
                    expected: s.expected,
                    lower: s.lower,
                    upper: s.upper,
                    score: s.score,
                    is_anomaly: s.is_anomaly,
                });
                rows.push(seasonal_row(
                    ts,
                    series,
                    (&key.platform, &key.campaign_id),
                    v,
                    &s,
                ));
            }
            let st = self.tracking.update(&key, t, &totals, shop_orders);
            let p = TrackingBreak::p_value(&st);
            let score = if p.is_finite() {
                (1.0 - p).clamp(0.0, 1.0)
            } else {
                0.0
            };
            rows.push(Record::Anomalies(AnomalyRow {
                ts,
                series: "conversions".into(),
                platform: key.platform.clone(),
                campaign_id: key.campaign_id.clone(),
                value: totals.conversions,
                expected: st.expected_conversions,
                lower: 0.0,
                upper: f64::NAN,
                score,
                is_anomaly: st.broken,
                // The reason rides in the detector column, e.g. `tracking_break:zero_conversions`.
                detector: format!("tracking_break:{}", st.reason.name()),
            }));
            if let Some(state) = self.campaigns.get_mut(&key) {
                state.tracking = Some(LatestTracking {
                    score,
                    broken: st.broken,
                    reason: st.reason.name(),
                    unmatched_orders: st.unmatched_orders,
                });
                if state.name != name {
                    state.name = name;
                }
                state.last_scored = t;
            }
        }
    }

    /// Score the whole business's revenue, hour by hour, up to `cur_hour`.
    fn score_revenue(&mut self, now: DateTime<Utc>, cur_hour: i64) -> Vec<Record> {
        let mut rows = Vec::new();
        // whole-business revenue, hour by hour
        let totals = self.pipeline.with_store(|s| {
            s.hourly_totals(self.revenue_scored.saturating_add(1), cur_hour, self.tz)
        });
        for (t, tot) in totals {
            let v = f(tot.revenue);
            let s = self.revenue_detector.update(t, v);
            rows.push(seasonal_row(
                Utc.timestamp_opt(t, 0).single().unwrap_or(now),
                "revenue",
                ("all", "all"),
                v,
                &s,
            ));
            self.revenue_scored = t;
        }
        rows
    }

    /// Daily revenue per reporting day before today: from QuestDB when it answers (the long
    /// history), else from memory.
    async fn daily_revenue_history(&self, now: DateTime<Utc>) -> Vec<(i64, f64)> {
        let today = now.with_timezone(&self.tz).date_naive();
        let today_start = day_start(today, self.tz);
        if let Some(sql) = &self.sql {
            let from = today_start - Duration::days(i64::from(self.cfg.revenue_history_days));
            let q = format!(
                "SELECT day, sum(amount) FROM orders WHERE ts >= '{}' AND ts < '{}' GROUP BY day ORDER BY day",
                from.format("%Y-%m-%dT%H:%M:%S.000000Z"),
                today_start.format("%Y-%m-%dT%H:%M:%S.000000Z"),
            );
            match sql.exec(&q).await {
                Ok(v) => {
                    let rows: Vec<(i64, f64)> = v["dataset"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|r| {
                                    let day = chrono::NaiveDate::parse_from_str(
                                        r[0].as_str()?,
                                        "%Y-%m-%d",
                                    )
                                    .ok()?;
                                    let amount: f64 = r[1].as_str()?.parse().ok()?;
                                    Some((day_start(day, self.tz).timestamp(), amount))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if !rows.is_empty() {
                        return rows;
                    }
                }
                Err(error) => {
                    warn!(%error, "revenue history from QuestDB unavailable; using memory")
                }
            }
        }
        self.pipeline.with_store(|s| {
            s.daily_revenue()
                .into_iter()
                .filter(|(d, _)| *d < today)
                .map(|(d, a)| (day_start(d, self.tz).timestamp(), f(a)))
                .collect()
        })
    }

    fn fit(&self, points: Vec<Point>, horizon: usize) -> Option<Forecast> {
        let cfg = ForecastConfig {
            festivals: Some(self.calendar.clone()),
            ..ForecastConfig::default()
        };
        let s = series::clean(&points, TimestampStyle::Rfc3339).ok()?;
        match forecast::forecast(&s, horizon, &cfg) {
            Ok(f) => Some(f),
            Err(error) => {
                warn!(%error, "forecast not fitted");
                None
            }
        }
    }

    fn refit(&mut self, now: DateTime<Utc>, daily: Vec<(i64, f64)>) -> Vec<Record> {
        let started = Instant::now();
        let cur_hour = hour_floor(now, self.tz).timestamp();
        let history = self
            .pipeline
            .with_store(|s| s.hourly_totals(i64::MIN, cur_hour, self.tz));
        let mut rows = Vec::new();
        let mut now_values = Vec::new();
        let push = |rows: &mut Vec<Record>,
                    now_values: &mut Vec<ForecastNow>,
                    target: &'static str,
                    money: bool,
                    fc: &Forecast,
                    now_slot: i64| {
            for k in 0..fc.yhat.len() {
                let ts = fc.start + fc.step_secs * k as i64;
                rows.push(Record::Forecasts(ForecastRow {
                    ts: Utc.timestamp_opt(ts, 0).single().unwrap_or(now),
                    generated_at: now,
                    model: fc.model.clone(),
                    series: target.to_string(),
                    horizon_hours: (ts - now_slot).max(0) / 3600 + fc.step_secs / 3600,
                    yhat: fc.yhat[k],
                    yhat_lower_80: fc.lower_80[k],
                    yhat_upper_80: fc.upper_80[k],
                    yhat_lower_95: fc.lower_95[k],
                    yhat_upper_95: fc.upper_95[k],
                }));
            }
            // the value "for now" is the slot that contains now
            if let Some(k) = (0..fc.yhat.len()).find(|&k| {
                let ts = fc.start + fc.step_secs * k as i64;
                ts <= now_slot && now_slot < ts + fc.step_secs
            }) {
                now_values.push(ForecastNow {
                    target,
                    money,
                    yhat: fc.yhat[k],
                    lower_80: fc.lower_80[k],
                    upper_80: fc.upper_80[k],
                    lower_95: fc.lower_95[k],
                    upper_95: fc.upper_95[k],
                });
            }
        };
        let hourly = |sel: fn(&Totals) -> f64| -> Vec<Point> {
            history
                .iter()
                .map(|(&t, tot)| Point {
                    ts: t,
                    value: sel(tot),
                })
                .collect()
        };
        let mut spend_fc = None;
        for (target, money, sel) in [
            (
                "spend_hourly",
                true,
                (|t: &Totals| f(t.spend)) as fn(&Totals) -> f64,
            ),
            ("conversions_hourly", false, |t: &Totals| t.conversions),
            ("conversion_value_hourly", true, |t: &Totals| {
                f(t.conversion_value)
            }),
        ] {
            if let Some(fc) = self.fit(hourly(sel), self.cfg.forecast_hours) {
                push(&mut rows, &mut now_values, target, money, &fc, cur_hour);
                if target == "spend_hourly" {
                    spend_fc = Some(fc);
                }
            }
        }
        let today = now.with_timezone(&self.tz).date_naive();
        let today_start = day_start(today, self.tz).timestamp();
        if !daily.is_empty() {
            let points = daily
                .iter()
                .map(|&(ts, v)| Point { ts, value: v })
                .collect();
            if let Some(fc) = self.fit(points, self.cfg.revenue_forecast_days) {
                push(
                    &mut rows,
                    &mut now_values,
                    "revenue_daily",
                    true,
                    &fc,
                    today_start,
                );
            }
        }
        // Predicted end-of-day loss: the loss so far plus the spend still expected today, less
        // the revenue that spend brings at the trailing 7-day revenue/spend ratio.
        if let Some(fc) = spend_fc {
            let day_end = day_start(today + chrono::Days::new(1), self.tz).timestamp();
            let (so_far, week) = self.pipeline.with_store(|s| {
                let so_far: Totals = s
                    .hourly_totals(today_start, day_end, self.tz)
                    .values()
                    .fold(Totals::default(), |mut a, t| {
                        a += *t;
                        a
                    });
                let week: Totals = s
                    .hourly_totals(cur_hour - 7 * 86_400, cur_hour, self.tz)
                    .values()
                    .fold(Totals::default(), |mut a, t| {
                        a += *t;
                        a
                    });
                (so_far, week)
            });
            let ratio = if week.spend.is_zero() {
                0.0
            } else {
                f(week.revenue * self.margin.0) / f(week.spend)
            };
            let elapsed = (now.timestamp() - cur_hour) as f64 / 3600.0;
            let mut rem = [0.0f64; 5];
            for k in 0..fc.yhat.len() {
                let ts = fc.start + fc.step_secs * k as i64;
                if ts >= day_end {
                    break;
                }
                let share = if ts == cur_hour {
                    1.0 - elapsed.clamp(0.0, 1.0)
                } else {
                    1.0
                };
                for (j, v) in [
                    fc.yhat[k],
                    fc.lower_80[k],
                    fc.upper_80[k],
                    fc.lower_95[k],
                    fc.upper_95[k],
                ]
                .iter()
                .enumerate()
                {
                    rem[j] += share * v;
                }
            }
            let loss_now = -f(so_far.profit(self.margin));
            let loss = |spend: f64| loss_now + spend * (1.0 - ratio);
            let (a80, b80) = (loss(rem[1]), loss(rem[2]));
            let (a95, b95) = (loss(rem[3]), loss(rem[4]));
            let l = ForecastNow {
                target: "loss_today",
                money: true,
                yhat: loss(rem[0]),
                lower_80: a80.min(b80),
                upper_80: a80.max(b80),
                lower_95: a95.min(b95),
                upper_95: a95.max(b95),
            };
            rows.push(Record::Forecasts(ForecastRow {
                ts: Utc.timestamp_opt(today_start, 0).single().unwrap_or(now),
                generated_at: now,
                model: format!("{}+revenue_ratio_7d", fc.model),
                series: "loss_daily".into(),
                horizon_hours: ((day_end - now.timestamp()) as f64 / 3600.0).ceil() as i64,
                yhat: l.yhat,
                yhat_lower_80: l.lower_80,
                yhat_upper_80: l.upper_80,
                yhat_lower_95: l.lower_95,
                yhat_upper_95: l.upper_95,
            }));
            now_values.push(l);
        }
        info!(
            series = now_values.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "forecasts refitted"
        );
        self.forecasts = now_values;
        rows
    }

    /// Run until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let every = std::time::Duration::from_secs(self.cfg.score_interval_secs);
        // let the sources deliver their first batches (a backfill) before the first fit
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every.min(std::time::Duration::from_secs(5))) => {}
        }
        loop {
            self.cycle().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// The `anomalies` row of one seasonal detector's verdict on `value` at `ts`, for a series of
/// a (platform, campaign id), or `("all", "all")` for the whole business.
fn seasonal_row(
    ts: DateTime<Utc>,
    series: &str,
    (platform, campaign_id): (&str, &str),
    value: f64,
    s: &crate::models::anomaly::Scored,
) -> Record {
    Record::Anomalies(AnomalyRow {
        ts,
        series: series.to_string(),
        platform: platform.to_string(),
        campaign_id: campaign_id.to_string(),
        value,
        expected: s.expected,
        lower: s.lower,
        upper: s.upper,
        score: s.score,
        is_anomaly: s.is_anomaly,
        detector: "robust_seasonal".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Normalizer;
    use crate::records::{Bucket, CampaignStat};
    use crate::state::Store;
    use crate::telemetry::Telemetry;

    /// Campaign `c`'s hour row `h` hours before `cur_hour` (Meta, INR, spend rising with `h`).
    fn hour_stat(cur_hour: i64, c: usize, h: i64) -> Record {
        let ts = Utc.timestamp_opt(cur_hour - 3600 * h, 0).unwrap();
        Record::CampaignStats(CampaignStat {
            ts,
            bucket: Bucket::Hour,
            day: ts.date_naive(),
            key: CampaignKey {
                platform: "meta".into(),
                account: "act_1".into(),
                campaign_id: format!("c{c}"),
            },
            campaign_name: format!("C{c}"),
            source: "meta".into(),
            spend: Decimal::new(1000 + h * 7 + c as i64, 2),
            conversion_value: Decimal::ZERO,
            spend_account: Decimal::new(1000 + h * 7 + c as i64, 2),
            conversion_value_account: Decimal::ZERO,
            account_currency: "INR".into(),
            currency: "INR".into(),
            impressions: 1000 + h as u64,
            clicks: 20 + (h % 5) as u64,
            conversions: 1.0 + (h % 3) as f64,
        })
    }

    /// A runner over `store` (UTC, INR, the default config) with `sink`, its pipeline and the
    /// outputs it publishes.
    fn runner_over(
        store: Store,
        sink: SinkHandle,
    ) -> (ModelRunner, Arc<Pipeline>, Arc<ArcSwap<ModelOutputs>>) {
        let config = crate::config::Config::from_toml_str("").expect("the default config");
        let pipeline = Arc::new(Pipeline::new(
            Normalizer::new(chrono_tz::UTC, "INR", Default::default()),
            store,
            None,
            Arc::new(Telemetry::new()),
        ));
        let outputs = Arc::new(ArcSwap::from_pointee(ModelOutputs::default()));
        let runner = ModelRunner::new(&config, pipeline.clone(), None, Some(sink), outputs.clone());
        (runner, pipeline, outputs)
    }

    /// 700 campaigns with 48 complete hours each, every series defined: the first pass must
    /// hand them over in sends of at most `SEND_ROWS` rows (not one batch of all), and every
    /// campaign-hour's 6 detector rows and tracking row must arrive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_pass_reaches_the_sink_in_bounded_sends_with_every_point() {
        let (campaigns, hours) = (700usize, 48i64);
        let tz = chrono_tz::UTC;
        let now = Utc::now();
        let cur_hour = hour_floor(now, tz).timestamp();
        let mut store = Store::new(8);
        let mut rows = Vec::new();
        for c in 0..campaigns {
            for h in 1..=hours {
                rows.push(hour_stat(cur_hour, c, h));
            }
        }
        store.ingest(&rows);
        drop(rows);
        let (handle, mut rx) = SinkHandle::for_test(2);
        let (mut runner, _, outputs) = runner_over(store, handle);
        let pass = tokio::spawn(async move {
            runner.cycle().await;
            // dropping the runner drops its sink handle: the receiver below then ends
        });
        let (mut sends, mut largest) = (0usize, 0usize);
        let mut by_detector: HashMap<String, usize> = HashMap::new();
        while let Some(batch) = rx.recv().await {
            sends += 1;
            largest = largest.max(batch.rows().len());
            for r in batch.rows() {
                if let Record::Anomalies(a) = r
                    && a.platform == "meta"
                {
                    let d = a.detector.split(':').next().unwrap_or_default().to_string();
                    *by_detector.entry(d).or_default() += 1;
                }
            }
        }
        pass.await.expect("the pass ends");
        let points = campaigns * hours as usize;
        assert!(
            largest <= SEND_ROWS,
            "a send of {largest} rows (at most {SEND_ROWS})"
        );
        assert!(sends >= points * 7 / SEND_ROWS, "{sends} sends");
        assert_eq!(by_detector.get("robust_seasonal"), Some(&(points * 6)));
        assert_eq!(by_detector.get("tracking_break"), Some(&points));
        // and the latest value of every series is published
        assert_eq!(outputs.load().anomalies.len(), campaigns * 6);
    }

    /// The campaign detectors read their history from the store: what a pass writes for each
    /// series is what a detector keeping its own history gives for the same hours. Ten days
    /// of a daily cycle with noise, a spike and a gap, more than the 206 hours a detector
    /// reads, so that the store's retention and the copy's bounds count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn detectors_reading_the_store_score_as_detectors_with_their_own_history() {
        let (campaigns, hours) = (3usize, 240i64);
        let tz = chrono_tz::UTC;
        let cur_hour = hour_floor(Utc::now(), tz).timestamp();
        let mut seed = 7u64;
        let mut noise = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let mut rows = Vec::new();
        for c in 0..campaigns {
            for h in (1..=hours).rev() {
                if c == 1 && (100..110).contains(&h) {
                    continue; // a gap
                }
                let Record::CampaignStats(mut st) = hour_stat(cur_hour, c, h) else {
                    unreachable!()
                };
                let cycle = 1.0 + 0.5 * (std::f64::consts::TAU * (h % 24) as f64 / 24.0).sin();
                let spike = if h == 30 && c == 0 { 8.0 } else { 1.0 };
                let paise = (50_000.0 * cycle * spike * (0.9 + 0.2 * noise())) as i64;
                st.spend = Decimal::new(paise, 2);
                st.clicks = (200.0 * cycle * (0.9 + 0.2 * noise())) as u64;
                st.impressions = 10_000 + (2_000.0 * noise()) as u64;
                st.conversions = (st.clicks / 40) as f64;
                rows.push(Record::CampaignStats(st));
            }
        }
        let mut store = Store::new(store_days());
        store.ingest(&rows);
        let (handle, mut rx) = SinkHandle::for_test(4);
        let (mut runner, _, _) = runner_over(store, handle);
        let cfg = runner.detector_cfg.clone();
        let pass = tokio::spawn(async move {
            runner.cycle().await;
        });
        let mut written: HashMap<(String, String), Vec<AnomalyRow>> = HashMap::new();
        while let Some(batch) = rx.recv().await {
            for r in batch.rows() {
                if let Record::Anomalies(a) = r
                    && a.detector == "robust_seasonal"
                    && a.platform == "meta"
                {
                    let k = (a.campaign_id.clone(), a.series.clone());
                    written.entry(k).or_default().push(a.clone());
                }
            }
        }
        pass.await.expect("the pass ends");
        // the reference: a detector per campaign series with its own ring, fed the rows in
        // time order
        let mut checked = 0;
        let mut alerts = 0;
        for c in 0..campaigns {
            let mine: Vec<&CampaignStat> = rows
                .iter()
                .filter_map(|r| match r {
                    Record::CampaignStats(s) if s.key.campaign_id == format!("c{c}") => Some(s),
                    _ => None,
                })
                .collect();
            for (i, series) in CAMPAIGN_SERIES.iter().enumerate() {
                let mut own = Detector::shared(cfg.clone());
                let got = &written[&(format!("c{c}"), series.to_string())];
                let mut expected = Vec::new();
                for st in &mine {
                    let totals = Totals {
                        spend: st.spend,
                        conversion_value: st.conversion_value,
                        revenue: Decimal::ZERO,
                        impressions: st.impressions,
                        clicks: st.clicks,
                        conversions: st.conversions,
                    };
                    if let Some(v) = series_values(&totals)[i].filter(|v| v.is_finite()) {
                        expected.push((st.ts, v, own.update(st.ts.timestamp(), v)));
                    }
                }
                assert_eq!(got.len(), expected.len(), "c{c} {series}");
                for (g, (ts, v, e)) in got.iter().zip(&expected) {
                    assert_eq!((g.ts, g.value), (*ts, *v), "c{c} {series}");
                    let bits = |x: [f64; 4]| x.map(f64::to_bits);
                    assert_eq!(
                        bits([g.expected, g.lower, g.upper, g.score]),
                        bits([e.expected, e.lower, e.upper, e.score]),
                        "c{c} {series} at {ts}"
                    );
                    assert_eq!(g.is_anomaly, e.is_anomaly, "c{c} {series} at {ts}");
                    checked += 1;
                    alerts += usize::from(e.is_anomaly);
                }
            }
        }
        assert_eq!(checked, campaigns * 6 * hours as usize - 6 * 10);
        // the spike is seen: the comparison covers scored points, not only the warm-up
        assert!(alerts >= 1, "{alerts} anomalous points");
    }

    /// A campaign whose recent days reach the store while a pass is scoring (a backfill still
    /// arriving) keeps its detectors: the live set is read once the slices are scored. Taken
    /// before them, it left out every such campaign and dropped its detectors when the pass
    /// ended (at 10,000 campaigns all of them, warmed up again from scratch by the next cycle).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn campaigns_whose_recent_days_arrive_during_a_pass_keep_their_detectors() {
        let campaigns = 60usize;
        let tz = chrono_tz::UTC;
        let cur_hour = hour_floor(Utc::now(), tz).timestamp();
        let stat = |c: usize, h: i64| hour_stat(cur_hour, c, h);
        // at the start of the pass only days older than two days are in memory
        let mut store = Store::new(8);
        let old: Vec<Record> = (0..campaigns)
            .flat_map(|c| (49..=96).map(move |h| (c, h)))
            .map(|(c, h)| stat(c, h))
            .collect();
        store.ingest(&old);
        // capacity 1: with at least 3 sends in the pass (2,880 points, 7 rows each, 5,000 rows
        // a send), the runner cannot finish before the rows below are in the store
        let (handle, mut rx) = SinkHandle::for_test(1);
        let (mut runner, pipeline, outputs) = runner_over(store, handle);
        let pass = tokio::spawn(async move {
            runner.cycle().await;
        });
        let first = rx.recv().await.expect("the pass's first send");
        assert!(!first.rows().is_empty());
        // the recent hours arrive while the pass is held on its sends
        let recent: Vec<Record> = (0..campaigns)
            .flat_map(|c| (1..=3).map(move |h| (c, h)))
            .map(|(c, h)| stat(c, h))
            .collect();
        pipeline.with_store(|s| s.ingest(&recent));
        while rx.recv().await.is_some() {}
        pass.await.expect("the pass ends");
        // every campaign now has data in the last two days: its six series stay published
        assert_eq!(outputs.load().anomalies.len(), campaigns * 6);
    }
}
