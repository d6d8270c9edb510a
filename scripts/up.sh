#!/usr/bin/env bash
# Quick start on a fresh machine: installs the build prerequisites, builds,
# and starts a local cluster (router + 2 shards + a file object store) with
# the given directories (default: this repository) indexed.
#   scripts/up.sh                 # serve until Ctrl-C
#   scripts/up.sh --once ~/src/x  # index, run one sample search, exit
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trusty-search/target}"
if ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi
# Vectors whenever the MiniLM weights are here (scripts/fetch-minilm.sh), else
# lexical + graph. The first build embeds every chunk (~40 chunks/s on 2
# cores with ONNX Runtime, ~10 with candle); the local store's embedding cache
# makes later runs embed only what changed. TRUSTY_EMBEDDER=none skips vectors; =http uses TRUSTY_EMBEDDER_URL.
# An --embedder or --model-dir on the command line decides instead.
chosen=0
for a in "$@"; do case "$a" in --embedder|--embedder=*|--model-dir|--model-dir=*) chosen=1 ;; esac; done
if [ -z "${TRUSTY_EMBEDDER:-}" ] && [ "$chosen" = 0 ]; then
  TRUSTY_EMBEDDER=none
  models="${TRUSTY_MODEL_DIR:-$HOME/.cache/trusty-search/models}"
  for d in "$models" "$models/all-MiniLM-L6-v2" "$HOME/.cache/trusty-search/models/all-MiniLM-L6-v2"; do
    if [ -f "$d/model.safetensors" ] && [ -f "$d/tokenizer.json" ] && [ -f "$d/config.json" ]; then
      TRUSTY_EMBEDDER=minilm
      export TRUSTY_MODEL_DIR="$d"
      break
    fi
  done
fi
[ -z "${TRUSTY_EMBEDDER:-}" ] || export TRUSTY_EMBEDDER
cargo build --bin trusty-search
# Paths are the caller's: relative ones that exist are made absolute before
# the cd above could change what they name (one still to be created, such as
# a new --data-dir, is best given absolute).
args=()
has_dir=0
for a in "$@"; do
  case "$a" in
    -*) ;;
    /*) has_dir=1 ;;
    *) if [ -e "$caller/$a" ]; then a="$caller/$a"; has_dir=1; fi ;;
  esac
  args+=("$a")
done
[ "$has_dir" = 1 ] || args+=("$PWD")
exec "$CARGO_TARGET_DIR/debug/trusty-search" up "${args[@]}"
