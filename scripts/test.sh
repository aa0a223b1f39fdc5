#!/usr/bin/env bash
# Every test: Rust unit and integration tests (they start real QuestDB and Prometheus processes on
# free loopback ports), the alert-rule and Alertmanager checks, and the dashboard checks.
# Installs what it needs first (scripts/install-deps.sh is idempotent), so a fresh clone runs it as is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
status=0
bash scripts/check-alerting.sh || status=1
python3 scripts/check-dashboards.py || status=1
# --no-fail-fast: one failing test file never hides the others.
cargo test --locked --no-fail-fast || status=1
exit $status
