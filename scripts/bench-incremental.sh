#!/usr/bin/env bash
# Incremental rebuild with vectors: builds a tree with MiniLM into a fresh
# file store (every chunk embedded), changes one function in one file, and
# builds again (the embedding cache supplies every other vector). Prints both
# wall times and what each build embedded and reused. Figures go to
# docs/BENCHMARKS.md by hand.
#
#   scripts/bench-incremental.sh [TREE] [FILE-IN-TREE] [FUNCTION-SIGNATURE-PREFIX]
#
# Defaults: tokio 1.54.1 from the local cargo registry, src/sync/mutex.rs,
# `pub fn try_lock(&self)`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trusty-search/target}"
tree="${1:-$(ls -d "$HOME"/.cargo/registry/src/*/tokio-1.54.1 | head -1)}"
file="${2:-src/sync/mutex.rs}"
sig="${3:-pub fn try_lock(&self)}"
bin="$CARGO_TARGET_DIR/debug/trusty-search"
cargo build --bin trusty-search # never time a stale binary
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$tree" "$work/src"
store="file://$work/store"

build() {
  local start end
  start=$(date +%s.%N)
  "$bin" index build "$work/src" --id bench --store "$store" --embedder minilm | tail -1
  end=$(date +%s.%N)
  echo "  wall $(echo "$end - $start" | bc) s"
}

echo "first build (empty cache):"
build
python3 - "$work/src/$file" "$sig" <<'PY'
import sys
path, sig = sys.argv[1], sys.argv[2]
text = open(path).read()
at = text.index(sig)
brace = text.index("{", at)
text = text[:brace + 1] + "\n        let _touched = ();" + text[brace + 1:]
open(path, "w").write(text)
PY
echo "rebuild after changing one function in $file:"
build
