//! The command line as a process: exit codes, messages, formats, and the JSON contract
//! validated against `docs/assessment.schema.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn jakguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jakguard"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run jakguard")
}

fn jakguard_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_jakguard"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("docs/assessment.schema.json")).expect("schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema json");
    jsonschema::validator_for(&schema).expect("valid schema")
}

fn assert_valid(validator: &jsonschema::Validator, json: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: output does not match the schema:\n{}",
        errors.join("\n")
    );
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn text_report_names_each_drug_decision_and_dose_without_colour_when_piped() {
    let o = jakguard(&[
        "assess",
        "--as-of",
        "2026-11-27",
        "examples/older-smoker-renal.json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("TOFACITINIB") && out.contains("UPADACITINIB"),
        "{out}"
    );
    assert!(out.contains("START WITH CAUTION"), "{out}");
    assert!(
        out.contains("XELJANZ 5 mg once daily"),
        "moderate renal impairment reduces the dose:\n{out}"
    );
    assert!(out.contains("supports clinical judgement"), "disclaimer");
    assert!(!out.contains('\u{1b}'), "no ANSI escapes when piped");
}

#[test]
fn json_output_of_every_example_matches_the_schema() {
    let v = validator();
    let ex = examples();
    assert!(ex.len() >= 5);
    for p in ex {
        let path = p.to_string_lossy().into_owned();
        let o = jakguard(&["assess", "--as-of", "2026-11-27", "--format", "json", &path]);
        assert!(o.status.success(), "{path}: {}", stderr(&o));
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_valid(&v, &json, &path);
        assert_eq!(json["as_of"], "2026-11-27");
        assert_eq!(json["assessments"].as_array().map(Vec::len), Some(2));
    }
}

#[test]
fn json_output_for_real_synthea_patients_matches_the_schema() {
    let shared = std::env::var_os("JAKGUARD_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    let dir = shared.join("data/synthea-r4");
    if !dir.is_dir() {
        assert!(
            std::env::var("JAKGUARD_REQUIRE_SHARED").is_err(),
            "{} missing in CI",
            dir.display()
        );
        eprintln!("note: {} not found; skipped", dir.display());
        return;
    }
    let v = validator();
    for e in std::fs::read_dir(&dir).expect("dir").flatten().take(12) {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let path = p.to_string_lossy().into_owned();
        let o = jakguard(&["assess", "--as-of", "2026-11-27", "--format", "json", &path]);
        assert!(o.status.success(), "{path}: {}", stderr(&o));
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_valid(&v, &json, &path);
    }
}

#[test]
fn markdown_report_has_tables_and_the_disclaimer() {
    let o = jakguard(&[
        "assess",
        "--as-of",
        "2026-11-27",
        "--format",
        "markdown",
        "examples/nraxspa-woman.json",
    ]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("# JAKGuard assessment"));
    assert!(out.contains("| Item | Status | Detail |"));
    assert!(
        out.contains("**Decision: DO NOT START**"),
        "tofacitinib has no nr-axSpA indication:\n{out}"
    );
}

#[test]
fn drug_filter_and_stdin() {
    let text = std::fs::read_to_string(root().join("examples/as-eligible.json")).expect("example");
    let o = jakguard_stdin(
        &[
            "assess",
            "--as-of",
            "2026-11-27",
            "--format",
            "json",
            "--drug",
            "RINVOQ",
            "-",
        ],
        &text,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let drugs: Vec<&str> = json["assessments"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["drug"].as_str())
        .collect();
    assert_eq!(drugs, vec!["upadacitinib"]);
}

fn assert_exit_2(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn unusable_input_exits_2_with_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("jakguard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let write = |name: &str, text: &str| -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let malformed = write(
        "malformed.json",
        "{\"resourceType\": \"Bundle\", \"entry\": [",
    );
    assert_exit_2(&jakguard(&["assess", &malformed]), "not valid JSON");
    let patient = write("patient.json", r#"{"resourceType": "Patient", "id": "x"}"#);
    assert_exit_2(
        &jakguard(&["assess", &patient]),
        "expected a FHIR Bundle, found a `Patient`",
    );
    let entry = write(
        "entry.json",
        r#"{"resourceType": "Bundle", "entry": {"a": 1}}"#,
    );
    assert_exit_2(&jakguard(&["assess", &entry]), "`entry`");
    let empty = write(
        "empty.json",
        r#"{"resourceType": "Bundle", "type": "collection"}"#,
    );
    assert_exit_2(&jakguard(&["assess", &empty]), "no Patient resource");
    let binary = write("binary.json", "\u{0}\u{1}");
    assert_exit_2(&jakguard(&["assess", &binary]), "not valid JSON");
    assert_exit_2(
        &jakguard(&["assess", "no/such/file.json"]),
        "cannot read `no/such/file.json`",
    );
    assert_exit_2(
        &jakguard(&[
            "assess",
            "--as-of",
            "27/11/2026",
            "examples/as-eligible.json",
        ]),
        "--as-of `27/11/2026`",
    );
    assert_exit_2(
        &jakguard(&[
            "assess",
            "--drug",
            "baricitinib",
            "examples/as-eligible.json",
        ]),
        "unknown drug `baricitinib`",
    );
}

#[test]
fn impossible_values_are_data_quality_findings_not_crashes() {
    let dir = std::env::temp_dir().join(format!("jakguard-cli-iv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let p = dir.join("impossible.json");
    std::fs::write(
        &p,
        r#"{"resourceType":"Bundle","entry":[
          {"resource":{"resourceType":"Patient","id":"old","birthDate":"1850-01-01","gender":"male"}},
          {"resource":{"resourceType":"Observation","id":"neg","status":"final","effectiveDateTime":"2026-11-01","code":{"coding":[{"system":"http://loinc.org","code":"751-8"}]},"valueQuantity":{"value":-3,"unit":"10*3/uL","system":"http://unitsofmeasure.org","code":"10*3/uL"}}},
          {"resource":{"resourceType":"Observation","id":"future","status":"final","effectiveDateTime":"2027-05-01","code":{"coding":[{"system":"http://loinc.org","code":"718-7"}]},"valueQuantity":{"value":13,"unit":"g/dL"}}},
          {"resource":{"resourceType":"Observation","id":"kelvin","status":"final","effectiveDateTime":"2026-11-01","code":{"coding":[{"system":"http://loinc.org","code":"731-0"}]},"valueQuantity":{"value":1.2,"unit":"K/m3"}}}
        ]}"#,
    )
    .expect("write");
    let path = p.to_string_lossy().into_owned();
    let o = jakguard(&["assess", "--as-of", "2026-11-27", "--format", "json", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_valid(&validator(), &json, "impossible values");
    let kinds: Vec<&str> = json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in ["impossible-value", "future-date", "unit"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(
        json["patient"]["age"],
        serde_json::Value::Null,
        "age 176 is not used"
    );
    for a in json["assessments"].as_array().expect("assessments") {
        assert_eq!(a["decision"], "data-needed");
    }
}

#[test]
fn knowledge_check_and_list() {
    let o = jakguard(&["knowledge", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("knowledge OK"));
    let o = jakguard(&["knowledge", "check", "knowledge"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = jakguard(&["knowledge", "list", "--format", "json"]);
    assert!(o.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = rows.as_array().expect("array");
    assert!(
        rows.iter()
            .any(|r| r["id"] == "tofa-start-hgb-below-9" && r["decision"] == "do-not-start")
    );
    assert!(
        rows.iter()
            .all(|r| !r["sources"].as_array().expect("sources").is_empty())
    );
}

#[test]
fn a_broken_knowledge_directory_is_rejected_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("jakguard-kb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root().join("knowledge"), &dir);
    let rules = dir.join("rules/blood-counts.toml");
    let text = std::fs::read_to_string(&rules).expect("rules");
    std::fs::write(
        &rules,
        text.replacen("within_days = 30 }", "within_days = 30, witin = 1 }", 1),
    )
    .expect("write");
    let path = dir.to_string_lossy().into_owned();
    let o = jakguard(&["knowledge", "check", &path]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("blood-counts.toml:") && err.contains("witin"),
        "{err}"
    );
    let o = jakguard(&["--knowledge", &path, "assess", "examples/as-eligible.json"]);
    assert_eq!(o.status.code(), Some(2));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        let p = e.path();
        let target = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).expect("copy");
        }
    }
}
