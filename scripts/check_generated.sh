#!/usr/bin/env bash
# Fails when handler_base/gen/ differs from what `deno task gen` produces from proto/,
# or when the golden vectors differ from what protoc encodes from their fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deno run --allow-read --allow-write --allow-env --allow-run npm:@bufbuild/buf@1.75.0 \
  generate --output "$tmp" >/dev/null
deno run --allow-read="$tmp" --allow-write="$tmp" scripts/embed_descriptors.ts "$tmp/handler_base/gen"
if ! diff -ru handler_base/gen "$tmp/handler_base/gen"; then
  echo "Generated code is stale: run 'deno task gen' and commit handler_base/gen/" >&2
  exit 1
fi
dir=handler_base/testdata/golden
for fixture in "$dir"/*.txtpb; do
  type=$(basename "$fixture" .txtpb)
  protoc --proto_path=proto --encode="messages.v1.$type" messages/v1/messages.proto \
    <"$fixture" >"$tmp/$type.bin"
  if ! cmp -s "$tmp/$type.bin" "$dir/$type.bin"; then
    echo "Golden vector $dir/$type.bin is stale: run scripts/golden.sh" >&2
    exit 1
  fi
done
echo "Generated code and golden vectors are up to date"
