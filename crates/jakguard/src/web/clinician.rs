//! The clinician pages: upload or paste a FHIR Bundle (or try a demo patient), then the full
//! assessment for both drugs and a printable pre-treatment checklist.
//!
//! The upload is parsed in memory; the record goes into the short-lived assessment cache
//! (never to disk, never to the log) and the browser is redirected to its unguessable link,
//! the same view the CDS Hooks cards link to. The assessment runs when the page is opened.

use super::cache::{Cached, Held};
use super::render;
use super::view::{Source, sources_out};
use crate::render::{decision_label, decision_text, phase_text};
use crate::server::AppState;
use askama::Template;
use axum::Form;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::FormRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use engine::kb::{Category, Decision};
use engine::record::Record;
use engine::report::{MonitoringStatus, Report, ScreeningStatus};
use serde::Deserialize;
use std::sync::Arc;

/// The date the demo records were written for: their results are recent as of this day.
pub const DEMO_AS_OF: &str = "2026-11-27";

pub struct Demo {
    pub id: &'static str,
    pub label: &'static str,
    json: &'static str,
}

/// The demo patients of `examples/`, embedded so the home page works from the binary alone.
pub const DEMOS: &[Demo] = &[
    Demo {
        id: "as-eligible",
        label: "Ankylosing spondylitis, screening complete",
        json: include_str!("../../../../examples/as-eligible.json"),
    },
    Demo {
        id: "nraxspa-woman",
        label: "Woman with non-radiographic axial spondyloarthritis",
        json: include_str!("../../../../examples/nraxspa-woman.json"),
    },
    Demo {
        id: "older-smoker-renal",
        label: "Older smoker with reduced kidney function",
        json: include_str!("../../../../examples/older-smoker-renal.json"),
    },
    Demo {
        id: "on-tofacitinib-low-neutrophils",
        label: "On tofacitinib with low neutrophils",
        json: include_str!("../../../../examples/on-tofacitinib-low-neutrophils.json"),
    },
    Demo {
        id: "screening-not-done",
        label: "Screening tests not done yet",
        json: include_str!("../../../../examples/screening-not-done.json"),
    },
];

/// Keeps `record` for a short time and returns the absolute link to its assessment view
/// (for CDS Hooks cards). Cheap: nothing is rendered until the link is opened.
pub fn assessment_link(state: &AppState, record: Record, as_of: NaiveDate) -> String {
    let id = state.assessments.insert(record, as_of);
    link(state, &id)
}

/// The link for a CDS Hooks request whose prefetch held the whole record: the request's
/// bytes are kept, and the record is rebuilt from them only when the link is opened.
pub fn request_link(state: &AppState, body: axum::body::Bytes, as_of: NaiveDate) -> String {
    let id = state.assessments.insert_request(body, as_of);
    link(state, &id)
}

fn link(state: &AppState, id: &str) -> String {
    format!(
        "{}/clinician/assessment/{id}",
        state.config.public_url.trim_end_matches('/')
    )
}

// ---- the upload form -------------------------------------------------------------------------

struct DemoLink {
    id: &'static str,
    label: &'static str,
}

struct QuickView {
    id: String,
    label: String,
    /// A number (with its unit) rather than a tick box.
    unit: Option<String>,
    value: String,
    checked: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "clinician.html")]
struct FormPage {
    error: Option<String>,
    pasted: String,
    as_of: String,
    demos: Vec<DemoLink>,
    demo_as_of: &'static str,
    max_mb: usize,
    quick_labs: Vec<QuickView>,
    quick_ticks: Vec<QuickView>,
    quick_errors: Vec<(String, String)>,
    age: String,
    sex: String,
    quick_as_of: String,
}

fn form_page(state: &AppState, error: Option<String>, pasted: String, as_of: String) -> FormPage {
    quick_page(
        state,
        error,
        pasted,
        as_of,
        &super::quick::Values::new(),
        vec![],
    )
}

fn quick_page(
    state: &AppState,
    error: Option<String>,
    pasted: String,
    as_of: String,
    values: &super::quick::Values,
    quick_errors: Vec<(String, String)>,
) -> FormPage {
    let value = |k: &str| values.get(k).cloned().unwrap_or_default();
    let views: Vec<QuickView> = state
        .kb
        .quick_check
        .iter()
        .map(|f| QuickView {
            id: f.id.clone(),
            label: f.label.clone(),
            unit: match &f.kind {
                engine::kb::quick::QuickKind::Lab { unit, .. } => Some(unit.clone()),
                _ => None,
            },
            value: value(&f.id),
            checked: value(&f.id) == "yes",
            error: quick_errors
                .iter()
                .find(|(k, _)| *k == f.id)
                .map(|(_, m)| m.clone()),
        })
        .collect();
    let (quick_labs, quick_ticks) = views.into_iter().partition(|v| v.unit.is_some());
    FormPage {
        error,
        pasted,
        as_of,
        demos: DEMOS
            .iter()
            .map(|d| DemoLink {
                id: d.id,
                label: d.label,
            })
            .collect(),
        demo_as_of: DEMO_AS_OF,
        max_mb: state.config.max_body_bytes / (1024 * 1024),
        quick_labs,
        quick_ticks,
        quick_errors,
        age: value("age"),
        sex: value("sex"),
        quick_as_of: value("as_of"),
    }
}

/// The form again after a quick check that could not be used, with everything kept.
pub(super) fn form_with_quick_errors(
    state: &AppState,
    status: StatusCode,
    values: super::quick::Values,
    errors: Vec<(String, String)>,
) -> Response {
    render(
        status,
        &quick_page(state, None, String::new(), String::new(), &values, errors),
    )
}

pub async fn form(State(state): State<Arc<AppState>>) -> Response {
    render(
        StatusCode::OK,
        &form_page(&state, None, String::new(), String::new()),
    )
}

pub(super) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// What the upload form sent.
#[derive(Default)]
struct Upload {
    file: Option<(String, Vec<u8>)>,
    pasted: String,
    as_of: String,
}

async fn read_upload(mut m: Multipart) -> Result<Upload, String> {
    let mut u = Upload::default();
    loop {
        let field = match m.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(format!("the upload could not be read ({})", e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().unwrap_or("").to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| format!("the upload could not be read ({})", e.body_text()))?;
        match name.as_str() {
            "bundle_file" if !bytes.is_empty() => u.file = Some((file_name, bytes.to_vec())),
            "bundle_text" => u.pasted = String::from_utf8_lossy(&bytes).into_owned(),
            "as_of" => u.as_of = String::from_utf8_lossy(&bytes).trim().to_string(),
            _ => {}
        }
    }
    Ok(u)
}

pub async fn assess_upload(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let again = |error: String, pasted: String, as_of: String| {
        render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_page(&state, Some(error), pasted, as_of),
        )
    };
    let upload = match multipart {
        Ok(m) => read_upload(m).await,
        Err(e) => Err(format!(
            "the form was not sent as a file upload ({})",
            e.body_text()
        )),
    };
    let u = match upload {
        Ok(u) => u,
        Err(e) => {
            return again(
                format!("Nothing was assessed: {e}."),
                String::new(),
                String::new(),
            );
        }
    };
    let as_of = if u.as_of.is_empty() {
        state.today()
    } else {
        match NaiveDate::parse_from_str(&u.as_of, "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) => {
                return again(
                    format!(
                        "The date `{}` is not a date: use year-month-day, for example 2026-11-27.",
                        u.as_of
                    ),
                    u.pasted,
                    u.as_of,
                );
            }
        }
    };
    let (what, text) = match (&u.file, u.pasted.trim().is_empty()) {
        (Some((name, bytes)), _) => match std::str::from_utf8(bytes) {
            Ok(t) => (format!("the file `{name}`"), t.to_string()),
            Err(_) => {
                return again(
                    format!("The file `{name}` is not text (FHIR JSON is UTF-8 text)."),
                    u.pasted,
                    u.as_of,
                );
            }
        },
        (None, false) => ("the pasted text".to_string(), u.pasted.clone()),
        (None, true) => {
            return again(
                "Choose a FHIR Bundle file or paste one into the text box.".into(),
                u.pasted,
                u.as_of,
            );
        }
    };
    match engine::fhir::parse_bundle(&text) {
        Ok(record) => {
            let id = state.assessments.insert(record, as_of);
            see_other(&format!("/clinician/assessment/{id}"))
        }
        Err(e) => again(
            format!(
                "{what} could not be used: {}{}",
                e.message,
                if e.location.is_empty() {
                    String::new()
                } else {
                    format!(" (at {})", e.location)
                }
            ),
            u.pasted,
            u.as_of,
        ),
    }
}

#[derive(Deserialize)]
pub struct DemoForm {
    #[serde(default)]
    demo: String,
}

pub async fn assess_demo(
    State(state): State<Arc<AppState>>,
    form: Result<Form<DemoForm>, FormRejection>,
) -> Response {
    let demo = form
        .ok()
        .and_then(|Form(f)| DEMOS.iter().find(|d| d.id == f.demo));
    let as_of = NaiveDate::parse_from_str(DEMO_AS_OF, "%Y-%m-%d").unwrap_or_else(|_| state.today());
    match demo.map(|d| engine::fhir::parse_bundle(d.json)) {
        Some(Ok(record)) => {
            let id = state.assessments.insert(record, as_of);
            see_other(&format!("/clinician/assessment/{id}"))
        }
        Some(Err(_)) => {
            tracing::error!("a demo patient does not parse");
            super::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The demo patient could not be loaded",
                "This is a fault in JAKGuard, not in anything you did.",
                "/clinician",
                "Back to the clinician page",
            )
        }
        None => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_page(
                &state,
                Some("Choose one of the demo patients listed below.".into()),
                String::new(),
                String::new(),
            ),
        ),
    }
}

// ---- the assessment view ---------------------------------------------------------------------

struct FindingView {
    kind: &'static str,
    mark: &'static str,
    summary: String,
    action: String,
    evidence: Vec<String>,
    srcs: Vec<Source>,
    verified: bool,
}

struct OrderView {
    order: String,
    whats: String,
}

struct DrugView {
    id: String,
    drug: String,
    brands: String,
    phase: String,
    decision: &'static str,
    decision_class: &'static str,
    dose: String,
    dose_provisional: bool,
    dose_srcs: Vec<Source>,
    orders: Vec<OrderView>,
    findings: Vec<FindingView>,
    unverified: bool,
}

struct ScreeningView {
    title: String,
    status: &'static str,
    status_class: &'static str,
    detail: String,
    action: String,
    evidence: Vec<String>,
    srcs: Vec<Source>,
}

struct MonitoringView {
    drug: String,
    title: String,
    status: &'static str,
    due: String,
    schedule: String,
    verified: bool,
}

struct ScoreView {
    name: String,
    value: String,
    state: String,
    date: String,
    inputs: String,
}

#[derive(Template)]
#[template(path = "assessment.html")]
struct AssessmentPage {
    id: String,
    patient: String,
    as_of: String,
    knowledge: String,
    drugs: Vec<DrugView>,
    screening: Vec<ScreeningView>,
    monitoring: Vec<MonitoringView>,
    scores: Vec<ScoreView>,
    problems: Vec<String>,
    disclaimer: String,
}

#[derive(Template)]
#[template(path = "checklist.html")]
struct ChecklistPage {
    id: String,
    patient: String,
    as_of: String,
    knowledge: String,
    drugs: Vec<DrugView>,
    screening: Vec<ScreeningView>,
    disclaimer: String,
}

fn decision_class(d: Decision) -> &'static str {
    match d {
        Decision::Eligible => "eligible",
        Decision::Caution => "caution",
        Decision::DataNeeded => "data-needed",
        Decision::DoNotStart => "do-not-start",
    }
}

fn evidence_lines(e: &[engine::predicate::Evidence]) -> Vec<String> {
    e.iter()
        .map(|e| {
            let mut line = e.line();
            if let Some(r) = &e.resource {
                line.push_str(&format!(" ({r})"));
            }
            line.push_str(engine::report::match_note(e.matched_by));
            line
        })
        .collect()
}

fn patient_line(r: &Report) -> String {
    let p = &r.patient;
    format!(
        "Patient {} · {} · {}",
        p.id.as_deref().unwrap_or("(no id)"),
        p.age
            .map(|a| format!("{a} years"))
            .unwrap_or_else(|| "age unknown".into()),
        p.sex.unwrap_or("sex not recorded")
    )
}

fn drug_views(r: &Report) -> Vec<DrugView> {
    r.assessments
        .iter()
        .map(|a| {
            let orders = crate::render::orders_needed(a);
            let findings = a
                .findings
                .iter()
                .filter(|f| !f.rule.starts_with("data-needed."))
                .map(|f| FindingView {
                    kind: if f.category == Category::DataQuality {
                        "Data quality"
                    } else {
                        decision_label(f.decision)
                    },
                    mark: decision_class(f.decision),
                    summary: f.summary.clone(),
                    action: f.action.clone(),
                    evidence: evidence_lines(&f.evidence),
                    srcs: sources_out(&f.citations),
                    verified: f.verified,
                })
                .collect();
            let (dose, dose_provisional, dose_srcs) = match &a.dose {
                Some(d) => (d.text.clone(), d.provisional, sources_out(&d.citations)),
                None => (
                    "None: do not start (or hold) this drug.".into(),
                    false,
                    vec![],
                ),
            };
            DrugView {
                id: a.drug.clone(),
                drug: a.drug.clone(),
                brands: a.brands.join(", "),
                phase: phase_text(a),
                decision: decision_text(a),
                decision_class: decision_class(a.decision),
                dose,
                dose_provisional,
                dose_srcs,
                orders: orders
                    .into_iter()
                    .map(|(order, whats)| OrderView {
                        order,
                        whats: whats.join(", "),
                    })
                    .collect(),
                findings,
                unverified: a.uses_unverified_knowledge,
            }
        })
        .collect()
}

fn screening_views(r: &Report) -> Vec<ScreeningView> {
    r.screening
        .iter()
        .map(|s| {
            let (status, status_class) = match s.status {
                ScreeningStatus::DoneNormal => ("Done, normal", "ok"),
                ScreeningStatus::Abnormal => ("Abnormal", "bad"),
                ScreeningStatus::Missing => ("Missing", "todo"),
                ScreeningStatus::TooOld => ("Too old: repeat", "todo"),
                ScreeningStatus::NotApplicable => ("Not applicable", "na"),
            };
            ScreeningView {
                title: s.title.clone(),
                status,
                status_class,
                detail: s.detail.clone(),
                action: s.action.clone(),
                evidence: evidence_lines(&s.evidence),
                srcs: sources_out(&s.citations),
            }
        })
        .collect()
}

/// The page for an unknown or expired link.
fn expired() -> Response {
    super::error_page(
        StatusCode::NOT_FOUND,
        "This assessment is no longer available",
        format!(
            "Assessment links work for {} minutes and are kept only in the server's memory, never stored. Open the card again from the EHR, or upload the record again.",
            super::cache::TTL.as_secs() / 60
        ),
        "/clinician",
        "Assess a patient",
    )
}

/// The assessment behind a link, run now (both drugs, at the date the record was kept for).
fn open(state: &AppState, id: &str) -> Option<Report> {
    // Ids are 32 hex digits; anything else cannot be one of ours.
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let cached: Cached = state.assessments.get(id)?;
    let record = match &cached.held {
        Held::Record(r) => Arc::clone(r),
        Held::HookRequest(body) => Arc::new(crate::server::hooks::record_from_request(body)?),
    };
    let kb = &state.kb;
    Some(engine::assess(
        kb,
        &record,
        &engine::Options {
            as_of: cached.as_of,
            drugs: (0..kb.drugs.len()).collect(),
        },
    ))
}

fn knowledge_line(r: &Report) -> String {
    format!(
        "{} ({}), knowledge {}",
        r.knowledge.title, r.knowledge.jurisdiction, r.knowledge.version
    )
}

pub async fn assessment_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let Some(r) = open(&state, &id) else {
        return expired();
    };
    let monitoring = r
        .monitoring
        .iter()
        .map(|m| MonitoringView {
            drug: m.drug.clone(),
            title: m.title.clone(),
            status: match m.status {
                MonitoringStatus::Planned => "Planned",
                MonitoringStatus::UpToDate => "Up to date",
                MonitoringStatus::DueSoon => "Due soon",
                MonitoringStatus::Overdue => "Overdue",
                MonitoringStatus::Done => "Done",
            },
            due: match (m.due_from, m.due_by) {
                (Some(f), Some(b)) if f != b => format!("{f} to {b}"),
                (_, Some(b)) => format!("by {b}"),
                _ => String::new(),
            },
            schedule: m
                .schedule
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            verified: m.verified,
        })
        .collect();
    let scores = r
        .scores
        .iter()
        .map(|s| ScoreView {
            name: s.name.clone(),
            value: s.value.to_string(),
            state: s.state.clone().unwrap_or_default(),
            date: s.date.to_string(),
            inputs: s
                .inputs
                .iter()
                .map(|i| format!("{} {}", i.name, i.value))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    render(
        StatusCode::OK,
        &AssessmentPage {
            id,
            patient: patient_line(&r),
            as_of: r.as_of.to_string(),
            knowledge: knowledge_line(&r),
            drugs: drug_views(&r),
            screening: screening_views(&r),
            monitoring,
            scores,
            problems: r
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.location, e.message))
                .collect(),
            disclaimer: r.disclaimer.clone(),
        },
    )
}

pub async fn checklist_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let Some(r) = open(&state, &id) else {
        return expired();
    };
    render(
        StatusCode::OK,
        &ChecklistPage {
            id,
            patient: patient_line(&r),
            as_of: r.as_of.to_string(),
            knowledge: knowledge_line(&r),
            drugs: drug_views(&r),
            screening: screening_views(&r),
            disclaimer: r.disclaimer.clone(),
        },
    )
}
