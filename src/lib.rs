//! adpulse: tells a marketing team, minute by minute, whether their ad spend makes or loses money.
//!
//! Data flow (and module layout): `sources` -> `normalize` -> `pipeline` -> `sinks::questdb`
//! (history) and `state` -> `sinks::metrics` (`/metrics`, served by `api`). `kpi` holds every
//! definition; `models` fits forecasts, anomaly detectors and scores in-process; `actions` turns
//! KPIs into recommendations and audited pause/budget actions; `app` wires it all together.

pub mod actions;
pub mod api;
pub mod app;
pub mod attribution;
pub mod base;
pub mod bench;
pub mod commands;
pub mod config;
pub mod jobs;
pub mod kpi;
pub mod models;
pub mod normalize;
pub mod persist;
pub mod pipeline;
pub mod platforms;
pub mod profit;
pub mod records;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod telemetry;
pub mod web;

/// Install the TLS crypto provider once (reqwest is built without a default one).
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
