# Multi-stage build: a static-ish release binary on a slim Debian runtime.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY src ./src
COPY demos ./demos
COPY benches ./benches
RUN cargo build --release --locked --bin warden

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home warden
COPY --from=build /src/target/release/warden /usr/local/bin/warden
USER warden
EXPOSE 8080
# With a mounted config: docker run -v $PWD/warden.yaml:/etc/warden/warden.yaml -p 8080:8080 warden
ENV WARDEN_CONFIG=/etc/warden/warden.yaml
ENTRYPOINT ["warden"]
CMD ["serve"]
