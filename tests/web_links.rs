//! The action center's links to Grafana (`[actions.web] grafana_url`): every page's header links
//! to the Products, Geography, Attribution and Customers dashboards, a campaign's page to its
//! drill-downs with its platform, account and campaign selected; with the setting unset, no
//! Grafana link at all. The dashboard uids are read from the shipped dashboards/*.json files.

#[path = "support/action_center.rs"]
#[allow(dead_code)] // this test uses part of the shared support file
mod action_center;
mod common;

use action_center::{Visitor, demo_config, users_file};
use std::time::Duration;

const GRAFANA: &str = "https://grafana.moi.example";
/// Performance Max - Jewellery, in the demo's Google Ads account.
const CAMPAIGN: (&str, &str, &str) = ("google_ads", "123-456-7890", "21000000001");

fn uid(file: &str) -> String {
    let text = std::fs::read_to_string(common::repo().join("dashboards").join(file)).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    d["uid"].as_str().unwrap().to_string()
}

/// Every href of a page, HTML entities of query strings undone.
fn hrefs(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|h| {
            h.replace("&amp;", "&")
                .replace("&#38;", "&")
                .replace("&#x3D;", "=")
        })
        .collect()
}

async fn signed_in(grafana: Option<&str>) -> (adpulse::app::Running, Visitor, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        ("ravi", adpulse::actions::engine::Role::Viewer),
        "ravi-viewer-pass",
    );
    let token = dir.path().join("meta-token");
    std::fs::write(&token, "not-used\n").unwrap();
    // nothing listens there: a viewer acts on nothing
    let mut cfg = demo_config(dir.path(), "http://127.0.0.1:9".into(), token, users);
    cfg.actions.web.grafana_url = grafana.map(str::to_string);
    let running = adpulse::app::start(cfg).await.unwrap();
    let mut v = Visitor::new(&format!("http://{}", running.addr));
    let (s, page) = v.sign_in("ravi", "ravi-viewer-pass").await;
    assert_eq!(s, 303, "{page}");
    (running, v, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_link_to_the_dashboards_and_the_campaign_drill_down() {
    let (running, mut v, _dir) = signed_in(Some(GRAFANA)).await;
    let (s, page) = v.get("/").await;
    assert_eq!(s, 200, "{page}");
    let links = hrefs(&page);
    for file in [
        "products.json",
        "geography.json",
        "attribution.json",
        "customers.json",
    ] {
        let want = format!("{GRAFANA}/d/{}", uid(file));
        assert!(links.contains(&want), "no link {want} on /: {links:?}");
    }
    // a campaign's page, once the demo's backfill is in the snapshot
    let (platform, account, id) = CAMPAIGN;
    let page = common::eventually("the campaign's page", Duration::from_secs(60), || {
        let mut w = v.fork();
        async move {
            let (s, page) = w.get(&format!("/campaigns/{id}")).await;
            (s == 200).then_some(page)
        }
    })
    .await;
    let links = hrefs(&page);
    let want = format!(
        "{GRAFANA}/d/{}?var-platform={platform}&var-account={account}&var-campaign={id}",
        uid("campaigns.json")
    );
    assert!(links.contains(&want), "no drill-down {want}: {links:?}");
    // the header is on every page
    assert!(links.contains(&format!("{GRAFANA}/d/{}", uid("attribution.json"))));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_grafana_link_without_the_setting() {
    let (running, mut v, _dir) = signed_in(None).await;
    let (s, page) = v.get("/").await;
    assert_eq!(s, 200, "{page}");
    assert!(
        !hrefs(&page).iter().any(|h| h.contains("/d/adpulse-")),
        "{page}"
    );
    running.stop().await;
}

/// A `grafana_url` that cannot make links is a configuration error naming the key, not a page
/// full of broken links.
#[test]
fn a_bad_grafana_url_is_a_config_error_naming_the_key() {
    let with = |url: &str| {
        let mut c = adpulse::config::Config::from_toml_str(adpulse::config::DEFAULT_CONFIG)
            .expect("default config");
        c.actions.web.grafana_url = Some(url.to_string());
        c
    };
    assert!(with(GRAFANA).validate().is_ok());
    for bad in [
        "grafana.moi.example",
        "ftp://grafana.moi.example",
        "https://g.example/?orgId=1",
    ] {
        let e = with(bad).validate().expect_err(bad).to_string();
        assert!(e.contains("actions.web.grafana_url"), "{bad}: {e}");
    }
}
