# The demo issuer and upstream for the compose harness, built offline: tg-issuer, tg-upstream
# and the shared libraries `ldd` lists, staged by build-images.sh.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
USER 65534:65534
CMD ["tg-upstream", "--listen", "0.0.0.0:9102"]
