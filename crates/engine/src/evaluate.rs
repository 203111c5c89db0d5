//! The assessment: rules run over the facts, per drug, into decisions, doses and findings.
//!
//! For each drug the engine decides the phase (already on it → `on-treatment`, otherwise
//! `start`), evaluates every rule of that drug and phase, turns fired rules into findings,
//! merges the data that unknown rules need into one data-needed finding per missing item,
//! and lets the worst finding decide: do-not-start > data-needed > caution > eligible.

use crate::facts::Facts;
use crate::kb::{Category, Decision, DrugId, Knowledge, Phase, Severity};
use crate::predicate::{DrugContext, Evidence, Missing, Truth, eval};
use crate::record::{Gender, Record};
use crate::report::*;
use crate::{monitoring, scores, screening};
use chrono::NaiveDate;
use std::sync::Arc;

/// What to assess: the date that counts as "now" and, optionally, which drugs.
#[derive(Debug, Clone)]
pub struct Options {
    pub as_of: NaiveDate,
    /// Empty means every drug in the knowledge.
    pub drugs: Vec<DrugId>,
}

/// Assesses one patient's record. Pure: the same inputs always give the same report.
pub fn assess(kb: &Knowledge, record: &Record, opts: &Options) -> Report {
    let facts = Facts::build(kb, record, opts.as_of);
    let drugs: Vec<DrugId> = if opts.drugs.is_empty() {
        (0..kb.drugs.len()).collect()
    } else {
        opts.drugs.clone()
    };
    let mut fired_rules: Vec<(usize, DrugId)> = vec![];
    let mut assessments = vec![];
    let mut monitoring_entries = vec![];
    for &d in &drugs {
        let (mut a, fired, start) = assess_drug(kb, &facts, d);
        fired_rules.extend(fired.into_iter().map(|r| (r, d)));
        let (entries, overdue) = monitoring::for_drug(kb, &facts, d, start);
        a.findings.extend(overdue);
        finish(kb, &mut a);
        monitoring_entries.extend(entries);
        assessments.push(a);
    }
    let errors = data_problems(&facts);
    Report {
        as_of: opts.as_of,
        knowledge: KnowledgeInfo {
            version: kb.version.clone(),
            title: kb.title.clone(),
            jurisdiction: kb.jurisdiction.clone(),
        },
        patient: PatientSummary {
            id: record.patient.id.as_deref().map(str::to_string),
            age: facts.age,
            sex: record.patient.gender.map(|g| match g {
                Gender::Female => "female",
                Gender::Male => "male",
                Gender::Other => "other",
                Gender::Unknown => "unknown",
            }),
            birth_date: record.patient.birth_date,
        },
        screening: screening::checklist(kb, &facts, &fired_rules),
        monitoring: monitoring_entries,
        scores: scores::compute(kb, &facts),
        assessments,
        errors,
        disclaimer: kb.disclaimer.clone(),
    }
}

pub fn citations(kb: &Knowledge, ids: &[usize]) -> Vec<Arc<CitationOut>> {
    let mut out: Vec<Arc<CitationOut>> = Vec::with_capacity(ids.len());
    for &i in ids {
        let c = &kb.citations_out[i];
        if !out.iter().any(|x| Arc::ptr_eq(x, c)) {
            out.push(Arc::clone(c));
        }
    }
    out
}

/// Returns the assessment (not yet finished), the rules that fired and the treatment start.
fn assess_drug(
    kb: &Knowledge,
    facts: &Facts<'_>,
    d: DrugId,
) -> (Assessment, Vec<usize>, Option<NaiveDate>) {
    let drug = &kb.drugs[d];
    // On treatment: an active use of this drug that is not itself the order being written.
    let current: Vec<_> = facts
        .medications
        .iter()
        .filter(|m| m.valuesets.contains(&drug.valueset))
        .map(|m| &facts.record.medications[m.index])
        .filter(|m| m.is_active() && !m.is_draft())
        .collect();
    let phase = if current.is_empty() {
        Phase::Start
    } else {
        Phase::OnTreatment
    };
    let treatment_start = current.iter().filter_map(|m| m.start).min();
    let ctx = DrugContext { treatment_start };

    let mut findings = vec![];
    let mut needs: Vec<(Missing, Vec<usize>)> = vec![];
    let mut fired = vec![];
    for (ri, rule) in kb.rules.iter().enumerate() {
        if !rule.drugs.contains(&d) || !(rule.phase == Phase::Any || rule.phase == phase) {
            continue;
        }
        let out = eval(&rule.when, facts, ctx);
        match out.truth {
            Truth::True => {
                fired.push(ri);
                findings.push(Finding {
                    rule: rule.id.clone(),
                    title: rule.title.clone(),
                    category: rule.category,
                    severity: rule.severity,
                    decision: rule.decision,
                    summary: rule.summary.clone(),
                    action: rule.action.clone(),
                    citations: citations(kb, &rule.citations),
                    evidence: out.evidence,
                    verified: rule.verified,
                    needed_by: vec![],
                });
            }
            Truth::False => {}
            Truth::Unknown => {
                for m in out.missing {
                    match needs.iter_mut().find(|(x, _)| x.key == m.key) {
                        Some((_, rules)) => rules.push(ri),
                        None => needs.push((m, vec![ri])),
                    }
                }
            }
        }
    }
    for (m, rules) in needs {
        let category = rules
            .iter()
            .map(|&r| kb.rules[r].category)
            .min()
            .unwrap_or(Category::Screening);
        let severity = if rules
            .iter()
            .any(|&r| kb.rules[r].severity == Severity::Critical)
        {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut cites: Vec<usize> = rules
            .iter()
            .flat_map(|&r| kb.rules[r].citations.clone())
            .collect();
        cites.dedup();
        // Joined by hand rather than with `format!`, which costs several times as much; a
        // population screen writes ~20 of these per patient.
        let mut rule = String::with_capacity("data-needed.".len() + m.key.len());
        rule.push_str("data-needed.");
        rule.extend(m.key.chars().map(|c| if c == ':' { '.' } else { c }));
        findings.push(Finding {
            rule,
            title: ["Data needed: ", m.what.as_str()].concat(),
            category,
            severity,
            decision: Decision::DataNeeded,
            summary: [m.what.as_str(), ": ", m.reason.as_str()].concat(),
            action: m.order,
            citations: citations(kb, &cites),
            evidence: vec![],
            verified: rules.iter().all(|&r| kb.rules[r].verified),
            needed_by: rules.iter().map(|&r| kb.rules[r].id.clone()).collect(),
        });
    }
    for issue in &facts.issues {
        findings.push(quality_finding(
            issue.kind,
            &issue.reference,
            &issue.message,
        ));
    }
    for issue in &facts.record.issues {
        findings.push(quality_finding("input", &issue.location, &issue.message));
    }

    // The dose: the most restrictive dose among fired rules, else the usual one.
    let mut dose_idx = drug.default_dose;
    let mut basis = vec![];
    for &ri in &fired {
        if let Some(dose_id) = &kb.rules[ri].dose
            && let Some(i) = drug.doses.iter().position(|x| x.id == *dose_id)
        {
            basis.push(kb.rules[ri].id.clone());
            if drug.doses[i].rank > drug.doses[dose_idx].rank {
                dose_idx = i;
            }
        }
    }
    let dose = &drug.doses[dose_idx];
    let dose = DoseAdvice {
        mg: dose.mg,
        times_per_day: dose.times_per_day,
        product: dose.product.clone(),
        text: dose.text.clone(),
        basis,
        provisional: false,
        citations: citations(kb, &dose.citations),
    };
    let assessment = Assessment {
        drug: drug.id.clone(),
        brands: drug.brands.clone(),
        phase: phase_name(phase),
        treatment_start,
        decision: Decision::Eligible,
        dose: Some(dose),
        findings,
        uses_unverified_knowledge: false,
    };
    (assessment, fired, treatment_start)
}

/// Sets the decision from the findings, orders them, and withholds the dose when the drug
/// should not be started.
fn finish(_kb: &Knowledge, a: &mut Assessment) {
    a.decision = a
        .findings
        .iter()
        .map(|f| f.decision)
        .max()
        .unwrap_or(Decision::Eligible);
    a.findings.sort_by(|x, y| {
        y.decision
            .cmp(&x.decision)
            .then(y.severity.cmp(&x.severity))
            .then(x.category.cmp(&y.category))
    });
    a.uses_unverified_knowledge = a.findings.iter().any(|f| !f.verified);
    match a.decision {
        Decision::DoNotStart => a.dose = None,
        Decision::DataNeeded => {
            if let Some(d) = &mut a.dose {
                d.provisional = true;
            }
        }
        _ => {}
    }
}

fn quality_finding(kind: &str, location: &str, message: &str) -> Finding {
    Finding {
        rule: format!("data-quality.{kind}"),
        title: "Data quality".into(),
        category: Category::DataQuality,
        // A name-only match is worth knowing; a value that could not be used is a warning.
        severity: if kind == "text-match" {
            Severity::Info
        } else {
            Severity::Warning
        },
        decision: Decision::Eligible,
        summary: format!("{location}: {message}"),
        action: "Check the source record; JAKGuard did not use this value".into(),
        citations: vec![],
        evidence: vec![Evidence {
            resource: Some(location.to_string()),
            text: message.to_string(),
            value: None,
            unit: None,
            date: None,
            matched_by: None,
        }],
        verified: true,
        needed_by: vec![],
    }
}

fn data_problems(facts: &Facts<'_>) -> Vec<InputProblem> {
    let mut out: Vec<InputProblem> = facts
        .record
        .issues
        .iter()
        .map(|i| InputProblem {
            kind: "input".into(),
            location: i.location.clone(),
            message: i.message.clone(),
        })
        .collect();
    out.extend(
        facts
            .issues
            .iter()
            .filter(|i| i.kind != "text-match")
            .map(|i| InputProblem {
                kind: i.kind.to_string(),
                location: i.reference.clone(),
                message: i.message.clone(),
            }),
    );
    out
}
