#!/usr/bin/env bash
# Compiles every service into a standalone binary under dist/, each with exactly its
# permission set from deno.json. deno compile downloads its runtime once per version,
# so this needs a network that reaches Deno's release downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist
declare -A entries=([chat-handler]=services/chat.ts [tts-module]=services/tts.ts)
# The V8 heap bounds of the Dockerfile (for the manifests' 256Mi limit; docs/RELIABILITY.md).
V8_FLAGS="${V8_FLAGS:---max-old-space-size=96,--max-semi-space-size=2}"
for service in "${!entries[@]}"; do
  deno compile --frozen --no-prompt -P="$service" --v8-flags="$V8_FLAGS" --output "dist/$service" "${entries[$service]}"
done
