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
COPY scripts/ensure_streams.ts scripts/bundle.ts scripts/
RUN deno install --frozen --entrypoint "${ENTRY}"
RUN deno run --frozen --allow-read --allow-write --allow-env --allow-run scripts/bundle.ts --out=dist "${SERVICE}"
RUN deno compile --frozen --no-prompt --config deno.json -P="${SERVICE}" --v8-flags="${V8_FLAGS}" \
      --output /out/service "dist/${SERVICE}.js"

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/service /service
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/service"]
