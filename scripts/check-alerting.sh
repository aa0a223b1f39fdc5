#!/usr/bin/env bash
# Static checks of the alerting configuration (issue 3):
#   - promtool check rules      on alerting/rules/*.yml
#   - promtool test rules       on alerting/tests/*.yml (every alert, firing and not firing)
#   - amtool check-config       on alerting/alertmanager.yml
#   - amtool config routes test: the route tree sends each severity/team to the expected receivers
#   - promtool check config / amtool check-config on the configs scripts/stack.sh generates for the
#     native stack (`stack.sh render-config DIR`: Prometheus with these rule files and an
#     Alertmanager target, Alertmanager with its secret files), so the stack's configs are checked too
# Exits non-zero on the first failure. Needs promtool and amtool (Prometheus 2.42 /
# Alertmanager 0.25 or newer).
set -euo pipefail

cd "$(dirname "$0")/.."

missing=()
for tool in promtool amtool; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} > 0)); then
  echo "check-alerting: missing ${missing[*]}; install them with:" >&2
  echo "  apt-get install prometheus prometheus-alertmanager" >&2
  exit 1
fi

shopt -s nullglob
rules=(alerting/rules/*.yml)
tests=(alerting/tests/*.yml)
if ((${#rules[@]} == 0 || ${#tests[@]} == 0)); then
  echo "check-alerting: no rule files or no test files found" >&2
  exit 1
fi

echo "== promtool check rules"
promtool check rules "${rules[@]}"

echo "== promtool test rules"
promtool test rules "${tests[@]}"

echo "== amtool check-config"
amtool check-config alerting/alertmanager.yml

echo "== amtool config routes test"
route() {
  local expected=$1
  shift
  printf '%-45s -> ' "$*"
  amtool config routes test --config.file=alerting/alertmanager.yml \
    --verify.receivers="$expected" "$@"
}
route critical                severity=critical team=marketing campaign=all alertname=AdpulseDailyLossLimitExceeded
route critical,engineering    severity=critical team=engineering alertname=AdpulseQuestDBDown
route engineering             severity=warning team=engineering alertname=AdpulseSourceDown
route warning                 severity=warning team=marketing campaign=x alertname=AdpulseCampaignROASLow
route adpulse                 severity=info team=marketing alertname=AdpulseInfo

echo "== stack configs (scripts/stack.sh render-config)"
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
bash scripts/stack.sh render-config "$rendered" >/dev/null
promtool check config "$rendered/prometheus.yml"
amtool check-config "$rendered/alertmanager.yml"

echo "check-alerting: OK"
