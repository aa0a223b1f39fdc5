//! `[attribution]`: the settings of the attribution job (which models, which lookback windows, how
//! often). A leaf of the config tree: it names the models and windows of `attribution`, never the
//! job or the sinks, so `config` can compose it without an import cycle.

use serde::Deserialize;

use super::{Model, Window};
use crate::base::Problem;

/// A model as `[attribution] models` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelName {
    FirstClick,
    LastClick,
    Linear,
    TimeDecay,
    PositionBased,
    Markov,
    Shapley,
}

impl ModelName {
    /// The model, with the configured time-decay half-life.
    pub fn model(self, half_life_hours: f64) -> Model {
        match self {
            ModelName::FirstClick => Model::FirstClick,
            ModelName::LastClick => Model::LastClick,
            ModelName::Linear => Model::Linear,
            ModelName::TimeDecay => Model::TimeDecay { half_life_hours },
            ModelName::PositionBased => Model::PositionBased,
            ModelName::Markov => Model::Markov,
            ModelName::Shapley => Model::Shapley,
        }
    }
}

/// `[attribution]`: the periodic job that reads every journey and order from QuestDB, runs each
/// model in each window and writes the `attribution` table (see `docs/profit.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributionConfig {
    /// Run the job (it needs QuestDB, where it reads the journeys and orders: with
    /// `questdb.enabled = false` it does not run).
    pub enabled: bool,
    /// Seconds between two runs; each run recomputes the whole history (the data-driven models
    /// are refitted on every journey) from the journeys it keeps, reading only what is new.
    pub interval_secs: u64,
    /// Lookback windows before each conversion: `"<days>d"` (1 to 3660) or `"lifetime"`.
    pub windows: Vec<Window>,
    /// Time-decay half-life, in hours: a touch this long before the order earns half the credit
    /// of one at the moment of the order.
    pub time_decay_half_life_hours: f64,
    /// Models to run: `first_click`, `last_click`, `linear`, `time_decay`, `position_based`,
    /// `markov`, `shapley`.
    pub models: Vec<ModelName>,
    /// Rows per query page when reading orders, touchpoints and spend from QuestDB (20,000: a
    /// page parsed as JSON is held whole, about 300 bytes a row).
    pub page_rows: usize,
    /// After its first run the job reads only the orders and touches stored since the previous
    /// run; it reads again those stored up to this many seconds before the newest one it has seen,
    /// so a row that became visible late (WAL apply) is not missed. Re-read rows replace the
    /// kept ones, never add to them.
    pub reread_overlap_secs: u64,
    /// Most entries the Markov solver may hold (about 40 bytes each): a window whose chain needs
    /// more gets no `markov` rows, is logged and counted
    /// (`adpulse_attribution_markov_unsolved_total`), and the run is reported incomplete.
    pub markov_max_entries: usize,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 300,
            windows: Window::ALL.to_vec(),
            time_decay_half_life_hours: 168.0,
            models: vec![
                ModelName::FirstClick,
                ModelName::LastClick,
                ModelName::Linear,
                ModelName::TimeDecay,
                ModelName::PositionBased,
                ModelName::Markov,
                ModelName::Shapley,
            ],
            page_rows: 20_000,
            reread_overlap_secs: 600,
            markov_max_entries: super::markov::DEFAULT_MAX_ENTRIES,
        }
    }
}

impl AttributionConfig {
    /// The configured models, each once.
    pub fn models(&self) -> Vec<Model> {
        let mut out: Vec<Model> = Vec::new();
        for m in &self.models {
            let m = m.model(self.time_decay_half_life_hours);
            if !out.iter().any(|o| o.label() == m.label()) {
                out.push(m);
            }
        }
        out
    }

    /// The configured windows, each once, in order.
    pub fn windows(&self) -> Vec<Window> {
        let mut w = self.windows.clone();
        w.sort();
        w.dedup();
        w
    }

    /// Validation problems, keys relative to `attribution`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut add = |key: &str, message: &str| {
            p.push(Problem {
                key: key.into(),
                message: message.into(),
            })
        };
        if self.interval_secs == 0 {
            add("interval_secs", "must be at least 1");
        }
        if self.windows.is_empty() {
            add("windows", "name at least one window (\"7d\", \"lifetime\")");
        }
        if self.models.is_empty() {
            add(
                "models",
                "name at least one model (\"last_click\", \"markov\")",
            );
        }
        if !(self.time_decay_half_life_hours.is_finite() && self.time_decay_half_life_hours > 0.0) {
            add(
                "time_decay_half_life_hours",
                "must be a positive number of hours",
            );
        }
        if self.page_rows == 0 {
            add("page_rows", "must be at least 1");
        }
        if self.markov_max_entries == 0 {
            add("markov_max_entries", "must be at least 1");
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_windows_and_models_and_names_bad_ones() {
        let c: AttributionConfig = toml::from_str(
            "windows = [\"3d\", \"lifetime\", \"3d\"]\nmodels = [\"markov\", \"time_decay\"]\n\
             time_decay_half_life_hours = 24",
        )
        .expect("valid");
        assert_eq!(c.windows(), vec![Window::Days(3), Window::Lifetime]);
        assert_eq!(
            c.models(),
            vec![
                Model::Markov,
                Model::TimeDecay {
                    half_life_hours: 24.0
                }
            ]
        );
        assert!(c.problems().is_empty());
        let e = toml::from_str::<AttributionConfig>("windows = [\"week\"]").unwrap_err();
        assert!(e.to_string().contains("window \"week\""), "{e}");
        let e = toml::from_str::<AttributionConfig>("models = [\"u_shaped\"]").unwrap_err();
        assert!(e.to_string().contains("u_shaped"), "{e}");
        let bad = AttributionConfig {
            interval_secs: 0,
            models: vec![],
            ..AttributionConfig::default()
        };
        let keys: Vec<String> = bad.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["interval_secs", "models"]);
    }
}
