# One image per service, on a distroless base: the service's bundle (`scripts/bundle.ts`: one
# minified ES module, no npm resolution or TypeScript at start; docs/PERFORMANCE.md) compiled by
# `deno compile` into a standalone binary with the service's permission set from deno.json (`-P`
# reads it from the config, hence `--config deno.json`). SERVICE and ENTRY are a row of
# `deno run services/table.ts` (plus `ensure-streams scripts/ensure_streams.ts`, the streams Job):
#
#   deno run services/table.ts | while read -r service entry; do
#     docker build --build-arg SERVICE="$service" --build-arg ENTRY="$entry" -t "$service" .
#   done
#
# scripts/compile.sh runs the same bundle and compile steps outside Docker. The V8 heap is sized per
# Deployment by DENO_V8_FLAGS (k8s/, from the container's memory limit); V8_FLAGS bakes the
# bounds of a 256Mi limit into the binary as well (docs/RELIABILITY.md: measured plateau about
# 140 MiB with them, 190 MiB without).
ARG DENO_VERSION=2.9.6

FROM denoland/deno:${DENO_VERSION} AS build
ARG SERVICE
ARG ENTRY
ARG V8_FLAGS=--max-old-space-size=96,--max-semi-space-size=2
WORKDIR /src
COPY deno.json deno.lock ./
COPY handler_base/ handler_base/
COPY services/ services/
COPY scripts/ensure_streams.ts scripts/bundle.ts scripts/eager_inits.ts scripts/
RUN deno install --frozen --entrypoint "${ENTRY}" scripts/bundle.ts
RUN deno run --frozen --allow-read --allow-write --allow-env --allow-run scripts/bundle.ts --out=dist "${SERVICE}"
RUN deno compile --frozen --no-prompt --config deno.json -P="${SERVICE}" --v8-flags="${V8_FLAGS}" \
      --output /out/service "dist/${SERVICE}.js"
# V8's code cache, made here instead of in every new pod. A compiled binary reads it from (and on
# its first start writes it to) $TMPDIR/deno-compile-<binary name>.cache, keyed by the module's URL
# under $TMPDIR; the Deployment's /tmp is an empty volume, so without this every new pod would
# compile the bundle from source before it is ready (docs/PERFORMANCE.md: 40 to 60 ms more). The
# binary writes the cache once its module is compiled, before it needs a broker: start it, wait for
# the file (10 s at most), stop it. The final image runs the same binary name with the same TMPDIR.
# Deno may move this cache in a later release (denoland/deno#36143): the build then warns, and the
# image still works, only without the cache.
RUN mkdir /code-cache && \
    (TMPDIR=/code-cache NATS_URL=nats://127.0.0.1:1 HEALTH_PORT=0 /out/service >/dev/null 2>&1 & \
     for _ in $(seq 200); do \
       [ -s /code-cache/deno-compile-service.cache ] && break; kill -0 $! 2>/dev/null || break; \
       sleep 0.05; \
     done; \
     kill -9 $! 2>/dev/null; true) && \
    { test -s /code-cache/deno-compile-service.cache || \
      echo "WARNING: the binary wrote no code cache under TMPDIR (did Deno move it?): every new" \
        "pod will compile the bundle at start (docs/PERFORMANCE.md)" >&2; }

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/service /service
COPY --from=build /code-cache /code-cache
# Read-only in the image; the services write no temporary files.
ENV TMPDIR=/code-cache
# glibc's malloc settings, as every Deployment sets them too (MALLOC_ENV in scripts/manifests.ts):
# two arenas, and the trim threshold fixed at its default so that what start-up frees goes back.
ENV MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=131072
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/service"]
