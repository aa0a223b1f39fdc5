//! Persisted sync state per source: how far each source has synced (so a restart after a long
//! outage fills the gap instead of only re-reading the look-back window) and how far a backfill
//! got (so an interrupted `adpulse backfill` resumes). One JSON file, replaced atomically.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceCursor {
    /// Last day (account timezone) included in a successful poll.
    pub synced_until: Option<NaiveDate>,
    /// An unfinished or finished backfill: its range and the last day written.
    pub backfill: Option<BackfillProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillProgress {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub done_until: Option<NaiveDate>,
}

#[derive(Debug, thiserror::Error)]
#[error("sync state {path}: {reason}")]
pub struct CursorError {
    pub path: PathBuf,
    pub reason: String,
}

/// The cursor file.
#[derive(Debug)]
pub struct CursorStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl CursorStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("cursors.json"),
            lock: Mutex::new(()),
        }
    }

    /// The state dir this store lives in (the completeness ledger sits beside it).
    pub fn state_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn err(&self, reason: impl ToString) -> CursorError {
        CursorError {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    fn read(&self) -> Result<BTreeMap<String, SourceCursor>, CursorError> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| self.err(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(self.err(e)),
        }
    }

    pub fn get(&self, source: &str) -> Result<SourceCursor, CursorError> {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(self.read()?.remove(source).unwrap_or_default())
    }

    /// Read-modify-write one source's cursor.
    pub fn update(
        &self,
        source: &str,
        f: impl FnOnce(&mut SourceCursor),
    ) -> Result<(), CursorError> {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all = self.read()?;
        f(all.entry(source.to_string()).or_default());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&all).map_err(|e| self.err(e))?;
        std::fs::write(&tmp, text).map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))
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
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cursors.json"), "{oops").unwrap();
        let e = CursorStore::new(dir.path()).get("meta").unwrap_err();
        assert!(e.to_string().contains("cursors.json"), "{e}");
    }
}
