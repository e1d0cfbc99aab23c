#!/usr/bin/env bash
# Builds infergate and runs it on the embedded demo config: two deployments on simulated model
# servers (one scales to zero), listening on 127.0.0.1:8080, admin on 127.0.0.1:8081.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cmake >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq cmake) >/dev/null
fi
cargo build --release -p infergate
exec ./target/release/infergate "$@"
