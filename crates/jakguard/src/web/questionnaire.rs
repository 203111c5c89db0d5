//! "Before you start": the questionnaire (from `knowledge/patient/questionnaire.toml`), the
//! one-page summary for the appointment, and the same answers as a FHIR R4
//! QuestionnaireResponse; the Questionnaire itself is published as FHIR JSON.
//!
//! Answers travel only in the form posts: the summary page carries them as hidden fields so
//! the download needs no server-side storage.

use super::view::{Source, sources};
use super::{download, render};
use crate::server::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::Response;
use engine::Knowledge;
use engine::kb::patient::{Question, QuestionType, QuestionnaireDef};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest free-text answer accepted (characters).
const MAX_TEXT: usize = 2000;

/// One validated answer per question (by index in `kb.patient.questions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Index into the question's options.
    Choice(usize),
    Text(String),
}

/// The answers of one submission, or the reasons they cannot be used (with what was typed,
/// so the form can be shown again without losing anything).
pub struct Parsed {
    pub answers: Vec<Option<Answer>>,
    /// Raw values by linkId, to re-fill the form.
    pub raw: HashMap<String, String>,
    /// (linkId, message).
    pub errors: Vec<(String, String)>,
}

pub fn parse(kb: &Knowledge, fields: &[(String, String)]) -> Parsed {
    let questions = &kb.patient.questions;
    let mut raw: HashMap<String, String> = HashMap::new();
    for (k, v) in fields {
        // Only the questionnaire's own fields are kept; anything else is ignored.
        if questions.iter().any(|q| &q.link_id == k) {
            raw.insert(k.clone(), v.clone());
        }
    }
    let mut answers = vec![];
    let mut errors = vec![];
    for q in questions {
        let value = raw.get(&q.link_id).map(|v| v.trim()).unwrap_or("");
        let answer = match q.kind {
            QuestionType::Choice if value.is_empty() => None,
            QuestionType::Choice => match q.options.iter().position(|o| o.code == value) {
                Some(i) => Some(Answer::Choice(i)),
                None => {
                    errors.push((
                        q.link_id.clone(),
                        "this answer is not one of the choices: please pick one again".into(),
                    ));
                    None
                }
            },
            QuestionType::Text if value.is_empty() => None,
            QuestionType::Text if value.chars().count() > MAX_TEXT => {
                errors.push((
                    q.link_id.clone(),
                    format!("please shorten this answer to at most {MAX_TEXT} characters"),
                ));
                None
            }
            QuestionType::Text => Some(Answer::Text(value.to_string())),
        };
        if answer.is_none() && q.required && !errors.iter().any(|(l, _)| l == &q.link_id) {
            errors.push((
                q.link_id.clone(),
                "please choose an answer (\"Not sure\" is fine)".into(),
            ));
        }
        answers.push(answer);
    }
    Parsed {
        answers,
        raw,
        errors,
    }
}

// ---- the form ------------------------------------------------------------------------------

struct OptionView {
    code: String,
    display: String,
    checked: bool,
}

struct QuestionView {
    link_id: String,
    text: String,
    help: String,
    is_choice: bool,
    required: bool,
    options: Vec<OptionView>,
    value: String,
    error: Option<String>,
}

struct GroupView {
    id: String,
    title: String,
    questions: Vec<QuestionView>,
}

struct ErrorLink {
    link_id: String,
    question: String,
    message: String,
}

#[derive(Template)]
#[template(path = "questionnaire.html")]
struct FormPage {
    title: String,
    intro: String,
    groups: Vec<GroupView>,
    errors: Vec<ErrorLink>,
}

fn form_page(kb: &Knowledge, q: &QuestionnaireDef, parsed: Option<&Parsed>) -> FormPage {
    let raw = |l: &str| {
        parsed
            .and_then(|p| p.raw.get(l))
            .cloned()
            .unwrap_or_default()
    };
    let error = |l: &str| {
        parsed.and_then(|p| {
            p.errors
                .iter()
                .find(|(x, _)| x == l)
                .map(|(_, m)| m.clone())
        })
    };
    let groups = kb
        .patient
        .question_groups
        .iter()
        .enumerate()
        .map(|(gi, g)| GroupView {
            id: g.id.clone(),
            title: g.title.clone(),
            questions: kb
                .patient
                .questions
                .iter()
                .filter(|q| q.group == gi)
                .map(|q| {
                    let value = raw(&q.link_id);
                    QuestionView {
                        link_id: q.link_id.clone(),
                        text: q.text.clone(),
                        help: q.help.clone(),
                        is_choice: q.kind == QuestionType::Choice,
                        required: q.required,
                        options: q
                            .options
                            .iter()
                            .map(|o| OptionView {
                                code: o.code.clone(),
                                display: o.display.clone(),
                                checked: o.code == value.trim(),
                            })
                            .collect(),
                        value,
                        error: error(&q.link_id),
                    }
                })
                .collect(),
        })
        .filter(|g| !g.questions.is_empty())
        .collect();
    let errors = parsed
        .map(|p| {
            p.errors
                .iter()
                .map(|(l, m)| ErrorLink {
                    link_id: l.clone(),
                    question: kb
                        .patient
                        .questions
                        .iter()
                        .find(|q| &q.link_id == l)
                        .map(|q| q.text.clone())
                        .unwrap_or_default(),
                    message: m.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    FormPage {
        title: q.title.clone(),
        intro: q.intro.clone(),
        groups,
        errors,
    }
}

fn no_questionnaire() -> Response {
    super::error_page(
        StatusCode::NOT_FOUND,
        "No questionnaire",
        "The knowledge base in use has no \"before you start\" questionnaire.",
        "/",
        "Go to the home page",
    )
}

pub async fn form(State(state): State<Arc<AppState>>) -> Response {
    let Some(q) = &state.kb.patient.questionnaire else {
        return no_questionnaire();
    };
    render(StatusCode::OK, &form_page(&state.kb, q, None))
}

fn bad_form() -> Response {
    super::error_page(
        StatusCode::BAD_REQUEST,
        "The answers could not be read",
        "The form was not sent as expected. Please open the questionnaire again.",
        "/patient/before-you-start",
        "Back to the questionnaire",
    )
}

// ---- the summary ---------------------------------------------------------------------------

struct Discuss {
    question: String,
    answer: String,
    discuss: String,
    srcs: Vec<Source>,
}

struct TestView {
    name: String,
    why: String,
    srcs: Vec<Source>,
}

struct AnswerRow {
    question: String,
    answer: String,
    flagged: bool,
}

#[derive(Template)]
#[template(path = "summary.html")]
struct SummaryPage {
    title: String,
    date: String,
    discuss: Vec<Discuss>,
    notes: Vec<(String, String)>,
    tests: Vec<TestView>,
    answers: Vec<AnswerRow>,
    /// For the printed page, which lists only what to discuss: what the other answers were.
    others: String,
    hidden: Vec<(String, String)>,
}

fn answer_text(q: &Question, a: &Answer) -> String {
    match a {
        Answer::Choice(i) => q
            .options
            .get(*i)
            .map(|o| o.display.clone())
            .unwrap_or_default(),
        Answer::Text(t) => t.clone(),
    }
}

fn flagged(q: &Question, a: &Answer) -> bool {
    match a {
        Answer::Choice(i) => q.options.get(*i).is_some_and(|o| o.flag),
        Answer::Text(t) => !t.is_empty(),
    }
}

pub async fn summary(
    State(state): State<Arc<AppState>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let kb = &state.kb;
    let Some(qdef) = &kb.patient.questionnaire else {
        return no_questionnaire();
    };
    let Ok(Form(fields)) = form else {
        return bad_form();
    };
    let parsed = parse(kb, &fields);
    if !parsed.errors.is_empty() {
        return render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_page(kb, qdef, Some(&parsed)),
        );
    }
    let mut discuss = vec![];
    let mut notes = vec![];
    let mut answers = vec![];
    let mut tests: Vec<usize> = qdef.baseline_tests.clone();
    for (q, a) in kb.patient.questions.iter().zip(&parsed.answers) {
        let Some(a) = a else {
            answers.push(AnswerRow {
                question: q.text.clone(),
                answer: "(not answered)".into(),
                flagged: false,
            });
            continue;
        };
        let is_flagged = flagged(q, a);
        answers.push(AnswerRow {
            question: q.text.clone(),
            answer: answer_text(q, a),
            flagged: is_flagged,
        });
        if !is_flagged {
            continue;
        }
        match a {
            Answer::Text(t) => notes.push((q.discuss.clone(), t.clone())),
            Answer::Choice(_) => discuss.push(Discuss {
                question: q.text.clone(),
                answer: answer_text(q, a),
                discuss: q.discuss.clone(),
                srcs: sources(kb, &q.citations),
            }),
        }
        for t in &q.tests {
            if !tests.contains(t) {
                tests.push(*t);
            }
        }
    }
    // The printed summary fits one page by listing only what to discuss; this line says what
    // the other answers were, so nothing is hidden from the doctor.
    let plain: Vec<&str> = kb
        .patient
        .questions
        .iter()
        .zip(&parsed.answers)
        .filter_map(|(q, a)| match a {
            Some(a @ Answer::Choice(i)) if !flagged(q, a) => {
                q.options.get(*i).map(|o| o.display.as_str())
            }
            _ => None,
        })
        .collect();
    let unanswered = parsed.answers.iter().filter(|a| a.is_none()).count();
    let mut others = match plain.first() {
        None => String::new(),
        Some(first) if plain.iter().all(|d| d == first) => format!(
            "The other {} question{} were answered \"{first}\".",
            plain.len(),
            if plain.len() == 1 { "" } else { "s" }
        ),
        Some(_) => format!(
            "The other {} answers raised nothing to discuss.",
            plain.len()
        ),
    };
    if unanswered > 0 {
        others.push_str(&format!(" {unanswered} optional question(s) left empty."));
    }
    let tests = tests
        .iter()
        .filter_map(|&t| kb.patient.tests.get(t))
        .map(|t| TestView {
            name: t.name.clone(),
            why: t.why.clone(),
            srcs: sources(kb, &t.citations),
        })
        .collect();
    let hidden = kb
        .patient
        .questions
        .iter()
        .filter_map(|q| {
            parsed
                .raw
                .get(&q.link_id)
                .map(|v| (q.link_id.clone(), v.trim().to_string()))
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    render(
        StatusCode::OK,
        &SummaryPage {
            title: qdef.title.clone(),
            date: state.today().format("%B %-d, %Y").to_string(),
            discuss,
            notes,
            tests,
            answers,
            others: others.trim().to_string(),
            hidden,
        },
    )
}

// ---- FHIR ----------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FhirQuestionnaire {
    resource_type: &'static str,
    id: String,
    url: String,
    version: String,
    title: String,
    status: &'static str,
    subject_type: Vec<&'static str>,
    description: String,
    item: Vec<QItem>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QItem {
    link_id: String,
    text: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    required: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    answer_option: Vec<AnswerOptionOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    item: Vec<QItem>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnswerOptionOut {
    value_coding: Coding,
}

#[derive(Serialize)]
struct Coding {
    system: String,
    code: String,
    display: String,
}

fn fhir_type(k: QuestionType) -> &'static str {
    match k {
        QuestionType::Choice => "choice",
        QuestionType::Text => "text",
    }
}

pub fn fhir_questionnaire(kb: &Knowledge, q: &QuestionnaireDef) -> FhirQuestionnaire {
    let item = kb
        .patient
        .question_groups
        .iter()
        .enumerate()
        .map(|(gi, g)| QItem {
            link_id: g.id.clone(),
            text: g.title.clone(),
            kind: "group",
            required: None,
            answer_option: vec![],
            item: kb
                .patient
                .questions
                .iter()
                .filter(|x| x.group == gi)
                .map(|x| QItem {
                    link_id: x.link_id.clone(),
                    text: x.text.clone(),
                    kind: fhir_type(x.kind),
                    required: Some(x.required),
                    answer_option: x
                        .options
                        .iter()
                        .map(|o| AnswerOptionOut {
                            value_coding: Coding {
                                system: o.system.clone(),
                                code: o.code.clone(),
                                display: o.display.clone(),
                            },
                        })
                        .collect(),
                    item: vec![],
                })
                .collect(),
        })
        .filter(|g| !g.item.is_empty())
        .collect();
    FhirQuestionnaire {
        resource_type: "Questionnaire",
        id: q.id.clone(),
        url: q.url.clone(),
        version: q.version.clone(),
        title: q.title.clone(),
        status: "active",
        subject_type: vec!["Patient"],
        description: q.intro.clone(),
        item,
    }
}

pub async fn questionnaire_json(State(state): State<Arc<AppState>>) -> Response {
    let Some(q) = &state.kb.patient.questionnaire else {
        return no_questionnaire();
    };
    match serde_json::to_string_pretty(&fhir_questionnaire(&state.kb, q)) {
        Ok(body) => download(
            "application/fhir+json; charset=utf-8",
            "jakguard-before-you-start.Questionnaire.json",
            body,
        ),
        Err(_) => bad_form(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FhirResponse {
    resource_type: &'static str,
    questionnaire: String,
    status: &'static str,
    authored: String,
    item: Vec<RItem>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RItem {
    link_id: String,
    text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    answer: Vec<RAnswer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    item: Vec<RItem>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum RAnswer {
    ValueCoding(Coding),
    ValueString(String),
}

/// The answers as a QuestionnaireResponse: groups as in the Questionnaire, unanswered
/// questions (and groups left empty) omitted, as FHIR requires an item to carry an answer or
/// sub-items.
pub fn fhir_response(
    kb: &Knowledge,
    q: &QuestionnaireDef,
    answers: &[Option<Answer>],
    authored: String,
) -> FhirResponse {
    let item = kb
        .patient
        .question_groups
        .iter()
        .enumerate()
        .map(|(gi, g)| RItem {
            link_id: g.id.clone(),
            text: g.title.clone(),
            answer: vec![],
            item: kb
                .patient
                .questions
                .iter()
                .zip(answers)
                .filter(|(x, _)| x.group == gi)
                .filter_map(|(x, a)| {
                    let answer = match a.as_ref()? {
                        Answer::Choice(i) => {
                            let o = x.options.get(*i)?;
                            RAnswer::ValueCoding(Coding {
                                system: o.system.clone(),
                                code: o.code.clone(),
                                display: o.display.clone(),
                            })
                        }
                        Answer::Text(t) => RAnswer::ValueString(t.clone()),
                    };
                    Some(RItem {
                        link_id: x.link_id.clone(),
                        text: x.text.clone(),
                        answer: vec![answer],
                        item: vec![],
                    })
                })
                .collect(),
        })
        .filter(|g| !g.item.is_empty())
        .collect();
    FhirResponse {
        resource_type: "QuestionnaireResponse",
        questionnaire: format!("{}|{}", q.url, q.version),
        status: "completed",
        authored,
        item,
    }
}

pub async fn response_json(
    State(state): State<Arc<AppState>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let kb = &state.kb;
    let Some(qdef) = &kb.patient.questionnaire else {
        return no_questionnaire();
    };
    let Ok(Form(fields)) = form else {
        return bad_form();
    };
    let parsed = parse(kb, &fields);
    if !parsed.errors.is_empty() {
        return render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_page(kb, qdef, Some(&parsed)),
        );
    }
    let authored = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match serde_json::to_string_pretty(&fhir_response(kb, qdef, &parsed.answers, authored)) {
        Ok(body) => download(
            "application/fhir+json; charset=utf-8",
            "before-you-start.QuestionnaireResponse.json",
            body,
        ),
        Err(_) => bad_form(),
    }
}
