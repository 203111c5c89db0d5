#!/usr/bin/env bash
# Interleaved A/B load runs of two server binaries: order-sign at C connections, one fresh
# server per run, the binaries alternating (and their order flipping every round), then each
# binary's runs sorted with the median. This machine's speed drifts by up to a third within
# an hour, so only runs interleaved like this compare two builds by the wall clock.
#   bench/ab.sh BIN_A BIN_B [ROUNDS]       env: C (connections, 16), D (seconds per run, 10)
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: bench/ab.sh BIN_A BIN_B [ROUNDS]}; b=${2:?usage: bench/ab.sh BIN_A BIN_B [ROUNDS]}
rounds=${3:-4}; c=${C:-16}; d=${D:-10}
out=$(mktemp)
run() {
  local bin=$1 dir; dir=$(mktemp -d)
  "$bin" serve --dev-insecure --listen 127.0.0.1:18080 --db "$dir/load.db" --as-of 2026-11-27 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18080/cds-services && break; sleep 0.1; done
  local line
  line=$(wrk -t2 -c"$c" -d"${d}s" --latency -s bench/order-sign.lua http://127.0.0.1:18080/cds-services/jakguard-order-sign \
    | awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {print r, p}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  echo "$bin $line" | tee -a "$out"
}
for r in $(seq "$rounds"); do
  if (( r % 2 )); then run "$a"; run "$b"; else run "$b"; run "$a"; fi
done
for bin in "$a" "$b"; do
  grep -F "$bin " "$out" | awk '{print $2}' | sort -n | awk -v b="$bin" '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%s: median %.0f req/s over %d runs (", b, m, NR; for(i=1;i<=NR;i++) printf "%s%s", v[i], (i<NR?" ":""); print ")"}'
done
rm -f "$out"
