//! Leaf types shared across the crate: validation problems and redacted secrets.
//!
//! This module imports nothing of ours, so every other module can depend on it without creating an
//! import cycle (config composes component configs; components report `Problem`s).

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `m` even when a thread panicked holding it: what it guards are plain values (figures,
/// the newest error text, a file lock) that a panic elsewhere does not make wrong, and a service
/// that stops on a poisoned lock would lose more than it protects.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One validation problem, with the key it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A secret string whose `Debug`/`Display` never show the value.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
