#!/usr/bin/env bash
# Regenerates the golden protobuf vectors with protoc (the C++ implementation),
# so the TypeScript codec is checked against bytes it did not produce.
# Needs protoc (Debian: protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=handler_base/testdata/golden
for fixture in "$dir"/*.txtpb; do
  type=$(basename "$fixture" .txtpb)
  protoc --proto_path=proto --encode="messages.v1.$type" messages/v1/messages.proto \
    <"$fixture" >"$dir/$type.bin"
done
echo "Wrote $(ls "$dir"/*.bin | wc -l) golden vectors to $dir"
