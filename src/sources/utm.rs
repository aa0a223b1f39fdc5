//! UTM parameters (`utm_source`, `utm_medium`, `utm_campaign`) from a landing-site URL or path,
//! shared by the Shopify API source and the Shopify CSV import (it lived in `csv_import`, which
//! made `shopify` import the CSV importer).

use std::collections::HashMap;

/// UTM parameters from a landing-site URL or path (`/?utm_source=...`). Values are
/// percent-decoded as a query string is (`+` is a space), by the `url` crate's own decoder.
pub fn utm(landing: &str) -> (Option<String>, Option<String>, Option<String>) {
    let query = landing.split_once('?').map(|(_, q)| q).unwrap_or("");
    let query = query.split('#').next().unwrap_or("");
    let mut m: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    (
        m.remove("utm_source").filter(|v| !v.is_empty()),
        m.remove("utm_medium").filter(|v| !v.is_empty()),
        m.remove("utm_campaign").filter(|v| !v.is_empty()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_from_landing_site() {
        assert_eq!(
            utm(
                "/products/ring?utm_source=facebook&utm_medium=paid_social&utm_campaign=120210000000001"
            ),
            (
                Some("facebook".into()),
                Some("paid_social".into()),
                Some("120210000000001".into())
            )
        );
        assert_eq!(utm(""), (None, None, None));
        assert_eq!(
            utm("/?utm_campaign=Diwali%20Sale+2026&utm_source=a%zz")
                .2
                .as_deref(),
            Some("Diwali Sale 2026")
        );
        assert_eq!(utm("/?utm_source=a%zz").0.as_deref(), Some("a%zz"));
        assert_eq!(utm("/?utm_source=%E2%82").0.as_deref(), Some("\u{fffd}"));
    }
}
