#!/usr/bin/env bash
# How long a new user waits: runs `scripts/demo.sh` on free ports and, through the action
# center's own pages (the forms a browser posts: sign in, Settings, Approve), records the seconds
# from the start of demo.sh to
#   1. the sign-in page answering,
#   2. the first open recommendation on /recommendations,
#   3. the first approval answered (mode switched to approve by the demo admin, then Approve).
# Prints one line per step; docs/ui.md keeps the figures. Stops what it started (demo.sh's
# adpulse and `scripts/stack.sh down`). The binary is built first and that build is not in the
# figures (it is timed apart): they are what a user waits for on every run after the first.
# ADPULSE_DEMO_PROFILE=dev measures with the debug build; the default is demo.sh's (release).
set -euo pipefail
cd "$(dirname "$0")/.."
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export QDB_HTTP_PORT=$(free_port) QDB_PG_PORT=$(free_port) QDB_METRICS_PORT=$(free_port)
export PROM_PORT=$(free_port) AM_PORT=$(free_port)
export ADPULSE_ADDR=127.0.0.1:$(free_port)
export ADPULSE_QUESTDB__HTTP_URL=http://127.0.0.1:$QDB_HTTP_PORT
base=http://$ADPULSE_ADDR
jar=$(mktemp) log=$(mktemp)
b0=$(date +%s)
if [[ ${ADPULSE_DEMO_PROFILE:-release} == dev ]]; then cargo build --locked -q; else cargo build --release --locked -q; fi
echo "build before the run (not counted): $(( $(date +%s) - b0 )) s"
t0=$(date +%s.%N)
since() { python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$(date +%s.%N)" "$t0"; }
bash scripts/demo.sh >"$log" 2>&1 &
demo=$!
cleanup() {
  kill "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  bash scripts/stack.sh down >/dev/null 2>&1 || true
  rm -f "$jar"
}
trap cleanup EXIT
csrf() { sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1; }
until curl -sf -o /dev/null "$base/login"; do
  kill -0 "$demo" 2>/dev/null || { cat "$log"; echo "demo.sh ended before the action center answered" >&2; exit 1; }
  sleep 0.5
done
echo "sign-in page answering: $(since) s"
password=$(cat data/state/demo-admin.password)
token=$(curl -s -c "$jar" -b "$jar" "$base/login" | csrf)
curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$token" --data-urlencode name=demo-admin \
  --data-urlencode "password=$password" "$base/login"
until page=$(curl -s -c "$jar" -b "$jar" "$base/recommendations") && grep -q 'class="card rec" id="' <<<"$page"; do
  sleep 0.5
done
echo "first open recommendation on /recommendations: $(since) s"
token=$(csrf <<<"$page")
curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$token" -d mode=approve -d dry_run=on "$base/settings"
page=$(curl -s -c "$jar" -b "$jar" "$base/recommendations")
id=$(grep -o 'id="approve-[^"]*"' <<<"$page" | head -1 | sed 's/id="approve-\(.*\)"/\1/')
[[ -n $id ]] || { echo "no approve button after switching to approve: $page" >&2; exit 1; }
out=$(curl -s -L -c "$jar" -b "$jar" --data-urlencode "csrf=$(csrf <<<"$page")" -d note=measured "$base/recommendations/$id/approve")
grep -q "dry run\|executed" <<<"$out" || { echo "approval not confirmed: $out" >&2; exit 1; }
echo "first approval answered (dry run): $(since) s"
