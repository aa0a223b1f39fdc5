//! The completeness ledger: per source and per day (in the source's account timezone), whether
//! that day is known complete — every page read without an error element and every row handed to
//! the sink — or incomplete, with the reason. Backfill and the live poll both work from it:
//! incomplete days are fetched again until they are complete, and `/metrics` shows how many there
//! are (`adpulse_source_incomplete_days`). One JSON file in the state dir, replaced atomically.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::persist::{JsonFile, KeyedFile, StateFileError};

/// What is known about one day of one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DayState {
    /// Every page read, every row stored.
    Complete,
    /// Something is missing; `reason` says what, for the log and the backfill summary.
    Incomplete { reason: String },
}

/// A ledger file that cannot be read or written (it names the file).
pub type LedgerError = StateFileError;

type Days = BTreeMap<NaiveDate, DayState>;

/// The ledger file (`<state_dir>/ledger.json`), through the one state-file helper.
#[derive(Debug)]
pub struct Ledger {
    file: KeyedFile<Days>,
}

impl Ledger {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            file: JsonFile::new(state_dir.join("ledger.json")),
        }
    }

    /// Every recorded day of `source`.
    pub fn days(&self, source: &str) -> Result<Days, LedgerError> {
        self.file.get(source)
    }

    /// Record the state of some days (later records replace earlier ones).
    pub fn record(
        &self,
        source: &str,
        days: impl IntoIterator<Item = (NaiveDate, DayState)>,
    ) -> Result<(), LedgerError> {
        self.file.update_key(source, |d| d.extend(days))
    }

    /// Incomplete days of `source`, oldest first, with their reasons.
    pub fn incomplete(&self, source: &str) -> Result<Vec<(NaiveDate, String)>, LedgerError> {
        Ok(self
            .days(source)?
            .into_iter()
            .filter_map(|(d, s)| match s {
                DayState::Incomplete { reason } => Some((d, reason)),
                DayState::Complete => None,
            })
            .collect())
    }
}

/// Every day from `since` to `until`, inclusive.
pub fn each_day(since: NaiveDate, until: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    since.iter_days().take_while(move |d| *d <= until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_survive_a_restart_and_later_records_win() {
        let dir = tempfile::tempdir().unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let l = Ledger::new(dir.path());
        l.record(
            "ga4",
            each_day(d("2026-11-01"), d("2026-11-03")).map(|x| (x, DayState::Complete)),
        )
        .unwrap();
        l.record(
            "ga4",
            [(
                d("2026-11-03"),
                DayState::Incomplete {
                    reason: "quota".into(),
                },
            )],
        )
        .unwrap();
        let l2 = Ledger::new(dir.path());
        assert_eq!(l2.days("ga4").unwrap().len(), 3);
        assert_eq!(
            l2.incomplete("ga4").unwrap(),
            vec![(d("2026-11-03"), "quota".to_string())]
        );
        assert!(l2.days("meta").unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_ledger_is_an_error_naming_it() {
        crate::persist::assert_corrupt_file_is_named("ledger.json", |dir| {
            Ledger::new(dir).days("x")
        });
    }
}
