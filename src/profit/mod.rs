//! True profit: contribution margin and the KPIs built on it (`kpi`), and customer lifetime value
//! fitted on real order history (`clv`, with its optimiser in `optim`; the evaluation report on
//! CDNOW and UCI Online Retail in `eval`).

pub mod clv;
pub mod eval;
pub mod kpi;
pub mod optim;
