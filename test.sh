#!/usr/bin/env bash
# Runs every test: unit, property and end-to-end (real binary, real processes, real clients).
# Installs what the build and tests need on a fresh machine: cmake (pingora builds zlib-ng) and,
# inside the tests, a Python venv with the official `openai` package under target/.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cmake >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq cmake) >/dev/null
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
