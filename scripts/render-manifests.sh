#!/usr/bin/env bash
# Renders the chart's default install into manifests/install/trusty-search.yaml
# (for users without Helm) and copies the generated Index CRD into the chart.
#
#   scripts/render-manifests.sh           # write
#   scripts/render-manifests.sh --check   # compare only; non-zero on drift
#
# Helm is used through the PyPI package helm-python-sdk (see scripts/chart_tool.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="${ROOT}/charts/trusty-search"
CRD_SRC="${ROOT}/manifests/crds/index.yaml"
CRD_DST="${CHART}/crds/index.yaml"
TARGET="${ROOT}/manifests/install/trusty-search.yaml"
CHECK=false
[[ "${1:-}" == "--check" ]] && CHECK=true

. "${ROOT}/scripts/python-env.sh"
if ! python3 -c 'import helm_python, yaml' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore helm-python-sdk pyyaml
fi

if ! ${CHECK}; then
  if [[ -f "${CRD_SRC}" ]]; then
    mkdir -p "$(dirname "${CRD_DST}")"
    cp "${CRD_SRC}" "${CRD_DST}"
  else
    echo "render-manifests: warning: ${CRD_SRC} does not exist yet; the install manifest has no CRD" >&2
  fi
fi

HEADER="# trusty-search default install, rendered from charts/trusty-search by
# scripts/render-manifests.sh with manifests/install/values.yaml. Do not edit:
# change the chart or the values and re-render. Namespace: trusty-search.
# Create the Secrets trusty-search-admin (key token) and trusty-search-store
# (object-store credentials) first; see manifests/install/README.md."

TMP="$(mktemp)"
trap 'rm -f "${TMP}"' EXIT
python3 "${ROOT}/scripts/chart_tool.py" render "${ROOT}/manifests/install/values.yaml" \
  --name trusty-search --namespace trusty-search --include-crds --namespace-object \
  --header "${HEADER}" --out "${TMP}"

if ${CHECK}; then
  if [[ ! -f "${TARGET}" ]]; then
    echo "render-manifests: ${TARGET} does not exist" >&2
    exit 1
  fi
  if ! diff -u "${TARGET}" "${TMP}" | head -n 60; then :; fi
  cmp -s "${TARGET}" "${TMP}"
else
  cp "${TMP}" "${TARGET}"
  echo "render-manifests: wrote ${TARGET#"${ROOT}"/}"
fi
