#!/usr/bin/env bash
# Performs the Dockerfile's steps without a Docker engine, as far as that is possible:
# assembles the runtime file tree of the image (same paths, same user, same
# entrypoint and environment) into a directory from already-built binaries, and
# smoke-tests it as uid 65532.
#
# Usage:
#   scripts/build-image-rootfs.sh [--out DIR] [--bin-dir DIR] [--build] [--with-minilm] [--tar FILE]
#   scripts/build-image-rootfs.sh --verify-dockerfile   # layout consistency only (used by check-chart.sh)
#   scripts/build-image-rootfs.sh --verify-dummy-layer  # the Dockerfile's dependency-layer trick resolves
#
#   --out DIR        rootfs directory (default: target/image-rootfs; recreated)
#   --bin-dir DIR    where trusty-search and trusty-operator are (default: target/release)
#   --build          run `cargo build --release --locked --workspace --bins` first (as the builder stage)
#   --with-minilm    fetch the MiniLM model with scripts/fetch-minilm.sh (as WITH_MINILM=true)
#   --tar FILE       also pack the tree into FILE (numeric owners, like an image layer)
#
# What this cannot do (needs a container runtime): the debian:bookworm-slim base
# layer itself, apt-get inside it, and running the tree as a container. Instead it
# checks the binaries' shared libraries resolve on this (Debian) host and lists the
# Debian packages providing them, so the runtime stage's package list can be checked.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/target/image-rootfs"
BIN_DIR="${ROOT}/target/release"
BUILD=false
WITH_MINILM=false
TAR=""
MODE=assemble

# The image layout. The Dockerfile and the chart defaults must agree with these.
UID_GID=65532
USER_NAME=nonroot
BIN_PATH=/usr/local/bin
CACHE_DIR=/var/cache/trusty-search
MODEL_ROOT=/opt/trusty-search/models
MODEL_DIR=${MODEL_ROOT}/all-MiniLM-L6-v2
HOME_DIR=/home/nonroot
PORT=8080
RUNTIME_PACKAGES=(ca-certificates git)

while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --build) BUILD=true; shift ;;
    --with-minilm) WITH_MINILM=true; shift ;;
    --tar) TAR="$2"; shift 2 ;;
    --verify-dockerfile) MODE=verify; shift ;;
    --verify-dummy-layer) MODE=dummy; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "build-image-rootfs: unknown argument $1" >&2; exit 2 ;;
  esac
done

die() { echo "build-image-rootfs: ERROR: $*" >&2; exit 1; }

verify_dockerfile() {
  local df="${ROOT}/Dockerfile" values="${ROOT}/charts/trusty-search/values.yaml" errs=0
  [[ -f "${df}" ]] || die "Dockerfile not found"
  local -a expect=(
    'ARG RUST_IMAGE=rust:1.95-bookworm'
    'ARG RUNTIME_IMAGE=debian:bookworm-slim'
    'protobuf-compiler'
    'cargo build --release --locked --workspace --bins'
    "install -D -m 0755 target/release/trusty-search /out${BIN_PATH}/trusty-search"
    "install -D -m 0755 target/release/trusty-operator /out${BIN_PATH}/trusty-operator"
    "apt-get install -y --no-install-recommends ${RUNTIME_PACKAGES[*]}"
    "--uid ${UID_GID} --gid ${UID_GID}"
    "install -d -o ${UID_GID} -g ${UID_GID} -m 0755 ${CACHE_DIR}"
    "COPY --from=model /models/ ${MODEL_ROOT}/"
    "fetch-minilm.sh /models/all-MiniLM-L6-v2"
    "TRUSTY_CACHE_DIR=${CACHE_DIR}"
    "TRUSTY_MODEL_DIR=${MODEL_DIR}"
    "TRUSTY_LISTEN=0.0.0.0:${PORT}"
    "USER ${UID_GID}:${UID_GID}"
    "EXPOSE ${PORT}"
    'ENTRYPOINT ["trusty-search"]'
  )
  local e
  for e in "${expect[@]}"; do
    grep -qF -- "${e}" "${df}" || { echo "  Dockerfile lacks: ${e}" >&2; errs=$((errs + 1)); }
  done
  # Chart defaults must point at the same paths and identity.
  local -a chart=(
    "mountPath: ${CACHE_DIR}"
    "modelDir: ${MODEL_DIR}"
    "runAsUser: ${UID_GID}"
    "runAsGroup: ${UID_GID}"
    "containerPort: ${PORT}"
  )
  for e in "${chart[@]}"; do
    grep -qF -- "${e}" "${values}" || { echo "  charts/trusty-search/values.yaml lacks: ${e}" >&2; errs=$((errs + 1)); }
  done
  grep -q 'command: \["trusty-operator"\]' "${ROOT}/charts/trusty-search/templates/operator.yaml" \
    || { echo "  chart operator container does not run trusty-operator" >&2; errs=$((errs + 1)); }
  [[ -f "${ROOT}/scripts/fetch-minilm.sh" ]] || { echo "  scripts/fetch-minilm.sh missing" >&2; errs=$((errs + 1)); }
  [[ -f "${ROOT}/scripts/export-minilm-onnx.py" ]] || { echo "  scripts/export-minilm-onnx.py missing" >&2; errs=$((errs + 1)); }
  ((errs == 0)) || die "${errs} layout mismatch(es) between Dockerfile, chart and this script"
  echo "build-image-rootfs: Dockerfile, chart defaults and rootfs layout agree"
}

# Re-enact the Dockerfile's dependency layer (manifests + dummy sources) in a scratch
# directory and ask cargo to resolve it with the lock file, without compiling.
verify_dummy_layer() {
  local w
  w="$(mktemp -d)"
  trap 'rm -rf "${w}"' RETURN
  cp "${ROOT}/Cargo.toml" "${ROOT}/Cargo.lock" "${w}/"
  [[ -f "${ROOT}/build.rs" ]] && cp "${ROOT}/build.rs" "${w}/"
  mkdir -p "${w}/operator"
  cp "${ROOT}/operator/Cargo.toml" "${w}/operator/"
  mkdir -p "${w}/crates/trusty-core"
  cp "${ROOT}/crates/trusty-core/Cargo.toml" "${w}/crates/trusty-core/"
  (
    cd "${w}"
    # The same shell as the Dockerfile's RUN step.
    mkdir -p src operator/src crates/trusty-core/src
    echo 'fn main() {}' > src/main.rs
    : > src/lib.rs
    : > crates/trusty-core/src/lib.rs
    echo 'fn main() {}' > operator/src/main.rs
    for manifest in Cargo.toml operator/Cargo.toml; do
      dir="$(dirname "${manifest}")"
      grep -oE '^path *= *"[^"]+\.rs"' "${manifest}" | cut -d'"' -f2 | while read -r p; do
        mkdir -p "${dir}/$(dirname "${p}")"; [ -f "${dir}/${p}" ] || echo 'fn main() {}' > "${dir}/${p}"
      done
    done
    cargo metadata --locked --format-version 1 >/dev/null
  ) || die "the dependency layer's dummy workspace does not resolve with Cargo.lock (--locked)"
  echo "build-image-rootfs: dummy dependency layer resolves with the lock file"
}

assemble() {
  if ${BUILD}; then
    (cd "${ROOT}" && cargo build --release --locked --workspace --bins)
    BIN_DIR="${ROOT}/target/release"
  fi
  local b
  for b in trusty-search trusty-operator; do
    [[ -x "${BIN_DIR}/${b}" ]] || die "${BIN_DIR}/${b} not found: build first (--build) or pass --bin-dir"
  done

  rm -rf "${OUT}"
  mkdir -p "${OUT}"
  # Binaries (builder stage: install -D -m 0755).
  install -D -m 0755 "${BIN_DIR}/trusty-search" "${OUT}${BIN_PATH}/trusty-search"
  install -D -m 0755 "${BIN_DIR}/trusty-operator" "${OUT}${BIN_PATH}/trusty-operator"
  # User and group (runtime stage: groupadd/useradd --system 65532 nonroot).
  mkdir -p "${OUT}/etc"
  printf 'root:x:0:0:root:/root:/bin/bash\n%s:x:%d:%d::%s:/usr/sbin/nologin\n' \
    "${USER_NAME}" "${UID_GID}" "${UID_GID}" "${HOME_DIR}" > "${OUT}/etc/passwd"
  printf 'root:x:0:\n%s:x:%d:\n' "${USER_NAME}" "${UID_GID}" > "${OUT}/etc/group"
  install -d -m 0755 "${OUT}${HOME_DIR}" "${OUT}${CACHE_DIR}" "${OUT}${MODEL_ROOT}"
  install -d -m 1777 "${OUT}/tmp"
  if [[ "$(id -u)" == 0 ]]; then
    chown "${UID_GID}:${UID_GID}" "${OUT}${HOME_DIR}" "${OUT}${CACHE_DIR}"
  fi
  # Optional model (model stage).
  if ${WITH_MINILM}; then
    bash "${ROOT}/scripts/fetch-minilm.sh" "${OUT}${MODEL_DIR}"
  fi
  # Image config (what the Dockerfile's ENV/USER/WORKDIR/EXPOSE/ENTRYPOINT/CMD set).
  cat > "${OUT}/.image-config.json" <<JSON
{
  "User": "${UID_GID}:${UID_GID}",
  "Env": [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TRUSTY_LISTEN=0.0.0.0:${PORT}",
    "TRUSTY_CACHE_DIR=${CACHE_DIR}",
    "TRUSTY_MODEL_DIR=${MODEL_DIR}",
    "HOME=${HOME_DIR}"
  ],
  "WorkingDir": "${HOME_DIR}",
  "ExposedPorts": {"${PORT}/tcp": {}},
  "Entrypoint": ["trusty-search"],
  "Cmd": ["--help"],
  "RuntimePackages": [$(printf '"%s",' "${RUNTIME_PACKAGES[@]}" | sed 's/,$//')]
}
JSON

  # Shared libraries: every one must resolve; list the Debian packages behind them.
  : > "${OUT}/.runtime-libs.txt"
  for b in trusty-search trusty-operator; do
    if ldd "${OUT}${BIN_PATH}/${b}" | grep -q 'not found'; then
      ldd "${OUT}${BIN_PATH}/${b}" >&2
      die "${b}: unresolved shared libraries"
    fi
    ldd "${OUT}${BIN_PATH}/${b}" | awk '/=>/ {print $3} /ld-linux/ && !/=>/ {print $1}' >> "${OUT}/.runtime-libs.txt"
  done
  sort -u -o "${OUT}/.runtime-libs.txt" "${OUT}/.runtime-libs.txt"
  if command -v dpkg >/dev/null 2>&1; then
    echo "build-image-rootfs: shared libraries come from Debian packages:"
    while read -r lib; do
      dpkg -S "$(readlink -f "${lib}")" 2>/dev/null || dpkg -S "${lib}" 2>/dev/null || echo "?: ${lib}"
    done < "${OUT}/.runtime-libs.txt" | cut -d: -f1 | sort -u | sed 's/^/  /'
  fi

  # Smoke test as the image user with the image environment (read-only tree use).
  local run=()
  if [[ "$(id -u)" == 0 ]] && command -v setpriv >/dev/null 2>&1; then
    run=(setpriv --reuid "${UID_GID}" --regid "${UID_GID}" --clear-groups)
  fi
  for b in trusty-search trusty-operator; do
    if ! (cd / && env -i PATH="${OUT}${BIN_PATH}:/usr/bin:/bin" HOME="${HOME_DIR}" \
          TRUSTY_CACHE_DIR="${OUT}${CACHE_DIR}" "${run[@]}" "${OUT}${BIN_PATH}/${b}" --version) >/dev/null 2>&1; then
      die "${b} --version failed when run as uid ${UID_GID}"
    fi
  done
  echo "build-image-rootfs: trusty-search and trusty-operator --version run as uid ${UID_GID}"

  if [[ -n "${TAR}" ]]; then
    tar --numeric-owner -C "${OUT}" -cf "${TAR}" .
    echo "build-image-rootfs: packed ${TAR}"
  fi
  echo "build-image-rootfs: rootfs in ${OUT}"
  (cd "${OUT}" && find . -path ./proc -prune -o -print | sort | sed 's/^/  /')
}

case "${MODE}" in
  verify) verify_dockerfile ;;
  dummy) verify_dummy_layer ;;
  assemble) verify_dockerfile; assemble ;;
esac
