//! KPI definitions: the one source of truth shared by `/metrics`, the SQL in `docs/schema.md` and
//! the dashboards. A ratio whose denominator is zero is `None` (a missing value), never 0 or
//! infinity.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Additive figures over any set of rows (a campaign-hour, a campaign-day, a platform-day...).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub spend: Decimal,
    /// Platform-attributed conversion value.
    pub conversion_value: Decimal,
    /// Shop revenue (net of refunds) for the same scope.
    pub revenue: Decimal,
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: f64,
}

/// Field-wise `+=` of a struct of additive figures, `add_assign_fields!(T { a, b })`: the one
/// definition every totals type (this module's, `profit::kpi`'s) uses, so that adding a figure
/// means naming it in one list.
macro_rules! add_assign_fields {
    ($t:ty { $($field:ident),+ $(,)? }) => {
        impl std::ops::AddAssign for $t {
            fn add_assign(&mut self, o: $t) {
                $(self.$field += o.$field;)+
            }
        }
    };
}
pub(crate) use add_assign_fields;

add_assign_fields!(Totals {
    spend,
    conversion_value,
    revenue,
    impressions,
    clicks,
    conversions,
});

/// Gross margin applied to revenue before profit: 1 means "revenue is profit" (the seed's view).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Margin(pub Decimal);

impl Default for Margin {
    fn default() -> Self {
        Margin(Decimal::ONE)
    }
}

/// `num / den`, `None` when `den` is zero (shared with `profit::kpi`).
pub(crate) fn ratio(num: Decimal, den: Decimal) -> Option<f64> {
    if den.is_zero() {
        None
    } else {
        (num / den).to_f64()
    }
}

fn ratio_f(num: f64, den: f64) -> Option<f64> {
    if den == 0.0 || !den.is_finite() || !num.is_finite() {
        None
    } else {
        Some(num / den)
    }
}

impl Totals {
    /// profit = revenue × margin − spend.
    pub fn profit(&self, margin: Margin) -> Decimal {
        self.revenue * margin.0 - self.spend
    }

    /// ROAS = conversion value / spend.
    pub fn roas(&self) -> Option<f64> {
        ratio(self.conversion_value, self.spend)
    }

    /// ROI = (revenue × margin − spend) / spend.
    pub fn roi(&self, margin: Margin) -> Option<f64> {
        ratio(self.profit(margin), self.spend)
    }

    /// CPA = spend / conversions.
    pub fn cpa(&self) -> Option<Decimal> {
        if self.conversions <= 0.0 || !self.conversions.is_finite() {
            return None;
        }
        let conv = Decimal::try_from(self.conversions).ok()?;
        if conv.is_zero() {
            return None;
        }
        Some(self.spend / conv)
    }

    /// CTR = clicks / impressions.
    pub fn ctr(&self) -> Option<f64> {
        ratio_f(self.clicks as f64, self.impressions as f64)
    }

    /// CR = conversions / clicks.
    pub fn cr(&self) -> Option<f64> {
        ratio_f(self.conversions, self.clicks as f64)
    }

    /// CPC = spend / clicks.
    pub fn cpc(&self) -> Option<f64> {
        ratio(self.spend, Decimal::from(self.clicks))
    }

    /// CPM = spend × 1000 / impressions.
    pub fn cpm(&self) -> Option<f64> {
        ratio(
            self.spend * Decimal::from(1000),
            Decimal::from(self.impressions),
        )
    }
}

/// Loss rate: money lost per hour over a window, `(spend − revenue × margin) / hours`.
/// Negative when the scope makes money. `None` for an empty window.
pub fn loss_rate_per_hour(window: &Totals, hours: u32, margin: Margin) -> Option<Decimal> {
    if hours == 0 {
        return None;
    }
    Some(-window.profit(margin) / Decimal::from(hours))
}

/// A trailing window of whole hour buckets ending with the current (partial) one: the bucket
/// starting `hours - 1` hours before the current hour's start, through now. The same definition
/// runs in SQL as `ts >= dateadd('h', -(hours - 1), <current hour start>)` (docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The `window` label value.
    pub label: &'static str,
    /// Length in hour buckets.
    pub hours: u32,
}

impl Window {
    /// Start (unix seconds) of the oldest hour bucket in the window, given the current hour's.
    pub fn start(&self, current_hour_start: i64) -> i64 {
        current_hour_start - 3600 * (i64::from(self.hours) - 1)
    }
}

/// Whole-business rolling windows shown in `/metrics` (`"10d"` is the seed's 10-day view).
pub const TOTAL_WINDOWS: [Window; 4] = [
    Window {
        label: "24h",
        hours: 24,
    },
    Window {
        label: "7d",
        hours: 7 * 24,
    },
    Window {
        label: "10d",
        hours: 10 * 24,
    },
    Window {
        label: "30d",
        hours: 30 * 24,
    },
];

/// Per-campaign rolling windows (the first two of [`TOTAL_WINDOWS`]: a label set per campaign
/// and window costs series).
pub const CAMPAIGN_WINDOWS: [Window; 2] = [TOTAL_WINDOWS[0], TOTAL_WINDOWS[1]];

/// Loss over a window: `spend − revenue × margin` (= −profit; positive means losing money).
pub fn loss(window: &Totals, margin: Margin) -> Decimal {
    -window.profit(margin)
}

/// Stage conversion: `count / previous`, `None` when the previous stage is zero.
pub fn stage_ratio(count: u64, previous: u64) -> Option<f64> {
    ratio_f(count as f64, previous as f64)
}

/// Decimal to f64 for exposition only (Prometheus samples are f64 by definition).
pub fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn adding_totals_adds_every_figure() {
        let totals = |s, v, r, i, c, n| Totals {
            spend: s,
            conversion_value: v,
            revenue: r,
            impressions: i,
            clicks: c,
            conversions: n,
        };
        let mut t = totals(dec!(100.50), dec!(20), dec!(30), 1_000, 10, 1.5);
        t += totals(dec!(0.25), dec!(5), dec!(-3), 7, 2, 0.5);
        // by hand, field by field
        assert_eq!(t, totals(dec!(100.75), dec!(25), dec!(27), 1_007, 12, 2.0));
    }

    fn seed_day() -> Totals {
        // The seed's baseline day: ~30,556 INR spend, 2,750 INR revenue.
        Totals {
            spend: dec!(30556),
            conversion_value: dec!(2750),
            revenue: dec!(2750),
            impressions: 380_000,
            clicks: 4_563,
            conversions: 1.0952,
        }
    }

    #[test]
    fn seed_baseline_kpis() {
        let t = seed_day();
        let roi = t.roi(Margin::default()).unwrap();
        assert!((roi - (-0.91)).abs() < 0.001, "roi {roi}");
        let cpa = to_f64(t.cpa().unwrap());
        assert!((cpa - 27_899.9).abs() < 5.0, "cpa {cpa}");
        let cr = t.cr().unwrap();
        assert!((cr - 0.00024).abs() < 0.000_001, "cr {cr}");
        assert_eq!(t.profit(Margin::default()), dec!(-27806));
        assert!((t.roas().unwrap() - 0.09).abs() < 0.0001);
    }

    #[test]
    fn zero_denominators_are_missing_not_zero_or_infinite() {
        let t = Totals::default();
        assert_eq!(t.roas(), None);
        assert_eq!(t.roi(Margin::default()), None);
        assert_eq!(t.cpa(), None);
        assert_eq!(t.ctr(), None);
        assert_eq!(t.cr(), None);
        assert_eq!(t.cpc(), None);
        assert_eq!(t.cpm(), None);
        // zero clicks but impressions: CTR is 0, CR is missing
        let t = Totals {
            impressions: 100,
            ..Default::default()
        };
        assert_eq!(t.ctr(), Some(0.0));
        assert_eq!(t.cr(), None);
    }

    #[test]
    fn zero_spend_with_revenue_has_profit_but_no_roi() {
        let t = Totals {
            revenue: dec!(1000),
            ..Default::default()
        };
        assert_eq!(t.profit(Margin::default()), dec!(1000));
        assert_eq!(t.roi(Margin::default()), None);
    }

    #[test]
    fn clicks_without_conversions_have_no_cpa_and_zero_cr() {
        let t = Totals {
            spend: dec!(500),
            clicks: 80,
            impressions: 4000,
            ..Default::default()
        };
        assert_eq!(t.cpa(), None);
        assert_eq!(t.cr(), Some(0.0));
        assert!((t.ctr().unwrap() - 0.02).abs() < 1e-12);
        assert!((t.cpc().unwrap() - 6.25).abs() < 1e-12);
        assert!((t.cpm().unwrap() - 125.0).abs() < 1e-12);
    }

    #[test]
    fn refunds_reduce_revenue_and_can_make_it_negative() {
        let mut t = Totals {
            spend: dec!(100),
            revenue: dec!(2500.50),
            ..Default::default()
        };
        // full refund of the order, on a later day, summed into the same scope
        t += Totals {
            revenue: dec!(-2500.50),
            ..Default::default()
        };
        assert_eq!(t.revenue, dec!(0));
        assert_eq!(t.roi(Margin::default()), Some(-1.0));
        // a refund alone on a day with spend: negative revenue, ROI below -100%
        let r = Totals {
            spend: dec!(100),
            revenue: dec!(-50),
            ..Default::default()
        };
        assert_eq!(r.roi(Margin::default()), Some(-1.5));
    }

    #[test]
    fn margin_scales_revenue_before_profit() {
        let t = Totals {
            spend: dec!(1000),
            revenue: dec!(3000),
            ..Default::default()
        };
        let m = Margin(dec!(0.4));
        assert_eq!(t.profit(m), dec!(200));
        assert_eq!(t.roi(m), Some(0.2));
    }

    #[test]
    fn money_sums_are_exact_to_the_paisa() {
        let mut t = Totals::default();
        for _ in 0..1_000 {
            t += Totals {
                spend: dec!(0.10),
                ..Default::default()
            };
        }
        assert_eq!(t.spend, dec!(100.00));
    }

    #[test]
    fn loss_rate_is_signed_and_per_hour() {
        let rate = |spend, revenue, hours| {
            let t = Totals {
                spend,
                revenue,
                ..Default::default()
            };
            loss_rate_per_hour(&t, hours, Margin::default())
        };
        // (3000 - 600) / 3 h, and (100 - 400) / 1 h: a profit is a negative loss
        assert_eq!(rate(dec!(3000), dec!(600), 3), Some(dec!(800)));
        assert_eq!(rate(dec!(100), dec!(400), 1), Some(dec!(-300)));
        assert_eq!(rate(dec!(100), dec!(400), 0), None);
    }

    #[test]
    fn fractional_conversions_give_exact_cpa() {
        let t = Totals {
            spend: dec!(1000),
            conversions: 2.5,
            ..Default::default()
        };
        assert_eq!(t.cpa(), Some(dec!(400)));
    }

    #[test]
    fn stage_ratio_handles_empty_previous_stage() {
        assert_eq!(stage_ratio(5, 0), None);
        assert_eq!(stage_ratio(5, 10), Some(0.5));
    }
}
