//! The pre-treatment screening checklist: for each item the knowledge lists (TB, hepatitis B
//! and C, blood counts, lipids, liver enzymes, pregnancy, vaccines…), whether this patient's
//! record shows it done and normal, abnormal, missing, too old, or not applicable.

use crate::evaluate::citations;
use crate::facts::{Facts, LabValue};
use crate::kb::{DrugId, Knowledge};
use crate::predicate::{DrugContext, Evidence, Truth, eval};
use crate::report::{ScreeningEntry, ScreeningStatus};

pub fn checklist(
    kb: &Knowledge,
    facts: &Facts<'_>,
    fired: &[(usize, DrugId)],
) -> Vec<ScreeningEntry> {
    kb.screening
        .iter()
        .map(|item| {
            let mut abnormal_for: Vec<String> = fired
                .iter()
                .filter(|(r, _)| item.abnormal_rules.contains(r))
                .map(|(_, d)| kb.drugs[*d].id.clone())
                .collect();
            abnormal_for.dedup();
            let applies = item
                .applies
                .as_ref()
                .map(|p| eval(p, facts, DrugContext::default()).truth)
                .unwrap_or(Truth::True);
            let mut evidence = vec![];
            let (status, detail) = if applies == Truth::False {
                (
                    ScreeningStatus::NotApplicable,
                    "does not apply to this patient".to_string(),
                )
            } else {
                let mut missing = vec![];
                let mut old = vec![];
                for &lab in &item.labs {
                    let def = &kb.labs[lab];
                    match facts.labs[lab].first() {
                        None => missing.push(def.name.clone()),
                        Some(r) => {
                            let age = (facts.as_of - r.date).num_days();
                            if item.within_days.is_some_and(|w| age > i64::from(w)) {
                                old.push(format!("{} ({})", def.name, r.date));
                            }
                            let (value, unit) = match &r.value {
                                LabValue::Quantity(v) => (
                                    v.normalize().to_string(),
                                    def.quantity.map(|q| kb.units.quantity(q).canonical.clone()),
                                ),
                                LabValue::Coded { label, .. } => (label.clone(), None),
                            };
                            evidence.push(Evidence {
                                resource: Some(r.reference.to_string()),
                                text: def.name.clone(),
                                value: Some(value),
                                unit,
                                date: Some(r.date),
                                matched_by: None,
                            });
                        }
                    }
                }
                if let Some(vs) = item.immunization {
                    let done: Vec<_> = facts
                        .immunizations
                        .iter()
                        .filter(|m| m.valuesets.contains(&vs))
                        .map(|m| &facts.record.immunizations[m.index])
                        .filter(|i| {
                            !matches!(i.status.as_deref(), Some("not-done" | "entered-in-error"))
                        })
                        .collect();
                    if done.is_empty() {
                        missing.push(kb.valueset(vs).title.clone());
                    }
                    for i in done {
                        evidence.push(Evidence {
                            resource: Some(i.reference.to_string()),
                            text: i.vaccine.label(),
                            value: None,
                            unit: None,
                            date: i.date,
                            matched_by: None,
                        });
                    }
                }
                if !abnormal_for.is_empty() {
                    (
                        ScreeningStatus::Abnormal,
                        format!("abnormal for {}", abnormal_for.join(", ")),
                    )
                } else if !missing.is_empty() {
                    (
                        ScreeningStatus::Missing,
                        format!("not in the record: {}", missing.join(", ")),
                    )
                } else if !old.is_empty() {
                    let days = item.within_days.unwrap_or(0);
                    (
                        ScreeningStatus::TooOld,
                        format!("older than {days} days: {}", old.join(", ")),
                    )
                } else if applies == Truth::Unknown {
                    (
                        ScreeningStatus::Missing,
                        "cannot tell whether it applies: data needed".to_string(),
                    )
                } else {
                    (
                        ScreeningStatus::DoneNormal,
                        "done, no abnormal finding".to_string(),
                    )
                }
            };
            ScreeningEntry {
                id: item.id.clone(),
                title: item.title.clone(),
                status,
                detail,
                evidence,
                abnormal_for,
                action: item.action.clone(),
                citations: citations(kb, &item.citations),
            }
        })
        .collect()
}
