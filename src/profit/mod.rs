//! True profit: contribution margin and the KPIs built on it (`kpi`), the live roll-up of order
//! lines for `/metrics` and the rules (`live`), and customer lifetime value fitted on real order
//! history (`clv`, with its optimiser in `optim`; the evaluation report on CDNOW and UCI Online
//! Retail in `eval`); the live CLV job that fits them on the order history in QuestDB and writes
//! `customer_value` and `campaign_value` (`value`, its settings in `value_config`).

pub mod clv;
pub mod eval;
pub mod kpi;
pub mod live;
pub mod optim;
pub mod value;
pub mod value_config;

use rust_decimal::Decimal;
use serde::Deserialize;

/// `[profit]`: the costs no order line carries (the SQL of `docs/schema.md` query 9 has the
/// defaults as constants).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfitConfig {
    /// Payment gateway fees (2% of net sales by default).
    pub payment_fees: kpi::PaymentFees,
    /// What shipping one order costs the shop, in the reporting currency (not what the customer
    /// was charged; 0 by default).
    pub shipping_cost_per_order: Decimal,
}
