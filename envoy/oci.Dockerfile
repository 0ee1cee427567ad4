# tokenguard as a Wasm plugin image, in the layout Istio (WasmPlugin `url: oci://...`) and
# Envoy Gateway (EnvoyExtensionPolicy `code.type: Image`) accept: no base image, one layer
# holding plugin.wasm at the root. Built by `make oci` from dist/, nothing pulled.
FROM scratch
COPY plugin.wasm ./
