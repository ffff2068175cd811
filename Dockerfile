# geobatch: build on rust:1-bookworm, run on debian:bookworm-slim (same Debian release, so the
# same glibc). `docker compose up -d --build` builds it; see README "Production: docker compose".

############################## build ##############################
FROM rust:1-bookworm AS build

# librdkafka (bundled by rdkafka-sys) is built with configure + make: a C toolchain, pkg-config
# and zlib. No cmake. The same list as .ci/run.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependency layer: only the manifests, with stub targets, so editing the source does not
# rebuild librdkafka, sqlx and the rest. This layer changes only with Cargo.toml / Cargo.lock.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/convert.rs \
 && cargo build --release --locked \
 && rm -rf src benches

# The real sources. COPY keeps the files' own modification times, which can be older than the
# stub build above: drop geobatch's own fingerprints so cargo rebuilds the crate for certain.
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN rm -rf target/release/.fingerprint/geobatch-* \
 && cargo build --release --locked \
 && ./target/release/geobatch --version

############################## runtime ##############################
FROM debian:bookworm-slim

# zlib1g: librdkafka links the system zlib. ca-certificates: TLS to address APIs and brokers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid (10001), so a bind-mounted watch folder can be chown'ed to it.
RUN groupadd --system --gid 10001 geobatch \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin geobatch \
 && mkdir -p /data /watch \
 && chown 10001:10001 /data /watch

COPY --from=build /src/target/release/geobatch /usr/local/bin/geobatch
# The health probe: bash's /dev/tcp, so the image needs no curl (see the script).
COPY deploy/docker/healthcheck.sh /usr/local/bin/geobatch-healthcheck

ENV GEOBATCH_DATA_DIR=/data \
    GEOBATCH_HTTP_ADDR=0.0.0.0:8080

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# 8080: HTTP API, page, /healthz, /metrics (serve). 9100: /metrics on its own port
# (GEOBATCH_METRICS_ADDR; the worker's only port).
EXPOSE 8080 9100

# Probes GET /healthz on the port of GEOBATCH_HTTP_ADDR: right for `serve`. The worker has no
# HTTP API; docker-compose.yml gives it its own probe of /metrics on 9100.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["geobatch-healthcheck"]

ENTRYPOINT ["geobatch"]
CMD ["serve"]
