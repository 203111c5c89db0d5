#!/usr/bin/env bash
# Population screening benchmark: `jakguard screen` on synthetic Bulk FHIR exports, next to
# the bare read-and-parse pass (`screen --parse-only`) and DuckDB answering the equivalent
# population query over the same NDJSON files (bench/duckdb_screen.py).
#
# Usage: bench/screen.sh [PATIENTS...]        (default: 100000 1000000)
# Env:   BENCH_DIR  where exports, outputs and the Python venv go (default /work/tmp/jakguard-bench;
#                   1M patients need about 21 GB there)
#        RUNS       timed runs per tool and size (default 2); KEEP=1 keeps the exports
#        JAKGUARD   a binary to measure instead of building target/release/jakguard
#                   (e.g. JAKGUARD=target/pgo/release/jakguard after bench/pgo.sh)
# Needs: the Rust toolchain, python3 with venv, GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
if [ ${#SIZES[@]} -eq 0 ]; then SIZES=(100000 1000000); fi
WORK=${BENCH_DIR:-/work/tmp/jakguard-bench}
RUNS=${RUNS:-2}
AS_OF=2026-03-01
mkdir -p "$WORK"

if [ -n "${JAKGUARD:-}" ]; then
  BIN=$(realpath "$JAKGUARD")
else
  cargo build --release --locked -p jakguard
  BIN=$PWD/target/release/jakguard
fi

if [ ! -x "$WORK/venv/bin/python" ]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet duckdb
fi
PY=$WORK/venv/bin/python

# Runs a command under GNU time; prints "<seconds> <max RSS MB>" and the command's last line.
timed() {
  local log; log=$(mktemp)
  /usr/bin/time -v "$@" > "$log.out" 2> "$log"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$log")
  echo "wall=${wall}s maxrss=${rss}MB :: $(tail -n 3 "$log.out" | tr '\n' ' ')"
  rm -f "$log" "$log.out"
}

echo "machine: $(nproc) cores, $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in "${SIZES[@]}"; do
  dir=$WORK/export-$n
  if [ ! -f "$dir/Patient.ndjson" ]; then
    echo "== synth $n patients"
    timed "$BIN" synth --patients "$n" --seed 1 --as-of "$AS_OF" "$dir"
  fi
  bytes=$(cat "$dir"/*.ndjson | wc -c)
  echo "== $n patients: $((bytes / 1000000)) MB of NDJSON ($(ls "$dir"/*.ndjson | wc -l) files)"
  # Warm the page cache so every tool reads from memory, not from a cold disk.
  cat "$dir"/*.ndjson > /dev/null
  for r in $(seq "$RUNS"); do
    echo "-- run $r (load $(cut -d' ' -f1 /proc/loadavg))"
    # `sync` first: the kernel writing out the previous run's gigabyte of results would
    # otherwise share the cores with the next timed run.
    sync; echo "screen:     $(timed "$BIN" screen --as-of "$AS_OF" --out "$WORK/out-$n" "$dir")"
    sync; echo "parse-only: $(timed "$BIN" screen --parse-only "$dir")"
    sync; echo "duckdb:     $(timed "$PY" bench/duckdb_screen.py "$dir" "$AS_OF" "$(nproc)")"
  done
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$dir" "$WORK/out-$n"; fi
done
