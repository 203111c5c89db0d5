#!/usr/bin/env bash
# Instructions per order-sign request, counted by valgrind's callgrind (deterministic, unlike
# the wall clock on a shared machine): the server answers 20 and then 220 requests over one
# keep-alive connection, and the difference is divided by 200, so start-up cancels out.
#   bench/instructions.sh [BIN]      (default: target/release/jakguard; needs valgrind, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/jakguard}
count() {
  local n=$1 dir; dir=$(mktemp -d)
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" serve --dev-insecure \
    --listen 127.0.0.1:18391 --db "$dir/x.db" --as-of 2026-11-27 >/dev/null 2>"$dir/err" &
  local pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18391/cds-services && break; sleep 0.5; done
  python3 - "$n" <<'PY'
import http.client, sys
body = open('bench/order-sign-50.json', 'rb').read()
conn = http.client.HTTPConnection('127.0.0.1', 18391)
for _ in range(int(sys.argv[1])):
    conn.request('POST', '/cds-services/jakguard-order-sign', body, {'content-type': 'application/json'})
    r = conn.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f'HTTP {r.status}')
PY
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  awk '/^(summary|totals):/ {print $2; exit}' "$dir/cg.out"
  rm -rf "$dir"
}
small=$(count 20); large=$(count 220)
echo "instructions per order-sign request: $(( (large - small) / 200 ))"
