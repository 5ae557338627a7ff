# One image per service, compiled by `deno compile` into a standalone binary with the
# service's permission set from deno.json, on a distroless base.
#
#   docker build --build-arg SERVICE=chat-handler --build-arg ENTRY=services/chat.ts -t chat-handler .
#   docker build --build-arg SERVICE=tts-module   --build-arg ENTRY=services/tts.ts  -t tts-module .
#
# scripts/compile.sh runs the same compile step outside Docker.
#
# V8_FLAGS bound the JavaScript heap for the 256Mi memory limit of the manifests in k8s/
# (docs/RELIABILITY.md: measured plateau about 140 MiB with them, 190 MiB without); change
# them together with that limit (old space about 40% of it).
ARG DENO_VERSION=2.9.6

FROM denoland/deno:${DENO_VERSION} AS build
ARG SERVICE
ARG ENTRY
ARG V8_FLAGS=--max-old-space-size=96,--max-semi-space-size=2
WORKDIR /src
COPY deno.json deno.lock ./
COPY handler_base/ handler_base/
COPY services/ services/
RUN deno install --frozen --entrypoint "${ENTRY}"
RUN deno compile --frozen --no-prompt -P="${SERVICE}" --v8-flags="${V8_FLAGS}" --output /out/service "${ENTRY}"

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/service /service
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/service"]
