#!/usr/bin/env bash
# One command for a fresh machine: installs bsft (npm) and the trainer's Python packages (pip, into .venv),
# then runs a recipe end to end with `bsft run` (default: recipes/smoke.yaml, tiny model, CPU, no Redis).
#
#   bash scripts/quickstart.sh [recipe.yaml]
#
# If pip cannot install the trainer's packages (no network to PyPI, say), the run still builds the dataset and
# then stops at the train step with the exact command that installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe="${1:-recipes/smoke.yaml}"

echo "== npm ci (installs and builds the orchestrator)"
npm ci --no-audit --no-fund
echo "== the bsft command"
bash scripts/link-bsft.sh

if [ -f trainer-python/pyproject.toml ]; then
  echo "== Python venv .venv with the trainer (pip install -e trainer-python)"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || echo "quickstart: could not create .venv (Debian: apt-get install python3-venv); using python3"
  fi
  py=python3
  [ -x .venv/bin/python ] && py=.venv/bin/python
  if "$py" -c 'import torch, transformers, peft, safetensors' 2>/dev/null; then
    echo "quickstart: the trainer's packages are already installed in $py"
  else
    # Fail fast where no package index answers (no retries, a short timeout), and keep pip's output in a log:
    # a machine without network gets one line and the command that installs what is missing, not minutes of retries.
    log=$(mktemp)
    if PIP_RETRIES=0 PIP_TIMEOUT=20 timeout 1800 "$py" -m pip install --quiet --progress-bar off -e trainer-python >"$log" 2>&1; then
      echo "quickstart: trainer packages installed"
    else
      why=$(grep -m1 -E 'No matching distribution|Could not find a version|ERROR:' "$log" | sed 's/^ *//' || true)
      echo "quickstart: pip could not install the trainer's packages: ${why:-see $log} (pip's output: $log)"
      echo "quickstart: once a package index is reachable, install them with:  $py -m pip install -e trainer-python"
      echo "quickstart: the run below builds the dataset, then stops at the train step saying what is missing"
    fi
  fi
fi

echo "== bsft run $recipe"
exec node bin/bsft.js run "$recipe"
