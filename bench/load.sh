#!/usr/bin/env bash
# Load benchmark of the CDS Hooks service with wrk (Debian package `wrk`): order-sign with a
# realistic ~50-resource prefetch, at 1, 16 and 64 connections. Run from the repository root.
#   bench/load.sh            # JWT off (--dev-insecure), as the reference Node service has none
#   JAKGUARD=target/pgo/release/jakguard bench/load.sh    # a given build (bench/pgo.sh's)
set -euo pipefail
bin=${JAKGUARD:+$(realpath "$JAKGUARD")}
cd "$(dirname "$0")/.."
if [ -z "$bin" ]; then
  cargo build --release --locked -q
  bin=./target/release/jakguard
fi
db=$(mktemp -d)/load.db
"$bin" serve --dev-insecure --listen 127.0.0.1:18080 --db "$db" --as-of 2026-11-27 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1
curl -sf -H 'content-type: application/json' --data @bench/order-sign-50.json http://127.0.0.1:18080/cds-services/jakguard-order-sign >/dev/null
for c in 1 16 64; do
  t=$(( c < 2 ? 1 : 2 ))
  echo "== $c connection(s)"
  wrk -t"$t" -c"$c" -d15s --latency -s bench/order-sign.lua http://127.0.0.1:18080/cds-services/jakguard-order-sign | grep -E "Requests/sec|^ +50%|^ +99%|Non-2xx|Socket errors"
done
