#!/usr/bin/env bash
# Replay speed and memory of `infergate simulate` (not part of CI): the Azure conversation trace
# many times over with the default policy, and the 24 h Azure Functions sample (11.6 M
# invocations, 1,000 functions). Prints requests replayed per second and peak RSS.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -p infergate -p infergate-benches
exec ./target/release/simulate_speed --infergate target/release/infergate "$@"
