//! The discovery document. Its prefetch templates are built from the knowledge base, so the
//! Observation search always asks for exactly the codes the rules read.

use super::cds::Service;
use engine::Knowledge;
use std::collections::{BTreeMap, BTreeSet};

pub const ORDER_SELECT: &str = "jakguard-order-select";
pub const ORDER_SIGN: &str = "jakguard-order-sign";
pub const PATIENT_VIEW: &str = "jakguard-patient-view";

/// Prefetch templates: key → relative FHIR query.
pub fn prefetch(kb: &Knowledge) -> BTreeMap<String, String> {
    let mut codes: BTreeSet<String> = BTreeSet::new();
    for lab in &kb.labs {
        for vs in &lab.valuesets {
            for (system, code) in &kb.valueset(*vs).codes {
                codes.insert(format!("{system}|{code}"));
            }
        }
    }
    let p = "{{context.patientId}}";
    let mut m = BTreeMap::new();
    m.insert("patient".into(), format!("Patient/{p}"));
    m.insert("conditions".into(), format!("Condition?patient={p}"));
    // Within CDS Hooks' recommended query subset (no `_include`): a Medication an order
    // names by reference is read from the FHIR server when the prefetch lacks it.
    m.insert(
        "medicationRequests".into(),
        format!("MedicationRequest?patient={p}"),
    );
    m.insert(
        "medicationStatements".into(),
        format!("MedicationStatement?patient={p}"),
    );
    m.insert("immunizations".into(), format!("Immunization?patient={p}"));
    m.insert(
        "allergies".into(),
        format!("AllergyIntolerance?patient={p}"),
    );
    m.insert(
        "observations".into(),
        format!(
            "Observation?patient={p}&code={}",
            codes.into_iter().collect::<Vec<_>>().join(",")
        ),
    );
    m
}

pub fn services(kb: &Knowledge) -> Vec<Service> {
    let prefetch = prefetch(kb);
    let drugs: Vec<String> = kb
        .drugs
        .iter()
        .map(|d| format!("{} ({})", d.name.to_lowercase(), d.brands.join(", ")))
        .collect();
    let drugs = drugs.join(" and ");
    let usage = Some(format!(
        "Knowledge {} ({} labels). Supports clinical judgement; does not replace it.",
        kb.version, kb.jurisdiction
    ));
    vec![
        Service {
            hook: "order-select".into(),
            title: "JAKGuard: JAK inhibitor safety check".into(),
            description: format!(
                "When {drugs} is selected for a patient with axial spondyloarthritis: start / caution / data needed / do not start, the label dose, tests to order first, with evidence and citations."
            ),
            id: ORDER_SELECT.into(),
            prefetch: prefetch.clone(),
            usage_requirements: usage.clone(),
        },
        Service {
            hook: "order-sign".into(),
            title: "JAKGuard: JAK inhibitor safety check at signing".into(),
            description: format!(
                "When an order for {drugs} is signed: the same check, with suggestions to order missing tests or change the dose."
            ),
            id: ORDER_SIGN.into(),
            prefetch: prefetch.clone(),
            usage_requirements: usage.clone(),
        },
        Service {
            hook: "patient-view".into(),
            title: "JAKGuard: JAK inhibitor monitoring".into(),
            description: format!(
                "When the chart of a patient on {drugs} is opened: monitoring due or overdue, and anything that now argues against continuing."
            ),
            id: PATIENT_VIEW.into(),
            prefetch,
            usage_requirements: usage,
        },
    ]
}
