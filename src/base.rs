//! Leaf types shared across the crate: validation problems, redacted secrets, and the two
//! Prometheus text-format writers (label value, sample value) every `/metrics` family uses.
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

/// Append a Prometheus text-format label value, escaped as the format requires (`\`, `\n`, `"`).
/// The one escaper of the crate: `/metrics` and the profit families both write through it.
pub fn push_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '\n', '"']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Append a Prometheus text-format sample value and the line's end. Integers (most samples:
/// counts, whole rupees) skip the float formatter; the text is the same as `{value}` writes.
pub fn push_sample_value(out: &mut String, value: f64) {
    use std::fmt::Write as _;
    if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = writeln!(out, "{}", value as i64);
        if value == 0.0 && value.is_sign_negative() {
            // `{}` of -0.0 is "-0"; keep what the float formatter writes
            out.truncate(out.len() - 2);
            out.push_str("-0\n");
        }
    } else {
        let _ = writeln!(out, "{value}");
    }
}

/// Hand the allocator's free pages back to the system (glibc's `malloc_trim`). glibc keeps
/// what a thread freed in that thread's arena; at 10,000 campaigns the refresher's snapshot
/// and 40 MiB body, the models' slices and the sink's batches are freed on other threads than
/// they were made on, and the process held about twice its live heap (heaptrack against
/// `VmRSS`, docs/benchmarks.md). Called after each refresh; a no-op off glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_text_format_says() {
        // exposition format: backslash, double quote and line feed are escaped, nothing else
        let mut s = String::new();
        push_label_value(&mut s, "a\\b\"c\nd é");
        assert_eq!(s, "a\\\\b\\\"c\\nd é");
    }

    #[test]
    fn sample_values_read_as_the_float_formatter_writes_them() {
        for v in [
            0.0, -0.0, 3630.0, -12.0, 0.25, 1e15, 1e16, 123456.789, -1.5e-7,
        ] {
            let mut s = String::new();
            push_sample_value(&mut s, v);
            assert_eq!(s, format!("{v}\n"), "{v}");
        }
    }
}
