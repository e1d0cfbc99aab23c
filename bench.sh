#!/usr/bin/env bash
# Side-by-side load benchmark (not part of CI): the simulated model server directly vs through
# infergate, interleaved rounds in one run, load from a separate process.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -p infergate -p infergate-benches
exec ./target/release/infergate-benches --infergate target/release/infergate "$@"
