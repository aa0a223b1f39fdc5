#!/usr/bin/env bash
# Every test: Rust unit and integration tests (they start real QuestDB and Prometheus processes on
# free loopback ports), the alert-rule and Alertmanager checks, and the dashboard checks.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -s .stack/bin/questdb-$(. scripts/versions.sh; echo "$QUESTDB_VERSION").jar ]] || {
  echo "QuestDB is not installed for the tests: run bash scripts/install-deps.sh" >&2; exit 1; }
bash scripts/check-alerting.sh
python3 scripts/check-dashboards.py
cargo test --locked
