# tlsedge in a container: a static binary on a distroless base, as a
# non-root user. Build from the repository root:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t tlsedge .
#   docker run -p 8443:8443 -v $PWD/conf:/etc/tlsedge:ro tlsedge
#
# Mount folders, not single files: tlsedge reloads when a file in them
# changes, which a single-file bind mount hides from it. Files must be
# readable by uid 65532 (the image's user).
#
# Ports below 1024 inside the container need --cap-add NET_BIND_SERVICE (or
# map them: -p 443:8443). ACME certificates and locks are kept in
# /var/lib/tlsedge: mount a volume there to keep them (and share it between
# instances). `make docker-lint` checks this file without a network.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/tlsedge ./cmd/tlsedge \
 && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tlsedge /usr/local/bin/tlsedge
COPY --from=build --chown=65532:65532 /out/state /var/lib/tlsedge
ENV XDG_DATA_HOME=/var/lib TLSEDGE_CONFIG=/etc/tlsedge/edge.yaml
USER 65532:65532
EXPOSE 8443 9900
VOLUME ["/var/lib/tlsedge"]
ENTRYPOINT ["/usr/local/bin/tlsedge"]
CMD ["run"]
