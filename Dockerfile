# skiff's container image: a Debian 12 build stage and a distroless-style runtime stage holding
# only skiff, glibc, CA certificates and the nonroot user (uid 65532); no shell.
# Built here without a Docker engine by devstack/image.sh (buildah, chroot isolation, with a
# Debian base made locally by mmdebstrap); docs/operations.md "Container image".
#
#   devstack/image.sh build          # the way CI builds it
#   devstack/rdkafka.sh fetch build-image/rdkafka && docker build -t skiff .
#                                    # elsewhere, with Docker Hub's debian:bookworm-slim
#
# librdkafka is built here from the pinned rdkafka-sys crate (docs/adr/0016-rdkafka-current.md),
# which image.sh (or the line above) puts into the build context, sha256 checked again here.

ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      build-essential cmake pkg-config dpkg-dev ca-certificates \
      libevent-dev libnghttp2-dev libssl-dev libjansson-dev libprotobuf-c-dev protobuf-c-compiler \
      libavro-dev libsnappy-dev libzstd-dev liblz4-dev liblzma-dev zlib1g-dev \
      libsasl2-dev libcmocka-dev
# libcurl with HTTP/HTTPS only, from Debian's curl source package (static).
COPY devstack/image/curl.sh /src/devstack/image/curl.sh
RUN /src/devstack/image/curl.sh /opt/curl
# librdkafka, static, from the pinned crate, with the libcurl above for its OIDC token client.
COPY devstack/rdkafka.sh /src/devstack/rdkafka.sh
COPY build-image/rdkafka/ /src/rdkafka/
RUN CURL_PREFIX=/opt/curl /src/devstack/rdkafka.sh install /src/rdkafka/rdkafka-sys-*.crate /opt/rdkafka
# The runtime root filesystem from Debian packages, with their dpkg status entries.
COPY devstack/image/rootfs.sh /src/devstack/image/rootfs.sh
RUN /src/devstack/image/rootfs.sh /rootfs && install -d -m 0700 /nonroot-home
# skiff with its third-party libraries linked statically (cmake/image_deps.cmake).
COPY CMakeLists.txt /src/
COPY cmake /src/cmake
COPY proto /src/proto
COPY sidecar /src/sidecar
COPY devstack/kafka-mock /src/devstack/kafka-mock
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DSKIFF_IMAGE_BUILD=ON -DSKIFF_WERROR=ON \
      -DCMAKE_PREFIX_PATH=/opt/curl -DSKIFF_RDKAFKA_DIR=/opt/rdkafka >/dev/null \
    && cmake --build /build -j 2 --target skiff \
    && strip --strip-all -o /skiff /build/skiff

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /nonroot-home /home/nonroot
COPY --from=build /skiff /usr/bin/skiff
USER 65532:65532
WORKDIR /home/nonroot
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title="skiff" \
      org.opencontainers.image.description="Zeebe and Kafka sidecar for Kubernetes pods" \
      org.opencontainers.image.base.name="scratch (Debian 12 packages, distroless-style)"
ENTRYPOINT ["/usr/bin/skiff"]
