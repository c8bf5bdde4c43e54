#!/usr/bin/env bash
# `npm run test:quick`: the inner loop, a few minutes at most on 2 cores. The unit tests of both sides (recipes and
# their errors, the memory plan, progress lines, contracts, advice; the trainer's loss, packing and contract
# checks): no Redis, no subprocess runs, no model. `npm test` runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
npx vitest run orchestrator/test/{advice,contract,memory-plan,progress,recipe}.test.ts
for py in "${BSFT_PYTHON:-}" .venv/bin/python /usr/bin/python3 python3; do
  [ -n "$py" ] || continue
  if "$py" -c 'import torch, numpy, pytest' 2>/dev/null; then
    case "$py" in */*) [ "${py#/}" = "$py" ] && py="$PWD/$py" ;; esac  # .venv/bin/python stays valid after cd
    cd trainer-python && exec "$py" -m pytest -q tests/test_contract.py tests/test_loss.py tests/test_packing.py
  fi
done
echo "test-quick: no Python with torch, numpy and pytest found (Debian: apt-get install python3-torch python3-pytest)" >&2
exit 1
