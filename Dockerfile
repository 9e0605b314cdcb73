# syntax=docker/dockerfile:1
#
# Two stages: a Rust toolchain that builds the release binary, and a slim
# Debian image that only runs it. Build with `docker build -t scim-removals .`

############################################################################
# Builder
############################################################################
FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependencies change far less often than our sources, so they get a layer of
# their own: build the locked dependency graph against placeholder sources.
# The placeholders are deleted afterwards; only target/ is kept.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources (the migrations are embedded at compile time, so they come
# along with everything else that .dockerignore lets through).
COPY . .

# COPY keeps the files' own modification times, which may be older than the
# placeholder build above; touching them makes cargo rebuild our crate.
RUN find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin scim-removals

############################################################################
# Runtime
############################################################################
FROM debian:bookworm-slim

# ca-certificates for TLS to Genesys Cloud, PostgreSQL and webhook receivers;
# curl only for the HEALTHCHECK below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it and
# volume ownership is predictable.
RUN groupadd --system --gid 10001 scim-removals \
    && useradd --system --uid 10001 --gid 10001 \
        --home-dir /var/lib/scim-removals --no-create-home \
        --shell /usr/sbin/nologin scim-removals

COPY --from=builder /build/target/release/scim-removals /usr/local/bin/scim-removals

# The service reads config/default.toml relative to its working directory.
# The file stays owned by root: the service only reads it.
WORKDIR /var/lib/scim-removals
COPY config/default.toml ./config/default.toml

# data/ holds the SQLite database when no PostgreSQL URL is given. Mount a
# volume here to keep it across container restarts.
RUN mkdir -p data \
    && chown 10001:10001 /var/lib/scim-removals /var/lib/scim-removals/data

USER 10001:10001

# Inside a container the service must listen on every interface, not on the
# loopback default; both variables can be overridden at `docker run` time.
ENV SCIM_REMOVALS__SERVER__LISTEN=0.0.0.0:8080 \
    SCIM_REMOVALS__STORE__URL=sqlite:///var/lib/scim-removals/data/scim-removals.db

EXPOSE 8080

# /healthz only says the process is up; readiness (/readyz) is left to the
# orchestrator, which can stop routing to the container without killing it.
# Assumes the port above: override the healthcheck if you change the listener.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || exit 1

ENTRYPOINT ["scim-removals"]
CMD ["serve"]
