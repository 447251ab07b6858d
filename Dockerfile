# syntax=docker/dockerfile:1
#
# The 7awel API image: a static Go binary on distroless, running as a non-root user with no shell.
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t 7awel:VERSION .
# (`make docker` does this). k8s/dockerfile_test.go checks this file's structure.

# Build stage. The Go version matches go.mod; --platform=$BUILDPLATFORM lets buildx cross-compile
# for the target architecture without emulation (the binary is pure Go).
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
WORKDIR /src

# Dependencies first, so a source-only change reuses the module download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .

ARG TARGETOS=linux
ARG TARGETARCH=amd64
# VERSION is stamped into main.version and reported by the binary and its metrics.
ARG VERSION=dev
# CGO off: the final image has no libc. -trimpath drops local paths from the binary; -s -w strip
# symbol tables (stack traces keep function names and lines).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/7awel .

# Final stage: distroless static has CA certificates and tzdata but no shell or package manager.
# The :nonroot tag runs as uid 65532. Pin it by digest in your registry mirror
# (static-debian12:nonroot@sha256:...) once CI resolves one; the tag is the floor.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/7awel /7awel
USER 65532:65532
# 8080: the public API (HTTP_ADDR). 9090: /metrics and /debug/pprof (ADMIN_ADDR), never exposed
# outside the cluster; k8s/base/networkpolicy.yaml admits only the monitoring namespace to it.
EXPOSE 8080 9090
ENTRYPOINT ["/7awel"]
CMD ["serve"]
