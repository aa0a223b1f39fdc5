//! What the region report tests (Meta, Google Ads) share: reading `region_stats` back, the SQL
//! check that a campaign day's regions add up to its `campaign_stats` day row, and the ledger's
//! incomplete days. Included with `#[path]`.

use crate::common::{QuestDb, cell_decimal, eventually};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// (campaign, day, region) -> (spend, conversion value, impressions, clicks).
pub type Figures = BTreeMap<(String, String, String), (Decimal, Decimal, u64, u64)>;

/// (campaign, day) -> ((regions' spend, value), (campaign row's spend, value)).
pub type DaySums = BTreeMap<(String, String), ((Decimal, Decimal), (Decimal, Decimal))>;

/// `AND account = '<a>'` for a test that shares its QuestDB with other accounts.
fn account_filter(column: &str, account: Option<&str>) -> String {
    account.map_or(String::new(), |a| format!(" AND {column} = '{a}'"))
}

/// `region_stats` (of `account`, or every row) as a map.
pub async fn stored_regions(q: &QuestDb, account: Option<&str>) -> Figures {
    q.rows(&format!(
        "SELECT campaign_id, day, region, spend, conversion_value, impressions, clicks \
         FROM region_stats WHERE true{}",
        account_filter("account", account)
    ))
    .await
    .into_iter()
    .map(|r| {
        let s = |i: usize| r[i].as_str().unwrap().to_string();
        let n = |i: usize| r[i].as_u64().unwrap();
        (
            (s(0), s(1), s(2)),
            (cell_decimal(&r[3]), cell_decimal(&r[4]), n(5), n(6)),
        )
    })
    .collect()
}

/// Per campaign day: the sum of its `region_stats` spend and value, and its `campaign_stats`
/// day row, joined in SQL.
pub async fn sums_against_campaign_rows(q: &QuestDb, account: Option<&str>) -> DaySums {
    q.rows(&format!(
        "WITH r AS (SELECT campaign_id, day, sum(spend) spend, sum(conversion_value) value \
           FROM region_stats WHERE true{} GROUP BY campaign_id, day) \
         SELECT c.campaign_id, c.day, r.spend, r.value, c.spend, c.conversion_value \
         FROM campaign_stats c JOIN r ON c.campaign_id = r.campaign_id AND c.day = r.day \
         WHERE c.bucket = 'day'{}",
        account_filter("account", account),
        account_filter("c.account", account)
    ))
    .await
    .into_iter()
    .map(|r| {
        let s = |i: usize| r[i].as_str().unwrap().to_string();
        (
            (s(0), s(1)),
            (
                (cell_decimal(&r[2]), cell_decimal(&r[3])),
                (cell_decimal(&r[4]), cell_decimal(&r[5])),
            ),
        )
    })
    .collect()
}

/// The days the completeness ledger in `dir` holds incomplete for `source`, with their reasons.
pub fn ledger_incomplete(dir: &std::path::Path, source: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("ledger.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v[source]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, s)| s["state"] == "incomplete")
        .map(|(d, s)| (d.clone(), s["reason"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// Wait (up to a minute) until the ledger holds no incomplete day of `source`.
pub async fn wait_days_complete(dir: &std::path::Path, source: &str) {
    eventually(
        &format!("the {source} days complete"),
        std::time::Duration::from_secs(60),
        || async { ledger_incomplete(dir, source).is_empty().then_some(()) },
    )
    .await;
}
