//! The functions behind `adpulse forecast`, `adpulse detect` and `adpulse eval ...`: CSV in,
//! CSV or Markdown tables out. The binary only parses arguments and calls these.

use std::io::Write;
use std::path::{Path, PathBuf};

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

pub use super::forecast::MAX_HORIZON;

/// The files behind `--input` arguments: a file as given, a folder as its `*.csv` files in
/// name order.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ModelError> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| ModelError::Io {
                    path: p.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "csv"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Runs `each` on every input; with more than one input, rows carry an `input` column. A bad
/// file does not stop the others: their output is written, and the failures are returned
/// together at the end.
fn for_inputs(
    inputs: &[PathBuf],
    out: &mut dyn Write,
    header: &str,
    mut each: impl FnMut(&Path, Option<&str>, &mut dyn Write) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let files = expand_inputs(inputs)?;
    let many = files.len() > 1;
    if many {
        writeln!(out, "input,{header}")?;
    } else {
        writeln!(out, "{header}")?;
    }
    let mut failures = Vec::new();
    for f in &files {
        let label = f.display().to_string();
        let label = csv_field(&label);
        if let Err(e) = each(f, many.then_some(label.as_str()), out) {
            if let ModelError::Write(_) = e {
                return Err(e);
            }
            failures.push((f.clone(), e));
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 if !many => Err(failures.remove(0).1),
        _ => Err(ModelError::Inputs {
            failed: failures.len(),
            total: files.len(),
            details: failures
                .iter()
                .map(|(p, e)| format!("{}: {e}", p.display()))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

const FORECAST_HEADER: &str =
    "timestamp,yhat,yhat_lower_80,yhat_upper_80,yhat_lower_95,yhat_upper_95";
const DETECT_HEADER: &str = "timestamp,value,expected,lower,upper,score,is_anomaly,state";

/// Reads `timestamp,value` CSVs and writes a forecast of `horizon` steps after each one's last
/// row: `[input,]timestamp,yhat,yhat_lower_80,yhat_upper_80,yhat_lower_95,yhat_upper_95`.
pub fn forecast_csv(
    inputs: &[PathBuf],
    horizon: usize,
    out: &mut dyn Write,
) -> Result<(), ModelError> {
    check_horizon(horizon)?;
    for_inputs(inputs, out, FORECAST_HEADER, |path, label, out| {
        let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        forecast_reader(file, horizon, label, out)
    })
}

fn check_horizon(horizon: usize) -> Result<(), ModelError> {
    forecast::check_horizon("--horizon", horizon)
}

/// The forecast of one CSV read from `reader` (no header line written); see [`forecast_csv`].
pub fn forecast_reader(
    reader: impl std::io::Read,
    horizon: usize,
    label: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), ModelError> {
    check_horizon(horizon)?;
    let (points, style) = series::read_csv(reader)?;
    let s = series::clean(&points, style)?;
    let cfg = ForecastConfig {
        festivals: Some(forecast::FestivalCalendar::default()),
        ..ForecastConfig::default()
    };
    let f = forecast::forecast(&s, horizon, &cfg)?;
    let prefix = label.map_or(String::new(), |l| format!("{l},"));
    for i in 0..f.yhat.len() {
        writeln!(
            out,
            "{prefix}{},{},{},{},{},{}",
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

/// Scores every row of `timestamp,value` CSVs with the streaming detector:
/// `[input,]timestamp,value,expected,lower,upper,score,is_anomaly,state`.
///
/// The output keeps the input: one row per input data row, in the input's order, with the
/// input's timestamp text. Rows are fed to the detector in time order (a stable sort, so a
/// duplicate timestamp is scored after the row it repeats, against the same expectation, and
/// not learned twice). `state` is `warmup` (not enough history yet: no band), `missing` (no
/// finite value), `normal`, `alert` (first anomalous row of an episode) or `anomalous`.
pub fn detect_csv(inputs: &[PathBuf], out: &mut dyn Write) -> Result<(), ModelError> {
    for_inputs(inputs, out, DETECT_HEADER, |path, label, out| {
        let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        detect_reader(file, label, out).map(|_| ())
    })
}

/// The detection of one CSV read from `reader` (no header line written); returns the rows
/// written. See [`detect_csv`].
pub fn detect_reader(
    reader: impl std::io::Read,
    label: Option<&str>,
    out: &mut dyn Write,
) -> Result<usize, ModelError> {
    let (rows, style) = series::read_csv_rows(reader)?;
    if rows.is_empty() {
        return Err(ModelError::Empty);
    }
    let points: Vec<series::Point> = rows.iter().map(|r| r.point).collect();
    // The step comes from the cleaned copy; a series too short to infer one is hourly.
    let step = match series::clean(&points, style) {
        Ok(s) => s.step_secs,
        Err(e @ ModelError::TooLarge { .. }) => return Err(e),
        Err(_) => 3600,
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].point.ts);
    let mut det = Detector::new(DetectorConfig::for_step(step));
    let mut scored = vec![None; rows.len()];
    for i in order {
        scored[i] = Some(det.update(rows[i].point.ts, rows[i].point.value));
    }
    let prefix = label.map_or(String::new(), |l| format!("{l},"));
    for (row, r) in rows.iter().zip(scored) {
        let Some(r) = r else { continue };
        writeln!(
            out,
            "{prefix}{},{},{},{},{},{:.4},{},{}",
            csv_field(&row.ts_text),
            num(row.point.value),
            num(r.expected),
            num(r.lower),
            num(r.upper),
            r.score,
            r.is_anomaly,
            r.state.name()
        )?;
    }
    Ok(rows.len())
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
