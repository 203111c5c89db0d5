//! The population figures: decisions per drug, patients per rule, and who is overdue for
//! which monitoring test, gathered from each patient's report as results stream out.

use chrono::NaiveDate;
use engine::kb::Decision;
use engine::report::{MonitoringStatus, Report};
use std::collections::{BTreeMap, BTreeSet};

/// What the summary needs from one patient's report (the report itself is written out and
/// dropped).
pub struct PatientFigures {
    pub decisions: Vec<(String, &'static str, Decision)>,
    /// (drug, rule id, rule title), once per patient and drug.
    pub rules: Vec<(String, String, String)>,
    pub overdue: Vec<Overdue>,
}

pub struct Overdue {
    pub drug: String,
    pub item: String,
    pub title: String,
    pub due_by: Option<NaiveDate>,
    pub last_done: Option<NaiveDate>,
}

impl PatientFigures {
    pub fn of(report: &Report) -> Self {
        let mut decisions = vec![];
        let mut rules = vec![];
        for a in &report.assessments {
            decisions.push((a.drug.clone(), a.phase, a.decision));
            let mut seen = BTreeSet::new();
            for f in &a.findings {
                if seen.insert(f.rule.as_str()) {
                    rules.push((a.drug.clone(), f.rule.clone(), f.title.clone()));
                }
            }
        }
        let overdue = report
            .monitoring
            .iter()
            .filter(|m| m.status == MonitoringStatus::Overdue)
            .map(|m| Overdue {
                drug: m.drug.clone(),
                item: m.id.clone(),
                title: m.title.clone(),
                due_by: m.due_by,
                last_done: m.last_done,
            })
            .collect();
        PatientFigures {
            decisions,
            rules,
            overdue,
        }
    }
}

/// One overdue patient: id, due by, last done.
pub type OverdueRow = (Box<str>, Option<NaiveDate>, Option<NaiveDate>);

#[derive(Default)]
pub struct Tally {
    pub screened: u64,
    /// Patients whose record could not be built (reported in their result line).
    pub not_assessed: u64,
    /// (drug, phase, decision) → patients.
    pub decisions: BTreeMap<(String, &'static str, Decision), u64>,
    /// (drug, rule) → (title, patients).
    pub rules: BTreeMap<(String, String), (String, u64)>,
    /// (drug, monitoring item) → (title, patients in id order).
    pub overdue: BTreeMap<(String, String), (String, Vec<OverdueRow>)>,
}

impl Tally {
    /// Adds one patient (in the order they are assessed).
    pub fn add(&mut self, id: &str, figures: PatientFigures) {
        self.screened += 1;
        for (drug, phase, decision) in figures.decisions {
            *self.decisions.entry((drug, phase, decision)).or_default() += 1;
        }
        for (drug, rule, title) in figures.rules {
            self.rules.entry((drug, rule)).or_insert((title, 0)).1 += 1;
        }
        for o in figures.overdue {
            self.overdue
                .entry((o.drug, o.item))
                .or_insert_with(|| (o.title, vec![]))
                .1
                .push((id.into(), o.due_by, o.last_done));
        }
    }

    /// Puts each overdue list in patient-id order, as the CSV and the HTML page list them.
    pub fn sort_lists(&mut self) {
        for (_, list) in self.overdue.values_mut() {
            list.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
    }
}

/// The decision as the reports word it for the phase.
pub fn decision_label(phase: &str, decision: Decision) -> &'static str {
    match (phase, decision) {
        ("on-treatment", Decision::Eligible) => "continue",
        ("on-treatment", Decision::Caution) => "continue with caution",
        ("on-treatment", Decision::DataNeeded) => "data needed",
        ("on-treatment", Decision::DoNotStart) => "hold or stop",
        (_, Decision::Eligible) => "eligible",
        (_, Decision::Caution) => "start with caution",
        (_, Decision::DataNeeded) => "data needed",
        (_, Decision::DoNotStart) => "do not start",
    }
}

/// The decision's JSON name (`data-needed`).
pub fn decision_key(decision: Decision) -> &'static str {
    match decision {
        Decision::Eligible => "eligible",
        Decision::Caution => "caution",
        Decision::DataNeeded => "data-needed",
        Decision::DoNotStart => "do-not-start",
    }
}
