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
  if ! "$py" -m pip install --quiet -e trainer-python; then
    echo "quickstart: pip could not install the trainer's packages; the run will stop at the train step and say what is missing"
  fi
fi

echo "== bsft run $recipe"
exec node bin/bsft.js run "$recipe"
