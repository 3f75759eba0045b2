#!/usr/bin/env bash
# The scale targets of the performance issue, on SQLite: the same store with 1,000 and with
# 1,000,000 secrets; for each, the time until the server is ready, its idle resident memory, the
# read of one secret and the list of one prefix of 100 secrets (server pinned to core 0, wrk with
# one thread and 16 connections on core 1; the list also with one connection).
#   tests/bench/scale.sh [seconds]
# The bulk rows are copies of one sealed version under other paths, inserted with Python's sqlite3
# while the server is stopped (what a list and an index lookup see is the same; only the real
# secret is ever opened). Needs wrk and python3. Loopback only; every server is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build -q --release -p scaivault-server-bin
bin=target/release/scaivault-server
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
url="http://127.0.0.1:$port"

start() { # DIR -> sets pid, and ready_ms: milliseconds until /v1/health/ready answers 200
    local t0
    t0=$(date +%s%N)
    taskset -c 0 "$bin" --listen "127.0.0.1:$port" --data-dir "$1" --root-token-file "$1/root" >"$1/out" 2>"$1/err" &
    pid=$!
    until curl -sf "$url/v1/health/ready" >/dev/null 2>&1; do sleep 0.005; done
    ready_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
load() { # URL [CONNECTIONS] -> "reqs/s p50 p99"
    local token out conns=${2:-16}
    token=$(cat "$dir/root")
    taskset -c 1 wrk -t1 -c"$conns" -d2s -H "Authorization: Bearer $token" "$1" >/dev/null
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$1")
    echo "$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}') $(echo "$out" | awk '$1 == "50%" {print $2}') $(echo "$out" | awk '$1 == "99%" {print $2}')"
}

echo "secrets    ready_ms idle_rss_MiB read(reqs/s p50 p99)        list-100(reqs/s p50 p99)     list-100,1conn               rss_after_MiB"
for total in 1000 1000000; do
    dir="$work/s$total"
    mkdir -p "$dir"
    start "$dir"
    token=$(cat "$dir/root")
    curl -sf -X PUT "$url/v1/secrets/bench/read" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d '{"data": {"username": "svc-reporting", "password": "c2VjcmV0LXZhbHVlLWZvci1iZW5jaG1hcmtpbmc", "host": "db.internal.example", "port": "5432", "database": "reporting"}}' >/dev/null
    stop
    python3 - "$dir/scaivault.db" "$total" <<'PY'
import sqlite3, sys
db, total = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
head = con.execute("SELECT tenant_id, secret_type, metadata, max_versions, created_at FROM secrets WHERE path = 'bench/read'").fetchone()
ver = con.execute("SELECT key_version, wrapped_dek, ciphertext, created_at, created_by FROM secret_versions WHERE path = 'bench/read'").fetchone()
tenant = head[0]
# Prefixes of 1,000 secrets (of 100 for small totals); either way `fleet/t0007/s00` holds 100.
per = 1000 if total >= 1000 * 1000 else 100
def paths():
    n = 0
    for t in range(total // per + 1):
        for s in range(per):
            if n >= total - 1:
                return
            n += 1
            yield f"fleet/t{t:04d}/s{s:04d}"
batch = list(paths())
con.execute("BEGIN")
con.executemany("INSERT INTO secrets VALUES (?, ?, ?, ?, ?, 1, ?, ?, NULL)",
                ((tenant, p, head[1], head[2], head[3], head[4], head[4]) for p in batch))
con.executemany("INSERT INTO secret_versions VALUES (?, ?, 1, ?, ?, ?, ?, ?, NULL, NULL)",
                ((tenant, p, ver[0], ver[1], ver[2], ver[3], ver[4]) for p in batch))
con.commit()
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.close()
PY
    start "$dir"
    ready=$ready_ms
    sleep 2
    idle=$(rss_mib)
    read=$(load "$url/v1/secrets/bench/read")
    list=$(load "$url/v1/secrets?prefix=fleet/t0007/s00&limit=100")
    list1=$(load "$url/v1/secrets?prefix=fleet/t0007/s00&limit=100" 1)
    printf "%-10s %-8s %-12s %-30s %-28s %-28s %s\n" "$total" "$ready" "$idle" "$read" "$list" "$list1" "$(rss_mib)"
    stop
done
