//! Persisted sync state per source: how far each source has synced (so a restart after a long
//! outage fills the gap instead of only re-reading the look-back window).
//! One JSON file, replaced atomically ([`crate::persist`]). (Backfill progress lives in the
//! completeness ledger, `ledger.rs`.)

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::persist::{JsonFile, KeyedFile, StateFileError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceCursor {
    /// Last day (account timezone) included in a successful poll.
    pub synced_until: Option<NaiveDate>,
}

/// A cursor file that cannot be read or written (it names the file).
pub type CursorError = StateFileError;

/// The cursor file (`<state_dir>/cursors.json`), through the one state-file helper.
#[derive(Debug)]
pub struct CursorStore {
    file: KeyedFile<SourceCursor>,
}

impl CursorStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            file: JsonFile::new(state_dir.join("cursors.json")),
        }
    }

    /// The state dir this store lives in (the completeness ledger sits beside it).
    pub fn state_dir(&self) -> &Path {
        self.file.path().parent().unwrap_or(Path::new("."))
    }

    pub fn get(&self, source: &str) -> Result<SourceCursor, CursorError> {
        self.file.get(source)
    }

    /// Read-modify-write one source's cursor.
    pub fn update(
        &self,
        source: &str,
        f: impl FnOnce(&mut SourceCursor),
    ) -> Result<(), CursorError> {
        self.file.update_key(source, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let s = CursorStore::new(dir.path());
        assert_eq!(s.get("meta").unwrap(), SourceCursor::default());
        s.update("meta", |c| c.synced_until = Some(d)).unwrap();
        s.update("ga4", |c| c.synced_until = Some(d - chrono::Days::new(1)))
            .unwrap();
        let s2 = CursorStore::new(dir.path());
        assert_eq!(s2.get("meta").unwrap().synced_until, Some(d));
        assert_eq!(
            s2.get("ga4").unwrap().synced_until,
            Some(d - chrono::Days::new(1))
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        crate::persist::assert_corrupt_file_is_named("cursors.json", |dir| {
            CursorStore::new(dir).get("meta")
        });
    }
}
