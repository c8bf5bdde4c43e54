#!/usr/bin/env bash
# The trainer's GPU check, one command for a fresh GPU machine (torch, transformers and peft installed; no network):
#
#   bash scripts/gpu-check.sh REPORT_DIR     runs every step below, each under its own time limit (about 12 minutes
#                                            in all), and writes REPORT_DIR/report.md plus each step's raw log
#   bash scripts/gpu-check.sh --dry-run      lists the steps it would run, with their commands and limits
#   bash scripts/gpu-check.sh --allow-cpu D  the same steps on a machine without a GPU (checks this script; the
#                                            GPU tests report themselves skipped and the benchmark uses the tiny model)
#   bash scripts/gpu-check.sh --only fsdp2,throughput D   only the steps named (to fit a call's time limit)
#
# Every step runs even when an earlier one fails; each step's pass/fail, time and error lines are in the report,
# and the exit status is 1 when any step failed. The trainer is installed with --no-deps (what the machine has is
# used as it is); where pip cannot install it, PYTHONPATH points at trainer-python/src instead and the report says so.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
PY=${BSFT_PYTHON:-python3}

dry_run=0
allow_cpu=0
only=
out=
want_only=0
for arg in "$@"; do
  if [ "$want_only" = 1 ]; then only=$arg; want_only=0; continue; fi
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --allow-cpu) allow_cpu=1 ;;
    --only) want_only=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu-check: unknown option $arg" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done

# name | time limit (s) | command (run from trainer-python/)
STEPS=(
  "gpu-tests|100|$PY -m pytest -v -rs -p no:cacheprovider tests/test_gpu.py tests/test_attention.py"
  "qwen-7b-shape|150|$PY -m pytest -v -s -rs -p no:cacheprovider tests/test_hf.py -k qwen_7b_shape"
  "throughput|150|$PY bench/throughput.py --compile --json \$OUT_DIR/throughput.json"
  "predict-bench|150|$PY bench/predict.py --json \$OUT_DIR/predict.json"
  "hf-tests|120|$PY -m pytest -v -rs -p no:cacheprovider tests/test_hf.py -k 'not qwen_7b_shape'"
  "fsdp2|180|$PY -m pytest -v -s -rs -p no:cacheprovider tests/test_gpu_fsdp.py"
)

if [ "$dry_run" = 1 ]; then
  echo "gpu-check would run, in order (each under its time limit; a failure does not stop the next):"
  echo "  0. environment: nvidia-smi, python, torch, transformers, peft; install: $PY -m pip install --no-deps --no-build-isolation -e trainer-python"
  i=1
  for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit cmd <<<"$step"
    echo "  $i. $name (limit ${limit} s): (cd trainer-python && $cmd)"
    i=$((i + 1))
  done
  echo "then: REPORT_DIR/report.md (pass/fail, time and errors of each step, the throughput table) and one log per step"
  exit 0
fi

if [ -z "$out" ]; then
  echo "usage: bash scripts/gpu-check.sh [--dry-run] [--allow-cpu] REPORT_DIR" >&2
  exit 2
fi
mkdir -p "$out"
OUT_DIR=$(cd "$out" && pwd)
export OUT_DIR PYTHONUNBUFFERED=1
report=$OUT_DIR/report.md

if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "gpu-check: $PY has no torch" >&2
  exit 2
fi
cuda=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')
if [ "$cuda" != 1 ] && [ "$allow_cpu" != 1 ]; then
  echo "gpu-check: torch sees no CUDA GPU here (use --allow-cpu to run the steps on the CPU anyway)" >&2
  exit 2
fi

{
  echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo
  echo '```'
  "$PY" - <<'EOF'
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}")
for name in ("transformers", "peft", "safetensors", "tokenizers"):
    try:
        print(f"{name} {__import__(name).__version__}")
    except Exception as e:
        print(f"{name}: not importable ({type(e).__name__})")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
else:
    print("GPU: none (--allow-cpu)")
EOF
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1
  fi
  echo '```'
  echo
} >"$report"

# The trainer, without its dependencies (nothing can be downloaded there).
if "$PY" -m pip install -q --no-deps --no-build-isolation -e trainer-python >"$OUT_DIR/install.log" 2>&1; then
  echo "Trainer installed with \`pip install --no-deps --no-build-isolation -e trainer-python\`." >>"$report"
else
  export PYTHONPATH="$ROOT/trainer-python/src${PYTHONPATH:+:$PYTHONPATH}"
  echo "pip could not install the trainer ($(tail -1 "$OUT_DIR/install.log")); PYTHONPATH=trainer-python/src is used instead." >>"$report"
fi
echo >>"$report"

printf '| step | result | time |\n|---|---|---|\n' >"$OUT_DIR/summary.tmp"
details=$OUT_DIR/details.tmp
: >"$details"
failed=0
for step in "${STEPS[@]}"; do
  IFS='|' read -r name limit cmd <<<"$step"
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  log=$OUT_DIR/$name.log
  echo "gpu-check: $name (limit ${limit} s)"
  start=$(date +%s)
  (cd trainer-python && timeout --signal=TERM --kill-after=15 "$limit" bash -c "$cmd") >"$log" 2>&1
  code=$?
  secs=$(( $(date +%s) - start ))
  if [ "$code" = 0 ]; then
    result=pass
  elif [ "$code" = 124 ] || [ "$code" = 137 ]; then
    result="FAIL: timed out after ${limit} s"
  else
    result="FAIL: exit $code"
  fi
  [ "$result" = pass ] || failed=1
  echo "gpu-check: $name: $result (${secs} s)"
  echo "| $name | $result | ${secs} s |" >>"$OUT_DIR/summary.tmp"
  {
    echo "## $name: $result (${secs} s)"
    echo
    echo "\`$cmd\` (in trainer-python/, limit ${limit} s); full log: \`$name.log\`"
    echo
    echo '```'
    # pytest's per-test lines and summary, the benchmark's table and findings, and every error line
    grep -E 'PASSED|FAILED|SKIPPED|ERROR|XFAIL|passed|failed|skipped|^\||^E |Error|error:|7B-shaped|FSDP2,|packed loss|throughput:|losses|predict bench|continuous|static ' "$log" | tail -60
    echo '```'
    if [ "$result" != pass ]; then
      # what was running when it failed or ran out of time
      echo
      echo "Last lines of the log:"
      echo
      echo '```'
      tail -n 15 "$log"
      echo '```'
    fi
    echo
  } >>"$details"
done
{
  cat "$OUT_DIR/summary.tmp"
  echo
  cat "$details"
} >>"$report"
rm -f "$OUT_DIR/summary.tmp" "$details"
echo "gpu-check: report in $report"
exit "$failed"
