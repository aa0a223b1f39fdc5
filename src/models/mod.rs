//! Models fitted in-process: input cleaning, streaming anomaly scoring, forecasts with intervals,
//! and the smartcore customer / campaign models. Their offline evaluations (NAB, rolling-origin
//! backtest) live apart in [`eval`].
//!
//! Everything here is pure computation on in-memory series; the only I/O is the CSV reading and
//! writing in [`series`] and [`cli`], so the collector can call the same code on QuestDB history.

pub mod anomaly;
pub mod cli;
pub mod eval;
pub mod forecast;
pub mod live;
pub mod scoring;
pub mod segments;
pub mod series;
pub(crate) mod stats;

use std::path::PathBuf;

/// Every failure of the model boundary. Messages name the input and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The input file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Write(#[from] std::io::Error),
    /// A row of the CSV is malformed (wrong number of fields, bad UTF-8...).
    #[error("line {line}: {message}")]
    Csv { line: u64, message: String },
    /// A timestamp is neither RFC3339 nor `YYYY-MM-DD HH:MM:SS` (nor a date).
    #[error(
        "line {line}: cannot parse timestamp {value:?} (expected RFC3339, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`)"
    )]
    BadTimestamp { line: u64, value: String },
    /// A value is not a number (empty, `NaN` and `inf` are dropped and counted instead).
    #[error("line {line}: cannot parse value {value:?} as a number")]
    BadValue { line: u64, value: String },
    /// No usable rows at all.
    #[error("the series is empty (no row with a timestamp and a finite value)")]
    Empty,
    /// Too few points for what was asked.
    #[error("the series has {got} usable points; {what} needs at least {needed}")]
    TooShort {
        got: usize,
        needed: usize,
        what: &'static str,
    },
    /// Timestamps do not have a usable regular step (all identical, for instance).
    #[error("cannot infer a regular step from the timestamps: {0}")]
    NoStep(String),
    /// Parameters out of range (horizon 0, negative K, ...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The input is larger than the documented limit (see `docs/models.md`).
    #[error("{what} is {got}, above the limit of {limit}: {hint}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        got: usize,
        /// The limit.
        limit: usize,
        /// What to do instead.
        hint: &'static str,
    },
    /// A smartcore fit or prediction failed.
    #[error("model fit failed: {0}")]
    Fit(String),
}
