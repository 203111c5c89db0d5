//! `jakguard screen` and `jakguard synth` as processes: a small synthetic export end to end,
//! "the same decisions as `assess`" patient by patient, hand-written exports with bad lines
//! (counts, file:line reports, exit codes), the cohort with and without `--all`, and the
//! generator's determinism.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AS_OF: &str = "2026-03-01";

fn jakguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jakguard"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run jakguard")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jakguard-screen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn synth(dir: &Path, patients: u32, seed: u32, gzip: bool) {
    let (n, seed) = (patients.to_string(), seed.to_string());
    let mut args = vec!["synth", "--patients", &n, "--seed", &seed, "--as-of", AS_OF];
    if gzip {
        args.push("--gzip");
    }
    args.push(s(dir));
    let o = jakguard(&args);
    assert!(o.status.success(), "synth failed: {}", text(&o.stderr));
}

fn screen(export: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["screen", "--as-of", AS_OF, "--out", s(out)];
    args.extend_from_slice(extra);
    args.push(s(export));
    jakguard(&args)
}

fn results(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("screen-results.ndjson"))
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn ids(results: &[serde_json::Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| r["patient"]["id"].as_str().expect("patient id").to_string())
        .collect()
}

/// `section,drug,phase,key` → patients, from `screen-summary.csv`.
fn summary(out: &Path) -> BTreeMap<String, u64> {
    let mut r = csv::Reader::from_path(out.join("screen-summary.csv")).expect("summary");
    r.records()
        .map(|rec| {
            let rec = rec.expect("csv row");
            (
                format!("{},{},{},{}", &rec[0], &rec[1], &rec[2], &rec[3]),
                rec[5].parse().expect("a count"),
            )
        })
        .collect()
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect()
}

#[test]
fn synth_is_byte_identical_for_a_seed_and_differs_for_another() {
    let (a, b, c) = (scratch("det-a"), scratch("det-b"), scratch("det-c"));
    synth(&a, 300, 11, false);
    synth(&b, 300, 11, false);
    synth(&c, 300, 12, false);
    let (fa, fb, fc) = (files_of(&a), files_of(&b), files_of(&c));
    assert!(fa.contains_key("Patient.ndjson") && fa.contains_key("Observation.ndjson"));
    assert_eq!(fa, fb, "same seed, different files");
    assert_ne!(fa["Observation.ndjson"], fc["Observation.ndjson"]);
    assert_eq!(
        text(&fa["Patient.ndjson"]).lines().count(),
        300,
        "one Patient line per patient"
    );
}

#[test]
fn a_synthetic_export_is_screened_in_patient_order_with_summary_and_report() {
    let (export, out) = (scratch("synth-export"), scratch("synth-out"));
    synth(&export, 200, 5, false);
    let o = screen(&export, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let res = results(&out);
    let got = ids(&res);
    // The Patient file's order, once each: the file's ids, keeping the screened ones.
    let screened: std::collections::HashSet<&String> = got.iter().collect();
    assert_eq!(screened.len(), got.len(), "a patient twice");
    let in_file: Vec<String> = std::fs::read_to_string(export.join("Patient.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|id| screened.contains(id))
        .collect();
    assert_eq!(got, in_file, "results are in the Patient file's order");
    let mut sorted = got.clone();
    sorted.sort();
    assert_ne!(
        got, sorted,
        "the synthetic Patient file is not in id order, so this tells"
    );
    assert!(
        !res.is_empty() && res.len() < 200,
        "{} screened of 200",
        res.len()
    );

    let sum = summary(&out);
    assert_eq!(sum["run,,,patients-in-export"], 200);
    assert_eq!(sum["run,,,patients-screened"], res.len() as u64);
    assert_eq!(sum["run,,,bad-lines"], 0);
    // Decision counts add up, per drug, to the patients screened.
    for drug in ["tofacitinib", "upadacitinib"] {
        let total: u64 = sum
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("decision,{drug},")))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(total, res.len() as u64, "{drug}");
    }
    // The overdue list holds exactly the patients whose reports say overdue.
    let mut overdue_in_reports = 0;
    for r in &res {
        overdue_in_reports += r["monitoring"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["status"] == "overdue")
            .count();
    }
    let overdue_csv = std::fs::read_to_string(out.join("screen-overdue.csv")).unwrap();
    assert_eq!(overdue_csv.lines().count() - 1, overdue_in_reports);
    // Each test's list is in patient-id order, whatever order the results are in. A row is
    // drug,monitoring,title,patient,due_by,last_done; only the title may hold a comma.
    let rows: Vec<(Vec<&str>, &str)> = overdue_csv
        .lines()
        .skip(1)
        .map(|l| {
            let key = l.splitn(3, ',').take(2).collect();
            (key, l.rsplit(',').nth(2).unwrap())
        })
        .collect();
    for pair in rows.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert!(
                pair[0].1 < pair[1].1,
                "overdue list out of id order: {pair:?}"
            );
        }
    }
    assert!(
        overdue_in_reports > 0,
        "the synthetic set has lapsed monitoring"
    );

    let html = std::fs::read_to_string(out.join("screen-report.html")).unwrap();
    assert!(html.contains("supports clinical judgement; it does not replace it"));
    assert!(html.contains("<caption>") && !html.contains("<script"));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains(&format!("screened {} of 200 patients", res.len())),
        "{stdout}"
    );
}

/// The resources of one patient from the export's files, in the order `screen` reads them.
#[test]
fn a_gzip_export_gives_the_same_results_as_the_plain_one() {
    // Plain files are read again at the kept lines' offsets, gzip files keep a copy of
    // those lines: both must build the same records.
    let (plain, gz) = (scratch("same-plain"), scratch("same-gz"));
    let (out_plain, out_gz) = (scratch("same-plain-out"), scratch("same-gz-out"));
    synth(&plain, 150, 21, false);
    synth(&gz, 150, 21, true);
    assert!(gz.join("Observation.ndjson.gz").is_file());
    for (export, out) in [(&plain, &out_plain), (&gz, &out_gz)] {
        let o = screen(export, out, &[]);
        assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    }
    let a = std::fs::read(out_plain.join("screen-results.ndjson")).unwrap();
    let b = std::fs::read(out_gz.join("screen-results.ndjson")).unwrap();
    assert!(!results(&out_plain).is_empty());
    assert!(a == b, "gzip and plain exports gave different results");
}

#[test]
fn a_run_into_a_used_directory_replaces_the_previous_results_whole() {
    // The previous results are deleted in the background while the export is read: the new
    // file must hold exactly this run's lines, nothing of the old one.
    let (big, small) = (scratch("reuse-big"), scratch("reuse-small"));
    let (out, fresh) = (scratch("reuse-out"), scratch("reuse-fresh"));
    synth(&big, 120, 5, false);
    synth(&small, 20, 6, false);
    let o = screen(&big, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let old = std::fs::read(out.join("screen-results.ndjson")).unwrap();
    for (export, dir) in [(&small, &out), (&small, &fresh)] {
        let o = screen(export, dir, &[]);
        assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    }
    let reused = std::fs::read(out.join("screen-results.ndjson")).unwrap();
    let clean = std::fs::read(fresh.join("screen-results.ndjson")).unwrap();
    assert!(!clean.is_empty() && clean.len() < old.len());
    assert!(
        reused == clean,
        "results in a used directory differ from a fresh one"
    );
}

fn patient_bundle(export: &Path, id: &str) -> serde_json::Value {
    let refs = [format!("\"Patient/{id}\""), format!("\"urn:uuid:{id}\"")];
    let mut entries = vec![];
    let order = [
        "Patient",
        "Medication",
        "Condition",
        "Immunization",
        "MedicationRequest",
        "MedicationStatement",
        "Observation",
    ];
    for ty in order {
        let body = std::fs::read_to_string(export.join(format!("{ty}.ndjson"))).unwrap();
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let mine = match ty {
                "Patient" => v["id"] == id,
                // The formulary is shared: include it whole, as a Bundle would.
                "Medication" => true,
                _ => refs.iter().any(|r| line.contains(r.as_str())),
            };
            if mine {
                entries.push(serde_json::json!({ "resource": v }));
            }
        }
    }
    serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

/// What a brief result line should be, made from `assess`'s full report: everything but the
/// screening checklist and monitoring plan as they are, those two as statuses and dates.
fn brief_of(full: &serde_json::Value) -> serde_json::Value {
    let mut brief = full.clone();
    let keep = |entry: &serde_json::Value, keys: &[&str]| {
        let mut o = serde_json::Map::new();
        for k in keys {
            if let Some(v) = entry.get(*k) {
                o.insert((*k).to_string(), v.clone());
            }
        }
        serde_json::Value::Object(o)
    };
    brief["screening"] = full["screening"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| keep(e, &["id", "status", "abnormal_for"]))
        .collect();
    brief["monitoring"] = full["monitoring"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            keep(
                e,
                &["drug", "id", "status", "due_from", "due_by", "last_done"],
            )
        })
        .collect();
    brief
}

/// A validator for the brief result line: `docs/assessment.schema.json`'s `screen-result`.
fn screen_result_validator() -> jsonschema::Validator {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/assessment.schema.json");
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root).unwrap()).unwrap();
    let defs = schema["$defs"].take();
    assert!(
        defs.get("screen-result").is_some(),
        "no screen-result in the schema"
    );
    let schema = serde_json::json!({"$defs": defs, "$ref": "#/$defs/screen-result"});
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn each_result_line_is_what_assess_says_for_the_same_resources() {
    let export = scratch("same-export");
    let (out, out_full) = (scratch("same-out"), scratch("same-out-full"));
    synth(&export, 120, 9, false);
    let o = screen(&export, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let o = screen(&export, &out_full, &["--full-reports"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let (res, full) = (results(&out), results(&out_full));
    assert!(res.len() >= 8, "only {} screened", res.len());
    assert_eq!(ids(&res), ids(&full));
    let validator = screen_result_validator();
    for line in &res {
        let errors: Vec<String> = validator.iter_errors(line).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "a brief line off the schema: {errors:?}");
    }
    // The brief lines are what they are for: much smaller than the whole reports (60 % of
    // the bytes with the synthetic exports).
    let size = |dir: &Path| {
        std::fs::metadata(dir.join("screen-results.ndjson"))
            .unwrap()
            .len()
    };
    assert!(
        size(&out) * 10 < size(&out_full) * 7,
        "brief {} B, full {} B",
        size(&out),
        size(&out_full)
    );
    // Every brief line is its full line, brief; and the optional members occur.
    for (brief, whole) in res.iter().zip(&full) {
        assert_eq!(brief, &brief_of(whole), "{}", brief["patient"]["id"]);
    }
    let has = |section: &str, key: &str| {
        res.iter().any(|r| {
            r[section]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.get(key).is_some())
        })
    };
    assert!(has("monitoring", "last_done") && has("screening", "abnormal_for"));
    // A spread of patients, including every one with a data-quality finding.
    let picked: Vec<usize> = (0..res.len())
        .filter(|&i| i % 4 == 0 || !res[i]["errors"].as_array().unwrap().is_empty())
        .take(16)
        .collect();
    for i in picked {
        let id = res[i]["patient"]["id"].as_str().unwrap();
        let bundle = patient_bundle(&export, id);
        let path = out.join(format!("bundle-{id}.json"));
        std::fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
        let o = jakguard(&["assess", "--as-of", AS_OF, "--format", "json", s(&path)]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let assessed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            &assessed, &full[i],
            "patient {id}: screen --full-reports and assess differ"
        );
        assert_eq!(
            res[i],
            brief_of(&assessed),
            "patient {id}: the brief line is not assess's"
        );
        assert!(
            !res[i]["monitoring"].as_array().unwrap().is_empty(),
            "patient {id} has a monitoring plan"
        );
    }
}

fn write(dir: &Path, name: &str, lines: &[&str]) {
    std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
}

/// A gzip file of two members (as appending exporters write), one line set each.
fn write_gz(dir: &Path, name: &str, members: &[&[&str]]) {
    let mut bytes = vec![];
    for lines in members {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
        bytes.extend(e.finish().unwrap());
    }
    std::fs::write(dir.join(name), bytes).unwrap();
}

const P1: &str = r#"{"resourceType":"Patient","id":"p1","gender":"male","birthDate":"1980-02-02"}"#;
const P2: &str =
    r#"{"resourceType":"Patient","id":"p2","gender":"female","birthDate":"1975-07-07"}"#;
const P3: &str =
    r#"{"resourceType":"Patient","id":"p3","gender":"female","birthDate":"1990-01-01"}"#;
const TOFA_P1: &str = r#"{"resourceType":"MedicationRequest","id":"mr1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"authoredOn":"2025-06-01","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1357541"}]}}"#;
const STOPPED_P3: &str = r#"{"resourceType":"MedicationRequest","id":"mr3","status":"stopped","intent":"order","subject":{"reference":"Patient/p3"},"authoredOn":"2024-01-01","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"2196894"}]}}"#;
const AS_P2: &str = r#"{"resourceType":"Condition","id":"c2","clinicalStatus":{"coding":[{"code":"active"}]},"code":{"coding":[{"system":"http://snomed.info/sct","code":"9631008"}]},"subject":{"reference":"Patient/p2"}}"#;
const ALC_P1: &str = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"731-0"}]},"subject":{"reference":"urn:uuid:p1"},"effectiveDateTime":"2026-02-01","valueQuantity":{"value":0.4,"unit":"10*3/uL","system":"http://unitsofmeasure.org","code":"10*3/uL"}}"#;

#[test]
fn bad_lines_are_counted_and_reported_by_file_and_line_and_the_run_goes_on() {
    let (export, out) = (scratch("bad-export"), scratch("bad-out"));
    write(
        &export,
        "Patient.ndjson",
        &[P1, r#"{"resourceType":"Patient","#, P2, ""],
    );
    write(&export, "MedicationRequest.ndjson", &[TOFA_P1, AS_P2]);
    write_gz(
        &export,
        "Observation.ndjson.gz",
        &[
            &[ALC_P1, r#"{"resourceType":"Obsrvation","id":"x"}"#],
            &[
                r#"{"resourceType":"Observation","id":"o3","code":{"text":"x"}}"#,
                r#"{"resourceType":"Observation","id":"o4","subject":{"reference":"Patient/nobody"}}"#,
                r#"{"id":"o5"}"#,
            ],
        ],
    );
    // A plain file too, whose bad lines name a screened patient in their bytes: they are
    // found bad when read in full (the last pass), and still counted and listed.
    write(
        &export,
        "Observation.ndjson",
        &[
            r#"{"resourceType":"Observation","id":"o6","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}"#,
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"code":"#,
            r#"{"resourceType":"Observation","id":"o7","contained":[{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}]}"#,
        ],
    );
    write(&export, "notes.ndjson", &[r#"{"resourceType":"Basic"}"#]);
    let o = screen(&export, &out, &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "stderr: {err}");
    let expected = [
        "Patient.ndjson:2: truncated JSON",
        "MedicationRequest.ndjson:2: a Condition in a file of MedicationRequest resources",
        "Observation.ndjson.gz:2: unknown resource type",
        "Observation.ndjson.gz:3: Observation without `subject.reference`",
        "Observation.ndjson.gz:4: `subject` does not refer to a Patient of this export",
        "Observation.ndjson.gz:5: no `resourceType`",
        "Observation.ndjson:2: truncated JSON",
        "Observation.ndjson:3: Observation without `subject.reference`",
    ];
    for e in expected {
        assert!(err.contains(e), "missing `{e}` in:\n{err}");
    }
    assert!(err.contains("notes.ndjson: skipped"), "{err}");
    assert!(
        !err.contains("nobody"),
        "a patient reference leaked into the log: {err}"
    );
    let listed = std::fs::read_to_string(out.join("screen-bad-lines.txt")).unwrap();
    assert_eq!(listed.lines().count(), expected.len(), "{listed}");
    // Those found in the last pass come after the reading pass's, in file order per patient.
    let last: Vec<&str> = listed.lines().skip(expected.len() - 2).collect();
    assert_eq!(last, expected[expected.len() - 2..], "{listed}");
    let sum = summary(&out);
    assert_eq!(sum["run,,,bad-lines"], expected.len() as u64);
    assert_eq!(sum["run,,,files-skipped"], 1);
    // The good lines were still used: p1's low lymphocyte count (from the gzip file, by a
    // urn:uuid reference) reaches its assessment.
    let res = results(&out);
    assert_eq!(ids(&res), ["p1"]);
    let tofa = &res[0]["assessments"].as_array().unwrap()[0];
    assert_eq!(tofa["drug"], "tofacitinib");
    // On treatment, a first low count asks for a repeat before holding the drug.
    let alc = tofa["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "data-needed.lab.alc")
        .unwrap_or_else(|| panic!("no lymphocyte finding: {tofa}"));
    assert!(
        alc["summary"]
            .as_str()
            .unwrap()
            .contains("0.4 10*3/uL on 2026-02-01"),
        "{alc}"
    );
    // Two patients, the order, the gzip file's and the plain file's one good observation.
    assert!(
        text(&o.stdout).contains("5 resources in 4 files")
            && text(&o.stdout).contains("8 bad lines"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn the_cohort_is_jak_orders_and_with_all_also_axspa() {
    let (export, out) = (scratch("cohort-export"), scratch("cohort-out"));
    write(&export, "Patient.ndjson", &[P3, P2, P1]);
    write(&export, "MedicationRequest.ndjson", &[STOPPED_P3, TOFA_P1]);
    write(&export, "Condition.ndjson", &[AS_P2]);
    let o = screen(&export, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        ids(&results(&out)),
        ["p1"],
        "a stopped order does not count"
    );
    let o = screen(&export, &out, &["--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        ids(&results(&out)),
        ["p2", "p1"],
        "in the Patient file's order"
    );
}

#[test]
fn an_unusable_export_exits_2_with_one_line() {
    let out = scratch("unusable-out");
    let missing = out.join("no-such-dir");
    let o = screen(&missing, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("is not a directory"));
    let empty = scratch("unusable-empty");
    write(&empty, "Observation.ndjson", &[ALC_P1]);
    let o = screen(&empty, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no Patient file"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn parse_only_reads_gzip_and_counts_what_is_not_json() {
    let export = scratch("parse-export");
    synth(&export, 50, 3, true);
    let o = jakguard(&["screen", "--parse-only", s(&export)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let plain = scratch("parse-plain");
    synth(&plain, 50, 3, false);
    let lines: usize = std::fs::read_dir(&plain)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum();
    assert!(
        text(&o.stdout).contains(&format!("parse-only: {lines} lines parsed, 0 not JSON")),
        "{}",
        text(&o.stdout)
    );
}
