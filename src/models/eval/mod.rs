//! Offline evaluation of the models, apart from what runs in the service: the NAB anomaly
//! benchmark ([`nab`]) and the rolling-origin forecast backtest with interval coverage
//! ([`backtest`]). Nothing here is called by the collector; `adpulse eval ...` and the tests are
//! its only users.

pub mod backtest;
pub mod nab;

use std::path::PathBuf;

use super::ModelError;

/// Every failure of an evaluation run. Messages name the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A data or label file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The labels file is not the NAB `windows.json` layout.
    #[error("{path}: not a NAB windows file: {message}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A window bound is not a timestamp.
    #[error("{file}: window timestamp {value:?} does not parse")]
    BadWindow {
        /// The labelled file.
        file: String,
        /// The bad bound.
        value: String,
    },
    /// A labelled file is not in the data folder.
    #[error("{key}: labelled in the windows file but not found (tried {tried})")]
    MissingFile {
        /// The key of the windows file.
        key: String,
        /// The paths tried.
        tried: String,
    },
    /// A data file has no rows.
    #[error("{0}: no data rows")]
    NoRows(String),
    /// A folder holds no series to evaluate.
    #[error("no CSV series in {0}")]
    NoSeries(PathBuf),
    /// Reading, cleaning or fitting a series failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}
