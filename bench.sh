#!/usr/bin/env bash
# Side-by-side load benchmark (not part of CI): the simulated model server directly, through
# infergate, nginx, haproxy, vllm-router and LiteLLM's proxy, interleaved rounds in one run, load
# from a separate process. Installs what is missing: cmake (to build), nginx and haproxy (Debian
# packages), vllm-router and litellm (PyPI, into target/bench-venv).
#   ./bench.sh            the full run (about 10 minutes)
#   ./bench.sh --quick    a smoke run (one short round per figure)
#   ./bench.sh --help     the knobs (targets, connections, rounds, held connections)
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 || missing+=(nginx-light)
{ command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null 2>&1 || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null \
    || echo "bench.sh: could not install ${missing[*]}; what is missing is left out" >&2
  # The package starts nginx on port 80; the benchmark runs its own.
  (service nginx stop || pkill -x nginx) >/dev/null 2>&1 || true
fi
venv=target/bench-venv
if [ ! -x "$venv/bin/vllm-router" ] || [ ! -x "$venv/bin/litellm" ]; then
  mkdir -p target
  { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'vllm-router==0.1.17' 'litellm[proxy]==1.108.7'; } \
    || echo "bench.sh: could not install vllm-router/litellm; they are left out" >&2
fi
cargo build --release -p infergate -p infergate-benches
exec ./target/release/infergate-benches --infergate target/release/infergate --venv "$venv" "$@"
