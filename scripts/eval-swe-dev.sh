#!/usr/bin/env bash
# File retrieval on the SWE-bench development set (../shared/eval/swe-dev):
# issue text -> the files its fix edited. Builds one lexical + graph index per
# instance tree (kept in $STORES, so later runs only search), then evaluates
# chunk search and file search (and any extra file-ranking settings) with the
# set's own evaluate.py. Figures go to docs/EVAL.md by hand.
#
#   scripts/eval-swe-dev.sh INSTANCES.jsonl [NAME "--file-param k=v ..."]...
#
# INSTANCES.jsonl comes from `prep.py --mirrors ... --out DIR` (DIR/instances.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."

instances="${1:?usage: scripts/eval-swe-dev.sh INSTANCES.jsonl [NAME PARAMS]...}"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trusty-search/target}"
cargo build --bin trusty-search
bin="$CARGO_TARGET_DIR/debug/trusty-search"
evaluate="$(cd ../shared/eval/swe-dev && pwd)/evaluate.py"
stores="${STORES:-$HOME/.cache/trusty-search/swe-dev-stores}"
reports="${REPORTS:-$HOME/.cache/trusty-search/swe-dev-reports}"
jobs="${JOBS:-2}"
mkdir -p "$stores" "$reports"

index_cmd="test -f $stores/{instance_id}/.built || ($bin index build {tree} --id swe --embedder none \
  --store file://$stores/{instance_id} >/dev/null && touch $stores/{instance_id}/.built)"
search="$bin search --store file://$stores/{instance_id} --cache-dir {workdir}/cache --id swe \
  --embedder none --mode bm25 --top-k {k} --json --query-file {query_file}"

run() {
  local name="$1" extra="$2"
  python3 "$evaluate" --instances "$instances" --name "$name" --jobs "$jobs" \
    --index-cmd "$index_cmd" --search-cmd "$search $extra" --out "$reports/$name.json" >/dev/null
  python3 "$evaluate" --instances "$instances" --show "$reports/$name.json"
}

run chunks ""
run files "--files"
while [ $# -ge 2 ]; do
  run "$1" "--files $2"
  shift 2
done
