#!/usr/bin/env bash
# Installs, when missing, the tools that check the chart: Helm's own engine
# (helm-python-sdk), strict Kubernetes schema validation (kubernetes-validate),
# pyyaml, and promtool (Debian package prometheus). test.sh runs it before
# the probe check; check-chart.sh runs it so it also works on its own.
# Exits non-zero, saying what is missing, when a tool cannot be installed.
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/python-env.sh" || exit 1

python_tools() { python3 -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; }

if ! python_tools; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    helm-python-sdk kubernetes-validate pyyaml 2>&1 | grep -v '^WARNING' || true
fi
if ! python_tools; then
  echo "chart tools: python packages helm-python-sdk / kubernetes-validate / pyyaml could not be installed" >&2
  exit 1
fi

if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus) \
    >/dev/null 2>&1 || true
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "chart tools: promtool not found and 'apt-get install prometheus' failed" >&2
  exit 1
fi
