# syntax=docker/dockerfile:1
#
# skydeck's container image: the release binary on distroless, run as a non-root user.
#   docker build -t skydeck .
#   docker run --rm skydeck collect --help
# Deployed as a Kubernetes CronJob by deploy/kustomize (docs/deploy.md). Linted by
# scripts/check-deploy.sh (hadolint); CI builds the same release binary with
# `cargo build --release --locked -p skydeck`.

# --- planner: a skeleton of the workspace (manifests, lock file, empty crate roots) ---------
# Generated from whatever crates/ holds, so a new crate needs no Dockerfile change. Its output
# only changes when a manifest or Cargo.lock changes, which keeps the builder's dependency
# layer cached across source edits.
FROM rust:1.95-bookworm AS planner
WORKDIR /src
COPY . .
RUN set -eu; \
    mkdir -p /skeleton; \
    cp Cargo.toml Cargo.lock /skeleton/; \
    for manifest in crates/*/Cargo.toml; do \
      dir=$(dirname "$manifest"); \
      mkdir -p "/skeleton/$dir/src"; \
      cp "$manifest" "/skeleton/$manifest"; \
      if [ -f "$dir/src/lib.rs" ]; then : > "/skeleton/$dir/src/lib.rs"; fi; \
      if [ -f "$dir/src/main.rs" ]; then echo 'fn main() {}' > "/skeleton/$dir/src/main.rs"; fi; \
    done

# --- builder --------------------------------------------------------------------------------
# The official Rust image (Debian bookworm, glibc 2.36, the same as the runtime below). The
# full variant rather than -slim: it already has the C toolchain that ring's build needs, so
# no apt-get layer is required.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# 1. dependencies only: build the skeleton, so this layer is reused until a manifest or
#    Cargo.lock changes.
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked -p skydeck
# 2. the real sources. touch: COPY keeps the build context's modification times, which can
#    be older than the skeleton's artifacts; cargo must see the workspace crates as changed.
COPY crates/ crates/
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p skydeck \
    && install -D -m 0755 target/release/skydeck /out/skydeck

# --- runtime --------------------------------------------------------------------------------
# distroless/cc: glibc and libgcc_s (what a default Rust binary links), the CA bundle
# (/etc/ssl/certs/ca-certificates.crt) and a "nonroot" user (65532); no shell, no package
# manager. The CA bundle is required: reqwest's rustls uses rustls-platform-verifier and the
# AWS SDK's client uses rustls-native-certs, both of which read the system roots on Linux
# (there are no compiled-in webpki-roots). debian:bookworm-slim would need ca-certificates
# installed and a user created for the same result, with a shell and apt in the image.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/skydeck /usr/local/bin/skydeck
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/skydeck"]
CMD ["collect", "--config", "/etc/skydeck/config.toml"]
