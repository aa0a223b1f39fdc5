#!/usr/bin/env bash
# The whole demo in one command: install what is missing, bring up the local stack (QuestDB,
# Prometheus, Alertmanager), build adpulse, backfill 10 days of the demo scenario and run it live.
# Ctrl-C stops adpulse; `scripts/stack.sh down` stops the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/stack.sh up
cargo build --release --locked
# a demo admin for the action center, with a generated password (kept, readable by you only, in
# data/state/demo-admin.password so a second run can print it again)
bin=./target/release/adpulse
pwfile=data/state/demo-admin.password
if ! "$bin" "$@" user list | grep -q .; then
  mkdir -p data/state
  out=$("$bin" "$@" user add demo-admin --role admin --generate)
  (umask 077; sed -n 's/^password: //p' <<<"$out" > "$pwfile")
fi
echo
echo "adpulse: http://127.0.0.1:9464/metrics   QuestDB SQL: http://127.0.0.1:9000   Prometheus: http://127.0.0.1:9090"
echo
echo "Action center: http://127.0.0.1:9464/"
if [[ -s $pwfile ]]; then
  echo "  DEMO LOGIN: sign in as demo-admin with password $(cat "$pwfile")"
  echo "  (a generated demo password; change it with: $bin user passwd demo-admin --generate)"
else
  echo "  sign in with a user of the users file ($bin user list; add one with $bin user add NAME --role admin --generate)"
fi
echo "  Recommendations are recommend-only at first: an admin switches to 'approve' in Settings."
echo
exec "$bin" run "$@"
