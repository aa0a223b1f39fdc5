//! Links from the action center to the Grafana dashboards (`[actions.web] grafana_url`): the
//! profit and attribution dashboards in the header of every page, and each campaign's drill-down
//! with its variables set. No links at all when `grafana_url` is unset.

/// Why `grafana_url` cannot be used, if it cannot: it must be an absolute `http` or `https`
/// address with a host and no query or fragment (the dashboards' paths are appended to it). An
/// empty value means no links, as an unset one does.
pub fn grafana_url_problem(grafana: &str) -> Option<String> {
    let g = grafana.trim();
    if g.is_empty() {
        return None;
    }
    let url = match reqwest::Url::parse(g) {
        Ok(u) => u,
        Err(e) => {
            return Some(format!(
                "{g:?} is not a URL ({e}); write e.g. \"https://grafana.example\""
            ));
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "{g:?}: the scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Some(format!("{g:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Some(format!(
            "{g:?} has a query or fragment: give Grafana's base address (the dashboard paths \
             are appended to it)"
        ));
    }
    None
}

/// One link to a Grafana dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardLink {
    pub title: &'static str,
    pub url: String,
}

/// The dashboards the header links to: (title, uid).
const HEADER: [(&str, &str); 4] = [
    ("Products", "adpulse-products"),
    ("Geography", "adpulse-geography"),
    ("Attribution", "adpulse-attribution"),
    ("Customers", "adpulse-customers"),
];

/// `<grafana>/d/<uid>` with `params` as query (`var-campaign=...`); Grafana finds a dashboard by
/// its uid alone (the slug after it is optional).
fn dashboard_url(grafana: &str, uid: &str, params: &[(&str, &str)]) -> String {
    let base = format!("{}/d/{uid}", grafana.trim_end_matches('/'));
    if params.is_empty() {
        return base;
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{base}?{query}")
}

/// The header's links (empty without `grafana_url`).
pub fn header(grafana: Option<&str>) -> Vec<DashboardLink> {
    let Some(g) = grafana.filter(|g| !g.trim().is_empty()) else {
        return Vec::new();
    };
    HEADER
        .iter()
        .map(|(title, uid)| DashboardLink {
            title,
            url: dashboard_url(g, uid, &[]),
        })
        .collect()
}

/// A campaign's drill-downs: the Campaigns and Ads dashboards with its platform, account and
/// campaign selected (empty without `grafana_url`).
pub fn campaign(
    grafana: Option<&str>,
    platform: &str,
    account: &str,
    campaign_id: &str,
) -> Vec<DashboardLink> {
    let Some(g) = grafana.filter(|g| !g.trim().is_empty()) else {
        return Vec::new();
    };
    let vars = [
        ("var-platform", platform),
        ("var-account", account),
        ("var-campaign", campaign_id),
    ];
    vec![
        DashboardLink {
            title: "Campaign drill-down",
            url: dashboard_url(g, "adpulse-campaigns", &vars),
        },
        DashboardLink {
            title: "Its ads",
            url: dashboard_url(g, "adpulse-ads", &vars),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_grafana_urls_are_named() {
        for ok in [
            "",
            "https://grafana.example",
            "http://10.0.0.5:3000/grafana/",
        ] {
            assert_eq!(grafana_url_problem(ok), None, "{ok}");
        }
        for (bad, says) in [
            ("grafana.example", "is not a URL"),
            ("ftp://grafana.example", "scheme must be http or https"),
            ("https://g.example/?orgId=1", "query or fragment"),
            ("http://", "is not a URL"),
        ] {
            let p = grafana_url_problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(p.contains(says), "{bad}: {p}");
        }
    }

    #[test]
    fn off_when_unset_and_encoded_when_set() {
        assert!(header(None).is_empty());
        assert!(header(Some("  ")).is_empty());
        assert!(campaign(None, "meta", "act_1", "120").is_empty());
        let h = header(Some("https://grafana.example/"));
        assert_eq!(h[2].url, "https://grafana.example/d/adpulse-attribution");
        let c = campaign(Some("https://g.example"), "google_ads", "123-456", "a b&c");
        assert_eq!(
            c[0].url,
            "https://g.example/d/adpulse-campaigns?var-platform=google_ads&var-account=123-456&var-campaign=a+b%26c"
        );
    }
}
