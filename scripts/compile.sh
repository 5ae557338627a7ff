#!/usr/bin/env bash
# Compiles every service into a standalone binary under dist/, each with exactly its
# permission set from deno.json. deno compile downloads its runtime once per version,
# so this needs a network that reaches Deno's release downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist
declare -A entries=([chat-handler]=services/chat.ts [tts-module]=services/tts.ts)
for service in "${!entries[@]}"; do
  deno compile --frozen --no-prompt -P="$service" --output "dist/$service" "${entries[$service]}"
done
