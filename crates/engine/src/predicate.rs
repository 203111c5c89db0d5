//! Three-valued evaluation of rule conditions: true, false, or unknown because data is
//! missing or too old.
//!
//! "Missing is not normal": a lab that is absent or older than the rule's window makes the
//! condition unknown and names what to order; only `all`/`any`/`not` can decide around an
//! unknown (Kleene logic: `any(true, unknown)` is true, `all(false, unknown)` is false).
//! Coded entries that are absent (no Condition in the value set, no such medication) are
//! false: the problem and medication lists are the record of what the patient has.

use crate::codes::MatchKind;
use crate::facts::{Facts, LabResult, LabValue};
use crate::kb::{ConditionStatus, LabId, MedicationStatus, Pred, Sex};
use crate::record::Gender;
use chrono::NaiveDate;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

/// One piece of the record behind a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// `Observation/123`, or how a value was derived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::report::iso_date::maybe"
    )]
    pub date: Option<NaiveDate>,
    /// `text` when the entry was recognised only by name (lower confidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<MatchKind>,
}

impl Evidence {
    /// One line for people: `Hemoglobin (reported as 8.5 g/dL): 8.5 g/dL (2026-11-20)`.
    /// The age of an age is its text already, so its value is not repeated.
    pub fn line(&self) -> String {
        let mut s = String::new();
        self.push_line(&mut s);
        s
    }

    /// Appends `line()` to `s`, for callers writing many lines into one buffer.
    pub fn push_line(&self, s: &mut String) {
        s.push_str(&self.text);
        if let Some(v) = self
            .value
            .as_ref()
            .filter(|_| self.unit.as_deref() != Some("years"))
        {
            s.push_str(": ");
            s.push_str(v);
            if let Some(u) = &self.unit {
                s.push(' ');
                s.push_str(u);
            }
        }
        if let Some(d) = self.date {
            use std::fmt::Write;
            // Writing into a `String` cannot fail.
            let _ = write!(s, " ({d})");
        }
    }
}

/// Something a rule needs that the record does not give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Stable key, used to merge the needs of several rules (`lab:anc`, `birth-date`).
    pub key: String,
    pub what: String,
    pub order: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub truth: Truth,
    pub evidence: Vec<Evidence>,
    pub missing: Vec<Missing>,
}

impl Outcome {
    fn t(evidence: Vec<Evidence>) -> Self {
        Outcome {
            truth: Truth::True,
            evidence,
            missing: vec![],
        }
    }
    fn f() -> Self {
        Outcome {
            truth: Truth::False,
            evidence: vec![],
            missing: vec![],
        }
    }
    fn unknown(missing: Missing) -> Self {
        Outcome {
            truth: Truth::Unknown,
            evidence: vec![],
            missing: vec![missing],
        }
    }
}

/// What the evaluation of one drug adds to the facts.
#[derive(Debug, Clone, Copy, Default)]
pub struct DrugContext {
    /// When the current course started (on treatment), for baselines.
    pub treatment_start: Option<NaiveDate>,
}

pub fn eval(p: &Pred, f: &Facts<'_>, ctx: DrugContext) -> Outcome {
    match p {
        Pred::All(list) => {
            // False if any part is false (evaluated to the end for that reason); else unknown
            // if a part is: then ask only for what the first unknown part needs — conditions
            // are written in the order a clinician tests (antibody before RNA), so this names
            // the next test rather than every test that might follow; else true.
            let mut evidence: Vec<Evidence> = vec![];
            let mut first_unknown: Option<Vec<Missing>> = None;
            for x in list {
                let o = eval(x, f, ctx);
                match o.truth {
                    Truth::False => return Outcome::f(),
                    Truth::Unknown => {
                        first_unknown.get_or_insert(o.missing);
                    }
                    Truth::True => add_evidence(&mut evidence, o.evidence),
                }
            }
            match first_unknown {
                Some(missing) => Outcome {
                    truth: Truth::Unknown,
                    evidence: vec![],
                    missing,
                },
                None => Outcome::t(evidence),
            }
        }
        Pred::Any(list) => {
            // True if any part is true (with the evidence of every true part); else unknown
            // if a part is (and every unknown part's needs); else false.
            let mut evidence: Vec<Evidence> = vec![];
            let mut missing: Vec<Missing> = vec![];
            let mut any_true = false;
            for x in list {
                let o = eval(x, f, ctx);
                match o.truth {
                    Truth::True => {
                        any_true = true;
                        add_evidence(&mut evidence, o.evidence);
                    }
                    Truth::Unknown if !any_true => {
                        for m in o.missing {
                            if !missing.iter().any(|y| y.key == m.key) {
                                missing.push(m);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if any_true {
                Outcome::t(evidence)
            } else if !missing.is_empty() {
                Outcome {
                    truth: Truth::Unknown,
                    evidence: vec![],
                    missing,
                }
            } else {
                Outcome::f()
            }
        }
        Pred::Not(inner) => {
            let o = eval(inner, f, ctx);
            match o.truth {
                Truth::True => Outcome::f(),
                Truth::False => Outcome::t(vec![Evidence {
                    resource: None,
                    text: format!("none recorded: {}", describe(inner, f)),
                    value: None,
                    unit: None,
                    date: None,
                    matched_by: None,
                }]),
                Truth::Unknown => o,
            }
        }
        Pred::Lab {
            lab,
            cmp,
            threshold,
            within_days,
            consecutive,
        } => {
            let results = &f.labs[*lab];
            let window = fresh(f, results, *within_days);
            let Some(latest) = window.first() else {
                return Outcome::unknown(missing_lab(f, *lab, results, *within_days));
            };
            let meets = |r: &LabResult| matches!(r.value, LabValue::Quantity(v) if cmp.holds(v, *threshold));
            if !meets(latest) {
                return Outcome::f();
            }
            // "Confirmed by repeat testing": the latest result and the ones before it must all
            // meet the threshold. A new low value after a normal one is not yet confirmed, and
            // that is a reason to repeat the test, not to pass.
            let needed = *consecutive as usize;
            let run = window.iter().take(needed).take_while(|r| meets(r)).count();
            if run < needed {
                let def = &f.kb.labs[*lab];
                return Outcome::unknown(Missing {
                    key: ["lab:", def.id.as_str()].concat(),
                    what: def.name.clone(),
                    order: ["Repeat ", def.order.as_str()].concat(),
                    reason: format!(
                        "{} on {} needs confirmation by repeat testing",
                        latest.original, latest.date
                    ),
                });
            }
            Outcome::t(
                window
                    .iter()
                    .take(needed)
                    .map(|r| lab_evidence(f, *lab, r))
                    .collect(),
            )
        }
        Pred::LabDrop {
            lab,
            more_than,
            within_days,
        } => {
            let results = &f.labs[*lab];
            let window = fresh(f, results, *within_days);
            let Some(latest) = window.first() else {
                return Outcome::unknown(missing_lab(f, *lab, results, *within_days));
            };
            let def = &f.kb.labs[*lab];
            let baseline = ctx
                .treatment_start
                .and_then(|s| results.iter().find(|r| r.date <= s && !r.computed));
            let Some(baseline) = baseline else {
                return Outcome::unknown(Missing {
                    key: ["baseline:", def.id.as_str()].concat(),
                    what: ["baseline ", def.name.as_str()].concat(),
                    order: ["Record the pre-treatment ", def.name.as_str()].concat(),
                    reason: "no result on or before the treatment start to compare with".into(),
                });
            };
            match (&baseline.value, &latest.value) {
                (LabValue::Quantity(b), LabValue::Quantity(l)) if *b - *l > *more_than => {
                    Outcome::t(vec![
                        lab_evidence(f, *lab, baseline),
                        lab_evidence(f, *lab, latest),
                    ])
                }
                _ => Outcome::f(),
            }
        }
        Pred::Result {
            lab,
            answers,
            within_days,
            absent_is_false,
        } => {
            let results = &f.labs[*lab];
            let window = fresh(f, results, *within_days);
            let Some(latest) = window.first() else {
                // `absent = "false"`: no result means "no"; but an old result that said "yes"
                // is asked again rather than forgotten.
                let stale_yes = results.first().is_some_and(|r| matches!(&r.value, LabValue::Coded { answers: a, .. } if a.contains(answers)));
                if *absent_is_false && !stale_yes {
                    return Outcome::f();
                }
                return Outcome::unknown(missing_lab(f, *lab, results, *within_days));
            };
            match &latest.value {
                LabValue::Coded { answers: a, .. } if a.contains(answers) => {
                    Outcome::t(vec![lab_evidence(f, *lab, latest)])
                }
                _ => Outcome::f(),
            }
        }
        Pred::Condition {
            valueset,
            status,
            within_days,
            since_treatment_start,
        } => {
            let mut ev = vec![];
            for m in f
                .conditions
                .iter()
                .filter(|m| m.valuesets.contains(valueset))
            {
                let c = &f.record.conditions[m.index];
                if !c.counts() {
                    continue;
                }
                if *status == ConditionStatus::Active && !c.is_active() {
                    continue;
                }
                let date = c.onset.or(c.recorded);
                if *since_treatment_start {
                    match (ctx.treatment_start, date) {
                        (Some(start), Some(d)) if d >= start => {}
                        _ => continue,
                    }
                }
                if let Some(days) = within_days {
                    let recent = match date {
                        Some(d) => d <= f.as_of && (f.as_of - d).num_days() <= i64::from(*days),
                        None => c.is_active(),
                    };
                    if !recent {
                        continue;
                    }
                }
                let state = c
                    .clinical_status
                    .clone()
                    .unwrap_or_else(|| "no status".into());
                ev.push(Evidence {
                    resource: Some(c.reference.to_string()),
                    text: format!("{} ({state})", c.code.label()),
                    value: None,
                    unit: None,
                    date,
                    matched_by: Some(m.by),
                });
            }
            if ev.is_empty() {
                Outcome::f()
            } else {
                Outcome::t(ev)
            }
        }
        Pred::Medication { valueset, status } => {
            let mut ev = vec![];
            for m in f
                .medications
                .iter()
                .filter(|m| m.valuesets.contains(valueset))
            {
                let med = &f.record.medications[m.index];
                let ok = match status {
                    MedicationStatus::Active => med.is_active(),
                    MedicationStatus::Ever => med.ever(),
                };
                if !ok {
                    continue;
                }
                let state = med.status.clone().unwrap_or_else(|| "no status".into());
                ev.push(Evidence {
                    resource: Some(med.reference.to_string()),
                    text: format!("{} ({state})", med.medication.label()),
                    value: med.dosage.as_deref().map(str::to_string),
                    unit: None,
                    date: med.start,
                    matched_by: Some(m.by),
                });
            }
            if ev.is_empty() {
                Outcome::f()
            } else {
                Outcome::t(ev)
            }
        }
        Pred::Immunization {
            valueset,
            within_days,
            doses,
        } => {
            let mut ev = vec![];
            let mut undated = None;
            for m in f
                .immunizations
                .iter()
                .filter(|m| m.valuesets.contains(valueset))
            {
                let imm = &f.record.immunizations[m.index];
                if matches!(imm.status.as_deref(), Some("not-done" | "entered-in-error")) {
                    continue;
                }
                if let Some(days) = within_days {
                    match imm.date {
                        Some(d) if d <= f.as_of && (f.as_of - d).num_days() <= i64::from(*days) => {
                        }
                        Some(_) => continue,
                        None => {
                            undated = Some(imm);
                            continue;
                        }
                    }
                }
                ev.push(Evidence {
                    resource: Some(imm.reference.to_string()),
                    text: imm.vaccine.label(),
                    value: None,
                    unit: None,
                    date: imm.date,
                    matched_by: Some(m.by),
                });
            }
            match (ev.len() >= *doses as usize, undated) {
                (true, _) => Outcome::t(ev),
                (false, Some(imm)) => Outcome::unknown(Missing {
                    key: format!("date:{}", imm.reference),
                    what: format!("date of {}", imm.vaccine.label()),
                    order: "Record when the vaccine was given".into(),
                    reason: format!("{} has no date", imm.reference),
                }),
                (false, None) => Outcome::f(),
            }
        }
        Pred::Allergy { valueset } => {
            let mut ev = vec![];
            for m in f
                .allergies
                .iter()
                .filter(|m| m.valuesets.contains(valueset))
            {
                let a = &f.record.allergies[m.index];
                if matches!(a.clinical_status.as_deref(), Some("inactive" | "resolved"))
                    || matches!(
                        a.verification_status.as_deref(),
                        Some("refuted" | "entered-in-error")
                    )
                {
                    continue;
                }
                ev.push(Evidence {
                    resource: Some(a.reference.to_string()),
                    text: format!("allergy or intolerance: {}", a.code.label()),
                    value: None,
                    unit: None,
                    date: None,
                    matched_by: Some(m.by),
                });
            }
            if ev.is_empty() {
                Outcome::f()
            } else {
                Outcome::t(ev)
            }
        }
        Pred::Age { at_least, below } => {
            let Some(age) = f.age else {
                return Outcome::unknown(Missing {
                    key: "birth-date".into(),
                    what: "date of birth".into(),
                    order: "Record the patient's date of birth".into(),
                    reason: "no usable birth date".into(),
                });
            };
            let ok =
                at_least.is_none_or(|a| age >= a as i32) && below.is_none_or(|b| age < b as i32);
            if ok {
                let text = match f.record.patient.birth_date {
                    Some(b) => format!("age {age} (born {b})"),
                    None => format!("age {age}"),
                };
                Outcome::t(vec![patient_evidence(
                    f,
                    text,
                    Some((age.to_string(), "years")),
                )])
            } else {
                Outcome::f()
            }
        }
        Pred::Sex(sex) => {
            let g = match f.record.patient.gender {
                Some(Gender::Female) => Sex::Female,
                Some(Gender::Male) => Sex::Male,
                _ => {
                    return Outcome::unknown(Missing {
                        key: "sex".into(),
                        what: "sex".into(),
                        order: "Record the patient's sex (needed for pregnancy and renal rules)"
                            .into(),
                        reason: "Patient.gender is missing, other or unknown".into(),
                    });
                }
            };
            if g == *sex {
                let text = format!("sex {}", if g == Sex::Female { "female" } else { "male" });
                Outcome::t(vec![patient_evidence(f, text, None)])
            } else {
                Outcome::f()
            }
        }
    }
}

/// Evidence taken from the Patient resource itself (age, sex).
fn patient_evidence(f: &Facts<'_>, text: String, value: Option<(String, &str)>) -> Evidence {
    Evidence {
        resource: f
            .record
            .patient
            .id
            .as_ref()
            .map(|id| format!("Patient/{id}")),
        text,
        unit: value.as_ref().map(|(_, u)| (*u).to_string()),
        value: value.map(|(v, _)| v),
        date: None,
        matched_by: None,
    }
}

/// Results no older than `days`, latest first: a prefix of the (date-sorted) results.
fn fresh<'r>(f: &Facts<'_>, results: &'r [LabResult], days: u32) -> &'r [LabResult] {
    let n = results
        .iter()
        .take_while(|r| (f.as_of - r.date).num_days() <= i64::from(days))
        .count();
    &results[..n]
}

fn missing_lab(f: &Facts<'_>, lab: LabId, results: &[LabResult], days: u32) -> Missing {
    let def = &f.kb.labs[lab];
    let reason = match results.first() {
        Some(r) => format!(
            "the latest result ({} on {}) is older than {days} days",
            r.original, r.date
        ),
        None => "no result in the record".into(),
    };
    Missing {
        key: ["lab:", def.id.as_str()].concat(),
        what: def.name.clone(),
        order: def.order.clone(),
        reason,
    }
}

fn lab_evidence(f: &Facts<'_>, lab: LabId, r: &LabResult) -> Evidence {
    let def = &f.kb.labs[lab];
    let (value, unit) = match &r.value {
        LabValue::Quantity(v) => {
            let unit = def
                .quantity
                .map(|q| f.kb.units.quantity(q).canonical.clone());
            (Some(v.normalize().to_string()), unit)
        }
        LabValue::Coded { label, .. } => (Some(label.clone()), None),
    };
    let text = if r.computed || matches!(r.value, LabValue::Coded { .. }) {
        def.name.clone()
    } else {
        format!("{} (reported as {})", def.name, r.original)
    };
    Evidence {
        resource: Some(r.reference.to_string()),
        text,
        value,
        unit,
        date: Some(r.date),
        matched_by: None,
    }
}

/// Adds evidence not already present (two parts may rest on the same record).
fn add_evidence(into: &mut Vec<Evidence>, more: Vec<Evidence>) {
    for e in more {
        if !into.contains(&e) {
            into.push(e);
        }
    }
}

/// A short description of a condition, for "none recorded: …" evidence.
pub fn describe(p: &Pred, f: &Facts<'_>) -> String {
    let kb = f.kb;
    match p {
        Pred::All(l) => l
            .iter()
            .map(|x| describe(x, f))
            .collect::<Vec<_>>()
            .join(" and "),
        Pred::Any(l) => l
            .iter()
            .map(|x| describe(x, f))
            .collect::<Vec<_>>()
            .join(" or "),
        Pred::Not(x) => format!("not ({})", describe(x, f)),
        Pred::Lab {
            lab,
            cmp,
            threshold,
            ..
        } => {
            let def = &kb.labs[*lab];
            let unit = def
                .quantity
                .map(|q| kb.units.quantity(q).canonical.as_str())
                .unwrap_or("");
            format!(
                "{} {} {} {unit}",
                def.name,
                cmp.symbol(),
                threshold.normalize()
            )
        }
        Pred::LabDrop { lab, more_than, .. } => {
            format!("{} fall > {}", kb.labs[*lab].name, more_than.normalize())
        }
        Pred::Result { lab, answers, .. } => format!(
            "{} {}",
            kb.labs[*lab].name,
            kb.valueset(*answers).title.to_lowercase()
        ),
        Pred::Condition { valueset, .. }
        | Pred::Medication { valueset, .. }
        | Pred::Immunization { valueset, .. }
        | Pred::Allergy { valueset } => kb.valueset(*valueset).title.clone(),
        Pred::Age { at_least, below } => match (at_least, below) {
            (Some(a), Some(b)) => format!("age {a} to {}", b - 1),
            (Some(a), None) => format!("age ≥ {a}"),
            (None, Some(b)) => format!("age < {b}"),
            _ => "age".into(),
        },
        Pred::Sex(s) => format!("sex {s:?}").to_lowercase(),
    }
}
