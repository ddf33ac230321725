# evd in a container: one image, every role (`evd agent|consumer|bridge|ops`).
#   docker build -t evd .
#   docker run --rm -v /etc/evd:/etc/evd:ro evd validate /etc/evd/agent.toml
# The build stage compiles exactly what the README's release build does (default
# features: no fault switches); the runtime stage has the binary, OpenSSL's runtime
# library and the CA certificates, and runs as an unprivileged user.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl-dev pkg-config cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p evd-ops \
    && ! grep -a -q -E 'EVD_(TEST|CRASH)_' target/release/evd

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/evd --create-home evd
COPY --from=build /src/target/release/evd /usr/local/bin/evd
COPY examples/registry /etc/evd/registry
USER evd
# The agent's metrics; the consumer, bridge and auditor use 9465, 9466 and 9300 in
# the examples.
EXPOSE 9464 9465 9466 9300
ENTRYPOINT ["/usr/local/bin/evd"]
CMD ["--help"]
