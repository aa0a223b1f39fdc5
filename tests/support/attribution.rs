//! What the tests of the attribution job share: waiting for its runs. Included with `#[path]`
//! (tests/common is shared by every test and owned elsewhere).

use crate::common::wait_for_two_rises;
use std::time::Duration;

/// Wait until adpulse at `addr` has finished two more successful attribution runs than now: the
/// second one started after this call, so it read everything in QuestDB at this moment.
pub async fn two_more_attribution_runs(addr: std::net::SocketAddr) {
    let name = "adpulse_attribution_runs_total{result=\"success\"}";
    wait_for_two_rises(addr, name, "two attribution runs", Duration::from_secs(180)).await;
}
