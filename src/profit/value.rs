//! The live CLV job (issue 16, item 5): every `[clv] interval_secs` it reads the order history
//! back from QuestDB (as the attribution job does), fits BG/NBD and Gamma-Gamma on it by maximum
//! likelihood (`profit::clv`), and writes each customer's 6- and 12-month CLV (`customer_value`)
//! and, per acquisition channel (the first touch of the customer's first order), the sum and mean
//! of its customers' CLV against the campaign's new-customer CAC (`campaign_value`, LTV:CAC).
//!
//! The calibration ends on the reporting day of the newest order (the as-of day): the history
//! says nothing later, and a demo or a backfill at a fixed date is valued as of its own end. Rows
//! carry that day as `ts`, so a re-run on the same day overwrites them (DEDUP) and each day keeps
//! its own estimates. A run that could not read every row, could not fit a model or had rows
//! refused is a failed run (`adpulse_clv_success` 0, logged); the next run redoes it.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use prometheus::{GaugeVec, IntGauge, Opts, Registry};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::clv::{self, BgNbd, ClvError, ClvFit, Fitted, GammaGamma, Purchase};
use super::kpi::ProfitTotals;
use super::value_config::ClvConfig;
use crate::attribution::job::{
    JobError, UNATTRIBUTED, date, money, read_pages, text, timestamp, write_durable,
};
use crate::jobs::{JobContext, RunMetrics, registered, run_periodically};
use crate::normalize::day_start;
use crate::records::{CampaignValueRow, CustomerValueRow, Record};

/// Months in a year over 12: the length of one month in days.
const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error(transparent)]
    Store(#[from] JobError),
    #[error("no order with a customer id in QuestDB: nothing to fit")]
    NoOrders,
    #[error("fitting the CLV models: {0}")]
    Fit(#[from] ClvError),
    #[error(
        "the Gamma-Gamma fit gave q = {q} (at most 1): the mean spend per order is undefined, so \
         no CLV is written"
    )]
    SpendUndefined { q: f64 },
    #[error("customer {customer}: the model gave a CLV of {value}, not a number")]
    NotFinite { customer: String, value: f64 },
    #[error("the CLV computation failed: {0}")]
    Compute(String),
}

/// One order as the job reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: String,
    pub customer_id: Option<String>,
    pub ts: DateTime<Utc>,
    pub day: NaiveDate,
    pub amount: Decimal,
}

/// A touch of a converting journey: (order, time, position, channel).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderTouch {
    pub order_id: String,
    pub ts: DateTime<Utc>,
    pub position: i64,
    pub channel: String,
}

/// What one run reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    pub orders: Vec<OrderRow>,
    pub touches: Vec<OrderTouch>,
    /// Spend over the history per channel (`platform:campaign_id`).
    pub spend: BTreeMap<String, Decimal>,
    /// New customers per `utm_campaign` (first orders, last click), as the profit KPIs count them.
    pub new_customers: BTreeMap<String, u64>,
}

/// The fitted models and the rows of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub as_of: NaiveDate,
    pub fit: ClvFit,
    pub customers: Vec<CustomerValueRow>,
    pub campaigns: Vec<CampaignValueRow>,
    /// Orders without a customer id: they cannot enter a per-customer model (counted, not
    /// guessed).
    pub anonymous_orders: usize,
}

/// A model estimate as money: to the paisa (it is a prediction, not an amount anyone paid).
fn paisa(customer: &str, v: f64) -> Result<Decimal, ValueError> {
    Decimal::from_f64(v)
        .filter(|_| v.is_finite())
        .map(|d| d.round_dp(2))
        .ok_or_else(|| ValueError::NotFinite {
            customer: customer.to_string(),
            value: v,
        })
}

/// Gamma-Gamma fitted on order values in units of their mean, then scaled back: `p` and `q` do
/// not depend on the unit and `gamma` scales with it, but orders of tens of thousands of rupees
/// would put `gamma` beyond the optimiser's box (`clv::LOG_BOUND`, about 22,026). The
/// log-likelihood reported is that of the original values.
fn fit_gamma_gamma(data: &[clv::CustomerSummary]) -> Result<Fitted<GammaGamma>, ClvError> {
    let values: Vec<f64> = data
        .iter()
        .filter(|c| c.x > 0.0)
        .filter_map(|c| c.m_x.filter(|m| *m > 0.0))
        .collect();
    if values.is_empty() {
        return Err(ClvError::NoRepeatSpend);
    }
    let unit = values.iter().sum::<f64>() / values.len() as f64;
    let scaled: Vec<clv::CustomerSummary> = data
        .iter()
        .map(|c| clv::CustomerSummary {
            m_x: c.m_x.map(|m| m / unit),
            ..c.clone()
        })
        .collect();
    let mut f = GammaGamma::fit(&scaled)?;
    f.params.gamma *= unit;
    f.log_likelihood = f.params.log_likelihood(data);
    Ok(f)
}

/// Fit the models on `inputs` and build every row (pure: the job's I/O is around it).
pub fn compute(
    inputs: &Inputs,
    cfg: &ClvConfig,
    tz: Tz,
    currency: &str,
) -> Result<Computed, ValueError> {
    // a restated order keeps its newest version
    let mut orders: HashMap<&str, &OrderRow> = HashMap::new();
    for o in &inputs.orders {
        let e = orders.entry(o.order_id.as_str()).or_insert(o);
        if o.ts > e.ts {
            *e = o;
        }
    }
    let mut anonymous_orders = 0;
    let mut purchases = Vec::new();
    // each customer's first order: (ts, order id), the earliest, ties by id
    let mut first_order: BTreeMap<&str, (DateTime<Utc>, &str)> = BTreeMap::new();
    let mut revenue: BTreeMap<&str, Decimal> = BTreeMap::new();
    for o in orders.values() {
        let Some(c) = o.customer_id.as_deref() else {
            anonymous_orders += 1;
            continue;
        };
        purchases.push(Purchase {
            customer: c.to_string(),
            day: o.day,
            amount: o.amount,
        });
        *revenue.entry(c).or_default() += o.amount;
        let f = first_order.entry(c).or_insert((o.ts, &o.order_id));
        if (o.ts, o.order_id.as_str()) < *f {
            *f = (o.ts, &o.order_id);
        }
    }
    if purchases.is_empty() {
        return Err(ValueError::NoOrders);
    }
    // the history reaches its newest order, a customer's or not
    let as_of = orders
        .values()
        .map(|o| o.day)
        .max()
        .ok_or(ValueError::NoOrders)?;
    let summaries = clv::summarize(&purchases, as_of, as_of, cfg.period_days);
    let bg = BgNbd::fit(&summaries)?;
    let gg = fit_gamma_gamma(&summaries)?;
    if gg.params.q <= 1.0 {
        return Err(ValueError::SpendUndefined { q: gg.params.q });
    }
    // the first touch of each converting journey
    let mut first_touch: HashMap<&str, (DateTime<Utc>, i64, &str)> = HashMap::new();
    for t in &inputs.touches {
        let e = first_touch
            .entry(t.order_id.as_str())
            .or_insert((t.ts, t.position, &t.channel));
        if (t.ts, t.position) < (e.0, e.1) {
            *e = (t.ts, t.position, &t.channel);
        }
    }
    let ts = day_start(as_of, tz);
    let per_month = DAYS_PER_MONTH / cfg.period_days;
    let value = |c: &clv::CustomerSummary, months: u32| {
        clv::clv(
            &bg.params,
            &gg.params,
            c,
            months,
            per_month,
            cfg.margin_ratio,
            cfg.monthly_discount_rate,
        )
    };
    let mut customers = Vec::with_capacity(summaries.len());
    for c in &summaries {
        let id = c.customer.as_str();
        let channel = first_order
            .get(id)
            .and_then(|(_, order)| first_touch.get(order))
            .map(|(_, _, ch)| ch.to_string())
            .unwrap_or_else(|| UNATTRIBUTED.to_string());
        let e = |months: u32| {
            bg.params
                .expected_purchases(c.x, c.t_x, c.t_cal, months as f64 * per_month)
        };
        customers.push(CustomerValueRow {
            ts,
            day: as_of,
            customer_id: c.customer.clone(),
            acquisition_channel: channel,
            first_order_day: c.first_day,
            orders: c.x as u32 + 1,
            repeat_purchases: c.x as u32,
            recency_periods: c.t_x,
            age_periods: c.t_cal,
            revenue: revenue.get(id).copied().unwrap_or_default(),
            p_alive: bg.params.p_alive(c.x, c.t_x, c.t_cal),
            expected_purchases_6m: e(6),
            expected_purchases_12m: e(12),
            expected_order_value: paisa(id, gg.params.expected_spend(c.x, c.m_x))?,
            clv_6m: paisa(id, value(c, 6))?,
            clv_12m: paisa(id, value(c, 12))?,
            currency: currency.to_string(),
        });
    }
    let campaigns = campaign_rows(&customers, inputs, ts, as_of, currency);
    Ok(Computed {
        as_of,
        fit: ClvFit {
            bgnbd: bg,
            gamma_gamma: gg,
        },
        customers,
        campaigns,
        anonymous_orders,
    })
}

/// One row per acquisition channel and per channel with spend: the exact sums of its customers'
/// CLVs, their means to the paisa, and LTV:CAC with the profit KPIs' new-customer CAC.
fn campaign_rows(
    customers: &[CustomerValueRow],
    inputs: &Inputs,
    ts: DateTime<Utc>,
    as_of: NaiveDate,
    currency: &str,
) -> Vec<CampaignValueRow> {
    let mut groups: BTreeMap<&str, (u32, Decimal, Decimal)> = BTreeMap::new();
    for c in customers {
        let g = groups.entry(c.acquisition_channel.as_str()).or_default();
        g.0 += 1;
        g.1 += c.clv_6m;
        g.2 += c.clv_12m;
    }
    let channels: BTreeSet<&str> = groups
        .keys()
        .copied()
        .chain(inputs.spend.keys().map(String::as_str))
        .collect();
    channels
        .into_iter()
        .map(|channel| {
            let (n, total_6m, total_12m) = groups.get(channel).copied().unwrap_or_default();
            let mean = |t: Decimal| (n > 0).then(|| (t / Decimal::from(n)).round_dp(2));
            let spend = inputs.spend.get(channel).copied();
            // `utm_campaign` holds the campaign id; the channel is `platform:campaign_id`
            let campaign_id = channel.split_once(':').map_or(channel, |(_, id)| id);
            let new_customers = inputs.new_customers.get(campaign_id).copied().unwrap_or(0);
            let cac = spend.and_then(|ad_spend| {
                ProfitTotals {
                    ad_spend,
                    new_customers,
                    ..ProfitTotals::default()
                }
                .cac()
                // to the column's scale (DECIMAL(18,6)): a quotient has up to 28 decimals
                .map(|c| c.round_dp(6))
            });
            let ltv = |m: Option<Decimal>| {
                let (m, c) = (m?, cac?);
                if c.is_zero() { None } else { (m / c).to_f64() }
            };
            CampaignValueRow {
                ts,
                day: as_of,
                channel: channel.to_string(),
                customers: n,
                clv_6m_total: total_6m,
                clv_12m_total: total_12m,
                clv_6m_mean: mean(total_6m),
                clv_12m_mean: mean(total_12m),
                spend: spend.unwrap_or_default(),
                new_customers: u32::try_from(new_customers).unwrap_or(u32::MAX),
                cac,
                ltv_cac_6m: ltv(mean(total_6m)),
                ltv_cac_12m: ltv(mean(total_12m)),
                currency: currency.to_string(),
            }
        })
        .collect()
}

/// Zero rows for the channels an earlier run of the same as-of day wrote and this one does not
/// (a late touch moved a customer's first touch): no stale figure outlives the run.
pub fn zero_missing(rows: &mut Vec<CampaignValueRow>, previous: &[String], currency: &str) {
    let Some(first) = rows.first() else {
        return;
    };
    let (ts, day) = (first.ts, first.day);
    let built: BTreeSet<String> = rows.iter().map(|r| r.channel.clone()).collect();
    for channel in previous.iter().filter(|c| !built.contains(*c)) {
        rows.push(CampaignValueRow {
            ts,
            day,
            channel: channel.clone(),
            customers: 0,
            clv_6m_total: Decimal::ZERO,
            clv_12m_total: Decimal::ZERO,
            clv_6m_mean: None,
            clv_12m_mean: None,
            spend: Decimal::ZERO,
            new_customers: 0,
            cac: None,
            ltv_cac_6m: None,
            ltv_cac_12m: None,
            currency: currency.to_string(),
        });
    }
}

/// The job's self-metrics (node_exporter style: a success gauge and a duration per run), and the
/// fitted parameters, so a reader can recompute any customer's value by hand.
struct ValueMetrics {
    run: RunMetrics,
    customers: IntGauge,
    anonymous: IntGauge,
    parameter: GaugeVec,
    log_likelihood: GaugeVec,
    at_bound: GaugeVec,
}

impl ValueMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let int = |name: &str, help: &str| registered(registry, IntGauge::new(name, help));
        let vec = |name: &str, help: &str, labels: &[&str]| {
            registered(registry, GaugeVec::new(Opts::new(name, help), labels))
        };
        Ok(Self {
            run: RunMetrics::new(
                registry,
                "clv",
                "CLV",
                "1 if the last CLV run read every order, fitted both models and stored every row",
            )?,
            customers: int(
                "adpulse_clv_customers",
                "Customers the last successful CLV run valued",
            )?,
            anonymous: int(
                "adpulse_clv_orders_without_customer",
                "Orders without a customer id, left out of the last CLV fit",
            )?,
            parameter: vec(
                "adpulse_clv_parameter",
                "Fitted parameter of the last successful CLV run (BG/NBD r, alpha, a, b; \
                 Gamma-Gamma p, q, gamma; periods of [clv] period_days)",
                &["model", "param"],
            )?,
            log_likelihood: vec(
                "adpulse_clv_log_likelihood",
                "Maximised log-likelihood of the last successful CLV fit",
                &["model"],
            )?,
            at_bound: vec(
                "adpulse_clv_fit_at_bound",
                "1 if the model's maximum lies on the edge of the search box (a limiting case)",
                &["model"],
            )?,
        })
    }

    fn fitted(&self, c: &Computed) {
        let BgNbd { r, alpha, a, b } = c.fit.bgnbd.params;
        let GammaGamma { p, q, gamma } = c.fit.gamma_gamma.params;
        let bg_nbd = [("r", r), ("alpha", alpha), ("a", a), ("b", b)];
        let gamma_gamma = [("p", p), ("q", q), ("gamma", gamma)];
        for (model, params) in [("bg_nbd", &bg_nbd[..]), ("gamma_gamma", &gamma_gamma[..])] {
            for &(param, v) in params {
                self.parameter.with_label_values(&[model, param]).set(v);
            }
        }
        for (model, ll, bound) in [
            ("bg_nbd", c.fit.bgnbd.log_likelihood, c.fit.bgnbd.at_bound),
            (
                "gamma_gamma",
                c.fit.gamma_gamma.log_likelihood,
                c.fit.gamma_gamma.at_bound,
            ),
        ] {
            self.log_likelihood.with_label_values(&[model]).set(ll);
            self.at_bound
                .with_label_values(&[model])
                .set(f64::from(u8::from(bound)));
        }
        self.customers.set(c.customers.len() as i64);
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSummary {
    pub as_of: NaiveDate,
    pub customers: usize,
    pub channels: usize,
    pub spooled: usize,
}

/// The periodic job.
pub struct ValueJob {
    cfg: ClvConfig,
    ctx: JobContext,
    metrics: ValueMetrics,
}

impl ValueJob {
    /// The job for `cfg`, its metrics registered in `registry`.
    pub fn new(cfg: ClvConfig, ctx: JobContext, registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            cfg,
            ctx,
            metrics: ValueMetrics::new(registry)?,
        })
    }

    /// Run until shutdown: a first run shortly after start, then one every `interval_secs`.
    pub async fn run(self, shutdown: CancellationToken) {
        run_periodically(self.cfg.interval_secs, 30, shutdown, || async {
            // the outcome is logged and in the metrics; the next run redoes a failed one
            let _ = self.run_and_record().await;
        })
        .await;
    }

    /// One run, its outcome logged and in the metrics.
    pub async fn run_and_record(&self) -> Result<RunSummary, ValueError> {
        let log = |s: &RunSummary| {
            info!(
                as_of = %s.as_of,
                customers = s.customers,
                channels = s.channels,
                spooled = s.spooled,
                "customer values written"
            )
        };
        self.metrics.run.record(self.run_once(), log).await
    }

    /// Read, fit, write. Rows that could not be read are reported after the rest is written.
    pub async fn run_once(&self) -> Result<RunSummary, ValueError> {
        let (inputs, bad) = self.read().await?;
        let (cfg, tz, currency) = (self.cfg.clone(), self.ctx.tz, self.ctx.currency.clone());
        let computed = tokio::task::spawn_blocking(move || compute(&inputs, &cfg, tz, &currency))
            .await
            .map_err(|e| ValueError::Compute(e.to_string()))??;
        self.metrics.anonymous.set(computed.anonymous_orders as i64);
        let previous = self
            .previous(day_start(computed.as_of, self.ctx.tz))
            .await?;
        let Computed {
            as_of,
            customers,
            mut campaigns,
            ..
        } = computed.clone();
        zero_missing(&mut campaigns, &previous, &self.ctx.currency);
        let summary = RunSummary {
            as_of,
            customers: customers.len(),
            channels: campaigns.len(),
            spooled: 0,
        };
        let rows: Vec<Record> = customers
            .into_iter()
            .map(Record::CustomerValue)
            .chain(campaigns.into_iter().map(Record::CampaignValue))
            .collect();
        let spooled = write_durable(&self.ctx.sink, rows).await?;
        if let Some(e) = bad {
            return Err(e.into());
        }
        // the parameters are shown once their rows are stored, so the two always agree
        self.metrics.fitted(&computed);
        Ok(RunSummary { spooled, ..summary })
    }

    async fn read(&self) -> Result<(Inputs, Option<JobError>), JobError> {
        let (sql, page) = (&self.ctx.sql, self.cfg.page_rows);
        let mut bad = None;
        let orders = read_pages(
            sql,
            page,
            "orders",
            "SELECT order_id, customer_id, ts, day, amount FROM orders WHERE kind = 'order' \
             ORDER BY ts, order_id",
            parse_order,
            &mut bad,
        )
        .await?;
        let touches = read_pages(
            sql,
            page,
            "touchpoints",
            "SELECT order_id, ts, position, channel FROM touchpoints WHERE order_id IS NOT NULL \
             ORDER BY ts, journey_id, position",
            parse_touch,
            &mut bad,
        )
        .await?;
        let spend = read_pages(
            sql,
            page,
            "campaign_stats",
            "SELECT platform, campaign_id, sum(spend) FROM campaign_stats WHERE bucket = 'day' \
             GROUP BY platform, campaign_id ORDER BY platform, campaign_id",
            |r| {
                let channel = format!("{}:{}", text(r, 0, "platform")?, text(r, 1, "campaign_id")?);
                Ok((channel, money(r, 2, "spend")?))
            },
            &mut bad,
        )
        .await?;
        let new_customers = read_pages(
            sql,
            page,
            "order_lines",
            "SELECT utm_campaign, count_distinct(order_id) FROM order_lines \
             WHERE new_customer AND utm_campaign IS NOT NULL \
             GROUP BY utm_campaign ORDER BY utm_campaign",
            |r| {
                let n = r
                    .get(1)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| "count missing".to_string())?;
                Ok((text(r, 0, "utm_campaign")?, n))
            },
            &mut bad,
        )
        .await?;
        Ok((
            Inputs {
                orders,
                touches,
                spend: spend.into_iter().collect(),
                new_customers: new_customers.into_iter().collect(),
            },
            bad,
        ))
    }

    /// The channels the table holds for the as-of day `ts` (from earlier runs of that day).
    async fn previous(&self, ts: DateTime<Utc>) -> Result<Vec<String>, JobError> {
        let mut bad = None;
        let q = format!(
            "SELECT channel FROM campaign_value WHERE ts = '{}' AND customers > 0 ORDER BY channel",
            ts.format("%Y-%m-%dT%H:%M:%S%.6fZ")
        );
        let channels = read_pages(
            &self.ctx.sql,
            self.cfg.page_rows,
            "campaign_value",
            &q,
            |r| text(r, 0, "channel"),
            &mut bad,
        )
        .await?;
        match bad {
            Some(e) => Err(e),
            None => Ok(channels),
        }
    }
}

fn parse_order(r: &[Value]) -> Result<OrderRow, String> {
    let order_id = text(r, 0, "order_id")?;
    let with_id = |e: String| format!("order {order_id}: {e}");
    Ok(OrderRow {
        customer_id: r
            .get(1)
            .and_then(Value::as_str)
            .filter(|c| !c.trim().is_empty())
            .map(str::to_string),
        ts: timestamp(r, 2, "ts").map_err(with_id)?,
        day: date(r, 3, "day").map_err(with_id)?,
        amount: money(r, 4, "amount").map_err(with_id)?,
        order_id,
    })
}

fn parse_touch(r: &[Value]) -> Result<OrderTouch, String> {
    let order_id = text(r, 0, "order_id")?;
    let with_id = |e: String| format!("order {order_id}: {e}");
    Ok(OrderTouch {
        ts: timestamp(r, 1, "ts").map_err(with_id)?,
        position: r
            .get(2)
            .and_then(Value::as_i64)
            .ok_or_else(|| with_id("position missing".into()))?,
        channel: text(r, 3, "channel").map_err(with_id)?,
        order_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn order(id: &str, customer: Option<&str>, day: u32, amount: Decimal) -> OrderRow {
        OrderRow {
            order_id: id.into(),
            customer_id: customer.map(str::to_string),
            ts: Utc.with_ymd_and_hms(2026, 10, day, 6, 0, 0).unwrap(),
            day: NaiveDate::from_ymd_opt(2026, 10, day).unwrap(),
            amount,
        }
    }

    fn touch(order: &str, day: u32, pos: i64, ch: &str) -> OrderTouch {
        OrderTouch {
            order_id: order.into(),
            ts: Utc.with_ymd_and_hms(2026, 10, day, 5, 0, 0).unwrap(),
            position: pos,
            channel: ch.into(),
        }
    }

    fn inputs() -> Inputs {
        let mut orders = Vec::new();
        // twelve customers, some coming back; one anonymous order
        let amounts = [dec!(1200), dec!(800.50), dec!(2500), dec!(950)];
        for c in 0..12u32 {
            let id = format!("c{c}");
            let first = 1 + c;
            orders.push(order(
                &format!("o{c}a"),
                Some(&id),
                first,
                amounts[c as usize % 4],
            ));
            if c % 3 == 0 {
                orders.push(order(&format!("o{c}b"), Some(&id), first + 5, dec!(1000)));
            }
            if c % 4 == 0 {
                orders.push(order(
                    &format!("o{c}c"),
                    Some(&id),
                    first + 11,
                    dec!(1700.25),
                ));
            }
        }
        // the newest order has no customer: the history still reaches its day
        orders.push(order("anon", None, 23, dec!(99)));
        let mut touches = Vec::new();
        for c in 0..12u32 {
            let o = format!("o{c}a");
            // the first touch is meta for even customers (a later google touch too)
            if c % 2 == 0 {
                touches.push(touch(&o, 1 + c, 2, "google_ads:9"));
                touches.push(touch(&o, c.max(1), 1, "meta:1"));
            } else if c != 11 {
                touches.push(touch(&o, 1 + c, 1, "google_ads:9"));
            }
        }
        Inputs {
            orders,
            touches,
            spend: [
                ("meta:1".to_string(), dec!(3000)),
                ("google_ads:9".into(), dec!(1000)),
                ("meta:7".into(), dec!(50)),
            ]
            .into_iter()
            .collect(),
            new_customers: [("1".to_string(), 4), ("9".into(), 0)]
                .into_iter()
                .collect(),
        }
    }

    /// `compute` with the default `[clv]` settings, India's days and INR.
    fn compute_in_inr(i: &Inputs) -> Result<Computed, ValueError> {
        compute(i, &ClvConfig::default(), chrono_tz::Asia::Kolkata, "INR")
    }

    #[test]
    fn campaign_rows_are_the_sums_of_their_customers_and_use_profit_cac() {
        let c = compute_in_inr(&inputs()).expect("fits");
        assert_eq!(c.anonymous_orders, 1);
        assert_eq!(c.customers.len(), 12);
        assert_eq!(c.as_of, NaiveDate::from_ymd_opt(2026, 10, 23).unwrap());
        let by = |ch: &str| c.campaigns.iter().find(|r| r.channel == ch).unwrap();
        // first touch: even customers to meta, odd to google, c11 unattributed
        assert_eq!(by("meta:1").customers, 6);
        assert_eq!(by("google_ads:9").customers, 5);
        assert_eq!(by(UNATTRIBUTED).customers, 1);
        for ch in ["meta:1", "google_ads:9", UNATTRIBUTED] {
            let r = by(ch);
            let mine: Vec<&CustomerValueRow> = c
                .customers
                .iter()
                .filter(|x| x.acquisition_channel == ch)
                .collect();
            let total: Decimal = mine.iter().map(|x| x.clv_12m).sum();
            assert_eq!(r.clv_12m_total, total, "{ch}");
            assert_eq!(
                r.clv_12m_mean,
                Some((total / Decimal::from(mine.len() as u32)).round_dp(2))
            );
        }
        // CAC as profit has it: 3000 of spend over its 4 last-click new customers
        let meta = by("meta:1");
        assert_eq!(meta.cac, Some(dec!(750)));
        let want = (meta.clv_12m_mean.unwrap() / dec!(750)).to_f64().unwrap();
        assert_eq!(meta.ltv_cac_12m, Some(want));
        // no new customer: no CAC, no LTV:CAC (never infinity)
        assert_eq!(by("google_ads:9").cac, None);
        assert_eq!(by("google_ads:9").ltv_cac_12m, None);
        // spend and no customer: a row with no mean
        let idle = by("meta:7");
        assert_eq!((idle.customers, idle.clv_12m_mean), (0, None));
        // a customer's revenue is the exact sum of its orders; 12 months are worth more than 6
        let c0 = c.customers.iter().find(|x| x.customer_id == "c0").unwrap();
        assert_eq!(c0.revenue, dec!(1200) + dec!(1000) + dec!(1700.25));
        assert_eq!((c0.orders, c0.repeat_purchases), (3, 2));
        assert!(c0.clv_12m > c0.clv_6m && c0.clv_6m > Decimal::ZERO);
    }

    #[test]
    fn no_repeat_buyer_fails_the_run_rather_than_inventing_spend() {
        let mut i = inputs();
        i.orders.retain(|o| o.order_id.ends_with('a'));
        let e = compute_in_inr(&i).unwrap_err();
        assert!(matches!(e, ValueError::Fit(ClvError::NoRepeatSpend)), "{e}");
        let e = compute_in_inr(&Inputs::default()).unwrap_err();
        assert!(matches!(e, ValueError::NoOrders), "{e}");
    }

    #[test]
    fn channels_that_lost_their_customers_are_zeroed() {
        let c = compute_in_inr(&inputs()).unwrap();
        let mut rows = c.campaigns.clone();
        let n = rows.len();
        zero_missing(&mut rows, &["meta:1".into(), "organic:x".into()], "INR");
        assert_eq!(rows.len(), n + 1);
        let z = rows.last().unwrap();
        assert_eq!((z.channel.as_str(), z.customers), ("organic:x", 0));
        assert_eq!(z.clv_12m_total, Decimal::ZERO);
    }
}
