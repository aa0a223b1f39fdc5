//! Engine tests: auto mode within caps (property), recommend mode, tokens, persistence across
//! a restart, duplicate approvals, and the kill switch with QuestDB unreachable.
#![allow(clippy::field_reassign_with_default)]

use super::*;
use crate::actions::Mode;
use crate::actions::platform::PlatformError;
use crate::kpi::Totals;
use crate::records::{ActionRow, Record};
use proptest::prelude::*;
use rust_decimal_macros::dec;
use std::collections::HashMap;
use std::sync::Mutex;

/// An in-memory platform that checks every budget it is given against the caps.
struct Mem {
    state: Mutex<HashMap<CampaignKey, CampaignState>>,
    cap: Decimal,
    max_ratio: Decimal,
    violations: Mutex<Vec<String>>,
    mutations: Mutex<HashMap<NaiveDate, u32>>,
    day: Mutex<Option<NaiveDate>>,
}

impl Mem {
    /// A platform holding `state`, checking every budget against `cap` and a raise of at most
    /// `max_ratio`, counting changes on the test's current `day`.
    fn new(
        state: HashMap<CampaignKey, CampaignState>,
        cap: Decimal,
        max_ratio: Decimal,
        day: Option<NaiveDate>,
    ) -> Arc<Mem> {
        Arc::new(Mem {
            state: Mutex::new(state),
            cap,
            max_ratio,
            violations: Mutex::new(Vec::new()),
            mutations: Mutex::new(HashMap::new()),
            day: Mutex::new(day),
        })
    }

    fn count(&self) {
        if let Some(d) = *self.day.lock().unwrap() {
            *self.mutations.lock().unwrap().entry(d).or_default() += 1;
        }
    }
}

impl AdPlatform for Mem {
    fn platform(&self) -> &'static str {
        "meta"
    }
    fn account_currency(&self) -> &str {
        "INR"
    }
    fn get_campaign<'a>(&'a self, key: &'a CampaignKey) -> BoxFutState<'a> {
        Box::pin(async move {
            self.state
                .lock()
                .unwrap()
                .get(key)
                .cloned()
                .ok_or(PlatformError::Rejected {
                    platform: "meta",
                    message: "unknown".into(),
                })
        })
    }
    fn set_status<'a>(
        &'a self,
        key: &'a CampaignKey,
        status: CampaignStatus,
    ) -> super::super::platform::BoxFut<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            self.count();
            if let Some(s) = self.state.lock().unwrap().get_mut(key) {
                s.status = status;
            }
            Ok(())
        })
    }
    fn set_daily_budget<'a>(
        &'a self,
        key: &'a CampaignKey,
        _state: &'a CampaignState,
        amount: Decimal,
    ) -> super::super::platform::BoxFut<'a, Result<(), PlatformError>> {
        Box::pin(async move {
            self.count();
            let mut st = self.state.lock().unwrap();
            if let Some(s) = st.get_mut(key) {
                let old = s.daily_budget.unwrap_or_default();
                if amount > self.cap {
                    self.violations
                        .lock()
                        .unwrap()
                        .push(format!("{amount} above cap {}", self.cap));
                }
                if amount > old * (Decimal::ONE + self.max_ratio) {
                    self.violations
                        .lock()
                        .unwrap()
                        .push(format!("{old} -> {amount} above +{}", self.max_ratio));
                }
                s.daily_budget = Some(amount);
            }
            Ok(())
        })
    }
}

type BoxFutState<'a> = super::super::platform::BoxFut<'a, Result<CampaignState, PlatformError>>;

/// An active campaign with daily budget `budget`.
fn active(budget: Decimal) -> CampaignState {
    CampaignState {
        status: CampaignStatus::Active,
        daily_budget: Some(budget),
        budget_ref: None,
        adsets: Vec::new(),
    }
}

/// An engine over `snap` with its own registry and `platforms`.
fn engine(
    cfg: ActionsConfig,
    snap: Arc<ArcSwap<Snapshot>>,
    platforms: Vec<Arc<Mem>>,
) -> ActionEngine {
    let platforms = platforms
        .into_iter()
        .map(|m| m as Arc<dyn AdPlatform>)
        .collect();
    ActionEngine::new(
        cfg,
        "INR",
        BTreeMap::new(),
        snap,
        None,
        &Registry::new(),
        platforms,
    )
}

fn key(i: usize) -> CampaignKey {
    CampaignKey {
        platform: "meta".into(),
        account: "act_1".into(),
        campaign_id: format!("c{i}"),
    }
}

/// (spend, conversions, conversion value, impressions, clicks) of one campaign-day.
type Day = (u32, u32, u32, u64, u64);

fn snapshot(history: &[Vec<Day>], upto: usize, base: NaiveDate) -> Snapshot {
    let mut s = Snapshot::empty("INR");
    s.day = base + chrono::Duration::days(upto as i64);
    s.campaigns = (0..history[0].len())
        .map(|i| {
            let days: Vec<(NaiveDate, Totals)> = (0..=upto)
                .map(|d| {
                    let (spend, conv, value, imp, clicks) = history[d][i];
                    (
                        base + chrono::Duration::days(d as i64),
                        Totals {
                            spend: Decimal::from(spend),
                            conversion_value: Decimal::from(value),
                            revenue: Decimal::from(value),
                            impressions: imp.max(clicks),
                            clicks,
                            conversions: f64::from(conv),
                        },
                    )
                })
                .collect();
            crate::actions::rules::test_view(key(i), format!("c{i}"), days)
        })
        .collect();
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Auto mode over random KPI sequences: no budget above its campaign cap, active budgets
    /// of the account never above the account cap, no raise above the auto limit, and no
    /// more platform changes a day than `max_actions_per_day`.
    #[test]
    fn auto_mode_never_exceeds_caps(
        history in prop::collection::vec(
            prop::collection::vec((0u32..15_000, 0u32..4, 0u32..60_000, 0u64..300_000, 0u64..6_000), 4),
            1..7,
        ),
        budgets in prop::collection::vec(100u32..5_000, 4),
        cap in 1_000u32..6_000,
        account_cap in 3_000u32..16_000,
        max_actions in 0u32..5,
    ) {
        let cap = Decimal::from(cap);
        let account_cap = Decimal::from(account_cap);
        let mut cfg = ActionsConfig::default();
        cfg.mode = Mode::Auto;
        cfg.dry_run = false;
        cfg.auto.rules = vec!["cpa_above".into(), "budget_cap".into(), "roas_above".into()];
        cfg.auto.max_actions_per_day = max_actions;
        cfg.auto.max_budget_increase_ratio = dec!(0.2);
        cfg.caps.campaign_daily = Some(cap);
        cfg.caps.accounts.insert("act_1".into(), account_cap);
        // start within the caps: budgets clipped to the campaign cap, then scaled into the account's
        let mut start: Vec<Decimal> = budgets.iter().map(|b| Decimal::from(*b).min(cap)).collect();
        let sum: Decimal = start.iter().sum();
        if sum > account_cap {
            start = start.iter().map(|b| (b * account_cap / sum).round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero)).collect();
        }
        let mem = Mem::new(start.iter().enumerate().map(|(i, b)| (key(i), active(*b))).collect(), cap, dec!(0.2), None);
        let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let snap = Arc::new(ArcSwap::from_pointee(snapshot(&history, 0, base)));
        let engine = engine(cfg, snap.clone(), vec![mem.clone()]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        for upto in 0..history.len() {
            let s = snapshot(&history, upto, base);
            *mem.day.lock().unwrap() = Some(s.day);
            snap.store(Arc::new(s));
            // several cycles a day, as in the service
            for _ in 0..3 {
                rt.block_on(engine.evaluate("rules"));
            }
            let st = mem.state.lock().unwrap();
            let active: Decimal = st.values()
                .filter(|s| s.status == CampaignStatus::Active)
                .filter_map(|s| s.daily_budget)
                .sum();
            prop_assert!(active <= account_cap, "active budgets {active} above account cap {account_cap}");
            for s in st.values() {
                prop_assert!(s.daily_budget.unwrap_or_default() <= cap);
            }
        }
        let v = mem.violations.lock().unwrap();
        prop_assert!(v.is_empty(), "{v:?}");
        for (day, n) in mem.mutations.lock().unwrap().iter() {
            prop_assert!(*n <= max_actions, "{n} changes on {day}, limit {max_actions}");
        }
    }
}

/// The property above is not vacuous: the same setup does raise a budget, to the cap.
#[tokio::test]
async fn auto_mode_raises_a_winning_budget_up_to_the_cap_once() {
    let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let win: Day = (1_000, 1, 4_000, 100_000, 2_000);
    let history = vec![vec![win], vec![win], vec![win], vec![win]];
    let mut cfg = ActionsConfig::default();
    cfg.mode = Mode::Auto;
    cfg.dry_run = false;
    cfg.auto.rules = vec!["roas_above".into()];
    cfg.caps.campaign_daily = Some(dec!(1100));
    let mem = Mem::new(
        HashMap::from([(key(0), active(dec!(1000)))]),
        dec!(1100),
        dec!(0.25),
        Some(base),
    );
    let snap = Arc::new(ArcSwap::from_pointee(snapshot(&history, 3, base)));
    let e = engine(cfg, snap, vec![mem.clone()]);
    let s = e.evaluate("rules").await;
    assert_eq!(s.auto_executed, 1);
    assert_eq!(e.evaluate("rules").await.auto_executed, 0, "once a day");
    assert_eq!(
        mem.state.lock().unwrap()[&key(0)].daily_budget,
        Some(dec!(1100)),
        "+25% would be 1,250: capped"
    );
    assert!(mem.violations.lock().unwrap().is_empty());
}

#[tokio::test]
async fn recommend_mode_dedups_and_refuses_approval() {
    let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    // c0 loses money (pause), the others are quiet
    let history = vec![vec![
        (6_000, 0, 0, 100_000, 2_000),
        (10, 1, 100, 100, 5),
        (10, 1, 100, 100, 5),
    ]];
    let snap = Arc::new(ArcSwap::from_pointee(snapshot(&history, 0, base)));
    let registry = Registry::new();
    let e = ActionEngine::new(
        ActionsConfig::default(),
        "INR",
        BTreeMap::new(),
        snap,
        None,
        &registry,
        vec![],
    );
    let a = e.evaluate("rules").await;
    let b = e.evaluate("rules").await;
    assert_eq!((a.new, a.open), (1, 1));
    assert_eq!(
        (b.new, b.open),
        (0, 1),
        "the same rule on the same campaign stays one recommendation"
    );
    let recs = e.recommendations(true);
    assert_eq!(recs.len(), 1);
    assert_eq!(
        (recs[0].rule.as_str(), recs[0].kind),
        ("cpa_above", ActionKind::Pause)
    );
    let err = e.approve(&recs[0].id, "write_token", "").await.unwrap_err();
    assert!(matches!(err, ActionError::Conflict(_)), "{err}");
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("adpulse_actions_open_recommendations 1"),
        "{text}"
    );
    e.reject(&recs[0].id, "write_token", "seasonal")
        .await
        .unwrap();
    assert_eq!(
        e.evaluate("rules").await.new,
        0,
        "a rejected recommendation is not reopened the same day"
    );
    assert!(e.recommendations(true).is_empty());
}

#[test]
fn tokens_separate_read_and_write() {
    let snap = Arc::new(ArcSwap::from_pointee(Snapshot::empty("INR")));
    let e = engine(ActionsConfig::default(), snap, vec![])
        .with_tokens(Some(Secret::new("r")), Some(Secret::new("w")));
    assert_eq!(e.check_token(None, Access::Read), Err("unauthenticated"));
    assert_eq!(
        e.check_token(Some("x"), Access::Read),
        Err("unauthenticated")
    );
    assert_eq!(e.check_token(Some("r"), Access::Read), Ok("read_token"));
    assert_eq!(e.check_token(Some("r"), Access::Write), Err("forbidden"));
    assert_eq!(e.check_token(Some("w"), Access::Write), Ok("write_token"));
    assert_eq!(e.check_token(Some("w"), Access::Read), Ok("write_token"));
}

/// A Mem platform holding `n` active campaigns with budget 1,000.
fn mem_with(n: usize) -> Arc<Mem> {
    Mem::new(
        (0..n).map(|i| (key(i), active(dec!(1000)))).collect(),
        dec!(1_000_000),
        dec!(10),
        Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
    )
}

fn mutations(mem: &Mem) -> u32 {
    mem.mutations.lock().unwrap().values().sum()
}

/// Three money-losing campaigns (CPA rule: spend 6,000, no conversion) and one quiet one.
fn losing_snapshot() -> Arc<ArcSwap<Snapshot>> {
    let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let lose: Day = (6_000, 0, 0, 100_000, 2_000);
    let quiet: Day = (10, 1, 100, 100, 5);
    let history = vec![vec![lose, lose, lose, quiet]];
    Arc::new(ArcSwap::from_pointee(snapshot(&history, 0, base)))
}

fn engine_in(dir: &std::path::Path, snap: Arc<ArcSwap<Snapshot>>, mem: Arc<Mem>) -> ActionEngine {
    let mut cfg = ActionsConfig::default();
    cfg.mode = Mode::Approve;
    cfg.dry_run = false;
    engine(cfg, snap, vec![mem]).with_state_dir(dir).unwrap()
}

/// (id, campaign, status, decided_by, note, outcome result) of every recommendation.
type Listed = (
    String,
    String,
    RecStatus,
    Option<String>,
    Option<String>,
    Option<ExecResult>,
);

fn listed(e: &ActionEngine) -> Vec<Listed> {
    let mut v: Vec<Listed> = e
        .recommendations(false)
        .into_iter()
        .map(|r| {
            (
                r.id,
                r.campaign_id,
                r.status,
                r.decided_by,
                r.note,
                r.outcome.map(|o| o.result),
            )
        })
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

#[tokio::test]
async fn a_restart_keeps_every_decision_and_never_executes_twice() {
    let dir = tempfile::tempdir().unwrap();
    let snap = losing_snapshot();
    let mem = mem_with(4);
    let before = {
        let e = engine_in(dir.path(), snap.clone(), mem.clone());
        assert_eq!(e.evaluate("rules").await.new, 3);
        let recs = e.recommendations(true);
        let id = |c: &str| recs.iter().find(|r| r.campaign_id == c).unwrap().id.clone();
        let done = e.approve(&id("c0"), "user:asha", "stop it").await.unwrap();
        assert_eq!(done.status, RecStatus::Executed);
        assert_eq!(done.outcome.as_ref().map(|o| o.duplicate), Some(false));
        e.reject(&id("c1"), "user:ravi", "seasonal").await.unwrap();
        e.set_mode(Mode::Approve, false, "user:admin").unwrap();
        e.set_cap(
            &CapScope::Account("act_1".into()),
            Some(dec!(900000)),
            "user:admin",
        )
        .unwrap();
        listed(&e)
    };
    assert_eq!(mutations(&mem), 1, "one pause sent");
    println!("decisions before the restart:");
    for d in &before {
        println!("  {d:?}");
    }
    let e = engine_in(dir.path(), snap.clone(), mem.clone());
    let after = listed(&e);
    println!("decisions after the restart:");
    for d in &after {
        println!("  {d:?}");
    }
    assert_eq!(before, after);
    let want_status: Vec<RecStatus> =
        vec![RecStatus::Executed, RecStatus::Rejected, RecStatus::Open];
    assert_eq!(after.iter().map(|d| d.2).collect::<Vec<_>>(), want_status);
    assert_eq!(after[1].4.as_deref(), Some("seasonal"));
    assert_eq!(
        e.config().caps.accounts.get("act_1"),
        Some(&dec!(900000)),
        "cap edit persisted"
    );
    // the rejected one is not reopened, the open one keeps its id
    let s = e.evaluate("rules").await;
    assert_eq!((s.new, s.open), (0, 1));
    assert_eq!(listed(&e), after);
    // the executed approval answers with its outcome, marked duplicate, and sends nothing
    let again = e.approve(&after[0].0, "user:asha", "").await.unwrap();
    assert_eq!(again.status, RecStatus::Executed);
    let o = again.outcome.unwrap();
    assert!(o.duplicate, "{o:?}");
    assert_eq!(o.result, ExecResult::Executed);
    assert_eq!(
        mutations(&mem),
        1,
        "a repeated approval after a restart sends nothing"
    );
    let err = e.approve(&after[1].0, "user:asha", "").await.unwrap_err();
    assert!(
        matches!(err, ActionError::Conflict(_)),
        "rejected stays rejected: {err}"
    );
    // and the audit trail of both runs is in the one local log
    let log = e.audit_log().query(&AuditFilter::default()).unwrap();
    let events: Vec<&str> = log.iter().rev().map(|r| r.event.as_str()).collect();
    for ev in [
        "recommended",
        "approved",
        "executed",
        "rejected",
        "mode_changed",
        "cap_changed",
        "duplicate",
    ] {
        assert!(events.contains(&ev), "{ev} missing from {events:?}");
    }
}

#[tokio::test]
async fn dry_run_then_real_approval_executes_once_for_real() {
    let snap = losing_snapshot();
    let mem = mem_with(4);
    let mut cfg = ActionsConfig::default();
    cfg.mode = Mode::Approve;
    let e = engine(cfg, snap, vec![mem.clone()]);
    e.evaluate("rules").await;
    let id = e.recommendations(true)[0].id.clone();
    let r = e.approve(&id, "user:asha", "").await.unwrap();
    assert_eq!(r.status, RecStatus::DryRun);
    assert_eq!(mutations(&mem), 0);
    e.set_mode(Mode::Approve, false, "user:admin").unwrap();
    let r = e.approve(&id, "user:asha", "").await.unwrap();
    assert_eq!(
        (r.status, r.outcome.unwrap().duplicate),
        (RecStatus::Executed, false)
    );
    let r = e.approve(&id, "user:asha", "").await.unwrap();
    assert!(r.outcome.unwrap().duplicate);
    assert_eq!(mutations(&mem), 1);
}

/// With QuestDB unreachable and its spool full the sink takes nothing (its channel is full and
/// nobody drains it). The kill switch must still answer: time is paused, so if it waited on the
/// sink the runtime would go idle, the clock would jump and the timeout would fire.
#[tokio::test(start_paused = true)]
async fn kill_switch_answers_while_the_sink_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(crate::telemetry::Telemetry::new());
    let mut qcfg = crate::config::QuestDbConfig::default();
    qcfg.http_url = "http://127.0.0.1:9".into();
    qcfg.spool_dir = dir.path().join("spool");
    let (_sink, handle) = crate::sinks::questdb::QuestDbSink::build(qcfg, None, telemetry).unwrap();
    // fill the channel: the sink task never runs, so the next send would wait for ever
    let filler = engine(ActionsConfig::default(), losing_snapshot(), vec![]);
    let mut queued = 0;
    while tokio::time::timeout(
        Duration::from_secs(1),
        handle.send(vec![Record::Actions(filler.row("x", "filler", "t"))]),
    )
    .await
    .is_ok()
    {
        queued += 1;
        assert!(queued < 1000, "the sink channel never fills");
    }
    let snap = losing_snapshot();
    let mem = mem_with(4);
    let mut cfg = ActionsConfig::default();
    cfg.dry_run = false;
    let e = Arc::new(
        ActionEngine::new(
            cfg,
            "INR",
            BTreeMap::new(),
            snap,
            Some(handle),
            &Registry::new(),
            vec![mem.clone()],
        )
        .with_state_dir(dir.path())
        .unwrap(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let lp = tokio::spawn(e.clone().run_loop(shutdown.clone()));
    let target = KillTarget {
        platform: "meta".into(),
        account: "act_1".into(),
        campaign_id: None,
    };
    for i in 0..3 {
        // measured for the report only (no bound is asserted): real time, fsyncs included
        let t0 = std::time::Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            e.kill_switch(&target, "user:asha", "stop", &format!("req{i}")),
        )
        .await
        .expect("the kill switch waited on the sink")
        .unwrap();
        println!(
            "kill switch of 4 campaigns with the sink full answered in {:?}",
            t0.elapsed()
        );
        assert_eq!(out.len(), 4);
    }
    for _ in 0..50 {
        tokio::time::timeout(Duration::from_secs(30), async {
            e.audit_refusal("anonymous", "unauthenticated", "approve")
        })
        .await
        .expect("a refusal waited on the sink");
    }
    assert_eq!(mutations(&mem), 4, "each campaign paused once");
    let log = e.audit_log().query(&AuditFilter::default()).unwrap();
    assert_eq!(log.iter().filter(|r| r.event == "executed").count(), 4);
    assert_eq!(log.iter().filter(|r| r.event == "already_done").count(), 8);
    shutdown.cancel();
    lp.await.unwrap();
    // the refusals of the minute are written at shutdown, as one row
    let log = e.audit_log().query(&AuditFilter::default()).unwrap();
    let refused: Vec<&ActionRow> = log.iter().filter(|r| r.event == "refused").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].detail.starts_with("50 refused"),
        "{:?}",
        refused[0].detail
    );
}

#[tokio::test]
async fn a_pass_with_many_events_logs_one_summary_line_but_audits_every_row() {
    let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let lose: Day = (6_000, 0, 0, 100_000, 2_000);
    let history = vec![vec![lose; 30]];
    let snap = Arc::new(ArcSwap::from_pointee(snapshot(&history, 0, base)));
    let mut cfg = ActionsConfig::default();
    cfg.audit_log_lines_per_pass = 5;
    let e = engine(cfg, snap, vec![]);
    let (buf, _g) = capture_logs();
    assert_eq!(e.evaluate("rules").await.new, 30);
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches("action audit").count(), 1, "{text}");
    assert!(text.contains("summarized"), "{text}");
    let log = e.audit_log().query(&AuditFilter::default()).unwrap();
    assert_eq!(log.iter().filter(|r| r.event == "recommended").count(), 30);
}

/// Agency scale: a pass opening thousands of recommendations logs one line with the counts and
/// the first few (with the default threshold), not a line each; every row is still audited.
#[tokio::test]
async fn thousands_of_recommendations_make_one_summary_line_with_counts_and_the_first_few() {
    let base = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let lose: Day = (6_000, 0, 0, 100_000, 2_000);
    let campaigns = 2_000;
    let history = vec![vec![lose; campaigns]];
    let snap = Arc::new(ArcSwap::from_pointee(snapshot(&history, 0, base)));
    let e = engine(ActionsConfig::default(), snap, vec![]);
    let (buf, _g) = capture_logs();
    let new = e.evaluate("rules").await.new;
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let log = e.audit_log().query(&AuditFilter::default()).unwrap();
    let recommended = log.iter().filter(|r| r.event == "recommended").count();
    assert!(
        new >= campaigns,
        "{new}: a pause per losing campaign at least"
    );
    assert_eq!(recommended, new);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("action audit"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(line.contains("summarized"), "{line}");
    assert!(line.contains(&format!("rows={new}")), "{line}");
    assert!(line.contains(&format!("\"recommended\": {new}")), "{line}");
    // the first few rows are named: the snapshot's first three campaigns, and no more
    for i in 0..3 {
        assert!(line.contains(&format!("meta c{i}\"")), "c{i}: {line}");
    }
    assert!(!line.contains("meta c3\""), "{line}");
    assert!(line.len() < 1_000, "one short line: {} bytes", line.len());
}

struct LogBuf(Arc<Mutex<Vec<u8>>>);

/// Log lines written on this thread while the guard lives, into the returned buffer.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let buf = buf.clone();
        move || LogBuf(buf.clone())
    };
    let sub = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A campaign id with a newline (as a percent-decoded path segment delivers it) is logged
/// escaped: it cannot start a forged log line.
#[tokio::test]
async fn user_strings_cannot_forge_log_lines() {
    let e = engine(ActionsConfig::default(), losing_snapshot(), vec![]);
    let (buf, _g) = capture_logs();
    let mut row = e.row("rec-1\nINFO forged", "approved", "user:x\nINFO forged");
    row.detail = "note\r\nINFO forged line".into();
    e.audit(row);
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("INFO forged")),
        "{text}"
    );
}
