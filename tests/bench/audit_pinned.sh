#!/usr/bin/env bash
# Audited against unaudited reads, pinned as issue 8 measures: server on core 0, wrk with one thread
# and 16 connections on core 1, alternating pairs, a fresh store for every run.
#   tests/bench/audit_pinned.sh [seconds] [pairs] [connections] [sqlite|postgres] [postgres-url]
# Needs wrk (Debian package `wrk`) and taskset; psql for PostgreSQL (each run gets a schema of its
# own, dropped after). Loopback only; each server is stopped after its run.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-8}
pairs=${2:-3}
conns=${3:-16}
backend=${4:-sqlite}
pg_url=${5:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build -q --release -p scaivault-server-bin --features benchmark
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

run() { # SKIP_AUDIT(0|1) -> prints reads/s
    local dir port pid token schema="" args
    dir=$(mktemp -d)
    port=$((20000 + RANDOM % 20000))
    args=(--listen "127.0.0.1:$port" --data-dir "$dir" --root-token-file "$dir/root")
    if [ "$backend" = postgres ]; then
        schema="bench_audit_$$_$RANDOM"
        psql -q "$pg_url" -c "create schema $schema"
        local sep='?'; [[ "$pg_url" == *\?* ]] && sep='&'
        args+=(--database-url "$pg_url${sep}options[search_path]=$schema")
    fi
    SCAIVAULT_BENCHMARK_SKIP_AUDIT=$1 taskset -c 0 target/release/scaivault-server "${args[@]}" \
        >"$dir/out" 2>"$dir/err" &
    pid=$!
    # Stops the server and drops its schema also when a step below fails.
    trap "kill $pid 2>/dev/null; [ -n '$schema' ] && psql -q '$pg_url' -c 'set client_min_messages = warning' -c 'drop schema if exists $schema cascade' >/dev/null; rm -rf '$dir'" EXIT
    for _ in $(seq 1 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
    token=$(cat "$dir/root")
    curl -sf -X PUT "http://127.0.0.1:$port/v1/secrets/bench/read" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' \
        -d '{"data": {"username": "svc-reporting", "password": "c2VjcmV0LXZhbHVlLWZvci1iZW5jaG1hcmtpbmc"}}' >/dev/null
    taskset -c 1 wrk -t1 -c"$conns" -d2s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/secrets/bench/read" >/dev/null
    taskset -c 1 wrk -t1 -c"$conns" -d"${seconds}s" -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$port/v1/secrets/bench/read" | awk '/Requests\/sec/ {print $2}'
    kill "$pid"; wait "$pid" 2>/dev/null || true
    [ -n "$schema" ] && psql -q "$pg_url" -c "set client_min_messages = warning" -c "drop schema $schema cascade" >/dev/null
    rm -rf "$dir"
    trap - EXIT
}

echo "$backend, $conns connections, ${seconds}s per run"
for _ in $(seq 1 "$pairs"); do
    plain=$(run 1)
    audited=$(run 0)
    awk -v p="$plain" -v a="$audited" 'BEGIN { printf "not audited %8.0f  audited %8.0f  kept %5.1f%%\n", p, a, 100 * a / p }'
done
