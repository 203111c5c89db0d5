//! The discovery endpoint and the hook services.
//!
//! A hook request is checked (JWT, hook, context), the JAK inhibitor in the draft orders is
//! found (other orders get an empty card list at once), the patient record is built from the
//! prefetch — fetching from the EHR's FHIR server what the prefetch lacks, or answering 412
//! when that is impossible — and the engine's assessment becomes cards. Every answer is
//! audited with a salted hash of the patient id, never the id itself.

use super::cards::{CardContext, card};
use super::cds::{
    HookRequest, OnePass, Prefetched, Response as CdsResponse, read_request_one_pass,
    request_problems,
};
use super::{AppError, AppState, fhir_client, unix_now};
use crate::store::{AuditEntry, CardEntry};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use engine::fhir::RecordBuilder;
use engine::kb::DrugId;
use engine::record::Concept;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn discovery(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    authorize(&state, &headers, "/cds-services").await?;
    Ok(Json(super::cds::Discovery {
        services: &state.services,
    })
    .into_response())
}

/// Checks the bearer JWT for the endpoint `path` (its public URL is the audience).
pub async fn authorize(state: &AppState, headers: &HeaderMap, path: &str) -> Result<(), AppError> {
    let Some(verifier) = &state.verifier else {
        return Ok(());
    };
    let audience = format!("{}{path}", state.config.public_url);
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    verifier
        .verify(authorization, &audience, unix_now())
        .await
        .map(|_| ())
        .map_err(|e| {
            // Key-set fetch failures carry network details that are ours, not the caller's.
            if matches!(e, super::auth::AuthError::Jwks(_)) {
                tracing::warn!(error = %e, "JWT key set unavailable");
                AppError::Unauthorized("the issuer's keys could not be obtained".into())
            } else {
                AppError::Unauthorized(e.to_string())
            }
        })
}

/// A draft order for one of the knowledge's drugs.
struct DraftJak {
    drug: DrugId,
    /// Its place in `context.draftOrders.entry` (the resource is read there when a card
    /// needs it, rather than copied).
    entry: usize,
}

/// The entries of `context.draftOrders`.
fn draft_entries(context: &BTreeMap<String, Value>) -> &[Value] {
    context
        .get("draftOrders")
        .and_then(|d| d.get("entry"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The drug a draft order names: its `medicationCodeableConcept`, else the Medication its
/// `medicationReference` points to inside the order (`contained`), else the reference's
/// `display` (matched by name only). A drug behind any other reference is not known here.
fn concept_of(v: &Value) -> Concept {
    if v.get("medicationCodeableConcept").is_some() {
        return concept_in(v.get("medicationCodeableConcept"));
    }
    let Some(r) = v.get("medicationReference") else {
        return Concept::default();
    };
    let contained = r
        .get("reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|id| {
            v.get("contained")?.as_array()?.iter().find(|c| {
                c.get("resourceType").and_then(Value::as_str) == Some("Medication")
                    && c.get("id").and_then(Value::as_str) == Some(id)
            })
        });
    match contained {
        Some(m) => concept_in(m.get("code")),
        None => Concept {
            codings: vec![],
            text: r
                .get("display")
                .and_then(Value::as_str)
                .filter(|d| !d.trim().is_empty())
                .map(str::to_string),
        },
    }
}

/// A CodeableConcept given as JSON.
fn concept_in(cc: Option<&Value>) -> Concept {
    Concept {
        codings: cc
            .and_then(|c| c.get("coding"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some(engine::record::Coding {
                    system: c
                        .get("system")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    code: c.get("code")?.as_str()?.to_string(),
                    display: c.get("display").and_then(Value::as_str).map(str::to_string),
                })
            })
            .collect(),
        text: cc
            .and_then(|c| c.get("text"))
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// The draft orders that matter: the JAK inhibitor orders, and the orders whose drug is
/// only a reference to a Medication elsewhere (it may be one).
#[derive(Default)]
struct Drafts {
    jak: Vec<DraftJak>,
    /// `(entry, reference)` of the orders whose drug could not be told from the order.
    unknown: Vec<(usize, String)>,
}

/// A `Medication/id` reference, the only kind fetched from the EHR's FHIR server (an id is
/// at most 64 letters, digits, `-` and `.`, so it cannot reach any other path).
fn medication_read(reference: &str) -> Option<&str> {
    let id = reference.strip_prefix("Medication/")?;
    (!id.is_empty()
        && id.len() <= 64
        // `.` and `..` would be path steps, not ids.
        && id.bytes().any(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    .then_some(reference)
}

/// Distinct Medications read from the FHIR server for one request at most.
const MEDICATION_READS: usize = 20;

/// The JAK inhibitor orders among the draft orders (only the selected ones for order-select).
fn jak_drafts(kb: &engine::Knowledge, context: &BTreeMap<String, Value>) -> Drafts {
    let selections: Option<Vec<&str>> = context
        .get("selections")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let mut out = Drafts::default();
    for (i, e) in draft_entries(context).iter().enumerate() {
        let Some(r) = e.get("resource") else { continue };
        if r.get("resourceType").and_then(Value::as_str) != Some("MedicationRequest") {
            continue;
        }
        if let Some(sel) = &selections {
            let key = format!(
                "MedicationRequest/{}",
                r.get("id").and_then(Value::as_str).unwrap_or("")
            );
            if !sel.contains(&key.as_str()) {
                continue;
            }
        }
        // A `Medication/id` is looked up (prefetch, FHIR server) before its display is
        // trusted: the display may be only a product name or a form.
        if r.get("medicationCodeableConcept").is_none()
            && let Some(reference) = r
                .get("medicationReference")
                .and_then(|m| m.get("reference"))
                .and_then(Value::as_str)
                .and_then(medication_read)
        {
            out.unknown.push((i, reference.to_string()));
            continue;
        }
        add_drugs(kb, &mut out.jak, &concept_of(r), i);
    }
    out
}

fn add_drugs(kb: &engine::Knowledge, jak: &mut Vec<DraftJak>, concept: &Concept, entry: usize) {
    for (drug, _) in engine::facts::drugs_in(kb, concept) {
        if !jak.iter().any(|d| d.drug == drug) {
            jak.push(DraftJak { drug, entry });
        }
    }
}

/// Fetches the Medications that draft orders only refer to, from the EHR's FHIR server with
/// its token, and adds the JAK inhibitors among them to `drafts`. Returns each fetched
/// Medication's text and reference, for the record. Without a FHIR server nothing can be
/// fetched; a fetch that fails is an error (the order may be for a JAK inhibitor).
async fn fetch_draft_medications(
    state: &AppState,
    req: &HookRequest,
    drafts: &mut Drafts,
) -> Result<Vec<(String, String)>, AppError> {
    let Some(server) = &req.fhir_server else {
        by_display(&state.kb, req, drafts);
        return Ok(vec![]);
    };
    let token = req
        .fhir_authorization
        .as_ref()
        .map(|a| a.access_token.as_str());
    let mut fetched: Vec<(String, String)> = vec![];
    // The drug each Medication read names, so a Medication named by several drafts is read
    // (and parsed) once.
    let mut read: Vec<(String, Concept)> = vec![];
    let mut failed = vec![];
    for (entry, reference) in std::mem::take(&mut drafts.unknown) {
        if let Some((_, concept)) = read.iter().find(|(r, _)| *r == reference) {
            add_drugs(&state.kb, &mut drafts.jak, concept, entry);
            continue;
        }
        if read.len() + failed.len() >= MEDICATION_READS {
            failed.push((
                (entry, reference),
                format!("more than {MEDICATION_READS} Medications to read"),
            ));
            continue;
        }
        let text = match fhir_client::fetch(&state.http, server, &reference, token).await {
            Ok(pages) => pages.into_iter().next().unwrap_or_default(),
            Err(e) => {
                failed.push(((entry, reference), e));
                continue;
            }
        };
        let medication: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if medication.get("resourceType").and_then(Value::as_str) != Some("Medication") {
            failed.push((
                (entry, reference),
                "the FHIR server gave no Medication".to_string(),
            ));
            continue;
        }
        let concept = concept_in(medication.get("code"));
        add_drugs(&state.kb, &mut drafts.jak, &concept, entry);
        read.push((reference.clone(), concept));
        fetched.push((text, reference));
    }
    // A Medication the server could not give: its display, if it names one of our drugs;
    // otherwise the order may still be a JAK inhibitor, and that is an error, not silence.
    drafts.unknown = failed.iter().map(|(u, _)| u.clone()).collect();
    let unnamed = by_display(&state.kb, req, drafts);
    if let Some(((entry, reference), e)) = failed
        .iter()
        .find(|((entry, _), _)| unnamed.contains(entry))
    {
        return Err(AppError::PreconditionFailed(format!(
            "the drug of draft order {entry} (`{reference}`): {e}"
        )));
    }
    Ok(fetched)
}

/// The drafts still unknown, by the display of their `medicationReference` (matched by name
/// only). Returns the entries whose display names none of our drugs: they stay unknown.
fn by_display(kb: &engine::Knowledge, req: &HookRequest, drafts: &mut Drafts) -> Vec<usize> {
    let entries = draft_entries(&req.context);
    let mut unnamed = vec![];
    for (entry, _) in std::mem::take(&mut drafts.unknown) {
        let concept = entries
            .get(entry)
            .and_then(|e| e.get("resource"))
            .map(concept_of)
            .unwrap_or_default();
        if engine::facts::drugs_in(kb, &concept).is_empty() {
            unnamed.push(entry);
        } else {
            add_drugs(kb, &mut drafts.jak, &concept, entry);
        }
    }
    unnamed
}

/// Answers a hook request; a request that fails is audited too (with its status), so the
/// audit log holds every request, not only the answered ones.
pub async fn service(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let result = answer(&state, &id, &headers, &body).await;
    if let Err(e) = &result {
        // Best effort: the hook instance and patient of a request that may not even be JSON.
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let hook_instance = v
            .get("hookInstance")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let patient = v
            .get("context")
            .and_then(|c| c.get("patientId"))
            .and_then(Value::as_str)
            .unwrap_or("");
        state.store.record_request(
            AuditEntry {
                at: chrono::Utc::now().to_rfc3339(),
                service: id.clone(),
                hook_instance,
                patient_hash: (!patient.is_empty()).then(|| state.store.patient_hash(patient)),
                status: e.status().as_u16(),
                cards: 0,
                knowledge_version: state.kb.version.clone(),
            },
            vec![],
        );
    }
    result
}

async fn answer(
    state: &Arc<AppState>,
    id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, AppError> {
    let state = Arc::clone(state);
    let id = id.to_string();
    let Some(service) = state.services.iter().find(|s| s.id == id) else {
        return Err(AppError::NotFound(format!("no CDS service `{id}`")));
    };
    authorize(&state, headers, &format!("/cds-services/{id}")).await?;
    let order_hook = service.hook != "patient-view";
    // One pass over the body when it is well formed; otherwise the careful reading, whose
    // errors name the problem.
    // The draft orders are read once: the one-pass reader asks when it meets the prefetch.
    let early_drafts = std::cell::RefCell::new(None);
    let wanted = |context: &BTreeMap<String, Value>| {
        let drafts = jak_drafts(&state.kb, context);
        let want = !order_hook || !drafts.jak.is_empty() || !drafts.unknown.is_empty();
        *early_drafts.borrow_mut() = Some(drafts);
        want
    };
    let (req, prefetched, early_drafts) = match read_request_one_pass(body, wanted) {
        Some(OnePass { request, prefetch }) => (request, prefetch, early_drafts.into_inner()),
        None => {
            let req: HookRequest = serde_json::from_slice(body)
                .map_err(|e| AppError::BadRequest(vec![format!("body: {e}")]))?;
            (req, None, None)
        }
    };
    if req.hook != service.hook {
        return Err(AppError::BadRequest(vec![format!(
            "hook: service `{id}` answers `{}`, not `{}`",
            service.hook, req.hook
        )]));
    }
    let problems = request_problems(&req);
    if !problems.is_empty() {
        return Err(AppError::BadRequest(problems));
    }
    let patient_id = req.patient_id();
    let mut drafts = if order_hook {
        // The context the reader judged is the request's context, unchanged since.
        early_drafts.unwrap_or_else(|| jak_drafts(&state.kb, &req.context))
    } else {
        Drafts::default()
    };
    // Drugs that draft orders only refer to: from the prefetch when it holds the Medication,
    // else from the FHIR server.
    let mut prefetched = prefetched;
    if !drafts.unknown.is_empty() {
        let p = prefetched.get_or_insert_with(|| Prefetched::from_raw(&req));
        drafts
            .unknown
            .retain(|(entry, reference)| match p.builder.medication(reference) {
                Some(concept) => {
                    add_drugs(&state.kb, &mut drafts.jak, concept, *entry);
                    false
                }
                None => true,
            });
    }
    let medications = fetch_draft_medications(&state, &req, &mut drafts).await?;
    let drafts = drafts.jak;
    if order_hook && drafts.is_empty() {
        // Not a JAK inhibitor: nothing to say, answered without reading the record.
        audit(&state, &id, &req, patient_id, 200, vec![]);
        return Ok(Json(CdsResponse::default()).into_response());
    }

    let (record, fetched) = build_record(
        &state,
        &req,
        prefetched,
        &service.prefetch,
        patient_id,
        &medications,
    )
    .await?;
    let kb = &state.kb;
    let drugs: Vec<DrugId> = if order_hook {
        drafts.iter().map(|d| d.drug).collect()
    } else {
        (0..kb.drugs.len()).collect()
    };
    let as_of = state.today();
    let report = engine::assess(kb, &record, &engine::Options { as_of, drugs });
    let mut cards = vec![];
    let mut entries = vec![];
    for a in &report.assessments {
        // patient-view speaks only about drugs the patient is taking.
        if !order_hook && a.phase != "on-treatment" {
            continue;
        }
        let draft = drafts
            .iter()
            .find(|d| kb.drugs[d.drug].id == a.drug)
            .and_then(|d| draft_entries(&req.context).get(d.entry))
            .and_then(|e| e.get("resource"));
        let (c, rules) = card(kb, &report, a, &CardContext { patient_id, draft });
        entries.push(CardEntry {
            uuid: c.uuid.clone().unwrap_or_default(),
            at: chrono::Utc::now().to_rfc3339(),
            service: id.clone(),
            hook_instance: req.hook_instance.clone(),
            drug: Some(a.drug.clone()),
            decision: serde_json::to_value(a.decision)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string)),
            rules,
        });
        cards.push(c);
    }
    audit(&state, &id, &req, patient_id, 200, entries);
    if !cards.is_empty() {
        // The full assessment (both drugs) in the web app; rendered only if the link is opened.
        let url = if fetched {
            crate::web::assessment_link(&state, record, as_of)
        } else {
            crate::web::request_link(&state, body.clone(), as_of)
        };
        for c in &mut cards {
            c.links.push(super::cds::Link {
                label: "Full JAKGuard assessment and checklist".into(),
                url: url.clone(),
                kind: "absolute".into(),
                app_context: None,
            });
        }
    }
    json_response(&CdsResponse {
        cards,
        system_actions: vec![],
    })
}

/// The response serialised into one buffer sized for a usual answer (a card with its
/// markdown detail and suggestions is some kilobytes), rather than one grown by doubling from
/// a few bytes, copying the text each time.
fn json_response(r: &CdsResponse) -> Result<Response, AppError> {
    let mut body = Vec::with_capacity(16 * 1024);
    serde_json::to_writer(&mut body, r)
        .map_err(|e| AppError::Internal(format!("response serialisation: {e}")))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

fn audit(
    state: &AppState,
    service: &str,
    req: &HookRequest,
    patient_id: &str,
    status: u16,
    cards: Vec<CardEntry>,
) {
    state.store.record_request(
        AuditEntry {
            at: chrono::Utc::now().to_rfc3339(),
            service: service.to_string(),
            hook_instance: req.hook_instance.clone(),
            patient_hash: (!patient_id.is_empty()).then(|| state.store.patient_hash(patient_id)),
            status,
            cards: cards.len(),
            knowledge_version: state.kb.version.clone(),
        },
        cards,
    );
}

/// The patient's record from the prefetch, the FHIR server for what is missing, and the
/// draft orders (which count as orders being written, not as drugs being taken). The flag
/// says whether anything was fetched (then the request alone no longer gives the record).
async fn build_record(
    state: &AppState,
    req: &HookRequest,
    prefetched: Option<Prefetched>,
    templates: &BTreeMap<String, String>,
    patient_id: &str,
    medications: &[(String, String)],
) -> Result<(engine::record::Record, bool), AppError> {
    let Prefetched {
        builder: mut b,
        keys,
    } = prefetched.unwrap_or_else(|| Prefetched::from_raw(req));
    let missing: Vec<_> = templates
        .iter()
        .filter(|(k, _)| !keys.contains(k))
        .collect();
    // Draft orders' Medications fetched from the FHIR server (known by their reference).
    for (text, reference) in medications {
        b.add_json(text, &format!("fetched.{reference}"), Some(reference));
    }
    let fetched = !missing.is_empty() || !medications.is_empty();
    if !missing.is_empty() {
        let Some(server) = &req.fhir_server else {
            let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
            return Err(AppError::PreconditionFailed(format!(
                "prefetch {} missing and no fhirServer to fetch it from",
                keys.join(", ")
            )));
        };
        let token = req
            .fhir_authorization
            .as_ref()
            .map(|a| a.access_token.as_str());
        let user = req.context.get("userId").and_then(Value::as_str);
        for (key, template) in missing {
            let query = fhir_client::fill(template, patient_id, user);
            let pages = fhir_client::fetch(&state.http, server, &query, token)
                .await
                .map_err(|e| AppError::PreconditionFailed(format!("prefetch `{key}`: {e}")))?;
            for (i, page) in pages.iter().enumerate() {
                b.add_json(page, &format!("fetched.{key}[{i}]"), None);
            }
        }
    }
    Ok((finish_record(b, req)?, fetched))
}

/// The record of a hook request whose prefetch was complete, read again from its body: the
/// card link keeps the request's bytes (already in memory, freed in one piece) rather than
/// the record built from them, and rebuilds it only if someone opens the link.
pub fn record_from_request(body: &[u8]) -> Option<engine::record::Record> {
    let (req, b) = match read_request_one_pass(body, |_| true) {
        Some(OnePass {
            request,
            prefetch: Some(p),
        }) => (request, p.builder),
        _ => {
            let req: HookRequest = serde_json::from_slice(body).ok()?;
            let b = Prefetched::from_raw(&req).builder;
            (req, b)
        }
    };
    finish_record(b, &req).ok()
}

/// Adds the draft orders (as orders being written) and finishes the record.
fn finish_record(
    mut b: RecordBuilder,
    req: &HookRequest,
) -> Result<engine::record::Record, AppError> {
    let mut drafts = vec![];
    for (i, e) in draft_entries(&req.context).iter().enumerate() {
        if let Some(r) = e.get("resource") {
            if let Some(id) = r.get("id").and_then(Value::as_str) {
                drafts.push(format!(
                    "{}/{id}",
                    r.get("resourceType").and_then(Value::as_str).unwrap_or("")
                ));
            }
            b.add_value(
                r,
                &format!("context.draftOrders.entry[{i}].resource"),
                e.get("fullUrl").and_then(Value::as_str),
            );
        }
    }
    let mut record = b
        .finish()
        .map_err(|e| AppError::BadRequest(vec![e.to_string()]))?;
    for m in &mut record.medications {
        if drafts.contains(&m.reference) {
            m.status = Some("draft".into());
        }
    }
    if record.patient.id.is_none() {
        record.patient.id = Some(req.patient_id().to_string());
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_medication_ids_are_read_from_the_fhir_server() {
        for ok in ["Medication/tofa", "Medication/a.b-1", "Medication/7"] {
            assert_eq!(medication_read(ok), Some(ok));
        }
        for refused in [
            "Medication/",
            "Medication/.",
            "Medication/..",
            "Medication/-.",
            "Medication/x/y",
            "Medication/x?y=1",
            "Medication/tofa/_history/2",
            "Patient/p1",
            "#med",
            "urn:uuid:1234",
            "https://ehr.example/fhir/Medication/x",
        ] {
            assert_eq!(medication_read(refused), None, "{refused}");
        }
        let long = format!("Medication/{}", "a".repeat(65));
        assert_eq!(medication_read(&long), None);
    }
}
