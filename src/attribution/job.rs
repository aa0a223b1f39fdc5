//! The attribution job: every `[attribution] interval_secs` it reads the orders and journey
//! touchpoints stored since its previous run (the whole history on its first run, so a restart or
//! a lifetime window sees every journey, not only what arrived since) and keeps them, reads every
//! campaign's day spend (one grouped row per campaign and day, bounded by campaigns × days, not by
//! orders), runs each configured model in each window over every journey kept, and hands one row
//! per reporting day, model, window and channel to the QuestDB sink (`attribution` table; its
//! DEDUP key `ts, model, window, channel` makes a re-run overwrite).
//!
//! A run that could not read every row, or whose rows were not all stored, is a failed run: it
//! logs what was missing, sets `adpulse_attribution_success` to 0 and leaves
//! `adpulse_attribution_last_success_timestamp_seconds` where it was; the next run redoes
//! everything.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::compact::{self, CJourney, CTouch, Core, Interner, Labels, PrevKey, Rank};
pub use super::compact::{Built, RunSpec};
use super::config::AttributionConfig;
use super::{Journey, Model, Touch, Window};
use crate::jobs::{JobContext, RunMetrics, registered, run_periodically};
use crate::normalize::day_start;
use crate::records::{AttributionRow, Record};
use crate::sinks::questdb::{SinkError, SinkHandle, SqlClient};

/// Channel of the orders that had no touch in the window.
pub const UNATTRIBUTED: &str = "unattributed";

/// Rows per send to the sink, so one queued send never holds the whole history.
const SEND_ROWS: usize = 5_000;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("reading {table} from QuestDB: {source}")]
    Read {
        table: &'static str,
        source: SinkError,
    },
    #[error("QuestDB answered a {table} query without a dataset")]
    NoDataset { table: &'static str },
    #[error("{bad} {table} rows unreadable (first: {first}); the rest were attributed and written")]
    BadRows {
        table: &'static str,
        bad: usize,
        first: String,
    },
    #[error(
        "Markov attribution not solved in {windows} window(s) (first: {first}); the other rows were written"
    )]
    MarkovUnsolved { windows: usize, first: String },
    #[error("the attribution computation failed: {0}")]
    Compute(String),
    #[error("the QuestDB sink has stopped: {rows} rows not written")]
    SinkClosed { rows: usize },
    #[error("{dead_lettered} of {rows} rows refused by QuestDB (in the dead-letter file)")]
    NotStored { rows: usize, dead_lettered: usize },
}

/// One order as the `orders` table holds it (kind `order`).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: String,
    pub ts: DateTime<Utc>,
    /// Reporting day of the order.
    pub day: NaiveDate,
    pub revenue: Decimal,
}

/// One row of the `touchpoints` table.
#[derive(Debug, Clone, PartialEq)]
pub struct TouchRow {
    pub journey_id: String,
    pub order_id: Option<String>,
    pub ts: DateTime<Utc>,
    pub position: i64,
    pub channel: String,
}

/// One campaign's day from `campaign_stats` (`bucket = 'day'`).
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRow {
    pub day: NaiveDate,
    /// `platform:campaign_id`, as the touchpoints name paid channels.
    pub channel: String,
    pub spend: Decimal,
    pub platform_conversions: f64,
}

/// What one run reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    pub orders: Vec<OrderRow>,
    pub touches: Vec<TouchRow>,
    pub spend: Vec<SpendRow>,
}

/// Journeys assembled from orders and touchpoints, with each one's reporting day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Journeys {
    pub journeys: Vec<Journey>,
    /// Reporting day of each converted journey's order (same index as `journeys`).
    pub days: Vec<Option<NaiveDate>>,
    /// Journeys whose touches name an order the `orders` table does not have (yet): left out
    /// until it arrives, so a conversion is never counted as a journey without a sale.
    pub waiting: usize,
}

/// Group touches into journeys and join them to their orders; an order without any touch is a
/// journey without touches (unattributed).
pub fn assemble(inputs: &Inputs) -> Journeys {
    let mut orders: HashMap<&str, &OrderRow> = HashMap::new();
    for o in &inputs.orders {
        // a restated order keeps its newest version
        let e = orders.entry(o.order_id.as_str()).or_insert(o);
        if o.ts > e.ts {
            *e = o;
        }
    }
    let mut groups: BTreeMap<&str, Vec<&TouchRow>> = BTreeMap::new();
    for t in &inputs.touches {
        groups.entry(t.journey_id.as_str()).or_default().push(t);
    }
    let mut out = Journeys::default();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for (id, mut touches) in groups {
        touches.sort_by(|a, b| a.ts.cmp(&b.ts).then(a.position.cmp(&b.position)));
        touches.dedup_by(|a, b| a.position == b.position && a.ts == b.ts);
        let order_id = touches.iter().find_map(|t| t.order_id.as_deref());
        let order = match order_id {
            Some(o) => match orders.get(o) {
                Some(o) => Some(*o),
                None => {
                    out.waiting += 1;
                    continue;
                }
            },
            None => None,
        };
        if let Some(o) = order {
            used.insert(o.order_id.as_str());
        }
        out.journeys.push(Journey {
            id: id.to_string(),
            touches: touches
                .iter()
                .map(|t| Touch {
                    ts: t.ts,
                    channel: t.channel.clone(),
                })
                .collect(),
            converted_at: order.map(|o| o.ts),
            revenue: order.map(|o| o.revenue).unwrap_or_default(),
        });
        out.days.push(order.map(|o| o.day));
    }
    let mut lone: Vec<&&OrderRow> = orders
        .values()
        .filter(|o| !used.contains(o.order_id.as_str()))
        .collect();
    lone.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    for o in lone {
        out.journeys.push(Journey {
            id: o.order_id.clone(),
            touches: Vec::new(),
            converted_at: Some(o.ts),
            revenue: o.revenue,
        });
        out.days.push(Some(o.day));
    }
    out
}

/// Every model × window × (day, channel): the `attribution` rows. Within a window each model gets
/// a row for every (day, channel) any model credited or that had spend, zeros included, so a
/// channel one model stops crediting is overwritten with 0 rather than left stale.
pub fn build_rows(
    j: &Journeys,
    spend: &[SpendRow],
    models: &[Model],
    windows: &[Window],
    tz: Tz,
    currency: &str,
) -> Vec<AttributionRow> {
    let spec = RunSpec {
        models,
        windows,
        tz,
        currency,
        markov_max_entries: super::markov::DEFAULT_MAX_ENTRIES,
        chunk_rows: usize::MAX,
    };
    let mut rows = Vec::new();
    build_rows_with(j, spend, &spec, Vec::new(), |chunk| rows.extend(chunk));
    rows
}

/// The rows of [`build_rows`], computed one window at a time and handed to `emit` in chunks of
/// `spec.chunk_rows`, with zero rows for the `previous` keys (written with credit by an earlier
/// run) that this run does not produce (see [`zero_missing`]): what is held at once is one
/// window's credit and one chunk, never every row of the run.
pub fn build_rows_with(
    j: &Journeys,
    spend: &[SpendRow],
    spec: &RunSpec<'_>,
    previous: Vec<RowKey>,
    mut emit: impl FnMut(Vec<AttributionRow>),
) -> Built {
    let chunk_rows = spec.chunk_rows.max(1);
    let core = core_of(j, spend, previous);
    let mut chunk: Vec<AttributionRow> = Vec::new();
    let built = compact::build(&core, spec, |row| {
        chunk.push(row);
        if chunk.len() >= chunk_rows {
            emit(std::mem::take(&mut chunk));
        }
    });
    if !chunk.is_empty() {
        emit(chunk);
    }
    built
}

/// The journeys, spend and previous keys with their channels interned and ranked.
fn core_of(j: &Journeys, spend: &[SpendRow], previous: Vec<RowKey>) -> Core {
    let mut channels = Interner::default();
    let unattributed = channels.id(UNATTRIBUTED);
    let mut touches: Vec<(DateTime<Utc>, u32)> = Vec::new();
    let mut journeys = Vec::with_capacity(j.journeys.len());
    for (i, jr) in j.journeys.iter().enumerate() {
        let start = touches.len();
        touches.extend(jr.touches.iter().map(|t| (t.ts, channels.id(&t.channel))));
        journeys.push(CJourney {
            start: start as u32,
            len: (touches.len() - start) as u32,
            converted_at: jr.converted_at,
            revenue: jr.revenue,
            // a journey past the end of `days` is never credited (as a zip would have it)
            day: j.days.get(i).copied().flatten(),
        });
    }
    let spend: Vec<(NaiveDate, u32, Decimal, f64)> = spend
        .iter()
        .map(|s| {
            (
                s.day,
                channels.id(&s.channel),
                s.spend,
                s.platform_conversions,
            )
        })
        .collect();
    let (mut models, mut windows) = (Labels::default(), Labels::default());
    let prev: Vec<PrevKey> = previous
        .iter()
        .map(|(day, model, window, channel)| PrevKey {
            day: *day,
            model: models.id(model),
            window: windows.id(window),
            channel: channels.id(channel),
        })
        .collect();
    let (rank, names) = channels.ranks();
    Core {
        names,
        unattributed: rank[unattributed as usize],
        touches: touches
            .into_iter()
            .map(|(ts, c)| CTouch {
                ts,
                channel: rank[c as usize],
            })
            .collect(),
        journeys,
        waiting: j.waiting,
        paid: compact::paid_of(
            spend
                .into_iter()
                .map(|(d, c, s, p)| (d, rank[c as usize], s, p))
                .collect(),
        ),
        prev: ranked(prev, &rank),
        prev_models: models.0,
        prev_windows: windows.0,
    }
}

/// Previous keys with their channel ids turned into ranks.
fn ranked(mut prev: Vec<PrevKey>, rank: &[Rank]) -> Vec<PrevKey> {
    for k in &mut prev {
        k.channel = rank[k.channel as usize];
    }
    prev
}

/// A zero row for a key an earlier run wrote with credit.
fn zero_row(
    day: NaiveDate,
    model: String,
    window: String,
    channel: String,
    tz: Tz,
    currency: &str,
) -> AttributionRow {
    AttributionRow {
        ts: day_start(day, tz),
        day,
        model,
        window,
        channel,
        conversions: 0.0,
        revenue: Decimal::ZERO,
        spend: Decimal::ZERO,
        roas: None,
        platform_conversions: None,
        currency: currency.to_string(),
    }
}

/// A row the table holds: (day, model, window, channel).
pub type RowKey = (NaiveDate, String, String, String);

/// Zero rows for every key a previous run wrote with credit that this run does not produce (a
/// channel that lost its credit after a late touch or order, a model taken out of the config), so
/// no stale figure outlives the run that would have replaced it.
pub fn zero_missing(
    rows: &mut Vec<AttributionRow>,
    previous: impl IntoIterator<Item = RowKey>,
    tz: Tz,
    currency: &str,
) {
    let built: BTreeSet<(NaiveDate, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.day,
                r.model.as_str(),
                r.window.as_str(),
                r.channel.as_str(),
            )
        })
        .collect();
    let missing: Vec<RowKey> = previous
        .into_iter()
        .filter(|(d, m, w, c)| !built.contains(&(*d, m.as_str(), w.as_str(), c.as_str())))
        .collect();
    rows.extend(
        missing.into_iter().map(|(day, model, window, channel)| {
            zero_row(day, model, window, channel, tz, currency)
        }),
    );
}

/// The job's self-metrics (node_exporter style: a success gauge and a duration per run).
struct JobMetrics {
    run: RunMetrics,
    orders: IntGauge,
    waiting: IntGauge,
    rows: IntGauge,
    rows_read: IntCounterVec,
    markov_unsolved: IntCounterVec,
}

impl JobMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let int = |name: &str, help: &str| registered(registry, IntGauge::new(name, help));
        Ok(Self {
            run: RunMetrics::new(
                registry,
                "attribution",
                "attribution",
                "1 if the last attribution run read every row and stored every result",
            )?,
            orders: int(
                "adpulse_attribution_orders",
                "Orders the last attribution run attributed",
            )?,
            waiting: int(
                "adpulse_attribution_journeys_waiting",
                "Journeys whose order is not in QuestDB yet (left out of the last run)",
            )?,
            rows: int(
                "adpulse_attribution_rows",
                "Rows the last attribution run handed to the sink",
            )?,
            rows_read: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "adpulse_attribution_rows_read_total",
                        "Orders and touchpoints read from QuestDB by the attribution job (only \
                         the rows stored since its last run, after the first)",
                    ),
                    &["table"],
                ),
            )?,
            markov_unsolved: registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "adpulse_attribution_markov_unsolved_total",
                        "Markov fits not solved because the chain needed more than \
                         `[attribution] markov_max_entries` (no markov rows for that window)",
                    ),
                    &["window"],
                ),
            )?,
        })
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub orders: usize,
    pub journeys: usize,
    pub waiting: usize,
    pub rows: usize,
    pub spooled: usize,
}

/// The periodic job.
pub struct AttributionJob {
    cfg: AttributionConfig,
    ctx: JobContext,
    metrics: JobMetrics,
    /// The orders and touches read so far (the journeys of the whole history); held by a run
    /// from its first read to the end of its computation.
    seen: Arc<tokio::sync::Mutex<Seen>>,
}

/// What earlier runs read: every order (its newest version) and every touch (by the table's DEDUP
/// key), and how far each table has been read (the newest `ingested_at` seen). Only rows stored
/// after that mark (less `reread_overlap_secs`) are read again; the lifetime window still sees
/// every journey. Ids and channels are interned: an order is 32 bytes and its id, a touch 32
/// bytes, a channel name is stored once.
#[derive(Debug, Default)]
pub struct Seen {
    /// Order and journey ids.
    ids: Interner,
    channels: Interner,
    /// By order id.
    orders: HashMap<u32, KeptOrder>,
    /// By journey id: its touches in (ts, position) order, one per (position, ts).
    journeys: HashMap<u32, Vec<KeptTouch>>,
    pub orders_mark: Option<DateTime<Utc>>,
    pub touches_mark: Option<DateTime<Utc>>,
}

/// An order kept (its id is the key).
#[derive(Debug, Clone, Copy, PartialEq)]
struct KeptOrder {
    ts: DateTime<Utc>,
    day: NaiveDate,
    revenue: Decimal,
}

/// A touch kept (its journey is the key).
#[derive(Debug, Clone, Copy, PartialEq)]
struct KeptTouch {
    ts: DateTime<Utc>,
    position: i64,
    channel: u32,
    order: Option<u32>,
}

/// An order read, with when the store took it.
type ReadOrder = (u32, KeptOrder, Option<DateTime<Utc>>);
/// A touch read (its journey id first), with when the store took it.
type ReadTouch = (u32, KeptTouch, Option<DateTime<Utc>>);

impl Seen {
    /// Take in rows read since the marks; a restated row replaces the one kept. With `hold_*`
    /// the table's mark stays (its unreadable rows are read again next time).
    pub fn merge(
        &mut self,
        orders: Vec<(OrderRow, Option<DateTime<Utc>>)>,
        touches: Vec<(TouchRow, Option<DateTime<Utc>>)>,
        hold_orders: bool,
        hold_touches: bool,
    ) {
        let orders = orders
            .into_iter()
            .map(|(o, at)| {
                let id = self.ids.id(&o.order_id);
                (
                    id,
                    KeptOrder {
                        ts: o.ts,
                        day: o.day,
                        revenue: o.revenue,
                    },
                    at,
                )
            })
            .collect();
        let touches = touches
            .into_iter()
            .map(|(t, at)| {
                self.touch_of(
                    &t.journey_id,
                    t.order_id.as_deref(),
                    t.ts,
                    t.position,
                    &t.channel,
                    at,
                )
            })
            .collect();
        self.merge_kept(orders, touches, hold_orders, hold_touches);
    }

    fn touch_of(
        &mut self,
        journey_id: &str,
        order_id: Option<&str>,
        ts: DateTime<Utc>,
        position: i64,
        channel: &str,
        at: Option<DateTime<Utc>>,
    ) -> ReadTouch {
        (
            self.ids.id(journey_id),
            KeptTouch {
                ts,
                position,
                channel: self.channels.id(channel),
                order: order_id.map(|o| self.ids.id(o)),
            },
            at,
        )
    }

    fn merge_kept(
        &mut self,
        orders: Vec<ReadOrder>,
        touches: Vec<ReadTouch>,
        hold_orders: bool,
        hold_touches: bool,
    ) {
        let mut mark = self.orders_mark;
        for (id, o, at) in orders {
            mark = mark.max(at);
            match self.orders.get(&id) {
                // a restated order keeps its newest version (as `assemble` does)
                Some(kept) if kept.ts > o.ts => {}
                _ => {
                    self.orders.insert(id, o);
                }
            }
        }
        if !hold_orders {
            self.orders_mark = mark;
        }
        let mut mark = self.touches_mark;
        for (journey, t, at) in touches {
            mark = mark.max(at);
            let kept = self.journeys.entry(journey).or_default();
            match kept.binary_search_by(|k| (k.ts, k.position).cmp(&(t.ts, t.position))) {
                Ok(i) => kept[i] = t,
                Err(i) => kept.insert(i, t),
            }
        }
        if !hold_touches {
            self.touches_mark = mark;
        }
    }

    /// Everything kept, with this run's spend, as one run's inputs (the job itself computes from
    /// what is kept, without this copy).
    pub fn inputs(&self, spend: Vec<SpendRow>) -> Inputs {
        let name = |id: u32| self.ids.name(id).to_string();
        let mut orders: Vec<OrderRow> = self
            .orders
            .iter()
            .map(|(id, o)| OrderRow {
                order_id: name(*id),
                ts: o.ts,
                day: o.day,
                revenue: o.revenue,
            })
            .collect();
        orders.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.order_id.cmp(&b.order_id)));
        let mut touches: Vec<TouchRow> = self
            .journeys
            .iter()
            .flat_map(|(j, kept)| {
                kept.iter().map(move |t| TouchRow {
                    journey_id: name(*j),
                    order_id: t.order.map(name),
                    ts: t.ts,
                    position: t.position,
                    channel: self.channels.name(t.channel).to_string(),
                })
            })
            .collect();
        // the table's DEDUP key order
        touches.sort_by(|a, b| {
            (a.journey_id.as_str(), a.position, a.ts).cmp(&(
                b.journey_id.as_str(),
                b.position,
                b.ts,
            ))
        });
        Inputs {
            orders,
            touches,
            spend,
        }
    }

    /// One run's journeys (as [`assemble`] makes them from [`Seen::inputs`]), this run's spend
    /// and previous keys (channels by id), all channels ranked.
    fn core(&mut self, spend: Vec<(NaiveDate, u32, Decimal, f64)>, previous: Previous) -> Core {
        let unattributed = self.channels.id(UNATTRIBUTED);
        let (rank, names) = self.channels.ranks();
        let mut ids: Vec<u32> = self.journeys.keys().copied().collect();
        ids.sort_unstable_by(|a, b| self.ids.name(*a).cmp(self.ids.name(*b)));
        let mut used = vec![false; self.ids.len()];
        let (mut touches, mut journeys, mut waiting) = (Vec::new(), Vec::new(), 0);
        for id in ids {
            let kept = &self.journeys[&id];
            let order = match kept.iter().find_map(|t| t.order) {
                Some(o) => match self.orders.get(&o) {
                    Some(k) => {
                        used[o as usize] = true;
                        Some(k)
                    }
                    None => {
                        waiting += 1;
                        continue;
                    }
                },
                None => None,
            };
            let start = touches.len();
            touches.extend(kept.iter().map(|t| CTouch {
                ts: t.ts,
                channel: rank[t.channel as usize],
            }));
            journeys.push(CJourney {
                start: start as u32,
                len: (touches.len() - start) as u32,
                converted_at: order.map(|o| o.ts),
                revenue: order.map(|o| o.revenue).unwrap_or_default(),
                day: order.map(|o| o.day),
            });
        }
        let mut lone: Vec<u32> = self
            .orders
            .keys()
            .copied()
            .filter(|o| !used[*o as usize])
            .collect();
        lone.sort_unstable_by(|a, b| self.ids.name(*a).cmp(self.ids.name(*b)));
        let start = touches.len() as u32;
        for o in lone {
            let k = &self.orders[&o];
            journeys.push(CJourney {
                start,
                len: 0,
                converted_at: Some(k.ts),
                revenue: k.revenue,
                day: Some(k.day),
            });
        }
        Core {
            names,
            unattributed: rank[unattributed as usize],
            touches,
            journeys,
            waiting,
            paid: compact::paid_of(
                spend
                    .into_iter()
                    .map(|(d, c, s, p)| (d, rank[c as usize], s, p))
                    .collect(),
            ),
            prev: ranked(previous.keys, &rank),
            prev_models: previous.models.0,
            prev_windows: previous.windows.0,
        }
    }
}

/// The keys of the rows the table holds with credit, channels by id.
#[derive(Debug, Default)]
struct Previous {
    keys: Vec<PrevKey>,
    models: Labels,
    windows: Labels,
}

impl AttributionJob {
    /// The job for `cfg`, its metrics registered in `registry`.
    pub fn new(
        cfg: AttributionConfig,
        ctx: JobContext,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        Ok(Self {
            cfg,
            ctx,
            metrics: JobMetrics::new(registry)?,
            seen: Arc::default(),
        })
    }

    /// Run until shutdown: a first run shortly after start, then one every `interval_secs`.
    pub async fn run(self, shutdown: CancellationToken) {
        run_periodically(self.cfg.interval_secs, 5, shutdown, || async {
            // the outcome is logged and in the metrics; the next run redoes a failed one
            let _ = self.run_and_record().await;
        })
        .await;
    }

    /// One run, its outcome logged and in the metrics.
    pub async fn run_and_record(&self) -> Result<RunSummary, JobError> {
        let log = |s: &RunSummary| {
            info!(
                orders = s.orders,
                journeys = s.journeys,
                waiting = s.waiting,
                rows = s.rows,
                spooled = s.spooled,
                "attribution written"
            )
        };
        self.metrics.run.record(self.run_once(), log).await
    }

    /// Read, attribute, write. Rows that could not be read are reported after the rest is
    /// written (one bad row must not hold every other order's attribution back).
    pub async fn run_once(&self) -> Result<RunSummary, JobError> {
        let mut seen = self.seen.clone().lock_owned().await;
        let (spend, bad) = self.read(&mut seen).await?;
        let models = self.cfg.models();
        let windows = self.cfg.windows();
        let (tz, currency) = (self.ctx.tz, self.ctx.currency.clone());
        let max_entries = self.cfg.markov_max_entries;
        let previous = self.previous(&mut seen).await?;
        // computed on a blocking thread from the journeys kept (no copy of them), one window at
        // a time, handed over a send at a time: a run holds one window's credit and a few
        // small sends, not every row
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Record>>(2);
        let compute = tokio::task::spawn_blocking(move || {
            let core = seen.core(spend, previous);
            drop(seen);
            let spec = RunSpec {
                models: &models,
                windows: &windows,
                tz,
                currency: &currency,
                markov_max_entries: max_entries,
                chunk_rows: SEND_ROWS,
            };
            let mut chunk: Vec<Record> = Vec::with_capacity(SEND_ROWS);
            let built = compact::build(&core, &spec, |row| {
                chunk.push(Record::Attribution(row));
                if chunk.len() >= SEND_ROWS {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(SEND_ROWS));
                    // a closed channel means the write already failed: the rest is not needed
                    let _ = tx.blocking_send(full);
                }
            });
            if !chunk.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
            let orders = core.journeys.iter().filter(|j| j.day.is_some()).count();
            (orders, core.journeys.len(), core.waiting, built)
        });
        let mut tickets = Vec::new();
        let mut sent = 0usize;
        while let Some(chunk) = rx.recv().await {
            sent += chunk.len();
            let ticket = self
                .ctx
                .sink
                .send(chunk)
                .await
                .map_err(|_| JobError::SinkClosed { rows: sent })?;
            tickets.push(ticket);
        }
        let (orders, journeys, waiting, built) = match compute.await {
            Ok(b) => b,
            // the computation panicked (a bug): reported as a failed run
            Err(e) => return Err(JobError::Compute(e.to_string())),
        };
        let summary = RunSummary {
            orders,
            journeys,
            waiting,
            rows: built.rows,
            spooled: 0,
        };
        self.metrics.orders.set(summary.orders as i64);
        self.metrics.waiting.set(summary.waiting as i64);
        self.metrics.rows.set(summary.rows as i64);
        let spooled = settle(tickets, built.rows).await?;
        if let Some(e) = bad {
            return Err(e);
        }
        if let Some((w, first)) = built.unsolved.first() {
            for (w, _) in &built.unsolved {
                self.metrics
                    .markov_unsolved
                    .with_label_values(&[w.label().as_str()])
                    .inc();
            }
            return Err(JobError::MarkovUnsolved {
                windows: built.unsolved.len(),
                first: format!("{}: {first}", w.label()),
            });
        }
        Ok(RunSummary { spooled, ..summary })
    }

    /// The orders and touches stored since the last run (all of them on the first run: a restart
    /// reads the whole history once), merged into the journeys kept from earlier runs, and every
    /// campaign day `(day, channel id, spend, platform conversions)`; the first unreadable
    /// table's error alongside what could be read.
    async fn read(
        &self,
        seen: &mut Seen,
    ) -> Result<(Vec<(NaiveDate, u32, Decimal, f64)>, Option<JobError>), JobError> {
        let overlap = chrono::Duration::seconds(
            i64::try_from(self.cfg.reread_overlap_secs).unwrap_or(i64::MAX / 1_000_000),
        );
        let since = |mark: Option<DateTime<Utc>>| match mark {
            Some(m) => format!(
                " AND ingested_at > '{}'",
                (m - overlap).format("%Y-%m-%dT%H:%M:%S%.6fZ")
            ),
            None => String::new(),
        };
        let (mut bad_orders, mut bad_touches, mut bad) = (None, None, None);
        let mut orders: Vec<ReadOrder> = Vec::new();
        self.query(
            "orders",
            &format!(
                "SELECT order_id, ts, day, amount, ingested_at FROM orders \
                 WHERE kind = 'order'{} ORDER BY ts, order_id",
                since(seen.orders_mark)
            ),
            |r| {
                let (o, at) = parse_order(r)?;
                orders.push((
                    seen.ids.id(&o.order_id),
                    KeptOrder {
                        ts: o.ts,
                        day: o.day,
                        revenue: o.revenue,
                    },
                    at,
                ));
                Ok(())
            },
            &mut bad_orders,
        )
        .await?;
        let mut touches: Vec<ReadTouch> = Vec::new();
        self.query(
            "touchpoints",
            &format!(
                "SELECT journey_id, order_id, ts, position, channel, ingested_at \
                 FROM touchpoints WHERE true{} ORDER BY ts, journey_id, position",
                since(seen.touches_mark)
            ),
            |r| {
                let (journey, order, ts, position, channel, at) = parse_touch_ref(r)?;
                touches.push(seen.touch_of(journey, order, ts, position, channel, at));
                Ok(())
            },
            &mut bad_touches,
        )
        .await?;
        let mut spend: Vec<(NaiveDate, u32, Decimal, f64)> = Vec::new();
        let mut name = String::new();
        self.query(
            "campaign_stats",
            "SELECT day, platform, campaign_id, sum(spend), sum(conversions) \
             FROM campaign_stats WHERE bucket = 'day' \
             GROUP BY day, platform, campaign_id ORDER BY day, platform, campaign_id",
            |r| {
                let (day, s, conv) = parse_spend_into(r, &mut name)?;
                spend.push((day, seen.channels.id(&name), s, conv));
                Ok(())
            },
            &mut bad,
        )
        .await?;
        self.metrics
            .rows_read
            .with_label_values(&["orders"])
            .inc_by(orders.len() as u64);
        self.metrics
            .rows_read
            .with_label_values(&["touchpoints"])
            .inc_by(touches.len() as u64);
        // a table with unreadable rows keeps its mark, so the next run reads them again
        let hold_orders = bad_orders.is_some();
        let hold_touches = bad_touches.is_some();
        seen.merge_kept(orders, touches, hold_orders, hold_touches);
        let first_bad = bad_orders.or(bad_touches).or(bad);
        Ok((spend, first_bad))
    }

    /// The keys of the rows the table holds with credit (from earlier runs), channels interned
    /// with the journeys'.
    async fn previous(&self, seen: &mut Seen) -> Result<Previous, JobError> {
        let mut bad = None;
        let mut prev = Previous::default();
        self.query(
            "attribution",
            "SELECT day, model, \"window\", channel FROM attribution \
             WHERE conversions != 0 OR revenue != 0 \
             ORDER BY day, model, \"window\", channel",
            |r| {
                let day = date(r, 0, "day")?;
                let model = str_at(r, 1, "model")?;
                let window = str_at(r, 2, "window")?;
                let channel = str_at(r, 3, "channel")?;
                prev.keys.push(PrevKey {
                    day,
                    model: prev.models.id(model),
                    window: prev.windows.id(window),
                    channel: seen.channels.id(channel),
                });
                Ok(())
            },
            &mut bad,
        )
        .await?;
        // a key that cannot be read cannot be overwritten: say so rather than leave it stale
        match bad {
            Some(e) => Err(e),
            None => Ok(prev),
        }
    }

    /// Every row of `base` to `each` (see [`read_pages_with`]).
    async fn query(
        &self,
        table: &'static str,
        base: &str,
        each: impl FnMut(&[Value]) -> Result<(), String>,
        bad: &mut Option<JobError>,
    ) -> Result<(), JobError> {
        read_pages_with(&self.ctx.sql, self.cfg.page_rows, table, base, each, bad).await
    }
}

/// All rows of `base` (ordered, so pages do not overlap), `page` rows per query, parsed.
/// Unreadable rows are left out and named in `bad` (the first table with any, its count and
/// first row), so a job can write the rest and still report itself incomplete. Shared by the jobs
/// that read the store back (attribution, CLV).
pub(crate) async fn read_pages<T>(
    sql: &SqlClient,
    page: usize,
    table: &'static str,
    base: &str,
    parse: fn(&[Value]) -> Result<T, String>,
    bad: &mut Option<JobError>,
) -> Result<Vec<T>, JobError> {
    let mut out = Vec::new();
    read_pages_with(
        sql,
        page,
        table,
        base,
        |r| {
            out.push(parse(r)?);
            Ok(())
        },
        bad,
    )
    .await?;
    Ok(out)
}

/// [`read_pages`] handing each row to `each` as it comes (an `Err` names an unreadable row),
/// so a reader keeps only what it makes of the rows, never the parsed rows themselves.
pub(crate) async fn read_pages_with(
    sql: &SqlClient,
    page: usize,
    table: &'static str,
    base: &str,
    mut each: impl FnMut(&[Value]) -> Result<(), String>,
    bad: &mut Option<JobError>,
) -> Result<(), JobError> {
    let page = page.max(1);
    let mut errors = Vec::new();
    let mut lo = 0usize;
    loop {
        let q = format!("{base} LIMIT {lo},{}", lo + page);
        let v = sql
            .exec(&q)
            .await
            .map_err(|source| JobError::Read { table, source })?;
        let data = v["dataset"]
            .as_array()
            .ok_or(JobError::NoDataset { table })?;
        for (i, r) in data.iter().enumerate() {
            let parsed = r
                .as_array()
                .ok_or_else(|| "not a row".to_string())
                .and_then(|r| each(r));
            if let Err(why) = parsed {
                errors.push(format!("{table} row {}: {why}", lo + i + 1));
            }
        }
        if data.len() < page {
            break;
        }
        lo += page;
    }
    if let (None, Some(first)) = (&bad, errors.first()) {
        *bad = Some(JobError::BadRows {
            table,
            bad: errors.len(),
            first: first.clone(),
        });
    }
    Ok(())
}

/// Hand `rows` to the sink in sends of [`SEND_ROWS`] and wait until every one is durable; returns
/// how many were spooled. A row the store refused (dead-lettered) fails the write.
pub(crate) async fn write_durable(sink: &SinkHandle, rows: Vec<Record>) -> Result<usize, JobError> {
    let total = rows.len();
    let mut tickets = Vec::new();
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<Record> = rows.by_ref().take(SEND_ROWS).collect();
        if chunk.is_empty() {
            break;
        }
        let ticket = sink
            .send(chunk)
            .await
            .map_err(|_| JobError::SinkClosed { rows: total })?;
        tickets.push(ticket);
    }
    settle(tickets, total).await
}

/// Wait until every send of a write is durable; returns how many rows were spooled. A row the
/// store refused (dead-lettered) fails the write.
async fn settle(
    tickets: Vec<crate::sinks::questdb::Durable>,
    total: usize,
) -> Result<usize, JobError> {
    let (mut dead, mut spooled) = (0, 0);
    for t in tickets {
        let s = t
            .wait()
            .await
            .map_err(|_| JobError::SinkClosed { rows: total })?;
        dead += s.dead_lettered;
        spooled += s.spooled;
    }
    if dead > 0 {
        return Err(JobError::NotStored {
            rows: total,
            dead_lettered: dead,
        });
    }
    Ok(spooled)
}

pub(crate) fn text(r: &[Value], i: usize, what: &str) -> Result<String, String> {
    str_at(r, i, what).map(str::to_string)
}

/// Column `i` as text, borrowed from the row.
fn str_at<'a>(r: &'a [Value], i: usize, what: &str) -> Result<&'a str, String> {
    r.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} missing"))
}

pub(crate) fn timestamp(r: &[Value], i: usize, what: &str) -> Result<DateTime<Utc>, String> {
    let s = str_at(r, i, what)?;
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{what} {s:?}: {e}"))
}

pub(crate) fn date(r: &[Value], i: usize, what: &str) -> Result<NaiveDate, String> {
    let s = str_at(r, i, what)?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| format!("{what} {s:?}: {e}"))
}

/// QuestDB returns DECIMAL as a string; accept a number too, exactly as printed.
pub(crate) fn money(r: &[Value], i: usize, what: &str) -> Result<Decimal, String> {
    match r.get(i) {
        Some(Value::String(s)) => Decimal::from_str(s).map_err(|e| format!("{what} {s:?}: {e}")),
        Some(Value::Number(n)) => {
            Decimal::from_str(&n.to_string()).map_err(|e| format!("{what} {n}: {e}"))
        }
        _ => Err(format!("{what} missing")),
    }
}

/// When the store took a row (`ingested_at`, column `i`); `None` for rows written without one.
fn stored_at(r: &[Value], i: usize) -> Option<DateTime<Utc>> {
    timestamp(r, i, "ingested_at").ok()
}

fn parse_order(r: &[Value]) -> Result<(OrderRow, Option<DateTime<Utc>>), String> {
    let order_id = text(r, 0, "order_id")?;
    let with_id = |e: String| format!("order {order_id}: {e}");
    let at = stored_at(r, 4);
    Ok((
        OrderRow {
            ts: timestamp(r, 1, "ts").map_err(with_id)?,
            day: date(r, 2, "day").map_err(with_id)?,
            revenue: money(r, 3, "amount").map_err(with_id)?,
            order_id,
        },
        at,
    ))
}

/// A touchpoint row, its text borrowed: journey id, order id, ts, position, channel, and when
/// the store took it.
type TouchRef<'a> = (
    &'a str,
    Option<&'a str>,
    DateTime<Utc>,
    i64,
    &'a str,
    Option<DateTime<Utc>>,
);

fn parse_touch_ref(r: &[Value]) -> Result<TouchRef<'_>, String> {
    let journey_id = str_at(r, 0, "journey_id")?;
    let with_id = |e: String| format!("journey {journey_id}: {e}");
    let at = stored_at(r, 5);
    Ok((
        journey_id,
        r.get(1).and_then(Value::as_str),
        timestamp(r, 2, "ts").map_err(with_id)?,
        r.get(3)
            .and_then(Value::as_i64)
            .ok_or_else(|| with_id("position missing".into()))?,
        str_at(r, 4, "channel").map_err(with_id)?,
        at,
    ))
}

/// A campaign day: its day, spend and platform conversions, its channel (`platform:campaign`)
/// written into `channel`.
fn parse_spend_into(
    r: &[Value],
    channel: &mut String,
) -> Result<(NaiveDate, Decimal, f64), String> {
    let platform = str_at(r, 1, "platform")?;
    let campaign = str_at(r, 2, "campaign_id")?;
    let with_id = |e: String| format!("campaign {platform}:{campaign}: {e}");
    let day = date(r, 0, "day").map_err(with_id)?;
    let spend = money(r, 3, "spend").map_err(with_id)?;
    channel.clear();
    channel.push_str(platform);
    channel.push(':');
    channel.push_str(campaign);
    Ok((day, spend, r.get(4).and_then(Value::as_f64).unwrap_or(0.0)))
}

#[cfg(test)]
fn parse_spend(r: &[Value]) -> Result<SpendRow, String> {
    let mut channel = String::new();
    let (day, spend, platform_conversions) = parse_spend_into(r, &mut channel)?;
    Ok(SpendRow {
        day,
        channel,
        spend,
        platform_conversions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    fn touch(j: &str, order: Option<&str>, day: u32, pos: i64, ch: &str) -> TouchRow {
        TouchRow {
            journey_id: j.into(),
            order_id: order.map(str::to_string),
            ts: at(day, 8),
            position: pos,
            channel: ch.into(),
        }
    }

    fn inputs() -> Inputs {
        Inputs {
            orders: vec![
                OrderRow {
                    order_id: "o1".into(),
                    ts: at(10, 10),
                    day: d(10),
                    revenue: dec!(1000.01),
                },
                // an order with no touch at all
                OrderRow {
                    order_id: "o2".into(),
                    ts: at(10, 11),
                    day: d(10),
                    revenue: dec!(250.00),
                },
            ],
            touches: vec![
                touch("o1", Some("o1"), 2, 1, "meta:1"),
                touch("o1", Some("o1"), 10, 2, "google_ads:2"),
                touch("v1", None, 9, 1, "meta:1"),
                // its order is not in the table yet
                touch("o9", Some("o9"), 10, 1, "meta:1"),
            ],
            spend: vec![SpendRow {
                day: d(10),
                channel: "meta:1".into(),
                spend: dec!(500),
                platform_conversions: 3.0,
            }],
        }
    }

    /// The String-keyed computation the job ran before channels were interned, kept verbatim as
    /// the reference the interned one must match to the bit.
    mod reference {
        use super::super::*;
        use crate::attribution::{Fitted, order_shares};
        use rust_decimal::prelude::ToPrimitive;

        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        struct DayCredit {
            conversions: f64,
            revenue: Decimal,
        }

        type DayCredits = BTreeMap<(NaiveDate, String), DayCredit>;

        pub fn rows(
            j: &Journeys,
            spend: &[SpendRow],
            spec: &RunSpec<'_>,
            previous: Vec<RowKey>,
        ) -> (Vec<AttributionRow>, Built) {
            let mut rows = Vec::new();
            let built = old_build_rows_with(j, spend, spec, previous, |c| rows.extend(c));
            (rows, built)
        }

        fn old_build_rows_with(
            j: &Journeys,
            spend: &[SpendRow],
            spec: &RunSpec<'_>,
            previous: Vec<RowKey>,
            mut emit: impl FnMut(Vec<AttributionRow>),
        ) -> Built {
            let (tz, currency) = (spec.tz, spec.currency);
            let chunk_rows = spec.chunk_rows.max(1);
            let mut paid: BTreeMap<(NaiveDate, &str), (Decimal, f64)> = BTreeMap::new();
            for s in spend {
                let e = paid.entry((s.day, s.channel.as_str())).or_default();
                e.0 += s.spend;
                e.1 += s.platform_conversions;
            }
            // previous keys by window label, then (model, day, channel)
            let mut prev: BTreeMap<String, Vec<(String, NaiveDate, String)>> = BTreeMap::new();
            for (day, model, window, channel) in previous {
                prev.entry(window).or_default().push((model, day, channel));
            }
            let mut built = Built::default();
            let mut chunk: Vec<AttributionRow> = Vec::new();
            let mut push = |row: AttributionRow, built: &mut Built| {
                chunk.push(row);
                built.rows += 1;
                if chunk.len() >= chunk_rows {
                    emit(std::mem::take(&mut chunk));
                }
            };
            for &w in spec.windows {
                let mut credit: Vec<(Model, DayCredits)> = Vec::new();
                let mut skipped: Option<&'static str> = None;
                for &m in spec.models {
                    let fitted = Fitted::fit_with(&j.journeys, m, w, spec.markov_max_entries);
                    if let Some(e) = fitted.unsolved() {
                        built.unsolved.push((w, e.clone()));
                        skipped = Some(m.label());
                        continue;
                    }
                    let mut by = DayCredits::new();
                    for (journey, day) in j.journeys.iter().zip(&j.days) {
                        let (Some(day), Some(shares)) = (day, order_shares(journey, m, w, &fitted))
                        else {
                            continue;
                        };
                        if shares.is_empty() {
                            let c = by.entry((*day, UNATTRIBUTED.to_string())).or_default();
                            c.conversions += 1.0;
                            c.revenue += journey.revenue;
                        }
                        for s in shares {
                            let c = by.entry((*day, s.channel)).or_default();
                            c.conversions += s.conversions;
                            c.revenue += s.revenue;
                        }
                    }
                    credit.push((m, by));
                }
                let mut keys: BTreeSet<(NaiveDate, &str)> = credit
                    .iter()
                    .flat_map(|(_, by)| by.keys().map(|(d, c)| (*d, c.as_str())))
                    .collect();
                keys.extend(paid.keys().copied());
                for (m, by) in &credit {
                    // `by`'s keys are a subset of `keys`, in the same order: walk both
                    let mut credited = by.iter().peekable();
                    for key in &keys {
                        let c = match credited.peek() {
                            Some(((d, ch), c)) if (*d, ch.as_str()) == *key => {
                                let c = **c;
                                credited.next();
                                c
                            }
                            _ => DayCredit::default(),
                        };
                        let (spend, claimed) = match paid.get(key) {
                            Some((s, c)) => (*s, Some(*c)),
                            None => (Decimal::ZERO, None),
                        };
                        push(
                            AttributionRow {
                                ts: day_start(key.0, tz),
                                day: key.0,
                                model: m.label().to_string(),
                                window: w.label(),
                                channel: key.1.to_string(),
                                conversions: c.conversions,
                                revenue: c.revenue,
                                spend,
                                roas: if spend.is_zero() {
                                    None
                                } else {
                                    (c.revenue / spend).to_f64()
                                },
                                platform_conversions: claimed,
                                currency: currency.to_string(),
                            },
                            &mut built,
                        );
                    }
                }
                // this window's stale keys: a channel that lost its credit, a model taken out
                for (model, day, channel) in prev.remove(&w.label()).unwrap_or_default() {
                    let produced = credit.iter().any(|(m, _)| m.label() == model)
                        && keys.contains(&(day, channel.as_str()));
                    if !produced && skipped != Some(model.as_str()) {
                        push(
                            zero_row(day, model, w.label(), channel, tz, currency),
                            &mut built,
                        );
                    }
                }
            }
            // windows taken out of the config
            for (window, keys) in prev {
                for (model, day, channel) in keys {
                    push(
                        zero_row(day, model, window.clone(), channel, tz, currency),
                        &mut built,
                    );
                }
            }
            if !chunk.is_empty() {
                emit(chunk);
            }
            built
        }
    }

    /// Random orders, touches (restated, repeated, waiting for their order), spend (a key twice)
    /// and previous keys (a model and a window no longer configured, channels no run sees).
    fn random_inputs(seed: u64) -> (Inputs, Vec<RowKey>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let channels = [
            "meta:1",
            "meta:2",
            "google_ads:7",
            "google_ads:70",
            "organic:google",
            "direct",
            "unattributed",
            "meta:10",
            "x:y:z",
        ];
        let mut i = Inputs::default();
        for k in 0..60 {
            let id = format!("j{:03}", rng.random_range(0..1000));
            let sold = rng.random_bool(0.6);
            let order = format!("o{k}");
            let end_day = rng.random_range(3..28u32);
            let end = Utc
                .with_ymd_and_hms(2026, 11, end_day, rng.random_range(0..24), 0, 0)
                .unwrap();
            for p in 0..rng.random_range(0..6i64) {
                let back = chrono::Duration::hours(rng.random_range(0..24 * 40));
                let t = TouchRow {
                    journey_id: id.clone(),
                    order_id: (sold && rng.random_bool(0.8)).then(|| order.clone()),
                    ts: end - back,
                    position: p,
                    channel: channels[rng.random_range(0..channels.len())].to_string(),
                };
                if rng.random_bool(0.2) {
                    // the same touch twice
                    i.touches.push(t.clone());
                }
                i.touches.push(t);
            }
            if sold && rng.random_bool(0.9) {
                let revenue = Decimal::new(rng.random_range(0..10_000_000), 2);
                i.orders.push(OrderRow {
                    order_id: order.clone(),
                    ts: end,
                    day: end.date_naive(),
                    revenue,
                });
                if rng.random_bool(0.2) {
                    // restated later
                    i.orders.push(OrderRow {
                        order_id: order,
                        ts: end + chrono::Duration::minutes(5),
                        day: end.date_naive(),
                        revenue: revenue + dec!(1.25),
                    });
                }
            }
        }
        for day in 1..30 {
            for c in ["meta:1", "google_ads:7", "meta:99"] {
                if rng.random_bool(0.7) {
                    i.spend.push(SpendRow {
                        day: d(day),
                        channel: c.into(),
                        spend: Decimal::new(rng.random_range(0..100_000), 2),
                        platform_conversions: rng.random_range(0..5) as f64 * 0.5,
                    });
                }
            }
        }
        i.spend.push(i.spend[0].clone());
        let mut previous = Vec::new();
        for _ in 0..80 {
            let model = ["first_click", "markov", "linear", "old_model"][rng.random_range(0..4)];
            let window = ["7d", "lifetime", "3d", "1d", "90d"][rng.random_range(0..5)];
            let channel = ["meta:1", "direct", "gone:1", "unattributed"][rng.random_range(0..4)];
            previous.push((
                d(rng.random_range(1..30)),
                model.into(),
                window.into(),
                channel.into(),
            ));
        }
        previous.sort();
        (i, previous)
    }

    fn spec<'a>(models: &'a [Model], windows: &'a [Window], max: usize) -> RunSpec<'a> {
        RunSpec {
            models,
            windows,
            tz: chrono_tz::Asia::Kolkata,
            currency: "INR",
            markov_max_entries: max,
            chunk_rows: 7,
        }
    }

    #[test]
    fn interned_rows_are_the_string_keyed_rows_to_the_bit() {
        let models = Model::all(24.0);
        let windows = [
            Window::Days(1),
            Window::Days(7),
            Window::Days(14),
            Window::Lifetime,
        ];
        // what the seeds covered: unsolved chains, journeys waiting, zeroed keys
        let (mut unsolved, mut waiting, mut zeros) = (0, 0, 0);
        for seed in 0..40 {
            // a Markov cap the larger chains pass and some do not
            let max = if seed % 4 == 3 { 12 } else { 2_000_000 };
            let spec = spec(&models, &windows, max);
            let (i, previous) = random_inputs(seed);
            let j = assemble(&i);
            let (want, want_built) = reference::rows(&j, &i.spend, &spec, previous.clone());
            let mut got = Vec::new();
            let built = build_rows_with(&j, &i.spend, &spec, previous.clone(), |c| {
                assert!(c.len() <= 7);
                got.extend(c)
            });
            assert_eq!(built, want_built, "seed {seed}");
            assert_eq!(got.len(), want.len(), "seed {seed}");
            unsolved += built.unsolved.len();
            waiting += j.waiting;
            zeros += got
                .iter()
                .filter(|r| r.currency == "INR" && r.revenue.is_zero())
                .count();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "seed {seed}");
                assert_eq!(g.revenue.scale(), w.revenue.scale(), "seed {seed}");
                assert_eq!(
                    g.conversions.to_bits(),
                    w.conversions.to_bits(),
                    "seed {seed}"
                );
            }
            // the job's path: rows merged into what it keeps, journeys made from that
            let mut seen = Seen::default();
            let at = Some(at(28, 0));
            seen.merge(
                i.orders.iter().cloned().map(|o| (o, at)).collect(),
                i.touches.iter().cloned().map(|t| (t, at)).collect(),
                false,
                false,
            );
            let kept = seen.inputs(i.spend.clone());
            let j = assemble(&kept);
            let (want, want_built) = reference::rows(&j, &i.spend, &spec, previous.clone());
            let spend = i
                .spend
                .iter()
                .map(|s| {
                    (
                        s.day,
                        seen.channels.id(&s.channel),
                        s.spend,
                        s.platform_conversions,
                    )
                })
                .collect();
            let mut prev = Previous::default();
            for (day, m, w, c) in &previous {
                prev.keys.push(PrevKey {
                    day: *day,
                    model: prev.models.id(m),
                    window: prev.windows.id(w),
                    channel: seen.channels.id(c),
                });
            }
            let core = seen.core(spend, prev);
            assert_eq!(core.waiting, j.waiting, "seed {seed}");
            assert_eq!(core.journeys.len(), j.journeys.len(), "seed {seed}");
            let mut got = Vec::new();
            let built = compact::build(&core, &spec, |r| got.push(r));
            assert_eq!(built, want_built, "seed {seed}");
            assert_eq!(got, want, "seed {seed}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    g.conversions.to_bits(),
                    w.conversions.to_bits(),
                    "seed {seed}"
                );
            }
        }
        assert!(
            unsolved > 0 && waiting > 0 && zeros > 0,
            "{unsolved} {waiting} {zeros}"
        );
    }

    #[test]
    fn journeys_join_orders_and_wait_for_missing_ones() {
        let j = assemble(&inputs());
        assert_eq!(j.waiting, 1);
        assert_eq!(j.journeys.len(), 3);
        let o1 = j.journeys.iter().find(|j| j.id == "o1").unwrap();
        assert_eq!(o1.touches.len(), 2);
        assert_eq!(o1.revenue, dec!(1000.01));
        let o2 = j.journeys.iter().find(|j| j.id == "o2").unwrap();
        assert!(o2.touches.is_empty() && o2.converted_at.is_some());
    }

    #[test]
    fn rows_by_hand() {
        let i = inputs();
        let j = assemble(&i);
        let rows = build_rows(
            &j,
            &i.spend,
            &[Model::FirstClick, Model::Linear],
            &[Window::Days(7), Window::Lifetime],
            chrono_tz::Asia::Kolkata,
            "INR",
        );
        let get = |m: &str, w: &str, c: &str| {
            rows.iter()
                .find(|r| r.model == m && r.window == w && r.channel == c)
                .unwrap_or_else(|| panic!("{m} {w} {c}"))
        };
        // lifetime first click: o1 to meta (1000.01), o2 unattributed
        let r = get("first_click", "lifetime", "meta:1");
        assert_eq!(r.revenue, dec!(1000.01));
        assert_eq!(r.spend, dec!(500));
        assert_eq!(r.platform_conversions, Some(3.0));
        assert_eq!(r.roas, Some(1000.01 / 500.0));
        assert_eq!(r.ts, Utc.with_ymd_and_hms(2026, 11, 9, 18, 30, 0).unwrap());
        assert_eq!(
            get("first_click", "lifetime", UNATTRIBUTED).revenue,
            dec!(250.00)
        );
        // linear: 500.00 (first half, rounded) and 500.01 (the remainder) to the last touch
        assert_eq!(get("linear", "lifetime", "meta:1").revenue, dec!(500.00));
        assert_eq!(
            get("linear", "lifetime", "google_ads:2").revenue,
            dec!(500.01)
        );
        // 7 days: meta's day-2 touch is out; meta still has its spend row, with no credit
        let r = get("first_click", "7d", "meta:1");
        assert_eq!((r.revenue, r.conversions), (Decimal::ZERO, 0.0));
        assert_eq!(r.roas, Some(0.0));
        assert_eq!(
            get("first_click", "7d", "google_ads:2").revenue,
            dec!(1000.01)
        );
        // organic or unpaid channels carry no spend and no platform claim
        assert_eq!(
            get("linear", "7d", "google_ads:2").platform_conversions,
            None
        );
        // every model and window adds up to the orders of the day
        for m in ["first_click", "linear"] {
            for w in ["7d", "lifetime"] {
                let total: Decimal = rows
                    .iter()
                    .filter(|r| r.model == m && r.window == w)
                    .map(|r| r.revenue)
                    .sum();
                assert_eq!(total, dec!(1250.01), "{m} {w}");
            }
        }
    }

    #[test]
    fn kept_journeys_take_new_and_restated_rows_and_hold_the_mark_on_bad_rows() {
        let i = inputs();
        let at = |h: u32| Some(at(20, h));
        let mut seen = Seen::default();
        let orders: Vec<_> = i.orders.iter().cloned().map(|o| (o, at(1))).collect();
        let touches: Vec<_> = i.touches.iter().cloned().map(|t| (t, at(2))).collect();
        seen.merge(orders, touches, false, false);
        assert_eq!((seen.orders_mark, seen.touches_mark), (at(1), at(2)));
        // a later read: o2 restated (newer version wins), a new touch, and unreadable touch rows
        let mut o2 = i.orders[1].clone();
        o2.revenue = dec!(300);
        let extra = touch("v2", None, 11, 1, "direct");
        seen.merge(vec![(o2, at(3))], vec![(extra, at(4))], false, true);
        assert_eq!(seen.orders_mark, at(3));
        assert_eq!(
            seen.touches_mark,
            at(2),
            "held: the bad rows are read again"
        );
        let all = seen.inputs(i.spend.clone());
        assert_eq!(all.orders.len(), 2);
        assert_eq!(all.orders[1].revenue, dec!(300));
        assert_eq!(all.touches.len(), i.touches.len() + 1);
        // the same rows read again (the overlap) change nothing
        let again: Vec<_> = i.touches.iter().cloned().map(|t| (t, at(2))).collect();
        seen.merge(Vec::new(), again, false, false);
        assert_eq!(seen.inputs(i.spend.clone()), all);
    }

    #[test]
    fn keys_that_lost_their_credit_are_zeroed() {
        let i = inputs();
        let j = assemble(&i);
        let tz = chrono_tz::Asia::Kolkata;
        let mut rows = build_rows(
            &j,
            &i.spend,
            &[Model::LastClick],
            &[Window::Lifetime],
            tz,
            "INR",
        );
        let n = rows.len();
        let key = |c: &str| {
            (
                d(10),
                "last_click".to_string(),
                "lifetime".to_string(),
                c.to_string(),
            )
        };
        // meta:1 is rebuilt (it has spend), organic:x is gone
        zero_missing(&mut rows, [key("meta:1"), key("organic:x")], tz, "INR");
        assert_eq!(rows.len(), n + 1);
        let z = rows.last().unwrap();
        assert_eq!(
            (z.channel.as_str(), z.revenue, z.conversions),
            ("organic:x", Decimal::ZERO, 0.0)
        );
    }

    #[tokio::test]
    async fn a_run_that_cannot_read_says_so() {
        // QuestDB unreachable (a port nothing listens on): the run fails, the gauge says 0, the
        // failure is counted, and there is no last success
        let spool = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let qcfg = crate::config::QuestDbConfig {
            http_url: format!("http://127.0.0.1:{port}"),
            spool_dir: spool.path().to_path_buf(),
            request_timeout_secs: 2,
            ..Default::default()
        };
        let telemetry = std::sync::Arc::new(crate::telemetry::Telemetry::new());
        let (_sink, handle) =
            crate::sinks::questdb::QuestDbSink::build(qcfg.clone(), None, telemetry.clone())
                .unwrap();
        let ctx = JobContext {
            sql: SqlClient::new(&qcfg, None),
            sink: handle,
            tz: chrono_tz::Asia::Kolkata,
            currency: "INR".into(),
        };
        let job =
            AttributionJob::new(AttributionConfig::default(), ctx, &telemetry.registry).unwrap();
        let e = job.run_and_record().await.unwrap_err();
        assert!(
            matches!(
                e,
                JobError::Read {
                    table: "orders",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(job.metrics.run.success.get(), 0);
        assert_eq!(job.metrics.run.runs.with_label_values(&["failed"]).get(), 1);
        assert_eq!(
            job.metrics.run.runs.with_label_values(&["success"]).get(),
            0
        );
        assert_eq!(job.metrics.run.last_success.get(), 0.0);
    }

    #[test]
    fn questdb_rows_parse_and_bad_ones_are_named() {
        let row: Vec<Value> = serde_json::from_str(
            r#"["demo-1", "2026-11-10T10:00:00.000000Z", "2026-11-10", "1234.560000"]"#,
        )
        .unwrap();
        let o = parse_order(&row).unwrap().0;
        assert_eq!(o.revenue, dec!(1234.56));
        assert_eq!(o.ts, at(10, 10));
        let bad: Vec<Value> = serde_json::from_str(
            r#"["demo-2", "2026-11-10T10:00:00.000000Z", "2026-11-10", null]"#,
        )
        .unwrap();
        assert_eq!(
            parse_order(&bad).unwrap_err(),
            "order demo-2: amount missing"
        );
        let s: Vec<Value> =
            serde_json::from_str(r#"["2026-11-10", "meta", "120", "99.5", 2.5]"#).unwrap();
        let s = parse_spend(&s).unwrap();
        assert_eq!((s.channel.as_str(), s.spend), ("meta:120", dec!(99.5)));
    }
}
