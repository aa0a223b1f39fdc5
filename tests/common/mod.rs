//! Test harness: real QuestDB and Prometheus processes on free loopback ports, each with its own
//! temporary folder, killed when dropped. A missing component is an error that says how to get it.
//! Also the configurations the source, backfill and demo tests share (one copy each), and the
//! demo start that waits on a KPI refresh rather than a fixed sleep.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An HTTP client (installs the TLS provider adpulse uses first).
pub fn client() -> reqwest::Client {
    adpulse::init_tls();
    reqwest::Client::new()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A file or folder of the real data the repository carries in `datasets/` (`rel` below the
/// repository root); a missing one fails the test with where it was expected.
pub fn dataset(rel: &str) -> PathBuf {
    let p = repo().join(rel);
    assert!(
        p.exists(),
        "data missing: expected {} (the repository carries it in datasets/)",
        p.display()
    );
    p
}

/// Serve a fake platform API (an axum router) on a free loopback port; its base URL.
pub async fn serve_fake(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("no free loopback port");
    let addr = l.local_addr().expect("bound address");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

/// A fake API's 200 answer with a JSON `body`.
pub fn json_ok(body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::OK,
        [("content-type", "application/json")],
        body,
    )
        .into_response()
}

/// A fake Graph API answering `GET /v25.0/<account_id>/insights` (the pinned version: a request
/// to another one is a 404) with `answer(query)`.
pub fn meta_insights_fake<F, Fut>(account_id: &str, answer: F) -> axum::Router
where
    F: Fn(std::collections::HashMap<String, String>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = axum::response::Response> + Send + 'static,
{
    use axum::extract::Query;
    axum::Router::new().route(
        &format!("/v25.0/{account_id}/insights"),
        axum::routing::get(
            move |Query(q): Query<std::collections::HashMap<String, String>>| answer(q),
        ),
    )
}

/// The seed's KPI settings: Indian days, INR, revenue counts as profit, a 3-hour loss-rate
/// window, a 24-hour tracking window, a break-even ROI target.
pub fn india_settings() -> adpulse::state::SnapshotSettings {
    adpulse::state::SnapshotSettings::inr(chrono_tz::Asia::Kolkata, Some(0.0))
}

/// An hourly row of Meta campaign `id` (account `act_1`, INR) spending `spend` at `ts`, with no
/// value, impressions, clicks or conversions: tests set what they need with `..inr_meta_hour(..)`.
pub fn inr_meta_hour(
    id: &str,
    ts: chrono::DateTime<chrono::Utc>,
    spend: rust_decimal::Decimal,
) -> adpulse::records::CampaignStat {
    adpulse::records::CampaignStat {
        ts,
        bucket: adpulse::records::Bucket::Hour,
        day: ts.with_timezone(&chrono_tz::Asia::Kolkata).date_naive(),
        key: adpulse::records::CampaignKey {
            platform: "meta".into(),
            account: "act_1".into(),
            campaign_id: id.into(),
        },
        campaign_name: format!("Campaign {id}"),
        source: "test".into(),
        spend,
        conversion_value: rust_decimal::Decimal::ZERO,
        spend_account: spend,
        conversion_value_account: rust_decimal::Decimal::ZERO,
        account_currency: "INR".into(),
        currency: "INR".into(),
        impressions: 0,
        clicks: 0,
        conversions: 0.0,
    }
}

/// Write a file `name` holding `contents` into `dir`; its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

/// Write a secret file (a token, a client secret) into `dir`; its path as TOML wants it.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    write_file(dir, name, value).display().to_string()
}

/// The configuration of a source test: state (and the spool) in `state_dir`, the server on a free
/// port, the models off, QuestDB at `questdb_url` (off when `None`), KPIs refreshed every second,
/// then `sources` (the test's `[[sources]]` entries). It must have no problems.
pub fn source_test_config(
    state_dir: &Path,
    questdb_url: Option<&str>,
    sources: &str,
) -> adpulse::config::Config {
    let questdb = match questdb_url {
        Some(url) => format!(
            "http_url = \"{url}\"\nspool_dir = \"{}\"\nflush_interval_ms = 50",
            state_dir.join("spool").display()
        ),
        None => "enabled = false".into(),
    };
    let text = format!(
        "[general]\nstate_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[questdb]\n{questdb}\n\
         [models]\nenabled = false\n{sources}",
        state_dir.display()
    );
    let mut cfg =
        adpulse::config::Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    cfg.general.refresh_interval_secs = 1;
    assert_eq!(cfg.problems(), vec![]);
    cfg
}

/// Start adpulse with the one source under test: the [`source_test_config`] (state in `dir`,
/// QuestDB `q`) of a `[[sources]]` entry of type `kind` named `name` on the fake at `base`, with
/// the source's other `keys` (TOML lines, each ending in a newline).
pub async fn start_source(
    dir: &Path,
    q: &QuestDb,
    (kind, name): (&str, &str),
    base: &str,
    keys: &str,
) -> adpulse::app::Running {
    let entry =
        format!("[[sources]]\ntype = \"{kind}\"\nname = \"{name}\"\nbase_url = \"{base}\"\n{keys}");
    adpulse::app::start(source_test_config(dir, Some(&q.url()), &entry))
        .await
        .unwrap_or_else(|e| panic!("{kind} source {name}: {e}\n{entry}"))
}

/// The OAuth keys of a Google source (Google Ads or GA4) on a fake at `base`: the token endpoint
/// `{base}/token`, and the client id, client secret and refresh token as files written into
/// `dir` with the values `(client_id, client_secret, refresh_token)`.
pub fn google_oauth_toml(dir: &Path, base: &str, values: (&str, &str, &str)) -> String {
    let (cid, cs, rt) = values;
    format!(
        "token_url = \"{base}/token\"\nclient_id_file = \"{}\"\nclient_secret_file = \"{}\"\n\
         refresh_token_file = \"{}\"\n",
        secret_file(dir, "cid", cid),
        secret_file(dir, "cs", cs),
        secret_file(dir, "rt", rt),
    )
}

/// The configuration of a backfill or import run: state in `dir/state`, QuestDB at `questdb_url`
/// with its spool in `dir/spool` (flushed every 50 ms), then `rest` (the run's `[[sources]]`
/// entries, `[fx]` rates and anything else it needs).
pub fn backfill_config(dir: &Path, questdb_url: &str, rest: &str) -> adpulse::config::Config {
    let text = format!(
        "[general]\nstate_dir = \"{}\"\n[questdb]\nhttp_url = \"{questdb_url}\"\n\
         spool_dir = \"{}\"\nflush_interval_ms = 50\n{rest}",
        dir.join("state").display(),
        dir.join("spool").display()
    );
    adpulse::config::Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A `[[sources]]` entry: the Meta source `meta` of ad account `account_id` on the fake Graph
/// API at `base`, its token in a file `t` written into `dir`, daily rows only, then `extra` keys.
pub fn meta_source_toml(dir: &Path, account_id: &str, base: &str, extra: &str) -> String {
    let token = secret_file(dir, "t", "tok");
    format!(
        "[[sources]]\ntype = \"meta\"\nname = \"meta\"\naccount_id = \"{account_id}\"\n\
         base_url = \"{base}\"\naccess_token_file = \"{token}\"\nhourly_days = 0\n{extra}"
    )
}

/// A Meta backfill against the fake Graph API `app`: the fake served, a temporary folder (keep it
/// as long as the config), and the [`backfill_config`] of `tables` (an `[fx]` table, or nothing)
/// and the [`meta_source_toml`] of `account_id` with `extra` keys.
pub async fn meta_backfill(
    app: axum::Router,
    questdb_url: &str,
    tables: &str,
    account_id: &str,
    extra: &str,
) -> (tempfile::TempDir, adpulse::config::Config) {
    let base = serve_fake(app).await;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let meta = meta_source_toml(dir.path(), account_id, &base, extra);
    let cfg = backfill_config(dir.path(), questdb_url, &format!("{tables}\n{meta}"));
    (dir, cfg)
}

/// A backfill (7-day chunks) that must fail with incomplete days: (complete, incomplete days,
/// the message).
pub async fn incomplete_backfill(
    cfg: &adpulse::config::Config,
    source: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> (usize, Vec<(chrono::NaiveDate, String)>, String) {
    match adpulse::commands::backfill::backfill(cfg, source, from, to, 7, false).await {
        Err(e @ adpulse::commands::backfill::BackfillError::Incomplete { .. }) => {
            let text = e.to_string();
            let adpulse::commands::backfill::BackfillError::Incomplete {
                complete,
                incomplete,
            } = e
            else {
                unreachable!()
            };
            (complete, incomplete, text)
        }
        other => panic!("{source}: expected incomplete days, got {other:?}"),
    }
}

fn questdb_version() -> String {
    let text = std::fs::read_to_string(repo().join("scripts/versions.sh"))
        .expect("scripts/versions.sh is missing");
    text.lines()
        .find_map(|l| l.strip_prefix("QUESTDB_VERSION="))
        .expect("QUESTDB_VERSION not in scripts/versions.sh")
        .trim()
        .to_string()
}

pub fn questdb_jar() -> PathBuf {
    if let Ok(p) = std::env::var("ADPULSE_QUESTDB_JAR") {
        return PathBuf::from(p);
    }
    let v = questdb_version();
    let jar = repo().join(format!(".stack/bin/questdb-{v}.jar"));
    assert!(
        jar.is_file(),
        "QuestDB {v} is not installed at {}: run `bash scripts/install-deps.sh` (fetches it from Maven Central), or set ADPULSE_QUESTDB_JAR",
        jar.display()
    );
    jar
}

fn require(cmd: &str, package: &str) {
    let ok = Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "`{cmd}` is not installed: run `bash scripts/install-deps.sh` (Debian package {package})"
    );
}

/// Poll `f` until it returns `Some`, or panic with `what` after `limit` (a readiness wait, not a
/// performance bound).
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Poll `/metrics` of adpulse at `addr` until `check` finds in the body what the test waits for
/// (`what`, named if it never comes); what `check` returned.
pub async fn wait_metrics<T>(
    addr: std::net::SocketAddr,
    what: &str,
    check: impl Fn(&str) -> Option<T>,
) -> T {
    let check = &check;
    eventually(what, Duration::from_secs(30), || async move {
        let (_, m) = get(&format!("http://{addr}/metrics")).await;
        check(&m)
    })
    .await
}

/// `deploy/questdb/questdb.env`: the `QDB_*` settings scripts/stack.sh and docker-compose.yml
/// give QuestDB, so tests run it as users do.
pub fn questdb_env() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/questdb/questdb.env");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (part of the repository)", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not KEY=VALUE: {l}", path.display()));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// A real QuestDB server.
pub struct QuestDb {
    child: Option<Child>,
    pub http_port: u16,
    pub pg_port: u16,
    /// Port of QuestDB's own Prometheus `/metrics` (its "min" HTTP server), when enabled.
    pub metrics_port: Option<u16>,
    dir: tempfile::TempDir,
    /// Extra `QDB_*` settings.
    env: Vec<(String, String)>,
}

impl QuestDb {
    /// Start on free ports and wait until it answers SQL.
    pub async fn start() -> QuestDb {
        Self::start_on(free_port()).await
    }

    /// Start with its HTTP endpoint on `http_port` (e.g. one adpulse already points at).
    pub async fn start_on(http_port: u16) -> QuestDb {
        Self::start_inner(http_port, None).await
    }

    /// Start on free ports with QuestDB's Prometheus `/metrics` enabled (as `scripts/stack.sh`
    /// runs it), so a Prometheus can scrape it as job `questdb`.
    pub async fn start_with_metrics() -> QuestDb {
        Self::start_inner(free_port(), Some(free_port())).await
    }

    /// Start on free ports with extra server settings (`QDB_*` environment variables, e.g. HTTP
    /// basic auth).
    pub async fn start_with_env(env: &[(&str, &str)]) -> QuestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut q = QuestDb {
            child: None,
            http_port: free_port(),
            pg_port: free_port(),
            metrics_port: None,
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        q.spawn();
        q.wait_ready().await;
        q
    }

    /// Start again after `kill` (same ports, same data folder), e.g. after a `kill -9`.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    async fn start_inner(http_port: u16, metrics_port: Option<u16>) -> QuestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut q = QuestDb {
            child: None,
            http_port,
            pg_port: free_port(),
            metrics_port,
            dir,
            env: Vec::new(),
        };
        q.spawn();
        q.wait_ready().await;
        q
    }

    /// `host:port` of QuestDB's `/metrics`, for a Prometheus scrape job.
    pub fn metrics_addr(&self) -> Option<String> {
        self.metrics_port.map(|p| format!("127.0.0.1:{p}"))
    }

    fn spawn(&mut self) {
        let jar = questdb_jar();
        require("java", "openjdk-17-jre-headless");
        let root = self.dir.path().join("root");
        std::fs::create_dir_all(&root).expect("questdb root");
        let log = std::fs::File::create(self.dir.path().join("questdb.log")).expect("log file");
        // QuestDB unpacks its native library (7 MB) into java.io.tmpdir at every start and
        // leaves it there: keep it in the server's own folder, which goes with the test
        let tmp = self.dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("questdb tmp");
        let mut cmd = Command::new("java");
        cmd.args(["-Xms128m", "-Xmx512m"])
            .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
            .arg("-p")
            .arg(&jar)
            .args(["-m", "io.questdb/io.questdb.ServerMain", "-d"])
            .arg(&root)
            .env("QDB_HTTP_BIND_TO", format!("127.0.0.1:{}", self.http_port))
            .env("QDB_PG_NET_BIND_TO", format!("127.0.0.1:{}", self.pg_port));
        match self.metrics_port {
            Some(port) => cmd
                .env("QDB_HTTP_MIN_ENABLED", "true")
                .env("QDB_HTTP_MIN_NET_BIND_TO", format!("127.0.0.1:{port}"))
                .env("QDB_METRICS_ENABLED", "true"),
            None => cmd.env("QDB_HTTP_MIN_ENABLED", "false"),
        };
        // the server settings every adpulse QuestDB runs with (scripts/stack.sh, compose)
        cmd.envs(questdb_env());
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = cmd
            .env("QDB_LINE_TCP_ENABLED", "false")
            .env("QDB_TELEMETRY_ENABLED", "false")
            .env("QDB_SHARED_WORKER_COUNT", "2")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot start java for QuestDB");
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let url = self.url();
        let dir = self.dir.path().to_path_buf();
        let start = Instant::now();
        loop {
            if let Ok(r) = client()
                .get(format!("{url}/exec?query=select%201"))
                .send()
                .await
                // 401: up, with HTTP basic auth (`start_with_env`)
                && (r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED)
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = std::fs::read_to_string(dir.join("questdb.log")).unwrap_or_default();
                panic!("QuestDB exited ({status}):\n{log}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "QuestDB did not start on port {}",
                self.http_port
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run SQL; panics with QuestDB's message on an error.
    pub async fn sql(&self, query: &str) -> serde_json::Value {
        let v = self.try_sql(query).await;
        match v {
            Ok(v) => v,
            Err(e) => panic!("SQL failed: {e}\n{query}"),
        }
    }

    pub async fn try_sql(&self, query: &str) -> Result<serde_json::Value, String> {
        let r = client()
            .get(format!("{}/exec", self.url()))
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        if let Some(e) = v.get("error") {
            return Err(e.to_string());
        }
        Ok(v)
    }

    /// Rows of a query as JSON arrays.
    pub async fn rows(&self, query: &str) -> Vec<Vec<serde_json::Value>> {
        let v = self.sql(query).await;
        v["dataset"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A single number (LONG, DOUBLE or DECIMAL-as-string) from a one-cell query.
    pub async fn number(&self, query: &str) -> Option<f64> {
        let rows = self.rows(query).await;
        let cell = rows.first()?.first()?.clone();
        match cell {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// Wait until WAL tables have applied everything written so far and `query` returns `want`.
    /// The rows of `query`, each made into a `T` by `f`.
    pub async fn rows_map<T>(&self, query: &str, f: impl Fn(&[serde_json::Value]) -> T) -> Vec<T> {
        self.rows(query).await.iter().map(|r| f(r)).collect()
    }

    /// Wait until every WAL table has applied what it was sent, so what was written is read.
    pub async fn wait_for_wal_applied(&self) {
        self.wait_for_count(
            "SELECT count() FROM wal_tables() WHERE writerTxn < sequencerTxn",
            0.0,
        )
        .await;
    }

    pub async fn wait_for_count(&self, query: &str, want: f64) {
        eventually(
            &format!("`{query}` to return {want}"),
            Duration::from_secs(60),
            || async {
                match self.try_sql(query).await {
                    Ok(v) => {
                        let got = v["dataset"][0][0].as_f64()?;
                        (got == want).then_some(())
                    }
                    Err(_) => None,
                }
            },
        )
        .await
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for QuestDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real Prometheus server scraping the given targets every second.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// The folder of the rule files it was started with, when it made them.
    rules: Option<tempfile::TempDir>,
}

impl Prometheus {
    /// Like `start_alerting`, with the shipped alert rules, their `for:` shortened to `for_`
    /// ([`rules_with_short_for`]), in a folder the server keeps as long as it runs.
    pub async fn with_shipped_rules(
        jobs: &[(&str, String)],
        for_: &str,
        alertmanager: Option<&str>,
    ) -> Prometheus {
        let rules_dir = tempfile::tempdir().expect("temp dir");
        let rules = rules_with_short_for(rules_dir.path(), for_);
        let mut p = Self::start_alerting(jobs, &rules, alertmanager).await;
        p.rules = Some(rules_dir);
        p
    }

    pub async fn start(jobs: &[(&str, String)], rule_files: &[PathBuf]) -> Prometheus {
        Self::start_alerting(jobs, rule_files, None).await
    }

    /// Like `start`, and sends the alerts of `rule_files` to the Alertmanager at `alertmanager`
    /// (`host:port`).
    pub async fn start_alerting(
        jobs: &[(&str, String)],
        rule_files: &[PathBuf],
        alertmanager: Option<&str>,
    ) -> Prometheus {
        require("prometheus", "prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, target) in jobs {
            cfg.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        if !rule_files.is_empty() {
            cfg.push_str("rule_files:\n");
            for f in rule_files {
                cfg.push_str(&format!("  - {}\n", f.display()));
            }
        }
        if let Some(am) = alertmanager {
            cfg.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
            ));
        }
        let child = spawn_prometheus_tool(
            dir.path(),
            ("prometheus", "prometheus"),
            &cfg,
            "--storage.tsdb.path",
            port,
            &[],
        );
        let p = Prometheus {
            child,
            port,
            dir,
            rules: None,
        };
        let url = format!("http://127.0.0.1:{port}/-/ready");
        eventually("Prometheus to be ready", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                client()
                    .get(url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET an API path (e.g. `/api/v1/query`) with query parameters; the JSON answer, whatever
    /// its status (a rejected query is `{"status":"error","error":...}`).
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        client()
            .get(format!("{}{path}", self.url()))
            .query(params)
            .send()
            .await
            .expect("prometheus request")
            .json()
            .await
            .expect("prometheus json")
    }

    /// Instant query; the vector's samples as (labels, value).
    pub async fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let v: serde_json::Value = client()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("prometheus query")
            .json()
            .await
            .expect("prometheus json");
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        let val = s["value"][1].as_str()?.parse().ok()?;
                        Some((s["metric"].clone(), val))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) with the given configuration, on a free
/// port, with its own storage, clustering off.
pub struct Alertmanager {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Start Prometheus or Alertmanager (`program`, its files named `name`): its config `yaml` written
/// to `dir/<name>.yml`, its storage (`storage_flag`) in `dir/data`, listening on `port`, with
/// `extra` arguments; stdout and stderr go to `dir/<name>.log`.
fn spawn_prometheus_tool(
    dir: &Path,
    (program, name): (&str, &str),
    yaml: &str,
    storage_flag: &str,
    port: u16,
    extra: &[&str],
) -> Child {
    let cfg_path = dir.join(format!("{name}.yml"));
    std::fs::write(&cfg_path, yaml).unwrap_or_else(|e| panic!("{}: {e}", cfg_path.display()));
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    Command::new(program)
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!("{storage_flag}={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

impl Alertmanager {
    pub async fn start(config_yaml: &str) -> Alertmanager {
        require("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = spawn_prometheus_tool(
            dir.path(),
            ("prometheus-alertmanager", "alertmanager"),
            config_yaml,
            "--storage.path",
            port,
            // a single instance: no gossip port to collide with other tests
            &["--cluster.listen-address="],
        );
        let mut am = Alertmanager { child, port, dir };
        let url = format!("{}/-/ready", am.url());
        let start = Instant::now();
        loop {
            if let Ok(r) = client().get(&url).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!("Alertmanager exited ({status}):\n{}", am.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Alertmanager did not become ready on port {port}:\n{}",
                am.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        am
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `host:port`, for Prometheus' `alerting` section.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// Alerts Alertmanager holds (`/api/v2/alerts`: active, inhibited and silenced).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        client()
            .get(format!("{}/api/v2/alerts", self.url()))
            .send()
            .await
            .expect("alertmanager request")
            .json()
            .await
            .expect("alertmanager json")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies of `alerting/rules/*.yml` in `dir` with every `for:` duration replaced by `for_`, so a
/// test sees alerts fire in seconds instead of the hours a rule may require (the rule files keep
/// their durations as plain `for: <literal>` lines for this). Returns the copies' paths.
pub fn rules_with_short_for(dir: &Path, for_: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("alerting/rules"))
        .expect("alerting/rules")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("rule file");
        let mut replaced = 0;
        let short: Vec<String> = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with("for:") {
                    replaced += 1;
                    format!("{}for: {for_}", &l[..l.len() - t.len()])
                } else {
                    l.to_string()
                }
            })
            .collect();
        let alerts = text
            .lines()
            .filter(|l| l.trim_start().starts_with("- alert:"))
            .count();
        assert_eq!(
            replaced,
            alerts,
            "{}: every alert should have one `for:` line",
            f.display()
        );
        let dest = dir.join(f.file_name().expect("file name"));
        std::fs::write(&dest, short.join("\n") + "\n").expect("write rules");
        out.push(dest);
    }
    assert!(!out.is_empty(), "no rule files in alerting/rules");
    out
}

/// adpulse (`adpulse::app::start`, the embedded default configuration) running `demo` into `q`,
/// on a free port, refreshing its KPIs every second. Returns once the backfill is in QuestDB (every
/// hour of `backfill_days` for the scenario's 6 campaigns, plus the hour in progress at `start`)
/// and the KPIs have been recomputed from the complete backfill. Keep the `TempDir` (the spool)
/// alive as long as adpulse runs.
pub async fn start_demo(
    q: &QuestDb,
    demo: adpulse::sources::demo::DemoConfig,
) -> (adpulse::app::Running, tempfile::TempDir) {
    start_demo_with(q, demo, |_| {}).await
}

/// [`start_demo`], with `adjust` applied to the configuration before adpulse starts (a token
/// file, a setting under test).
pub async fn start_demo_with(
    q: &QuestDb,
    demo: adpulse::sources::demo::DemoConfig,
    adjust: impl FnOnce(&mut adpulse::config::Config),
) -> (adpulse::app::Running, tempfile::TempDir) {
    let start = demo.start.expect("start_demo needs a fixed demo start");
    assert_eq!(
        demo.scale, 1,
        "start_demo counts the scenario's 6 campaigns"
    );
    let spool = tempfile::tempdir().expect("temp dir");
    let mut cfg = demo_test_config(q, spool.path());
    let tz = cfg.timezone();
    let hours = i64::from(demo.backfill_days) * 24
        + i64::from(adpulse::normalize::hour_floor(start, tz) != start);
    cfg.sources = vec![adpulse::sources::SourceConfig::Demo(demo)];
    adjust(&mut cfg);
    let running = adpulse::app::start(cfg).await.expect("adpulse starts");
    q.wait_for_count(
        "SELECT count() FROM campaign_stats WHERE bucket = 'hour'",
        (hours * 6) as f64,
    )
    .await;
    // The KPIs are recomputed from the in-memory store, which holds every row before the sink
    // acknowledged it: a snapshot computed from now on covers the whole backfill.
    wait_for_kpis_computed_after_now(running.addr).await;
    (running, spool)
}

/// adpulse's shipped configuration for a test on QuestDB `q`: the server on a free port, KPIs
/// refreshed every second, rows flushed every 100 ms, the spool in `spool`.
pub fn demo_test_config(q: &QuestDb, spool: &Path) -> adpulse::config::Config {
    use adpulse::config::{Config, QuestDbConfig};
    let mut cfg = Config::from_toml_str(adpulse::config::DEFAULT_CONFIG).expect("default config");
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.general.refresh_interval_secs = 1;
    cfg.questdb = QuestDbConfig {
        http_url: q.url(),
        flush_interval_ms: 100,
        spool_dir: spool.to_path_buf(),
        ..QuestDbConfig::default()
    };
    cfg
}

/// The demo source `demo` backfilling up to `start` (the scenario's defaults otherwise), then
/// done: the fixed history the end-to-end tests reason about.
pub fn demo_backfill_at(
    start: chrono::DateTime<chrono::Utc>,
) -> adpulse::sources::demo::DemoConfig {
    let mut demo = adpulse::sources::demo::DemoConfig::new("demo");
    demo.start = Some(start);
    demo.backfill_only = true;
    demo
}

/// What the demo `demo` emits up to `now` (its backfill), computed here from the demo source
/// itself, to know what QuestDB must hold before a test reads it.
pub fn demo_observations(
    demo: &adpulse::sources::demo::DemoConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<adpulse::normalize::Observation> {
    let mut src = adpulse::sources::demo::DemoSource::new(demo.clone(), chrono_tz::Asia::Kolkata);
    src.observations(src.epoch(), now, now)
}

/// The demo backfilling up to `start` (RFC 3339), over `days` days when given, and what it
/// emits by then: [`demo_backfill_at`] and [`demo_observations`] together.
pub fn demo_history(
    start: &str,
    days: Option<u32>,
) -> (
    adpulse::sources::demo::DemoConfig,
    Vec<adpulse::normalize::Observation>,
) {
    let now = start.parse().unwrap();
    let mut demo = demo_backfill_at(now);
    if let Some(days) = days {
        demo.backfill_days = days;
    }
    let obs = demo_observations(&demo, now);
    (demo, obs)
}

/// How many rows of each table the demo's observations `obs` become in QuestDB: orders (refunds
/// apart), touches, order lines (a refunded line is sent again with its refund and upserted:
/// counted once) and campaign day rows (sent again by later batches, upserted: each key once; the
/// attribution and CLV jobs read spend from them).
pub struct DemoCounts {
    pub orders: usize,
    pub touches: usize,
    pub lines: usize,
    pub day_rows: usize,
}

pub fn demo_counts(obs: &[adpulse::normalize::Observation]) -> DemoCounts {
    use adpulse::normalize::Observation;
    use std::collections::BTreeSet;
    let mut c = DemoCounts {
        orders: 0,
        touches: 0,
        lines: 0,
        day_rows: 0,
    };
    let (mut lines, mut days) = (BTreeSet::new(), BTreeSet::new());
    for o in obs {
        match o {
            Observation::Order(r) if r.kind == adpulse::records::OrderKind::Order => c.orders += 1,
            Observation::Touch(_) => c.touches += 1,
            Observation::Line(l) => {
                lines.insert((l.order_id.clone(), l.line_id.clone()));
            }
            Observation::Campaign(r) if r.bucket == adpulse::records::Bucket::Day => {
                days.insert((r.key.clone(), r.ts));
            }
            _ => {}
        }
    }
    (c.lines, c.day_rows) = (lines.len(), days.len());
    c
}

/// Wait until QuestDB holds every row of `obs` that `demo_counts` counts.
pub async fn wait_for_demo_rows(q: &QuestDb, obs: &[adpulse::normalize::Observation]) {
    let n = demo_counts(obs);
    for (query, n) in [
        ("SELECT count() FROM orders WHERE kind = 'order'", n.orders),
        ("SELECT count() FROM touchpoints", n.touches),
        ("SELECT count() FROM order_lines", n.lines),
        (
            "SELECT count() FROM campaign_stats WHERE bucket = 'day'",
            n.day_rows,
        ),
    ] {
        q.wait_for_count(query, n as f64).await;
    }
}

/// A QuestDB JSON cell as money, exactly: a string (text, DECIMAL) or a number.
pub fn cell_decimal(v: &serde_json::Value) -> rust_decimal::Decimal {
    use std::str::FromStr;
    match v {
        serde_json::Value::String(s) => rust_decimal::Decimal::from_str(s).expect("decimal"),
        serde_json::Value::Number(n) => {
            rust_decimal::Decimal::from_str(&n.to_string()).expect("decimal")
        }
        other => panic!("not money: {other}"),
    }
}

/// A QuestDB JSON timestamp cell (RFC 3339).
pub fn cell_ts(v: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp"))
        .expect("rfc3339")
        .with_timezone(&chrono::Utc)
}

/// Wait until adpulse at `addr` serves KPIs computed after this call. Its KPI loop computes a
/// snapshot, renders it (`adpulse_snapshot_rendered_timestamp_seconds`), then sleeps: the first
/// render newer than the one shown now happened after this call, so the render after that one
/// is of a snapshot computed after this call. A condition, not a fixed sleep.
pub async fn wait_for_kpis_computed_after_now(addr: std::net::SocketAddr) {
    let name = "adpulse_snapshot_rendered_timestamp_seconds";
    wait_for_two_rises(addr, name, "a KPI refresh", Duration::from_secs(60)).await;
}

/// Wait until the sample `name_and_labels` on adpulse's `/metrics` at `addr` has risen twice
/// from what it shows now (an absent sample counts as below any value). For a loop's counter or
/// timestamp: the first rise is a pass that ended after this call, so the pass ending at the
/// second one started after this call and saw everything there was at this moment.
pub async fn wait_for_two_rises(
    addr: std::net::SocketAddr,
    name_and_labels: &str,
    what: &str,
    limit: Duration,
) {
    let url = format!("http://{addr}/metrics");
    let read = || async { metric(&get(&url).await.1, name_and_labels) };
    let mut newer = read().await;
    for _ in 0..2 {
        let after = newer;
        newer = Some(
            eventually(what, limit, || async {
                read().await.filter(|r| Some(*r) > after)
            })
            .await,
        );
    }
}

/// A request header a fake reads (a token, a version), `""` when absent or not text.
pub fn header(h: &axum::http::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// GET a URL on adpulse; (status, body).
pub async fn get(url: &str) -> (u16, String) {
    match client().get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// `adpulse_source_polls_total` of `source` with `result` (`ok`, `error`) in a /metrics body.
pub fn polls(body: &str, source: &str, result: &str) -> Option<f64> {
    metric(
        body,
        &format!("adpulse_source_polls_total{{result=\"{result}\",source=\"{source}\"}}"),
    )
}

/// Value of an unlabelled (or first matching) sample in a /metrics body.
pub fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name_and_labels).then(|| v.parse().ok()).flatten()
    })
}
