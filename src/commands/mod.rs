//! Commands that run once and exit (`adpulse import`, `adpulse backfill`): each drives sources
//! through the same pipeline as `adpulse run`.

pub mod import;
