#!/usr/bin/env bash
# Resident memory of `adpulse run` by number of live campaigns (issue 15.1): for each demo
# `scale` (6 campaigns each), starts a QuestDB of its own on free ports (data under /tmp,
# deleted after), runs the release binary on the demo (`backfill_days = 8`, `speedup = 60`,
# models and actions on, as shipped), scrapes /metrics and reads VmRSS/VmHWM from
# /proc/<pid>/status every 2 s for `secs` seconds from the start (backfill included), then
# stops both. Prints one tab-separated line per scale:
#   campaigns  rss_steady_mib (median of the last half's samples)  rss_max_sample_mib
#   peak_vmhwm_mib  scrape_ms_median
# and keeps every sample in /tmp/mem-scale-<campaigns>.tsv (seconds, rss_kib, hwm_kib, scrape_ms)
# for scripts/plot-mem-scale.py.
# Usage: nice -n 10 scripts/mem-scale.sh [secs] [scale...]   (defaults: 180; 2 17 167 1667)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-180}
shift || true
scales=${*:-2 17 167 1667}
bin=target/release/adpulse
[[ -x $bin ]] || { echo "build it first: nice -n 10 cargo build --release" >&2; exit 1; }
jar=$(ls .stack/bin/questdb-*.jar 2>/dev/null | head -1)
[[ -n $jar ]] || { echo "no QuestDB in .stack/bin: bash scripts/install-deps.sh" >&2; exit 1; }
command -v java >/dev/null || { echo "java missing: apt-get install openjdk-17-jre-headless" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
qdb="" app="" dir=""
cleanup() {
  [[ -n $app ]] && kill "$app" 2>/dev/null && wait "$app" 2>/dev/null || true
  [[ -n $qdb ]] && kill "$qdb" 2>/dev/null && wait "$qdb" 2>/dev/null || true
  [[ -n $dir ]] && rm -rf "$dir"
  app="" qdb="" dir=""
}
trap cleanup EXIT
printf 'campaigns\trss_steady_mib\trss_max_sample_mib\tpeak_vmhwm_mib\tscrape_ms_median\n'
for scale in $scales; do
  dir=$(mktemp -d /tmp/mem-scale.XXXXXX)
  qhttp=$(free_port) qpg=$(free_port) listen=$(free_port)
  mkdir -p "$dir/q" "$dir/tmp"
  QDB_HTTP_BIND_TO=127.0.0.1:$qhttp QDB_PG_NET_BIND_TO=127.0.0.1:$qpg QDB_HTTP_MIN_ENABLED=false \
    QDB_LINE_TCP_ENABLED=false QDB_TELEMETRY_ENABLED=false QDB_SHARED_WORKER_COUNT=2 \
    java -Xms128m -Xmx512m -Djava.io.tmpdir="$dir/tmp" -p "$jar" -m io.questdb/io.questdb.ServerMain -d "$dir/q" >"$dir/questdb.log" 2>&1 &
  qdb=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$qhttp/exec?query=select%201"; do
    kill -0 "$qdb" 2>/dev/null || { cat "$dir/questdb.log" >&2; exit 1; }
    sleep 0.5
  done
  cat >"$dir/c.toml" <<TOML
[general]
state_dir = "$dir/state"
[server]
listen = "127.0.0.1:$listen"
[questdb]
http_url = "http://127.0.0.1:$qhttp"
spool_dir = "$dir/spool"
[[sources]]
type = "demo"
name = "demo"
backfill_days = 8
scale = $scale
speedup = 60.0
TOML
  campaigns=$((scale * 6))
  out=/tmp/mem-scale-$campaigns.tsv
  : >"$out"
  "$bin" run -c "$dir/c.toml" >"$dir/adpulse.log" 2>&1 &
  app=$!
  t0=$(date +%s)
  while (( $(date +%s) - t0 < secs )); do
    sleep 2
    kill -0 "$app" 2>/dev/null || { tail -20 "$dir/adpulse.log" >&2; exit 1; }
    ms=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$listen/metrics" | awk '{printf "%.1f", $1 * 1000}')
    read -r rss hwm < <(awk '/VmRSS/ {r=$2} /VmHWM/ {h=$2} END {print r, h}' "/proc/$app/status")
    printf '%s\t%s\t%s\t%s\n' "$(( $(date +%s) - t0 ))" "$rss" "$hwm" "$ms" >>"$out"
  done
  python3 - "$campaigns" "$out" <<'PY'
import statistics, sys
rows = [l.split('\t') for l in open(sys.argv[2]) if l.strip()]
rss = [int(r[1]) / 1024 for r in rows]
late = rss[len(rss) // 2:]
scr = [float(r[3]) for r in rows[len(rows) // 2:]]
print(f"{sys.argv[1]}\t{statistics.median(late):.0f}\t{max(rss):.0f}\t{int(rows[-1][2]) / 1024:.0f}\t{statistics.median(scr):.1f}")
PY
  cp "$dir/adpulse.log" "/tmp/mem-scale-$campaigns.log"
  cleanup
done
