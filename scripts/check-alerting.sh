#!/usr/bin/env bash
# Static checks of the alerting configuration (issue 3):
#   - promtool check rules      on alerting/rules/*.yml
#   - promtool test rules       on alerting/tests/*.yml (every alert, firing and not firing)
#   - amtool check-config       on alerting/alertmanager.yml
#   - amtool config routes test: the route tree sends each kind of alert to the expected receivers
#     (money -> marketing, infrastructure -> engineering, Watchdog -> dead-man's switch), plus the
#     grouping, repeat and mute intervals
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
# One case per routing decision of alerting/alertmanager.yml (issue 13: engineering vs marketing,
# the Watchdog, the default). Mute intervals and repeat timers are not visible to `routes test`;
# the case list prints them from `amtool config routes show` below.
route() {
  local expected=$1
  shift
  printf '%-100s -> ' "$*"
  amtool config routes test --config.file=alerting/alertmanager.yml \
    --verify.receivers="$expected" "$@" 2>/dev/null
}
# money alerts: marketing, critical or warning; never an engineering receiver
route marketing-critical   severity=critical team=marketing campaign=all alertname=AdpulseDailyLossLimitExceeded
route marketing-critical   severity=critical team=marketing campaign=all alertname=AdpulseLossRateCritical
route marketing-critical   severity=critical team=marketing campaign_id=c1 alertname=AdpulseCampaignLossRateCritical
route marketing-warning    severity=warning team=marketing campaign_id=c1 alertname=AdpulseCampaignROASLow
route marketing-warning    severity=warning team=marketing campaign_id=c1 alertname=AdpulseCampaignSpendSpike
route marketing-warning    severity=warning team=marketing campaign=all alertname=AdpulseActionFailed
# engineering alerts: never the marketing lead's email or WhatsApp
route engineering-critical severity=critical team=engineering alertname=AdpulseQuestDBDown job=questdb
route engineering-critical severity=critical team=engineering alertname=AdpulseDown job=adpulse
route engineering-critical severity=critical team=engineering alertname=AdpulseCampaignTrackingBroken campaign_id=c1
route engineering-critical severity=critical team=engineering alertname=AdpulseNotificationsFailing integration=slack
route engineering          severity=warning team=engineering alertname=AdpulseSourceDown source=meta
route engineering          severity=warning team=engineering alertname=AdpulseDataStale source=ga4
# the dead-man's switch, and the default
route deadmansswitch       severity=none team=engineering alertname=Watchdog
route adpulse              severity=info alertname=AdpulseInfo

echo "== routing: grouping, repeat and mute intervals as documented"
amtool config routes show --config.file=alerting/alertmanager.yml 2>/dev/null
python3 - alerting/alertmanager.yml <<'PY'
import sys, re
text = open(sys.argv[1], encoding="utf-8").read()
# Chronic warnings: 12h repeat and the IST night mute, on both warning routes; critical routes unmuted.
blocks = re.findall(r"- receiver: (\S+)\n((?:          .*\n)+)", text)
seen = {}
for receiver, body in blocks:
    seen.setdefault(receiver, []).append(body)
problems = []
for r in ("marketing-warning", "engineering"):
    if not any("repeat_interval: 12h" in b and "mute_time_intervals: ['ist-night']" in b for b in seen.get(r, [])):
        problems.append(f"{r}: warning route without repeat_interval 12h and the ist-night mute")
for r in ("marketing-critical", "engineering-critical"):
    if any("mute_time_intervals" in b for b in seen.get(r, [])):
        problems.append(f"{r}: a critical route must not be muted")
# Marketing alerts grouped by the campaign's id (stable), never by its name.
m = re.search(r"matchers: \['team=\"marketing\"'\]\n\s+group_by: \[([^\]]*)\]", text)
if not m or "'campaign_id'" not in m.group(1) or "'campaign'" in m.group(1):
    problems.append("the marketing route must group by campaign_id (not the campaign name)")
if "location: 'Asia/Kolkata'" not in text:
    problems.append("time interval ist-night is not in Asia/Kolkata")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("marketing grouped by campaign_id; warning routes: 12h repeat, muted 21:00-09:00 Asia/Kolkata; critical routes: not muted")
PY

echo "== stack configs (scripts/stack.sh render-config)"
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
bash scripts/stack.sh render-config "$rendered" >/dev/null
promtool check config "$rendered/prometheus.yml"
amtool check-config "$rendered/alertmanager.yml"

echo "== compose configs are up to date (scripts/stack.sh render-config --compose)"
compose=$(mktemp -d)
trap 'rm -rf "$rendered" "$compose"' EXIT
env -u GRAFANA_ROOT_URL -u ADPULSE_PUBLIC_URL -u WHATSAPP_BRIDGE_URL -u DEADMANSSWITCH_URL \
  -u SMTP_SMARTHOST -u SMTP_FROM -u ALERT_EMAIL_MARKETING -u ALERT_EMAIL_ENGINEERING \
  bash scripts/stack.sh render-config --compose "$compose" >/dev/null
diff -u deploy/prometheus/prometheus.yml "$compose/prometheus.yml"
diff -ru deploy/alertmanager "$compose" --exclude=prometheus.yml
promtool check config --syntax-only deploy/prometheus/prometheus.yml
# amtool resolves the secret files: check a copy whose secrets point at placeholders
sed "s|'/etc/alertmanager/secrets/|'$rendered/secrets/|g" deploy/alertmanager/alertmanager.yml >"$compose/check.yml"
cp -r deploy/alertmanager/templates "$compose/" 2>/dev/null || true
amtool check-config "$compose/check.yml"

echo "check-alerting: OK"
