#!/usr/bin/env bash
# Side-by-side load benchmark (not part of CI): the simulated model server directly, through
# infergate, nginx and haproxy, interleaved rounds in one run, load from a separate process.
# Installs nginx and haproxy (Debian packages) when they are missing.
set -euo pipefail
cd "$(dirname "$0")"
if ! { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || ! { command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy) >/dev/null \
    || echo "bench.sh: could not install nginx/haproxy; they are left out" >&2
  # The package starts nginx on port 80; the benchmark runs its own.
  (service nginx stop || pkill -x nginx) >/dev/null 2>&1 || true
fi
cargo build --release -p infergate -p infergate-benches
exec ./target/release/infergate-benches --infergate target/release/infergate "$@"
