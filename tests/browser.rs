//! The action center in a real browser: Debian's `chromium` driven through `chromedriver`
//! (WebDriver, from Rust with fantoccini) against adpulse running the demo, with a local fake
//! Meta Marketing API (`GET /{v}/{id}?fields=status,daily_budget`, `POST /{v}/{id}` with
//! `status=PAUSED`, answering `{"success": true}`, as the Graph API documents).
//!
//! Flows, each checked against the calls the fake platform received and the audit log:
//! sign in; approve a recommendation in dry run (no call), then for real (one pause); kill a
//! whole account with its typed confirmation (a wrong one stops nothing); a viewer cannot act;
//! a forged form without the CSRF token is refused; a session expires. With
//! `ADPULSE_UI_SCREENSHOTS=<dir>` it also saves a screenshot of every page (docs/ui.md).
//!
//! Needs `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`, done
//! by `scripts/install-deps.sh`); without them the test fails and says so.

mod common;
#[path = "support/fake_meta.rs"]
mod fake_meta;
// the browser drives the pages itself: the plain-HTTP visitor is not used here
#[allow(dead_code)]
#[path = "support/action_center.rs"]
mod action_center;

use action_center::demo_config;
use adpulse::actions::Mode;
use adpulse::actions::engine::{AuditFilter, Role, Users};
use adpulse::sources::SourceConfig;
use common::*;
use fake_meta::FakeMeta;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const META_TOKEN: &str = "meta-token-Br0w5";
const META_ACCOUNT: &str = "act_1029384756";
const IDLE_SECS: u64 = 6;

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // a failed test leaves its browser behind: end the processes of our own profile only
        let mine = self._profile.path().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&mine)
                && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
            {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

fn find_binary(names: &[&str]) -> Option<std::path::PathBuf> {
    names
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

async fn browser() -> (Driver, Client) {
    let chromium = find_binary(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]).expect(
        "chromium is missing: apt-get install -y chromium chromium-driver (scripts/install-deps.sh)",
    );
    let driver = find_binary(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]).expect(
        "chromedriver is missing: apt-get install -y chromium-driver (scripts/install-deps.sh)",
    );
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let d = Driver {
        child,
        port,
        _profile: profile,
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", d._profile.path().display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{}", d.port);
    let c = eventually("chromedriver answers", Duration::from_secs(30), || {
        let caps = caps.clone();
        let url = url.clone();
        async move {
            ClientBuilder::rustls()
                .ok()?
                .capabilities(caps)
                .connect(&url)
                .await
                .ok()
        }
    })
    .await;
    (d, c)
}

/// Wait until the page holds `needle` (htmx swaps pages in place); panics with the page.
async fn wait_text(c: &Client, needle: &str) -> String {
    for _ in 0..200 {
        if let Ok(s) = c.source().await
            && s.contains(needle)
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "page never showed {needle:?}: {}",
        c.source().await.unwrap_or_default()
    );
}

async fn shot(c: &Client, name: &str) {
    let Ok(dir) = std::env::var("ADPULSE_UI_SCREENSHOTS") else {
        return;
    };
    // let htmx finish and fonts settle
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
}

async fn click(c: &Client, at: Locator<'_>) {
    c.find(at).await.unwrap().click().await.unwrap();
}

async fn type_into(c: &Client, at: Locator<'_>, text: &str) {
    c.find(at).await.unwrap().send_keys(text).await.unwrap();
}

async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    wait_text(c, "Sign in").await;
    assert!(c.current_url().await.unwrap().path().starts_with("/login"));
    type_into(c, Locator::Id("name"), name).await;
    type_into(c, Locator::Id("password"), password).await;
    click(c, Locator::Id("signin")).await;
    wait_text(c, "Loss now").await;
}

async fn sign_out(c: &Client) {
    click(c, Locator::Css("form[action='/logout'] button")).await;
    wait_text(c, "Signed out").await;
}

/// The first open recommendation for a Meta campaign that adpulse can execute (from the page).
async fn first_open_pause(c: &Client, base: &str) -> String {
    c.goto(&format!("{base}/recommendations")).await.unwrap();
    let page = wait_text(c, "Open (").await;
    page.split("class=\"card rec\" id=\"")
        .skip(1)
        .find(|chunk| {
            chunk.contains("id=\"approve-") && chunk.contains("<small class=\"muted\">meta ·")
        })
        .and_then(|chunk| chunk.split('"').next())
        .expect("an approvable Meta recommendation")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_action_center_in_a_real_browser() {
    let fake = FakeMeta::new(META_TOKEN, "500000");
    let fake_url = fake.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("meta-token");
    std::fs::write(&token, format!("{META_TOKEN}\n")).unwrap();
    let users_file = dir.path().join("users.toml");
    let users = Users::new(&users_file, 5, Duration::from_secs(60));
    users.add("asha", Role::Admin, "asha-admin-pass").unwrap();
    users.add("vik", Role::Viewer, "vik-viewer-pass").unwrap();

    let mut cfg = demo_config(dir.path(), fake_url, token, users_file.clone());
    // the default retention (8 days per campaign): the 10-day window comes from the business
    // totals the store keeps for 30 days; more than 10 days backfilled, so the Now page shows
    // the seed's 10-day view
    if let SourceConfig::Demo(demo) = &mut cfg.sources[0] {
        demo.backfill_days = 12;
    }
    cfg.actions.mode = Mode::Recommend;
    cfg.actions.dry_run = true;
    cfg.actions.web.session_idle_secs = IDLE_SECS;
    let running = adpulse::app::start(cfg).await.unwrap();
    let base = format!("http://{}", running.addr);
    let (_driver, c) = browser().await;
    // (campaign id, status sent) of every mutation
    let posts = || -> Vec<(String, String)> {
        fake.mutations()
            .into_iter()
            .map(|(id, kv)| (id, kv.trim_start_matches("status=").to_string()))
            .collect()
    };
    let audit = |f: AuditFilter| {
        adpulse::actions::engine::AuditLog::open(&dir.path().join("state"), None)
            .unwrap()
            .query(&f)
            .unwrap()
    };

    // --- log in (a wrong password first: refused, nothing else happens)
    c.goto(&format!("{base}/login")).await.unwrap();
    wait_text(&c, "Sign in").await;
    shot(&c, "login").await;
    type_into(&c, Locator::Id("name"), "asha").await;
    type_into(&c, Locator::Id("password"), "wrong password").await;
    click(&c, Locator::Id("signin")).await;
    wait_text(&c, "wrong name or password").await;
    sign_in(&c, &base, "asha", "asha-admin-pass").await;
    // the demo's losing campaigns appear once the backfill is in and the rules ran
    let now = eventually(
        "losing campaigns on the Now page",
        Duration::from_secs(60),
        || {
            let c = c.clone();
            let base = base.clone();
            async move {
                c.goto(&format!("{base}/")).await.ok()?;
                let s = c.source().await.ok()?;
                (s.contains("See recommendation") && s.contains("₹")).then_some(s)
            }
        },
    )
    .await;
    assert!(now.contains("Loss, last 10 days"), "{now}");
    // with the default retention the 10-day figure is there, in rupees, not "not yet"
    let loss_10d = now
        .split("id=\"loss-10d\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_default();
    assert!(loss_10d.contains('₹'), "10-day loss: {loss_10d:?}");
    shot(&c, "now").await;

    // --- approve: in recommend mode refused; an admin switches to approve + dry run
    c.goto(&format!("{base}/settings")).await.unwrap();
    wait_text(&c, "Action mode").await;
    shot(&c, "settings").await;
    click(&c, Locator::Css("input[value='approve']")).await;
    click(&c, Locator::Id("save-mode")).await;
    wait_text(&c, "Mode is now approve, dry run").await;
    let id = first_open_pause(&c, &base).await;
    shot(&c, "recommendations").await;
    click(&c, Locator::Id(&format!("approve-{id}"))).await;
    wait_text(&c, "(dry run: nothing sent)").await;
    assert!(posts().is_empty(), "a dry run sends nothing: {:?}", posts());
    let rows = audit(AuditFilter {
        action_id: Some(id.clone()),
        ..Default::default()
    });
    let ev: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.event.as_str(), r.actor.as_str()))
        .collect();
    assert!(ev.contains(&("dry_run", "user:asha")), "{ev:?}");
    assert!(ev.contains(&("approved", "user:asha")), "{ev:?}");
    // then for real: dry run off, approve the same recommendation again from its history row
    c.goto(&format!("{base}/settings")).await.unwrap();
    wait_text(&c, "Action mode").await;
    click(&c, Locator::Id("dry_run")).await;
    click(&c, Locator::Id("save-mode")).await;
    wait_text(&c, "Mode is now approve, live").await;
    c.goto(&format!("{base}/recommendations")).await.unwrap();
    wait_text(&c, "History").await;
    click(&c, Locator::Id(&format!("approve-again-{id}"))).await;
    wait_text(&c, ": executed: active → paused").await;
    let rec = running_rec(&base, &id, &dir).await;
    let p = posts();
    assert_eq!(
        p,
        vec![(rec.clone(), "PAUSED".to_string())],
        "one pause, of that campaign"
    );
    let rows = audit(AuditFilter {
        action_id: Some(id.clone()),
        ..Default::default()
    });
    let executed: Vec<_> = rows.iter().filter(|r| r.event == "executed").collect();
    assert_eq!(executed.len(), 1, "{rows:?}");
    assert_eq!(executed[0].actor, "user:asha");
    assert_eq!(executed[0].campaign_id, rec);
    assert!(
        executed[0].state_after.contains("paused"),
        "{:?}",
        executed[0].state_after
    );

    // --- kill switch on the whole Meta account, with its typed confirmation
    c.goto(&format!("{base}/kill-switch")).await.unwrap();
    wait_text(&c, "Kill switch").await;
    c.find(Locator::Id("account"))
        .await
        .unwrap()
        .select_by_value(&format!("meta/{META_ACCOUNT}"))
        .await
        .unwrap();
    click(&c, Locator::Id("preview")).await;
    let plan = wait_text(&c, "Spend saved").await;
    shot(&c, "kill-switch").await;
    let meta_campaigns = plan.matches("<tr><td>").count();
    assert!(
        meta_campaigns >= 2,
        "the Meta account's campaigns are listed: {plan}"
    );
    // a wrong confirmation stops nothing
    type_into(&c, Locator::Id("confirm"), "yes").await;
    click(&c, Locator::Id("kill")).await;
    wait_text(&c, "type act_1029384756 exactly").await;
    assert_eq!(posts().len(), 1, "no pause without the confirmation");
    c.back().await.unwrap();
    wait_text(&c, "Spend saved").await;
    let confirm = c.find(Locator::Id("confirm")).await.unwrap();
    confirm.clear().await.unwrap();
    confirm.send_keys(META_ACCOUNT).await.unwrap();
    type_into(&c, Locator::Id("reason"), "browser test").await;
    click(&c, Locator::Id("kill")).await;
    let out = wait_text(&c, "Outcome").await;
    shot(&c, "kill-switch-outcome").await;
    let p = posts();
    // every campaign of the account is paused once; the one already paused is not sent again
    assert_eq!(p.len(), meta_campaigns, "{p:?}");
    assert!(p.iter().all(|(_, s)| s == "PAUSED"));
    assert!(out.contains("already done"), "{out}");
    let kills: Vec<_> = audit(AuditFilter::default())
        .into_iter()
        .filter(|r| r.rule == "kill_switch")
        .collect();
    assert_eq!(kills.len(), meta_campaigns, "{kills:?}");
    assert!(
        kills
            .iter()
            .all(|r| r.actor == "user:asha" && r.reason == "browser test")
    );

    // --- the other pages, for the screenshots
    for (path, name, needle) in [
        ("/caps", "caps", "Daily caps"),
        ("/reallocation", "reallocation", "Budget reallocation"),
        ("/audit", "audit", "Export CSV"),
        (&format!("/campaigns/{rec}"), "campaign", "Last days (IST)"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        wait_text(&c, needle).await;
        shot(&c, name).await;
    }
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    wait_text(&c, "Loss now").await;
    shot(&c, "now-phone").await;
    c.goto(&format!("{base}/recommendations")).await.unwrap();
    wait_text(&c, "History").await;
    shot(&c, "recommendations-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // --- a forged form without the CSRF token (as if from another page) is refused
    let before = posts().len();
    c.goto(&format!("{base}/recommendations")).await.unwrap();
    wait_text(&c, "History").await;
    c.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/kill-switch';
         for (const [k, v] of [['platform', 'meta'], ['account', arguments[0]], ['confirm', arguments[0]]]) {
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
         f.setAttribute('hx-boost', 'false'); document.body.appendChild(f); f.submit();",
        vec![json!(META_ACCOUNT)],
    )
    .await
    .unwrap();
    wait_text(&c, "valid security token (CSRF)").await;
    assert_eq!(posts().len(), before, "a forged form changes nothing");

    // --- a viewer sees but cannot act, not even by posting the form with a valid token
    c.goto(&format!("{base}/")).await.unwrap();
    wait_text(&c, "Loss now").await;
    sign_out(&c).await;
    sign_in(&c, &base, "vik", "vik-viewer-pass").await;
    c.goto(&format!("{base}/recommendations")).await.unwrap();
    let page = wait_text(&c, "can see but not decide").await;
    assert!(
        !page.contains("id=\"approve-"),
        "no approve button for a viewer"
    );
    let open_id = page
        .split("class=\"card rec\" id=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("an open recommendation")
        .to_string();
    c.execute(
        "const f = document.createElement('form'); f.method = 'post';
         f.action = '/recommendations/' + arguments[0] + '/approve';
         const t = document.querySelector('form[action=\"/logout\"] input[name=csrf]').cloneNode();
         f.appendChild(t); f.setAttribute('hx-boost', 'false'); document.body.appendChild(f); f.submit();",
        vec![json!(open_id)],
    )
    .await
    .unwrap();
    wait_text(&c, "may not do this").await;
    assert_eq!(posts().len(), before, "a viewer changes nothing");

    // --- a session ends after the idle time
    tokio::time::sleep(Duration::from_secs(IDLE_SECS + 2)).await;
    c.goto(&format!("{base}/recommendations")).await.unwrap();
    // the browser drops the cookie at its Max-Age and the server forgets the session: either
    // way the page is not shown, the sign-in form is
    let page = wait_text(&c, "Sign in to continue").await;
    assert!(!page.contains("Open ("), "{page}");
    let url = c.current_url().await.unwrap();
    assert_eq!(url.path(), "/login");
    assert!(
        url.query()
            .unwrap_or("")
            .contains("next=%2Frecommendations"),
        "{url}"
    );

    c.close().await.unwrap();
    running.stop().await;
    // refusals are written per minute and reason (at the latest at shutdown)
    let refused: Vec<(String, String)> = audit(AuditFilter::default())
        .into_iter()
        .filter(|r| r.event == "refused")
        .map(|r| (r.result, r.actor))
        .collect();
    for (reason, actor) in [
        ("login_failed", "anonymous"),
        ("csrf", "user:asha"),
        ("forbidden", "user:vik"),
    ] {
        assert!(
            refused.contains(&(reason.to_string(), actor.to_string())),
            "{reason} by {actor} not audited: {refused:?}"
        );
    }
}

/// The campaign id of a recommendation, from the state the engine persisted.
async fn running_rec(_base: &str, id: &str, dir: &tempfile::TempDir) -> String {
    let text = std::fs::read_to_string(dir.path().join("state/actions-state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .and_then(|r| r["campaign_id"].as_str())
        .unwrap()
        .to_string()
}
