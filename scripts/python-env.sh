# Sourced by the scripts that install Python tools (test.sh, chart-tools.sh,
# render-manifests.sh). A system Python marked externally managed (PEP 668:
# Debian 12, Ubuntu 23.04 and later) refuses `pip install`, so the tools go
# into a virtual environment instead, which is put first on PATH: every later
# `python3`, the tests' included, then finds them. Packages the system already
# has stay visible (--system-site-packages), so nothing is fetched twice.
trusty_python_managed() {
  python3 - <<'PY' 2>/dev/null
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
PY
}
if trusty_python_managed; then
  TRUSTY_VENV="${TRUSTY_VENV:-$HOME/.cache/trusty-search/venv}"
  # A venv whose creation failed half-way (no ensurepip) has no pip: start over.
  if ! "$TRUSTY_VENV/bin/python3" -m pip --version >/dev/null 2>&1; then
    rm -rf "$TRUSTY_VENV"
    echo "system Python is externally managed: installing Python tools into $TRUSTY_VENV"
    python3 -m venv --system-site-packages "$TRUSTY_VENV" || {
      rm -rf "$TRUSTY_VENV"
      echo "could not create $TRUSTY_VENV: install python3-venv (apt-get install python3-venv)" >&2
      return 1 2>/dev/null || exit 1
    }
  fi
  export PATH="$TRUSTY_VENV/bin:$PATH"
fi
unset -f trusty_python_managed
