#!/usr/bin/env bash
# Throughput and latency of authenticated reads and of writes against a release build.
#   tests/bench/run.sh [sqlite|postgres] [seconds] [connections]
# Needs wrk (Debian package `wrk`). Loopback only; runs for a bounded time and stops the server.
set -euo pipefail
cd "$(dirname "$0")/../.."
backend=${1:-sqlite}
seconds=${2:-20}
connections=${3:-16}
bin=target/release/scaivault-server
cargo build -q --release -p scaivault-server-bin --features benchmark
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
args=(--listen "127.0.0.1:$port" --data-dir "$dir" --root-token-file "$dir/root")
if [ "$backend" = postgres ]; then
    schema="bench_$$"
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "create schema $schema"
    args+=(--database-url "postgres://postgres@127.0.0.1:5432/postgres?options[search_path]=$schema")
fi
"$bin" "${args[@]}" >"$dir/out" 2>"$dir/err" &   # SCAIVAULT_BENCHMARK_SKIP_AUDIT=1 in the environment skips auditing
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ "$backend" = postgres ] && psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop schema $schema cascade" >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
token=$(cat "$dir/root")
url="http://127.0.0.1:$port"

curl -sf -X PUT "$url/v1/secrets/bench/read" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"data": {"username": "svc-reporting", "password": "c2VjcmV0LXZhbHVlLWZvci1iZW5jaG1hcmtpbmc"}}' >/dev/null

cat >"$dir/put.lua" <<LUA
local n = 0
wrk.method = "PUT"
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data": {"username": "svc-reporting", "password": "c2VjcmV0LXZhbHVlLWZvci1iZW5jaG1hcmtpbmc"}}'
request = function()
    n = n + 1
    return wrk.format(nil, "/v1/secrets/bench/write/" .. (n % 256))
end
LUA

echo "== $backend: authenticated reads, $connections connections, ${seconds}s"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$url/v1/secrets/bench/read"
echo "== $backend: writes (256 paths), $connections connections, ${seconds}s"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$dir/put.lua" "$url"
