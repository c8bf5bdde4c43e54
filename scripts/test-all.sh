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

(bash scripts/test-trainer.sh 2>&1 | sed -u 's/^/[trainer] /') &
trainer=$!
npx vitest run
ts=$?
wait "$trainer"
py=$?
echo "npm test: orchestrator suite (vitest) exit $ts, trainer suite (pytest) exit $py"
[ "$ts" = 0 ] && [ "$py" = 0 ]
