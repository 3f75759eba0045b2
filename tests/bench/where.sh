#!/usr/bin/env bash
# Where an audited read's time goes, pinned as issue 8 measures (server on core 0, wrk with one
# thread and 16 connections on core 1): reads/s, the server's CPU per read, each core's idle share,
# and, during the run, the server's commits (`fsync`/`fdatasync` calls on SQLite, committed
# transactions on PostgreSQL), `pwrite`s and context switches.
#   tests/bench/where.sh [sqlite|postgres] [seconds] [audit: 1|0] [postgres-url]
# Needs wrk and taskset; perf for the system-call counts (skipped without it); psql for PostgreSQL
# (the run gets a schema of its own, dropped after). Loopback only; the server is stopped after.
set -euo pipefail
cd "$(dirname "$0")/../.."
backend=${1:-sqlite}
seconds=${2:-5}
audit=${3:-1}
pg_url=${4:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build -q --release -p scaivault-server-bin --features benchmark
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
url="http://127.0.0.1:$port"
schema=""
args=(--listen "127.0.0.1:$port" --data-dir "$dir" --root-token-file "$dir/root")
if [ "$backend" = postgres ]; then
    schema="bench_where_$$_$RANDOM"
    psql -q "$pg_url" -c "create schema $schema"
    sep='?'; [[ "$pg_url" == *\?* ]] && sep='&'
    args+=(--database-url "$pg_url${sep}options[search_path]=$schema")
fi
skip=1; [ "$audit" = 1 ] && skip=0
SCAIVAULT_BENCHMARK_SKIP_AUDIT=$skip taskset -c 0 target/release/scaivault-server "${args[@]}" \
    >"$dir/out" 2>"$dir/err" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -n "$schema" ]; then
        psql -q "$pg_url" -c "set client_min_messages = warning" -c "drop schema if exists $schema cascade" >/dev/null
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
until curl -sf "$url/v1/health/ready" >/dev/null 2>&1; do sleep 0.05; done
token=$(cat "$dir/root")
curl -sf -X PUT "$url/v1/secrets/bench/read" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"data": {"username": "svc-reporting", "password": "c2VjcmV0LXZhbHVlLWZvci1iZW5jaG1hcmtpbmc"}}' >/dev/null
load() { taskset -c 1 wrk -t1 -c16 -d"$1s" -H "Authorization: Bearer $token" "$url/v1/secrets/bench/read"; }
load 2 >/dev/null

idle() { awk -v c="cpu$1" '$1 == c {print $5 + $6}' /proc/stat; } # idle and iowait, in ticks
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
commits() { psql -tAq "$pg_url" -c "select xact_commit from pg_stat_database where datname = current_database()"; }
hz=$(getconf CLK_TCK)

[ "$backend" = postgres ] && x0=$(commits)
c0=$(cpu); i00=$(idle 0); i10=$(idle 1)
load "$seconds" >"$dir/wrk" &
wrk_pid=$!
if command -v perf >/dev/null; then
    sleep 0.5
    perf stat -x, -e 'syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64,context-switches' \
        -p "$pid" -- sleep $((seconds - 1)) 2>"$dir/perf" || true
fi
wait "$wrk_pid"
c1=$(cpu); i01=$(idle 0); i11=$(idle 1)
[ "$backend" = postgres ] && x1=$(commits)

rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk")
echo "$backend, audit $audit, 16 connections, ${seconds}s"
awk -v r="$rps" -v c=$((c1 - c0)) -v hz="$hz" -v s="$seconds" -v i0=$((i01 - i00)) -v i1=$((i11 - i10)) 'BEGIN {
    printf "reads/s %.0f   server CPU %.0f%% of core 0 (%.1f us/read)   idle: core 0 %.0f%%, core 1 %.0f%%\n",
        r, 100 * c / hz / s, 1e6 * c / hz / s / r, 100 * i0 / hz / s, 100 * i1 / hz / s }'
if [ "$backend" = postgres ]; then
    awk -v r="$rps" -v x=$((x1 - x0)) -v s="$seconds" 'BEGIN {
        printf "commits/s %.0f (all of the database, %.1f reads per commit)\n", x / s, r * s / x }'
fi
if [ -s "$dir/perf" ]; then
    # Counts over seconds - 1, starting half a second into the run.
    awk -F, -v r="$rps" -v s=$((seconds - 1)) '$1 ~ /^[0-9]+$/ {
        printf "%-36s %10.0f/s  %6.2f per read\n", $3, $1 / s, $1 / s / r }' "$dir/perf"
fi
