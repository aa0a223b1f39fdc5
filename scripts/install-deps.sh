#!/usr/bin/env bash
# Install what adpulse's stack and tests need on a fresh Debian machine:
#   - Java 17 (QuestDB 9.3.x runs on it) and Maven (to fetch QuestDB from Maven Central)
#   - QuestDB ${QUESTDB_VERSION}, copied to .stack/bin/
#   - Prometheus (with promtool) and Alertmanager (with amtool) from Debian's packages
#   - Chromium and chromedriver (the action center's browser tests)
# Idempotent: what is present is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
command -v curl >/dev/null || need_apt+=(curl)
# the action center's browser tests (tests/browser.rs)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing: ${need_apt[*]} — install them with: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  echo "installing ${need_apt[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # the Debian packages start system services on their default ports; the stack runs its own
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    (systemctl stop "$svc" 2>/dev/null || service "$svc" stop 2>/dev/null || true) >/dev/null
  done
fi

python3 -c 'import jsonschema' 2>/dev/null || {
  echo "installing jsonschema (PyPI) for scripts/check-dashboards.py"
  python3 -m pip install -q jsonschema
}

mkdir -p .stack/bin
jar=".stack/bin/questdb-${QUESTDB_VERSION}.jar"
if [[ ! -s $jar ]]; then
  m2="$HOME/.m2/repository/org/questdb/questdb/${QUESTDB_VERSION}/questdb-${QUESTDB_VERSION}.jar"
  if [[ ! -s $m2 ]]; then
    echo "fetching QuestDB ${QUESTDB_VERSION} from Maven Central"
    mvn -q dependency:get -Dartifact="org.questdb:questdb:${QUESTDB_VERSION}" -Dtransitive=false
  fi
  cp "$m2" "$jar"
fi
# Rust: Debian's own cargo is too old for this crate (edition 2024, rust-version in Cargo.toml),
# so it is not installed from apt; say exactly what is needed instead of failing mid-build.
need_rust=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
if ! command -v cargo >/dev/null; then
  echo "missing: Rust ${need_rust} or newer (cargo) — install it with rustup, then run this again" >&2
  exit 1
fi
have_rust=$(cargo --version | cut -d' ' -f2)
if [[ $(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -1) != "$need_rust" ]]; then
  echo "Rust ${have_rust} is older than the ${need_rust} this crate needs — run: rustup update stable" >&2
  exit 1
fi
echo "ok: cargo ${have_rust}, java $(java -version 2>&1 | head -1 | cut -d'"' -f2), QuestDB ${QUESTDB_VERSION} ($jar), $(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3), $(prometheus-alertmanager --version 2>&1 | head -1 | cut -d' ' -f1-3)"
