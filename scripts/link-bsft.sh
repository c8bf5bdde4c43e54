#!/usr/bin/env bash
# Puts the `bsft` command on PATH after `npm ci`: `npm link` into npm's global folder when this user can write it,
# and says exactly how to run bsft either way (npx bsft works from the clone without any of this).
#
#   bash scripts/link-bsft.sh
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(npm prefix -g)
if [ -w "$prefix/lib" ] || { [ ! -e "$prefix/lib" ] && [ -w "$prefix" ]; }; then
  npm link --ignore-scripts --no-audit --no-fund >/dev/null
  if [ "$(command -v bsft || true)" = "$prefix/bin/bsft" ]; then
    echo "bsft is on your PATH ($prefix/bin/bsft): try  bsft --help"
  else
    echo "bsft is installed as $prefix/bin/bsft, which is not on your PATH: add it with"
    echo "  export PATH=\"$prefix/bin:\$PATH\""
    echo "or run it from this folder as  npx bsft --help"
  fi
else
  echo "npm's global folder ($prefix) is not writable by you: run bsft from this folder as  npx bsft --help"
  echo "(or put it on PATH with  sudo npm link)"
fi
