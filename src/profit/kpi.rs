//! Profit KPIs, each defined once here (re-used by `/metrics`, the SQL in `docs/schema.md` and the
//! dashboards): contribution margin, POAS, MER, new-customer ROAS and CAC, blended CAC, AOV.
//!
//! Like `crate::kpi`, a ratio with a zero denominator is `None` (missing), never 0 or infinity,
//! and money stays `Decimal`.

use rust_decimal::Decimal;
use serde::Deserialize;

/// Payment gateway fees: a share of what the customer paid plus a fixed amount per order
/// (Indian gateways charge about 2% per transaction; set to the contract).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentFees {
    /// Share of net sales, e.g. 0.02 for 2%.
    pub percent_of_revenue: Decimal,
    /// Fixed fee per order, in the reporting currency.
    pub fixed_per_order: Decimal,
}

impl Default for PaymentFees {
    fn default() -> Self {
        PaymentFees {
            percent_of_revenue: Decimal::new(2, 2),
            fixed_per_order: Decimal::ZERO,
        }
    }
}

impl PaymentFees {
    /// Fees on `orders` orders with `net_sales` in total.
    pub fn on(&self, net_sales: Decimal, orders: u64) -> Decimal {
        net_sales * self.percent_of_revenue + self.fixed_per_order * Decimal::from(orders)
    }
}

/// Additive profit figures over any scope (a day, a SKU, a city, a campaign's attributed orders).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProfitTotals {
    /// Merchandise and shipping charged, after discounts, before tax and refunds.
    pub net_sales: Decimal,
    /// Refunded to customers (positive), on the day of the refund.
    pub returns: Decimal,
    /// Cost of the goods shipped (unit cost × quantity; units returned to stock are credited).
    pub cogs: Decimal,
    /// What shipping cost the shop (not what the customer was charged).
    pub shipping_cost: Decimal,
    /// Payment gateway fees.
    pub payment_fees: Decimal,
    /// Ad spend attributed to or spent in the scope.
    pub ad_spend: Decimal,
    pub orders: u64,
    /// First orders of new customers (the customer's order index is 1).
    pub new_customers: u64,
    /// `net_sales` of those first orders.
    pub new_customer_sales: Decimal,
}

crate::kpi::add_assign_fields!(ProfitTotals {
    net_sales,
    returns,
    cogs,
    shipping_cost,
    payment_fees,
    ad_spend,
    orders,
    new_customers,
    new_customer_sales,
});

use crate::kpi::ratio;

fn per(num: Decimal, count: u64) -> Option<Decimal> {
    if count == 0 {
        None
    } else {
        Some(num / Decimal::from(count))
    }
}

impl ProfitTotals {
    /// Net revenue = net sales − returns.
    pub fn net_revenue(&self) -> Decimal {
        self.net_sales - self.returns
    }

    /// Contribution margin = net sales − COGS − shipping cost − payment fees − returns (before ad
    /// spend).
    pub fn contribution_margin(&self) -> Decimal {
        self.net_sales - self.cogs - self.shipping_cost - self.payment_fees - self.returns
    }

    /// Profit after ads = contribution margin − ad spend.
    pub fn profit_after_ads(&self) -> Decimal {
        self.contribution_margin() - self.ad_spend
    }

    /// POAS = contribution margin / ad spend (1 = the ads paid for themselves).
    pub fn poas(&self) -> Option<f64> {
        ratio(self.contribution_margin(), self.ad_spend)
    }

    /// MER = net revenue / all ad spend.
    pub fn mer(&self) -> Option<f64> {
        ratio(self.net_revenue(), self.ad_spend)
    }

    /// New-customer ROAS = net sales of first orders / ad spend.
    pub fn new_customer_roas(&self) -> Option<f64> {
        ratio(self.new_customer_sales, self.ad_spend)
    }

    /// CAC = ad spend / new customers. Over a campaign's attributed orders it is the campaign's
    /// new-customer CAC; over the whole shop (all new customers, paid or not) it is the blended
    /// CAC.
    pub fn cac(&self) -> Option<Decimal> {
        per(self.ad_spend, self.new_customers)
    }

    /// AOV = net sales / orders.
    pub fn aov(&self) -> Option<Decimal> {
        per(self.net_sales, self.orders)
    }
}

/// Blended CAC = all ad spend / all new customers (paid and organic alike).
pub fn blended_cac(total_ad_spend: Decimal, all_new_customers: u64) -> Option<Decimal> {
    per(total_ad_spend, all_new_customers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// A hand-worked day: two orders (one from a new customer), one partial refund.
    fn day() -> ProfitTotals {
        ProfitTotals {
            net_sales: dec!(10000.00) + dec!(4500.50),
            returns: dec!(1500.00),
            cogs: dec!(4200.00) + dec!(1900.25),
            shipping_cost: dec!(180.00),
            payment_fees: PaymentFees::default().on(dec!(14500.50), 2),
            ad_spend: dec!(3000.00),
            orders: 2,
            new_customers: 1,
            new_customer_sales: dec!(10000.00),
        }
    }

    #[test]
    fn contribution_margin_subtracts_every_cost_by_hand() {
        let d = day();
        // fees: 2% of 14,500.50 = 290.01
        assert_eq!(d.payment_fees, dec!(290.0100));
        // 14,500.50 − 6,100.25 − 180 − 290.01 − 1,500 = 6,430.24
        assert_eq!(d.contribution_margin(), dec!(6430.2400));
        assert_eq!(d.profit_after_ads(), dec!(3430.2400));
        assert_eq!(d.net_revenue(), dec!(13000.50));
    }

    #[test]
    fn ratios_by_hand() {
        let d = day();
        assert!((d.poas().unwrap() - 6430.24 / 3000.0).abs() < 1e-12);
        assert!((d.mer().unwrap() - 13000.5 / 3000.0).abs() < 1e-12);
        assert!((d.new_customer_roas().unwrap() - 10000.0 / 3000.0).abs() < 1e-12);
        assert_eq!(d.cac(), Some(dec!(3000)));
        assert_eq!(d.aov(), Some(dec!(7250.25)));
        assert_eq!(blended_cac(dec!(3000), 3), Some(dec!(1000)));
    }

    #[test]
    fn empty_denominators_are_missing() {
        let z = ProfitTotals::default();
        assert_eq!(z.poas(), None);
        assert_eq!(z.mer(), None);
        assert_eq!(z.new_customer_roas(), None);
        assert_eq!(z.cac(), None);
        assert_eq!(z.aov(), None);
        assert_eq!(blended_cac(dec!(100), 0), None);
    }

    #[test]
    fn poas_below_one_while_roas_looks_fine() {
        // The point of POAS: 3x revenue on spend still loses money at a 30% contribution.
        let t = ProfitTotals {
            net_sales: dec!(3000),
            cogs: dec!(2100),
            ad_spend: dec!(1000),
            orders: 3,
            ..Default::default()
        };
        assert_eq!(t.mer(), Some(3.0));
        assert_eq!(t.poas(), Some(0.9));
    }

    #[test]
    fn totals_add_up() {
        let mut t = day();
        t += day();
        assert_eq!(t.contribution_margin(), dec!(12860.4800));
        assert_eq!(t.orders, 4);
        assert_eq!(t.cac(), Some(dec!(3000)));
    }
}
