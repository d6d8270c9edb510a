#!/usr/bin/env bash
# Quick start on a fresh machine: installs the build prerequisites, builds,
# and starts a local cluster (router + 2 shards + a file object store) with
# the given directories (default: this repository) indexed.
#   scripts/up.sh                 # serve until Ctrl-C
#   scripts/up.sh --once ~/src/x  # index, run one sample search, exit
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trusty-search/target}"
if ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi
# Vectors are opt-in for the quick start: MiniLM on a 2-core CPU embeds ~10
# chunks/s, minutes for a mid-sized repository. TRUSTY_EMBEDDER=minilm (after
# scripts/fetch-minilm.sh) or TRUSTY_EMBEDDER=http with TRUSTY_EMBEDDER_URL
# turns them on; lexical + graph search works either way.
export TRUSTY_EMBEDDER="${TRUSTY_EMBEDDER:-none}"
cargo build --bin trusty-search
args=("$@")
has_dir=0
for a in "${args[@]+"${args[@]}"}"; do case "$a" in -*) ;; *) has_dir=1 ;; esac; done
[ "$has_dir" = 1 ] || args+=("$PWD")
exec "$CARGO_TARGET_DIR/debug/trusty-search" up "${args[@]}"
