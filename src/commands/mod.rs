//! Commands that drive components once from the command line (rather than running as a service):
//! `adpulse backfill`.

pub mod backfill;
