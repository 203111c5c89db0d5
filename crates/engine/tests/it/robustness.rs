//! No panic on any input: every value of a real bundle is replaced, one at a time (three
//! replacements each) and then many at once, by values of the wrong type, empty strings, huge numbers, negative numbers,
//! bad dates and deep nesting; parsing and assessment must return (a record or an error),
//! never panic. Deterministic (a fixed-seed generator), so a failure reproduces.

use crate::support::{kb, workspace};
use jakguard_engine::{Options, assess, fhir};
use serde_json::{Value, json};

/// A small linear congruential generator: reproducible without a dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn replacements() -> Vec<Value> {
    vec![
        Value::Null,
        json!(""),
        json!("not a date"),
        json!("2026-02-30"),
        json!("9999-12-31"),
        json!(-1),
        json!(1e308),
        json!(-0.0),
        json!(true),
        json!([]),
        json!({}),
        json!([[[[[[[[{"resourceType": "Bundle"}]]]]]]]]),
        json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Bundle"}}]}),
        json!("\u{0}\u{202e}💊"),
        json!("http://loinc.org"),
        json!({"value": "12", "unit": "K/uL"}),
    ]
}

/// Every path (object keys and array indices) to a leaf or inner value.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(json!(k));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn set(v: &mut Value, path: &[Value], new: Value) {
    let mut cur = v;
    for (i, p) in path.iter().enumerate() {
        let next = match p {
            Value::String(k) => cur.get_mut(k.as_str()),
            Value::Number(n) => n.as_u64().and_then(|i| cur.get_mut(i as usize)),
            _ => None,
        };
        match next {
            Some(n) if i + 1 == path.len() => {
                *n = new;
                return;
            }
            Some(n) => cur = n,
            None => return,
        }
    }
}

fn check(bundle: &Value) {
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).expect("date");
    if let Ok(record) = fhir::parse_bundle(&bundle.to_string()) {
        let report = assess(
            kb(),
            &record,
            &Options {
                as_of,
                drugs: vec![],
            },
        );
        serde_json::to_string(&report).expect("report serialises");
    }
}

#[test]
fn mutated_bundles_never_panic() {
    let text =
        std::fs::read_to_string(workspace().join("tests/cases/bases/on-tofacitinib-male-40.json"))
            .expect("base");
    let base: Value = serde_json::from_str(&text).expect("json");
    let mut all = vec![];
    paths(&base, &mut vec![], &mut all);
    let reps = replacements();
    // Each path with three of the replacements (chosen by the generator).
    let mut rng = Lcg(20261127);
    for p in &all {
        for _ in 0..3 {
            let mut b = base.clone();
            set(&mut b, p, reps[(rng.next() as usize) % reps.len()].clone());
            check(&b);
        }
    }
    // Many mutations at once.
    for _ in 0..300 {
        let mut b = base.clone();
        for _ in 0..8 {
            let p = &all[(rng.next() as usize) % all.len()];
            let r = reps[(rng.next() as usize) % reps.len()].clone();
            set(&mut b, p, r);
        }
        check(&b);
    }
    assert!(all.len() > 300, "{} paths", all.len());
}

#[test]
fn truncated_documents_are_errors_not_panics() {
    let text = std::fs::read_to_string(workspace().join("tests/cases/bases/as-male-40.json"))
        .expect("base");
    for cut in (0..text.len()).step_by(97) {
        if let Some(prefix) = text.get(..cut) {
            assert!(
                fhir::parse_bundle(prefix).is_err(),
                "a document cut at byte {cut} must be rejected"
            );
        }
    }
}
