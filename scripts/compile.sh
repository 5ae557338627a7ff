#!/usr/bin/env bash
# Compiles every service of services/table.ts (and the streams tool) into a standalone binary
# under dist/, each with exactly its permission set from deno.json, and prints each size. What
# is compiled is the service's bundle, dist/<name>.js (scripts/bundle.ts), as in the Dockerfile;
# `-P` reads the permission set from deno.json, so compile runs with that config.
# deno compile needs Deno's runtime for the target: it downloads it once per version, or takes
# a local copy from DENORT_BIN. Usage: scripts/compile.sh [service ...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist
# The V8 heap bounds of the Dockerfile (for a 256Mi limit; docs/RELIABILITY.md).
V8_FLAGS="${V8_FLAGS:---max-old-space-size=96,--max-semi-space-size=2}"
mapfile -t rows < <(deno run --no-prompt services/table.ts)
rows+=("ensure-streams scripts/ensure_streams.ts")
status=0
for row in "${rows[@]}"; do
  service=${row%% *}
  entry=${row#* }
  if (($#)) && [[ " $* " != *" $service "* ]]; then continue; fi
  if ! deno run --frozen --allow-read --allow-write --allow-env --allow-run scripts/bundle.ts --out=dist "$service" >/dev/null; then
    echo "Cannot compile $service: its bundle ($entry) failed" >&2
    status=1
    continue
  fi
  if ! output=$(deno compile --frozen --no-prompt --config deno.json -P="$service" --v8-flags="$V8_FLAGS" --output "dist/$service" "dist/$service.js" 2>&1); then
    if grep -qiE "download|denort|dns|connect" <<<"$output" && [[ -z ${DENORT_BIN:-} ]]; then
      echo "Cannot compile $service: Deno's runtime for compile cannot be downloaded here; set DENORT_BIN to a local denort binary" >&2
      exit 1
    fi
    echo "Cannot compile $service:" >&2
    echo "$output" >&2
    status=1
    continue
  fi
  printf '%-16s %6s MiB  dist/%s\n' "$service" "$(($(stat -c %s "dist/$service") / 1048576))" "$service"
done
exit "$status"
