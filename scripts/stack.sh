#!/usr/bin/env bash
# The local stack, natively (no Docker): QuestDB, Prometheus and Alertmanager on loopback, with
# their data and generated configs in .stack/ (git-ignored).
#
#   scripts/stack.sh up       start what is not running, wait until each is healthy
#   scripts/stack.sh down     stop them (by PID)
#   scripts/stack.sh status   show what runs where
#   scripts/stack.sh render-config DIR
#                             only write the Prometheus and Alertmanager configs `up` would use
#                             (DIR/prometheus.yml, DIR/alertmanager.yml, DIR/templates/,
#                             DIR/secrets/), for `promtool check config` / `amtool check-config`
#                             (scripts/check-alerting.sh)
#   scripts/stack.sh render-config --compose DIR
#                             the same for docker-compose (service names, paths inside the
#                             containers; no secrets written): deploy/alertmanager/ and
#                             deploy/prometheus/prometheus.yml are this output, and
#                             check-alerting.sh fails when they are out of date
#
# Ports (override with the environment): QuestDB HTTP $QDB_HTTP_PORT (9000), PG wire $QDB_PG_PORT
# (8812), metrics $QDB_METRICS_PORT (9003); Prometheus $PROM_PORT (9090); Alertmanager $AM_PORT
# (9093); adpulse is scraped at $ADPULSE_ADDR (127.0.0.1:9464).
#
# Where alerts go (environment; defaults are local placeholders):
#   GRAFANA_ROOT_URL     Grafana as a phone reaches it, for every alert link (http://localhost:3000)
#   ADPULSE_PUBLIC_URL   the action center as a phone reaches it (http://$ADPULSE_ADDR)
#   WHATSAPP_BRIDGE_URL  the WhatsApp webhook bridge (http://127.0.0.1:9097/alertmanager)
#   DEADMANSSWITCH_URL   the dead-man's-switch ping URL for the Watchdog (http://127.0.0.1:9099/ping/adpulse-watchdog)
#   SMTP_SMARTHOST, SMTP_FROM, ALERT_EMAIL_MARKETING, ALERT_EMAIL_ENGINEERING
# Secrets (files, mode 0600, in .stack/secrets/; empty placeholders are created):
#   adpulse_webhook_token  bearer token Alertmanager sends to adpulse's webhook: generated once;
#                          run adpulse with ADPULSE_API_WRITE_TOKEN_FILE or `write_token_file`
#                          pointing at it (or put your token in the file)
#   smtp_password, slack_webhook_url, whatsapp_bridge_token
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/versions.sh

QDB_HTTP_PORT=${QDB_HTTP_PORT:-9000}
QDB_PG_PORT=${QDB_PG_PORT:-8812}
QDB_METRICS_PORT=${QDB_METRICS_PORT:-9003}
PROM_PORT=${PROM_PORT:-9090}
AM_PORT=${AM_PORT:-9093}
ADPULSE_ADDR=${ADPULSE_ADDR:-127.0.0.1:9464}
STACK="$ROOT/.stack"
RUN="$STACK/run"
SECRETS="${ADPULSE_SECRETS_DIR:-$STACK/secrets}"

pid_alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_http() { # name url seconds
  local name=$1 url=$2 secs=$3 i
  for ((i = 0; i < secs * 4; i++)); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    if ! pid_alive "$name"; then
      echo "$name exited; last log lines:" >&2
      tail -20 "$STACK/$name/$name.log" >&2 || true
      return 1
    fi
    sleep 0.25
  done
  echo "$name did not become healthy at $url within ${secs}s (log: $STACK/$name/$name.log)" >&2
  return 1
}

start_questdb() {
  if pid_alive questdb; then echo "questdb      already running (pid $(cat "$RUN/questdb.pid"))"; return; fi
  local jar="$STACK/bin/questdb-${QUESTDB_VERSION}.jar"
  [[ -s $jar ]] || bash scripts/install-deps.sh
  # QuestDB unpacks its native library into java.io.tmpdir at every start and leaves it: keep
  # it in the stack's folder, one copy overwritten per start, instead of a new one in /tmp
  mkdir -p "$STACK/questdb/root" "$STACK/questdb/tmp"
  (
    # adpulse's server settings (small append pages: lean disk), shared with docker-compose.yml
    set -a; source deploy/questdb/questdb.env; set +a
    export QDB_HTTP_BIND_TO="127.0.0.1:$QDB_HTTP_PORT" QDB_PG_NET_BIND_TO="127.0.0.1:$QDB_PG_PORT" \
      QDB_HTTP_MIN_NET_BIND_TO="127.0.0.1:$QDB_METRICS_PORT" QDB_METRICS_ENABLED=true \
      QDB_LINE_TCP_ENABLED=false QDB_TELEMETRY_ENABLED=false
    nohup java -Xms256m -Xmx1g -Djava.io.tmpdir="$STACK/questdb/tmp" -p "$jar" -m io.questdb/io.questdb.ServerMain -d "$STACK/questdb/root" \
      >"$STACK/questdb/questdb.log" 2>&1 &
    echo $! >"$RUN/questdb.pid"
  )
  wait_http questdb "http://127.0.0.1:$QDB_HTTP_PORT/exec?query=select%201" 90
  echo "questdb      up: http://127.0.0.1:$QDB_HTTP_PORT (SQL console), pg wire 127.0.0.1:$QDB_PG_PORT (admin/quest), metrics :$QDB_METRICS_PORT"
}

# Targets of the rendered configs: "native" (loopback ports of this machine) or "compose" (service
# names and container paths of docker-compose.yml).
render_target() {
  if [[ ${RENDER_TARGET:-native} == compose ]]; then
    R_ADPULSE=adpulse:9464 R_QDB_METRICS=questdb:9003 R_AM=alertmanager:9093 R_PROM=localhost:9090
    R_RULES=/etc/prometheus/rules/*.yml R_SECRETS=/etc/alertmanager/secrets
    R_ADPULSE_PUBLIC=${ADPULSE_PUBLIC_URL:-http://localhost:9464}
  else
    R_ADPULSE=$ADPULSE_ADDR R_QDB_METRICS=127.0.0.1:$QDB_METRICS_PORT R_AM=127.0.0.1:$AM_PORT
    R_PROM=127.0.0.1:$PROM_PORT R_RULES="$ROOT/alerting/rules/*.yml" R_SECRETS=$SECRETS
    R_ADPULSE_PUBLIC=${ADPULSE_PUBLIC_URL:-http://$ADPULSE_ADDR}
  fi
  R_GRAFANA=${GRAFANA_ROOT_URL:-http://localhost:3000}
  R_WHATSAPP=${WHATSAPP_BRIDGE_URL:-http://127.0.0.1:9097/alertmanager}
  R_DMS=${DEADMANSSWITCH_URL:-http://127.0.0.1:9099/ping/adpulse-watchdog}
  R_SMTP=${SMTP_SMARTHOST:-localhost:25}
  R_FROM=${SMTP_FROM:-adpulse-alerts@localhost}
  R_MAIL_MKT=${ALERT_EMAIL_MARKETING:-marketing-lead@localhost}
  R_MAIL_ENG=${ALERT_EMAIL_ENGINEERING:-engineering@localhost}
}

write_prometheus_config() { # dir: writes dir/prometheus.yml
  local dir=$1
  render_target
  mkdir -p "$dir"
  cat >"$dir/prometheus.yml" <<YML
# generated by scripts/stack.sh (target ${RENDER_TARGET:-native}); edit the script, not this file
global:
  scrape_interval: 10s
  evaluation_interval: 10s
rule_files:
  - $R_RULES
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['$R_AM']
scrape_configs:
  - job_name: adpulse
    static_configs:
      - targets: ['$R_ADPULSE']
  - job_name: questdb
    metrics_path: /metrics
    static_configs:
      - targets: ['$R_QDB_METRICS']
  - job_name: alertmanager
    static_configs:
      - targets: ['$R_AM']
  # Prometheus itself: prometheus_rule_evaluation_failures_total and the notification counters
  # (AdpulseRuleEvaluationFailing, AdpulseAlertmanagerUnreachable).
  - job_name: prometheus
    static_configs:
      - targets: ['$R_PROM']
YML
}

# A secret file: kept if present, else created (mode 0600) with $2 (may be empty).
ensure_secret() { # path initial-content
  local f=$1
  mkdir -p "$(dirname "$f")"
  if [[ ! -f $f ]]; then
    (umask 077; printf '%s' "$2" >"$f")
  fi
}

write_secrets() { # dir
  local dir=$1 token
  if [[ -n ${ADPULSE_API_WRITE_TOKEN:-} ]]; then token=$ADPULSE_API_WRITE_TOKEN
  else token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'); fi
  ensure_secret "$dir/adpulse_webhook_token" "$token"
  ensure_secret "$dir/smtp_password" ""
  ensure_secret "$dir/whatsapp_bridge_token" ""
  # Alertmanager refuses an empty Slack URL: a placeholder that fails visibly (AdpulseNotificationsFailing)
  ensure_secret "$dir/slack_webhook_url" "http://127.0.0.1:9/slack-not-configured"
}

write_alertmanager_config() { # dir: writes dir/alertmanager.yml and dir/templates/
  local dir=$1
  render_target
  mkdir -p "$dir/templates"
  cp alerting/templates/adpulse.tmpl "$dir/templates/adpulse.tmpl"
  {
    echo "{{/* generated by scripts/stack.sh (target ${RENDER_TARGET:-native}) from GRAFANA_ROOT_URL and ADPULSE_PUBLIC_URL */}}"
    echo "{{ define \"adpulse.grafana_root_url\" }}${R_GRAFANA%/}{{ end }}"
    echo "{{ define \"adpulse.action_center_url\" }}${R_ADPULSE_PUBLIC%/}{{ end }}"
  } >"$dir/templates/urls.tmpl"
  # The shipped file's native defaults, replaced by this target's addresses; secrets by absolute
  # paths (Alertmanager 0.25 reads some *_file settings relative to its working directory).
  sed -e "s|http://127.0.0.1:9464/|http://$R_ADPULSE/|g" \
    -e "s|'http://127.0.0.1:9097/alertmanager'|'$R_WHATSAPP'|" \
    -e "s|'http://127.0.0.1:9099/ping/adpulse-watchdog'|'$R_DMS'|" \
    -e "s|smtp_smarthost: 'localhost:25'|smtp_smarthost: '$R_SMTP'|" \
    -e "s|smtp_from: 'adpulse-alerts@localhost'|smtp_from: '$R_FROM'|" \
    -e "s|auth_username: 'adpulse-alerts@localhost'|auth_username: '$R_FROM'|" \
    -e "s|to: 'marketing-lead@localhost'|to: '$R_MAIL_MKT'|" \
    -e "s|to: 'engineering@localhost'|to: '$R_MAIL_ENG'|" \
    -e "s|'secrets/|'$R_SECRETS/|g" \
    -e "1i # generated by scripts/stack.sh (target ${RENDER_TARGET:-native}) from alerting/alertmanager.yml; edit that, not this file" \
    alerting/alertmanager.yml >"$dir/alertmanager.yml"
}

start_prometheus() {
  write_prometheus_config "$STACK/prometheus"
  promtool check config "$STACK/prometheus/prometheus.yml" >/dev/null
  mkdir -p "$STACK/prometheus/data"
  if pid_alive prometheus; then
    kill -HUP "$(cat "$RUN/prometheus.pid")" # reload the regenerated config and rules
    echo "prometheus   already running (pid $(cat "$RUN/prometheus.pid")), config reloaded"
    return
  fi
  nohup prometheus --config.file="$STACK/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STACK/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.enable-lifecycle >"$STACK/prometheus/prometheus.log" 2>&1 &
  echo $! >"$RUN/prometheus.pid"
  wait_http prometheus "http://127.0.0.1:$PROM_PORT/-/ready" 60
  echo "prometheus   up: http://127.0.0.1:$PROM_PORT"
}

start_alertmanager() {
  write_secrets "$SECRETS"
  write_alertmanager_config "$STACK/alertmanager"
  amtool check-config "$STACK/alertmanager/alertmanager.yml" >/dev/null
  mkdir -p "$STACK/alertmanager/data"
  if pid_alive alertmanager; then
    kill -HUP "$(cat "$RUN/alertmanager.pid")"
    echo "alertmanager already running (pid $(cat "$RUN/alertmanager.pid")), config reloaded"
    return
  fi
  nohup prometheus-alertmanager --config.file="$STACK/alertmanager/alertmanager.yml" \
    --storage.path="$STACK/alertmanager/data" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= >"$STACK/alertmanager/alertmanager.log" 2>&1 &
  echo $! >"$RUN/alertmanager.pid"
  wait_http alertmanager "http://127.0.0.1:$AM_PORT/-/ready" 60
  echo "alertmanager up: http://127.0.0.1:$AM_PORT (webhook token for adpulse: $SECRETS/adpulse_webhook_token)"
}

stop() {
  local name=$1 pid i
  if pid_alive "$name"; then
    pid=$(cat "$RUN/$name.pid")
    kill "$pid"
    for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "$name stopped"
  fi
  rm -f "$RUN/$name.pid"
}

status() {
  local name
  for name in questdb prometheus alertmanager adpulse; do
    if pid_alive "$name"; then printf '%-12s running (pid %s)\n' "$name" "$(cat "$RUN/$name.pid")"
    else printf '%-12s stopped\n' "$name"; fi
  done
}

case "${1:-}" in
  render-config)
    shift
    if [[ ${1:-} == --compose ]]; then RENDER_TARGET=compose; shift; fi
    [[ -n "${1:-}" ]] || { echo "usage: $0 render-config [--compose] DIR" >&2; exit 2; }
    mkdir -p "$1"
    out="$(cd "$1" && pwd)"
    write_prometheus_config "$out"
    if [[ ${RENDER_TARGET:-native} == native ]]; then
      SECRETS="$out/secrets"
      write_secrets "$SECRETS"
    fi
    write_alertmanager_config "$out"
    echo "wrote $out/prometheus.yml, $out/alertmanager.yml, $out/templates/ (target ${RENDER_TARGET:-native})"
    ;;
  up)
    mkdir -p "$RUN"
    command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null && command -v java >/dev/null \
      || bash scripts/install-deps.sh
    start_questdb
    start_alertmanager
    start_prometheus
    ;;
  down)
    mkdir -p "$RUN"
    stop adpulse
    stop prometheus
    stop alertmanager
    stop questdb
    ;;
  status) mkdir -p "$RUN"; status ;;
  *)
    echo "usage: $0 up|down|status|render-config DIR" >&2
    exit 2
    ;;
esac
