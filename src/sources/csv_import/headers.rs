//! Header recognition: the alias table (`headers.toml`, English, Spanish, French, German and
//! Portuguese names per field), the folding that makes "Amount spent (INR)" and "amount spent"
//! one name, and the column map of one file.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::LazyLock;

/// A column the importers understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    CampaignName,
    CampaignId,
    AdSetName,
    AdName,
    Day,
    ReportingStarts,
    ReportingEnds,
    Spend,
    Impressions,
    Clicks,
    /// Meta's explicit purchase count.
    Purchases,
    /// Meta's "Results": conversions only when the result type is a purchase.
    Results,
    ResultIndicator,
    /// Google Ads' conversions (fractional with data-driven attribution).
    Conversions,
    ConversionValue,
    Currency,
    AccountId,
}

/// The language a header name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Es,
    Fr,
    De,
    Pt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasEntry {
    field: Field,
    en: Vec<String>,
    es: Vec<String>,
    fr: Vec<String>,
    de: Vec<String>,
    pt: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasFile {
    meta: Vec<AliasEntry>,
    google_ads: Vec<AliasEntry>,
}

/// Folded name -> (field, rank within the field, languages that use this name).
pub type AliasMap = HashMap<String, (Field, usize, Vec<Lang>)>;

pub struct Aliases {
    pub meta: AliasMap,
    pub google_ads: AliasMap,
}

const ALIAS_FILE: &str = include_str!("headers.toml");

fn build(entries: &[AliasEntry]) -> AliasMap {
    let mut map: AliasMap = HashMap::new();
    for e in entries {
        for (lang, names) in [
            (Lang::En, &e.en),
            (Lang::Es, &e.es),
            (Lang::Fr, &e.fr),
            (Lang::De, &e.de),
            (Lang::Pt, &e.pt),
        ] {
            for (rank, n) in names.iter().enumerate() {
                let key = header_key(n).0;
                let entry = map.entry(key).or_insert((e.field, rank, Vec::new()));
                entry.1 = entry.1.min(rank);
                if !entry.2.contains(&lang) {
                    entry.2.push(lang);
                }
            }
        }
    }
    map
}

/// The alias table, parsed once. It is compiled in, and a unit test parses it, so a broken table
/// never ships; should it fail anyway, the importers see an empty table and report "no header".
pub static ALIASES: LazyLock<Aliases> =
    LazyLock::new(|| match toml::from_str::<AliasFile>(ALIAS_FILE) {
        Ok(f) => Aliases {
            meta: build(&f.meta),
            google_ads: build(&f.google_ads),
        },
        Err(error) => {
            tracing::error!(%error, "headers.toml does not parse");
            Aliases {
                meta: HashMap::new(),
                google_ads: HashMap::new(),
            }
        }
    });

/// A header name reduced to compare variants: lower case, a unit in parentheses taken out,
/// punctuation folded to single spaces. Returns (key, unit inside parentheses).
pub fn header_key(h: &str) -> (String, Option<String>) {
    let h = h.trim().trim_start_matches('\u{feff}');
    let (name, unit) = match (h.rfind('('), h.rfind(')')) {
        (Some(a), Some(b)) if b > a => (
            format!("{}{}", &h[..a], &h[b + 1..]),
            Some(h[a + 1..b].trim().to_string()),
        ),
        _ => (h.to_string(), None),
    };
    // "Clicks (all)" keeps its qualifier: "(all)" is not a unit
    if let Some(u) = &unit
        && !is_currency_code(u)
    {
        return (words(h), None);
    }
    (words(&name), unit)
}

/// `s` in lower case, its words (letters and digits) joined by single spaces.
fn words(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Three ASCII capitals: an ISO 4217 code as the exports write it.
pub fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// Where each understood field is in one file.
#[derive(Debug, Clone)]
pub struct Columns {
    index: HashMap<Field, (usize, usize)>,
    /// Currency code in a header's parentheses, per column ("Amount spent (INR)").
    pub units: HashMap<usize, String>,
    /// Header names as written, for messages.
    pub names: Vec<String>,
    /// Languages of the names that belong to one language only.
    pub langs: Vec<Lang>,
}

impl Columns {
    pub fn new(header: &[String], aliases: &AliasMap) -> Self {
        let mut index: HashMap<Field, (usize, usize)> = HashMap::new();
        let mut units = HashMap::new();
        let mut langs = Vec::new();
        for (i, h) in header.iter().enumerate() {
            let (k, u) = header_key(h);
            if let Some((field, rank, ls)) = aliases.get(&k) {
                let better = index.get(field).is_none_or(|&(_, r)| *rank < r);
                if better {
                    index.insert(*field, (i, *rank));
                }
                if let [only] = ls.as_slice()
                    && !langs.contains(only)
                {
                    langs.push(*only);
                }
            }
            if let Some(u) = u {
                units.insert(i, u);
            }
        }
        Self {
            index,
            units,
            names: header.to_vec(),
            langs,
        }
    }

    pub fn get(&self, f: Field) -> Option<usize> {
        self.index.get(&f).map(|&(i, _)| i)
    }

    pub fn has(&self, f: Field) -> bool {
        self.index.contains_key(&f)
    }

    /// The header name of column `i` as written (for row errors).
    pub fn name(&self, i: Option<usize>) -> String {
        i.and_then(|i| self.names.get(i))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_table_parses_and_covers_five_languages() {
        let f: AliasFile = toml::from_str(ALIAS_FILE).expect("headers.toml");
        for e in f.meta.iter().chain(&f.google_ads) {
            for (l, v) in [
                ("en", &e.en),
                ("es", &e.es),
                ("fr", &e.fr),
                ("de", &e.de),
                ("pt", &e.pt),
            ] {
                assert!(!v.is_empty(), "{:?} has no {l} name", e.field);
            }
        }
        assert_eq!(
            ALIASES.meta.get("importe gastado").map(|e| e.0),
            Some(Field::Spend)
        );
        assert_eq!(
            ALIASES.google_ads.get("valor de conv").map(|e| e.0),
            Some(Field::ConversionValue)
        );
    }

    #[test]
    fn header_variants_fold_to_one_key() {
        assert_eq!(
            header_key("Amount spent (INR)"),
            ("amount spent".into(), Some("INR".into()))
        );
        assert_eq!(header_key("Impr.").0, "impr");
        assert_eq!(header_key("\u{feff}Campaign name").0, "campaign name");
        assert_eq!(header_key("Clicks (all)"), ("clicks all".into(), None));
        assert_eq!(header_key("Conv.-Wert").0, "conv wert");
    }
}
