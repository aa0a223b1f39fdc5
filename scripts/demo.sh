#!/usr/bin/env bash
# The whole demo in one command: install what is missing, bring up the local stack (QuestDB,
# Prometheus, Alertmanager), build adpulse, backfill 10 days of the demo scenario and run it live.
# Ctrl-C stops adpulse; `scripts/stack.sh down` stops the rest.
#
# adpulse's write token (approve, kill switch, the Alertmanager webhook) is the file the stack
# script generates, .stack/secrets/adpulse_webhook_token, so Alertmanager's notifications to
# adpulse authenticate out of the box. Environment: ADPULSE_ADDR (127.0.0.1:9464, also the
# scrape target stack.sh writes), ADPULSE_SECRETS_DIR (.stack/secrets), ADPULSE_DEMO_PROFILE
# (release; `dev` skips the optimised build, for a quick look or a measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
addr=${ADPULSE_ADDR:-127.0.0.1:9464}
secrets=${ADPULSE_SECRETS_DIR:-$root/.stack/secrets}
[[ $secrets == /* ]] || secrets=$root/$secrets
profile=${ADPULSE_DEMO_PROFILE:-release}
bash scripts/install-deps.sh
ADPULSE_ADDR=$addr ADPULSE_SECRETS_DIR=$secrets bash scripts/stack.sh up
case $profile in
  release) cargo build --release --locked; bin=$root/target/release/adpulse ;;
  dev) cargo build --locked; bin=$root/target/debug/adpulse ;;
  *) echo "ADPULSE_DEMO_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
token_file=$secrets/adpulse_webhook_token
if [[ ! -s $token_file ]]; then
  echo "missing $token_file (scripts/stack.sh up writes it): Alertmanager could not reach adpulse" >&2
  exit 1
fi
# absolute, so it resolves wherever adpulse runs; an explicit setting wins
export ADPULSE_ACTIONS__AUTH__WRITE_TOKEN_FILE=${ADPULSE_ACTIONS__AUTH__WRITE_TOKEN_FILE:-$token_file}
export ADPULSE_SERVER__LISTEN=${ADPULSE_SERVER__LISTEN:-$addr}
# a demo admin for the action center, with a generated password (kept, readable by you only, in
# data/state/demo-admin.password so a second run can print it again)
pwfile=data/state/demo-admin.password
if ! "$bin" "$@" user list | grep -q .; then
  mkdir -p data/state
  out=$("$bin" "$@" user add demo-admin --role admin --generate)
  (umask 077; sed -n 's/^password: //p' <<<"$out" > "$pwfile")
fi
echo
echo "adpulse: http://$ADPULSE_SERVER__LISTEN/metrics   QuestDB SQL: http://127.0.0.1:${QDB_HTTP_PORT:-9000}   Prometheus: http://127.0.0.1:${PROM_PORT:-9090}"
echo
echo "Action center: http://$ADPULSE_SERVER__LISTEN/"
if [[ -s $pwfile ]]; then
  echo "  DEMO LOGIN: sign in as demo-admin with password $(cat "$pwfile")"
  echo "  (a generated demo password; change it with: $bin user passwd demo-admin --generate)"
else
  echo "  sign in with a user of the users file ($bin user list; add one with $bin user add NAME --role admin --generate)"
fi
echo "  Recommendations are recommend-only at first: an admin switches to 'approve' in Settings."
echo "  Write token (scripts, Alertmanager's webhook): $ADPULSE_ACTIONS__AUTH__WRITE_TOKEN_FILE"
echo
exec "$bin" run "$@"
