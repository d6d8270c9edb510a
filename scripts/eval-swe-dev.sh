#!/usr/bin/env bash
# File retrieval on the SWE-bench development set (../shared/eval/swe-dev):
# issue text -> the files its fix edited. Builds one index per instance tree
# (kept in $STORES, so later runs only search), then evaluates chunk search
# and file search (and any extra file-ranking settings) with the set's own
# evaluate.py. Figures go to docs/EVAL.md by hand.
#
#   scripts/eval-swe-dev.sh INSTANCES.jsonl [NAME "--file-param k=v ..."]...
#
# A NAME starting with `chunks-` evaluates chunk search with its flags
# (e.g. "--long-text-fusion bm25=0.3", or "--file-param vector_hits=50" for
# its file arm) instead of file search.
#
# INSTANCES.jsonl comes from `prep.py --mirrors ... --out DIR` (DIR/instances.jsonl).
# EMBEDDER=minilm builds with vectors (one store per repository, so the
# embedding cache shares unchanged chunks between its trees) and searches in
# hybrid mode (MODE=vector for the vector arm alone; without vectors MODE
# defaults to bm25, and MODE=hybrid adds the file arm); REPOS="psf/requests
# pallets/flask" limits the run; SKIP_DEFAULTS=1 runs only the named settings.
set -euo pipefail
cd "$(dirname "$0")/.."

instances="${1:?usage: scripts/eval-swe-dev.sh INSTANCES.jsonl [NAME PARAMS]...}"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trusty-search/target}"
# BIN=path evaluates that binary as it is (e.g. a copy, so that builds
# during a long run do not swap it); otherwise the current tree is built.
if [ -n "${BIN:-}" ]; then
  bin="$BIN"
else
  cargo build --bin trusty-search
  bin="$CARGO_TARGET_DIR/debug/trusty-search"
fi
evaluate="$(cd ../shared/eval/swe-dev && pwd)/evaluate.py"
embedder="${EMBEDDER:-none}"
reports="${REPORTS:-$HOME/.cache/trusty-search/swe-dev-reports}"
jobs="${JOBS:-2}"
repos=()
for r in ${REPOS:-}; do repos+=(--repo "$r"); done

if [ "$embedder" = none ]; then
  stores="${STORES:-$HOME/.cache/trusty-search/swe-dev-stores}"
  store="file://$stores/{instance_id}"
  id=swe
  mode="${MODE:-bm25}"
else
  stores="${STORES:-$HOME/.cache/trusty-search/swe-dev-stores-$embedder}"
  store="file://$stores/{repo}"
  id="{instance_id}"
  mode="${MODE:-hybrid}"
fi
mkdir -p "$stores" "$reports"
built="$stores/{instance_id}.built"
index_cmd="test -f $built || ($bin index build {tree} --id $id --embedder $embedder \
  --store $store >/dev/null && touch $built)"
search="$bin search --store $store --cache-dir {workdir}/cache --id $id \
  --embedder $embedder --mode $mode --top-k {k} --json --query-file {query_file}"

run() {
  local name="$1" extra="$2"
  python3 "$evaluate" --instances "$instances" --name "$name" --jobs "$jobs" "${repos[@]}" \
    --index-cmd "$index_cmd" --search-cmd "$search $extra" --out "$reports/$name.json" >"$reports/$name.log"
  # Failed builds or searches score zero: say so rather than hide it.
  grep -E "WARNING" "$reports/$name.log" || true
  python3 "$evaluate" --instances "$instances" --show "$reports/$name.json"
}

if [ -z "${SKIP_DEFAULTS:-}" ]; then
  run "chunks-$embedder-$mode" ""
  run "files-$embedder-$mode" "--files"
fi
while [ $# -ge 2 ]; do
  case "$1" in
    chunks-*) run "$1" "$2" ;;
    *) run "$1" "--files $2" ;;
  esac
  shift 2
done
