#!/usr/bin/env bash
# Turns a bare rented Ubuntu GPU machine into a bsft worker, without Docker:
#   checks the NVIDIA driver, installs Node 20 and a Python venv with the trainer, installs bsft in /opt/bsft,
#   and writes a systemd unit that restarts the worker and gives it the preemption grace period on stop.
# Idempotent: run it again after a `git pull` to update. Run from a clone of the repository, as root (or with sudo):
#
#   sudo REDIS_URL=rediss://:PASSWORD@queue.example:6380 HF_TOKEN=hf_... bash scripts/setup-worker.sh [--gpus 0] [--dry-run]
#
# REDIS_URL and HF_TOKEN go to /etc/bsft/worker.env (mode 600), never into the unit or the repository.
set -euo pipefail

GPUS=""
DRY_RUN=0
GRACE_S="${BSFT_GRACE_S:-90}"
NODE_VERSION="${NODE_VERSION:-20.20.2}"
PREFIX="${BSFT_PREFIX:-/opt/bsft}"
UNIT_DIR="${BSFT_UNIT_DIR:-/etc/systemd/system}"
ENV_DIR="${BSFT_ENV_DIR:-/etc/bsft}"
SERVICE_USER="${BSFT_USER:-bsft}"

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) GPUS="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup-worker: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

say() { printf '== %s\n' "$*"; }
run() {
  if [ "$DRY_RUN" = 1 ]; then printf '   would run: %s\n' "$*"; else "$@"; fi
}
write_file() { # write_file PATH MODE < content
  local target="$1" mode="$2" content
  content=$(cat)
  if [ -f "$target" ] && [ "$(cat "$target")" = "$content" ]; then
    printf '   %s is up to date\n' "$target"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then printf '   would write %s\n' "$target"; return 0; fi
  mkdir -p "$(dirname "$target")"
  printf '%s\n' "$content" > "$target.tmp"
  chmod "$mode" "$target.tmp"
  mv "$target.tmp" "$target"
  printf '   wrote %s\n' "$target"
}

REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -f "$REPO/package.json" ] || [ ! -d "$REPO/trainer-python" ]; then
  echo "setup-worker: run me from a clone of the bsft repository" >&2
  exit 1
fi
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "setup-worker: run as root (sudo bash scripts/setup-worker.sh ...)" >&2
  exit 1
fi

say "NVIDIA driver"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; then
  echo "setup-worker: no working NVIDIA driver (nvidia-smi failed). Install the driver first (ubuntu-drivers install), reboot, run again." >&2
  exit 1
fi

say "system packages"
missing=()
for pkg in python3-venv python3-pip ca-certificates curl xz-utils rsync; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  run apt-get update -qq
  run apt-get install -y -qq "${missing[@]}"
else
  echo "   all present"
fi

say "Node ${NODE_VERSION}"
if command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
  echo "   node $(node --version) is installed"
else
  arch=$(dpkg --print-architecture | sed 's/amd64/x64/')
  tarball="node-v${NODE_VERSION}-linux-${arch}.tar.xz"
  tmp=$(mktemp -d)
  run curl -fsSL -o "$tmp/$tarball" "https://nodejs.org/dist/v${NODE_VERSION}/${tarball}"
  run curl -fsSL -o "$tmp/SHASUMS256.txt" "https://nodejs.org/dist/v${NODE_VERSION}/SHASUMS256.txt"
  if [ "$DRY_RUN" = 0 ]; then (cd "$tmp" && grep " ${tarball}\$" SHASUMS256.txt | sha256sum -c -); fi
  run tar -xJf "$tmp/$tarball" -C /usr/local --strip-components=1
  rm -rf "$tmp"
fi

say "service user ${SERVICE_USER}"
if id "$SERVICE_USER" >/dev/null 2>&1; then
  echo "   exists"
else
  run useradd --system --create-home --home-dir "/var/lib/${SERVICE_USER}" --shell /usr/sbin/nologin "$SERVICE_USER"
fi

say "bsft in ${PREFIX}"
run mkdir -p "$PREFIX"
run rsync -a --delete --exclude node_modules --exclude .git --exclude runs --exclude .venv --exclude dist "$REPO/" "$PREFIX/"
run bash -c "cd '$PREFIX' && npm ci --no-audit --no-fund && npm prune --omit=dev"

say "Python venv with the trainer"
if [ ! -x "$PREFIX/.venv/bin/python" ]; then
  run python3 -m venv "$PREFIX/.venv"
fi
run "$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade pip
run "$PREFIX/.venv/bin/python" -m pip install --quiet -e "$PREFIX/trainer-python"
if [ "$DRY_RUN" = 0 ]; then
  "$PREFIX/.venv/bin/python" -c 'import torch, transformers, peft, bsft_trainer; assert torch.cuda.is_available(), "torch sees no GPU"; print("   trainer ok: torch", torch.__version__, "GPUs", torch.cuda.device_count())'
fi
run chown -R "$SERVICE_USER:" "$PREFIX"

say "environment ${ENV_DIR}/worker.env"
if [ -f "$ENV_DIR/worker.env" ] && [ -z "${REDIS_URL:-}" ]; then
  echo "   kept (set REDIS_URL/HF_TOKEN when running this script to replace it)"
else
  write_file "$ENV_DIR/worker.env" 600 <<ENV
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
HF_TOKEN=${HF_TOKEN:-}
BSFT_WORKDIR=/var/lib/${SERVICE_USER}/runs
BSFT_PYTHON=${PREFIX}/.venv/bin/python
HF_HOME=/var/lib/${SERVICE_USER}/.cache/huggingface
ENV
fi

say "systemd unit bsft-worker.service"
gpu_args=""
if [ -n "$GPUS" ]; then gpu_args=" --gpus $GPUS"; fi
write_file "$UNIT_DIR/bsft-worker.service" 644 <<UNIT
[Unit]
Description=bsft GPU worker (BullMQ queue, BehaviorSFT trainer)
After=network-online.target
Wants=network-online.target

[Service]
User=${SERVICE_USER}
EnvironmentFile=${ENV_DIR}/worker.env
WorkingDirectory=/var/lib/${SERVICE_USER}
ExecStart=/usr/local/bin/node ${PREFIX}/bin/bsft.js worker${gpu_args}
# On stop (a preempted machine, a reboot) the worker gets SIGTERM: the trainer checkpoints, the job goes back to
# waiting, the worker exits. Only after the grace period is anything killed.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=${GRACE_S}
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT

if [ "$DRY_RUN" = 0 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
  systemctl enable --now bsft-worker.service
  systemctl restart bsft-worker.service
  systemctl --no-pager --lines=5 status bsft-worker.service || true
else
  run systemctl daemon-reload
  run systemctl enable --now bsft-worker.service
fi
say "done: journalctl -u bsft-worker -f to follow the worker"
