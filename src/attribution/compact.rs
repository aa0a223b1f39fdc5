//! One attribution run over interned channels: the arithmetic of `job::build_rows_with`, with
//! every channel a `u32` (its rank among the run's sorted channel names, so comparing ranks
//! orders channels exactly as comparing their names does), touches 16 bytes each, spend and the
//! previous run's keys as fixed-size records. Every sum is taken in the order the String-keyed
//! computation takes it, so the rows are the same to the bit; only the memory differs.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::shapley::Coalitions;
use super::{Model, Window, chain, markov, split_revenue, weights_at, weights_by_effect_of};
use crate::normalize::day_start;
use crate::records::AttributionRow;

/// A channel in one run: its position among the run's channel names, sorted.
pub(crate) type Rank = u32;

/// Names, each stored once, by id (in order of first sight).
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    /// The id of `name`, added if new.
    pub(crate) fn id(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = u32::try_from(self.names.len()).expect("fewer than 2^32 names");
        let a: Arc<str> = Arc::from(name);
        self.names.push(a.clone());
        self.ids.insert(a, i);
        i
    }

    pub(crate) fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The rank of every id (by id) and the names by rank.
    pub(crate) fn ranks(&self) -> (Vec<Rank>, Vec<Arc<str>>) {
        let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
        order.sort_unstable_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
        let mut rank = vec![0; self.names.len()];
        for (r, id) in order.iter().enumerate() {
            rank[*id as usize] = r as Rank;
        }
        let names = order
            .into_iter()
            .map(|id| self.names[id as usize].clone())
            .collect();
        (rank, names)
    }
}

/// One touch of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CTouch {
    pub ts: DateTime<Utc>,
    pub channel: Rank,
}

/// One journey of a run: its touches `touches[start..start + len]`, and its order if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CJourney {
    pub start: u32,
    pub len: u32,
    pub converted_at: Option<DateTime<Utc>>,
    pub revenue: Decimal,
    /// Reporting day of the order.
    pub day: Option<NaiveDate>,
}

/// A row the table holds with credit: model and window as indexes into [`Core::prev_models`]
/// and [`Core::prev_windows`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PrevKey {
    pub day: NaiveDate,
    pub model: u16,
    pub window: u16,
    pub channel: Rank,
}

/// Labels (models, windows) as the table names them, each once.
#[derive(Debug, Default)]
pub(crate) struct Labels(pub Vec<String>);

impl Labels {
    pub(crate) fn id(&mut self, label: &str) -> u16 {
        match self.0.iter().position(|l| l == label) {
            Some(i) => i as u16,
            None => {
                self.0.push(label.to_string());
                u16::try_from(self.0.len() - 1).expect("fewer than 65,536 labels")
            }
        }
    }
}

/// Everything one run computes from.
#[derive(Debug, Default)]
pub(crate) struct Core {
    /// Channel names by rank: sorted, distinct; every channel below is among them.
    pub names: Vec<Arc<str>>,
    /// Rank of the `unattributed` channel (`job::UNATTRIBUTED`).
    pub unattributed: Rank,
    pub touches: Vec<CTouch>,
    pub journeys: Vec<CJourney>,
    /// Journeys left out: their order is not in the `orders` table yet.
    pub waiting: usize,
    /// Spend and platform conversions by (day, channel), sorted by key, one entry per key.
    pub paid: Vec<((NaiveDate, Rank), (Decimal, f64))>,
    /// Keys written with credit by earlier runs, in the order the table returned them.
    pub prev: Vec<PrevKey>,
    pub prev_models: Vec<String>,
    pub prev_windows: Vec<String>,
}

/// Spend rows `(day, channel, spend, platform conversions)`, in read order, summed by key (in
/// that order) and sorted.
pub(crate) fn paid_of(
    mut rows: Vec<(NaiveDate, Rank, Decimal, f64)>,
) -> Vec<((NaiveDate, Rank), (Decimal, f64))> {
    // stable: rows of one key keep their read order, and are summed in it
    rows.sort_by_key(|r| (r.0, r.1));
    let mut out: Vec<((NaiveDate, Rank), (Decimal, f64))> = Vec::new();
    for (day, ch, spend, conv) in rows {
        if out.last().is_none_or(|l| l.0 != (day, ch)) {
            out.push(((day, ch), (Decimal::ZERO, 0.0)));
        }
        let e = &mut out.last_mut().expect("pushed").1;
        e.0 += spend;
        e.1 += conv;
    }
    out
}

/// Conversions and revenue credited to one channel on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct DayCredit {
    conversions: f64,
    revenue: Decimal,
}

/// One model's credit in one window, by (day, channel).
type DayCredits = BTreeMap<(NaiveDate, Rank), DayCredit>;

/// A model fitted on one window's journeys.
enum CFitted {
    Heuristic,
    /// Removal effect by rank (0 for a channel on no path).
    Markov(Vec<f64>),
    Shapley(BTreeMap<Vec<Rank>, Vec<f64>>),
}

impl Core {
    fn touches_of(&self, j: &CJourney) -> &[CTouch] {
        &self.touches[j.start as usize..(j.start + j.len) as usize]
    }

    /// Touches of a journey inside the window (see [`super::touches_in_window`]).
    fn in_window(&self, j: &CJourney, w: Window) -> Vec<CTouch> {
        let t = self.touches_of(j);
        let end = match (j.converted_at, t.last()) {
            (Some(c), _) => c,
            (None, Some(l)) => l.ts,
            (None, None) => return Vec::new(),
        };
        t.iter().filter(|t| w.admits(t.ts, end)).copied().collect()
    }

    /// [`super::Fitted::fit_with`]; `Err` for a Markov chain past the cap.
    fn fit(&self, model: Model, w: Window, max_entries: usize) -> Result<CFitted, chain::TooLarge> {
        match model {
            Model::Markov => {
                let mut counts: BTreeMap<Vec<Rank>, (f64, f64, f64)> = BTreeMap::new();
                for j in &self.journeys {
                    let path: Vec<Rank> = self.in_window(j, w).iter().map(|t| t.channel).collect();
                    if path.is_empty() {
                        continue;
                    }
                    let e = counts.entry(path).or_default();
                    if j.converted_at.is_some() {
                        e.0 += 1.0;
                        e.2 += j.revenue.to_f64().unwrap_or(0.0);
                    } else {
                        e.1 += 1.0;
                    }
                }
                let paths: Vec<(Vec<Rank>, f64, f64, f64)> = counts
                    .into_iter()
                    .map(|(p, (c, n, v))| (p, c, n, v))
                    .collect();
                let solved =
                    markov::solve_paths(&paths, |p| (p.0.as_slice(), p.1, p.2, p.3), max_entries);
                if let Some(e) = solved.unsolved {
                    return Err(e);
                }
                let mut removal = vec![0.0; self.names.len()];
                for (c, re) in solved
                    .channels
                    .iter()
                    .zip(solved.removal.unwrap_or_default())
                {
                    removal[**c as usize] = re;
                }
                Ok(CFitted::Markov(removal))
            }
            Model::Shapley => {
                let mut m: Coalitions<Rank> = Coalitions::default();
                for j in &self.journeys {
                    let mut set: Vec<Rank> =
                        self.in_window(j, w).iter().map(|t| t.channel).collect();
                    set.sort_unstable();
                    set.dedup();
                    m.add(set, j.converted_at.is_some());
                }
                Ok(CFitted::Shapley(m.values_by_set()))
            }
            _ => Ok(CFitted::Heuristic),
        }
    }

    /// Add a converted journey's shares (see [`super::order_shares`]) to `by` on its order's
    /// day; nothing for a journey without an order.
    fn credit(&self, j: &CJourney, model: Model, w: Window, fitted: &CFitted, by: &mut DayCredits) {
        let (Some(day), Some(end)) = (j.day, j.converted_at) else {
            return;
        };
        let touches = self.in_window(j, w);
        let mut shared = false;
        if !touches.is_empty() {
            let channels: Vec<Rank> = touches.iter().map(|t| t.channel).collect();
            let ts = |i: usize| touches[i].ts;
            let weights = match fitted {
                CFitted::Markov(removal) => {
                    weights_by_effect_of(&channels, ts, end, |c| removal[c as usize])
                }
                CFitted::Shapley(values) => {
                    let mut set = channels.clone();
                    set.sort_unstable();
                    set.dedup();
                    let v = values.get(&set);
                    weights_by_effect_of(&channels, ts, end, |c| {
                        v.and_then(|v| set.iter().position(|s| *s == c).map(|i| v[i]))
                            .unwrap_or(0.0)
                    })
                }
                CFitted::Heuristic => weights_at(model, touches.len(), ts, end),
            };
            let shares = split_revenue(j.revenue, &weights);
            for ((t, w), r) in touches.iter().zip(&weights).zip(shares) {
                if *w != 0.0 || !r.is_zero() {
                    shared = true;
                    let c = by.entry((day, t.channel)).or_default();
                    c.conversions += *w;
                    c.revenue += r;
                }
            }
        }
        if !shared {
            let c = by.entry((day, self.unattributed)).or_default();
            c.conversions += 1.0;
            c.revenue += j.revenue;
        }
    }
}

/// What one run computes, and how it hands its rows on.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a> {
    pub models: &'a [Model],
    pub windows: &'a [Window],
    pub tz: Tz,
    pub currency: &'a str,
    /// Cap on the Markov solver's memory (`[attribution] markov_max_entries`).
    pub markov_max_entries: usize,
    /// Rows per chunk handed to `emit`.
    pub chunk_rows: usize,
}

/// What `job::build_rows_with` produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Built {
    pub rows: usize,
    /// Windows whose Markov chain was past the cap: no `markov` row was written for them, and
    /// the rows earlier runs wrote there were left as they were.
    pub unsolved: Vec<(Window, super::chain::TooLarge)>,
}

/// The rows of one run (see `job::build_rows_with`), handed to `emit` one at a time.
pub(crate) fn build(
    core: &Core,
    spec: &RunSpec<'_>,
    mut emit: impl FnMut(AttributionRow),
) -> Built {
    let (tz, currency) = (spec.tz, spec.currency);
    let mut built = Built::default();
    let mut push = |row: AttributionRow, built: &mut Built| {
        built.rows += 1;
        emit(row);
    };
    let zero = |day: NaiveDate, model: &str, window: &str, channel: Rank| AttributionRow {
        ts: day_start(day, tz),
        day,
        model: model.to_string(),
        window: window.to_string(),
        channel: core.names[channel as usize].to_string(),
        conversions: 0.0,
        revenue: Decimal::ZERO,
        spend: Decimal::ZERO,
        roas: None,
        platform_conversions: None,
        currency: currency.to_string(),
    };
    let mut window_done = vec![false; core.prev_windows.len()];
    for &w in spec.windows {
        let label = w.label();
        let mut credit: Vec<(Model, DayCredits)> = Vec::new();
        let mut skipped: Option<&'static str> = None;
        for &m in spec.models {
            let fitted = match core.fit(m, w, spec.markov_max_entries) {
                Ok(f) => f,
                Err(e) => {
                    built.unsolved.push((w, e));
                    skipped = Some(m.label());
                    continue;
                }
            };
            let mut by = DayCredits::new();
            for j in &core.journeys {
                core.credit(j, m, w, &fitted, &mut by);
            }
            credit.push((m, by));
        }
        let mut keys: Vec<(NaiveDate, Rank)> = credit
            .iter()
            .flat_map(|(_, by)| by.keys().copied())
            .chain(core.paid.iter().map(|(k, _)| *k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for (m, by) in &credit {
            // `by`'s keys and the paid keys are subsets of `keys`, in the same order: walk all three
            let mut credited = by.iter().peekable();
            let mut paid = core.paid.iter().peekable();
            for key in &keys {
                let c = match credited.peek() {
                    Some((k, c)) if *k == key => {
                        let c = **c;
                        credited.next();
                        c
                    }
                    _ => DayCredit::default(),
                };
                let (spend, claimed) = match paid.peek() {
                    Some((k, (s, c))) if k == key => {
                        let v = (*s, Some(*c));
                        paid.next();
                        v
                    }
                    _ => (Decimal::ZERO, None),
                };
                push(
                    AttributionRow {
                        ts: day_start(key.0, tz),
                        day: key.0,
                        model: m.label().to_string(),
                        window: label.clone(),
                        channel: core.names[key.1 as usize].to_string(),
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
        if let Some(wid) = core.prev_windows.iter().position(|l| *l == label) {
            window_done[wid] = true;
            for k in core.prev.iter().filter(|k| usize::from(k.window) == wid) {
                let model = core.prev_models[usize::from(k.model)].as_str();
                let produced = credit.iter().any(|(m, _)| m.label() == model)
                    && keys.binary_search(&(k.day, k.channel)).is_ok();
                if !produced && skipped != Some(model) {
                    push(zero(k.day, model, &label, k.channel), &mut built);
                }
            }
        }
    }
    // windows taken out of the config, by label
    let mut rest: Vec<usize> = (0..core.prev_windows.len())
        .filter(|w| !window_done[*w])
        .collect();
    rest.sort_by(|a, b| core.prev_windows[*a].cmp(&core.prev_windows[*b]));
    for wid in rest {
        let window = core.prev_windows[wid].as_str();
        for k in core.prev.iter().filter(|k| usize::from(k.window) == wid) {
            let model = core.prev_models[usize::from(k.model)].as_str();
            push(zero(k.day, model, window, k.channel), &mut built);
        }
    }
    built
}
