#!/usr/bin/env bash
# Peak memory of streaming a large audit export: fills the log with audited reads, resets the
# server's peak-RSS counter, exports everything as JSON lines, and reports the peak.
#   tests/bench/audit_export.sh [records]      (SQLite, release build, loopback only)
set -euo pipefail
cd "$(dirname "$0")/../.."
want=${1:-100000}
cargo build -q --release -p scaivault-server-bin --features benchmark
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
target/release/scaivault-server --listen "127.0.0.1:$port" --data-dir "$dir" --root-token-file "$dir/root" >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port"
token=$(cat "$dir/root")
curl -sf -X PUT "$url/v1/secrets/bench/read" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"data": {"password": "c2VjcmV0LXZhbHVl"}}' >/dev/null
count() { curl -sf "$url/v1/audit/export" -H "Authorization: Bearer $token" | wc -l; }
while [ "$(count)" -lt "$want" ]; do
    wrk -t2 -c16 -d10s -H "Authorization: Bearer $token" "$url/v1/secrets/bench/read" >/dev/null
done
rss() { grep "$1" /proc/$pid/status | awk '{print $2}'; }
echo 5 > /proc/$pid/clear_refs   # reset the peak RSS (VmHWM) to the current RSS
before=$(rss VmRSS)
start=$(date +%s.%N)
lines=$(count)
end=$(date +%s.%N)
peak=$(rss VmHWM)
awk -v l="$lines" -v s="$start" -v e="$end" -v b="$before" -v p="$peak" 'BEGIN {
    printf "records exported: %d in %.1f s\nRSS before: %d kB, peak during export: %d kB (+%d kB)\n", l, e - s, b, p, p - b }'
