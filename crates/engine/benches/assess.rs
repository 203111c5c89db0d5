//! Criterion benchmarks: parsing, fact extraction and evaluation of a small (~20 resources)
//! and a large (~5,000 resources) patient bundle, and loading the knowledge.
//! Run: `cargo bench -p jakguard-engine --bench assess`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jakguard_engine::{Knowledge, Options, assess, embedded_knowledge, fhir};
use serde_json::{Value, json};
use std::hint::black_box;

// The same allocator as the `jakguard` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn small_bundle() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/cases/bases/as-male-40.json"
    );
    std::fs::read_to_string(path).expect("base bundle")
}

/// A realistic large record: the small one plus years of labs, encounters, claims (which the
/// engine skips), conditions and prescriptions — 5,000 resources in all.
fn large_bundle() -> String {
    let mut bundle: Value = serde_json::from_str(&small_bundle()).expect("json");
    let entries = bundle["entry"].as_array_mut().expect("entries");
    let labs = [
        ("731-0", 1.9, "10*3/uL"),
        ("751-8", 4.1, "10*3/uL"),
        ("718-7", 14.0, "g/dL"),
        ("2160-0", 0.9, "mg/dL"),
        ("1742-6", 24.0, "U/L"),
        ("2093-3", 181.0, "mg/dL"),
        ("8480-6", 121.0, "mm[Hg]"),
        ("39156-5", 26.4, "kg/m2"),
    ];
    let mut i = 0;
    while entries.len() < 5000 {
        let day = format!(
            "20{:02}-{:02}-{:02}",
            10 + (i / 400) % 16,
            1 + (i / 31) % 12,
            1 + i % 28
        );
        let r = match i % 5 {
            0 | 1 => {
                let (code, v, unit) = labs[i % labs.len()];
                json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final", "subject": {"reference": "Patient/p1"},
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                    "effectiveDateTime": format!("{day}T09:30:00-05:00"), "issued": format!("{day}T10:00:00.000-05:00"),
                    "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Laboratory test"}], "text": "Laboratory test"},
                    "valueQuantity": {"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
            }
            2 => {
                json!({"resourceType": "Encounter", "id": format!("e{i}"), "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up"}], "text": "Encounter for check up"}],
                    "subject": {"reference": "Patient/p1"}, "period": {"start": format!("{day}T09:00:00-05:00"), "end": format!("{day}T09:30:00-05:00")},
                    "serviceProvider": {"reference": "Organization/1", "display": "Clinic"}})
            }
            3 => {
                json!({"resourceType": "Claim", "id": format!("c{i}"), "status": "active", "use": "claim", "patient": {"reference": "Patient/p1"},
                    "billablePeriod": {"start": day, "end": day}, "created": day, "provider": {"reference": "Organization/1"},
                    "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
                    "item": [{"sequence": 1, "productOrService": {"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}]}, "net": {"value": 129.16, "currency": "USD"}}],
                    "total": {"value": 129.16, "currency": "USD"}})
            }
            _ => {
                if i % 10 == 4 {
                    json!({"resourceType": "Condition", "id": format!("d{i}"), "subject": {"reference": "Patient/p1"},
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "444814009", "display": "Viral sinusitis (disorder)"}]}, "onsetDateTime": day})
                } else {
                    json!({"resourceType": "MedicationRequest", "id": format!("m{i}"), "status": "stopped", "intent": "order", "subject": {"reference": "Patient/p1"}, "authoredOn": day,
                    "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "198405", "display": "Ibuprofen 400 MG Oral Tablet"}]}})
                }
            }
        };
        entries.push(json!({"fullUrl": format!("urn:uuid:{i}"), "resource": r}));
        i += 1;
    }
    // Written as FHIR servers write it: `resourceType` first in every resource (serde_json's
    // Value would sort it among the other keys).
    let mut text =
        String::from("{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[\n");
    for (n, e) in bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .enumerate()
    {
        let mut r = e["resource"].clone();
        let ty = r
            .as_object_mut()
            .and_then(|o| o.remove("resourceType"))
            .expect("resourceType");
        let rest = serde_json::to_string(&r).expect("json");
        let full_url = e
            .get("fullUrl")
            .map(|u| format!("\"fullUrl\":{u},"))
            .unwrap_or_default();
        let sep = if n == 0 { "" } else { ",\n" };
        text.push_str(&format!(
            "{sep}{{{full_url}\"resource\":{{\"resourceType\":{ty},{}}}",
            &rest[1..]
        ));
    }
    text.push_str("\n]}\n");
    text
}

fn benches(c: &mut Criterion) {
    let sources = embedded_knowledge();
    let kb = Knowledge::load(&sources).expect("knowledge");
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).expect("date");
    let opts = Options {
        as_of,
        drugs: vec![],
    };

    let mut g = c.benchmark_group("knowledge");
    g.sample_size(20);
    g.bench_function("load and validate", |b| {
        b.iter(|| Knowledge::load(black_box(&sources)).expect("kb"))
    });
    g.finish();

    for (name, text) in [
        ("small (21 resources)", small_bundle()),
        ("large (5,000 resources)", large_bundle()),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("parse", |b| {
            b.iter(|| fhir::parse_bundle(black_box(&text)).expect("parse"))
        });
        let record = fhir::parse_bundle(&text).expect("parse");
        g.bench_function("facts + rules", |b| {
            b.iter(|| assess(&kb, black_box(&record), &opts))
        });
        g.bench_function("parse + facts + rules", |b| {
            b.iter(|| {
                let r = fhir::parse_bundle(black_box(&text)).expect("parse");
                assess(&kb, &r, &opts)
            })
        });
        g.finish();
    }
}

/// The largest Synthea R4 bundle in `../shared/data` (real-world shape, pretty-printed), if
/// that directory is present.
fn synthea_bundle() -> Option<String> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/synthea-r4"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    std::fs::read_to_string(files.last()?).ok()
}

fn real(c: &mut Criterion) {
    let Some(text) = synthea_bundle() else { return };
    let kb = Knowledge::load(&embedded_knowledge()).expect("knowledge");
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).expect("date");
    let opts = Options {
        as_of,
        drugs: vec![],
    };
    let mut g = c.benchmark_group("synthea (largest bundle)");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| fhir::parse_bundle(black_box(&text)).expect("parse"))
    });
    g.bench_function("parse + facts + rules", |b| {
        b.iter(|| {
            let r = fhir::parse_bundle(black_box(&text)).expect("parse");
            assess(&kb, &r, &opts)
        })
    });
    g.finish();
}

criterion_group!(assess_benches, benches, real);
criterion_main!(assess_benches);
