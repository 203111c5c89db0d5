#!/usr/bin/env bash
# Secured load benchmark: bench/load.sh's order-sign request at 16 connections, with JWT
# verification on (a trusted issuer with the test-only key set), one fresh token per request.
#   bench/load-jwt.sh [ES384|RS384]        (needs wrk, and python with pyjwt + cryptography)
set -euo pipefail
cd "$(dirname "$0")/.."
ALG=${1:-ES384}
PY=${PYTHON:-python3}
cargo build --release --locked -q
dir=$(mktemp -d)
cat > "$dir/config.toml" <<TOML
listen = "127.0.0.1:18080"
public_url = "http://127.0.0.1:18080"
db = "$dir/load.db"
[[auth.trusted]]
iss = "https://ehr.example.org/"
jwks_file = "$PWD/crates/jakguard/tests/fixtures/keys/jwks.json"
TOML
aud=http://127.0.0.1:18080/cds-services/jakguard-order-sign
"$PY" bench/mint_tokens.py "$ALG" 50000 "$aud" > bench/tokens.txt
trap 'kill $pid 2>/dev/null || true; rm -f bench/tokens.txt' EXIT
./target/release/jakguard serve --config "$dir/config.toml" --as-of 2026-11-27 >/dev/null 2>&1 &
pid=$!
sleep 1
# The check is on: a request without a token is refused.
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' --data @bench/order-sign-50.json "$aud")
[ "$code" = 401 ] || { echo "expected 401 without a token, got $code"; exit 1; }
echo "== $ALG, 16 connections"
wrk -t2 -c16 -d8s --latency -s bench/order-sign-jwt.lua "$aud" -- 2 | grep -E "Requests/sec|^ +50%|^ +99%|Non-2xx|Socket errors"
