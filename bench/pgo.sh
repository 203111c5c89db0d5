#!/usr/bin/env bash
# A profile-guided release build of `jakguard` (rustc's PGO, as rustc itself and most
# browsers are built): build an instrumented binary, run it on a training workload, merge
# the profiles, and build again with them. The result is `target/pgo/release/jakguard`;
# `cargo build --release` is untouched.
#
#   bench/pgo.sh                   # needs llvm-profdata that reads rustc's raw profiles
#                                  # (Debian: apt install llvm-19; LLVM_PROFDATA=... to choose)
#
# The training workload is the program's own work, on data other than the benchmarks':
# a synthetic export of 3,000 patients (seed 7, not the benchmarks' seed 1) screened with and
# without --all, every example patient assessed in each format, and the service answering
# order-sign, order-select and patient-view requests made from 600 of those patients (their
# resources as the prefetch, a draft order for either drug) and the requests in
# `examples/cds-hooks/`. The benchmark's own request (`bench/order-sign-50.json`) is not used.
# Code changed after a profile was taken simply gets no profile (rustc does not fail), so
# rerun this after changes before measuring.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
profdata=${LLVM_PROFDATA:-$(command -v llvm-profdata-19 || command -v llvm-profdata || true)}
if [ -z "$profdata" ]; then
  echo "bench/pgo.sh: llvm-profdata not found (Debian: apt install llvm-19)" >&2
  exit 2
fi
work=$(mktemp -d)
pid=
# The training server is stopped on any exit, so a failed run leaves nothing on its port.
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
prof=$work/profiles
mkdir -p "$prof"

echo "== 1/4 instrumented build (target/pgo-gen)"
CARGO_TARGET_DIR=target/pgo-gen RUSTFLAGS="-Cprofile-generate=$prof" \
  cargo build --release --locked -q -p jakguard
bin=$root/target/pgo-gen/release/jakguard
# Build scripts and proc macros were instrumented too and wrote their own profiles: only the
# training's count.
rm -f "$prof"/*.profraw
unset LLVM_PROFILE_FILE

echo "== 2/4 training"
"$bin" synth --patients 3000 --seed 7 --as-of 2026-03-01 "$work/export" >/dev/null
"$bin" screen --as-of 2026-03-01 "$work/export" --out "$work/out" >/dev/null 2>&1
"$bin" screen --as-of 2026-03-01 --all "$work/export" --out "$work/out-all" >/dev/null 2>&1
"$bin" screen --parse-only "$work/export" >/dev/null 2>&1
for f in examples/*.json; do
  for format in text json markdown; do
    "$bin" assess --as-of 2026-11-27 --format "$format" "$f" >/dev/null || true
  done
done
"$bin" serve --dev-insecure --listen 127.0.0.1:18397 --db "$work/train.db" --as-of 2026-11-27 \
  >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18397/cds-services && break; sleep 0.2; done
# The answer must have come from this server (not one left on the port), and it must be up.
if ! kill -0 "$pid" 2>/dev/null || ! curl -sf -o /dev/null http://127.0.0.1:18397/cds-services; then
  echo "bench/pgo.sh: the instrumented server did not start on 127.0.0.1:18397" >&2
  exit 1
fi
python3 - "$root" "$work/export" <<'PY'
# CDS Hooks requests built from the synthetic patients (not the benchmark's request): each
# patient's resources as the prefetch, a draft order for one of the two drugs.
import collections, glob, http.client, json, sys
root, export = sys.argv[1], sys.argv[2]
conn = http.client.HTTPConnection('127.0.0.1', 18397)
def post(path, body):
    conn.request('POST', path, body, {'content-type': 'application/json'})
    r = conn.getresponse(); r.read()
patients = {}
for line in open(f'{export}/Patient.ndjson'):
    r = json.loads(line); patients[r['id']] = r
about = collections.defaultdict(lambda: collections.defaultdict(list))
for ty in ['Condition', 'Observation', 'MedicationRequest', 'MedicationStatement', 'Immunization']:
    for line in open(f'{export}/{ty}.ndjson'):
        r = json.loads(line)
        ref = (r.get('subject') or r.get('patient') or {}).get('reference', '')
        about[ref.rsplit('/', 1)[-1]][ty].append(r)
def bundle(rs):
    return {'resourceType': 'Bundle', 'type': 'searchset', 'entry': [{'resource': r} for r in rs]}
drugs = [('1357547', 'tofacitinib 5 MG Oral Tablet [Xeljanz]'),
         ('2196900', '24 HR upadacitinib 15 MG Extended Release Oral Tablet [Rinvoq]')]
hooks = ['order-sign', 'order-sign', 'order-select', 'patient-view']
requests = []
for i, (pid, patient) in enumerate(list(patients.items())[:600]):
    res = about[pid]
    code, display = drugs[i % 2]
    draft = {'resourceType': 'MedicationRequest', 'id': 'draft-1', 'status': 'draft',
             'intent': 'order', 'subject': {'reference': f'Patient/{pid}'},
             'authoredOn': '2026-03-01', 'medicationCodeableConcept': {'coding': [
                 {'system': 'http://www.nlm.nih.gov/research/umls/rxnorm', 'code': code,
                  'display': display}]}}
    hook = hooks[i % len(hooks)]
    context = {'userId': 'Practitioner/example', 'patientId': pid}
    if hook != 'patient-view':
        context['draftOrders'] = {'resourceType': 'Bundle', 'type': 'collection',
                                  'entry': [{'fullUrl': 'urn:uuid:draft-1', 'resource': draft}]}
    if hook == 'order-select':
        context['selections'] = ['MedicationRequest/draft-1']
    body = {'hookInstance': f'train-{i}', 'hook': hook, 'context': context, 'prefetch': {
        'patient': patient, 'conditions': bundle(res['Condition']),
        'medicationRequests': bundle(res['MedicationRequest']),
        'medicationStatements': bundle(res['MedicationStatement']),
        'immunizations': bundle(res['Immunization']), 'allergies': None,
        'observations': bundle(res['Observation'])}}
    requests.append((f'/cds-services/jakguard-{hook}', json.dumps(body).encode()))
for path in sorted(glob.glob(f'{root}/examples/cds-hooks/*.json')):
    body = open(path, 'rb').read()
    requests.append((f"/cds-services/jakguard-{json.loads(body)['hook']}", body))
for _ in range(4):
    for path, body in requests:
        post(path, body)
    conn.request('GET', '/cds-services'); conn.getresponse().read()
PY
# A graceful stop: the profile is written as the process exits.
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
pid=

echo "== 3/4 merging $(ls "$prof" | wc -l) profiles with $profdata"
"$profdata" merge -o "$work/merged.profdata" "$prof"

echo "== 4/4 optimised build (target/pgo)"
mkdir -p target/pgo
cp "$work/merged.profdata" target/pgo/jakguard.profdata
CARGO_TARGET_DIR=target/pgo RUSTFLAGS="-Cprofile-use=$root/target/pgo/jakguard.profdata" \
  cargo build --release --locked -q -p jakguard
echo "built target/pgo/release/jakguard (profile: target/pgo/jakguard.profdata)"
