#!/usr/bin/env bash
# Sets up vitrine on a fresh Debian/Ubuntu machine: system packages (Java 17,
# Maven, redis-server, kcat, prometheus, chromium), a virtual environment in .venv with the project and its
# dev tools, and the Kafka jars (resolved once from Maven Central into
# ~/.cache/vitrine/kafka-jars). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v redis-server >/dev/null || need+=(redis-server)
# librdkafka's command-line client: the codec tests publish with it (a producer that is not Python).
command -v kcat >/dev/null || need+=(kcat)
# prometheus + promtool: tests/integration/test_alerts.py checks the rules and sees them fire.
command -v promtool >/dev/null || need+=(prometheus)
# The review console's browser tests (Playwright drives Debian's chromium, not its own download).
command -v chromium >/dev/null || need+=(chromium)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "setup: installing ${need[*]} with apt-get"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
  if [[ " ${need[*]} " == *" prometheus "* ]]; then
    # The package enables a system Prometheus on :9090; the tests run their own.
    $sudo systemctl disable --now prometheus 2>/dev/null || true
    $sudo service prometheus stop 2>/dev/null || true  # machines without systemd
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  $python -m venv .venv
fi
# Install only when pyproject.toml changed since the last install.
stamp=.venv/.vitrine-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing vitrine and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

.venv/bin/python - <<'PY'
import logging, time
from streams.settings import get_settings
from streams.tools.stack import StackSettings, resolve_kafka_jars
logging.basicConfig(level=logging.INFO, format="setup: %(message)s")
t = time.monotonic()
libs = resolve_kafka_jars(get_settings().state_dir, StackSettings().kafka_version)
print(f"setup: Kafka jars ready in {libs} ({time.monotonic() - t:.1f} s)")
PY
