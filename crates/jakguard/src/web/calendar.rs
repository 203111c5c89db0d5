//! The monitoring calendar: from a start date and a drug, the blood tests due in the first
//! year, derived from `knowledge/monitoring.toml` through `engine::monitoring::plan` (the
//! same plan the clinician reports show), as a page and as an iCalendar (.ics) file.

use super::view::{Source, sources};
use super::{download, render};
use crate::server::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use engine::Knowledge;
use engine::kb::DrugId;
use icalendar::{Calendar, Component, EventLike};
use serde::Deserialize;
use std::sync::Arc;

/// One visit: the tests due in one window (the first check may span weeks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub from: NaiveDate,
    pub by: NaiveDate,
    /// Monitoring item titles.
    pub tests: Vec<String>,
    /// True when every item of the visit rests on verified label knowledge.
    pub verified: bool,
}

/// The visits of the first year for `drug` started on `start`, in date order.
pub fn visits(kb: &Knowledge, drug: DrugId, start: NaiveDate) -> Vec<Visit> {
    let mut out: Vec<Visit> = vec![];
    for item in kb.monitoring.iter().filter(|m| m.drug == drug) {
        for check in engine::monitoring::plan(item, start) {
            match out
                .iter_mut()
                .find(|v| v.from == check.from && v.by == check.by)
            {
                Some(v) => {
                    v.tests.push(item.title.clone());
                    v.verified &= item.verified;
                }
                None => out.push(Visit {
                    from: check.from,
                    by: check.by,
                    tests: vec![item.title.clone()],
                    verified: item.verified,
                }),
            }
        }
    }
    out.sort_by_key(|v| (v.from, v.by));
    out
}

#[derive(Deserialize, Default)]
pub struct CalendarForm {
    #[serde(default)]
    drug: String,
    #[serde(default)]
    start: String,
}

struct DrugOption {
    id: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "calendar.html")]
struct FormPage {
    drugs: Vec<DrugOption>,
    start: String,
    errors: Vec<(String, String)>,
}

fn form_page(kb: &Knowledge, f: &CalendarForm, errors: Vec<(String, String)>) -> FormPage {
    FormPage {
        drugs: kb
            .drugs
            .iter()
            .enumerate()
            .filter(|(i, _)| kb.monitoring.iter().any(|m| m.drug == *i))
            .map(|(_, d)| DrugOption {
                id: d.id.clone(),
                label: format!("{} ({})", d.name, d.brands.join(", ")),
                selected: d.id == f.drug,
            })
            .collect(),
        start: f.start.clone(),
        errors,
    }
}

pub async fn form(State(state): State<Arc<AppState>>) -> Response {
    render(
        StatusCode::OK,
        &form_page(&state.kb, &CalendarForm::default(), vec![]),
    )
}

/// The drug and start date, or the form again with what is wrong (field id, message).
fn check(kb: &Knowledge, f: &CalendarForm) -> Result<(DrugId, NaiveDate), Vec<(String, String)>> {
    let mut errors = vec![];
    let drug = kb
        .drugs
        .iter()
        .position(|d| d.id == f.drug)
        .filter(|i| kb.monitoring.iter().any(|m| m.drug == *i));
    if drug.is_none() {
        errors.push(("drug".into(), "Choose your medicine.".into()));
    }
    let start = NaiveDate::parse_from_str(f.start.trim(), "%Y-%m-%d").ok();
    let start = match start {
        None if f.start.trim().is_empty() => {
            errors.push((
                "start".into(),
                "Enter the date you start (or started) the medicine.".into(),
            ));
            None
        }
        None => {
            errors.push((
                "start".into(),
                "Enter the date as year-month-day, for example 2026-12-01.".into(),
            ));
            None
        }
        Some(d) if !(2000..=2100).contains(&chrono::Datelike::year(&d)) => {
            errors.push((
                "start".into(),
                "Enter a start date between the years 2000 and 2100.".into(),
            ));
            None
        }
        Some(d) => Some(d),
    };
    match (drug, start) {
        (Some(d), Some(s)) if errors.is_empty() => Ok((d, s)),
        _ => Err(errors),
    }
}

fn bad_form() -> Response {
    super::error_page(
        StatusCode::BAD_REQUEST,
        "The form could not be read",
        "The form was not sent as expected. Please open the calendar again.",
        "/patient/calendar",
        "Back to the calendar",
    )
}

struct VisitView {
    when: String,
    tests: Vec<String>,
    verified: bool,
}

#[derive(Template)]
#[template(path = "calendar_result.html")]
struct SchedulePage {
    drug: String,
    drug_id: String,
    start: String,
    start_text: String,
    visits: Vec<VisitView>,
    srcs: Vec<Source>,
}

fn long(d: NaiveDate) -> String {
    d.format("%A %B %-d, %Y").to_string()
}

pub async fn schedule(
    State(state): State<Arc<AppState>>,
    form: Result<Form<CalendarForm>, FormRejection>,
) -> Response {
    let kb = &state.kb;
    let Ok(Form(f)) = form else {
        return bad_form();
    };
    let (drug, start) = match check(kb, &f) {
        Ok(x) => x,
        Err(errors) => {
            return render(StatusCode::UNPROCESSABLE_ENTITY, &form_page(kb, &f, errors));
        }
    };
    let mut cites = vec![];
    for m in kb.monitoring.iter().filter(|m| m.drug == drug) {
        for c in &m.citations {
            if !cites.contains(c) {
                cites.push(*c);
            }
        }
    }
    let d = &kb.drugs[drug];
    render(
        StatusCode::OK,
        &SchedulePage {
            drug: format!("{} ({})", d.name, d.brands.join(", ")),
            drug_id: d.id.clone(),
            start: start.to_string(),
            start_text: long(start),
            visits: visits(kb, drug, start)
                .into_iter()
                .map(|v| VisitView {
                    when: if v.from == v.by {
                        long(v.from)
                    } else {
                        format!("between {} and {}", long(v.from), long(v.by))
                    },
                    tests: v.tests,
                    verified: v.verified,
                })
                .collect(),
            srcs: sources(kb, &cites),
        },
    )
}

/// The visits as an RFC 5545 calendar: one all-day event per visit (on the first day of its
/// window), with a stable UID so that importing the file again updates instead of doubling.
pub fn ics(kb: &Knowledge, drug: DrugId, start: NaiveDate) -> String {
    let d = &kb.drugs[drug];
    let name = d.name.to_lowercase();
    let mut cal = Calendar::new();
    cal.name(&format!("{} blood tests (JAKGuard)", d.name));
    for v in visits(kb, drug, start) {
        let window = if v.from == v.by {
            String::new()
        } else {
            format!(" Due between {} and {}.", v.from, v.by)
        };
        let description = format!(
            "Blood tests usually due while taking {name}: {}.{window} Your doctor decides the exact schedule. From JAKGuard, which supports and never replaces your doctor's judgement.",
            v.tests.join("; ")
        );
        // DTEND of an all-day event is exclusive (RFC 5545 §3.6.1): the next day.
        let end = v.from.succ_opt().unwrap_or(v.from);
        let event = icalendar::Event::new()
            .uid(&format!(
                "jakguard-{}-{}-{}@jakguard.invalid",
                d.id, start, v.from
            ))
            .summary(&format!("Blood tests ({})", name))
            .description(&description)
            .starts(v.from)
            .ends(end)
            .done();
        cal.push(event);
    }
    cal.done().to_string()
}

pub async fn ics_download(
    State(state): State<Arc<AppState>>,
    form: Result<Form<CalendarForm>, FormRejection>,
) -> Response {
    let kb = &state.kb;
    let Ok(Form(f)) = form else {
        return bad_form();
    };
    match check(kb, &f) {
        Ok((drug, start)) => download(
            "text/calendar; charset=utf-8",
            &format!("jakguard-{}-tests.ics", kb.drugs[drug].id),
            ics(kb, drug, start),
        ),
        Err(errors) => render(StatusCode::UNPROCESSABLE_ENTITY, &form_page(kb, &f, errors)),
    }
}
