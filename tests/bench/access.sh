#!/usr/bin/env bash
# Authenticated reads per second by kind of caller: one policy, 1,000 policies of 10 rules through a
# group, a personal access token and an ES256 JWT. SQLite, release build, loopback only.
#   tests/bench/access.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
bin=target/release/scaivault-server
cargo build -q --release -p scaivault-server-bin --features benchmark
cargo build -q -p scaivault-e2e --example mint-jwt
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
jport=$((port + 1))
issuer="http://127.0.0.1:$jport"
target/debug/examples/mint-jwt "$dir" "$issuer" sa:one secrets:read
(cd "$dir" && exec python3 -m http.server "$jport" --bind 127.0.0.1 >/dev/null 2>&1) &
jwks_pid=$!
"$bin" --listen "127.0.0.1:$port" --data-dir "$dir/data" --root-token-file "$dir/root" \
    --jwt-issuer "$issuer=$issuer/jwks.json,aud=scaivault" >"$dir/out" 2>"$dir/err" &
pid=$!
cleanup() {
    kill "$pid" "$jwks_pid" 2>/dev/null || true
    wait "$pid" "$jwks_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port"
root=$(cat "$dir/root")
api() { curl -sf -X "$1" "$url$2" -H "Authorization: Bearer $root" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
id_of() { sed -E 's/.*"id":"([^"]+)".*/\1/'; }
token_for() { api POST /v1/auth/tokens "{\"identity_type\":\"service_account\",\"identity_id\":\"$1\",\"groups\":$2,\"scopes\":[\"secrets:read\"]}" | sed -E 's/.*"token":"([^"]+)".*/\1/'; }

api PUT /v1/secrets/bench/read '{"data": {"username": "svc", "password": "c2VjcmV0LXZhbHVl"}}' >/dev/null
one=$(api POST /v1/policies '{"name":"one","rules":[{"path_pattern":"bench/**","permissions":["read"]}]}' | id_of)
api POST "/v1/policies/$one/bindings" '{"identity_type":"service_account","identity_id":"sa:one"}' >/dev/null
echo "creating 1,000 policies of 10 rules bound to one group..."
for i in $(seq 1 1000); do
    rules=$(for j in $(seq 1 10); do printf '{"path_pattern":"team%d/svc%d/**","permissions":["read","list"]},' "$i" "$j"; done)
    pid_=$(api POST /v1/policies "{\"name\":\"team$i\",\"rules\":[${rules%,}]}" | id_of)
    api POST "/v1/policies/$pid_/bindings" '{"identity_type":"group","identity_id":"big"}' >/dev/null
done
big=$(api POST /v1/policies '{"name":"big-bench","rules":[{"path_pattern":"bench/**","permissions":["read"]}]}' | id_of)
api POST "/v1/policies/$big/bindings" '{"identity_type":"group","identity_id":"big"}' >/dev/null

pat_one=$(token_for sa:one '[]')
pat_many=$(token_for sa:many '["big"]')
jwt=$(cat "$dir/token")

run() {
    local label=$1 token=$2
    curl -sf "$url/v1/secrets/bench/read" -H "Authorization: Bearer $token" >/dev/null || { echo "$label: read refused" >&2; exit 1; }
    printf '== %s\n' "$label"
    wrk -t2 -c16 -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$url/v1/secrets/bench/read" |
        grep -E "Requests/sec|50%|99%|Non-2xx"
}
run "personal token, 1 policy" "$pat_one"
run "personal token, 1,001 policies (10,001 rules) via a group" "$pat_many"
run "ES256 JWT, 1 policy" "$jwt"
