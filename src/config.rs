//! Configuration: a TOML file (or the embedded demo default) with `ADPULSE_` environment overrides.
//!
//! `load` parses; `Config::validate` is pure (no I/O) and reports *every* problem with its key, so
//! `adpulse check-config` can list them all at once.

use chrono::NaiveDate;
use chrono_tz::Tz;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::base::{Problem, Secret};
use crate::sources::SourceConfig;

/// The configuration used when no file is given: the demo on the local stack's default ports.
pub const DEFAULT_CONFIG: &str = include_str!("../config/adpulse.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub general: GeneralConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub questdb: QuestDbConfig,
    /// Exchange rates: units of the reporting currency per one unit of each account currency
    /// (e.g. `USD = "83.50"`). The reporting currency itself is always 1.
    #[serde(default)]
    pub fx: BTreeMap<String, Decimal>,
    /// ROI target trajectory: each entry applies from its date until the next one.
    #[serde(default = "default_targets")]
    pub targets: Vec<RoiTarget>,
    /// Forecasts and anomaly detection fitted in-process.
    #[serde(default)]
    pub models: ModelsConfig,
    /// What `/metrics` shows: the per-campaign cardinality control.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Data sources, each listed explicitly with its `type`.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Automation rules, caps, approval mode and the ad platform clients that act.
    #[serde(default)]
    pub actions: crate::actions::ActionsConfig,
    /// The costs the profit KPIs need beyond the order lines (payment fees, shipping).
    #[serde(default)]
    pub profit: crate::profit::ProfitConfig,
    /// The attribution job: models, lookback windows and how often it rewrites `attribution`.
    #[serde(default)]
    pub attribution: crate::attribution::config::AttributionConfig,
    /// The live CLV job: BG/NBD and Gamma-Gamma fitted on the order history, written to
    /// `customer_value` and `campaign_value`.
    #[serde(default)]
    pub clv: crate::profit::value_config::ClvConfig,
}

/// `[metrics]`: what `/metrics` shows (read by `sinks::metrics`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Cardinality control for huge accounts: per-campaign series only for the top N campaigns
    /// by spend over the last 7 days; the others are summed per platform into one label set
    /// `campaign="other"`. Off (every campaign) when absent.
    pub campaign_series_top_n: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// ISO 4217 code every money figure is reported in.
    pub reporting_currency: String,
    /// IANA timezone whose calendar days the daily buckets follow.
    pub reporting_timezone: String,
    /// Share of revenue that is gross profit (1.0: revenue counts as profit, as in the seed).
    pub gross_margin_ratio: Decimal,
    /// Window of the loss rate (INR/hour) gauge, in hours.
    pub loss_rate_window_hours: u32,
    /// Window for clicks/conversions used by the tracking-break alert, in hours.
    pub tracking_window_hours: u32,
    /// How often KPIs are recomputed for `/metrics`, in seconds.
    pub refresh_interval_secs: u64,
    /// How much hourly history per campaign the collector keeps in memory, in days. The
    /// whole-business 10d/30d windows do not need more: older hours are kept as one business
    /// total per hour, and orders for 30 days.
    pub retention_days: u32,
    /// Folder of persisted sync state (per-source cursors, backfill progress).
    pub state_dir: PathBuf,
    /// At shutdown, how long sources, models and actions may take to finish their current step
    /// before the sink's last write, in seconds (work they have not handed over is redone by
    /// the next run; nothing acknowledged is lost).
    pub shutdown_grace_secs: u64,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        Self {
            reporting_currency: "INR".into(),
            reporting_timezone: "Asia/Kolkata".into(),
            gross_margin_ratio: Decimal::ONE,
            loss_rate_window_hours: 3,
            tracking_window_hours: 24,
            refresh_interval_secs: 5,
            retention_days: 8,
            state_dir: PathBuf::from("data/state"),
            shutdown_grace_secs: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP server (`/metrics`, `/healthz`, `/readyz`).
    pub listen: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuestDbConfig {
    /// Write to QuestDB at all (false: metrics only).
    pub enabled: bool,
    /// Base URL of QuestDB's HTTP endpoint (ILP writes and SQL).
    pub http_url: String,
    /// User for HTTP basic auth; the password comes from `password_env` or `password_file`.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: String,
    /// File holding the password (takes precedence over `password_env`).
    pub password_file: Option<PathBuf>,
    /// Flush when this many rows are pending.
    pub flush_rows: usize,
    /// Flush at least this often when rows are pending, in milliseconds.
    pub flush_interval_ms: u64,
    /// Timeout of one HTTP request to QuestDB, in seconds.
    pub request_timeout_secs: u64,
    /// Rows kept in memory while QuestDB is unreachable; beyond this they go to the spool.
    pub max_buffered_rows: usize,
    /// Folder of the on-disk spool.
    pub spool_dir: PathBuf,
    /// Largest spool on disk; when full, sources are paused (back-pressure), never dropped.
    pub spool_max_bytes: u64,
    /// First retry delay after a failed write, in milliseconds (doubles up to `retry_max_ms`).
    pub retry_initial_ms: u64,
    /// Largest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// Room past `spool_max_bytes` that only shutdown may use, so rows in memory are spooled
    /// rather than dropped when the spool is full (see `docs/reliability.md`).
    pub spool_reserve_bytes: u64,
    /// Days of forecasts QuestDB keeps (table TTL); 0 keeps them all.
    pub forecasts_retention_days: u32,
    /// Days of anomaly scores QuestDB keeps (table TTL); 0 keeps them all.
    pub anomalies_retention_days: u32,
    /// Days of ad-level rows (`ad_stats`) QuestDB keeps (table TTL); 0 keeps them all. Campaign
    /// totals stay in `campaign_stats` whatever this says.
    pub ad_stats_retention_days: u32,
}

impl Default for QuestDbConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            http_url: "http://127.0.0.1:9000".into(),
            username: None,
            password_env: "ADPULSE_QUESTDB_PASSWORD".into(),
            password_file: None,
            flush_rows: 10_000,
            flush_interval_ms: 1_000,
            request_timeout_secs: 10,
            max_buffered_rows: 200_000,
            spool_dir: PathBuf::from("data/spool"),
            spool_max_bytes: 1 << 30,
            retry_initial_ms: 250,
            retry_max_ms: 15_000,
            spool_reserve_bytes: 256 << 20,
            forecasts_retention_days: 90,
            anomalies_retention_days: 90,
            ad_stats_retention_days: 400,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Fit forecasts and score anomalies at all.
    pub enabled: bool,
    /// How often new complete hours are scored for anomalies, in seconds.
    pub score_interval_secs: u64,
    /// How often forecasts are refitted, in seconds.
    pub refit_interval_secs: u64,
    /// Hours ahead of the hourly spend, conversions and conversion-value forecasts.
    pub forecast_hours: usize,
    /// Days ahead of the daily revenue forecast.
    pub revenue_forecast_days: usize,
    /// Days of daily revenue history read from QuestDB for the revenue forecast.
    pub revenue_history_days: u32,
    /// Known events (festivals, seasons) added to the built-in Indian calendar.
    pub festivals: Vec<crate::models::forecast::FestivalEvent>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            score_interval_secs: 60,
            refit_interval_secs: 3600,
            forecast_hours: 48,
            revenue_forecast_days: 30,
            revenue_history_days: 365,
            festivals: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoiTarget {
    /// First day (reporting timezone) this target applies.
    pub from: NaiveDate,
    /// Target ROI as a fraction (0.0 is break-even, 1.5 is +150%).
    pub roi: f64,
}

fn default_targets() -> Vec<RoiTarget> {
    // The seed's trajectory: break-even in 4 weeks, +150% by week 8, +350% by week 12.
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
    vec![
        RoiTarget {
            from: d("2026-01-01"),
            roi: 0.0,
        },
        RoiTarget {
            from: d("2027-02-01"),
            roi: 1.5,
        },
        RoiTarget {
            from: d("2027-03-01"),
            roi: 3.5,
        },
    ]
}

impl Config {
    /// Parse a TOML document (no environment overrides): for tests and `check-config --no-env`.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment(e)))
    }

    /// Load the file (or the embedded default) and apply `ADPULSE_SECTION__KEY` overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => DEFAULT_CONFIG.to_string(),
        };
        // A password is never a config value (it would sit in the environment dump of every
        // child and in `check-config` output): refuse it loudly rather than ignore it.
        if std::env::vars_os().any(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("ADPULSE_QUESTDB__PASSWORD"))
        }) {
            return Err(ConfigError::Parse(
                "ADPULSE_QUESTDB__PASSWORD is not read: put the password in the variable named by \
                 questdb.password_env (default ADPULSE_QUESTDB_PASSWORD) or in the file named by \
                 questdb.password_file"
                    .into(),
            ));
        }
        let env = Env::prefixed("ADPULSE_")
            .split("__")
            .filter(|k| k.as_str().contains('.'))
            .ignore(&["questdb.password"]);
        Figment::from(Toml::string(&text))
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment(e)))
    }

    pub fn timezone(&self) -> Tz {
        self.general
            .reporting_timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Kolkata)
    }

    /// Every problem in the configuration, each with its key. Pure: touches no file or network.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut add = |key: &str, message: String| p.push(Problem::new(key, message));
        let g = &self.general;
        if !is_currency_code(&g.reporting_currency) {
            add(
                "general.reporting_currency",
                format!(
                    "{:?} is not an ISO 4217 code (three capital letters)",
                    g.reporting_currency
                ),
            );
        }
        if g.reporting_timezone.parse::<Tz>().is_err() {
            add(
                "general.reporting_timezone",
                format!(
                    "{:?} is not an IANA timezone (e.g. Asia/Kolkata)",
                    g.reporting_timezone
                ),
            );
        }
        if g.gross_margin_ratio <= Decimal::ZERO || g.gross_margin_ratio > Decimal::ONE {
            add(
                "general.gross_margin_ratio",
                format!("{} must be in (0, 1]", g.gross_margin_ratio),
            );
        }
        if g.loss_rate_window_hours == 0 || g.loss_rate_window_hours > 48 {
            add(
                "general.loss_rate_window_hours",
                "must be between 1 and 48".into(),
            );
        }
        if g.tracking_window_hours == 0 || g.tracking_window_hours > 72 {
            add(
                "general.tracking_window_hours",
                "must be between 1 and 72".into(),
            );
        }
        if g.refresh_interval_secs == 0 {
            add("general.refresh_interval_secs", "must be at least 1".into());
        }
        if g.retention_days < 2 {
            add(
                "general.retention_days",
                "must be at least 2 (today and yesterday)".into(),
            );
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            add(
                "server.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.server.listen
                ),
            );
        }
        let q = &self.questdb;
        match reqwest::Url::parse(&q.http_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => add(
                "questdb.http_url",
                format!("{:?} is not an http(s) URL", q.http_url),
            ),
        }
        if q.flush_rows == 0 {
            add("questdb.flush_rows", "must be at least 1".into());
        }
        if q.flush_interval_ms == 0 {
            add("questdb.flush_interval_ms", "must be at least 1".into());
        }
        if q.request_timeout_secs == 0 {
            add("questdb.request_timeout_secs", "must be at least 1".into());
        }
        if q.max_buffered_rows < q.flush_rows {
            add(
                "questdb.max_buffered_rows",
                format!(
                    "{} is smaller than questdb.flush_rows ({})",
                    q.max_buffered_rows, q.flush_rows
                ),
            );
        }
        if q.spool_max_bytes == 0 {
            add(
                "questdb.spool_max_bytes",
                "must be positive (the spool is what keeps rows while QuestDB is down)".into(),
            );
        }
        if q.retry_initial_ms == 0 || q.retry_initial_ms > q.retry_max_ms {
            add(
                "questdb.retry_initial_ms",
                "must be at least 1 and not above questdb.retry_max_ms".into(),
            );
        }
        for (code, rate) in &self.fx {
            if !is_currency_code(code) {
                add(
                    &format!("fx.{code}"),
                    "is not an ISO 4217 code (three capital letters)".into(),
                );
            }
            if *rate <= Decimal::ZERO {
                add(
                    &format!("fx.{code}"),
                    format!("rate {rate} must be positive"),
                );
            }
        }
        for (i, w) in self.targets.windows(2).enumerate() {
            if w[1].from <= w[0].from {
                add(
                    &format!("targets[{}].from", i + 1),
                    "targets must be in increasing date order".into(),
                );
            }
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !t.roi.is_finite() {
                add(&format!("targets[{i}].roi"), "must be a number".into());
            }
        }
        let m = &self.models;
        if m.score_interval_secs == 0 {
            add("models.score_interval_secs", "must be at least 1".into());
        }
        if m.refit_interval_secs == 0 {
            add("models.refit_interval_secs", "must be at least 1".into());
        }
        if m.forecast_hours == 0 || m.forecast_hours > 24 * 14 {
            add("models.forecast_hours", "must be between 1 and 336".into());
        }
        if m.revenue_forecast_days == 0 || m.revenue_forecast_days > 366 {
            add(
                "models.revenue_forecast_days",
                "must be between 1 and 366".into(),
            );
        }
        for (i, f) in m.festivals.iter().enumerate() {
            if f.end < f.start {
                add(
                    &format!("models.festivals[{i}].end"),
                    "is before its start".into(),
                );
            }
        }
        for pr in self.actions.problems() {
            add(&pr.key, pr.message);
        }
        for pr in self.attribution.problems() {
            add(&format!("attribution.{}", pr.key), pr.message);
        }
        if let Some(why) = self
            .actions
            .web
            .grafana_url
            .as_deref()
            .and_then(crate::web::links::grafana_url_problem)
        {
            add("actions.web.grafana_url", why);
        }
        for pr in self.clv.problems() {
            add(&format!("clv.{}", pr.key), pr.message);
        }
        if self.sources.is_empty() {
            add(
                "sources",
                "no source configured (add [[sources]] type = \"demo\" to try adpulse)".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let prefix = format!("sources[{i}]");
            if !names.insert(s.name().to_string()) {
                add(
                    &format!("{prefix}.name"),
                    format!("{:?} is used by another source", s.name()),
                );
            }
            for pr in s.problems() {
                add(&format!("{prefix}.{}", pr.key), pr.message);
            }
        }
        p
    }

    /// `Ok` when `problems()` is empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = self.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p))
        }
    }

    /// ROI target in force on `day`.
    pub fn roi_target(&self, day: NaiveDate) -> Option<f64> {
        self.targets
            .iter()
            .rev()
            .find(|t| t.from <= day)
            .map(|t| t.roi)
    }

    /// Units of the reporting currency for one unit of `currency`.
    pub fn fx_rate(&self, currency: &str) -> Option<Decimal> {
        if currency == self.general.reporting_currency {
            Some(Decimal::ONE)
        } else {
            self.fx.get(currency).copied()
        }
    }

    /// The QuestDB password, from `password_file` or `password_env`. Never logged.
    pub fn questdb_password(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(path) = &self.questdb.password_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            return Ok(Some(Secret::new(text.trim_end())));
        }
        Ok(std::env::var(&self.questdb.password_env)
            .ok()
            .map(Secret::new))
    }
}

fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.chars().all(|c| c.is_ascii_uppercase())
}

fn describe_figment(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("{key}: {}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::from_toml_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.problems(), vec![]);
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.timezone(), chrono_tz::Asia::Kolkata);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let c = Config::from_toml_str(
            r#"
            [general]
            reporting_currency = "rupees"
            reporting_timezone = "Mars/Olympus"
            loss_rate_window_hours = 0
            [server]
            listen = "everywhere"
            [questdb]
            http_url = "ftp://x"
            flush_rows = 100
            max_buffered_rows = 10
            [fx]
            USD = "-1"
            [[sources]]
            type = "demo"
            name = "a"
            backfill_days = 0
            speedup = 0.0
            [[sources]]
            type = "demo"
            name = "a"
            "#,
        )
        .unwrap();
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        for k in [
            "general.reporting_currency",
            "general.reporting_timezone",
            "general.loss_rate_window_hours",
            "server.listen",
            "questdb.http_url",
            "questdb.max_buffered_rows",
            "fx.USD",
            "sources[1].name",
            "sources[0].speedup",
        ] {
            assert!(keys.iter().any(|x| x == k), "missing {k} in {keys:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_key() {
        let e = Config::from_toml_str("[questdb]\nflush_rowz = 5\n").unwrap_err();
        assert!(e.to_string().contains("flush_rowz"), "{e}");
        let e = Config::from_toml_str("[questdb]\nflush_rows = \"many\"\n").unwrap_err();
        assert!(e.to_string().contains("questdb.flush_rows"), "{e}");
        let e = Config::from_toml_str("[[sources]]\ntype = \"carrier-pigeon\"\nname=\"x\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("carrier-pigeon"), "{e}");
    }

    #[test]
    fn roi_target_follows_the_trajectory() {
        let c = Config::from_toml_str(DEFAULT_CONFIG).unwrap();
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(c.roi_target(d("2026-11-23")), Some(0.0));
        assert_eq!(c.roi_target(d("2027-02-15")), Some(1.5));
        assert_eq!(c.roi_target(d("2027-06-01")), Some(3.5));
        assert_eq!(c.roi_target(d("2020-01-01")), None);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    /// The one platform config per platform is flattened into the sources and the actions: the
    /// keys users write stay where they were, each source keeps its own defaults, an unknown key
    /// still fails, and a removed key names its replacement.
    #[test]
    fn platform_configs_keep_their_keys_and_defaults() {
        let c = Config::from_toml_str(
            r#"
            [[sources]]
            type = "meta"
            name = "m"
            account_id = "act_1"
            base_url = "http://127.0.0.1:1"
            access_token_file = "/run/meta"
            interval_secs = 600
            [[sources]]
            type = "google_ads"
            name = "g"
            customer_id = "123-456-7890"
            token_url = "http://127.0.0.1:1/token"
            refresh_token_file = "/run/rt"
            account_currency = "USD"
            [[sources]]
            type = "ga4"
            name = "a"
            property_id = "42"
            [actions.meta]
            account_currency = "USD"
            timeout_secs = 5
            [actions.google_ads]
            login_customer_id = "999-000-1111"
            refresh_token_file = "/run/rt"
            "#,
        )
        .unwrap();
        assert_eq!(c.problems(), vec![]);
        let SourceConfig::Meta(m) = &c.sources[0] else {
            panic!("{:?}", c.sources[0])
        };
        assert_eq!(m.api.base_url, "http://127.0.0.1:1");
        assert_eq!(m.api.api_version, crate::platforms::meta::API_VERSION);
        assert_eq!(m.polling.interval_secs, 600);
        // Meta's own defaults: a 28-day restatement look-back, a one-minute throttle floor
        assert_eq!(m.polling.lookback_days, 28);
        assert_eq!(m.polling.min_throttle_wait_secs, 60);
        let SourceConfig::GoogleAds(g) = &c.sources[1] else {
            panic!()
        };
        assert_eq!(g.oauth.token_url, "http://127.0.0.1:1/token");
        assert_eq!(g.api.account_currency, "USD");
        assert_eq!(g.polling.lookback_days, 14);
        let SourceConfig::Ga4(a) = &c.sources[2] else {
            panic!()
        };
        assert_eq!(a.polling.lookback_days, 3);
        let am = c.actions.meta.as_ref().unwrap();
        assert_eq!(am.api.timeout_secs, 5);
        assert_eq!(am.api.api_version, m.api.api_version, "one pinned version");
        let ag = c.actions.google_ads.as_ref().unwrap();
        assert_eq!(ag.api.api_version, g.api.api_version, "one pinned version");
        assert_eq!(ag.api.login_header().as_deref(), Some("9990001111"));

        let e = Config::from_toml_str(
            "[[sources]]\ntype = \"meta\"\nname = \"m\"\naccount_id = \"act_1\"\ninterval_sec = 600\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("interval_sec"), "{e}");
        let e = Config::from_toml_str("[actions.meta]\nbase_urll = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("base_urll"), "{e}");
        let c = Config::from_toml_str(
            "[[sources]]\ntype = \"demo\"\nname = \"d\"\n[actions.google_ads]\naccess_token_env = \"T\"\n",
        )
        .unwrap();
        let p = c.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "actions.google_ads.access_token_env");
        assert!(
            p[0].message.contains("refresh_token_file"),
            "{}",
            p[0].message
        );
        let c = Config::from_toml_str("[[sources]]\ntype = \"meta\"\naccount_id = \"act_1\"\n")
            .unwrap();
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["sources[0].name"]);
    }
}
