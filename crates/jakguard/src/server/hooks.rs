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
use std::collections::{BTreeMap, HashMap, HashSet};
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

/// The draft orders that matter: the JAK inhibitor orders, and the orders whose drug is a
/// Medication outside the order (it may be one).
#[derive(Default)]
struct Drafts {
    jak: Vec<DraftJak>,
    /// Orders whose drug is a reference still to look up.
    unknown: Vec<Unknown>,
    /// The drug each looked-up reference names, given to the record so that it reads the
    /// order as naming the same drug.
    named: Vec<(String, Concept)>,
    /// Orders whose drug cannot be told, and why. Any of them may be a JAK inhibitor.
    untold: Vec<Untold>,
    /// Medications read from the FHIR server so far for this request (one budget, shared
    /// with the orders on file).
    reads: usize,
}

/// A draft order whose drug could not be told.
struct Untold {
    entry: usize,
    /// The reference that could not be followed, or `None` when the order itself does not
    /// read.
    reference: Option<String>,
    why: String,
}

impl Untold {
    fn describe(&self) -> String {
        match &self.reference {
            Some(r) => format!(
                "the drug of draft order {} (`{r}`) cannot be told: {}",
                self.entry, self.why
            ),
            None => format!(
                "the drug of draft order {} cannot be told: context.draftOrders.entry[{}].resource: {}",
                self.entry, self.entry, self.why
            ),
        }
    }
}

/// A draft order whose drug is a reference to a Medication outside it.
struct Unknown {
    entry: usize,
    reference: String,
    /// What the order itself says: at most the reference's display, matched by name only
    /// if the Medication cannot be found.
    display: Concept,
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

/// The names a reference to a Medication may be found by: as written; without its version
/// (`Medication/1/_history/2`); and, for a full URL on the EHR's own FHIR server, as
/// `Medication/id` (FHIR: a relative reference is relative to that server). A full URL on
/// another server keeps only its own names, so it is never read with the EHR's token.
fn lookup_names(reference: &str, fhir_server: Option<&str>) -> Vec<String> {
    let mut names = vec![reference.to_string()];
    let base = engine::fhir::unversioned(reference).unwrap_or(reference);
    if base != reference {
        names.push(base.to_string());
    }
    if let Some(server) = fhir_server.map(|s| s.trim_end_matches('/'))
        && let Some(relative) = base
            .strip_prefix(server)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|r| r.starts_with("Medication/"))
    {
        names.push(relative.to_string());
    }
    names
}

/// Distinct Medications read from the FHIR server for one request at most.
const MEDICATION_READS: usize = 20;

/// The JAK inhibitor orders among the draft orders (only the selected ones for order-select).
/// A draft's drug is read by the engine, exactly as the record will read it.
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
        match engine::fhir::named_medication(r) {
            // A Medication elsewhere is looked up (draft orders, prefetch, FHIR server) before
            // the display is trusted: the display may be only a product name or a form.
            Ok(named) => match named.reference {
                Some(reference) => out.unknown.push(Unknown {
                    entry: i,
                    reference,
                    display: named.concept,
                }),
                None => add_drugs(kb, &mut out.jak, &named.concept, i),
            },
            Err(e) => out.untold.push(Untold {
                entry: i,
                reference: None,
                why: e,
            }),
        }
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

/// The Medications among the draft orders' own entries, by full URL and `Medication/id`
/// (each read once, however many orders name it).
fn draft_medications(context: &BTreeMap<String, Value>) -> HashMap<String, Concept> {
    let mut by = HashMap::new();
    for e in draft_entries(context) {
        let Some(code) = e.get("resource").and_then(engine::fhir::medication_code) else {
            continue;
        };
        let id = e
            .get("resource")
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str);
        let full_url = e.get("fullUrl").and_then(Value::as_str);
        for name in [
            full_url.map(str::to_string),
            id.map(|id| format!("Medication/{id}")),
        ]
        .into_iter()
        .flatten()
        {
            by.entry(name).or_insert_with(|| code.clone());
        }
    }
    by
}

/// The drug of a Medication read from the EHR's FHIR server (`path` is a `Medication/id`
/// accepted by `medication_read`).
async fn read_medication(
    state: &AppState,
    server: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Concept, String> {
    let text = fhir_client::read(&state.http, server, path, token).await?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    engine::fhir::medication_code(&value)
        .ok_or_else(|| "the FHIR server gave no Medication with a code".to_string())
}

/// Distinct references looked up for one request at most (a real order set names a few).
const MEDICATION_LOOKUPS: usize = 50;

/// Finds the drug of each draft order that names a Medication outside it: among the draft
/// orders' entries, in the prefetch, else read from the EHR's FHIR server with its token;
/// failing those, by the reference's display if it names one of our drugs. An order whose
/// drug stays unknown goes to `drafts.untold`. Each distinct reference is looked up once.
async fn resolve_drafts(
    state: &AppState,
    req: &HookRequest,
    prefetched: &mut Option<Prefetched>,
    drafts: &mut Drafts,
) {
    if drafts.unknown.is_empty() {
        return;
    }
    let token = req.token();
    let server = req.fhir_server.as_deref();
    let in_drafts = draft_medications(&req.context);
    // Each reference's outcome, under every name it was looked up by.
    let mut seen: HashMap<String, Result<Concept, String>> = HashMap::new();
    let mut lookups = 0;
    let mut named: HashSet<String> = HashSet::new();
    for u in std::mem::take(&mut drafts.unknown) {
        let names = lookup_names(&u.reference, server);
        let outcome = match names.iter().find_map(|n| seen.get(n)) {
            Some(known) => known.clone(),
            None if lookups >= MEDICATION_LOOKUPS => Err(format!(
                "more than {MEDICATION_LOOKUPS} Medications to look up"
            )),
            // A contained Medication the order lacks is nowhere else.
            None if u.reference.starts_with('#') => {
                Err("the order contains no Medication of that id with a code".to_string())
            }
            None => {
                lookups += 1;
                let p = prefetched.get_or_insert_with(|| Prefetched::from_raw(req));
                let found = names
                    .iter()
                    .find_map(|n| in_drafts.get(n).or_else(|| p.builder.medication(n)))
                    .cloned();
                let outcome = match found {
                    Some(c) => Ok(c),
                    None => {
                        let readable = names.iter().find_map(|n| medication_read(n));
                        match (server, readable) {
                            (None, _) => Err("no fhirServer to read it from".to_string()),
                            (Some(_), None) => {
                                Err("not a Medication on the EHR's FHIR server".to_string())
                            }
                            (Some(_), Some(_)) if drafts.reads >= MEDICATION_READS => {
                                Err(format!("more than {MEDICATION_READS} Medications to read"))
                            }
                            (Some(server), Some(path)) => {
                                drafts.reads += 1;
                                read_medication(state, server, path, token).await
                            }
                        }
                    }
                };
                for n in &names {
                    seen.insert(n.clone(), outcome.clone());
                }
                outcome
            }
        };
        match outcome {
            Ok(concept) => {
                add_drugs(&state.kb, &mut drafts.jak, &concept, u.entry);
                if named.insert(u.reference.clone()) {
                    drafts.named.push((u.reference, concept));
                }
            }
            // The Medication cannot be had: its display, if it names one of our drugs (the
            // record falls back to the same display).
            Err(_) if !engine::facts::drugs_in(&state.kb, &u.display).is_empty() => {
                add_drugs(&state.kb, &mut drafts.jak, &u.display, u.entry);
            }
            Err(why) => drafts.untold.push(Untold {
                entry: u.entry,
                reference: Some(u.reference),
                why,
            }),
        }
    }
}

/// A card for draft orders whose drug could not be told, given beside the JAK inhibitor
/// cards: any of them may be a JAK inhibitor too, and JAKGuard has not checked it.
fn untold_card(untold: &[Untold]) -> super::cds::Card {
    use std::fmt::Write;
    // `writeln!` into a `String` cannot fail.
    let mut detail = String::from(
        "JAKGuard could not tell which drug these draft orders are for, so it has **not** \
         checked them. If any of them is tofacitinib (Xeljanz) or upadacitinib (Rinvoq), \
         check it before signing:\n\n",
    );
    for u in untold.iter().take(UNTOLD_LISTED) {
        // The reference and the reason may carry the request's own text: escaped, so that
        // nothing in them renders as a link, an image or markup.
        let _ = match &u.reference {
            Some(r) => writeln!(
                detail,
                "- Draft order {}: `medicationReference` {} — {}",
                u.entry,
                markdown_text(r),
                markdown_text(&u.why)
            ),
            None => writeln!(
                detail,
                "- Draft order {}: it does not read — {}",
                u.entry,
                markdown_text(&u.why)
            ),
        };
    }
    if untold.len() > UNTOLD_LISTED {
        detail.push_str(&format!(
            "- and {} more draft orders\n",
            untold.len() - UNTOLD_LISTED
        ));
    }
    warning_card(
        "Another draft order's drug could not be told: not checked by JAKGuard".to_string(),
        detail,
    )
}

/// A warning card of JAKGuard's own (about what it could not check, not from a rule).
fn warning_card(summary: String, detail: String) -> super::cds::Card {
    super::cds::Card {
        uuid: Some(uuid::Uuid::now_v7().to_string()),
        summary,
        detail: Some(detail),
        indicator: "warning".to_string(),
        source: super::cds::Source {
            label: "JAKGuard".to_string(),
            url: None,
            topic: None,
        },
        suggestions: vec![],
        selection_behavior: None,
        override_reasons: vec![],
        links: vec![],
    }
}

/// The audit row of a `warning_card`, counted for feedback under `rule`.
fn warning_entry(c: &super::cds::Card, service: &str, req: &HookRequest, rule: &str) -> CardEntry {
    CardEntry {
        uuid: c.uuid.clone().unwrap_or_default(),
        at: chrono::Utc::now().to_rfc3339(),
        service: service.to_string(),
        hook_instance: req.hook_instance.clone(),
        drug: None,
        decision: None,
        rules: vec![rule.to_string()],
    }
}

/// Text from a request made inert for markdown (see `cards::push_inline`), at most 200
/// characters of it.
fn markdown_text(s: &str) -> String {
    let cut: String = s.chars().take(200).collect();
    let mut out = String::with_capacity(cut.len() + 16);
    super::cards::push_inline(&mut out, &cut);
    out
}

/// How a card starts whose assessment rests on search results not read in full.
const INCOMPLETE_PREFIX: &str = "Incomplete data · ";

/// The rule id under which feedback on `incomplete_card` is counted.
const INCOMPLETE_RULE: &str = "jakguard.incomplete-data";

/// The card for a record the FHIR server did not give in full when there is nothing else to
/// say (its detail gets the reasons like every card's).
fn incomplete_card() -> super::cds::Card {
    warning_card(
        format!(
            "{INCOMPLETE_PREFIX}JAKGuard could not read this patient's record in full and has not checked it"
        ),
        "Whether this patient takes tofacitinib (Xeljanz) or upadacitinib (Rinvoq), and what \
         their monitoring needs, could not be checked on the part of the record that was read."
            .to_string(),
    )
}

/// Orders whose drug could not be told that an answer lists by name (the rest are counted).
const UNTOLD_LISTED: usize = 10;

/// The rule id under which feedback on `untold_card` is counted.
const UNTOLD_RULE: &str = "jakguard.draft-drug-untold";

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
    // Drugs that draft orders name only by a reference to a Medication elsewhere.
    let mut prefetched = prefetched;
    resolve_drafts(&state, &req, &mut prefetched, &mut drafts).await;
    // A draft order whose drug cannot be told may be a JAK inhibitor: with no JAK inhibitor
    // known, that is the answer (400 if the order does not read, else 412); beside known
    // ones, a card says which orders were not checked.
    let untold = std::mem::take(&mut drafts.untold);
    if drafts.jak.is_empty() && !untold.is_empty() {
        let mut problems: Vec<String> = untold
            .iter()
            .take(UNTOLD_LISTED)
            .map(Untold::describe)
            .collect();
        if untold.len() > UNTOLD_LISTED {
            problems.push(format!("and {} more", untold.len() - UNTOLD_LISTED));
        }
        return Err(if untold.iter().any(|u| u.reference.is_none()) {
            AppError::BadRequest(problems)
        } else {
            AppError::PreconditionFailed(problems.join("; "))
        });
    }
    if order_hook && drafts.jak.is_empty() {
        // Not a JAK inhibitor: nothing to say, answered without reading the record.
        audit(&state, &id, &req, patient_id, 200, vec![]);
        return Ok(Json(CdsResponse::default()).into_response());
    }
    let Built {
        record,
        fetched,
        incomplete,
    } = build_record(
        &state,
        &req,
        prefetched,
        &service.prefetch,
        patient_id,
        &drafts.named,
        MEDICATION_READS.saturating_sub(drafts.reads),
    )
    .await?;
    let drafts = drafts.jak;
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
    if !untold.is_empty() {
        let c = untold_card(&untold);
        entries.push(warning_entry(&c, &id, &req, UNTOLD_RULE));
        cards.push(c);
    }
    // Results the FHIR server did not give in full: said first in every card (at least a
    // warning), since any decision may rest on what is missing. With no card to say it in
    // (patient-view: no JAK inhibitor found), a card of its own when a medication search was
    // cut, since the missing part may be the very order.
    if !incomplete.is_empty() {
        if cards.is_empty() && incomplete.iter().any(|i| i.medications) {
            let c = incomplete_card();
            entries.push(warning_entry(&c, &id, &req, INCOMPLETE_RULE));
            cards.push(c);
        }
        let mut notice = String::new();
        for i in &incomplete {
            notice.push_str("**Incomplete data:** ");
            notice.push_str(&i.why);
            notice.push_str(". The assessment may miss results; check them in the record.\n\n");
        }
        for c in &mut cards {
            let detail = c.detail.get_or_insert_with(String::new);
            detail.insert_str(0, &notice);
            if c.indicator == "info" {
                c.indicator = "warning".to_string();
            }
            if !c.summary.starts_with(INCOMPLETE_PREFIX) {
                c.summary =
                    super::cards::truncate(&format!("{INCOMPLETE_PREFIX}{}", c.summary), 139);
            }
        }
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
    named: &[(String, Concept)],
    reads_left: usize,
) -> Result<Built, AppError> {
    let Prefetched {
        builder: mut b,
        keys,
    } = prefetched.unwrap_or_else(|| Prefetched::from_raw(req));
    let missing: Vec<_> = templates
        .iter()
        .filter(|(k, _)| !keys.contains(k))
        .collect();
    // The drugs of draft orders naming a Medication elsewhere, as found for them. Rebuilding
    // the record from the request alone could not name them all (a Medication read from the
    // FHIR server, a full URL on it), so the card link keeps this record.
    for (reference, concept) in named {
        b.name_medication(reference, concept.clone());
    }
    let fetched = !missing.is_empty() || !named.is_empty();
    let mut incomplete = vec![];
    if !missing.is_empty() {
        let Some(server) = &req.fhir_server else {
            let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
            return Err(AppError::PreconditionFailed(format!(
                "prefetch {} missing and no fhirServer to fetch it from",
                keys.join(", ")
            )));
        };
        let token = req.token();
        let user = req.context.get("userId").and_then(Value::as_str);
        for (key, template) in missing {
            let query = fhir_client::fill(template, patient_id, user);
            let got = fhir_client::fetch(&state.http, server, &query, token)
                .await
                .map_err(|e| AppError::PreconditionFailed(format!("prefetch `{key}`: {e}")))?;
            for (i, page) in got.pages.iter().enumerate() {
                b.add_json(page, &format!("fetched.{key}[{i}]"), None);
            }
            if let Some(why) = got.incomplete {
                b.issue(&format!("fetched.{key}"), why.clone());
                incomplete.push(Incomplete {
                    why,
                    medications: template.starts_with("Medication"),
                });
            }
        }
    }
    // Orders on file naming a Medication the prefetch lacks: read from the FHIR server, or a
    // patient already taking a JAK inhibitor by reference would not be known to be. A failed
    // read leaves the record's own input issue ("the medication is unknown").
    let mut read_any = false;
    if let Some(server) = &req.fhir_server {
        let token = req.token();
        let readable = |r: &str| {
            lookup_names(r, Some(server))
                .iter()
                .find_map(|n| medication_read(n).map(str::to_string))
        };
        let references: Vec<(String, String)> = b
            .unresolved_medications(reads_left, |r| readable(r).is_some())
            .into_iter()
            .filter_map(|r| Some((r.to_string(), readable(r)?)))
            .collect();
        for (reference, path) in references {
            if let Ok(concept) = read_medication(state, server, &path, token).await {
                b.name_medication(&reference, concept);
                read_any = true;
            }
        }
    }
    Ok(Built {
        record: finish_record(b, req)?,
        fetched: fetched || read_any,
        incomplete,
    })
}

/// A hook request's record, whether anything was fetched for it (then the request alone no
/// longer gives it), and the searches whose results could not all be read.
struct Built {
    record: engine::record::Record,
    fetched: bool,
    incomplete: Vec<Incomplete>,
}

/// A search whose results could not all be read.
struct Incomplete {
    why: String,
    /// A search for the patient's medications (the missing part may be a JAK inhibitor).
    medications: bool,
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
    let mut drafts: HashSet<String> = HashSet::new();
    for (i, e) in draft_entries(&req.context).iter().enumerate() {
        if let Some(r) = e.get("resource") {
            if let Some(id) = r.get("id").and_then(Value::as_str) {
                drafts.insert(format!(
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
        if drafts.contains(m.reference.as_str()) {
            m.status = Some("draft".into());
        }
    }
    if record.patient.id.is_none() {
        record.patient.id = Some(req.patient_id().into());
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

    #[test]
    fn a_reference_is_looked_up_by_its_names_on_the_ehrs_own_server_only() {
        let server = Some("https://ehr.example/fhir/");
        assert_eq!(
            lookup_names("https://ehr.example/fhir/Medication/x/_history/2", server),
            [
                "https://ehr.example/fhir/Medication/x/_history/2",
                "https://ehr.example/fhir/Medication/x",
                "Medication/x"
            ]
        );
        assert_eq!(
            lookup_names("Medication/x/_history/2", server),
            ["Medication/x/_history/2", "Medication/x"]
        );
        // Another server, a look-alike host, or not a Medication: only the name as written.
        for other in [
            "https://other.example/fhir/Medication/x",
            "https://ehr.example/fhirx/Medication/x",
            "https://ehr.example/fhir/Patient/x",
            "urn:uuid:1234",
        ] {
            assert_eq!(lookup_names(other, server), [other], "{other}");
        }
        assert_eq!(
            lookup_names("https://ehr.example/fhir/Medication/x", None),
            ["https://ehr.example/fhir/Medication/x"]
        );
    }
}
