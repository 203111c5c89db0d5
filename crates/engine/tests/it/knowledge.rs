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

#[test]
fn patient_knowledge_is_complete_and_cited() {
    use jakguard_engine::kb::patient::{QuestionType, TriageLevel};
    let kb = kb();
    let p = &kb.patient;
    let q = p.questionnaire.as_ref().expect("a questionnaire");
    assert!(!q.baseline_tests.is_empty());
    assert!(
        p.questions.len() >= 20,
        "only {} questions",
        p.questions.len()
    );
    let mut ids = std::collections::HashSet::new();
    for x in &p.questions {
        assert!(ids.insert(&x.link_id), "duplicate linkId {}", x.link_id);
        assert!(!x.citations.is_empty(), "{} has no citation", x.link_id);
        if x.kind == QuestionType::Choice {
            assert!(x.options.iter().any(|o| o.flag), "{}", x.link_id);
        }
    }
    // Every triage level is explained and used; every symptom cited.
    for level in TriageLevel::ALL {
        assert!(p.triage_text(level).is_some(), "{level:?}");
        assert!(p.symptoms.iter().any(|s| s.level == level), "{level:?}");
    }
    assert!(p.symptoms.iter().all(|s| !s.citations.is_empty()));
    // Both drugs have a page with the sections the patient pages promise.
    for d in ["tofacitinib", "upadacitinib"] {
        let page = p
            .drug_page(kb.drug_by_name(d).unwrap())
            .unwrap_or_else(|| panic!("{d} has no page"));
        for s in [
            "what-it-is",
            "how-it-works",
            "who-it-is-for",
            "common-side-effects",
            "serious-risks",
            "tests",
            "pregnancy-breastfeeding",
        ] {
            let sec = page
                .sections
                .iter()
                .find(|x| x.id == s)
                .unwrap_or_else(|| panic!("{d}: no section {s}"));
            assert!(!sec.citations.is_empty(), "{d} {s}");
        }
    }
}

#[test]
fn patient_knowledge_mistakes_are_errors_with_file_and_line() {
    // A question pointing at an unknown test and answer set, without a citation.
    let e = with_extra(
        "patient/extra.toml",
        "[[question]]\nid = \"new-q\"\ngroup = \"infections\"\ntext = \"Q?\"\ntype = \"choice\"\nanswers = \"no-such-set\"\nhelp = \"h\"\ndiscuss = \"d\"\ntests = [\"no-such-test\"]\ncitations = []\n",
    )
    .unwrap_err();
    assert!(e.contains("patient/extra.toml:2"), "{e}");
    assert!(e.contains("unknown answer set `no-such-set`"), "{e}");
    assert!(e.contains("unknown patient test `no-such-test`"), "{e}");
    assert!(e.contains("`new-q` has no citation"), "{e}");

    // A symptom with an unknown level is a parse error; a second text for a level is caught.
    let e = with_extra(
        "patient/extra.toml",
        "[[triage_level]]\nlevel = \"emergency\"\ntitle = \"t\"\nadvice = \"a\"\ncitations = [\"jakguard-policy\"]\n",
    )
    .unwrap_err();
    assert!(
        e.contains("triage level `emergency` is defined twice"),
        "{e}"
    );
    let e = with_extra(
        "patient/extra.toml",
        "[[symptom]]\nid = \"s\"\ngroup = \"common\"\ntext = \"t\"\nlevel = \"soon\"\nwhy = \"w\"\ncitations = [\"jakguard-policy\"]\n",
    )
    .unwrap_err();
    assert!(e.contains("patient/extra.toml"), "{e}");
    assert!(e.contains("soon"), "{e}");

    // A test tied to a screening item that does not exist; a page for an unknown drug.
    let e = with_extra(
        "patient/extra.toml",
        "[[patient_test]]\nid = \"t2\"\nname = \"n\"\nwhy = \"w\"\nscreening = \"no-such-item\"\ncitations = [\"jakguard-policy\"]\n\n[[drug_page]]\ndrug = \"baricitinib\"\nsummary = \"s\"\nsection = []\n",
    )
    .unwrap_err();
    assert!(e.contains("unknown screening item `no-such-item`"), "{e}");
    assert!(e.contains("unknown drug `baricitinib`"), "{e}");
}

#[test]
fn quick_check_codes_must_be_in_the_value_sets_the_rules_read() {
    let kb = kb();
    assert!(kb.quick_check.len() >= 10);
    // A code that is not in the value set, a lab that is computed, two targets at once.
    let e = with_extra(
        "clinician/extra.toml",
        "[[quick_field]]\nid = \"x1\"\nlabel = \"AS\"\ncondition = \"ankylosing-spondylitis\"\nsystem = \"snomed\"\ncode = \"22298006\"\ndisplay = \"MI\"\n\n[[quick_field]]\nid = \"x2\"\nlabel = \"CrCl\"\nlab = \"crcl\"\nsystem = \"loinc\"\ncode = \"2164-2\"\ndisplay = \"c\"\n\n[[quick_field]]\nid = \"x3\"\nlabel = \"both\"\nlab = \"anc\"\ncondition = \"diabetes\"\nsystem = \"loinc\"\ncode = \"751-8\"\ndisplay = \"d\"\n",
    )
    .unwrap_err();
    assert!(e.contains("clinician/extra.toml:2"), "{e}");
    assert!(
        e.contains("code `22298006` (snomed) is not in the value set"),
        "{e}"
    );
    assert!(e.contains("lab `crcl` must be a measured quantity"), "{e}");
    assert!(e.contains("`x3` needs exactly one of"), "{e}");
}
