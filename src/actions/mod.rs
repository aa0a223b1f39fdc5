//! Actions: what adpulse does about the numbers. `rules` turns the KPI snapshot into proposals
//! (pure); `engine` keeps the recommendations (one open per rule and campaign), executes them
//! through an `AdPlatform` (`platform`: Meta and Google Ads REST clients) according to the mode
//! and dry-run setting, exactly once per idempotency key, persists decisions across restarts,
//! and writes every event, refusals included, to a local fsynced audit log forwarded to the
//! QuestDB `actions` table. `config` is the `[actions]` section.

pub mod config;
pub mod engine;
pub mod platform;
pub mod rules;

pub use config::{ActionsConfig, Mode};
pub use engine::ActionEngine;
