# etcd for the compose harness (the fleet's revocation store), built offline: Debian's
# etcd-server and etcd-client binaries (`make etcd`) and the shared libraries `ldd` lists,
# staged by build-images.sh. No base image, nothing pulled.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
USER 65534:65534
CMD ["etcd", "--version"]
