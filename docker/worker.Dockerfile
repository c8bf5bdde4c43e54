# bsft GPU worker: CUDA + PyTorch, the bsft_trainer package with its pinned deps, Node 20 and the built orchestrator.
# Entrypoint `bsft worker`. Runs as a non-root user; the Hugging Face cache is a volume; no secrets are baked in
# (HF_TOKEN and REDIS_URL come at run time).
#
#   docker build -f docker/worker.Dockerfile -t bsft-worker .
#   docker run --gpus all -e REDIS_URL=rediss://:PASSWORD@redis.example:6380 -e HF_TOKEN -v hf-cache:/home/bsft/.cache/huggingface bsft-worker
# torch 2.11: the varlen flash-attention kernel for packed batches (torch >= 2.10), and the version of the project's
# GPU machine.
FROM pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime AS base

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/home/bsft/.cache/huggingface \
    BSFT_WORKDIR=/home/bsft/runs \
    BSFT_PYTHON=/opt/conda/bin/python

# Node 20 from the official binary tarball (checksum-verified), no extra apt repositories.
ARG NODE_VERSION=20.20.2
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl xz-utils tini \
 && rm -rf /var/lib/apt/lists/* \
 && arch=$(dpkg --print-architecture | sed 's/amd64/x64/') \
 && curl -fsSLO "https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-${arch}.tar.xz" \
 && curl -fsSL "https://nodejs.org/dist/v${NODE_VERSION}/SHASUMS256.txt" | grep " node-v${NODE_VERSION}-linux-${arch}.tar.xz\$" | sha256sum -c - \
 && tar -xJf "node-v${NODE_VERSION}-linux-${arch}.tar.xz" -C /usr/local --strip-components=1 \
 && rm "node-v${NODE_VERSION}-linux-${arch}.tar.xz" \
 && node --version

# The trainer, with pinned versions of what the base image lacks: the versions its suite passed with
# (trainer-python/pins.txt, the one place they are written).
COPY trainer-python /opt/bsft/trainer-python
RUN python -m pip install --no-cache-dir -r /opt/bsft/trainer-python/pins.txt \
 && python -m pip install --no-cache-dir --no-deps -e /opt/bsft/trainer-python \
 && python -c "import bsft_trainer, torch, transformers, peft; print('trainer ok, torch', torch.__version__)"

# The orchestrator, built from the lockfile.
WORKDIR /opt/bsft
COPY package.json package-lock.json tsconfig.json ./
COPY bin bin
COPY orchestrator/src orchestrator/src
COPY recipes recipes
RUN npm ci --no-audit --no-fund && npm prune --omit=dev && ln -s /opt/bsft/bin/bsft.js /usr/local/bin/bsft

RUN useradd --create-home --uid 1000 bsft && mkdir -p /home/bsft/runs /home/bsft/.cache/huggingface \
 && chown -R bsft:bsft /home/bsft
USER bsft
WORKDIR /home/bsft
VOLUME ["/home/bsft/.cache/huggingface", "/home/bsft/runs"]

# tini forwards SIGTERM to bsft, which checkpoints the trainer and puts its job back in the queue.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "bsft", "worker"]
