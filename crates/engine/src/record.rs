//! The patient record: what JAKGuard reads from FHIR, as validated domain types.
//!
//! `fhir` builds a `Record` from a Bundle (the CLI), a CDS Hooks prefetch (the server) or an
//! NDJSON export (population screening). Everything downstream reads only these types, never
//! FHIR JSON. Values that were present but unusable are kept as `issues` so that they reach
//! the report as data-quality findings instead of disappearing.

use chrono::NaiveDate;
pub use compact_str::CompactString;
use rust_decimal::Decimal;

/// A coding as FHIR sends it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coding {
    pub system: CompactString,
    pub code: CompactString,
    pub display: Option<CompactString>,
}

/// A CodeableConcept: codings plus free text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Concept {
    pub codings: Vec<Coding>,
    pub text: Option<CompactString>,
}

impl Concept {
    /// The best human label: the text, else the first display, else the first code.
    pub fn label(&self) -> String {
        if let Some(t) = &self.text {
            return t.to_string();
        }
        for c in &self.codings {
            if let Some(d) = &c.display {
                return d.to_string();
            }
        }
        self.codings
            .first()
            .map(|c| c.code.to_string())
            .unwrap_or_else(|| "(uncoded)".to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Female,
    Male,
    Other,
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub struct PatientInfo {
    pub id: Option<CompactString>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<Gender>,
    pub deceased: bool,
}

/// The value of an observation (or of one of its components).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Quantity {
        value: Decimal,
        code: Option<CompactString>,
        unit: Option<CompactString>,
        /// The comparator (`<`, `>`…) when the lab reported a bound rather than a value.
        comparator: Option<CompactString>,
    },
    Concept(Concept),
    Text(CompactString),
    Boolean(bool),
}

#[derive(Debug, Clone)]
pub struct Observation {
    /// `Observation/123`, with `#component[n]` for a component.
    pub reference: CompactString,
    pub code: Concept,
    pub status: Option<CompactString>,
    pub date: Option<NaiveDate>,
    pub value: Option<Value>,
    pub interpretation: Vec<Coding>,
}

impl Observation {
    /// Results that were withdrawn or never final do not count.
    pub fn is_usable(&self) -> bool {
        !matches!(
            self.status.as_deref(),
            Some("entered-in-error" | "cancelled" | "registered" | "preliminary")
        )
    }
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub reference: CompactString,
    pub code: Concept,
    pub clinical_status: Option<CompactString>,
    pub verification_status: Option<CompactString>,
    pub onset: Option<NaiveDate>,
    pub abatement: Option<NaiveDate>,
    pub recorded: Option<NaiveDate>,
}

impl Condition {
    /// Refuted or mistaken entries do not count at all.
    pub fn counts(&self) -> bool {
        !matches!(
            self.verification_status.as_deref(),
            Some("refuted" | "entered-in-error")
        )
    }

    /// Active, recurring or relapsed; or no status at all and no abatement.
    pub fn is_active(&self) -> bool {
        match self.clinical_status.as_deref() {
            Some("active" | "recurrence" | "relapse") => true,
            Some(_) => false,
            None => self.abatement.is_none(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MedicationSource {
    Request,
    Statement,
    Administration,
    Dispense,
}

#[derive(Debug, Clone)]
pub struct MedicationUse {
    pub reference: CompactString,
    pub source: MedicationSource,
    pub medication: Concept,
    pub status: Option<CompactString>,
    pub intent: Option<CompactString>,
    /// When it was ordered or started.
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    /// Free-text dosage instructions, for evidence only.
    pub dosage: Option<CompactString>,
}

impl MedicationUse {
    /// Taken now, or being ordered now (a draft order in a CDS Hooks request).
    pub fn is_active(&self) -> bool {
        matches!(
            self.status.as_deref(),
            Some("active" | "on-hold" | "draft" | "intended" | "in-progress")
        ) || (self.status.is_none() && self.end.is_none())
    }

    /// A proposal or draft: the order being written, not yet taken.
    pub fn is_draft(&self) -> bool {
        self.status.as_deref() == Some("draft")
            || matches!(self.intent.as_deref(), Some("proposal" | "plan"))
    }

    /// Recorded as taken or ordered at some time.
    pub fn ever(&self) -> bool {
        !matches!(
            self.status.as_deref(),
            Some("entered-in-error" | "cancelled" | "not-taken")
        )
    }
}

#[derive(Debug, Clone)]
pub struct Immunization {
    pub reference: CompactString,
    pub vaccine: Concept,
    pub status: Option<CompactString>,
    pub date: Option<NaiveDate>,
}

#[derive(Debug, Clone)]
pub struct Allergy {
    pub reference: CompactString,
    pub code: Concept,
    pub clinical_status: Option<CompactString>,
    pub verification_status: Option<CompactString>,
}

/// One answer of a QuestionnaireResponse item, by linkId.
#[derive(Debug, Clone)]
pub struct Answer {
    pub reference: CompactString,
    pub link_id: CompactString,
    pub value: Decimal,
    pub date: Option<NaiveDate>,
}

/// A problem with one part of the input that did not stop the assessment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputIssue {
    /// Where: `entry[12].resource.valueQuantity.value`, or a resource reference.
    pub location: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Record {
    pub patient: PatientInfo,
    pub observations: Vec<Observation>,
    pub conditions: Vec<Condition>,
    pub medications: Vec<MedicationUse>,
    pub immunizations: Vec<Immunization>,
    pub allergies: Vec<Allergy>,
    pub answers: Vec<Answer>,
    pub issues: Vec<InputIssue>,
    /// Every resource read, used or not (for reports and throughput figures).
    pub resource_count: usize,
}
