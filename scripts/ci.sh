#!/usr/bin/env bash
# The project's whole check: formatting, lint, doc lint, type check, staleness of
# generated code, a publish dry run of the package, then every test and doc
# example. Prints one closing line "N passed, N failed": each check counts as
# one, each test and each doc example as one.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0
failed=0
step() {
  local name=$1
  shift
  echo "::: $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "::: $name FAILED" >&2
    failed=$((failed + 1))
  fi
}
step "deno fmt --check" deno fmt --check
step "deno lint" deno lint
step "deno doc --lint" deno run --allow-read --allow-run=deno scripts/doc_lint.ts
step "deno check" deno task --quiet check
step "generated code is fresh" bash scripts/check_generated.sh
step "deno publish --dry-run" bash -c "cd handler_base && deno publish --dry-run --allow-dirty"

log=$(mktemp)
# A hung test must fail the run, not eat CI's time: the suite takes a few minutes here.
# --doc also type-checks and runs every ```ts block of the JSDoc of handler_base/,
# services/ and scripts/ (each counts as one test), so an example that stops
# doing what its comment says fails CI.
timeout --kill-after=30 1200 deno test --allow-all --parallel --doc 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
rm -f "$log"
if [[ $summary =~ ([0-9]+)\ passed.*\|\ ([0-9]+)\ failed ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
fi
if [[ $test_status -ne 0 && -z $summary ]]; then
  echo "::: deno test did not finish (exit $test_status; 124 is the 20-minute bound)" >&2
  failed=$((failed + 1))
elif [[ $test_status -ne 0 && $failed -eq 0 ]]; then
  failed=1
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
