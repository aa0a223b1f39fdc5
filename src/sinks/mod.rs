//! Sinks: where records go. `questdb` stores history (with its disk spool); `metrics` exposes the
//! current state to Prometheus.

pub mod metrics;
pub mod questdb;
pub mod spool;
