//! Facts: the record classified against the knowledge, once per assessment.
//!
//! Every observation is matched to the labs whose value sets hold its code and converted to
//! the lab's canonical unit; every condition, medication, immunization and allergy is matched
//! to the value sets holding its codes. Values that cannot be used (unknown unit, no date, a
//! date after `as_of`, an impossible number) are not silently dropped: they become
//! data-quality issues that the report shows.

use crate::codes::{MatchKind, ValueSetId, contains_word};
use crate::date::age_years;
use crate::kb::{Computed, Knowledge, LabId, LabKind};
use crate::record::*;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

/// A usable lab result in the lab's canonical unit (or, for coded labs, its answer sets).
#[derive(Debug, Clone)]
pub struct LabResult {
    pub date: NaiveDate,
    pub reference: CompactString,
    pub value: LabValue,
    /// As the record gave it (`1.2 10*9/L`), for the evidence.
    pub original: Original,
    /// Derived by a formula from other results (the reference lists its inputs).
    pub computed: bool,
}

/// A result as the record gave it. Kept in parts and written out only when a finding
/// cites it: most results never appear in the evidence.
#[derive(Debug, Clone)]
pub enum Original {
    /// A value and its unit as written (`1.2 10*9/L`).
    Quantity(Decimal, CompactString),
    /// A bare number (a questionnaire answer).
    Number(Decimal),
    /// A coded or text answer, as labelled.
    Text(String),
    /// Computed by a formula.
    Computed(Decimal),
}

impl std::fmt::Display for Original {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Original::Quantity(v, unit) => write!(f, "{v} {unit}"),
            Original::Number(v) => write!(f, "{v}"),
            Original::Text(t) => f.write_str(t),
            Original::Computed(v) => write!(f, "{v} (computed)"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum LabValue {
    Quantity(Decimal),
    Coded {
        answers: Vec<ValueSetId>,
        label: String,
    },
}

/// A data-quality problem found while reading facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactIssue {
    pub kind: &'static str,
    pub reference: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Matched {
    pub index: usize,
    pub valuesets: Vec<ValueSetId>,
    pub by: MatchKind,
}

pub struct Facts<'a> {
    pub kb: &'a Knowledge,
    pub record: &'a Record,
    pub as_of: NaiveDate,
    /// Age in whole years, when the birth date is known and plausible.
    pub age: Option<i32>,
    /// Per lab id: usable results, latest first.
    pub labs: Vec<Vec<LabResult>>,
    pub conditions: Vec<Matched>,
    pub medications: Vec<Matched>,
    pub immunizations: Vec<Matched>,
    pub allergies: Vec<Matched>,
    pub issues: Vec<FactIssue>,
}

impl<'a> Facts<'a> {
    pub fn build(kb: &'a Knowledge, record: &'a Record, as_of: NaiveDate) -> Facts<'a> {
        let mut issues = vec![];
        let age = match record.patient.birth_date {
            Some(b) if b > as_of => {
                issues.push(FactIssue {
                    kind: "impossible-value",
                    reference: "Patient.birthDate".into(),
                    message: format!("birth date {b} is after the assessment date {as_of}"),
                });
                None
            }
            Some(b) => {
                let a = age_years(b, as_of);
                if a > 130 {
                    issues.push(FactIssue {
                        kind: "impossible-value",
                        reference: "Patient.birthDate".into(),
                        message: format!("birth date {b} gives an age of {a} years"),
                    });
                    None
                } else {
                    Some(a)
                }
            }
            None => None,
        };
        let mut facts = Facts {
            kb,
            record,
            as_of,
            age,
            labs: vec![vec![]; kb.labs.len()],
            conditions: vec![],
            medications: vec![],
            immunizations: vec![],
            allergies: vec![],
            issues,
        };
        facts.read_observations();
        facts.read_answers();
        facts.compute_labs();
        for list in &mut facts.labs {
            list.sort_by(|a, b| b.date.cmp(&a.date).then(a.computed.cmp(&b.computed)));
        }
        facts.conditions = classify_all(kb, record.conditions.iter().map(|c| &c.code), false);
        facts.medications =
            classify_all(kb, record.medications.iter().map(|m| &m.medication), true);
        facts.immunizations =
            classify_all(kb, record.immunizations.iter().map(|i| &i.vaccine), false);
        facts.allergies = classify_all(kb, record.allergies.iter().map(|a| &a.code), true);
        for m in &facts.medications {
            if m.by == MatchKind::Text {
                let med = &record.medications[m.index];
                facts.issues.push(FactIssue {
                    kind: "text-match",
                    reference: med.reference.to_string(),
                    message: format!(
                        "`{}` was recognised by its name only (no known RxNorm code): lower confidence",
                        med.medication.label()
                    ),
                });
            }
        }
        facts
    }

    fn classify(&self, concept: &Concept) -> Vec<ValueSetId> {
        let mut out = vec![];
        for c in &concept.codings {
            self.kb.codes.classify(&c.system, &c.code, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    fn read_observations(&mut self) {
        let kb = self.kb;
        // Scratch lists reused for every observation (most are classified and skipped).
        let (mut sets, mut labs) = (vec![], vec![]);
        for obs in &self.record.observations {
            labs_into(kb, &obs.code, &mut sets, &mut labs);
            if labs.is_empty() {
                continue;
            }
            if !obs.is_usable() {
                continue;
            }
            let Some(date) = obs.date else {
                self.issue(
                    "no-date",
                    &obs.reference,
                    format!(
                        "`{}` has no date, so its age cannot be judged; not used",
                        obs.code.label()
                    ),
                );
                continue;
            };
            if date > self.as_of {
                self.issue(
                    "future-date",
                    &obs.reference,
                    format!(
                        "`{}` is dated {date}, after the assessment date; not used",
                        obs.code.label()
                    ),
                );
                continue;
            }
            for &lab in &labs {
                if let Some(r) = self.lab_result(lab, obs, date) {
                    self.labs[lab].push(r);
                }
            }
        }
    }

    /// Converts one observation into a result of `lab`, or reports why it cannot be used.
    fn lab_result(&mut self, lab: LabId, obs: &Observation, date: NaiveDate) -> Option<LabResult> {
        let kb = self.kb;
        let def = &kb.labs[lab];
        match (def.kind, &obs.value) {
            (_, None) => {
                self.issue(
                    "no-value",
                    &obs.reference,
                    format!("{} result has no value; not used", def.name),
                );
                None
            }
            (
                LabKind::Quantity,
                Some(Value::Quantity {
                    value, code, unit, ..
                }),
            ) => {
                let q = def.quantity?;
                let (canonical, ucum) =
                    match kb
                        .units
                        .to_canonical(q, *value, code.as_deref(), unit.as_deref())
                    {
                        Ok(x) => x,
                        Err(p) => {
                            self.issue(
                                "unit",
                                &obs.reference,
                                format!(
                                    "{} {value}: {p}; the value is not used (never guessed)",
                                    def.name
                                ),
                            );
                            return None;
                        }
                    };
                if canonical.is_sign_negative() && !canonical.is_zero() {
                    self.issue(
                        "impossible-value",
                        &obs.reference,
                        format!("{} of {value} is negative; not used", def.name),
                    );
                    return None;
                }
                let out_of_range = def.plausible_min.is_some_and(|m| canonical < m)
                    || def.plausible_max.is_some_and(|m| canonical > m);
                if out_of_range {
                    let canonical_unit = &kb.units.quantity(q).canonical;
                    self.issue("impossible-value", &obs.reference, format!("{} of {canonical} {canonical_unit} is outside the plausible range; not used", def.name));
                    return None;
                }
                Some(LabResult {
                    date,
                    reference: obs.reference.clone(),
                    value: LabValue::Quantity(canonical),
                    original: Original::Quantity(*value, ucum),
                    computed: false,
                })
            }
            (LabKind::Coded, Some(v)) => {
                let (mut answers, label) = match v {
                    Value::Concept(c) => (self.classify(c), c.label()),
                    Value::Text(t) => (self.answers_by_text(t), t.to_string()),
                    Value::Boolean(b) => (vec![], b.to_string()),
                    Value::Quantity {
                        value,
                        unit,
                        comparator,
                        ..
                    } => {
                        let label = format!(
                            "{}{value} {}",
                            comparator.as_deref().unwrap_or(""),
                            unit.as_deref().unwrap_or("")
                        );
                        // A number for a coded lab (a viral load) is read only where the
                        // knowledge says how; a bound such as `<15` is below detection.
                        let answer = def.numeric.map(|(above, pos, neg)| {
                            let bound_below = matches!(comparator.as_deref(), Some("<" | "<="));
                            if !bound_below && *value > above {
                                pos
                            } else {
                                neg
                            }
                        });
                        (answer.into_iter().collect(), label.trim().to_string())
                    }
                };
                for c in &obs.interpretation {
                    kb.codes.classify(&c.system, &c.code, &mut answers);
                }
                answers.sort();
                answers.dedup();
                if answers.is_empty() {
                    self.issue(
                        "uninterpretable",
                        &obs.reference,
                        format!(
                            "{} result `{label}` could not be read as a known answer; not used",
                            def.name
                        ),
                    );
                    return None;
                }
                Some(LabResult {
                    date,
                    reference: obs.reference.clone(),
                    value: LabValue::Coded {
                        answers,
                        label: label.clone(),
                    },
                    original: Original::Text(label),
                    computed: false,
                })
            }
            (LabKind::Quantity, Some(_)) => {
                self.issue(
                    "value-type",
                    &obs.reference,
                    format!("{} result is not a quantity; not used", def.name),
                );
                None
            }
        }
    }

    /// Free-text results (`Positive`, `Not detected`) matched exactly to answer value sets.
    fn answers_by_text(&self, text: &str) -> Vec<ValueSetId> {
        let t = text.trim().to_lowercase();
        self.kb
            .text_valuesets
            .iter()
            .copied()
            .filter(|v| self.kb.valueset(*v).text.contains(&t))
            .collect()
    }

    /// Questionnaire answers feed the labs named by score inputs (BASDAI questions…).
    fn read_answers(&mut self) {
        let kb = self.kb;
        for score in &kb.scores {
            for (input, link_ids) in &score.answers {
                let Some((_, lab)) = score.inputs.iter().find(|(n, _)| n == input) else {
                    continue;
                };
                for a in self
                    .record
                    .answers
                    .iter()
                    .filter(|a| link_ids.iter().any(|l| *l == a.link_id))
                {
                    let Some(date) = a.date.filter(|d| *d <= self.as_of) else {
                        continue;
                    };
                    let reference = compact_str::format_compact!("{}#{}", a.reference, a.link_id);
                    // Several scores may map the same answer (ASDAS-CRP and -ESR share inputs).
                    if self.labs[*lab].iter().any(|r| r.reference == reference) {
                        continue;
                    }
                    self.labs[*lab].push(LabResult {
                        date,
                        reference,
                        value: LabValue::Quantity(a.value),
                        original: Original::Number(a.value),
                        computed: false,
                    });
                }
            }
        }
    }

    /// Adds results derived by formula (creatinine clearance, eGFR) from the latest inputs.
    fn compute_labs(&mut self) {
        let kb = self.kb;
        let creat = kb.creatinine_lab;
        let weight = kb.weight_lab;
        for (lab, def) in kb.labs.iter().enumerate() {
            let Some(formula) = def.computed else {
                continue;
            };
            let Some(creat) = creat else { continue };
            let Some(scr) = latest_quantity(&self.labs[creat]) else {
                continue;
            };
            let (Some(age), Some(sex)) = (self.age, self.record.patient.gender) else {
                continue;
            };
            let female = match sex {
                Gender::Female => true,
                Gender::Male => false,
                _ => continue,
            };
            let (value, inputs) = match formula {
                Computed::CockcroftGault => {
                    let Some(w) = weight.and_then(|w| latest_quantity(&self.labs[w])) else {
                        continue;
                    };
                    // Weight must be from within a year of the creatinine to describe the same body.
                    if (scr.0 - w.0).num_days().abs() > 365 {
                        continue;
                    }
                    match cockcroft_gault(age, w.1, scr.1, female) {
                        Some(v) => (
                            v,
                            format!(
                                "age {age}, weight {} kg ({}), creatinine {} mg/dL ({})",
                                w.1, w.2, scr.1, scr.2
                            ),
                        ),
                        None => continue,
                    }
                }
                Computed::CkdEpi2021 => match ckd_epi_2021(age, scr.1, female) {
                    Some(v) => (
                        v,
                        format!("age {age}, creatinine {} mg/dL ({})", scr.1, scr.2),
                    ),
                    None => continue,
                },
            };
            let name = match formula {
                Computed::CockcroftGault => "Cockcroft-Gault",
                Computed::CkdEpi2021 => "CKD-EPI 2021",
            };
            self.labs[lab].push(LabResult {
                date: scr.0,
                reference: compact_str::format_compact!("computed by {name} from {inputs}"),
                value: LabValue::Quantity(value),
                original: Original::Computed(value),
                computed: true,
            });
        }
    }

    fn issue(&mut self, kind: &'static str, reference: &str, message: String) {
        self.issues.push(FactIssue {
            kind,
            reference: reference.to_string(),
            message,
        });
    }

    /// Whether a medication use belongs to the value set.
    pub fn medication_in(&self, m: &Matched, vs: ValueSetId) -> bool {
        m.valuesets.contains(&vs)
    }
}

fn latest_quantity(results: &[LabResult]) -> Option<(NaiveDate, Decimal, CompactString)> {
    results
        .iter()
        .filter(|r| !r.computed)
        .max_by_key(|r| r.date)
        .and_then(|r| match r.value {
            LabValue::Quantity(v) => Some((r.date, v, r.reference.clone())),
            LabValue::Coded { .. } => None,
        })
}

/// Creatinine clearance (mL/min) = (140 − age) × weight (kg) / (72 × serum creatinine (mg/dL)),
/// × 0.85 for women; rounded to one decimal.
pub fn cockcroft_gault(
    age: i32,
    weight_kg: Decimal,
    scr_mg_dl: Decimal,
    female: bool,
) -> Option<Decimal> {
    if scr_mg_dl <= Decimal::ZERO || weight_kg <= Decimal::ZERO || age >= 140 {
        return None;
    }
    let mut v =
        (Decimal::from(140 - age) * weight_kg).checked_div(Decimal::from(72) * scr_mg_dl)?;
    if female {
        v *= Decimal::new(85, 2);
    }
    Some(v.round_dp(1))
}

/// eGFR (mL/min/1.73 m²) by the race-free CKD-EPI 2021 creatinine equation; whole number.
pub fn ckd_epi_2021(age: i32, scr_mg_dl: Decimal, female: bool) -> Option<Decimal> {
    let scr = scr_mg_dl.to_f64()?;
    if scr <= 0.0 || age < 18 {
        return None;
    }
    let (kappa, alpha, sex_factor) = if female {
        (0.7, -0.241, 1.012)
    } else {
        (0.9, -0.302, 1.0)
    };
    let ratio = scr / kappa;
    let v = 142.0
        * ratio.min(1.0).powf(alpha)
        * ratio.max(1.0).powf(-1.200)
        * 0.9938_f64.powi(age)
        * sex_factor;
    Decimal::from_f64(v.round())
}

/// The labs whose value sets hold one of `code`'s codings, sorted. An observation with none
/// is never read by the assessment (it adds no fact and no data-quality issue).
pub fn labs_of(kb: &Knowledge, code: &Concept) -> Vec<LabId> {
    let mut labs = vec![];
    labs_into(kb, code, &mut vec![], &mut labs);
    labs
}

/// `labs_of` into `labs`, with `sets` as scratch space (both are cleared first).
fn labs_into(kb: &Knowledge, code: &Concept, sets: &mut Vec<ValueSetId>, labs: &mut Vec<LabId>) {
    sets.clear();
    labs.clear();
    for c in &code.codings {
        kb.codes.classify(&c.system, &c.code, sets);
    }
    labs.extend(
        sets.iter()
            .filter_map(|v| kb.labs_by_valueset.get(v))
            .flatten()
            .copied(),
    );
    labs.sort_unstable();
    labs.dedup();
}

fn classify_all<'c>(
    kb: &Knowledge,
    concepts: impl Iterator<Item = &'c Concept>,
    text_fallback: bool,
) -> Vec<Matched> {
    let mut out = vec![];
    for (index, concept) in concepts.enumerate() {
        let mut sets = vec![];
        for c in &concept.codings {
            kb.codes.classify(&c.system, &c.code, &mut sets);
        }
        let mut by = MatchKind::Code;
        if sets.is_empty() && text_fallback {
            let mut text = concept.text.clone().unwrap_or_default().to_lowercase();
            for c in &concept.codings {
                if let Some(d) = &c.display {
                    text.push(' ');
                    text.push_str(&d.to_lowercase());
                }
            }
            for &vs in &kb.text_valuesets {
                if kb
                    .valueset(vs)
                    .text
                    .iter()
                    .any(|name| contains_word(&text, name))
                {
                    sets.push(vs);
                }
            }
            by = MatchKind::Text;
        }
        if sets.is_empty() {
            continue;
        }
        sets.sort();
        sets.dedup();
        out.push(Matched {
            index,
            valuesets: sets,
            by,
        });
    }
    out
}

/// The drugs of the knowledge that a medication concept (an order, a statement) is, and
/// whether it was recognised by code or only by name.
pub fn drugs_in(kb: &Knowledge, concept: &Concept) -> Vec<(crate::kb::DrugId, MatchKind)> {
    let matched = classify_all(kb, std::iter::once(concept), true);
    let Some(m) = matched.first() else {
        return vec![];
    };
    kb.drugs
        .iter()
        .enumerate()
        .filter(|(_, d)| m.valuesets.contains(&d.valueset))
        .map(|(i, _)| (i, m.by))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cockcroft_gault_matches_a_hand_calculation() {
        // (140-60) × 72 / (72 × 1.0) = 80.0; female × 0.85 = 68.0
        assert_eq!(
            cockcroft_gault(60, Decimal::from(72), Decimal::ONE, false),
            Some(Decimal::new(800, 1))
        );
        assert_eq!(
            cockcroft_gault(60, Decimal::from(72), Decimal::ONE, true),
            Some(Decimal::new(680, 1))
        );
        assert_eq!(
            cockcroft_gault(60, Decimal::from(72), Decimal::ZERO, true),
            None
        );
    }

    #[test]
    fn ckd_epi_2021_reference_values() {
        // Published examples: 50-year-old man, creatinine 1.0 mg/dL → 92; woman 0.7 → 105.
        assert_eq!(
            ckd_epi_2021(50, Decimal::ONE, false),
            Some(Decimal::from(92))
        );
        assert_eq!(
            ckd_epi_2021(50, Decimal::new(7, 1), true),
            Some(Decimal::from(105))
        );
    }
}
