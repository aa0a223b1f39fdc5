//! Property-based fuzzing of the `detect` and `forecast` CSV readers: arbitrary bytes and
//! near-valid CSV (timestamps in every accepted style, far-apart and duplicate timestamps,
//! numbers, NaN, junk) never panic; each input gets either output or a typed error. The run is
//! bounded by the case count (no clock), and prints the executions it made.

use std::sync::atomic::{AtomicUsize, Ordering};

use adpulse::models::cli;
use proptest::prelude::*;

static RUNS: AtomicUsize = AtomicUsize::new(0);

fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..4_000_000_000).prop_map(|t| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default()
        }),
        (1_700_000_000i64..1_700_400_000).prop_map(|t| {
            chrono::DateTime::from_timestamp(t - t % 3600, 0)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default()
        }),
        (1_700_000_000i64..1_700_100_000).prop_map(|t| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        }),
        "[0-9:T -]{0,25}",
        Just(String::new()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|v| v.to_string()),
        (-1e3f64..1e6).prop_map(|v| format!("{v:.3}")),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just(String::new()),
        "[a-z0-9.,\"-]{0,8}",
    ]
}

fn csv_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec((timestamp(), value()), 0..120).prop_map(|rows| {
            let mut s = String::from("timestamp,value\n");
            for (t, v) in rows {
                s.push_str(&format!("{t},{v}\n"));
            }
            s.into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..400),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn readers_never_panic(input in csv_text(), horizon in 0usize..60) {
        RUNS.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        if let Ok(rows) = cli::detect_reader(input.as_slice(), None, &mut out) {
            // One output line per data row.
            prop_assert_eq!(String::from_utf8_lossy(&out).lines().count(), rows);
        }
        let mut out = Vec::new();
        if cli::forecast_reader(input.as_slice(), horizon, None, &mut out).is_ok() {
            prop_assert_eq!(String::from_utf8_lossy(&out).lines().count(), horizon);
        }
    }
}

#[test]
fn report_executions() {
    // Runs after (or alongside) the property; prints what the harness did.
    readers_never_panic();
    println!(
        "fuzzed detect/forecast readers: {} executions, 0 panics",
        RUNS.load(Ordering::Relaxed)
    );
}
