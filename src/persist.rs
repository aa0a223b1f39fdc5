//! JSON state files on disk: the one place that reads and replaces them (sync cursors, the
//! completeness ledger, the actions' decisions). A write is atomic and durable — a temporary file
//! beside the target, fsynced, renamed over it, and the directory fsynced so the rename survives a
//! power cut — so a crash leaves the old file or the new one, never half of one. A missing file is
//! "nothing recorded yet"; a file that is there but cannot be read or parsed is an error naming
//! it, never silently replaced (it holds decisions or progress someone relies on).
//!
//! It imports only the leaf `base`: sources and actions both use it without a cycle. (`state.rs` is
//! the in-memory KPI store, a different thing.)

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::base::lock;

/// Why a state file could not be loaded or saved. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("state file {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid ({source}); it is left as it is: fix or move it away")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {path}: cannot encode: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Replace `path` with `data` atomically and durably (temp file + fsync + rename + dir fsync).
/// The parent folder is created if missing.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // the rename itself is durable only once the directory is
    let d = std::fs::File::open(dir.unwrap_or(Path::new(".")))?;
    d.sync_all()
}

/// One JSON state file holding a `T`, with a lock so read-modify-write cycles of one process do
/// not interleave.
#[derive(Debug)]
pub struct JsonFile<T> {
    path: PathBuf,
    lock: Mutex<()>,
    content: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> JsonFile<T> {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
            content: PhantomData,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        lock(&self.lock)
    }

    fn read(&self) -> Result<Option<T>, StateFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateFileError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateFileError::Corrupt {
                path: self.path.clone(),
                source,
            })
    }

    fn write(&self, value: &T) -> Result<(), StateFileError> {
        let data = serde_json::to_vec_pretty(value).map_err(|source| StateFileError::Encode {
            path: self.path.clone(),
            source,
        })?;
        write_atomic(&self.path, &data).map_err(|source| StateFileError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// The content, `None` when the file does not exist yet.
    pub fn load(&self) -> Result<Option<T>, StateFileError> {
        let _g = self.guard();
        self.read()
    }

    /// Replace the content.
    pub fn save(&self, value: &T) -> Result<(), StateFileError> {
        let _g = self.guard();
        self.write(value)
    }
}

impl<T: Serialize + DeserializeOwned + Default> JsonFile<T> {
    /// The content, the default when the file does not exist yet.
    pub fn load_or_default(&self) -> Result<T, StateFileError> {
        Ok(self.load()?.unwrap_or_default())
    }

    /// Read, change with `f`, write back, under the lock. Nothing is written when the file cannot
    /// be read.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, StateFileError> {
        let _g = self.guard();
        let mut value = self.read()?.unwrap_or_default();
        let r = f(&mut value);
        self.write(&value)?;
        Ok(r)
    }
}

/// A JSON state file of one `V` per key (per source: sync cursors, ledger days).
pub type KeyedFile<V> = JsonFile<std::collections::BTreeMap<String, V>>;

impl<V: Serialize + DeserializeOwned + Default> KeyedFile<V> {
    /// The value kept under `key`; its default when there is none.
    pub fn get(&self, key: &str) -> Result<V, StateFileError> {
        Ok(self.load_or_default()?.remove(key).unwrap_or_default())
    }

    /// Read-modify-write the value under `key` (its default when there is none yet).
    pub fn update_key<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, StateFileError> {
        self.update(|all| f(all.entry(key.to_string()).or_default()))
    }
}

/// A path `name` inside a fresh temporary folder, for tests: the folder is removed when the
/// returned guard is dropped.
#[cfg(test)]
pub(crate) fn temp_path(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// For tests: `read` of a folder holding a corrupt `name` fails with an error naming the file.
#[cfg(test)]
pub(crate) fn assert_corrupt_file_is_named<T: std::fmt::Debug>(
    name: &str,
    read: impl FnOnce(&Path) -> Result<T, StateFileError>,
) {
    let (dir, path) = temp_path(name);
    std::fs::write(&path, "{oops").unwrap();
    let e = read(dir.path()).unwrap_err();
    assert!(e.to_string().contains(name), "{e}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn missing_is_default_and_updates_survive_a_reopen() {
        let (dir, path) = temp_path("sub/state.json");
        let f: JsonFile<BTreeMap<String, u32>> = JsonFile::new(&path);
        assert_eq!(f.load().unwrap(), None);
        assert!(f.load_or_default().unwrap().is_empty());
        f.update(|m| m.insert("a".into(), 1)).unwrap();
        f.update(|m| m.insert("b".into(), 2)).unwrap();
        let again: JsonFile<BTreeMap<String, u32>> = JsonFile::new(&path);
        assert_eq!(
            again.load().unwrap(),
            Some(BTreeMap::from([("a".into(), 1), ("b".into(), 2)]))
        );
        // no temporary file is left beside it
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_corrupt_file_is_named_and_left_alone() {
        let (_dir, path) = temp_path("cursors.json");
        std::fs::write(&path, "{oops").unwrap();
        let f: JsonFile<BTreeMap<String, u32>> = JsonFile::new(&path);
        let e = f.update(|m| m.insert("a".into(), 1)).unwrap_err();
        assert!(matches!(e, StateFileError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("cursors.json"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{oops");
    }
}
