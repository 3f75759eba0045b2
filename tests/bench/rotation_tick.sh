#!/usr/bin/env bash
# Rotation scheduler pass time with 100,000 assigned secrets of which 1,000 are due, and the plan of
# its query, on SQLite and PostgreSQL (release build).
#   tests/bench/rotation_tick.sh [postgres-url]
set -euo pipefail
cd "$(dirname "$0")/../.."
url=${1:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build -q --release -p scaivault-core --example rotation_tick
echo "== SQLite"
target/release/examples/rotation_tick sqlite
schema="bench_tick_$$"
echo "== PostgreSQL"
trap 'psql -q "$url" -c "drop schema if exists $schema cascade" >/dev/null 2>&1 || true' EXIT
target/release/examples/rotation_tick postgres "$url" "$schema"
