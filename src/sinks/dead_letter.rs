//! Dead-letter file: rows QuestDB refused and spool lines that could not be read, each with its
//! reason, appended as JSON lines to `<spool_dir>/dead-letter.jsonl` and fsynced before the sink
//! lets go of them. Nothing here is retried automatically: a person reads the reason, fixes the
//! cause, and re-imports the rows (`docs/runbooks.md`, "Rows rejected / dead-lettered").

use chrono::Utc;
use serde::Serialize;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::records::Record;

/// File name of the dead-letter file inside the spool folder.
pub const FILE_NAME: &str = "dead-letter.jsonl";

#[derive(Debug, thiserror::Error)]
#[error("dead-letter file {path}: {source}")]
pub struct DeadLetterError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// One entry.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry<'a> {
    /// A row QuestDB (or the ILP encoder) refused.
    Rejected {
        table: &'a str,
        /// Short class of the reason (the `reason` label of `adpulse_sink_rows_rejected_total`).
        class: &'a str,
        reason: &'a str,
        record: &'a Record,
    },
    /// A spool line that could not be read back.
    Unreadable {
        origin: &'a str,
        reason: &'a str,
        line: &'a str,
    },
}

#[derive(Serialize)]
struct Stamped<'a> {
    at: String,
    #[serde(flatten)]
    entry: &'a Entry<'a>,
}

/// The append-only dead-letter file.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    path: PathBuf,
}

impl DeadLetter {
    pub fn new(spool_dir: &Path) -> Self {
        Self {
            path: spool_dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append entries and fsync; only then may the caller drop the rows.
    pub fn append(&self, entries: &[Entry<'_>]) -> Result<(), DeadLetterError> {
        if entries.is_empty() {
            return Ok(());
        }
        let err = |source| DeadLetterError {
            path: self.path.clone(),
            source,
        };
        let at = Utc::now().to_rfc3339();
        let mut text = Vec::new();
        for entry in entries {
            serde_json::to_writer(
                &mut text,
                &Stamped {
                    at: at.clone(),
                    entry,
                },
            )
            .map_err(|e| err(std::io::Error::other(e)))?;
            text.push(b'\n');
        }
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        f.write_all(&text).map_err(err)?;
        f.sync_data().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let d = DeadLetter::new(dir.path());
        d.append(&[Entry::Unreadable {
            origin: "segment-000000000001.jsonl:3",
            reason: "checksum mismatch",
            line: "0000 {}",
        }])
        .unwrap();
        d.append(&[Entry::Unreadable {
            origin: "segment-000000000001.jsonl:4",
            reason: "not a record",
            line: "x",
        }])
        .unwrap();
        let text = std::fs::read_to_string(d.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], "unreadable");
        assert_eq!(lines[0]["origin"], "segment-000000000001.jsonl:3");
        assert_eq!(lines[1]["reason"], "not a record");
    }
}
