//! The `adpulse` binary: parses arguments and calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// jemalloc as the binary's allocator (the library and its tests keep the system one). glibc
/// keeps freed pages per thread arena; jemalloc with background purging returns them within a
/// second: 653 MiB steady and 804 MiB peak at 10,002 campaigns against glibc's 762 and 988
/// (docs/benchmarks.md, "Allocators").
#[cfg(all(
    target_os = "linux",
    not(target_env = "musl"),
    not(feature = "system-allocator")
))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start (`_RJEM_MALLOC_CONF` in the environment overrides
/// them): purge freed pages from a background thread, dirty pages after 1 s, no lazy
/// ("muzzy") stage; one arena (not four per core: each kept its own partly used pages, and
/// the service's work is a few threads taking turns), and thread caches for small sizes only.
/// At 10,002 campaigns one arena held 389 MiB steady and 442 MiB at peak against four per
/// core's 419 and 497 (docs/benchmarks.md, session 28).
#[cfg(all(
    target_os = "linux",
    not(target_env = "musl"),
    not(feature = "system-allocator")
))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 86] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1,tcache_max:1024\0";

#[derive(Parser)]
#[command(
    name = "adpulse",
    version,
    about = "Is our ad spend making or losing money, right now?"
)]
struct Cli {
    /// Config file (TOML). Without it, the embedded demo configuration is used.
    #[arg(long, short, global = true, env = "ADPULSE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Collect, store and serve metrics (the default).
    Run,
    /// Validate the configuration without touching the network; lists every problem with its key.
    CheckConfig,
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Re-read a date range from one API source into QuestDB: progress bar, throttling honoured,
    /// resumable (re-run the same command after an interruption).
    Backfill {
        /// Name of a configured source.
        #[arg(long)]
        source: String,
        /// First day (the account's timezone), YYYY-MM-DD.
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day, inclusive.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Days per request.
        #[arg(long, default_value_t = 7)]
        chunk_days: u32,
    },
    /// Import a CSV export (Meta Ads Manager, Google Ads report, Shopify orders) into QuestDB
    /// through the pipeline. Streams the file (UTF-8, UTF-16 or Latin-1; comma, tab or
    /// semicolon); rows sharing a campaign-day or order are summed; every bad row is listed with
    /// line, column and reason, summary rows are reported as skipped, and the exit code is 2
    /// when any row was bad.
    Import {
        #[arg(long, value_enum)]
        format: adpulse::sources::csv_import::ImportFormat,
        file: PathBuf,
        /// Account id when the file has none.
        #[arg(long, default_value = "csv")]
        account: String,
        /// ISO currency code of the amounts when the file has no currency column or header
        /// unit. There is no default: amounts of unknown currency are row errors.
        #[arg(long)]
        currency: Option<String>,
        /// Timezone of the account or shop.
        #[arg(long, default_value = "Asia/Kolkata")]
        timezone: chrono_tz::Tz,
        /// Read 03/04/2026 as March 4 (US exports); the default is day first (3 April).
        #[arg(long)]
        month_first: bool,
        /// Decimal separator for cells such as "1,234" that do not tell; auto reads it from
        /// the header's language.
        #[arg(long, value_enum, default_value = "auto")]
        decimal: adpulse::sources::csv_import::DecimalStyle,
        /// Spread a row that covers several days evenly over them (approximate; money split
        /// exactly) instead of rejecting it.
        #[arg(long)]
        allow_ranges: bool,
        /// Parse and validate only; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Forecast a `timestamp,value` CSV: point, 80% and 95% bands per future step (CSV out).
    Forecast {
        /// A CSV file, or a folder of them; repeat for more (rows then start with `input`).
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
        /// Steps ahead, in the series' own step (hours for hourly data).
        #[arg(long, default_value_t = 48)]
        horizon: usize,
    },
    /// Score every row of a `timestamp,value` CSV as it would be streamed: expected band, score
    /// in [0,1] and anomaly flag (CSV out).
    Detect {
        /// A CSV file, or a folder of them; repeat for more (rows then start with `input`).
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
    },
    /// Print the held-out evaluations of the models.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Measurements for docs/benchmarks.md.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Add, change or remove people of the action center (the users file,
    /// `actions.web.users_file`).
    #[command(subcommand)]
    User(adpulse::commands::user::UserCommand),
    /// Exit 0 if URL answers 2xx (the container health check; no curl in the image).
    Probe {
        /// e.g. http://127.0.0.1:9464/healthz
        url: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Rows/s into QuestDB: adpulse's sink against a bare questdb-rs loop, alternating.
    Ingest {
        /// QuestDB HTTP endpoint (a scratch instance: rows are written to its tables).
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        questdb_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// KPI snapshot and /metrics render time and size for N live campaigns.
    Metrics {
        #[arg(long, default_value_t = 10_000)]
        campaigns: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// The models' first pass over N campaigns' backfill, and one live hour's pass (no
    /// QuestDB: scoring and fitting only).
    Models {
        #[arg(long, default_value_t = 10_000)]
        campaigns: usize,
        #[arg(long, default_value_t = 8)]
        days: usize,
    },
    /// The agency-scale scenario: `adpulse run` on the demo at N campaigns (models and actions
    /// on), backfill, live, concurrent scrapers, then SIGINT; prints RSS, snapshot, render,
    /// scrape latency and shutdown time.
    Scale(adpulse::bench::ScaleOptions),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Anomaly detection on the NAB ad-exchange series with labelled windows.
    Nab {
        #[arg(long, default_value = "datasets/nab")]
        dir: PathBuf,
    },
    /// Rolling-origin forecast backtest (MASE against seasonal naive, interval coverage).
    Backtest {
        #[arg(long, default_value = "datasets/nab")]
        nab_dir: PathBuf,
    },
    /// RFM + KMeans customer segments and CLV on an order history.
    Segments {
        #[arg(long, default_value = "datasets/online-retail/invoices.csv")]
        orders: PathBuf,
    },
    /// Campaign score and conversion probability.
    Scoring,
    /// BG/NBD + Gamma-Gamma CLV fitted on CDNOW (39 weeks calibration, 39 holdout) next to the
    /// published figures, and on UCI Online Retail.
    Clv {
        #[arg(long, default_value = "datasets/cdnow/CDNOW_sample.txt")]
        cdnow: PathBuf,
        #[arg(long, default_value = "datasets/online-retail/invoices.csv")]
        orders: PathBuf,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command.unwrap_or(Command::Run) {
        Command::DefaultConfig => {
            print!("{}", adpulse::config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::Backfill {
            source,
            from,
            to,
            chunk_days,
        } => {
            let cfg = adpulse::config::Config::load(cli.config.as_deref())?;
            cfg.validate()?;
            let s = runtime()?
                .block_on(adpulse::commands::backfill::backfill(
                    &cfg,
                    &source,
                    from,
                    to,
                    chunk_days,
                    std::io::IsTerminal::is_terminal(&std::io::stderr()),
                ))
                .map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "{source}: {} days, {} rows written{}{}",
                s.days,
                s.rows,
                s.resumed_from
                    .map(|d| format!(", resumed from {d}"))
                    .unwrap_or_default(),
                if !s.waits.is_empty() {
                    format!(", {} throttle waits", s.waits.len())
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Command::Import {
            format,
            file,
            account,
            currency,
            timezone,
            month_first,
            decimal,
            allow_ranges,
            dry_run,
        } => {
            let cfg = adpulse::config::Config::load(cli.config.as_deref())?;
            let today = chrono::Utc::now().with_timezone(&timezone).date_naive();
            let mut opts =
                adpulse::sources::csv_import::ImportOptions::new(account, timezone, today);
            opts.currency = currency;
            opts.day_first = !month_first;
            opts.decimal = decimal;
            opts.allow_ranges = allow_ranges;
            let s = runtime()?.block_on(adpulse::commands::import::import_file(
                &cfg, format, &file, &opts, dry_run,
            ))?;
            print_import_summary(&file, &s, dry_run);
            if s.dead_lettered > 0 {
                eprintln!(
                    "{}: {} records refused by QuestDB, not stored: they are in {} with its reason",
                    file.display(),
                    s.dead_lettered,
                    cfg.questdb.spool_dir.join("dead-letter.jsonl").display()
                );
            }
            if s.spooled > 0 {
                eprintln!(
                    "{}: {} of the stored records are held in the spool (QuestDB went down): the next `adpulse run` writes them",
                    file.display(),
                    s.spooled
                );
            }
            if !s.rejected.is_empty() || s.dead_lettered > 0 {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Forecast { input, horizon } => {
            let mut out = std::io::stdout().lock();
            adpulse::models::cli::forecast_csv(&input, horizon, &mut out)?;
            Ok(())
        }
        Command::Detect { input } => {
            let mut out = std::io::stdout().lock();
            adpulse::models::cli::detect_csv(&input, &mut out)?;
            Ok(())
        }
        Command::Eval(e) => {
            let mut out = std::io::stdout().lock();
            match e {
                EvalCommand::Nab { dir } => adpulse::models::cli::nab_report(&dir, &mut out)?,
                EvalCommand::Backtest { nab_dir } => {
                    adpulse::models::cli::backtest_report(&nab_dir, &mut out)?
                }
                EvalCommand::Segments { orders } => {
                    adpulse::models::cli::segments_report(&orders, &mut out)?
                }
                EvalCommand::Scoring => adpulse::models::cli::scoring_report(&mut out)?,
                EvalCommand::Clv { cdnow, orders } => {
                    adpulse::profit::eval::report(&cdnow, &orders, &mut out)?
                }
            }
            Ok(())
        }
        Command::Bench(cmd) => bench(cmd),
        Command::Probe { url } => probe(&url),
        Command::User(cmd) => {
            let cfg = adpulse::config::Config::load(cli.config.as_deref())?;
            adpulse::commands::user::run(
                &cmd,
                &cfg.actions.web.users_file,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout(),
            )?;
            Ok(())
        }
        Command::CheckConfig => {
            let cfg = adpulse::config::Config::load(cli.config.as_deref())?;
            let problems = cfg.problems();
            if problems.is_empty() {
                println!("config OK: {} source(s)", cfg.sources.len());
                Ok(())
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                anyhow::bail!("{} problem(s) in the configuration", problems.len())
            }
        }
        Command::Run => {
            let cfg = adpulse::config::Config::load(cli.config.as_deref())?;
            let rt = runtime()?;
            let r = rt.block_on(adpulse::app::run(cfg));
            // the sink has written or spooled everything by now; a task that shutdown left
            // behind in a long computation must not hold the process (dropping the runtime
            // would wait for it)
            rt.shutdown_timeout(std::time::Duration::from_millis(500));
            r?;
            Ok(())
        }
    }
}

/// Log lines: JSON on request (`ADPULSE_LOG_FORMAT=json`); otherwise plain text, with colours
/// only on a terminal so log files carry no ANSI escapes.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,questdb=warn".into());
    if std::env::var("ADPULSE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_target(false)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init();
    }
}

/// What `adpulse import` did, on stderr (each warning, skipped and rejected row) and stdout.
fn print_import_summary(
    file: &std::path::Path,
    s: &adpulse::commands::import::ImportSummary,
    dry_run: bool,
) {
    for w in &s.warnings {
        eprintln!("{}: warning: {w}", file.display());
    }
    for r in &s.skipped {
        eprintln!("{}: {r}", file.display());
    }
    for r in &s.rejected {
        eprintln!("{}: {r}", file.display());
    }
    println!(
        "{}: {} rows read ({}{}), {} records {} ({} rows summed into records sharing their key), {} skipped, {} rejected",
        file.display(),
        s.rows,
        s.encoding,
        if s.latin1_rows > 0 {
            format!(", {} rows read as Latin-1", s.latin1_rows)
        } else {
            String::new()
        },
        s.stored,
        if dry_run {
            "validated (dry run)"
        } else {
            "stored"
        },
        s.summed,
        s.skipped.len(),
        s.rejected.len()
    );
}

/// `adpulse bench ingest|metrics`: the measurements behind docs/benchmarks.md.
fn bench(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest {
            questdb_url,
            rows,
            repeats,
        } => {
            let runs = runtime()?
                .block_on(adpulse::bench::ingest(&questdb_url, rows, repeats))
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("run  bare questdb-rs rows/s  adpulse rows/s  ratio");
            for (i, r) in runs.iter().enumerate() {
                println!(
                    "{:<4} {:>20.0}  {:>14.0}  {:.2}",
                    i + 1,
                    r.bare_rows_per_sec,
                    r.adpulse_rows_per_sec,
                    r.adpulse_rows_per_sec / r.bare_rows_per_sec
                );
            }
            let med = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let b = med(runs.iter().map(|r| r.bare_rows_per_sec).collect());
            let a = med(runs.iter().map(|r| r.adpulse_rows_per_sec).collect());
            println!("median {b:>18.0}  {a:>14.0}  {:.2}", a / b);
            Ok(())
        }
        BenchCommand::Scale(o) => {
            let r = runtime()?
                .block_on(adpulse::bench::scale(&o))
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("{}", r.summary());
            if r.exit_code != Some(0) {
                anyhow::bail!(
                    "adpulse exited with {:?} at shutdown: rows were not saved (its log: {})",
                    r.exit_code,
                    o.work_dir.join("adpulse.log").display()
                );
            }
            Ok(())
        }
        BenchCommand::Models { campaigns, days } => {
            let r = runtime()?.block_on(adpulse::bench::models(campaigns, days));
            println!(
                "campaigns {}  campaign-hours {}  first pass {:.1} s ({:.0} campaign-hours/s)  next hour's pass {:.2} s",
                r.campaigns,
                r.campaign_hours,
                r.first_pass_secs,
                r.campaign_hours as f64 / r.first_pass_secs,
                r.hour_pass_secs
            );
            Ok(())
        }
        BenchCommand::Metrics { campaigns, repeats } => {
            let r = adpulse::bench::metrics(campaigns, repeats);
            println!(
                "campaigns {}  series {}  snapshot {:.1} ms  render {:.1} ms  gzip {:.1} ms  render streamed into gzip {:.1} ms  size {} bytes ({:.1} MiB, {:.1} MiB gzipped)",
                r.campaigns,
                r.series,
                r.snapshot_ms,
                r.render_ms,
                r.gzip_ms,
                r.streamed_ms,
                r.bytes,
                r.bytes as f64 / 1048576.0,
                r.gzip_bytes as f64 / 1048576.0
            );
            Ok(())
        }
    }
}

/// `adpulse probe <url>`: exit 0 when the URL answers 2xx (container health checks).
fn probe(url: &str) -> anyhow::Result<()> {
    adpulse::init_tls();
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?
                .get(url)
                .send()
                .await
                .map(|r| r.status())
        })
        .with_context(|| format!("{url} did not answer"))?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}
