# syntax=docker/dockerfile:1
# Multi-stage build: the release binary on a slim Debian runtime, run as a non-root user, with a
# root filesystem that can be mounted read-only (see docs/deploy.md). tests/cli.rs checks that
# every file the build reads is copied, and the rules below (pinned bases, non-root, health
# check).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Packages are not pinned to exact versions (hadolint DL3008): the base images are pinned, and a
# Debian point release removes the versions it replaces, which would break every later build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml build.rs ./
# The order the linker lays out the release binary's code in (build.rs, docs/architecture.md).
COPY build ./build
COPY src ./src
COPY migrations ./migrations
COPY policies ./policies
COPY demos ./demos
COPY benches ./benches
COPY conformance ./conformance
RUN cargo build --release --locked --bin warden

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin warden \
    && mkdir -p /etc/warden /var/lib/warden \
    && chown 10001:10001 /var/lib/warden
COPY --from=build /src/target/release/warden /usr/local/bin/warden
# Writable state (a SQLite vault, the audit spool) goes to /var/lib/warden: mount a volume there
# and run with --read-only. The config is mounted at /etc/warden/warden.yaml.
WORKDIR /var/lib/warden
USER 10001:10001
EXPOSE 8080
ENV WARDEN_CONFIG=/etc/warden/warden.yaml \
    WARDEN_HEALTH_URL=http://127.0.0.1:8080/healthz
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["warden", "health"]
ENTRYPOINT ["warden"]
CMD ["serve"]
