//! Disk spool for the QuestDB sink: JSON-lines segment files, oldest first, each deleted only after
//! QuestDB acknowledged its rows. It is bounded (`spool_max_bytes`); when full the sink stops
//! taking rows (back-pressure) instead of dropping any.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::records::Record;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "spool full: {bytes} bytes used of questdb.spool_max_bytes = {max} in {path}; sources are paused until QuestDB takes rows again"
    )]
    Full { bytes: u64, max: u64, path: PathBuf },
    #[error("spool segment {path} line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    rows: usize,
    bytes: u64,
}

/// The spool: a queue of segment files.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segments: VecDeque<Segment>,
    next_seq: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Open (or create) the spool folder and pick up segments left by a previous run.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(seq) = name
                .strip_prefix("segment-")
                .and_then(|s| s.strip_suffix(".jsonl"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                found.push((seq, entry.path()));
            }
        }
        found.sort();
        let mut segments = VecDeque::new();
        for (_, path) in &found {
            let bytes = fs::metadata(path).map_err(io(path))?.len();
            let f = fs::File::open(path).map_err(io(path))?;
            let rows = BufReader::new(f).lines().count();
            segments.push_back(Segment {
                path: path.clone(),
                rows,
                bytes,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            next_seq: found.last().map(|(s, _)| s + 1).unwrap_or(0),
            segments,
        })
    }

    pub fn rows(&self) -> usize {
        self.segments.iter().map(|s| s.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Append rows as a new segment; `Full` (and nothing written) if it would exceed the bound.
    pub fn push(&mut self, rows: &[Record]) -> Result<(), SpoolError> {
        let mut text = Vec::with_capacity(rows.len() * 256);
        for r in rows {
            serde_json::to_writer(&mut text, r).map_err(|e| SpoolError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(e),
            })?;
            text.push(b'\n');
        }
        let used = self.bytes();
        if used + text.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full {
                bytes: used,
                max: self.max_bytes,
                path: self.dir.clone(),
            });
        }
        let path = self
            .dir
            .join(format!("segment-{:012}.jsonl", self.next_seq));
        let tmp = path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&text).map_err(io(&tmp))?;
            f.sync_data().map_err(io(&tmp))?;
        }
        // rename is atomic: a crash never leaves a half-written segment behind
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.next_seq += 1;
        self.segments.push_back(Segment {
            path,
            rows: rows.len(),
            bytes: text.len() as u64,
        });
        Ok(())
    }

    /// Read the oldest segment without removing it.
    pub fn peek(&self) -> Result<Option<Vec<Record>>, SpoolError> {
        let Some(seg) = self.segments.front() else {
            return Ok(None);
        };
        let f = fs::File::open(&seg.path).map_err(io(&seg.path))?;
        let mut out = Vec::with_capacity(seg.rows);
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(io(&seg.path))?;
            let r: Record = serde_json::from_str(&line).map_err(|e| SpoolError::Corrupt {
                path: seg.path.clone(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            out.push(r);
        }
        Ok(Some(out))
    }

    /// Delete the oldest segment (after its rows were acknowledged).
    pub fn pop(&mut self) -> Result<(), SpoolError> {
        if let Some(seg) = self.segments.pop_front() {
            fs::remove_file(&seg.path).map_err(io(&seg.path))?;
        }
        Ok(())
    }

    /// Set a corrupt oldest segment aside (renamed `.corrupt`, kept for a person to inspect).
    pub fn quarantine(&mut self) -> Result<PathBuf, SpoolError> {
        match self.segments.pop_front() {
            Some(seg) => {
                let to = seg.path.with_extension("corrupt");
                fs::rename(&seg.path, &to).map_err(io(&seg.path))?;
                Ok(to)
            }
            None => Ok(self.dir.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Bucket, FunnelStep};

    fn rows(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::Funnel(FunnelStep {
                    ts: "2026-11-20T10:30:00Z".parse().unwrap(),
                    bucket: Bucket::Hour,
                    day: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
                    stage: "view_item".into(),
                    traffic_source: format!("s{i}"),
                    source: "t".into(),
                    count: i as u64,
                })
            })
            .collect()
    }

    #[test]
    fn segments_survive_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(&rows(3)).unwrap();
        s.push(&rows(2)).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.rows(), 5);
        assert_eq!(s.peek().unwrap().unwrap().len(), 3);
        s.pop().unwrap();
        assert_eq!(s.peek().unwrap().unwrap(), rows(2));
        s.pop().unwrap();
        assert!(s.is_empty());
        assert!(s.peek().unwrap().is_none());
    }

    #[test]
    fn full_spool_refuses_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 600).unwrap();
        s.push(&rows(2)).unwrap();
        let e = s.push(&rows(10)).unwrap_err();
        assert!(matches!(e, SpoolError::Full { .. }));
        assert!(e.to_string().contains("spool_max_bytes"), "{e}");
        assert_eq!(s.rows(), 2);
    }

    #[test]
    fn corrupt_segment_is_reported_with_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("segment-000000000000.jsonl"),
            "{\"table\":\"funnel\"}\nnot json\n",
        )
        .unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let e = s.peek().unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let moved = s.quarantine().unwrap();
        assert!(moved.exists());
        assert!(s.is_empty());
    }
}
