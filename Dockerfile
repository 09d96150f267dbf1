# bale: S3-compatible object server (thread-per-core, io_uring, O_DIRECT).
#
#   docker build -t bale .
#   docker run -d --name bale -p 9000:9000 -v bale-data:/data \
#       -e MINIO_ROOT_USER=minioadmin -e MINIO_ROOT_PASSWORD=minioadmin \
#       --security-opt seccomp=unconfined bale
#
# io_uring and seccomp: bale does all its socket and disk I/O through io_uring and refuses to
# start without it (it never falls back to epoll silently). Docker 25.0 and later, and recent
# containerd, no longer allow io_uring_setup, io_uring_enter and io_uring_register in their
# default seccomp profile (they were allowed from Docker 20.10 to 24), so on those versions
# run bale with either
#     --security-opt seccomp=unconfined
# or a profile that allows those three syscalls:
#     --security-opt seccomp=/path/to/bale-seccomp.json
# (Docker's default profile plus {"names": ["io_uring_setup", "io_uring_enter",
# "io_uring_register"], "action": "SCMP_ACT_ALLOW"}; docs/milvus.md shows how to make it).
# No capability or --privileged is needed. On kernels before 5.12 io_uring rings are charged to
# RLIMIT_MEMLOCK: add --ulimit memlock=-1 there.
#
# Data: /data is a volume. Keep it on a real filesystem (ext4, xfs): bale opens its volume
# files with O_DIRECT, which overlayfs (the container's own layer) and tmpfs may refuse. For
# several disks mount one volume per disk and list them: BALE_DATA=/data1,/data2.

# ---- build -------------------------------------------------------------------------------
# Builder and runtime on the same Debian release, so the binary's glibc matches.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace (its members are ., io, bench and sigv4); .dockerignore keeps target/, venvs
# and data out of the context.
COPY . .
RUN cargo build --release --locked -p bale \
 && install -m 0755 target/release/bale /usr/local/bin/bale \
 && /usr/local/bin/bale --version

# ---- runtime -----------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# curl: for the HEALTHCHECK only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 bale \
 && useradd --system --uid 10001 --gid bale --home-dir /data --no-create-home --shell /usr/sbin/nologin bale \
 && mkdir -p /data \
 && chown bale:bale /data
COPY --from=build /usr/local/bin/bale /usr/local/bin/bale

# bale reads these (flags override them); keys also come from MINIO_ROOT_USER/MINIO_ROOT_PASSWORD
# or BALE_ACCESS_KEY/BALE_SECRET_KEY. Without keys it starts with the printed defaults
# (baleadmin / baleadmin-secret): set your own.
ENV BALE_LISTEN=0.0.0.0:9000 \
    BALE_DATA=/data \
    RUST_LOG=info

USER bale:bale
VOLUME ["/data"]
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9000/minio/health/live || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/bale"]
CMD ["serve"]
