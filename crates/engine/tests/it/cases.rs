//! Clinical cases as data: `tests/cases/*.json`. Each case is a FHIR Bundle (a base patient
//! from `tests/cases/bases/` with resources removed, patched or added), an `as_of` date, and
//! per drug the expected decision, the exact set of rules that fire, rules that must not fire,
//! the data that is needed and the dose. One `check` runs them all.

use crate::support::{kb, workspace};
use jakguard_engine::report::Report;
use jakguard_engine::{Options, assess, fhir};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub description: String,
    pub base: Option<String>,
    pub bundle: Option<Value>,
    pub as_of: String,
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default)]
    pub patch: BTreeMap<String, Value>,
    #[serde(default)]
    pub add: Vec<Value>,
    pub expect: BTreeMap<String, Expect>,
    /// Disease-activity scores that must be reported with these values (others must not).
    #[serde(default)]
    pub scores: Option<BTreeMap<String, f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub decision: String,
    #[serde(default)]
    pub phase: Option<String>,
    /// Exactly the rules that fire (data-needed, data-quality and monitoring excluded).
    #[serde(default)]
    pub fires: Vec<String>,
    #[serde(default)]
    pub does_not_fire: Vec<String>,
    /// Exactly the data-needed keys (`lab.anc`, `birth-date`…), as in `data-needed.<key>`.
    #[serde(default)]
    pub data_needed: Vec<String>,
    /// Exactly the overdue monitoring items.
    #[serde(default)]
    pub overdue: Vec<String>,
    /// Data-quality kinds that must be reported (a subset).
    #[serde(default)]
    pub data_quality: Vec<String>,
    /// `null` for no dose, or `{ "mg": 5, "times_per_day": 1 }`. Absent: not checked.
    #[serde(default, deserialize_with = "some")]
    pub dose: Option<Option<DoseExpect>>,
}

#[derive(Deserialize, PartialEq, Debug)]
#[serde(deny_unknown_fields)]
pub struct DoseExpect {
    pub mg: f64,
    pub times_per_day: u32,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<DoseExpect>>, D::Error> {
    Option::<DoseExpect>::deserialize(d).map(Some)
}

fn resource_key(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap_or(""),
        r["id"].as_str().unwrap_or("")
    )
}

/// Builds the case's Bundle: the base (or inline bundle) with removals, patches and additions.
pub fn bundle_of(case: &Case) -> Value {
    let mut bundle = match (&case.base, &case.bundle) {
        (Some(base), None) => {
            let p = workspace()
                .join("tests/cases/bases")
                .join(format!("{base}.json"));
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        }
        (None, Some(b)) => b.clone(),
        _ => panic!("a case needs exactly one of `base` or `bundle`"),
    };
    let entries = bundle["entry"].as_array_mut().expect("bundle entries");
    for key in &case.remove {
        let before = entries.len();
        entries.retain(|e| resource_key(&e["resource"]) != *key);
        assert!(entries.len() < before, "remove: `{key}` is not in the base");
    }
    for (key, patch) in &case.patch {
        let e = entries
            .iter_mut()
            .find(|e| resource_key(&e["resource"]) == *key)
            .unwrap_or_else(|| panic!("patch: `{key}` is not in the base"));
        for (k, v) in patch.as_object().expect("patch is an object") {
            if v.is_null() {
                e["resource"].as_object_mut().expect("resource").remove(k);
            } else {
                e["resource"][k] = v.clone();
            }
        }
    }
    for r in &case.add {
        entries.push(serde_json::json!({ "resource": r }));
    }
    bundle
}

pub fn run_case(case: &Case) -> Report {
    let bundle = bundle_of(case);
    let record = fhir::parse_bundle(&bundle.to_string()).expect("case bundle must be usable");
    let as_of = chrono::NaiveDate::parse_from_str(&case.as_of, "%Y-%m-%d").expect("as_of date");
    assess(
        kb(),
        &record,
        &Options {
            as_of,
            drugs: vec![],
        },
    )
}

fn check(path: &Path, case: &Case) -> Vec<String> {
    let report = run_case(case);
    let json = serde_json::to_value(&report).expect("report serialises");
    let mut errors = vec![];
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    if let Some(want) = &case.scores {
        let got: BTreeMap<String, f64> = report
            .scores
            .iter()
            .map(|s| (s.id.clone(), s.value.try_into().unwrap_or(f64::NAN)))
            .collect();
        if got != *want {
            errors.push(format!("{name}: scores {got:?}, expected {want:?}"));
        }
    }
    for (drug, want) in &case.expect {
        let Some(a) = report.assessments.iter().find(|a| a.drug == *drug) else {
            errors.push(format!("{name}: no assessment for `{drug}`"));
            continue;
        };
        let got_decision = json["assessments"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["drug"] == *drug))
            .map(|x| x["decision"].as_str().unwrap_or("").to_string())
            .unwrap_or_default();
        let fired: BTreeSet<String> = a
            .findings
            .iter()
            .map(|f| f.rule.clone())
            .filter(|r| {
                !r.starts_with("data-needed.")
                    && !r.starts_with("data-quality.")
                    && !r.starts_with("monitoring.")
            })
            .collect();
        let needed: BTreeSet<String> = a
            .findings
            .iter()
            .filter_map(|f| f.rule.strip_prefix("data-needed.").map(str::to_string))
            .collect();
        let overdue: BTreeSet<String> = a
            .findings
            .iter()
            .filter_map(|f| f.rule.strip_prefix("monitoring.").map(str::to_string))
            .collect();
        let quality: BTreeSet<String> = a
            .findings
            .iter()
            .filter_map(|f| f.rule.strip_prefix("data-quality.").map(str::to_string))
            .collect();
        let summary = || {
            a.findings
                .iter()
                .map(|f| format!("    {} [{:?}] {}", f.rule, f.decision, f.summary))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if got_decision != want.decision {
            errors.push(format!(
                "{name} [{drug}]: decision `{got_decision}`, expected `{}`\n{}",
                want.decision,
                summary()
            ));
        }
        let want_fires: BTreeSet<String> = want.fires.iter().cloned().collect();
        if fired != want_fires {
            errors.push(format!(
                "{name} [{drug}]: fired {fired:?}, expected {want_fires:?}\n{}",
                summary()
            ));
        }
        for r in &want.does_not_fire {
            if kb().rule_by_name(r).is_none() {
                errors.push(format!("{name}: does_not_fire names unknown rule `{r}`"));
            }
            let evaluated_unknown = a.findings.iter().any(|f| f.needed_by.contains(r));
            if fired.contains(r) || evaluated_unknown {
                errors.push(format!("{name} [{drug}]: `{r}` must evaluate to false (fired: {}, data needed: {evaluated_unknown})", fired.contains(r)));
            }
        }
        let want_needed: BTreeSet<String> = want.data_needed.iter().cloned().collect();
        if needed != want_needed {
            errors.push(format!(
                "{name} [{drug}]: data needed {needed:?}, expected {want_needed:?}\n{}",
                summary()
            ));
        }
        let want_overdue: BTreeSet<String> = want.overdue.iter().cloned().collect();
        if overdue != want_overdue {
            errors.push(format!(
                "{name} [{drug}]: overdue {overdue:?}, expected {want_overdue:?}"
            ));
        }
        for q in &want.data_quality {
            if !quality.contains(q) {
                errors.push(format!(
                    "{name} [{drug}]: expected a data-quality finding `{q}`, got {quality:?}"
                ));
            }
        }
        if let Some(p) = &want.phase
            && a.phase != p
        {
            errors.push(format!(
                "{name} [{drug}]: phase `{}`, expected `{p}`",
                a.phase
            ));
        }
        if let Some(dose) = &want.dose {
            let got = a.dose.as_ref().map(|d| DoseExpect {
                mg: d.mg.try_into().unwrap_or(f64::NAN),
                times_per_day: d.times_per_day,
            });
            if got != *dose {
                errors.push(format!("{name} [{drug}]: dose {got:?}, expected {dose:?}"));
            }
        }
        for f in &a.findings {
            if f.summary.trim().is_empty() || f.action.trim().is_empty() {
                errors.push(format!(
                    "{name} [{drug}]: finding `{}` without summary or action",
                    f.rule
                ));
            }
            if f.citations.is_empty() && !f.rule.starts_with("data-quality.") {
                errors.push(format!(
                    "{name} [{drug}]: finding `{}` without a citation",
                    f.rule
                ));
            }
        }
    }
    errors
}

pub fn load_cases() -> Vec<(std::path::PathBuf, Case)> {
    let dir = workspace().join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/cases")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("case file");
            let case: Case =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(
                !case.description.trim().is_empty(),
                "{}: a case needs a description",
                p.display()
            );
            (p, case)
        })
        .collect()
}

#[test]
fn every_case_gives_its_expected_assessment() {
    let cases = load_cases();
    assert!(!cases.is_empty(), "no cases found");
    let errors: Vec<String> = cases.iter().flat_map(|(p, c)| check(p, c)).collect();
    assert!(
        errors.is_empty(),
        "{} case error(s):\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn every_rule_has_a_case_that_fires_it_and_one_that_does_not() {
    let cases = load_cases();
    let mut fires = BTreeSet::new();
    let mut not = BTreeSet::new();
    for (_, c) in &cases {
        for e in c.expect.values() {
            fires.extend(e.fires.iter().cloned());
            not.extend(e.does_not_fire.iter().cloned());
        }
    }
    let mut missing = vec![];
    for r in &kb().rules {
        if !fires.contains(&r.id) {
            missing.push(format!("{}: no case fires it", r.id));
        }
        if !not.contains(&r.id) {
            missing.push(format!("{}: no case shows it not firing", r.id));
        }
    }
    assert!(
        missing.is_empty(),
        "{} gap(s):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// A data-needed finding says what is missing and what to order in the knowledge's own words
/// (the lab's name and order), in the same fixed wording every time: checked over every
/// finding of every case, for each kind of missing lab the cases produce.
#[test]
fn data_needed_findings_name_the_lab_and_the_order_in_the_knowledges_words() {
    let kb = kb();
    let mut seen = BTreeSet::new();
    for (path, case) in load_cases() {
        let report = run_case(&case);
        for f in report.assessments.iter().flat_map(|a| &a.findings) {
            let Some(key) = f.rule.strip_prefix("data-needed.") else {
                continue;
            };
            let (kind, id) = match key.split_once('.') {
                Some(("lab", id)) => ("lab", id),
                Some(("baseline", id)) => ("baseline", id),
                _ => continue,
            };
            let Some(lab) = kb.labs.iter().find(|l| l.id == id) else {
                panic!(
                    "{}: {} names no lab of the knowledge",
                    path.display(),
                    f.rule
                );
            };
            let (what, orders) = match kind {
                "lab" => (
                    lab.name.clone(),
                    vec![lab.order.clone(), format!("Repeat {}", lab.order)],
                ),
                _ => (
                    format!("baseline {}", lab.name),
                    vec![format!("Record the pre-treatment {}", lab.name)],
                ),
            };
            let place = format!("{}: {}", path.display(), f.rule);
            assert_eq!(f.title, format!("Data needed: {what}"), "{place}");
            assert!(
                f.summary.starts_with(&format!("{what}: ")),
                "{place}: {}",
                f.summary
            );
            assert!(f.summary.len() > what.len() + 2, "{place}: no reason given");
            assert!(orders.contains(&f.action), "{place}: {}", f.action);
            seen.insert((kind, f.action.starts_with("Repeat ")));
        }
    }
    // Every kind the engine writes occurs, so none of the checks above is vacuous.
    assert!(seen.contains(&("lab", false)), "{seen:?}");
    assert!(seen.contains(&("baseline", false)), "{seen:?}");
    assert!(seen.contains(&("lab", true)), "{seen:?}");
}
