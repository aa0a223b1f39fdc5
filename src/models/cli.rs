//! The functions behind `adpulse forecast`, `adpulse detect` and `adpulse eval ...`: CSV in,
//! CSV or Markdown tables out. The binary only parses arguments and calls these.

use std::io::Write;
use std::path::Path;

use super::ModelError;
use super::anomaly::{Detector, DetectorConfig};
use super::eval::EvalError;
use super::eval::backtest::{self, BacktestConfig};
use super::eval::nab;
use super::forecast::{self, ForecastConfig, Method};
use super::series;

fn num(x: f64) -> String {
    if x.is_finite() {
        let s = format!("{x:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" || s == "-0" {
            "0".into()
        } else {
            s.to_string()
        }
    } else {
        String::new()
    }
}

/// Reads a `timestamp,value` CSV and writes a forecast of `horizon` steps after its last row:
/// `timestamp,yhat,yhat_lower_80,yhat_upper_80,yhat_lower_95,yhat_upper_95`.
pub fn forecast_csv(input: &Path, horizon: usize, out: &mut dyn Write) -> Result<(), ModelError> {
    let s = series::load_csv(input)?;
    let cfg = ForecastConfig {
        festivals: Some(forecast::FestivalCalendar::default()),
        ..ForecastConfig::default()
    };
    let f = forecast::forecast(&s, horizon, &cfg)?;
    writeln!(
        out,
        "timestamp,yhat,yhat_lower_80,yhat_upper_80,yhat_lower_95,yhat_upper_95"
    )?;
    for i in 0..f.yhat.len() {
        writeln!(
            out,
            "{},{},{},{},{},{}",
            f.style.format(f.start + f.step_secs * i as i64),
            num(f.yhat[i]),
            num(f.lower_80[i]),
            num(f.upper_80[i]),
            num(f.lower_95[i]),
            num(f.upper_95[i])
        )?;
    }
    Ok(())
}

/// Reads a `timestamp,value` CSV and scores every row in time order with the streaming detector:
/// `timestamp,value,expected,lower,upper,score,is_anomaly`. Rows are sorted and de-duplicated
/// (last row wins) first; rows without a finite value are skipped; `lower` and `upper` are empty
/// during the warm-up (the first three cycles).
pub fn detect_csv(input: &Path, out: &mut dyn Write) -> Result<(), ModelError> {
    let (points, style) = series::read_csv_path(input)?;
    let s = series::clean(&points, style)?;
    let mut det = Detector::new(DetectorConfig::for_step(s.step_secs));
    writeln!(out, "timestamp,value,expected,lower,upper,score,is_anomaly")?;
    for (k, v) in s.values.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        let ts = s.ts(k);
        let r = det.update(ts, *v);
        writeln!(
            out,
            "{},{},{},{},{},{:.4},{}",
            style.format(ts),
            num(*v),
            num(r.expected),
            num(r.lower),
            num(r.upper),
            r.score,
            r.is_anomaly
        )?;
    }
    Ok(())
}

/// Runs the NAB evaluation on every file of `dir` (with `windows-all.json`) and prints the
/// tables: per category and overall, leave-one-category-out, the threshold sweep, per file.
pub fn nab_report(dir: &Path, out: &mut dyn Write) -> Result<(), EvalError> {
    let e = nab::evaluate(dir)?;
    writeln!(out, "## NAB development data, one parameter set").map_err(ModelError::Write)?;
    writeln!(out).map_err(ModelError::Write)?;
    write!(out, "{}", nab::render(&e)).map_err(ModelError::Write)?;
    Ok(())
}

/// Runs the rolling-origin backtest on the NAB files of `nab_dir` and on seeded demo-like spend,
/// for Holt-Winters, the seasonal naive benchmark and (with the `augurs` feature) augurs MSTL,
/// and prints the table.
pub fn backtest_report(nab_dir: &Path, out: &mut dyn Write) -> Result<(), EvalError> {
    let series = backtest::standard_series(nab_dir)?;
    let mut methods = vec![Method::HoltWinters, Method::SeasonalNaive];
    if cfg!(feature = "augurs") {
        methods.push(Method::Mstl);
    }
    let bt = BacktestConfig::default();
    let rows = backtest::run(&series, &methods, &bt)?;
    writeln!(out, "## Forecast backtest").map_err(ModelError::Write)?;
    writeln!(out).map_err(ModelError::Write)?;
    write!(out, "{}", backtest::render(&rows, &bt)).map_err(ModelError::Write)?;
    Ok(())
}

/// Customer segments (RFM + KMeans) and CLV on an order file
/// (`InvoiceNo,InvoiceDate,CustomerID,TotalPrice`), with the last 90 days held out.
pub fn segments_report(orders: &Path, out: &mut dyn Write) -> Result<(), ModelError> {
    let orders = super::segments::read_orders(orders)?;
    let eval = super::segments::evaluate(&orders, 90)?;
    writeln!(out, "## Customer segments and CLV")?;
    writeln!(out)?;
    write!(out, "{}", super::segments::render(&eval))?;
    Ok(())
}

/// Campaign score and conversion probability, fitted and evaluated on seeded synthetic data.
pub fn scoring_report(out: &mut dyn Write) -> Result<(), ModelError> {
    let (campaign, ce, conv, ve) = super::scoring::evaluate_synthetic()?;
    writeln!(out, "## Campaign score and conversion probability")?;
    writeln!(out)?;
    write!(
        out,
        "{}",
        super::scoring::render(&[(&campaign, &ce), (&conv, &ve)])
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn numbers_are_compact() {
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(-0.0000001), "0");
        assert_eq!(num(f64::NAN), "");
    }
}
