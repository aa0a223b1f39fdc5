//! The `[actions]` section: mode, dry run, rules, caps, auto-mode limits, API tokens and the ad
//! platform clients. Every default is the safe one: recommend only, dry run on, no token (so no
//! one can act through the API until tokens are configured).

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::base::{Problem, Secret};
use crate::platforms::google::{GoogleAdsApiConfig, GoogleOAuthConfig};
use crate::platforms::meta::MetaApiConfig;

/// What the engine may do with what its rules find.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Recommendations only: nothing is executed except an explicit kill switch.
    #[default]
    Recommend,
    /// A person approves each action through the API.
    Approve,
    /// Actions of the rules listed in `auto.rules` run by themselves, within the caps and limits.
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Recommend => "recommend",
            Mode::Approve => "approve",
            Mode::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// Evaluate rules at all (and serve the actions API).
    pub enabled: bool,
    /// `recommend` (default), `approve` or `auto`.
    pub mode: Mode,
    /// Record what would be done, change nothing on the ad platforms. On until set to false.
    pub dry_run: bool,
    /// How often the rules are evaluated, in seconds (an Alertmanager webhook also triggers one).
    pub evaluate_interval_secs: u64,
    /// The rules, each with its `type` (default: the seed's four).
    pub rules: Vec<RuleConfig>,
    /// Emergency daily spend caps; budgets are never raised above them either.
    pub caps: CapsConfig,
    /// Limits of `auto` mode.
    pub auto: AutoConfig,
    /// Budget reallocation proposal.
    pub reallocation: ReallocationConfig,
    /// Bearer tokens of the actions API.
    pub auth: AuthConfig,
    /// Retries of ad platform calls.
    pub retry: RetryConfig,
    /// Meta Marketing API client (campaigns with platform `meta`).
    pub meta: Option<MetaActionsConfig>,
    /// Google Ads API client (campaigns with platform `google_ads`).
    pub google_ads: Option<GoogleAdsActionsConfig>,
    /// Most audit events of one evaluation pass logged one line each; a pass with more logs
    /// one summary line (the audit log and table still get every row).
    pub audit_log_lines_per_pass: usize,
    /// The web action center served at `/`.
    pub web: WebConfig,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: Mode::Recommend,
            dry_run: true,
            evaluate_interval_secs: 60,
            rules: default_rules(),
            caps: CapsConfig::default(),
            auto: AutoConfig::default(),
            reallocation: ReallocationConfig::default(),
            auth: AuthConfig::default(),
            retry: RetryConfig::default(),
            meta: None,
            google_ads: None,
            audit_log_lines_per_pass: 20,
            web: WebConfig::default(),
        }
    }
}

/// The web action center: people sign in with a name and password from the users file and act
/// according to their role.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the action center at `/` (the API and `/metrics` are served either way).
    pub enabled: bool,
    /// The users file (TOML, written by `adpulse user add|passwd|remove`). Missing: nobody can
    /// sign in, and the login page says how to add a user.
    pub users_file: PathBuf,
    /// A session ends after this many seconds without a request.
    pub session_idle_secs: u64,
    /// Mark cookies `Secure`: set it when adpulse is reached over TLS (a TLS proxy in front).
    pub secure_cookies: bool,
    /// Failed logins of one user in a row before the user is locked out.
    pub login_max_failures: u32,
    /// How long a locked-out user is refused, in seconds.
    pub lockout_secs: u64,
    /// Login attempts one address may make at once (then one per `login_refill_secs`).
    pub login_burst: u32,
    /// Seconds for one more login attempt of an address to be allowed.
    pub login_refill_secs: u64,
    /// Grafana's address as people reach it (`https://grafana.example`): the pages then link to
    /// the Products, Geography, Attribution and Customers dashboards and to each campaign's
    /// drill-down. Unset: no Grafana links.
    pub grafana_url: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            users_file: PathBuf::from("data/state/users.toml"),
            session_idle_secs: 30 * 60,
            secure_cookies: false,
            login_max_failures: 5,
            lockout_secs: 15 * 60,
            login_burst: 10,
            login_refill_secs: 6,
            grafana_url: None,
        }
    }
}

/// The seed's automation rules.
pub fn default_rules() -> Vec<RuleConfig> {
    vec![
        RuleConfig::CpaAbove(CpaAbove::default()),
        RuleConfig::RoasAbove(RoasAbove::default()),
        RuleConfig::CrAbove(CrAbove::default()),
        RuleConfig::CtrBelow(CtrBelow::default()),
    ]
}

/// One rule, tagged by `type` in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    /// Pause when CPA over the window is above the threshold (spend above it with no
    /// conversion counts as above).
    CpaAbove(CpaAbove),
    /// Raise the daily budget when ROAS stayed above the threshold on each of the last days.
    RoasAbove(RoasAbove),
    /// Recommend expanding the audience when CR is above the threshold.
    CrAbove(CrAbove),
    /// Recommend rotating creatives when CTR is below the threshold.
    CtrBelow(CtrBelow),
    /// Pause when POAS (contribution margin of the campaign's last-click orders / its spend)
    /// stayed below the threshold over the last complete days (issue 16). Not a default rule.
    PoasBelow(PoasBelow),
}

impl RuleConfig {
    /// The rule's name in recommendations, the audit table and `auto.rules`.
    pub fn name(&self) -> &'static str {
        match self {
            RuleConfig::CpaAbove(_) => "cpa_above",
            RuleConfig::RoasAbove(_) => "roas_above",
            RuleConfig::CrAbove(_) => "cr_above",
            RuleConfig::CtrBelow(_) => "ctr_below",
            RuleConfig::PoasBelow(_) => "poas_below",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpaAbove {
    /// CPA threshold in the reporting currency.
    pub threshold: Decimal,
    /// Days looked at, today included.
    pub window_days: u32,
}

impl Default for CpaAbove {
    fn default() -> Self {
        Self {
            threshold: dec!(5000),
            // a week: at MOI's ~1 conversion a day, fewer days make CPA mostly noise
            window_days: 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoasAbove {
    /// ROAS each day must exceed.
    pub threshold: f64,
    /// Complete days (today excluded) that must all exceed it.
    pub days: u32,
    /// Budget increase, as a fraction (0.25 = +25%), capped by `caps` and `auto`.
    pub budget_increase_ratio: Decimal,
}

impl Default for RoasAbove {
    fn default() -> Self {
        Self {
            threshold: 3.0,
            days: 3,
            budget_increase_ratio: dec!(0.25),
        }
    }
}

/// "Pause when POAS < 1 for 7 days".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoasBelow {
    /// POAS below which the campaign loses money after the cost of goods (1: break-even).
    pub threshold: f64,
    /// Complete days (today excluded), each with a spend row, over which POAS is summed.
    pub days: u32,
    /// Less spend than this over those days (reporting currency): too little to judge.
    pub min_spend: Decimal,
}

impl Default for PoasBelow {
    fn default() -> Self {
        Self {
            threshold: 1.0,
            days: 7,
            min_spend: Decimal::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrAbove {
    /// Conversion rate (conversions / clicks) above which the audience could grow.
    pub threshold: f64,
    /// Days looked at, today included.
    pub window_days: u32,
    /// Fewer clicks than this in the window: too little evidence, no recommendation.
    pub min_clicks: u64,
}

impl Default for CrAbove {
    fn default() -> Self {
        Self {
            threshold: 0.02,
            window_days: 3,
            min_clicks: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CtrBelow {
    /// Click-through rate (clicks / impressions) below which creatives are worn out.
    pub threshold: f64,
    /// Days looked at, today included.
    pub window_days: u32,
    /// Fewer impressions than this in the window: too little evidence, no recommendation.
    pub min_impressions: u64,
}

impl Default for CtrBelow {
    fn default() -> Self {
        Self {
            threshold: 0.01,
            window_days: 3,
            min_impressions: 5_000,
        }
    }
}

/// Emergency daily spend caps, in the reporting currency. A breach today pauses the campaign (or
/// every campaign of the account); budgets are never raised above a cap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapsConfig {
    /// Cap of every campaign without its own entry in `campaigns`.
    pub campaign_daily: Option<Decimal>,
    /// Caps of single campaigns, by campaign id.
    pub campaigns: BTreeMap<String, Decimal>,
    /// Caps of whole ad accounts, by account id.
    pub accounts: BTreeMap<String, Decimal>,
}

impl CapsConfig {
    pub fn campaign_cap(&self, campaign_id: &str) -> Option<Decimal> {
        self.campaigns
            .get(campaign_id)
            .copied()
            .or(self.campaign_daily)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoConfig {
    /// Rules whose actions may run unattended in `auto` mode (`budget_cap` is the emergency cap).
    pub rules: Vec<String>,
    /// Most actions executed automatically per reporting day (all campaigns together).
    pub max_actions_per_day: u32,
    /// Largest budget increase of one automatic action, as a fraction.
    pub max_budget_increase_ratio: Decimal,
}

impl Default for AutoConfig {
    fn default() -> Self {
        Self {
            rules: vec!["cpa_above".into(), "budget_cap".into()],
            max_actions_per_day: 10,
            max_budget_increase_ratio: dec!(0.25),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReallocationConfig {
    /// Days the returns are measured over, today included.
    pub window_days: u32,
    /// Largest increase proposed for a winning campaign, as a fraction of its daily spend.
    pub max_increase_ratio: Decimal,
}

impl Default for ReallocationConfig {
    fn default() -> Self {
        Self {
            window_days: 3,
            max_increase_ratio: dec!(0.25),
        }
    }
}

/// Where the API's bearer tokens come from (a file takes precedence over its variable). Without a
/// token, that access level is refused to everyone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Variable holding the read token (list recommendations, proposals).
    pub read_token_env: String,
    /// File holding the read token (takes precedence over the variable).
    pub read_token_file: Option<PathBuf>,
    /// Variable holding the write token (approve, reject, kill switch, webhook); it reads too.
    pub write_token_env: String,
    /// File holding the write token (takes precedence over the variable).
    pub write_token_file: Option<PathBuf>,
    /// Requests one address may send to `/api/v1` at once (more are answered 429).
    pub api_burst: u32,
    /// Milliseconds for one more `/api/v1` request of an address to be allowed.
    pub api_refill_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            read_token_env: "ADPULSE_API_READ_TOKEN".into(),
            read_token_file: None,
            write_token_env: "ADPULSE_API_WRITE_TOKEN".into(),
            write_token_file: None,
            api_burst: 100,
            api_refill_ms: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts of one platform call, the first included.
    pub attempts: u32,
    /// First wait after a retryable error, in milliseconds (doubles up to `max_ms`).
    pub initial_ms: u64,
    /// Longest wait between attempts, in milliseconds; a platform asking for longer fails the
    /// action (it can be approved again later).
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_ms: 500,
            max_ms: 30_000,
        }
    }
}

/// `[actions.meta]`: the platform's one Graph API config ([`MetaApiConfig`], the same struct
/// the insights source flattens, so both pin one version) and the currency budgets are set in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaActionsConfig {
    /// Base URL, pinned version, access token (needs `ads_management`), request timeout.
    #[serde(flatten)]
    pub api: MetaApiConfig,
    /// Currency of the ad accounts (budgets are set in it).
    pub account_currency: String,
}

impl Default for MetaActionsConfig {
    fn default() -> Self {
        Self {
            api: MetaApiConfig::default(),
            account_currency: "INR".into(),
        }
    }
}

impl MetaActionsConfig {
    /// The Graph API at `base_url`, the token in `access_token_file`, every other key at its
    /// default (a local fake in tests).
    pub fn at(base_url: impl Into<String>, access_token_file: Option<PathBuf>) -> Self {
        Self {
            api: MetaApiConfig {
                base_url: base_url.into(),
                access_token_file,
                ..MetaApiConfig::default()
            },
            ..Self::default()
        }
    }
}

/// `[actions.google_ads]`: the platform's one Google Ads config ([`GoogleAdsApiConfig`]) and the
/// one OAuth config ([`GoogleOAuthConfig`]), the same structs the Google Ads source flattens: the
/// actions refresh their access token from the refresh token as the source does (variables
/// default to `ADPULSE_GOOGLE_ADS_*`, shared with the source).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleAdsActionsConfig {
    /// Base URL, pinned version, developer token, `login-customer-id`, currency, timeout.
    #[serde(flatten)]
    pub api: GoogleAdsApiConfig,
    /// Token endpoint, OAuth client and refresh token.
    #[serde(flatten)]
    pub oauth: GoogleOAuthConfig,
    /// Removed (a static access token expires within the hour): setting it is a config problem
    /// that names the OAuth keys replacing it.
    pub access_token_env: Option<String>,
    /// Removed, like `access_token_env`.
    pub access_token_file: Option<PathBuf>,
}

/// A secret through the crate's one loader ([`crate::platforms::load_secret`]: file first, then
/// the variable, surrounding whitespace trimmed); `None` when neither is set.
pub fn load_secret(
    file: Option<&PathBuf>,
    env: &str,
) -> Result<Option<Secret>, crate::config::ConfigError> {
    use crate::platforms::SecretError;
    match crate::platforms::load_secret(file.map(PathBuf::as_path), env) {
        Ok(s) => Ok(s),
        // an empty token file is "not configured" here: the client stays off
        Err(SecretError::EmptyFile(_) | SecretError::Unset(_)) => Ok(None),
        Err(SecretError::File { path, source }) => {
            Err(crate::config::ConfigError::Read { path, source })
        }
    }
}

impl ActionsConfig {
    /// Problems, with keys relative to `actions`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut add =
            |key: String, message: &str| p.push(Problem::new(format!("actions.{key}"), message));
        if self.evaluate_interval_secs == 0 {
            add("evaluate_interval_secs".into(), "must be at least 1");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if !seen.insert(r.name()) {
                add(format!("rules[{i}].type"), "each rule type may appear once");
            }
            let days_ok = match r {
                RuleConfig::CpaAbove(c) => c.window_days,
                RuleConfig::RoasAbove(c) => c.days,
                RuleConfig::CrAbove(c) => c.window_days,
                RuleConfig::CtrBelow(c) => c.window_days,
                RuleConfig::PoasBelow(c) => c.days,
            };
            if days_ok == 0 || days_ok > 30 {
                add(format!("rules[{i}]"), "days must be between 1 and 30");
            }
            match r {
                RuleConfig::CpaAbove(c) if c.threshold <= Decimal::ZERO => {
                    add(format!("rules[{i}].threshold"), "must be positive")
                }
                RuleConfig::RoasAbove(c)
                    if !(c.threshold.is_finite() && c.threshold > 0.0)
                        || c.budget_increase_ratio <= Decimal::ZERO
                        || c.budget_increase_ratio > Decimal::ONE =>
                {
                    add(
                        format!("rules[{i}]"),
                        "threshold must be positive and budget_increase_ratio in (0, 1]",
                    )
                }
                RuleConfig::CrAbove(c) if !(c.threshold > 0.0 && c.threshold < 1.0) => {
                    add(format!("rules[{i}].threshold"), "must be in (0, 1)")
                }
                RuleConfig::CtrBelow(c) if !(c.threshold > 0.0 && c.threshold < 1.0) => {
                    add(format!("rules[{i}].threshold"), "must be in (0, 1)")
                }
                _ => {}
            }
        }
        let positive = |d: &Decimal| *d > Decimal::ZERO;
        if self.caps.campaign_daily.is_some_and(|c| !positive(&c)) {
            add("caps.campaign_daily".into(), "must be positive");
        }
        for (id, c) in &self.caps.campaigns {
            if !positive(c) {
                add(format!("caps.campaigns.{id}"), "must be positive");
            }
        }
        for (id, c) in &self.caps.accounts {
            if !positive(c) {
                add(format!("caps.accounts.{id}"), "must be positive");
            }
        }
        let known = [
            "cpa_above",
            "roas_above",
            "cr_above",
            "ctr_below",
            "budget_cap",
        ];
        for (i, r) in self.auto.rules.iter().enumerate() {
            if !known.contains(&r.as_str()) {
                add(
                    format!("auto.rules[{i}]"),
                    "unknown rule (cpa_above, roas_above, budget_cap; cr_above and ctr_below are recommendations only)",
                );
            } else if r == "cr_above" || r == "ctr_below" {
                add(
                    format!("auto.rules[{i}]"),
                    "is a recommendation only and cannot run automatically",
                );
            }
        }
        if self.auto.max_budget_increase_ratio < Decimal::ZERO
            || self.auto.max_budget_increase_ratio > Decimal::ONE
        {
            add("auto.max_budget_increase_ratio".into(), "must be in [0, 1]");
        }
        if self.mode == Mode::Auto
            && self.auto.rules.iter().any(|r| r == "roas_above")
            && self.caps.campaign_daily.is_none()
            && self.caps.campaigns.is_empty()
        {
            add(
                "auto.rules".into(),
                "roas_above in auto mode needs caps.campaign_daily or caps.campaigns: budgets are never raised without a cap",
            );
        }
        if self.reallocation.window_days == 0 || self.reallocation.window_days > 30 {
            add(
                "reallocation.window_days".into(),
                "must be between 1 and 30",
            );
        }
        if self.retry.attempts == 0 {
            add("retry.attempts".into(), "must be at least 1");
        }
        if self.retry.initial_ms == 0 || self.retry.initial_ms > self.retry.max_ms {
            add(
                "retry.initial_ms".into(),
                "must be at least 1 and not above retry.max_ms",
            );
        }
        if let Some(m) = &self.meta {
            for pr in m.api.problems() {
                add(format!("meta.{}", pr.key), &pr.message);
            }
        }
        if let Some(g) = &self.google_ads {
            for pr in g.api.problems().into_iter().chain(g.oauth.problems()) {
                add(format!("google_ads.{}", pr.key), &pr.message);
            }
            for (key, set) in [
                ("access_token_env", g.access_token_env.is_some()),
                ("access_token_file", g.access_token_file.is_some()),
            ] {
                if set {
                    add(
                        format!("google_ads.{key}"),
                        "was removed: the actions refresh their access token; set refresh_token_file (or refresh_token_env), client_id_env and client_secret_file (or client_secret_env) instead",
                    );
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seed_rules_recommend_and_dry_run() {
        let c = ActionsConfig::default();
        assert_eq!(c.mode, Mode::Recommend);
        assert!(c.dry_run);
        let names: Vec<&str> = c.rules.iter().map(RuleConfig::name).collect();
        assert_eq!(names, ["cpa_above", "roas_above", "cr_above", "ctr_below"]);
        assert!(c.problems().is_empty());
    }

    #[test]
    fn rules_parse_from_toml_with_defaults_per_field() {
        let c: ActionsConfig = toml::from_str(
            r#"
            mode = "auto"
            [[rules]]
            type = "cpa_above"
            threshold = "4000"
            [[rules]]
            type = "ctr_below"
            threshold = 0.005
            [caps]
            campaign_daily = "20000"
            accounts = { act_1 = "50000" }
            "#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Auto);
        assert!(c.dry_run, "dry run stays on until set");
        assert_eq!(
            c.rules[0],
            RuleConfig::CpaAbove(CpaAbove {
                threshold: dec!(4000),
                window_days: 7
            })
        );
        assert_eq!(c.caps.campaign_cap("x"), Some(dec!(20000)));
        assert!(
            toml::from_str::<ActionsConfig>("[[rules]]\ntype = \"cpa_above\"\nbogus = 1").is_err()
        );
    }

    #[test]
    fn problems_name_their_keys() {
        let c: ActionsConfig = toml::from_str(
            r#"
            mode = "auto"
            evaluate_interval_secs = 0
            [auto]
            rules = ["roas_above", "ctr_below", "nope"]
            [caps]
            campaign_daily = "-1"
            "#,
        )
        .unwrap();
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        for k in [
            "actions.evaluate_interval_secs",
            "actions.auto.rules[1]",
            "actions.auto.rules[2]",
            "actions.caps.campaign_daily",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
        }
    }
}
