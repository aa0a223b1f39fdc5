//! Rolling-origin forecast backtest on the NAB series and on seeded demo-like hourly spend:
//! asserts the floors of issue 4 (mean MASE < 1, 80% intervals covering 70-90%).

mod common;

use adpulse::models::eval::backtest::{self, BacktestConfig};
use adpulse::models::forecast::Method;

#[test]
fn holt_winters_beats_seasonal_naive_with_calibrated_intervals() {
    let dir = common::dataset("datasets/nab");
    let series = match backtest::standard_series(&dir) {
        Ok(s) => s,
        Err(e) => panic!("cannot load the backtest series: {e}"),
    };
    assert_eq!(series.len(), 7, "4 NAB files + 3 demo series");
    let bt = BacktestConfig::default();
    let rows = match backtest::run(&series, &[Method::HoltWinters, Method::SeasonalNaive], &bt) {
        Ok(r) => r,
        Err(e) => panic!("backtest failed: {e}"),
    };
    println!("{}", backtest::render(&rows, &bt));
    for group in ["exchange", "demo"] {
        let sel: Vec<_> = rows
            .iter()
            .filter(|r| r.method == "holt-winters" && r.series.contains(group))
            .cloned()
            .collect();
        let (mase, c80, _) = backtest::summary(&sel, "holt-winters");
        assert!(mase < 1.0, "{group}: mean MASE {mase:.3}");
        assert!(
            (0.70..=0.90).contains(&c80),
            "{group}: 80% coverage {c80:.3}"
        );
    }
    let (hw, _, _) = backtest::summary(&rows, "holt-winters");
    let (naive, _, _) = backtest::summary(&rows, "seasonal-naive");
    assert!(
        hw < naive,
        "holt-winters {hw:.3} vs seasonal naive {naive:.3}"
    );
}

/// Prints the full comparison table, including augurs MSTL when built with `--features augurs`:
/// `cargo test --release --features augurs --test models_backtest -- --ignored --nocapture`
#[test]
#[ignore = "slow comparison run for docs/models.md"]
fn print_backtest_report() {
    let mut out = Vec::new();
    if let Err(e) =
        adpulse::models::cli::backtest_report(&common::dataset("datasets/nab"), &mut out)
    {
        panic!("backtest report: {e}");
    }
    println!("{}", String::from_utf8_lossy(&out));
    assert!(!out.is_empty());
}
