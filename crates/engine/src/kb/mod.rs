//! The knowledge base: load, validate and compile the reviewed data files.
//!
//! Knowledge arrives as text (`Source`: a path for messages, and the TOML). The engine never
//! reads files itself: the binary embeds `knowledge/` at build time or reads `--knowledge DIR`.
//! Loading is strict — unknown keys, duplicate ids, dangling references, rules without a
//! citation, thresholds in units the quantity does not know — and every error names the file
//! and line. After loading, every reference is an index, so evaluation cannot meet a dangling
//! one.

mod compile;
pub mod patient;
pub mod quick;
pub mod raw;

use crate::codes::{CodeIndex, ValueSet, ValueSetId};
use crate::units::UnitTable;
use rust_decimal::Decimal;
use std::collections::HashMap;

pub use raw::{
    Category, Computed, ConditionStatus, Decision, LabKind, MedicationStatus, Phase, Severity, Sex,
};

/// One knowledge file: where it came from (for messages) and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub text: String,
}

/// A problem found while loading the knowledge, at a file and (when known) a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for KbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path, l, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// All the errors of one load, so a reviewer can fix them in one pass.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} error(s) in the knowledge base:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct KbErrors(pub Vec<KbError>);

pub type CitationId = usize;
pub type LabId = usize;
pub type DrugId = usize;
pub type RuleId = usize;

#[derive(Debug, Clone)]
pub struct Citation {
    pub id: String,
    pub short: String,
    pub source: String,
    pub section: String,
    pub url: Option<String>,
    pub reference: Option<String>,
    pub verified: bool,
}

#[derive(Debug, Clone)]
pub struct Lab {
    pub id: String,
    pub name: String,
    pub order: String,
    pub kind: LabKind,
    pub quantity: Option<usize>,
    pub valuesets: Vec<ValueSetId>,
    pub computed: Option<Computed>,
    pub plausible_min: Option<Decimal>,
    pub plausible_max: Option<Decimal>,
    /// (detected above, positive answers, negative answers) for numeric results of a coded lab.
    pub numeric: Option<(Decimal, ValueSetId, ValueSetId)>,
}

#[derive(Debug, Clone)]
pub struct Dose {
    pub id: String,
    pub mg: Decimal,
    pub times_per_day: u32,
    pub product: String,
    pub text: String,
    pub rank: u32,
    pub citations: Vec<CitationId>,
}

#[derive(Debug, Clone)]
pub struct Drug {
    pub id: String,
    pub name: String,
    pub brands: Vec<String>,
    pub valueset: ValueSetId,
    pub default_dose: usize,
    pub doses: Vec<Dose>,
    pub citations: Vec<CitationId>,
}

/// A threshold comparison; the value is in the lab's canonical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Below,
    AtMost,
    Above,
    AtLeast,
}

impl Cmp {
    pub fn holds(self, value: Decimal, threshold: Decimal) -> bool {
        match self {
            Cmp::Below => value < threshold,
            Cmp::AtMost => value <= threshold,
            Cmp::Above => value > threshold,
            Cmp::AtLeast => value >= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Below => "<",
            Cmp::AtMost => "≤",
            Cmp::Above => ">",
            Cmp::AtLeast => "≥",
        }
    }
}

/// The compiled condition language (see `raw::Predicate` for the file form).
#[derive(Debug, Clone)]
pub enum Pred {
    All(Vec<Pred>),
    Any(Vec<Pred>),
    Not(Box<Pred>),
    Lab {
        lab: LabId,
        cmp: Cmp,
        threshold: Decimal,
        within_days: u32,
        consecutive: u32,
    },
    LabDrop {
        lab: LabId,
        more_than: Decimal,
        within_days: u32,
    },
    Result {
        lab: LabId,
        answers: ValueSetId,
        within_days: u32,
        absent_is_false: bool,
    },
    Condition {
        valueset: ValueSetId,
        status: ConditionStatus,
        within_days: Option<u32>,
        since_treatment_start: bool,
    },
    Medication {
        valueset: ValueSetId,
        status: MedicationStatus,
    },
    Immunization {
        valueset: ValueSetId,
        within_days: Option<u32>,
        doses: u32,
    },
    Allergy {
        valueset: ValueSetId,
    },
    Age {
        at_least: Option<u32>,
        below: Option<u32>,
    },
    Sex(Sex),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub drugs: Vec<DrugId>,
    pub phase: Phase,
    pub category: Category,
    pub severity: Severity,
    pub decision: Decision,
    pub dose: Option<String>,
    pub summary: String,
    pub action: String,
    pub citations: Vec<CitationId>,
    pub verified: bool,
    pub when: Pred,
}

#[derive(Debug, Clone)]
pub struct ScreeningItem {
    pub id: String,
    pub title: String,
    pub labs: Vec<LabId>,
    pub immunization: Option<ValueSetId>,
    pub within_days: Option<u32>,
    pub abnormal_rules: Vec<RuleId>,
    pub applies: Option<Pred>,
    pub action: String,
    pub citations: Vec<CitationId>,
}

#[derive(Debug, Clone)]
pub struct MonitoringItem {
    pub id: String,
    pub drug: DrugId,
    pub title: String,
    pub labs: Vec<LabId>,
    pub first_from_week: u32,
    pub first_to_week: u32,
    pub every_weeks: Option<u32>,
    pub citations: Vec<CitationId>,
    pub verified: bool,
}

/// The disease-activity formulas the engine implements; knowledge chooses inputs and states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formula {
    Basdai,
    AsdasCrp,
    AsdasEsr,
}

impl Formula {
    pub fn from_id(id: &str) -> Option<Formula> {
        match id {
            "basdai" => Some(Formula::Basdai),
            "asdas-crp" => Some(Formula::AsdasCrp),
            "asdas-esr" => Some(Formula::AsdasEsr),
            _ => None,
        }
    }

    /// The input names each formula needs.
    pub fn inputs(self) -> &'static [&'static str] {
        match self {
            Formula::Basdai => &["q1", "q2", "q3", "q4", "q5", "q6"],
            Formula::AsdasCrp => &[
                "back-pain",
                "stiffness-duration",
                "patient-global",
                "peripheral",
                "crp",
            ],
            Formula::AsdasEsr => &[
                "back-pain",
                "stiffness-duration",
                "patient-global",
                "peripheral",
                "esr",
            ],
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScoreState {
    pub from: Decimal,
    pub to: Option<Decimal>,
    pub to_inclusive: bool,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct ScoreDef {
    pub id: String,
    pub name: String,
    pub formula: Formula,
    /// Input name → lab.
    pub inputs: Vec<(String, LabId)>,
    /// Input name → QuestionnaireResponse linkIds.
    pub answers: HashMap<String, Vec<String>>,
    pub within_days: u32,
    pub states: Vec<ScoreState>,
    pub citations: Vec<CitationId>,
}

/// The validated, compiled knowledge base.
#[derive(Debug, Clone)]
pub struct Knowledge {
    pub version: String,
    pub title: String,
    pub jurisdiction: String,
    pub disclaimer: String,
    pub citations: Vec<Citation>,
    /// The citations as they appear in reports, built once and shared by every report.
    pub citations_out: Vec<std::sync::Arc<crate::report::CitationOut>>,
    pub units: UnitTable,
    pub codes: CodeIndex,
    pub valuesets: Vec<ValueSet>,
    pub labs: Vec<Lab>,
    pub drugs: Vec<Drug>,
    pub rules: Vec<Rule>,
    pub screening: Vec<ScreeningItem>,
    pub monitoring: Vec<MonitoringItem>,
    pub scores: Vec<ScoreDef>,
    /// For each value set, the labs that read it.
    /// FxHash: looked up for every value-set match of every assessment.
    pub labs_by_valueset: rustc_hash::FxHashMap<ValueSetId, Vec<LabId>>,
    /// Value sets with free-text names, checked when a medication has no coded match.
    pub text_valuesets: Vec<ValueSetId>,
    /// The labs the renal formulas read (`creatinine`, `body-weight`), if defined.
    pub creatinine_lab: Option<LabId>,
    pub weight_lab: Option<LabId>,
    /// The patient pages' knowledge: questionnaire, tests in plain words, triage, drug pages.
    pub patient: patient::PatientKnowledge,
    /// The clinicians' quick-check form.
    pub quick_check: Vec<quick::QuickField>,
}

impl Knowledge {
    /// Loads and validates the knowledge from its files.
    pub fn load(sources: &[Source]) -> Result<Knowledge, KbErrors> {
        compile::compile(sources)
    }

    pub fn valueset(&self, id: ValueSetId) -> &ValueSet {
        &self.valuesets[id.0 as usize]
    }

    pub fn valueset_by_name(&self, name: &str) -> Option<ValueSetId> {
        self.valuesets
            .iter()
            .position(|v| v.id == name)
            .map(|i| ValueSetId(i as u16))
    }

    pub fn drug_by_name(&self, name: &str) -> Option<DrugId> {
        let n = name.trim().to_lowercase();
        self.drugs.iter().position(|d| {
            d.id == n
                || d.name.to_lowercase() == n
                || d.brands.iter().any(|b| b.to_lowercase() == n)
        })
    }

    pub fn lab_by_name(&self, name: &str) -> Option<LabId> {
        self.labs.iter().position(|l| l.id == name)
    }

    pub fn rule_by_name(&self, name: &str) -> Option<RuleId> {
        self.rules.iter().position(|r| r.id == name)
    }
}
