#!/usr/bin/env bash
# Memory soak (not part of CI): a million requests through infergate with nobody scraping
# /metrics; prints the proxy's RSS every 100,000 requests (it must stay flat).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -p infergate -p infergate-benches
exec ./target/release/soak --infergate target/release/infergate "$@"
