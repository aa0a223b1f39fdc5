//! What the tests of the attribution job share: waiting for its runs. Included with `#[path]`
//! (tests/common is shared by every test and owned elsewhere).

use crate::common::{eventually, get, metric};
use std::time::Duration;

/// Wait until adpulse at `addr` has finished two more successful attribution runs than now: the
/// second one started after this call, so it read everything in QuestDB at this moment.
pub async fn two_more_attribution_runs(addr: std::net::SocketAddr) {
    let url = format!("http://{addr}/metrics");
    let runs = || async {
        metric(
            &get(&url).await.1,
            "adpulse_attribution_runs_total{result=\"success\"}",
        )
        .unwrap_or(0.0)
    };
    let before = runs().await;
    eventually("two attribution runs", Duration::from_secs(180), || async {
        (runs().await >= before + 2.0).then_some(())
    })
    .await;
}
