#!/usr/bin/env bash
# The whole demo in one command: install what is missing, bring up the local stack (QuestDB,
# Prometheus, Alertmanager), build adpulse, backfill 10 days of the demo scenario and run it live.
# Ctrl-C stops adpulse; `scripts/stack.sh down` stops the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/stack.sh up
cargo build --release --locked
echo
echo "adpulse: http://127.0.0.1:9464/metrics   QuestDB SQL: http://127.0.0.1:9000   Prometheus: http://127.0.0.1:9090"
echo
exec ./target/release/adpulse run "$@"
