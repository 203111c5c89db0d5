//! The symptom checker: the patient ticks what they feel; the answer is the most urgent
//! triage level among them (from `knowledge/patient/triage.toml`), with why, in plain words.

use super::render;
use super::view::{Source, sources};
use crate::server::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::Response;
use engine::Knowledge;
use engine::kb::patient::TriageLevel;
use std::sync::Arc;

struct SymptomView {
    id: String,
    text: String,
    checked: bool,
}

struct GroupView {
    id: String,
    title: String,
    symptoms: Vec<SymptomView>,
}

#[derive(Template)]
#[template(path = "symptoms.html")]
struct FormPage {
    groups: Vec<GroupView>,
    error: Option<String>,
}

fn form_page(kb: &Knowledge, chosen: &[String], error: Option<String>) -> FormPage {
    let groups = kb
        .patient
        .symptom_groups
        .iter()
        .enumerate()
        .map(|(gi, g)| GroupView {
            id: g.id.clone(),
            title: g.title.clone(),
            symptoms: kb
                .patient
                .symptoms
                .iter()
                .filter(|s| s.group == gi)
                .map(|s| SymptomView {
                    id: s.id.clone(),
                    text: s.text.clone(),
                    checked: chosen.contains(&s.id),
                })
                .collect(),
        })
        .filter(|g| !g.symptoms.is_empty())
        .collect();
    FormPage { groups, error }
}

pub async fn form(State(state): State<Arc<AppState>>) -> Response {
    render(StatusCode::OK, &form_page(&state.kb, &[], None))
}

struct Chosen {
    text: String,
    why: String,
    srcs: Vec<Source>,
}

struct LevelView {
    level: &'static str,
    title: String,
    advice: String,
    symptoms: Vec<Chosen>,
    srcs: Vec<Source>,
}

#[derive(Template)]
#[template(path = "triage.html")]
struct ResultPage {
    /// The most urgent level: what to do now.
    top: LevelView,
    /// Every level with chosen symptoms, most urgent first (the top one included).
    levels: Vec<LevelView>,
}

/// The triage of the chosen symptoms: `Err` names what is wrong with the choice.
pub fn triage(kb: &Knowledge, chosen: &[String]) -> Result<Vec<(TriageLevel, Vec<usize>)>, String> {
    if chosen.is_empty() {
        return Err("Please tick at least one symptom. If none of these fits and you are worried, call your doctor.".into());
    }
    let mut idx = vec![];
    for c in chosen {
        match kb.patient.symptoms.iter().position(|s| &s.id == c) {
            Some(i) => idx.push(i),
            None => {
                return Err(
                    "One of the choices was not recognised. Please tick your symptoms again."
                        .into(),
                );
            }
        }
    }
    Ok(TriageLevel::ALL
        .into_iter()
        .map(|level| {
            (
                level,
                idx.iter()
                    .copied()
                    .filter(|&i| kb.patient.symptoms[i].level == level)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, v)| !v.is_empty())
        .collect())
}

pub async fn result(
    State(state): State<Arc<AppState>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let kb = &state.kb;
    let chosen: Vec<String> = match form {
        Ok(Form(fields)) => fields
            .into_iter()
            .filter(|(k, _)| k == "symptom")
            .map(|(_, v)| v)
            .collect(),
        Err(_) => vec![],
    };
    let levels = match triage(kb, &chosen) {
        Ok(l) => l,
        Err(message) => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &form_page(kb, &chosen, Some(message)),
            );
        }
    };
    let views: Vec<LevelView> = levels
        .iter()
        .map(|(level, idx)| {
            let text = kb.patient.triage_text(*level);
            LevelView {
                level: level.as_str(),
                title: text.map(|t| t.title.clone()).unwrap_or_default(),
                advice: text.map(|t| t.advice.clone()).unwrap_or_default(),
                symptoms: idx
                    .iter()
                    .map(|&i| {
                        let s = &kb.patient.symptoms[i];
                        Chosen {
                            text: s.text.clone(),
                            why: s.why.clone(),
                            srcs: sources(kb, &s.citations),
                        }
                    })
                    .collect(),
                srcs: text.map(|t| sources(kb, &t.citations)).unwrap_or_default(),
            }
        })
        .collect();
    let mut views = views.into_iter();
    let Some(top) = views.next() else {
        return render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_page(
                kb,
                &chosen,
                Some("Please tick at least one symptom.".into()),
            ),
        );
    };
    render(
        StatusCode::OK,
        &ResultPage {
            top,
            levels: views.collect(),
        },
    )
}
