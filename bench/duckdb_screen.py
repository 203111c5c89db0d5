"""The population query `jakguard screen` is compared with, in DuckDB over the same NDJSON.

Usage: python bench/duckdb_screen.py EXPORT_DIR AS_OF [THREADS]

Among patients with an active or draft JAK inhibitor order (tofacitinib or upadacitinib
RxNorm codes as in knowledge/valuesets/medications.toml, by coding or by medicationReference
to the formulary), it answers:
  1. whose latest lymphocyte count (LOINC 731-0, 26474-7, 732-8; units converted to /uL as
     knowledge/units.toml does) is below 500/uL;
  2. whose latest CBC (lymphocytes, neutrophils or hemoglobin) is older than 3 months, or
     missing.
Prints the counts and the seconds each query took (each reads the files itself, as a
one-off population query would).
"""

import sys
import time

import duckdb

export, as_of = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2

JAK_CODES = [
    "1357536", "1741046", "1741049", "2273113", "2273115", "2478433", "2478437", "2048566",
    "2048568", "1357541", "1357547", "1357542", "2196092", "2196894", "2196900", "2590051",
    "2590054", "2596957", "2596960", "2681015", "2681019", "2196895",
]
JAK_MEDICATIONS = ["Medication/med-tofa-5", "Medication/med-upa-15"]
ALC = ["731-0", "26474-7", "732-8"]
CBC = ALC + ["751-8", "26499-4", "753-4", "718-7", "20509-6", "30350-3", "30313-1", "59260-0"]


def lst(xs):
    return "[" + ", ".join(f"'{x}'" for x in xs) + "]"


def files(kind):
    # Plain or gzip, one or several files per type, as `screen` accepts them.
    return f"'{export}/{kind}*.ndjson*'"


con = duckdb.connect()
con.execute(f"SET threads TO {threads}")

PID = "regexp_extract(subject.reference, '([^/:]+)$', 1)"
JAK = f"""
jak AS (
  SELECT DISTINCT {PID} AS pid
  FROM read_json({files('MedicationRequest')}, format = 'newline_delimited',
    columns = {{status: 'VARCHAR', subject: 'STRUCT(reference VARCHAR)',
               medicationCodeableConcept: 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[], text VARCHAR)',
               medicationReference: 'STRUCT(reference VARCHAR)'}})
  WHERE status IN ('active', 'draft', 'on-hold')
    AND (list_has_any(list_transform(medicationCodeableConcept.coding, lambda c: c.code), {lst(JAK_CODES)})
         OR medicationReference.reference IN ({", ".join(f"'{m}'" for m in JAK_MEDICATIONS)}))
)"""
OBS = f"""read_json({files('Observation')}, format = 'newline_delimited',
    columns = {{status: 'VARCHAR', subject: 'STRUCT(reference VARCHAR)',
               code: 'STRUCT(coding STRUCT(system VARCHAR, code VARCHAR)[])',
               effectiveDateTime: 'VARCHAR',
               valueQuantity: 'STRUCT(value DOUBLE, unit VARCHAR, system VARCHAR, code VARCHAR)'}})"""

LYMPHOCYTES = f"""
WITH {JAK},
lymph AS (
  SELECT {PID} AS pid, CAST(left(effectiveDateTime, 10) AS DATE) AS d,
    valueQuantity.value * CASE coalesce(valueQuantity.code, valueQuantity.unit)
      WHEN '/uL' THEN 1 WHEN '/mm3' THEN 1 WHEN 'cells/uL' THEN 1 WHEN '10*6/L' THEN 1
      WHEN '10*3/uL' THEN 1000 WHEN 'K/uL' THEN 1000 WHEN '10*9/L' THEN 1000 WHEN '10^9/L' THEN 1000
      WHEN 'x10E3/uL' THEN 1000 WHEN '10^3/uL' THEN 1000 ELSE NULL END AS per_ul
  FROM {OBS}
  WHERE status IN ('final', 'amended', 'corrected')
    AND list_has_any(list_transform(code.coding, lambda c: c.code), {lst(ALC)})
),
latest AS (
  SELECT pid, arg_max(per_ul, d) AS per_ul
  FROM lymph JOIN jak USING (pid)
  WHERE per_ul IS NOT NULL AND d <= DATE '{as_of}'
  GROUP BY pid
)
SELECT count(*) FROM latest WHERE per_ul < 500
"""

CBC_OLD = f"""
WITH {JAK},
cbc AS (
  SELECT {PID} AS pid, max(CAST(left(effectiveDateTime, 10) AS DATE)) AS last
  FROM {OBS}
  WHERE status IN ('final', 'amended', 'corrected')
    AND list_has_any(list_transform(code.coding, lambda c: c.code), {lst(CBC)})
    AND CAST(left(effectiveDateTime, 10) AS DATE) <= DATE '{as_of}'
  GROUP BY pid
)
SELECT count(*) FROM jak LEFT JOIN cbc USING (pid)
WHERE cbc.last IS NULL OR cbc.last < DATE '{as_of}' - INTERVAL 3 MONTH
"""

total = 0.0
for name, sql in [("lymphocytes-below-500", LYMPHOCYTES), ("cbc-older-than-3-months", CBC_OLD)]:
    t = time.perf_counter()
    n = con.execute(sql).fetchone()[0]
    dt = time.perf_counter() - t
    total += dt
    print(f"duckdb {duckdb.__version__} {name}: {n} patients, {dt:.2f} s")
print(f"duckdb both queries: {total:.2f} s")
