//! The clinicians' quick check: age, sex and a few values from `knowledge/clinician/` typed
//! into a form, written as a FHIR Bundle with the knowledge's own codes and units, and read
//! back through the same front door as an upload (`engine::fhir::parse_bundle`). What the form
//! does not ask for is absent, so the assessment asks for it as data needed.

use super::clinician::{form_with_quick_errors, see_other};
use crate::server::AppState;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use engine::Knowledge;
use engine::kb::quick::QuickKind;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// What the form sent, by field name (kept to show the form again on an error).
pub type Values = HashMap<String, String>;

fn field<'a>(v: &'a Values, k: &str) -> &'a str {
    v.get(k).map(|s| s.trim()).unwrap_or("")
}

/// The Bundle for the form's values, or the problems (field, message).
pub fn bundle(
    kb: &Knowledge,
    v: &Values,
    as_of: NaiveDate,
) -> Result<Value, Vec<(String, String)>> {
    let mut errors = vec![];
    let get = |k: &str| field(v, k);
    let age = match get("age").parse::<i32>() {
        Ok(a) if (18..=120).contains(&a) => Some(a),
        _ => {
            errors.push((
                "age".to_string(),
                "Enter the age in whole years (18 to 120): JAK inhibitors for axial spondyloarthritis are for adults.".to_string(),
            ));
            None
        }
    };
    let sex = match get("sex") {
        s @ ("female" | "male") => Some(s.to_string()),
        _ => {
            errors.push((
                "sex".into(),
                "Choose the sex recorded for the patient.".into(),
            ));
            None
        }
    };
    let date = as_of.to_string();
    let mut entries = vec![];
    for (i, f) in kb.quick_check.iter().enumerate() {
        let coding = json!({ "system": f.system, "code": f.code, "display": f.display });
        let id = format!("q{i}");
        match &f.kind {
            QuickKind::Lab { unit, .. } => {
                let raw = get(&f.id);
                if raw.is_empty() {
                    continue;
                }
                match raw.parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 0.0 => entries.push(json!({ "resource": {
                        "resourceType": "Observation", "id": id, "status": "final",
                        "code": { "coding": [coding] },
                        "subject": { "reference": "Patient/quick-check" },
                        "effectiveDateTime": date,
                        "valueQuantity": { "value": x, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit },
                    }})),
                    _ => errors.push((
                        f.id.clone(),
                        format!("{}: enter a number in {unit} (for example 4.5), or leave it empty.", f.label),
                    )),
                }
            }
            QuickKind::Condition if get(&f.id) == "yes" => entries.push(json!({ "resource": {
                "resourceType": "Condition", "id": id,
                "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
                "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed" }] },
                "code": { "coding": [coding] },
                "subject": { "reference": "Patient/quick-check" },
                "recordedDate": date,
            }})),
            QuickKind::Medication if get(&f.id) == "yes" => entries.push(json!({ "resource": {
                "resourceType": "MedicationStatement", "id": id, "status": "completed",
                "medicationCodeableConcept": { "coding": [coding] },
                "subject": { "reference": "Patient/quick-check" },
            }})),
            _ => {}
        }
    }
    let (Some(age), Some(sex)) = (age, sex) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    // A birth date that gives exactly `age` on the assessment date.
    let birth = as_of
        .with_year(as_of.year() - age)
        .or_else(|| as_of.pred_opt().and_then(|d| d.with_year(d.year() - age)))
        .and_then(|d| d.pred_opt())
        .unwrap_or(as_of);
    let mut all = vec![json!({ "resource": {
        "resourceType": "Patient", "id": "quick-check", "gender": sex, "birthDate": birth.to_string(),
    }})];
    all.extend(entries);
    Ok(json!({ "resourceType": "Bundle", "type": "collection", "entry": all }))
}

pub async fn assess_quick(
    State(state): State<Arc<AppState>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let values: Values = match form {
        Ok(Form(fields)) => fields.into_iter().collect(),
        Err(_) => Values::new(),
    };
    let as_of_text = field(&values, "as_of");
    let as_of = if as_of_text.is_empty() {
        Ok(state.today())
    } else {
        NaiveDate::parse_from_str(as_of_text, "%Y-%m-%d").map_err(|_| {
            vec![(
                "quick_as_of".to_string(),
                "The date is not a date: use year-month-day, for example 2026-11-27.".to_string(),
            )]
        })
    };
    let result = as_of.and_then(|d| bundle(&state.kb, &values, d).map(|b| (b, d)));
    let errors = match result {
        Ok((b, as_of)) => match engine::fhir::parse_bundle(&b.to_string()) {
            Ok(record) => {
                let id = state.assessments.insert(record, as_of);
                return see_other(&format!("/clinician/assessment/{id}"));
            }
            Err(_) => {
                // Our own Bundle failed to read: a fault of ours, not the user's. The details
                // could quote the values entered, so they are not logged.
                tracing::error!("the quick-check bundle does not parse");
                vec![(
                    "age".to_string(),
                    "The quick check could not be assessed; please upload a Bundle instead."
                        .to_string(),
                )]
            }
        },
        Err(e) => e,
    };
    form_with_quick_errors(&state, StatusCode::UNPROCESSABLE_ENTITY, values, errors)
}
