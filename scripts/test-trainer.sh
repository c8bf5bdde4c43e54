#!/usr/bin/env bash
# Runs the trainer's test suite with a Python that has torch: $BSFT_PYTHON, the project's .venv, Debian's
# /usr/bin/python3 (python3-torch), or python3. Tests that need transformers/peft or a GPU are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/../trainer-python"
for py in "${BSFT_PYTHON:-}" ../.venv/bin/python /usr/bin/python3 python3; do
  [ -n "$py" ] || continue
  if "$py" -c 'import torch, numpy, pytest' 2>/dev/null; then
    echo "trainer tests with $py (torch $("$py" -c 'import torch; print(torch.__version__)'))"
    # -v: each test's name as it runs; the slowest 15 at the end, and every test over the budget (conftest.py);
    # -rfEs: each failure, error and skip with its reason in the short summary.
    exec "$py" -m pytest -v -rfEs --durations=15 tests "$@"
  fi
done
echo "test-trainer: no Python with torch, numpy and pytest found (Debian: apt-get install python3-torch python3-pytest)" >&2
exit 1
