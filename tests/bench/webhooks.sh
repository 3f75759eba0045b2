#!/usr/bin/env bash
# Webhook delivery throughput and write-to-receiver latency against a release build.
#   tests/bench/webhooks.sh [sqlite|postgres] [writes]
# Runs with 1 and with 100 webhooks; the receiver is on loopback. Bounded: each run waits at most
# 300 s for its deliveries, then the server is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
backend=${1:-sqlite}
writes=${2:-2000}
bin=target/release/scaivault-server
cargo build -q --release -p scaivault-server-bin
cargo build -q --release -p scaivault-e2e --example webhook-bench

run() {
    local hooks=$1 n=$2
    local dir port pid schema=""
    dir=$(mktemp -d)
    port=$((20000 + RANDOM % 20000))
    local args=(--listen "127.0.0.1:$port" --data-dir "$dir" --root-token-file "$dir/root" --webhook-allow-private)
    if [ "$backend" = postgres ]; then
        schema="bench_hooks_$$_$hooks"
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "create schema $schema"
        args+=(--database-url "postgres://postgres@127.0.0.1:5432/postgres?options[search_path]=$schema")
    fi
    "$bin" "${args[@]}" >"$dir/out" 2>"$dir/err" &
    pid=$!
    for _ in $(seq 1 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
    target/release/examples/webhook-bench "http://127.0.0.1:$port" "$(cat "$dir/root")" "$hooks" "$n" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    [ -n "$schema" ] && psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop schema $schema cascade" >/dev/null 2>&1
    rm -rf "$dir"
}

echo "backend=$backend"
run 1 "$writes"
run 100 $((writes / 20))
