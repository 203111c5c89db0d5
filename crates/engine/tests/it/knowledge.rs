//! The shipped knowledge loads, and the loader rejects what a reviewer could get wrong —
//! each with the file and line.

use crate::support::kb;
use jakguard_engine::{Knowledge, Source, embedded_knowledge};

fn with_extra(path: &str, text: &str) -> Result<Knowledge, String> {
    let mut sources = embedded_knowledge();
    sources.push(Source {
        path: path.into(),
        text: text.into(),
    });
    Knowledge::load(&sources).map_err(|e| e.to_string())
}

#[test]
fn shipped_knowledge_loads_and_cites_every_rule() {
    let kb = kb();
    assert!(kb.rules.len() >= 40, "only {} rules", kb.rules.len());
    for r in &kb.rules {
        assert!(!r.citations.is_empty(), "{} has no citation", r.id);
    }
    for d in ["tofacitinib", "upadacitinib"] {
        assert!(kb.drug_by_name(d).is_some(), "{d} missing");
    }
    assert_eq!(
        kb.drug_by_name("XELJANZ XR"),
        kb.drug_by_name("tofacitinib")
    );
}

#[test]
fn unknown_keys_are_errors_with_file_and_line() {
    let e = with_extra("extra.toml", "\n[[citation]]\nid = \"x\"\nshort = \"x\"\nsource = \"s\"\nsection = \"s\"\nverified = true\nverifed = false\n").unwrap_err();
    assert!(e.contains("extra.toml:8"), "{e}");
    assert!(e.contains("verifed"), "{e}");
}

#[test]
fn duplicate_ids_are_errors() {
    let e = with_extra("dup.toml", "[[citation]]\nid = \"jakguard-policy\"\nshort = \"x\"\nsource = \"s\"\nsection = \"s\"\nverified = false\n").unwrap_err();
    assert!(
        e.contains("dup.toml:2") && e.contains("duplicate citation id `jakguard-policy`"),
        "{e}"
    );
}

#[test]
fn dangling_references_and_missing_citations_are_errors() {
    let rule = r#"
[[rule]]
id = "test-rule"
title = "t"
drugs = ["tofacitinib"]
phase = "start"
category = "lab-threshold"
severity = "info"
decision = "caution"
summary = "s"
action = "a"
citations = []
verified = false
when = { lab = { id = "no-such-lab", below = "1 g/dL", within_days = 1 } }
"#;
    let e = with_extra("r.toml", rule).unwrap_err();
    assert!(
        e.contains("r.toml:3") && e.contains("has no citation"),
        "{e}"
    );
    assert!(
        e.contains("r.toml:14") && e.contains("unknown lab `no-such-lab`"),
        "{e}"
    );
}

#[test]
fn thresholds_in_an_unknown_unit_are_errors() {
    let rule = r#"
[[rule]]
id = "test-rule"
title = "t"
drugs = ["tofacitinib"]
phase = "start"
category = "lab-threshold"
severity = "info"
decision = "caution"
summary = "s"
action = "a"
citations = ["jakguard-policy"]
verified = false
when = { lab = { id = "hemoglobin", below = "9 K/m3", within_days = 1 } }
"#;
    let e = with_extra("r.toml", rule).unwrap_err();
    assert!(e.contains("unknown unit `K/m3`"), "{e}");
}

#[test]
fn a_verified_rule_needs_a_verified_source() {
    let rule = r#"
[[rule]]
id = "test-rule"
title = "t"
drugs = ["tofacitinib"]
phase = "start"
category = "lab-threshold"
severity = "info"
decision = "caution"
summary = "s"
action = "a"
citations = ["jakguard-policy"]
verified = true
when = { age = { at_least = 1 } }
"#;
    let e = with_extra("r.toml", rule).unwrap_err();
    assert!(
        e.contains("marked verified but none of its citations is verified"),
        "{e}"
    );
}

#[test]
fn every_lab_value_set_and_quantity_is_used_consistently() {
    let kb = kb();
    for l in &kb.labs {
        assert!(
            !l.valuesets.is_empty() || l.computed.is_some(),
            "lab {} reads nothing",
            l.id
        );
    }
    // Every threshold's canonical unit is a quantity the units table knows.
    for q in &kb.units.quantities {
        assert!(q.factors.contains_key(&q.canonical), "{}", q.id);
    }
}
