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

/// Where Prometheus text is written: a `String`, or the `/metrics` body, which may hand what it
/// holds to its deflate stream at a [`TextOut::boundary`] (between two families, where nothing
/// written can still be taken back).
pub trait TextOut {
    /// The text being written.
    fn text(&mut self) -> &mut String;
    /// A family ends here.
    fn boundary(&mut self) {}
}

impl TextOut for String {
    fn text(&mut self) -> &mut String {
        self
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

/// Append a Prometheus text-format sample value and the line's end, as `{value}` writes it.
/// Integers (most samples: counts, whole rupees) go through `itoa`, which skips the float
/// formatter; the other values through the float formatter. (`ryu` was tried for them and
/// writes a different last digit from `{}` for some 17-digit values, e.g. 262093747196789.12
/// against .13: both read back as the same f64, but the text would change.)
pub fn push_sample_value(out: &mut String, value: f64) {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        if value == 0.0 && value.is_sign_negative() {
            // `{}` of -0.0 is "-0"
            out.push_str("-0\n");
        } else {
            out.push_str(itoa::Buffer::new().format(value as i64));
            out.push('\n');
        }
    } else {
        use std::fmt::Write as _;
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
            0.0,
            -0.0,
            3630.0,
            -12.0,
            0.25,
            1e15,
            1e16,
            123456.789,
            -1.5e-7,
            1e-5,
            -1e-5,
            9.99e-6,
            0.1 + 0.2,
            999_999_999_999_999.9,
            -999_999_999_999_999.9,
            1e15 + 0.5,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::EPSILON,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut s = String::new();
            push_sample_value(&mut s, v);
            assert_eq!(s, format!("{v}\n"), "{v}");
        }
    }

    /// The fast paths against `{}` over values of every kind: random bit patterns (every
    /// exponent), money-like decimals (cents and paise over sums and ratios), and the
    /// neighbours of the range edges.
    #[test]
    fn sample_values_match_the_float_formatter_over_random_values() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        let mut s = String::new();
        let mut check = |v: f64| {
            s.clear();
            push_sample_value(&mut s, v);
            assert_eq!(s, format!("{v}\n"), "{:e} (bits {:#x})", v, v.to_bits());
        };
        for _ in 0..300_000 {
            check(f64::from_bits(rng.random()));
            let cents: i64 = rng.random_range(-10_000_000_000..10_000_000_000);
            check(cents as f64 / 100.0);
            check(cents as f64 / rng.random_range(1..10_000) as f64);
            check(rng.random::<f64>());
            check(rng.random::<f64>() * 1e-4);
        }
        for edge in [1e-5_f64, 1e15, 1e16] {
            let mut up = edge;
            let mut down = edge;
            for _ in 0..1000 {
                up = f64::from_bits(up.to_bits() + 1);
                down = f64::from_bits(down.to_bits() - 1);
                check(up);
                check(down);
                check(-up);
                check(-down);
            }
        }
    }
}
