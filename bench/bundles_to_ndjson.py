"""Converts FHIR Bundles (e.g. Synthea's per-patient R4 bundles) into a Bulk Data style export:
one NDJSON file per resource type, one resource per line.

Usage: python bench/bundles_to_ndjson.py OUT_DIR BUNDLE.json...

References are left as the bundles write them (Synthea: `urn:uuid:<id>`), which
`jakguard screen` resolves when `<id>` is a Patient id of the export.
"""

import json
import os
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
files = {}
count = 0
for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as f:
        bundle = json.load(f)
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        if not resource:
            continue
        ty = resource["resourceType"]
        if ty not in files:
            files[ty] = open(os.path.join(out, f"{ty}.ndjson"), "w", encoding="utf-8")
        files[ty].write(json.dumps(resource, separators=(",", ":"), ensure_ascii=False) + "\n")
        count += 1
for f in files.values():
    f.close()
print(f"{count} resources of {len(files)} types from {len(sys.argv) - 2} bundles into {out}")
