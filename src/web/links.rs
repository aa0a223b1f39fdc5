//! Links from the action center to the Grafana dashboards (`[actions.web] grafana_url`): the
//! profit and attribution dashboards in the header of every page, and each campaign's drill-down
//! with its variables set. No links at all when `grafana_url` is unset.

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
