//! Who is screened: patients with an active or draft order (or statement) for a drug the
//! knowledge assesses; with `--all`, also every patient with ankylosing spondylitis or
//! non-radiographic axSpA.
//!
//! Each candidate resource is read by the engine itself (`RecordBuilder` and `Facts`), so
//! "is this a JAK inhibitor" is answered by the same value sets, text matching and status
//! rules as the assessment; nothing is matched here by hand.

use chrono::NaiveDate;
use engine::Knowledge;
use engine::codes::ValueSetId;
use engine::facts::Facts;
use engine::fhir::RecordBuilder;

/// The knowledge value sets of the diagnoses `--all` screens.
const AXSPA_VALUESETS: [&str; 2] = ["ankylosing-spondylitis", "nr-axspa"];

pub struct Cohort<'k> {
    kb: &'k Knowledge,
    as_of: NaiveDate,
    axspa: Vec<ValueSetId>,
}

impl<'k> Cohort<'k> {
    /// Fails when `--all` is asked of a knowledge base without the axSpA value sets.
    pub fn new(kb: &'k Knowledge, as_of: NaiveDate, all: bool) -> Result<Self, String> {
        let mut axspa = vec![];
        if all {
            for name in AXSPA_VALUESETS {
                match kb.valueset_by_name(name) {
                    Some(v) => axspa.push(v),
                    None => {
                        return Err(format!(
                            "--all needs the knowledge value set `{name}`, which this knowledge lacks"
                        ));
                    }
                }
            }
        }
        Ok(Cohort { kb, as_of, axspa })
    }

    /// The resource types that can put a patient in the cohort.
    pub fn types(&self) -> &'static [&'static str] {
        if self.axspa.is_empty() {
            &["MedicationRequest", "MedicationStatement"]
        } else {
            &["MedicationRequest", "MedicationStatement", "Condition"]
        }
    }

    /// True when this one resource (with the Medication it references, if any) puts its
    /// patient in the cohort.
    pub fn admits(&self, json: &str, medication: Option<(&str, Option<&str>)>) -> bool {
        let mut b = RecordBuilder::new();
        if let Some((m, full_url)) = medication {
            b.add_json(m, "Medication", full_url);
        }
        b.add_json(json, "candidate", None);
        let Ok(record) = b.finish() else {
            return false;
        };
        // The engine's own drug recognition (the one `Facts` uses for medications), without
        // building every other fact of a one-resource record for each order line.
        let on_jak = record
            .medications
            .iter()
            .any(|m| m.is_active() && !engine::facts::drugs_in(self.kb, &m.medication).is_empty());
        if on_jak || self.axspa.is_empty() {
            return on_jak;
        }
        let facts = Facts::build(self.kb, &record, self.as_of);
        facts.conditions.iter().any(|c| {
            record.conditions[c.index].counts()
                && c.valuesets.iter().any(|v| self.axspa.contains(v))
        })
    }
}
