# syntax=docker/dockerfile:1
# The aiops daemon's image: a Rust build stage, then Debian slim with CA certificates only.
#
#   docker build -t aiops:0.1.0 .
#   docker run --rm -p 9095:9095 -e AIOPS_LISTEN=0.0.0.0:9095 -e AIOPS_WEBHOOK_TOKEN=... aiops:0.1.0
#
# Without a Docker engine, scripts/build-image assembles the same runtime layout from Debian
# packages into an OCI archive (target/image/aiops-oci.tar).

ARG RUST_VERSION=1.94
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The `release` profile (fat LTO, one codegen unit, opt-level s; see Cargo.toml).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --bin aiops \
 && install -D -m 0755 target/release/aiops /out/aiops

FROM debian:${DEBIAN_RELEASE}-slim
# CA certificates for the API server, PostgreSQL with TLS and the notification channels' APIs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 aiops \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/aiops --shell /usr/sbin/nologin aiops \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/aiops
COPY --from=build /out/aiops /usr/local/bin/aiops

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="aiops" \
      org.opencontainers.image.description="Turns Prometheus Alertmanager alerts into safe, verified, rate-limited repairs on Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/wooo-work/aiops"

# A numeric non-root user, so runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /var/lib/aiops
# The only writable paths under a read-only root file system: the SQLite store and /tmp.
VOLUME ["/var/lib/aiops", "/tmp"]
# No AIOPS_* defaults here: they would override the settings file. The default store,
# sqlite://aiops.db, lands in the working directory, the volume above.
EXPOSE 9095
ENTRYPOINT ["/usr/local/bin/aiops"]
CMD ["serve"]
