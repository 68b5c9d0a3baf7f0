# association-service image: a release build on Debian, run from a
# distroless base as a non-root user with no shell.
#   docker build -t association-service:0.1.0 .
# The chart (helm/association-service) deploys association-service:<appVersion>.

FROM rust:1.88-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own that changes only with the
# manifests and the contract (build.rs compiles proto/ in pure Rust).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/associations.rs \
    && cargo build --release --locked --bin association-service \
    && rm -rf src benches
# Then the service itself.
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin association-service

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="association-service" \
      org.opencontainers.image.description="CRM record associations with transactional per-record limits: gRPC API and HubSpot-compatible REST gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/association-service /usr/local/bin/association-service
# distroless's nonroot user; the chart runs as the same id.
USER 65532:65532
WORKDIR /data
# gRPC, REST gateway, Prometheus metrics.
EXPOSE 50051 8080 9090
ENTRYPOINT ["/usr/local/bin/association-service"]
CMD ["serve"]
