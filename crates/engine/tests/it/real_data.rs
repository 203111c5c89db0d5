//! Real data nobody here wrote: the Synthea R4 bundles and the official FHIR R4 examples in
//! `../shared/data`. Every file must be parsed and assessed without a panic; files that are
//! not usable bundles must be rejected with a clear error.

use crate::support::{kb, shared_data};
use jakguard_engine::{Options, assess, fhir};

fn as_of() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 27).expect("date")
}

#[test]
fn every_synthea_bundle_is_assessed() {
    let Some(dir) = shared_data() else { return };
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("synthea-r4"))
        .expect("synthea dir")
        .flatten()
    {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        let record = fhir::parse_bundle(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            record.patient.birth_date.is_some(),
            "{}: no birth date read",
            p.display()
        );
        assert!(
            !record.observations.is_empty(),
            "{}: no observations read",
            p.display()
        );
        let report = assess(
            kb(),
            &record,
            &Options {
                as_of: as_of(),
                drugs: vec![],
            },
        );
        assert_eq!(report.assessments.len(), 2);
        // Synthea patients have no axial SpA: never eligible without a diagnosis.
        for a in &report.assessments {
            assert!(
                a.findings
                    .iter()
                    .any(|f| f.rule.ends_with("axspa-diagnosis-missing")),
                "{}",
                p.display()
            );
        }
        serde_json::to_string(&report).expect("serialise");
        n += 1;
    }
    assert_eq!(n, 34, "expected the 34 Synthea bundles");
}

#[test]
fn every_official_example_is_assessed_or_rejected_cleanly() {
    let Some(dir) = shared_data() else { return };
    let (mut ok, mut rejected) = (0, 0);
    for e in std::fs::read_dir(dir.join("fhir-r4-examples"))
        .expect("examples dir")
        .flatten()
    {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        match fhir::parse_bundle(&text) {
            Ok(record) => {
                assess(
                    kb(),
                    &record,
                    &Options {
                        as_of: as_of(),
                        drugs: vec![],
                    },
                );
                ok += 1;
            }
            Err(e) => {
                assert!(
                    !e.message.is_empty() && !e.location.is_empty(),
                    "{}",
                    p.display()
                );
                rejected += 1;
            }
        }
    }
    assert!(ok + rejected > 300, "{ok} + {rejected}");
    assert!(ok >= 1, "no example bundle was usable");
}
