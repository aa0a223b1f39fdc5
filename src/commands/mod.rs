//! Commands that run once and exit (`adpulse import`, `adpulse backfill`, `adpulse user`): each
//! drives the library the same way `adpulse run` does.

pub mod backfill;
pub mod import;
pub mod user;
