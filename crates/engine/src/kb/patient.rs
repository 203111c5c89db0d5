//! Patient-facing knowledge: the "before you start" questionnaire (a FHIR R4 Questionnaire in
//! TOML form), the tests explained in plain words, the symptom triage table and the drug
//! pages — compiled and validated like the rules.
//!
//! The engine does not evaluate any of this; it only guarantees that what the web pages show
//! is complete and cited: every reference resolves (groups, answer sets, tests, the screening
//! item a test belongs to, drugs, citations), no id repeats, no text is empty.

use super::compile::{Ctx, Names, at, at_span};
use super::raw::{self, Id};
use super::{CitationId, DrugId};
use std::collections::{BTreeMap, HashSet};

pub use super::raw::{QuestionType, TriageLevel};

impl TriageLevel {
    /// Every level, most urgent first.
    pub const ALL: [TriageLevel; 3] = [
        TriageLevel::Emergency,
        TriageLevel::CallToday,
        TriageLevel::NextVisit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriageLevel::Emergency => "emergency",
            TriageLevel::CallToday => "call-today",
            TriageLevel::NextVisit => "next-visit",
        }
    }
}

/// Everything the patient pages show, validated.
#[derive(Debug, Clone, Default)]
pub struct PatientKnowledge {
    pub questionnaire: Option<QuestionnaireDef>,
    pub question_groups: Vec<Group>,
    pub questions: Vec<Question>,
    pub tests: Vec<PatientTest>,
    /// One entry per level, in `TriageLevel::ALL` order (empty when there is no triage table).
    pub triage: Vec<TriageText>,
    pub symptom_groups: Vec<Group>,
    pub symptoms: Vec<Symptom>,
    pub drug_pages: Vec<DrugPage>,
}

#[derive(Debug, Clone)]
pub struct QuestionnaireDef {
    pub id: String,
    pub url: String,
    pub version: String,
    pub title: String,
    pub intro: String,
    /// Indexes into `PatientKnowledge::tests`.
    pub baseline_tests: Vec<usize>,
    pub citations: Vec<CitationId>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone)]
pub struct AnswerOption {
    /// The code system's URI (from the manifest's `[systems]`).
    pub system: String,
    pub code: String,
    pub display: String,
    pub flag: bool,
}

#[derive(Debug, Clone)]
pub struct Question {
    pub link_id: String,
    /// Index into `PatientKnowledge::question_groups`.
    pub group: usize,
    pub text: String,
    pub kind: QuestionType,
    /// The answer options of a choice question (empty for text).
    pub options: Vec<AnswerOption>,
    pub required: bool,
    pub help: String,
    pub discuss: String,
    /// Indexes into `PatientKnowledge::tests`.
    pub tests: Vec<usize>,
    pub citations: Vec<CitationId>,
}

#[derive(Debug, Clone)]
pub struct PatientTest {
    pub id: String,
    pub name: String,
    pub why: String,
    /// Index into `Knowledge::screening`.
    pub screening: usize,
    pub citations: Vec<CitationId>,
}

#[derive(Debug, Clone)]
pub struct TriageText {
    pub level: TriageLevel,
    pub title: String,
    pub advice: String,
    pub citations: Vec<CitationId>,
}

#[derive(Debug, Clone)]
pub struct Symptom {
    pub id: String,
    /// Index into `PatientKnowledge::symptom_groups`.
    pub group: usize,
    pub text: String,
    pub level: TriageLevel,
    pub why: String,
    pub citations: Vec<CitationId>,
}

#[derive(Debug, Clone)]
pub struct DrugPage {
    pub drug: DrugId,
    pub summary: String,
    pub sections: Vec<PageSection>,
}

#[derive(Debug, Clone)]
pub struct PageSection {
    pub id: String,
    pub heading: String,
    pub text: Vec<String>,
    pub points: Vec<String>,
    pub citations: Vec<CitationId>,
}

impl PatientKnowledge {
    pub fn triage_text(&self, level: TriageLevel) -> Option<&TriageText> {
        self.triage.iter().find(|t| t.level == level)
    }

    pub fn drug_page(&self, drug: DrugId) -> Option<&DrugPage> {
        self.drug_pages.iter().find(|p| p.drug == drug)
    }
}

/// The name registries of the rest of the knowledge that patient entries refer to.
pub(super) struct Refs<'a> {
    pub drugs: &'a Names,
    pub screening: &'a Names,
    pub systems: &'a BTreeMap<String, String>,
}

type Cites<'c> = dyn Fn(&mut Ctx<'_>, usize, &Id, &[Id]) -> Vec<CitationId> + 'c;

fn non_empty(ctx: &mut Ctx<'_>, fi: usize, owner: &Id, field: &str, text: &str) {
    if text.trim().is_empty() {
        ctx.err(
            at(fi, owner),
            format!("`{}`: `{field}` must not be empty", owner.get_ref()),
        );
    }
}

pub(super) fn compile(
    ctx: &mut Ctx<'_>,
    files: &[(usize, raw::File)],
    refs: &Refs<'_>,
    cites: &Cites<'_>,
) -> PatientKnowledge {
    let mut out = PatientKnowledge::default();
    let mut n_qgroup = Names::new("question group");
    let mut n_answers = Names::new("answer set");
    let mut n_question = Names::new("question");
    let mut n_test = Names::new("patient test");
    let mut n_sgroup = Names::new("symptom group");
    let mut n_symptom = Names::new("symptom");
    for (fi, f) in files {
        for g in &f.question_group {
            n_qgroup.register(ctx, *fi, &g.id);
        }
        for a in &f.answer_set {
            n_answers.register(ctx, *fi, &a.id);
        }
        for q in &f.question {
            n_question.register(ctx, *fi, &q.id);
        }
        for t in &f.patient_test {
            n_test.register(ctx, *fi, &t.id);
        }
        for g in &f.symptom_group {
            n_sgroup.register(ctx, *fi, &g.id);
        }
        for s in &f.symptom {
            n_symptom.register(ctx, *fi, &s.id);
        }
    }

    // Groups and tests first: questions and symptoms refer to them by index.
    for (fi, f) in files {
        for g in &f.question_group {
            non_empty(ctx, *fi, &g.id, "title", &g.title);
            out.question_groups.push(Group {
                id: g.id.get_ref().clone(),
                title: g.title.clone(),
            });
        }
        for g in &f.symptom_group {
            non_empty(ctx, *fi, &g.id, "title", &g.title);
            out.symptom_groups.push(Group {
                id: g.id.get_ref().clone(),
                title: g.title.clone(),
            });
        }
        for t in &f.patient_test {
            non_empty(ctx, *fi, &t.id, "name", &t.name);
            non_empty(ctx, *fi, &t.id, "why", &t.why);
            let screening = refs.screening.resolve(ctx, *fi, &t.screening).unwrap_or(0);
            out.tests.push(PatientTest {
                id: t.id.get_ref().clone(),
                name: t.name.clone(),
                why: t.why.clone(),
                screening,
                citations: cites(ctx, *fi, &t.id, &t.citations),
            });
        }
    }

    // Answer sets, resolved once; questions copy their options.
    let mut answer_sets: Vec<Vec<AnswerOption>> = vec![];
    for (fi, f) in files {
        for a in &f.answer_set {
            let system = match refs.systems.get(a.system.get_ref()) {
                Some(uri) => uri.clone(),
                None => {
                    ctx.err(
                        at_span(*fi, a.system.span()),
                        format!(
                            "answer set `{}`: unknown code system `{}` (see [systems] in knowledge.toml)",
                            a.id.get_ref(),
                            a.system.get_ref()
                        ),
                    );
                    String::new()
                }
            };
            let mut seen = HashSet::new();
            if a.option.len() < 2 {
                ctx.err(
                    at(*fi, &a.id),
                    format!("answer set `{}` needs at least two options", a.id.get_ref()),
                );
            }
            for o in &a.option {
                if o.code.trim().is_empty() || o.display.trim().is_empty() {
                    ctx.err(
                        at(*fi, &a.id),
                        format!(
                            "answer set `{}`: every option needs a code and a display",
                            a.id.get_ref()
                        ),
                    );
                }
                if !seen.insert(o.code.clone()) {
                    ctx.err(
                        at(*fi, &a.id),
                        format!(
                            "answer set `{}`: duplicate code `{}`",
                            a.id.get_ref(),
                            o.code
                        ),
                    );
                }
            }
            answer_sets.push(
                a.option
                    .iter()
                    .map(|o| AnswerOption {
                        system: system.clone(),
                        code: o.code.clone(),
                        display: o.display.clone(),
                        flag: o.flag,
                    })
                    .collect(),
            );
        }
    }

    let mut questionnaire_at: Option<usize> = None;
    for (fi, f) in files {
        if let Some(q) = &f.questionnaire {
            if questionnaire_at.is_some() {
                ctx.err(at(*fi, &q.id), "only one [questionnaire] may be defined");
                continue;
            }
            questionnaire_at = Some(*fi);
            for (field, text) in [
                ("url", &q.url),
                ("version", &q.version),
                ("title", &q.title),
                ("intro", &q.intro),
            ] {
                non_empty(ctx, *fi, &q.id, field, text);
            }
            let baseline_tests = q
                .baseline_tests
                .iter()
                .filter_map(|t| n_test.resolve(ctx, *fi, t))
                .collect();
            out.questionnaire = Some(QuestionnaireDef {
                id: q.id.get_ref().clone(),
                url: q.url.clone(),
                version: q.version.clone(),
                title: q.title.clone(),
                intro: q.intro.clone(),
                baseline_tests,
                citations: cites(ctx, *fi, &q.id, &q.citations),
            });
        }
    }

    for (fi, f) in files {
        for q in &f.question {
            if questionnaire_at.is_none() {
                ctx.err(
                    at(*fi, &q.id),
                    format!(
                        "question `{}` has no [questionnaire] to belong to",
                        q.id.get_ref()
                    ),
                );
            }
            for (field, text) in [
                ("text", &q.text),
                ("help", &q.help),
                ("discuss", &q.discuss),
            ] {
                non_empty(ctx, *fi, &q.id, field, text);
            }
            let group = n_qgroup.resolve(ctx, *fi, &q.group).unwrap_or(0);
            let options = match (q.kind, &q.answers) {
                (QuestionType::Choice, Some(a)) => n_answers
                    .resolve(ctx, *fi, a)
                    .and_then(|i| answer_sets.get(i).cloned())
                    .unwrap_or_default(),
                (QuestionType::Choice, None) => {
                    ctx.err(
                        at(*fi, &q.id),
                        format!(
                            "question `{}`: a choice question needs `answers`",
                            q.id.get_ref()
                        ),
                    );
                    vec![]
                }
                (QuestionType::Text, Some(_)) => {
                    ctx.err(
                        at(*fi, &q.id),
                        format!(
                            "question `{}`: a text question takes no `answers`",
                            q.id.get_ref()
                        ),
                    );
                    vec![]
                }
                (QuestionType::Text, None) => vec![],
            };
            if q.kind == QuestionType::Choice && !options.iter().any(|o| o.flag) {
                ctx.err(
                    at(*fi, &q.id),
                    format!(
                        "question `{}`: no answer is flagged for discussion, so `discuss` would never show",
                        q.id.get_ref()
                    ),
                );
            }
            let tests = q
                .tests
                .iter()
                .filter_map(|t| n_test.resolve(ctx, *fi, t))
                .collect();
            out.questions.push(Question {
                link_id: q.id.get_ref().clone(),
                group,
                text: q.text.clone(),
                kind: q.kind,
                options,
                required: q.required,
                help: q.help.clone(),
                discuss: q.discuss.clone(),
                tests,
                citations: cites(ctx, *fi, &q.id, &q.citations),
            });
        }
    }

    // Triage: every level said once, in urgency order.
    let mut levels: Vec<(usize, &raw::TriageLevelText)> = vec![];
    for (fi, f) in files {
        for t in &f.triage_level {
            let level = *t.level.get_ref();
            if levels.iter().any(|(_, x)| *x.level.get_ref() == level) {
                ctx.err(
                    at_span(*fi, t.level.span()),
                    format!("triage level `{}` is defined twice", level.as_str()),
                );
                continue;
            }
            levels.push((*fi, t));
        }
    }
    let any_symptom = files.iter().any(|(_, f)| !f.symptom.is_empty());
    for level in TriageLevel::ALL {
        match levels.iter().find(|(_, t)| *t.level.get_ref() == level) {
            Some((fi, t)) => {
                let owner = Id::new(t.level.span(), level.as_str().to_string());
                non_empty(ctx, *fi, &owner, "title", &t.title);
                non_empty(ctx, *fi, &owner, "advice", &t.advice);
                out.triage.push(TriageText {
                    level,
                    title: t.title.clone(),
                    advice: t.advice.clone(),
                    citations: cites(ctx, *fi, &owner, &t.citations),
                });
            }
            None if any_symptom => ctx.errors.push(super::KbError {
                path: "knowledge/patient".into(),
                line: None,
                message: format!(
                    "symptoms are defined but triage level `{}` has no [[triage_level]] text",
                    level.as_str()
                ),
            }),
            None => {}
        }
    }

    for (fi, f) in files {
        for s in &f.symptom {
            non_empty(ctx, *fi, &s.id, "text", &s.text);
            non_empty(ctx, *fi, &s.id, "why", &s.why);
            let group = n_sgroup.resolve(ctx, *fi, &s.group).unwrap_or(0);
            out.symptoms.push(Symptom {
                id: s.id.get_ref().clone(),
                group,
                text: s.text.clone(),
                level: s.level,
                why: s.why.clone(),
                citations: cites(ctx, *fi, &s.id, &s.citations),
            });
        }
    }

    for (fi, f) in files {
        for p in &f.drug_page {
            let Some(drug) = refs.drugs.resolve(ctx, *fi, &p.drug) else {
                continue;
            };
            if out.drug_pages.iter().any(|x| x.drug == drug) {
                ctx.err(
                    at(*fi, &p.drug),
                    format!("drug `{}` has two pages", p.drug.get_ref()),
                );
            }
            non_empty(ctx, *fi, &p.drug, "summary", &p.summary);
            let mut ids = HashSet::new();
            let mut sections = vec![];
            for s in &p.section {
                if !ids.insert(s.id.get_ref().clone()) {
                    ctx.err(
                        at(*fi, &s.id),
                        format!(
                            "drug page `{}`: duplicate section `{}`",
                            p.drug.get_ref(),
                            s.id.get_ref()
                        ),
                    );
                }
                non_empty(ctx, *fi, &s.id, "heading", &s.heading);
                if s.text.iter().chain(&s.points).all(|t| t.trim().is_empty()) {
                    ctx.err(
                        at(*fi, &s.id),
                        format!("section `{}` has no text and no points", s.id.get_ref()),
                    );
                }
                sections.push(PageSection {
                    id: s.id.get_ref().clone(),
                    heading: s.heading.clone(),
                    text: s.text.clone(),
                    points: s.points.clone(),
                    citations: cites(ctx, *fi, &s.id, &s.citations),
                });
            }
            out.drug_pages.push(DrugPage {
                drug,
                summary: p.summary.clone(),
                sections,
            });
        }
    }
    out
}
