//! Sinks: where records go. `questdb` stores history (with its disk spool and dead-letter file);
//! `metrics` exposes the current state to Prometheus.

pub mod dead_letter;
pub mod metrics;
pub mod questdb;
pub mod spool;
