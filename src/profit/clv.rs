//! Customer lifetime value from order history: the BG/NBD model of repeat purchasing (Fader,
//! Hardie and Lee 2005, "Counting Your Customers the Easy Way") and the Gamma-Gamma model of spend
//! per transaction (Fader and Hardie 2013, note 025), both fitted here by maximum likelihood; 6- and
//! 12-month CLV per customer (LTV:CAC per acquisition channel is `profit::value`'s).
//!
//! Time is measured in periods of `period_days` (weeks for CDNOW, as in the papers). Transactions
//! on the same day are one transaction, as in the papers' CDNOW preparation.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::optim::nelder_mead;

/// Errors of reading order history and fitting the models.
#[derive(Debug, thiserror::Error)]
pub enum ClvError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {what}")]
    Parse {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
    #[error("no customer with a first purchase before the end of calibration ({0})")]
    NoCustomers(NaiveDate),
    #[error("no customer with a repeat purchase of positive value: Gamma-Gamma cannot be fitted")]
    NoRepeatSpend,
    #[error("{model} fit did not converge in {evaluations} evaluations (log-likelihood {ll})")]
    NotConverged {
        model: &'static str,
        evaluations: usize,
        ll: f64,
    },
}

/// One purchase.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub customer: String,
    pub day: NaiveDate,
    pub amount: Decimal,
}

/// A customer's sufficient statistics: calibration frequency, recency and age, the mean value of
/// the repeat purchases, and what happened in the holdout.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSummary {
    pub customer: String,
    pub first_day: NaiveDate,
    /// Repeat purchases (purchase days after the first) in calibration.
    pub x: f64,
    /// Time of the last calibration purchase, from the first, in periods.
    pub t_x: f64,
    /// Time from the first purchase to the end of calibration, in periods.
    pub t_cal: f64,
    /// Mean value of the repeat purchases in calibration (`None` without repeats).
    pub m_x: Option<f64>,
    /// Purchase days in the holdout.
    pub holdout_x: f64,
    /// Value bought in the holdout.
    pub holdout_value: Decimal,
}

/// Parse CDNOW's whitespace-separated sample (customer, id in the full file, YYYYMMDD, CDs,
/// dollars).
pub fn read_cdnow(path: &Path) -> Result<Vec<Purchase>, ClvError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClvError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| ClvError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            what,
        };
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() != 5 {
            return Err(bad(format!("expected 5 columns, found {}", cols.len())));
        }
        let day = NaiveDate::parse_from_str(cols[2], "%Y%m%d")
            .map_err(|e| bad(format!("date {:?}: {e}", cols[2])))?;
        let amount: Decimal = cols[4]
            .parse()
            .map_err(|e| bad(format!("amount {:?}: {e}", cols[4])))?;
        out.push(Purchase {
            customer: cols[0].to_string(),
            day,
            amount,
        });
    }
    Ok(out)
}

/// Parse the UCI Online Retail invoice roll-up (`InvoiceNo,InvoiceDate,CustomerID,TotalPrice`).
/// Invoices without a customer cannot enter a per-customer model and are counted, not guessed.
pub fn read_online_retail(path: &Path) -> Result<(Vec<Purchase>, usize), ClvError> {
    let io = |source| ClvError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| io(std::io::Error::other(e)))?;
    let mut out = Vec::new();
    let mut anonymous = 0;
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let bad = |what: String| ClvError::Parse {
            path: path.to_path_buf(),
            line,
            what,
        };
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let (Some(date), Some(customer), Some(total)) = (rec.get(1), rec.get(2), rec.get(3)) else {
            return Err(bad("expected 4 columns".into()));
        };
        if customer.trim().is_empty() {
            anonymous += 1;
            continue;
        }
        let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|e| bad(format!("date {date:?}: {e}")))?;
        // Totals are float renderings (22.200000000000003): parse exactly, then keep the paisa.
        let amount = Decimal::from_str_exact(total)
            .or_else(|_| Decimal::from_scientific(total))
            .map_err(|e| bad(format!("total {total:?}: {e}")))?
            .round_dp(2);
        out.push(Purchase {
            customer: customer.trim().to_string(),
            day,
            amount,
        });
    }
    Ok((out, anonymous))
}

/// Summarise purchases into per-customer statistics: customers whose first purchase is on or
/// before `cal_end`; calibration is up to `cal_end` inclusive, the holdout up to `holdout_end`.
/// Same-day purchases are merged (summed).
pub fn summarize(
    purchases: &[Purchase],
    cal_end: NaiveDate,
    holdout_end: NaiveDate,
    period_days: f64,
) -> Vec<CustomerSummary> {
    let mut days: BTreeMap<&str, BTreeMap<NaiveDate, Decimal>> = BTreeMap::new();
    for p in purchases {
        *days
            .entry(p.customer.as_str())
            .or_default()
            .entry(p.day)
            .or_default() += p.amount;
    }
    let periods = |from: NaiveDate, to: NaiveDate| (to - from).num_days() as f64 / period_days;
    let mut out = Vec::new();
    for (customer, by_day) in days {
        let Some((&first, _)) = by_day.iter().next() else {
            continue;
        };
        if first > cal_end {
            continue;
        }
        let cal: Vec<(&NaiveDate, &Decimal)> = by_day.range(..=cal_end).collect();
        let repeats = &cal[1..];
        let last = cal.last().map(|(d, _)| **d).unwrap_or(first);
        let m_x = if repeats.is_empty() {
            None
        } else {
            let sum: Decimal = repeats.iter().map(|(_, v)| **v).sum();
            (sum / Decimal::from(repeats.len())).to_f64()
        };
        // no holdout (the live job values as of the end of the history): an empty range, not
        // a reversed one (which BTreeMap::range refuses)
        let holdout: Vec<&Decimal> = match cal_end.succ_opt().filter(|s| *s <= holdout_end) {
            Some(from) => by_day.range(from..=holdout_end).map(|(_, v)| v).collect(),
            None => Vec::new(),
        };
        out.push(CustomerSummary {
            customer: customer.to_string(),
            first_day: first,
            x: repeats.len() as f64,
            t_x: periods(first, last),
            t_cal: periods(first, cal_end),
            m_x,
            holdout_x: holdout.len() as f64,
            holdout_value: holdout.into_iter().sum(),
        });
    }
    out
}

fn lgamma(x: f64) -> f64 {
    libm::lgamma(x)
}

fn log_sum_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// Gauss hypergeometric 2F1(a, b; c; z) by its power series, for 0 <= z < 1 (where the BG/NBD
/// expectation evaluates it).
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 0..100_000 {
        let k = k as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term.abs() < 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

/// BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout probability ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// A fitted model with its maximised log-likelihood.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted<M> {
    pub params: M,
    pub log_likelihood: f64,
    /// The maximum lies on the edge of the search box (a parameter at `exp(±LOG_BOUND)`): the data
    /// push the model to a limiting case, e.g. BG/NBD with a vanishing dropout probability (a → 0,
    /// b → ∞), which is the NBD.
    pub at_bound: bool,
    pub customers: usize,
    pub evaluations: usize,
}

/// Parameters are searched as logs in [-LOG_BOUND, LOG_BOUND] (about 4.5e-5 to 22,026): when the
/// likelihood keeps rising towards a limiting case, the simplex settles on the edge instead of
/// wandering off to overflow, and the fit says so (`at_bound`).
pub const LOG_BOUND: f64 = 10.0;

fn bounded_exp(p: f64) -> f64 {
    p.clamp(-LOG_BOUND, LOG_BOUND).exp()
}

fn at_bound(x: &[f64]) -> bool {
    x.iter().any(|p| p.abs() >= LOG_BOUND)
}

/// Maximum likelihood over log parameters (every simplex point admissible), from all-zero logs:
/// `from` maps the logs to the model, `ll` is the data's log-likelihood under it.
fn fit_logs<M>(
    model: &'static str,
    dims: usize,
    customers: usize,
    from: impl Fn(&[f64]) -> M,
    ll: impl Fn(&M) -> f64,
) -> Result<Fitted<M>, ClvError> {
    let m = nelder_mead(|p| -ll(&from(p)), &vec![0.0; dims], 0.5, 1e-9, 20_000);
    if !m.converged {
        return Err(ClvError::NotConverged {
            model,
            evaluations: m.evaluations,
            ll: -m.value,
        });
    }
    Ok(Fitted {
        params: from(&m.x),
        log_likelihood: -m.value,
        at_bound: at_bound(&m.x),
        customers,
        evaluations: m.evaluations,
    })
}

/// The two fitted models a customer's value needs: BG/NBD (how many more purchases) and
/// Gamma-Gamma (what one is worth).
#[derive(Debug, Clone, PartialEq)]
pub struct ClvFit {
    pub bgnbd: Fitted<BgNbd>,
    pub gamma_gamma: Fitted<GammaGamma>,
}

impl ClvFit {
    /// A parameter of either model lies on the edge of the search box (a limiting case).
    pub fn at_bound(&self) -> bool {
        self.bgnbd.at_bound || self.gamma_gamma.at_bound
    }
}

impl BgNbd {
    /// One customer's log-likelihood (Fader, Hardie and Lee 2005, eq. 6), in the log-sum form of
    /// Hardie's note 027 that avoids the overflow of the naive product.
    pub fn customer_ll(&self, x: f64, t_x: f64, t_cal: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let a1 = lgamma(r + x) - lgamma(r) + r * alpha.ln();
        let a2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
        let a3 = -(r + x) * (alpha + t_cal).ln();
        let a4 = if x > 0.0 {
            a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln()
        } else {
            f64::NEG_INFINITY
        };
        a1 + a2 + log_sum_exp(a3, a4)
    }

    pub fn log_likelihood(&self, data: &[CustomerSummary]) -> f64 {
        data.iter()
            .map(|c| self.customer_ll(c.x, c.t_x, c.t_cal))
            .sum()
    }

    /// Maximum-likelihood fit (on log parameters, so every simplex point is admissible).
    pub fn fit(data: &[CustomerSummary]) -> Result<Fitted<BgNbd>, ClvError> {
        let from = |p: &[f64]| BgNbd {
            r: bounded_exp(p[0]),
            alpha: bounded_exp(p[1]),
            a: bounded_exp(p[2]),
            b: bounded_exp(p[3]),
        };
        fit_logs("BG/NBD", 4, data.len(), from, |m| m.log_likelihood(data))
    }

    /// P(alive) at the end of calibration (FHL 2005, eq. 11).
    pub fn p_alive(&self, x: f64, t_x: f64, t_cal: f64) -> f64 {
        if x == 0.0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        1.0 / (1.0 + a / (b + x - 1.0) * ((alpha + t_cal) / (alpha + t_x)).powf(r + x))
    }

    /// Expected purchases in the next `t` periods given the customer's history (FHL 2005, eq. 10).
    pub fn expected_purchases(&self, x: f64, t_x: f64, t_cal: f64, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let z = t / (alpha + t_cal + t);
        let head = (a + b + x - 1.0) / (a - 1.0);
        let body = 1.0
            - ((alpha + t_cal) / (alpha + t_cal + t)).powf(r + x)
                * hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let den = if x > 0.0 {
            1.0 + a / (b + x - 1.0) * ((alpha + t_cal) / (alpha + t_x)).powf(r + x)
        } else {
            1.0
        };
        head * body / den
    }
}

/// Gamma-Gamma spend parameters: a customer's spend per transaction ~ Gamma(p, nu), nu ~
/// Gamma(q, gamma).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl GammaGamma {
    /// Log-density of a mean spend `m_x` over `x` transactions (Fader and Hardie 2013, eq. 4).
    pub fn customer_ll(&self, x: f64, m_x: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        lgamma(p * x + q) - lgamma(p * x) - lgamma(q)
            + q * gamma.ln()
            + (p * x - 1.0) * m_x.ln()
            + p * x * x.ln()
            - (p * x + q) * (gamma + m_x * x).ln()
    }

    /// Customers the model can use: at least one repeat purchase, of positive mean value.
    fn usable(data: &[CustomerSummary]) -> impl Iterator<Item = (f64, f64)> + '_ {
        data.iter().filter_map(|c| match c.m_x {
            Some(m) if c.x > 0.0 && m > 0.0 => Some((c.x, m)),
            _ => None,
        })
    }

    pub fn log_likelihood(&self, data: &[CustomerSummary]) -> f64 {
        Self::usable(data)
            .map(|(x, m)| self.customer_ll(x, m))
            .sum()
    }

    pub fn fit(data: &[CustomerSummary]) -> Result<Fitted<GammaGamma>, ClvError> {
        let n = Self::usable(data).count();
        if n == 0 {
            return Err(ClvError::NoRepeatSpend);
        }
        let from = |p: &[f64]| GammaGamma {
            p: bounded_exp(p[0]),
            q: bounded_exp(p[1]),
            gamma: bounded_exp(p[2]),
        };
        fit_logs("Gamma-Gamma", 3, n, from, |m| m.log_likelihood(data))
    }

    /// Expected spend per future transaction (Fader and Hardie 2013, eq. 5): a weighted average of
    /// the population mean and the customer's own mean.
    pub fn expected_spend(&self, x: f64, m_x: Option<f64>) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        let population = p * gamma / (q - 1.0);
        match m_x {
            Some(m) if x > 0.0 && m > 0.0 => {
                let w = (q - 1.0) / (p * x + q - 1.0);
                w * population + (1.0 - w) * m
            }
            _ => population,
        }
    }
}

/// CLV over `months`: expected purchases in each month × expected spend × margin, discounted
/// monthly at `monthly_discount` (0 for none).
pub fn clv(
    bg: &BgNbd,
    gg: &GammaGamma,
    c: &CustomerSummary,
    months: u32,
    periods_per_month: f64,
    margin: f64,
    monthly_discount: f64,
) -> f64 {
    let spend = gg.expected_spend(c.x, c.m_x);
    let mut total = 0.0;
    let mut before = 0.0;
    for m in 1..=months {
        let upto = bg.expected_purchases(c.x, c.t_x, c.t_cal, m as f64 * periods_per_month);
        total += (upto - before) * spend * margin / (1.0 + monthly_discount).powi(m as i32);
        before = upto;
    }
    total
}

/// Holdout accuracy of the repeat-purchase forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutAccuracy {
    pub customers: usize,
    pub actual_total: f64,
    pub predicted_total: f64,
    /// Mean absolute error per customer.
    pub mae: f64,
}

pub fn holdout_accuracy(bg: &BgNbd, data: &[CustomerSummary], t: f64) -> HoldoutAccuracy {
    let mut actual = 0.0;
    let mut predicted = 0.0;
    let mut abs = 0.0;
    for c in data {
        let p = bg.expected_purchases(c.x, c.t_x, c.t_cal, t);
        actual += c.holdout_x;
        predicted += p;
        abs += (p - c.holdout_x).abs();
    }
    HoldoutAccuracy {
        customers: data.len(),
        actual_total: actual,
        predicted_total: predicted,
        mae: abs / data.len().max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn summary_merges_same_day_and_splits_calibration_from_holdout() {
        let p = |c: &str, day: NaiveDate, v: i64| Purchase {
            customer: c.into(),
            day,
            amount: Decimal::from(v),
        };
        let purchases = vec![
            p("a", d(2020, 1, 1), 10),
            p("a", d(2020, 1, 1), 5), // same day: one purchase of 15
            p("a", d(2020, 1, 8), 20),
            p("a", d(2020, 1, 22), 40),
            p("a", d(2020, 2, 5), 7), // holdout
            p("b", d(2020, 1, 29), 9),
            p("c", d(2020, 2, 3), 9), // first purchase after calibration: not in the cohort
        ];
        let s = summarize(&purchases, d(2020, 1, 29), d(2020, 3, 1), 7.0);
        assert_eq!(s.len(), 2);
        let a = &s[0];
        assert_eq!((a.x, a.t_x, a.t_cal), (2.0, 3.0, 4.0));
        assert_eq!(a.m_x, Some(30.0));
        assert_eq!(a.holdout_x, 1.0);
        assert_eq!(a.holdout_value, Decimal::from(7));
        let b = &s[1];
        assert_eq!((b.x, b.t_x, b.t_cal, b.m_x), (0.0, 0.0, 0.0, None));
    }

    #[test]
    fn bgnbd_likelihood_matches_the_closed_form_for_a_one_time_buyer() {
        // x = 0: L = (alpha/(alpha+T))^r, the NBD "no purchase" probability, by hand.
        let m = BgNbd {
            r: 0.5,
            alpha: 6.0,
            a: 1.2,
            b: 3.3,
        };
        let expect = 0.5 * (6.0f64 / 12.0).ln();
        assert!((m.customer_ll(0.0, 0.0, 6.0) - expect).abs() < 1e-12);
    }

    #[test]
    fn expected_purchases_of_a_new_customer_match_the_unconditional_mean() {
        // A customer with x=0 observed for T=0 has no information: the conditional expectation is
        // the unconditional E[X(t)] (FHL 2005 eq. 7), computed here with its own 2F1.
        let m = BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        };
        let t: f64 = 39.0;
        let unconditional = (m.a + m.b - 1.0) / (m.a - 1.0)
            * (1.0
                - (m.alpha / (m.alpha + t)).powf(m.r)
                    * hyp2f1(m.r, m.b, m.a + m.b - 1.0, t / (m.alpha + t)));
        let cond = m.expected_purchases(0.0, 0.0, 0.0, t);
        assert!(
            (cond - unconditional).abs() < 1e-12,
            "{cond} {unconditional}"
        );
        assert!(cond > 0.0 && cond < t);
    }

    #[test]
    fn hypergeometric_series_matches_elementary_closed_forms() {
        // 2F1(1,1;2;z) = -ln(1-z)/z
        let z: f64 = 0.6;
        assert!((hyp2f1(1.0, 1.0, 2.0, z) - (-(1.0 - z).ln() / z)).abs() < 1e-12);
        // 2F1(a,b;b;z) = (1-z)^-a
        assert!((hyp2f1(2.5, 3.0, 3.0, 0.3) - 0.7f64.powf(-2.5)).abs() < 1e-12);
    }

    #[test]
    fn gamma_gamma_expected_spend_shrinks_to_the_population_mean() {
        let gg = GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let pop = 6.25 * 15.44 / 2.74;
        assert!((gg.expected_spend(0.0, None) - pop).abs() < 1e-9);
        // with many transactions, the customer's own mean dominates
        let e = gg.expected_spend(1000.0, Some(100.0));
        assert!((e - 100.0).abs() < 0.1, "{e}");
        let e1 = gg.expected_spend(1.0, Some(100.0));
        assert!(e1 > pop && e1 < 100.0);
    }
}
