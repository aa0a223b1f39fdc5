# adpulse image: multi-stage build, runs as a non-root user.
FROM rust:1.91-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin adpulse

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data adpulse \
    && mkdir -p /data && chown adpulse /data
COPY --from=build /src/target/release/adpulse /usr/local/bin/adpulse
USER adpulse
WORKDIR /data
ENV ADPULSE_SERVER__LISTEN=0.0.0.0:9464 \
    ADPULSE_QUESTDB__SPOOL_DIR=/data/spool
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD ["adpulse", "probe", "http://127.0.0.1:9464/healthz"]
ENTRYPOINT ["adpulse"]
CMD ["run"]
