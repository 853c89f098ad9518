# syntax=docker/dockerfile:1
# whizard: multi-stage build, small non-root runtime image.
#   docker build -t whizard .
#   docker run -p 8080:8080 -v $PWD/config:/etc/whizard whizard gateway --config /etc/whizard/config.yaml

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
RUN cargo build --release --locked --bin whizard && strip target/release/whizard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin whizard
COPY --from=build /src/target/release/whizard /usr/local/bin/whizard
USER 10001:10001
EXPOSE 8080 8443 9091
# /-/healthy answers without authentication on the main listener.
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/-/healthy || exit 1
ENTRYPOINT ["/usr/local/bin/whizard"]
CMD ["gateway", "--config", "/etc/whizard/config.yaml"]
