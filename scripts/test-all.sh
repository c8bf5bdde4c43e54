#!/usr/bin/env bash
# `npm test`: the orchestrator's suite (vitest: unit, real-Redis integration, CLI end to end) and the trainer's
# suite (pytest, scripts/test-trainer.sh) side by side. They share no state; run together they take about the time
# of the longer one instead of the sum (much of the vitest suite waits on Redis, timers and subprocesses). The
# trainer's lines are prefixed "[trainer]". Exit status: non-zero when either suite fails.
#
#   bash scripts/test-all.sh            both suites
#   npm run test:ts / npm run test:trainer   one of them
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

# One torch thread per process: the two suites keep both cores busy, and torch's two OpenMP threads per process then
# wait on each other (measured on 2 cores with both busy: a trainer test took 27.4 s with 2 threads, 16.0 s with 1;
# 8.8 vs 9.4 s on an idle machine). OMP_NUM_THREADS set by the caller wins.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Each failure's first error line is printed last, where the tail of a CI log shows it: vitest's from its failures
# reporter (orchestrator/test/helpers/failures-reporter.ts), pytest's from its short summary (-rfE).
work=$(mktemp -d)
export BSFT_TEST_FAILURES="$work/vitest-failures"
# Every temporary file of both suites and of what they start (run folders, checkpoints, pytest's tmp_path, torch's
# caches) goes under $work/tmp and is removed at the end, passed or failed, so that runs of the suite on one machine do
# not pile up: measured, one run left 12.7 GB in /tmp before (vitest's own run folder: helpers/temp-root.ts; pytest
# removes a passed test's tmp_path as it ends: pyproject.toml). BSFT_TEST_KEEP_TMP=1 keeps it, to look at.
mkdir "$work/tmp"
export TMPDIR="$work/tmp"
if [ "${BSFT_TEST_KEEP_TMP:-}" = 1 ]; then
  trap 'echo "npm test: temporary files kept in $work/tmp"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

# 200 columns: pytest cuts a summary line's reason at the terminal's width (80 in a CI log).
(COLUMNS=200 bash scripts/test-trainer.sh 2>&1 | tee "$work/trainer.log" | sed -u 's/^/[trainer] /') &
trainer=$!
npx vitest run
ts=$?
wait "$trainer"
py=$?
echo "npm test: orchestrator suite (vitest) exit $ts, trainer suite (pytest) exit $py"
if [ "$ts" != 0 ] || [ "$py" != 0 ]; then
  echo "npm test: what failed (the first line of each error; the full output is above):"
  cat "$work/vitest-failures" 2>/dev/null
  grep -E '^(FAILED|ERROR) ' "$work/trainer.log" | sed 's/^/[trainer] /'
  # Many tests failing at once is often the machine: a full disk or too little memory.
  echo "npm test: free disk and memory at the end:"
  df -h . "$TMPDIR" 2>/dev/null
  free -m 2>/dev/null | head -2
fi
[ "$ts" = 0 ] && [ "$py" = 0 ]
