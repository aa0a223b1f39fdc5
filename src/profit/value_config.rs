//! `[clv]`: the settings of the live CLV job (`profit::value`). A leaf of the config tree, so
//! `config` composes it without importing the job or the sinks.

use serde::Deserialize;

use crate::base::Problem;

/// `[clv]`: fit BG/NBD and Gamma-Gamma on the order history in QuestDB and write the
/// `customer_value` and `campaign_value` tables (see `docs/profit.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClvConfig {
    /// Run the job (it reads the orders from QuestDB: with `questdb.enabled = false` it does not
    /// run).
    pub enabled: bool,
    /// Seconds between two fits. Each fit reads the whole order history (the models need every
    /// customer's frequency and recency); lifetime value moves slowly, hence an hour by default.
    pub interval_secs: u64,
    /// Days in one model period (7: weeks, as in the BG/NBD and Gamma-Gamma papers). Changes
    /// the units of `recency_periods` and `age_periods`, not the CLV.
    pub period_days: f64,
    /// Share of an order's value the CLV counts: 1 gives revenue CLV; your contribution margin
    /// ratio gives profit CLV.
    pub margin_ratio: f64,
    /// Discount of future value per month (0: none; 0.01 is about 12.7% a year).
    pub monthly_discount_rate: f64,
    /// Rows per query page when reading orders, touchpoints, order lines and spend.
    pub page_rows: usize,
}

impl Default for ClvConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 3600,
            period_days: 7.0,
            margin_ratio: 1.0,
            monthly_discount_rate: 0.0,
            page_rows: 20_000,
        }
    }
}

impl ClvConfig {
    /// Validation problems, keys relative to `clv`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut add = |key: &str, message: &str| p.push(Problem::new(key, message));
        if self.interval_secs == 0 {
            add("interval_secs", "must be at least 1");
        }
        if !(self.period_days.is_finite() && self.period_days > 0.0) {
            add("period_days", "must be a positive number of days");
        }
        if !(self.margin_ratio.is_finite() && self.margin_ratio > 0.0 && self.margin_ratio <= 1.0) {
            add("margin_ratio", "must be above 0 and at most 1");
        }
        if !(self.monthly_discount_rate.is_finite()
            && (0.0..1.0).contains(&self.monthly_discount_rate))
        {
            add("monthly_discount_rate", "must be at least 0 and below 1");
        }
        if self.page_rows == 0 {
            add("page_rows", "must be at least 1");
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert!(ClvConfig::default().problems().is_empty());
        let c: ClvConfig =
            toml::from_str("period_days = 0\nmargin_ratio = 1.5\nmonthly_discount_rate = -0.1")
                .expect("parses");
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["period_days", "margin_ratio", "monthly_discount_rate"]
        );
        let e = toml::from_str::<ClvConfig>("horizon_months = 6").unwrap_err();
        assert!(e.to_string().contains("horizon_months"), "{e}");
    }
}
