//! Multi-touch attribution: which campaigns get the credit for an order. Owns the models (first
//! click, last click, linear, time decay, position-based 40/20/40, and the data-driven Markov
//! removal effect in `markov` and Shapley value in `shapley`), the lookback windows (1, 7, 14, 28
//! days and lifetime), and the split of each order's revenue over its touchpoints; the periodic
//! job (`job`) rolls the shares up per day and campaign, against spend and the platforms' own
//! conversion counts, into the `attribution` table.
//!
//! Money: an order's revenue is split into `Decimal` shares to the paisa and the last touch takes
//! the remainder, so the attributed revenue of every order adds up to the order exactly.

pub mod chain;
mod compact;
pub mod config;
pub mod job;
pub mod markov;
pub mod shapley;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::collections::BTreeMap;

/// One marketing touch of a journey: a campaign (`platform:campaign_id`) or an unpaid channel
/// (`organic:google`, `direct`).
#[derive(Debug, Clone, PartialEq)]
pub struct Touch {
    pub ts: DateTime<Utc>,
    pub channel: String,
}

/// A customer journey: its touches in time order and, if it ended in an order, when and for how
/// much.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub id: String,
    pub touches: Vec<Touch>,
    pub converted_at: Option<DateTime<Utc>>,
    pub revenue: Decimal,
}

/// The channel of a touch, as the `touchpoints` table and the models name it: a paid touch
/// (`utm_medium` cpc, ppc, paid, paid_social, display, ...) is `meta:<utm_campaign>` or
/// `google_ads:<utm_campaign>` (the campaign id, as adpulse's tracking templates set it), or
/// `<utm_source>:<utm_campaign>` for another network; an unpaid one is `organic:<utm_source>` or
/// `organic:<referrer host>`; no source at all is `direct`.
pub fn channel_of(
    utm_source: Option<&str>,
    utm_medium: Option<&str>,
    utm_campaign: Option<&str>,
    referrer: Option<&str>,
) -> String {
    fn clean(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    let source = clean(utm_source).map(str::to_ascii_lowercase);
    let medium = clean(utm_medium).map(str::to_ascii_lowercase);
    let paid = medium.as_deref().is_some_and(|m| {
        matches!(
            m,
            "cpc"
                | "ppc"
                | "paid"
                | "paid_social"
                | "paidsocial"
                | "paid_search"
                | "display"
                | "cpm"
                | "cpv"
        )
    });
    if let Some(src) = &source {
        if paid {
            let platform = match src.as_str() {
                "facebook" | "fb" | "instagram" | "ig" | "meta" => "meta",
                "google" | "youtube" | "adwords" => "google_ads",
                other => other,
            };
            return match clean(utm_campaign) {
                Some(c) => format!("{platform}:{c}"),
                None => platform.to_string(),
            };
        }
        return format!("organic:{src}");
    }
    let host = clean(referrer)
        .and_then(|r| reqwest::Url::parse(r).ok())
        .and_then(|u| {
            u.host_str()
                .map(|h| h.trim_start_matches("www.").to_string())
        });
    match host {
        Some(h) => format!("organic:{h}"),
        None => "direct".into(),
    }
}

/// Lookback window before the conversion; in config as `"7d"` or `"lifetime"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Window {
    Days(u32),
    Lifetime,
}

/// A window label that is neither `<days>d` nor `lifetime`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window {0:?}: expected `<days>d` with 1 to 3660 days (`7d`) or `lifetime`")]
pub struct BadWindow(String);

impl TryFrom<String> for Window {
    type Error = BadWindow;
    fn try_from(s: String) -> Result<Self, BadWindow> {
        if s == "lifetime" {
            return Ok(Window::Lifetime);
        }
        s.strip_suffix('d')
            .and_then(|d| d.parse::<u32>().ok())
            .filter(|d| (1..=3660).contains(d))
            .map(Window::Days)
            .ok_or(BadWindow(s))
    }
}

impl Window {
    /// The windows adpulse reports.
    pub const ALL: [Window; 5] = [
        Window::Days(1),
        Window::Days(7),
        Window::Days(14),
        Window::Days(28),
        Window::Lifetime,
    ];

    /// Label used in the `attribution` table and `/metrics` (`1d`, `7d`, ..., `lifetime`).
    pub fn label(self) -> String {
        match self {
            Window::Days(d) => format!("{d}d"),
            Window::Lifetime => "lifetime".into(),
        }
    }

    fn admits(self, touch: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        touch <= end
            && match self {
                Window::Days(d) => end - touch <= Duration::days(i64::from(d)),
                Window::Lifetime => true,
            }
    }
}

/// Attribution model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    FirstClick,
    LastClick,
    Linear,
    /// Credit halves every `half_life_hours` before the conversion.
    TimeDecay {
        half_life_hours: f64,
    },
    /// 40% first, 40% last, 20% shared by the touches between.
    PositionBased,
    /// Removal effect of a first-order Markov chain fitted on all journeys in the window.
    Markov,
    /// Shapley value of the path's channels, coalitions worth their conversion rate over all
    /// journeys in the window.
    Shapley,
}

impl Model {
    /// Label used in the `attribution` table and `/metrics`.
    pub fn label(&self) -> &'static str {
        match self {
            Model::FirstClick => "first_click",
            Model::LastClick => "last_click",
            Model::Linear => "linear",
            Model::TimeDecay { .. } => "time_decay",
            Model::PositionBased => "position_based",
            Model::Markov => "markov",
            Model::Shapley => "shapley",
        }
    }

    /// Every model, with the time-decay half-life given (7 days is the common default).
    pub fn all(half_life_hours: f64) -> [Model; 7] {
        [
            Model::FirstClick,
            Model::LastClick,
            Model::Linear,
            Model::TimeDecay { half_life_hours },
            Model::PositionBased,
            Model::Markov,
            Model::Shapley,
        ]
    }
}

/// Touches of a journey inside the window (all of them for a journey without a conversion, whose
/// window ends at its last touch).
pub fn touches_in_window(j: &Journey, w: Window) -> Vec<&Touch> {
    let end = match (j.converted_at, j.touches.last()) {
        (Some(c), _) => c,
        (None, Some(t)) => t.ts,
        (None, None) => return Vec::new(),
    };
    j.touches.iter().filter(|t| w.admits(t.ts, end)).collect()
}

/// Heuristic credit weights (summing to 1) for touches in time order.
pub fn heuristic_weights(model: Model, touches: &[&Touch], end: DateTime<Utc>) -> Vec<f64> {
    weights_at(model, touches.len(), |i| touches[i].ts, end)
}

/// [`heuristic_weights`] of `n` touches, the i-th at `ts(i)`.
pub(crate) fn weights_at(
    model: Model,
    n: usize,
    ts: impl Fn(usize) -> DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let mut w = vec![0.0; n];
    match model {
        Model::FirstClick => w[0] = 1.0,
        Model::LastClick | Model::Markov | Model::Shapley => w[n - 1] = 1.0,
        Model::Linear => w.iter_mut().for_each(|x| *x = 1.0 / n as f64),
        Model::TimeDecay { half_life_hours } => {
            for (i, x) in w.iter_mut().enumerate() {
                let hours = (end - ts(i)).num_seconds() as f64 / 3600.0;
                *x = 0.5f64.powf(hours / half_life_hours.max(f64::MIN_POSITIVE));
            }
            let s: f64 = w.iter().sum();
            w.iter_mut().for_each(|x| *x /= s);
        }
        Model::PositionBased => match n {
            1 => w[0] = 1.0,
            2 => {
                w[0] = 0.5;
                w[1] = 0.5;
            }
            _ => {
                w[0] = 0.4;
                w[n - 1] = 0.4;
                for x in &mut w[1..n - 1] {
                    *x = 0.2 / (n - 2) as f64;
                }
            }
        },
    }
    w
}

/// Credit of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Credit {
    pub conversions: f64,
    pub revenue: Decimal,
}

/// A model's attribution over a set of journeys in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attribution {
    pub by_channel: BTreeMap<String, Credit>,
    /// Orders with no touch in the window (direct or untracked): reported, never spread.
    pub unattributed: Credit,
}

/// Split `revenue` by `weights` (summing to 1) into money: every share but the last is
/// `revenue × weight` to the paisa (banker's rounding); the last is what remains, so the shares
/// add up to `revenue` exactly and no order gains or loses a paisa.
pub fn split_revenue(revenue: Decimal, weights: &[f64]) -> Vec<Decimal> {
    let mut out = Vec::with_capacity(weights.len());
    let mut given = Decimal::ZERO;
    for (i, w) in weights.iter().enumerate() {
        if i + 1 == weights.len() {
            out.push(revenue - given);
        } else {
            let share = (revenue * Decimal::from_f64_retain(*w).unwrap_or_default()).round_dp(2);
            given += share;
            out.push(share);
        }
    }
    out
}

/// A data-driven model fitted on the journeys of one window (none for the heuristics).
pub enum Fitted {
    Heuristic,
    Markov(markov::MarkovModel),
    Shapley(BTreeMap<Vec<String>, Vec<f64>>),
}

impl Fitted {
    /// Fit `model` on every journey's in-window path, converting or not.
    pub fn fit(journeys: &[Journey], model: Model, window: Window) -> Fitted {
        Fitted::fit_with(journeys, model, window, markov::DEFAULT_MAX_ENTRIES)
    }

    /// [`Fitted::fit`] with the Markov solver's memory capped at `markov_max_entries`.
    pub fn fit_with(
        journeys: &[Journey],
        model: Model,
        window: Window,
        markov_max_entries: usize,
    ) -> Fitted {
        match model {
            Model::Markov => Fitted::Markov(fit_markov_with(journeys, window, markov_max_entries)),
            Model::Shapley => Fitted::Shapley(fit_shapley(journeys, window).values_by_set()),
            _ => Fitted::Heuristic,
        }
    }

    /// Why this model could not be fitted (a Markov chain past its memory cap).
    pub fn unsolved(&self) -> Option<&chain::TooLarge> {
        match self {
            Fitted::Markov(m) => m.unsolved.as_ref(),
            _ => None,
        }
    }
}

/// Weights (summing to 1) that share each channel's data-driven `effect` among its touches and
/// normalise; a path on which no channel has an effect is split linearly.
fn weights_by_effect(
    touches: &[&Touch],
    end: DateTime<Utc>,
    effect: impl Fn(&str) -> f64,
) -> Vec<f64> {
    let channels: Vec<&str> = touches.iter().map(|t| t.channel.as_str()).collect();
    weights_by_effect_of(&channels, |i| touches[i].ts, end, effect)
}

/// [`weights_by_effect`] of touches by channel key (`channels[i]`, at `ts(i)`): any key type
/// that names a channel, names or interned ranks, gives the same weights.
pub(crate) fn weights_by_effect_of<K: Ord + Copy>(
    channels: &[K],
    ts: impl Fn(usize) -> DateTime<Utc>,
    end: DateTime<Utc>,
    effect: impl Fn(K) -> f64,
) -> Vec<f64> {
    // a channel seen several times shares its effect among its touches
    let mut counts: BTreeMap<K, f64> = BTreeMap::new();
    for c in channels {
        *counts.entry(*c).or_default() += 1.0;
    }
    // a negative Shapley value (a channel that lowers the rate) earns no credit
    let per: Vec<f64> = channels
        .iter()
        .map(|c| effect(*c).max(0.0) / counts[c])
        .collect();
    let s: f64 = per.iter().sum();
    if s > 0.0 {
        per.iter().map(|x| x / s).collect()
    } else {
        weights_at(Model::Linear, channels.len(), ts, end)
    }
}

/// One touch's share of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub channel: String,
    /// Share of the conversion (the shares of an order add up to 1).
    pub conversions: f64,
    /// Share of the revenue (the shares of an order add up to its revenue exactly).
    pub revenue: Decimal,
}

/// The shares of a converted journey's revenue under `model` in `window` (`fitted` from
/// [`Fitted::fit`] on the same model and window). `None` for a journey without a conversion; an
/// empty list for an order with no touch in the window (unattributed).
pub fn order_shares(
    j: &Journey,
    model: Model,
    window: Window,
    fitted: &Fitted,
) -> Option<Vec<Share>> {
    let end = j.converted_at?;
    let touches = touches_in_window(j, window);
    if touches.is_empty() {
        return Some(Vec::new());
    }
    let weights = match fitted {
        // Per order, the removal effects of the channels on its path, normalised: the order's
        // credit goes where the chain says conversions depend.
        Fitted::Markov(m) => weights_by_effect(&touches, end, |c| {
            m.removal_effects.get(c).copied().unwrap_or(0.0)
        }),
        Fitted::Shapley(values) => {
            let set = shapley::channel_set(touches.iter().map(|t| t.channel.as_str()));
            let v = values.get(&set);
            weights_by_effect(&touches, end, |c| {
                v.and_then(|v| set.iter().position(|s| s == c).map(|i| v[i]))
                    .unwrap_or(0.0)
            })
        }
        Fitted::Heuristic => heuristic_weights(model, &touches, end),
    };
    let shares = split_revenue(j.revenue, &weights);
    Some(
        touches
            .iter()
            .zip(&weights)
            .zip(shares)
            .filter(|((_, w), r)| **w != 0.0 || !r.is_zero())
            .map(|((t, w), r)| Share {
                channel: t.channel.clone(),
                conversions: *w,
                revenue: r,
            })
            .collect(),
    )
}

/// Attribute every converted journey under `model` in `window`.
pub fn attribute(journeys: &[Journey], model: Model, window: Window) -> Attribution {
    let fitted = Fitted::fit(journeys, model, window);
    let mut out = Attribution::default();
    for j in journeys {
        let Some(shares) = order_shares(j, model, window, &fitted) else {
            continue;
        };
        if shares.is_empty() {
            out.unattributed.conversions += 1.0;
            out.unattributed.revenue += j.revenue;
        }
        for s in shares {
            let c = out.by_channel.entry(s.channel).or_default();
            c.conversions += s.conversions;
            c.revenue += s.revenue;
        }
    }
    out
}

/// Coalition table of the journeys' in-window channel sets, converting and not.
pub fn fit_shapley(journeys: &[Journey], window: Window) -> shapley::ShapleyModel {
    let mut m = shapley::ShapleyModel::default();
    for j in journeys {
        let touches = touches_in_window(j, window);
        m.add(
            touches.iter().map(|t| t.channel.as_str()),
            j.converted_at.is_some(),
        );
    }
    m
}

/// Markov chain over the journeys' in-window paths, converting or not.
pub fn fit_markov(journeys: &[Journey], window: Window) -> markov::MarkovModel {
    fit_markov_with(journeys, window, markov::DEFAULT_MAX_ENTRIES)
}

/// [`fit_markov`] with the solver's memory capped at `max_entries` (see [`markov::fit_with`]).
pub fn fit_markov_with(
    journeys: &[Journey],
    window: Window,
    max_entries: usize,
) -> markov::MarkovModel {
    // distinct paths, borrowing the journeys' channel names until the counts are in
    let mut counts: BTreeMap<Vec<&str>, (f64, f64, f64)> = BTreeMap::new();
    for j in journeys {
        let path: Vec<&str> = touches_in_window(j, window)
            .into_iter()
            .map(|t| t.channel.as_str())
            .collect();
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
    let paths: Vec<markov::PathCount> = counts
        .into_iter()
        .map(|(path, (conversions, nulls, value))| markov::PathCount {
            path: path.into_iter().map(str::to_string).collect(),
            conversions,
            nulls,
            value,
        })
        .collect();
    markov::fit_with(&paths, max_entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn journey(id: &str, touches: &[(&str, u32)], conv_day: Option<u32>, rev: Decimal) -> Journey {
        Journey {
            id: id.into(),
            touches: touches
                .iter()
                .map(|(c, d)| Touch {
                    ts: at(*d, 10),
                    channel: c.to_string(),
                })
                .collect(),
            converted_at: conv_day.map(|d| at(d, 12)),
            revenue: rev,
        }
    }

    fn sample() -> Vec<Journey> {
        vec![
            // meta on day 1, google on day 10, organic on day 20, order on day 20: 30,000.00
            journey(
                "o1",
                &[("meta:p", 1), ("google:s", 10), ("organic", 20)],
                Some(20),
                dec!(30000.00),
            ),
            journey("o2", &[("google:s", 19)], Some(20), dec!(9999.99)),
            journey("n1", &[("meta:p", 3)], None, dec!(0)),
        ]
    }

    #[test]
    fn heuristics_by_hand() {
        let j = sample();
        let c = |m, w| attribute(&j, m, w).by_channel;
        let first = c(Model::FirstClick, Window::Lifetime);
        assert_eq!(first["meta:p"].revenue, dec!(30000.00));
        assert_eq!(first["google:s"].revenue, dec!(9999.99));
        let last = c(Model::LastClick, Window::Lifetime);
        assert_eq!(last["organic"].revenue, dec!(30000.00));
        assert!(!last.contains_key("meta:p"));
        let lin = c(Model::Linear, Window::Lifetime);
        assert_eq!(lin["meta:p"].revenue, dec!(10000.00));
        assert!((lin["google:s"].conversions - (1.0 + 1.0 / 3.0)).abs() < 1e-12);
        let pos = c(Model::PositionBased, Window::Lifetime);
        assert_eq!(pos["meta:p"].revenue, dec!(12000.00));
        assert_eq!(pos["google:s"].revenue, dec!(6000.00) + dec!(9999.99));
        assert_eq!(pos["organic"].revenue, dec!(12000.00));
    }

    #[test]
    fn time_decay_halves_per_half_life() {
        let j = journey("o", &[("a", 19), ("b", 20)], Some(20), dec!(300));
        // touches 26h and 2h before the order, half-life 24h: weights ∝ 2^(-26/24), 2^(-2/24),
        // i.e. a gets 1/(1+2) of the credit.
        let a = attribute(
            &[j],
            Model::TimeDecay {
                half_life_hours: 24.0,
            },
            Window::Lifetime,
        );
        assert!((a.by_channel["a"].conversions - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            a.by_channel["a"].revenue + a.by_channel["b"].revenue,
            dec!(300)
        );
    }

    #[test]
    fn windows_drop_old_touches_and_report_unattributed() {
        let j = sample();
        // 7 days: o1 keeps only organic (day 20); the day-1 and day-10 touches are out.
        let a = attribute(&j, Model::FirstClick, Window::Days(7));
        assert_eq!(a.by_channel["organic"].revenue, dec!(30000.00));
        assert!(!a.by_channel.contains_key("meta:p"));
        // 14 days: google (day 10, 10 days before) is in, meta (19 days) is out
        let a = attribute(&j, Model::FirstClick, Window::Days(14));
        assert_eq!(
            a.by_channel["google:s"].revenue,
            dec!(30000.00) + dec!(9999.99)
        );
        // an order whose only touch is 2 days old has nothing in a 1-day window
        let old = journey("o3", &[("meta:p", 18)], Some(20), dec!(500));
        let a = attribute(&[old], Model::Linear, Window::Days(1));
        assert_eq!(a.unattributed.revenue, dec!(500));
        assert!(a.by_channel.is_empty());
    }

    #[test]
    fn every_model_conserves_revenue_and_conversions_exactly() {
        let j = sample();
        for m in Model::all(168.0) {
            for w in Window::ALL {
                let a = attribute(&j, m, w);
                let rev: Decimal = a.by_channel.values().map(|c| c.revenue).sum::<Decimal>()
                    + a.unattributed.revenue;
                assert_eq!(rev, dec!(39999.99), "{} {}", m.label(), w.label());
                let conv: f64 = a.by_channel.values().map(|c| c.conversions).sum::<f64>()
                    + a.unattributed.conversions;
                assert!((conv - 2.0).abs() < 1e-9, "{} {}", m.label(), w.label());
            }
        }
    }

    #[test]
    fn channels_from_utm_and_referrer() {
        assert_eq!(
            channel_of(Some("facebook"), Some("paid_social"), Some("120"), None),
            "meta:120"
        );
        assert_eq!(
            channel_of(Some("google"), Some("cpc"), Some("21"), None),
            "google_ads:21"
        );
        assert_eq!(
            channel_of(Some("google"), Some("organic"), None, None),
            "organic:google"
        );
        assert_eq!(
            channel_of(None, None, None, Some("https://www.instagram.com/moi")),
            "organic:instagram.com"
        );
        assert_eq!(channel_of(None, None, None, None), "direct");
    }

    #[test]
    fn thirds_of_a_paisa_still_add_up() {
        let s = split_revenue(dec!(100.00), &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(s.iter().copied().sum::<Decimal>(), dec!(100.00));
    }

    #[test]
    fn markov_credits_the_channel_conversions_depend_on() {
        // google:s is on every converting path; meta:p also appears on a non-converting one.
        let j = sample();
        let a = attribute(&j, Model::Markov, Window::Lifetime);
        assert!(a.by_channel["google:s"].conversions > a.by_channel["meta:p"].conversions);
    }

    #[test]
    fn shapley_splits_an_order_by_hand() {
        // A alone: 10 journeys, 2 orders (v = 0.2); B alone: 10, 1 (0.1); A then B: 10, 5 (0.5).
        // φ_A = ½·0.2 + ½·(0.5 − 0.1) = 0.3, φ_B = ½·0.1 + ½·(0.5 − 0.2) = 0.2: an A>B order
        // of 1,000.00 gives A 600.00 and B 400.00.
        let mut j = Vec::new();
        for (path, n, conv) in [("A", 10, 2), ("B", 10, 1), ("A>B", 10, 5)] {
            for k in 0..n {
                let touches: Vec<(&str, u32)> = path
                    .split('>')
                    .enumerate()
                    .map(|(i, c)| (c, 1 + i as u32))
                    .collect();
                let converted = k < conv;
                j.push(journey(
                    &format!("{path}{k}"),
                    &touches,
                    converted.then_some(5),
                    if converted { dec!(1000.00) } else { dec!(0) },
                ));
            }
        }
        let fitted = Fitted::fit(&j, Model::Shapley, Window::Lifetime);
        let ab = j.iter().find(|j| j.id == "A>B0").unwrap();
        let s = order_shares(ab, Model::Shapley, Window::Lifetime, &fitted).unwrap();
        assert_eq!((s[0].channel.as_str(), s[0].revenue), ("A", dec!(600.00)));
        assert_eq!((s[1].channel.as_str(), s[1].revenue), ("B", dec!(400.00)));
        assert!((s[0].conversions - 0.6).abs() < 1e-12);
        let a = attribute(&j, Model::Shapley, Window::Lifetime).by_channel;
        // A: 2 solo orders + 5 × 0.6; B: 1 + 5 × 0.4
        assert!((a["A"].conversions - 5.0).abs() < 1e-9);
        assert_eq!(a["B"].revenue, dec!(3000.00));
    }
}
