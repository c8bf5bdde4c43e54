#!/usr/bin/env bash
# README's test command: installs what the tests need on a fresh Debian machine (apt packages, a reachable Redis,
# the trainer's venv where pip can reach its packages, npm ci), then runs `npm test`. CI (.ci/run) calls this.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# Debian packages the tests use: redis-server (integration tests start their own when needed),
# python3-torch + python3-pytest (the trainer's CPU tests), python3-sklearn (study statistics), chromium (screenshots of the dashboard and reports).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
/usr/bin/python3 -c 'import torch' 2>/dev/null || need+=(python3-torch)
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || need+=(python3-pytest)
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
# scikit-learn + scipy: the independent computation the study statistics are checked against.
/usr/bin/python3 -c 'import sklearn, scipy' 2>/dev/null || need+=(python3-sklearn)
command -v chromium >/dev/null || need+=(chromium fonts-dejavu-core)
command -v shellcheck >/dev/null || need+=(shellcheck)
if [ ${#need[@]} -gt 0 ]; then
  echo "ci: installing ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Free disk where the suites write (the checkout, and TMPDIR for every run folder): the CI log says it, and warns
# when it is short: many tests then fail at once (measured: a run of the suite peaks at 6.7 GB of temporary files).
for where in . "${TMPDIR:-/tmp}"; do
  free_gb=$(df -P -B1G "$where" | awk 'NR == 2 { print $4 }')
  echo "ci: ${free_gb} GB free on the disk of $(cd "$where" && pwd)"
  [ "$free_gb" -ge 10 ] || echo "ci: warning: under 10 GB free there; the suite may fail for want of disk" >&2
done

# A reachable Redis: the one in REDIS_URL or on 127.0.0.1:6379, else one started here on a free port.
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
if ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  dir=$(mktemp -d)
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
    --logfile "$dir/redis.log"
  REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 50); do redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "ci: started redis-server on port $port"
fi
export REDIS_URL

# npm ci (only when node_modules does not match the lockfile: it deletes and reinstalls everything) runs while pip
# installs the trainer's packages below; its output is printed when it is done.
stamp=node_modules/.bsft-lock.sha256
npm_pid=
npm_log=$(mktemp)
if [ "$(cat "$stamp" 2>/dev/null)" = "$(sha256sum package-lock.json)" ]; then
  echo "ci: node_modules matches package-lock.json; skipping npm ci"
else
  npm ci --no-audit --no-fund > "$npm_log" 2>&1 &
  npm_pid=$!
fi

# The trainer's full suite needs torch + transformers + peft (+ tensorboard, whose event files a test reads back):
# install them into .venv where pip can reach them;
# elsewhere Debian's python3-torch runs the CPU suite and the transformers tests are reported as skipped.
if ! .venv/bin/python -c 'import torch, transformers, peft, pytest, tensorboard' 2>/dev/null; then
  if python3 -m venv .venv 2>/dev/null && PIP_RETRIES=0 PIP_TIMEOUT=20 timeout 900 .venv/bin/python -m pip install -q -e trainer-python pytest tensorboard; then
    echo "ci: trainer venv ready ($(.venv/bin/python -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'))"
  else
    echo "ci: pip cannot install torch/transformers/peft here; the trainer's transformers tests will be skipped"
    rm -rf .venv
  fi
fi

# TRL (with datasets) checks that the dataset's messages.jsonl gives TRL bsft's loss positions; optional, the test
# is skipped (and counted) where pip cannot install it.
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import trl, datasets' 2>/dev/null; then
  PIP_RETRIES=0 PIP_TIMEOUT=20 timeout 600 .venv/bin/python -m pip install -q trl \
    || echo "ci: pip cannot install trl here; the TRL check of the dataset will be skipped"
fi

echo "ci: shellcheck"
shellcheck scripts/*.sh .ci/run

if [ -n "$npm_pid" ]; then
  npm_ok=0
  wait "$npm_pid" || npm_ok=$?
  cat "$npm_log"
  if [ "$npm_ok" != 0 ]; then echo "ci: npm ci failed (exit $npm_ok)" >&2; exit "$npm_ok"; fi
  sha256sum package-lock.json > "$stamp"
fi
rm -f "$npm_log"
npm test
